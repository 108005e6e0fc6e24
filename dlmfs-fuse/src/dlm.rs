//! The small DLM interface dlmfs needs (the part of stackglue `userdlm.c` calls): join and
//! leave a domain, lock or convert with VALBLK and an optional NOQUEUE, cancel, unlock, and a
//! BAST callback per lock. [`crate::local::LocalDlm`] implements it in process over o2dlm's
//! lock-resource engine; the node daemon implements it over its node (`o2node`).
//!
//! Calls block the calling thread until the DLM answers (a grant, a refusal, a cancellation);
//! dlmfs makes them from its own threads, never while holding a lock file's state.

use std::sync::Arc;

use o2dlm::wire::{DlmStatus, LockMode, Lvb};

use crate::userdlm::Request;

/// A lock's callbacks (the kernel's `lp_lock_ast` and `lp_blocking_ast`). They run on the
/// DLM's threads and must not call back into the DLM.
pub trait LockEvents: Send + Sync {
    /// The lock's request or conversion was granted; `lvb` is the value block when the grant
    /// read it. Called once per grant, before any later `bast` of this lock.
    fn ast(&self, lvb: Option<Lvb>);
    /// Another lock wants `mode`, which this one blocks.
    fn bast(&self, mode: LockMode);
}

/// A node's DLM, as dlmfs' mkdir sees it.
pub trait Dlm: Send + Sync + 'static {
    /// Registers `domain` (`user_dlm_register`); the same name may be registered several
    /// times, each registration left separately. Errors carry a positive errno for mkdir.
    fn join(&self, domain: &[u8]) -> Result<Arc<dyn DlmDomain>, JoinError>;

    /// The local node number, for logs.
    fn node(&self) -> u8;
}

/// Why a domain could not be joined: the errno mkdir returns and a message for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinError {
    pub errno: i32,
    pub message: String,
}

/// One registration of a domain. `id` names a lock file's DLM lock: unique within this
/// registration, chosen by the caller and stable across the lock's converts.
pub trait DlmDomain: Send + Sync {
    /// Creates (`req.convert` false) or converts the lock `id` on resource `name`, always
    /// with VALBLK: `lvb` is written back when converting down from EX, and grants of new
    /// PR/EX locks and up-conversions read the resource's value block. `events` is kept with
    /// a new lock for its lifetime. Returns when granted (`Ok`: the grant goes to
    /// [`LockEvents::ast`], which may run just before or just after the return), refused
    /// (`Notqueued` for NOQUEUE) or cancelled (`Cancel`).
    fn lock(
        &self,
        id: u64,
        name: &[u8],
        req: Request,
        lvb: &Lvb,
        events: Arc<dyn LockEvents>,
    ) -> Result<(), DlmStatus>;

    /// Cancels the pending request or conversion of `id`: `Ok(false)` when it was withdrawn
    /// (the blocked [`DlmDomain::lock`] returns `Cancel`), `Ok(true)` when it had already
    /// been granted (`DLM_CANCELGRANT`).
    fn cancel(&self, id: u64) -> Result<bool, DlmStatus>;

    /// Unlocks `id` with VALBLK (`lvb` is written back if the lock is EX).
    fn unlock(&self, id: u64, lvb: &Lvb) -> Result<(), DlmStatus>;

    /// Leaves this registration (`user_dlm_unregister`); every lock must be unlocked.
    fn leave(&self);

    /// The domain name.
    fn name(&self) -> &[u8];
}
