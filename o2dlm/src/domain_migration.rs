//! The domain core's side of migration (`dlm_migrate_lockres` and its handlers): the core
//! owns a [`Migration`] machine and is its [`MigrationStore`]. A child module of
//! `domain`, so that it reaches the core's resource table without widening it.
//!
//! The three roles on a [`DomainCore`]:
//! - old master (leaving): each resource others use is marked MIGRATING (creates, converts
//!   and unlocks sent to it are answered `DLM_MIGRATING` and asked again by the requester)
//!   with a MIGRATION master list entry, its queues go to the target in MIG_LOCKRES, and
//!   after the target's FINISH_MIGRATION assert it is the target's: this node only holds a
//!   reference, which it drops (DEREF) like any unused resource before it exits;
//! - target: the queues are rebuilt aside until the last part, then they replace this
//!   node's view of the resource. Its own locks are taken from the records, which are the
//!   old master's truth: a request of its own the old master never took is asked again of
//!   the rebuilt queues, a grant whose proxy AST has not arrived yet is told now (the AST
//!   that follows finds the resource mastered here and is dropped);
//! - bystander: MIGRATE_REQUEST marks the resource MIGRATING (its requests wait) with a
//!   MIGRATION entry; the FINISH_MIGRATION assert names the new owner and runs them.
//!
//! Deaths: a target that dies before asserting to the old master makes it try again (a
//! bystander still waiting for that target's assert forgets the migration); an old master
//! that dies after its last part leaves the resource to the target, which finishes with
//! the others, and bystanders waiting for that target's assert do not recover it; an old
//! master that dies earlier leaves the target's partial queues dropped and recovery to run.
//!
//! Two windows the kernel leaves open (it crashes, or ends with two masters) are closed:
//! - the old master dies after its last part, and a bystander hears of the death before the
//!   target's MIGRATE_REQUEST: the resource is RECOVERING there, and perhaps its recovery data
//!   is on its way. The request (or the assert) is taken all the same: the target is the
//!   master (`take_live_master`);
//! - the target dies after its assert reached a bystander but before it reached the old
//!   master, which keeps the resource: it asserts it again (ASSERT_MASTER with REQUERY) to
//!   every member, which take it back from recovery (EAGAIN until they see the death too).
//!
//! In both, the live master answers the recovery master's LOCK_REQUEST only once every
//! member has answered it ([`crate::migration::Migration::settling`]), so no member takes
//! the recovery master as owner at FINALIZE before it has heard; and the recovery master
//! drops recovery data for a resource a live node masters, or claimed while this node had
//! no resource (the claims kept in [`MigState`]), as the kernel drops data when
//! MASTER_REQUERY finds a master.

use super::{DomainCore, Op, Output, Res, Role, Sent};
use crate::fasthash::FastMap;
use crate::lockres::{LockId, LockResource, Migrated};
use crate::mastery::{Mle, MleKind};
use crate::migration::{
    is_migratable, pack_migration, pick_target, MigInput, MigOutput, Migration, MigrationStore,
};
use crate::secondary::{OwnLocks, PendingOp};
use crate::wire::{
    errno, DlmMessage, DlmStatus, DomainName, LkmFlags, LockMode, LockName, Lvb, MigLockres,
    NodeMap, QueueKind, LVB_LEN, MRES_ALL_DONE, NODE_UNKNOWN,
};
use crate::Error;

/// A resource whose queues arrive here from `old_master`.
#[derive(Debug)]
struct Incoming {
    old_master: u8,
    engine: LockResource,
    /// A node that is gone held EX: the value block is not to be trusted.
    dead_ex: bool,
}

