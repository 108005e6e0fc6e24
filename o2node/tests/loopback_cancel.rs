//! Cancelling a conversion through the API on real loopback TCP: two nodes holding PR that
//! both upgrade to EX wait for each other forever (the standoff dlmfs meets with cached PR
//! locks); one gives up, which cancels its conversion, lets go of PR, and the other's
//! conversion is granted.

mod cluster;

use std::time::Duration;

use o2dlm::wire::{LkmFlags, LockMode};

#[test]
fn a_dropped_conversion_is_cancelled_and_breaks_the_pr_to_ex_standoff() {
    let rt = cluster::runtime();
    rt.block_on(async {
        let cluster = cluster::Cluster::start_all(2, 300).await;
        let domains = cluster.join_all("cancel").await;
        let mut a = domains[0]
            .lock("cached", LockMode::Pr, LkmFlags::empty())
            .await
            .expect("PR on node 1");
        let mut b = domains[1]
            .lock("cached", LockMode::Pr, LkmFlags::empty())
            .await
            .expect("PR on node 2");
        let b_task = tokio::spawn(async move {
            b.convert(LockMode::Ex, LkmFlags::empty())
                .await
                .expect("node 2's conversion is granted");
            b
        });
        // Node 1 wants EX too: both wait for each other's PR.
        let r = tokio::time::timeout(
            Duration::from_millis(500),
            a.convert(LockMode::Ex, LkmFlags::empty()),
        )
        .await;
        assert!(r.is_err(), "the standoff holds until someone gives up");
        assert!(!b_task.is_finished(), "node 2 still waits");
        // Giving up cancelled node 1's conversion: it still holds PR.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(a.mode(), LockMode::Pr);
        assert!(
            domains[0].locking_state().contains("LOCK:"),
            "node 1's lock is still there"
        );
        assert!(!b_task.is_finished(), "node 2 waits for node 1's PR");
        a.unlock().await.expect("unlock PR");
        let b = tokio::time::timeout(Duration::from_secs(10), b_task)
            .await
            .expect("node 2's conversion no longer waits")
            .expect("task ok");
        assert_eq!(b.mode(), LockMode::Ex);
        b.unlock().await.expect("unlock");
        cluster.shutdown();
    });
}
