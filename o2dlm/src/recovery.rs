//! Recovery of a domain after a member dies (`dlmrecovery.c`): the survivors elect one
//! recovery master through the `$RECOVERY` lock, it collects from every survivor the locks it
//! holds on resources the dead node mastered, rebuilds those resources, and ends recovery in
//! the two FINALIZE stages, after which every survivor takes the recovery master as their new
//! owner.
//!
//! [`Recovery`] is the protocol as a plain state machine, one per domain on each node, with
//! no I/O and no clock, driven like the other cores: [`Recovery::handle`] takes the time in
//! milliseconds and a [`RecoInput`] (a heartbeat node-down, a decoded recovery message whose
//! reply status it returns, a send's completion, the `$RECOVERY` lock's answer, a tick) and
//! queues [`RecoOutput`]s (messages to send, the `$RECOVERY` lock and unlock calls, one log
//! line per step). What recovery does to lock resources goes through [`RecoveryStore`], which
//! the domain implements over its resource table: local clean-up after a death, the recovery
//! data this node sends, rebuilding on the recovery master, and taking the new owner at
//! FINALIZE. [`crate::recovery_store::MemStore`] is a store over plain lock-resource engines,
//! used by the simulator, the tests and the benchmark.
//!
//! Kernel behaviour kept here:
//! - one dead node at a time, the lowest in the recovery map;
//! - election: `$RECOVERY` EX with NOQUEUE; the winner sends BEGIN_RECO to every other member
//!   (EAGAIN and other non host-down errors retried every 100 ms) unless someone already
//!   announced itself, then unlocks; a loser (NOTQUEUED) waits 1 s for a BEGIN_RECO, then
//!   tries again; DLM_RECOVERING retries;
//! - the recovery master sends LOCK_REQUEST to every member (host down: that node is DEAD;
//!   other errors retried every 100 ms); each answers with MIG_LOCKRES (RECOVERY) for every
//!   resource of the dead node and then RECO_DATA_DONE;
//! - when every node is DONE or DEAD: FINALIZE stage 1 to all, then stage 2; a node in the
//!   FINALIZE state answers BEGIN_RECO with EAGAIN;
//! - the recovery master dying before FINALIZE restarts the election for the same dead node;
//!   after a stage 1 was seen, the recovery counts as complete.
//!
//! How the domain core runs it (with [`crate::migration::Migration`] beside it):
//! - heartbeat node-down of a member: [`RecoInput::NodeDown`]; its [`RecoveryStore::local_cleanup`]
//!   is the core's member clean-up (operations pending with the dead master are parked in
//!   the core, as `dlmlock` keeps retrying them, and run against the new owner FINALIZE
//!   gives the resource); a clean exit:
//!   [`RecoInput::NodeLeft`]; a join: [`RecoInput::NodeJoined`]. A
//!   [`RecoEvent::NodeDied`] that BEGIN_RECO caused drops the node from the domain map too;
//! - BEGIN_RECO, LOCK_REQUEST, RECO_DATA_DONE, FINALIZE_RECO and MIG_LOCKRES with
//!   `MRES_RECOVERY` go to [`Recovery::handle`], whose status is the o2net reply;
//!   MIGRATE_REQUEST, MIG_LOCKRES with `MRES_MIGRATION` and ASSERT_MASTER with
//!   FINISH_MIGRATION go to the migration machine;
//! - [`RecoOutput::LockRecoveryLock`] is the core's own `$RECOVERY` lock request (EX,
//!   `NOQUEUE | RECOVERY`), whose result comes back as [`RecoInput::RecoveryLock`];
//! - query-join is answered DISALLOW while [`Recovery::is_active`];
//! - `dlm_state` takes `recovery_master`, `recovery_active`, `recovery_map` and the node list
//!   from [`Recovery::state`], and each [`RecoOutput::Log`] is a log line with the domain.

use std::collections::BTreeMap;

use crate::debug::RecoNodeState;
use crate::wire::{
    errno, is_host_down, DlmMessage, DomainName, FinalizeReco, LockMode, LockName, Lvb, MigLockres,
    MigratableLock, NodeMap, QueueKind, RecoDataDone, RecoNotice, FINALIZE_STAGE2, LKSB_PUT_LVB,
    LVB_LEN, MAX_MIGRATABLE_LOCKS, MRES_ALL_DONE, MRES_RECOVERY,
};
use crate::Error;

