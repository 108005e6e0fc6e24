//! o2dlm: the O2CB distributed lock manager.
//!
//! - [`wire`]: the kernel's DLM wire facts and the codecs of every DLM message (500–522).
//! - [`lockres`]: the queue engine of one lock resource as its master runs it (grant,
//!   convert, cancel, unlock, the shuffle of the granted/converting/blocked queues, ASTs,
//!   BASTs and the lock value block), free of I/O so mastery, migration, recovery and the
//!   simulator can drive it.
//! - [`secondary`]: the requester's side of a remotely mastered resource: its own locks, the
//!   create/convert/unlock messages it sends, their replies, and the proxy ASTs it receives.
//! - [`mastery`]: master list entries and how a node answers master requests and asserts.
//! - [`join`]: the decisions of the domain join protocol (query join, region and node
//!   queries, protocol negotiation).
//! - [`debug`]: state dumps in the formats of the kernel's debugfs `locking_state`,
//!   `mle_state` and `dlm_state`.
//! - [`domain`]: the sans-I/O core of one domain on one node (join, leave with migration,
//!   mastery both sides, local and remote locking, refmaps and deref, node up/down,
//!   recovery), driven by
//!   `handle(now, input)` like the o2hb and o2net cores, so the simulator runs it too.
//! - [`DlmError`]: why a lock operation failed, as the Rust API of a node (`o2node`, which
//!   runs the domain cores of a node with its heartbeat and o2net) reports it.
//!
//! How the domain core puts them together: a resource this node masters is a [`lockres::LockResource`];
//! local calls and the create/convert/unlock handlers call `request`/`convert`/`unlock` on
//! it, the dlm-thread role calls `shuffle` on dirty resources and then `flush`, sending each
//! [`lockres::Delivery`] for a remote lock as [`lockres::Delivery::to_proxy_ast`]. A
//! resource mastered elsewhere is a [`secondary::OwnLocks`]: `begin_*` yields the message to
//! send to the master, `*_reply` applies its status, `proxy_ast` handles what the master
//! sends back. Migration moves a resource with `migratable_locks` and `add_migrated_lock`;
//! recovery rebuilds one with `add_migrated_lock` and cleans up after a dead node with
//! `remove_node_locks` (zeroing the LVB when it held EX). Owner, refmap, the
//! RECOVERING/MIGRATING/IN_PROGRESS state and master list entries belong to the domain,
//! which answers mastery messages with [`mastery`].

pub mod debug;
pub mod domain;
mod error;
mod fasthash;
pub mod join;
pub mod lockres;
pub mod mastery;
pub mod migration;
pub mod recovery;
pub mod recovery_cluster;
pub mod recovery_store;
pub mod secondary;
pub mod wire;

pub use error::{DlmError, Error};
