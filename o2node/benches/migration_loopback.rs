//! Leave with migration, real o2net on loopback TCP:
//! `cargo bench -p o2node --bench migration_loopback`.
//!
//! Three whole nodes (127.0.0.1-3) in one process, heartbeating on a shared region. Node 1
//! masters N resources (it takes NL on each first, then lets go), nodes 2 and 3 each hold PR
//! on every one. The clock runs from node 1's `Domain::leave` until it returns: every resource
//! is migrated (MIG_LOCKRES to the target, MIGRATE_REQUEST to the other node, two
//! FINISH_MIGRATION asserts, one resource at a time as the kernel does), node 1's references
//! are dropped and it exits the domain. Baseline in the same run: the time nodes 2 and 3
//! took to acquire their 2N PR locks on node 1's resources.

use std::time::{Duration, Instant};

use o2dlm::wire::LockMode;

#[path = "common/loopback.rs"]
mod common;
use common::{print_table, take_all, with_cluster};

fn run(n: usize, port: u16) -> (Duration, Duration) {
    with_cluster(port, |cluster, domains| async move {
        let held1 = take_all(&domains[0], n, LockMode::Nl).await;
        let t = Instant::now();
        let (h2, h3) = tokio::join!(
            take_all(&domains[1], n, LockMode::Pr),
            take_all(&domains[2], n, LockMode::Pr)
        );
        let acquire = t.elapsed();
        assert_eq!(domains[1].owner_of("res0"), Some(1));
        for h in held1 {
            h.unlock().await.expect("unlock");
        }
        let t = Instant::now();
        tokio::time::timeout(Duration::from_secs(300), domains[0].leave())
            .await
            .expect("leave ends")
            .expect("leave");
        let leave = t.elapsed();
        let owner = domains[1].owner_of(format!("res{}", n - 1));
        assert!(matches!(owner, Some(2 | 3)), "migrated: {owner:?}");
        assert_eq!(domains[2].owner_of(format!("res{}", n - 1)), owner);
        drop((h2, h3));
        cluster.shutdown();
        (leave, acquire)
    })
}

fn main() {
    print_table(
        [
            "resources mastered by the leaving node",
            "leave (migration included)",
            "baseline: the others acquire their 2N PR locks",
        ],
        26000,
        run,
    );
}
