//! The domain core driven by hand: messages are carried between cores by the test (encoded
//! and decoded on the way), so each test can hold a message back, kill a node, or look at
//! the state between steps.

use std::collections::VecDeque;

use o2dlm::domain::{DomainConfig, DomainCore, Grant, Input, Output};
use o2dlm::join::DomainState;
use o2dlm::wire::{errno, DlmMessage, DlmStatus, DomainName, LkmFlags, LockMode, LockName};

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
fn a_request_to_a_master_that_dies_finishes_with_recovering() {
    let mut c = Cluster::new(3);
    c.lock(2, 21, "r", LockMode::Ex, LkmFlags::empty());
    c.settle();
    assert!(c.granted(2, 21).is_some());
    // Node 0 asks for the lock; node 2 holds it, so the request waits on the master.
    c.lock(0, 1, "r", LockMode::Ex, LkmFlags::empty());
    c.settle();
    assert!(c.granted(0, 1).is_none());
    // The master dies: the waiting request ends with the kernel's status, it does not hang.
    c.dead.push(2);
    c.input(0, Input::NodeDown(2));
    c.input(1, Input::NodeDown(2));
    c.settle();
    assert_eq!(c.failed(0, 1), Some(DlmStatus::Recovering));
    // New requests on the orphaned resource say so too, until recovery exists.
    c.lock(0, 2, "r", LockMode::Pr, LkmFlags::empty());
    c.settle();
    assert_eq!(c.failed(0, 2), Some(DlmStatus::Recovering));
    // Other names master among the survivors.
    c.lock(1, 11, "fresh", LockMode::Pr, LkmFlags::empty());
    c.settle();
    assert!(c.granted(1, 11).is_some());
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

#[test]
fn leave_waits_until_nobody_uses_what_it_masters() {
    let mut c = Cluster::new(2);
    c.lock(0, 1, "m", LockMode::Pr, LkmFlags::empty());
    c.settle();
    assert!(c.granted(0, 1).is_some());
    c.lock(1, 2, "m", LockMode::Pr, LkmFlags::empty());
    c.settle();
    assert!(c.granted(1, 2).is_some());
    c.unlock(0, 1, LkmFlags::empty());
    c.settle();
    c.input(0, Input::Leave);
    c.wait(3000);
    // Node 1 still holds a lock on a resource node 0 masters: node 0 must not go.
    assert!(!c.took(0, |o| *o == Output::Left));
    assert_eq!(c.cores[0].state(), DomainState::InShutdown);
    c.unlock(1, 2, LkmFlags::empty());
    c.settle();
    // Node 1 drops its reference after the purge interval; node 0 then leaves.
    c.wait(3000);
    assert!(c.took(0, |o| *o == Output::Left));
    assert_eq!(c.cores[1].domain_map().iter().collect::<Vec<_>>(), vec![1]);
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
