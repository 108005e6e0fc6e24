//! Errors of the simulator's setup and command line (a run's findings are
//! [`crate::check::Violation`]s, not errors).

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SimError {
    #[error(
        "unknown fault kind {word:?}: expected all, none or a comma-separated list of {known}"
    )]
    UnknownFault { word: String, known: String },
    #[error("a cluster has 1 to 255 nodes, not {0}")]
    NodeCount(u64),
    #[error("a node heartbeats on 1 to 32 regions, not {0}")]
    RegionCount(u8),
    #[error(
        "bad seed range {0:?}: expected A..B with A < B and at most a million seeds, e.g. 0..1000"
    )]
    SeedRange(String),
    #[error("bad duration {0:?}: expected a number with unit s, m, h or ms, e.g. 600s")]
    Duration(String),
    #[error("heartbeat dead threshold {0} is too small: the kernel needs more than 2")]
    DeadThreshold(u32),
    #[error("idle timeout {idle_ms} ms must exceed keepalive delay {keepalive_ms} ms")]
    IdleTimeout { idle_ms: u64, keepalive_ms: u64 },
    #[error("heartbeat period {0} ms is out of range: 10 to 2000 ms (the kernel's)")]
    Period(u64),
    #[error("o2net keepalive and reconnect delays must be at least 1 ms")]
    ZeroTimer,
    #[error("unknown workload {0:?}: expected ping or idle")]
    Workload(String),
    #[error("unknown sabotage {0:?}: expected wrong-side-survives or ignore-write-timeout")]
    Sabotage(String),
    #[error("bad node {0:?} in --trace-nodes: expected numbers like 0,2,5")]
    TraceNodes(String),
    #[error("unknown trace mode {0:?}: expected readable or compact")]
    TraceMode(String),
    #[error("a simulation worker thread panicked")]
    WorkerPanicked,
}
