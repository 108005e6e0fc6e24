//! The real-time driver: one [`NodeStack`] run against real sockets, real disks and a real
//! clock, and the Rust API of the node ([`Node`], [`Domain`], [`LockHandle`]).
//!
//! The stack sits behind one mutex. Whoever has an event (a read from a socket, a finished
//! disk I/O, the timer, an API call) feeds it, takes every output it left and carries them
//! out: disk I/O goes to the region's I/O thread, bytes to the connection's write buffer
//! (written once the lock is released, one write for all of a call's bytes to a peer), events
//! to the API's waiters. A fence is carried out before anything else of the same call: no
//! grant of a fenced node reaches its user.
//!
//! Tasks: one listener, one reader per connection (and a flusher when a socket is full), one
//! timer; threads: one I/O thread per region.

mod api;
mod events;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use o2hb::iothread::{IoDone, IoRequest, IoThread};
use o2hb::FenceAction;
use o2net::sockio::{self, close_io, ConnIo};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::AbortHandle;

pub use api::{Domain, LockHandle};

use crate::types::{ConnId, Event, FenceReason, Input, Level, Output, RegionId, Stage};
use crate::{NodeConfig, NodeError, NodeStack};

/// Exit status of a process fenced with [`FenceAction::Exit`] (as o2hb's driver).
pub const FENCE_EXIT_STATUS: i32 = o2hb::driver::FENCE_EXIT_STATUS;
/// How many log lines [`Node::recent_log`] keeps.
const LOG_RING: usize = 256;

/// A running node: cheap to clone, every clone drives the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    node: u8,
    state: Mutex<State>,
    start: Instant,
    timer_wake: Notify,
    /// The instant (ms) the timer task sleeps until.
    timer_target: AtomicU64,
    runtime: tokio::runtime::Handle,
    fence: FenceAction,
    tasks: Mutex<Vec<AbortHandle>>,
    running: AtomicBool,
    stage: watch::Sender<Stage>,
}

/// Everything behind the lock: the stack and what its outputs are carried out with.
struct State {
    stack: NodeStack,
    conns: FxHashMap<ConnId, Arc<ConnIo>>,
    disks: BTreeMap<RegionId, IoThread>,
    /// Waiters of region starts (steady or failed) and stops.
    starting: BTreeMap<RegionId, oneshot::Sender<Result<(), String>>>,
    stopping: BTreeMap<RegionId, Vec<oneshot::Sender<bool>>>,
    dlm: api::Waiters,
    /// Application sends waiting for their status, by id.
    apps: FxHashMap<u64, oneshot::Sender<Result<i32, i32>>>,
    next_app: u64,
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
    log: VecDeque<String>,
}

/// What a call left to do once the lock is released.
#[derive(Default)]
struct Batch {
    flush: Vec<Arc<ConnIo>>,
    connect: Vec<(ConnId, SocketAddrV4, SocketAddrV4)>,
    fence: Option<FenceReason>,
}

