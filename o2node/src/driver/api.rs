//! The Rust API of a running node: [`Node::join`] gives a [`Domain`], [`Domain::lock`] a
//! [`LockHandle`] (convert, value block, BASTs, unlock); failures are [`DlmError`]s.
//!
//! The driver keeps one record per local lock, keyed by domain and cookie ([`LockSlot`]):
//! who waits for what, the BAST not yet taken, the mode a too-late cancel left. Calls enter
//! the stack's requests; a grant that comes within the call is handed over before it returns.
//!
//! ```no_run
//! # async fn demo(node: o2node::Node) -> Result<(), o2dlm::DlmError> {
//! use o2dlm::wire::{LkmFlags, LockMode};
//! let domain = node.join(b"mydomain", true).await?; // waits for the node to be online
//! let mut lock = domain.lock("counter", LockMode::Ex, LkmFlags::VALBLK).await?;
//! let mut lvb = *lock.lvb();
//! lvb[0] += 1;
//! lock.set_lvb(lvb);
//! lock.unlock_with(LkmFlags::VALBLK).await?; // writes the value block back
//! domain.leave().await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;

use o2dlm::domain::Grant;
use o2dlm::wire::{DlmStatus, DomainName, LkmFlags, LockMode, LockName, Lvb, LVB_LEN};
use o2dlm::DlmError;
use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use super::Node;
use crate::types::Event;
use crate::{NodeError, NodeStack};

/// Who waits for what of one lock.
#[derive(Default)]
enum Waiter {
    #[default]
    Nobody,
    /// A lock request (`convert` false) or a conversion.
    Grant {
        tx: oneshot::Sender<Result<Grant, DlmStatus>>,
        convert: bool,
    },
    /// An unlock or cancel.
    Unlock(oneshot::Sender<(DlmStatus, bool)>),
    /// Nobody waits any more: a grant that still comes is unlocked at once.
    Abandoned,
    /// A conversion whose caller stopped waiting and was cancelled: a grant that still comes
    /// (the cancel came too late) gives the handle its new mode.
    ConvertCancelled,
}

/// Everything the driver knows of one local lock.
#[derive(Default)]
struct LockSlot {
    waiter: Waiter,
    /// The latest BAST not taken yet, and who waits for the next one.
    bast: Option<LockMode>,
    bast_waker: Option<oneshot::Sender<LockMode>>,
    /// The mode a conversion cancelled too late was granted.
    late_mode: Option<LockMode>,
}

/// The API's waiters, behind the driver's lock.
#[derive(Default)]
pub(super) struct Waiters {
    joins: HashMap<DomainName, oneshot::Sender<Result<(), i32>>>,
    leaves: HashMap<DomainName, Vec<oneshot::Sender<bool>>>,
    locks: FxHashMap<(DomainName, u64), LockSlot>,
}

impl Waiters {
    /// The node is gone: every waiter fails.
    pub(super) fn fail_all(&mut self) {
        *self = Waiters::default();
    }

    pub(super) fn on_event(&mut self, stack: &mut NodeStack, now: u64, e: &Event) {
        match *e {
            Event::Joined { domain } => {
                if let Some(tx) = self.joins.remove(&domain) {
                    let _ = tx.send(Ok(()));
                }
            }
            Event::JoinFailed { domain, errno } => {
                if let Some(tx) = self.joins.remove(&domain) {
                    let _ = tx.send(Err(errno));
                }
            }
            Event::Left { domain, clean } => {
                for tx in self.leaves.remove(&domain).unwrap_or_default() {
                    let _ = tx.send(clean);
                }
                // The domain's locks are gone with it: their waiters fail.
                self.locks.retain(|(d, _), _| *d != domain);
            }
            Event::LockDone {
                domain,
                cookie,
                result,
            } => self.done(stack, now, domain, cookie, result),
            Event::Bast {
                domain,
                cookie,
                blocked,
            } => {
                if let Some(slot) = self.locks.get_mut(&(domain, cookie)) {
                    match slot.bast_waker.take() {
                        Some(tx) => {
                            if let Err(m) = tx.send(blocked) {
                                slot.bast = Some(m);
                            }
                        }
                        None => slot.bast = Some(blocked),
                    }
                }
            }
            Event::Unlocked {
                domain,
                cookie,
                status,
                removed,
                cancel,
            } => self.unlocked(domain, cookie, status, removed, cancel),
            _ => {}
        }
    }

