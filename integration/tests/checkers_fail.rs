//! The checkers can fail: each rule broken on purpose is caught, by the
//! checker responsible for it, while the same seeds without the breakage are
//! clean (so it is the breakage that is caught, not noise).

use integration::check::{Checker, Tally, Violation, World};
use integration::o2stack::O2Stack;
use integration::sim::{region_specs, StackFactory};
use integration::stack::{Effect, Input, NodeSetup, Note, Stack};
use integration::trace::{Record, What};
use integration::{
    FaultKind, FaultSet, Outcome, Sabotage, SimConfig, SimTime, Simulation, Workload,
};
use std::time::Duration;

fn config(nodes: u16, seed: u64, kinds: &[FaultKind]) -> SimConfig {
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.faults = FaultSet::only(kinds);
    cfg.duration = Duration::from_secs(900);
    cfg
}

fn first_violation(o: &Outcome) -> Option<&'static str> {
    o.violations.first().map(|v| v.checker)
}

/// Runs `seed` with faults of `kind` only, checks it is clean, and returns the run of the
/// same seed with `sabotage`.
fn sabotaged(nodes: u16, seed: u64, kind: FaultKind, sabotage: Sabotage) -> Outcome {
    let clean = Simulation::new(config(nodes, seed, &[kind])).unwrap().run();
    assert!(
        clean.violations.is_empty(),
        "seed {seed}: {}",
        clean.violations[0]
    );
    let mut cfg = config(nodes, seed, &[kind]);
    cfg.sabotage = Some(sabotage);
    Simulation::new(cfg).unwrap().run()
}

#[test]
fn the_wrong_side_of_a_partition_surviving_is_caught_by_the_quorum_checker() {
    let mut caught = 0;
    for seed in 0..10 {
        let broken = sabotaged(5, seed, FaultKind::Partition, Sabotage::WrongSideSurvives);
        if let Some(checker) = first_violation(&broken) {
            assert_eq!(checker, "quorum", "seed {seed}: {}", broken.violations[0]);
            caught += 1;
        }
    }
    // Every seed with a long partition has a quorum fence to subvert.
    assert!(
        caught >= 8,
        "only {caught} of 10 sabotaged runs were caught"
    );
}

#[test]
fn a_node_ignoring_its_write_timeout_is_caught_by_the_stall_checker() {
    let mut caught = 0;
    for seed in 0..10 {
        let broken = sabotaged(3, seed, FaultKind::Stall, Sabotage::IgnoreWriteTimeout);
        if let Some(v) = broken.violations.first() {
            assert_eq!(v.checker, "stall-fence", "seed {seed}: {v}");
            assert!(
                v.message.contains("declared") || v.message.contains("never fenced"),
                "{v}"
            );
            caught += 1;
        }
    }
    assert!(
        caught >= 5,
        "only {caught} of 10 sabotaged runs were caught"
    );
}

/// Wraps the real stack and tampers with what it reports.
struct Tamper {
    inner: O2Stack,
    mode: TamperMode,
    done: bool,
}

#[derive(Clone, Copy)]
enum TamperMode {
    /// Swallow the first NODE_DOWN this node reports (a heartbeat that misses a death).
    HideFirstDown,
    /// Report a NODE_UP out of turn: before the core has checked the slot.
    EarlyUp,
    /// Never report the completion of send #3.
    LoseSend,
}

impl Stack for Tamper {
    fn handle(&mut self, now: SimTime, input: Input, out: &mut Vec<Effect>) {
        let start = out.len();
        self.inner.handle(now, input, out);
        if self.done {
            return;
        }
        let tampered = out.iter().skip(start).position(|e| match (self.mode, e) {
            (TamperMode::HideFirstDown, Effect::Note(Note::HbDown { .. })) => true,
            (TamperMode::EarlyUp, Effect::Note(Note::HbUp { node, .. })) => *node != 0,
            (TamperMode::LoseSend, Effect::Note(Note::SendDone { id: 3, .. })) => true,
            _ => false,
        });
        let Some(i) = tampered else { return };
        self.done = true;
        let removed = out.remove(start + i);
        if let (TamperMode::EarlyUp, Effect::Note(up)) = (self.mode, removed) {
            // Move it ahead of the iteration's own write: the UP then comes
            // before the slot check that justifies it.
            out.insert(start, Effect::Note(up));
        }
    }
}