impl Node {
    /// Starts the node of `cfg` on the current tokio runtime (it must be called from within
    /// one): binds the local node's address, starts the listener and timer tasks. Heartbeat
    /// starts with [`Node::start_region`]; locks are served once the node is online.
    pub fn start(mut cfg: NodeConfig, fence: FenceAction) -> Result<Node, NodeError> {
        let node = cfg.node();
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            NodeError::Config("the node must be started from within a tokio runtime".into())
        })?;
        let addr = cfg
            .net
            .nodes
            .iter()
            .find(|n| n.num == node)
            .map(|n| n.addr)
            .ok_or_else(|| NodeError::Config(format!("local node {node} is not configured")))?;
        let start = Instant::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        cfg.wall_epoch_ms = wall;
        let stack = NodeStack::new(cfg)?;
        let listener = sockio::listen(addr).map_err(|e| NodeError::Net {
            node,
            message: format!("listening on {addr}: {e}"),
        })?;
        let n = Node {
            inner: Arc::new(Inner {
                node,
                state: Mutex::new(State {
                    stack,
                    conns: FxHashMap::default(),
                    disks: BTreeMap::new(),
                    starting: BTreeMap::new(),
                    stopping: BTreeMap::new(),
                    dlm: api::Waiters::default(),
                    apps: FxHashMap::default(),
                    next_app: 1,
                    subscribers: Vec::new(),
                    log: VecDeque::new(),
                }),
                start,
                timer_wake: Notify::new(),
                timer_target: AtomicU64::new(u64::MAX),
                runtime,
                fence,
                tasks: Mutex::new(Vec::new()),
                running: AtomicBool::new(true),
                stage: watch::channel(Stage::Starting).0,
            }),
        };
        tracing::info!(node, "o2net: listening on {addr}");
        let me = n.clone();
        n.spawn(async move { me.accept_loop(listener).await });
        let me = n.clone();
        n.spawn(async move { me.timer_loop().await });
        Ok(n)
    }

    /// This node's number.
    pub fn node(&self) -> u8 {
        self.inner.node
    }

    /// Milliseconds since start: the stack's clock.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The node's stage now.
    pub fn stage(&self) -> Stage {
        *self.inner.stage.borrow()
    }

    /// Follows the node's stage.
    pub fn watch_stage(&self) -> watch::Receiver<Stage> {
        self.inner.stage.subscribe()
    }

    /// Waits until the node is online; fails if it stops or fences first.
    pub async fn wait_online(&self) -> Result<(), NodeError> {
        let node = self.node();
        let mut w = self.watch_stage();
        let r = w
            .wait_for(|s| !matches!(s, Stage::Starting))
            .await
            .map(|s| *s);
        match r {
            Ok(Stage::Online) => Ok(()),
            Ok(Stage::Fenced) => Err(NodeError::Fenced { node }),
            Ok(Stage::Stopping) => Err(NodeError::Stopping { node }),
            _ => Err(NodeError::Stopped { node }),
        }
    }

    /// Reads the stack (status, dumps, statistics).
    pub fn inspect<R>(&self, f: impl FnOnce(&NodeStack) -> R) -> R {
        f(&self.inner.state.lock().stack)
    }

    /// Every event from now on (node up/down, joins, grants, ...).
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner.state.lock().subscribers.push(tx);
        rx
    }

    /// The last log lines of the node (kernel wording), oldest first.
    pub fn recent_log(&self) -> Vec<String> {
        self.inner.state.lock().log.iter().cloned().collect()
    }

    /// Answers application messages of (`msg_type`, `key`) with status 0 (test programs;
    /// the round-trip baseline of the benchmarks).
    pub fn register_app_handler(
        &self,
        msg_type: u16,
        key: u32,
        max_len: u32,
    ) -> Result<(), NodeError> {
        self.with_state(|st, _| st.stack.register_app_handler(msg_type, key, max_len))
    }

    /// Sends an application message to `to` over o2net and waits for the handler's status
    /// (`Err`: the send's negative errno).
    pub async fn send_app(
        &self,
        to: u8,
        msg_type: u16,
        key: u32,
        payload: bytes::Bytes,
    ) -> Result<i32, i32> {
        let (tx, rx) = oneshot::channel();
        self.with_state(|st, now| {
            let id = st.next_app;
            st.next_app += 1;
            st.apps.insert(id, tx);
            if let Err(e) = st.stack.send_app(now, id, to, msg_type, key, payload) {
                st.apps.remove(&id);
                return Err(e.errno());
            }
            Ok(())
        })?;
        rx.await.unwrap_or(Err(-108))
    }

    /// Opens the region's device with O_DIRECT and starts heartbeating; returns once the
    /// region is steady (the kernel's `dev` write), or why it could not stabilize.
    pub async fn start_region(
        &self,
        src: &o2hb::source::RegionSource,
    ) -> Result<RegionId, NodeError> {
        let path = src.path.clone();
        let node = self.node();
        let io = tokio::task::spawn_blocking(move || o2hb::disk::DirectFile::open(&path))
            .await
            .map_err(|e| NodeError::Config(e.to_string()))?
            .map_err(|e| NodeError::Region {
                node,
                region: src.name.clone(),
                message: format!("{}: {e}", src.path.display()),
            })?;
        self.start_region_with(&src.name, &src.device(), src.geometry, Box::new(io))
            .await
    }

    /// [`Node::start_region`] over any block I/O (in-process clusters, slow or failing
    /// devices in tests).
    pub async fn start_region_with(
        &self,
        name: &str,
        device: &str,
        geometry: o2hb::Geometry,
        io: Box<dyn o2hb::disk::BlockIo>,
    ) -> Result<RegionId, NodeError> {
        let generation = loop {
            let g: u64 = rand::random();
            if g != 0 {
                break g;
            }
        };
        let region = o2hb::RegionConfig {
            name: name.to_string(),
            device: device.to_string(),
            geometry,
        };
        let node = self.node();
        let weak = Arc::downgrade(&self.inner);
        let (tx, rx) = oneshot::channel();
        let id = self.with_state(|st, now| {
            let id = st.stack.start_region(now, region, generation)?;
            match spawn_io(weak, node, id, io) {
                Ok(t) => {
                    st.disks.insert(id, t);
                    st.starting.insert(id, tx);
                    Ok(id)
                }
                Err(e) => {
                    let _ = st.stack.stop_region(now, id);
                    Err(NodeError::Region {
                        node,
                        region: name.to_string(),
                        message: format!("I/O thread: {e}"),
                    })
                }
            }
        })?;
        match rx.await {
            Ok(Ok(())) => Ok(id),
            Ok(Err(message)) => Err(NodeError::Region {
                node,
                region: name.to_string(),
                message,
            }),
            Err(_) => Err(self.gone()),
        }
    }

    /// Stops a region cleanly (the generation-0 block); returns once it has stopped.
    pub async fn stop_region(&self, id: RegionId) -> Result<(), NodeError> {
        let (tx, rx) = oneshot::channel();
        self.with_state(|st, now| {
            st.stack.stop_region(now, id)?;
            st.stopping.entry(id).or_default().push(tx);
            Ok::<(), NodeError>(())
        })?;
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(NodeError::Region {
                node: self.node(),
                region: id.to_string(),
                message: "stopped without its clean-stop block".into(),
            }),
            Err(_) => Err(self.gone()),
        }
    }

    /// A clean stop (see [`NodeStack::stop`]): returns once the node is stopped (or fenced),
    /// its sockets closed.
    pub async fn stop(&self) {
        let mut w = self.watch_stage();
        self.with_state(|st, now| st.stack.stop(now));
        let _ = w
            .wait_for(|s| matches!(s, Stage::Stopped | Stage::Fenced))
            .await;
        self.shutdown();
    }

    /// Ends the node at once: tasks stop, every connection closes, every waiter fails.
    pub fn shutdown(&self) {
        self.inner.running.store(false, Ordering::Release);
        for t in self.inner.tasks.lock().drain(..) {
            t.abort();
        }
        let conns: Vec<Arc<ConnIo>> = {
            let mut st = self.inner.state.lock();
            st.disks.clear();
            st.starting.clear();
            st.stopping.clear();
            st.dlm.fail_all();
            st.apps.clear();
            st.conns.drain().map(|(_, c)| c).collect()
        };
        for c in conns {
            close_io(&c);
        }
    }

    fn gone(&self) -> NodeError {
        let node = self.node();
        match self.stage() {
            Stage::Fenced => NodeError::Fenced { node },
            Stage::Stopping => NodeError::Stopping { node },
            _ => NodeError::Stopped { node },
        }
    }

    // ----- running the stack ---------------------------------------------------------------

    /// Calls `f` on the state at the current time, then carries out what the stack left.
    fn with_state<R>(&self, f: impl FnOnce(&mut State, u64) -> R) -> R {
        let (r, batch) = {
            let mut st = self.inner.state.lock();
            let now = self.now_ms();
            let r = f(&mut st, now);
            (r, self.drain(&mut st, now))
        };
        self.execute(batch);
        r
    }

    fn feed(&self, input: Input<'_>) {
        self.with_state(|st, now| st.stack.handle(now, input));
    }

    /// Takes the stack's outputs (and those its users' reactions produce) under the lock.
    fn drain(&self, st: &mut State, now: u64) -> Batch {
        let mut b = Batch::default();
        loop {
            let outputs: Vec<Output> = std::iter::from_fn(|| st.stack.poll_output()).collect();
            if outputs.is_empty() {
                break;
            }
            // A fence goes first: nothing else of this call reaches the world.
            if let Some(Output::Fence(reason)) =
                outputs.iter().find(|o| matches!(o, Output::Fence(_)))
            {
                self.fence_now(st, reason.clone(), &mut b);
                break;
            }
            for o in outputs {
                self.carry_out(st, now, o, &mut b);
            }
        }
        let stage = st.stack.stage();
        self.inner.stage.send_if_modified(|s| {
            let changed = *s != stage;
            *s = stage;
            changed
        });
        if let Some(next) = st.stack.poll_timeout() {
            if next < self.inner.timer_target.load(Ordering::Acquire) {
                self.inner.timer_target.store(next, Ordering::Release);
                self.inner.timer_wake.notify_one();
            }
        }
        b
    }

    fn carry_out(&self, st: &mut State, now: u64, o: Output, b: &mut Batch) {
        match o {
            Output::Read {
                region,
                offset,
                len,
            } => {
                if let Some(t) = st.disks.get(&region) {
                    t.submit(IoRequest::Read { offset, len });
                }
            }
            Output::Write {
                region,
                offset,
                data,
            } => {
                if let Some(t) = st.disks.get(&region) {
                    t.submit(IoRequest::Write { offset, data });
                }
            }
            Output::Connect {
                conn,
                local,
                remote,
                ..
            } => {
                st.conns.insert(conn, Arc::new(ConnIo::new(None)));
                b.connect.push((conn, local, remote));
            }
            Output::Transmit { conn, data } => {
                if let Some(io) = st.conns.get(&conn) {
                    io.append(&data);
                    if !b.flush.iter().any(|f| Arc::ptr_eq(f, io)) {
                        b.flush.push(io.clone());
                    }
                }
            }
            Output::Close { conn } => {
                if let Some(io) = st.conns.remove(&conn) {
                    close_io(&io);
                }
            }
            Output::Event(e) => self.on_event(st, now, e),
            Output::Log(l) => self.log(st, l),
            Output::Fence(reason) => self.fence_now(st, reason, b),
        }
    }

    fn log(&self, st: &mut State, l: crate::types::Log) {
        let node = self.inner.node;
        match l.level {
            Level::Error => tracing::error!(node, "{}", l.message),
            Level::Warn => tracing::warn!(node, "{}", l.message),
            Level::Info => tracing::info!(node, "{}", l.message),
            Level::Debug => tracing::debug!(node, "{}", l.message),
        }
        if l.level != Level::Debug {
            if st.log.len() == LOG_RING {
                st.log.pop_front();
            }
            st.log.push_back(l.message);
        }
    }

    /// The fence action: exiting happens here and now, under the lock, so that nothing of
    /// this node reaches anyone after the decision.
    fn fence_now(&self, st: &mut State, reason: FenceReason, b: &mut Batch) {
        let node = self.inner.node;
        tracing::error!(node, "fencing this node: {reason}");
        if let FenceAction::Exit = self.inner.fence {
            std::process::exit(FENCE_EXIT_STATUS);
        }
        st.starting.clear();
        st.stopping.clear();
        st.dlm.fail_all();
        st.apps.clear();
        for (_, io) in st.conns.drain() {
            close_io(&io);
        }
        b.flush.clear();
        b.connect.clear();
        b.fence = Some(reason);
    }

    /// Carries out a batch after the lock is released.
    fn execute(&self, b: Batch) {
        for (conn, from, remote) in b.connect {
            let me = self.clone();
            self.spawn(async move { me.connect(conn, from, remote).await });
        }
        for io in &b.flush {
            sockio::flush_now(io, false);
        }
        if b.fence.is_some() {
            match &self.inner.fence {
                FenceAction::Exit => std::process::exit(FENCE_EXIT_STATUS),
                FenceAction::Command(cmd) => {
                    let node = self.inner.node;
                    let cmd = cmd.clone();
                    std::thread::spawn(move || {
                        tracing::error!(node, command = %cmd, "fencing: running the fence command");
                        match std::process::Command::new("/bin/sh")
                            .arg("-c")
                            .arg(&cmd)
                            .status()
                        {
                            Ok(s) => tracing::error!(node, status = %s, "fence command finished"),
                            Err(e) => tracing::error!(node, "fence command could not run: {e}"),
                        }
                    });
                }
                FenceAction::Callback(f) => f(),
            }
        }
    }

    fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        if !self.inner.running.load(Ordering::Acquire) {
            return;
        }
        let h = self.inner.runtime.spawn(fut).abort_handle();
        let mut tasks = self.inner.tasks.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.push(h);
    }

    // ----- tasks -----------------------------------------------------------------------------

    async fn accept_loop(self, listener: tokio::net::TcpListener) {
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(node = self.inner.node, "o2net: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let std::net::SocketAddr::V4(from) = from else {
                continue;
            };
            sockio::accepted(&stream);
            let stream = Arc::new(stream);
            let me = self.clone();
            self.with_state(|st, now| {
                let conn = st.stack.new_conn_id();
                // Registered before the stack runs so that the handshake it transmits finds
                // the socket; a refusal closes it again.
                st.conns
                    .insert(conn, Arc::new(ConnIo::new(Some(stream.clone()))));
                st.stack.handle(now, Input::Accepted { conn, from });
                if st.conns.contains_key(&conn) {
                    let s = stream.clone();
                    self.spawn(async move { me.read_loop(conn, s).await });
                }
            });
        }
    }

    async fn connect(self, conn: ConnId, from: SocketAddrV4, remote: SocketAddrV4) {
        let Some(io) = self.inner.state.lock().conns.get(&conn).cloned() else {
            return;
        };
        // A connect the stack gave up on (connect expiry, node down) must not linger
        // through the kernel's SYN retries.
        let result = tokio::select! {
            r = sockio::connect_socket(from, remote) => r,
            _ = io.closed.notified() => return,
        };
        match result {
            Ok(stream) => {
                let stream = Arc::new(stream);
                if !io.connected(stream.clone()) {
                    return;
                }
                self.feed(Input::ConnectDone { conn });
                self.read_loop(conn, stream).await;
            }
            Err(e) => {
                let errno = -e.raw_os_error().unwrap_or(5);
                self.feed(Input::ConnectFailed { conn, errno });
            }
        }
    }

    async fn read_loop(self, conn: ConnId, stream: Arc<TcpStream>) {
        let io = self.inner.state.lock().conns.get(&conn).cloned();
        if let Some(io) = io {
            self.spawn(sockio::flusher(io, stream.clone()));
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match sockio::read_some(&stream, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => self.feed(Input::Received {
                    conn,
                    data: buf.get(..n).unwrap_or_default(),
                }),
            }
        }
        self.feed(Input::Closed { conn });
    }

    async fn timer_loop(self) {
        loop {
            let next = self.inner.state.lock().stack.poll_timeout();
            let target = next.unwrap_or(u64::MAX);
            self.inner.timer_target.store(target, Ordering::Release);
            let wake = self.inner.timer_wake.notified();
            if target != u64::MAX {
                let at = self.inner.start + Duration::from_millis(target);
                tokio::select! {
                    _ = wake => continue,
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
            } else {
                wake.await;
                continue;
            }
            self.feed(Input::Tick);
        }
    }
}

/// The I/O thread of a region: its completions feed the stack.
fn spawn_io(
    weak: Weak<Inner>,
    node: u8,
    region: RegionId,
    io: Box<dyn o2hb::disk::BlockIo>,
) -> std::io::Result<IoThread> {
    IoThread::spawn(format!("o2hb-io-{region}"), io, move |done| {
        let Some(inner) = weak.upgrade() else {
            return false;
        };
        let n = Node { inner };
        match done {
            IoDone::Read(result) => {
                if let Err(e) = &result {
                    tracing::error!(node, region, "heartbeat read failed: {e}");
                }
                let text = result.as_ref().map_err(|e| e.to_string());
                let result = match &text {
                    Ok(bytes) => Ok(bytes.as_slice()),
                    Err(e) => Err(e.clone()),
                };
                n.feed(Input::ReadDone { region, result });
            }
            IoDone::Write(result) => {
                let result = result.map_err(|e| e.to_string());
                n.feed(Input::WriteDone { region, result });
            }
        }
        true
    })
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("node", &self.inner.node)
            .finish()
    }
}
