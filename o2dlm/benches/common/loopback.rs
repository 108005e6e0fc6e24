//! The three-node loopback cluster and bulk locking the loopback benchmarks share.

use o2dlm::wire::{LkmFlags, LockMode};
use o2dlm::{Dlm, DlmConfig, Domain, LockHandle};
use o2net::Net;

#[path = "../../tests/cluster/mod.rs"]
mod cluster;

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
    cluster::runtime().block_on(async {
        let cfg = DlmConfig {
            purge_interval_ms: 600_000,
            ..DlmConfig::default()
        };
        let cluster::Cluster { nets, dlms } = cluster::start_on(port, 3, cfg);
        let mut domains = Vec::new();
        for d in &dlms {
            domains.push(d.join("bench").await.expect("join"));
        }
        f(nets, dlms, domains).await
    })
}
