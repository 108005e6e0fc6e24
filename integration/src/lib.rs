//! Multi-node tests and the deterministic cluster simulator.
//!
//! The simulator runs a whole O2CB cluster — 1 to 255 nodes, each with the
//! real o2hb and o2net cores — in one process on virtual time. The network
//! (latency, spread, resets, partitions), the shared heartbeat disk (latency,
//! slow and stalled I/O per node) and the machines (crash, reboot with a new
//! generation, process pauses) are simulated, and every fault is drawn from
//! one seed: the same seed gives the same run, byte for byte. Checkers judge
//! every run against the kernel's rules.
//!
//! ```text
//! config ─► FaultPlan::draw(seed)          faults.rs   what goes wrong, when
//!          Simulation::run                 sim.rs      the event loop
//!            ├─ Agenda                     events.rs   (time, seq)-ordered events
//!            ├─ SimNet / SimDisk           net.rs, disk.rs
//!            ├─ O2Stack per node           o2stack.rs  o2hb + o2net cores
//!            ├─ Trace                      trace.rs    readable / compact lines
//!            └─ Checkers                   check/      the rules, re-derived
//!          Outcome → cli::summary          cli.rs      what `o2cb sim` prints
//! ```

pub mod check;
pub mod cli;
pub mod config;
pub mod disk;
pub mod dlm_check;
pub mod dlm_sim;
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
