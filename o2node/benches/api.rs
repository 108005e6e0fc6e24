//! End-to-end benchmarks of the node's Rust API on loopback TCP (whole nodes, heartbeating on a
//! shared region in memory), each with a baseline measured in the same run:
//! `cargo bench -p o2node --bench api`.
//!
//! 1. Uncontended lock + unlock through `Domain::lock` / `LockHandle::unlock` on a resource
//!    this node masters, on a one-thread runtime (target: >= 1M pairs/s on one core);
//!    baseline: the same pairs driven straight into the domain core (no API, no runtime).
//! 2. Remote-master acquire latency: node 1 takes PR on a resource node 2 masters
//!    (CREATE_LOCK, reply, PROXY_AST); baseline: an o2net request round trip between the
//!    same nodes, through the same driver, to a handler that answers at once.
//! 3. EX hand-off between two nodes: one task per node locks EX, holds it until the other's
//!    request arrives as a BAST, unlocks, and asks again; hand-offs/s, against the o2net
//!    round trips per second of the same pair.
//! 4. Memory per idle resource: one million resources created (LKM_LOCAL lock + unlock) and
//!    left idle in a domain core, resident set size before and after (target: <= 512 MiB).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use o2dlm::domain::{DomainConfig, DomainCore, Input, Output};
use o2dlm::wire::{DomainName, LkmFlags, LockMode, LockName};
use o2node::Node;

#[path = "../tests/cluster/mod.rs"]
mod cluster;

/// Nodes 1..=n on `port`, online.
async fn start(n: u8, port: u16) -> Vec<Node> {
    cluster::Cluster::start_on(port, n, 8000).await.nodes
}

/// The round-trip baseline's message: an application type and key clear of o2hb's and
/// the DLM's.
const PING_TYPE: u16 = 0x7f00;
const PING_KEY: u32 = 0x1234;

/// A domain core of node 1 alone, joined, driven straight (no API, no runtime).
struct CoreAlone {
    core: DomainCore,
    out: Vec<Output>,
}

impl CoreAlone {
    fn new(cfg: DomainConfig) -> CoreAlone {
        let mut core = DomainCore::new(cfg);
        core.handle(0, Input::NodeUp(1));
        core.handle(0, Input::Join);
        let mut out = Vec::new();
        core.take_outputs(&mut out);
        CoreAlone { core, out }
    }

    /// The `i`th EX lock (with `flags`) + unlock of `name`; the outputs are dropped.
    fn pair(&mut self, i: u64, name: LockName, flags: LkmFlags) {
        let cookie = (1 << 56) | (i + 1);
        let lock = Input::Lock {
            cookie,
            name,
            mode: LockMode::Ex,
            flags,
        };
        self.core.handle(0, lock);
        let unlock = Input::Unlock {
            cookie,
            flags: LkmFlags::empty(),
            lvb: [0; 64],
        };
        self.core.handle(0, unlock);
        self.out.clear();
        self.core.take_outputs(&mut self.out);
    }
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p) as usize;
    v.get(i).copied().unwrap_or_default()
}

fn local_pairs() {
    const PAIRS: u64 = 1_000_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let api_rate = rt.block_on(async {
        let nodes = start(1, 27001).await;
        let d = nodes[0].join(b"bench", true).await.expect("join");
        let name = LockName::new(b"local").expect("name");
        // Warm up (mastery, allocations).
        for _ in 0..10_000 {
            let l = d
                .lock(name.as_bytes(), LockMode::Ex, LkmFlags::empty())
                .await
                .expect("lock");
            l.unlock().await.expect("unlock");
        }
        let t = Instant::now();
        for _ in 0..PAIRS {
            let l = d
                .lock(name.as_bytes(), LockMode::Ex, LkmFlags::empty())
                .await
                .expect("lock");
            l.unlock().await.expect("unlock");
        }
        let rate = PAIRS as f64 / t.elapsed().as_secs_f64();
        nodes[0].shutdown();
        rate
    });
    // Baseline: the domain core alone.
    let mut core = CoreAlone::new(DomainConfig::new(
        1,
        DomainName::new(b"bench").expect("name"),
    ));
    let name = LockName::new(b"local").expect("name");
    let t = Instant::now();
    for i in 0..PAIRS {
        core.pair(i, name, LkmFlags::empty());
    }
    let core_rate = PAIRS as f64 / t.elapsed().as_secs_f64();
    println!(
        "local lock+unlock through the API (1 thread): {:.0} pairs/s; domain core alone: {:.0} pairs/s; ratio {:.2}",
        api_rate,
        core_rate,
        api_rate / core_rate
    );
}

