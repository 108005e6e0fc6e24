//! An in-process cluster for the loopback tests: node N listens on 127.0.0.N over real TCP
//! (o2net's driver), heartbeat events are fed directly, timers are shortened.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use o2dlm::{Dlm, DlmConfig, Domain, LockHandle};
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