    fn done(
        &mut self,
        stack: &mut NodeStack,
        now: u64,
        domain: DomainName,
        cookie: u64,
        result: Result<Grant, DlmStatus>,
    ) {
        let key = (domain, cookie);
        let Some(slot) = self.locks.get_mut(&key) else {
            return;
        };
        match std::mem::take(&mut slot.waiter) {
            Waiter::Grant { tx, convert } => {
                let gone = result.is_err() && !convert;
                let _ = tx.send(result);
                if gone {
                    self.locks.remove(&key);
                }
            }
            Waiter::Abandoned => {
                slot.waiter = Waiter::Abandoned;
                if result.is_ok() {
                    let _ = stack.unlock(now, domain, cookie, LkmFlags::empty(), [0; LVB_LEN]);
                } else {
                    self.locks.remove(&key);
                }
            }
            Waiter::ConvertCancelled => {
                if let Ok(g) = result {
                    slot.late_mode = Some(g.mode);
                }
            }
            w => slot.waiter = w,
        }
    }

    fn unlocked(
        &mut self,
        domain: DomainName,
        cookie: u64,
        status: DlmStatus,
        removed: bool,
        cancel: bool,
    ) {
        // A cancel's own completion answers nobody: the request's result comes as LockDone.
        if cancel && !removed {
            return;
        }
        let key = (domain, cookie);
        let Some(slot) = self.locks.get_mut(&key) else {
            return;
        };
        match std::mem::take(&mut slot.waiter) {
            Waiter::Unlock(tx) => {
                let _ = tx.send((status, removed));
            }
            Waiter::Grant { tx, .. } if removed => {
                let _ = tx.send(Err(DlmStatus::Cancel));
            }
            w => slot.waiter = w,
        }
        if removed {
            self.locks.remove(&key);
        }
    }
}

/// The API's error for a refusal of the stack.
fn refused(e: NodeError) -> DlmError {
    match e {
        NodeError::NotJoined { node, domain } => DlmError::NotJoined { domain, node },
        e => DlmError::Node {
            node: node_of(&e),
            errno: e.errno(),
            message: e.to_string(),
        },
    }
}

fn node_of(e: &NodeError) -> u8 {
    match e {
        NodeError::Starting { node }
        | NodeError::Stopping { node }
        | NodeError::Stopped { node }
        | NodeError::Fenced { node }
        | NodeError::NotJoined { node, .. }
        | NodeError::AlreadyJoined { node, .. }
        | NodeError::KeyCollision { node, .. }
        | NodeError::Region { node, .. }
        | NodeError::Net { node, .. } => *node,
        NodeError::Config(_) => u8::MAX,
    }
}

/// A lock name from bytes, with the kernel's limits.
fn lock_name(name: &[u8]) -> Result<LockName, DlmError> {
    LockName::new(name).map_err(|reason| DlmError::BadName {
        what: "lock",
        name: String::from_utf8_lossy(name).into_owned(),
        reason,
    })
}

impl Node {
    /// Joins `name` (`dlm_register_domain`): asks every live node, negotiates the protocol,
    /// asserts the join. A node still starting joins once it is online (`wait`), or refuses.
    pub async fn join(&self, name: &[u8], wait: bool) -> Result<Domain, DlmError> {
        let node = self.node();
        let dname = DomainName::new(name).map_err(|reason| DlmError::BadName {
            what: "domain",
            name: String::from_utf8_lossy(name).into_owned(),
            reason,
        })?;
        let (tx, rx) = oneshot::channel();
        self.with_state(|st, now| {
            st.stack.join(now, dname, wait).map_err(refused)?;
            st.dlm.joins.insert(dname, tx);
            Ok::<(), DlmError>(())
        })?;
        match rx.await {
            Ok(Ok(())) => Ok(Domain {
                node: self.clone(),
                name: dname,
            }),
            Ok(Err(errno)) => Err(DlmError::JoinFailed {
                domain: dname.to_string(),
                node,
                errno,
            }),
            Err(_) => Err(refused(self.gone())),
        }
    }
}

