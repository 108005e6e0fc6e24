//! The queue engine of one lock resource, as its master runs it: the granted, converting and
//! blocked queues, new locks, conversions up and down, NOQUEUE, cancel, unlock, the kernel's
//! grant order (`dlm_shuffle_lists`), AST and BAST queueing with BAST coalescing and
//! cancellation, and the lock value block rules.
//!
//! It is a plain state machine with no I/O and no clock. Operations change the queues and
//! queue deliveries; [`LockResource::shuffle`] is the master's dlm thread pass over a dirty
//! resource; [`LockResource::flush`] hands out the queued ASTs (all of them first) and then
//! BASTs, as `dlm_flush_asts` does. The caller decides when to shuffle and flush, which is how
//! the kernel's asynchrony (a new lock may be granted between an unlock and the next shuffle)
//! stays reproducible under the simulator.
//!
//! Mastery state (owner, refmap, the RECOVERING/MIGRATING/IN_PROGRESS bits) lives with the
//! domain that holds this resource; migration and recovery move a resource with
//! [`LockResource::migratable_locks`] and [`LockResource::add_migrated_lock`], and clean up
//! after a dead node with [`LockResource::remove_node_locks`].

use crate::wire::{
    AstType, DlmStatus, LkmFlags, LockMode, LockName, Lvb, MigratableLock, ProxyAst, QueueKind,
    LKSB_GET_LVB, LKSB_PUT_LVB, LVB_LEN, MRES_MIGRATION, MRES_RECOVERY,
};
use crate::Error;

/// A lock's identity on the master: the node that owns it and its cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockId {
    pub node: u8,
    pub cookie: u64,
}

impl std::fmt::Display for LockId {
    /// The kernel's `node:seq` notation of a cookie, with the owner node.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} (node {})",
            crate::wire::cookie_node(self.cookie),
            crate::wire::cookie_seq(self.cookie),
            self.node
        )
    }
}

/// One lock on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub id: LockId,
    /// Granted mode; for a lock on the blocked queue, the requested mode (`ml.type`).
    pub mode: LockMode,
    /// Target of a pending conversion; set exactly while the lock is on the converting queue.
    pub convert_type: Option<LockMode>,
    /// Strongest mode this lock blocks that has not been told in a BAST yet.
    pub highest_blocked: Option<LockMode>,
    /// LVB direction pending until the next AST (`LKSB_GET_LVB`, `LKSB_PUT_LVB`).
    pub lksb_flags: u8,
    /// An AST for this lock is queued and not yet flushed.
    pub ast_pending: bool,
    /// A BAST for this lock is queued and not yet flushed.
    pub bast_pending: bool,
}

impl Lock {
    fn new(id: LockId, mode: LockMode) -> Lock {
        Lock {
            id,
            mode,
            convert_type: None,
            highest_blocked: None,
            lksb_flags: 0,
            ast_pending: false,
            bast_pending: false,
        }
    }
}

/// What the master hands to a lock's owner after [`LockResource::flush`]: a local callback for
/// its own locks, a `DLM_PROXY_AST_MSG` for remote ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The lock is granted in `mode`; `lvb` is the resource's value block when the lock asked
    /// for it (PR/EX request or up-conversion with VALBLK).
    Ast {
        lock: LockId,
        mode: LockMode,
        lvb: Option<Lvb>,
    },
    /// The lock blocks a request for `blocked`; its holder should down-convert or unlock.
    Bast { lock: LockId, blocked: LockMode },
}

impl Delivery {
    /// The lock the delivery is for.
    pub fn lock(&self) -> LockId {
        match self {
            Delivery::Ast { lock, .. } | Delivery::Bast { lock, .. } => *lock,
        }
    }

