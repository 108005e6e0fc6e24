//! The sans-I/O o2net core: per-peer connection state (docs/o2net.md §5-6),
//! handshake checks, framing, keepalive and idle timers, request/reply
//! matching, handler dispatch decisions and quorum (o2quo), for one node.
//!
//! It does no I/O and reads no clock. A driver (the tokio one in
//! [`crate::driver`], or the deterministic simulator) calls
//! [`NetCore::handle`] with the current virtual time in milliseconds and an
//! [`Input`], then drains [`NetCore::poll_output`] and carries each
//! [`Output`] out, and calls `handle(now, Input::Timeout)` once
//! [`NetCore::next_timeout`] is reached.
//!
//! The core consumes **raw TCP bytes** ([`Input::Received`]) and produces raw
//! bytes ([`Output::Transmit`]): framing, the handshake and the kernel's
//! reactions to malformed streams are part of what a simulator exercises.
//! Connection ids ([`ConnId`]) name one TCP connection each: the core picks
//! them for outgoing connections ([`Output::Connect`]); a driver that accepts
//! a connection takes one from [`NetCore::new_conn_id`]. Send ids
//! ([`SendId`]) are chosen by the caller and must be unique among
//! outstanding sends.
//!
//! Handlers are registered with an opaque token `H` (the driver stores its
//! closure there); a request for a registered (type, key) comes out as
//! [`Output::Deliver`] and the driver answers with [`Input::HandlerDone`].

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::NetError;
use crate::fasthash::FastMap;
use crate::quorum::{Decision, NodeSet, Quorum};
use crate::timers::Timers;
use crate::wire::{
    Frame, FrameError, Handshake, Magic, MsgHeader, StreamDecoder, SysStatus, CONNECTOR_ID,
    HEADER_LEN, MAX_PAYLOAD, PROTOCOL_VERSION,
};

/// One TCP connection, as named between a core and its driver.
pub type ConnId = u64;
/// One send request, as named by its caller.
pub type SendId = u64;

/// A configured node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub num: u8,
    pub name: String,
    /// `ipv4_address:ipv4_port` from cluster.conf.
    pub addr: SocketAddrV4,
}

/// What o2net needs from the cluster configuration. Plain values so that the
/// daemon can map them from o2nm and tests can shorten them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// This node's number.
    pub local: u8,
    /// Every configured node, this one included.
    pub nodes: Vec<NodeInfo>,
    pub idle_timeout_ms: u32,
    pub keepalive_delay_ms: u32,
    pub reconnect_delay_ms: u32,
    /// `O2HB_MAX_WRITE_TIMEOUT_MS`, sent and checked in the handshake.
    pub heartbeat_timeout_ms: u32,
    /// `O2NET_QUORUM_DELAY_MS`: wait after a connection loss before quorum decides.
    pub quorum_delay_ms: u32,
}

/// Kernel default `dead_threshold`.
pub const DEFAULT_DEAD_THRESHOLD: u32 = 31;
/// Kernel heartbeat period (`O2HB_REGION_TIMEOUT_MS`).
pub const DEFAULT_HB_PERIOD_MS: u32 = 2000;

impl NetConfig {
    /// The kernel's defaults: idle 30000, keepalive 2000, reconnect 2000,
    /// heartbeat period 2000 ms with dead threshold 31.
    pub fn new(local: u8, nodes: Vec<NodeInfo>) -> NetConfig {
        NetConfig {
            local,
            nodes,
            idle_timeout_ms: 30000,
            keepalive_delay_ms: 2000,
            reconnect_delay_ms: 2000,
            heartbeat_timeout_ms: 0,
            quorum_delay_ms: 0,
        }
        .with_heartbeat(DEFAULT_HB_PERIOD_MS, DEFAULT_DEAD_THRESHOLD)
    }

