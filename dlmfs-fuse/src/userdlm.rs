//! The user lock caching state machine of one lock file (the kernel's `userdlm.c`), with no
//! I/O, no threads and no DLM: [`UserLock`] says which DLM call to make, and the caller
//! ([`crate::cached`]) makes it, waits, and reports back.
//!
//! A lock file's DLM lock is taken at the level its first opener needs and then kept: closes
//! only drop the *holder* counts, so the next open on this node is granted without a DLM
//! call. Only a BAST (another node wants the lock) brings it down, by a downconvert to the
//! highest level compatible with the blocked request, once no local holder is in the way.
//!
//! Levels are `Option<LockMode>`: `None` is the kernel's `DLM_LOCK_IV` (never locked or
//! unlocked), ordered below NL as the kernel's numbers are.

use o2dlm::wire::{LockMode, Lvb, LVB_LEN};

/// A granted or wanted level; `None` is `DLM_LOCK_IV`.
pub type Level = Option<LockMode>;

/// The kernel's `user_highest_compat_lock_level`: the level this node may keep while another
/// node waits for `blocking`.
pub fn highest_compat(blocking: Level) -> LockMode {
    match blocking {
        Some(LockMode::Ex) => LockMode::Nl,
        Some(LockMode::Pr) => LockMode::Pr,
        _ => LockMode::Ex,
    }
}

/// The `USER_LOCK_*` flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// ATTACHED: the DLM lock exists (granted once).
    pub attached: bool,
    /// BUSY: a DLM call is in flight.
    pub busy: bool,
    /// BLOCKED: a BAST arrived and the downconvert has not completed.
    pub blocked: bool,
    /// IN_TEARDOWN: unlink started; no new acquisitions.
    pub in_teardown: bool,
    /// QUEUED: downconvert work is queued.
    pub queued: bool,
    /// IN_CANCEL: a cancel of the in-flight request was issued.
    pub in_cancel: bool,
}

impl Flags {
    /// The kernel's bit values (`USER_LOCK_ATTACHED` 0x1 ... `USER_LOCK_IN_CANCEL` 0x20), for
    /// dumps.
    pub fn bits(&self) -> u32 {
        u32::from(self.attached)
            | u32::from(self.busy) << 1
            | u32::from(self.blocked) << 2
            | u32::from(self.in_teardown) << 3
            | u32::from(self.queued) << 4
            | u32::from(self.in_cancel) << 5
    }
}

/// A DLM lock request: always with VALBLK, as every userdlm call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub mode: LockMode,
    /// Convert the existing lock (`DLM_LKF_CONVERT`) rather than create one.
    pub convert: bool,
    /// Fail instead of waiting (`DLM_LKF_NOQUEUE`, from `O_NONBLOCK`).
    pub noqueue: bool,
}

/// What an acquisition should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A holder was added at the requested level.
    Granted,
    /// Wait until the lock's state changes (BUSY or BLOCKED clears), then call
    /// [`UserLock::acquire`] again.
    Wait,
    /// Make this DLM call (BUSY is now set), report it with [`UserLock::granted`] or
    /// [`UserLock::request_failed`] (or nothing, if it was cancelled), then call
    /// [`UserLock::acquire`] again once BUSY clears.
    Call(Request),
    /// The lock file is being removed (`-EAGAIN` in the kernel).
    TearingDown,
}

/// What the downconvert work should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Nothing (not blocked, tearing down, a cancel is already out, holders remain, or the
    /// level already suits the blocked request; waiters should look again).
    Nothing,
    /// Cancel the in-flight request; report with [`UserLock::cancel_done`].
    Cancel,
    /// Convert down to this level (BUSY is now set); report with [`UserLock::granted`] or
    /// [`UserLock::request_failed`].
    Convert(LockMode),
}