/// What the core keeps for migration.
#[derive(Debug)]
pub(super) struct MigState {
    /// Taken out while it runs (it calls back into the core as its store).
    machine: Option<Migration>,
    incoming: FastMap<LockName, Incoming>,
    /// Sequence of multi-part MIG_LOCKRES messages this node sends.
    next_cookie: u64,
    /// Resources this node has handed over since it started leaving (for the log line).
    handed_over: u64,
    /// The resources this node handed over: a request sent before its sender heard of the
    /// new master is told to ask again (`DLM_FORWARD`), not that the lock is unknown or the
    /// domain left, even once the reference left here is dropped and the domain is left.
    gone_to: FastMap<LockName, u8>,
    /// Names this node has no resource for that a live node said it masters by migration
    /// (MIGRATE_REQUEST) or kept after its target died (ASSERT_MASTER REQUERY). As recovery
    /// master, this node must not remaster them from another node's recovery data, which may
    /// have left before that node heard the claim. Kept until the old master's migrations
    /// are over (it exits), the claimer dies, or recovery of the old master ends.
    claims: FastMap<LockName, Claim>,
    /// Unlocks and cancels this node took as done when the master of their resource died
    /// (the kernel's commit): recovery rebuilds without them, but a live master that turns
    /// out to hold the queues ([`DomainCore::take_live_master`]) is told them again.
    committed: FastMap<LockName, Vec<Committed>>,
}

/// An unlock or cancel taken as done when its master died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Committed {
    cookie: u64,
    cancel: bool,
    /// The value block the unlock wrote back.
    lvb: Option<Lvb>,
}

#[derive(Debug, Clone, Copy)]
struct Claim {
    /// The live master.
    by: u8,
    /// The old master it took the resource from; `NODE_UNKNOWN` for an old master's
    /// re-assert after its target died.
    from: u8,
}

impl MigState {
    pub(super) fn new(node: u8, domain: DomainName) -> MigState {
        MigState {
            machine: Some(Migration::new(node, domain, NodeMap::new())),
            incoming: FastMap::default(),
            next_cookie: 1,
            handed_over: 0,
            gone_to: FastMap::default(),
            claims: FastMap::default(),
            committed: FastMap::default(),
        }
    }

    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.machine.as_ref().and_then(|m| m.next_deadline())
    }

    /// See [`Migration::settling`].
    pub(super) fn settling(&self, dead: u8) -> bool {
        self.machine.as_ref().is_some_and(|m| m.settling(dead))
    }
}

impl DomainCore {
    /// Runs the migration machine on one input with this core as its store, and carries
    /// out what it asks for.
    pub(super) fn mig_handle(&mut self, now: u64, input: MigInput) -> i32 {
        let Some(mut m) = self.mig.machine.take() else {
            // Re-entered from a store call: the outer run sees the same facts.
            return 0;
        };
        let status = m.handle(now, input, self);
        let outs: Vec<MigOutput> = m.drain_outputs().collect();
        let in_flight = m.in_flight();
        self.mig.machine = Some(m);
        if let Some((name, target)) = in_flight {
            self.add_migration_mle(name, Some(self.cfg.node), target);
        }
        for o in outs {
            match o {
                MigOutput::Send { token, to, msg } => self.send(to, msg, Sent::Mig(token)),
                MigOutput::Migrated { name, new_master } => {
                    self.mig.handed_over += 1;
                    tracing::debug!(node = self.cfg.node, domain = %self.cfg.name, lock = %name, new_master, "o2dlm: {name} migrated to node {new_master}");
                }
                MigOutput::Done => {
                    if self.mig.handed_over > 0 {
                        tracing::info!(node = self.cfg.node, domain = %self.cfg.name, resources = self.mig.handed_over, "o2dlm: leaving domain {}: {} resources migrated", self.cfg.name, self.mig.handed_over);
                        self.mig.handed_over = 0;
                    }
                }
            }
        }
        // Recovery data held back while a migration with the dead node settled may go now.
        if self.reco.as_ref().is_some_and(|r| r.has_deferred()) {
            self.reco_handle(now, crate::recovery::RecoInput::Tick);
        }
        status
    }

    /// What a master-side handler answers for a resource it no longer has (or once it has
    /// left the domain): `DLM_FORWARD` if it handed the resource over, else `otherwise`.
    pub(super) fn handed_over_or(&self, name: &LockName, otherwise: DlmStatus) -> DlmStatus {
        if self.mig.gone_to.contains_key(name) {
            DlmStatus::Forward
        } else {
            otherwise
        }
    }

