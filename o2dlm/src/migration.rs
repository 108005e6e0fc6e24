//! Migration of the resources a node masters when it leaves a domain (`dlm_migrate_lockres`
//! and its handlers in `dlmmaster.c` and `dlmrecovery.c`), as a plain state machine like
//! [`crate::recovery::Recovery`]: no I/O, no clock, [`Migration::handle`] takes the time and
//! a [`MigInput`], queues [`MigOutput`]s, and changes resources through [`MigrationStore`].
//!
//! The three roles, as the kernel plays them:
//! - the leaving node (old master) takes its migratable resources one at a time
//!   ([`is_migratable`], [`pick_target`]), marks each MIGRATING and sends its locks in
//!   MIG_LOCKRES (MIGRATION, ALL_DONE on the last part), then waits for the target's
//!   ASSERT_MASTER with FINISH_MIGRATION and drops every lock of the resource; a target that
//!   dies or refuses makes it try again after 500 ms (the leave loop's period);
//! - the target rebuilds the resource (its own locks re-queued, others created, refmap bits
//!   set), then sends MIGRATE_REQUEST to every other member except the old master (a
//!   MASTERY_REF answer sets that node's refmap bit), then ASSERT_MASTER FINISH_MIGRATION to
//!   them and last to the old master, and runs the resource's queues;
//! - every other member marks the resource MIGRATING on MIGRATE_REQUEST (a RECOVERING one
//!   answers EINVAL unless the old master is dead) and takes the new owner on the assert.
//!
//! Beyond the kernel: an old master whose target dies before asserting to it asserts the
//! resource again to every member (ASSERT_MASTER with REQUERY; EAGAIN is asked again every
//! [`RECLAIM_RETRY_MS`]), since some may have heard the target's assert; and a node settling
//! a migration with a dead node holds back its recovery data ([`Migration::settling`]).
//!
//! A node with nothing migratable left is done ([`MigOutput::Done`]): the domain then sends
//! its exit messages.

use std::collections::BTreeMap;

use crate::lockres::LockResource;
use crate::recovery::{pack_lockres, MresHeader};
use crate::wire::{
    errno, is_host_down, AssertMaster, DlmMessage, DomainName, LockName, MigLockres,
    MigratableLock, MigrateRequest, NodeMap, QueueKind, ASSERT_MASTER_FINISH_MIGRATION,
    ASSERT_MASTER_REQUERY, ASSERT_RESPONSE_MASTERY_REF, MIGRATE_RESPONSE_MASTERY_REF,
    MRES_ALL_DONE, MRES_MIGRATION,
};
use crate::Error;

/// The leave loop's period: a failed migration is tried again this much later.
pub const MIGRATE_RETRY_MS: u64 = 500;
/// A member that had not seen the target die yet is asked again this much later.
pub const RECLAIM_RETRY_MS: u64 = 100;
/// How long a member may answer EAGAIN before the re-assert gives it up (a recovery master's
/// BEGIN_RECO makes every member see the death long before).
pub const RECLAIM_GIVE_UP_MS: u64 = 30_000;

/// `dlm_is_lockres_migratable` for a resource this node (`me`) masters that is neither
/// MIGRATING nor RECOVERING: no lock of `me`, and some other node holds a lock or a reference.
pub fn is_migratable(me: u8, engine: &LockResource, refmap: &NodeMap) -> bool {
    let mut remote = false;
    for (_, l) in engine.locks() {
        if l.id.node == me {
            return false;
        }
        remote = true;
    }
    remote || refmap.iter().any(|n| n != me)
}

/// `dlm_pick_migration_target`: the node of the first lock (granted, converting, blocked
/// order) that is not exiting, else the lowest refmap node that is not.
pub fn pick_target(
    me: u8,
    engine: &LockResource,
    refmap: &NodeMap,
    exiting: &NodeMap,
) -> Option<u8> {
    let ok = |n: u8| n != me && !exiting.contains(n);
    QueueKind::ALL
        .into_iter()
        .flat_map(|q| engine.queue(q).iter().map(|l| l.id.node))
        .find(|&n| ok(n))
        .or_else(|| refmap.iter().find(|&n| ok(n)))
}

