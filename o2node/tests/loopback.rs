//! The node driver and its API on real loopback TCP: 1, 2, 3 and 8 nodes in one process.

mod cluster;

use std::sync::Arc;
use std::time::Duration;

use o2dlm::wire::{LkmFlags, LockMode};
use o2dlm::DlmError;

const LIMIT: Duration = Duration::from_secs(60);

/// A counter kept in the value block, incremented under EX by many tasks on every node, ends
/// exact; so does a plain counter in memory that only EX holders touch.
async fn hammer(nodes: u8, tasks_per_node: usize, rounds: usize, locks: usize) {
    let cluster = cluster::Cluster::start_all(nodes, 300).await;
    let domains = cluster.join_all("hammer").await;
    // One counter in memory per lock, touched only under its EX.
    let counters: Arc<Vec<cluster::ExCounter>> =
        Arc::new((0..locks).map(|_| cluster::ExCounter::default()).collect());
    let mut joins = Vec::new();
    for (i, d) in domains.iter().enumerate() {
        for t in 0..tasks_per_node {
            let d = d.clone();
            let counters = counters.clone();
            joins.push(tokio::spawn(async move {
                for r in 0..rounds {
                    let k = (i + t + r) % locks;
                    let name = format!("counter{k}");
                    let mut l = d
                        .lock(&name, LockMode::Ex, LkmFlags::VALBLK)
                        .await
                        .expect("EX");
                    cluster::bump_lvb_count(&mut l);
                    counters[k].bump().await;
                    l.unlock_with(LkmFlags::VALBLK).await.expect("unlock");
                }
            }));
        }
    }
    for j in joins {
        tokio::time::timeout(LIMIT, j)
            .await
            .expect("no hang")
            .expect("task ok");
    }
    let total = (nodes as usize * tasks_per_node * rounds) as u64;
    // A lost update under any lock would show.
    let counted: u64 = counters.iter().map(cluster::ExCounter::value).sum();
    assert_eq!(counted, total);
    // Sum of the value blocks over all locks equals the number of increments.
    let mut sum = 0;
    for k in 0..locks {
        let l = domains[0]
            .lock(format!("counter{k}"), LockMode::Pr, LkmFlags::VALBLK)
            .await
            .expect("PR");
        sum += cluster::lvb_count(&l);
        l.unlock().await.expect("unlock");
    }
    assert_eq!(sum, total);
    for d in &domains {
        tokio::time::timeout(LIMIT, d.leave())
            .await
            .expect("leave finishes")
            .expect("leave");
    }
    cluster.shutdown();
}

#[test]
fn one_node_counter_is_exact() {
    cluster::runtime().block_on(hammer(1, 4, 200, 1));
}

#[test]
fn two_nodes_counter_is_exact() {
    cluster::runtime().block_on(hammer(2, 3, 40, 1));
}

#[test]
fn three_nodes_counter_is_exact_over_few_locks() {
    cluster::runtime().block_on(hammer(3, 3, 30, 2));
}

#[test]
fn eight_nodes_counter_is_exact() {
    cluster::runtime().block_on(hammer(8, 2, 15, 1));
}

#[test]
fn pr_is_shared_and_noqueue_refuses_ex() {
    cluster::runtime().block_on(async {
        let cluster = cluster::Cluster::start_all(3, 300).await;
        let d = cluster.join_all("share").await;
        let a = d[0]
            .lock("file", LockMode::Pr, LkmFlags::empty())
            .await
            .expect("PR 1");
        let b = d[1]
            .lock("file", LockMode::Pr, LkmFlags::empty())
            .await
            .expect("PR 2");
        let c = d[2]
            .lock("file", LockMode::Pr, LkmFlags::empty())
            .await
            .expect("PR 3");
        match d[2].lock("file", LockMode::Ex, LkmFlags::NOQUEUE).await {
            Err(DlmError::NotQueued { .. }) => {}
            other => panic!("EX NOQUEUE against PR holders: {other:?}"),
        }
        // An NL lock is compatible with anything.
        let nl = d[1]
            .lock("file", LockMode::Nl, LkmFlags::NOQUEUE)
            .await
            .expect("NL");
        for l in [a, b, c, nl] {
            l.unlock().await.expect("unlock");
        }
        let ex = d[2]
            .lock("file", LockMode::Ex, LkmFlags::NOQUEUE)
            .await
            .expect("EX once free");
        ex.unlock().await.expect("unlock");
        cluster.shutdown();
    });
}