    /// A leaving node whose last reference is gone (typically the deref after the last
    /// migration) says goodbye at once rather than at the leave loop's next turn, as the
    /// kernel's loop ends as soon as a pass finds nothing left.
    pub(super) fn leave_when_empty(&mut self, now: u64) {
        if self.leaving && self.res.is_empty() {
            self.leave_loop(now);
        }
    }

    /// The leave loop's migration step: hand over what others use, one at a time.
    pub(super) fn migrate_on_leave(&mut self, now: u64) {
        if self.leaving {
            let exiting = self.exit_map;
            self.mig_handle(now, MigInput::Leave { exiting });
        }
    }

    /// MIG_LOCKRES (MIGRATION), MIGRATE_REQUEST, ASSERT_MASTER (FINISH_MIGRATION).
    pub(super) fn mig_message(&mut self, now: u64, from: u8, msg: DlmMessage) -> i32 {
        if !self.domain_map.contains(from) {
            tracing::warn!(node = self.cfg.node, domain = %self.cfg.name, peer = from, "o2dlm: {} from node {from}, not a member", msg.msg_type());
            return errno::EINVAL;
        }
        self.mig_handle(now, MigInput::Message { from, msg })
    }

    /// `node` left or died (before the domain forgets it).
    pub(super) fn mig_node_gone(&mut self, now: u64, node: u8, died: bool) {
        // A dead claimer's claims are void; an old master that exits cleanly has settled all
        // of its migrations.
        self.mig
            .claims
            .retain(|_, c| c.by != node && (died || c.from != node));
        // Target: an old master gone before its last part leaves nothing usable.
        let partial: Vec<LockName> = self
            .mig
            .incoming
            .iter()
            .filter(|(_, i)| i.old_master == node)
            .map(|(n, _)| *n)
            .collect();
        for name in partial {
            self.mig.incoming.remove(&name);
            self.end_migrating(now, name);
        }
        // Bystander: migrations between two nodes, one of which is gone.
        let entries: Vec<(LockName, Option<u8>, Option<u8>)> = self
            .mles
            .iter()
            .filter(|(_, m)| m.kind == MleKind::Migration)
            .map(|(n, m)| (*n, m.master, m.new_master))
            .collect();
        for (name, master, new_master) in entries {
            if new_master == Some(node) && master != Some(self.cfg.node) {
                // The old master keeps the resource and tries again.
                self.mles.remove(&name);
                self.end_migrating(now, name);
                if self.res.get(&name).is_some_and(|r| r.in_progress) {
                    // A lookup of ours waited for that target's assert: it asks anew (after
                    // recovery), and finds the old master.
                    self.start_mastery(now, name);
                }
            } else if master == Some(node) && died {
                // The target has every lock: its assert comes, no recovery.
                if let (Some(t), Some(res)) = (new_master, self.res.get_mut(&name)) {
                    if res.owner == Some(node) {
                        res.owner = Some(t);
                    }
                }
            }
        }
        self.mig_handle(now, MigInput::NodeGone(node));
    }

    /// Recovery master: whether recovery data for `name` is to be dropped because a live node
    /// masters it (a migration's target or an old master that kept it; see
    /// [`DomainCore::take_live_master`]), as the kernel drops data when MASTER_REQUERY finds a
    /// master.
    pub(super) fn has_live_master(&self, name: &LockName) -> bool {
        let me = self.cfg.node;
        let live = |n: u8| n == me || self.domain_map.contains(n);
        if let Some(r) = self.res.get(name) {
            if r.recovering {
                return false;
            }
            if let Some(o) = r.owner {
                return live(o);
            }
        }
        // No resource, or a lookup in progress.
        self.mig.claims.get(name).is_some_and(|c| live(c.by))
    }

    /// Recovery of `dead` is over: claims that only mattered to it go.
    pub(super) fn recovered_claims(&mut self, dead: u8) {
        self.mig
            .claims
            .retain(|_, c| c.from != dead && c.from != NODE_UNKNOWN);
    }