/// The MIG_LOCKRES messages (MIGRATION) that carry resource `engine` from its master `me`:
/// every lock in queue order with `highest_blocked` cleared (`dlm_add_lock_to_array`: the
/// receiver works out what to BAST again), the master's value block, a dummy record for a
/// resource without locks.
pub fn pack_migration(
    me: u8,
    engine: &LockResource,
    next_cookie: &mut u64,
    out: &mut Vec<MigLockres>,
) {
    let locks: Vec<MigratableLock> = engine
        .migratable_locks()
        .map(|mut ml| {
            ml.highest_blocked = None;
            ml
        })
        .collect();
    let head = MresHeader {
        sender: me,
        master: me,
        flags: MRES_MIGRATION,
        name: *engine.name(),
        lvb: *engine.lvb(),
    };
    pack_lockres(head, &locks, next_cookie, out);
}

/// What migration does to the domain's resources.
pub trait MigrationStore {
    /// Whether migrating may go on now (recovery running here holds it back: its resources
    /// may move anyway).
    fn may_migrate(&self) -> bool {
        true
    }
    /// The names of the resources this node masters.
    fn mastered(&self, out: &mut Vec<LockName>);
    /// The target for `name` if it is to migrate now: mastered here, neither MIGRATING nor
    /// RECOVERING, [`is_migratable`], with a [`pick_target`] that is a member.
    fn migration_target(&self, name: &LockName, exiting: &NodeMap) -> Option<u8>;
    /// The next resource to migrate and its target, searching the whole table (for a leave
    /// loop that asks whether anything is left).
    fn next_migratable(&self, exiting: &NodeMap) -> Option<(LockName, u8)> {
        let mut names = Vec::new();
        self.mastered(&mut names);
        names
            .into_iter()
            .find_map(|n| self.migration_target(&n, exiting).map(|t| (n, t)))
    }
    /// Marks `name` MIGRATING and writes its MIG_LOCKRES messages (master = this node,
    /// MIGRATION, the resource's value block).
    fn migration_data(&mut self, name: &LockName, out: &mut Vec<MigLockres>);
    /// The migration of `name` failed: it is this node's again, no longer MIGRATING.
    fn migration_aborted(&mut self, name: &LockName);
    /// Old master: `new_master` asserted; the resource's locks and refmap go, owner changes.
    fn handed_over(&mut self, name: &LockName, new_master: u8);
    /// Target: applies one MIG_LOCKRES (MIGRATION) from the old master `from`; the resource
    /// is MIGRATING with this node as owner until [`MigrationStore::finish_migration`]. Locks
    /// of nodes that are not `members` any more (the old master did not know of their death
    /// yet) are not created, and the value block is zeroed if such a node held EX, as the
    /// local clean-up after its death would have done.
    fn receive_migrated(
        &mut self,
        from: u8,
        mres: &MigLockres,
        members: &NodeMap,
    ) -> Result<(), Error>;
    /// Target: `node` holds a reference (the old master, a MASTERY_REF answer).
    fn add_ref(&mut self, name: &LockName, node: u8);
    /// Target: migration done; MIGRATING cleared, queues run.
    fn finish_migration(&mut self, name: &LockName);
    /// Another member: MIGRATE_REQUEST for `name` to `new_master`: the resource is marked
    /// MIGRATING. `Ok(true)` (MASTERY_REF) when this node was itself mastering the name (the
    /// MASTER entry the migration displaces: the new master takes its reference), `Ok(false)`
    /// otherwise, `Err(errno)` when it cannot (RECOVERING: EINVAL).
    /// `old_master` is the node the target says it took the resource from: one that died
    /// after its last record leaves a resource RECOVERING here to the target.
    fn migrate_request(
        &mut self,
        name: &LockName,
        old_master: u8,
        new_master: u8,
    ) -> Result<bool, i32>;
    /// Another member: the new master asserted; it owns `name` and MIGRATING is cleared.
    /// `true` when this node has the resource (the assert is answered MASTERY_REF: the new
    /// master sets this node's refmap bit, as the old master's refmap is not migrated).
    fn new_owner(&mut self, name: &LockName, owner: u8) -> bool;
}