    /// A cluster of `count` nodes on loopback for tests and benchmarks:
    /// node N is `nodeN` at 127.0.0.N:`port`, with the kernel's defaults.
    pub fn loopback(local: u8, count: u8, port: u16) -> NetConfig {
        let nodes = (1..=count)
            .map(|n| NodeInfo {
                num: n,
                name: format!("node{n}"),
                addr: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, n), port),
            })
            .collect();
        NetConfig::new(local, nodes)
    }

    /// Derives the heartbeat-dependent values as the kernel does:
    /// handshake timeout = period × (T − 1), quorum delay = period × (T + 2).
    /// `period_ms` is 2000 in the kernel; tests shorten it.
    pub fn with_heartbeat(mut self, period_ms: u32, dead_threshold: u32) -> NetConfig {
        self.heartbeat_timeout_ms = period_ms.saturating_mul(dead_threshold.saturating_sub(1));
        self.quorum_delay_ms = period_ms.saturating_mul(dead_threshold.saturating_add(2));
        self
    }

    /// The o2net view of o2nm's running cluster: its nodes, its local node,
    /// its timeouts, and the heartbeat-derived handshake timeout and quorum
    /// delay.
    pub fn from_cluster(cluster: &o2nm::Cluster) -> Result<NetConfig, NetError> {
        let local = cluster.local_node().ok_or_else(|| {
            NetError::Config(format!("cluster {}: no local node", cluster.name()))
        })?;
        let t = cluster.timeouts();
        let cfg = NetConfig {
            local: local.num,
            nodes: cluster
                .nodes()
                .map(|n| NodeInfo {
                    num: n.num,
                    name: n.name.clone(),
                    addr: SocketAddrV4::new(n.addr, n.port),
                })
                .collect(),
            idle_timeout_ms: t.idle_timeout_ms,
            keepalive_delay_ms: t.keepalive_delay_ms,
            reconnect_delay_ms: t.reconnect_delay_ms,
            heartbeat_timeout_ms: u32::try_from(t.hb_write_timeout_ms()).unwrap_or(u32::MAX),
            quorum_delay_ms: u32::try_from(t.quorum_delay_ms()).unwrap_or(u32::MAX),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what the kernel's configfs checks, and that the local node exists.
    pub fn validate(&self) -> Result<(), NetError> {
        check_timeout("idle_timeout_ms", self.idle_timeout_ms)?;
        check_timeout("keepalive_delay_ms", self.keepalive_delay_ms)?;
        check_timeout("reconnect_delay_ms", self.reconnect_delay_ms)?;
        if self.keepalive_delay_ms >= self.idle_timeout_ms {
            return Err(NetError::Config(format!(
                "keepalive_delay_ms {} must be below idle_timeout_ms {}",
                self.keepalive_delay_ms, self.idle_timeout_ms
            )));
        }
        if self.local == 255 {
            return Err(NetError::Config("no local node number".into()));
        }
        let mut seen = NodeSet::new();
        for n in &self.nodes {
            if n.num == 255 || !seen.insert(n.num) {
                return Err(NetError::Config(format!(
                    "node {} ({}) is out of range or configured twice",
                    n.num, n.name
                )));
            }
        }
        if !seen.contains(self.local) {
            return Err(NetError::Config(format!(
                "local node {} is not among the configured nodes",
                self.local
            )));
        }
        Ok(())
    }

    fn handshake(&self) -> Handshake {
        Handshake {
            protocol_version: PROTOCOL_VERSION,
            connector_id: CONNECTOR_ID,
            heartbeat_timeout_ms: self.heartbeat_timeout_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            keepalive_delay_ms: self.keepalive_delay_ms,
            reconnect_delay_ms: self.reconnect_delay_ms,
        }
    }
}

/// configfs's range for the three o2net timeouts.
fn check_timeout(name: &str, v: u32) -> Result<(), NetError> {
    if v == 0 || v == u32::MAX {
        return Err(NetError::Config(format!(
            "{name} = {v}: must be at least 1 and below 4294967295"
        )));
    }
    Ok(())
}

/// An event for the core.
#[derive(Debug)]
pub enum Input<'a> {
    /// o2hb: the node started heartbeating (this node included).
    HeartbeatUp(u8),
    /// o2hb: the node is dead in every region.
    HeartbeatDown(u8),
    /// A connection was accepted on the listening socket; `conn` comes from
    /// [`NetCore::new_conn_id`]. The core answers with the handshake or a
    /// [`Output::Close`].
    Accepted { conn: ConnId, from: SocketAddrV4 },
    /// An [`Output::Connect`] reached ESTABLISHED.
    ConnectDone { conn: ConnId },
    /// An [`Output::Connect`] failed.
    ConnectFailed { conn: ConnId, errno: i32 },
    /// Bytes read from a connection, in order.
    Received { conn: ConnId, data: &'a [u8] },
    /// The connection hit EOF or an error, or the driver closed it.
    Closed { conn: ConnId },
    /// [`NetCore::next_timeout`] was reached.
    Timeout,
    /// Send a request and report the peer handler's status as
    /// [`Output::SendDone`]. Waits (inside the core) for a valid connection.
    Send {
        id: SendId,
        node: u8,
        msg_type: u16,
        key: u32,
        payload: Bytes,
    },
    /// The caller of a send no longer waits; no [`Output::SendDone`] follows.
    Abandon { id: SendId },
    /// A handler delivered by [`Output::Deliver`] returned `status`.
    HandlerDone {
        conn: ConnId,
        request: MsgHeader,
        status: i32,
    },
}

/// Severity of a log line, mapped by the driver onto `tracing` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// KERN_ERR / ML_ERROR.
    Error,
    /// KERN_NOTICE / ML_NOTICE.
    Notice,
    /// KERN_INFO.
    Info,
    /// Debug-only (the kernel's ML_CONN / ML_MSG).
    Debug,
}

/// Something the driver must do.
#[derive(Debug)]
pub enum Output<H> {
    /// Open a TCP connection from `local` (port 0) to `remote`, with
    /// TCP_NODELAY and TCP_USER_TIMEOUT; report [`Input::ConnectDone`] or
    /// [`Input::ConnectFailed`], then feed reads as [`Input::Received`].
    Connect {
        conn: ConnId,
        node: u8,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    },
    /// Write these bytes to the connection, after everything written before.
    Transmit { conn: ConnId, data: Bytes },
    /// Shut the connection down. The core has forgotten it already.
    Close { conn: ConnId },
    /// Run `handler` on this request, then feed [`Input::HandlerDone`].
    /// Handlers run one at a time across all peers (the kernel's ordered
    /// work queue).
    Deliver {
        conn: ConnId,
        node: u8,
        header: MsgHeader,
        payload: Bytes,
        handler: H,
    },
    /// The result of an [`Input::Send`]: the peer handler's status, or why
    /// there is none.
    SendDone {
        id: SendId,
        result: Result<i32, NetError>,
    },
    /// Quorum lost: fence this node with the configured fence action.
    Fence { reason: String },
    /// A log line (the kernel's wording where it has one).
    Log { level: LogLevel, message: String },
}

/// Connection state of a peer as `o2cb` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Not heartbeating, or the connection was lost for good (persistent −ENOTCONN).
    NotConnected,
    /// Waiting for the next connect attempt or for the peer to connect.
    Waiting,
    /// TCP connect in progress (we are the higher node).
    Connecting,
    /// TCP up, handshake not yet received.
    Handshaking,
    /// Handshake done: messages flow.
    Connected,
    /// Connected, but nothing received for idle_timeout_ms.
    Idle,
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerState::NotConnected => "not-connected",
            PeerState::Waiting => "waiting",
            PeerState::Connecting => "connecting",
            PeerState::Handshaking => "handshaking",
            PeerState::Connected => "connected",
            PeerState::Idle => "idle",
        })
    }
}

/// Per-peer counters, cumulative over the peer's connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Requests and status replies (keepalives are counted apart).
    pub msgs_sent: u64,
    pub msgs_received: u64,
    pub keepalives_sent: u64,
    pub keepalives_received: u64,
    /// Virtual time (ms) of the last keepalive request or response received.
    pub last_keepalive_received: Option<u64>,
}

/// One row of `o2cb`'s connection listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    pub node: u8,
    pub name: String,
    pub addr: SocketAddrV4,
    pub state: PeerState,
    /// Whether o2hb reports the node heartbeating.
    pub heartbeating: bool,
    pub traffic: Traffic,
    /// Sends waiting for a connection or for a reply.
    pub waiting_sends: usize,
}

/// Connections refused or closed for cause, since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Accepted from an address that is no configured node.
    pub refused_unknown_address: u64,
    /// Accepted from a node that should be accepting from us.
    pub refused_lower_node: u64,
    /// Accepted from a node not (yet) heartbeating.
    pub refused_not_heartbeating: u64,
    /// Accepted while a connection to that node exists.
    pub refused_busy: u64,
    /// Handshake with another version or other timeouts.
    pub handshake_rejected: u64,
    /// Header with an oversized length or an unknown magic.
    pub framing_errors: u64,
    /// Outgoing connection attempts that failed.
    pub connect_failures: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum TimerKey {
    Connect(u8),
    ConnectExpired(u8),
    StillUp(u8),
    Keepalive(ConnId),
    Idle(ConnId),
}

