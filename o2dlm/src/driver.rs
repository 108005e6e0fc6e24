//! The tokio driver and the Rust API: [`Dlm`] runs the domain cores of one node on an
//! [`o2net::Net`], [`Domain`] is a joined domain, [`LockHandle`] a granted lock.
//!
//! Each domain's [`DomainCore`] sits behind a mutex with the API's waiters. Whoever has an
//! event (an API call, an o2net handler, a send completion, the domain's timer task) runs
//! the core and hands out what it produced: grants, BASTs and unlock completions go to their
//! waiters at once; messages are written at once and their status comes back through a
//! callback ([`o2net::Net::send_then`]), so an o2net handler never waits for the network
//! (the kernel defers such work to its dlm worker) and no message costs a task. A proxy AST
//! sent while the master handles CREATE_LOCK goes out in one write with the handler's
//! status, AST first. A lock on a resource this
//! node masters is granted inside the `lock` call itself, without a task switch.
//!
//! ```no_run
//! # async fn demo(net: o2net::Net) -> Result<(), o2dlm::DlmError> {
//! use o2dlm::wire::{LkmFlags, LockMode};
//! let dlm = o2dlm::Dlm::start(net.clone(), o2dlm::DlmConfig::default())?;
//! dlm.node_up(1); // every heartbeat event, this node's own included (net gets them too)
//! let domain = dlm.join("mydomain").await?;
//! let mut lock = domain.lock("counter", LockMode::Ex, LkmFlags::VALBLK).await?;
//! let mut lvb = *lock.lvb();
//! lvb[0] += 1;
//! lock.set_lvb(lvb);
//! lock.unlock_with(LkmFlags::VALBLK).await?; // writes the value block back
//! domain.leave().await?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use crate::domain::{DomainConfig, DomainCore, Grant, Input, Output};
use crate::error::DlmError;
use crate::join;
use crate::secondary::CookieSource;
use crate::wire::{
    DlmMessage, DlmStatus, DomainName, KeyKind, LkmFlags, LockMode, LockName, Lvb, MsgType,
    NodeInfo, NodeMap, ProtocolVersion, DLM_MOD_KEY, LVB_LEN, REGION_NAME_LEN,
};

/// Settings shared by every domain of a node.
#[derive(Debug, Clone)]
pub struct DlmConfig {
    /// `DLM_PURGE_INTERVAL_MS` (kernel: 8000).
    pub purge_interval_ms: u64,
    /// `DLM_MASTERY_TIMEOUT_MS` (kernel: 5000).
    pub mastery_timeout_ms: u64,
    /// The fs locking protocol of the domains' users (ocfs2 and dlmfs: 1.0).
    pub fs_proto: ProtocolVersion,
    /// Global heartbeat regions (`None`: local mode), compared at join.
    pub regions: Option<Vec<[u8; REGION_NAME_LEN]>>,
    /// The node table, compared at join (QUERY_NODEINFO).
    pub nodes: Vec<NodeInfo>,
}

impl Default for DlmConfig {
    fn default() -> Self {
        DlmConfig {
            purge_interval_ms: 8000,
            mastery_timeout_ms: 5000,
            fs_proto: crate::wire::FS_PROTOCOL,
            regions: None,
            nodes: Vec::new(),
        }
    }
}

/// The per-domain message types (all but the join messages, which use `DLM_MOD_KEY`).
const DOMAIN_TYPES: [MsgType; 17] = [
    MsgType::MasterRequest,
    MsgType::AssertMaster,
    MsgType::CreateLock,
    MsgType::ConvertLock,
    MsgType::ProxyAst,
    MsgType::UnlockLock,
    MsgType::DerefLockres,
    MsgType::MigrateRequest,
    MsgType::MigLockres,
    MsgType::ExitDomain,
    MsgType::MasterRequery,
    MsgType::LockRequest,
    MsgType::RecoDataDone,
    MsgType::BeginReco,
    MsgType::FinalizeReco,
    MsgType::BeginExitDomain,
    MsgType::DerefLockresDone,
];

const MODULE_TYPES: [MsgType; 5] = [
    MsgType::QueryJoin,
    MsgType::AssertJoined,
    MsgType::CancelJoin,
    MsgType::QueryRegion,
    MsgType::QueryNodeinfo,
];

/// One node's DLM: cheap to clone.
#[derive(Clone)]
pub struct Dlm {
    inner: Arc<NodeInner>,
}