    /// The `DLM_PROXY_AST_MSG` a master (`master`) sends for a remote lock on resource `name`,
    /// as the kernel builds it: an AST carries `LKM_GET_LVB` and the value block when the lock
    /// asked for it and NL in `blocked_type`; a BAST carries the blocked mode and no flags.
    pub fn to_proxy_ast(&self, master: u8, name: LockName) -> ProxyAst {
        match *self {
            Delivery::Ast { lock, lvb, .. } => ProxyAst {
                cookie: lock.cookie,
                flags: if lvb.is_some() {
                    LkmFlags::GET_LVB
                } else {
                    LkmFlags::empty()
                },
                node_idx: master,
                ast_type: AstType::Ast,
                blocked_type: Some(LockMode::Nl),
                name,
                lvb,
            },
            Delivery::Bast { lock, blocked } => ProxyAst {
                cookie: lock.cookie,
                flags: LkmFlags::empty(),
                node_idx: master,
                ast_type: AstType::Bast,
                blocked_type: Some(blocked),
                name,
                lvb: None,
            },
        }
    }
}

/// Where a lock or conversion request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// Granted at once; its AST is queued.
    Granted,
    /// Waiting on the blocked (new lock) or converting queue; the AST follows its grant.
    Queued,
}

/// The result of an unlock or cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlocked {
    /// The granted lock was removed.
    Unlocked(Lock),
    /// A blocked request was withdrawn and removed.
    CancelledRequest(Lock),
    /// A pending conversion was withdrawn; the lock is back on the granted queue in its old mode.
    CancelledConvert,
    /// Cancel came too late: the lock was already granted (`DLM_CANCELGRANT`).
    CancelGrant,
}

impl Unlocked {
    /// The status the kernel reports for this outcome (the reply of `DLM_UNLOCK_LOCK_MSG`, and
    /// the argument of the requester's unlock AST).
    pub fn status(&self) -> DlmStatus {
        match self {
            Unlocked::CancelGrant => DlmStatus::Cancelgrant,
            _ => DlmStatus::Normal,
        }
    }
}

/// What [`LockResource::remove_node_locks`] removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemovedLocks {
    /// How many locks of the node were removed.
    pub count: usize,
    /// Whether the node held EX (granted or converting from EX): its LVB writes are lost, so
    /// recovery invalidates the value block.
    pub held_ex: bool,
}

/// What [`LockResource::add_migrated_lock`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// The dummy record: the sender holds only a reference; set its refmap bit.
    Reference(u8),
    /// Another node's lock was created; set that node's refmap bit.
    Created(u8),
    /// The receiver's own lock was moved to the tail of its queue.
    Requeued,
    /// The receiver's own lock is on another queue than the record says; left as it is.
    WrongQueue,
    /// A lock with this cookie is already on the queue; the record was ignored.
    Duplicate,
}

/// One lock resource's queues and value block on its master.
#[derive(Debug, Clone)]
pub struct LockResource {
    name: LockName,
    lvb: Lvb,
    queues: Queues,
    /// Queued deliveries in queueing order; a flush sends the ASTs, then the BASTs.
    pending: Vec<(LockId, Pending)>,
    dirty: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Ast,
    Bast,
}

/// The three queues in one vector, granted then converting then blocked, so that an idle
/// resource costs one empty vector (a million of them must fit in 512 MiB).
#[derive(Debug, Clone, Default)]
struct Queues {
    locks: Vec<Lock>,
    granted_end: u32,
    converting_end: u32,
}

impl Queues {
    fn bounds(&self, kind: QueueKind) -> (usize, usize) {
        let g = self.granted_end as usize;
        let c = self.converting_end as usize;
        match kind {
            QueueKind::Granted => (0, g),
            QueueKind::Converting => (g, c),
            QueueKind::Blocked => (c, self.locks.len()),
        }
    }

    fn get(&self, kind: QueueKind) -> &[Lock] {
        let (a, b) = self.bounds(kind);
        self.locks.get(a..b).unwrap_or(&[])
    }

    fn get_mut(&mut self, kind: QueueKind) -> &mut [Lock] {
        let (a, b) = self.bounds(kind);
        self.locks.get_mut(a..b).unwrap_or(&mut [])
    }

