//! No sender waits forever: every o2net request the workload starts finishes
//! — with the peer's status or an error — within a bound after faults heal.
//! While a fault is in force (a partition that nobody fenced over, a paused
//! peer) waiting is what the kernel does, so nothing is judged then.
//!
//! The bound is what the kernel's rules allow for the slowest way out: a
//! connection idles out (idle timeout), quorum waits (quorum delay), the
//! peer is declared dead (dead time), plus a few reconnection rounds (a new
//! connection can be refused while the peer does not yet see us heartbeat,
//! or cut by the acceptor's own connect-expired timer, and is retried a
//! reconnect delay or an idle timeout later) and a few periods for reboots.
//! A send whose sender crashed or fenced is over: nobody waits.

use super::{Checker, Tally, Violation, World};
use crate::config::SimConfig;
use crate::stack::{NodeId, Note};
use crate::time::SimTime;
use crate::trace::{Record, What};
use std::collections::BTreeMap;
use std::time::Duration;

pub struct SendProgress {
    bound: Duration,
    /// id → (sender, peer, started).
    pending: BTreeMap<u64, (NodeId, NodeId, SimTime)>,
    last_fault: SimTime,
    reported: bool,
    tally: Tally,
}

impl SendProgress {
    pub fn new(cfg: &SimConfig) -> Self {
        let t = &cfg.timing;
        SendProgress {
            bound: t.idle_timeout
                + t.quorum_delay()
                + t.dead_time()
                + (t.idle_timeout + t.reconnect_delay) * 3
                + t.hb_period * 4,
            pending: BTreeMap::new(),
            last_fault: SimTime::ZERO,
            reported: false,
            tally: Tally::default(),
        }
    }

    fn check(&mut self, now: SimTime, out: &mut Vec<Violation>) {
        if self.reported {
            return;
        }
        let late = self
            .pending
            .iter()
            .find(|(_, (_, _, started))| now - (*started).max(self.last_fault) > self.bound);
        if let Some((id, (from, to, started))) = late {
            self.reported = true;
            out.push(Violation {
                checker: "send-progress",
                at: now,
                since: *started,
                nodes: vec![*from, *to],
                message: format!(
                    "send #{id} from n{from} to n{to}, started at {}s, still waits {:.1} s later (bound {:.1} s after the last fault healed)",
                    started.to_string().trim(),
                    (now - *started).as_secs_f64(),
                    self.bound.as_secs_f64()
                ),
            });
        }
    }
}

impl Checker for SendProgress {
    fn name(&self) -> &'static str {
        "send-progress"
    }

    fn observe(&mut self, rec: &Record<'_>, _world: &World<'_>, _out: &mut Vec<Violation>) {
        match &rec.what {
            What::SendStart { id, peer } => {
                if let Some(n) = rec.node {
                    self.pending.insert(*id, (n, *peer, rec.at));
                }
            }
            What::Note(Note::SendDone { id, .. }) if self.pending.remove(id).is_some() => {
                self.tally.judged += 1;
            }
            What::Crash | What::Fence(_) => {
                if let Some(n) = rec.node {
                    self.pending.retain(|_, (from, _, _)| *from != n);
                }
            }
            What::Fault { .. } => self.last_fault = rec.at,
            _ => {}
        }
    }

    fn tick(&mut self, world: &World<'_>, out: &mut Vec<Violation>) {
        let now = world.now;
        if world
            .plan
            .episodes
            .iter()
            .any(|e| e.start <= now && now < e.heal)
        {
            return;
        }
        self.check(now, out);
    }

    fn finish(&mut self, world: &World<'_>, out: &mut Vec<Violation>) {
        self.check(world.now, out);
        self.tally.open += self.pending.len() as u64;
    }

    fn tally(&self) -> Tally {
        self.tally
    }
}