struct NodeInner {
    net: o2net::Net,
    node: u8,
    cfg: DlmConfig,
    cookies: Mutex<CookieSource>,
    domains: Mutex<HashMap<DomainName, Arc<Shared>>>,
    live: Mutex<NodeMap>,
    start: Instant,
}

/// A joined domain: cheap to clone; every clone is the same membership.
#[derive(Clone)]
pub struct Domain {
    shared: Arc<Shared>,
}

enum Waiter {
    /// A lock request or conversion.
    Grant(oneshot::Sender<Result<Grant, DlmStatus>>),
    /// An unlock or cancel.
    Unlock(oneshot::Sender<(DlmStatus, bool)>),
    /// Nobody waits any more: a grant that still comes is unlocked at once.
    Abandoned,
    /// A conversion whose caller stopped waiting and was cancelled: a grant that still
    /// comes (the cancel came too late) gives the handle its new mode.
    ConvertCancelled,
}

#[derive(Default)]
struct BastSlot {
    latest: Option<LockMode>,
    waker: Option<oneshot::Sender<LockMode>>,
}

struct State {
    core: DomainCore,
    waiters: HashMap<u64, Waiter>,
    basts: HashMap<u64, BastSlot>,
    /// Modes granted to conversions cancelled too late, for their handles.
    late_modes: HashMap<u64, LockMode>,
    join: Option<oneshot::Sender<Result<(), i32>>>,
    leave: Option<oneshot::Sender<()>>,
    out: Vec<Output>,
}

struct Shared {
    node: Arc<NodeInner>,
    name: DomainName,
    state: Mutex<State>,
    timer: Notify,
    /// The deadline the timer task sleeps to (ms since start).
    armed: AtomicU64,
}

/// What the core produced for the caller's own lock during its call.
#[derive(Default)]
struct Mine {
    done: Option<Result<Grant, DlmStatus>>,
    unlocked: Option<(DlmStatus, bool)>,
}

/// A message to put on the wire, taken out of the lock.
struct OutMsg {
    token: u64,
    to: u8,
    msg_type: u16,
    key: u32,
    payload: Vec<u8>,
}

impl Dlm {
    /// Starts the DLM of `net`'s node: registers the join handlers (key `DLM_MOD_KEY`).
    /// Domains register their own handlers when joined.
    pub fn start(net: o2net::Net, cfg: DlmConfig) -> Result<Dlm, DlmError> {
        let node = net.local_node();
        let inner = Arc::new(NodeInner {
            net: net.clone(),
            node,
            cfg,
            cookies: Mutex::new(CookieSource::new(node)),
            domains: Mutex::new(HashMap::new()),
            live: Mutex::new(NodeMap::new()),
            start: Instant::now(),
        });
        for t in MODULE_TYPES {
            let weak = Arc::downgrade(&inner);
            net.register_handler(
                t.to_wire(),
                DLM_MOD_KEY,
                t.max_len() as u32,
                move |req| match weak.upgrade() {
                    Some(inner) => module_handler(&inner, req),
                    None => crate::wire::errno::EINVAL,
                },
            )
            .map_err(|e| DlmError::Net {
                node,
                message: e.to_string(),
            })?;
        }
        Ok(Dlm { inner })
    }

    /// This node's number.
    pub fn node(&self) -> u8 {
        self.inner.node
    }

    /// Heartbeat reports `node` live (call it for this node too, and for o2net separately).
    pub fn node_up(&self, node: u8) {
        self.inner.live.lock().insert(node);
        for d in self.domains() {
            d.run(Input::NodeUp(node));
        }
    }

    /// Heartbeat reports `node` dead.
    pub fn node_down(&self, node: u8) {
        self.inner.live.lock().remove(node);
        for d in self.domains() {
            d.run(Input::NodeDown(node));
        }
    }

    fn domains(&self) -> Vec<Arc<Shared>> {
        self.inner.domains.lock().values().cloned().collect()
    }

