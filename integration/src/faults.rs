//! The fault plan: which faults strike when, drawn from the seed before the run starts.
//!
//! Faults come in episodes, one at a time, separated by quiet spells long
//! enough for the cluster to settle again (fenced and crashed nodes are
//! rebooted by a `Recover` step and rejoin). One fault at a time is what lets
//! the checkers say exactly what the kernel's rules require of each episode;
//! the plan is fixed by the seed alone, so a replay sees the same faults at the
//! same microseconds whatever the cores do.

use crate::config::{SimConfig, Timing};
use crate::error::SimError;
use crate::rng::{SimRng, Stream};
use crate::stack::{NodeId, RegionId};
use crate::time::SimTime;
use std::fmt;
use std::time::Duration;

/// A kind of fault episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The nodes split into groups that cannot talk to each other.
    Partition,
    /// Traffic from one group to another is lost; the reverse still flows.
    OneWay,
    /// The network resets the connection between two nodes.
    Drop,
    /// One node's heartbeat I/O hangs.
    Stall,
    /// One node's heartbeat I/O becomes slow.
    Slow,
    /// Some of one node's heartbeat writes land with a flipped byte (bad checksum).
    Corrupt,
    /// One node's machine dies and later reboots.
    Crash,
    /// One node's process stops handling anything for a while.
    Pause,
    /// One node's DLM leaves its lock domain cleanly (its lock users let go first; what it
    /// masters that others use migrates) and joins again later: an unmount and a mount.
    Leave,
    /// A `Leave`, and a few milliseconds into it, while what the leaving node masters may be
    /// migrating, one machine crashes: the leaving node (an old master dying mid-migration)
    /// or another member (a possible migration target). The crashed node reboots later as
    /// after `Crash`; the leaving node, if it is not the one, joins again as after `Leave`.
    MigrationCrash,
    /// A `Leave` with traffic from one other member (the likely migration target) to one or
    /// every other member cut one way from its start, and a crash of the leaving node a
    /// little later. A target that has all of a resource's records sends its
    /// MIGRATE_REQUESTs into the cut and waits for their answers, so the old master dies
    /// with its migration in flight; the cut heals after the others' heartbeat has declared
    /// it dead (they start recovering what it mastered), and only then does the request
    /// arrive. The leaving node reboots at the repair.
    MigrationCut,
}

impl FaultKind {
    pub const ALL: [FaultKind; 11] = [
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Drop,
        FaultKind::Stall,
        FaultKind::Slow,
        FaultKind::Corrupt,
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::Leave,
        FaultKind::MigrationCrash,
        FaultKind::MigrationCut,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::OneWay => "oneway",
            FaultKind::Drop => "drop",
            FaultKind::Stall => "stall",
            FaultKind::Slow => "slow",
            FaultKind::Corrupt => "corrupt",
            FaultKind::Crash => "crash",
            FaultKind::Pause => "pause",
            FaultKind::Leave => "leave",
            FaultKind::MigrationCrash => "migcrash",
            FaultKind::MigrationCut => "migcut",
        }
    }

    /// Whether the kind cuts connections (the quorum checker judges these).
    pub fn is_network(self) -> bool {
        matches!(
            self,
            FaultKind::Partition | FaultKind::OneWay | FaultKind::Drop | FaultKind::MigrationCut
        )
    }
}

/// The kinds of fault a run may draw from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultSet(Vec<FaultKind>);

impl FaultSet {
    pub fn none() -> Self {
        FaultSet(Vec::new())
    }

    pub fn all() -> Self {
        FaultSet(FaultKind::ALL.to_vec())
    }

    pub fn only(kinds: &[FaultKind]) -> Self {
        let mut v = kinds.to_vec();
        v.sort();
        v.dedup();
        FaultSet(v)
    }

    pub fn kinds(&self) -> &[FaultKind] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses `all`, `none` or a comma-separated list of kind names.
    pub fn parse(s: &str) -> Result<Self, SimError> {
        let mut kinds = Vec::new();
        for word in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "all" => kinds.extend(FaultKind::ALL),
                "none" => {}
                _ => match FaultKind::ALL.iter().find(|k| k.name() == word) {
                    Some(k) => kinds.push(*k),
                    None => {
                        return Err(SimError::UnknownFault {
                            word: word.to_string(),
                            known: FaultKind::ALL
                                .iter()
                                .map(|k| k.name())
                                .collect::<Vec<_>>()
                                .join(","),
                        })
                    }
                },
            }
        }
        Ok(FaultSet::only(&kinds))
    }
}

