//! Self-fencing on stalled heartbeat I/O: a node whose heartbeat writes hang
//! must fence itself before any other node declares it dead, so that nobody
//! recovers its locks while it might still be writing to shared storage.
//!
//! Per stall episode of node S (from the fault plan): every DOWN of S that
//! another node reports while the stall's consequences play out must come
//! after S's fence; a stall longer than the write timeout (period × (T−1))
//! must end in S's write-timeout fence — in global heartbeat mode only if
//! it hits half or more of the R regions (2 × stalled ≥ R), otherwise S
//! must keep running on its healthy regions; a stall that ends a few
//! periods before the write timeout could fire must not fence. A node that
//! sees no other node live is its own timeout-negotiation master and every
//! live node (itself) reports a hung write, so it approves its own timeout
//! and must not fence either (kernel ≥ 4.6, docs/o2hb.md §7). A write-timeout fence with
//! no stall or process pause in force is always a violation: healthy disks
//! never justify it.

use super::{before, Checker, Tally, Violation, World};
use crate::config::{SimConfig, Timing};
use crate::faults::{Episode, FaultKind};
use crate::stack::{FenceReason, NodeId, Note};
use crate::time::SimTime;
use crate::trace::{Record, What};
use std::time::Duration;

#[derive(Debug)]
struct Watch {
    episode: usize,
    node: NodeId,
    overlapped: bool,
    /// Whether enough regions stall for a long stall to fence, and someone
    /// else is live (otherwise negotiation approves the timeout).
    enough_regions: bool,
    alone: bool,
    regions: usize,
    total_regions: usize,
    start: SimTime,
    length: Duration,
    fenced_at: Option<SimTime>,
}

pub struct StallFence {
    timing: Timing,
    watch: Option<Watch>,
    /// Until when a write-timeout fence of this node is excusable (pause episodes).
    excused: Option<(NodeId, SimTime)>,
    tally: Tally,
}

impl StallFence {
    pub fn new(cfg: &SimConfig) -> Self {
        StallFence {
            timing: cfg.timing,
            watch: None,
            excused: None,
            tally: Tally::default(),
        }
    }

    fn judge(&mut self, at: SimTime, out: &mut Vec<Violation>) {
        let Some(w) = self.watch.take() else { return };
        if w.overlapped {
            self.tally.open += 1;
            return;
        }
        let t = &self.timing;
        let long = w.length > t.write_timeout() + Duration::from_secs(1);
        let short = w.length + t.hb_period * 2 < t.write_timeout();
        let must_fence = long && w.enough_regions && !w.alone;
        let must_not_fence = short || (long && (!w.enough_regions || w.alone));
        if !long && !short {
            self.tally.open += 1;
            return;
        }
        self.tally.judged += 1;
        let node = w.node;
        if must_fence && w.fenced_at.is_none() {
            out.push(Violation {
                checker: "stall-fence",
                at,
                since: w.start,
                nodes: vec![node],
                message: format!(
                    "episode {}: n{node}'s heartbeat I/O stalled for {:.1} s, longer than the write timeout ({} s), on enough regions, with other nodes live, and it never fenced itself",
                    w.episode,
                    w.length.as_secs_f64(),
                    t.write_timeout().as_secs()
                ),
            });
        }
        if must_not_fence {
            if let Some(f) = w.fenced_at {
                out.push(Violation {
                    checker: "stall-fence",
                    at: f,
                    since: w.start,
                    nodes: vec![node],
                    message: format!(
                        "episode {}: n{node} fenced itself although its heartbeat I/O stalled {:.1} s on {} of {} regions (write timeout {} s)",
                        w.episode,
                        w.length.as_secs_f64(),
                        w.regions,
                        w.total_regions,
                        t.write_timeout().as_secs()
                    ),
                });
            }
        }
    }