    /// An unlock (writing back `lvb`) or, `cancel`, the cancel of a new request, of lock
    /// `cookie` on `name` was taken as done because the master died.
    pub(super) fn committed_at_death(
        &mut self,
        name: LockName,
        cookie: u64,
        cancel: bool,
        lvb: Option<Lvb>,
    ) {
        let c = Committed {
            cookie,
            cancel,
            lvb,
        };
        self.mig.committed.entry(name).or_default().push(c);
    }

    /// Recovery gave these resources their new master, rebuilt without the committed locks.
    pub(super) fn forget_committed(&mut self, names: &[LockName]) {
        if !self.mig.committed.is_empty() {
            for n in names {
                self.mig.committed.remove(n);
            }
        }
    }

    /// A live master took over `name` from recovery here: its queues still hold what this
    /// node took as unlocked when the old master died. Told once the migration has ended there
    /// (a master still MIGRATING would answer DLM_MIGRATING).
    pub(super) fn resend_committed(&mut self, name: &LockName) {
        let me = self.cfg.node;
        let Some(owner) = self
            .res
            .get(name)
            .and_then(|r| (!r.recovering && !r.migrating).then_some(r.owner).flatten())
        else {
            return;
        };
        if owner == me || !self.domain_map.contains(owner) {
            return;
        }
        for c in self.mig.committed.remove(name).unwrap_or_default() {
            let msg = crate::wire::UnlockLock {
                cookie: c.cookie,
                flags: if c.cancel {
                    LkmFlags::CANCEL
                } else if c.lvb.is_some() {
                    LkmFlags::VALBLK
                } else {
                    LkmFlags::empty()
                },
                node_idx: me,
                name: *name,
                lvb: c.lvb,
            };
            self.send(
                owner,
                DlmMessage::UnlockLock(msg),
                Sent::Committed(*name, c),
            );
        }
    }

    /// The master answered a re-sent unlock: one it cannot take yet (its own migration or
    /// recovery of the resource not over) is sent again a little later.
    pub(super) fn committed_reply(
        &mut self,
        now: u64,
        name: LockName,
        c: Committed,
        result: Result<i32, i32>,
    ) {
        let busy = matches!(
            result.ok().and_then(DlmStatus::from_wire),
            Some(DlmStatus::Migrating | DlmStatus::Recovering | DlmStatus::Forward)
        );
        if busy {
            self.mig.committed.entry(name).or_default().push(c);
            self.defer(
                now + super::LOCK_RETRY_MS,
                super::Deferred::ResendCommitted(name),
            );
        }
    }

    /// Whether `name` is RECOVERING here for a master that is gone: its owner is dead, or it
    /// is this node's because recovery rebuilt it here and has not finished.
    fn recovering_for_the_dead(&self, name: &LockName) -> bool {
        let me = self.cfg.node;
        self.res.get(name).is_some_and(|r| {
            r.recovering
                && match r.owner {
                    Some(o) => o == me || !self.domain_map.contains(o),
                    None => true,
                }
        })
    }

    /// A resource RECOVERING here has a live master after all, `owner`, that holds its queues:
    /// the target of a migration whose old master died after its last record, or an old
    /// master whose target died before telling it. Recovery must not remaster it: this node's
    /// view goes back to a resource mastered by `owner` (this node's locks as queues rebuilt
    /// here had them; its requests parked for the new master stay parked until the caller
    /// ends the wait), and the recovery data it sent, if any, is dropped where it arrives.
    fn take_live_master(&mut self, name: &LockName, owner: u8) {
        let me = self.cfg.node;
        let Some(res) = self.res.get_mut(name) else {
            return;
        };
        tracing::warn!(node = me, domain = %self.cfg.name, lock = %name, "o2dlm: node {owner} holds the queues of {name}, which was recovering here; it stays mastered there");
        if let Role::Master(engine) = &res.role {
            res.role = Role::Remote(OwnLocks::from_master(me, engine));
        }
        res.recovering = false;
        res.in_progress = false;
        res.owner = Some(owner);
        res.refmap = NodeMap::new();
        res.unused_since = None;
    }