/// The kernel's per-node `idr`: lowest free id first, ids reused.
#[derive(Debug, Default)]
struct IdAlloc {
    next: u32,
    free: BTreeSet<u32>,
}

impl IdAlloc {
    fn alloc(&mut self) -> u32 {
        if let Some(id) = self.free.pop_first() {
            return id;
        }
        let id = self.next;
        self.next = self.next.wrapping_add(1);
        id
    }

    fn release(&mut self, id: u32) {
        if id.wrapping_add(1) == self.next {
            self.next = id;
            while self
                .free
                .last()
                .is_some_and(|&l| l.wrapping_add(1) == self.next)
            {
                self.free.pop_last();
                self.next = self.next.wrapping_sub(1);
            }
        } else {
            self.free.insert(id);
        }
    }
}

#[derive(Debug)]
struct Waiting {
    id: SendId,
    msg_type: u16,
    key: u32,
    payload: Bytes,
}

#[derive(Debug)]
struct Pending {
    /// `None` once the caller abandoned it: the id stays reserved until the
    /// reply or the connection's death, so a late reply cannot complete a
    /// newer send that reused it.
    id: Option<SendId>,
    msg_type: u16,
    key: u32,
}

#[derive(Debug)]
struct Peer {
    info: NodeInfo,
    sc: Option<ConnId>,
    valid: bool,
    /// `nn_persistent_error`; the only value 6.1 ever stores is −ENOTCONN.
    persistent_error: bool,
    /// `nn_timeout`: the connection idled out once.
    timeout: bool,
    last_connect_attempt: Option<u64>,
    connect_at: Option<u64>,
    connect_expired_at: Option<u64>,
    still_up_at: Option<u64>,
    waiting: VecDeque<Waiting>,
    pending: FastMap<u32, Pending>,
    ids: IdAlloc,
    traffic: Traffic,
}

impl Peer {
    /// A configured peer as o2net starts: persistent −ENOTCONN until
    /// heartbeat sees it.
    fn new(info: NodeInfo) -> Peer {
        Peer {
            info,
            sc: None,
            valid: false,
            persistent_error: true,
            timeout: false,
            last_connect_attempt: None,
            connect_at: None,
            connect_expired_at: None,
            still_up_at: None,
            waiting: VecDeque::new(),
            pending: FastMap::default(),
            ids: IdAlloc::default(),
            traffic: Traffic::default(),
        }
    }
}

