//! The crate's error type.

use crate::wire::{DecodeError, LockName};

/// Errors of the o2dlm crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A DLM message payload could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A lock record received by migration or recovery contradicts the kernel's rules.
    #[error("lock resource {name}: migrated lock {cookie:#018x} of node {node}: {reason}")]
    BadMigratedLock {
        name: LockName,
        cookie: u64,
        node: u8,
        reason: &'static str,
    },
    /// A mastery message found the resource in a state the kernel treats as impossible (it
    /// crashes there).
    #[error("lock resource {name}: mastery: {reason}")]
    Mastery {
        name: LockName,
        reason: &'static str,
    },
}

/// Why a lock operation or a domain call through the API failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DlmError {
    /// NOQUEUE request that could not be granted at once (`DLM_NOTQUEUED`).
    #[error(
        "domain {domain}: lock {name}: not granted at once and NOQUEUE was asked (DLM_NOTQUEUED)"
    )]
    NotQueued { domain: String, name: LockName },
    /// The request was cancelled before it was granted (`DLM_CANCEL`).
    #[error("domain {domain}: lock {name}: request cancelled (DLM_CANCEL)")]
    Cancelled { domain: String, name: LockName },
    /// The resource's master died; recovery is needed (`DLM_RECOVERING`).
    #[error("domain {domain}: lock {name}: its master died, the resource awaits recovery (DLM_RECOVERING)")]
    Recovering { domain: String, name: LockName },
    /// Any other status the kernel's dlm would return.
    #[error("domain {domain}: lock {name}: {op} failed with {status}")]
    Status {
        domain: String,
        name: LockName,
        op: &'static str,
        status: crate::wire::DlmStatus,
    },
    /// The domain is not joined (or is being left).
    #[error("domain {domain}: not joined on node {node}")]
    NotJoined { domain: String, node: u8 },
    /// The domain join failed with a negative errno.
    #[error("domain {domain}: join by node {node} failed with errno {errno}")]
    JoinFailed {
        domain: String,
        node: u8,
        errno: i32,
    },
    /// A name was refused.
    #[error("{what} {name:?}: {reason}")]
    BadName {
        what: &'static str,
        name: String,
        reason: crate::wire::NameError,
    },
    /// o2net refused something (handler registration, a stopped node).
    #[error("node {node}: o2net: {message}")]
    Net { node: u8, message: String },
    /// The node refused the call in its present state (starting, going offline, fenced):
    /// `errno` is the kernel's for the same refusal.
    #[error("{message}")]
    Node {
        node: u8,
        errno: i32,
        message: String,
    },
    /// The node's DLM was stopped while the call waited.
    #[error("node {node}: the DLM stopped")]
    Stopped { node: u8 },
}
