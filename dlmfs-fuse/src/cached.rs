//! A lock file's cached DLM lock: runs the [`crate::userdlm`] state machine against a
//! [`DlmDomain`], with the waiting (for BUSY and BLOCKED to clear) and the downconvert work
//! queue (`user_dlm_worker`) the kernel has.
//!
//! DLM calls are made without the state lock held; BAST callbacks only flip state and queue
//! work, and the [`Worker`] thread does the downconverts and cancels.

use std::sync::mpsc;
use std::sync::Arc;

use o2dlm::wire::{DlmStatus, LockMode, Lvb};
use parking_lot::{Condvar, Mutex};

use crate::dlm::{DlmDomain, LockEvents};
use crate::userdlm::{Destroy, Step, UserLock, Work};

/// The DLM's callbacks into a lock file (weak: a removed file ignores late ones).
struct Events(std::sync::Weak<LockFile>);

impl LockEvents for Events {
    fn ast(&self, lvb: Option<Lvb>) {
        if let Some(lock) = self.0.upgrade() {
            lock.ast(lvb);
        }
    }

    fn bast(&self, mode: LockMode) {
        if let Some(lock) = self.0.upgrade() {
            lock.bast(mode);
        }
    }
}

/// One lock file's lock.
pub struct LockFile {
    id: u64,
    name: Vec<u8>,
    domain: Arc<dyn DlmDomain>,
    node: u8,
    state: Mutex<UserLock>,
    changed: Condvar,
    worker: Worker,
    /// Called when the lock becomes blocked (a BAST), for poll notifications.
    on_blocked: Box<dyn Fn() + Send + Sync>,
}

/// The downconvert work queue shared by the lock files of one mount.
#[derive(Clone)]
pub struct Worker {
    tx: mpsc::Sender<Arc<LockFile>>,
}

impl Worker {
    /// Starts the worker thread; it ends when every [`Worker`] clone and lock file is gone.
    pub fn start(node: u8) -> std::io::Result<Worker> {
        let (tx, rx) = mpsc::channel::<Arc<LockFile>>();
        std::thread::Builder::new()
            .name(format!("dlmfs-worker-{node}"))
            .spawn(move || {
                while let Ok(lock) = rx.recv() {
                    lock.unblock();
                }
            })?;
        Ok(Worker { tx })
    }
}

/// Why an open could not take its lock: a positive errno.
pub type Errno = i32;

impl LockFile {
    /// A lock file named `name` (the DLM resource name) in `domain`, with DLM lock id `id`.
    pub fn new(
        id: u64,
        name: Vec<u8>,
        domain: Arc<dyn DlmDomain>,
        node: u8,
        worker: Worker,
        on_blocked: Box<dyn Fn() + Send + Sync>,
    ) -> Arc<LockFile> {
        Arc::new(LockFile {
            id,
            name,
            domain,
            node,
            state: Mutex::new(UserLock::default()),
            changed: Condvar::new(),
            worker,
            on_blocked,
        })
    }

    fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// A copy of the state, for tests and dumps.
    pub fn snapshot(&self) -> UserLock {
        self.state.lock().clone()
    }

    /// Whether a BAST is pending (poll's POLLIN).
    pub fn is_blocked(&self) -> bool {
        self.state.lock().flags.blocked
    }

    /// The local value block.
    pub fn lvb(&self) -> Lvb {
        self.state.lock().lvb
    }

    /// `write`: copies `data` into the value block from byte 0.
    pub fn write_lvb(&self, data: &[u8]) {
        self.state.lock().write_lvb(data);
    }

    /// Whether an open at `level` is granted from the cache without waiting; if so the
    /// holder is added. Lets the file system answer cached opens on its own thread.
    pub fn acquire_cached(&self, level: LockMode) -> bool {
        let mut st = self.state.lock();
        let blocked_out = st.flags.blocked && level > crate::userdlm::highest_compat(st.blocking);
        if st.flags.in_teardown || blocked_out || Some(level) > st.level {
            return false;
        }
        st.acquire(level, false) == Step::Granted
    }

