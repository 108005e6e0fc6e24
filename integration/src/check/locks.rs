//! The lock checkers, on the [`Checker`] interface, for runs of the lock workload.
//!
//! - `dlm-exclusion` and `dlm-lvb`: the rules of [`crate::dlm_check::LockChecker`] (no two
//!   incompatible grants on one name overlap; a value block read under PR or EX is the last
//!   one written under EX, or zeros after the master purged the resource or may have died
//!   with it, or, read first after a node's death, the value a survivor's unlock still
//!   unanswered then wrote: see `CarriedBack`). A node's grants end at its crash or fence,
//!   or when another node's heartbeat declares it dead (the kernel's DLM frees a dead
//!   node's locks then, trusting that it fenced; the stall-fence and quorum checkers judge that it did). What a node declared
//!   dead still reports before its fence (a paused process resuming) is not judged.
//! - `dlm-progress`: every lock, conversion and unlock request finishes, granted or with an
//!   error, within a bound (the heartbeat dead time, quorum delay and o2net idle timeout,
//!   plus a warm-up) after the fault episodes that could hold it up have healed. Requests
//!   of a node that went down are forgotten with it.
//! - `dlm-leave`: a leave asked of a node in the domain (the `Leave`, `MigrationCrash` and
//!   `MigrationCut` faults) ends, within the same bound, unless the node goes down first: an unmount that
//!   hangs (a migration or a reference that never lets go) is a failure a user sees, even
//!   when no lock request of the others is left waiting to show it.
//!
//! All judge only what the node's lock clients report ([`Note::Dlm`]) and the faults asked,
//! never the cores' internals.

use super::{Checker, Life, Tally, Violation, World};
use crate::config::SimConfig;
use crate::dlm_check::{LockChecker, LockEvent};
use crate::dlm_node::DlmNote;
use crate::faults::Action;
use crate::stack::{NodeId, Note};
use crate::time::SimTime;
use crate::trace::{Record, What};
use o2dlm::wire::{LockMode, LockName, Lvb};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Mutual exclusion and value blocks. See the module documentation.
pub struct LockRules {
    rules: LockChecker,
    /// Nodes another node's heartbeat has declared dead in their current boot: what such a
    /// node still sees before its fence takes effect (a paused process resuming) is moot.
    declared_dead: BTreeSet<NodeId>,
    carried: CarriedBack,
    reported: usize,
    tally: Tally,
}

/// The one way a value block legitimately goes back in time (the kernel's, checked against
/// linux 6.1 fs/ocfs2/dlm): an EX holder unlocks with a value block, the master applies it
/// and grants on (later EX holders write newer values), but the reply is lost; the master
/// then dies with every node that saw the newer values. The holder's lock is still on its
/// granted queue, retrying the unlock (`dlmunlock` retries on DLM_NOLOCKMGR/RECOVERING
/// without touching the queues), so recovery sends it as a granted EX lock and
/// `dlm_add_lock_to_array` copies its lksb value block, which holds the write, into the
/// recovery data; the new master takes it as the resource's value
/// (`dlm_process_recovery_data`) and the retried unlock writes it again. (Had the unlock
/// been in flight at that moment instead, `dlm_commit_pending_unlock` drops the lock and,
/// with no other holder to send a block, the new master's is zeros: the
/// `value_blocks_may_be_lost` case.) So after a node's death the
/// first value-block read of the name may be one such unfinished unlock's write, which then
/// is the current value. An unlock that wrote nothing carries back its lock's value block all
/// the same: the lksb of a granted EX or PR lock holds what the lock read at its grant, and
/// `dlm_prepare_lvb_for_migration` copies it whether or not the holder wrote. Only values
/// of unlocks unfinished at the death count, and only until the name is next read or
/// written.
#[derive(Default)]
struct CarriedBack {
    /// What the value block of each granted PR or EX lock holds (read at its grant, or last
    /// written): (node, lock) -> value.
    held: BTreeMap<(NodeId, u64), Lvb>,
    /// Unlocks of PR or EX locks that have not finished: (node, lock) -> (name, the value
    /// their lock holds).
    unfinished: BTreeMap<(NodeId, u64), (LockName, Lvb)>,
    /// Per name, the unlocks that were unfinished when a node died: (node, lock, value).
    at_death: BTreeMap<LockName, Vec<(NodeId, u64, Lvb)>>,
}