#[test]
fn bast_hands_ex_over_and_lvb_follows() {
    cluster::runtime().block_on(async {
        let cluster = cluster::Cluster::start_all(2, 300).await;
        let d = cluster.join_all("handoff").await;
        let mut holder = d[0]
            .lock("h", LockMode::Ex, LkmFlags::VALBLK)
            .await
            .expect("EX");
        let mut lvb = [0u8; 64];
        lvb[..5].copy_from_slice(b"hello");
        holder.set_lvb(lvb);
        let d1 = d[1].clone();
        let reader = tokio::spawn(async move {
            d1.lock("h", LockMode::Pr, LkmFlags::VALBLK)
                .await
                .expect("PR")
        });
        // The PR request blocks on our EX: a BAST says which mode is wanted.
        let wanted = tokio::time::timeout(LIMIT, holder.bast())
            .await
            .expect("BAST arrives");
        assert_eq!(wanted, LockMode::Pr);
        // Down-convert to PR with VALBLK writes the value block back and lets the reader in.
        holder
            .convert(LockMode::Pr, LkmFlags::VALBLK)
            .await
            .expect("down-convert");
        let r = tokio::time::timeout(LIMIT, reader)
            .await
            .expect("reader granted")
            .expect("task");
        assert_eq!(&r.lvb()[..5], b"hello");
        assert_eq!(r.mode(), LockMode::Pr);
        // The reader's up-conversion to EX needs our PR gone: BAST for EX.
        let d1 = d[1].clone();
        let up = tokio::spawn(async move {
            let mut r = r;
            r.convert(LockMode::Ex, LkmFlags::NOQUEUE).await.map(|_| r)
        });
        let up = up.await.expect("task");
        assert!(matches!(up, Err(DlmError::NotQueued { .. })), "{up:?}");
        let _ = d1;
        holder.unlock().await.expect("unlock");
        cluster.shutdown();
    });
}

#[test]
fn everyone_takes_a_new_lock_at_once() {
    cluster::runtime().block_on(async {
        let cluster = cluster::Cluster::start_all(8, 300).await;
        let d = cluster.join_all("race").await;
        for round in 0..5 {
            let name = format!("new{round}");
            let mut tasks = Vec::new();
            for dom in &d {
                let dom = dom.clone();
                let name = name.clone();
                tasks.push(tokio::spawn(async move {
                    let l = dom
                        .lock(&name, LockMode::Pr, LkmFlags::empty())
                        .await
                        .expect("PR");
                    let owner = dom.owner_of(&name);
                    l.unlock().await.expect("unlock");
                    owner
                }));
            }
            let mut owners = Vec::new();
            for t in tasks {
                owners.push(
                    tokio::time::timeout(LIMIT, t)
                        .await
                        .expect("no hang")
                        .expect("task"),
                );
            }
            // All nodes agree on one master.
            let first = owners[0];
            assert!(first.is_some());
            assert!(
                owners.iter().all(|o| *o == first),
                "round {round}: {owners:?}"
            );
        }
        cluster.shutdown();
    });
}

#[test]
fn dropping_a_pending_request_cancels_it() {
    cluster::runtime().block_on(async {
        let cluster = cluster::Cluster::start_all(2, 300).await;
        let d = cluster.join_all("cancel").await;
        let ex = d[0]
            .lock("c", LockMode::Ex, LkmFlags::empty())
            .await
            .expect("EX");
        let waiting = tokio::time::timeout(
            Duration::from_millis(300),
            d[1].lock("c", LockMode::Ex, LkmFlags::empty()),
        )
        .await;
        assert!(waiting.is_err(), "the second EX must wait");
        ex.unlock().await.expect("unlock");
        // The cancelled request left nothing behind: node 1 gets EX with NOQUEUE.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let again = d[0]
            .lock("c", LockMode::Ex, LkmFlags::NOQUEUE)
            .await
            .expect("EX again");
        again.unlock().await.expect("unlock");
        cluster.shutdown();
    });
}

#[test]
fn dumps_show_owner_and_locks() {
    cluster::runtime().block_on(async {
        let cluster = cluster::Cluster::start_all(2, 300).await;
        let d = cluster.join_all("dump").await;
        let l = d[1]
            .lock("seen", LockMode::Ex, LkmFlags::empty())
            .await
            .expect("EX");
        let owner = d[1].owner_of("seen").expect("owner known");
        let master = &d[usize::from(owner) - 1];
        let text = master.locking_state();
        assert!(text.contains("NAME:seen\nLRES:1,"), "{text}");
        assert!(text.contains("LOCK:1,0,5,-1,2,2:"), "{text}");
        let state = d[0].dlm_state();
        assert!(state.contains("Domain: dump  Key: 0x"), "{state}");
        assert!(state.contains("State: JOINED"), "{state}");
        assert!(state.contains("Domain Map: 1 2 "), "{state}");
        l.unlock().await.expect("unlock");
        cluster.shutdown();
    });
}

#[test]
fn nodes_joining_at_once_all_get_in() {
    cluster::runtime().block_on(async {
        let cluster = cluster::Cluster::start_all(8, 300).await;
        let mut joins = Vec::new();
        for d in &cluster.nodes {
            let d = d.clone();
            joins.push(tokio::spawn(async move { d.join(b"crowd", true).await }));
        }
        let mut domains = Vec::new();
        for j in joins {
            let d = tokio::time::timeout(LIMIT, j)
                .await
                .expect("join finishes")
                .expect("task")
                .expect("join succeeds");
            domains.push(d);
        }
        // Colliding joins back off and retry; in the end every member sees all eight.
        let all: Vec<u8> = (1..=8).collect();
        for d in &domains {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while d.members() != all && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(d.members(), all, "node {}", d.node());
        }
        cluster.shutdown();
    });
}
