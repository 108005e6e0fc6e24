//! Recovery on real loopback TCP: three whole nodes in one process, heartbeating on a shared
//! region. The master of a contended lock is killed (its sockets close and its heartbeat
//! stops without the clean-stop block; its handles are never released); the survivors see it
//! die after the dead threshold, recover, and their waiters get the lock; a counter kept
//! under the lock ends exact.

mod cluster;

use std::sync::Arc;
use std::time::Duration;

use o2dlm::wire::{LkmFlags, LockMode};

#[test]
fn killing_the_master_of_a_contended_lock_hands_it_to_the_survivors() {
    let rt = cluster::runtime();
    rt.block_on(async {
        let cluster = cluster::Cluster::start_all(3, 300).await;
        let domains = cluster.join_all("reco").await;
        // Node 3 masters "counter" and holds it in EX.
        let held = domains[2]
            .lock("counter", LockMode::Ex, LkmFlags::VALBLK)
            .await
            .expect("EX on node 3");
        assert_eq!(domains[0].owner_of("counter"), None);
        let counter = Arc::new(cluster::ExCounter::default());
        const TASKS: usize = 2;
        const ROUNDS: u64 = 15;
        let mut joins = Vec::new();
        for d in domains.iter().take(2) {
            for _ in 0..TASKS {
                let d = d.clone();
                let counter = counter.clone();
                joins.push(tokio::spawn(async move {
                    for _ in 0..ROUNDS {
                        let l = d
                            .lock("counter", LockMode::Ex, LkmFlags::empty())
                            .await
                            .expect("EX after recovery");
                        counter.bump().await;
                        l.unlock().await.expect("unlock");
                    }
                }));
            }
        }
        // Everyone is queued behind node 3.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(counter.value(), 0);
        // kill -9 of node 3: its connections drop, its lock is never released.
        std::mem::forget(held);
        cluster.nodes[2].shutdown();
        for j in joins {
            tokio::time::timeout(Duration::from_secs(30), j)
                .await
                .expect("waiters finish after recovery")
                .expect("task ok");
        }
        assert_eq!(counter.value(), 2 * TASKS as u64 * ROUNDS);
        let owner = domains[0].owner_of("counter");
        assert!(matches!(owner, Some(1 | 2)), "new master {owner:?}");
        assert_eq!(domains[1].owner_of("counter"), owner);
        for d in domains.iter().take(2) {
            let st = d.recovery_state().expect("recovery state");
            assert!(!st.active && st.completed == 1, "node {}: {st:?}", d.node());
            assert!(
                d.dlm_state().contains("State: INACTIVE"),
                "{}",
                d.dlm_state()
            );
        }
        // The value block the dead EX holder may have written is gone.
        let l = domains[0]
            .lock("counter", LockMode::Pr, LkmFlags::VALBLK)
            .await
            .expect("PR");
        assert_eq!(*l.lvb(), [0; 64]);
        l.unlock().await.expect("unlock");
        cluster.shutdown();
    });
}
