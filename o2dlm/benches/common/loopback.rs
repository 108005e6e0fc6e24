//! The three-node loopback cluster and bulk locking the loopback benchmarks share.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use o2dlm::wire::{LkmFlags, LockMode};
use o2dlm::{Dlm, DlmConfig, Domain, LockHandle};
use o2net::{Net, NetConfig, NodeInfo};

fn start(port: u16) -> (Vec<Net>, Vec<Dlm>) {
    let infos: Vec<NodeInfo> = (1..=3u8)
        .map(|i| NodeInfo {
            num: i,
            name: format!("n{i}"),
            addr: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, i), port),
        })
        .collect();
    let mut nets = Vec::new();
    let mut dlms = Vec::new();
    for i in 1..=3u8 {
        let net = Net::start(NetConfig::new(i, infos.clone()), Arc::new(|_: &str| {}))
            .expect("o2net starts");
        let cfg = DlmConfig {
            purge_interval_ms: 600_000,
            ..DlmConfig::default()
        };
        let dlm = Dlm::start(net.clone(), cfg).expect("dlm starts");
        nets.push(net);
        dlms.push(dlm);
    }
    for net in &nets {
        for i in 1..=3 {
            net.heartbeat_up(i);
        }
    }
    for d in &dlms {
        for i in 1..=3 {
            d.node_up(i);
        }
    }
    (nets, dlms)
}

pub async fn take_all(d: &Domain, n: usize, mode: LockMode) -> Vec<LockHandle> {
    let mut set = tokio::task::JoinSet::new();
    const PARALLEL: usize = 64;
    let mut out = Vec::with_capacity(n);
    for chunk in 0..PARALLEL {
        let d = d.clone();
        set.spawn(async move {
            let mut v = Vec::new();
            let mut i = chunk;
            while i < n {
                v.push(
                    d.lock(format!("res{i}"), mode, LkmFlags::empty())
                        .await
                        .expect("lock"),
                );
                i += PARALLEL;
            }
            v
        });
    }
    while let Some(r) = set.join_next().await {
        out.extend(r.expect("task"));
    }
    out
}

/// Runs `f` on a two-thread runtime with the three nodes started and joined to "bench".
pub fn with_cluster<T, F>(port: u16, f: impl FnOnce(Vec<Net>, Vec<Dlm>, Vec<Domain>) -> F) -> T
where
    F: std::future::Future<Output = T>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (nets, dlms) = start(port);
        let mut domains = Vec::new();
        for d in &dlms {
            domains.push(d.join("bench").await.expect("join"));
        }
        f(nets, dlms, domains).await
    })
}