impl fmt::Display for FaultSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.0.iter().map(|k| k.name()).collect();
        f.write_str(&names.join(","))
    }
}

/// One change the fault layer makes to the world.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Cut every direction from a node of `from` to a node of `to` (and back if `both`).
    Cut {
        from: Vec<NodeId>,
        to: Vec<NodeId>,
        both: bool,
    },
    /// Restore every cut direction.
    HealNetwork,
    /// Reset the connection(s) between `a` and `b`.
    Reset {
        a: NodeId,
        b: NodeId,
    },
    /// Hang (or release) the heartbeat I/O of `node` on `regions`.
    Stall {
        node: NodeId,
        regions: Vec<RegionId>,
        stalled: bool,
    },
    /// Corrupt `permille` thousandths of `node`'s heartbeat writes on `regions` (0 = healthy).
    Corrupt {
        node: NodeId,
        regions: Vec<RegionId>,
        permille: u32,
    },
    /// Multiply the service time of `node`'s heartbeat I/O on `regions` (1 = healthy).
    Slow {
        node: NodeId,
        regions: Vec<RegionId>,
        factor: u32,
    },
    Crash {
        node: NodeId,
    },
    Pause {
        node: NodeId,
        length: Duration,
    },
    /// The node's DLM leaves its domain cleanly and joins again `rejoin_after` later.
    Leave {
        node: NodeId,
        rejoin_after: Duration,
    },
    /// Reboot every node that is down, and the higher-numbered end of any
    /// pair of running nodes left without a connection (an operator's repair).
    Recover,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Cut {
                from,
                to,
                both: true,
            } => write!(f, "partition {} | {}", set(from), set(to)),
            Action::Cut {
                from,
                to,
                both: false,
            } => write!(f, "cut {} -> {} (one way)", set(from), set(to)),
            Action::HealNetwork => f.write_str("heal network"),
            Action::Reset { a, b } => write!(f, "reset connection n{a} <-> n{b}"),
            Action::Stall {
                node,
                regions,
                stalled: true,
            } => {
                write!(f, "stall heartbeat I/O of n{node} on regions {regions:?}")
            }
            Action::Stall {
                node,
                regions,
                stalled: false,
            } => {
                write!(f, "release heartbeat I/O of n{node} on regions {regions:?}")
            }
            Action::Corrupt {
                node,
                regions,
                permille: 0,
            } => {
                write!(
                    f,
                    "heartbeat writes of n{node} on regions {regions:?} land intact again"
                )
            }
            Action::Corrupt {
                node,
                regions,
                permille,
            } => write!(
                f,
                "{:.1}% of n{node}'s heartbeat writes on regions {regions:?} land corrupted",
                f64::from(*permille) / 10.0
            ),
            Action::Slow {
                node,
                regions,
                factor,
            } => {
                write!(
                    f,
                    "heartbeat I/O of n{node} on regions {regions:?} x{factor} slower"
                )
            }
            Action::Crash { node } => write!(f, "crash n{node}"),
            Action::Pause { node, length } => {
                write!(f, "pause n{node} for {:.3}s", length.as_secs_f64())
            }
            Action::Leave { node, rejoin_after } => write!(
                f,
                "n{node} leaves the lock domain, joining again {:.3}s later",
                rejoin_after.as_secs_f64()
            ),
            Action::Recover => f.write_str("recover: reboot down and disconnected nodes"),
        }
    }
}

fn set(nodes: &[NodeId]) -> String {
    let names: Vec<String> = nodes.iter().map(|n| format!("n{n}")).collect();
    format!("{{{}}}", names.join(","))
}

/// A planned action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub at: SimTime,
    pub action: Action,
    /// The episode it belongs to.
    pub episode: usize,
}

/// One fault episode: what the checkers need to judge it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    pub kind: FaultKind,
    /// When the fault strikes.
    pub start: SimTime,
    /// When it is healed (equal to `start` for instantaneous faults).
    pub heal: SimTime,
    /// When the `Recover` step runs; the episode's consequences are judged up to here.
    pub recover: SimTime,
    /// The node a single-node fault hits.
    pub node: Option<NodeId>,
    /// The sides of a partition (a one-way cut blocks the first → the second).
    pub groups: Vec<Vec<NodeId>>,
    /// The heartbeat regions a disk fault hits.
    pub regions: Vec<RegionId>,
    /// Directions cut by a network fault, as (from, to).
    pub cut: Vec<(NodeId, NodeId)>,
    /// Another episode strikes before this one's consequences have played
    /// out (only with overlapping faults): the checkers then leave its
    /// outcome open, since the rules speak of one fault at a time.
    pub overlapped: bool,
}