fn tampered(cfg: SimConfig, victim: u8, mode: TamperMode) -> Outcome {
    let specs = region_specs(&cfg);
    let factory: StackFactory = Box::new(move |setup: &NodeSetup| -> Box<dyn Stack> {
        let inner = O2Stack::new(setup, &specs);
        if setup.node == victim && setup.incarnation == 1 {
            Box::new(Tamper {
                inner,
                mode,
                done: false,
            })
        } else {
            Box::new(inner)
        }
    });
    Simulation::with_stacks(cfg, factory).unwrap().run()
}

#[test]
fn a_missed_node_down_is_caught_by_the_heartbeat_rules_checker() {
    let o = tampered(
        config(3, 5, &[FaultKind::Crash]),
        0,
        TamperMode::HideFirstDown,
    );
    let v = o
        .violations
        .first()
        .expect("the hidden DOWN must be noticed");
    assert_eq!(v.checker, "hb-rules");
    assert!(v.message.contains("should have reported"), "{v}");
}

#[test]
fn an_up_reported_out_of_turn_is_caught_by_the_heartbeat_rules_checker() {
    let o = tampered(config(3, 6, &[]), 1, TamperMode::EarlyUp);
    let v = o.violations.first().expect("the early UP must be noticed");
    assert_eq!(v.checker, "hb-rules", "{v}");
}

#[test]
fn a_sender_left_waiting_is_caught_by_the_progress_checker() {
    let mut lost = None;
    for victim in 0..3 {
        let o = tampered(config(3, 7, &[]), victim, TamperMode::LoseSend);
        if let Some(v) = o.violations.first() {
            lost = Some(v.clone());
        }
    }
    let v = lost.expect("the lost completion of send #3 must be noticed");
    assert_eq!(v.checker, "send-progress");
    assert!(v.message.contains("send #3"), "{v}");
}

/// A node whose stack does nothing at all: it never heartbeats nor listens.
struct Mute;

impl Stack for Mute {
    fn handle(&mut self, _now: SimTime, _input: Input, _out: &mut Vec<Effect>) {}
}

#[test]
fn a_node_that_never_joins_is_caught_by_the_convergence_checker() {
    let mut cfg = config(3, 8, &[]);
    // Without requests, nothing else can notice the silent node.
    cfg.workload = Workload::Idle;
    let specs = region_specs(&cfg);
    let factory: StackFactory = Box::new(move |setup: &NodeSetup| -> Box<dyn Stack> {
        if setup.node == 2 {
            Box::new(Mute)
        } else {
            Box::new(O2Stack::new(setup, &specs))
        }
    });
    let o = Simulation::with_stacks(cfg, factory).unwrap().run();
    let v = o
        .violations
        .first()
        .expect("the missing node must be noticed");
    assert_eq!(v.checker, "converge", "{v}");
    assert!(v.message.contains("n0 does not see n2 heartbeat"), "{v}");
}

/// A checker of one's own: here, "no node ever fences", which partitions break.
struct NoFence(u64);

impl Checker for NoFence {
    fn name(&self) -> &'static str {
        "no-fence"
    }

    fn observe(&mut self, rec: &Record<'_>, _world: &World<'_>, out: &mut Vec<Violation>) {
        if let (What::Fence(reason), Some(node)) = (&rec.what, rec.node) {
            self.0 += 1;
            out.push(Violation {
                checker: "no-fence",
                at: rec.at,
                since: rec.at,
                nodes: vec![node],
                message: format!("n{node} fenced ({})", reason.label()),
            });
        }
    }

    fn finish(&mut self, _world: &World<'_>, _out: &mut Vec<Violation>) {}

    fn tally(&self) -> Tally {
        Tally {
            judged: self.0,
            open: 0,
        }
    }
}

#[test]
fn a_checker_of_ones_own_plugs_in_beside_the_standard_ones() {
    let mut fenced = 0;
    for seed in 0..5 {
        let mut sim = Simulation::new(config(3, seed, &[FaultKind::Partition])).unwrap();
        sim.add_checker(Box::new(NoFence(0)));
        let o = sim.run();
        assert!(o.tallies.iter().any(|(n, _)| *n == "no-fence"));
        if let Some(v) = o.violations.first() {
            assert_eq!(v.checker, "no-fence", "{v}");
            fenced += 1;
        }
    }
    assert!(
        fenced > 0,
        "a 3-node cluster split for long should fence someone"
    );
}
