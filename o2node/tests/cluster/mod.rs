//! An in-process cluster for tests and benchmarks: node N is a whole [`o2node::Node`] on
//! 127.0.0.N over real TCP, all of them heartbeating on one region in memory
//! ([`o2hb::iothread::MemDisk`]), with short timings (100 ms heartbeat, dead after 7).

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use o2hb::iothread::MemDisk;
use o2net::{NetConfig, NodeInfo};
use o2node::{Domain, LockHandle, Node, NodeConfig};

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A port no other test of this process uses (tests of one binary run in parallel).
pub fn port() -> u16 {
    let base = 23000 + (std::process::id() % 200) as u16 * 40;
    base + NEXT_PORT.fetch_add(1, Ordering::Relaxed)
}

/// The two-thread runtime the tests and benchmarks run their nodes on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub const PERIOD_MS: u64 = 100;
pub const DEAD_THRESHOLD: u32 = 7;
const BLOCK: u64 = 512;
const SLOTS: u64 = 16;
pub const REGION: &str = "0123456789ABCDEF0123456789ABCDEF";

/// Nodes 1..=n on `port`, their shared region, and how each is configured.
pub struct Cluster {
    pub port: u16,
    pub count: u8,
    pub disk: MemDisk,
    pub purge_ms: u64,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// A cluster of `n` nodes, none started.
    pub fn new(n: u8, purge_ms: u64) -> Cluster {
        Cluster::on_port(port(), n, purge_ms)
    }

    /// [`Cluster::new`] on a given port.
    pub fn on_port(port: u16, n: u8, purge_ms: u64) -> Cluster {
        Cluster {
            port,
            count: n,
            disk: MemDisk::new(((SLOTS + 1) * BLOCK) as usize),
            purge_ms,
            nodes: Vec::new(),
        }
    }

    /// Node `i`'s configuration.
    pub fn config(&self, i: u8) -> NodeConfig {
        let infos: Vec<NodeInfo> = (1..=self.count)
            .map(|n| NodeInfo {
                num: n,
                name: format!("n{n}"),
                addr: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, n), self.port),
            })
            .collect();
        let mut net = NetConfig::new(i, infos).with_heartbeat(PERIOD_MS as u32, DEAD_THRESHOLD);
        net.idle_timeout_ms = 3000;
        net.keepalive_delay_ms = 500;
        net.reconnect_delay_ms = 500;
        let timing = o2hb::Timing::new(PERIOD_MS, DEAD_THRESHOLD).expect("timing");
        let mut cfg = NodeConfig::new(net, o2hb::Mode::Local, timing);
        cfg.dlm.purge_interval_ms = self.purge_ms;
        cfg.dlm.mastery_timeout_ms = 2000;
        cfg
    }

    /// Starts node `i` (its o2net, no heartbeat yet).
    pub fn launch(&self, i: u8) -> Node {
        Node::start(
            self.config(i),
            o2hb::FenceAction::Callback(std::sync::Arc::new(|| {})),
        )
        .expect("node starts")
    }

    /// Starts heartbeat of `node` on the shared region; returns once steady.
    pub async fn heartbeat(&self, node: &Node) {
        heartbeat(node.clone(), self.disk.clone()).await
    }

    /// Starts nodes 1..=n at once and waits for all to be online.
    pub async fn start_all(n: u8, purge_ms: u64) -> Cluster {
        Cluster::start_on(port(), n, purge_ms).await
    }

    /// [`Cluster::start_all`] on a given port.
    pub async fn start_on(port: u16, n: u8, purge_ms: u64) -> Cluster {
        let mut c = Cluster::on_port(port, n, purge_ms);
        let nodes: Vec<Node> = (1..=n).map(|i| c.launch(i)).collect();
        let starts: Vec<_> = nodes
            .iter()
            .map(|node| tokio::spawn(heartbeat(node.clone(), c.disk.clone())))
            .collect();
        for s in starts {
            s.await.expect("heartbeat task");
        }
        c.nodes = nodes;
        c
    }
}

impl Cluster {
    /// Every node joins `name`, one after the other (concurrent joins back off and retry).
    pub async fn join_all(&self, name: &str) -> Vec<Domain> {
        let mut v = Vec::new();
        for n in &self.nodes {
            let dom = tokio::time::timeout(Duration::from_secs(30), n.join(name.as_bytes(), true))
                .await
                .expect("join finishes")
                .expect("join succeeds");
            v.push(dom);
        }
        v
    }

    /// Ends every node at once (no clean stop).
    pub fn shutdown(&self) {
        for n in &self.nodes {
            n.shutdown();
        }
    }
}

async fn heartbeat(node: Node, disk: MemDisk) {
    let g = o2hb::Geometry::new(BLOCK, 1, SLOTS).expect("geometry");
    node.start_region_with(REGION, "memdisk", g, Box::new(disk))
        .await
        .expect("region steady");
}

/// A counter in memory that only the EX holders of one lock touch. An increment reads, yields
/// to other tasks and writes: two holders at once would lose updates, and are caught in the
/// act.
#[derive(Default)]
pub struct ExCounter {
    value: AtomicU64,
    /// Holders inside [`ExCounter::bump`] right now.
    inside: AtomicU64,
}

impl ExCounter {
    /// Adds one, by a task holding the lock in EX; panics if another holder is inside.
    pub async fn bump(&self) {
        assert_eq!(
            self.inside.fetch_add(1, Ordering::SeqCst),
            0,
            "two EX holders"
        );
        let v = self.value.load(Ordering::SeqCst);
        tokio::task::yield_now().await;
        self.value.store(v + 1, Ordering::SeqCst);
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn value(&self) -> u64 {
        self.value.load(Ordering::SeqCst)
    }
}

/// The counter kept in the first 8 bytes of a lock's value block.
pub fn lvb_count(l: &LockHandle) -> u64 {
    u64::from_le_bytes(l.lvb()[..8].try_into().expect("8 bytes"))
}

/// Adds one to [`lvb_count`]; an EX holder's value block goes back to the resource when it
/// converts down or unlocks with VALBLK.
pub fn bump_lvb_count(l: &mut LockHandle) {
    let mut lvb = *l.lvb();
    lvb[..8].copy_from_slice(&(lvb_count(l) + 1).to_le_bytes());
    l.set_lvb(lvb);
}