impl CarriedBack {
    /// `dead` is gone: its own unlocks can carry nothing back; the others' can.
    fn node_died(&mut self, dead: NodeId) {
        self.unfinished.retain(|&(n, _), _| n != dead);
        self.held.retain(|&(n, _), _| n != dead);
        for (&(n, cookie), &(name, v)) in &self.unfinished {
            let list = self.at_death.entry(name).or_default();
            if !list.contains(&(n, cookie, v)) {
                list.push((n, cookie, v));
            }
        }
    }

    fn note(&mut self, node: NodeId, note: &DlmNote) {
        match *note {
            DlmNote::Granted {
                cookie, mode, lvb, ..
            } => match lvb {
                Some(v) if mode != LockMode::Nl => {
                    self.held.insert((node, cookie), v);
                }
                _ => {
                    self.held.remove(&(node, cookie));
                }
            },
            DlmNote::Released {
                cookie,
                name,
                now_mode,
                wrote,
            } => {
                if let Some(v) = wrote {
                    self.at_death.remove(&name);
                    self.held.insert((node, cookie), v);
                }
                match now_mode {
                    None => {
                        if let Some(v) = self.held.remove(&(node, cookie)) {
                            self.unfinished.insert((node, cookie), (name, v));
                        }
                    }
                    Some(LockMode::Nl) => {
                        self.held.remove(&(node, cookie));
                    }
                    Some(_) => {}
                }
            }
            DlmNote::Unlocked { cookie, .. } => {
                self.unfinished.remove(&(node, cookie));
                self.held.remove(&(node, cookie));
            }
            _ => {}
        }
    }

    /// A grant read `lvb` on `name`: the unfinished unlock that wrote it, if recovery may
    /// have brought it back. Either way this read settles what the name's value is.
    fn read(&mut self, name: &LockName, lvb: &Lvb) -> Option<(NodeId, u64)> {
        let list = self.at_death.remove(name)?;
        list.into_iter()
            .find(|&(_, _, v)| v == *lvb)
            .map(|(n, cookie, _)| (n, cookie))
    }
}

impl LockRules {
    pub fn new(_config: &SimConfig) -> Self {
        LockRules {
            rules: LockChecker::default(),
            declared_dead: BTreeSet::new(),
            carried: CarriedBack::default(),
            reported: 0,
            tally: Tally::default(),
        }
    }

    fn event(&mut self, at: u64, node: NodeId, note: &DlmNote) -> Option<LockEvent> {
        Some(match *note {
            DlmNote::Granted {
                cookie,
                name,
                mode,
                lvb,
            } => {
                self.tally.judged += 1;
                LockEvent::Granted {
                    at,
                    node,
                    cookie,
                    name,
                    mode,
                    lvb,
                }
            }
            DlmNote::Released {
                cookie,
                name,
                now_mode,
                wrote,
            } => LockEvent::Released {
                at,
                node,
                cookie,
                name,
                now_mode,
                wrote,
            },
            DlmNote::Purged { name } => LockEvent::Purged { at, name },
            _ => return None,
        })
    }
}

