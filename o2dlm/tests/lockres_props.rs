//! Property tests of the lock-resource engine.
//!
//! 1. Against a deliberately simple reference model: one flat list of locks tagged with their
//!    queue (queue order = list order), and the `dlm_shuffle_lists` rules of docs/o2dlm.md pseudocode written
//!    out directly. After every operation both shuffle and flush; results, deliveries, queues
//!    and the value block must agree.
//! 2. Under arbitrary interleavings of operations, shuffles and flushes: the safety invariants
//!    hold at every step, no waiting request is left behind by a shuffle, every delivery
//!    makes sense, and once holders keep releasing (and cancel conversions that wait on each
//!    other), every request is granted.

use o2dlm::lockres::{Delivery, LockId, LockResource, Requested, Unlocked};
use o2dlm::wire::{DlmStatus, LkmFlags, LockMode, LockName, Lvb, QueueKind};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// The reference model.

#[derive(Debug, Clone)]
struct MLock {
    id: LockId,
    q: QueueKind,
    mode: LockMode,
    cvt: Option<LockMode>,
    get_lvb: bool,
}

#[derive(Debug, Clone)]
struct Model {
    locks: Vec<MLock>,
    lvb: Lvb,
}

fn compat(a: LockMode, b: LockMode) -> bool {
    // Spelled out from the table of docs/o2dlm.md rather than calling the code under test.
    !matches!(
        (a, b),
        (LockMode::Pr, LockMode::Ex) | (LockMode::Ex, LockMode::Pr) | (LockMode::Ex, LockMode::Ex)
    )
}

/// Unlock results, reduced to what the model tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    Unlocked(LockId, LockMode),
    CancelledRequest(LockId, LockMode),
    CancelledConvert,
    CancelGrant,
}

fn shape(r: Result<Unlocked, DlmStatus>) -> Result<Shape, DlmStatus> {
    r.map(|u| match u {
        Unlocked::Unlocked(l) => Shape::Unlocked(l.id, l.mode),
        Unlocked::CancelledRequest(l) => Shape::CancelledRequest(l.id, l.mode),
        Unlocked::CancelledConvert => Shape::CancelledConvert,
        Unlocked::CancelGrant => Shape::CancelGrant,
    })
}

impl Model {
    fn new() -> Model {
        Model {
            locks: Vec::new(),
            lvb: [0; 64],
        }
    }

    fn idx(&self, id: LockId) -> Option<usize> {
        self.locks.iter().position(|l| l.id == id)
    }

    fn holders(&self) -> impl Iterator<Item = &MLock> {
        // Granted first, then converting: the scan order of the kernel.
        let g = self.locks.iter().filter(|l| l.q == QueueKind::Granted);
        let c = self.locks.iter().filter(|l| l.q == QueueKind::Converting);
        g.chain(c)
    }

    fn request(&mut self, id: LockId, mode: LockMode, f: LkmFlags) -> Result<Requested, DlmStatus> {
        if self.idx(id).is_some() {
            return Err(DlmStatus::Badargs);
        }
        let get_lvb =
            f.contains(LkmFlags::GET_LVB) || (f.contains(LkmFlags::VALBLK) && mode != LockMode::Nl);
        let ok = self
            .holders()
            .all(|l| compat(l.mode, mode) && l.cvt.is_none_or(|c| compat(c, mode)));
        let q = if ok {
            QueueKind::Granted
        } else if f.contains(LkmFlags::NOQUEUE) {
            return Err(DlmStatus::Notqueued);
        } else {
            QueueKind::Blocked
        };
        self.locks.push(MLock {
            id,
            q,
            mode,
            cvt: None,
            get_lvb,
        });
        Ok(if ok {
            Requested::Granted
        } else {
            Requested::Queued
        })
    }

