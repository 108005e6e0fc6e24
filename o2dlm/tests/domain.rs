//! The domain core driven by hand: messages are carried between cores by the test (encoded
//! and decoded on the way), so each test can hold a message back, kill a node, or look at
//! the state between steps.

use std::collections::VecDeque;

use o2dlm::domain::{DomainConfig, DomainCore, Grant, Input, Output};
use o2dlm::wire::{
    errno, DlmMessage, DlmStatus, DomainName, LkmFlags, LockMode, LockName, MsgType,
};

struct Wire {
    from: u8,
    to: u8,
    token: u64,
    msg_type: u16,
    bytes: Vec<u8>,
}

struct Cluster {
    cores: Vec<DomainCore>,
    queue: VecDeque<Wire>,
    told: Vec<(u8, Output)>,
    now: u64,
    dead: Vec<u8>,
}

fn name(s: &str) -> LockName {
    LockName::new(s.as_bytes()).expect("valid name")
}

impl Cluster {
    /// Nodes 0..n, all live, joined one after the other.
    fn new(n: u8) -> Cluster {
        let mut cores = Vec::new();
        for i in 0..n {
            let mut cfg = DomainConfig::new(i, DomainName::new(b"test").expect("name"));
            cfg.purge_interval_ms = 1000;
            let mut c = DomainCore::new(cfg);
            for j in 0..n {
                c.handle(0, Input::NodeUp(j));
            }
            cores.push(c);
        }
        let mut cl = Cluster {
            cores,
            queue: VecDeque::new(),
            told: Vec::new(),
            now: 0,
            dead: Vec::new(),
        };
        for i in 0..n {
            cl.input(i, Input::Join);
            cl.settle();
            assert!(cl.took(i, |o| *o == Output::Joined), "node {i} joined");
        }
        cl
    }

    fn input(&mut self, n: u8, input: Input) -> i32 {
        let now = self.now;
        let core = &mut self.cores[usize::from(n)];
        let r = core.handle(now, input);
        let outs: Vec<Output> = core.drain_outputs().collect();
        for o in outs {
            match o {
                Output::Send { token, to, msg } => self.queue.push_back(Wire {
                    from: n,
                    to,
                    token,
                    msg_type: msg.msg_type().to_wire(),
                    bytes: msg.to_vec(),
                }),
                o => self.told.push((n, o)),
            }
        }
        r
    }

    /// Delivers one message and its reply; a dead node's messages fail as o2net fails them.
    fn deliver_one(&mut self) -> bool {
        let Some(w) = self.queue.pop_front() else {
            return false;
        };
        if self.dead.contains(&w.from) {
            return true;
        }
        let result = if self.dead.contains(&w.to) {
            Err(errno::EHOSTDOWN)
        } else {
            let msg = DlmMessage::decode(w.msg_type, &w.bytes).expect("decodes");
            Ok(self.input(w.to, Input::Message { from: w.from, msg }))
        };
        self.input(
            w.from,
            Input::SendDone {
                token: w.token,
                result,
            },
        );
        true
    }

    fn settle(&mut self) {
        for _ in 0..10_000 {
            if !self.deliver_one() {
                return;
            }
        }
        panic!("messages never stop");
    }

    /// Advances time by `ms` and runs every core's timers.
    fn wait(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 10;
            for i in 0..self.cores.len() as u8 {
                if !self.dead.contains(&i) {
                    self.input(i, Input::Tick);
                }
            }
            self.settle();
        }
    }

    /// Removes and reports whether node `n` was told something matching `f`.
    fn took(&mut self, n: u8, f: impl Fn(&Output) -> bool) -> bool {
        match self.told.iter().position(|(m, o)| *m == n && f(o)) {
            Some(i) => {
                self.told.remove(i);
                true
            }
            None => false,
        }
    }

    fn granted(&mut self, n: u8, cookie: u64) -> Option<Grant> {
        let i = self.told.iter().position(|(m, o)| {
            *m == n && matches!(o, Output::Done { cookie: c, result: Ok(_) } if *c == cookie)
        })?;
        match self.told.remove(i).1 {
            Output::Done { result: Ok(g), .. } => Some(g),
            _ => None,
        }
    }

    fn failed(&mut self, n: u8, cookie: u64) -> Option<DlmStatus> {
        let i = self.told.iter().position(|(m, o)| {
            *m == n && matches!(o, Output::Done { cookie: c, result: Err(_) } if *c == cookie)
        })?;
        match self.told.remove(i).1 {
            Output::Done { result: Err(s), .. } => Some(s),
            _ => None,
        }
    }

    fn lock(&mut self, n: u8, cookie: u64, lock: &str, mode: LockMode, flags: LkmFlags) {
        self.input(
            n,
            Input::Lock {
                cookie,
                name: name(lock),
                mode,
                flags,
            },
        );
    }

    fn unlock(&mut self, n: u8, cookie: u64, flags: LkmFlags) {
        self.input(
            n,
            Input::Unlock {
                cookie,
                flags,
                lvb: [7; 64],
            },
        );
    }
}

