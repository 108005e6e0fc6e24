//! Quorum fencing: a network fault fences exactly the nodes quorum.c says must
//! fence, and no others.
//!
//! At the start of each network episode the checker takes the ground truth —
//! which machines run, which directions the fault cuts — and applies the
//! quorum rule of docs/o2hb.md §10 to each node: with H nodes heartbeating,
//! an odd H needs (H+1)/2 connected nodes (self included); an even H needs
//! H/2, and exactly H/2 only if the lowest-numbered heartbeating node is
//! among them. A node counts a peer connected when traffic flows both ways;
//! with a one-way cut the peer it still hears may or may not keep talking
//! to it, so the checker brackets the answer: a node that fences even
//! counting every peer it hears must fence, a node that survives even
//! counting only two-way peers must survive, and anything between is left
//! open. Episodes that heal before any idle timeout can fire must fence no
//! one; episodes that outlast idle timeout + quorum delay are judged at
//! their end; those in between are left open (the race is real). A quorum
//! fence outside every network episode is a violation, unless other nodes'
//! heartbeat had just declared the fenced node dead (its heartbeat writes
//! corrupted or stalled): they drop their connections to it and refuse its
//! reconnects (o2net accepts only heartbeating nodes), so it may lose quorum
//! within an idle timeout and a quorum delay of that; such a fence is left open.
//! A migration cut (a one-way cut with a crash inside it) is judged when it heals before
//! any idle timeout can fire (nobody may fence) and left open otherwise.

use super::{before, Checker, Life, Tally, Violation, World};
use crate::config::{SimConfig, Timing};
use crate::faults::{Episode, FaultKind};
use crate::stack::Note;
use crate::stack::{FenceReason, NodeId};
use crate::time::SimTime;
use crate::trace::{Record, What};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Whether a node whose connected set (self included) is `connected` fences,
/// with `heartbeating` nodes of which `lowest` is the lowest-numbered.
pub fn quorum_fences(heartbeating: usize, lowest: NodeId, connected: &BTreeSet<NodeId>) -> bool {
    if heartbeating <= 1 {
        return false;
    }
    let c = connected.len();
    if heartbeating % 2 == 1 {
        c < heartbeating.div_ceil(2)
    } else {
        let q = heartbeating / 2;
        c < q || (c == q && !connected.contains(&lowest))
    }
}

#[derive(Debug)]
struct Judgement {
    episode: usize,
    overlapped: bool,
    start: SimTime,
    kind: FaultKind,
    /// Nodes that must fence, and nodes that may (a superset).
    must: BTreeSet<NodeId>,
    may: BTreeSet<NodeId>,
    fenced: BTreeSet<NodeId>,
    /// False when the outcome is left open: fences are then neither required nor refused.
    decided: bool,
    length: Duration,
    groups: String,
}

pub struct QuorumFences {
    timing: Timing,
    open: Option<Judgement>,
    /// When another node's heartbeat last declared each node dead, in its current boot.
    declared_dead: BTreeMap<NodeId, SimTime>,
    tally: Tally,
}

impl QuorumFences {
    pub fn new(cfg: &SimConfig) -> Self {
        QuorumFences {
            timing: cfg.timing,
            open: None,
            declared_dead: BTreeMap::new(),
            tally: Tally::default(),
        }
    }