/// `dlm_pick_recovery_master`: how long a node that lost the election waits for BEGIN_RECO.
pub const ELECTION_WAIT_MS: u64 = 1000;
/// `dlm_send_begin_reco_message`: BEGIN_RECO resend on EAGAIN or another error.
pub const BEGIN_RECO_RETRY_MS: u64 = 100;
/// `dlm_remaster_locks`: LOCK_REQUEST resend on errors other than host down.
pub const LOCK_REQUEST_RETRY_MS: u64 = 100;
/// Retry of the `$RECOVERY` lock after DLM_RECOVERING (`dlmlock`'s retry period).
pub const RECOVERY_LOCK_RETRY_MS: u64 = 100;

/// What recovery does to the domain's lock resources. The domain implements it over its
/// resource table; every call happens inside [`Recovery::handle`].
pub trait RecoveryStore {
    /// `dlm_do_local_recovery_cleanup` for `dead`: its locks go from resources mastered here
    /// (value block zeroed where it held EX), its refmap bits are cleared, resources it
    /// mastered are marked RECOVERING (operations pending with it reverted), and the rules for
    /// `$RECOVERY` and DROPPING_REF apply. Called once per death, before anything else.
    fn local_cleanup(&mut self, dead: u8);

    /// The recovery data this node owes the recovery master for `dead`: a MIG_LOCKRES (flags
    /// RECOVERY) for every resource it knows `dead` mastered (or whose owner is unknown) with
    /// all of this node's locks on it, a dummy lock when it has none (see [`pack_lockres`]).
    fn recovery_data(&mut self, dead: u8, out: &mut Vec<MigLockres>);

    /// On the recovery master: one MIG_LOCKRES from `from` (this node included, for its own
    /// locks) rebuilds its resource, which stays RECOVERING with this node as owner.
    fn rebuild(&mut self, from: u8, mres: &MigLockres) -> Result<(), Error>;

    /// FINALIZE stage 1 (`dlm_finish_local_lockres_recovery`): every resource owned by `dead`
    /// (or RECOVERING) takes `new_master` as owner, RECOVERING and RECOVERY_WAITING are
    /// cleared, resources with locks are dirtied. Returns how many resources changed owner.
    fn finish(&mut self, dead: u8, new_master: u8) -> usize;

    /// Whether a migration with `dead` is still being settled with the other members (see
    /// [`crate::migration::Migration::settling`]): the recovery data this node owes for
    /// `dead`, and its RECO_DATA_DONE, wait until it is not. A store without migration
    /// never is.
    fn settling(&self, dead: u8) -> bool {
        let _ = dead;
        false
    }
}

/// What the world tells a [`Recovery`].
#[derive(Debug, Clone)]
pub enum RecoInput {
    /// Heartbeat (or the domain) says `node` died. Ignored for nodes not in the domain.
    NodeDown(u8),
    /// `node` joined the domain.
    NodeJoined(u8),
    /// `node` left the domain cleanly (its exit message): nothing of it to recover.
    NodeLeft(u8),
    /// A recovery message from `from` (BEGIN_RECO, LOCK_REQUEST, MIG_LOCKRES with RECOVERY,
    /// RECO_DATA_DONE, FINALIZE_RECO). [`Recovery::handle`] returns the reply status.
    Message { from: u8, msg: DlmMessage },
    /// A send finished: the peer handler's status, or a negative errno.
    SendDone {
        token: u64,
        result: Result<i32, i32>,
    },
    /// The answer to [`RecoOutput::LockRecoveryLock`]: `DLM_NORMAL`, `DLM_NOTQUEUED` or
    /// `DLM_RECOVERING`.
    RecoveryLock(crate::wire::DlmStatus),
    /// Time passed: run what is due ([`Recovery::next_deadline`]).
    Tick,
}

/// What a [`Recovery`] asks the world to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoOutput {
    /// Send `msg` to `to`; report its completion with [`RecoInput::SendDone`] and `token`.
    Send { token: u64, to: u8, msg: DlmMessage },
    /// Take `$RECOVERY` in EX with `LKM_NOQUEUE | LKM_RECOVERY`; answer with
    /// [`RecoInput::RecoveryLock`].
    LockRecoveryLock,
    /// Release `$RECOVERY` (taken after a `DLM_NORMAL` answer).
    UnlockRecoveryLock,
    /// A step users see in the log: the domain's driver prints it with the node number.
    Log(RecoEvent),
}

