//! An in-process DLM for one machine: every lock resource is a real
//! [`o2dlm::lockres::LockResource`] (the master's queue engine, the same code a cluster
//! master runs), so grants, conversions, NOQUEUE, cancels, BASTs and the value block follow
//! o2dlm's rules. Each [`LocalDlm::node`] handle acts as one node: two dlmfs mounts on two
//! handles contend for locks as two nodes of a cluster do, with no network in between.
//!
//! Used by dlmfs' tests and benchmark, and by anyone who wants /dlm semantics on one machine.

use std::collections::HashMap;
use std::sync::Arc;

use o2dlm::lockres::{Delivery, LockId, LockResource, Unlocked};
use o2dlm::wire::{DlmStatus, LkmFlags, LockMode, LockName, Lvb, DOMAIN_NAME_MAX};
use parking_lot::{Condvar, Mutex};

use crate::dlm::{Dlm, DlmDomain, JoinError, LockEvents};
use crate::userdlm::Request;

/// A single-machine DLM shared by any number of simulated nodes. Cheap to clone.
#[derive(Clone, Default)]
pub struct LocalDlm {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    domains: HashMap<Vec<u8>, DomainState>,
    next_cookie: u64,
}

#[derive(Default)]
struct DomainState {
    registrations: usize,
    resources: HashMap<LockName, LockResource>,
    /// Live locks: their resource and callbacks.
    locks: HashMap<LockId, (LockName, Arc<dyn LockEvents>)>,
    /// The call waiting for each lock's pending request or conversion (at most one: the
    /// engine refuses another while one is pending).
    pending: HashMap<LockId, u64>,
    /// Outcomes by call, for the threads waiting in `lock`. By call and not by lock: a
    /// cancelled request's outcome may still be unread when the next conversion of the same
    /// lock completes.
    outcomes: HashMap<u64, Result<(), DlmStatus>>,
    next_call: u64,
}

impl LocalDlm {
    /// An empty DLM.
    pub fn new() -> LocalDlm {
        LocalDlm::default()
    }

    /// How many registrations of `domain` are live (mkdirs not yet left), over all nodes.
    pub fn registrations(&self, domain: &[u8]) -> usize {
        let st = self.shared.state.lock();
        st.domains.get(domain).map_or(0, |d| d.registrations)
    }

    /// The handle of node `node`: what a dlmfs mount of that node uses.
    pub fn node(&self, node: u8) -> LocalNode {
        LocalNode {
            dlm: self.clone(),
            node,
        }
    }
}

/// One simulated node of a [`LocalDlm`].
#[derive(Clone)]
pub struct LocalNode {
    dlm: LocalDlm,
    node: u8,
}

impl Dlm for LocalNode {
    fn join(&self, domain: &[u8]) -> Result<Arc<dyn DlmDomain>, JoinError> {
        if domain.is_empty() || domain.len() > DOMAIN_NAME_MAX {
            return Err(JoinError {
                errno: libc::EINVAL,
                message: format!("domain name of {} bytes", domain.len()),
            });
        }
        let mut st = self.dlm.shared.state.lock();
        st.domains.entry(domain.to_vec()).or_default().registrations += 1;
        drop(st);
        Ok(Arc::new(LocalDomain {
            dlm: self.dlm.clone(),
            node: self.node,
            name: domain.to_vec(),
            ids: Mutex::new(HashMap::new()),
        }))
    }

    fn node(&self) -> u8 {
        self.node
    }
}

struct LocalDomain {
    dlm: LocalDlm,
    node: u8,
    name: Vec<u8>,
    /// The caller's lock ids and the cookies they map to.
    ids: Mutex<HashMap<u64, LockId>>,
}

impl LocalDomain {
    /// Runs the master's dlm-thread pass over `name`: grants wake the calls waiting for
    /// them; the callbacks are returned, in delivery order (ASTs before BASTs, as
    /// `dlm_flush_asts`), for the caller to run once the state lock is released.
    fn settle(dom: &mut DomainState, name: &LockName) -> Vec<Callback> {
        let mut out = Vec::new();
        if let Some(res) = dom.resources.get_mut(name) {
            res.shuffle();
            res.flush(&mut out);
        }
        let mut calls = Vec::new();
        for d in out {
            match d {
                Delivery::Ast { lock, lvb, .. } => {
                    if let Some(call) = dom.pending.remove(&lock) {
                        dom.outcomes.insert(call, Ok(()));
                    }
                    if let Some((_, ev)) = dom.locks.get(&lock) {
                        calls.push(Callback::Ast(ev.clone(), lvb));
                    }
                }
                Delivery::Bast { lock, blocked } => {
                    if let Some((_, ev)) = dom.locks.get(&lock) {
                        calls.push(Callback::Bast(ev.clone(), blocked));
                    }
                }
            }
        }
        calls
    }