    /// The granted and converting locks: the ones holding a mode.
    fn holders_mut(&mut self) -> &mut [Lock] {
        let c = self.converting_end as usize;
        self.locks.get_mut(..c).unwrap_or(&mut [])
    }

    fn grow(&mut self, kind: QueueKind) {
        match kind {
            QueueKind::Granted => {
                self.granted_end += 1;
                self.converting_end += 1;
            }
            QueueKind::Converting => self.converting_end += 1,
            QueueKind::Blocked => {}
        }
    }

    fn remove(&mut self, kind: QueueKind, idx: usize) -> Option<Lock> {
        let (a, b) = self.bounds(kind);
        if a + idx >= b {
            return None;
        }
        let lock = self.locks.remove(a + idx);
        match kind {
            QueueKind::Granted => {
                self.granted_end -= 1;
                self.converting_end -= 1;
            }
            QueueKind::Converting => self.converting_end -= 1,
            QueueKind::Blocked => {}
        }
        Some(lock)
    }

    fn push_back(&mut self, kind: QueueKind, lock: Lock) {
        let (_, b) = self.bounds(kind);
        self.locks.insert(b, lock);
        self.grow(kind);
    }

    fn push_front(&mut self, kind: QueueKind, lock: Lock) {
        let (a, _) = self.bounds(kind);
        self.locks.insert(a, lock);
        self.grow(kind);
    }

    /// Removes the locks `drop` selects; returns how many went.
    fn remove_where(&mut self, drop: impl Fn(&Lock) -> bool) -> usize {
        let mut removed = 0;
        for kind in [
            QueueKind::Blocked,
            QueueKind::Converting,
            QueueKind::Granted,
        ] {
            let mut i = 0;
            while let Some(lock) = self.get(kind).get(i) {
                if drop(lock) {
                    self.remove(kind, i);
                    removed += 1;
                } else {
                    i += 1;
                }
            }
        }
        removed
    }
}

impl LockResource {
    /// An empty resource with a zeroed value block.
    pub fn new(name: LockName) -> LockResource {
        LockResource {
            name,
            lvb: [0; LVB_LEN],
            queues: Queues::default(),
            pending: Vec::new(),
            dirty: false,
        }
    }

    /// The resource's name.
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// The resource's lock value block.
    pub fn lvb(&self) -> &Lvb {
        &self.lvb
    }

    /// Replaces the value block (recovery adopting a survivor's copy).
    pub fn set_lvb(&mut self, lvb: Lvb) {
        self.lvb = lvb;
    }

    /// Zeroes the value block (`dlm_revalidate_lvb` when an EX holder died).
    pub fn invalidate_lvb(&mut self) {
        self.lvb = [0; LVB_LEN];
    }

