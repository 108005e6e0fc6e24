//! The node driver on real loopback sockets with heartbeat on a shared region in memory:
//! nodes come online, locks exclude each other across nodes and carry the value block,
//! nothing is granted before a node is online, and a clean stop ends.

mod cluster;

use std::time::{Duration, Instant};

use cluster::{runtime, Cluster};
use o2dlm::wire::{LkmFlags, LockMode};
use o2dlm::DlmError;
use o2node::Stage;

#[test]
fn three_nodes_exclude_each_other_and_hand_the_value_block_on() {
    runtime().block_on(async {
        let c = Cluster::start_all(3, 8000).await;
        for n in &c.nodes {
            n.wait_online().await.unwrap();
        }
        let doms = [
            c.nodes[0].join(b"dom", true).await.unwrap(),
            c.nodes[1].join(b"dom", true).await.unwrap(),
            c.nodes[2].join(b"dom", true).await.unwrap(),
        ];
        assert_eq!(doms[2].members(), vec![1, 2, 3]);
        let mut held = doms[0]
            .lock("L", LockMode::Ex, LkmFlags::VALBLK)
            .await
            .unwrap();
        // Held on node 1: a NOQUEUE request elsewhere is refused, a waiting one waits.
        let busy = doms[1]
            .lock("L", LockMode::Pr, LkmFlags::VALBLK | LkmFlags::NOQUEUE)
            .await
            .unwrap_err();
        assert!(matches!(busy, DlmError::NotQueued { .. }), "{busy}");
        let waiter = {
            let d = doms[2].clone();
            tokio::spawn(async move { d.lock("L", LockMode::Ex, LkmFlags::VALBLK).await })
        };
        assert_eq!(held.bast().await, LockMode::Ex);
        let mut lvb = [0u8; 64];
        lvb[..5].copy_from_slice(b"hello");
        held.set_lvb(lvb);
        held.unlock_with(LkmFlags::VALBLK).await.unwrap();
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(&got.lvb()[..5], b"hello");
        got.unlock().await.unwrap();
        for (d, n) in doms.iter().zip(&c.nodes) {
            d.leave().await.unwrap();
            n.stop().await;
        }
    });
}

#[test]
fn a_starting_node_joins_only_once_online_and_sees_the_others() {
    runtime().block_on(async {
        let mut c = Cluster::new(2, 8000);
        let first = c.launch(1);
        c.heartbeat(&first).await;
        let d1 = first.join(b"dom", true).await.unwrap();
        let held = d1.lock("L", LockMode::Ex, LkmFlags::empty()).await.unwrap();

        // Node 2 asks before its heartbeat has started: without waiting it is refused (EPROTO, as
        // the kernel's dlm_register_domain refuses a node that is not heartbeating),
        // with waiting the join finishes only once it is online, inside node 1's domain.
        let second = c.launch(2);
        assert_eq!(second.stage(), Stage::Starting);
        let refused = second.join(b"dom", false).await.unwrap_err();
        assert!(
            matches!(refused, DlmError::Node { errno: -71, .. }),
            "{refused}"
        );
        let join = {
            let n = second.clone();
            tokio::spawn(async move { n.join(b"dom", true).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!join.is_finished(), "joined before heartbeat started");
        c.heartbeat(&second).await;
        let d2 = join.await.unwrap().unwrap();
        assert_eq!(second.stage(), Stage::Online);
        assert_eq!(d2.members(), vec![1, 2]);
        // Node 1 still holds L: node 2 cannot have it.
        let busy = d2
            .lock("L", LockMode::Ex, LkmFlags::NOQUEUE)
            .await
            .unwrap_err();
        assert!(matches!(busy, DlmError::NotQueued { .. }), "{busy}");
        drop(held);
        d2.lock("L", LockMode::Ex, LkmFlags::empty())
            .await
            .unwrap()
            .unlock()
            .await
            .unwrap();
        c.nodes = vec![first, second];
        for n in &c.nodes {
            n.stop().await;
        }
    });
}

#[test]
fn a_stop_with_a_lock_held_ends_within_its_bound_and_the_others_recover() {
    runtime().block_on(async {
        let mut c = Cluster::new(2, 8000);
        let mut cfg1 = c.config(1);
        cfg1.stop_timeout_ms = 1000;
        let a = o2node::Node::start(
            cfg1,
            o2hb::FenceAction::Callback(std::sync::Arc::new(|| {})),
        )
        .unwrap();
        let b = c.launch(2);
        let (ra, rb) = (c.heartbeat(&a), c.heartbeat(&b));
        ra.await;
        rb.await;
        let da = a.join(b"dom", true).await.unwrap();
        let db = b.join(b"dom", true).await.unwrap();
        // Node 1 masters and holds L, and never lets go.
        let held = da.lock("L", LockMode::Ex, LkmFlags::empty()).await.unwrap();
        let t = Instant::now();
        a.stop().await;
        let took = t.elapsed();
        assert!(took < Duration::from_secs(3), "stop took {took:?}");
        assert_eq!(a.stage(), Stage::Stopped);
        // Node 2 gets L once it has recovered node 1's locks.
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            db.lock("L", LockMode::Ex, LkmFlags::empty()),
        )
        .await
        .expect("granted after recovery")
        .unwrap();
        got.unlock().await.unwrap();
        drop(held);
        c.nodes = vec![b];
        c.nodes[0].stop().await;
    });
}
