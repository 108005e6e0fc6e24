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