    fn lock_id(&self, id: u64) -> Result<LockId, DlmStatus> {
        self.ids.lock().get(&id).copied().ok_or(DlmStatus::Ivlockid)
    }

    /// Runs `op` on the live lock `id` (its domain state, cookie and resource name) under the
    /// state lock, then the dlm-thread pass over its resource; wakes the waiting calls and
    /// runs the callbacks once the state lock is released.
    fn on_lock<T>(
        &self,
        id: u64,
        op: impl FnOnce(&mut DomainState, LockId, &LockName) -> Result<T, DlmStatus>,
    ) -> Result<T, DlmStatus> {
        let lock = self.lock_id(id)?;
        let shared = &self.dlm.shared;
        let mut st = shared.state.lock();
        let dom = st.domains.get_mut(&self.name).ok_or(DlmStatus::Rejected)?;
        let lname = dom
            .locks
            .get(&lock)
            .map(|l| l.0)
            .ok_or(DlmStatus::Ivlockid)?;
        let out = op(dom, lock, &lname)?;
        let calls = Self::settle(dom, &lname);
        drop(st);
        shared.changed.notify_all();
        run_callbacks(calls);
        Ok(out)
    }
}

enum Callback {
    Ast(Arc<dyn LockEvents>, Option<Lvb>),
    Bast(Arc<dyn LockEvents>, LockMode),
}

fn run_callbacks(calls: Vec<Callback>) {
    for c in calls {
        match c {
            Callback::Ast(ev, lvb) => ev.ast(lvb),
            Callback::Bast(ev, mode) => ev.bast(mode),
        }
    }
}

impl DlmDomain for LocalDomain {
    fn lock(
        &self,
        id: u64,
        name: &[u8],
        req: Request,
        lvb: &Lvb,
        events: Arc<dyn LockEvents>,
    ) -> Result<(), DlmStatus> {
        let lname = LockName::new(name).map_err(|_| DlmStatus::Ivbuflen)?;
        let flags = if req.noqueue {
            LkmFlags::VALBLK | LkmFlags::NOQUEUE
        } else {
            LkmFlags::VALBLK
        };
        let shared = &self.dlm.shared;
        let mut st = shared.state.lock();
        let lock = if req.convert {
            self.lock_id(id)?
        } else {
            let cookie = st.next_cookie;
            st.next_cookie += 1;
            LockId {
                node: self.node,
                cookie: (u64::from(self.node) << 56) | cookie,
            }
        };
        let dom = st.domains.get_mut(&self.name).ok_or(DlmStatus::Rejected)?;
        let res = dom
            .resources
            .entry(lname)
            .or_insert_with(|| LockResource::new(lname));
        if req.convert {
            res.convert(lock, req.mode, flags, Some(lvb))?;
        } else {
            res.request(lock, req.mode, flags)?;
            dom.locks.insert(lock, (lname, events));
            self.ids.lock().insert(id, lock);
        }
        let call = dom.next_call;
        dom.next_call += 1;
        dom.pending.insert(lock, call);
        let basts = Self::settle(dom, &lname);
        drop(st);
        run_callbacks(basts);
        let mut st = shared.state.lock();
        loop {
            let dom = st.domains.get_mut(&self.name).ok_or(DlmStatus::Rejected)?;
            if let Some(r) = dom.outcomes.remove(&call) {
                if r.is_err() && !req.convert {
                    dom.locks.remove(&lock);
                    self.ids.lock().remove(&id);
                }
                shared.changed.notify_all();
                return r;
            }
            shared.changed.wait(&mut st);
        }
    }

    fn cancel(&self, id: u64) -> Result<bool, DlmStatus> {
        self.on_lock(id, |dom, lock, lname| {
            let res = dom.resources.get_mut(lname).ok_or(DlmStatus::Ivlockid)?;
            Ok(match res.unlock(lock, LkmFlags::CANCEL, None)? {
                Unlocked::CancelGrant => true,
                _ => {
                    if let Some(call) = dom.pending.remove(&lock) {
                        dom.outcomes.insert(call, Err(DlmStatus::Cancel));
                    }
                    false
                }
            })
        })
    }