    fn start(&mut self, index: usize, ep: &Episode, world: &World<'_>) {
        let running: Vec<NodeId> = world.running();
        let set: BTreeSet<NodeId> = running.iter().copied().collect();
        // The rule presumes a formed cluster: everyone sees everyone heartbeat and connected.
        let formed = running.iter().all(|&n| {
            world.nodes.get(usize::from(n)).is_some_and(|v| {
                v.life == Life::Running
                    && set
                        .iter()
                        .all(|m| *m == n || (v.hb_live.contains(m) && v.net_up.contains(m)))
            })
        });
        let cut = |a: NodeId, b: NodeId| {
            ep.cut.contains(&(a, b)) || (ep.kind == FaultKind::Drop && ep.cut.contains(&(b, a)))
        };
        let length = ep.heal - ep.start;
        let t = &self.timing;
        // A one-way cut lets the side that still hears its peer time out up to a
        // keepalive delay later than the other (the peer re-sends its keepalive
        // only when its own idle timer fires), hence the two keepalive delays.
        // A migration cut crashes a node inside the cut, which changes who heartbeats in
        // the middle of the episode: only its short form (nothing idles out, nobody may
        // fence) is judged.
        let decided_len = !matches!(ep.kind, FaultKind::Drop | FaultKind::MigrationCut)
            && length
                >= t.idle_timeout
                    + t.keepalive_delay * 2
                    + t.quorum_delay()
                    + Duration::from_secs(1);
        let harmless_len = match ep.kind {
            // 6.1 retries a lost connection once the connect-expired timer (idle
            // timeout) resets its error: if that beats the quorum delay, the hold
            // is released by the new connection and nobody decides anything.
            FaultKind::Drop => {
                t.idle_timeout + t.reconnect_delay + t.keepalive_delay * 2 < t.quorum_delay()
            }
            _ => length + t.keepalive_delay * 2 < t.idle_timeout,
        };
        let mut j = Judgement {
            episode: index,
            overlapped: ep.overlapped,
            start: ep.start,
            kind: ep.kind,
            must: BTreeSet::new(),
            may: BTreeSet::new(),
            fenced: BTreeSet::new(),
            decided: formed && (decided_len || harmless_len) && !ep.overlapped,
            length,
            groups: if ep.groups.is_empty() {
                format!("{:?}", ep.cut)
            } else {
                ep.groups
                    .iter()
                    .map(|g| format!("{g:?}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            },
        };
        if j.decided && decided_len {
            let h = running.len();
            let lowest = running.first().copied().unwrap_or(0);
            for &n in &running {
                let mut two_way: BTreeSet<NodeId> = running
                    .iter()
                    .copied()
                    .filter(|&m| !cut(n, m) && !cut(m, n))
                    .collect();
                let mut hears: BTreeSet<NodeId> =
                    running.iter().copied().filter(|&m| !cut(m, n)).collect();
                two_way.insert(n);
                hears.insert(n);
                if quorum_fences(h, lowest, &hears) {
                    j.must.insert(n);
                }
                if quorum_fences(h, lowest, &two_way) {
                    j.may.insert(n);
                }
            }
        }
        self.open = Some(j);
    }

    fn judge(&mut self, at: SimTime, out: &mut Vec<Violation>) {
        let Some(j) = self.open.take() else { return };
        if !j.decided {
            self.tally.open += 1;
            return;
        }
        self.tally.judged += 1;
        let missing: Vec<NodeId> = j.must.difference(&j.fenced).copied().collect();
        let extra: Vec<NodeId> = j.fenced.difference(&j.may).copied().collect();
        if missing.is_empty() && extra.is_empty() {
            return;
        }
        let mut nodes: Vec<NodeId> = missing.iter().chain(extra.iter()).copied().collect();
        nodes.sort_unstable();
        out.push(Violation {
            checker: "quorum",
            at,
            since: j.start,
            nodes,
            message: format!(
                "episode {} ({} {}, {:.1} s): quorum requires fencing {:?} (and allows {:?}); fenced {:?}",
                j.episode,
                j.kind.name(),
                j.groups,
                j.length.as_secs_f64(),
                j.must,
                j.may,
                j.fenced
            ),
        });
    }
}

impl Checker for QuorumFences {
    fn name(&self) -> &'static str {
        "quorum"
    }

    fn observe(&mut self, rec: &Record<'_>, world: &World<'_>, out: &mut Vec<Violation>) {
        match &rec.what {
            What::Fault { episode, .. } => {
                let Some(ep) = world.plan.episodes.get(*episode) else {
                    return;
                };
                if !ep.kind.is_network() {
                    return;
                }
                if rec.at == ep.start && self.open.as_ref().is_none_or(|j| j.episode != *episode) {
                    self.judge(rec.at, out);
                    self.start(*episode, ep, world);
                } else if rec.at == ep.recover {
                    self.judge(rec.at, out);
                }
            }
            What::Note(Note::HbDown { node: dead, .. }) if rec.node != Some(*dead) => {
                self.declared_dead.insert(*dead, rec.at);
            }
            What::Boot { .. } => {
                if let Some(node) = rec.node {
                    self.declared_dead.remove(&node);
                }
            }
            What::Fence(FenceReason::Quorum) => {
                let Some(node) = rec.node else { return };
                let t = self.timing;
                match self.open.as_mut() {
                    Some(j) => {
                        j.fenced.insert(node);
                        // The decision comes one quorum delay after the idle timeout
                        // (or, for a reset, right after the loss): never sooner, and in
                        // a judged partition no later than the judging window allows.
                        let slack = Duration::from_secs(1);
                        let idle = if j.kind == FaultKind::Drop {
                            Duration::ZERO
                        } else {
                            t.idle_timeout
                        };
                        let earliest =
                            before(j.start + idle + t.quorum_delay(), t.keepalive_delay + slack);
                        let latest =
                            j.start + idle + t.keepalive_delay * 2 + t.quorum_delay() + slack;
                        let judged_partition = j.decided && j.kind != FaultKind::Drop;
                        if !j.overlapped
                            && (rec.at < earliest || (judged_partition && rec.at > latest))
                        {
                            out.push(Violation {
                                checker: "quorum",
                                at: rec.at,
                                since: j.start,
                                nodes: vec![node],
                                message: format!(
                                    "episode {}: n{node} fenced by quorum {:.1} s after the fault; the rules decide {:.1} to {:.1} s after it",
                                    j.episode,
                                    (rec.at - j.start).as_secs_f64(),
                                    (earliest - j.start).as_secs_f64(),
                                    (latest - j.start).as_secs_f64()
                                ),
                            });
                        }
                    }
                    // Compound failures may have consequences after their episodes.
                    None if super::aftermath(world, rec.at) => {}
                    None if self.declared_dead.get(&node).is_some_and(|&at| {
                        rec.at
                            <= at
                                + t.idle_timeout
                                + t.keepalive_delay * 2
                                + t.quorum_delay()
                                + Duration::from_secs(1)
                    }) =>
                    {
                        self.tally.open += 1;
                    }
                    None => out.push(Violation {
                        checker: "quorum",
                        at: rec.at,
                        since: before(
                            rec.at,
                            self.timing.idle_timeout + self.timing.quorum_delay(),
                        ),
                        nodes: vec![node],
                        message: format!(
                            "n{node} fenced by quorum while no network fault was in force"
                        ),
                    }),
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[NodeId]) -> BTreeSet<NodeId> {
        v.iter().copied().collect()
    }

    #[test]
    fn two_node_split_fences_the_higher_node() {
        assert!(!quorum_fences(2, 0, &set(&[0])));
        assert!(quorum_fences(2, 0, &set(&[1])));
    }

    #[test]
    fn odd_clusters_need_a_strict_majority() {
        assert!(quorum_fences(5, 0, &set(&[3, 4])));
        assert!(!quorum_fences(5, 0, &set(&[2, 3, 4])));
        assert!(!quorum_fences(3, 0, &set(&[1, 2])));
    }

    #[test]
    fn even_halves_keep_the_side_with_the_lowest_node() {
        assert!(!quorum_fences(4, 0, &set(&[0, 3])));
        assert!(quorum_fences(4, 0, &set(&[1, 2])));
        assert!(quorum_fences(4, 0, &set(&[2])));
    }

    #[test]
    fn a_lone_heartbeating_node_never_fences() {
        assert!(!quorum_fences(1, 0, &set(&[0])));
    }
}
