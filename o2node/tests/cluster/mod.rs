//! An in-process cluster for tests and benchmarks: node N is a whole [`o2node::Node`] on
//! 127.0.0.N over real TCP, all of them heartbeating on one region in memory
//! ([`o2hb::iothread::MemDisk`]), with short timings (100 ms heartbeat, dead after 7).

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};

use o2hb::iothread::MemDisk;
use o2net::{NetConfig, NodeInfo};
use o2node::{Node, NodeConfig};

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
        Cluster {
            port: port(),
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
        let mut c = Cluster::new(n, purge_ms);
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

async fn heartbeat(node: Node, disk: MemDisk) {
    let g = o2hb::Geometry::new(BLOCK, 1, SLOTS).expect("geometry");
    node.start_region_with(REGION, "memdisk", g, Box::new(disk))
        .await
        .expect("region steady");
}