/// What the world tells a [`Migration`].
#[derive(Debug, Clone)]
pub enum MigInput {
    /// This node leaves the domain: migrate everything it masters. `exiting`: members known
    /// to be leaving too (never picked as targets).
    Leave { exiting: NodeMap },
    /// A migration message from `from` (MIG_LOCKRES with MIGRATION, MIGRATE_REQUEST, or
    /// ASSERT_MASTER with FINISH_MIGRATION). [`Migration::handle`] returns the reply status.
    Message { from: u8, msg: DlmMessage },
    /// A send finished: the peer handler's status, or a negative errno.
    SendDone {
        token: u64,
        result: Result<i32, i32>,
    },
    /// `node` joined the domain.
    NodeJoined(u8),
    /// `node` left the domain or died.
    NodeGone(u8),
    /// Time passed.
    Tick,
}

/// What a [`Migration`] asks the world to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigOutput {
    /// Send `msg` to `to`; report with [`MigInput::SendDone`] and `token`.
    Send { token: u64, to: u8, msg: DlmMessage },
    /// `name` now belongs to `new_master` (a log line for users on the old master).
    Migrated { name: LockName, new_master: u8 },
    /// Nothing migratable is left: the leave may go on.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Old master: a MIG_LOCKRES part of the resource in flight.
    Data(LockName),
    /// Target: MIGRATE_REQUEST to a member.
    Request(LockName, u8),
    /// Target: ASSERT_MASTER FINISH_MIGRATION to a member.
    Assert(LockName, u8),
    /// Old master whose target died: ASSERT_MASTER REQUERY to a member.
    Reclaim(LockName, u8),
}

/// Old master: a resource taken back after its target died, asserted again to every member
/// (one may have heard the target's assert and take the resource for the dead target's).
#[derive(Debug, Clone)]
struct Reclaim {
    /// The target that died.
    dead: u8,
    /// Members whose answer is awaited.
    waiting: NodeMap,
    /// Members that had not seen the death yet (EAGAIN), asked again at `retry_at`.
    again: NodeMap,
    retry_at: u64,
    /// When the first answer came.
    since: Option<u64>,
}

/// The target's progress with one incoming resource.
#[derive(Debug, Clone)]
struct Incoming {
    old_master: u8,
    /// Replies awaited in the current step.
    waiting: NodeMap,
    /// The members told (everyone but the old master and this node).
    others: NodeMap,
    step: Step,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// MIGRATE_REQUEST to the others.
    Requesting,
    /// ASSERT_MASTER to the others.
    AssertingOthers,
    /// ASSERT_MASTER to the old master, last: it drops its copy on it.
    AssertingOld,
}

/// Migration of one domain on one node. See the module documentation.
#[derive(Debug)]
pub struct Migration {
    me: u8,
    domain: DomainName,
    domain_map: NodeMap,
    leaving: Option<NodeMap>,
    /// Old master: the resource in flight and its target.
    current: Option<(LockName, u8)>,
    /// Old master: names still to look at, taken from the table once per pass (so that a
    /// leave is linear in the resources, not quadratic).
    candidates: Vec<LockName>,
    /// The candidates come from a pass that has found nothing yet.
    fresh_pass: bool,
    retry_at: Option<u64>,
    incoming: BTreeMap<LockName, Incoming>,
    reclaims: BTreeMap<LockName, Reclaim>,
    sends: BTreeMap<u64, Sent>,
    next_token: u64,
    out: Vec<MigOutput>,
    scratch: Vec<MigLockres>,
}

