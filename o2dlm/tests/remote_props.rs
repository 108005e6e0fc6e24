//! Three nodes use one resource mastered by a fourth, through the real message codecs: each
//! node's requester side ([`OwnLocks`]) sends encoded create/convert/unlock messages, the
//! master's engine handles them in per-node order, and its replies and proxy ASTs come back
//! per node in order, with a proxy AST free to overtake the reply of the request that caused
//! it (as in the kernel's own traffic). At every step:
//! - what the users hold (granted locks; the lower mode while a conversion is in flight;
//!   nothing once an unlock is under way) is pairwise compatible across all nodes;
//! - every value block handed out with a grant is the last one an EX holder wrote.
//!
//! In the end, when users keep releasing, every request completes and the master's resource
//! is empty.

use std::collections::VecDeque;

use o2dlm::lockres::{LockId, LockResource};
use o2dlm::secondary::{CookieSource, Notice, OwnLocks, PendingOp};
use o2dlm::wire::*;
use proptest::prelude::*;

const MASTER: u8 = 0;
const NODES: [u8; 3] = [1, 2, 3];

#[derive(Debug, Clone, Copy)]
enum Op {
    Create,
    Convert,
    Unlock,
}

enum Inbound {
    Reply(i32),
    Ast(Vec<u8>),
}

struct Node {
    own: OwnLocks,
    cookies: CookieSource,
    /// Requests sent, oldest first: replies come back in this order.
    outstanding: VecDeque<(Op, u64)>,
    to_master: VecDeque<(u16, Vec<u8>)>,
    inbox: VecDeque<Inbound>,
}

struct World {
    name: LockName,
    master: LockResource,
    nodes: Vec<Node>,
    /// The value the last EX holder wrote back.
    written: Lvb,
}

fn held(l: &o2dlm::secondary::OwnLock) -> Option<LockMode> {
    match (l.queue, l.pending) {
        (_, Some(PendingOp::Unlock)) => None,
        (QueueKind::Granted, _) => Some(l.mode),
        (QueueKind::Converting, _) => Some(l.convert_type.map_or(l.mode, |c| c.min(l.mode))),
        (QueueKind::Blocked, _) => None,
    }
}

impl World {
    fn new() -> World {
        let name = LockName::new(b"shared").unwrap();
        World {
            name,
            master: LockResource::new(name),
            nodes: NODES
                .iter()
                .map(|&n| Node {
                    own: OwnLocks::new(n, name),
                    cookies: CookieSource::new(n),
                    outstanding: VecDeque::new(),
                    to_master: VecDeque::new(),
                    inbox: VecDeque::new(),
                })
                .collect(),
            written: [0; 64],
        }
    }

    fn send(&mut self, n: usize, op: Op, cookie: u64, msg: DlmMessage) {
        let node = &mut self.nodes[n];
        node.outstanding.push_back((op, cookie));
        node.to_master
            .push_back((msg.msg_type().to_wire(), msg.to_vec()));
    }

