//! Node-down to recovery complete with real o2net on loopback TCP:
//! `cargo bench -p o2node --bench recovery_loopback`.
//!
//! Three whole nodes (127.0.0.1-3) in one process, heartbeating on a shared region. Node 3
//! masters N resources (it takes NL on each first), nodes 1 and 2 each hold PR on every one.
//! Node 3 is shut down at once (its locks are never released and its heartbeat stops, as
//! after kill -9); the clock runs from the first survivor's heartbeat declaring it dead until
//! both report recovery complete (`Domain::recovery_state`), through the whole protocol over
//! TCP.
//! Baseline in the same run: the time the survivors took to acquire their 2N PR locks on
//! node 3's resources (CREATE_LOCK, reply and proxy AST over the same sockets).

use std::time::{Duration, Instant};

use o2dlm::wire::LockMode;

#[path = "common/loopback.rs"]
mod common;
use common::{print_table, take_all, with_cluster};

fn run(n: usize, port: u16) -> (Duration, Duration) {
    with_cluster(port, |cluster, domains| async move {
        let held3 = take_all(&domains[2], n, LockMode::Nl).await;
        let t = Instant::now();
        let (h1, h2) = tokio::join!(
            take_all(&domains[0], n, LockMode::Pr),
            take_all(&domains[1], n, LockMode::Pr)
        );
        let acquire = t.elapsed();
        assert_eq!(domains[0].owner_of("res0"), Some(3));
        std::mem::forget(held3);
        let mut events = cluster.nodes[0].subscribe();
        cluster.nodes[2].shutdown();
        while !matches!(
            events.recv().await,
            Some(o2node::Event::NodeDown { node: 3, .. }) | None
        ) {}
        let t = Instant::now();
        loop {
            let done = domains.iter().take(2).all(|d| {
                d.recovery_state()
                    .is_some_and(|s| !s.active && s.completed == 1)
            });
            if done {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "recovery never ends"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let recovery = t.elapsed();
        let owner = domains[0].owner_of(format!("res{}", n - 1));
        assert!(matches!(owner, Some(1 | 2)), "remastered: {owner:?}");
        drop((h1, h2));
        cluster.shutdown();
        (recovery, acquire)
    })
}

fn main() {
    print_table(
        [
            "resources mastered by the dead node",
            "node-down to recovery complete",
            "baseline: survivors acquire their 2N PR locks",
        ],
        25000,
        run,
    );
}
