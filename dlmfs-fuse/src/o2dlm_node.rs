//! [`Dlm`] over a node's Rust API ([`o2node::Node`]): what a node daemon mounts, so that
//! /dlm on each node locks across the cluster.
//!
//! dlmfs calls block its own threads; the node's API is async. Each call is run on the
//! daemon's tokio runtime with [`tokio::runtime::Handle::block_on`] (dlmfs never calls from
//! a runtime thread). A granted lock lives in a task of its own that owns the
//! [`o2node::LockHandle`], delivers its BASTs, and runs its conversions and unlock in order,
//! so a grant's AST always reaches dlmfs before the BASTs that follow it.
//!
//! Registrations of a domain go through the node's [`DomainRegistry`], shared with the
//! daemon's other users, so a domain has one o2dlm membership (o2dlm allows one per node);
//! the last unregistration leaves it, in the background (o2dlm's leave waits until other
//! nodes no longer use what this node masters).
//!
//! Limitation: o2dlm's API cannot cancel a pending conversion, so a BAST during an
//! up-conversion (PR to EX) waits for its grant instead of cancelling it; two nodes
//! upgrading the same cached PR lock at once then wait for each other. New lock requests
//! are cancelled.

use std::collections::HashMap;
use std::sync::Arc;

use o2dlm::wire::{DlmStatus, LkmFlags, LockMode, Lvb};
use o2dlm::DlmError;
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::dlm::{Dlm, DlmDomain, JoinError, LockEvents};
use crate::registry::DomainRegistry;
use crate::userdlm::Request;

/// A node's o2dlm as a dlmfs [`Dlm`]. Cheap to clone.
#[derive(Clone)]
pub struct O2dlmNode {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    registry: Arc<DomainRegistry>,
    rt: Handle,
}

impl O2dlmNode {
    /// Wraps `node`, whose driver runs on `rt`, with a registry of its own (nothing else on
    /// the node may join domains).
    pub fn new(node: o2node::Node, rt: Handle) -> O2dlmNode {
        O2dlmNode::with_registry(Arc::new(DomainRegistry::new(node)), rt)
    }

    /// dlmfs over the DLM of `registry`, sharing its domain memberships with the registry's
    /// other users; the driver runs on `rt`.
    pub fn with_registry(registry: Arc<DomainRegistry>, rt: Handle) -> O2dlmNode {
        O2dlmNode {
            inner: Arc::new(NodeInner { registry, rt }),
        }
    }

    /// The registry of the node's domain memberships.
    pub fn registry(&self) -> &Arc<DomainRegistry> {
        &self.inner.registry
    }
}

fn join_errno(e: &DlmError) -> i32 {
    match e {
        DlmError::JoinFailed { errno, .. } | DlmError::Node { errno, .. } => errno.abs(),
        DlmError::BadName { .. } => libc::EINVAL,
        _ => libc::ENOTCONN,
    }
}

impl Dlm for O2dlmNode {
    fn join(&self, domain: &[u8]) -> Result<Arc<dyn DlmDomain>, JoinError> {
        let dom = self
            .inner
            .rt
            .block_on(self.inner.registry.register(domain, false))
            .map_err(|e| JoinError {
                errno: join_errno(&e),
                message: e.to_string(),
            })?;
        Ok(Arc::new(O2dlmDomain {
            node: self.inner.clone(),
            domain: dom,
            name: domain.to_vec(),
            registered: std::sync::atomic::AtomicBool::new(true),
            locks: Mutex::new(HashMap::new()),
        }))
    }

    fn node(&self) -> u8 {
        self.inner.registry.node().node()
    }
}

enum Cmd {
    Convert {
        mode: LockMode,
        noqueue: bool,
        lvb: Lvb,
        reply: oneshot::Sender<Result<(), DlmStatus>>,
    },
    Unlock {
        lvb: Lvb,
        reply: oneshot::Sender<Result<(), DlmStatus>>,
    },
}

enum Slot {
    /// A new lock request in flight; sending cancels it.
    Pending(Option<oneshot::Sender<()>>),
    /// A granted lock's task.
    Held(mpsc::UnboundedSender<Cmd>),
}

struct O2dlmDomain {
    node: Arc<NodeInner>,
    domain: o2node::Domain,
    name: Vec<u8>,
    /// Cleared by the one [`DlmDomain::leave`] that gives the registration back.
    registered: std::sync::atomic::AtomicBool,
    locks: Mutex<HashMap<u64, Slot>>,
}

fn status(e: DlmError) -> DlmStatus {
    match e {
        DlmError::NotQueued { .. } => DlmStatus::Notqueued,
        DlmError::Cancelled { .. } => DlmStatus::Cancel,
        DlmError::Recovering { .. } => DlmStatus::Recovering,
        DlmError::Status { status, .. } => status,
        DlmError::NotJoined { .. } => DlmStatus::Rejected,
        _ => DlmStatus::Nolockmgr,
    }
}