    /// ASSERT_MASTER with REQUERY from `a.node_idx`: an old master whose migration target
    /// died before telling it still masters the resource, though this node may have heard
    /// the target's assert. EAGAIN while this node still counts that target alive (the old
    /// master asks again until it sees the death too).
    pub(super) fn handle_reclaim(&mut self, now: u64, a: crate::wire::AssertMaster) -> i32 {
        let me = self.cfg.node;
        let Some(res) = self.res.get(&a.name) else {
            let claim = Claim {
                by: a.node_idx,
                from: NODE_UNKNOWN,
            };
            self.mig.claims.insert(a.name, claim);
            return 0;
        };
        let owner = res.owner;
        match owner {
            Some(o) if o == a.node_idx => crate::wire::ASSERT_RESPONSE_MASTERY_REF,
            _ if self.recovering_for_the_dead(&a.name) => {
                self.take_live_master(&a.name, a.node_idx);
                self.end_migrating(now, a.name);
                crate::wire::ASSERT_RESPONSE_MASTERY_REF
            }
            Some(o) if o != me && self.domain_map.contains(o) => errno::EAGAIN,
            Some(_) => {
                tracing::error!(node = me, domain = %self.cfg.name, lock = %a.name, "o2dlm: node {} reclaims {}, which is mastered here", a.node_idx, a.name);
                errno::EINVAL
            }
            // Mastery is in progress (or waits for recovery): its own questions find the
            // master, which then counts this node's reference; meanwhile the claim keeps
            // recovery here from taking the resource.
            None => {
                let claim = Claim {
                    by: a.node_idx,
                    from: NODE_UNKNOWN,
                };
                self.mig.claims.insert(a.name, claim);
                0
            }
        }
    }

    fn add_migration_mle(&mut self, name: LockName, master: Option<u8>, new_master: u8) {
        if self
            .mles
            .get(&name)
            .is_some_and(|m| m.kind == MleKind::Migration && m.new_master == Some(new_master))
        {
            return;
        }
        let mut mle = Mle::new(MleKind::Migration, name, self.cfg.node, &self.domain_map);
        mle.master = master;
        mle.new_master = Some(new_master);
        self.mles.insert(name, mle);
        self.asking.remove(&name);
        self.counts.mles_total[2] += 1;
    }

    fn drop_migration_mle(&mut self, name: &LockName) {
        if self
            .mles
            .get(name)
            .is_some_and(|m| m.kind == MleKind::Migration)
        {
            self.mles.remove(name);
        }
    }

    /// MIGRATING ends here: what waited runs.
    fn end_migrating(&mut self, now: u64, name: LockName) {
        let Some(res) = self.res.get_mut(&name) else {
            return;
        };
        res.migrating = false;
        if self.mig.committed.contains_key(&name) {
            self.resend_committed(&name);
        }
        let Some(res) = self.res.get_mut(&name) else {
            return;
        };
        let ops = std::mem::take(&mut res.waiting);
        self.kick(now, name);
        for op in ops {
            self.run_op(now, op);
        }
        self.note_if_unused(now, name);
    }

    /// Target, last part in: the rebuilt queues become this node's resource.
    fn adopt_migrated(&mut self, name: LockName) {
        let me = self.cfg.node;
        let Some(inc) = self.mig.incoming.remove(&name) else {
            return;
        };
        let Some(res) = self.res.get_mut(&name) else {
            return;
        };
        let before = std::mem::replace(&mut res.role, Role::Master(inc.engine));
        res.owner = Some(me);
        res.in_progress = false;
        // A mastery of ours in progress is settled: the resource is ours.
        if self
            .mles
            .get(&name)
            .is_some_and(|m| m.kind != MleKind::Migration)
        {
            self.mles.remove(&name);
            self.asking.remove(&name);
        }
        if let Role::Remote(own) = before {
            self.reconcile_own(name, &own);
        }
    }