#[derive(Debug)]
struct Conn {
    node: u8,
    outgoing: bool,
    established: bool,
    decoder: StreamDecoder,
    handshake_ok: bool,
    keepalive_at: Option<u64>,
    idle_at: Option<u64>,
    /// When the idle timer was last reset, for the idle log line.
    idle_reset_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendWhere {
    Waiting(u8),
    Pending(u8, u32),
}

/// The o2net state of one node. See the module documentation.
#[derive(Debug)]
pub struct NetCore<H> {
    cfg: NetConfig,
    local_name: String,
    local_addr: SocketAddrV4,
    handshake: Bytes,
    peers: FastMap<u8, Peer>,
    by_ip: FastMap<Ipv4Addr, u8>,
    conns: FastMap<ConnId, Conn>,
    sends: FastMap<SendId, SendWhere>,
    handlers: FastMap<(u16, u32), (u32, H)>,
    quorum: Quorum,
    timers: Timers<TimerKey>,
    next_conn: ConnId,
    now: u64,
    counters: Counters,
    out: VecDeque<Output<H>>,
}

fn keepalive_frame(magic: Magic) -> Bytes {
    Bytes::copy_from_slice(&MsgHeader::keepalive(magic).encode())
}

impl<H: Clone> NetCore<H> {
    /// A core for `cfg.local`, as `o2net_start_listening` leaves it: every
    /// peer not connected (persistent −ENOTCONN), self counted connected by
    /// quorum. Heartbeat events start everything else.
    pub fn new(cfg: NetConfig) -> Result<NetCore<H>, NetError> {
        cfg.validate()?;
        let mut peers = FastMap::default();
        let mut by_ip = FastMap::default();
        let mut local = None;
        for n in &cfg.nodes {
            by_ip.entry(*n.addr.ip()).or_insert(n.num);
            if n.num == cfg.local {
                local = Some(n.clone());
                continue;
            }
            peers.insert(n.num, Peer::new(n.clone()));
        }
        let local = local.ok_or_else(|| NetError::Config("local node missing".into()))?;
        Ok(NetCore {
            handshake: Bytes::copy_from_slice(&cfg.handshake().encode()),
            quorum: Quorum::new(cfg.local),
            local_name: local.name,
            local_addr: local.addr,
            cfg,
            peers,
            by_ip,
            conns: FastMap::default(),
            sends: FastMap::default(),
            handlers: FastMap::default(),
            timers: Timers::new(),
            next_conn: 1,
            now: 0,
            counters: Counters::default(),
            out: VecDeque::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// A fresh id for a connection the driver accepted.
    pub fn new_conn_id(&mut self) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        id
    }

    /// `o2net_register_handler`: requests for (msg_type, key) up to
    /// `max_len` payload bytes are delivered with `handler`.
    pub fn register_handler(
        &mut self,
        msg_type: u16,
        key: u32,
        max_len: u32,
        handler: H,
    ) -> Result<(), NetError> {
        if msg_type == 0 || max_len as usize > MAX_PAYLOAD {
            return Err(NetError::InvalidHandler {
                msg_type,
                key,
                max_len,
            });
        }
        if self.handlers.contains_key(&(msg_type, key)) {
            return Err(NetError::HandlerExists { msg_type, key });
        }
        self.handlers.insert((msg_type, key), (max_len, handler));
        Ok(())
    }

    /// Removes a handler; later requests get O2NET_ERR_NO_HNDLR. True if it existed.
    pub fn unregister_handler(&mut self, msg_type: u16, key: u32) -> bool {
        self.handlers.remove(&(msg_type, key)).is_some()
    }

    /// A node added to the configuration while running (configfs mkdir):
    /// not connected until heartbeat sees it.
    pub fn add_node(&mut self, info: NodeInfo) -> Result<(), NetError> {
        if info.num == 255 || info.num == self.cfg.local || self.peers.contains_key(&info.num) {
            return Err(NetError::Config(format!(
                "node {} ({}) is out of range or configured already",
                info.num, info.name
            )));
        }
        self.by_ip.entry(*info.addr.ip()).or_insert(info.num);
        self.cfg.nodes.push(info.clone());
        self.peers.insert(info.num, Peer::new(info));
        Ok(())
    }

    /// A node removed from the configuration (`o2net_disconnect_node`):
    /// its connection closes, its senders fail, its address is unknown from
    /// now on. Quorum is left to heartbeat, as in the kernel.
    pub fn remove_node(&mut self, now: u64, n: u8) -> Result<(), NetError> {
        self.now = self.now.max(now);
        if n == self.cfg.local {
            return Err(NetError::Config(format!(
                "cannot remove the local node {n} while o2net runs"
            )));
        }
        let Some(p) = self.peers.get_mut(&n) else {
            return Err(NetError::Config(format!("node {n} is not configured")));
        };
        p.timeout = false;
        self.set_state(n, None, false, true);
        let Some(p) = self.peers.remove(&n) else {
            return Ok(());
        };
        self.cfg.nodes.retain(|i| i.num != n);
        let ip = *p.info.addr.ip();
        if self.by_ip.get(&ip) == Some(&n) {
            self.by_ip.remove(&ip);
            if let Some(other) = self.cfg.nodes.iter().find(|i| *i.addr.ip() == ip) {
                self.by_ip.insert(ip, other.num);
            }
        }
        Ok(())
    }

    /// Peers with a socket, validated or not (`o2net_num_connected_peers`).
    fn peers_with_socket(&self) -> usize {
        self.peers.values().filter(|p| p.sc.is_some()).count()
    }

    /// Changes `idle_timeout_ms`, with configfs's rules: not while any peer
    /// has a connection (unless unchanged), and above the keepalive delay.
    pub fn set_idle_timeout_ms(&mut self, ms: u32) -> Result<(), NetError> {
        check_timeout("idle_timeout_ms", ms)?;
        let connected = self.peers_with_socket();
        if ms != self.cfg.idle_timeout_ms && connected > 0 {
            return Err(NetError::Config(format!(
                "cannot change idle timeout after the first peer has agreed to it.  {connected} connected peers"
            )));
        }
        if ms <= self.cfg.keepalive_delay_ms {
            return Err(NetError::Config(
                "idle timeout must be larger than keepalive delay".into(),
            ));
        }
        self.cfg.idle_timeout_ms = ms;
        self.handshake = Bytes::copy_from_slice(&self.cfg.handshake().encode());
        Ok(())
    }

    /// Changes `keepalive_delay_ms`, with configfs's rules.
    pub fn set_keepalive_delay_ms(&mut self, ms: u32) -> Result<(), NetError> {
        check_timeout("keepalive_delay_ms", ms)?;
        let connected = self.peers_with_socket();
        if ms != self.cfg.keepalive_delay_ms && connected > 0 {
            return Err(NetError::Config(format!(
                "cannot change keepalive delay after the first peer has agreed to it.  {connected} connected peers"
            )));
        }
        if ms >= self.cfg.idle_timeout_ms {
            return Err(NetError::Config(
                "keepalive delay must be smaller than idle timeout".into(),
            ));
        }
        self.cfg.keepalive_delay_ms = ms;
        self.handshake = Bytes::copy_from_slice(&self.cfg.handshake().encode());
        Ok(())
    }

    /// Changes `reconnect_delay_ms`: allowed at any time (it is not compared
    /// in the handshake).
    pub fn set_reconnect_delay_ms(&mut self, ms: u32) -> Result<(), NetError> {
        check_timeout("reconnect_delay_ms", ms)?;
        self.cfg.reconnect_delay_ms = ms;
        self.handshake = Bytes::copy_from_slice(&self.cfg.handshake().encode());
        Ok(())
    }

    /// The next output to carry out, in order.
    pub fn poll_output(&mut self) -> Option<Output<H>> {
        self.out.pop_front()
    }

    /// When to call `handle(now, Input::Timeout)` next (virtual ms). May be
    /// early: a timer pushed back is re-armed then.
    pub fn next_timeout(&self) -> Option<u64> {
        self.timers.next()
    }

    /// The quorum state (nodes heartbeating, nodes connected).
    pub fn quorum(&self) -> &Quorum {
        &self.quorum
    }

    /// Nodes with a valid connection, self included (`o2net_fill_node_map` + self).
    pub fn connected_nodes(&self) -> NodeSet {
        let mut s = NodeSet::new();
        s.insert(self.cfg.local);
        for (n, p) in &self.peers {
            if p.valid {
                s.insert(*n);
            }
        }
        s
    }

    /// Refusal counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// One row per configured peer, by node number.
    pub fn peer_stats(&self) -> Vec<PeerStats> {
        let mut v: Vec<PeerStats> = self
            .peers
            .iter()
            .map(|(n, p)| PeerStats {
                node: *n,
                name: p.info.name.clone(),
                addr: p.info.addr,
                state: self.peer_state(p),
                heartbeating: self.quorum.heartbeating().contains(*n),
                traffic: p.traffic,
                waiting_sends: p.waiting.len() + p.pending.len(),
            })
            .collect();
        v.sort_by_key(|s| s.node);
        v
    }

    fn peer_state(&self, p: &Peer) -> PeerState {
        if p.valid {
            return if p.timeout {
                PeerState::Idle
            } else {
                PeerState::Connected
            };
        }
        if let Some(c) = p.sc.and_then(|c| self.conns.get(&c)) {
            return if c.outgoing && !c.established {
                PeerState::Connecting
            } else {
                PeerState::Handshaking
            };
        }
        if p.persistent_error {
            PeerState::NotConnected
        } else {
            PeerState::Waiting
        }
    }

    /// Feeds one event at virtual time `now` (ms, monotonic).
    pub fn handle(&mut self, now: u64, input: Input<'_>) {
        self.now = self.now.max(now);
        match input {
            Input::HeartbeatUp(n) => self.hb_up(n),
            Input::HeartbeatDown(n) => self.hb_down(n),
            Input::Accepted { conn, from } => self.accepted(conn, from),
            Input::ConnectDone { conn } => self.connect_done(conn),
            Input::ConnectFailed { conn, errno } => self.connect_failed(conn, errno),
            Input::Received { conn, data } => self.received(conn, data),
            Input::Closed { conn } => {
                if let Some(c) = self.conns.get(&conn) {
                    let node = c.node;
                    let m = format!("o2net: Connection to {} shutdown", self.nodef(node));
                    self.log(LogLevel::Info, m);
                    self.shutdown_conn(node, conn, false);
                }
            }
            Input::Timeout => self.timeouts(),
            Input::Send {
                id,
                node,
                msg_type,
                key,
                payload,
            } => self.send(id, node, msg_type, key, payload),
            Input::Abandon { id } => self.abandon(id),
            Input::HandlerDone {
                conn,
                request,
                status,
            } => {
                if self.conns.contains_key(&conn) {
                    self.transmit_reply(conn, &request, SysStatus::None, status);
                }
            }
        }
    }

    // ----- helpers -------------------------------------------------------

    fn log(&mut self, level: LogLevel, message: String) {
        self.out.push_back(Output::Log { level, message });
    }

    /// The kernel's `SC_NODEF_FMT`.
    fn nodef(&self, n: u8) -> String {
        match self.peers.get(&n) {
            Some(p) => format!(
                "node {} (num {}) at {}:{}",
                p.info.name,
                n,
                p.info.addr.ip(),
                p.info.addr.port()
            ),
            None => format!("node {n}"),
        }
    }

    fn decision(&mut self, d: Option<Decision>) {
        match d {
            None => {}
            Some(Decision::Fence { reason }) => {
                self.log(LogLevel::Error, reason.clone());
                self.out.push_back(Output::Fence { reason });
            }
            Some(Decision::Survive { message }) => self.log(LogLevel::Notice, message),
        }
    }

    fn transmit(&mut self, conn: ConnId, data: Bytes) {
        if let Some(p) = self
            .conns
            .get(&conn)
            .and_then(|c| self.peers.get_mut(&c.node))
        {
            p.traffic.bytes_sent += data.len() as u64;
        }
        self.out.push_back(Output::Transmit { conn, data });
    }

    fn transmit_reply(&mut self, conn: ConnId, req: &MsgHeader, sys: SysStatus, status: i32) {
        if let Some(p) = self
            .conns
            .get(&conn)
            .and_then(|c| self.peers.get_mut(&c.node))
        {
            p.traffic.msgs_sent += 1;
        }
        let data = Bytes::copy_from_slice(&req.reply(sys, status).encode());
        self.transmit(conn, data);
    }

    fn reset_idle_timer(&mut self, conn: ConnId) {
        let (now, kd, it) = (
            self.now,
            u64::from(self.cfg.keepalive_delay_ms),
            u64::from(self.cfg.idle_timeout_ms),
        );
        if let Some(c) = self.conns.get_mut(&conn) {
            c.keepalive_at = Some(now + kd);
            c.idle_at = Some(now + it);
            c.idle_reset_at = now;
            self.timers.arm(TimerKey::Keepalive(conn), now + kd);
            self.timers.arm(TimerKey::Idle(conn), now + it);
        }
    }

    fn arm_still_up(&mut self, n: u8) {
        let at = self.now + u64::from(self.cfg.quorum_delay_ms);
        if let Some(p) = self.peers.get_mut(&n) {
            // queue_delayed_work: a queued work keeps its first deadline.
            if p.still_up_at.is_none() {
                p.still_up_at = Some(at);
                self.timers.arm(TimerKey::StillUp(n), at);
            }
        }
    }

    /// `o2net_set_nn_state`: the one place a peer's connection state changes.
    fn set_state(&mut self, n: u8, sc: Option<ConnId>, valid: bool, err: bool) {
        let now = self.now;
        let (rd, idle) = (
            u64::from(self.cfg.reconnect_delay_ms),
            u64::from(self.cfg.idle_timeout_ms),
        );
        let Some(p) = self.peers.get_mut(&n) else {
            return;
        };
        let (was_valid, was_err, old_sc) = (p.valid, p.persistent_error, p.sc);
        let err = err || (was_valid && !valid);
        let trace = |c: Option<ConnId>, v: bool, e: bool| {
            let c = c.map_or_else(|| "none".to_owned(), |c| c.to_string());
            (c, u8::from(v), if e { "-107" } else { "0" })
        };
        let (c0, v0, e0) = trace(old_sc, was_valid, was_err);
        let (c1, v1, e1) = trace(sc, valid, err);
        // The kernel's ML_CONN trace of every state change.
        let m = format!("node {n} sc: {c0} -> {c1}, valid {v0} -> {v1}, err {e0} -> {e1}");
        p.sc = sc;
        p.valid = valid;
        p.persistent_error = err;
        self.out.push_back(Output::Log {
            level: LogLevel::Debug,
            message: m,
        });

        if !valid {
            // Reconnect no sooner than reconnect_delay after the last attempt.
            let delay = match p.last_connect_attempt {
                Some(last) if last + rd > now => last + rd - now,
                _ => 0,
            };
            if p.connect_at.is_none() {
                p.connect_at = Some(now + delay);
                self.timers.arm(TimerKey::Connect(n), now + delay);
            }
            // Only the first queueing counts until a connection succeeds.
            if p.connect_expired_at.is_none() {
                p.connect_expired_at = Some(now + delay + idle);
                self.timers
                    .arm(TimerKey::ConnectExpired(n), now + delay + idle);
            }
        }

        if was_valid && !was_err && err {
            self.quorum.conn_err(n);
            self.arm_still_up(n);
        }
        if was_valid && !valid {
            if old_sc.is_some() {
                let m = format!("o2net: No longer connected to {}", self.nodef(n));
                self.log(LogLevel::Notice, m);
            }
            self.fail_pending(n);
        }
        if !was_valid && valid {
            let d = self.quorum.conn_up(n);
            if let Some(p) = self.peers.get_mut(&n) {
                p.connect_expired_at = None;
            }
            let verb = if self.cfg.local > n {
                "Connected to"
            } else {
                "Accepted connection from"
            };
            let m = format!("o2net: {verb} {}", self.nodef(n));
            self.log(LogLevel::Notice, m);
            self.decision(d);
        }
        if valid {
            if let Some(conn) = sc {
                self.flush_waiting(n, conn);
            }
        } else if err {
            self.fail_waiting(n);
        }
        if let Some(old) = old_sc {
            if Some(old) != sc && self.conns.remove(&old).is_some() {
                self.out.push_back(Output::Close { conn: old });
            }
        }
    }

    /// `o2net_ensure_shutdown` plus the socket shutdown: the connection is
    /// gone whether or not it was the peer's current one.
    fn shutdown_conn(&mut self, n: u8, conn: ConnId, err: bool) {
        if self.peers.get(&n).is_some_and(|p| p.sc == Some(conn)) {
            self.set_state(n, None, false, err);
        }
        if self.conns.remove(&conn).is_some() {
            self.out.push_back(Output::Close { conn });
        }
    }

    fn fail_pending(&mut self, n: u8) {
        let Some(p) = self.peers.get_mut(&n) else {
            return;
        };
        let mut done: Vec<(SendId, u16, u32)> = Vec::new();
        for (num, pend) in p.pending.drain() {
            p.ids.release(num);
            if let Some(id) = pend.id {
                done.push((id, pend.msg_type, pend.key));
            }
        }
        done.sort_unstable();
        for (id, msg_type, key) in done {
            self.sends.remove(&id);
            self.out.push_back(Output::SendDone {
                id,
                result: Err(NetError::HostDown {
                    node: n,
                    msg_type,
                    key,
                }),
            });
        }
    }

    fn fail_waiting(&mut self, n: u8) {
        let Some(p) = self.peers.get_mut(&n) else {
            return;
        };
        let waiting: Vec<Waiting> = p.waiting.drain(..).collect();
        for w in waiting {
            self.sends.remove(&w.id);
            self.out.push_back(Output::SendDone {
                id: w.id,
                result: Err(NetError::NotConnected { node: n }),
            });
        }
    }

    fn flush_waiting(&mut self, n: u8, conn: ConnId) {
        let Some(p) = self.peers.get_mut(&n) else {
            return;
        };
        let waiting: Vec<Waiting> = p.waiting.drain(..).collect();
        for w in waiting {
            self.transmit_request(n, conn, w);
        }
    }

    fn transmit_request(&mut self, n: u8, conn: ConnId, w: Waiting) {
        let Some(p) = self.peers.get_mut(&n) else {
            return;
        };
        let num = p.ids.alloc();
        p.pending.insert(
            num,
            Pending {
                id: Some(w.id),
                msg_type: w.msg_type,
                key: w.key,
            },
        );
        p.traffic.msgs_sent += 1;
        self.sends.insert(w.id, SendWhere::Pending(n, num));
        // The payload length was checked against MAX_PAYLOAD on entry.
        let len = u16::try_from(w.payload.len()).unwrap_or(u16::MAX);
        let hdr = MsgHeader::request(w.msg_type, w.key, len, num);
        let mut buf = BytesMut::with_capacity(HEADER_LEN + w.payload.len());
        buf.put_slice(&hdr.encode());
        buf.put_slice(&w.payload);
        self.transmit(conn, buf.freeze());
    }

    // ----- heartbeat -----------------------------------------------------

    fn hb_up(&mut self, n: u8) {
        let d = self.quorum.hb_up(n);
        self.decision(d);
        if n == self.cfg.local {
            return;
        }
        let Some(p) = self.peers.get_mut(&n) else {
            self.log(
                LogLevel::Error,
                format!("o2net: heartbeat reports unconfigured node {n} up; ignored"),
            );
            return;
        };
        // Make the first connect attempt immediate.
        p.last_connect_attempt = None;
        p.timeout = false;
        if p.persistent_error {
            self.set_state(n, None, false, false);
        }
    }

    fn hb_down(&mut self, n: u8) {
        let d = self.quorum.hb_down(n);
        self.decision(d);
        if n == self.cfg.local {
            return;
        }
        let Some(p) = self.peers.get_mut(&n) else {
            return;
        };
        p.timeout = false;
        // Don't reconnect until it heartbeats again.
        self.set_state(n, None, false, true);
        if let Some(p) = self.peers.get_mut(&n) {
            p.connect_at = None;
            p.connect_expired_at = None;
            p.still_up_at = None;
        }
    }

    // ----- connections ---------------------------------------------------

    fn new_conn(&mut self, conn: ConnId, node: u8, outgoing: bool) {
        self.conns.insert(
            conn,
            Conn {
                node,
                outgoing,
                established: !outgoing,
                decoder: StreamDecoder::new(),
                handshake_ok: false,
                keepalive_at: None,
                idle_at: None,
                idle_reset_at: self.now,
            },
        );
    }

    /// `o2net_start_connect`.
    fn start_connect(&mut self, n: u8) {
        if self.cfg.local <= n {
            return;
        }
        let Some(p) = self.peers.get_mut(&n) else {
            return;
        };
        // Stop if a socket exists, or we gave up — unless the loss came
        // from an idle timeout, after which reconnecting is allowed.
        if p.sc.is_some() || (p.persistent_error && !p.timeout) {
            return;
        }
        p.last_connect_attempt = Some(self.now);
        let remote = p.info.addr;
        let conn = self.new_conn_id();
        self.new_conn(conn, n, true);
        self.set_state(n, Some(conn), false, false);
        self.out.push_back(Output::Connect {
            conn,
            node: n,
            local: SocketAddrV4::new(*self.local_addr.ip(), 0),
            remote,
        });
    }

    fn connect_done(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.established = true;
            let hs = self.handshake.clone();
            self.transmit(conn, hs);
        }
    }

    fn connect_failed(&mut self, conn: ConnId, errno: i32) {
        let Some(node) = self.conns.get(&conn).map(|c| c.node) else {
            return;
        };
        self.counters.connect_failures += 1;
        let m = format!(
            "o2net: Connect attempt to {} failed with errno {errno}",
            self.nodef(node)
        );
        self.log(LogLevel::Notice, m);
        // err 0: retried after reconnect_delay.
        self.shutdown_conn(node, conn, false);
    }

    /// `o2net_accept_one`.
    fn accepted(&mut self, conn: ConnId, from: SocketAddrV4) {
        let refuse = |core: &mut Self, level, m: String| {
            core.log(level, m);
            core.out.push_back(Output::Close { conn });
        };
        let Some(&n) = self.by_ip.get(from.ip()) else {
            self.counters.refused_unknown_address += 1;
            let m = format!(
                "o2net: Attempt to connect from unknown node at {}:{}",
                from.ip(),
                from.port()
            );
            return refuse(self, LogLevel::Notice, m);
        };
        let name = match self.peers.get(&n) {
            Some(p) => p.info.name.clone(),
            None => self.local_name.clone(),
        };
        if self.cfg.local >= n {
            self.counters.refused_lower_node += 1;
            let m = format!(
                "o2net: Unexpected connect attempt seen at node '{}' ({}, {}:{}) from node '{}' ({}, {}:{})",
                self.local_name,
                self.cfg.local,
                self.local_addr.ip(),
                self.local_addr.port(),
                name,
                n,
                from.ip(),
                from.port()
            );
            return refuse(self, LogLevel::Notice, m);
        }
        if !self.quorum.heartbeating().contains(n) {
            // A normal race: the peer saw our heartbeat before we saw its.
            self.counters.refused_not_heartbeating += 1;
            let m = format!(
                "attempt to connect from node '{name}' at {}:{} but it isn't heartbeating",
                from.ip(),
                from.port()
            );
            return refuse(self, LogLevel::Debug, m);
        }
        if self.peers.get(&n).is_some_and(|p| p.sc.is_some()) {
            self.counters.refused_busy += 1;
            let m = format!(
                "o2net: Attempt to connect from node '{name}' at {}:{} but it already has an open connection",
                from.ip(),
                from.port()
            );
            return refuse(self, LogLevel::Notice, m);
        }
        if let Some(p) = self.peers.get_mut(&n) {
            p.timeout = false;
        }
        self.new_conn(conn, n, false);
        self.set_state(n, Some(conn), false, false);
        let hs = self.handshake.clone();
        self.transmit(conn, hs);
    }

    fn received(&mut self, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let n = c.node;
        c.decoder.push(data);
        if let Some(p) = self.peers.get_mut(&n) {
            p.traffic.bytes_received += data.len() as u64;
        }
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            match c.decoder.next_frame() {
                Ok(None) => return,
                Ok(Some(Frame::Handshake(h))) => {
                    if !self.check_handshake(n, conn, &h) {
                        return;
                    }
                }
                Ok(Some(Frame::Message(hdr, payload))) => {
                    if !self.process_message(n, conn, hdr, payload) {
                        return;
                    }
                }
                Err(e @ FrameError::TooLong { .. }) => {
                    self.counters.framing_errors += 1;
                    let m = format!("o2net: {}: {e}; disconnecting", self.nodef(n));
                    self.log(LogLevel::Notice, m);
                    self.shutdown_conn(n, conn, false);
                    return;
                }
            }
        }
    }