fn flags(noqueue: bool) -> LkmFlags {
    if noqueue {
        LkmFlags::VALBLK | LkmFlags::NOQUEUE
    } else {
        LkmFlags::VALBLK
    }
}

/// The task of one granted lock.
async fn lock_task(
    mut handle: o2node::LockHandle,
    events: Arc<dyn LockEvents>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) {
    loop {
        let next = tokio::select! {
            m = handle.bast() => Err(m),
            c = cmds.recv() => Ok(c),
        };
        match next {
            Err(mode) => events.bast(mode),
            Ok(Some(Cmd::Convert {
                mode,
                noqueue,
                lvb,
                reply,
            })) => {
                let up = mode > handle.mode();
                handle.set_lvb(lvb);
                let r = handle.convert(mode, flags(noqueue)).await;
                if r.is_ok() {
                    events.ast(up.then(|| *handle.lvb()));
                }
                let _ = reply.send(r.map_err(status));
            }
            Ok(Some(Cmd::Unlock { lvb, reply })) => {
                handle.set_lvb(lvb);
                let r = handle.unlock_with(LkmFlags::VALBLK).await;
                let _ = reply.send(r.map_err(status));
                return;
            }
            // The domain registration is gone: dropping the handle unlocks.
            Ok(None) => return,
        }
    }
}

impl O2dlmDomain {
    fn ask(
        &self,
        id: u64,
        cmd: impl FnOnce(oneshot::Sender<Result<(), DlmStatus>>) -> Cmd,
    ) -> Result<(), DlmStatus> {
        let tx = match self.locks.lock().get(&id) {
            Some(Slot::Held(tx)) => tx.clone(),
            _ => return Err(DlmStatus::Ivlockid),
        };
        let (reply, rx) = oneshot::channel();
        tx.send(cmd(reply)).map_err(|_| DlmStatus::Ivlockid)?;
        self.node
            .rt
            .block_on(rx)
            .unwrap_or(Err(DlmStatus::Nolockmgr))
    }
}

impl DlmDomain for O2dlmDomain {
    fn lock(
        &self,
        id: u64,
        name: &[u8],
        req: Request,
        lvb: &Lvb,
        events: Arc<dyn LockEvents>,
    ) -> Result<(), DlmStatus> {
        if req.convert {
            return self.ask(id, |reply| Cmd::Convert {
                mode: req.mode,
                noqueue: req.noqueue,
                lvb: *lvb,
                reply,
            });
        }
        let (cancel, cancelled) = oneshot::channel::<()>();
        self.locks.lock().insert(id, Slot::Pending(Some(cancel)));
        let domain = self.domain.clone();
        let name = name.to_vec();
        let r = self.node.rt.block_on(async move {
            tokio::select! {
                r = domain.lock(&name, req.mode, flags(req.noqueue)) => r.map_err(status),
                // Dropping the request's future cancels it in o2dlm.
                _ = cancelled => Err(DlmStatus::Cancel),
            }
        });
        match r {
            Ok(handle) => {
                events.ast(Some(*handle.lvb()));
                let (tx, rx) = mpsc::unbounded_channel();
                self.locks.lock().insert(id, Slot::Held(tx));
                self.node.rt.spawn(lock_task(handle, events, rx));
                Ok(())
            }
            Err(s) => {
                self.locks.lock().remove(&id);
                Err(s)
            }
        }
    }

    fn cancel(&self, id: u64) -> Result<bool, DlmStatus> {
        match self.locks.lock().get_mut(&id) {
            Some(Slot::Pending(tx)) => match tx.take() {
                Some(tx) => Ok(tx.send(()).is_err()),
                None => Ok(true),
            },
            // A conversion may be pending in the lock's task: o2dlm's API cannot cancel it.
            Some(Slot::Held(_)) => Err(DlmStatus::Nosupport),
            None => Err(DlmStatus::Ivlockid),
        }
    }

    fn unlock(&self, id: u64, lvb: &Lvb) -> Result<(), DlmStatus> {
        let r = self.ask(id, |reply| Cmd::Unlock { lvb: *lvb, reply });
        self.locks.lock().remove(&id);
        r
    }

    fn leave(&self) {
        // Dropping the lock tasks' senders unlocks whatever is still held.
        self.locks.lock().clear();
        if !self
            .registered
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let registry = self.node.registry.clone();
        let name = self.name.clone();
        // Not waited for: o2dlm's leave of the last registration can take seconds, and an
        // unmount or rmdir must not.
        self.node
            .rt
            .spawn(async move { registry.unregister(&name).await });
    }

    fn name(&self) -> &[u8] {
        &self.name
    }
}
