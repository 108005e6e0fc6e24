//! The three-node loopback cluster, bulk locking and result table the loopback benchmarks
//! share.

use std::time::Duration;

use o2dlm::wire::{LkmFlags, LockMode};
use o2node::{Domain, LockHandle};

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

/// Runs `run(n, port)` for 1,000, 10,000 and 100,000 resources, each on its own port from
/// `port_base` (and the pid), and prints the measured time against the baseline as a Markdown
/// table with the column titles `titles` (resources, measured, baseline).
pub fn print_table(
    titles: [&str; 3],
    port_base: u16,
    run: impl Fn(usize, u16) -> (Duration, Duration),
) {
    let base = port_base + (std::process::id() % 100) as u16 * 10;
    let [resources, measured, baseline] = titles;
    println!("| {resources} | {measured} | {baseline} | ratio |");
    println!("|---|---|---|---|");
    for (k, n) in [1_000usize, 10_000, 100_000].into_iter().enumerate() {
        let (took, base_took) = run(n, base + k as u16);
        println!(
            "| {n} | {:.1} ms | {:.1} ms | {:.2}x |",
            took.as_secs_f64() * 1e3,
            base_took.as_secs_f64() * 1e3,
            took.as_secs_f64() / base_took.as_secs_f64()
        );
    }
}

/// Runs `f` on a two-thread runtime with the three nodes started (heartbeat steady) and
/// joined to "bench", resources kept for good once unused.
pub fn with_cluster<T, F>(port: u16, f: impl FnOnce(cluster::Cluster, Vec<Domain>) -> F) -> T
where
    F: std::future::Future<Output = T>,
{
    cluster::runtime().block_on(async {
        let cluster = cluster::Cluster::start_on(port, 3, 600_000).await;
        let domains = cluster.join_all("bench").await;
        f(cluster, domains).await
    })
}