    fn unlock(&self, id: u64, lvb: &Lvb) -> Result<(), DlmStatus> {
        self.on_lock(id, |dom, lock, lname| {
            let res = dom.resources.get_mut(lname).ok_or(DlmStatus::Ivlockid)?;
            res.unlock(lock, LkmFlags::VALBLK, Some(lvb))?;
            dom.locks.remove(&lock);
            self.ids.lock().remove(&id);
            Ok(())
        })
    }

    fn leave(&self) {
        let mut st = self.dlm.shared.state.lock();
        let gone = match st.domains.get_mut(&self.name) {
            Some(d) => {
                d.registrations = d.registrations.saturating_sub(1);
                d.registrations == 0
            }
            None => false,
        };
        if gone {
            st.domains.remove(&self.name);
        }
    }

    fn name(&self) -> &[u8] {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Dom = Arc<dyn DlmDomain>;

    /// Nodes 1 and 2, both in domain "dom".
    fn two_nodes() -> (Dom, Dom) {
        let dlm = LocalDlm::new();
        (
            dlm.node(1).join(b"dom").unwrap(),
            dlm.node(2).join(b"dom").unwrap(),
        )
    }

    /// A new lock `id` on resource "L" at `mode`, from a zero value block.
    fn lock_l(
        d: &Dom,
        id: u64,
        mode: LockMode,
        noqueue: bool,
        events: Arc<dyn LockEvents>,
    ) -> Result<(), DlmStatus> {
        let req = Request {
            mode,
            convert: false,
            noqueue,
        };
        d.lock(id, b"L", req, &[0; 64], events)
    }

    /// [`lock_l`] waiting on a thread of its own.
    fn lock_l_waiting(
        d: &Dom,
        id: u64,
        mode: LockMode,
    ) -> std::thread::JoinHandle<Result<(), DlmStatus>> {
        let d = d.clone();
        std::thread::spawn(move || lock_l(&d, id, mode, false, Arc::new(Seen::default())))
    }

    /// Records the callbacks of one lock.
    #[derive(Default)]
    struct Seen {
        asts: Mutex<Vec<Option<Lvb>>>,
        basts: Mutex<Vec<LockMode>>,
    }

    impl LockEvents for Seen {
        fn ast(&self, lvb: Option<Lvb>) {
            self.asts.lock().push(lvb);
        }
        fn bast(&self, mode: LockMode) {
            self.basts.lock().push(mode);
        }
    }

    #[test]
    fn a_refused_noqueue_request_sends_no_bast_and_a_queued_one_does() {
        let (a, b) = two_nodes();
        let seen = Arc::new(Seen::default());
        lock_l(&a, 1, LockMode::Ex, false, seen.clone()).unwrap();
        assert_eq!(seen.asts.lock().len(), 1, "the grant's AST");
        let r = lock_l(&b, 1, LockMode::Pr, true, Arc::new(Seen::default()));
        assert_eq!(r, Err(DlmStatus::Notqueued));
        // dlmlock_master returns DLM_NOTQUEUED without queueing anything: no BAST.
        assert!(seen.basts.lock().is_empty());
        let t = lock_l_waiting(&b, 2, LockMode::Pr);
        while seen.basts.lock().is_empty() {
            std::thread::yield_now();
        }
        assert_eq!(*seen.basts.lock(), vec![LockMode::Pr]);
        a.unlock(1, &[0; 64]).unwrap();
        assert!(t.join().unwrap().is_ok());
    }

    #[test]
    fn the_value_block_written_by_an_ex_unlock_reaches_the_next_reader() {
        let (a, b) = two_nodes();
        lock_l(&a, 7, LockMode::Ex, false, Arc::new(Seen::default())).unwrap();
        a.unlock(7, &[9; 64]).unwrap();
        let seen = Arc::new(Seen::default());
        lock_l(&b, 7, LockMode::Pr, false, seen.clone()).unwrap();
        assert_eq!(*seen.asts.lock(), vec![Some([9; 64])]);
    }

    #[test]
    fn a_waiting_request_is_granted_on_unlock_or_returns_cancel() {
        let (a, b) = two_nodes();
        lock_l(&a, 1, LockMode::Ex, false, Arc::new(Seen::default())).unwrap();
        let t = lock_l_waiting(&b, 1, LockMode::Ex);
        while b.cancel(1).is_err() {
            std::thread::yield_now();
        }
        assert_eq!(t.join().unwrap(), Err(DlmStatus::Cancel));
        let t = lock_l_waiting(&b, 2, LockMode::Ex);
        std::thread::sleep(std::time::Duration::from_millis(20));
        a.unlock(1, &[0; 64]).unwrap();
        assert!(t.join().unwrap().is_ok());
    }
}