    /// `open`: takes a holder at `level` (`user_dlm_cluster_lock` plus dlmfs' errno
    /// translation): `ETXTBSY` for a trylock that cannot be granted, `EAGAIN` while being
    /// removed, the status map's errno for other DLM failures, `EINTR` when `interrupted`
    /// says so at one of the points the kernel looks for a pending signal: before each pass,
    /// that is after each wait has ended (the waits themselves are not interruptible). A
    /// request already made is not cancelled then: its grant stays cached, as in the kernel.
    pub fn acquire(
        self: &Arc<Self>,
        level: LockMode,
        trylock: bool,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<(), Errno> {
        let r = self.acquire_inner(level, trylock, interrupted);
        match r {
            Err(e) if trylock && e == libc::EAGAIN => Err(libc::ETXTBSY),
            r => r,
        }
    }

    fn acquire_inner(
        self: &Arc<Self>,
        level: LockMode,
        trylock: bool,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<(), Errno> {
        let mut st = self.state.lock();
        loop {
            if interrupted() {
                return Err(libc::EINTR);
            }
            match st.acquire(level, trylock) {
                Step::Granted => return Ok(()),
                Step::TearingDown => return Err(libc::EAGAIN),
                Step::Wait => {
                    // The kernel waits for the one flag that stopped it to clear, whatever
                    // else changes meanwhile.
                    let busy = st.flags.busy && Some(level) > st.level;
                    while if busy {
                        st.flags.busy
                    } else {
                        st.flags.blocked
                    } {
                        self.changed.wait(&mut st);
                    }
                }
                Step::Call(req) => {
                    let lvb = st.lvb;
                    drop(st);
                    let r = self
                        .domain
                        .lock(self.id, &self.name, req, &lvb, self.events());
                    st = self.state.lock();
                    match r {
                        // The AST callback settles the state (and clears BUSY) for a grant,
                        // the canceller (the downconvert work) for a cancellation.
                        Ok(()) | Err(DlmStatus::Cancel) => {}
                        Err(status) => {
                            if st.request_failed() {
                                self.queue_work();
                            }
                            self.changed.notify_all();
                            if status != DlmStatus::Notqueued {
                                tracing::warn!(
                                    node = self.node,
                                    lock = %self.display_name(),
                                    "dlmfs: lock request failed with {status}"
                                );
                            }
                            return Err(-status.to_errno());
                        }
                    }
                }
            }
        }
    }

    fn events(self: &Arc<Self>) -> Arc<dyn LockEvents> {
        Arc::new(Events(Arc::downgrade(self)))
    }

    /// `user_ast`: a grant, applied at once so that a BAST that follows it finds the lock at
    /// its new level.
    fn ast(self: &Arc<Self>, lvb: Option<Lvb>) {
        let queue = self.state.lock().granted(lvb);
        self.changed.notify_all();
        if queue {
            self.queue_work();
        }
    }

    fn bast(self: &Arc<Self>, mode: LockMode) {
        tracing::debug!(node = self.node, lock = %self.display_name(), "dlmfs: BAST for {mode:?}");
        let queue = self.state.lock().bast(mode);
        self.changed.notify_all();
        if queue {
            self.queue_work();
        }
        (self.on_blocked)();
    }

    fn queue_work(self: &Arc<Self>) {
        // A send fails only once the worker is gone (the mount is ending): nothing to do then.
        let _ = self.worker.tx.send(self.clone());
    }

    /// `close` of a handle opened at `level`.
    pub fn release(self: &Arc<Self>, level: LockMode) {
        let queue = self.state.lock().release(level);
        if queue {
            self.queue_work();
        }
    }

    /// The downconvert work item.
    fn unblock(self: &Arc<Self>) {
        let work = self.state.lock().unblock();
        match work {
            Work::Nothing => {
                self.changed.notify_all();
            }
            Work::Cancel => {
                let r = self.domain.cancel(self.id);
                let requeue = {
                    let mut st = self.state.lock();
                    match r {
                        Ok(too_late) => st.cancel_done(too_late),
                        Err(status) => {
                            tracing::warn!(
                                node = self.node,
                                lock = %self.display_name(),
                                "dlmfs: cancel failed with {status}"
                            );
                            st.cancel_failed();
                            false
                        }
                    }
                };
                self.changed.notify_all();
                if requeue {
                    self.queue_work();
                }
            }
            Work::Convert(mode) => {
                let req = crate::userdlm::Request {
                    mode,
                    convert: true,
                    noqueue: false,
                };
                let lvb = self.state.lock().lvb;
                let r = self
                    .domain
                    .lock(self.id, &self.name, req, &lvb, self.events());
                let mut st = self.state.lock();
                match r {
                    Ok(()) => {}
                    Err(status) => {
                        tracing::warn!(
                            node = self.node,
                            lock = %self.display_name(),
                            "dlmfs: downconvert to {mode:?} failed with {status}"
                        );
                        if st.request_failed() {
                            self.queue_work();
                        }
                    }
                }
                drop(st);
                self.changed.notify_all();
            }
        }
    }

    /// `unlink` (`user_dlm_destroy_lock`): `EBUSY` while held or while another unlink runs;
    /// otherwise unlocks the cached lock with VALBLK.
    pub fn destroy(&self) -> Result<(), Errno> {
        let mut st = self.state.lock();
        if !st.destroy_start() {
            return Err(libc::EBUSY);
        }
        loop {
            match st.destroy_step() {
                Destroy::Busy => return Err(libc::EBUSY),
                Destroy::Done => return Ok(()),
                Destroy::Wait => self.changed.wait(&mut st),
                Destroy::Unlock => {
                    let lvb = st.lvb;
                    drop(st);
                    let r = self.domain.unlock(self.id, &lvb);
                    let mut st = self.state.lock();
                    st.unlocked(r.is_ok());
                    drop(st);
                    self.changed.notify_all();
                    return r.map_err(|status| {
                        tracing::warn!(
                            node = self.node,
                            lock = %self.display_name(),
                            "dlmfs: unlock failed with {status}"
                        );
                        -status.to_errno()
                    });
                }
            }
        }
    }
}