/// A joined domain: cheap to clone; every clone is the same membership.
#[derive(Clone)]
pub struct Domain {
    node: Node,
    name: DomainName,
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domain")
            .field("node", &self.node.node())
            .field("name", &self.name)
            .finish()
    }
}

impl Domain {
    /// The domain's name, as the kernel prints it.
    pub fn name(&self) -> String {
        self.name.to_string()
    }

    /// The domain's name as bytes.
    pub fn name_bytes(&self) -> &[u8] {
        self.name.as_bytes()
    }

    /// The node this membership is on.
    pub fn node(&self) -> u8 {
        self.node.node()
    }

    fn error(&self, name: LockName, op: &'static str, status: DlmStatus) -> DlmError {
        let domain = self.name();
        match status {
            DlmStatus::Notqueued => DlmError::NotQueued { domain, name },
            DlmStatus::Cancel => DlmError::Cancelled { domain, name },
            DlmStatus::Recovering => DlmError::Recovering { domain, name },
            DlmStatus::Rejected => DlmError::NotJoined {
                domain,
                node: self.node(),
            },
            status => DlmError::Status {
                domain,
                name,
                op,
                status,
            },
        }
    }

    /// Takes a new lock on `name` in `mode` (`dlmlock`): VALBLK reads the value block with
    /// the grant (PR, EX), NOQUEUE fails with [`DlmError::NotQueued`] instead of waiting,
    /// LOCAL masters the resource here without asking. Dropping the future before the grant
    /// cancels the request.
    pub async fn lock(
        &self,
        name: impl AsRef<[u8]>,
        mode: LockMode,
        flags: LkmFlags,
    ) -> Result<LockHandle, DlmError> {
        let name = lock_name(name.as_ref())?;
        let domain = self.name;
        let (tx, rx) = oneshot::channel();
        let cookie = self.node.with_state(|st, now| {
            let cookie = st
                .stack
                .lock(now, domain, name, mode, flags)
                .map_err(refused)?;
            let slot = st.dlm.locks.entry((domain, cookie)).or_default();
            slot.waiter = Waiter::Grant { tx, convert: false };
            Ok::<u64, DlmError>(cookie)
        })?;
        let mut guard = CancelOnDrop {
            domain: self,
            cookie,
            abandoned: || Waiter::Abandoned,
            armed: true,
        };
        let r = rx.await;
        guard.armed = false;
        match r {
            Ok(Ok(g)) => Ok(LockHandle {
                domain: self.clone(),
                cookie,
                name,
                mode: g.mode,
                lvb: g.lvb.unwrap_or([0; LVB_LEN]),
                live: true,
            }),
            Ok(Err(s)) => Err(self.error(name, "lock", s)),
            Err(_) => Err(self.lost()),
        }
    }

    /// Why a waiter was dropped: the domain or the node is gone.
    fn lost(&self) -> DlmError {
        match self.node.stage() {
            crate::Stage::Online => DlmError::NotJoined {
                domain: self.name(),
                node: self.node(),
            },
            _ => refused(self.node.gone()),
        }
    }