    fn convert(
        &mut self,
        id: LockId,
        mode: LockMode,
        f: LkmFlags,
        lvb: Option<&Lvb>,
    ) -> Result<(Requested, bool), DlmStatus> {
        let i = self.idx(id).ok_or(DlmStatus::Ivlockid)?;
        if f.contains(LkmFlags::PUT_LVB | LkmFlags::GET_LVB) {
            return Err(DlmStatus::Badargs);
        }
        let cur = self.locks[i].clone();
        if cur.q != QueueKind::Granted || cur.cvt.is_some() {
            return Err(DlmStatus::Denied);
        }
        let valblk = f.contains(LkmFlags::VALBLK);
        let put = f.contains(LkmFlags::PUT_LVB) || (valblk && cur.mode == LockMode::Ex);
        let get = (f.contains(LkmFlags::GET_LVB) && !f.contains(LkmFlags::PUT_LVB))
            || (valblk && cur.mode != LockMode::Ex && mode != LockMode::Nl);
        let put_value = if put {
            Some(*lvb.ok_or(DlmStatus::Badargs)?)
        } else {
            None
        };
        let ok = mode <= cur.mode
            || self.holders().filter(|l| l.id != id).all(|l| {
                compat(l.mode, mode)
                    && (l.q == QueueKind::Granted || l.cvt.is_none_or(|c| compat(c, mode)))
            });
        if !ok && f.contains(LkmFlags::NOQUEUE) {
            return Err(DlmStatus::Notqueued);
        }
        let mut l = self.locks.remove(i);
        l.get_lvb |= get;
        if ok {
            l.mode = mode;
            if let Some(v) = put_value {
                self.lvb = v;
            }
        } else {
            l.q = QueueKind::Converting;
            l.cvt = Some(mode);
        }
        self.locks.push(l);
        Ok((
            if ok {
                Requested::Granted
            } else {
                Requested::Queued
            },
            ok,
        ))
    }

    fn unlock(&mut self, id: LockId, f: LkmFlags, lvb: Option<&Lvb>) -> Result<Shape, DlmStatus> {
        let i = self.idx(id).ok_or(DlmStatus::Ivlockid)?;
        let l = self.locks[i].clone();
        if f.contains(LkmFlags::CANCEL) {
            return Ok(match l.q {
                QueueKind::Granted => Shape::CancelGrant,
                QueueKind::Blocked => {
                    self.locks.remove(i);
                    Shape::CancelledRequest(l.id, l.mode)
                }
                QueueKind::Converting => {
                    let mut l = self.locks.remove(i);
                    l.q = QueueKind::Granted;
                    l.cvt = None;
                    l.get_lvb = false;
                    self.locks.push(l);
                    Shape::CancelledConvert
                }
            });
        }
        if l.q != QueueKind::Granted {
            return Err(DlmStatus::Denied);
        }
        if f.contains(LkmFlags::VALBLK) && l.mode == LockMode::Ex {
            self.lvb = *lvb.ok_or(DlmStatus::Badargs)?;
        }
        self.locks.remove(i);
        Ok(Shape::Unlocked(l.id, l.mode))
    }

    /// The shuffle of docs/o2dlm.md, then the flush: ASTs (in grant order) before BASTs (in the order
    /// their locks were first found blocking).
    fn settle(&mut self, mut asts: Vec<LockId>) -> Vec<Delivery> {
        let mut basts: Vec<(LockId, LockMode)> = Vec::new();
        let raise = |basts: &mut Vec<(LockId, LockMode)>, id: LockId, m: LockMode| match basts
            .iter_mut()
            .find(|(b, _)| *b == id)
        {
            Some((_, hb)) => *hb = (*hb).max(m),
            None => basts.push((id, m)),
        };
        let mut can_grant = true;
        loop {
            if let Some(t) = self
                .locks
                .iter()
                .find(|l| l.q == QueueKind::Converting)
                .cloned()
            {
                let want = t.cvt.unwrap();
                let blockers: Vec<LockId> = self
                    .holders()
                    .filter(|l| l.id != t.id && !compat(l.mode, want))
                    .map(|l| l.id)
                    .collect();
                for b in blockers {
                    can_grant = false;
                    raise(&mut basts, b, want);
                }
                if can_grant {
                    let i = self.idx(t.id).unwrap();
                    let mut l = self.locks.remove(i);
                    l.q = QueueKind::Granted;
                    l.mode = want;
                    l.cvt = None;
                    self.locks.push(l);
                    asts.push(t.id);
                    continue;
                }
            }
            if let Some(t) = self
                .locks
                .iter()
                .find(|l| l.q == QueueKind::Blocked)
                .cloned()
            {
                let blockers: Vec<LockId> = self
                    .holders()
                    .filter(|l| !compat(l.mode, t.mode))
                    .map(|l| l.id)
                    .collect();
                for b in blockers {
                    can_grant = false;
                    raise(&mut basts, b, t.mode);
                }
                if can_grant {
                    let i = self.idx(t.id).unwrap();
                    let mut l = self.locks.remove(i);
                    l.q = QueueKind::Granted;
                    self.locks.push(l);
                    asts.push(t.id);
                    continue;
                }
            }
            break;
        }
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for id in asts {
            if seen.contains(&id) {
                continue;
            }
            seen.push(id);
            if let Some(i) = self.idx(id) {
                let l = &mut self.locks[i];
                out.push(Delivery::Ast {
                    lock: id,
                    mode: l.mode,
                    lvb: l.get_lvb.then_some(self.lvb),
                });
                l.get_lvb = false;
            }
        }
        // A BAST whose lock was just granted to something that no longer blocks is dropped
        // (dlm_should_cancel_bast); with a flush after every operation this cannot happen.
        out.extend(
            basts
                .into_iter()
                .map(|(lock, blocked)| Delivery::Bast { lock, blocked }),
        );
        out
    }

