//! Multi-node tests and the deterministic cluster simulator.
//!
//! The simulator runs a whole O2CB cluster — 1 to 255 nodes, each running the
//! node daemon's own [`o2node::NodeStack`] (the o2hb, o2net and o2dlm cores and
//! the rules between them) — in one process on virtual time. The network
//! (latency, spread, resets, symmetric and one-way partitions), the shared
//! heartbeat disks (1 to 32 regions; latency, slow, stalled and corrupted
//! I/O per node and region) and the machines (crash, reboot with a new
//! generation, process pauses) are simulated, and every fault is drawn from
//! one seed: the same seed gives the same run, byte for byte. Checkers judge
//! every run against the kernel's rules.
//!
//! ```text
//! SimConfig ─► FaultPlan::draw             faults.rs   what goes wrong, when
//!          Simulation::run                 sim.rs      the event loop
//!            ├─ Agenda                     events.rs   (time, seq)-ordered events
//!            ├─ SimNet / SimDisk           net.rs, disk.rs
//!            ├─ O2Stack per node           o2stack.rs  a machine: o2node::NodeStack (a Stack)
//!            │   └─ DlmLayer               dlm_node.rs its lock clients (the workload)
//!            ├─ Trace                      trace.rs    readable / compact lines
//!            └─ Checkers                   check/      the rules, re-derived
//!          Outcome → cli::run              cli.rs      what `o2cb sim` prints
//! ```
//!
//! With the lock workload (`--workload locks`) every node's lock clients use its DLM
//! through the stack's requests, as the daemon's users do, judged by the lock checkers
//! of [`check::locks`] (whose rules are [`dlm_check`]'s).

pub mod check;
pub mod cli;
pub mod config;
pub mod disk;
pub mod dlm_check;
pub mod dlm_node;
pub mod error;
pub mod events;
pub mod faults;
pub mod net;
pub mod o2stack;
pub mod rng;
pub mod sim;
pub mod stack;
pub mod time;
pub mod trace;

pub use crate::config::{Sabotage, SimConfig, Timing, TraceMode, Workload};
pub use crate::error::SimError;
pub use crate::faults::{FaultKind, FaultPlan, FaultSet};
pub use crate::sim::{Outcome, Simulation};
pub use crate::time::SimTime;