/// One recovery step, with the facts the log line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoEvent {
    /// `dead` died while in the domain; its resources await recovery. It may come from a
    /// BEGIN_RECO before heartbeat said so: the domain then drops the node from its domain
    /// map (and everything else that waits for it) as for a heartbeat node-down.
    NodeDied { dead: u8 },
    /// This node won the election and announced itself for `dead`.
    Elected { dead: u8 },
    /// `master` announced itself as recovery master for `dead`.
    MasterKnown { dead: u8, master: u8 },
    /// The recovery master `master` died before FINALIZE: the election starts again.
    MasterDied { dead: u8, master: u8 },
    /// This node sent its data for `dead` to `master`: `resources` MIG_LOCKRES resources.
    DataSent {
        dead: u8,
        master: u8,
        resources: usize,
    },
    /// The recovery master has every survivor's data for `dead`.
    DataComplete { dead: u8, resources: usize },
    /// Recovery of `dead` finished here: `moved` resources now belong to `master`.
    Finished { dead: u8, master: u8, moved: usize },
}

impl RecoEvent {
    /// The dead node the step is about.
    pub fn dead(&self) -> u8 {
        match *self {
            RecoEvent::NodeDied { dead }
            | RecoEvent::Elected { dead }
            | RecoEvent::MasterKnown { dead, .. }
            | RecoEvent::MasterDied { dead, .. }
            | RecoEvent::DataSent { dead, .. }
            | RecoEvent::DataComplete { dead, .. }
            | RecoEvent::Finished { dead, .. } => dead,
        }
    }
}

impl std::fmt::Display for RecoEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            RecoEvent::NodeDied { dead } => {
                write!(f, "node {dead} died; its resources await recovery")
            }
            RecoEvent::Elected { dead } => {
                write!(f, "this node is the recovery master for dead node {dead}")
            }
            RecoEvent::MasterKnown { dead, master } => {
                write!(f, "node {master} is the recovery master for dead node {dead}")
            }
            RecoEvent::MasterDied { dead, master } => write!(
                f,
                "recovery master {master} died while recovering node {dead}; electing again"
            ),
            RecoEvent::DataSent {
                dead,
                master,
                resources,
            } => write!(
                f,
                "sent recovery data of {resources} resources of dead node {dead} to recovery master {master}"
            ),
            RecoEvent::DataComplete { dead, resources } => write!(
                f,
                "all recovery data for dead node {dead} in: {resources} resources rebuilt"
            ),
            RecoEvent::Finished { dead, master, moved } => write!(
                f,
                "recovery of dead node {dead} complete: recovery master {master}, {moved} resources moved"
            ),
        }
    }
}

/// Where recovery stands, for `dlm_state` and `o2cb status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryState {
    /// Recovery is running (`DLM_RECO_STATE_ACTIVE`): new joins are refused.
    pub active: bool,
    /// Between FINALIZE stages 1 and 2 (`DLM_RECO_STATE_FINALIZE`).
    pub finalizing: bool,
    /// The dead node being recovered.
    pub dead_node: Option<u8>,
    /// The recovery master, once known.
    pub new_master: Option<u8>,
    /// Dead nodes still to recover.
    pub recovery_map: NodeMap,
    /// The recovery master's progress with each node (empty elsewhere).
    pub nodes: Vec<(u8, RecoNodeState)>,
    /// Recoveries finished here since the domain started.
    pub completed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing to recover, or waiting for the recovery master's messages.
    Idle,
    /// Asked for `$RECOVERY`, no answer yet.
    Electing,
    /// Lost the election: waiting until this time for a BEGIN_RECO.
    AwaitBegin,
    /// Won the election: BEGIN_RECO sent to `waiting`, `$RECOVERY` still held.
    Announcing,
    /// Recovery master: collecting data.
    Collecting,
    /// Recovery master: FINALIZE stage 1 (false) or 2 (true) sent, replies awaited.
    Finalizing(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    BeginReco(u8),
    LockRequest(u8),
    Finalize(u8),
    /// Recovery data and RECO_DATA_DONE: the master notices loss by the node's death.
    Data,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    RetryLock,
    ElectionWait,
    ResendBegin(u8),
    ResendLockRequest(u8),
}

/// The recovery protocol of one domain on one node. See the module documentation.
#[derive(Debug)]
pub struct Recovery {
    me: u8,
    domain: DomainName,
    domain_map: NodeMap,
    recovery_map: NodeMap,
    dead: Option<u8>,
    new_master: Option<u8>,
    finalizing: bool,
    phase: Phase,
    /// Nodes a BEGIN_RECO or FINALIZE reply is awaited from.
    waiting: NodeMap,
    /// Recovery master: each member's progress.
    nodes: BTreeMap<u8, RecoNodeState>,
    rebuilt: usize,
    completed: u64,
    /// A LOCK_REQUEST answered before its data could go (a migration with the dead node
    /// still settling here).
    deferred: Option<RecoNotice>,
    sends: BTreeMap<u64, Sent>,
    next_token: u64,
    agenda: BTreeMap<(u64, u64), Timer>,
    agenda_seq: u64,
    out: Vec<RecoOutput>,
    scratch: Vec<MigLockres>,
}

