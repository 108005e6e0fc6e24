//! Migration on real loopback TCP: three nodes in one process, heartbeating on a shared
//! region. Node 1 masters two locks the others use: a counter they take in EX over and
//! over (converting to PR and back on the way), and a lock node 2 holds while node 3 waits.
//! Node 1 leaves cleanly in the middle of it: nobody's lock is lost or doubly granted, the
//! counter kept under the lock and the one kept in its value block end exact, the waiter
//! gets its lock once the holder lets go, and no recovery runs.

mod cluster;

use std::sync::Arc;
use std::time::Duration;

use o2dlm::wire::{LkmFlags, LockMode};

#[test]
fn a_master_leaving_cleanly_hands_its_locks_over_while_they_are_used() {
    let rt = cluster::runtime();
    rt.block_on(async {
        let cluster = cluster::Cluster::start_all(3, 300).await;
        let domains = cluster.join_all("mig").await;
        // Node 1 masters both (first to ask), then lets go of its own locks.
        for name in ["counter", "held"] {
            let l = domains[0]
                .lock(name, LockMode::Nl, LkmFlags::empty())
                .await
                .expect("NL on node 1");
            // Node 2 takes a reference before node 1's lock goes, so the resource stays.
            let r = domains[1]
                .lock(name, LockMode::Nl, LkmFlags::empty())
                .await
                .expect("NL on node 2");
            l.unlock().await.expect("unlock on node 1");
            r.unlock().await.expect("unlock on node 2");
        }
        assert_eq!(domains[1].owner_of("counter"), Some(1));
        let held = domains[1]
            .lock("held", LockMode::Pr, LkmFlags::empty())
            .await
            .expect("PR on node 2");
        let d3 = domains[2].clone();
        let waiter = tokio::spawn(async move {
            d3.lock("held", LockMode::Ex, LkmFlags::empty())
                .await
                .expect("EX on node 3 once node 2 lets go")
        });

        let counter = Arc::new(cluster::ExCounter::default());
        const TASKS: usize = 2;
        const ROUNDS: u64 = 300;
        let mut joins = Vec::new();
        for d in domains.iter().skip(1) {
            for _ in 0..TASKS {
                let d = d.clone();
                let counter = counter.clone();
                joins.push(tokio::spawn(async move {
                    for _ in 0..ROUNDS {
                        let mut l = d
                            .lock("counter", LockMode::Ex, LkmFlags::VALBLK)
                            .await
                            .expect("EX on the counter");
                        counter.bump().await;
                        cluster::bump_lvb_count(&mut l);
                        // Down to PR (writes the value block back), then away.
                        l.convert(LockMode::Pr, LkmFlags::VALBLK)
                            .await
                            .expect("convert to PR");
                        l.unlock().await.expect("unlock");
                    }
                }));
            }
        }
        // Let the workers get going, then node 1 leaves in the middle of it.
        while counter.value() < 20 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let before = counter.value();
        assert!(before < 2 * TASKS as u64 * ROUNDS, "workers still running");
        tokio::time::timeout(Duration::from_secs(20), domains[0].leave())
            .await
            .expect("leave finishes")
            .expect("leave succeeds");
        for d in domains.iter().skip(1) {
            assert_eq!(d.members(), vec![2, 3], "node {}", d.node());
        }
        for j in joins {
            tokio::time::timeout(Duration::from_secs(30), j)
                .await
                .expect("workers finish")
                .expect("task ok");
        }
        let total = 2 * TASKS as u64 * ROUNDS;
        assert_eq!(counter.value(), total);
        let l = domains[2]
            .lock("counter", LockMode::Pr, LkmFlags::VALBLK)
            .await
            .expect("PR");
        let nl = domains[1]
            .lock("counter", LockMode::Nl, LkmFlags::empty())
            .await
            .expect("NL");
        let owner = domains[1].owner_of("counter");
        assert!(matches!(owner, Some(2 | 3)), "new master {owner:?}");
        assert_eq!(domains[2].owner_of("counter"), owner);
        nl.unlock().await.expect("unlock");
        assert_eq!(cluster::lvb_count(&l), total, "value block counter");
        l.unlock().await.expect("unlock");

        // Node 2 still holds "held" (node 3 waits): migrated to node 2, the first holder.
        assert_eq!(held.mode(), LockMode::Pr);
        assert_eq!(domains[2].owner_of("held"), Some(2));
        assert!(!waiter.is_finished());
        held.unlock().await.expect("unlock held");
        let ex = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("waiter granted")
            .expect("task ok");
        assert_eq!(ex.mode(), LockMode::Ex);
        ex.unlock().await.expect("unlock");

        // A clean leave: no recovery ran, no master list entry is left over.
        for d in domains.iter().skip(1) {
            let st = d.recovery_state().expect("recovery state");
            assert!(!st.active && st.completed == 0, "node {}: {st:?}", d.node());
            assert_eq!(d.mle_state(), "", "node {}", d.node());
        }
        cluster.shutdown();
    });
}
