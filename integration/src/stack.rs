//! The boundary between the simulator and the protocol code it drives.
//!
//! A node's protocol stack (the o2hb and o2net cores behind an adapter, later
//! o2dlm too) sees the world only through [`Input`]s and acts on it only by
//! pushing [`Effect`]s. The engine owns the clock, disks, network and timers,
//! so a stack written against this boundary has nothing it could do
//! nondeterministically.

use crate::time::SimTime;
use std::time::Duration;

/// A node number, 0..=254, as in `cluster.conf`.
pub type NodeId = u8;

/// Index of a shared-disk heartbeat region in the simulated cluster.
pub type RegionId = u8;

/// One boot of one node: what owns a connection end or an I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    pub node: NodeId,
    pub incarnation: u32,
}

/// Identifies one simulated TCP connection for its whole life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    /// `c<opener>.<incarnation>.<counter>`: who opened it, in which boot, which one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "c{}.{}.{}",
            self.0 >> 56,
            (self.0 >> 32) & 0x00ff_ffff,
            self.0 & 0xffff_ffff
        )
    }
}

impl ConnId {
    /// The `counter`-th connection opened by `node` in its `incarnation`: unique
    /// across the cluster and across reboots without any shared allocator.
    pub fn opened_by(node: NodeId, incarnation: u32, counter: u32) -> ConnId {
        ConnId(
            (u64::from(node) << 56)
                | (u64::from(incarnation & 0x00ff_ffff) << 32)
                | u64::from(counter),
        )
    }
}

/// A timer of one node. Setting a timer with a key that is already armed moves it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerKey {
    /// Shown in traces, e.g. `hb.iterate` or `net.idle`.
    pub name: &'static str,
    /// Distinguishes timers of the same kind (a region, a peer).
    pub index: u32,
}

/// Why a node fenced itself; the checkers treat the two very differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceReason {
    /// Heartbeat writes did not complete within the write timeout (o2hb).
    WriteTimeout,
    /// The quorum decision after a lost or idle connection (o2quo).
    Quorum,
    /// o2dlm found its state broken where the kernel calls `BUG()`.
    Dlm,
}

impl FenceReason {
    pub fn label(self) -> &'static str {
        match self {
            FenceReason::WriteTimeout => "heartbeat write timeout",
            FenceReason::Quorum => "quorum",
            FenceReason::Dlm => "o2dlm BUG",
        }
    }
}

/// Something the world tells a node's stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// The node (re)booted: start heartbeating, listening, etc.
    Boot,
    Timer(TimerKey),
    DiskReadDone {
        region: RegionId,
        offset: u64,
        tag: u64,
        result: Result<Vec<u8>, i32>,
    },
    DiskWriteDone {
        region: RegionId,
        offset: u64,
        tag: u64,
        result: Result<(), i32>,
    },
    /// Our outgoing connection to `peer` completed its TCP handshake.
    Connected {
        conn: ConnId,
        peer: NodeId,
    },
    /// A peer connected to us; it is identified by its source address only.
    Accepted {
        conn: ConnId,
        from: NodeId,
    },
    Received {
        conn: ConnId,
        data: Vec<u8>,
    },
    /// The connection is gone (reset by the peer or the network, or refused); errno.
    Closed {
        conn: ConnId,
        errno: i32,
    },
    /// Workload: send a request to `peer` and report its completion as [`Note::SendDone`].
    SendRequest {
        id: u64,
        peer: NodeId,
    },
    /// The node's lock domain users unmount: its DLM leaves the domain cleanly, and joins
    /// again `rejoin_after` later.
    LeaveDomain {
        rejoin_after: Duration,
    },
}

/// Something a node's stack asks the world to do or reports having done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    DiskRead {
        region: RegionId,
        offset: u64,
        len: usize,
        tag: u64,
    },
    DiskWrite {
        region: RegionId,
        offset: u64,
        data: Vec<u8>,
        tag: u64,
    },
    SetTimer {
        key: TimerKey,
        at: SimTime,
    },
    CancelTimer {
        key: TimerKey,
    },
    /// Open a connection to `peer`; the stack learns the id from [`Input::Connected`]
    /// (or a [`Input::Closed`] for the id returned in `conn`).
    Connect {
        conn: ConnId,
        peer: NodeId,
    },
    /// `what` is a human description for the readable trace (empty unless tracing).
    Send {
        conn: ConnId,
        data: Vec<u8>,
        what: String,
    },
    Close {
        conn: ConnId,
    },
    Fence(FenceReason),
    Note(Note),
}

/// A state change worth recording: the trace shows them, the checkers judge them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// o2hb declared `node` live in `region` (first region: a cluster-wide NODE_UP).
    HbUp {
        region: RegionId,
        node: NodeId,
        generation: u64,
    },
    HbDown {
        region: RegionId,
        node: NodeId,
    },
    /// The region finished its start-up iterations (the `dev` write would return).
    HbSteady {
        region: RegionId,
    },
    /// Region start-up failed to stabilize (the kernel's EIO).
    HbStartFailed {
        region: RegionId,
    },
    /// o2net: quorum now counts `peer` as connected (handshake passed, or traffic resumed).
    NetUp {
        peer: NodeId,
    },
    /// o2net: quorum no longer counts `peer` as connected (connection lost or idle).
    NetDown {
        peer: NodeId,
    },
    /// Workload send `id` to `peer` finished: `status` is 0 or a negative errno.
    SendDone {
        id: u64,
        peer: NodeId,
        status: i32,
    },
    /// What the node's o2dlm lock clients saw (the lock checkers judge these).
    Dlm(crate::dlm_node::DlmNote),
    /// A rule of a core's state broke at this step (judged by the invariants checker).
    Invariant(String),
    /// Anything else a teaching trace should show.
    Text(String),
}

/// The protocol code of one node, driven by the simulator.
pub trait Stack {
    /// Handles one input at virtual time `now`, pushing what it wants done into `out`.
    fn handle(&mut self, now: SimTime, input: Input, out: &mut Vec<Effect>);
}

/// What a stack needs to know about itself and the cluster when it boots.
#[derive(Clone, Debug)]
pub struct NodeSetup {
    pub node: NodeId,
    /// Number of nodes in the cluster; nodes are numbered `0..nodes`.
    pub nodes: u16,
    pub timing: crate::config::Timing,
    /// Counts the node's boots; part of the connection ids it opens.
    pub incarnation: u32,
    /// Drawn from the seed at each boot; non-zero.
    pub generation: u64,
    /// Fill trace descriptions (costs time; off for bulk seed runs).
    pub verbose: bool,
    /// What the node's applications do (the lock workload runs inside the stack).
    pub workload: crate::config::Workload,
    pub sabotage: Option<crate::config::Sabotage>,
}