#[test]
fn the_first_user_masters_and_others_use_it_remotely() {
    let mut c = Cluster::new(3);
    c.lock(1, 11, "r", LockMode::Ex, LkmFlags::VALBLK);
    c.settle();
    assert!(c.granted(1, 11).is_some());
    for n in 0..3 {
        assert_eq!(c.cores[n].owner_of(&name("r")).unwrap_or(1), 1);
    }
    // A PR request from node 2 waits, and node 1 is told with a BAST.
    c.lock(2, 21, "r", LockMode::Pr, LkmFlags::VALBLK);
    c.settle();
    assert!(c.granted(2, 21).is_none());
    assert!(c.took(1, |o| matches!(
        o,
        Output::Bast {
            cookie: 11,
            blocked: LockMode::Pr
        }
    )));
    // The EX holder writes the value block back on unlock; the reader gets it.
    c.unlock(1, 11, LkmFlags::VALBLK);
    c.settle();
    let g = c.granted(2, 21).expect("PR granted after the unlock");
    assert_eq!(g.lvb, Some([7; 64]));
    let dump = {
        let mut v = Vec::new();
        c.cores[1].write_locking_state(&mut v).expect("dump");
        String::from_utf8(v).expect("utf8")
    };
    assert!(dump.contains("NAME:r\nLRES:1,1,0,"), "{dump}");
    assert!(dump.contains("RMAP:2 "), "{dump}");
    assert!(dump.contains("LOCK:1,0,3,-1,2,0:21,"), "{dump}");
}

#[test]
fn a_local_lock_needs_no_message() {
    let mut c = Cluster::new(2);
    c.lock(0, 1, "mine", LockMode::Ex, LkmFlags::LOCAL);
    assert!(c.queue.is_empty(), "LKM_LOCAL masters without asking");
    assert!(c.granted(0, 1).is_some());
}

#[test]
fn bad_flags_and_unjoined_domains_are_refused() {
    let mut c = Cluster::new(1);
    c.lock(0, 1, "x", LockMode::Ex, LkmFlags::FORCE | LkmFlags::ORPHAN);
    assert_eq!(c.failed(0, 1), Some(DlmStatus::Badparam));
    c.lock(0, 2, "x", LockMode::Ex, LkmFlags::CONVERT);
    assert_eq!(c.failed(0, 2), Some(DlmStatus::Badparam));
    let mut lone = DomainCore::new(DomainConfig::new(
        5,
        DomainName::new(b"other").expect("name"),
    ));
    lone.handle(
        0,
        Input::Lock {
            cookie: 9,
            name: name("x"),
            mode: LockMode::Pr,
            flags: LkmFlags::empty(),
        },
    );
    let out: Vec<Output> = lone.drain_outputs().collect();
    assert_eq!(
        out,
        vec![Output::Done {
            cookie: 9,
            result: Err(DlmStatus::Rejected)
        }]
    );
}

#[test]
fn the_waiter_on_a_dead_masters_lock_gets_it_once_recovery_remasters_it() {
    let mut c = Cluster::new(3);
    c.lock(2, 21, "r", LockMode::Ex, LkmFlags::empty());
    c.settle();
    assert!(c.granted(2, 21).is_some());
    // Node 1 holds PR elsewhere first so it has a reference; node 0 asks for EX and waits.
    c.lock(0, 1, "r", LockMode::Ex, LkmFlags::empty());
    c.settle();
    assert!(c.granted(0, 1).is_none());
    c.lock(1, 11, "r", LockMode::Pr, LkmFlags::empty());
    c.settle();
    assert!(c.granted(1, 11).is_none());
    // The master (and holder) dies.
    c.dead.push(2);
    c.input(0, Input::NodeDown(2));
    c.input(1, Input::NodeDown(2));
    let mut s = Vec::new();
    c.cores[0].write_dlm_state(&mut s).expect("dump");
    let dump = String::from_utf8_lossy(&s).into_owned();
    assert!(
        dump.contains("Dead Node: 2") && dump.contains("State: ACTIVE"),
        "dlm_state shows recovery: {dump}"
    );
    c.settle();
    // Nobody is told DLM_RECOVERING: the requests wait for the new master.
    assert_eq!(c.failed(0, 1), None);
    assert_eq!(c.failed(1, 11), None);
    c.wait(3000);
    // One survivor is the master now, both agree, and recovery is over on both.
    let m0 = c.cores[0].owner_of(&name("r"));
    let m1 = c.cores[1].owner_of(&name("r"));
    assert!(matches!(m0, Some(0 | 1)), "owner {m0:?}");
    assert_eq!(m0, m1);
    for n in 0..2 {
        let st = c.cores[n].recovery_state().expect("recovery");
        assert!(!st.active, "node {n} still recovering: {st:?}");
        assert_eq!(st.completed, 1);
    }
    // Exactly one of the waiters holds the lock; the other gets it after the release.
    let g0 = c.granted(0, 1).is_some();
    let g1 = c.granted(1, 11).is_some();
    assert!(g0 ^ g1, "exactly one grant: node 0 {g0}, node 1 {g1}");
    if g0 {
        c.unlock(0, 1, LkmFlags::empty());
        c.settle();
        assert!(c.granted(1, 11).is_some());
    } else {
        c.unlock(1, 11, LkmFlags::empty());
        c.settle();
        assert!(c.granted(0, 1).is_some());
    }
    // New requests on the recovered resource work, and new names master among survivors.
    c.lock(1, 12, "fresh", LockMode::Pr, LkmFlags::empty());
    c.settle();
    assert!(c.granted(1, 12).is_some());
}