    /// Joins `name` (`dlm_register_domain`): asks every live node, negotiates the protocol,
    /// asserts the join. Waits up to the kernel's 90 s of back-off.
    pub async fn join(&self, name: &str) -> Result<Domain, DlmError> {
        let node = self.inner.node;
        let dname = DomainName::new(name.as_bytes()).map_err(|reason| DlmError::BadName {
            what: "domain",
            name: name.to_owned(),
            reason,
        })?;
        let mut dcfg = DomainConfig::new(node, dname);
        dcfg.purge_interval_ms = self.inner.cfg.purge_interval_ms;
        dcfg.mastery_timeout_ms = self.inner.cfg.mastery_timeout_ms;
        dcfg.fs_proto = self.inner.cfg.fs_proto;
        dcfg.regions = self.inner.cfg.regions.clone();
        dcfg.nodes = self.inner.cfg.nodes.clone();
        let mut core = DomainCore::new(dcfg);
        let live = *self.inner.live.lock();
        for n in live.iter() {
            core.handle(0, Input::NodeUp(n));
        }
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared {
            node: self.inner.clone(),
            name: dname,
            state: Mutex::new(State {
                core,
                waiters: HashMap::new(),
                late_modes: HashMap::new(),
                basts: HashMap::new(),
                join: Some(tx),
                leave: None,
                out: Vec::new(),
            }),
            timer: Notify::new(),
            armed: AtomicU64::new(u64::MAX),
        });
        {
            let mut domains = self.inner.domains.lock();
            if domains.contains_key(&dname) {
                return Err(DlmError::JoinFailed {
                    domain: name.to_owned(),
                    node,
                    errno: -17, // EEXIST: one registration per domain and node here
                });
            }
            domains.insert(dname, shared.clone());
        }
        let key = dname.key();
        for t in DOMAIN_TYPES {
            let weak = Arc::downgrade(&shared);
            let r =
                self.inner
                    .net
                    .register_handler(t.to_wire(), key, t.max_len() as u32, move |req| match weak
                        .upgrade()
                    {
                        Some(s) => s.on_request(req),
                        None => crate::wire::errno::EINVAL,
                    });
            if let Err(e) = r {
                self.forget(&shared);
                return Err(DlmError::Net {
                    node,
                    message: e.to_string(),
                });
            }
        }
        let timer = shared.clone();
        tokio::spawn(async move { timer.timer_loop().await });
        shared.run(Input::Join);
        match rx.await {
            Ok(Ok(())) => Ok(Domain { shared }),
            Ok(Err(errno)) => {
                self.forget(&shared);
                Err(DlmError::JoinFailed {
                    domain: name.to_owned(),
                    node,
                    errno,
                })
            }
            Err(_) => {
                self.forget(&shared);
                Err(DlmError::Stopped { node })
            }
        }
    }

    fn forget(&self, shared: &Arc<Shared>) {
        shared.stop();
    }
}

/// The node-wide join handlers: find the domain by name.
fn module_handler(inner: &Arc<NodeInner>, req: &o2net::Request) -> i32 {
    let msg = match DlmMessage::decode(req.header.msg_type, &req.payload) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(
                node = inner.node,
                peer = req.node,
                "o2dlm: bad join message: {e}"
            );
            return crate::wire::errno::EINVAL;
        }
    };
    let domain = match &msg {
        DlmMessage::QueryJoin(q) => q.domain,
        DlmMessage::AssertJoined(j) | DlmMessage::CancelJoin(j) => j.domain,
        DlmMessage::QueryRegion(q) => q.domain,
        DlmMessage::QueryNodeinfo(q) => q.domain,
        _ => return crate::wire::errno::EINVAL,
    };
    let shared = inner.domains.lock().get(&domain).cloned();
    match shared {
        Some(s) => s.run_message(req.node, msg),
        None => match msg {
            DlmMessage::QueryJoin(q) => {
                let live = inner.live.lock().contains(q.node_idx);
                join::answer_query_join(&q, live, None).to_status()
            }
            DlmMessage::AssertJoined(_) | DlmMessage::CancelJoin(_) => 0,
            _ => crate::wire::errno::EINVAL,
        },
    }
}

