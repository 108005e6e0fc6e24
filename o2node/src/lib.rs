//! o2node: what an O2CB node is.
//!
//! A node is the o2hb heartbeat, the o2net messaging layer and the o2dlm lock manager, plus
//! the rules between them. [`NodeStack`] is that composition, free of I/O: the node daemon's
//! driver (sockets, O_DIRECT disks, FUSE, the control socket) and the deterministic simulator
//! both run exactly this stack, so what the simulator proves holds for the daemon.
//!
//! # The contract
//!
//! Like its three cores, the stack is fed and polled: [`NodeStack::handle`] takes one
//! [`Input`] (a disk I/O finished, bytes arrived, a connection opened or closed, time
//! passed) with the current monotonic time; [`NodeStack::poll_output`] yields what to carry
//! out ([`Output`]: disk reads and writes, connects, transmits, closes, events for the
//! node's users, log lines, a fence); [`NodeStack::poll_timeout`] says when to feed
//! [`Input::Tick`]. The node's users (the Rust API, `o2cb lock`, dlmfs, the simulator's
//! workload) enter through the request methods ([`NodeStack::join`], [`NodeStack::lock`],
//! [`NodeStack::convert`], [`NodeStack::unlock`], [`NodeStack::leave`], [`NodeStack::stop`],
//! [`NodeStack::start_region`]), which answer at once and report completions as [`Event`]s.
//!
//! # The rules between the layers
//!
//! - **Time first.** Every call first runs what was due by its time: heartbeat timers
//!   first, so a node resumed from a pause past its write timeout fences before it reads a
//!   byte or touches a lock.
//! - **Stages** ([`Stage`]): a node is *starting* until heartbeat is steady on every region
//!   it needs (global mode: every region of the cluster; local mode: the region started).
//!   Only then can it know which nodes are live, so only then does it join domains: a join
//!   asked earlier waits (or is refused with [`NodeError::Starting`] if the caller would
//!   not wait). A node *online* serves locks. A *stopping* node (a clean stop) takes no new
//!   lock or join; it leaves every domain (migrating what others use), then stops heartbeat
//!   with the generation-0 block, then is *stopped*; a leave that cannot finish within the
//!   stop timeout is abandoned, so a stop always ends. A *fenced* node does nothing more.
//! - **Node up/down in the kernel's order**: heartbeat decides liveness; o2net hears of a
//!   node first (it connects, or fails the node's sends and drops its connection), then every
//!   domain (which recovers after a death).
//! - **Joins hear every live node**: a join asks each node heartbeat has seen; o2net holds
//!   a send to a live node until its connection is up, as the kernel's does.
//! - **Requests dispatched by (type, key)**: the join protocol node-wide, a domain's messages
//!   under its key while it is joined (after that a peer gets ENOPROTOOPT), o2hb's
//!   negotiation per region; a message that cannot be decoded gets the kernel's status.
//! - **Fencing after the fact**: a quorum fence decided while heartbeat events are being
//!   handed out takes effect once they all are, as the kernel's quorum work runs after
//!   o2hb's callbacks.
//!
//! After every call, in test and simulator builds, the stack asserts its invariants.
//!
//! # The driver
//!
//! [`driver`] runs the stack on tokio with real sockets and O_DIRECT disks and is the node's
//! Rust API ([`Node`], [`Domain`], [`LockHandle`]); the node daemon, dlmfs and `o2cb lock`
//! use it, and so can programs and tests in process.

mod config;
mod dlm;
pub mod driver;
mod error;
mod hb;
mod net;
mod stack;
mod types;

pub use config::{DlmSettings, NodeConfig, DEFAULT_STOP_TIMEOUT_MS};
pub use driver::{Domain, LockHandle, Node};
pub use error::NodeError;
pub use stack::NodeStack;
pub use types::{
    ConnId, Event, FenceReason, Input, Layer, Level, Log, Output, PeerHb, RegionId, Stage,
};
