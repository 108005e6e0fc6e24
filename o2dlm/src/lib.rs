//! o2dlm: the O2CB distributed lock manager.
//!
//! - [`wire`]: the kernel's DLM wire facts and the codecs of every DLM message (500–522).
//! - [`lockres`]: the queue engine of one lock resource as its master runs it (grant,
//!   convert, cancel, unlock, the shuffle of the granted/converting/blocked queues, ASTs,
//!   BASTs and the lock value block), free of I/O so mastery, migration, recovery and the
//!   simulator can drive it.
//! - [`secondary`]: the requester's side of a remotely mastered resource: its own locks, the
//!   create/convert/unlock messages it sends, their replies, and the proxy ASTs it receives.
//! - [`join`]: the decisions of the domain join protocol (query join, region and node
//!   queries, protocol negotiation).
//! - [`debug`]: lock-state dumps in the format of the kernel's debugfs `locking_state`.

pub mod debug;
mod error;
pub mod join;
pub mod lockres;
pub mod secondary;
pub mod wire;

pub use error::Error;