    /// Target: this node's locks as it saw them (`own`) against the old master's records,
    /// now on the queues here.
    fn reconcile_own(&mut self, name: LockName, own: &OwnLocks) {
        let me = self.cfg.node;
        for l in own.locks() {
            let cookie = l.cookie;
            let Some(meta) = self.own.get(&cookie).cloned() else {
                continue;
            };
            let (rec, lvb) = match self.res.get(&name).map(|r| &r.role) {
                Some(Role::Master(e)) => (
                    e.find(LockId { node: me, cookie })
                        .map(|(q, lk)| (q, lk.mode)),
                    *e.lvb(),
                ),
                _ => continue,
            };
            let was_granted = |mode: LockMode| l.queue == QueueKind::Granted && l.mode == mode;
            // The flags that decide whether a grant carries the value block.
            let flags = match (l.queue, meta.convert) {
                (QueueKind::Converting, Some((_, f, _))) => f,
                _ => meta.flags,
            };
            match (l.pending, rec) {
                (Some(PendingOp::Unlock), Some(_)) => {
                    let flags = if meta.unlock_puts_lvb {
                        LkmFlags::VALBLK
                    } else {
                        LkmFlags::empty()
                    };
                    let lvb = meta.lvb;
                    self.park(name, Op::Unlock { cookie, flags, lvb });
                }
                (Some(PendingOp::Unlock), None) => {
                    self.own.remove(&cookie);
                    self.out.push(Output::Unlocked {
                        cookie,
                        status: DlmStatus::Normal,
                        removed: true,
                        cancel: false,
                    });
                }
                (Some(PendingOp::Cancel), None) => {
                    self.own.remove(&cookie);
                    self.tell_cancelled(cookie, true);
                }
                (Some(PendingOp::Cancel), Some((QueueKind::Granted, mode))) => {
                    if l.queue == QueueKind::Converting && l.convert_type != Some(mode) {
                        // The conversion was cancelled.
                        self.tell_cancelled(cookie, false);
                    } else {
                        if !was_granted(mode) {
                            self.tell_grant(cookie, mode, flags, &lvb);
                        }
                        self.out.push(Output::Unlocked {
                            cookie,
                            status: DlmStatus::Cancelgrant,
                            removed: false,
                            cancel: true,
                        });
                    }
                }
                (Some(PendingOp::Cancel), Some(_)) => {
                    let op = Op::Unlock {
                        cookie,
                        flags: LkmFlags::CANCEL,
                        lvb: [0; LVB_LEN],
                    };
                    self.park(name, op);
                }
                (Some(PendingOp::Lock), None) => {
                    let op = Op::Lock {
                        cookie,
                        mode: meta.mode,
                        flags: meta.flags,
                    };
                    self.park(name, op);
                }
                (Some(PendingOp::Convert), Some((QueueKind::Granted, mode))) if mode == l.mode => {
                    match meta.convert {
                        Some((mode, flags, lvb)) => {
                            let op = Op::Convert {
                                cookie,
                                mode,
                                flags,
                                lvb,
                            };
                            self.park(name, op);
                        }
                        None => self.out.push(Output::Done {
                            cookie,
                            result: Err(DlmStatus::Denied),
                        }),
                    }
                }
                (_, Some((QueueKind::Granted, mode))) => {
                    if !was_granted(mode) {
                        self.tell_grant(cookie, mode, flags, &lvb);
                    }
                }
                (_, None) => {
                    tracing::error!(node = me, domain = %self.cfg.name, lock = %name, cookie, "o2dlm: own lock {cookie:#x} on {name} is not in the migrated queues; dropped");
                    self.own.remove(&cookie);
                }
                (_, Some(_)) => {}
            }
        }
    }

    /// A cancel took: the request (or conversion) ends with DLM_CANCEL and the cancel is
    /// done; `removed`: the lock is gone (it was a new request).
    pub(super) fn tell_cancelled(&mut self, cookie: u64, removed: bool) {
        self.out.push(Output::Done {
            cookie,
            result: Err(DlmStatus::Cancel),
        });
        self.out.push(Output::Unlocked {
            cookie,
            status: DlmStatus::Normal,
            removed,
            cancel: true,
        });
    }

    /// A grant the old master made whose proxy AST has not arrived: told now.
    fn tell_grant(&mut self, cookie: u64, mode: LockMode, flags: LkmFlags, lvb: &crate::wire::Lvb) {
        let lvb = (flags.contains(LkmFlags::VALBLK) && mode >= LockMode::Pr).then_some(*lvb);
        if let (Some(v), Some(m)) = (lvb, self.own.get_mut(&cookie)) {
            m.lvb = v;
        }
        self.out.push(Output::Done {
            cookie,
            result: Ok(super::Grant { mode, lvb }),
        });
    }

