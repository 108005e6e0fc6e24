//! The requester's side of a lock resource mastered by another node: this node's own locks
//! on it (the kernel's "secondary" queues), the create/convert/unlock messages it sends to the
//! master, what their replies do, and the proxy ASTs and BASTs it receives.
//!
//! Each operation is split where the kernel waits for the network: `begin_*` checks the
//! request against the local copy, marks the lock pending and returns the message to send;
//! `*_reply` applies the master's reply status (or the status a failed send maps to, see
//! [`crate::wire::is_host_down`] and [`DlmStatus::from_send_error`]). A proxy AST may arrive
//! before the reply it belongs to, as it does in the kernel's own traffic.
//!
//! Like [`crate::lockres`], this does no I/O and reads no clock; whether the resource is
//! recovering or migrating, and retrying after `DLM_RECOVERING`/`DLM_MIGRATING`/
//! `DLM_FORWARD`, is the domain's business.

use crate::lockres::LockId;
use crate::wire::{
    AstType, ConvertLock, CreateLock, DlmStatus, LkmFlags, LockMode, LockName, Lvb, ProxyAst,
    QueueKind, UnlockLock, LKSB_GET_LVB, LKSB_PUT_LVB,
};

/// The next lock cookie of a node (`dlm_get_next_cookie`): the node number in the top byte and
/// a 56-bit sequence that starts at 1, shared by all domains, and wraps back to 1.
#[derive(Debug, Clone)]
pub struct CookieSource {
    node: u8,
    next: u64,
}

impl CookieSource {
    /// Cookies for locks created by `node`.
    pub fn new(node: u8) -> CookieSource {
        CookieSource { node, next: 1 }
    }

    /// Hands out the next cookie.
    pub fn next_cookie(&mut self) -> u64 {
        let cookie = (u64::from(self.node) << 56) | self.next;
        self.next += 1;
        if self.next >> 56 != 0 {
            self.next = 1;
        }
        cookie
    }
}

/// Which network operation of a lock waits for the master's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingOp {
    /// `lock_pending`: the create request.
    Lock,
    /// `convert_pending`.
    Convert,
    /// `unlock_pending`.
    Unlock,
    /// `cancel_pending`.
    Cancel,
}

/// One of this node's locks on a remotely mastered resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnLock {
    pub cookie: u64,
    /// Granted mode, or the requested mode while on the blocked queue.
    pub mode: LockMode,
    /// Target of a conversion in progress.
    pub convert_type: Option<LockMode>,
    pub queue: QueueKind,
    pub pending: Option<PendingOp>,
    /// `LKSB_GET_LVB` / `LKSB_PUT_LVB` until the AST or the reply settles them.
    pub lksb_flags: u8,
}

/// What a proxy AST message means for the lock's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Granted in `mode`; `lvb` is the resource's value block if the lock asked for it.
    Ast {
        cookie: u64,
        mode: LockMode,
        lvb: Option<Lvb>,
    },
    /// Another request needs this lock to drop below `blocked`.
    Bast { cookie: u64, blocked: LockMode },
}

/// What an unlock or cancel came to on the requester, once the master replied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnlockDone {
    /// The status for the unlock AST (`DLM_CANCELGRANT` when a cancel came too late).
    pub status: DlmStatus,
    /// The lock no longer exists here.
    pub removed: bool,
}

/// This node's locks on one resource mastered by `master`.
#[derive(Debug, Clone)]
pub struct OwnLocks {
    node: u8,
    name: LockName,
    locks: Vec<OwnLock>,
}

impl OwnLocks {
    /// No locks yet on resource `name`, for this node `node`.
    pub fn new(node: u8, name: LockName) -> OwnLocks {
        OwnLocks {
            node,
            name,
            locks: Vec::new(),
        }
    }

    /// The locks in the kernel's queue order (granted, converting, blocked).
    pub fn locks(&self) -> impl Iterator<Item = &OwnLock> {
        crate::wire::QueueKind::ALL
            .into_iter()
            .flat_map(move |q| self.locks.iter().filter(move |l| l.queue == q))
    }

    /// One lock by cookie.
    pub fn get(&self, cookie: u64) -> Option<&OwnLock> {
        self.locks.iter().find(|l| l.cookie == cookie)
    }