#[test]
fn recovery_keeps_a_pr_holders_value_block_and_drops_a_dead_ex_writers() {
    // Value block kept: node 2 masters, node 0 wrote 7s under EX and now holds PR; node 2
    // dies; the PR holder's copy survives on the new master.
    let mut c = Cluster::new(3);
    c.lock(2, 21, "keep", LockMode::Nl, LkmFlags::empty());
    c.settle();
    assert!(c.granted(2, 21).is_some());
    c.lock(0, 1, "keep", LockMode::Ex, LkmFlags::VALBLK);
    c.settle();
    assert!(c.granted(0, 1).is_some());
    c.unlock(0, 1, LkmFlags::VALBLK);
    c.settle();
    c.lock(0, 2, "keep", LockMode::Pr, LkmFlags::VALBLK);
    c.settle();
    assert_eq!(c.granted(0, 2).and_then(|g| g.lvb), Some([7; 64]));
    // Value block dropped: on "drop", node 2 (the master) holds EX with a value written.
    c.lock(2, 22, "drop", LockMode::Ex, LkmFlags::VALBLK);
    c.settle();
    assert!(c.granted(2, 22).is_some());
    c.input(
        2,
        Input::Convert {
            cookie: 22,
            mode: LockMode::Nl,
            flags: LkmFlags::VALBLK,
            lvb: [9; 64],
        },
    );
    c.settle();
    c.input(
        2,
        Input::Convert {
            cookie: 22,
            mode: LockMode::Ex,
            flags: LkmFlags::VALBLK,
            lvb: [9; 64],
        },
    );
    c.settle();
    c.told.clear();
    c.lock(1, 11, "drop", LockMode::Pr, LkmFlags::VALBLK);
    c.settle();
    assert!(c.granted(1, 11).is_none());
    c.dead.push(2);
    c.input(0, Input::NodeDown(2));
    c.input(1, Input::NodeDown(2));
    c.wait(3000);
    // The waiter on "drop" gets PR with no value block: nobody alive had read the last one.
    assert_eq!(c.granted(1, 11).and_then(|g| g.lvb), Some([0; 64]));
    // "keep": an EX request from node 1 after recovery sees the PR holder's 7s once node 0
    // lets go.
    c.lock(1, 12, "keep", LockMode::Ex, LkmFlags::VALBLK);
    c.settle();
    assert!(c.granted(1, 12).is_none());
    c.unlock(0, 2, LkmFlags::empty());
    c.settle();
    assert_eq!(c.granted(1, 12).and_then(|g| g.lvb), Some([7; 64]));
}

#[test]
fn the_recovery_master_dying_mid_recovery_hands_it_to_another_survivor() {
    let mut c = Cluster::new(4);
    c.lock(3, 31, "r", LockMode::Ex, LkmFlags::empty());
    c.settle();
    assert!(c.granted(3, 31).is_some());
    c.lock(1, 11, "r", LockMode::Ex, LkmFlags::empty());
    c.lock(2, 21, "r", LockMode::Ex, LkmFlags::empty());
    c.settle();
    c.dead.push(3);
    for n in 0..3 {
        c.input(n, Input::NodeDown(3));
    }
    // Carry messages one at a time until someone knows the recovery master, then kill it
    // before recovery completes.
    let mut reco_master = None;
    for _ in 0..10_000 {
        reco_master = (0..3u8).find_map(|n| {
            c.cores[usize::from(n)]
                .recovery_state()
                .filter(|s| s.completed == 0)
                .and_then(|s| s.new_master)
        });
        if reco_master.is_some() || !c.deliver_one() {
            break;
        }
    }
    let rm = reco_master.expect("a recovery master is elected");
    c.dead.push(rm);
    for n in 0..3u8 {
        if n != rm {
            c.input(n, Input::NodeDown(rm));
        }
    }
    c.wait(5000);
    let alive: Vec<u8> = (0..3u8).filter(|n| *n != rm).collect();
    let owners: Vec<Option<u8>> = alive
        .iter()
        .map(|&n| c.cores[usize::from(n)].owner_of(&name("r")))
        .collect();
    assert!(
        owners
            .iter()
            .all(|o| *o == owners[0] && o.is_some_and(|m| alive.contains(&m))),
        "owners {owners:?}"
    );
    for &n in &alive {
        let st = c.cores[usize::from(n)].recovery_state().expect("state");
        assert!(!st.active, "node {n}: {st:?}");
    }
    // Each surviving waiter (the dead recovery master's own request went with it) gets the
    // lock in turn.
    let waiters: Vec<(u8, u64)> = [(1u8, 11u64), (2, 21)]
        .into_iter()
        .filter(|(n, _)| *n != rm)
        .collect();
    for (n, cookie) in waiters {
        assert!(c.granted(n, cookie).is_some(), "node {n} granted");
        c.unlock(n, cookie, LkmFlags::empty());
        c.settle();
    }
}

