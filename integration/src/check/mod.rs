//! Checkers: judges that watch every run and say when the cluster broke a rule.
//!
//! A checker sees every [`Record`] of the run (disk I/O with its bytes,
//! messages, timers, state changes, faults) together with a read-only
//! [`World`] — the ground truth only the simulator knows: which directions
//! are cut, which machines are running, what the fault plan is. It derives
//! what the kernel's rules require *independently of the cores* and reports
//! a [`Violation`] when a core's behaviour differs.
//!
//! Adding a checker (as the DLM's [`locks`] checkers do): implement
//! [`Checker`], observe the records you need ([`crate::stack::Note::Dlm`]
//! carries DLM grants and releases), and add it to [`standard`].

pub mod converge;
pub mod hb_rules;
pub mod invariants;
pub mod locks;
pub mod progress;
pub mod quorum;
pub mod stall;

use crate::config::SimConfig;
use crate::faults::FaultPlan;
use crate::net::SimNet;
use crate::stack::{FenceReason, NodeId};
use crate::time::SimTime;
use crate::trace::Record;
use std::collections::BTreeSet;
use std::fmt;

/// Is a node's machine running?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    /// Never booted yet.
    Off,
    Running,
    /// Running but its process is stopped.
    Paused,
    /// Crashed by a fault or fenced; waits for a reboot.
    Down {
        fenced: Option<FenceReason>,
    },
}

/// What the simulator knows about one node.
#[derive(Clone, Debug)]
pub struct NodeView {
    pub life: Life,
    pub incarnation: u32,
    /// Heartbeat generation of the current boot.
    pub generation: u64,
    pub booted_at: SimTime,
    /// Nodes this node's heartbeat reports live (from its own notes).
    pub hb_live: BTreeSet<NodeId>,
    /// Peers its quorum counts as connected (from its own notes).
    pub net_up: BTreeSet<NodeId>,
    /// A heartbeat region of this boot failed to start (the kernel's EIO on
    /// `dev`): the node runs without that heartbeat until someone restarts it.
    pub hb_failed: bool,
}

impl NodeView {
    pub fn new() -> Self {
        NodeView {
            life: Life::Off,
            incarnation: 0,
            generation: 0,
            booted_at: SimTime::ZERO,
            hb_live: BTreeSet::new(),
            net_up: BTreeSet::new(),
            hb_failed: false,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.life, Life::Running | Life::Paused)
    }
}

impl Default for NodeView {
    fn default() -> Self {
        Self::new()
    }
}

/// The ground truth a checker may consult.
pub struct World<'a> {
    pub now: SimTime,
    pub config: &'a SimConfig,
    pub nodes: &'a [NodeView],
    pub plan: &'a FaultPlan,
    pub net: &'a SimNet,
}

impl World<'_> {
    /// Nodes whose machine is running (paused or not).
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_running())
            .filter_map(|(i, _)| NodeId::try_from(i).ok())
            .collect()
    }
}

/// A broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub checker: &'static str,
    pub at: SimTime,
    /// Where the story of the violation begins (a fault, a send, an iteration):
    /// the trace window shown to the user starts here.
    pub since: SimTime,
    /// The nodes involved, for cutting the trace window.
    pub nodes: Vec<NodeId>,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {}: {}",
            self.at.to_string().trim(),
            self.checker,
            self.message
        )
    }
}

/// `at` minus `d`, not before the start of the run.
pub fn before(at: SimTime, d: std::time::Duration) -> SimTime {
    SimTime::from_micros(
        at.as_micros()
            .saturating_sub(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
    )
}

/// With overlapping faults, whether `at` is still within some episode's
/// consequences (its repair plus the time to settle).
pub fn aftermath(world: &World<'_>, at: SimTime) -> bool {
    world.config.overlap
        && world
            .plan
            .episodes
            .iter()
            .any(|e| e.start <= at && at <= e.recover + crate::faults::settle(&world.config.timing))
}

/// How much a checker could judge in one run, for the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Situations the checker judged (and found right, unless a violation was reported).
    pub judged: u64,
    /// Situations it saw but whose outcome the rules leave open.
    pub open: u64,
}

/// A judge of runs. See the module documentation.
pub trait Checker {
    fn name(&self) -> &'static str;
    /// Sees one record; the world is as it is just after the record happened.
    fn observe(&mut self, rec: &Record<'_>, world: &World<'_>, out: &mut Vec<Violation>);
    /// Called once per heartbeat period of virtual time, for rules about time passing.
    fn tick(&mut self, _world: &World<'_>, _out: &mut Vec<Violation>) {}
    /// The run is over: judge what is still open.
    fn finish(&mut self, world: &World<'_>, out: &mut Vec<Violation>);
    fn tally(&self) -> Tally;
}

/// The checkers every run gets.
pub fn standard(config: &SimConfig) -> Vec<Box<dyn Checker>> {
    let mut all: Vec<Box<dyn Checker>> = vec![
        Box::new(hb_rules::HbRules::new(config)),
        Box::new(quorum::QuorumFences::new(config)),
        Box::new(stall::StallFence::new(config)),
        Box::new(progress::SendProgress::new(config)),
        Box::new(converge::Convergence::new(config)),
        Box::new(invariants::Invariants::default()),
    ];
    if let crate::config::Workload::Locks { .. } = config.workload {
        all.push(Box::new(locks::LockRules::new(config)));
        all.push(Box::new(locks::LockProgress::new(config)));
        all.push(Box::new(locks::LeaveProgress::new(config)));
    }
    all
}