    /// `o2net_check_handshake`; false if the connection was shut down.
    fn check_handshake(&mut self, n: u8, conn: ConnId, h: &Handshake) -> bool {
        let nodef = self.nodef(n);
        let cfg = &self.cfg;
        let problem = if h.protocol_version != PROTOCOL_VERSION {
            Some(format!(
                "o2net: {nodef} Advertised net protocol version {} but {PROTOCOL_VERSION} is required. Disconnecting.",
                h.protocol_version
            ))
        } else if h.idle_timeout_ms != cfg.idle_timeout_ms {
            Some(format!(
                "o2net: {nodef} uses a network idle timeout of {} ms, but we use {} ms locally. Disconnecting.",
                h.idle_timeout_ms, cfg.idle_timeout_ms
            ))
        } else if h.keepalive_delay_ms != cfg.keepalive_delay_ms {
            Some(format!(
                "o2net: {nodef} uses a keepalive delay of {} ms, but we use {} ms locally. Disconnecting.",
                h.keepalive_delay_ms, cfg.keepalive_delay_ms
            ))
        } else if h.heartbeat_timeout_ms != cfg.heartbeat_timeout_ms {
            Some(format!(
                "o2net: {nodef} uses a heartbeat timeout of {} ms, but we use {} ms locally. Disconnecting.",
                h.heartbeat_timeout_ms, cfg.heartbeat_timeout_ms
            ))
        } else {
            None
        };
        if let Some(m) = problem {
            self.counters.handshake_rejected += 1;
            self.log(LogLevel::Notice, m);
            // Persistent: no reconnect until heartbeat brings the node back.
            self.shutdown_conn(n, conn, true);
            return false;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.handshake_ok = true;
        }
        if self.peers.get(&n).is_some_and(|p| p.sc == Some(conn)) {
            self.reset_idle_timer(conn);
            if let Some(p) = self.peers.get_mut(&n) {
                p.timeout = false;
            }
            self.set_state(n, Some(conn), true, false);
        }
        true
    }