    fn stage_migrated(
        &mut self,
        from: u8,
        mres: &MigLockres,
        members: &NodeMap,
    ) -> Result<(), Error> {
        let me = self.cfg.node;
        let name = mres.name;
        let refuse = |reason| Err(Error::Mastery { name, reason });
        if self.leaving || self.state != crate::join::DomainState::Joined {
            return refuse("migration target is not a member in good standing");
        }
        if let Some(r) = self.res.get(&name) {
            if r.recovering {
                return refuse("migrated resource is recovering here");
            }
            if r.dropping_ref {
                return refuse("migrated resource's reference is being dropped here");
            }
            if r.owner == Some(me) && !self.mig.incoming.contains_key(&name) {
                return refuse("migrated resource is already mastered here");
            }
        }
        self.mig.gone_to.remove(&name);
        let inc = self.mig.incoming.entry(name).or_insert_with(|| Incoming {
            old_master: from,
            engine: LockResource::new(name),
            dead_ex: false,
        });
        if inc.old_master != from {
            return refuse("migrated resource comes from two old masters");
        }
        let counts = &mut self.counts;
        let res = self.res.entry(name).or_insert_with(|| {
            counts.resources_total += 1;
            Box::new(Res::new(counts.resources_total))
        });
        res.migrating = true;
        res.unused_since = None;
        for ml in &mres.locks {
            if !members.contains(ml.node) {
                // The old master did not know of its death yet: the clean-up it would have
                // done happens here.
                inc.dead_ex |= ml.list != QueueKind::Blocked && ml.type_ == Some(LockMode::Ex);
                continue;
            }
            // This node's own locks come from the records too: the old master's queues are
            // the truth (see `reconcile_own`).
            match inc
                .engine
                .add_migrated_lock(NODE_UNKNOWN, mres.flags, &mres.lvb, ml)?
            {
                Migrated::Reference(n) | Migrated::Created(n) if n != me => res.refmap.insert(n),
                _ => {}
            }
        }
        // Migration carries the master's value block as it is.
        inc.engine.set_lvb(mres.lvb);
        if inc.dead_ex {
            inc.engine.invalidate_lvb();
        }
        Ok(())
    }
}

impl MigrationStore for DomainCore {
    fn may_migrate(&self) -> bool {
        // Recovery first: its resources may move anyway.
        !self.reco.as_ref().is_some_and(|r| r.is_active())
    }

    fn mastered(&self, out: &mut Vec<LockName>) {
        let me = self.cfg.node;
        out.extend(
            self.res
                .iter()
                .filter(|(_, r)| r.owner == Some(me))
                .map(|(n, _)| *n),
        );
    }

    fn migration_target(&self, name: &LockName, exiting: &NodeMap) -> Option<u8> {
        let me = self.cfg.node;
        let r = self.res.get(name)?;
        if r.owner != Some(me)
            || r.migrating
            || r.recovering
            || r.in_progress
            || r.dropping_ref
            || name.is_recovery_lock()
        {
            return None;
        }
        let Role::Master(e) = &r.role else {
            return None;
        };
        if !is_migratable(me, e, &r.refmap) {
            return None;
        }
        pick_target(me, e, &r.refmap, exiting).filter(|t| self.domain_map.contains(*t))
    }

    fn migration_data(&mut self, name: &LockName, out: &mut Vec<MigLockres>) {
        let me = self.cfg.node;
        let Some(res) = self.res.get_mut(name) else {
            return;
        };
        let Role::Master(e) = &res.role else {
            return;
        };
        res.migrating = true;
        pack_migration(me, e, &mut self.mig.next_cookie, out);
    }

    fn migration_aborted(&mut self, name: &LockName) {
        self.drop_migration_mle(name);
        let now = self.now;
        self.end_migrating(now, *name);
    }

