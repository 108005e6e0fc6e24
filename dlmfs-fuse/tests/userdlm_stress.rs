//! The lock caching machinery (userdlm state machine, downconvert worker, cancels) under
//! concurrency: three nodes, each with its own cached lock files on one in-process DLM, and
//! two threads per node opening and closing PR/EX holders at random (some trylocks). Checks
//! what users rely on: no node ever has a holder while another node holds EX, every blocking
//! open is eventually granted (no deadlock between cached levels, BASTs and upconverts), and
//! the value block written under EX is what the next holder anywhere reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dlmfs_fuse::cached::{LockFile, Worker};
use dlmfs_fuse::{Dlm, LocalDlm};
use o2dlm::wire::LockMode;
use parking_lot::Mutex;

/// Who holds what right now, across nodes: (PR holders, EX holders) per node.
#[derive(Default)]
struct Holders {
    per_node: [(u32, u32); 3],
    /// The last value written under EX (a counter in LVB bytes 0..8).
    written: u64,
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn three_nodes_never_share_ex_and_always_make_progress() {
    let dlm = LocalDlm::new();
    let holders = Arc::new(Mutex::new(Holders::default()));
    let mut locks = Vec::new();
    for n in 0..3u8 {
        let domain = dlm.node(n + 1).join(b"stress").unwrap();
        let worker = Worker::start(n + 1).unwrap();
        locks.push(LockFile::new(
            1,
            b"L".to_vec(),
            domain,
            n + 1,
            worker,
            Box::new(|| {}),
        ));
    }
    let mut threads = Vec::new();
    for t in 0..6usize {
        let node = t % 3;
        let lock = locks[node].clone();
        let holders = holders.clone();
        threads.push(std::thread::spawn(move || {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ ((t as u64 + 1) * 0x1000_0001);
            let mut granted = 0u32;
            for _ in 0..400 {
                let r = xorshift(&mut seed);
                // One open in three is EX, one in seven a trylock.
                let level = [LockMode::Ex, LockMode::Pr, LockMode::Pr][(r % 3) as usize];
                let trylock = r % 7 < 1;
                match lock.acquire(level, trylock, &|| false) {
                    Ok(()) => {}
                    Err(e) => {
                        assert!(trylock && e == libc::ETXTBSY, "open failed with errno {e}");
                        continue;
                    }
                }
                granted += 1;
                {
                    let mut h = holders.lock();
                    for (other, &(pr, ex)) in h.per_node.iter().enumerate() {
                        if other == node {
                            continue;
                        }
                        assert!(
                            ex == 0,
                            "node {other} holds EX while node {node} holds {level:?}"
                        );
                        assert!(
                            level != LockMode::Ex || pr == 0,
                            "node {other} holds PR while node {node} holds EX"
                        );
                    }
                    let lvb = lock.lvb();
                    let mut v = [0u8; 8];
                    v.copy_from_slice(&lvb[..8]);
                    assert_eq!(
                        u64::from_le_bytes(v),
                        h.written,
                        "stale value block on node {node}"
                    );
                    match level {
                        LockMode::Ex => {
                            h.per_node[node].1 += 1;
                            // Only a sole EX holder on this node writes, so the value stays
                            // well defined.
                            if h.per_node[node].1 == 1 && h.per_node[node].0 == 0 {
                                h.written += 1;
                                lock.write_lvb(&h.written.to_le_bytes());
                            }
                        }
                        _ => h.per_node[node].0 += 1,
                    }
                }
                if r % 5 < 1 {
                    std::thread::yield_now();
                }
                {
                    let mut h = holders.lock();
                    match level {
                        LockMode::Ex => h.per_node[node].1 -= 1,
                        _ => h.per_node[node].0 -= 1,
                    }
                }
                lock.release(level);
            }
            granted
        }));
    }
    // Fail with every node's lock state rather than hang if some open never completes.
    let until = Instant::now() + Duration::from_secs(30);
    while threads.iter().any(|t| !t.is_finished()) {
        if Instant::now() > until {
            let states: Vec<String> = locks
                .iter()
                .enumerate()
                .map(|(n, l)| format!("node {}: {:?}", n + 1, l.snapshot()))
                .collect();
            panic!("opens still waiting after 30 s:\n{}", states.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let total: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(total > 1000, "only {total} opens granted");
}