    /// A user call on node `n`; `pick` chooses among its locks, `byte` is the LVB it writes.
    fn user(
        &mut self,
        n: usize,
        action: u8,
        pick: usize,
        mode: LockMode,
        flags: LkmFlags,
        byte: u8,
    ) {
        let lvb = [byte; 64];
        let locks: Vec<(u64, QueueKind, LockMode, Option<PendingOp>)> = self.nodes[n]
            .own
            .locks()
            .map(|l| (l.cookie, l.queue, l.mode, l.pending))
            .collect();
        let target = (!locks.is_empty()).then(|| locks[pick % locks.len()]);
        match (action % 4, target) {
            (0, _) | (_, None) => {
                let c = self.nodes[n].cookies.next_cookie();
                let m = self.nodes[n].own.begin_lock(c, mode, flags);
                self.send(n, Op::Create, c, DlmMessage::CreateLock(m));
            }
            (_, Some((_, _, _, Some(_)))) => {} // one call at a time per lock
            (1, Some((c, QueueKind::Granted, cur, None))) => {
                let f = flags.without(LkmFlags::NOQUEUE).without(LkmFlags::CONVERT);
                let f = if byte.is_multiple_of(2) {
                    f | LkmFlags::NOQUEUE
                } else {
                    f
                };
                match self.nodes[n].own.begin_convert(c, mode, f, &lvb) {
                    Ok(Some(m)) => {
                        if cur == LockMode::Ex && f.contains(LkmFlags::VALBLK) {
                            self.written = lvb;
                        }
                        self.send(n, Op::Convert, c, DlmMessage::ConvertLock(m));
                    }
                    Ok(None) => {}
                    Err(s) => panic!("convert of a granted lock refused: {s}"),
                }
            }
            (2, Some((c, QueueKind::Granted, cur, None))) => {
                let f = if flags.contains(LkmFlags::VALBLK) {
                    LkmFlags::VALBLK
                } else {
                    LkmFlags::empty()
                };
                let m = self.nodes[n].own.begin_unlock(c, f, &lvb).unwrap();
                if cur == LockMode::Ex && f.contains(LkmFlags::VALBLK) {
                    self.written = lvb;
                }
                self.send(n, Op::Unlock, c, DlmMessage::UnlockLock(m));
            }
            (_, Some((c, QueueKind::Converting | QueueKind::Blocked, _, None))) => {
                let m = self.nodes[n]
                    .own
                    .begin_unlock(c, LkmFlags::CANCEL, &lvb)
                    .unwrap();
                self.send(n, Op::Unlock, c, DlmMessage::UnlockLock(m));
            }
            _ => {}
        }
    }

    /// The master handles node `n`'s oldest request; `reply_first` orders its reply against
    /// the ASTs the request caused.
    fn master(&mut self, n: usize, reply_first: bool) -> bool {
        let Some((t, bytes)) = self.nodes[n].to_master.pop_front() else {
            return false;
        };
        let status = match DlmMessage::decode(t, &bytes).unwrap() {
            DlmMessage::CreateLock(c) => {
                let id = LockId {
                    node: c.node_idx,
                    cookie: c.cookie,
                };
                self.master.request(id, c.requested_type, c.flags).err()
            }
            DlmMessage::ConvertLock(c) => {
                let id = LockId {
                    node: c.node_idx,
                    cookie: c.cookie,
                };
                self.master
                    .convert(id, c.requested_type, c.flags, c.lvb.as_ref())
                    .err()
            }
            DlmMessage::UnlockLock(u) => {
                let id = LockId {
                    node: u.node_idx,
                    cookie: u.cookie,
                };
                match self.master.unlock(id, u.flags, u.lvb.as_ref()) {
                    Ok(done) => Some(done.status()).filter(|s| *s != DlmStatus::Normal),
                    Err(s) => Some(s),
                }
            }
            other => panic!("unexpected {other:?}"),
        }
        .unwrap_or(DlmStatus::Normal);
        if reply_first {
            self.nodes[n]
                .inbox
                .push_back(Inbound::Reply(status.to_wire()));
        }
        self.master.shuffle();
        let mut out = Vec::new();
        self.master.flush(&mut out);
        for d in out {
            let to = usize::from(d.lock().node) - 1;
            let msg = DlmMessage::ProxyAst(d.to_proxy_ast(MASTER, self.name));
            self.nodes[to].inbox.push_back(Inbound::Ast(msg.to_vec()));
        }
        if !reply_first {
            self.nodes[n]
                .inbox
                .push_back(Inbound::Reply(status.to_wire()));
        }
        true
    }

    /// Node `n` takes its oldest inbound message.
    fn deliver(&mut self, n: usize) -> Result<bool, TestCaseError> {
        let Some(msg) = self.nodes[n].inbox.pop_front() else {
            return Ok(false);
        };
        let node = &mut self.nodes[n];
        match msg {
            Inbound::Reply(s) => {
                let status = DlmStatus::from_wire(s).unwrap();
                let (op, c) = node.outstanding.pop_front().unwrap();
                match op {
                    Op::Create => {
                        node.own.lock_reply(c, status);
                    }
                    Op::Convert => {
                        node.own.convert_reply(c, status);
                    }
                    Op::Unlock => {
                        node.own.unlock_reply(c, status);
                    }
                }
            }
            Inbound::Ast(bytes) => {
                let DlmMessage::ProxyAst(p) =
                    DlmMessage::decode(MsgType::ProxyAst.to_wire(), &bytes).unwrap()
                else {
                    unreachable!()
                };
                let (status, notice) = node.own.proxy_ast(&p);
                prop_assert_eq!(status, DlmStatus::Normal);
                if let Some(Notice::Ast { lvb: Some(v), .. }) = notice {
                    prop_assert_eq!(v, self.written, "a grant carried a stale value block");
                }
            }
        }
        Ok(true)
    }