    /// `o2net_process_message`; false if the connection was shut down.
    fn process_message(&mut self, n: u8, conn: ConnId, hdr: MsgHeader, payload: Bytes) -> bool {
        self.postpone_idle(n, conn);
        let Some(kind) = hdr.kind() else {
            self.counters.framing_errors += 1;
            let m = format!(
                "o2net: {} sent a message with bad magic {:#06x}; disconnecting",
                self.nodef(n),
                hdr.magic
            );
            self.log(LogLevel::Notice, m);
            self.shutdown_conn(n, conn, false);
            return false;
        };
        let now = self.now;
        match kind {
            Magic::Status => {
                if let Some(p) = self.peers.get_mut(&n) {
                    p.traffic.msgs_received += 1;
                }
                self.complete(n, &hdr);
            }
            Magic::KeepReq => {
                if let Some(p) = self.peers.get_mut(&n) {
                    p.traffic.keepalives_received += 1;
                    p.traffic.last_keepalive_received = Some(now);
                    p.traffic.keepalives_sent += 1;
                }
                self.transmit(conn, keepalive_frame(Magic::KeepResp));
            }
            Magic::KeepResp => {
                if let Some(p) = self.peers.get_mut(&n) {
                    p.traffic.keepalives_received += 1;
                    p.traffic.last_keepalive_received = Some(now);
                }
            }
            Magic::Request => {
                if let Some(p) = self.peers.get_mut(&n) {
                    p.traffic.msgs_received += 1;
                }
                match self.handlers.get(&(hdr.msg_type, hdr.key)) {
                    None => self.transmit_reply(conn, &hdr, SysStatus::NoHandler, 0),
                    Some((max, _)) if u32::from(hdr.data_len) > *max => {
                        self.transmit_reply(conn, &hdr, SysStatus::Overflow, 0)
                    }
                    Some((_, h)) => {
                        let handler = h.clone();
                        self.out.push_back(Output::Deliver {
                            conn,
                            node: n,
                            header: hdr,
                            payload,
                            handler,
                        });
                    }
                }
            }
        }
        true
    }