    fn snapshot(&self) -> Vec<(QueueKind, LockId, LockMode, Option<LockMode>)> {
        let mut v = Vec::new();
        for q in QueueKind::ALL {
            for l in self.locks.iter().filter(|l| l.q == q) {
                v.push((q, l.id, l.mode, l.cvt));
            }
        }
        v
    }
}

fn snapshot(r: &LockResource) -> Vec<(QueueKind, LockId, LockMode, Option<LockMode>)> {
    r.locks()
        .map(|(q, l)| (q, l.id, l.mode, l.convert_type))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Operations.

#[derive(Debug, Clone)]
enum Op {
    Request {
        node: u8,
        mode: LockMode,
        noqueue: bool,
        valblk: bool,
        remote_get: bool,
    },
    Convert {
        pick: prop::sample::Index,
        mode: LockMode,
        noqueue: bool,
        valblk: bool,
        byte: u8,
    },
    Unlock {
        pick: prop::sample::Index,
        valblk: bool,
        byte: u8,
    },
    Cancel {
        pick: prop::sample::Index,
    },
    Shuffle,
    Flush,
}

fn mode() -> impl Strategy<Value = LockMode> {
    prop::sample::select(LockMode::ALL.to_vec())
}

fn op(with_steps: bool) -> impl Strategy<Value = Op> {
    let ops = prop_oneof![
        4 => (0u8..6, mode(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(node, mode, noqueue, valblk, remote_get)| Op::Request { node, mode, noqueue, valblk, remote_get }
        ),
        4 => (any::<prop::sample::Index>(), mode(), any::<bool>(), any::<bool>(), any::<u8>())
            .prop_map(|(pick, mode, noqueue, valblk, byte)| Op::Convert { pick, mode, noqueue, valblk, byte }),
        3 => (any::<prop::sample::Index>(), any::<bool>(), any::<u8>())
            .prop_map(|(pick, valblk, byte)| Op::Unlock { pick, valblk, byte }),
        2 => any::<prop::sample::Index>().prop_map(|pick| Op::Cancel { pick }),
    ];
    if with_steps {
        prop_oneof![6 => ops, 2 => Just(Op::Shuffle), 2 => Just(Op::Flush)].boxed()
    } else {
        ops.boxed()
    }
}

fn flags(noqueue: bool, valblk: bool) -> LkmFlags {
    let mut f = LkmFlags::empty();
    if noqueue {
        f |= LkmFlags::NOQUEUE;
    }
    if valblk {
        f |= LkmFlags::VALBLK;
    }
    f
}

/// A new lock's flags: [`flags`], with GET_LVB for a remote node's request (`remote_get`).
fn request_flags(noqueue: bool, valblk: bool, remote_get: bool) -> LkmFlags {
    let f = flags(noqueue, valblk);
    if remote_get {
        f | LkmFlags::GET_LVB
    } else {
        f
    }
}

/// Ids handed out so far (removed ones included, so stale ids get exercised too).
struct Ids {
    all: Vec<LockId>,
    next: u64,
}

impl Ids {
    fn fresh(&mut self, node: u8) -> LockId {
        self.next += 1;
        let id = LockId {
            node,
            cookie: (u64::from(node) << 56) | self.next,
        };
        self.all.push(id);
        id
    }
    fn pick(&self, i: &prop::sample::Index) -> Option<LockId> {
        (!self.all.is_empty()).then(|| self.all[i.index(self.all.len())])
    }
}

proptest! {
    // No regression files: tests leave nothing behind; a failure prints its minimal input.
    #![proptest_config(ProptestConfig {
        cases: 1500,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_reference_model(ops in prop::collection::vec(op(false), 1..60)) {
        let mut r = LockResource::new(LockName::new(b"model").unwrap());
        let mut m = Model::new();
        let mut ids = Ids { all: Vec::new(), next: 0 };
        for op in ops {
            let mut asts = Vec::new();
            match op {
                Op::Request { node, mode, noqueue, valblk, remote_get } => {
                    let id = ids.fresh(node);
                    let f = request_flags(noqueue, valblk, remote_get);
                    let a = r.request(id, mode, f);
                    let b = m.request(id, mode, f);
                    prop_assert_eq!(a, b);
                    if a == Ok(Requested::Granted) {
                        asts.push(id);
                    }
                }
                Op::Convert { pick, mode, noqueue, valblk, byte } => {
                    let Some(id) = ids.pick(&pick) else { continue };
                    let v = [byte; 64];
                    let f = flags(noqueue, valblk);
                    let a = r.convert(id, mode, f, Some(&v));
                    let b = m.convert(id, mode, f, Some(&v));
                    prop_assert_eq!(a, b.map(|(x, _)| x));
                    if let Ok((_, true)) = b {
                        asts.push(id);
                    }
                }
                Op::Unlock { pick, valblk, byte } => {
                    let Some(id) = ids.pick(&pick) else { continue };
                    let v = [byte; 64];
                    let f = flags(false, valblk);
                    prop_assert_eq!(shape(r.unlock(id, f, Some(&v))), m.unlock(id, f, Some(&v)));
                }
                Op::Cancel { pick } => {
                    let Some(id) = ids.pick(&pick) else { continue };
                    prop_assert_eq!(
                        shape(r.unlock(id, LkmFlags::CANCEL, None)),
                        m.unlock(id, LkmFlags::CANCEL, None)
                    );
                }
                Op::Shuffle | Op::Flush => unreachable!("not generated"),
            }
            r.shuffle();
            let mut got = Vec::new();
            r.flush(&mut got);
            prop_assert_eq!(got, m.settle(asts));
            prop_assert_eq!(snapshot(&r), m.snapshot());
            prop_assert_eq!(r.lvb(), &m.lvb);
            prop_assert!(!r.is_dirty());
            prop_assert!(!r.has_pending_deliveries());
        }
    }

    #[test]
    fn invariants_hold_under_any_interleaving(ops in prop::collection::vec(op(true), 1..80)) {
        let mut r = LockResource::new(LockName::new(b"inv").unwrap());
        let mut ids = Ids { all: Vec::new(), next: 0 };
        // Last value written back by an EX holder: what any LVB-carrying AST must show.
        let mut written: Lvb = [0; 64];
        for op in ops {
            match op {
                Op::Request { node, mode, noqueue, valblk, remote_get } => {
                    let id = ids.fresh(node);
                    let f = request_flags(noqueue, valblk, remote_get);
                    let _ = r.request(id, mode, f);
                }
                Op::Convert { pick, mode, noqueue, valblk, byte } => {
                    let Some(id) = ids.pick(&pick) else { continue };
                    let was_ex = r.find(id).is_some_and(|(q, l)| q == QueueKind::Granted
                        && l.mode == LockMode::Ex && l.convert_type.is_none());
                    let v = [byte; 64];
                    if r.convert(id, mode, flags(noqueue, valblk), Some(&v)).is_ok() && was_ex && valblk {
                        written = v;
                    }
                }
                Op::Unlock { pick, valblk, byte } => {
                    let Some(id) = ids.pick(&pick) else { continue };
                    let was_ex = r.find(id).is_some_and(|(_, l)| l.mode == LockMode::Ex);
                    let v = [byte; 64];
                    if matches!(r.unlock(id, flags(false, valblk), Some(&v)), Ok(Unlocked::Unlocked(_)))
                        && was_ex && valblk {
                        written = v;
                    }
                }
                Op::Cancel { pick } => {
                    let Some(id) = ids.pick(&pick) else { continue };
                    let _ = r.unlock(id, LkmFlags::CANCEL, None);
                }
                Op::Shuffle => {
                    r.shuffle();
                    check_no_grantable_head(&r)?;
                }
                Op::Flush => {
                    let mut out = Vec::new();
                    r.flush(&mut out);
                    check_deliveries(&r, &out, &written)?;
                }
            }
            check_safety(&r)?;
            prop_assert_eq!(r.lvb(), &written);
        }
        // Progress: keep flushing and releasing; every lock still present gets granted.
        let mut rounds = 0;
        while !r.has_no_locks() {
            rounds += 1;
            prop_assert!(rounds < 200, "no progress: {:?}", snapshot(&r));
            r.shuffle();
            let mut out = Vec::new();
            r.flush(&mut out);
            check_deliveries(&r, &out, &written)?;
            // Release one holder per round, oldest first. With nothing granted, two
            // conversions can wait on each other's current modes (o2dlm has no deadlock
            // detection; the BASTed holder, as ocfs2's dlmglue does, cancels its conversion).
            let granted = r.queue(QueueKind::Granted).first().map(|l| l.id);
            if let Some(id) = granted {
                prop_assert!(matches!(r.unlock(id, LkmFlags::empty(), None), Ok(Unlocked::Unlocked(_))));
            } else if let Some(id) = r.queue(QueueKind::Converting).last().map(|l| l.id) {
                prop_assert_eq!(r.unlock(id, LkmFlags::CANCEL, None), Ok(Unlocked::CancelledConvert));
            }
            check_safety(&r)?;
        }
    }
}

/// Granted and converting locks hold their current modes at the same time: they must be
/// pairwise compatible. Each lock sits on one queue with consistent fields.
fn check_safety(r: &LockResource) -> Result<(), TestCaseError> {
    let holders: Vec<_> = r
        .queue(QueueKind::Granted)
        .iter()
        .chain(r.queue(QueueKind::Converting))
        .collect();
    for (i, a) in holders.iter().enumerate() {
        for b in &holders[i + 1..] {
            prop_assert!(compat(a.mode, b.mode), "{:?} and {:?} held together", a, b);
        }
    }
    let mut seen = Vec::new();
    for (q, l) in r.locks() {
        prop_assert!(!seen.contains(&l.id), "{:?} twice", l.id);
        seen.push(l.id);
        match q {
            QueueKind::Converting => {
                prop_assert!(l.convert_type.is_some_and(|c| c > l.mode), "{:?}", l)
            }
            _ => prop_assert!(l.convert_type.is_none(), "{:?}", l),
        }
    }
    Ok(())
}

/// After a shuffle nothing waits that could have been granted: the converting head conflicts
/// with another holder, or, with no conversion waiting, the blocked head does.
fn check_no_grantable_head(r: &LockResource) -> Result<(), TestCaseError> {
    let holders = || {
        r.queue(QueueKind::Granted)
            .iter()
            .chain(r.queue(QueueKind::Converting))
    };
    if let Some(t) = r.queue(QueueKind::Converting).first() {
        let want = t.convert_type.unwrap();
        prop_assert!(
            holders().any(|l| l.id != t.id && !compat(l.mode, want)),
            "converting head {:?} grantable",
            t
        );
    } else if let Some(t) = r.queue(QueueKind::Blocked).first() {
        prop_assert!(
            holders().any(|l| !compat(l.mode, t.mode)),
            "blocked head {:?} grantable",
            t
        );
    }
    Ok(())
}

/// ASTs report the lock's current granted mode and, when they carry one, the value last
/// written back; BASTs go to a holder whose mode conflicts with the blocked mode, and come
/// after all ASTs.
fn check_deliveries(
    r: &LockResource,
    out: &[Delivery],
    written: &Lvb,
) -> Result<(), TestCaseError> {
    let mut in_basts = false;
    for d in out {
        match d {
            Delivery::Ast { lock, mode, lvb } => {
                prop_assert!(!in_basts, "AST after a BAST: {:?}", out);
                let (q, l) = r.find(*lock).unwrap();
                prop_assert!(q != QueueKind::Blocked);
                prop_assert_eq!(l.mode, *mode);
                if let Some(v) = lvb {
                    prop_assert_eq!(v, written);
                }
            }
            Delivery::Bast { lock, blocked } => {
                in_basts = true;
                let (q, l) = r.find(*lock).unwrap();
                prop_assert!(q != QueueKind::Blocked);
                prop_assert!(*blocked != LockMode::Nl);
                prop_assert!(
                    !compat(l.mode, *blocked) || l.mode == LockMode::Ex,
                    "BAST {:?} to {:?}",
                    blocked,
                    l
                );
            }
        }
    }
    Ok(())
}