/// What unlink should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destroy {
    /// Holders remain or another unlink is running: `EBUSY`.
    Busy,
    /// Wait for BUSY to clear and call [`UserLock::destroy_step`] again.
    Wait,
    /// Nothing to unlock (never locked): remove the file.
    Done,
    /// Unlock with VALBLK (BUSY is now set), then report with [`UserLock::unlocked`].
    Unlock,
}

/// The state of one lock file (`struct user_lock_res`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserLock {
    pub level: Level,
    pub requested: Level,
    pub blocking: Level,
    pub ro_holders: u32,
    pub ex_holders: u32,
    pub flags: Flags,
    /// The local copy of the value block (`l_lksb`'s LVB): read by `read`, written by
    /// `write`, sent with every call and refreshed by grants.
    pub lvb: Lvb,
}

impl Default for UserLock {
    fn default() -> Self {
        UserLock {
            level: None,
            requested: None,
            blocking: None,
            ro_holders: 0,
            ex_holders: 0,
            flags: Flags::default(),
            lvb: [0; LVB_LEN],
        }
    }
}

impl UserLock {
    /// Total open holders.
    pub fn holders(&self) -> u32 {
        self.ro_holders + self.ex_holders
    }

    /// One pass of `user_dlm_cluster_lock` for an open at `level` (PR or EX).
    pub fn acquire(&mut self, level: LockMode, trylock: bool) -> Step {
        if self.flags.in_teardown {
            return Step::TearingDown;
        }
        let want = Some(level);
        if self.flags.busy && want > self.level {
            return Step::Wait;
        }
        if self.flags.blocked && level > highest_compat(self.blocking) {
            return Step::Wait;
        }
        if want > self.level {
            self.requested = want;
            self.flags.busy = true;
            return Step::Call(Request {
                mode: level,
                convert: self.level.is_some(),
                noqueue: trylock,
            });
        }
        match level {
            LockMode::Ex => self.ex_holders += 1,
            _ => self.ro_holders += 1,
        }
        Step::Granted
    }

    /// A grant (`user_ast`): of an acquisition's request or of a downconvert. `lvb` is the
    /// value block the grant carried (up-conversions and new locks read it). Returns true
    /// when downconvert work must be queued: a BAST came while the call was in flight and
    /// the work gave up on it then (the kernel waits for the master to send the BAST again).
    pub fn granted(&mut self, lvb: Option<Lvb>) -> bool {
        if self.requested < self.level && self.requested <= Some(highest_compat(self.blocking)) {
            self.blocking = Some(LockMode::Nl);
            self.flags.blocked = false;
        }
        if let Some(v) = lvb {
            self.lvb = v;
        }
        self.level = self.requested;
        self.requested = None;
        self.flags.attached = true;
        self.flags.busy = false;
        self.flags.blocked && !self.flags.in_cancel && self.queue()
    }

    /// The DLM refused a call at once (`user_recover_from_dlm_error`). Returns true when
    /// downconvert work must be queued, as for [`UserLock::granted`].
    pub fn request_failed(&mut self) -> bool {
        self.flags.busy = false;
        self.flags.blocked && !self.flags.in_cancel && self.queue()
    }

    /// A BAST for `mode` (`user_bast`). Returns true when downconvert work must be queued.
    pub fn bast(&mut self, mode: LockMode) -> bool {
        self.flags.blocked = true;
        if Some(mode) > self.blocking {
            self.blocking = Some(mode);
        }
        self.queue()
    }

    fn queue(&mut self) -> bool {
        if self.flags.queued {
            return false;
        }
        self.flags.queued = true;
        true
    }

    /// A close of a handle opened at `level` (`user_dlm_cluster_unlock`). Returns true when
    /// downconvert work must be queued (the last incompatible holder left).
    pub fn release(&mut self, level: LockMode) -> bool {
        match level {
            LockMode::Ex => self.ex_holders = self.ex_holders.saturating_sub(1),
            _ => self.ro_holders = self.ro_holders.saturating_sub(1),
        }
        if !self.flags.blocked {
            return false;
        }
        let go = match self.blocking {
            Some(LockMode::Ex) => self.holders() == 0,
            Some(LockMode::Pr) => self.ex_holders == 0,
            _ => false,
        };
        go && self.queue()
    }

