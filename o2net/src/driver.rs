//! The tokio driver: sockets, clock and tasks around one [`NetCore`].
//!
//! One listener task, one reader task per connection, one timer task. The
//! core sits behind a mutex; whichever task has an event (a read, a send, a
//! timer) runs the core and carries its outputs out itself, so a request
//! costs no extra task hop: the sender writes its bytes, the peer's reader
//! runs the handler and writes the reply, our reader completes the sender.
//! Bytes for a connection are appended to its write buffer while the core's
//! lock is held (keeping the core's order) and written after it is released;
//! a per-connection flusher task takes over when the socket is full. What a
//! handler sends is written with its status reply, in one write.
//! [`Net::send_then`] sends without a task: its callback gets the status.
//!
//! Handlers run on the reader task of the connection the request came in
//! on, one at a time across all peers (the kernel's ordered work queue), so
//! they must not wait for network replies and must be quick: a handler that
//! blocks holds up that connection and a tokio worker thread, as a kernel
//! handler holds up the o2net work queue. (Running each handler through
//! `block_in_place` would lift this but cost 2-3 µs per message: about 1.5x
//! the raw round trip instead of 1.2x.)

use std::collections::VecDeque;
use std::io::IoSlice;
use std::net::SocketAddrV4;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};
use tokio::task::AbortHandle;

use crate::core::{
    ConnId, Counters, Input, LogLevel, NetConfig, NetCore, NodeInfo, Output, PeerStats, SendId,
};
use crate::error::{errno, NetError};
use crate::fasthash::FastMap;
use crate::quorum::NodeSet;
use crate::sockio::{self, close_io, connect_socket, listen, ConnIo};
use crate::wire::MsgHeader;

/// Outstanding sends above which writes are left to the flusher task.
const DEFER_FLUSH_ABOVE: usize = 8;
/// How many log lines [`Net::recent_log`] keeps.
const LOG_RING: usize = 256;

thread_local! {
    /// While a handler runs on this thread: the connections its sends wrote to, flushed
    /// with the handler's status reply (one write for a reply and what the handler sent, as
    /// o2dlm's proxy AST with its CREATE_LOCK status) instead of one write each.
    static HELD: std::cell::RefCell<Option<Vec<Arc<ConnIo>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Adds `io` to `list` unless it is there.
fn add_conn(list: &mut Vec<Arc<ConnIo>>, io: Arc<ConnIo>) {
    if !list.iter().any(|f| Arc::ptr_eq(f, &io)) {
        list.push(io);
    }
}

/// A request as a handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The sending node.
    pub node: u8,
    /// The request header (type, key, msg_num, data_len).
    pub header: MsgHeader,
    /// `data_len` payload bytes.
    pub payload: Bytes,
}

/// Work a handler leaves to run after its status reply is on the wire (the
/// kernel's post-handler, which gets the handler's status).
pub type PostHandler = Box<dyn FnOnce(i32) + Send>;

type HandlerFn = dyn Fn(&Request) -> (i32, Option<PostHandler>) + Send + Sync;
type Handler = Arc<HandlerFn>;

/// Told a send's outcome by [`Net::send_then`]: the peer handler's status or the failure.
pub type SendDone = Box<dyn FnOnce(Result<i32, NetError>) + Send>;

/// Who waits for a send's status.
enum Waiter {
    /// An awaiting [`Net::send`].
    Task(oneshot::Sender<Result<i32, NetError>>),
    /// A [`Net::send_then`] callback, called after the state lock is released.
    Call(SendDone),
}

impl Waiter {
    /// Hands `result` to a waiting task now, or returns the callback to call with it.
    fn complete(self, result: Result<i32, NetError>) -> Option<(SendDone, Result<i32, NetError>)> {
        match self {
            Waiter::Task(tx) => {
                let _ = tx.send(result);
                None
            }
            Waiter::Call(done) => Some((done, result)),
        }
    }
}