    fn start(&mut self, index: usize, ep: &Episode, node: NodeId, world: &World<'_>) {
        let total_regions = usize::from(world.config.regions.max(1));
        let alone = world
            .nodes
            .get(usize::from(node))
            .is_none_or(|v| v.hb_live.iter().all(|m| *m == node));
        self.watch = Some(Watch {
            episode: index,
            node,
            overlapped: ep.overlapped,
            alone,
            enough_regions: 2 * ep.regions.len() >= total_regions,
            regions: ep.regions.len(),
            total_regions,
            start: ep.start,
            length: ep.heal - ep.start,
            fenced_at: None,
        });
    }
}

impl Checker for StallFence {
    fn name(&self) -> &'static str {
        "stall-fence"
    }

    fn observe(&mut self, rec: &Record<'_>, world: &World<'_>, out: &mut Vec<Violation>) {
        match &rec.what {
            What::Fault { episode, .. } => {
                let Some(ep) = world.plan.episodes.get(*episode) else {
                    return;
                };
                let Some(node) = ep.node else { return };
                match ep.kind {
                    FaultKind::Stall
                        if rec.at == ep.start
                            && self.watch.as_ref().is_none_or(|w| w.episode != *episode) =>
                    {
                        self.judge(rec.at, out);
                        self.start(*episode, ep, node, world);
                    }
                    FaultKind::Stall if rec.at == ep.recover => self.judge(rec.at, out),
                    // A process paused past the write timeout fences when it resumes: its
                    // timer fires late. That is the kernel's behaviour too, not a bug.
                    FaultKind::Pause if rec.at == ep.start => {
                        self.excused = Some((node, ep.recover))
                    }
                    _ => {}
                }
            }
            What::Fence(FenceReason::WriteTimeout) => {
                let Some(node) = rec.node else { return };
                let t = self.timing;
                if let Some(w) = self.watch.as_mut().filter(|w| w.node == node) {
                    w.fenced_at.get_or_insert(rec.at);
                    // The timer was last re-armed by the last iteration that
                    // completed before the stall: at most a period (and an I/O) earlier.
                    let slack = Duration::from_secs(1);
                    let earliest = before(w.start + t.write_timeout(), t.hb_period + slack);
                    let latest = w.start + t.write_timeout() + slack;
                    if !w.overlapped && (rec.at < earliest || rec.at > latest) {
                        out.push(Violation {
                            checker: "stall-fence",
                            at: rec.at,
                            since: w.start,
                            nodes: vec![node],
                            message: format!(
                                "episode {}: n{node} fenced {:.1} s after its heartbeat I/O stalled; the write timeout ({} ms) puts it {:.1} to {:.1} s after",
                                w.episode,
                                (rec.at - w.start).as_secs_f64(),
                                t.write_timeout().as_millis(),
                                (earliest - w.start).as_secs_f64(),
                                (latest - w.start).as_secs_f64()
                            ),
                        });
                    }
                    return;
                }
                if self
                    .excused
                    .is_some_and(|(n, until)| n == node && rec.at <= until)
                    || super::aftermath(world, rec.at)
                {
                    return;
                }
                out.push(Violation {
                    checker: "stall-fence",
                    at: rec.at,
                    since: before(rec.at, self.timing.write_timeout()),
                    nodes: vec![node],
                    message: format!("n{node} fenced on heartbeat write timeout with no disk stall or pause in force"),
                });
            }
            What::Note(Note::HbDown { node: dead, .. }) => {
                let (Some(observer), Some(w)) = (rec.node, self.watch.as_ref()) else {
                    return;
                };
                if *dead != w.node || observer == w.node || w.fenced_at.is_some() || w.overlapped {
                    return;
                }
                out.push(Violation {
                    checker: "stall-fence",
                    at: rec.at,
                    since: w.start,
                    nodes: vec![w.node, observer],
                    message: format!(
                        "episode {}: n{observer} declared n{dead} dead {:.1} s after n{dead}'s heartbeat I/O stalled, and n{dead} has not fenced itself",
                        w.episode,
                        (rec.at - w.start).as_secs_f64()
                    ),
                });
            }
            _ => {}
        }
    }

    fn finish(&mut self, world: &World<'_>, out: &mut Vec<Violation>) {
        self.judge(world.now, out);
    }

    fn tally(&self) -> Tally {
        self.tally
    }
}
