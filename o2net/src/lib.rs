//! o2net: O2CB TCP messaging on port 7777, wire-compatible with the kernel's,
//! and quorum.
//!
//! * [`wire`]: the handshake, message header and keepalive bytes, and a
//!   stream decoder.
//! * [`core`]: the sans-I/O per-node state machine (connections, timers,
//!   request/reply, handler dispatch) driven by `handle(now, input)`.
//! * [`quorum`]: o2quo, which decides who fences after a partition.
//! * [`report`]: the connection table `o2cb` prints.
//! * [`sockio`]: the socket plumbing of tokio drivers of a core (listener,
//!   connects, reads, write buffers), shared with the node driver of `o2node`.
//! * [`driver`]: the tokio driver with the API for the layers above
//!   ([`Net`]: register handlers, send and wait for the peer's status,
//!   heartbeat events, connection statistics).
//!
//! Facts come from `docs/o2net.md` and the Linux 6.1 sources it
//! cites; no kernel code is copied.
//!
//! ```no_run
//! # async fn demo(cluster: o2nm::Cluster) -> Result<(), o2net::NetError> {
//! use std::sync::Arc;
//! // Inside a tokio runtime: listen on the local node's ip:port.
//! let net = o2net::Net::start(
//!     o2net::NetConfig::from_cluster(&cluster)?,
//!     Arc::new(|reason: &str| eprintln!("fencing: {reason}")),
//! )?;
//! // Handlers first (type, key, max payload); the return value is the
//! // status the sender gets.
//! net.register_handler(600, 0x1234, 64, |req| req.payload.len() as i32)?;
//! // Every o2hb node-up / node-down event, this node's own included.
//! net.heartbeat_up(1);
//! net.heartbeat_up(2);
//! // Waits for the connection and for node 2's handler status.
//! let status = net.send(2, 600, 0x1234, &b"hello"[..]).await?;
//! # let _ = status;
//! # Ok(())
//! # }
//! ```

pub mod core;
pub mod driver;
pub mod error;
mod fasthash;
pub mod quorum;
pub mod report;
pub mod sockio;
mod timers;
pub mod wire;

pub use crate::core::{
    ConnId, Counters, Input, LogLevel, NetConfig, NetCore, NodeInfo, Output, PeerState, PeerStats,
    SendId, Traffic,
};
pub use crate::driver::{FenceFn, Net, PostHandler, Request, SendDone};
pub use crate::error::{errno, NetError};
pub use crate::quorum::{Decision, NodeSet, Quorum};
pub use crate::wire::{Handshake, Magic, MsgHeader, SysStatus, MAX_PAYLOAD};