    /// Leaves the domain (`dlm_unregister_domain`) once this node's locks in it are
    /// unlocked: resources mastered here that other nodes use are migrated to them.
    pub async fn leave(&self) -> Result<(), DlmError> {
        let (tx, rx) = oneshot::channel();
        let domain = self.name;
        self.node.with_state(|st, now| {
            st.stack.leave(now, domain).map_err(refused)?;
            st.dlm.leaves.entry(domain).or_default().push(tx);
            Ok::<(), DlmError>(())
        })?;
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(DlmError::Node {
                node: self.node(),
                errno: -110,
                message: format!("domain {domain}: not left cleanly (the node stopped without it)"),
            }),
            Err(_) => Err(self.lost()),
        }
    }

    fn dump(&self, f: impl FnOnce(&o2dlm::domain::DomainCore, &mut Vec<u8>)) -> String {
        let mut v = Vec::new();
        self.node.inspect(|s| {
            if let Some(core) = s.domain(&self.name) {
                f(core, &mut v);
            }
        });
        String::from_utf8_lossy(&v).into_owned()
    }

    /// The `locking_state` dump of this domain (the kernel's debugfs format).
    pub fn locking_state(&self) -> String {
        self.dump(|c, v| {
            let _ = c.write_locking_state(v);
        })
    }

    /// The `mle_state` dump.
    pub fn mle_state(&self) -> String {
        self.dump(|c, v| {
            let _ = c.write_mle_state(v);
        })
    }

    /// The `dlm_state` dump.
    pub fn dlm_state(&self) -> String {
        self.dump(|c, v| {
            let _ = c.write_dlm_state(v);
        })
    }

    /// Where recovery of this domain stands (for `o2cb status`).
    pub fn recovery_state(&self) -> Option<o2dlm::recovery::RecoveryState> {
        self.node
            .inspect(|s| s.domain(&self.name).and_then(|c| c.recovery_state()))
    }

    /// The master of `name` as this node knows it.
    pub fn owner_of(&self, name: impl AsRef<[u8]>) -> Option<u8> {
        let name = LockName::new(name.as_ref()).ok()?;
        self.node
            .inspect(|s| s.domain(&self.name).and_then(|c| c.owner_of(&name)))
    }

    /// The domain map as this node sees it.
    pub fn members(&self) -> Vec<u8> {
        self.node.inspect(|s| {
            s.domain(&self.name)
                .map(|c| c.domain_map().iter().collect())
                .unwrap_or_default()
        })
    }

    /// Starts an unlock (or cancel) and returns the waiter of its completion.
    fn start_unlock(
        &self,
        cookie: u64,
        flags: LkmFlags,
        lvb: Lvb,
    ) -> Result<oneshot::Receiver<(DlmStatus, bool)>, DlmError> {
        let (tx, rx) = oneshot::channel();
        let domain = self.name;
        self.node.with_state(|st, now| {
            // Registered first: the completion may come within the call.
            if let Some(slot) = st.dlm.locks.get_mut(&(domain, cookie)) {
                slot.waiter = Waiter::Unlock(tx);
            }
            if let Err(e) = st.stack.unlock(now, domain, cookie, flags, lvb) {
                st.dlm.locks.remove(&(domain, cookie));
                return Err(refused(e));
            }
            Ok(())
        })?;
        Ok(rx)
    }

    /// Gives up a request or conversion: `abandoned` says what a grant that still comes
    /// means; the cancel goes to the DLM.
    fn give_up(&self, cookie: u64, abandoned: Waiter) {
        let domain = self.name;
        self.node.with_state(|st, now| {
            let Some(slot) = st.dlm.locks.get_mut(&(domain, cookie)) else {
                return;
            };
            slot.waiter = abandoned;
            let cancel = st
                .stack
                .unlock(now, domain, cookie, LkmFlags::CANCEL, [0; LVB_LEN]);
            if cancel.is_err() {
                st.dlm.locks.remove(&(domain, cookie));
            }
        });
    }
}

/// Cancels a lock request or conversion whose caller stopped waiting (its future was
/// dropped).
struct CancelOnDrop<'a> {
    domain: &'a Domain,
    cookie: u64,
    abandoned: fn() -> Waiter,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.domain.give_up(self.cookie, (self.abandoned)());
        }
    }
}

/// A granted lock. Unlock it with [`LockHandle::unlock`]; dropping it unlocks it too, without
/// waiting.
pub struct LockHandle {
    domain: Domain,
    cookie: u64,
    name: LockName,
    mode: LockMode,
    lvb: Lvb,
    live: bool,
}

impl std::fmt::Debug for LockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockHandle")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .field("cookie", &format_args!("{:#018x}", self.cookie))
            .finish()
    }
}

impl LockHandle {
    fn key(&self) -> (DomainName, u64) {
        (self.domain.name, self.cookie)
    }

    /// The granted mode.
    pub fn mode(&self) -> LockMode {
        let key = self.key();
        self.domain
            .node
            .inner
            .state
            .lock()
            .dlm
            .locks
            .get(&key)
            .and_then(|s| s.late_mode)
            .unwrap_or(self.mode)
    }

    /// Takes the mode a cancelled conversion was granted anyway.
    fn take_late_mode(&mut self) {
        let key = self.key();
        let late = self
            .domain
            .node
            .inner
            .state
            .lock()
            .dlm
            .locks
            .get_mut(&key)
            .and_then(|s| s.late_mode.take());
        if let Some(m) = late {
            self.mode = m;
        }
    }

