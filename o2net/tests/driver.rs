//! The tokio driver on real loopback sockets: nodes on 127.0.0.N in one
//! process, a test peer written from the project's docs alone (std sockets and
//! hand-written bytes, not our codec), a partition made with a cuttable TCP
//! relay, and garbage from raw clients. Timeouts are shortened (heartbeat
//! period 100 ms, idle 1 s) to keep the tests fast.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use o2net::{errno, FenceFn, Net, NetConfig, NodeInfo, PeerState};

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

fn nodes(count: u8, port: u16) -> Vec<NodeInfo> {
    (1..=count)
        .map(|n| NodeInfo {
            num: n,
            name: format!("n{n}"),
            addr: SocketAddrV4::new(ip(n), port),
        })
        .collect()
}

/// Shortened timers: heartbeat period 100 ms, dead threshold 3 (handshake
/// heartbeat timeout 200 ms, quorum delay 500 ms), idle 1 s, keepalive
/// 200 ms, reconnect 200 ms.
fn short(local: u8, nodes: Vec<NodeInfo>) -> NetConfig {
    let mut c = NetConfig::new(local, nodes).with_heartbeat(100, 3);
    c.idle_timeout_ms = 1000;
    c.keepalive_delay_ms = 200;
    c.reconnect_delay_ms = 200;
    c
}

/// The handshake `short()` nodes send, written out from the table of docs/o2net.md.
const SHORT_HANDSHAKE: [u8; 32] = [
    0, 0, 0, 0, 0, 0, 0, 11, // protocol_version 11
    0, 0, 0, 0, 0, 0, 0, 1, // connector_id 1
    0, 0, 0, 200, // o2hb_heartbeat_timeout_ms = 100 × (3 − 1)
    0, 0, 0x03, 0xe8, // o2net_idle_timeout_ms 1000
    0, 0, 0, 200, // o2net_keepalive_delay_ms
    0, 0, 0, 200, // o2net_reconnect_delay_ms
];

fn keepalive(magic_lo: u8) -> [u8; 24] {
    let mut b = [0u8; 24];
    b[0] = 0xfa;
    b[1] = magic_lo;
    b
}

#[derive(Clone, Default)]
struct Fences(Arc<Mutex<Vec<String>>>);

impl Fences {
    fn hook(&self) -> FenceFn {
        let me = self.clone();
        Arc::new(move |r: &str| me.0.lock().unwrap().push(r.to_owned()))
    }
    fn get(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn start(cfg: NetConfig, fences: &Fences) -> Net {
    // A restarted node may find its previous listener not yet dropped.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Net::start(cfg.clone(), fences.hook()) {
            Ok(n) => return n,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("start node {}: {e}", cfg.local),
        }
    }
}

async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn state(net: &Net, peer: u8) -> PeerState {
    net.peer_stats()
        .into_iter()
        .find(|s| s.node == peer)
        .map(|s| s.state)
        .expect("configured peer")
}

fn logged(net: &Net, text: &str) -> bool {
    net.recent_log().iter().any(|l| l.contains(text))
}

fn all_heartbeat(nets: &[&Net], count: u8) {
    for n in nets {
        for p in 1..=count {
            n.heartbeat_up(p);
        }
    }
}

fn read_exact_timeout(s: &mut TcpStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).expect("bytes from our node");
    b
}

/// Node 1 of two, both reported heartbeating: node 2 is the test's docs-only peer.
fn node_1_of_2(port: u16) -> Net {
    let net = start(short(1, nodes(2, port)), &Fences::default());
    net.heartbeat_up(1);
    net.heartbeat_up(2);
    net
}

/// Connects from `from_ip` (any port) to `to`, as a peer node would.
fn raw_connect(from_ip: Ipv4Addr, to: SocketAddrV4) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddrV4::new(from_ip, 0).into()).unwrap();
    s.connect(&to.into()).unwrap();
    let s: TcpStream = s.into();
    s.set_nodelay(true).unwrap();
    s
}