impl Recovery {
    /// Recovery for domain `domain` on node `me`, whose members (this node included) are
    /// `domain_map`.
    pub fn new(me: u8, domain: DomainName, domain_map: NodeMap) -> Recovery {
        Recovery {
            me,
            domain,
            domain_map,
            recovery_map: NodeMap::new(),
            dead: None,
            new_master: None,
            finalizing: false,
            phase: Phase::Idle,
            waiting: NodeMap::new(),
            nodes: BTreeMap::new(),
            rebuilt: 0,
            completed: 0,
            deferred: None,
            sends: BTreeMap::new(),
            next_token: 1,
            agenda: BTreeMap::new(),
            agenda_seq: 0,
            out: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Whether recovery is running: the domain refuses joins (DISALLOW) and holds back new
    /// requests on RECOVERING resources while it is.
    pub fn is_active(&self) -> bool {
        !self.recovery_map.is_empty() || self.dead.is_some()
    }

    /// The dead nodes still to recover.
    pub fn recovery_map(&self) -> NodeMap {
        self.recovery_map
    }

    /// Where recovery stands.
    pub fn state(&self) -> RecoveryState {
        RecoveryState {
            active: self.is_active(),
            finalizing: self.finalizing,
            dead_node: self.dead,
            new_master: self.new_master,
            recovery_map: self.recovery_map,
            nodes: self.nodes.iter().map(|(&n, &s)| (n, s)).collect(),
            completed: self.completed,
        }
    }

    /// When [`RecoInput::Tick`] is next due.
    pub fn next_deadline(&self) -> Option<u64> {
        self.agenda.keys().next().map(|&(t, _)| t)
    }

    /// Takes the queued outputs.
    pub fn drain_outputs(&mut self) -> std::vec::Drain<'_, RecoOutput> {
        self.out.drain(..)
    }

    /// Runs one input. For a message, returns the reply status its handler gives; otherwise 0.
    pub fn handle<S: RecoveryStore>(&mut self, now: u64, input: RecoInput, store: &mut S) -> i32 {
        let status = match input {
            RecoInput::NodeDown(n) => {
                self.node_down(n, store);
                0
            }
            RecoInput::NodeJoined(n) => {
                self.domain_map.insert(n);
                0
            }
            RecoInput::NodeLeft(n) => {
                if self.domain_map.contains(n) {
                    self.member_gone(n, store);
                }
                0
            }
            RecoInput::Message { from, msg } => self.receive(now, from, msg, store),
            RecoInput::SendDone { token, result } => {
                self.send_done(now, token, result, store);
                0
            }
            RecoInput::RecoveryLock(status) => {
                self.lock_answer(now, status, store);
                0
            }
            RecoInput::Tick => {
                self.tick(now, store);
                0
            }
        };
        self.kick();
        self.send_deferred(store);
        status
    }

    /// Whether this node owes a recovery master data it holds back (see
    /// [`RecoveryStore::settling`]); a [`RecoInput::Tick`] sends it once it may go.
    pub fn has_deferred(&self) -> bool {
        self.deferred.is_some()
    }

    fn send(&mut self, to: u8, msg: DlmMessage, what: Sent) {
        let token = self.next_token;
        self.next_token += 1;
        self.sends.insert(token, what);
        self.out.push(RecoOutput::Send { token, to, msg });
    }

    fn at(&mut self, when: u64, t: Timer) {
        self.agenda_seq += 1;
        self.agenda.insert((when, self.agenda_seq), t);
    }

    fn log(&mut self, e: RecoEvent) {
        tracing::info!(node = self.me, domain = %self.domain, dead = e.dead(), "o2dlm recovery: {e}");
        self.out.push(RecoOutput::Log(e));
    }

    fn others(&self) -> impl Iterator<Item = u8> + '_ {
        let me = self.me;
        self.domain_map.iter().filter(move |&n| n != me)
    }

    /// Starts recovering the lowest dead node when nothing is running (the recovery thread).
    fn kick(&mut self) {
        if self.phase != Phase::Idle || self.new_master.is_some() || self.finalizing {
            return;
        }
        let Some(dead) = self.recovery_map.iter().next() else {
            self.dead = None;
            return;
        };
        self.dead = Some(dead);
        self.phase = Phase::Electing;
        self.out.push(RecoOutput::LockRecoveryLock);
    }

