//! o2net benchmarks over loopback, each against a raw TCP baseline measured
//! in the same run (these machines are noisy; the ratio is what counts):
//!
//! * round trip: `Net::send` of an 8-byte request answered by a handler,
//!   against a raw ping-pong of the same frame sizes (32 bytes out, 24 back)
//!   between the same addresses with TCP_NODELAY; p50 and p99.
//! * one-way throughput: many concurrent senders on one connection (each
//!   message still gets its status reply, as the protocol requires), against
//!   a raw stream writing one 32-byte frame per write() call.
//!
//! `cargo bench -p o2net` (env O2NET_BENCH_SECS, default 2, per throughput run).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use o2net::{Net, NetConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const PORT: u16 = 27901;
const RAW_PORT: u16 = 27902;

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

async fn raw_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind(SocketAddrV4::new(ip(1), RAW_PORT))
        .await
        .expect("raw listen");
    let s = TcpSocket::new_v4().expect("socket");
    s.bind(SocketAddrV4::new(ip(2), 0).into()).expect("bind");
    let (c, a) = tokio::join!(
        s.connect(SocketAddrV4::new(ip(1), RAW_PORT).into()),
        l.accept()
    );
    let (c, (a, _)) = (c.expect("connect"), a.expect("accept"));
    c.set_nodelay(true).expect("nodelay");
    a.set_nodelay(true).expect("nodelay");
    (c, a)
}

async fn raw_rtt(n: usize) -> Vec<Duration> {
    let (mut c, mut a) = raw_pair().await;
    let server = tokio::spawn(async move {
        let mut req = [0u8; 32];
        let rep = [0u8; 24];
        while a.read_exact(&mut req).await.is_ok() {
            if a.write_all(&rep).await.is_err() {
                break;
            }
        }
    });
    let mut lat = Vec::with_capacity(n);
    let (req, mut rep) = ([1u8; 32], [0u8; 24]);
    for _ in 0..n {
        let t = Instant::now();
        c.write_all(&req).await.expect("write");
        c.read_exact(&mut rep).await.expect("read");
        lat.push(t.elapsed());
    }
    drop(c);
    let _ = server.await;
    lat
}

async fn o2net_rtt(a: &Net, n: usize) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = a.send(1, 100, 1, &b"12345678"[..]).await;
        lat.push(t.elapsed());
        assert_eq!(r.expect("send"), 0);
    }
    lat
}

async fn raw_oneway(secs: f64) -> f64 {
    let (mut c, mut a) = raw_pair().await;
    let count = Arc::new(AtomicU64::new(0));
    let cnt = count.clone();
    let server = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut bytes = 0u64;
        while let Ok(n) = a.read(&mut buf).await {
            if n == 0 {
                break;
            }
            bytes += n as u64;
            cnt.store(bytes / 32, Ordering::Relaxed);
        }
    });
    let frame = [7u8; 32];
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        for _ in 0..64 {
            c.write_all(&frame).await.expect("write");
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let received = count.load(Ordering::Relaxed);
    drop(c);
    let _ = server.await;
    received as f64 / elapsed
}

async fn o2net_oneway(a: &Net, secs: f64, senders: usize) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let (a, done) = (a.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    a.send(1, 100, 1, &b"12345678"[..]).await.expect("send");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("sender");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::var("O2NET_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let fence: o2net::FenceFn = Arc::new(|r: &str| panic!("fenced: {r}"));
        let b = Net::start(NetConfig::loopback(1, 2, PORT), fence.clone()).expect("node 1");
        let a = Net::start(NetConfig::loopback(2, 2, PORT), fence).expect("node 2");
        b.register_handler(100, 1, 64, |_| 0).expect("handler");
        for n in [&a, &b] {
            n.heartbeat_up(1);
            n.heartbeat_up(2);
        }
        // Warm-up (also waits for the connection).
        let _ = o2net_rtt(&a, 2000).await;
        let _ = raw_rtt(2000).await;

        let n = 20_000;
        let (mut raw, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            raw.extend(raw_rtt(n).await);
            ours.extend(o2net_rtt(&a, n).await);
        }
        let (r50, r99) = (percentile(&mut raw, 0.5), percentile(&mut raw, 0.99));
        let (o50, o99) = (percentile(&mut ours, 0.5), percentile(&mut ours, 0.99));
        println!("round trip, {} samples each, interleaved:", raw.len());
        println!("  raw TCP ping-pong   p50 {:>7.1} us  p99 {:>7.1} us", us(r50), us(r99));
        println!("  o2net send+status   p50 {:>7.1} us  p99 {:>7.1} us", us(o50), us(o99));
        println!("  ratio p50 {:.2}x (target <= 1.5x)", us(o50) / us(r50));

        let raw_tp = raw_oneway(secs).await;
        let mut best = (0.0, 0);
        for senders in [16, 64, 256] {
            let tp = o2net_oneway(&a, secs, senders).await;
            println!("  o2net one-way, {senders:>3} concurrent senders: {:>9.0} msg/s", tp);
            if tp > best.0 {
                best = (tp, senders);
            }
        }
        println!("one-way small messages on one connection ({secs} s each):");
        println!("  raw TCP, one 32-byte write per message: {:>9.0} msg/s", raw_tp);
        println!(
            "  o2net, best ({} senders):               {:>9.0} msg/s  ({:.2}x raw; target >= 300000 msg/s)",
            best.1,
            best.0,
            best.0 / raw_tp
        );
        a.shutdown();
        b.shutdown();
    });
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
