//! Time from node-down to recovery complete in a 3-node cluster, with 1k, 10k and 100k
//! resources mastered by the dead node (target: 100k in at most 2 s):
//! `cargo bench -p o2dlm --bench recovery`.
//!
//! Node 3 masters every resource; nodes 1 and 2 each hold a PR lock on it with the value
//! block, and a third of them have an EX request from node 1 waiting. Node 3 is killed and
//! both survivors hear of it at the same virtual instant; the clock runs from the node-down
//! events to the last FINALIZE on both survivors, through the election, BEGIN_RECO,
//! LOCK_REQUEST, one MIG_LOCKRES per resource and survivor (encoded and decoded), the rebuild,
//! both FINALIZE stages and the queue runs. Messages take 1 ms of virtual time, so the virtual
//! duration is the protocol's round trips, and the wall time is the work of both survivors on
//! one thread.
//!
//! Baseline in the same run: building the same resources and locks from scratch in the
//! lock-resource engine (the least any rebuild must do), reported as the ratio.

use std::hint::black_box;
use std::time::{Duration, Instant};

use o2dlm::lockres::LockResource;
use o2dlm::recovery::RecoEvent;
use o2dlm::recovery_cluster::RecoCluster;
use o2dlm::wire::{
    DomainName, LockMode, LockName, MigratableLock, QueueKind, MRES_MIGRATION, NODE_UNKNOWN,
};

fn names(n: usize) -> Vec<LockName> {
    (0..n)
        .map(|i| LockName::new(format!("M0000000000000000{i:08}").as_bytes()).unwrap())
        .collect()
}

fn locks_of(i: usize) -> Vec<(u8, LockMode, QueueKind, Option<LockMode>)> {
    let mut l = vec![
        (1, LockMode::Pr, QueueKind::Granted, None),
        (2, LockMode::Pr, QueueKind::Granted, None),
    ];
    if i.is_multiple_of(3) {
        l.push((1, LockMode::Ex, QueueKind::Blocked, None));
    }
    l
}

/// One recovery: returns (wall time, virtual ms, resources moved on the recovery master).
fn recover(n: usize) -> (Duration, u64, usize) {
    let mut c = RecoCluster::new(DomainName::new(b"bench").unwrap(), &[1, 2, 3], 1);
    for (i, name) in names(n).into_iter().enumerate() {
        c.add_resource(name, 3, &locks_of(i), [0x5a; 64], &[]);
    }
    let t0 = Instant::now();
    c.kill(3, |_| 0);
    let v0 = c.now();
    assert!(c.run_until_quiet(3_600_000), "recovery did not finish");
    let wall = t0.elapsed();
    let end = c
        .log
        .iter()
        .filter(|(_, _, e)| matches!(e, RecoEvent::Finished { .. }))
        .map(|&(t, _, _)| t)
        .max()
        .unwrap_or(v0);
    let virt = end - v0;
    let bad = c.check();
    assert!(bad.is_empty(), "{:?}", &bad[..bad.len().min(5)]);
    let moved = c
        .log
        .iter()
        .find_map(|(_, n, e)| match *e {
            RecoEvent::Finished { master, moved, .. } if master == *n => Some(moved),
            _ => None,
        })
        .unwrap_or(0);
    (wall, virt, moved)
}

/// The baseline: the same resources and locks built directly in the engine.
fn build(n: usize) -> Duration {
    let names = names(n);
    let t0 = Instant::now();
    let mut all = std::collections::HashMap::with_capacity(n);
    for (i, name) in names.into_iter().enumerate() {
        let mut r = LockResource::new(name);
        for (k, (node, mode, list, convert_type)) in locks_of(i).into_iter().enumerate() {
            let ml = MigratableLock {
                cookie: (u64::from(node) << 56) | (k as u64 + 1),
                list,
                flags: 0,
                type_: Some(mode),
                convert_type,
                highest_blocked: None,
                node,
            };
            let _ = r.add_migrated_lock(NODE_UNKNOWN, MRES_MIGRATION, &[0x5a; 64], &ml);
        }
        all.insert(name, r);
    }
    black_box(&all);
    t0.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    println!("| resources mastered by the dead node | node-down to recovery complete (wall, median) | virtual time | baseline: build the same resources in the engine | ratio |");
    println!("|---|---|---|---|---|");
    for &(n, runs) in &[(1_000usize, 7), (10_000, 5), (100_000, 3)] {
        let mut walls = Vec::new();
        let mut virt = 0;
        for _ in 0..runs {
            let (w, v, moved) = recover(n);
            assert_eq!(moved, n, "every resource moves to the recovery master");
            walls.push(w);
            virt = v;
        }
        let base = median((0..runs).map(|_| build(n)).collect());
        let wall = median(walls);
        println!(
            "| {n} | {:.1} ms | {virt} ms | {:.1} ms | {:.1}x |",
            wall.as_secs_f64() * 1e3,
            base.as_secs_f64() * 1e3,
            wall.as_secs_f64() / base.as_secs_f64()
        );
    }
}
