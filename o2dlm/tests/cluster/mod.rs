//! An in-process cluster for the loopback tests: node N listens on 127.0.0.N over real TCP
//! (o2net's driver), heartbeat events are fed directly, timers are shortened.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use o2dlm::{Dlm, DlmConfig, Domain};
use o2net::{Net, NetConfig, NodeInfo};

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// A port no other test of this process uses (tests of one binary run in parallel).
pub fn port() -> u16 {
    let base = 21000 + (std::process::id() % 200) as u16 * 40;
    base + NEXT_PORT.fetch_add(1, Ordering::Relaxed)
}

pub struct Cluster {
    pub nets: Vec<Net>,
    pub dlms: Vec<Dlm>,
}

pub fn config(purge_ms: u64) -> DlmConfig {
    DlmConfig {
        purge_interval_ms: purge_ms,
        mastery_timeout_ms: 2000,
        ..DlmConfig::default()
    }
}

/// The two-thread runtime the loopback tests and benchmarks run their nodes on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Starts nodes 1..=n, all heartbeating for each other.
pub fn start(n: u8, cfg: DlmConfig) -> Cluster {
    start_on(port(), n, cfg)
}

/// [`start`] on a given port.
pub fn start_on(port: u16, n: u8, cfg: DlmConfig) -> Cluster {
    let infos: Vec<NodeInfo> = (1..=n)
        .map(|i| NodeInfo {
            num: i,
            name: format!("n{i}"),
            addr: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, i), port),
        })
        .collect();
    let mut nets = Vec::new();
    let mut dlms = Vec::new();
    for i in 1..=n {
        let mut c = NetConfig::new(i, infos.clone()).with_heartbeat(100, 3);
        c.idle_timeout_ms = 5000;
        c.keepalive_delay_ms = 1000;
        c.reconnect_delay_ms = 200;
        let net = Net::start(c, Arc::new(|_: &str| {})).expect("o2net starts");
        let mut dc = cfg.clone();
        dc.nodes = infos
            .iter()
            .map(|x| o2dlm::wire::NodeInfo {
                nodenum: x.num,
                ipv4_port: x.addr.port(),
                ipv4_address: *x.addr.ip(),
            })
            .collect();
        let dlm = Dlm::start(net.clone(), dc).expect("dlm starts");
        nets.push(net);
        dlms.push(dlm);
    }
    for net in &nets {
        for i in 1..=n {
            net.heartbeat_up(i);
        }
    }
    for dlm in &dlms {
        for i in 1..=n {
            dlm.node_up(i);
        }
    }
    Cluster { nets, dlms }
}

impl Cluster {
    /// Every node joins `name`, one after the other (concurrent joins back off and retry).
    pub async fn join_all(&self, name: &str) -> Vec<Domain> {
        let mut v = Vec::new();
        for d in &self.dlms {
            let dom = tokio::time::timeout(Duration::from_secs(30), d.join(name))
                .await
                .expect("join finishes")
                .expect("join succeeds");
            v.push(dom);
        }
        v
    }

    pub fn shutdown(&self) {
        for n in &self.nets {
            n.shutdown();
        }
    }
}