    /// Whether no lock of ours is left on the resource.
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }

    /// This node's locks as queues this node held as master show them (queue order kept,
    /// nothing in flight): the view of a resource it stops mastering with its locks on it.
    pub fn from_master(node: u8, engine: &crate::lockres::LockResource) -> OwnLocks {
        let locks = engine
            .locks()
            .filter(|(_, l)| l.id.node == node)
            .map(|(queue, l)| OwnLock {
                cookie: l.id.cookie,
                mode: l.mode,
                convert_type: l.convert_type,
                queue,
                pending: None,
                lksb_flags: l.lksb_flags,
            })
            .collect();
        OwnLocks {
            node,
            name: *engine.name(),
            locks,
        }
    }

    fn idx(&self, cookie: u64) -> Option<usize> {
        self.locks.iter().position(|l| l.cookie == cookie)
    }

    /// Moves a lock to the tail of `queue` (list order within a queue is the vector's order).
    fn move_to(&mut self, i: usize, queue: QueueKind) {
        let mut lock = self.locks.remove(i);
        lock.queue = queue;
        self.locks.push(lock);
    }

    /// Starts a new lock request (`dlmlock_remote`): the lock waits on the blocked queue
    /// until the master's AST. `flags` are the caller's (VALBLK, NOQUEUE, ...); VALBLK on a
    /// PR or EX request adds `LKM_GET_LVB`, on NL it is dropped.
    pub fn begin_lock(&mut self, cookie: u64, mode: LockMode, flags: LkmFlags) -> CreateLock {
        let mut flags = flags;
        let mut lksb_flags = 0;
        if flags.contains(LkmFlags::VALBLK) {
            if mode < LockMode::Pr {
                flags = flags.without(LkmFlags::VALBLK);
            } else {
                flags |= LkmFlags::GET_LVB;
                lksb_flags = LKSB_GET_LVB;
            }
        }
        self.locks.push(OwnLock {
            cookie,
            mode,
            convert_type: None,
            queue: QueueKind::Blocked,
            pending: Some(PendingOp::Lock),
            lksb_flags,
        });
        CreateLock {
            cookie,
            flags,
            node_idx: self.node,
            requested_type: mode,
            name: self.name,
        }
    }

    /// Applies the create reply: anything but `DLM_NORMAL` removes the request. The
    /// "$RECOVERY" lock gets no AST, so `DLM_NORMAL` grants it here.
    pub fn lock_reply(&mut self, cookie: u64, status: DlmStatus) -> DlmStatus {
        let Some(i) = self.idx(cookie) else {
            return status;
        };
        if let Some(l) = self.locks.get_mut(i) {
            l.pending = None;
        }
        if status != DlmStatus::Normal {
            self.locks.remove(i);
        } else if self.name.is_recovery_lock() {
            self.move_to(i, QueueKind::Granted);
        }
        status
    }

    /// Starts a conversion (`dlmconvert_remote`). Returns `Ok(None)` when the lock already
    /// has that mode (the kernel answers `DLM_NORMAL` without asking the master, and no AST
    /// follows). An EX holder with VALBLK sends `lvb` (`LKM_PUT_LVB`); a PR/NL holder with
    /// VALBLK asks for the value block (`LKM_GET_LVB`) unless converting to NL.
    ///
    /// Errors: `DLM_IVLOCKID` (no such lock), `DLM_DENIED` (a conversion is already in
    /// progress, or the lock is not granted).
    pub fn begin_convert(
        &mut self,
        cookie: u64,
        mode: LockMode,
        flags: LkmFlags,
        lvb: &Lvb,
    ) -> Result<Option<ConvertLock>, DlmStatus> {
        let i = self.idx(cookie).ok_or(DlmStatus::Ivlockid)?;
        let Some(lock) = self.locks.get(i) else {
            return Err(DlmStatus::Ivlockid);
        };
        if lock.convert_type.is_some() || lock.queue != QueueKind::Granted || lock.pending.is_some()
        {
            return Err(DlmStatus::Denied);
        }
        if lock.mode == mode {
            return Ok(None);
        }
        let current = lock.mode;
        // dlmlock() picks the convert path by LKM_CONVERT, so the message always carries it.
        let mut flags = flags | LkmFlags::CONVERT;
        let mut lksb_flags = 0;
        let mut put = None;
        if flags.contains(LkmFlags::VALBLK) {
            if current == LockMode::Ex {
                flags |= LkmFlags::PUT_LVB;
                lksb_flags = LKSB_PUT_LVB;
                put = Some(*lvb);
            } else if mode == LockMode::Nl {
                flags = flags.without(LkmFlags::VALBLK);
            } else {
                flags |= LkmFlags::GET_LVB;
                lksb_flags = LKSB_GET_LVB;
            }
        }
        self.move_to(i, QueueKind::Converting);
        if let Some(l) = self.locks.last_mut() {
            l.convert_type = Some(mode);
            l.pending = Some(PendingOp::Convert);
            l.lksb_flags |= lksb_flags;
        }
        Ok(Some(ConvertLock {
            cookie,
            flags,
            node_idx: self.node,
            requested_type: mode,
            name: self.name,
            lvb: put,
        }))
    }

    /// Applies the convert reply: a failure puts the lock back on the granted queue in its
    /// old mode. `DLM_NORMAL` leaves the grant to the AST (which may already have come).
    pub fn convert_reply(&mut self, cookie: u64, status: DlmStatus) -> DlmStatus {
        let Some(i) = self.idx(cookie) else {
            return status;
        };
        if let Some(l) = self.locks.get_mut(i) {
            l.pending = None;
        }
        if status != DlmStatus::Normal
            && self.locks.get(i).is_some_and(|l| l.convert_type.is_some())
        {
            self.move_to(i, QueueKind::Granted);
            if let Some(l) = self.locks.last_mut() {
                l.convert_type = None;
                l.lksb_flags = 0;
            }
        }
        status
    }

    /// Starts an unlock, or a cancel with `LKM_CANCEL` (`dlmunlock_common` on a non-master).
    /// Returns the message to send, or `Err` with the status when the request is settled
    /// here: `DLM_CANCELGRANT` for a cancel of a granted lock (the unlock AST gets it; the
    /// caller sees `DLM_NORMAL`), `DLM_DENIED` for an unlock of a lock that is not granted,
    /// `DLM_IVLOCKID` for an unknown lock. VALBLK is honoured only for EX locks and never with
    /// CANCEL; it sends `lvb` with `LKM_PUT_LVB`.
    pub fn begin_unlock(
        &mut self,
        cookie: u64,
        flags: LkmFlags,
        lvb: &Lvb,
    ) -> Result<UnlockLock, DlmStatus> {
        let i = self.idx(cookie).ok_or(DlmStatus::Ivlockid)?;
        let Some(lock) = self.locks.get_mut(i) else {
            return Err(DlmStatus::Ivlockid);
        };
        let cancel = flags.contains(LkmFlags::CANCEL);
        let mut flags = flags;
        if cancel || lock.mode != LockMode::Ex {
            flags = flags.without(LkmFlags::VALBLK);
        }
        if cancel {
            if lock.queue == QueueKind::Granted {
                return Err(DlmStatus::Cancelgrant);
            }
        } else if lock.queue != QueueKind::Granted {
            return Err(DlmStatus::Denied);
        }
        let put = flags.contains(LkmFlags::VALBLK);
        if put {
            flags |= LkmFlags::PUT_LVB;
        }
        lock.pending = Some(if cancel {
            PendingOp::Cancel
        } else {
            PendingOp::Unlock
        });
        Ok(UnlockLock {
            cookie,
            flags,
            node_idx: self.node,
            name: self.name,
            lvb: put.then_some(*lvb),
        })
    }

    /// Applies the unlock/cancel reply. `DLM_RECOVERING`, `DLM_MIGRATING`, `DLM_FORWARD` and
    /// `DLM_NOLOCKMGR` change nothing (the caller retries); `DLM_CANCELGRANT` leaves the lock
    /// to its AST; any other status completes the operation here, as the kernel does: an
    /// unlock removes the lock, a cancel removes a blocked request or puts a converting lock
    /// back on the granted queue in its old mode.
    pub fn unlock_reply(&mut self, cookie: u64, status: DlmStatus) -> UnlockDone {
        let Some(i) = self.idx(cookie) else {
            return UnlockDone {
                status,
                removed: true,
            };
        };
        let Some(op) = self.locks.get(i).and_then(|l| l.pending) else {
            return UnlockDone {
                status,
                removed: false,
            };
        };
        if let Some(l) = self.locks.get_mut(i) {
            l.pending = None;
        }
        let retry = matches!(
            status,
            DlmStatus::Recovering
                | DlmStatus::Migrating
                | DlmStatus::Forward
                | DlmStatus::Nolockmgr
        );
        if retry || status == DlmStatus::Cancelgrant {
            return UnlockDone {
                status,
                removed: false,
            };
        }
        let queue = self.locks.get(i).map(|l| l.queue);
        let removed = match (op, queue) {
            (PendingOp::Cancel, Some(QueueKind::Converting)) => {
                self.move_to(i, QueueKind::Granted);
                if let Some(l) = self.locks.last_mut() {
                    l.convert_type = None;
                    l.lksb_flags = 0;
                }
                false
            }
            // The AST got there first: the cancel lost the race but the lock stays.
            (PendingOp::Cancel, Some(QueueKind::Granted)) => false,
            _ => {
                self.locks.remove(i);
                true
            }
        };
        UnlockDone { status, removed }
    }

    /// Handles a `DLM_PROXY_AST_MSG` for this resource (`dlm_proxy_ast_handler` once the
    /// resource is found and not recovering or migrating). Returns the reply status and what
    /// to tell the lock's owner: an AST moves the lock to the granted queue (in its target
    /// mode if it was converting); a BAST is reported as is, except for a granted lock being
    /// unlocked. A lock that is not found is ignored with `DLM_NORMAL`.
    pub fn proxy_ast(&mut self, past: &ProxyAst) -> (DlmStatus, Option<Notice>) {
        if past.flags.contains(LkmFlags::PUT_LVB | LkmFlags::GET_LVB) {
            return (DlmStatus::Badargs, None);
        }
        let is_ast = match past.ast_type {
            AstType::Ast => true,
            AstType::Bast => false,
            AstType::AstUnlock => return (DlmStatus::Ivlockid, None),
        };
        let fallback = if is_ast {
            QueueKind::Blocked
        } else {
            QueueKind::Granted
        };
        let found = self
            .locks
            .iter()
            .position(|l| l.cookie == past.cookie && l.queue == QueueKind::Converting)
            .or_else(|| {
                self.locks
                    .iter()
                    .position(|l| l.cookie == past.cookie && l.queue == fallback)
                    .filter(|&i| {
                        self.locks
                            .get(i)
                            .is_some_and(|l| l.pending != Some(PendingOp::Unlock))
                    })
            });
        let Some(i) = found else {
            return (DlmStatus::Normal, None);
        };
        if !is_ast {
            let blocked = past.blocked_type.unwrap_or(LockMode::Nl);
            return (
                DlmStatus::Normal,
                Some(Notice::Bast {
                    cookie: past.cookie,
                    blocked,
                }),
            );
        }
        self.move_to(i, QueueKind::Granted);
        let Some(l) = self.locks.last_mut() else {
            return (DlmStatus::Normal, None);
        };
        if let Some(target) = l.convert_type.take() {
            l.mode = target;
        }
        let lvb = if past.flags.contains(LkmFlags::GET_LVB) {
            past.lvb
        } else {
            None
        };
        l.lksb_flags = 0;
        (
            DlmStatus::Normal,
            Some(Notice::Ast {
                cookie: past.cookie,
                mode: l.mode,
                lvb,
            }),
        )
    }

    /// The identity the master knows this node's lock by.
    pub fn lock_id(&self, cookie: u64) -> LockId {
        LockId {
            node: self.node,
            cookie,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CookieSource;

    #[test]
    fn cookies_carry_the_node_and_wrap_to_one() {
        let mut c = CookieSource::new(2);
        assert_eq!(c.next_cookie(), 0x0200_0000_0000_0001);
        assert_eq!(c.next_cookie(), 0x0200_0000_0000_0002);
        c.next = (1 << 56) - 1;
        assert_eq!(c.next_cookie(), 0x02ff_ffff_ffff_ffff);
        assert_eq!(c.next_cookie(), 0x0200_0000_0000_0001);
    }
}