    /// Whether the queues changed since the last [`shuffle`](Self::shuffle).
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Whether ASTs or BASTs wait for [`flush`](Self::flush).
    pub fn has_pending_deliveries(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether the resource holds no lock at all.
    pub fn has_no_locks(&self) -> bool {
        self.queues.locks.is_empty()
    }

    /// Returns the memory of empty queues to the allocator. Queues keep their capacity so a
    /// busy resource does not allocate on every lock; the domain calls this when a resource
    /// becomes unused (as the kernel puts it on its purge list), so idle resources stay small.
    pub fn shrink_if_idle(&mut self) {
        if self.queues.locks.is_empty() {
            self.queues.locks = Vec::new();
        }
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
    }

    /// One queue, in order.
    pub fn queue(&self, kind: QueueKind) -> &[Lock] {
        self.queues.get(kind)
    }

    /// Every lock with its queue, in the kernel's order: granted, converting, blocked.
    pub fn locks(&self) -> impl Iterator<Item = (QueueKind, &Lock)> {
        QueueKind::ALL
            .into_iter()
            .flat_map(move |k| self.queue(k).iter().map(move |l| (k, l)))
    }

    /// Finds a lock and its queue.
    pub fn find(&self, id: LockId) -> Option<(QueueKind, &Lock)> {
        self.locks().find(|(_, l)| l.id == id)
    }

    fn position(&self, id: LockId) -> Option<(QueueKind, usize)> {
        QueueKind::ALL.into_iter().find_map(|k| {
            self.queue(k)
                .iter()
                .position(|l| l.id == id)
                .map(|i| (k, i))
        })
    }

    fn lock_mut(&mut self, id: LockId) -> Option<&mut Lock> {
        let (k, i) = self.position(id)?;
        self.queues.get_mut(k).get_mut(i)
    }

    /// `dlm_can_grant_new_lock`: compatible with every granted lock and with both the current
    /// and the target mode of every converting lock. Blocked requests are not considered, so a
    /// compatible newcomer passes waiting ones, as in the kernel.
    fn can_grant_new(&self, mode: LockMode) -> bool {
        self.queue(QueueKind::Granted)
            .iter()
            .all(|l| LockMode::compatible(l.mode, mode))
            && self.queue(QueueKind::Converting).iter().all(|l| {
                LockMode::compatible(l.mode, mode)
                    && l.convert_type.is_none_or(|c| LockMode::compatible(c, mode))
            })
    }

    /// A new lock request on the master (`dlmlock_master`; also what the create-lock handler
    /// runs for a remote node). `flags` may carry VALBLK (read the LVB on grant, for PR and EX),
    /// GET_LVB (a remote requester's VALBLK) and NOQUEUE.
    ///
    /// Errors: `DLM_NOTQUEUED` for a NOQUEUE request that cannot be granted at once,
    /// `DLM_BADARGS` if a lock with this id already exists.
    pub fn request(
        &mut self,
        id: LockId,
        mode: LockMode,
        flags: LkmFlags,
    ) -> Result<Requested, DlmStatus> {
        if self.position(id).is_some() {
            return Err(DlmStatus::Badargs);
        }
        let mut lock = Lock::new(id, mode);
        if flags.contains(LkmFlags::GET_LVB)
            || (flags.contains(LkmFlags::VALBLK) && mode >= LockMode::Pr)
        {
            lock.lksb_flags |= LKSB_GET_LVB;
        }
        let outcome = if self.can_grant_new(mode) {
            self.queues.push_back(QueueKind::Granted, lock);
            // The recovery lock is granted while the dlm thread is frozen: no AST; the
            // requester learns the grant from the status alone.
            if !self.name.is_recovery_lock() {
                self.queue_ast(id);
            }
            Requested::Granted
        } else if flags.contains(LkmFlags::NOQUEUE) {
            return Err(DlmStatus::Notqueued);
        } else {
            self.queues.push_back(QueueKind::Blocked, lock);
            Requested::Queued
        };
        self.dirty = true;
        Ok(outcome)
    }

    /// A conversion on the master (`__dlmconvert_master`; also what the convert handler runs).
    /// `flags` may carry VALBLK, NOQUEUE and, from a remote requester, PUT_LVB (with `lvb`) or
    /// GET_LVB. An EX holder converting with VALBLK writes `lvb` into the resource when the
    /// conversion is granted (always at once, since it is a down-conversion); a PR or NL holder
    /// converting up with VALBLK reads the value block with its AST.
    ///
    /// Errors: `DLM_IVLOCKID` (no such lock), `DLM_DENIED` (not granted, or already
    /// converting), `DLM_BADARGS` (both PUT and GET, or an LVB write without the LVB),
    /// `DLM_NOTQUEUED` (NOQUEUE up-conversion that cannot be granted at once).
    pub fn convert(
        &mut self,
        id: LockId,
        mode: LockMode,
        flags: LkmFlags,
        lvb: Option<&Lvb>,
    ) -> Result<Requested, DlmStatus> {
        let (queue, idx) = self.position(id).ok_or(DlmStatus::Ivlockid)?;
        if flags.contains(LkmFlags::PUT_LVB | LkmFlags::GET_LVB) {
            return Err(DlmStatus::Badargs);
        }
        let Some(lock) = self.queue(queue).get(idx) else {
            return Err(DlmStatus::Ivlockid);
        };
        if lock.convert_type.is_some() || queue != QueueKind::Granted {
            return Err(DlmStatus::Denied);
        }
        let current = lock.mode;
        let mut lksb = 0u8;
        if flags.contains(LkmFlags::PUT_LVB) {
            lksb |= LKSB_PUT_LVB;
        } else if flags.contains(LkmFlags::GET_LVB) {
            lksb |= LKSB_GET_LVB;
        }
        if flags.contains(LkmFlags::VALBLK) {
            match current {
                LockMode::Ex => lksb |= LKSB_PUT_LVB,
                LockMode::Pr | LockMode::Nl if mode > LockMode::Nl => lksb |= LKSB_GET_LVB,
                LockMode::Pr | LockMode::Nl => {}
            }
        }
        let put = if lksb & LKSB_PUT_LVB != 0 {
            Some(*lvb.ok_or(DlmStatus::Badargs)?)
        } else {
            None
        };

        let grantable = mode <= current
            || (self
                .queue(QueueKind::Granted)
                .iter()
                .filter(|l| l.id != id)
                .all(|l| LockMode::compatible(l.mode, mode))
                && self.queue(QueueKind::Converting).iter().all(|l| {
                    LockMode::compatible(l.mode, mode)
                        && l.convert_type.is_none_or(|c| LockMode::compatible(c, mode))
                }));

        if !grantable && flags.contains(LkmFlags::NOQUEUE) {
            return Err(DlmStatus::Notqueued);
        }
        let Some(mut lock) = self.queues.remove(QueueKind::Granted, idx) else {
            return Err(DlmStatus::Ivlockid);
        };
        lock.lksb_flags |= lksb;
        if grantable {
            lock.mode = mode;
            if let Some(v) = put {
                self.lvb = v;
            }
            // The kernel moves even an in-place down-conversion to the tail of the granted
            // queue.
            self.queues.push_back(QueueKind::Granted, lock);
            self.queue_ast(id);
            self.dirty = true;
            return Ok(Requested::Granted);
        }
        lock.convert_type = Some(mode);
        self.queues.push_back(QueueKind::Converting, lock);
        self.dirty = true;
        Ok(Requested::Queued)
    }

    /// Unlock (or, with LKM_CANCEL, cancel) on the master (`dlmunlock_common`; also what the
    /// unlock handler runs). VALBLK writes `lvb` into the resource when unlocking an EX lock and
    /// is ignored otherwise, and always with CANCEL.
    ///
    /// Errors: `DLM_IVLOCKID` (no such lock), `DLM_BADPARAM` (unlock while the lock's grant AST
    /// is still queued), `DLM_DENIED` (unlock of a lock that is not granted: cancel it first),
    /// `DLM_BADARGS` (an LVB write without the LVB).
    pub fn unlock(
        &mut self,
        id: LockId,
        flags: LkmFlags,
        lvb: Option<&Lvb>,
    ) -> Result<Unlocked, DlmStatus> {
        let (queue, idx) = self.position(id).ok_or(DlmStatus::Ivlockid)?;
        let cancel = flags.contains(LkmFlags::CANCEL);
        let Some(lock) = self.queue(queue).get(idx) else {
            return Err(DlmStatus::Ivlockid);
        };
        if lock.ast_pending && !cancel {
            return Err(DlmStatus::Badparam);
        }
        let outcome = if cancel {
            match queue {
                QueueKind::Blocked => {
                    let lock = self.queues.remove(queue, idx).ok_or(DlmStatus::Ivlockid)?;
                    self.forget_deliveries(id);
                    Unlocked::CancelledRequest(lock)
                }
                QueueKind::Converting => {
                    let mut lock = self.queues.remove(queue, idx).ok_or(DlmStatus::Ivlockid)?;
                    lock.convert_type = None;
                    lock.lksb_flags = 0;
                    self.queues.push_back(QueueKind::Granted, lock);
                    Unlocked::CancelledConvert
                }
                // Too late; the kernel still kicks its dlm thread, so the queues get
                // another pass.
                QueueKind::Granted => Unlocked::CancelGrant,
            }
        } else {
            if queue != QueueKind::Granted {
                return Err(DlmStatus::Denied);
            }
            let write = flags.contains(LkmFlags::VALBLK) && lock.mode == LockMode::Ex;
            if write {
                self.lvb = *lvb.ok_or(DlmStatus::Badargs)?;
            }
            let lock = self
                .queues
                .remove(QueueKind::Granted, idx)
                .ok_or(DlmStatus::Ivlockid)?;
            // A BAST still queued for a lock being unlocked would reach nobody: the owner
            // ignores BASTs for locks with an unlock pending.
            self.forget_deliveries(id);
            Unlocked::Unlocked(lock)
        };
        self.dirty = true;
        Ok(outcome)
    }

    fn forget_deliveries(&mut self, id: LockId) {
        self.pending.retain(|(l, _)| *l != id);
    }

    /// `__dlm_queue_ast`, with `dlm_should_cancel_bast`: a BAST still queued for the lock is
    /// dropped when the new mode can no longer block what it announced (NL blocks nothing, PR
    /// blocks only EX).
    fn queue_ast(&mut self, id: LockId) {
        let Some(lock) = self.lock_mut(id) else {
            return;
        };
        let cancel_bast = match (lock.highest_blocked, lock.mode) {
            (None, _) | (Some(_), LockMode::Ex) => false,
            (Some(_), LockMode::Nl) => true,
            (Some(hb), LockMode::Pr) => hb != LockMode::Ex,
        };
        if cancel_bast {
            lock.highest_blocked = None;
            lock.bast_pending = false;
        }
        // A second grant before the first AST went out is reported once, with the state at
        // flush time (the kernel would BUG here; its callers never convert before the AST).
        let newly = !lock.ast_pending;
        lock.ast_pending = true;
        if cancel_bast {
            self.pending.retain(|p| *p != (id, Pending::Bast));
        }
        if newly {
            self.pending.push((id, Pending::Ast));
        }
    }

    /// One pass of the master's dlm thread over this resource (`dlm_shuffle_lists`): grant the
    /// head of the converting queue while it is compatible with every other granted and
    /// converting lock, then the head of the blocked queue likewise, repeating after each
    /// grant; holders that stand in the way get a BAST (once until it is flushed, with the
    /// strongest mode they block). A blocked request is never granted while the converting
    /// head waits.
    pub fn shuffle(&mut self) {
        self.dirty = false;
        let mut can_grant = true;
        loop {
            let head = self.queue(QueueKind::Converting).first();
            if let Some((target, want)) = head.and_then(|t| Some((t.id, t.convert_type?))) {
                if block_scan(
                    self.queues.holders_mut(),
                    Some(target),
                    want,
                    &mut self.pending,
                ) {
                    can_grant = false;
                }
                if can_grant {
                    if let Some(mut lock) = self.queues.remove(QueueKind::Converting, 0) {
                        lock.mode = want;
                        lock.convert_type = None;
                        self.queues.push_back(QueueKind::Granted, lock);
                        self.queue_ast(target);
                        continue;
                    }
                }
            }
            let head = self.queue(QueueKind::Blocked).first();
            if let Some((target, want)) = head.map(|t| (t.id, t.mode)) {
                if block_scan(self.queues.holders_mut(), None, want, &mut self.pending) {
                    can_grant = false;
                }
                if can_grant {
                    if let Some(lock) = self.queues.remove(QueueKind::Blocked, 0) {
                        self.queues.push_back(QueueKind::Granted, lock);
                        self.queue_ast(target);
                        continue;
                    }
                }
            }
            break;
        }
    }

    /// Hands out the queued deliveries (`dlm_flush_asts`): every AST first, with the value
    /// block for locks that asked for it, then every BAST with the strongest mode blocked
    /// since the last one.
    pub fn flush(&mut self, out: &mut Vec<Delivery>) {
        let lvb = self.lvb;
        let mut pending = std::mem::take(&mut self.pending);
        for &(id, _) in pending.iter().filter(|(_, k)| *k == Pending::Ast) {
            if let Some(lock) = self.lock_mut(id) {
                let get = lock.lksb_flags & LKSB_GET_LVB != 0;
                lock.lksb_flags = 0;
                lock.ast_pending = false;
                out.push(Delivery::Ast {
                    lock: id,
                    mode: lock.mode,
                    lvb: get.then_some(lvb),
                });
            }
        }
        for &(id, _) in pending.iter().filter(|(_, k)| *k == Pending::Bast) {
            if let Some(lock) = self.lock_mut(id) {
                lock.bast_pending = false;
                if let Some(blocked) = lock.highest_blocked.take() {
                    out.push(Delivery::Bast { lock: id, blocked });
                }
            }
        }
        // Keep the allocation: a busy resource queues deliveries again at once.
        pending.clear();
        self.pending = pending;
    }

    /// The locks as migration and recovery send them (`dlm_migratable_lock` records), in
    /// queue order.
    pub fn migratable_locks(&self) -> impl Iterator<Item = MigratableLock> + '_ {
        self.locks().map(|(list, l)| MigratableLock {
            cookie: l.id.cookie,
            list,
            flags: l.lksb_flags,
            type_: Some(l.mode),
            convert_type: l.convert_type,
            highest_blocked: l.highest_blocked,
            node: l.id.node,
        })
    }

