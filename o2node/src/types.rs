//! What goes in and out of a [`crate::NodeStack`]: inputs from the world, outputs to carry
//! out, events for the node's users, log lines, the stage of the node's life.

use std::net::SocketAddrV4;

use bytes::Bytes;
use o2dlm::domain::Grant;
use o2dlm::wire::{DlmStatus, DomainName, LockMode};

/// A heartbeat region of the node (o2hb's number).
pub type RegionId = o2hb::RegionId;
/// One TCP connection, as named between the stack and its driver (o2net's).
pub type ConnId = o2net::ConnId;

/// Where the node is in its life. Requests of the node's users are taken or refused by stage
/// (see the crate documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Heartbeat is not steady on every region the node needs: the node cannot know which
    /// nodes are live, so no domain is joined yet (joins asked now wait for [`Stage::Online`]).
    Starting,
    /// Heartbeat steady: domains are joined, locks served.
    Online,
    /// A clean stop: domains are being left, then heartbeat stops with the generation-0 block.
    Stopping,
    /// Every domain left, every region stopped; the driver closes its sockets.
    Stopped,
    /// The node fenced itself (heartbeat write timeout, or quorum lost). Nothing more happens:
    /// the machine is being reset.
    Fenced,
}

/// Why the node fenced itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceReason {
    /// Heartbeat writes did not complete within the write timeout (o2hb).
    WriteTimeout,
    /// The quorum decision after a lost connection (o2quo), with the kernel's reason.
    Quorum(String),
    /// A domain's state broke a rule the kernel answers with `BUG()` (o2dlm), with why.
    Dlm(String),
}

impl std::fmt::Display for FenceReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FenceReason::WriteTimeout => f.write_str("heartbeat write timeout"),
            FenceReason::Quorum(r) => write!(f, "quorum: {r}"),
            FenceReason::Dlm(r) => write!(f, "o2dlm: {r}"),
        }
    }
}

/// Something the world tells the node. Requests of the node's users are the
/// [`crate::NodeStack`] methods instead (they answer at once).
#[derive(Debug)]
pub enum Input<'a> {
    /// A [`Output::Read`] finished: exactly the bytes asked for, or an error text.
    ReadDone {
        region: RegionId,
        result: Result<&'a [u8], String>,
    },
    /// A [`Output::Write`] finished.
    WriteDone {
        region: RegionId,
        result: Result<(), String>,
    },
    /// A connection was accepted; `conn` comes from [`crate::NodeStack::new_conn_id`].
    Accepted { conn: ConnId, from: SocketAddrV4 },
    /// A [`Output::Connect`] reached ESTABLISHED.
    ConnectDone { conn: ConnId },
    /// A [`Output::Connect`] failed (negative errno).
    ConnectFailed { conn: ConnId, errno: i32 },
    /// Bytes read from a connection, in order.
    Received { conn: ConnId, data: &'a [u8] },
    /// The connection hit EOF or an error.
    Closed { conn: ConnId },
    /// [`crate::NodeStack::poll_timeout`] was reached.
    Tick,
}

/// Something the driver carries out or hands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Read `len` bytes at `offset` of the region's device; answer with [`Input::ReadDone`].
    Read {
        region: RegionId,
        offset: u64,
        len: usize,
    },
    /// Write `data` at `offset`; answer with [`Input::WriteDone`].
    Write {
        region: RegionId,
        offset: u64,
        data: Vec<u8>,
    },
    /// Open a TCP connection from `local` (port 0) to `remote`; answer with
    /// [`Input::ConnectDone`] or [`Input::ConnectFailed`].
    Connect {
        conn: ConnId,
        node: u8,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    },
    /// Write these bytes to the connection, after everything written before.
    Transmit {
        conn: ConnId,
        data: Bytes,
    },
    /// Shut the connection down.
    Close {
        conn: ConnId,
    },
    /// Tell the node's users (and logs, status, checkers).
    Event(Event),
    Log(Log),
    /// Fence the node now, with the configured fence action. Nothing follows.
    Fence(FenceReason),
}

/// What happened that the node's users or observers care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A region reached steady state (the kernel's `dev` write returns).
    RegionSteady {
        region: RegionId,
    },
    /// A region could not stabilize: its start failed (EIO).
    RegionFailed {
        region: RegionId,
    },
    /// A region's heartbeat ended; `clean` if the generation-0 block was written.
    RegionStopped {
        region: RegionId,
        clean: bool,
    },
    /// Heartbeat declared `node` live (this node included), first seen in `region`.
    NodeUp {
        node: u8,
        generation: u64,
        region: RegionId,
    },
    /// Heartbeat declared `node` dead in every region.
    NodeDown {
        node: u8,
        generation: u64,
        region: RegionId,
    },
    /// Quorum now counts `peer` as connected.
    NetUp {
        peer: u8,
    },
    /// Quorum no longer counts `peer` as connected.
    NetDown {
        peer: u8,
    },
    /// The node is online: domains may be joined.
    Online,
    /// The clean stop has finished.
    Stopped,
    Joined {
        domain: DomainName,
    },
    JoinFailed {
        domain: DomainName,
        errno: i32,
    },
    /// The domain is no longer joined: left cleanly, or (`clean` false) abandoned by a stop
    /// that could not wait any longer; its locks are gone.
    Left {
        domain: DomainName,
        clean: bool,
    },
    /// A lock request or conversion finished (the AST), or failed.
    LockDone {
        domain: DomainName,
        cookie: u64,
        result: Result<Grant, DlmStatus>,
    },
    /// The lock blocks a request for `blocked` (the BAST).
    Bast {
        domain: DomainName,
        cookie: u64,
        blocked: LockMode,
    },
    /// An unlock or cancel (`cancel`) finished; `removed`: the lock no longer exists.
    Unlocked {
        domain: DomainName,
        cookie: u64,
        status: DlmStatus,
        removed: bool,
        cancel: bool,
    },
    /// An application message sent with [`crate::NodeStack::send_app`] got its answer: the
    /// peer handler's status, or the send's negative errno.
    AppDone {
        id: u64,
        result: Result<i32, i32>,
    },
}

/// Which part of the node a log line comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Hb,
    Net,
    Dlm,
    Node,
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

/// A log line, in the kernel's wording where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub level: Level,
    pub layer: Layer,
    pub message: String,
}

/// What heartbeat last said about a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerHb {
    pub live: bool,
    pub generation: u64,
}