    fn handed_over(&mut self, name: &LockName, new_master: u8) {
        let me = self.cfg.node;
        let now = self.now;
        self.drop_migration_mle(name);
        self.mig.gone_to.insert(*name, new_master);
        if let Some(res) = self.res.get_mut(name) {
            // No lock of ours was on it (that made it migratable): a reference is left, to
            // drop like any other.
            res.owner = Some(new_master);
            res.role = Role::Remote(OwnLocks::new(me, *name));
            res.refmap = NodeMap::new();
        }
        self.end_migrating(now, *name);
    }

    fn receive_migrated(
        &mut self,
        from: u8,
        mres: &MigLockres,
        members: &NodeMap,
    ) -> Result<(), Error> {
        if let Err(e) = self.stage_migrated(from, mres, members) {
            // Refused: the old master tries again later; nothing half-built stays.
            if self.mig.incoming.remove(&mres.name).is_some() {
                let now = self.now;
                self.end_migrating(now, mres.name);
            }
            return Err(e);
        }
        if mres.flags & MRES_ALL_DONE != 0 {
            self.adopt_migrated(mres.name);
        }
        Ok(())
    }

    fn add_ref(&mut self, name: &LockName, node: u8) {
        if node == self.cfg.node {
            return;
        }
        if let Some(res) = self.res.get_mut(name) {
            res.refmap.insert(node);
            res.unused_since = None;
        }
    }

    fn finish_migration(&mut self, name: &LockName) {
        tracing::debug!(node = self.cfg.node, domain = %self.cfg.name, lock = %name, "o2dlm: now master of migrated {name}");
        let now = self.now;
        self.end_migrating(now, *name);
    }

    fn migrate_request(
        &mut self,
        name: &LockName,
        old_master: u8,
        new_master: u8,
    ) -> Result<bool, i32> {
        if self.res.get(name).is_some_and(|r| r.recovering) {
            // The old master died before the target's request came: the target has its
            // queues and is the master, not recovery (the kernel refuses with EINVAL here and
            // the target crashes).
            if self.domain_map.contains(old_master) || !self.recovering_for_the_dead(name) {
                return Err(errno::EINVAL);
            }
            self.take_live_master(name, new_master);
        }
        // `dlm_add_migration_mle`: a mastery of ours in progress is displaced; the new
        // master takes our reference.
        let displaced = self
            .mles
            .get(name)
            .is_some_and(|m| m.kind == MleKind::Master);
        let master = self.res.get(name).and_then(|r| r.owner);
        if displaced {
            self.mles.remove(name);
        }
        if !self.res.contains_key(name) {
            let claim = Claim {
                by: new_master,
                from: old_master,
            };
            self.mig.claims.insert(*name, claim);
        }
        self.add_migration_mle(*name, master, new_master);
        if let Some(res) = self.res.get_mut(name) {
            res.migrating = true;
        }
        Ok(displaced)
    }

    fn new_owner(&mut self, name: &LockName, owner: u8) -> bool {
        let now = self.now;
        self.drop_migration_mle(name);
        let Some(res) = self.res.get_mut(name) else {
            return false;
        };
        if res.recovering {
            if !self.recovering_for_the_dead(name) {
                tracing::error!(node = self.cfg.node, domain = %self.cfg.name, lock = %name, "o2dlm: node {owner} asserts {name} migrated to it while a live master's resource recovers here");
                return true;
            }
            // The old master died after its last record (see `migrate_request`).
            self.take_live_master(name, owner);
        }
        let Some(res) = self.res.get_mut(name) else {
            return false;
        };
        match res.role {
            Role::Master(_) => {
                tracing::error!(node = self.cfg.node, domain = %self.cfg.name, lock = %name, "o2dlm: node {owner} asserts {name} migrated to it, but it is mastered here");
                return true;
            }
            Role::Unknown if res.in_progress => {
                res.migrating = false;
                self.set_owner(now, *name, owner);
                return true;
            }
            Role::Unknown => res.role = Role::Remote(OwnLocks::new(self.cfg.node, *name)),
            Role::Remote(_) => {}
        }
        res.owner = Some(owner);
        self.end_migrating(now, *name);
        true
    }
}
