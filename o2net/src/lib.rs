//! o2net: O2CB TCP messaging on port 7777, wire-compatible with the kernel's,
//! and quorum.
//!
//! * [`wire`]: the handshake, message header and keepalive bytes, and a
//!   stream decoder.
//! * [`core`]: the sans-I/O per-node state machine (connections, timers,
//!   request/reply, handler dispatch) driven by `handle(now, input)`.
//! * [`quorum`]: o2quo, which decides who fences after a partition.
//! * [`report`]: the connection table `o2cb` prints.
//! * [`driver`]: the tokio driver with the API for the layers above
//!   ([`Net`]: register handlers, send and wait for the peer's status,
//!   heartbeat events, connection statistics).
//!
//! Facts come from `../shared/spec/o2net.md` and the Linux 6.1 sources it
//! cites; no kernel code is copied.

pub mod core;
pub mod driver;
pub mod error;
pub mod quorum;
pub mod report;
mod timers;
pub mod wire;

pub use crate::core::{
    ConnId, Counters, Input, LogLevel, NetConfig, NetCore, NodeInfo, Output, PeerState, PeerStats,
    SendId, Traffic,
};
pub use crate::driver::{FenceFn, Net, PostHandler, Request};
pub use crate::error::{errno, NetError};
pub use crate::quorum::{Decision, NodeSet, Quorum};
pub use crate::wire::{Handshake, Magic, MsgHeader, SysStatus, MAX_PAYLOAD};