/// True once the peer closed the connection (EOF or reset) within 5 s.
fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue, // our handshake, if it was sent
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_only_peer_handshakes_and_exchanges_keepalives_and_messages() {
    let port = 27101;
    let net = node_1_of_2(port);
    net.register_handler(7, 0x1234_5678, 16, |r| {
        assert_eq!(&r.payload[..], b"ping");
        -22
    })
    .unwrap();

    let (quiet_done, quiet) = tokio::sync::oneshot::channel::<()>();
    let peer = tokio::task::spawn_blocking(move || {
        // Node 2 is the higher number, so it connects to node 1.
        let mut s = raw_connect(ip(2), SocketAddrV4::new(ip(1), port));
        // The acceptor sends its handshake at once.
        assert_eq!(read_exact_timeout(&mut s, 32), SHORT_HANDSHAKE);
        s.write_all(&SHORT_HANDSHAKE).unwrap();
        // Our keepalive request is answered with 0xfa58 and 22 zero bytes.
        s.write_all(&keepalive(0x57)).unwrap();
        assert_eq!(read_exact_timeout(&mut s, 24), keepalive(0x58));
        // A request: magic, len 4, type 7, pad, sys 0, status 0, key, msg_num 5.
        let mut req = vec![
            0xfa, 0x55, 0, 4, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0,
            5,
        ];
        req.extend_from_slice(b"ping");
        s.write_all(&req).unwrap();
        let mut want = [0u8; 24];
        want[..24].copy_from_slice(&req[..24]);
        want[1] = 0x56; // status magic
        want[2..4].copy_from_slice(&[0, 0]); // no payload
        want[8..12].copy_from_slice(&[0, 0, 0, 0]); // O2NET_ERR_NONE
        want[12..16].copy_from_slice(&(-22i32).to_be_bytes());
        // Keepalives from the node may come first if we were slow.
        let reply = loop {
            let f = read_exact_timeout(&mut s, 24);
            if f[..2] == [0xfa, 0x57] {
                s.write_all(&keepalive(0x58)).unwrap();
                continue;
            }
            break f;
        };
        assert_eq!(reply, want);
        // Stay quiet: the node must send KEEP_REQ after keepalive_delay.
        let t = Instant::now();
        let ka = read_exact_timeout(&mut s, 24);
        assert_eq!(ka, keepalive(0x57));
        assert!(
            t.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
        s.write_all(&keepalive(0x58)).unwrap();
        let _ = quiet_done.send(());
        // Now the node sends us a request; answer it with status 99.
        let hdr = loop {
            let f = read_exact_timeout(&mut s, 24);
            if f[..2] == [0xfa, 0x57] {
                s.write_all(&keepalive(0x58)).unwrap();
                continue;
            }
            break f;
        };
        assert_eq!(&hdr[..2], &[0xfa, 0x55]);
        assert_eq!(&hdr[4..6], &[0, 9], "msg_type 9");
        let len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
        assert_eq!(read_exact_timeout(&mut s, len), b"hello world");
        assert_eq!(&hdr[20..24], &[0, 0, 0, 0], "first msg_num is 0");
        let mut rep = hdr.clone();
        rep[1] = 0x56;
        rep[2..4].copy_from_slice(&[0, 0]);
        rep[12..16].copy_from_slice(&99i32.to_be_bytes());
        s.write_all(&rep).unwrap();
        s
    });
    wait_for("node 2 connected", 5, || {
        state(&net, 2) == PeerState::Connected
    })
    .await;
    quiet.await.expect("peer saw our keepalive");
    let r = net
        .send_vectored(
            2,
            9,
            0xdead_beef,
            &[
                std::io::IoSlice::new(b"hello "),
                std::io::IoSlice::new(b"world"),
            ],
        )
        .await;
    assert_eq!(r.unwrap(), 99);
    let _stream = peer.await.unwrap();
    assert!(logged(
        &net,
        &format!("o2net: Accepted connection from node n2 (num 2) at 127.0.0.2:{port}")
    ));
    let st = net.peer_stats();
    assert!(st[0].traffic.keepalives_received >= 2, "{st:?}");
    assert_eq!(st[0].traffic.msgs_received, 2);
    assert_eq!(st[0].traffic.msgs_sent, 2);
    net.shutdown();
}

/// Our node 2 of a two-node `short()` cluster on `port`, both nodes heartbeating, where node
/// 1 is only a listening socket the test answers from by hand.
fn node2_facing_a_bare_node1(port: u16, fences: &Fences) -> (TcpListener, Net) {
    let listener = TcpListener::bind(SocketAddrV4::new(ip(1), port)).unwrap();
    let net = start(short(2, nodes(2, port)), fences);
    net.heartbeat_up(1);
    net.heartbeat_up(2);
    (listener, net)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_node_connects_from_its_own_address_to_a_spec_only_listener() {
    let port = 27201;
    let fences = Fences::default();
    let (listener, net) = node2_facing_a_bare_node1(port, &fences);
    let peer = tokio::task::spawn_blocking(move || {
        let (mut s, from) = listener.accept().unwrap();
        assert_eq!(
            from.ip(),
            std::net::IpAddr::V4(ip(2)),
            "bound to its own address"
        );
        // The connector sends its handshake first.
        assert_eq!(read_exact_timeout(&mut s, 32), SHORT_HANDSHAKE);
        s.write_all(&SHORT_HANDSHAKE).unwrap();
        // Answer keepalives for a while.
        for _ in 0..3 {
            assert_eq!(read_exact_timeout(&mut s, 24), keepalive(0x57));
            s.write_all(&keepalive(0x58)).unwrap();
        }
        s
    });
    let s = peer.await.unwrap();
    assert_eq!(state(&net, 1), PeerState::Connected);
    assert!(logged(
        &net,
        &format!("o2net: Connected to node n1 (num 1) at 127.0.0.1:{port}")
    ));
    drop(s);
    net.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_talk_refuse_lower_connectors_and_reconnect_after_restart() {
    let port = 27301;
    let fences = Fences::default();
    let mk = |n: u8| start(short(n, nodes(3, port)), &fences);
    let (n1, n2, n3) = (mk(1), mk(2), mk(3));
    for (net, n) in [(&n1, 1u8), (&n2, 2), (&n3, 3)] {
        net.register_handler(50, 7, 100, move |r| i32::from(n) * 100 + i32::from(r.node))
            .unwrap();
    }
    all_heartbeat(&[&n1, &n2, &n3], 3);
    let nets = [&n1, &n2, &n3];
    for (i, a) in nets.iter().enumerate() {
        for b in 1..=3u8 {
            if usize::from(b) != i + 1 {
                let r = a.send(b, 50, 7, &b"x"[..]).await;
                assert_eq!(r.unwrap(), i32::from(b) * 100 + i as i32 + 1);
            }
        }
    }
    assert!(logged(
        &n1,
        &format!("Accepted connection from node n3 (num 3) at 127.0.0.3:{port}")
    ));
    assert!(logged(
        &n3,
        &format!("Connected to node n2 (num 2) at 127.0.0.2:{port}")
    ));
    // A lower node connecting is refused with the kernel's notice.
    let mut c = raw_connect(ip(1), SocketAddrV4::new(ip(2), port));
    assert!(closed_by_peer(&mut c));
    assert_eq!(n2.counters().refused_lower_node, 1);
    assert!(logged(
        &n2,
        "o2net: Unexpected connect attempt seen at node 'n2' (2, 127.0.0.2:"
    ));

    // Node 1 restarts: the others lose it, heartbeat says down then up.
    n1.shutdown();
    wait_for("loss seen", 5, || state(&n3, 1) != PeerState::Connected).await;
    assert_eq!(
        n3.send(1, 50, 7, &b"x"[..]).await.unwrap_err().errno(),
        -errno::ENOTCONN
    );
    n2.heartbeat_down(1);
    n3.heartbeat_down(1);
    let n1 = mk(1);
    n1.register_handler(50, 7, 100, |r| 100 + i32::from(r.node))
        .unwrap();
    all_heartbeat(&[&n1], 3);
    // o2hb may report from its own (non-tokio) thread.
    let (h2, h3) = (n2.clone(), n3.clone());
    std::thread::spawn(move || {
        h2.heartbeat_up(1);
        h3.heartbeat_up(1);
    })
    .join()
    .unwrap();
    assert_eq!(n3.send(1, 50, 7, &b"x"[..]).await.unwrap(), 103);
    assert_eq!(n2.send(1, 50, 7, &b"x"[..]).await.unwrap(), 102);
    assert_eq!(n1.send(3, 50, 7, &b"x"[..]).await.unwrap(), 301);
    assert!(fences.get().is_empty());
    for n in [&n1, &n2, &n3] {
        n.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_are_released_when_the_peer_is_killed() {
    let port = 27401;
    let fences = Fences::default();
    // Node 1 has its own runtime, as its own daemon would: its handler
    // blocks one of its threads, which must not stall node 2.
    let rt1 = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let n1 = {
        let _in_rt1 = rt1.enter();
        start(short(1, nodes(2, port)), &fences)
    };
    let n2 = start(short(2, nodes(2, port)), &fences);
    // Node 1's handler blocks until released: the senders on node 2 wait.
    let release = Arc::new(AtomicBool::new(false));
    let r2 = release.clone();
    n1.register_handler(60, 0, 16, move |_| {
        let t = Instant::now();
        while !r2.load(Ordering::Acquire) && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        0
    })
    .unwrap();
    all_heartbeat(&[&n1, &n2], 2);
    wait_for("connected", 5, || state(&n2, 1) == PeerState::Connected).await;
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let n2 = n2.clone();
            tokio::spawn(async move { n2.send(1, 60, 0, &b"x"[..]).await })
        })
        .collect();
    wait_for("sends in flight", 5, || {
        n2.peer_stats()[0].waiting_sends == 4
    })
    .await;
    let killed = Instant::now();
    n1.shutdown();
    for s in senders {
        let r = tokio::time::timeout(Duration::from_secs(3), s)
            .await
            .expect("sender released")
            .unwrap();
        assert_eq!(r.unwrap_err().errno(), -errno::EHOSTDOWN);
    }
    assert!(killed.elapsed() < Duration::from_secs(2));
    release.store(true, Ordering::Release);
    // New sends fail at once rather than hang.
    assert_eq!(
        n2.send(1, 60, 0, &b"x"[..]).await.unwrap_err().errno(),
        -errno::ENOTCONN
    );
    n2.shutdown();
    rt1.shutdown_background();
}

/// A TCP relay that can cut every connection through it and refuse new ones.
struct Relay {
    cut: Arc<AtomicBool>,
    kill: Arc<tokio::sync::Notify>,
}

impl Relay {
    /// Listens on `listen` and forwards to `to`, connecting from `from_ip`
    /// so that the target still sees the real node's address.
    async fn start(listen: SocketAddrV4, to: SocketAddrV4, from_ip: Ipv4Addr) -> Relay {
        let l = tokio::net::TcpListener::bind(listen).await.unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let kill = Arc::new(tokio::sync::Notify::new());
        let (c, k) = (cut.clone(), kill.clone());
        tokio::spawn(async move {
            while let Ok((mut a, _)) = l.accept().await {
                if c.load(Ordering::Acquire) {
                    continue; // dropped: refused
                }
                let sock = tokio::net::TcpSocket::new_v4().unwrap();
                sock.bind(SocketAddrV4::new(from_ip, 0).into()).unwrap();
                let Ok(mut b) = sock.connect(to.into()).await else {
                    continue;
                };
                let k = k.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                        _ = k.notified() => {}
                    }
                });
            }
        });
        Relay { cut, kill }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.kill.notify_waiters();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_fences_the_minority_and_keeps_the_majority() {
    let port = 27501;
    let relay_port = 27502;
    let fences1 = Fences::default();
    let fences2 = Fences::default();
    let fences3 = Fences::default();
    let n1 = start(short(1, nodes(3, port)), &fences1);
    let n2 = start(short(2, nodes(3, port)), &fences2);
    // Node 3 reaches nodes 1 and 2 through relays it can be cut off by.
    let mut view3 = nodes(3, port);
    view3[0].addr.set_port(relay_port);
    view3[1].addr.set_port(relay_port);
    let r31 = Relay::start(
        SocketAddrV4::new(ip(1), relay_port),
        SocketAddrV4::new(ip(1), port),
        ip(3),
    )
    .await;
    let r32 = Relay::start(
        SocketAddrV4::new(ip(2), relay_port),
        SocketAddrV4::new(ip(2), port),
        ip(3),
    )
    .await;
    let n3 = start(short(3, view3), &fences3);
    all_heartbeat(&[&n1, &n2, &n3], 3);
    for net in [&n1, &n2, &n3] {
        wait_for("full mesh", 5, || net.connected_nodes().len() == 3).await;
    }
    // Heartbeat continues everywhere; only the network is cut.
    r31.cut();
    r32.cut();
    wait_for("node 3 fenced", 5, || !fences3.get().is_empty()).await;
    assert_eq!(
        fences3.get(),
        vec!["fencing this node because it is only connected to 1 nodes and 2 is needed to make a quorum out of 3 heartbeating nodes".to_string()]
    );
    wait_for("majority decided", 5, || {
        logged(&n1, "not fencing this node") && logged(&n2, "not fencing this node")
    })
    .await;
    assert!(fences1.get().is_empty() && fences2.get().is_empty());
    assert_eq!(
        n1.send(2, 1, 1, &b""[..]).await.unwrap_err().errno(),
        -errno::ENOPROTOOPT
    );
    for n in [&n1, &n2, &n3] {
        n.shutdown();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peer_hits_the_idle_timeout_and_the_higher_node_fences() {
    let port = 27601;
    let fences = Fences::default();
    let (listener, net) = node2_facing_a_bare_node1(port, &fences);
    // The peer handshakes, then never says anything again.
    let (mut s, _) = tokio::task::spawn_blocking(move || listener.accept().unwrap())
        .await
        .unwrap();
    let _ = read_exact_timeout(&mut s, 32);
    s.write_all(&SHORT_HANDSHAKE).unwrap();
    wait_for("connected", 5, || state(&net, 1) == PeerState::Connected).await;
    let t = Instant::now();
    wait_for("idle notice", 5, || {
        logged(
            &net,
            &format!(
                "o2net: Connection to node n1 (num 1) at 127.0.0.1:{port} has been idle for 1."
            ),
        )
    })
    .await;
    assert!(t.elapsed() >= Duration::from_millis(900));
    assert_eq!(state(&net, 1), PeerState::Idle);
    wait_for("fence", 5, || !fences.get().is_empty()).await;
    assert!(fences.get()[0].contains(
        "half-quorum of 1 out of 2 nodes which doesn't include the lowest active node 1"
    ));
    net.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_raw_clients_is_closed_counted_logged_and_harmless() {
    let port = 27701;
    let fences = Fences::default();
    // Normal timers here: no quorum decision during the test.
    let cfg = |n| NetConfig::new(n, nodes(3, port));
    let n1 = start(cfg(1), &fences);
    let n2 = start(cfg(2), &fences);
    n2.register_handler(5, 5, 8, |_| 5).unwrap();
    n2.register_handler(6, 6, 8, |_| panic!("handler bug"))
        .unwrap();
    all_heartbeat(&[&n1, &n2], 3);
    let target = SocketAddrV4::new(ip(1), port);
    let client = move |from: Ipv4Addr, bytes: Vec<u8>| {
        tokio::task::spawn_blocking(move || {
            let mut s = raw_connect(from, target);
            let _ = s.write_all(&bytes);
            closed_by_peer(&mut s)
        })
    };
    let good_hs: Vec<u8> = {
        // The default handshake: 11, 1, 60000, 30000, 2000, 2000.
        let mut b = vec![0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 1];
        for v in [60000u32, 30000, 2000, 2000] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b
    };
    let mut wrong_version = good_hs.clone();
    wrong_version[7] = 10;
    let mut bad_magic = good_hs.clone();
    bad_magic.extend_from_slice(&[
        0xde, 0xad, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    let mut too_long = good_hs.clone();
    too_long.extend_from_slice(&[
        0xfa, 0x55, 0x0f, 0xe9, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    let random: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();

    assert!(
        client(ip(9), b"hello".to_vec()).await.unwrap(),
        "unknown address"
    );
    assert!(client(ip(3), random).await.unwrap(), "random bytes");
    assert!(client(ip(3), wrong_version).await.unwrap(), "wrong version");
    assert!(client(ip(3), bad_magic).await.unwrap(), "wrong magic");
    assert!(client(ip(3), too_long).await.unwrap(), "length 4073");

    let c = n1.counters();
    assert_eq!(c.refused_unknown_address, 1);
    assert_eq!(c.handshake_rejected, 2);
    assert_eq!(c.framing_errors, 2);
    assert!(logged(
        &n1,
        "o2net: Attempt to connect from unknown node at 127.0.0.9:"
    ));
    assert!(logged(
        &n1,
        &format!("o2net: node n3 (num 3) at 127.0.0.3:{port} Advertised net protocol version 10 but 11 is required. Disconnecting.")
    ));
    assert!(logged(&n1, "bad magic 0xdead"));
    assert!(logged(
        &n1,
        "4073 payload bytes, more than the maximum 4072"
    ));
    // The node keeps serving its real peer, even past a panicking handler
    // (whose sender gets −EIO).
    assert_eq!(n1.send(2, 5, 5, &b"ok"[..]).await.unwrap(), 5);
    assert_eq!(n1.send(2, 6, 6, &b"ok"[..]).await.unwrap(), -errno::EIO);
    assert_eq!(n1.send(2, 5, 5, &b"ok"[..]).await.unwrap(), 5);
    assert!(fences.get().is_empty());
    n1.shutdown();
    n2.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_socket_keeps_every_frame_whole_and_every_reply_matched() {
    let port = 27801;
    const N: usize = 3000;
    let fences = Fences::default();
    let (listener, net) = node2_facing_a_bare_node1(port, &fences);
    let (all_sent, go) = std::sync::mpsc::channel::<()>();
    let peer = tokio::task::spawn_blocking(move || {
        let (mut s, _) = listener.accept().unwrap();
        assert_eq!(read_exact_timeout(&mut s, 32), SHORT_HANDSHAKE);
        s.write_all(&SHORT_HANDSHAKE).unwrap();
        // Don't read until all ~12 MB of requests are queued in our node.
        go.recv_timeout(Duration::from_secs(10)).unwrap();
        let mut nums = std::collections::HashSet::new();
        while nums.len() < N {
            let h = read_exact_timeout(&mut s, 24);
            match h[1] {
                0x57 => s.write_all(&keepalive(0x58)).unwrap(),
                0x58 => {}
                0x55 => {
                    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
                    assert_eq!(len, 4072);
                    let p = read_exact_timeout(&mut s, len);
                    let idx = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
                    assert!(
                        p[4..].iter().all(|&b| b == idx as u8),
                        "payload {idx} intact"
                    );
                    assert!(nums.insert(u32::from_be_bytes([h[20], h[21], h[22], h[23]])));
                    let mut rep = h.clone();
                    rep[1] = 0x56;
                    rep[2..4].copy_from_slice(&[0, 0]);
                    rep[12..16].copy_from_slice(&idx.to_be_bytes());
                    s.write_all(&rep).unwrap();
                }
                m => panic!("unexpected magic byte {m:#x}"),
            }
        }
        // All outstanding at once: the kernel's lowest-free ids 0..N.
        assert_eq!(nums, (0..N as u32).collect());
        s
    });
    wait_for("connected", 5, || state(&net, 1) == PeerState::Connected).await;
    let sends: Vec<_> = (0..N as u32)
        .map(|i| {
            let net = net.clone();
            tokio::spawn(async move {
                let mut p = vec![i as u8; 4072];
                p[..4].copy_from_slice(&i.to_be_bytes());
                (i, net.send(1, 11, 0, p).await)
            })
        })
        .collect();
    wait_for("all requests queued", 10, || {
        net.peer_stats()[0].waiting_sends == N
    })
    .await;
    all_sent.send(()).unwrap();
    for t in sends {
        let (i, r) = t.await.unwrap();
        assert_eq!(r.unwrap(), i as i32);
    }
    let _s = peer.await.unwrap();
    assert!(fences.get().is_empty());
    net.shutdown();
}

#[test]
fn starting_outside_a_runtime_is_an_error_not_a_panic() {
    let e = Net::start(short(1, nodes(2, 27991)), Fences::default().hook()).unwrap_err();
    assert!(e.to_string().contains("tokio runtime"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_then_calls_back_with_the_status_or_the_failure() {
    let port = 27921;
    let fences = Fences::default();
    let n1 = start(short(1, nodes(2, port)), &fences);
    let n2 = start(short(2, nodes(2, port)), &fences);
    n2.register_handler(11, 1, 16, |r| r.payload.len() as i32)
        .unwrap();
    all_heartbeat(&[&n1, &n2], 2);
    wait_for("nodes connected", 5, || {
        state(&n1, 2) == PeerState::Connected
    })
    .await;
    // The peer handler's status comes back through the callback.
    let (tx, rx) = tokio::sync::oneshot::channel();
    n1.send_then(2, 11, 1, &b"seven!!"[..], move |r| {
        let _ = tx.send(r);
    });
    let r = tokio::time::timeout(Duration::from_secs(5), rx).await;
    assert_eq!(
        r.expect("callback called").expect("sent").expect("status"),
        7
    );
    // A node that is not configured fails at once, with the kernel's -ENOTCONN.
    let (tx, rx) = std::sync::mpsc::channel();
    n1.send_then(9, 11, 1, &b"x"[..], move |r| {
        let _ = tx.send(r.map_err(|e| e.errno()));
    });
    assert_eq!(
        rx.try_recv().expect("called before returning"),
        Err(-errno::ENOTCONN)
    );
    // A stopped node fails at once too.
    n1.shutdown();
    let (tx, rx) = std::sync::mpsc::channel();
    n1.send_then(2, 11, 1, &b"x"[..], move |r| {
        let _ = tx.send(r.map_err(|e| e.errno()));
    });
    assert_eq!(rx.try_recv(), Ok(Err(-errno::ESRCH)));
    n2.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handlers_own_send_goes_out_in_one_write_with_its_status_reply() {
    let port = 27931;
    let net = node_1_of_2(port);
    // The handler sends a request back to the requester (as o2dlm's master sends the proxy
    // AST while it handles CREATE_LOCK) and answers 5.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let me = net.clone();
    net.register_handler(7, 0x1234_5678, 16, move |_| {
        let done_tx = done_tx.clone();
        me.send_then(2, 9, 0x1234_5678, &b"ast"[..], move |r| {
            let _ = done_tx.send(r.map_err(|e| e.errno()));
        });
        // Work after the send: written at once, the request would reach the peer alone.
        std::thread::sleep(Duration::from_millis(20));
        5
    })
    .unwrap();
    let peer = tokio::task::spawn_blocking(move || {
        let mut s = raw_connect(ip(2), SocketAddrV4::new(ip(1), port));
        assert_eq!(read_exact_timeout(&mut s, 32), SHORT_HANDSHAKE);
        s.write_all(&SHORT_HANDSHAKE).unwrap();
        // A request: magic, len 4, type 7, pad, sys 0, status 0, key, msg_num 3.
        let mut req = vec![
            0xfa, 0x55, 0, 4, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0,
            3,
        ];
        req.extend_from_slice(b"ping");
        s.write_all(&req).unwrap();
        // One read gets both frames: they were written with one syscall (a keepalive may
        // only come after 200 ms of silence).
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 256];
        let n = s.read(&mut b).expect("bytes from our node");
        let got = b.get(..n).unwrap_or_default().to_vec();
        assert_eq!(
            n,
            24 + 3 + 24,
            "the node's request and its status in one read: {got:02x?}"
        );
        assert_eq!(
            &got[..2],
            &[0xfa, 0x55],
            "the handler's request comes first"
        );
        assert_eq!(&got[4..6], &[0, 9]);
        assert_eq!(&got[24..27], b"ast");
        assert_eq!(&got[27..29], &[0xfa, 0x56], "then the status reply");
        assert_eq!(&got[27 + 20..27 + 24], &[0, 0, 0, 3], "of msg_num 3");
        assert_eq!(&got[27 + 12..27 + 16], &5i32.to_be_bytes());
        // Answer the node's request with status 6.
        let mut rep = got[..24].to_vec();
        rep[1] = 0x56;
        rep[2..4].copy_from_slice(&[0, 0]);
        rep[12..16].copy_from_slice(&6i32.to_be_bytes());
        s.write_all(&rep).unwrap();
        s
    });
    let _stream = peer.await.unwrap();
    let got = tokio::task::spawn_blocking(move || done_rx.recv_timeout(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(got, Ok(Ok(6)), "the callback has the peer's status");
    net.shutdown();
}