impl Checker for LockRules {
    fn name(&self) -> &'static str {
        "dlm-locks"
    }

    fn observe(&mut self, rec: &Record<'_>, world: &World<'_>, out: &mut Vec<Violation>) {
        let Some(node) = rec.node else { return };
        match &rec.what {
            What::Crash | What::Fence(_) => {
                self.rules.node_gone(node);
                self.rules.value_blocks_may_be_lost();
                self.carried.node_died(node);
            }
            What::Boot { .. } => {
                self.declared_dead.remove(&node);
            }
            What::Note(Note::HbDown { node: dead, .. }) if *dead != node => {
                // A DOWN seen shortly after a reboot is the old boot's (its generation
                // changed): only a boot older than the dead time can be the one declared dead.
                let this_boot = world.nodes.get(usize::from(*dead)).is_some_and(|v| {
                    v.life == Life::Paused
                        || (v.life == Life::Running
                            && v.booted_at + world.config.timing.dead_time() < world.now)
                });
                if this_boot {
                    self.declared_dead.insert(*dead);
                }
                self.rules.node_gone(*dead);
                self.rules.value_blocks_may_be_lost();
                self.carried.node_died(*dead);
            }
            What::Note(Note::Dlm(_)) if self.declared_dead.contains(&node) => {}
            What::Note(Note::Dlm(d)) => {
                let at = rec.at.as_millis();
                self.carried.note(node, d);
                if let DlmNote::Granted {
                    name,
                    mode,
                    lvb: Some(v),
                    ..
                } = *d
                {
                    if mode != LockMode::Nl {
                        if let Some((n, cookie)) = self.carried.read(&name, &v) {
                            // Recovery restored that unlock's write: it is the value now.
                            self.rules.see(LockEvent::Released {
                                at,
                                node: n,
                                cookie,
                                name,
                                now_mode: None,
                                wrote: Some(v),
                            });
                        }
                    }
                }
                if let Some(ev) = self.event(at, node, d) {
                    self.rules.see(ev);
                }
                let found = self.rules.violations();
                for v in found.iter().skip(self.reported) {
                    let checker = if v.starts_with("value block") {
                        "dlm-lvb"
                    } else {
                        "dlm-exclusion"
                    };
                    out.push(Violation {
                        checker,
                        at: rec.at,
                        since: super::before(rec.at, Duration::from_secs(5)),
                        nodes: world.running(),
                        message: v.clone(),
                    });
                }
                self.reported = found.len();
            }
            _ => {}
        }
    }

    fn finish(&mut self, _world: &World<'_>, _out: &mut Vec<Violation>) {}

    fn tally(&self) -> Tally {
        self.tally
    }
}

/// A request under way: when it was made and what it was.
#[derive(Clone, Debug)]
struct Pending {
    since: SimTime,
    what: String,
}

/// Every request finishes. See the module documentation.
pub struct LockProgress {
    bound: Duration,
    pending: BTreeMap<(NodeId, u64), Pending>,
    tally: Tally,
}

/// When something asked at `since` must have finished: `bound` after it was asked or after
/// the last fault episode that began before the deadline healed.
fn deadline(world: &World<'_>, bound: Duration, since: SimTime) -> SimTime {
    let mut due = since + bound;
    for ep in &world.plan.episodes {
        if ep.start <= due && ep.recover + bound > due {
            due = ep.recover + bound;
        }
    }
    due
}

impl LockProgress {
    pub fn new(config: &SimConfig) -> Self {
        LockProgress {
            bound: crate::faults::tail(&config.timing),
            pending: BTreeMap::new(),
            tally: Tally::default(),
        }
    }

    fn judge(&mut self, world: &World<'_>, out: &mut Vec<Violation>) {
        let late: Vec<((NodeId, u64), Pending)> = self
            .pending
            .iter()
            .filter(|(_, p)| deadline(world, self.bound, p.since) < world.now)
            .map(|(k, p)| (*k, p.clone()))
            .collect();
        for ((node, cookie), p) in late {
            self.pending.remove(&(node, cookie));
            out.push(Violation {
                checker: "dlm-progress",
                at: world.now,
                since: p.since,
                nodes: vec![node],
                message: format!(
                    "n{node}: {} (lock {cookie:#x}) made at {} has not finished by {} (bound {:?} after faults heal)",
                    p.what,
                    p.since.to_string().trim(),
                    world.now.to_string().trim(),
                    self.bound
                ),
            });
        }
    }
}