fn remote_and_handoff(threads: usize, port: u16) {
    println!("-- two nodes on a tokio runtime with {threads} worker thread(s)");
    let rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .expect("runtime")
    };
    rt.block_on(async {
        let nodes = start(2, port).await;
        // Baseline handler: answers at once.
        nodes[1]
            .register_app_handler(PING_TYPE, PING_KEY, 64)
            .expect("handler");
        let d1 = nodes[0].join(b"bench", true).await.expect("join 1");
        let d2 = nodes[1].join(b"bench", true).await.expect("join 2");
        // Node 2 masters "remote": it asks first.
        let l = d2
            .lock("remote", LockMode::Pr, LkmFlags::empty())
            .await
            .expect("master");
        l.unlock().await.expect("unlock");
        assert_eq!(d1.owner_of("remote"), None);
        const N: usize = 20_000;
        let mut rtt = Vec::with_capacity(N);
        let mut acq = Vec::with_capacity(N);
        let ping = Bytes::from(vec![0u8; 16]);
        for _ in 0..500 {
            nodes[0]
                .send_app(2, PING_TYPE, PING_KEY, ping.clone())
                .await
                .expect("send");
        }
        for _ in 0..N {
            let t = Instant::now();
            nodes[0]
                .send_app(2, PING_TYPE, PING_KEY, ping.clone())
                .await
                .expect("send");
            rtt.push(t.elapsed());
            let t = Instant::now();
            let l = d1
                .lock("remote", LockMode::Pr, LkmFlags::empty())
                .await
                .expect("remote lock");
            acq.push(t.elapsed());
            l.unlock().await.expect("unlock");
        }
        assert_eq!(d1.owner_of("remote"), Some(2));
        let [r10, r50, r90, r99] = [0.1, 0.5, 0.9, 0.99].map(|p| percentile(&mut rtt, p));
        let [a10, a50, a90, a99] = [0.1, 0.5, 0.9, 0.99].map(|p| percentile(&mut acq, p));
        println!(
            "remote-master PR acquire ({N} samples): p10 {a10:.1?} p50 {a50:.1?} p90 {a90:.1?} p99 {a99:.1?}; \
             o2net round trip: p10 {r10:.1?} p50 {r50:.1?} p90 {r90:.1?} p99 {r99:.1?}; p50 ratio {:.2}",
            a50.as_secs_f64() / r50.as_secs_f64()
        );

        // EX hand-off between the two nodes: each holder keeps EX until the other node's
        // request reaches it as a BAST, so every grant is a hand-off across the network.
        let secs = 3.0;
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = Instant::now() + Duration::from_secs_f64(secs);
        let mut tasks = Vec::new();
        for d in [d1.clone(), d2.clone()] {
            let count = count.clone();
            tasks.push(tokio::spawn(async move {
                while Instant::now() < stop {
                    let l = d
                        .lock("handoff", LockMode::Ex, LkmFlags::empty())
                        .await
                        .expect("EX");
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let left = stop.saturating_duration_since(Instant::now());
                    let _ = tokio::time::timeout(left, l.bast()).await;
                    l.unlock().await.expect("unlock");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let locks = count.load(std::sync::atomic::Ordering::Relaxed) as f64 / secs;
        println!(
            "EX hand-off between two nodes (hold until BAST): {:.0} hand-offs/s; o2net round trips/s at p50: {:.0}; {:.2} round trips per hand-off",
            locks,
            1.0 / r50.as_secs_f64(),
            (1.0 / r50.as_secs_f64()) / locks
        );
        for n in &nodes {
            n.shutdown();
        }
    });
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn memory() {
    const N: u64 = 1_000_000;
    let mut cfg = DomainConfig::new(1, DomainName::new(b"mem").expect("name"));
    cfg.purge_interval_ms = u64::MAX / 4;
    let mut core = CoreAlone::new(cfg);
    let before = rss_bytes();
    for i in 0..N {
        let name = LockName::new(format!("N{:019}", i).as_bytes()).expect("name");
        core.pair(i, name, LkmFlags::LOCAL);
    }
    let after = rss_bytes();
    assert_eq!(core.core.resource_count() as u64, N);
    let per = (after - before) as f64 / N as f64;
    println!(
        "memory: {} idle resources (20-byte names) in a domain core: {:.0} MiB resident more, {:.0} bytes each",
        N,
        (after - before) as f64 / (1 << 20) as f64,
        per
    );
}

fn main() {
    // `cargo bench -p o2node --bench api -- remote` runs only the parts whose name contains
    // "remote" (local, remote, memory); no filter runs them all.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |part: &str| filter.is_empty() || filter.iter().any(|f| part.contains(f.as_str()));
    if wanted("local") {
        local_pairs();
    }
    if wanted("remote") {
        remote_and_handoff(2, 27011);
        remote_and_handoff(1, 27021);
    }
    if wanted("memory") {
        memory();
    }
}
