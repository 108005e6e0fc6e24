//! The o2dlm lock workload inside the main simulator: real domain cores on every node,
//! their messages through the real o2net cores, heartbeat node up/down feeding both, judged
//! by the lock checkers (dlm-locks: mutual exclusion and value blocks; dlm-progress).

use integration::{
    FaultKind, FaultSet, Outcome, Sabotage, SimConfig, Simulation, Timing, Workload,
};
use std::time::Duration;

/// Short heartbeat timings (200 ms period, 7 iterations) so a run of two minutes of virtual
/// time holds joins, a workload and several fault episodes.
fn config(nodes: u16, seed: u64, kinds: &[FaultKind]) -> SimConfig {
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.faults = FaultSet::only(kinds);
    cfg.duration = Duration::from_secs(120);
    cfg.timing = Timing {
        hb_period: Duration::from_millis(200),
        dead_threshold: 7,
        idle_timeout: Duration::from_millis(3000),
        keepalive_delay: Duration::from_millis(500),
        reconnect_delay: Duration::from_millis(500),
    };
    cfg.workload = Workload::Locks {
        clients: 3,
        names: 3,
        think: Duration::from_millis(200),
    };
    cfg
}

fn judged(o: &Outcome, checker: &str) -> u64 {
    o.tallies
        .iter()
        .find(|(n, _)| *n == checker)
        .map_or(0, |(_, t)| t.judged)
}

fn run(cfg: SimConfig) -> Outcome {
    Simulation::new(cfg).expect("valid config").run()
}

#[test]
fn lock_seeds_with_network_delays_break_no_rule() {
    let seeds = if cfg!(debug_assertions) { 4 } else { 40 };
    let mut grants = 0;
    for nodes in 3..=7u16 {
        for seed in 0..seeds {
            let o = run(config(nodes, seed, &[FaultKind::Slow]));
            assert!(
                o.violations.is_empty(),
                "{nodes} nodes, seed {seed}: {}",
                o.violations[0]
            );
            let g = judged(&o, "dlm-locks");
            assert!(g > 100, "{nodes} nodes, seed {seed}: only {g} grants");
            grants += g;
            assert!(judged(&o, "dlm-progress") > g / 2);
        }
    }
    assert!(grants > 0);
}

#[test]
fn same_seed_same_lock_run() {
    let a = run(config(4, 9, &[FaultKind::Slow]));
    let b = run(config(4, 9, &[FaultKind::Slow]));
    assert_eq!(a.events, b.events);
    assert_eq!(judged(&a, "dlm-locks"), judged(&b, "dlm-locks"));
}

fn caught(sabotage: Sabotage, checker: &str) {
    for seed in 0..3 {
        let clean = run(config(3, seed, &[]));
        assert!(
            clean.violations.is_empty(),
            "seed {seed}: {}",
            clean.violations[0]
        );
        let mut cfg = config(3, seed, &[]);
        cfg.sabotage = Some(sabotage);
        let broken = run(cfg);
        let first = broken.violations.first().map(|v| v.checker);
        assert_eq!(
            first,
            Some(checker),
            "seed {seed}, {sabotage:?}: {:?}",
            broken.violations
        );
    }
}

#[test]
fn a_node_bypassing_the_dlm_is_caught_by_the_exclusion_checker() {
    caught(Sabotage::DlmBypass, "dlm-exclusion");
}

#[test]
fn a_lost_value_block_write_back_is_caught_by_the_lvb_checker() {
    caught(Sabotage::DlmLoseLvb, "dlm-lvb");
}

#[test]
fn a_holder_ignoring_basts_is_caught_by_the_progress_checker() {
    caught(Sabotage::DlmHoldForever, "dlm-progress");
}

/// Open findings (o2dlm), hence ignored: with recovery wired into the domain core (o2dlm
/// 0ded117) requests now finish under crashes, but crash, pause, partition, drop and stall
/// runs break the exclusion and value-block rules. Example: `o2cb sim --nodes 4 --seed 2
/// --faults crash --workload locks --duration 120s --hb-period-ms 200 --dead-threshold 7
/// --idle-timeout-ms 3000 --keepalive-ms 500 --reconnect-ms 500 --trace`: n2 (master of
/// simlock0) crashes, and right after recovery n3 is granted EX while n0 holds the PR it was
/// granted a millisecond before. Value blocks read after a master's death are only judged
/// lost when they read zeros, as the API has no "value block invalid" flag yet.
/// `cargo test -p integration --release --test dlm_main_sim -- --ignored`
#[test]
#[ignore]
fn lock_seeds_with_node_and_link_faults_break_no_rule() {
    let kinds = [
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Drop,
        FaultKind::Stall,
    ];
    let mut broken = Vec::new();
    for nodes in 3..=7u16 {
        for seed in 0..20 {
            let o = run(config(nodes, seed, &kinds));
            if let Some(v) = o.violations.first() {
                broken.push(format!("{nodes} nodes seed {seed}: {v}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{} runs broke a rule:\n{}",
        broken.len(),
        broken.join("\n")
    );
}