/// Called with the kernel's reason when quorum is lost. The daemon maps it
/// onto the configured fence method (reset, panic, or a userspace action).
pub type FenceFn = Arc<dyn Fn(&str) + Send + Sync>;

struct State {
    core: NetCore<Handler>,
    waiters: FastMap<SendId, Waiter>,
    conns: FastMap<ConnId, Arc<ConnIo>>,
    log: VecDeque<String>,
}

struct Inner {
    local: u8,
    state: Mutex<State>,
    /// Serializes handlers across peers.
    handler_lock: Mutex<()>,
    start: Instant,
    timer_wake: Notify,
    /// The instant (ms) the timer task sleeps until.
    timer_target: AtomicU64,
    next_send: AtomicU64,
    running: AtomicBool,
    fence: FenceFn,
    tasks: Mutex<Vec<AbortHandle>>,
    /// The runtime `start` ran on: tasks go there whichever thread (an
    /// o2hb disk thread, say) feeds an event.
    runtime: tokio::runtime::Handle,
}

/// A running o2net node: cheap to clone, every clone drives the same node.
/// The node runs until [`Net::shutdown`] (or its runtime ends): dropping the
/// handles does not stop it, since its tasks hold handles of their own.
#[derive(Clone)]
pub struct Net {
    inner: Arc<Inner>,
}

/// Effects collected under the state lock, carried out after it.
#[derive(Default)]
struct Batch {
    flush: Vec<Arc<ConnIo>>,
    deliver: Vec<(ConnId, u8, MsgHeader, Bytes, Handler)>,
    connect: Vec<(ConnId, SocketAddrV4, SocketAddrV4)>,
    fence: Vec<String>,
    /// [`Net::send_then`] callbacks whose status came.
    done: Vec<(SendDone, Result<i32, NetError>)>,
    /// Many sends outstanding: leave writing to the flusher task so that
    /// the requests of all runnable senders go out in one write.
    defer: bool,
}