    /// `o2net_sc_postpone_idle`: any received message proves the link alive.
    fn postpone_idle(&mut self, n: u8, conn: ConnId) {
        if let Some(p) = self.peers.get_mut(&n) {
            if p.timeout {
                p.timeout = false;
                p.still_up_at = None;
                let d = self.quorum.conn_up(n);
                self.decision(d);
            }
        }
        if self.conns.get(&conn).is_some_and(|c| c.idle_at.is_some()) {
            self.reset_idle_timer(conn);
        }
    }

    /// A status reply: complete the matching send.
    fn complete(&mut self, n: u8, hdr: &MsgHeader) {
        let Some(p) = self.peers.get_mut(&n) else {
            return;
        };
        let Some(pend) = p.pending.remove(&hdr.msg_num) else {
            return;
        };
        p.ids.release(hdr.msg_num);
        let Some(id) = pend.id else {
            return;
        };
        self.sends.remove(&id);
        let (msg_type, key) = (pend.msg_type, pend.key);
        let result = match SysStatus::from_u32(hdr.sys_status) {
            Some(SysStatus::None) => Ok(hdr.status),
            Some(SysStatus::NoHandler) => Err(NetError::NoHandler {
                node: n,
                msg_type,
                key,
            }),
            Some(SysStatus::Overflow) => Err(NetError::Overflow {
                node: n,
                msg_type,
                key,
            }),
            Some(SysStatus::Died) => Err(NetError::HostDown {
                node: n,
                msg_type,
                key,
            }),
            None => Err(NetError::BadSysStatus {
                node: n,
                msg_type,
                key,
                value: hdr.sys_status,
            }),
        };
        self.out.push_back(Output::SendDone { id, result });
    }