impl Shared {
    fn now(&self) -> u64 {
        u64::try_from(self.node.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn domain(&self) -> String {
        self.name.to_string()
    }

    /// Runs the core on one input and hands out what it produced.
    fn run(self: &Arc<Self>, input: Input) -> i32 {
        let now = self.now();
        let mut sends = Vec::new();
        let status = {
            let mut st = self.state.lock();
            let status = st.core.handle(now, input);
            self.dispatch(&mut st, &mut sends, None);
            status
        };
        self.launch(sends);
        status
    }

    fn run_message(self: &Arc<Self>, from: u8, msg: DlmMessage) -> i32 {
        self.run(Input::Message { from, msg })
    }

    fn on_request(self: &Arc<Self>, req: &o2net::Request) -> i32 {
        match DlmMessage::decode(req.header.msg_type, &req.payload) {
            Ok(msg) => self.run_message(req.node, msg),
            Err(e) => {
                tracing::warn!(node = self.node.node, domain = %self.name, peer = req.node, "o2dlm: bad message: {e}");
                match MsgType::from_wire(req.header.msg_type) {
                    Some(
                        MsgType::MasterRequest
                        | MsgType::CreateLock
                        | MsgType::ConvertLock
                        | MsgType::UnlockLock
                        | MsgType::ProxyAst,
                    ) => DlmStatus::Ivbuflen.to_wire(),
                    Some(MsgType::AssertMaster) => 0,
                    _ => crate::wire::errno::EINVAL,
                }
            }
        }
    }

    /// Hands the core's outputs to their waiters; messages are collected into `sends`. A
    /// grant for `mine` is returned instead of being sent to a waiter (the caller is in the
    /// call that produced it).
    fn dispatch(&self, st: &mut State, sends: &mut Vec<OutMsg>, mine: Option<u64>) -> Mine {
        let mut found = Mine::default();
        let mut out = std::mem::take(&mut st.out);
        // Abandoned grants are unlocked, which may produce more outputs.
        loop {
            st.core.take_outputs(&mut out);
            if out.is_empty() {
                break;
            }
            let mut unlock_now = Vec::new();
            for o in out.drain(..) {
                match o {
                    Output::Send { token, to, msg } => sends.push(OutMsg {
                        token,
                        to,
                        msg_type: msg.msg_type().to_wire(),
                        key: match msg.msg_type().key_kind() {
                            KeyKind::Module => DLM_MOD_KEY,
                            _ => st.core.key(),
                        },
                        payload: msg.to_vec(),
                    }),
                    Output::Done { cookie, result } => {
                        if Some(cookie) == mine {
                            found.done = Some(result);
                            continue;
                        }
                        match st.waiters.remove(&cookie) {
                            Some(Waiter::Grant(tx)) => {
                                let _ = tx.send(result);
                            }
                            Some(Waiter::Abandoned) => {
                                if result.is_ok() {
                                    unlock_now.push(cookie);
                                }
                                st.waiters.insert(cookie, Waiter::Abandoned);
                            }
                            Some(Waiter::ConvertCancelled) => {
                                if let Ok(g) = result {
                                    st.late_modes.insert(cookie, g.mode);
                                }
                            }
                            Some(w) => {
                                st.waiters.insert(cookie, w);
                            }
                            None => {}
                        }
                    }
                    Output::Bast { cookie, blocked } => {
                        let slot = st.basts.entry(cookie).or_default();
                        match slot.waker.take() {
                            Some(tx) => {
                                if let Err(m) = tx.send(blocked) {
                                    slot.latest = Some(m);
                                }
                            }
                            None => slot.latest = Some(blocked),
                        }
                    }
                    Output::Unlocked {
                        cookie,
                        status,
                        removed,
                        cancel,
                    } => {
                        if removed {
                            st.basts.remove(&cookie);
                        }
                        // A cancel's completion answers nobody's unlock: the cancelled
                        // request's own result comes as `Done`.
                        if cancel && !removed {
                            continue;
                        }
                        if Some(cookie) == mine && !cancel {
                            found.unlocked = Some((status, removed));
                            continue;
                        }
                        match st.waiters.remove(&cookie) {
                            Some(Waiter::Unlock(tx)) => {
                                let _ = tx.send((status, removed));
                            }
                            Some(Waiter::Abandoned) if !removed => {
                                st.waiters.insert(cookie, Waiter::Abandoned);
                            }
                            Some(Waiter::Grant(tx)) if removed => {
                                let _ = tx.send(Err(DlmStatus::Cancel));
                            }
                            Some(w) if !removed => {
                                st.waiters.insert(cookie, w);
                            }
                            _ => {}
                        }
                    }
                    Output::Joined => {
                        if let Some(tx) = st.join.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    Output::JoinFailed(e) => {
                        if let Some(tx) = st.join.take() {
                            let _ = tx.send(Err(e));
                        }
                    }
                    Output::Left => {
                        if let Some(tx) = st.leave.take() {
                            let _ = tx.send(());
                        }
                    }
                }
            }
            let now = if unlock_now.is_empty() { 0 } else { self.now() };
            for cookie in unlock_now {
                st.core.handle(
                    now,
                    Input::Unlock {
                        cookie,
                        flags: LkmFlags::empty(),
                        lvb: [0; LVB_LEN],
                    },
                );
            }
        }
        st.out = out;
        if let Some(d) = st.core.next_deadline() {
            if d < self.armed.load(Ordering::Acquire) {
                self.armed.store(d, Ordering::Release);
                self.timer.notify_one();
            }
        }
        found
    }

    /// Sends the messages: o2net writes each one before `send_then` returns (no task switch
    /// before the write, a third of a round trip on loopback) and gives the peer's status to
    /// the core from the task that reads it (no task per message to spawn and wake).
    fn launch(self: &Arc<Self>, sends: Vec<OutMsg>) {
        for m in sends {
            let me = self.clone();
            let token = m.token;
            self.node
                .net
                .send_then(m.to, m.msg_type, m.key, m.payload, move |r| {
                    me.run(Input::SendDone {
                        token,
                        result: r.map_err(|e| e.errno()),
                    });
                });
        }
    }

    async fn timer_loop(self: Arc<Self>) {
        loop {
            let now = self.now();
            let next = self.state.lock().core.next_deadline();
            match next {
                Some(d) if d <= now => {
                    self.armed.store(u64::MAX, Ordering::Release);
                    self.run(Input::Tick);
                    continue;
                }
                Some(d) => {
                    self.armed.store(d, Ordering::Release);
                    let wait = Duration::from_millis(d - now);
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.timer.notified() => {}
                    }
                }
                None => {
                    self.armed.store(u64::MAX, Ordering::Release);
                    self.timer.notified().await;
                }
            }
            if Arc::strong_count(&self) == 1 {
                return;
            }
        }
    }

    /// Unregisters the handlers and forgets the domain.
    fn stop(self: &Arc<Self>) {
        let key = self.name.key();
        for t in DOMAIN_TYPES {
            self.node.net.unregister_handler(t.to_wire(), key);
        }
        self.node.domains.lock().remove(&self.name);
        self.timer.notify_one();
    }
}

/// A lock name from bytes, with the kernel's limits.
fn lock_name(name: impl AsRef<[u8]>) -> Result<LockName, DlmError> {
    let b = name.as_ref();
    LockName::new(b).map_err(|reason| DlmError::BadName {
        what: "lock",
        name: String::from_utf8_lossy(b).into_owned(),
        reason,
    })
}

impl Domain {
    /// The domain's name.
    pub fn name(&self) -> String {
        self.shared.domain()
    }

    /// The node this membership is on.
    pub fn node(&self) -> u8 {
        self.shared.node.node
    }

    fn error(&self, name: LockName, op: &'static str, status: DlmStatus) -> DlmError {
        let domain = self.shared.domain();
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
    /// LOCAL masters the resource here without asking (the caller knows nobody else uses it).
    /// Dropping the future before the grant cancels the request.
    pub async fn lock(
        &self,
        name: impl AsRef<[u8]>,
        mode: LockMode,
        flags: LkmFlags,
    ) -> Result<LockHandle, DlmError> {
        let name = lock_name(name)?;
        let cookie = self.shared.node.cookies.lock().next_cookie();
        let (grant, rx) = {
            let mut sends = Vec::new();
            let now = self.shared.now();
            let mut st = self.shared.state.lock();
            st.core.handle(
                now,
                Input::Lock {
                    cookie,
                    name,
                    mode,
                    flags,
                },
            );
            let found = self.shared.dispatch(&mut st, &mut sends, Some(cookie)).done;
            let rx = if found.is_none() {
                let (tx, rx) = oneshot::channel();
                st.waiters.insert(cookie, Waiter::Grant(tx));
                Some(rx)
            } else {
                None
            };
            drop(st);
            self.shared.launch(sends);
            (found, rx)
        };
        let result = match (grant, rx) {
            (Some(r), _) => r,
            (None, Some(rx)) => {
                let mut guard = CancelOnDrop {
                    shared: &self.shared,
                    cookie,
                    abandoned: || Waiter::Abandoned,
                    armed: true,
                };
                let r = rx.await.unwrap_or(Err(DlmStatus::Nolockmgr));
                guard.armed = false;
                r
            }
            (None, None) => Err(DlmStatus::Nolockmgr),
        };
        match result {
            Ok(g) => Ok(LockHandle {
                domain: self.clone(),
                cookie,
                name,
                mode: g.mode,
                lvb: g.lvb.unwrap_or([0; LVB_LEN]),
                live: true,
            }),
            Err(s) => Err(self.error(name, "lock", s)),
        }
    }

    /// Leaves the domain (`dlm_unregister_domain`): resources mastered here that other nodes
    /// use are migrated to them (their locks keep working), then the domain is left once
    /// this node's own locks are unlocked.
    pub async fn leave(&self) -> Result<(), DlmError> {
        let (tx, rx) = oneshot::channel();
        self.shared.state.lock().leave = Some(tx);
        self.shared.run(Input::Leave);
        let r = rx.await;
        self.shared.stop();
        r.map_err(|_| DlmError::Stopped { node: self.node() })
    }

    /// The `locking_state` dump of this domain (the kernel's debugfs format).
    pub fn locking_state(&self) -> String {
        let mut v = Vec::new();
        let _ = self.shared.state.lock().core.write_locking_state(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }

    /// The `mle_state` dump.
    pub fn mle_state(&self) -> String {
        let mut v = Vec::new();
        let _ = self.shared.state.lock().core.write_mle_state(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }

    /// The `dlm_state` dump.
    pub fn dlm_state(&self) -> String {
        let mut v = Vec::new();
        let _ = self.shared.state.lock().core.write_dlm_state(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }

    /// Where recovery of this domain stands (for `o2cb status`): the dead node being
    /// recovered, the recovery master once known, the nodes still to recover, how many
    /// recoveries finished here.
    pub fn recovery_state(&self) -> Option<crate::recovery::RecoveryState> {
        self.shared.state.lock().core.recovery_state()
    }

    /// The master of `name` as this node knows it.
    pub fn owner_of(&self, name: impl AsRef<[u8]>) -> Option<u8> {
        let name = LockName::new(name.as_ref()).ok()?;
        self.shared.state.lock().core.owner_of(&name)
    }

    /// The domain map as this node sees it.
    pub fn members(&self) -> Vec<u8> {
        self.shared.state.lock().core.domain_map().iter().collect()
    }

    /// Starts an unlock (or cancel) and returns the waiter of its completion; a completion in
    /// the call itself is returned directly.
    fn start_unlock(
        &self,
        cookie: u64,
        flags: LkmFlags,
        lvb: Lvb,
    ) -> Result<(DlmStatus, bool), oneshot::Receiver<(DlmStatus, bool)>> {
        let mut sends = Vec::new();
        let now = self.shared.now();
        let mut st = self.shared.state.lock();
        st.core.handle(now, Input::Unlock { cookie, flags, lvb });
        let found = self.shared.dispatch(&mut st, &mut sends, Some(cookie));
        let r = match found.unlocked {
            Some(done) => Ok(done),
            None => {
                let (tx, rx) = oneshot::channel();
                st.waiters.insert(cookie, Waiter::Unlock(tx));
                Err(rx)
            }
        };
        drop(st);
        self.shared.launch(sends);
        r
    }
}

/// Cancels a lock request or conversion whose caller stopped waiting (its
/// future was dropped). `abandoned` says what a grant that still comes means:
/// [`Waiter::Abandoned`] for a new lock (unlocked at once),
/// [`Waiter::ConvertCancelled`] for a conversion (the handle takes the mode).
struct CancelOnDrop<'a> {
    shared: &'a Arc<Shared>,
    cookie: u64,
    abandoned: fn() -> Waiter,
    armed: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut sends = Vec::new();
        let now = self.shared.now();
        let mut st = self.shared.state.lock();
        st.waiters.insert(self.cookie, (self.abandoned)());
        st.core.handle(
            now,
            Input::Unlock {
                cookie: self.cookie,
                flags: LkmFlags::CANCEL,
                lvb: [0; LVB_LEN],
            },
        );
        self.shared.dispatch(&mut st, &mut sends, None);
        drop(st);
        self.shared.launch(sends);
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
    /// The granted mode.
    pub fn mode(&self) -> LockMode {
        let st = self.domain.shared.state.lock();
        st.late_modes
            .get(&self.cookie)
            .copied()
            .unwrap_or(self.mode)
    }

    /// Takes the mode a cancelled conversion was granted anyway.
    fn take_late_mode(&mut self) {
        if let Some(m) = self
            .domain
            .shared
            .state
            .lock()
            .late_modes
            .remove(&self.cookie)
        {
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
    /// of waiting. On failure the lock keeps its mode.
    ///
    /// Dropping the returned future while the conversion waits cancels it (`dlmunlock` with
    /// `LKM_CANCEL`): the lock stays in its granted mode, so two holders of PR that both want
    /// EX can break their standoff by giving up (e.g. with a timeout) and letting go of PR.
    /// If the grant raced the cancel, [`LockHandle::mode`] shows the new mode.
    pub async fn convert(&mut self, mode: LockMode, flags: LkmFlags) -> Result<(), DlmError> {
        self.take_late_mode();
        let shared = &self.domain.shared;
        let cookie = self.cookie;
        let (found, rx) = {
            let mut sends = Vec::new();
            let now = shared.now();
            let mut st = shared.state.lock();
            st.core.handle(
                now,
                Input::Convert {
                    cookie,
                    mode,
                    flags,
                    lvb: self.lvb,
                },
            );
            let found = shared.dispatch(&mut st, &mut sends, Some(cookie)).done;
            let rx = if found.is_none() {
                let (tx, rx) = oneshot::channel();
                st.waiters.insert(cookie, Waiter::Grant(tx));
                Some(rx)
            } else {
                None
            };
            drop(st);
            shared.launch(sends);
            (found, rx)
        };
        let r = match (found, rx) {
            (Some(r), _) => r,
            (None, Some(rx)) => {
                let mut guard = CancelOnDrop {
                    shared,
                    cookie,
                    abandoned: || Waiter::ConvertCancelled,
                    armed: true,
                };
                let r = rx.await.unwrap_or(Err(DlmStatus::Nolockmgr));
                guard.armed = false;
                r
            }
            (None, None) => Err(DlmStatus::Nolockmgr),
        };
        match r {
            Ok(g) => {
                self.mode = g.mode;
                if let Some(v) = g.lvb {
                    self.lvb = v;
                }
                Ok(())
            }
            Err(s) => Err(self.domain.error(self.name, "convert", s)),
        }
    }

    /// Waits for the next BAST: another node or task wants a mode this lock blocks.
    pub async fn bast(&self) -> LockMode {
        let rx = {
            let mut st = self.domain.shared.state.lock();
            let slot = st.basts.entry(self.cookie).or_default();
            if let Some(m) = slot.latest.take() {
                return m;
            }
            let (tx, rx) = oneshot::channel();
            slot.waker = Some(tx);
            rx
        };
        match rx.await {
            Ok(m) => m,
            Err(_) => std::future::pending().await,
        }
    }

    /// A BAST that has arrived and not been taken yet.
    pub fn try_bast(&self) -> Option<LockMode> {
        let mut st = self.domain.shared.state.lock();
        st.basts.get_mut(&self.cookie).and_then(|s| s.latest.take())
    }

    /// Unlocks (`dlmunlock`) without writing the value block.
    pub async fn unlock(self) -> Result<(), DlmError> {
        self.unlock_with(LkmFlags::empty()).await
    }

    /// Unlocks with `flags`: VALBLK writes [`LockHandle::lvb`] back if the lock is EX.
    pub async fn unlock_with(mut self, flags: LkmFlags) -> Result<(), DlmError> {
        self.live = false;
        let r = match self.domain.start_unlock(self.cookie, flags, self.lvb) {
            Ok(done) => done,
            Err(rx) => rx.await.unwrap_or((DlmStatus::Nolockmgr, false)),
        };
        match r.0 {
            DlmStatus::Normal => Ok(()),
            s => Err(self.domain.error(self.name, "unlock", s)),
        }
    }
}

impl Drop for LockHandle {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        let mut sends = Vec::new();
        let shared = &self.domain.shared;
        let now = shared.now();
        let mut st = shared.state.lock();
        st.waiters.insert(self.cookie, Waiter::Abandoned);
        st.core.handle(
            now,
            Input::Unlock {
                cookie: self.cookie,
                flags: LkmFlags::empty(),
                lvb: self.lvb,
            },
        );
        shared.dispatch(&mut st, &mut sends, None);
        drop(st);
        shared.launch(sends);
    }
}