#[test]
fn a_dead_holder_frees_the_lock_and_invalidates_its_value_block() {
    let mut c = Cluster::new(2);
    c.lock(0, 1, "v", LockMode::Ex, LkmFlags::VALBLK);
    c.settle();
    assert!(c.granted(0, 1).is_some());
    c.unlock(0, 1, LkmFlags::VALBLK);
    c.settle();
    c.lock(1, 2, "v", LockMode::Ex, LkmFlags::VALBLK);
    c.settle();
    assert_eq!(c.granted(1, 2).and_then(|g| g.lvb), Some([7; 64]));
    c.lock(0, 3, "v", LockMode::Pr, LkmFlags::VALBLK);
    c.settle();
    assert!(c.granted(0, 3).is_none());
    c.dead.push(1);
    c.input(0, Input::NodeDown(1));
    c.settle();
    // The EX holder died: the master zeroes the value block and grants the waiter.
    assert_eq!(c.granted(0, 3).and_then(|g| g.lvb), Some([0; 64]));
}

/// Node 0 masters "m" (it locked it first); node 1 holds EX with a value block, node 2
/// waits for PR. Returns the cluster with node 2's request queued on node 0.
fn mastered_by_0_held_by_1_wanted_by_2() -> Cluster {
    mastered_by_0_held_by_wanted_by(3, 1, 2)
}

/// The same in a cluster of `nodes` with the EX holder (cookie 2) and the PR waiter
/// (cookie 3) chosen.
fn mastered_by_0_held_by_wanted_by(nodes: u8, holder: u8, waiter: u8) -> Cluster {
    let mut c = Cluster::new(nodes);
    c.lock(0, 1, "m", LockMode::Nl, LkmFlags::empty());
    c.settle();
    assert!(c.granted(0, 1).is_some());
    c.unlock(0, 1, LkmFlags::empty());
    c.lock(holder, 2, "m", LockMode::Ex, LkmFlags::VALBLK);
    c.settle();
    assert!(c.granted(holder, 2).is_some());
    c.lock(waiter, 3, "m", LockMode::Pr, LkmFlags::VALBLK);
    c.settle();
    assert!(c.granted(waiter, 3).is_none());
    c
}

fn dump(core: &DomainCore, which: &str) -> String {
    let mut v = Vec::new();
    match which {
        "mle" => core.write_mle_state(&mut v),
        "locking" => core.write_locking_state(&mut v),
        _ => core.write_dlm_state(&mut v),
    }
    .expect("dump");
    String::from_utf8(v).expect("utf-8")
}