/// The whole plan of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultPlan {
    pub actions: Vec<Planned>,
    pub episodes: Vec<Episode>,
}

/// Time for a cluster to form before the first fault: region start-up
/// (3 steady iterations), two changed reads to see each peer, then connect.
pub fn warmup(t: &Timing) -> Duration {
    t.hb_period * 10 + t.reconnect_delay * 2
}

/// After an episode's repair: reboots, start-up, deaths seen, rejoins.
pub fn settle(t: &Timing) -> Duration {
    warmup(t) + t.dead_time()
}

/// Quiet time kept at the end of a run, so every consequence of the last
/// fault (quorum decisions, deaths, reboots, rejoins) has played out.
pub fn tail(t: &Timing) -> Duration {
    t.idle_timeout + t.quorum_delay() + t.dead_time() + warmup(t)
}

impl FaultPlan {
    /// Draws the plan of a run from its seed, cluster size, fault kinds and timings.
    pub fn draw(cfg: &SimConfig) -> Self {
        let (seed, nodes, regions, kinds, timing, duration) = (
            cfg.seed,
            cfg.nodes,
            cfg.regions,
            &cfg.faults,
            &cfg.timing,
            cfg.duration,
        );
        // Slow, not stalled: an I/O may take up to two periods, and an
        // iteration (a read and a write) well under the write timeout.
        let slowest = (timing.hb_period * 2).min(timing.write_timeout() / 4);
        let healthy = (cfg.disk.latency + cfg.disk.spread).max(Duration::from_micros(1));
        let max_factor = u64::try_from(slowest.as_micros() / healthy.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut plan = FaultPlan::default();
        if kinds.is_empty() || nodes == 0 {
            return plan;
        }
        let mut rng = SimRng::new(seed, Stream::FaultPlan);
        let end = SimTime::ZERO + duration.saturating_sub(tail(timing));
        let mut t =
            SimTime::ZERO + warmup(timing) + rng.duration(Duration::ZERO, timing.hb_period * 5);
        loop {
            let kind = kinds.kinds()[rng.index(kinds.kinds().len())];
            let Some(ep) = plan.draw_episode(kind, t, nodes, regions, timing, &mut rng) else {
                // Not possible in this cluster (e.g. no pair to cut); try another kind or stop.
                if kinds.kinds().iter().all(|k| k.is_network()) && nodes < 2 {
                    break;
                }
                t = t + timing.hb_period;
                if t >= end {
                    break;
                }
                continue;
            };
            if ep.recover >= end {
                break;
            }
            let index = plan.episodes.len();
            plan.push_actions(index, &ep, nodes, max_factor, &mut rng);
            // Settle: fenced or crashed nodes reboot at `recover` and need
            // start-up plus discovery by everyone before the next episode.
            let settled = ep.recover + settle(timing);
            t = if cfg.overlap && rng.chance(0.6) {
                // Compound failures: the next fault may strike at any moment of this one.
                ep.start + rng.duration(timing.hb_period, settled - ep.start)
            } else {
                settled + rng.duration(Duration::ZERO, timing.idle_timeout)
            };
            plan.episodes.push(ep);
        }
        plan.actions.sort_by_key(|p| p.at);
        let n = plan.episodes.len();
        for i in 0..n {
            let (start, end) = (
                plan.episodes[i].start,
                plan.episodes[i].recover + settle(timing),
            );
            plan.episodes[i].overlapped = (0..n).any(|j| {
                j != i && {
                    let (s2, e2) = (
                        plan.episodes[j].start,
                        plan.episodes[j].recover + settle(timing),
                    );
                    s2 < end && start < e2
                }
            });
        }
        plan
    }

    fn draw_episode(
        &self,
        kind: FaultKind,
        start: SimTime,
        nodes: u16,
        regions: u8,
        t: &Timing,
        rng: &mut SimRng,
    ) -> Option<Episode> {
        let all: Vec<NodeId> = (0..nodes)
            .filter_map(|n| NodeId::try_from(n).ok())
            .collect();
        if all.is_empty() {
            return None;
        }
        let reboot = |rng: &mut SimRng| rng.duration(t.hb_period * 2, t.hb_period * 10);
        // A crashed machine stays down for a moment (back before anyone declares it dead)
        // or well past the dead time.
        let down = |rng: &mut SimRng| rng.duration(t.hb_period, t.dead_time() + t.hb_period * 15);
        // Out of the domain for a while (the leave itself waits for its users and
        // migrations), then back.
        let out_of_domain = |rng: &mut SimRng| rng.duration(t.hb_period * 5, t.hb_period * 30);
        // A network episode either heals well before the idle timeout
        // (nothing may happen) or lasts past idle timeout + quorum delay (the
        // quorum decision must have run).
        let net_length = |rng: &mut SimRng| {
            if rng.chance(0.35) {
                rng.duration(
                    t.keepalive_delay,
                    t.idle_timeout.saturating_sub(t.keepalive_delay * 3),
                )
            } else {
                t.idle_timeout + t.quorum_delay() + rng.duration(t.hb_period * 6, t.hb_period * 20)
            }
        };
        let mut ep = Episode {
            kind,
            start,
            heal: start,
            recover: start,
            node: None,
            groups: Vec::new(),
            regions: Vec::new(),
            cut: Vec::new(),
            overlapped: false,
        };
        // A disk fault hits some of the node's regions (all of them with one region).
        let some_regions = |rng: &mut SimRng| {
            let mut all: Vec<RegionId> = (0..regions.max(1)).collect();
            rng.shuffle(&mut all);
            let k = 1 + rng.index(all.len());
            let mut picked: Vec<RegionId> = all.into_iter().take(k).collect();
            picked.sort_unstable();
            picked
        };
        match kind {
            FaultKind::Partition | FaultKind::OneWay => {
                if all.len() < 2 {
                    return None;
                }
                // Mostly two sides; sometimes three, where no side may hold a majority.
                let sides = if kind == FaultKind::Partition && all.len() >= 5 && rng.chance(0.3) {
                    3
                } else {
                    2
                };
                ep.groups = split(&all, sides, rng);
                for (i, gi) in ep.groups.iter().enumerate() {
                    for (j, gj) in ep.groups.iter().enumerate() {
                        let cut = if kind == FaultKind::Partition {
                            i != j
                        } else {
                            i == 0 && j == 1
                        };
                        if cut {
                            ep.cut
                                .extend(gi.iter().flat_map(|&x| gj.iter().map(move |&y| (x, y))));
                        }
                    }
                }
                ep.heal = start + net_length(rng);
                ep.recover = ep.heal + reboot(rng);
            }
            FaultKind::Drop => {
                if all.len() < 2 {
                    return None;
                }
                let i = rng.index(all.len());
                let j = (i + 1 + rng.index(all.len() - 1)) % all.len();
                let (a, b) = (all[i], all[j]);
                ep.cut = vec![(a.min(b), a.max(b))];
                // Judged once the quorum delay has passed: by then 6.1 has either
                // reconnected or decided.
                ep.recover =
                    start + t.quorum_delay() + rng.duration(t.hb_period * 5, t.hb_period * 15);
            }
            FaultKind::Stall => {
                ep.node = Some(all[rng.index(all.len())]);
                ep.regions = some_regions(rng);
                let length = if rng.chance(0.35) {
                    rng.duration(
                        t.hb_period,
                        t.write_timeout().saturating_sub(t.hb_period * 3),
                    )
                } else {
                    t.write_timeout() + rng.duration(t.hb_period * 3, t.hb_period * 20)
                };
                ep.heal = start + length;
                ep.recover = ep.heal + reboot(rng);
            }
            FaultKind::Slow | FaultKind::Corrupt => {
                ep.node = Some(all[rng.index(all.len())]);
                ep.regions = some_regions(rng);
                ep.heal = start + rng.duration(t.hb_period * 5, t.hb_period * 60);
                ep.recover = ep.heal + reboot(rng);
            }
            FaultKind::Crash => {
                ep.node = Some(all[rng.index(all.len())]);
                ep.heal = start + down(rng);
                ep.recover = ep.heal;
            }
            FaultKind::Pause => {
                ep.node = Some(all[rng.index(all.len())]);
                ep.heal = start + rng.duration(t.hb_period / 2, t.dead_time() + t.hb_period * 15);
                ep.recover = ep.heal + reboot(rng);
            }
            FaultKind::Leave => {
                ep.node = Some(all[rng.index(all.len())]);
                ep.heal = start + out_of_domain(rng);
                ep.recover = ep.heal;
            }
            FaultKind::MigrationCrash => {
                ep.node = Some(all[rng.index(all.len())]);
                ep.heal = start + out_of_domain(rng);
                // The crash strikes within MIGRATION_CRASH_LATEST_MS of the start (drawn with
                // the actions), and the machine stays down at least as long as a crash's
                // before the repair reboots it; the leaving node is back by then too.
                ep.recover = ep
                    .heal
                    .max(start + Duration::from_millis(MIGRATION_CRASH_LATEST_MS) + down(rng));
            }
            FaultKind::MigrationCut => {
                // A leaving node, a target and at least one bystander.
                if all.len() < 3 {
                    return None;
                }
                let leaver = all[rng.index(all.len())];
                let others: Vec<NodeId> = all.iter().copied().filter(|&n| n != leaver).collect();
                // Migration hands a resource to its first lock holder or else the lowest
                // referencing node: the lowest other member is the likeliest target.
                let target = if rng.chance(0.75) {
                    others[0]
                } else {
                    others[rng.index(others.len())]
                };
                let mut bystanders: Vec<NodeId> =
                    others.into_iter().filter(|&n| n != target).collect();
                if rng.chance(0.3) {
                    bystanders = vec![bystanders[rng.index(bystanders.len())]];
                }
                ep.node = Some(leaver);
                ep.cut = bystanders.iter().map(|&b| (target, b)).collect();
                ep.groups = vec![vec![target], bystanders];
                // The crash comes within MIGRATION_CUT_CRASH_LATEST_MS (drawn with the
                // actions); every bystander declares it dead within a period of the dead
                // time, so the cut heals a little later than that. With short timings the
                // whole cut stays under o2net's idle timeout (nothing idles out; the quorum
                // checker holds that nobody fences); with the kernel's it is longer.
                ep.heal = start
                    + Duration::from_millis(MIGRATION_CUT_CRASH_LATEST_MS)
                    + t.dead_time()
                    + rng.duration(t.hb_period * 5 / 4, t.hb_period * 2);
                ep.recover = (ep.heal + reboot(rng))
                    .max(start + Duration::from_millis(MIGRATION_CUT_CRASH_LATEST_MS) + down(rng));
                if ep.heal - start + t.keepalive_delay * 2 >= t.idle_timeout {
                    // Connections may idle out in the cut: the quorum decisions that follow
                    // fall inside the episode.
                    ep.recover = ep.recover.max(
                        start
                            + t.idle_timeout
                            + t.keepalive_delay * 2
                            + t.quorum_delay()
                            + Duration::from_secs(1),
                    );
                }
            }
        }
        Some(ep)
    }

    fn push_actions(
        &mut self,
        index: usize,
        ep: &Episode,
        nodes: u16,
        max_factor: u64,
        rng: &mut SimRng,
    ) {
        let leave = |node: NodeId| Action::Leave {
            node,
            rejoin_after: ep.heal - ep.start,
        };
        let mut add = |at: SimTime, action: Action| {
            self.actions.push(Planned {
                at,
                action,
                episode: index,
            })
        };
        match ep.kind {
            FaultKind::Partition | FaultKind::OneWay => {
                let both = ep.kind == FaultKind::Partition;
                for (i, from) in ep.groups.iter().enumerate() {
                    for to in ep
                        .groups
                        .iter()
                        .skip(i + 1)
                        .take(if both { usize::MAX } else { 1 })
                    {
                        add(
                            ep.start,
                            Action::Cut {
                                from: from.clone(),
                                to: to.clone(),
                                both,
                            },
                        );
                    }
                }
                add(ep.heal, Action::HealNetwork);
            }
            FaultKind::Drop => {
                if let Some(&(a, b)) = ep.cut.first() {
                    add(ep.start, Action::Reset { a, b });
                }
            }
            FaultKind::Stall => {
                if let Some(node) = ep.node {
                    let regions = ep.regions.clone();
                    add(
                        ep.start,
                        Action::Stall {
                            node,
                            regions: regions.clone(),
                            stalled: true,
                        },
                    );
                    add(
                        ep.heal,
                        Action::Stall {
                            node,
                            regions,
                            stalled: false,
                        },
                    );
                }
            }
            FaultKind::Corrupt => {
                if let Some(node) = ep.node {
                    // At most half the writes: peers count transient misses, and
                    // dead_threshold misses in a row are out of reach.
                    let permille = u32::try_from(rng.between(50, 500)).unwrap_or(50);
                    let regions = ep.regions.clone();
                    add(
                        ep.start,
                        Action::Corrupt {
                            node,
                            regions: regions.clone(),
                            permille,
                        },
                    );
                    add(
                        ep.heal,
                        Action::Corrupt {
                            node,
                            regions,
                            permille: 0,
                        },
                    );
                }
            }
            FaultKind::Slow => {
                if let Some(node) = ep.node {
                    // Iterations stretch past the period and peers see fewer
                    // changes, yet writes still complete in time.
                    let factor =
                        u32::try_from(rng.between(max_factor.min(10), max_factor)).unwrap_or(10);
                    let regions = ep.regions.clone();
                    add(
                        ep.start,
                        Action::Slow {
                            node,
                            regions: regions.clone(),
                            factor,
                        },
                    );
                    add(
                        ep.heal,
                        Action::Slow {
                            node,
                            regions,
                            factor: 1,
                        },
                    );
                }
            }
            FaultKind::Crash => {
                if let Some(node) = ep.node {
                    add(ep.start, Action::Crash { node });
                }
            }
            FaultKind::Pause => {
                if let Some(node) = ep.node {
                    add(
                        ep.start,
                        Action::Pause {
                            node,
                            length: ep.heal - ep.start,
                        },
                    );
                }
            }
            FaultKind::Leave => {
                if let Some(node) = ep.node {
                    add(ep.start, leave(node));
                }
            }
            FaultKind::MigrationCrash => {
                if let Some(node) = ep.node {
                    add(ep.start, leave(node));
                    let victim = migration_crash_victim(node, nodes, rng);
                    add(
                        ep.start + migration_crash_delay(rng),
                        Action::Crash { node: victim },
                    );
                }
            }
            FaultKind::MigrationCut => {
                if let (Some(node), [from, to]) = (ep.node, &ep.groups[..]) {
                    add(
                        ep.start,
                        Action::Cut {
                            from: from.clone(),
                            to: to.clone(),
                            both: false,
                        },
                    );
                    add(ep.start, leave(node));
                    let latest = Duration::from_millis(MIGRATION_CUT_CRASH_LATEST_MS);
                    add(
                        ep.start + rng.duration(Duration::ZERO, latest),
                        Action::Crash { node },
                    );
                    add(ep.heal, Action::HealNetwork);
                }
            }
        }
        add(ep.recover, Action::Recover);
    }
}

/// The latest a `MigrationCrash` crash strikes after its leave starts, in milliseconds.
const MIGRATION_CRASH_LATEST_MS: u64 = 300;

/// The latest a `MigrationCut` crash strikes after its leave (and its cut) start, in
/// milliseconds. Half of all leaves start migrating at once, the others mostly within
/// 10-400 ms (their users let go first); a resource whose target is cut off stays in
/// flight until the cut heals, so any crash after its records left keeps the race open.
const MIGRATION_CUT_CRASH_LATEST_MS: u64 = 150;

/// How long after its leave starts a `MigrationCrash` crash strikes. A leave whose users hold
/// nothing hands its resources over at once, one after the other, each in about 2 ms of
/// messages (MIG_LOCKRES to the target, the target's MIGRATE_REQUESTs and FINISH_MIGRATION
/// asserts, a fraction of a millisecond per hop); users that must let go first (a conversion
/// waits for its grant) put tens to hundreds of milliseconds before it. So most crashes
/// strike in the first 8 ms, at microsecond grain, the rest within 50 ms, a few later.
fn migration_crash_delay(rng: &mut SimRng) -> Duration {
    let roll = rng.index(100);
    let (lo, hi) = if roll < 60 {
        (0, 8)
    } else if roll < 85 {
        (8, 50)
    } else {
        (50, MIGRATION_CRASH_LATEST_MS)
    };
    rng.duration(Duration::from_millis(lo), Duration::from_millis(hi))
}

/// Whom a `MigrationCrash` crashes: the leaving node (the old master) half the time, else
/// another member. Migration hands a resource to its first lock holder or referencing node,
/// so the lowest-numbered other member is the likeliest target: it is picked half of those
/// times, any other member the rest.
fn migration_crash_victim(leaver: NodeId, nodes: u16, rng: &mut SimRng) -> NodeId {
    let others: Vec<NodeId> = (0..nodes)
        .filter_map(|n| NodeId::try_from(n).ok())
        .filter(|&n| n != leaver)
        .collect();
    match others.first() {
        None => leaver,
        Some(_) if rng.chance(0.5) => leaver,
        Some(&lowest) if rng.chance(0.5) => lowest,
        Some(_) => others[rng.index(others.len())],
    }
}

/// Splits `nodes` into `sides` non-empty groups at random (fewer if there are fewer nodes).
fn split(nodes: &[NodeId], sides: usize, rng: &mut SimRng) -> Vec<Vec<NodeId>> {
    let mut shuffled = nodes.to_vec();
    rng.shuffle(&mut shuffled);
    let sides = sides.clamp(1, shuffled.len().max(1));
    // Cut points: distinct positions in 1..len, sorted.
    let mut cuts: Vec<usize> = (1..shuffled.len()).collect();
    rng.shuffle(&mut cuts);
    let mut cuts: Vec<usize> = cuts.into_iter().take(sides - 1).collect();
    cuts.sort_unstable();
    let mut groups = Vec::new();
    let mut begin = 0;
    for end in cuts.into_iter().chain(std::iter::once(shuffled.len())) {
        let mut g = shuffled
            .get(begin..end)
            .map(<[NodeId]>::to_vec)
            .unwrap_or_default();
        g.sort_unstable();
        groups.push(g);
        begin = end;
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_every_node_once_in_non_empty_groups() {
        let nodes: Vec<NodeId> = (0..7).collect();
        let mut rng = SimRng::new(9, Stream::FaultPlan);
        for sides in 1..=4 {
            for _ in 0..50 {
                let groups = split(&nodes, sides, &mut rng);
                assert_eq!(groups.len(), sides);
                assert!(groups.iter().all(|g| !g.is_empty()));
                let mut all: Vec<NodeId> = groups.concat();
                all.sort_unstable();
                assert_eq!(all, nodes);
            }
        }
    }

    #[test]
    fn plans_keep_episodes_apart_and_inside_the_run() {
        for seed in 0..50 {
            let mut cfg = SimConfig::new(5, seed);
            cfg.regions = 3;
            cfg.faults = FaultSet::all();
            cfg.duration = Duration::from_secs(3600);
            let plan = FaultPlan::draw(&cfg);
            assert!(!plan.episodes.is_empty());
            for w in plan.episodes.windows(2) {
                assert!(w[0].recover < w[1].start, "seed {seed}: episodes overlap");
            }
            assert!(plan.episodes.iter().all(|e| !e.overlapped));
            let end = SimTime::from_secs(3600);
            assert!(plan.actions.iter().all(|p| p.at < end));
            assert!(plan.actions.windows(2).all(|w| w[0].at <= w[1].at));
            assert!(plan
                .episodes
                .iter()
                .all(|e| e.regions.iter().all(|r| *r < 3)));
        }
    }

    #[test]
    fn overlapping_plans_mark_the_episodes_that_overlap() {
        let mut overlapped = 0;
        for seed in 0..20 {
            let mut cfg = SimConfig::new(5, seed);
            cfg.faults = FaultSet::all();
            cfg.overlap = true;
            cfg.duration = Duration::from_secs(3600);
            let plan = FaultPlan::draw(&cfg);
            let end = |e: &Episode| e.recover + settle(&cfg.timing);
            for (i, e) in plan.episodes.iter().enumerate() {
                let really = plan
                    .episodes
                    .iter()
                    .enumerate()
                    .any(|(j, f)| j != i && f.start < end(e) && e.start < end(f));
                assert_eq!(e.overlapped, really, "seed {seed} episode {i}");
                overlapped += usize::from(e.overlapped);
            }
        }
        assert!(overlapped > 20, "only {overlapped} overlapped episodes");
    }

    #[test]
    fn a_migration_crash_leaves_then_crashes_the_leaver_or_another_member_within_ms() {
        let (mut leavers, mut others, mut within_8ms, mut crashes) = (0, 0, 0, 0);
        for seed in 0..40 {
            let mut cfg = SimConfig::new(5, seed);
            cfg.faults = FaultSet::only(&[FaultKind::MigrationCrash]);
            cfg.duration = Duration::from_secs(600);
            let plan = FaultPlan::draw(&cfg);
            assert!(!plan.episodes.is_empty());
            for (i, ep) in plan.episodes.iter().enumerate() {
                let actions: Vec<&Planned> =
                    plan.actions.iter().filter(|p| p.episode == i).collect();
                let [leave, crash, recover] = actions[..] else {
                    panic!("seed {seed} episode {i}: {actions:?}");
                };
                let leaver = ep.node.expect("a leaving node");
                assert_eq!(leave.at, ep.start);
                assert_eq!(
                    leave.action,
                    Action::Leave {
                        node: leaver,
                        rejoin_after: ep.heal - ep.start
                    }
                );
                let Action::Crash { node: victim } = crash.action else {
                    panic!("seed {seed} episode {i}: {:?}", crash.action);
                };
                assert!(crash.at <= ep.start + Duration::from_millis(MIGRATION_CRASH_LATEST_MS));
                // The repair reboots the crashed node after a crash's downtime, once the
                // leaving node is back too.
                assert_eq!(recover.action, Action::Recover);
                assert_eq!(recover.at, ep.recover);
                assert!(ep.recover >= ep.heal && ep.recover >= crash.at + cfg.timing.hb_period);
                crashes += 1;
                if victim == leaver {
                    leavers += 1;
                } else {
                    others += 1;
                }
                if crash.at <= ep.start + Duration::from_millis(8) {
                    within_8ms += 1;
                }
            }
        }
        assert!(
            leavers * 3 > crashes && others * 3 > crashes,
            "{leavers} leavers, {others} others crashed"
        );
        assert!(
            within_8ms * 2 > crashes,
            "only {within_8ms} of {crashes} crashes within 8 ms"
        );
    }

    #[test]
    fn a_migration_cut_cuts_a_likely_target_off_crashes_the_leaver_and_heals_after_its_death() {
        let (mut lowest, mut cuts) = (0, 0);
        for seed in 0..40 {
            let mut cfg = SimConfig::new(5, seed);
            cfg.faults = FaultSet::only(&[FaultKind::MigrationCut]);
            cfg.duration = Duration::from_secs(300);
            cfg.timing = Timing {
                hb_period: Duration::from_millis(200),
                dead_threshold: 7,
                idle_timeout: Duration::from_millis(3000),
                keepalive_delay: Duration::from_millis(500),
                reconnect_delay: Duration::from_millis(500),
            };
            let t = cfg.timing;
            let plan = FaultPlan::draw(&cfg);
            assert!(!plan.episodes.is_empty());
            for (i, ep) in plan.episodes.iter().enumerate() {
                let actions: Vec<&Action> = plan
                    .actions
                    .iter()
                    .filter(|p| p.episode == i)
                    .map(|p| &p.action)
                    .collect();
                let leaver = ep.node.expect("a leaving node");
                let [Action::Cut {
                    from,
                    to,
                    both: false,
                }, Action::Leave { node, .. }, Action::Crash { node: victim }, Action::HealNetwork, Action::Recover] =
                    actions[..]
                else {
                    panic!("seed {seed} episode {i}: {actions:?}");
                };
                assert_eq!((*node, *victim), (leaver, leaver));
                assert!(from.len() == 1 && !from.contains(&leaver) && !to.contains(&leaver));
                assert!(!to.is_empty() && !to.contains(&from[0]));
                let crash = plan
                    .actions
                    .iter()
                    .find(|p| p.episode == i && p.action == Action::Crash { node: leaver })
                    .map(|p| p.at)
                    .expect("a crash");
                // The others declare the leaver dead before the cut heals, and nothing idles
                // out in it.
                assert!(ep.heal >= crash + t.dead_time() + t.hb_period);
                assert!(ep.heal - ep.start + t.keepalive_delay * 2 < t.idle_timeout);
                assert!(ep.recover > ep.heal);
                cuts += 1;
                lowest += usize::from(from[0] == if leaver == 0 { 1 } else { 0 });
            }
        }
        assert!(
            lowest * 3 > cuts * 2,
            "{lowest} of {cuts} cuts from the lowest other member"
        );
    }

    #[test]
    fn fault_sets_parse_names_and_refuse_unknown_ones() {
        assert_eq!(FaultSet::parse("all"), Ok(FaultSet::all()));
        assert_eq!(FaultSet::parse("none"), Ok(FaultSet::none()));
        let s = FaultSet::parse("crash, partition,crash").unwrap();
        assert_eq!(s.kinds(), &[FaultKind::Partition, FaultKind::Crash]);
        assert_eq!(s.to_string(), "partition,crash");
        assert_eq!(
            FaultSet::parse("leave,migcrash").unwrap().kinds(),
            &[FaultKind::Leave, FaultKind::MigrationCrash]
        );
        assert_eq!(
            FaultSet::parse("migcut").unwrap().kinds(),
            &[FaultKind::MigrationCut]
        );
        assert!(matches!(
            FaultSet::parse("meteor"),
            Err(SimError::UnknownFault { .. })
        ));
    }
}
