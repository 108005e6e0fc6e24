//! The cluster forms and re-forms: once the last fault has been repaired and
//! the quiet tail of the run has passed, every node is running, sees every
//! node (itself included) heartbeating, and counts every other node
//! connected. This is what catches a stack that never starts, never
//! reconnects after a fault, or leaves a node out for good — failures the
//! other checkers, which judge what happens, cannot see in what does not.

use super::{before, Checker, Tally, Violation, World};
use crate::config::SimConfig;
use crate::faults::warmup;
use crate::stack::NodeId;
use crate::trace::Record;
use std::time::Duration;

pub struct Convergence {
    /// Time a cluster needs to form after the last reboot.
    settle: Duration,
    tally: Tally,
}

impl Convergence {
    pub fn new(cfg: &SimConfig) -> Self {
        let t = &cfg.timing;
        // Reboots come up to 3 periods after the repair; a refused first
        // connection is retried after a reconnect delay or an idle timeout.
        Convergence {
            settle: warmup(t) + t.hb_period * 3 + t.idle_timeout + t.reconnect_delay * 2,
            tally: Tally::default(),
        }
    }
}

impl Checker for Convergence {
    fn name(&self) -> &'static str {
        "converge"
    }

    fn observe(&mut self, _rec: &Record<'_>, _world: &World<'_>, _out: &mut Vec<Violation>) {}

    fn finish(&mut self, world: &World<'_>, out: &mut Vec<Violation>) {
        let last_fault = world
            .plan
            .actions
            .iter()
            .map(|p| p.at)
            .max()
            .unwrap_or_default();
        if world.now < last_fault + self.settle {
            // The run ended before the cluster could have settled: nothing to say.
            self.tally.open += 1;
            return;
        }
        self.tally.judged += 1;
        let all: Vec<NodeId> = (0..world.nodes.len())
            .filter_map(|n| NodeId::try_from(n).ok())
            .collect();
        let mut missing = Vec::new();
        for &a in &all {
            let Some(v) = world.nodes.get(usize::from(a)) else {
                continue;
            };
            if !v.is_running() {
                missing.push(format!("n{a} is not running"));
                continue;
            }
            let unseen: Vec<String> = all
                .iter()
                .filter(|b| !v.hb_live.contains(b))
                .map(|b| format!("n{b}"))
                .collect();
            if !unseen.is_empty() {
                missing.push(format!("n{a} does not see {} heartbeat", unseen.join(",")));
            }
            let apart: Vec<String> = all
                .iter()
                .filter(|b| **b != a && !v.net_up.contains(b))
                .map(|b| format!("n{b}"))
                .collect();
            if !apart.is_empty() {
                missing.push(format!("n{a} is not connected to {}", apart.join(",")));
            }
        }
        if !missing.is_empty() {
            let shown: Vec<String> = missing.iter().take(6).cloned().collect();
            out.push(Violation {
                checker: "converge",
                at: world.now,
                since: before(world.now, self.settle),
                nodes: Vec::new(),
                message: format!(
                    "{:.0} s after the last fault the cluster has not re-formed: {}{}",
                    (world.now - last_fault).as_secs_f64(),
                    shown.join("; "),
                    if missing.len() > shown.len() {
                        format!("; and {} more", missing.len() - shown.len())
                    } else {
                        String::new()
                    }
                ),
            });
        }
    }

    fn tally(&self) -> Tally {
        self.tally
    }
}