    /// The downconvert work (`user_dlm_unblock_lock`).
    pub fn unblock(&mut self) -> Work {
        self.flags.queued = false;
        if !self.flags.blocked || self.flags.in_teardown {
            return Work::Nothing;
        }
        if self.flags.busy {
            if self.flags.in_cancel {
                return Work::Nothing;
            }
            self.flags.in_cancel = true;
            return Work::Cancel;
        }
        if self.level <= Some(highest_compat(self.blocking)) {
            // A BAST that crossed our own downconvert: the lock no longer blocks anything, so
            // there is nothing to give up. The kernel would convert to the same level, and
            // its grant, not being a downconvert, would leave BLOCKED set and every later
            // upgrading open waiting forever; end the blocked state here instead.
            self.flags.blocked = false;
            self.blocking = Some(LockMode::Nl);
            return Work::Nothing;
        }
        let in_the_way = match self.blocking {
            Some(LockMode::Ex) => self.holders() > 0,
            Some(LockMode::Pr) => self.ex_holders > 0,
            _ => false,
        };
        if in_the_way {
            return Work::Nothing;
        }
        let new = highest_compat(self.blocking);
        self.requested = Some(new);
        self.flags.busy = true;
        Work::Convert(new)
    }

    /// The cancel's unlock AST. `too_late`: `DLM_CANCELGRANT` (the request was granted or
    /// refused first; its end clears BUSY). Returns true when downconvert work must be
    /// queued again.
    pub fn cancel_done(&mut self, too_late: bool) -> bool {
        self.flags.in_cancel = false;
        if too_late {
            // The request may have ended meanwhile (granted, or refused for NOQUEUE): then
            // nothing else will look at the BAST again.
            return !self.flags.busy && self.flags.blocked && self.queue();
        }
        self.requested = None;
        self.flags.busy = false;
        self.flags.blocked && self.queue()
    }

    /// The cancel could not be issued at all: the request it targeted stays in flight.
    pub fn cancel_failed(&mut self) {
        self.flags.in_cancel = false;
    }

    /// Starts unlink (`user_dlm_destroy_lock`): false means `EBUSY` (another unlink runs).
    /// Then call [`UserLock::destroy_step`].
    pub fn destroy_start(&mut self) -> bool {
        if self.flags.in_teardown {
            return false;
        }
        self.flags.in_teardown = true;
        true
    }

    /// The next step of unlink after [`UserLock::destroy_start`].
    pub fn destroy_step(&mut self) -> Destroy {
        if self.flags.busy {
            return Destroy::Wait;
        }
        if self.holders() > 0 {
            self.flags.in_teardown = false;
            return Destroy::Busy;
        }
        if !self.flags.attached {
            // Stays in teardown: the file is going away and takes no new locks.
            return Destroy::Done;
        }
        self.flags.busy = true;
        Destroy::Unlock
    }

    /// The teardown unlock finished: `ok` false means the DLM refused it and the file stays.
    pub fn unlocked(&mut self, ok: bool) {
        if ok {
            self.level = None;
            self.flags.attached = false;
        } else {
            self.flags.in_teardown = false;
        }
        self.flags.busy = false;
    }