    fn node_down<S: RecoveryStore>(&mut self, n: u8, store: &mut S) {
        if !self.domain_map.contains(n) {
            return;
        }
        store.local_cleanup(n);
        self.recovery_map.insert(n);
        self.log(RecoEvent::NodeDied { dead: n });
        self.member_gone(n, store);
    }

    /// A member is gone (dead, or left cleanly): recovery stops waiting for it, and a
    /// recovery master that is gone before FINALIZE means electing again.
    fn member_gone<S: RecoveryStore>(&mut self, n: u8, store: &mut S) {
        self.domain_map.remove(n);
        if let Some(st) = self.nodes.get_mut(&n) {
            *st = RecoNodeState::Dead;
        }
        self.waiting.remove(n);
        match self.phase {
            Phase::Announcing => self.announced(store),
            Phase::Collecting => self.check_collected(store),
            Phase::Finalizing(stage2) => self.finalize_progress(stage2, store),
            _ => {}
        }
        if self.new_master == Some(n) && n != self.me {
            let dead = self.dead.unwrap_or(n);
            if self.finalizing {
                // Stage 1 was seen: the dead node's resources already went to the (now gone)
                // recovery master, whose own recovery picks them up.
                self.complete(dead);
            } else {
                self.log(RecoEvent::MasterDied { dead, master: n });
                self.reset();
            }
        }
    }

    /// Back to electing: the current attempt is abandoned (its pending replies ignored).
    fn reset(&mut self) {
        self.new_master = None;
        self.finalizing = false;
        self.phase = Phase::Idle;
        self.waiting = NodeMap::new();
        self.nodes.clear();
        self.sends.clear();
        self.agenda.clear();
        self.deferred = None;
    }

    fn complete(&mut self, dead: u8) {
        self.recovery_map.remove(dead);
        self.dead = None;
        self.completed += 1;
        self.reset();
    }