    fn check_exclusion(&self) -> Result<(), TestCaseError> {
        let held: Vec<(u8, u64, LockMode)> = self
            .nodes
            .iter()
            .zip(NODES)
            .flat_map(|(node, n)| {
                node.own
                    .locks()
                    .filter_map(move |l| held(l).map(|m| (n, l.cookie, m)))
            })
            .collect();
        for (i, a) in held.iter().enumerate() {
            for b in &held[i + 1..] {
                prop_assert!(
                    LockMode::compatible(a.2, b.2),
                    "users hold {:?} and {:?} together",
                    a,
                    b
                );
            }
        }
        Ok(())
    }

    fn quiet(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| n.to_master.is_empty() && n.inbox.is_empty())
    }
}

#[derive(Debug, Clone)]
enum Step {
    User {
        node: usize,
        action: u8,
        pick: usize,
        mode: LockMode,
        valblk: bool,
        byte: u8,
    },
    Master {
        node: usize,
        reply_first: bool,
    },
    Deliver {
        node: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let mode = prop::sample::select(LockMode::ALL.to_vec());
    prop_oneof![
        2 => (0..3usize, any::<u8>(), any::<usize>(), mode, any::<bool>(), any::<u8>()).prop_map(
            |(node, action, pick, mode, valblk, byte)| Step::User { node, action, pick, mode, valblk, byte }
        ),
        3 => (0..3usize, any::<bool>()).prop_map(|(node, reply_first)| Step::Master { node, reply_first }),
        3 => (0..3usize).prop_map(|node| Step::Deliver { node }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 600,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn users_never_share_incompatible_modes(steps in prop::collection::vec(step(), 1..150)) {
        let mut w = World::new();
        for s in steps {
            match s {
                Step::User { node, action, pick, mode, valblk, byte } => {
                    let mut f = LkmFlags::empty();
                    if valblk {
                        f |= LkmFlags::VALBLK;
                    }
                    if action & 0x10 != 0 {
                        f |= LkmFlags::NOQUEUE;
                    }
                    w.user(node, action, pick, mode, f, byte);
                }
                Step::Master { node, reply_first } => {
                    w.master(node, reply_first);
                }
                Step::Deliver { node } => {
                    w.deliver(node)?;
                }
            }
            w.check_exclusion()?;
        }
        // Drain: deliver everything; users release what they hold and withdraw what waits
        // once nothing else moves (two conversions can wait on each other's modes).
        let mut rounds = 0;
        loop {
            rounds += 1;
            prop_assert!(rounds < 2000, "no progress");
            let mut moved = false;
            for n in 0..3 {
                moved |= w.master(n, rounds % 2 == 0);
                moved |= w.deliver(n)?;
                w.check_exclusion()?;
            }
            if moved || !w.quiet() {
                continue;
            }
            let mut acted = false;
            for n in 0..3 {
                let granted = w.nodes[n]
                    .own
                    .locks()
                    .position(|l| l.queue == QueueKind::Granted && l.pending.is_none());
                if let Some(pick) = granted {
                    w.user(n, 2, pick, LockMode::Nl, LkmFlags::empty(), 0);
                    acted = true;
                }
            }
            if !acted {
                for n in 0..3 {
                    let waiting = w.nodes[n].own.locks().position(|l| l.pending.is_none());
                    if let Some(pick) = waiting {
                        w.user(n, 3, pick, LockMode::Nl, LkmFlags::empty(), 0);
                        acted = true;
                        break;
                    }
                }
            }
            if !acted {
                break;
            }
        }
        for n in &w.nodes {
            prop_assert!(n.own.is_empty(), "left: {:?}", n.own.locks().collect::<Vec<_>>());
            prop_assert!(n.outstanding.is_empty());
        }
        prop_assert!(w.master.has_no_locks());
    }
}