    /// `write` on an open handle: copies into the local value block from byte 0, whatever the
    /// file offset (the kernel's behaviour).
    pub fn write_lvb(&mut self, data: &[u8]) {
        let n = data.len().min(LVB_LEN);
        self.lvb[..n].copy_from_slice(&data[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockMode::{Ex, Nl, Pr};

    fn grant(l: &mut UserLock, mode: LockMode, trylock: bool) {
        let s = l.acquire(mode, trylock);
        assert!(matches!(s, Step::Call(r) if r.mode == mode), "{s:?}");
        l.granted(None);
        assert_eq!(l.acquire(mode, trylock), Step::Granted);
    }

    #[test]
    fn first_open_calls_the_dlm_and_later_opens_use_the_cached_level() {
        let mut l = UserLock::default();
        assert_eq!(
            l.acquire(Ex, false),
            Step::Call(Request {
                mode: Ex,
                convert: false,
                noqueue: false
            })
        );
        l.granted(Some([7; LVB_LEN]));
        assert_eq!(l.lvb, [7; LVB_LEN]);
        assert_eq!(l.acquire(Ex, false), Step::Granted);
        assert!(!l.release(Ex));
        assert_eq!(l.level, Some(Ex), "close keeps the lock cached");
        // A cached EX satisfies PR and EX without a DLM call.
        assert_eq!(l.acquire(Pr, false), Step::Granted);
        assert_eq!(l.acquire(Ex, true), Step::Granted);
        assert_eq!((l.ro_holders, l.ex_holders), (1, 1));
    }

    #[test]
    fn pr_then_ex_converts_with_the_convert_flag_and_noqueue_from_trylock() {
        let mut l = UserLock::default();
        grant(&mut l, Pr, false);
        assert_eq!(
            l.acquire(Ex, true),
            Step::Call(Request {
                mode: Ex,
                convert: true,
                noqueue: true
            })
        );
        // A second EX opener waits for the in-flight call; a PR opener does not.
        assert_eq!(l.acquire(Ex, false), Step::Wait);
        assert_eq!(l.acquire(Pr, false), Step::Granted);
        l.request_failed();
        assert_eq!(l.level, Some(Pr));
        assert!(!l.flags.busy);
    }

    #[test]
    fn bast_with_no_holder_downconverts_to_the_highest_compatible_level() {
        for (blocking, to) in [(Ex, Nl), (Pr, Pr)] {
            let mut l = UserLock::default();
            grant(&mut l, Ex, false);
            l.release(Ex);
            assert!(l.bast(blocking));
            assert!(!l.bast(blocking), "work already queued");
            assert_eq!(l.unblock(), Work::Convert(to));
            assert!(l.flags.blocked, "blocked until the downconvert's grant");
            l.granted(None);
            assert_eq!(l.level, Some(to));
            assert!(!l.flags.blocked);
            assert_eq!(l.blocking, Some(Nl));
        }
    }

    #[test]
    fn holders_delay_the_downconvert_until_the_last_incompatible_close() {
        let mut l = UserLock::default();
        grant(&mut l, Ex, false);
        assert_eq!(l.acquire(Pr, false), Step::Granted);
        assert!(l.bast(Ex));
        assert_eq!(l.unblock(), Work::Nothing);
        // New openers wait while blocked, even at levels the cache holds.
        assert_eq!(l.acquire(Pr, false), Step::Wait);
        assert!(!l.release(Ex), "a PR holder is still in the way of EX");
        assert!(l.release(Pr));
        assert_eq!(l.unblock(), Work::Convert(Nl));
    }

    #[test]
    fn a_pr_bast_lets_pr_holders_stay_and_new_pr_openers_in() {
        let mut l = UserLock::default();
        grant(&mut l, Ex, false);
        assert_eq!(l.acquire(Pr, false), Step::Granted);
        assert!(l.bast(Pr));
        assert_eq!(l.unblock(), Work::Nothing, "the EX holder is in the way");
        assert!(l.release(Ex));
        assert_eq!(l.acquire(Pr, false), Step::Granted);
        assert_eq!(l.unblock(), Work::Convert(Pr));
        assert_eq!(l.acquire(Ex, false), Step::Wait);
    }

    #[test]
    fn bast_during_an_upconvert_cancels_it_once() {
        let mut l = UserLock::default();
        grant(&mut l, Pr, false);
        l.release(Pr);
        assert!(matches!(l.acquire(Ex, false), Step::Call(_)));
        assert!(l.bast(Ex));
        assert_eq!(l.unblock(), Work::Cancel);
        assert!(l.bast(Ex));
        assert_eq!(l.unblock(), Work::Nothing, "a cancel is already out");
        assert!(l.cancel_done(false), "still blocked: downconvert again");
        assert_eq!(l.level, Some(Pr));
        assert_eq!(l.requested, None);
        assert_eq!(l.unblock(), Work::Convert(Nl));
    }

    #[test]
    fn a_cancel_that_came_too_late_leaves_busy_to_the_grant() {
        let mut l = UserLock::default();
        assert!(matches!(l.acquire(Ex, false), Step::Call(_)));
        l.bast(Pr);
        assert_eq!(l.unblock(), Work::Cancel);
        assert!(!l.granted(None), "the cancel is still out: no work yet");
        assert!(
            l.cancel_done(true),
            "blocked and no longer busy: look again"
        );
        assert_eq!(l.level, Some(Ex));
        assert!(!l.flags.busy && !l.flags.in_cancel);
        assert_eq!(l.unblock(), Work::Convert(Pr));
    }

    #[test]
    fn a_trylock_refused_while_its_cancel_was_out_still_lets_the_downconvert_run() {
        let mut l = UserLock::default();
        grant(&mut l, Pr, false);
        l.release(Pr);
        assert!(matches!(l.acquire(Ex, true), Step::Call(_)));
        assert!(l.bast(Ex));
        assert_eq!(l.unblock(), Work::Cancel);
        // NOQUEUE refusal first, then the cancel finds nothing pending (CANCELGRANT).
        assert!(!l.request_failed());
        assert!(l.cancel_done(true));
        assert_eq!(l.unblock(), Work::Convert(Nl));
    }

    #[test]
    fn unlink_refuses_held_locks_and_unlocks_cached_ones() {
        let mut l = UserLock::default();
        grant(&mut l, Ex, false);
        assert!(l.destroy_start());
        assert_eq!(l.destroy_step(), Destroy::Busy);
        assert!(!l.flags.in_teardown);
        l.release(Ex);
        assert!(l.destroy_start());
        assert!(!l.destroy_start(), "a second unlink at once is EBUSY");
        assert_eq!(l.destroy_step(), Destroy::Unlock);
        assert_eq!(l.acquire(Pr, false), Step::TearingDown);
        l.unlocked(true);
        assert_eq!(l.level, None);
    }

    #[test]
    fn unlink_of_a_never_locked_file_needs_no_dlm_call() {
        let mut l = UserLock::default();
        assert!(l.destroy_start());
        assert_eq!(l.destroy_step(), Destroy::Done);
        assert_eq!(l.acquire(Ex, false), Step::TearingDown);
    }

    #[test]
    fn a_bast_that_crossed_the_downconvert_ends_the_blocked_state() {
        let mut l = UserLock::default();
        grant(&mut l, Ex, false);
        l.release(Ex);
        l.bast(Ex);
        assert_eq!(l.unblock(), Work::Convert(Nl));
        l.granted(None);
        assert!(!l.flags.blocked);
        // A second BAST for EX, sent before the downconvert reached the master.
        assert!(l.bast(Ex));
        assert_eq!(l.unblock(), Work::Nothing);
        assert!(!l.flags.blocked);
        assert!(matches!(l.acquire(Pr, false), Step::Call(_)));
    }

    #[test]
    fn write_copies_from_byte_zero() {
        let mut l = UserLock::default();
        l.write_lvb(b"HELLO");
        l.write_lvb(b"ab");
        assert_eq!(&l.lvb[..6], b"abLLO\0");
    }

    #[test]
    fn flag_bits_are_the_kernels() {
        let f = Flags {
            attached: true,
            blocked: true,
            in_cancel: true,
            ..Flags::default()
        };
        assert_eq!(f.bits(), 0x1 | 0x4 | 0x20);
    }
}