    fn tick<S: RecoveryStore>(&mut self, now: u64, store: &mut S) {
        while let Some(entry) = self.agenda.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let t = entry.remove();
            match t {
                Timer::RetryLock => {
                    if self.phase == Phase::Electing {
                        self.out.push(RecoOutput::LockRecoveryLock);
                    }
                }
                Timer::ElectionWait => {
                    if self.phase == Phase::AwaitBegin {
                        self.phase = Phase::Idle;
                    }
                }
                Timer::ResendBegin(n) => {
                    if self.phase == Phase::Announcing && self.waiting.contains(n) {
                        self.send_begin(n);
                    }
                }
                Timer::ResendLockRequest(n) => {
                    if self.phase == Phase::Collecting
                        && self.nodes.get(&n) == Some(&RecoNodeState::Requesting)
                    {
                        self.send_lock_request(n);
                    }
                }
            }
        }
        let _ = store;
    }

    // ----- election -----

    fn lock_answer<S: RecoveryStore>(
        &mut self,
        now: u64,
        status: crate::wire::DlmStatus,
        store: &mut S,
    ) {
        use crate::wire::DlmStatus;
        if self.phase != Phase::Electing {
            // An answer for an attempt given up since (the master it waited for is known).
            if status == DlmStatus::Normal {
                self.out.push(RecoOutput::UnlockRecoveryLock);
            }
            return;
        }
        match status {
            DlmStatus::Normal => {
                let Some(dead) = self.dead else {
                    self.phase = Phase::Idle;
                    self.out.push(RecoOutput::UnlockRecoveryLock);
                    return;
                };
                if self.new_master.is_some() || !self.recovery_map.contains(dead) {
                    // Someone announced itself first, or the recovery is over.
                    self.phase = Phase::Idle;
                    self.out.push(RecoOutput::UnlockRecoveryLock);
                    return;
                }
                self.new_master = Some(self.me);
                self.phase = Phase::Announcing;
                self.log(RecoEvent::Elected { dead });
                self.waiting = NodeMap::new();
                let others: Vec<u8> = self.others().filter(|&n| n != dead).collect();
                for n in others {
                    self.waiting.insert(n);
                    self.send_begin(n);
                }
                self.announced(store);
            }
            DlmStatus::Notqueued => {
                self.phase = Phase::AwaitBegin;
                self.at(now.saturating_add(ELECTION_WAIT_MS), Timer::ElectionWait);
            }
            _ => {
                self.at(now.saturating_add(RECOVERY_LOCK_RETRY_MS), Timer::RetryLock);
            }
        }
    }

    fn send_begin(&mut self, n: u8) {
        let Some(dead) = self.dead else { return };
        let msg = DlmMessage::BeginReco(RecoNotice {
            node_idx: self.me,
            dead_node: dead,
        });
        self.send(n, msg, Sent::BeginReco(n));
    }

    /// Every BEGIN_RECO answered: release `$RECOVERY` and remaster.
    fn announced<S: RecoveryStore>(&mut self, store: &mut S) {
        if self.phase != Phase::Announcing || !self.waiting.is_empty() {
            return;
        }
        self.out.push(RecoOutput::UnlockRecoveryLock);
        let Some(dead) = self.dead else { return };
        self.phase = Phase::Collecting;
        self.rebuilt = 0;
        self.nodes.clear();
        // This node's own locks on the dead node's resources are the first data.
        let mut data = std::mem::take(&mut self.scratch);
        data.clear();
        store.recovery_data(dead, &mut data);
        for m in &data {
            match store.rebuild(self.me, m) {
                Ok(()) => self.rebuilt += usize::from(m.flags & MRES_ALL_DONE != 0),
                Err(e) => {
                    tracing::error!(node = self.me, domain = %self.domain, dead, "o2dlm recovery: own data refused: {e}")
                }
            }
        }
        self.scratch = data;
        self.nodes.insert(self.me, RecoNodeState::Done);
        let others: Vec<u8> = self.others().collect();
        for n in others {
            self.nodes.insert(n, RecoNodeState::Requesting);
            self.send_lock_request(n);
        }
        self.check_collected(store);
    }

    fn send_lock_request(&mut self, n: u8) {
        let Some(dead) = self.dead else { return };
        let msg = DlmMessage::LockRequest(RecoNotice {
            node_idx: self.me,
            dead_node: dead,
        });
        self.send(n, msg, Sent::LockRequest(n));
    }

    fn check_collected<S: RecoveryStore>(&mut self, store: &mut S) {
        if self.phase != Phase::Collecting {
            return;
        }
        let all_in = self
            .nodes
            .values()
            .all(|s| matches!(s, RecoNodeState::Done | RecoNodeState::Dead));
        if !all_in {
            return;
        }
        let Some(dead) = self.dead else { return };
        self.log(RecoEvent::DataComplete {
            dead,
            resources: self.rebuilt,
        });
        self.finalizing = true;
        self.start_finalize(false, store);
    }

    fn start_finalize<S: RecoveryStore>(&mut self, stage2: bool, store: &mut S) {
        let Some(dead) = self.dead else { return };
        self.phase = Phase::Finalizing(stage2);
        self.waiting = NodeMap::new();
        let flags = if stage2 { FINALIZE_STAGE2 } else { 0 };
        let targets: Vec<u8> = self
            .nodes
            .iter()
            .filter(|&(&n, &s)| n != self.me && s != RecoNodeState::Dead)
            .map(|(&n, _)| n)
            .collect();
        for n in targets {
            self.waiting.insert(n);
            if let Some(s) = self.nodes.get_mut(&n) {
                *s = RecoNodeState::FinalizeSent;
            }
            let msg = DlmMessage::FinalizeReco(FinalizeReco {
                node_idx: self.me,
                dead_node: dead,
                flags,
            });
            self.send(n, msg, Sent::Finalize(n));
        }
        self.finalize_progress(stage2, store);
    }

    fn finalize_progress<S: RecoveryStore>(&mut self, stage2: bool, store: &mut S) {
        if !self.waiting.is_empty() || self.phase != Phase::Finalizing(stage2) {
            return;
        }
        let Some(dead) = self.dead else { return };
        if !stage2 {
            let moved = store.finish(dead, self.me);
            self.log(RecoEvent::Finished {
                dead,
                master: self.me,
                moved,
            });
            self.start_finalize(true, store);
        } else {
            self.complete(dead);
        }
    }

    // ----- messages -----

    fn receive<S: RecoveryStore>(
        &mut self,
        now: u64,
        from: u8,
        msg: DlmMessage,
        store: &mut S,
    ) -> i32 {
        let _ = now;
        match msg {
            DlmMessage::BeginReco(b) => self.begin_reco(b, store),
            DlmMessage::LockRequest(r) => self.lock_request(r, store),
            DlmMessage::MigLockres(m) => self.mig_lockres(from, &m, store),
            DlmMessage::RecoDataDone(d) => self.data_done(d, store),
            DlmMessage::FinalizeReco(f) => self.finalize(f, store),
            other => {
                tracing::warn!(node = self.me, domain = %self.domain, from, "o2dlm recovery: not a recovery message: {other:?}");
                errno::EINVAL
            }
        }
    }

    fn begin_reco<S: RecoveryStore>(&mut self, b: RecoNotice, store: &mut S) -> i32 {
        if self.finalizing {
            return errno::EAGAIN;
        }
        let dead = b.dead_node;
        if !self.recovery_map.contains(dead) {
            // The recovery master saw the death before our heartbeat did (or recovery of that
            // node already ended here): the kernel forces the node-down clean-up all the same.
            self.domain_map.insert(dead);
            self.node_down(dead, store);
        }
        if self.phase == Phase::Electing || self.phase == Phase::AwaitBegin {
            self.agenda.retain(|_, t| *t != Timer::ElectionWait);
        }
        if matches!(self.phase, Phase::Collecting | Phase::Announcing) {
            tracing::warn!(node = self.me, domain = %self.domain, dead, other = b.node_idx, "o2dlm recovery: another node announced itself as recovery master");
        }
        self.phase = Phase::Idle;
        self.nodes.clear();
        self.deferred = None;
        self.dead = Some(dead);
        self.new_master = Some(b.node_idx);
        self.log(RecoEvent::MasterKnown {
            dead,
            master: b.node_idx,
        });
        0
    }

    fn lock_request<S: RecoveryStore>(&mut self, r: RecoNotice, store: &mut S) -> i32 {
        if self.dead != Some(r.dead_node) {
            // The kernel's answer when it is not (yet) recovering that node; the master retries.
            return errno::ENOMEM;
        }
        if store.settling(r.dead_node) {
            self.deferred = Some(r);
            return 0;
        }
        self.send_data(r, store);
        0
    }

    fn send_deferred<S: RecoveryStore>(&mut self, store: &mut S) {
        let Some(r) = self.deferred else { return };
        if self.dead != Some(r.dead_node) {
            self.deferred = None;
        } else if !store.settling(r.dead_node) {
            self.deferred = None;
            self.send_data(r, store);
        }
    }

    /// This node's locks on `r.dead_node`'s resources, then RECO_DATA_DONE, to the recovery
    /// master `r.node_idx`.
    fn send_data<S: RecoveryStore>(&mut self, r: RecoNotice, store: &mut S) {
        let mut data = std::mem::take(&mut self.scratch);
        data.clear();
        store.recovery_data(r.dead_node, &mut data);
        let resources = data.iter().filter(|m| m.flags & MRES_ALL_DONE != 0).count();
        for m in data.drain(..) {
            self.send(r.node_idx, DlmMessage::MigLockres(m), Sent::Data);
        }
        self.scratch = data;
        let done = DlmMessage::RecoDataDone(RecoDataDone {
            node_idx: self.me,
            dead_node: r.dead_node,
        });
        self.send(r.node_idx, done, Sent::Data);
        self.log(RecoEvent::DataSent {
            dead: r.dead_node,
            master: r.node_idx,
            resources,
        });
    }

    fn mig_lockres<S: RecoveryStore>(&mut self, from: u8, m: &MigLockres, store: &mut S) -> i32 {
        if m.flags & MRES_RECOVERY == 0 || self.new_master != Some(self.me) {
            return errno::EINVAL;
        }
        if self.nodes.get(&from) == Some(&RecoNodeState::Requested) {
            self.nodes.insert(from, RecoNodeState::Receiving);
        }
        match store.rebuild(from, m) {
            Ok(()) => {
                self.rebuilt += usize::from(m.flags & MRES_ALL_DONE != 0);
                0
            }
            Err(e) => {
                tracing::error!(node = self.me, domain = %self.domain, from, "o2dlm recovery: {e}");
                errno::EINVAL
            }
        }
    }

    fn data_done<S: RecoveryStore>(&mut self, d: RecoDataDone, store: &mut S) -> i32 {
        if self.phase != Phase::Collecting || self.dead != Some(d.dead_node) {
            return errno::EINVAL;
        }
        match self.nodes.get_mut(&d.node_idx) {
            Some(s) if *s != RecoNodeState::Dead => *s = RecoNodeState::Done,
            _ => return errno::EINVAL,
        }
        self.check_collected(store);
        0
    }

    fn finalize<S: RecoveryStore>(&mut self, f: FinalizeReco, store: &mut S) -> i32 {
        if self.new_master != Some(f.node_idx) || self.dead != Some(f.dead_node) {
            tracing::error!(node = self.me, domain = %self.domain, from = f.node_idx, dead = f.dead_node, "o2dlm recovery: FINALIZE from a node that is not our recovery master");
            return errno::EINVAL;
        }
        if f.flags & FINALIZE_STAGE2 == 0 {
            if !self.finalizing {
                self.finalizing = true;
                let moved = store.finish(f.dead_node, f.node_idx);
                self.log(RecoEvent::Finished {
                    dead: f.dead_node,
                    master: f.node_idx,
                    moved,
                });
            }
        } else {
            self.complete(f.dead_node);
        }
        0
    }

    fn send_done<S: RecoveryStore>(
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
            Ok(s) => s,
            Err(e) => e,
        };
        match what {
            Sent::BeginReco(n) => {
                if status >= 0 || is_host_down(status) {
                    self.waiting.remove(n);
                    self.announced(store);
                } else {
                    self.at(
                        now.saturating_add(BEGIN_RECO_RETRY_MS),
                        Timer::ResendBegin(n),
                    );
                }
            }
            Sent::LockRequest(n) => {
                if self.nodes.get(&n) != Some(&RecoNodeState::Requesting) {
                    return;
                }
                if status >= 0 {
                    self.nodes.insert(n, RecoNodeState::Requested);
                } else if is_host_down(status) {
                    self.nodes.insert(n, RecoNodeState::Dead);
                    self.check_collected(store);
                } else {
                    self.at(
                        now.saturating_add(LOCK_REQUEST_RETRY_MS),
                        Timer::ResendLockRequest(n),
                    );
                }
            }
            Sent::Finalize(n) => {
                // Finalize is not retried: a node that cannot be reached is dying.
                self.waiting.remove(n);
                if let Phase::Finalizing(stage2) = self.phase {
                    self.finalize_progress(stage2, store);
                }
            }
            Sent::Data => {}
        }
    }
}