    /// The resource name.
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// The lock's cookie (node number and sequence, as the dumps show it).
    pub fn cookie(&self) -> u64 {
        self.cookie
    }

    /// The value block: as read with the last grant that asked for it (VALBLK), or as set
    /// with [`LockHandle::set_lvb`].
    pub fn lvb(&self) -> &Lvb {
        &self.lvb
    }

    /// Sets the value block to write back with the next VALBLK unlock or down-conversion
    /// from EX.
    pub fn set_lvb(&mut self, lvb: Lvb) {
        self.lvb = lvb;
    }

    /// Converts to `mode` (`dlmlock` with `LKM_CONVERT`); VALBLK reads the value block on an
    /// up-conversion and writes it back when converting down from EX; NOQUEUE fails instead
    /// of waiting. On failure the lock keeps its mode. Dropping the returned future while
    /// the conversion waits cancels it (`dlmunlock` with `LKM_CANCEL`); if the grant raced
    /// the cancel, [`LockHandle::mode`] shows the new mode.
    pub async fn convert(&mut self, mode: LockMode, flags: LkmFlags) -> Result<(), DlmError> {
        self.take_late_mode();
        let (tx, rx) = oneshot::channel();
        let (domain, cookie, lvb) = (self.domain.name, self.cookie, self.lvb);
        self.domain.node.with_state(|st, now| {
            let slot = st.dlm.locks.entry((domain, cookie)).or_default();
            slot.waiter = Waiter::Grant { tx, convert: true };
            st.stack
                .convert(now, domain, cookie, mode, flags, lvb)
                .map_err(refused)
        })?;
        let mut guard = CancelOnDrop {
            domain: &self.domain,
            cookie,
            abandoned: || Waiter::ConvertCancelled,
            armed: true,
        };
        let r = rx.await;
        guard.armed = false;
        match r {
            Ok(Ok(g)) => {
                self.mode = g.mode;
                if let Some(v) = g.lvb {
                    self.lvb = v;
                }
                Ok(())
            }
            Ok(Err(s)) => Err(self.domain.error(self.name, "convert", s)),
            Err(_) => Err(self.domain.lost()),
        }
    }

    /// Waits for the next BAST: another node or task wants a mode this lock blocks.
    pub async fn bast(&self) -> LockMode {
        let key = self.key();
        let rx = {
            let mut st = self.domain.node.inner.state.lock();
            let slot = st.dlm.locks.entry(key).or_default();
            if let Some(m) = slot.bast.take() {
                return m;
            }
            let (tx, rx) = oneshot::channel();
            slot.bast_waker = Some(tx);
            rx
        };
        match rx.await {
            Ok(m) => m,
            Err(_) => std::future::pending().await,
        }
    }

    /// A BAST that has arrived and not been taken yet.
    pub fn try_bast(&self) -> Option<LockMode> {
        let key = self.key();
        let mut st = self.domain.node.inner.state.lock();
        st.dlm.locks.get_mut(&key).and_then(|s| s.bast.take())
    }

    /// Unlocks (`dlmunlock`) without writing the value block.
    pub async fn unlock(self) -> Result<(), DlmError> {
        self.unlock_with(LkmFlags::empty()).await
    }

    /// Unlocks with `flags`: VALBLK writes [`LockHandle::lvb`] back if the lock is EX.
    pub async fn unlock_with(mut self, flags: LkmFlags) -> Result<(), DlmError> {
        self.live = false;
        let rx = self.domain.start_unlock(self.cookie, flags, self.lvb)?;
        match rx.await {
            Ok((DlmStatus::Normal, _)) => Ok(()),
            Ok((s, _)) => Err(self.domain.error(self.name, "unlock", s)),
            Err(_) => Err(self.domain.lost()),
        }
    }
}

impl Drop for LockHandle {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        let (domain, cookie, lvb) = (self.domain.name, self.cookie, self.lvb);
        self.domain.node.with_state(|st, now| {
            if let Some(slot) = st.dlm.locks.get_mut(&(domain, cookie)) {
                slot.waiter = Waiter::Abandoned;
            }
            if st
                .stack
                .unlock(now, domain, cookie, LkmFlags::empty(), lvb)
                .is_err()
            {
                st.dlm.locks.remove(&(domain, cookie));
            }
        });
    }
}