impl Checker for LockProgress {
    fn name(&self) -> &'static str {
        "dlm-progress"
    }

    fn observe(&mut self, rec: &Record<'_>, _world: &World<'_>, _out: &mut Vec<Violation>) {
        let Some(node) = rec.node else { return };
        match &rec.what {
            What::Crash | What::Fence(_) | What::Boot { .. } => {
                self.pending.retain(|&(n, _), _| n != node);
            }
            What::Note(Note::Dlm(d)) => match d {
                DlmNote::Requested {
                    cookie,
                    name,
                    mode,
                    convert,
                } => {
                    let what = if *convert {
                        "conversion"
                    } else {
                        "lock request"
                    };
                    self.pending.insert(
                        (node, *cookie),
                        Pending {
                            since: rec.at,
                            what: format!("{what} of {name} to {mode}"),
                        },
                    );
                }
                DlmNote::Released {
                    cookie,
                    name,
                    now_mode: None,
                    ..
                } => {
                    self.pending.insert(
                        (node, *cookie),
                        Pending {
                            since: rec.at,
                            what: format!("unlock of {name}"),
                        },
                    );
                }
                DlmNote::Granted { cookie, .. }
                | DlmNote::Failed { cookie, .. }
                | DlmNote::Unlocked { cookie, .. }
                    if self.pending.remove(&(node, *cookie)).is_some() =>
                {
                    self.tally.judged += 1;
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn tick(&mut self, world: &World<'_>, out: &mut Vec<Violation>) {
        self.judge(world, out);
    }

    fn finish(&mut self, world: &World<'_>, out: &mut Vec<Violation>) {
        self.tally.open += self.pending.len() as u64;
        self.judge(world, out);
    }

    fn tally(&self) -> Tally {
        self.tally
    }
}

/// Every leave ends. See the module documentation.
pub struct LeaveProgress {
    bound: Duration,
    /// Nodes in the domain: joined, and neither left nor gone down since.
    members: BTreeSet<NodeId>,
    /// Leaves asked of members that have not ended: node -> when asked.
    pending: BTreeMap<NodeId, SimTime>,
    tally: Tally,
}

impl LeaveProgress {
    pub fn new(config: &SimConfig) -> Self {
        LeaveProgress {
            bound: crate::faults::tail(&config.timing),
            members: BTreeSet::new(),
            pending: BTreeMap::new(),
            tally: Tally::default(),
        }
    }

    fn judge(&mut self, world: &World<'_>, out: &mut Vec<Violation>) {
        let late: Vec<(NodeId, SimTime)> = self
            .pending
            .iter()
            .filter(|(_, since)| deadline(world, self.bound, **since) < world.now)
            .map(|(n, since)| (*n, *since))
            .collect();
        for (node, since) in late {
            self.pending.remove(&node);
            out.push(Violation {
                checker: "dlm-leave",
                at: world.now,
                since,
                nodes: world.running(),
                message: format!(
                    "n{node}: the leave of the domain asked at {} has not ended by {} (bound {:?} after faults heal)",
                    since.to_string().trim(),
                    world.now.to_string().trim(),
                    self.bound
                ),
            });
        }
    }
}

impl Checker for LeaveProgress {
    fn name(&self) -> &'static str {
        "dlm-leave"
    }

    fn observe(&mut self, rec: &Record<'_>, _world: &World<'_>, _out: &mut Vec<Violation>) {
        if let What::Fault {
            action: Action::Leave { node, .. },
            ..
        } = rec.what
        {
            // A node out of the domain (joining, or leaving already) ignores it.
            if self.members.contains(node) {
                self.pending.entry(*node).or_insert(rec.at);
            }
            return;
        }
        let Some(node) = rec.node else { return };
        match &rec.what {
            What::Crash | What::Fence(_) | What::Boot { .. } => {
                self.members.remove(&node);
                self.pending.remove(&node);
            }
            What::Note(Note::Dlm(DlmNote::Joined)) => {
                self.members.insert(node);
            }
            What::Note(Note::Dlm(DlmNote::Left)) => {
                self.members.remove(&node);
                if self.pending.remove(&node).is_some() {
                    self.tally.judged += 1;
                }
            }
            _ => {}
        }
    }

    fn tick(&mut self, world: &World<'_>, out: &mut Vec<Violation>) {
        self.judge(world, out);
    }

    fn finish(&mut self, world: &World<'_>, out: &mut Vec<Violation>) {
        self.tally.open += self.pending.len() as u64;
        self.judge(world, out);
    }

    fn tally(&self) -> Tally {
        self.tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> LockName {
        LockName::new(b"x").expect("valid")
    }

    fn unlock(c: &mut CarriedBack, node: NodeId, cookie: u64, v: u8) {
        granted(c, node, cookie, LockMode::Ex, 0);
        c.note(
            node,
            &DlmNote::Released {
                cookie,
                name: name(),
                now_mode: None,
                wrote: Some([v; 64]),
            },
        );
    }

    fn granted(c: &mut CarriedBack, node: NodeId, cookie: u64, mode: LockMode, v: u8) {
        c.note(
            node,
            &DlmNote::Granted {
                cookie,
                name: name(),
                mode,
                lvb: Some([v; 64]),
            },
        );
    }

    fn release(c: &mut CarriedBack, node: NodeId, cookie: u64) {
        c.note(
            node,
            &DlmNote::Released {
                cookie,
                name: name(),
                now_mode: None,
                wrote: None,
            },
        );
    }

    #[test]
    fn an_unlock_that_wrote_nothing_carries_back_what_its_lock_read() {
        let mut c = CarriedBack::default();
        granted(&mut c, 2, 5, LockMode::Ex, 6);
        release(&mut c, 2, 5);
        granted(&mut c, 3, 6, LockMode::Nl, 0);
        release(&mut c, 3, 6);
        c.node_died(0);
        assert_eq!(c.read(&name(), &[6; 64]), Some((2, 5)));

        granted(&mut c, 2, 7, LockMode::Pr, 8);
        release(&mut c, 2, 7);
        c.node_died(0);
        assert_eq!(c.read(&name(), &[0; 64]), None, "an NL lock holds no value");
        granted(&mut c, 2, 8, LockMode::Pr, 9);
        release(&mut c, 2, 8);
        finished(&mut c, 2, 8);
        c.node_died(0);
        assert_eq!(c.read(&name(), &[9; 64]), None, "finished before the death");
    }

    fn finished(c: &mut CarriedBack, node: NodeId, cookie: u64) {
        c.note(
            node,
            &DlmNote::Unlocked {
                cookie,
                name: name(),
                status: o2dlm::wire::DlmStatus::Normal,
            },
        );
    }

    #[test]
    fn an_unlock_unfinished_at_a_death_may_come_back_once() {
        let mut c = CarriedBack::default();
        unlock(&mut c, 3, 7, 1);
        c.node_died(1);
        assert_eq!(
            c.read(&name(), &[2; 64]),
            None,
            "only the unlock's own value"
        );
        c.node_died(2);
        assert_eq!(c.read(&name(), &[1; 64]), Some((3, 7)));
        assert_eq!(c.read(&name(), &[1; 64]), None, "the first read settles it");
    }

    #[test]
    fn finished_dead_or_overwritten_unlocks_come_back_never() {
        let mut c = CarriedBack::default();
        unlock(&mut c, 3, 7, 1);
        finished(&mut c, 3, 7);
        c.node_died(1);
        assert_eq!(c.read(&name(), &[1; 64]), None, "finished before the death");

        unlock(&mut c, 3, 8, 1);
        c.node_died(3);
        assert_eq!(c.read(&name(), &[1; 64]), None, "its writer died");

        unlock(&mut c, 2, 9, 1);
        c.node_died(1);
        unlock(&mut c, 0, 10, 4);
        assert_eq!(
            c.read(&name(), &[1; 64]),
            None,
            "written over after the death"
        );
    }
}