    /// Applies one lock record of a `DLM_MIG_LOCKRES_MSG` on the receiving (new or recovery)
    /// master (`dlm_process_recovery_data`). `local_node` is the receiver's node number,
    /// `mres_flags` the message's `MRES_*` bits and `mres_lvb` its value block.
    ///
    /// - The dummy record adds nothing ([`Migrated::Reference`]: set the sender's refmap bit).
    /// - The receiver's own lock (migration only) already exists here; it moves to the tail of
    ///   its queue, or stays put if the record names another queue.
    /// - Another node's lock is created ([`Migrated::Created`]: set its refmap bit), unless
    ///   its cookie is already on that queue. Recovery puts a down-conversion that was in
    ///   flight at the head of the converting queue; everything else is appended, so queue
    ///   order across senders is lost, as in the kernel.
    /// - Value block: a granted or converting PR/EX record brings `mres_lvb` (unless it is
    ///   all zero): a pending write-back (`LKSB_PUT_LVB`) wins; otherwise it must agree with
    ///   what the resource already has.
    ///
    /// Records the kernel would crash on are errors naming the resource and lock.
    pub fn add_migrated_lock(
        &mut self,
        local_node: u8,
        mres_flags: u8,
        mres_lvb: &Lvb,
        ml: &MigratableLock,
    ) -> Result<Migrated, Error> {
        if ml.is_dummy() {
            return Ok(Migrated::Reference(ml.node));
        }
        let name = self.name;
        let bad = |reason: &'static str| Error::BadMigratedLock {
            name,
            cookie: ml.cookie,
            node: ml.node,
            reason,
        };
        if ml.highest_blocked.is_some() {
            return Err(bad("highest_blocked must be IV on receipt"));
        }
        let mode = ml.type_.ok_or_else(|| bad("lock has no mode"))?;
        match (ml.list, ml.convert_type) {
            (QueueKind::Converting, None) => return Err(bad("converting lock has no target mode")),
            (QueueKind::Granted | QueueKind::Blocked, Some(_)) => {
                return Err(bad("only a converting lock has a target mode"))
            }
            _ => {}
        }
        if ml.node == local_node {
            if mres_flags & MRES_MIGRATION == 0 {
                return Err(bad("recovery data for the recovery master's own lock"));
            }
            let (queue, idx) = QueueKind::ALL
                .into_iter()
                .find_map(|k| {
                    self.queue(k)
                        .iter()
                        .position(|l| l.id.cookie == ml.cookie)
                        .map(|i| (k, i))
                })
                .ok_or_else(|| bad("own lock missing on the new master"))?;
            if queue != ml.list {
                return Ok(Migrated::WrongQueue);
            }
            if self.queue(queue).get(idx).map(|l| l.id.node) != Some(ml.node) {
                return Err(bad("own lock's cookie belongs to another node"));
            }
            if let Some(lock) = self.queues.remove(queue, idx) {
                self.queues.push_back(queue, lock);
            }
            self.dirty = true;
            return Ok(Migrated::Requeued);
        }