/// What every MIG_LOCKRES of one resource carries besides its lock records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MresHeader {
    /// The sending node (named by the dummy lock).
    pub sender: u8,
    /// The sender's view of the owner: the dead node (or 255) in recovery, the sender in
    /// migration.
    pub master: u8,
    /// `MRES_RECOVERY` or `MRES_MIGRATION`.
    pub flags: u8,
    pub name: LockName,
    pub lvb: Lvb,
}

/// The lock records of one resource as MIG_LOCKRES messages (`dlm_send_one_lockres`): at
/// most [`MAX_MIGRATABLE_LOCKS`] records each, `total_locks` on all, a `mig_cookie` from
/// `next_cookie` (a node-global counter from 1) when more than one message is needed, and
/// `MRES_ALL_DONE` on the last. A resource with no lock sends the sender's dummy lock.
pub fn pack_lockres(
    head: MresHeader,
    locks: &[MigratableLock],
    next_cookie: &mut u64,
    out: &mut Vec<MigLockres>,
) {
    let dummy = [MigratableLock::dummy(head.sender)];
    let records: &[MigratableLock] = if locks.is_empty() { &dummy } else { locks };
    let total_locks = u32::try_from(locks.len()).unwrap_or(u32::MAX);
    let mig_cookie = if records.len() > MAX_MIGRATABLE_LOCKS {
        let c = *next_cookie;
        *next_cookie = next_cookie.wrapping_add(1).max(1);
        c
    } else {
        0
    };
    let parts = records.chunks(MAX_MIGRATABLE_LOCKS);
    let n = parts.len();
    for (i, chunk) in parts.enumerate() {
        let last = i + 1 == n;
        out.push(MigLockres {
            master: head.master,
            flags: if last {
                head.flags | MRES_ALL_DONE
            } else {
                head.flags
            },
            total_locks,
            mig_cookie,
            name: head.name,
            lvb: head.lvb,
            locks: chunk.to_vec(),
        });
    }
}

/// The value block a node sends with its recovery data for a resource
/// (`dlm_add_lock_to_array`'s rule): the LVB of its granted or converting PR/EX locks, which
/// must all agree; zero when it has none. A disagreement names the resource.
pub fn sender_lvb<'a>(
    name: LockName,
    locks: impl IntoIterator<Item = (&'a MigratableLock, &'a Lvb)>,
) -> Result<Lvb, Error> {
    let mut found: Option<&Lvb> = None;
    for (ml, lvb) in locks {
        let holds = matches!(ml.list, QueueKind::Granted | QueueKind::Converting)
            && matches!(ml.type_, Some(LockMode::Pr | LockMode::Ex));
        // A pending write-back carries the writer's value whatever its mode now.
        if !(holds || ml.flags & LKSB_PUT_LVB != 0) {
            continue;
        }
        match found {
            Some(f) if f != lvb => {
                return Err(Error::BadMigratedLock {
                    name,
                    cookie: ml.cookie,
                    node: ml.node,
                    reason: "this node's locks carry different value blocks",
                })
            }
            _ => found = Some(lvb),
        }
    }
    Ok(found.copied().unwrap_or([0; LVB_LEN]))
}