    // ----- sends ---------------------------------------------------------

    fn send(&mut self, id: SendId, node: u8, msg_type: u16, key: u32, payload: Bytes) {
        let fail = |core: &mut Self, e: NetError| {
            core.out.push_back(Output::SendDone { id, result: Err(e) });
        };
        if payload.len() > MAX_PAYLOAD {
            let len = payload.len();
            return fail(
                self,
                NetError::TooLarge {
                    node,
                    msg_type,
                    key,
                    len,
                },
            );
        }
        if node == self.cfg.local {
            return fail(self, NetError::ToSelf { node, msg_type });
        }
        let Some(p) = self.peers.get_mut(&node) else {
            // An unconfigured node's state is the initial one: −ENOTCONN.
            return fail(self, NetError::NotConnected { node });
        };
        let w = Waiting {
            id,
            msg_type,
            key,
            payload,
        };
        if p.persistent_error {
            fail(self, NetError::NotConnected { node })
        } else if let (true, Some(conn)) = (p.valid, p.sc) {
            self.transmit_request(node, conn, w);
        } else {
            p.waiting.push_back(w);
            self.sends.insert(id, SendWhere::Waiting(node));
        }
    }

    fn abandon(&mut self, id: SendId) {
        match self.sends.remove(&id) {
            Some(SendWhere::Waiting(n)) => {
                if let Some(p) = self.peers.get_mut(&n) {
                    p.waiting.retain(|w| w.id != id);
                }
            }
            Some(SendWhere::Pending(n, num)) => {
                if let Some(pend) = self.peers.get_mut(&n).and_then(|p| p.pending.get_mut(&num)) {
                    pend.id = None;
                }
            }
            None => {}
        }
    }

    // ----- timers --------------------------------------------------------

    fn timeouts(&mut self) {
        let now = self.now;
        while let Some(key) = self.timers.pop_due(now) {
            let slot = match key {
                TimerKey::Connect(n) => self.peers.get_mut(&n).map(|p| &mut p.connect_at),
                TimerKey::ConnectExpired(n) => {
                    self.peers.get_mut(&n).map(|p| &mut p.connect_expired_at)
                }
                TimerKey::StillUp(n) => self.peers.get_mut(&n).map(|p| &mut p.still_up_at),
                TimerKey::Keepalive(c) => self.conns.get_mut(&c).map(|c| &mut c.keepalive_at),
                TimerKey::Idle(c) => self.conns.get_mut(&c).map(|c| &mut c.idle_at),
            };
            let Some(slot) = slot else { continue };
            match *slot {
                None => continue,
                Some(at) if at > now => {
                    self.timers.arm(key, at);
                    continue;
                }
                Some(_) => *slot = None,
            }
            match key {
                TimerKey::Connect(n) => self.start_connect(n),
                TimerKey::ConnectExpired(n) => self.connect_expired(n),
                TimerKey::StillUp(n) => {
                    let d = self.quorum.hb_still_up(n);
                    self.decision(d);
                }
                TimerKey::Keepalive(c) => {
                    if let Some(p) = self.conns.get(&c).and_then(|c| self.peers.get_mut(&c.node)) {
                        p.traffic.keepalives_sent += 1;
                    }
                    self.transmit(c, keepalive_frame(Magic::KeepReq));
                }
                TimerKey::Idle(c) => self.idle_timer(c),
            }
        }
    }

    fn connect_expired(&mut self, n: u8) {
        if self.peers.get(&n).is_some_and(|p| !p.valid) {
            let idle = self.cfg.idle_timeout_ms;
            self.log(
                LogLevel::Notice,
                format!(
                    "o2net: No connection established with node {n} after {}.{} seconds, check network and cluster configuration.",
                    idle / 1000,
                    idle % 1000
                ),
            );
            self.set_state(n, None, false, false);
        }
    }

    /// `o2net_idle_timer` (6.1): log, let quorum decide after the quorum
    /// delay, keep the connection open.
    fn idle_timer(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (n, ms) = (c.node, self.now.saturating_sub(c.idle_reset_at));
        let m = format!(
            "o2net: Connection to {} has been idle for {}.{} secs.",
            self.nodef(n),
            ms / 1000,
            ms % 1000
        );
        self.log(LogLevel::Notice, m);
        if let Some(p) = self.peers.get_mut(&n) {
            p.timeout = true;
        }
        self.quorum.conn_err(n);
        self.arm_still_up(n);
        self.reset_idle_timer(conn);
    }
}