impl Net {
    /// Binds `cfg`'s local address (SO_REUSEADDR, backlog 64) and starts the
    /// listener and timer tasks on the current tokio runtime (it must be
    /// called from within one; the other methods may be called from any
    /// thread). Peers are contacted once [`Net::heartbeat_up`] reports them.
    pub fn start(cfg: NetConfig, fence: FenceFn) -> Result<Net, NetError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            NetError::Config("o2net must be started from within a tokio runtime".into())
        })?;
        let core: NetCore<Handler> = NetCore::new(cfg)?;
        let local = core.config().local;
        let addr = core
            .config()
            .nodes
            .iter()
            .find(|n| n.num == local)
            .map(|n| n.addr)
            .ok_or_else(|| NetError::Config(format!("local node {local} missing")))?;
        let listener = listen(addr).map_err(|source| NetError::Io {
            what: format!("node {local}: listening on {addr}"),
            err: source,
        })?;
        let net = Net {
            inner: Arc::new(Inner {
                local,
                state: Mutex::new(State {
                    core,
                    waiters: FastMap::default(),
                    conns: FastMap::default(),
                    log: VecDeque::new(),
                }),
                handler_lock: Mutex::new(()),
                start: Instant::now(),
                timer_wake: Notify::new(),
                timer_target: AtomicU64::new(u64::MAX),
                next_send: AtomicU64::new(1),
                running: AtomicBool::new(true),
                fence,
                tasks: Mutex::new(Vec::new()),
                runtime,
            }),
        };
        tracing::info!(node = local, "o2net: listening on {addr}");
        let n = net.clone();
        net.spawn(async move { n.accept_loop(listener).await });
        let n = net.clone();
        net.spawn(async move { n.timer_loop().await });
        Ok(net)
    }

    /// This node's number.
    pub fn local_node(&self) -> u8 {
        self.inner.local
    }

    /// o2hb reports `node` heartbeating (call it for this node too).
    pub fn heartbeat_up(&self, node: u8) {
        self.run(Input::HeartbeatUp(node));
    }

    /// o2hb reports `node` dead: its connection closes and its senders fail.
    pub fn heartbeat_down(&self, node: u8) {
        self.run(Input::HeartbeatDown(node));
    }

    /// `o2net_register_handler`: `handler` answers requests of
    /// (msg_type, key) with at most `max_len` payload bytes; its return value
    /// is the status the sender receives.
    pub fn register_handler<F>(
        &self,
        msg_type: u16,
        key: u32,
        max_len: u32,
        handler: F,
    ) -> Result<(), NetError>
    where
        F: Fn(&Request) -> i32 + Send + Sync + 'static,
    {
        self.register_handler_with_post(msg_type, key, max_len, move |r| (handler(r), None))
    }

    /// Like [`Net::register_handler`], with a post-handler returned by the
    /// handler and run once the status reply has been written.
    pub fn register_handler_with_post<F>(
        &self,
        msg_type: u16,
        key: u32,
        max_len: u32,
        handler: F,
    ) -> Result<(), NetError>
    where
        F: Fn(&Request) -> (i32, Option<PostHandler>) + Send + Sync + 'static,
    {
        let h: Handler = Arc::new(handler);
        self.inner
            .state
            .lock()
            .core
            .register_handler(msg_type, key, max_len, h)
    }

    /// Removes a handler; true if it was registered.
    pub fn unregister_handler(&self, msg_type: u16, key: u32) -> bool {
        self.inner
            .state
            .lock()
            .core
            .unregister_handler(msg_type, key)
    }

    /// `o2net_send_message`: sends and waits for the peer handler's status.
    /// Waits while a connection is being set up; fails with −ENOTCONN when
    /// there is none for good, −EHOSTDOWN when it dies before the reply.
    pub async fn send(
        &self,
        node: u8,
        msg_type: u16,
        key: u32,
        payload: impl Into<Bytes>,
    ) -> Result<i32, NetError> {
        let (tx, rx) = oneshot::channel();
        let Ok(id) = self.start_send(node, msg_type, key, payload.into(), Waiter::Task(tx)) else {
            return Err(NetError::NotRunning);
        };
        let mut guard = AbandonOnDrop {
            net: self,
            id,
            armed: true,
        };
        let r = rx.await.unwrap_or(Err(NetError::NotRunning));
        guard.armed = false;
        r
    }

    /// Like [`Net::send`], without a task: the bytes are written before this returns (unless
    /// the connection is still being set up or the socket is full), and `done` is called
    /// with the status from the task that reads the reply (or with the failure, possibly
    /// before this returns). `done` runs where handlers run, so it must be as quick and must
    /// not block. Saves a task, its spawn and its wake-up per message (the o2dlm driver's
    /// sends: their status only feeds the domain core).
    pub fn send_then(
        &self,
        node: u8,
        msg_type: u16,
        key: u32,
        payload: impl Into<Bytes>,
        done: impl FnOnce(Result<i32, NetError>) + Send + 'static,
    ) {
        let waiter = Waiter::Call(Box::new(done));
        if let Err(waiter) = self.start_send(node, msg_type, key, payload.into(), waiter) {
            if let Some((done, result)) = waiter.complete(Err(NetError::NotRunning)) {
                done(result);
            }
        }
    }

    /// Registers `waiter` for a new send and hands the send to the core (which writes it
    /// out or queues it); a stopped node hands the waiter back.
    fn start_send(
        &self,
        node: u8,
        msg_type: u16,
        key: u32,
        payload: Bytes,
        waiter: Waiter,
    ) -> Result<SendId, Waiter> {
        let id = self.inner.next_send.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = self.inner.state.lock();
            if !self.inner.running.load(Ordering::Acquire) {
                return Err(waiter);
            }
            st.waiters.insert(id, waiter);
        }
        self.run(Input::Send {
            id,
            node,
            msg_type,
            key,
            payload,
        });
        Ok(id)
    }

    /// `o2net_send_message_vec`: the slices are sent as one payload.
    pub async fn send_vectored(
        &self,
        node: u8,
        msg_type: u16,
        key: u32,
        bufs: &[IoSlice<'_>],
    ) -> Result<i32, NetError> {
        if bufs.is_empty() {
            return Err(NetError::EmptyVector {
                node,
                msg_type,
                key,
            });
        }
        let mut payload = BytesMut::with_capacity(bufs.iter().map(|b| b.len()).sum());
        for b in bufs {
            payload.extend_from_slice(b);
        }
        self.send(node, msg_type, key, payload.freeze()).await
    }

    /// A node added to cluster.conf while running; contacted once
    /// heartbeat reports it.
    pub fn add_node(&self, info: NodeInfo) -> Result<(), NetError> {
        self.with_core(|core, _| core.add_node(info))
    }

    /// A node removed from cluster.conf: its connection closes and its
    /// senders fail.
    pub fn remove_node(&self, node: u8) -> Result<(), NetError> {
        self.with_core(|core, now| core.remove_node(now, node))
    }

    /// configfs `idle_timeout_ms`: refused while any peer is connected.
    pub fn set_idle_timeout_ms(&self, ms: u32) -> Result<(), NetError> {
        self.with_core(|core, _| core.set_idle_timeout_ms(ms))
    }

    /// configfs `keepalive_delay_ms`: refused while any peer is connected.
    pub fn set_keepalive_delay_ms(&self, ms: u32) -> Result<(), NetError> {
        self.with_core(|core, _| core.set_keepalive_delay_ms(ms))
    }

    /// configfs `reconnect_delay_ms`: may change at any time.
    pub fn set_reconnect_delay_ms(&self, ms: u32) -> Result<(), NetError> {
        self.with_core(|core, _| core.set_reconnect_delay_ms(ms))
    }

    /// One row per configured peer: state, traffic, last keepalive.
    pub fn peer_stats(&self) -> Vec<PeerStats> {
        self.inner.state.lock().core.peer_stats()
    }

    /// Refused and broken connections since start.
    pub fn counters(&self) -> Counters {
        self.inner.state.lock().core.counters()
    }

    /// Nodes with a valid connection, this node included.
    pub fn connected_nodes(&self) -> NodeSet {
        self.inner.state.lock().core.connected_nodes()
    }

    /// Nodes o2hb reports heartbeating.
    pub fn heartbeating_nodes(&self) -> NodeSet {
        self.inner.state.lock().core.quorum().heartbeating()
    }

    /// Milliseconds since start: the time base of [`PeerStats`] timestamps.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The last log lines (kernel wording), oldest first.
    pub fn recent_log(&self) -> Vec<String> {
        self.inner.state.lock().log.iter().cloned().collect()
    }

    /// Stops the node: closes the listener and every connection (peers see
    /// them drop), and fails this node's waiting senders with −ESRCH.
    pub fn shutdown(&self) {
        self.inner.running.store(false, Ordering::Release);
        for t in self.inner.tasks.lock().drain(..) {
            t.abort();
        }
        let (conns, waiters) = {
            let mut st = self.inner.state.lock();
            let conns: Vec<Arc<ConnIo>> = st.conns.drain().map(|(_, c)| c).collect();
            let waiters: Vec<_> = st.waiters.drain().map(|(_, w)| w).collect();
            (conns, waiters)
        };
        for c in conns {
            close_io(&c);
        }
        for w in waiters {
            if let Some((done, result)) = w.complete(Err(NetError::NotRunning)) {
                done(result);
            }
        }
    }

    // ----- internals -----------------------------------------------------

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

    /// Runs the core on one input and carries out its outputs.
    fn run(&self, input: Input<'_>) {
        self.with_core(|core, now| core.handle(now, input));
    }

    /// Calls `f` on the core at the current time, then carries out the
    /// outputs it left.
    fn with_core<R>(&self, f: impl FnOnce(&mut NetCore<Handler>, u64) -> R) -> R {
        let (r, batch) = {
            let mut st = self.inner.state.lock();
            let now = self.now_ms();
            let r = f(&mut st.core, now);
            (r, self.drain(&mut st))
        };
        self.execute(batch);
        r
    }

    /// Takes the core's outputs; must be called with the state lock held.
    fn drain(&self, st: &mut State) -> Batch {
        let local = self.inner.local;
        let mut b = Batch::default();
        while let Some(out) = st.core.poll_output() {
            match out {
                Output::Transmit { conn, data } => {
                    if let Some(io) = st.conns.get(&conn) {
                        io.append(&data);
                        add_conn(&mut b.flush, io.clone());
                    }
                }
                Output::Close { conn } => {
                    if let Some(io) = st.conns.remove(&conn) {
                        close_io(&io);
                    }
                }
                Output::Connect {
                    conn,
                    local: from,
                    remote,
                    ..
                } => {
                    st.conns.insert(conn, Arc::new(ConnIo::new(None)));
                    b.connect.push((conn, from, remote));
                }
                Output::Deliver {
                    conn,
                    node,
                    header,
                    payload,
                    handler,
                } => b.deliver.push((conn, node, header, payload, handler)),
                Output::SendDone { id, result } => {
                    if let Some(w) = st.waiters.remove(&id) {
                        b.done.extend(w.complete(result));
                    }
                }
                Output::Fence { reason } => b.fence.push(reason),
                Output::Log { level, message } => {
                    match level {
                        LogLevel::Error => tracing::error!(node = local, "{message}"),
                        LogLevel::Notice | LogLevel::Info => {
                            tracing::info!(node = local, "{message}")
                        }
                        LogLevel::Debug => tracing::debug!(node = local, "{message}"),
                    }
                    if level != LogLevel::Debug {
                        if st.log.len() == LOG_RING {
                            st.log.pop_front();
                        }
                        st.log.push_back(message);
                    }
                }
            }
        }
        b.defer = st.waiters.len() > DEFER_FLUSH_ABOVE;
        if let Some(next) = st.core.next_timeout() {
            if next < self.inner.timer_target.load(Ordering::Acquire) {
                self.inner.timer_target.store(next, Ordering::Release);
                self.inner.timer_wake.notify_one();
            }
        }
        b
    }

    /// Carries out a batch. Handlers run first; every connection touched
    /// is flushed once at the end, so a read holding many requests costs
    /// one write for all their replies.
    fn execute(&self, b: Batch) {
        let Batch {
            flush: mut to_flush,
            deliver,
            connect,
            mut fence,
            done,
            defer,
        } = b;
        for (conn, from, remote) in connect {
            let n = self.clone();
            self.spawn(async move { n.connect(conn, from, remote).await });
        }
        for (conn, node, header, payload, handler) in deliver {
            let req = Request {
                node,
                header,
                payload,
            };
            let (status, post) = {
                let _serial = self.inner.handler_lock.lock();
                let outer = HELD.with(|h| h.borrow_mut().replace(Vec::new()));
                // A panicking handler must not take the connection's reader
                // down with it: the sender gets −EIO instead.
                let r = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(&req))) {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::error!(
                            node = self.inner.local,
                            "o2net: handler for message type {} key {:#010x} from node {node} panicked",
                            header.msg_type,
                            header.key
                        );
                        (-errno::EIO, None)
                    }
                };
                let held = HELD.with(|h| std::mem::replace(&mut *h.borrow_mut(), outer));
                for io in held.unwrap_or_default() {
                    add_conn(&mut to_flush, io);
                }
                r
            };
            let mut sub = {
                let mut st = self.inner.state.lock();
                let now = self.now_ms();
                st.core.handle(
                    now,
                    Input::HandlerDone {
                        conn,
                        request: header,
                        status,
                    },
                );
                self.drain(&mut st)
            };
            for io in sub.flush.drain(..) {
                add_conn(&mut to_flush, io);
            }
            fence.append(&mut sub.fence);
            self.execute(sub);
            if let Some(post) = post {
                let _serial = self.inner.handler_lock.lock();
                if std::panic::catch_unwind(AssertUnwindSafe(move || post(status))).is_err() {
                    tracing::error!(
                        node = self.inner.local,
                        "o2net: post-handler for message type {} from node {node} panicked",
                        header.msg_type
                    );
                }
            }
        }
        for io in &to_flush {
            flush(io, defer);
        }
        // After the flush: a callback may send again, and replies go first.
        for (done, result) in done {
            if std::panic::catch_unwind(AssertUnwindSafe(move || done(result))).is_err() {
                tracing::error!(node = self.inner.local, "o2net: a send's callback panicked");
            }
        }
        for reason in fence {
            (self.inner.fence)(&reason);
        }
    }

    async fn accept_loop(self, listener: TcpListener) {
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(node = self.inner.local, "o2net: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let std::net::SocketAddr::V4(from) = from else {
                continue;
            };
            sockio::accepted(&stream);
            let stream = Arc::new(stream);
            let batch = {
                let mut st = self.inner.state.lock();
                let conn = st.core.new_conn_id();
                // Registered before the core runs so that the handshake it
                // transmits finds the socket; a refusal closes it again.
                st.conns
                    .insert(conn, Arc::new(ConnIo::new(Some(stream.clone()))));
                let now = self.now_ms();
                st.core.handle(now, Input::Accepted { conn, from });
                let accepted = st.conns.contains_key(&conn);
                if accepted {
                    let n = self.clone();
                    let s = stream.clone();
                    self.spawn(async move { n.read_loop(conn, s).await });
                }
                self.drain(&mut st)
            };
            self.execute(batch);
        }
    }

    async fn connect(self, conn: ConnId, from: SocketAddrV4, remote: SocketAddrV4) {
        let Some(io) = self.inner.state.lock().conns.get(&conn).cloned() else {
            return;
        };
        // A connect the core gave up on (connect expiry, node down) must not
        // linger through the kernel's SYN retries.
        let result = tokio::select! {
            r = connect_socket(from, remote) => r,
            _ = io.closed.notified() => return,
        };
        match result {
            Ok(stream) => {
                let stream = Arc::new(stream);
                if !io.connected(stream.clone()) {
                    return;
                }
                self.run(Input::ConnectDone { conn });
                self.read_loop(conn, stream).await;
            }
            Err(e) => {
                let errno = -e.raw_os_error().unwrap_or(errno::EIO);
                self.run(Input::ConnectFailed { conn, errno });
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
                Ok(n) => self.run(Input::Received {
                    conn,
                    data: buf.get(..n).unwrap_or_default(),
                }),
            }
        }
        self.run(Input::Closed { conn });
    }

    async fn timer_loop(self) {
        loop {
            let next = self.inner.state.lock().core.next_timeout();
            let target = next.unwrap_or(u64::MAX);
            self.inner.timer_target.store(target, Ordering::Release);
            let wake = self.inner.timer_wake.notified();
            if target == u64::MAX {
                wake.await;
                continue;
            }
            let at = self.inner.start + Duration::from_millis(target);
            tokio::select! {
                _ = wake => continue,
                _ = tokio::time::sleep_until(at.into()) => {}
            }
            self.run(Input::Timeout);
        }
    }
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("local", &self.inner.local)
            .finish()
    }
}

struct AbandonOnDrop<'a> {
    net: &'a Net,
    id: SendId,
    armed: bool,
}

impl Drop for AbandonOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.net.inner.state.lock().waiters.remove(&self.id);
            self.net.run(Input::Abandon { id: self.id });
        }
    }
}

/// Writes the buffer now (see [`sockio::flush_now`]); inside a handler, leaves it to the
/// handler's reply flush.
fn flush(io: &Arc<ConnIo>, defer: bool) {
    let held = HELD.with(|h| match h.borrow_mut().as_mut() {
        Some(list) => {
            add_conn(list, io.clone());
            true
        }
        None => false,
    });
    if !held {
        sockio::flush_now(io, defer);
    }
}