#[test]
fn a_leaving_master_hands_what_others_use_to_them_and_the_locks_keep_working() {
    let mut c = mastered_by_0_held_by_1_wanted_by_2();
    c.input(0, Input::Leave);
    // One step at a time: the lock records go to node 1 (the first granted lock's node),
    // which asks node 2 to wait for it.
    let mut seen_mig_on_2 = false;
    for _ in 0..200 {
        if !c.deliver_one() {
            break;
        }
        let m = dump(&c.cores[2], "mle");
        if m.contains("MIG") {
            seen_mig_on_2 = true;
            assert!(m.contains("mas=  0\tnew=  1"), "{m}");
            // The bystander's copy is MIGRATING (0x20) while it waits.
            let l = dump(&c.cores[2], "locking");
            assert!(l.contains("LRES:1,0,32,"), "{l}");
        }
    }
    assert!(seen_mig_on_2, "node 2 never saw the migration");
    c.wait(2000);
    assert!(c.took(0, |o| *o == Output::Left), "node 0 left");
    for n in [1, 2] {
        assert_eq!(
            c.cores[n].owner_of(&name("m")),
            Some(1),
            "owner on node {n}"
        );
        assert_eq!(
            c.cores[n].domain_map().iter().collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(dump(&c.cores[n], "mle").is_empty(), "no entry left");
        // A clean leave: nothing was recovered.
        assert_eq!(c.cores[n].recovery_state().map(|r| r.completed), Some(0));
    }
    // The EX holder keeps its lock; its unlock writes the value block, which the PR
    // waiter gets from the new master.
    c.unlock(1, 2, LkmFlags::VALBLK);
    c.settle();
    assert_eq!(c.granted(2, 3).and_then(|g| g.lvb), Some([7; 64]));
}

#[test]
fn requests_on_a_migrating_resource_wait_instead_of_failing() {
    let mut c = mastered_by_0_held_by_1_wanted_by_2();
    c.input(0, Input::Leave);
    // Node 0 has sent its records but node 1 has not answered: "m" is MIGRATING.
    assert!(c.deliver_one());
    let l = dump(&c.cores[0], "locking");
    assert!(l.contains("LRES:1,0,32,"), "{l}");
    // Node 2 gives up its wait and asks for NL instead: both go to node 0, which answers
    // DLM_MIGRATING; they are asked again of the new master. Node 1 (the target) asks for
    // another NL lock, which waits for the migration to end there.
    c.unlock(2, 3, LkmFlags::CANCEL);
    c.lock(2, 4, "m", LockMode::Nl, LkmFlags::empty());
    c.lock(1, 6, "m", LockMode::Nl, LkmFlags::empty());
    c.settle();
    c.wait(1500);
    assert_eq!(c.failed(2, 3), Some(DlmStatus::Cancel));
    assert!(c.granted(2, 4).is_some(), "node 2's new request is granted");
    assert!(c.granted(1, 6).is_some(), "node 1's new request is granted");
    assert!(c.failed(1, 6).is_none() && c.failed(2, 4).is_none() && c.failed(1, 2).is_none());
    assert!(c.took(0, |o| *o == Output::Left));
    assert_eq!(c.cores[2].owner_of(&name("m")), Some(1));
}

#[test]
fn a_node_that_masters_nothing_others_use_just_leaves() {
    let mut c = mastered_by_0_held_by_1_wanted_by_2();
    c.input(
        2,
        Input::Unlock {
            cookie: 3,
            flags: LkmFlags::CANCEL,
            lvb: [0; 64],
        },
    );
    c.settle();
    // Node 2 masters "own" for itself only.
    c.lock(2, 5, "own", LockMode::Ex, LkmFlags::empty());
    c.settle();
    c.unlock(2, 5, LkmFlags::empty());
    c.settle();
    c.input(2, Input::Leave);
    let mut migration_sent = false;
    while let Some(w) = c.queue.front() {
        migration_sent |= w.msg_type == MsgType::MigLockres.to_wire();
        c.deliver_one();
    }
    c.wait(1000);
    assert!(!migration_sent);
    assert!(c.took(2, |o| *o == Output::Left));
    assert_eq!(c.cores[0].owner_of(&name("m")), Some(0));
}

#[test]
fn a_target_that_dies_mid_migration_makes_the_leaving_node_pick_another() {
    let mut c = mastered_by_0_held_by_1_wanted_by_2();
    c.input(0, Input::Leave);
    // The records reach node 1, which dies before it asserts.
    assert!(c.deliver_one());
    c.dead.push(1);
    c.input(0, Input::NodeDown(1));
    c.input(2, Input::NodeDown(1));
    c.settle();
    c.wait(3000);
    assert!(c.took(0, |o| *o == Output::Left), "node 0 left");
    // Node 2 takes it over (its lock is the only one left) and is granted PR, with the
    // dead EX holder's value block zeroed.
    assert_eq!(c.cores[2].owner_of(&name("m")), Some(2));
    assert_eq!(c.granted(2, 3).and_then(|g| g.lvb), Some([0; 64]));
}

#[test]
fn a_grant_whose_proxy_ast_is_overtaken_by_the_migration_is_told_once() {
    let mut c = Cluster::new(3);
    c.lock(0, 1, "m", LockMode::Nl, LkmFlags::empty());
    c.settle();
    assert!(c.granted(0, 1).is_some());
    // Node 1 holds NL (so it is the target), then asks for PR, which node 0 grants.
    c.lock(1, 10, "m", LockMode::Nl, LkmFlags::empty());
    c.settle();
    assert!(c.granted(1, 10).is_some());
    c.unlock(0, 1, LkmFlags::empty());
    c.settle();
    c.lock(1, 11, "m", LockMode::Pr, LkmFlags::VALBLK);
    // The create reaches node 0 (and its reply node 1); the proxy AST of the grant waits.
    assert!(c.deliver_one());
    let ast = c.queue.pop_front().expect("the proxy AST");
    assert_eq!(ast.msg_type, MsgType::ProxyAst.to_wire());
    c.input(0, Input::Leave);
    // The migration overtakes it: node 1 learns of its grant from the records.
    let mig = MsgType::MigLockres.to_wire();
    while let Some(w) = c.queue.front() {
        let last = w.msg_type == mig;
        c.deliver_one();
        if last {
            break;
        }
    }
    assert_eq!(c.granted(1, 11).map(|g| g.mode), Some(LockMode::Pr));
    c.queue.push_back(ast);
    c.settle();
    c.wait(1000);
    assert!(c.took(0, |o| *o == Output::Left));
    assert_eq!(c.cores[1].owner_of(&name("m")), Some(1));
    // The late proxy AST is not a second grant.
    assert!(c.granted(1, 11).is_none());
    // The lock works on its new master.
    c.unlock(1, 11, LkmFlags::empty());
    c.settle();
    assert!(c.took(1, |o| matches!(
        o,
        Output::Unlocked {
            cookie: 11,
            removed: true,
            ..
        }
    )));
}

#[test]
fn the_leaving_node_dying_after_its_records_leaves_the_resource_to_the_target() {
    let mut c = mastered_by_0_held_by_1_wanted_by_2();
    c.input(0, Input::Leave);
    assert!(c.deliver_one());
    // Node 1 has every lock and asks node 2 to wait; node 0 dies then.
    assert!(c.deliver_one());
    c.dead.push(0);
    c.input(1, Input::NodeDown(0));
    c.input(2, Input::NodeDown(0));
    c.settle();
    c.wait(3000);
    for n in [1, 2] {
        assert_eq!(
            c.cores[n].owner_of(&name("m")),
            Some(1),
            "owner on node {n}"
        );
    }
    // The holder still holds, the waiter still waits; the unlock hands over the value.
    assert!(c.failed(1, 2).is_none() && c.failed(2, 3).is_none());
    c.unlock(1, 2, LkmFlags::VALBLK);
    c.settle();
    assert_eq!(c.granted(2, 3).and_then(|g| g.lvb), Some([7; 64]));
}

#[test]
fn idle_resources_are_dereferenced_and_purged() {
    let mut c = Cluster::new(2);
    c.lock(0, 1, "p", LockMode::Pr, LkmFlags::empty());
    c.settle();
    c.lock(1, 2, "p", LockMode::Pr, LkmFlags::empty());
    c.settle();
    c.unlock(0, 1, LkmFlags::empty());
    c.unlock(1, 2, LkmFlags::empty());
    c.settle();
    assert_eq!(c.cores[0].resource_count(), 1);
    assert_eq!(c.cores[1].resource_count(), 1);
    c.wait(2500);
    assert_eq!(
        c.cores[0].resource_count(),
        0,
        "master purged after the deref"
    );
    assert_eq!(
        c.cores[1].resource_count(),
        0,
        "non-master dropped its reference"
    );
}

#[test]
fn racing_first_users_agree_on_the_lowest_node() {
    let mut c = Cluster::new(4);
    // Every node asks before any message moves.
    for n in 0..4u8 {
        c.lock(n, u64::from(n) + 1, "race", LockMode::Pr, LkmFlags::empty());
    }
    c.settle();
    for n in 0..4u8 {
        assert!(c.granted(n, u64::from(n) + 1).is_some(), "node {n} granted");
        assert_eq!(c.cores[usize::from(n)].owner_of(&name("race")), Some(0));
    }
    let mut v = Vec::new();
    c.cores[0].write_mle_state(&mut v).expect("dump");
    assert!(
        v.is_empty(),
        "no master list entry left: {}",
        String::from_utf8_lossy(&v)
    );
}

/// Delivers queued messages up to and including the first one of type `t` from `from` to `to`.
fn deliver_through(c: &mut Cluster, from: u8, to: u8, t: MsgType) {
    let t = t.to_wire();
    for _ in 0..100 {
        let w = c.queue.front().expect("the message is on its way");
        let last = w.from == from && w.to == to && w.msg_type == t;
        c.deliver_one();
        if last {
            return;
        }
    }
    panic!("no such message");
}

/// Runs the cluster (messages, and timers when none is on its way), keeping messages matching
/// `held` (from, to, type) back until one matching `until` is on its way (`sent`) or has been
/// delivered.
fn hold_until(c: &mut Cluster, held: (u8, u8, MsgType), until: (u8, u8, MsgType), sent: bool) {
    let is = |w: &Wire, m: (u8, u8, MsgType)| {
        w.from == m.0 && w.to == m.1 && w.msg_type == m.2.to_wire()
    };
    let mut kept = VecDeque::new();
    for _ in 0..100_000 {
        if sent && c.queue.iter().any(|w| is(w, until)) {
            break;
        }
        let Some(w) = c.queue.front() else {
            c.now += 10;
            for i in 0..c.cores.len() as u8 {
                if !c.dead.contains(&i) {
                    c.input(i, Input::Tick);
                }
            }
            continue;
        };
        if is(w, held) {
            kept.extend(c.queue.pop_front());
            continue;
        }
        let last = is(w, until);
        c.deliver_one();
        if last {
            break;
        }
    }
    assert!(!kept.is_empty(), "nothing was held back");
    while let Some(w) = kept.pop_back() {
        c.queue.push_front(w);
    }
}

#[test]
fn a_bystander_that_sees_the_old_master_die_first_takes_the_target_as_master() {
    // Target (the EX holder), bystander (the PR waiter), and who hears of the death first: the
    // lower of the two survivors becomes the recovery master.
    for (t, b, first_down) in [(1u8, 2u8, 1u8), (1, 2, 2), (2, 1, 1), (2, 1, 2)] {
        let case = format!("target {t}, bystander {b}, {first_down} saw the death first");
        let mut c = mastered_by_0_held_by_wanted_by(3, t, b);
        c.input(0, Input::Leave);
        // The target gets every record (it masters "m" now) and asks the bystander to wait
        // for it; node 0 dies before that request arrives, so the bystander takes "m" for the
        // dead node's and starts recovering it.
        deliver_through(&mut c, 0, t, MsgType::MigLockres);
        c.dead.push(0);
        c.input(first_down, Input::NodeDown(0));
        c.input(3 - first_down, Input::NodeDown(0));
        c.settle();
        c.wait(3000);
        for n in [1, 2] {
            assert_eq!(
                c.cores[n].owner_of(&name("m")),
                Some(t),
                "owner on {n}: {case}"
            );
            let st = c.cores[n].recovery_state().expect("recovery");
            assert!(!st.active && st.completed == 1, "node {n}: {st:?}: {case}");
        }
        // No second master granted the waiter beside the EX holder; the holder's unlock
        // hands its value block to the waiter.
        assert!(c.granted(b, 3).is_none(), "PR granted beside EX: {case}");
        assert!(
            c.failed(t, 2).is_none() && c.failed(b, 3).is_none(),
            "{case}"
        );
        c.unlock(t, 2, LkmFlags::VALBLK);
        c.settle();
        assert_eq!(c.granted(b, 3).and_then(|g| g.lvb), Some([7; 64]), "{case}");
    }
}

#[test]
fn a_target_dying_after_telling_a_bystander_leaves_the_resource_with_the_old_master() {
    for (t, b, first_down) in [(1u8, 2u8, 0u8), (1, 2, 2), (2, 1, 0), (2, 1, 1)] {
        let case = format!("target {t}, bystander {b}, {first_down} saw the death first");
        let mut c = mastered_by_0_held_by_wanted_by(3, t, b);
        c.input(0, Input::Leave);
        // The target gets the records, tells the bystander it is the new master (request and
        // assert), and dies before its assert reaches node 0, which keeps "m".
        deliver_through(&mut c, 0, t, MsgType::MigLockres);
        deliver_through(&mut c, t, b, MsgType::MigrateRequest);
        deliver_through(&mut c, t, b, MsgType::AssertMaster);
        assert_eq!(c.cores[usize::from(b)].owner_of(&name("m")), Some(t));
        c.dead.push(t);
        c.input(first_down, Input::NodeDown(t));
        c.input(if first_down == 0 { b } else { 0 }, Input::NodeDown(t));
        c.settle();
        c.wait(5000);
        // Node 0 kept the queues (the target's EX lock went with it, its value block zeroed),
        // granted the bystander's PR, and handed "m" over on its way out.
        assert!(c.took(0, |o| *o == Output::Left), "node 0 left: {case}");
        let bi = usize::from(b);
        assert_eq!(c.cores[bi].owner_of(&name("m")), Some(b), "{case}");
        assert_eq!(c.granted(b, 3).and_then(|g| g.lvb), Some([0; 64]), "{case}");
        assert!(c.granted(b, 3).is_none(), "granted once: {case}");
        let st = c.cores[bi].recovery_state().expect("recovery");
        assert!(!st.active && st.completed == 1, "{st:?}: {case}");
    }
}

#[test]
fn a_recovery_master_without_the_resource_leaves_it_to_the_target_of_a_dead_old_master() {
    // Node 1 has nothing on "m": whichever order the survivors hear of node 0's death in, and
    // whoever recovers, the bystander's recovery data must not make a second master.
    let orders: [[u8; 3]; 4] = [[3, 1, 2], [1, 3, 2], [2, 1, 3], [3, 2, 1]];
    let mut masters = Vec::new();
    for order in orders {
        let case = format!("deaths heard in order {order:?}");
        let mut c = mastered_by_0_held_by_wanted_by(4, 2, 3);
        c.input(0, Input::Leave);
        deliver_through(&mut c, 0, 2, MsgType::MigLockres);
        c.dead.push(0);
        for n in order {
            c.input(n, Input::NodeDown(0));
        }
        // The target's request reaches the bystander only after the bystander sent node 1
        // its recovery data on "m" (node 1 may have no trace of "m" but the target's claim).
        hold_until(
            &mut c,
            (2, 3, MsgType::MigrateRequest),
            (3, 1, MsgType::MigLockres),
            true,
        );
        // And that data reaches node 1 after the target's assert.
        hold_until(
            &mut c,
            (3, 1, MsgType::MigLockres),
            (2, 1, MsgType::AssertMaster),
            false,
        );
        c.settle();
        c.wait(3000);
        masters.push(match c.cores[1].last_recovery_event() {
            Some(o2dlm::recovery::RecoEvent::Finished { master, .. }) => master,
            e => panic!("{e:?}: {case}"),
        });
        for n in [1, 2, 3] {
            let st = c.cores[n].recovery_state().expect("recovery");
            assert!(!st.active && st.completed == 1, "node {n}: {st:?}: {case}");
        }
        for n in [2, 3] {
            assert_eq!(
                c.cores[n].owner_of(&name("m")),
                Some(2),
                "owner on {n}: {case}"
            );
        }
        assert_ne!(c.cores[1].owner_of(&name("m")), Some(1), "{case}");
        assert!(c.granted(3, 3).is_none(), "PR granted beside EX: {case}");
        c.unlock(2, 2, LkmFlags::VALBLK);
        c.settle();
        assert_eq!(c.granted(3, 3).and_then(|g| g.lvb), Some([7; 64]), "{case}");
    }
    // Node 1, which never had "m", recovered in these orders.
    assert!(masters.contains(&1), "recovery masters: {masters:?}");
}

#[test]
fn master_requery_is_answered_with_the_owner_and_the_master_asserts_again() {
    let mut c = mastered_by_0_held_by_1_wanted_by_2();
    let ask = |name_: &str| {
        DlmMessage::MasterRequery(o2dlm::wire::MasterRequery {
            node_idx: 2,
            name: name(name_),
        })
    };
    // A node that uses "m" names its master; nobody knows "none" (255).
    assert_eq!(
        c.input(
            1,
            Input::Message {
                from: 2,
                msg: ask("m")
            }
        ),
        0
    );
    assert_eq!(
        c.input(
            1,
            Input::Message {
                from: 2,
                msg: ask("none")
            }
        ),
        255
    );
    assert!(c.queue.is_empty(), "only the master asserts");
    // The master answers itself and asserts "m" again (REQUERY) to every other member.
    assert_eq!(
        c.input(
            0,
            Input::Message {
                from: 2,
                msg: ask("m")
            }
        ),
        0
    );
    let mut to: Vec<u8> = c
        .queue
        .iter()
        .filter(|w| w.from == 0 && w.msg_type == MsgType::AssertMaster.to_wire())
        .map(|w| {
            match DlmMessage::decode(w.msg_type, &w.bytes).expect("decodes") {
                DlmMessage::AssertMaster(a) => {
                    assert_eq!(a.flags, o2dlm::wire::ASSERT_MASTER_REQUERY);
                    assert_eq!(a.name, name("m"));
                }
                other => panic!("{other:?}"),
            }
            w.to
        })
        .collect();
    to.sort();
    assert_eq!(to, vec![1, 2]);
    c.settle();
    // Nothing changed: the same owner everywhere, the holder holds, the waiter waits.
    for n in 0..3 {
        assert_eq!(c.cores[n].owner_of(&name("m")), Some(0));
    }
    assert!(c.granted(2, 3).is_none() && c.failed(2, 3).is_none());
    c.unlock(1, 2, LkmFlags::VALBLK);
    c.settle();
    assert_eq!(c.granted(2, 3).and_then(|g| g.lvb), Some([7; 64]));
}

#[test]
fn a_request_waiting_on_a_migration_whose_target_dies_goes_to_the_old_master() {
    let mut c = Cluster::new(3);
    c.lock(2, 1, "m", LockMode::Nl, LkmFlags::empty());
    c.settle();
    assert!(c.granted(2, 1).is_some());
    c.unlock(2, 1, LkmFlags::empty());
    c.lock(1, 2, "m", LockMode::Pr, LkmFlags::empty());
    c.settle();
    assert!(c.granted(1, 2).is_some());
    c.input(2, Input::Leave);
    // Node 1 (the PR holder, so the target) gets the records and asks node 0, which never
    // used "m", to wait for it; node 0 asks for EX, which waits for the migration.
    deliver_through(&mut c, 2, 1, MsgType::MigLockres);
    deliver_through(&mut c, 1, 0, MsgType::MigrateRequest);
    // (A first request given up, as a lock client with a timeout does.)
    c.lock(0, 3, "m", LockMode::Ex, LkmFlags::empty());
    c.settle();
    c.unlock(0, 3, LkmFlags::CANCEL);
    c.settle();
    assert_eq!(c.failed(0, 3), Some(DlmStatus::Cancel));
    c.lock(0, 4, "m", LockMode::Ex, LkmFlags::empty());
    c.settle();
    assert!(c.granted(0, 4).is_none());
    // The target dies before it asserts.
    c.dead.push(1);
    c.input(0, Input::NodeDown(1));
    c.input(2, Input::NodeDown(1));
    c.settle();
    c.wait(5000);
    assert!(
        c.granted(0, 4).is_some(),
        "EX granted once the target is gone"
    );
    assert!(c.took(2, |o| *o == Output::Left), "node 2 left");
    assert_eq!(c.cores[0].owner_of(&name("m")), Some(0));
}

#[test]
fn an_unlock_taken_as_done_when_the_target_died_reaches_the_old_master_that_kept_the_queues() {
    // Node 0 masters "m"; node 1 holds NL (granted first, so it is the target), node 2 holds
    // EX with a value block, node 3 waits for PR.
    let mut c = Cluster::new(4);
    c.lock(0, 1, "m", LockMode::Nl, LkmFlags::empty());
    c.settle();
    assert!(c.granted(0, 1).is_some());
    c.unlock(0, 1, LkmFlags::empty());
    c.lock(1, 2, "m", LockMode::Nl, LkmFlags::empty());
    c.lock(2, 3, "m", LockMode::Ex, LkmFlags::VALBLK);
    c.settle();
    assert!(c.granted(1, 2).is_some() && c.granted(2, 3).is_some());
    c.lock(3, 4, "m", LockMode::Pr, LkmFlags::VALBLK);
    c.settle();
    assert!(c.granted(3, 4).is_none());
    c.input(0, Input::Leave);
    // The target tells nodes 2 and 3 it masters "m", and dies before telling node 0.
    deliver_through(&mut c, 0, 1, MsgType::MigLockres);
    for b in [2, 3] {
        deliver_through(&mut c, 1, b, MsgType::MigrateRequest);
    }
    for b in [2, 3] {
        deliver_through(&mut c, 1, b, MsgType::AssertMaster);
    }
    c.dead.push(1);
    // Node 2 releases its EX, writing the value block, to the target it was told of; the
    // target's death takes the unlock as done.
    c.unlock(2, 3, LkmFlags::VALBLK);
    c.input(2, Input::NodeDown(1));
    assert!(c.took(2, |o| matches!(o, Output::Unlocked { cookie: 3, .. })));
    c.input(0, Input::NodeDown(1));
    c.input(3, Input::NodeDown(1));
    c.settle();
    c.wait(5000);
    // Node 0 kept the queues and hears the unlock again: the waiter gets the value written.
    assert_eq!(c.granted(3, 4).and_then(|g| g.lvb), Some([7; 64]));
    assert!(c.took(0, |o| *o == Output::Left), "node 0 left");
}
