//! Shared by the lock-resource engine tests (lockres_table, lockres_scenarios): a resource,
//! one lock per node, and the deliveries the engine hands out.

#![allow(dead_code)] // each test file uses its own subset

use o2dlm::lockres::{Delivery, LockId, LockResource};
use o2dlm::wire::{LockMode, LockName};

pub fn res(name: &str) -> LockResource {
    LockResource::new(LockName::new(name.as_bytes()).unwrap())
}

/// Node `node`'s lock (one lock per node in these tests).
pub fn id(node: u8) -> LockId {
    LockId {
        node,
        cookie: (u64::from(node) << 56) | 7,
    }
}

/// The AST granting node `node`'s lock in `mode` (no value block asked for).
pub fn ast(node: u8, mode: LockMode) -> Delivery {
    Delivery::Ast {
        lock: id(node),
        mode,
        lvb: None,
    }
}

/// The BAST telling node `node`'s lock that it blocks a request for `blocked`.
pub fn bast(node: u8, blocked: LockMode) -> Delivery {
    Delivery::Bast {
        lock: id(node),
        blocked,
    }
}

/// The deliveries pending, in order.
pub fn flush(r: &mut LockResource) -> Vec<Delivery> {
    let mut out = Vec::new();
    r.flush(&mut out);
    out
}

/// The dlm thread's pass: shuffle the queues, then flush.
pub fn settle(r: &mut LockResource) -> Vec<Delivery> {
    r.shuffle();
    flush(r)
}