impl Migration {
    /// Migration for domain `domain` on node `me` with members `domain_map`.
    pub fn new(me: u8, domain: DomainName, domain_map: NodeMap) -> Migration {
        Migration {
            me,
            domain,
            domain_map,
            leaving: None,
            current: None,
            candidates: Vec::new(),
            fresh_pass: false,
            retry_at: None,
            incoming: BTreeMap::new(),
            reclaims: BTreeMap::new(),
            sends: BTreeMap::new(),
            next_token: 1,
            out: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Takes the queued outputs.
    pub fn drain_outputs(&mut self) -> std::vec::Drain<'_, MigOutput> {
        self.out.drain(..)
    }

    /// When [`MigInput::Tick`] is next due.
    pub fn next_deadline(&self) -> Option<u64> {
        let reclaim = self
            .reclaims
            .values()
            .filter(|r| !r.again.is_empty())
            .map(|r| r.retry_at)
            .min();
        match (self.retry_at, reclaim) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a migration with `dead` is still being settled with the other members: this
    /// node is the target of a resource `dead` sent all its records of and still tells the
    /// others, or the old master of one `dead` was the target of and still asserts it
    /// again. Until it is, the recovery data this node owes for `dead` waits: the recovery
    /// master must not finish (and the others take it as owner) before they know.
    pub fn settling(&self, dead: u8) -> bool {
        self.incoming.values().any(|i| i.old_master == dead)
            || self.reclaims.values().any(|r| r.dead == dead)
    }

    /// The resource this node is handing over, if any, with its target.
    pub fn in_flight(&self) -> Option<(LockName, u8)> {
        self.current
    }

    /// Runs one input; for a message, returns the reply status.
    pub fn handle<S: MigrationStore>(&mut self, now: u64, input: MigInput, store: &mut S) -> i32 {
        match input {
            MigInput::Leave { exiting } => {
                self.leaving = Some(exiting);
                self.next(now, store);
                0
            }
            MigInput::Message { from, msg } => self.receive(from, msg, store),
            MigInput::SendDone { token, result } => {
                self.send_done(now, token, result, store);
                0
            }
            MigInput::NodeJoined(n) => {
                self.domain_map.insert(n);
                0
            }
            MigInput::NodeGone(n) => {
                self.domain_map.remove(n);
                if let Some(ex) = self.leaving.as_mut() {
                    ex.remove(n);
                }
                if let Some((name, target)) = self.current {
                    if target == n {
                        self.abort(now, name, store);
                        self.reclaim(name, n);
                    }
                }
                let names: Vec<LockName> = self.reclaims.keys().copied().collect();
                for name in names {
                    if let Some(r) = self.reclaims.get_mut(&name) {
                        r.waiting.remove(n);
                        r.again.remove(n);
                    }
                    self.reclaim_progress(name);
                }
                // A target whose old master vanished still finishes with the others.
                let names: Vec<LockName> = self.incoming.keys().copied().collect();
                for name in names {
                    if let Some(inc) = self.incoming.get_mut(&name) {
                        inc.waiting.remove(n);
                        inc.others.remove(n);
                    }
                    self.advance_incoming(name, store);
                }
                0
            }
            MigInput::Tick => {
                let due: Vec<(LockName, NodeMap)> = self
                    .reclaims
                    .iter_mut()
                    .filter(|(_, r)| !r.again.is_empty() && r.retry_at <= now)
                    .map(|(n, r)| (*n, std::mem::take(&mut r.again)))
                    .collect();
                for (name, nodes) in due {
                    for to in nodes.iter() {
                        self.send_reclaim(name, to);
                    }
                }
                if self.retry_at.is_some_and(|t| t <= now) {
                    self.retry_at = None;
                    self.next(now, store);
                }
                0
            }
        }
    }

    fn send(&mut self, to: u8, msg: DlmMessage, what: Sent) {
        let token = self.next_token;
        self.next_token += 1;
        self.sends.insert(token, what);
        self.out.push(MigOutput::Send { token, to, msg });
    }

    /// Old master: start on the next migratable resource, or say the leave may go on.
    fn next<S: MigrationStore>(&mut self, now: u64, store: &mut S) {
        let _ = now;
        if self.current.is_some() || self.retry_at.is_some() {
            return;
        }
        let Some(exiting) = self.leaving else { return };
        let Some((name, target)) = self.next_candidate(&exiting, store) else {
            self.out.push(MigOutput::Done);
            return;
        };
        tracing::info!(node = self.me, domain = %self.domain, lock = %name, target, "o2dlm: migrating {name} to node {target}");
        self.current = Some((name, target));
        let mut data = std::mem::take(&mut self.scratch);
        data.clear();
        store.migration_data(&name, &mut data);
        for m in data.drain(..) {
            self.send(target, DlmMessage::MigLockres(m), Sent::Data(name));
        }
        self.scratch = data;
    }

    /// The next resource to migrate: candidates left from the current pass first; once they
    /// are used up, a new pass over what this node still masters (resources recovery gave it,
    /// migrations that failed); nothing when a new pass finds nothing.
    fn next_candidate<S: MigrationStore>(
        &mut self,
        exiting: &NodeMap,
        store: &S,
    ) -> Option<(LockName, u8)> {
        if !store.may_migrate() {
            return None;
        }
        loop {
            while let Some(name) = self.candidates.pop() {
                if let Some(t) = store.migration_target(&name, exiting) {
                    self.fresh_pass = false;
                    return Some((name, t));
                }
            }
            if self.fresh_pass {
                self.fresh_pass = false;
                return None;
            }
            store.mastered(&mut self.candidates);
            // Popped from the end: the table's order.
            self.candidates.reverse();
            self.fresh_pass = true;
        }
    }

    fn abort<S: MigrationStore>(&mut self, now: u64, name: LockName, store: &mut S) {
        tracing::warn!(node = self.me, domain = %self.domain, lock = %name, "o2dlm: migration of {name} failed; retrying in {MIGRATE_RETRY_MS} ms");
        store.migration_aborted(&name);
        self.current = None;
        self.sends.retain(|_, s| *s != Sent::Data(name));
        self.retry_at = Some(now.saturating_add(MIGRATE_RETRY_MS));
    }

    /// The target of `name` died before its assert reached this node, which masters the
    /// resource again: every member hears so (`dlm_master_requery`'s re-assert, sent
    /// unasked).
    fn reclaim(&mut self, name: LockName, dead: u8) {
        let mut waiting = NodeMap::new();
        for n in self
            .domain_map
            .iter()
            .filter(|&n| n != self.me && n != dead)
        {
            waiting.insert(n);
        }
        self.reclaims.insert(
            name,
            Reclaim {
                dead,
                waiting,
                again: NodeMap::new(),
                retry_at: 0,
                since: None,
            },
        );
        for to in waiting.iter() {
            self.send_reclaim(name, to);
        }
        self.reclaim_progress(name);
    }

    fn send_reclaim(&mut self, name: LockName, to: u8) {
        let msg = DlmMessage::AssertMaster(AssertMaster {
            node_idx: self.me,
            flags: ASSERT_MASTER_REQUERY,
            name,
        });
        self.send(to, msg, Sent::Reclaim(name, to));
    }

    fn reclaim_progress(&mut self, name: LockName) {
        if self
            .reclaims
            .get(&name)
            .is_some_and(|r| r.waiting.is_empty())
        {
            self.reclaims.remove(&name);
        }
    }

    fn receive<S: MigrationStore>(&mut self, from: u8, msg: DlmMessage, store: &mut S) -> i32 {
        match msg {
            DlmMessage::MigLockres(m) if m.flags & MRES_MIGRATION != 0 => {
                if let Err(e) = store.receive_migrated(from, &m, &self.domain_map) {
                    tracing::error!(node = self.me, domain = %self.domain, from, "o2dlm: {e}");
                    return errno::EINVAL;
                }
                if m.flags & MRES_ALL_DONE != 0 {
                    self.finish_incoming(from, m.name, store);
                }
                0
            }
            DlmMessage::MigrateRequest(r) => {
                match store.migrate_request(&r.name, r.master, r.new_master) {
                    Ok(true) => MIGRATE_RESPONSE_MASTERY_REF,
                    Ok(false) => 0,
                    Err(e) => e,
                }
            }
            DlmMessage::AssertMaster(a) if a.flags & ASSERT_MASTER_FINISH_MIGRATION != 0 => {
                if self.current == Some((a.name, a.node_idx)) {
                    store.handed_over(&a.name, a.node_idx);
                    self.current = None;
                    self.sends.retain(|_, s| *s != Sent::Data(a.name));
                    self.out.push(MigOutput::Migrated {
                        name: a.name,
                        new_master: a.node_idx,
                    });
                    self.retry_at = None;
                    self.next(0, store);
                    0
                } else if store.new_owner(&a.name, a.node_idx) {
                    ASSERT_RESPONSE_MASTERY_REF
                } else {
                    0
                }
            }
            other => {
                tracing::warn!(node = self.me, domain = %self.domain, from, "o2dlm: not a migration message: {other:?}");
                errno::EINVAL
            }
        }
    }

    /// Target, after the last part (`dlm_finish_migration`).
    fn finish_incoming<S: MigrationStore>(
        &mut self,
        old_master: u8,
        name: LockName,
        store: &mut S,
    ) {
        store.add_ref(&name, old_master);
        let mut others = NodeMap::new();
        for n in self.domain_map.iter() {
            if n != self.me && n != old_master {
                others.insert(n);
            }
        }
        self.incoming.insert(
            name,
            Incoming {
                old_master,
                waiting: others,
                others,
                step: Step::Requesting,
            },
        );
        for n in others.iter() {
            let msg = DlmMessage::MigrateRequest(MigrateRequest {
                master: old_master,
                new_master: self.me,
                name,
            });
            self.send(n, msg, Sent::Request(name, n));
        }
        self.advance_incoming(name, store);
    }

    fn send_assert(&mut self, name: LockName, to: u8) {
        let msg = DlmMessage::AssertMaster(AssertMaster {
            node_idx: self.me,
            flags: ASSERT_MASTER_FINISH_MIGRATION,
            name,
        });
        self.send(to, msg, Sent::Assert(name, to));
    }

    fn advance_incoming<S: MigrationStore>(&mut self, name: LockName, store: &mut S) {
        loop {
            let Some(inc) = self.incoming.get(&name) else {
                return;
            };
            if !inc.waiting.is_empty() {
                return;
            }
            let (step, others, old) = (inc.step, inc.others, inc.old_master);
            let (next, targets) = match step {
                Step::Requesting => (Step::AssertingOthers, others),
                Step::AssertingOthers => {
                    let mut t = NodeMap::new();
                    if self.domain_map.contains(old) {
                        t.insert(old);
                    }
                    (Step::AssertingOld, t)
                }
                Step::AssertingOld => {
                    self.incoming.remove(&name);
                    store.finish_migration(&name);
                    return;
                }
            };
            if let Some(inc) = self.incoming.get_mut(&name) {
                inc.step = next;
                inc.waiting = targets;
            }
            for n in targets.iter() {
                self.send_assert(name, n);
            }
        }
    }

    fn send_done<S: MigrationStore>(
        &mut self,
        now: u64,
        token: u64,
        result: Result<i32, i32>,
        store: &mut S,
    ) {
        let Some(what) = self.sends.remove(&token) else {
            return;
        };
        let status = match result {
            Ok(s) | Err(s) => s,
        };
        match what {
            Sent::Data(name) => {
                if status < 0 && self.current.map(|c| c.0) == Some(name) {
                    self.abort(now, name, store);
                }
            }
            Sent::Request(name, n) => {
                if status == MIGRATE_RESPONSE_MASTERY_REF {
                    store.add_ref(&name, n);
                }
                if let Some(inc) = self.incoming.get_mut(&name) {
                    if inc.step == Step::Requesting {
                        inc.waiting.remove(n);
                    }
                }
                self.advance_incoming(name, store);
            }
            Sent::Reclaim(name, n) => {
                let Some(r) = self.reclaims.get_mut(&name) else {
                    return;
                };
                let since = *r.since.get_or_insert(now);
                if status == errno::EAGAIN && now.saturating_sub(since) < RECLAIM_GIVE_UP_MS {
                    r.again.insert(n);
                    r.retry_at = now.saturating_add(RECLAIM_RETRY_MS);
                    return;
                }
                if status < 0 && !is_host_down(status) {
                    // A kernel node refuses an assert on a RECOVERING resource; a member that
                    // never sees the target die (its view of the owner is another live node)
                    // must not hold recovery back for good.
                    tracing::error!(node = self.me, domain = %self.domain, lock = %name, "o2dlm: node {n} refused the re-assert of {name}: {status}");
                }
                if status >= 0 && status & ASSERT_RESPONSE_MASTERY_REF != 0 {
                    store.add_ref(&name, n);
                }
                r.waiting.remove(n);
                self.reclaim_progress(name);
            }
            Sent::Assert(name, n) => {
                if status >= 0 && status & ASSERT_RESPONSE_MASTERY_REF != 0 {
                    store.add_ref(&name, n);
                }
                if let Some(inc) = self.incoming.get_mut(&name) {
                    if inc.step != Step::Requesting {
                        inc.waiting.remove(n);
                    }
                }
                self.advance_incoming(name, store);
            }
        }
    }
}