        // A record already placed (a recovery master's own lock, put on the rebuilt queues
        // with its value block before its own data arrives) is not a second writer: judging
        // its value block against itself would refuse it.
        if self.queue(ml.list).iter().any(|l| l.id.cookie == ml.cookie) {
            return Ok(Migrated::Duplicate);
        }
        let lksb_flags = ml.flags & (LKSB_GET_LVB | LKSB_PUT_LVB);
        let lvb_applies = mode != LockMode::Nl
            && ml.list != QueueKind::Blocked
            && mres_lvb.iter().any(|&b| b != 0);
        let new_lvb = if !lvb_applies {
            None
        } else if lksb_flags & LKSB_PUT_LVB != 0 {
            // The node was writing the LVB back when the master died: its value wins.
            Some(*mres_lvb)
        } else {
            let have = self.lvb.iter().any(|&b| b != 0);
            if have && (mode == LockMode::Ex || self.lvb != *mres_lvb) {
                return Err(bad("value block disagrees with the resource's"));
            }
            Some(*mres_lvb)
        };
        if let Some(v) = new_lvb {
            self.lvb = v;
        }
        let mut lock = Lock::new(
            LockId {
                node: ml.node,
                cookie: ml.cookie,
            },
            mode,
        );
        lock.convert_type = ml.convert_type;
        lock.lksb_flags = lksb_flags;
        let downconvert = ml.convert_type.is_some_and(|c| mode > c);
        let recovery = mres_flags & MRES_RECOVERY != 0;
        if recovery && ml.list == QueueKind::Converting && downconvert {
            self.queues.push_front(ml.list, lock);
        } else {
            self.queues.push_back(ml.list, lock);
        }
        self.dirty = true;
        Ok(Migrated::Created(ml.node))
    }

    /// Removes every lock of `node` (a dead node's locks on a resource we master), dropping
    /// their queued deliveries. Other nodes' waiting requests may now be grantable, so the
    /// resource becomes dirty when anything was removed.
    pub fn remove_node_locks(&mut self, node: u8) -> RemovedLocks {
        let held_ex = self
            .queues
            .holders_mut()
            .iter()
            .any(|l| l.id.node == node && l.mode == LockMode::Ex);
        let count = self.queues.remove_where(|l| l.id.node == node);
        if count > 0 {
            self.pending.retain(|(l, _)| l.node != node);
            self.dirty = true;
        }
        RemovedLocks { count, held_ex }
    }
}

/// The incompatibility scan of `dlm_shuffle_lists` for a request of mode `want` (by the
/// converting head `target`, or the blocked head): every other granted or converting lock
/// whose current mode conflicts gets its `highest_blocked` raised and, if it had none, a BAST
/// queued. Returns whether anything conflicted.
fn block_scan(
    holders: &mut [Lock],
    target: Option<LockId>,
    want: LockMode,
    pending: &mut Vec<(LockId, Pending)>,
) -> bool {
    let mut blocked = false;
    for lock in holders.iter_mut() {
        if Some(lock.id) == target || LockMode::compatible(lock.mode, want) {
            continue;
        }
        blocked = true;
        if lock.highest_blocked.is_none() {
            pending.push((lock.id, Pending::Bast));
            lock.bast_pending = true;
        }
        if lock.highest_blocked.is_none_or(|hb| hb < want) {
            lock.highest_blocked = Some(want);
        }
    }
    blocked
}
