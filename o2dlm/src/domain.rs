//! The sans-I/O core of one lock domain on one node: join and leave, the domain map, lock
//! mastery (both sides), local and remote lock/convert/unlock, proxy ASTs and BASTs, refmaps
//! and the deref of idle resources, node up/down.
//!
//! It composes the crate's pieces as `lib.rs` describes: a resource this node masters is a
//! [`LockResource`] whose queue changes are shuffled and flushed at the end of every call (the
//! dlm thread's pass, run at once so every run is reproducible), a resource mastered elsewhere
//! is an [`OwnLocks`], mastery messages are answered with [`crate::mastery`] and join queries
//! with [`crate::join`].
//!
//! Like the o2hb and o2net cores it does no I/O and reads no clock. The driver (or the
//! simulator) calls [`DomainCore::handle`] with the time in milliseconds and an [`Input`]: an
//! API call, a decoded message (whose reply status `handle` returns, as an o2net handler
//! does), a send's completion, a timer tick, a node coming or going. The core queues
//! [`Output`]s: messages to send (each with a token its completion comes back with), and what
//! the API caller is told (grants, failures, BASTs, unlock completions, join and leave). Work
//! the kernel defers to its dlm worker (asserts after a master request, proxy ASTs) is just
//! another queued send, so a handler never waits for the network.
//!
//! Recovery: the core owns a [`Recovery`] machine and is its [`RecoveryStore`]. A member's
//! death (heartbeat's [`Input::NodeDown`], or a BEGIN_RECO that says so first) removes its
//! locks from resources mastered here (value block zeroed if it held EX) and marks the
//! resources it mastered RECOVERING; requests on them are parked rather than failed (a
//! waiting lock leaves the dead master's queues, a conversion goes back to its granted mode)
//! and run again against the new master at FINALIZE, so API callers never see
//! `DLM_RECOVERING`. The `$RECOVERY` election lock is this core's own request (cookie: node
//! byte, sequence 0). Query-join is refused while recovery runs; `dlm_state` shows it.
//!
//! Migration: the core owns a [`crate::migration::Migration`] machine and is its
//! `MigrationStore` (in `domain_migration.rs`). [`Input::Leave`] hands every resource this
//! node masters that others use to the kernel's choice of target, one at a time, while the
//! locks keep working (requests on a MIGRATING resource wait, as the kernel's `dlmlock` does
//! on `DLM_MIGRATING`); the leave loop re-checks every 500 ms as the kernel's does, until
//! nothing is left but this node's own locks' resources, which wait for their unlock.

use std::collections::BTreeMap;

use crate::fasthash::FastMap;

#[path = "domain_migration.rs"]
mod migration;

use crate::join::{self, DomainState, JoinReply, JoinState};
use crate::lockres::{Delivery, LockId, LockResource, Unlocked};
use crate::mastery::{self, Mle, MleKind, ResourceMastery};
use crate::recovery::{
    pack_lockres, sender_lvb, MresHeader, RecoEvent, RecoInput, RecoOutput, Recovery,
    RecoveryState, RecoveryStore,
};
use crate::secondary::{Notice, OwnLocks, PendingOp};
use crate::wire::{
    errno, is_host_down, AssertMaster, ConvertLock, CreateLock, DerefLockres, DlmMessage,
    DlmStatus, DomainName, ExitDomain, JoinCode, JoinNotice, LkmFlags, LockMode, LockName, Lvb,
    MasterRequest, MasterResponse, NodeInfo, NodeMap, ProtocolVersion, QueryJoinRequest,
    QueryNodeinfo, QueryRegion, QueueKind, UnlockLock, ASSERT_MASTER_FINISH_MIGRATION,
    ASSERT_MASTER_MLE_CLEANUP, ASSERT_MASTER_REQUERY, ASSERT_RESPONSE_MASTERY_REF,
    ASSERT_RESPONSE_REASSERT, DLM_PROTOCOL, LVB_LEN, MRES_RECOVERY, NODE_UNKNOWN,
    RECOVERY_LOCK_NAME, REGION_NAME_LEN,
};

/// Lock and convert retry after RECOVERING/MIGRATING/FORWARD or a lost connection (`dlmlock`).
const LOCK_RETRY_MS: u64 = 100;
/// Unlock retry (`dlmunlock`).
const UNLOCK_RETRY_MS: u64 = 50;
/// Master request resend after DLM_MASTER_RESP_ERROR or ENOMEM.
const MASTER_REQUEST_RETRY_MS: u64 = 50;
/// `DLM_DOMAIN_BACKOFF_MS`: join back-off unit, assert-joined and exit retry.
const DOMAIN_BACKOFF_MS: u64 = 200;
/// `DLM_JOIN_TIMEOUT_MSECS`.
const JOIN_TIMEOUT_MS: u64 = 90_000;
/// The leave loop's period (`dlm_unregister_domain`'s migrate loop).
const LEAVE_LOOP_MS: u64 = 500;

/// How a domain core is set up.
#[derive(Debug, Clone)]
pub struct DomainConfig {
    /// This node's number.
    pub node: u8,
    pub name: DomainName,
    /// The fs locking protocol the domain's users speak (ocfs2 and dlmfs: 1.0).
    pub fs_proto: ProtocolVersion,
    /// `DLM_PURGE_INTERVAL_MS` (8000): how long an unused resource is kept.
    pub purge_interval_ms: u64,
    /// `DLM_MASTERY_TIMEOUT_MS` (5000): how long to wait for an assert before asking again.
    pub mastery_timeout_ms: u64,
    /// Global heartbeat region names (`None`: local heartbeat mode), for QUERY_REGION.
    pub regions: Option<Vec<[u8; REGION_NAME_LEN]>>,
    /// The configured nodes, for QUERY_NODEINFO.
    pub nodes: Vec<NodeInfo>,
}

impl DomainConfig {
    /// The kernel's timings, local heartbeat mode, no node table.
    pub fn new(node: u8, name: DomainName) -> DomainConfig {
        DomainConfig {
            node,
            name,
            fs_proto: crate::wire::FS_PROTOCOL,
            purge_interval_ms: 8000,
            mastery_timeout_ms: 5000,
            regions: None,
            nodes: Vec::new(),
        }
    }
}

/// What the world tells a domain core.
#[derive(Debug, Clone)]
pub enum Input {
    /// Start joining the domain (`dlm_register_domain`).
    Join,
    /// Leave the domain once nothing here is in use (`dlm_unregister_domain`).
    Leave,
    /// `dlmlock` of a new lock with a fresh `cookie` (see [`crate::secondary::CookieSource`]).
    Lock {
        cookie: u64,
        name: LockName,
        mode: LockMode,
        flags: LkmFlags,
    },
    /// `dlmlock` with `LKM_CONVERT`; `lvb` is written back when the lock is EX and `flags` has
    /// VALBLK.
    Convert {
        cookie: u64,
        mode: LockMode,
        flags: LkmFlags,
        lvb: Lvb,
    },
    /// `dlmunlock`, or a cancel with `LKM_CANCEL`; `lvb` is written back from an EX lock with
    /// VALBLK.
    Unlock {
        cookie: u64,
        flags: LkmFlags,
        lvb: Lvb,
    },
    /// A request from `from`. [`DomainCore::handle`] returns the reply status.
    Message { from: u8, msg: DlmMessage },
    /// A send finished: the peer handler's status, or a negative errno.
    SendDone {
        token: u64,
        result: Result<i32, i32>,
    },
    /// Time passed: run what is due (see [`DomainCore::next_deadline`]).
    Tick,
    /// Heartbeat: `node` is live (this node included).
    NodeUp(u8),
    /// Heartbeat: `node` is dead.
    NodeDown(u8),
}

/// A granted lock as the API caller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub mode: LockMode,
    /// The resource's value block, when the request asked for it (VALBLK on PR/EX).
    pub lvb: Option<Lvb>,
}

/// What a domain core asks the world to do, or tells the API caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `msg` to node `to` with the key [`DlmMessage::key`] gives; report the result with
    /// [`Input::SendDone`] and `token`.
    Send { token: u64, to: u8, msg: DlmMessage },
    /// A lock request or conversion finished: granted (the AST), or failed with a status (a
    /// failed request's lock is gone; a failed conversion's lock keeps its old mode).
    Done {
        cookie: u64,
        result: Result<Grant, DlmStatus>,
    },
    /// The lock blocks a request for `blocked` (the BAST).
    Bast { cookie: u64, blocked: LockMode },
    /// An unlock or cancel (`cancel`) finished (the unlock AST). `removed`: the lock no
    /// longer exists.
    Unlocked {
        cookie: u64,
        status: DlmStatus,
        removed: bool,
        cancel: bool,
    },
    /// The join finished.
    Joined,
    /// The join failed with a negative errno.
    JoinFailed(i32),
    /// The domain has been left.
    Left,
    /// The domain's state cannot be trusted any more (where the kernel calls `BUG()`): the
    /// node must stop at once, as a kernel node panics, and the others recover it.
    Fatal(String),
}

/// What a reply to one of our sends means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// An unlock committed at its master's death, told to a live master that kept the queues.
    Committed(LockName, migration::Committed),
    QueryJoin(u8),
    QueryNodeinfo(u8),
    QueryRegion(u8),
    AssertJoined(u8),
    /// A master request of one round of votes (see [`Mle::round`]).
    MasterRequest(LockName, u8, u64),
    AssertMaster(LockName, u8),
    Create(u64),
    Convert(u64),
    Unlock(u64),
    Deref(LockName),
    /// A proxy AST (`blocked: None`) or BAST of a resource we master, to send again if the
    /// connection to a live member lost it; `lvb`: the AST carried the value block.
    ProxyAst {
        name: LockName,
        lock: LockId,
        blocked: Option<LockMode>,
        lvb: bool,
    },
    /// Replies that change nothing here (cancel join, begin exit, deref done).
    Notice,
    /// A send of the recovery machine, under its own token.
    Reco(u64),
    /// A send of the migration machine, under its own token.
    Mig(u64),
    Exit(u8),
}

/// Work for later.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Deferred {
    Retry(u64),
    ResendProxyAst {
        name: LockName,
        lock: LockId,
        blocked: Option<LockMode>,
        lvb: bool,
    },
    ResendMasterRequest(LockName, u8),
    MasteryTimeout(LockName),
    Purge(LockName),
    JoinRetry,
    AssertJoinedRetry(u8),
    LeaveLoop,
    ExitRetry(u8),
    ResendCommitted(LockName),
}

/// An API operation waiting for mastery or a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Lock {
        cookie: u64,
        mode: LockMode,
        flags: LkmFlags,
    },
    Convert {
        cookie: u64,
        mode: LockMode,
        flags: LkmFlags,
        lvb: Lvb,
    },
    Unlock {
        cookie: u64,
        flags: LkmFlags,
        lvb: Lvb,
    },
}

impl Op {
    fn cookie(&self) -> u64 {
        match self {
            Op::Lock { cookie, .. } | Op::Convert { cookie, .. } | Op::Unlock { cookie, .. } => {
                *cookie
            }
        }
    }
}

/// Who holds the queues of a resource here.
#[derive(Debug)]
enum Role {
    /// Mastery in progress (or owner dead, recovering).
    Unknown,
    Master(LockResource),
    Remote(OwnLocks),
}

#[derive(Debug)]
struct Res {
    owner: Option<u8>,
    role: Role,
    /// Nodes holding a reference (master only).
    refmap: NodeMap,
    in_progress: bool,
    recovering: bool,
    /// Being migrated away from here, to here, or (bystander) between two other nodes.
    migrating: bool,
    dropping_ref: bool,
    /// Operations waiting for mastery, a deref, recovery or migration.
    waiting: Vec<Op>,
    /// When the resource became unused.
    unused_since: Option<u64>,
    /// A purge check is on the agenda.
    purge_armed: bool,
    /// Which creation of the name on this node this is (the domain's count of resources
    /// made so far): a resource freed and made again within one step is told apart.
    incarnation: u32,
}

impl Res {
    fn new(incarnation: u32) -> Res {
        Res {
            incarnation,
            owner: None,
            role: Role::Unknown,
            refmap: NodeMap::new(),
            in_progress: false,
            recovering: false,
            migrating: false,
            dropping_ref: false,
            waiting: Vec::new(),
            unused_since: None,
            purge_armed: false,
        }
    }

    fn mastery(&self) -> ResourceMastery {
        ResourceMastery {
            owner: self.owner,
            recovering: self.recovering,
            migrating: self.migrating,
            in_progress: self.in_progress,
        }
    }

    fn is_unused(&self) -> bool {
        let no_locks = match &self.role {
            Role::Unknown => true,
            Role::Master(r) => r.has_no_locks() && !r.has_pending_deliveries(),
            Role::Remote(o) => o.is_empty(),
        };
        no_locks
            && self.waiting.is_empty()
            && !self.in_progress
            && !self.migrating
            && self.refmap.is_empty()
    }

    /// `DLM_LOCK_RES_*` bits for the dumps.
    fn state_bits(&self) -> u32 {
        let mut s = 0;
        if self.recovering {
            s |= 0x0002;
        }
        if self.in_progress {
            s |= 0x0010;
        }
        if self.migrating {
            s |= 0x0020;
        }
        if self.dropping_ref {
            s |= 0x0040;
        }
        s
    }
}

/// One of this node's locks, beyond what the queues record.
#[derive(Debug, Clone)]
struct OwnMeta {
    name: LockName,
    /// The request's mode and flags, for a retry.
    mode: LockMode,
    flags: LkmFlags,
    /// A cancel asked for while a create/convert reply was outstanding.
    cancel_wanted: bool,
    /// The master a create was sent to when the connection to it failed before its answer
    /// (the master may have queued, even granted, the lock): until it answers a retry, a
    /// cancel must be settled with it, not here, or it keeps a lock nobody will release.
    create_maybe_at: Option<u8>,
    /// The conversion last asked for (mode, flags, value block to write), to ask the new
    /// master again when the old one died before answering.
    convert: Option<(LockMode, LkmFlags, Lvb)>,
    /// The value block this lock's status block holds (last read or written), which
    /// recovery sends to the new master.
    lvb: Lvb,
    /// The unlock in progress writes `lvb` back (VALBLK from EX): a retry writes it too.
    unlock_puts_lvb: bool,
    /// The send of the create, convert or unlock last asked of a master: the answer to an
    /// earlier one (a master that died before answering, asked again elsewhere) is stale.
    last_send: u64,
}

/// A join in progress (`dlm_try_to_join_domain`).
#[derive(Debug, Clone)]
struct JoinRun {
    phase: JoinPhase,
    started: u64,
    live_snapshot: NodeMap,
    /// Nodes whose reply is awaited in this phase.
    waiting: NodeMap,
    /// Nodes that said JOIN_OK.
    yes: NodeMap,
    retry: bool,
    failed: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinPhase {
    Query,
    Nodeinfo,
    Region,
    AssertJoined,
    BackOff,
}

/// Counts for `dlm_state`: current and total.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    resources_total: u32,
    mles_total: [u32; 3],
    purged: u32,
}

/// One domain on one node. See the module documentation.
#[derive(Debug)]
pub struct DomainCore {
    cfg: DomainConfig,
    key: u32,
    state: DomainState,
    joining_node: Option<u8>,
    live: NodeMap,
    domain_map: NodeMap,
    exit_map: NodeMap,
    dlm_proto: ProtocolVersion,
    fs_proto: ProtocolVersion,
    num_joins: u32,
    join: Option<JoinRun>,
    leaving: bool,
    exits_waiting: NodeMap,
    /// Boxed: a million idle resources must fit in 512 MiB, and the table's spare buckets
    /// then cost a pointer each, not a resource.
    res: FastMap<LockName, Box<Res>>,
    mles: FastMap<LockName, Mle>,
    /// The node a master request is outstanding with, per name: requests go out one at a
    /// time in ascending node order, as `dlm_do_master_request` sends them, so a node that
    /// answered has its BLOCK entry before the eventual master's assert can reach it.
    asking: FastMap<LockName, u8>,
    /// Masteries held until recovery ends (`dlm_get_lock_resource`'s wait_on_recovery): a
    /// node still to recover may have mastered the name, and the survivor that recovers it
    /// answers YES only once it has.
    after_recovery: std::collections::BTreeSet<LockName>,
    /// Rounds of votes started, to tell their answers apart.
    mle_rounds: u64,
    own: FastMap<u64, OwnMeta>,
    sends: FastMap<u64, Sent>,
    next_token: u64,
    agenda: BTreeMap<(u64, u64), Deferred>,
    agenda_seq: u64,
    out: Vec<Output>,
    deliveries: Vec<Delivery>,
    counts: Counts,
    /// The recovery machine; taken out while it runs (it calls back into this core as its
    /// [`RecoveryStore`]).
    reco: Option<Recovery>,
    /// The time of the input being handled, for store calls that need it.
    now: u64,
    /// The last recovery step, for `o2cb status`.
    last_reco_event: Option<RecoEvent>,
    /// Migration on leave and its other roles (target, bystander).
    mig: migration::MigState,
}

impl DomainCore {
    /// A domain that has not joined yet.
    pub fn new(cfg: DomainConfig) -> DomainCore {
        let key = cfg.name.key();
        let fs_proto = cfg.fs_proto;
        let (cfg_node, cfg_name) = (cfg.node, cfg.name);
        DomainCore {
            cfg,
            key,
            state: DomainState::New,
            joining_node: None,
            live: NodeMap::new(),
            domain_map: NodeMap::new(),
            exit_map: NodeMap::new(),
            dlm_proto: DLM_PROTOCOL,
            fs_proto,
            num_joins: 0,
            join: None,
            leaving: false,
            exits_waiting: NodeMap::new(),
            res: FastMap::default(),
            mles: FastMap::default(),
            asking: FastMap::default(),
            after_recovery: std::collections::BTreeSet::new(),
            mle_rounds: 0,
            own: FastMap::default(),
            sends: FastMap::default(),
            next_token: 1,
            agenda: BTreeMap::new(),
            agenda_seq: 0,
            out: Vec::new(),
            deliveries: Vec::new(),
            counts: Counts::default(),
            reco: Some(Recovery::new(cfg_node, cfg_name, NodeMap::new())),
            now: 0,
            last_reco_event: None,
            mig: migration::MigState::new(cfg_node, cfg_name),
        }
    }

    /// This node's number.
    pub fn node(&self) -> u8 {
        self.cfg.node
    }

    /// The domain's name.
    pub fn name(&self) -> &DomainName {
        &self.cfg.name
    }

    /// The o2net key of the domain's messages.
    pub fn key(&self) -> u32 {
        self.key
    }

    /// The domain state.
    pub fn state(&self) -> DomainState {
        self.state
    }

    /// The domain map (members, this node included once joined).
    pub fn domain_map(&self) -> NodeMap {
        self.domain_map
    }

    /// The negotiated dlm and fs protocols.
    pub fn protocols(&self) -> (ProtocolVersion, ProtocolVersion) {
        (self.dlm_proto, self.fs_proto)
    }

    /// The master of a resource, if this node knows it.
    pub fn owner_of(&self, name: &LockName) -> Option<u8> {
        self.res.get(name).and_then(|r| r.owner)
    }

    /// The first rule of the domain's state that does not hold, if any: rules that hold
    /// after every input whatever the faults, checked by the simulator at every step so that
    /// a sweep stops where the state goes wrong, not at the end of the run.
    pub fn broken_invariant(&self) -> Option<String> {
        let me = self.cfg.node;
        for (name, res) in &self.res {
            match &res.role {
                Role::Master(_) if res.owner != Some(me) && !res.migrating => {
                    return Some(format!(
                        "{name}: queues kept as master while the owner is {:?}",
                        res.owner
                    ));
                }
                Role::Remote(_) if res.owner == Some(me) => {
                    return Some(format!("{name}: owned here but its locks kept as remote"));
                }
                _ => {}
            }
        }
        for (cookie, meta) in &self.own {
            if !self.res.contains_key(&meta.name) {
                return Some(format!("lock {cookie:#x} on {} has no resource", meta.name));
            }
        }
        if self.state == DomainState::Joined && !self.domain_map.contains(me) {
            return Some("joined but not in its own domain map".into());
        }
        None
    }

    /// Which creation of `name`'s resource on this node is current (None: none is): it
    /// changes when the resource is freed and made again, even within one step.
    pub fn incarnation_of(&self, name: &LockName) -> Option<u32> {
        self.res.get(name).map(|r| r.incarnation)
    }

    /// How many resources this node holds (mastered or referenced).
    pub fn resource_count(&self) -> usize {
        self.res.len()
    }

    /// What the join handlers consult.
    pub fn join_state(&self) -> JoinState {
        JoinState {
            state: self.state,
            joining_node: self.joining_node,
            domain_map: self.domain_map,
            recovery_map: NodeMap::new(),
            recovery_active: false,
            dlm_proto: self.dlm_proto,
            fs_proto: self.fs_proto,
        }
    }

    /// The earliest time [`Input::Tick`] has work to do.
    pub fn next_deadline(&self) -> Option<u64> {
        let mine = self.agenda.keys().next().map(|(at, _)| *at);
        let reco = self.reco.as_ref().and_then(|r| r.next_deadline());
        [mine, reco, self.mig.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Where recovery stands (`dlm_state`, `o2cb status`).
    pub fn recovery_state(&self) -> Option<RecoveryState> {
        self.reco.as_ref().map(|r| r.state())
    }

    /// The last recovery step seen here.
    pub fn last_recovery_event(&self) -> Option<RecoEvent> {
        self.last_reco_event
    }

    /// Takes the queued outputs.
    pub fn drain_outputs(&mut self) -> std::vec::Drain<'_, Output> {
        self.out.drain(..)
    }

    /// Moves the queued outputs into `into` (keeps both allocations).
    pub fn take_outputs(&mut self, into: &mut Vec<Output>) {
        into.append(&mut self.out);
    }

    /// Handles one input at `now` (ms). For [`Input::Message`] the result is the reply status
    /// to send back; for every other input it is 0. API calls that fail at once report it as
    /// an [`Output`] like any later failure.
    pub fn handle(&mut self, now: u64, input: Input) -> i32 {
        self.now = now;
        let status = self.handle_input(now, input);
        self.pump_recovery(now);
        self.resume_masteries(now);
        status
    }

    fn handle_input(&mut self, now: u64, input: Input) -> i32 {
        match input {
            Input::Join => {
                self.start_join(now);
                0
            }
            Input::Leave => {
                self.start_leave(now);
                0
            }
            Input::Lock {
                cookie,
                name,
                mode,
                flags,
            } => {
                self.lock(now, cookie, name, mode, flags);
                0
            }
            Input::Convert {
                cookie,
                mode,
                flags,
                lvb,
            } => {
                self.run_op(
                    now,
                    Op::Convert {
                        cookie,
                        mode,
                        flags,
                        lvb,
                    },
                );
                0
            }
            Input::Unlock { cookie, flags, lvb } => {
                self.unlock(now, cookie, flags, lvb);
                0
            }
            Input::Message { from, msg } => self.receive(now, from, msg),
            Input::SendDone { token, result } => {
                self.send_done(now, token, result);
                0
            }
            Input::Tick => {
                self.tick(now);
                0
            }
            Input::NodeUp(n) => {
                self.live.insert(n);
                0
            }
            Input::NodeDown(n) => {
                self.node_down(now, n);
                0
            }
        }
    }

    // ----- plumbing -----

    fn send(&mut self, to: u8, msg: DlmMessage, what: Sent) {
        let token = self.next_token;
        self.next_token += 1;
        if let Sent::Create(c) | Sent::Convert(c) | Sent::Unlock(c) = what {
            if let Some(m) = self.own.get_mut(&c) {
                m.last_send = token;
            }
        }
        self.sends.insert(token, what);
        self.out.push(Output::Send { token, to, msg });
    }

    fn defer(&mut self, at: u64, what: Deferred) {
        self.agenda_seq += 1;
        self.agenda.insert((at, self.agenda_seq), what);
    }

    fn others(&self) -> impl Iterator<Item = u8> + '_ {
        let me = self.cfg.node;
        self.domain_map.iter().filter(move |&n| n != me)
    }

    fn tick(&mut self, now: u64) {
        while let Some(entry) = self.agenda.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let what = entry.remove();
            match what {
                Deferred::Retry(cookie) => self.retry(now, cookie),
                Deferred::ResendMasterRequest(name, node) => {
                    if self
                        .mles
                        .get(&name)
                        .is_some_and(|m| m.kind == MleKind::Master && m.node.contains(node))
                    {
                        self.send_master_request(name, node);
                    } else if self.asking.get(&name) == Some(&node) {
                        self.asking.remove(&name);
                        self.ask_next(name);
                        self.check_mastery(now, name);
                    }
                }
                Deferred::ResendProxyAst {
                    name,
                    lock,
                    blocked,
                    lvb,
                } => self.resend_proxy_ast(name, lock, blocked, lvb),
                Deferred::MasteryTimeout(name) => self.mastery_timeout(now, name),
                Deferred::Purge(name) => self.purge(now, name),
                Deferred::JoinRetry => self.join_try(now),
                Deferred::AssertJoinedRetry(n) => {
                    if self.join.is_some() && self.live.contains(n) {
                        self.send_assert_joined(n);
                    } else if let Some(j) = self.join.as_mut() {
                        j.waiting.remove(n);
                        self.join_advance(now);
                    }
                }
                Deferred::LeaveLoop => self.leave_loop(now),
                Deferred::ResendCommitted(name) => self.resend_committed(&name),
                Deferred::ExitRetry(n) => {
                    if self.exits_waiting.contains(n) {
                        self.send_exit(n);
                    }
                }
            }
        }
        if self
            .reco
            .as_ref()
            .and_then(|r| r.next_deadline())
            .is_some_and(|t| t <= now)
        {
            self.reco_handle(now, RecoInput::Tick);
        }
        if self.mig.next_deadline().is_some_and(|t| t <= now) {
            self.mig_handle(now, crate::migration::MigInput::Tick);
        }
    }

    // ----- join -----

    fn start_join(&mut self, now: u64) {
        if self.state != DomainState::New || self.join.is_some() {
            return;
        }
        self.join = Some(JoinRun {
            phase: JoinPhase::BackOff,
            started: now,
            live_snapshot: NodeMap::new(),
            waiting: NodeMap::new(),
            yes: NodeMap::new(),
            retry: false,
            failed: None,
        });
        self.join_try(now);
    }

    /// One attempt (`dlm_try_to_join_domain`): ask every live node.
    fn join_try(&mut self, now: u64) {
        let me = self.cfg.node;
        let live = self.live;
        let Some(j) = self.join.as_mut() else { return };
        self.dlm_proto = DLM_PROTOCOL;
        self.fs_proto = self.cfg.fs_proto;
        j.phase = JoinPhase::Query;
        j.live_snapshot = live;
        j.yes = NodeMap::new();
        j.retry = false;
        j.failed = None;
        j.waiting = live.iter().filter(|&n| n != me).collect();
        self.joining_node = Some(me);
        let req = QueryJoinRequest {
            node_idx: me,
            domain: self.cfg.name,
            dlm_proto: DLM_PROTOCOL,
            fs_proto: self.cfg.fs_proto,
            node_map: live,
        };
        for n in j.waiting.iter().collect::<Vec<_>>() {
            self.send(n, DlmMessage::QueryJoin(req), Sent::QueryJoin(n));
        }
        self.join_advance(now);
    }

    fn join_reply(&mut self, now: u64, what: Sent, result: Result<i32, i32>) {
        let Some(j) = self.join.as_mut() else { return };
        match what {
            Sent::QueryJoin(n) if j.phase == JoinPhase::Query => {
                j.waiting.remove(n);
                match join::read_query_join_reply(result) {
                    Ok(JoinReply::Ok {
                        dlm_minor,
                        fs_minor,
                    }) => {
                        j.yes.insert(n);
                        self.dlm_proto.minor = dlm_minor;
                        self.fs_proto.minor = fs_minor;
                    }
                    Ok(JoinReply::OkNoMap) => {}
                    Ok(JoinReply::Disallow) => j.retry = true,
                    // A node that died meanwhile changes the live map: try again.
                    Err(e) if is_host_down(e) && e != errno::EINVAL => j.retry = true,
                    Err(e) => j.failed = Some(e),
                }
            }
            Sent::QueryNodeinfo(n) if j.phase == JoinPhase::Nodeinfo => {
                j.waiting.remove(n);
                if result != Ok(0) {
                    j.failed = Some(result.unwrap_or_else(|e| e).min(-1));
                }
            }
            Sent::QueryRegion(n) if j.phase == JoinPhase::Region => {
                j.waiting.remove(n);
                if result != Ok(0) {
                    j.failed = Some(result.unwrap_or_else(|e| e).min(-1));
                }
            }
            Sent::AssertJoined(n) if j.phase == JoinPhase::AssertJoined => match result {
                Ok(0) => j.waiting.remove(n),
                Err(e) if is_host_down(e) => j.waiting.remove(n),
                _ => self.defer(now + DOMAIN_BACKOFF_MS, Deferred::AssertJoinedRetry(n)),
            },
            _ => {}
        }
        self.join_advance(now);
    }

    fn join_advance(&mut self, now: u64) {
        let me = self.cfg.node;
        let live = self.live;
        let Some(j) = self.join.as_mut() else { return };
        if !j.waiting.is_empty() || j.phase == JoinPhase::BackOff {
            return;
        }
        if let Some(e) = j.failed {
            let yes = j.yes;
            self.join = None;
            self.joining_node = None;
            self.cancel_join_to(yes);
            tracing::warn!(node = me, domain = %self.cfg.name, "o2dlm: join failed with {e}");
            self.out.push(Output::JoinFailed(e));
            return;
        }
        if j.retry || (j.phase == JoinPhase::Query && j.live_snapshot != live) {
            let yes = j.yes;
            if now.saturating_sub(j.started) >= JOIN_TIMEOUT_MS {
                self.join = None;
                self.joining_node = None;
                self.cancel_join_to(yes);
                self.out.push(Output::JoinFailed(errno::ERESTARTSYS));
                return;
            }
            j.phase = JoinPhase::BackOff;
            self.joining_node = None;
            self.cancel_join_to(yes);
            // The kernel's back-off is (jiffies & 3) × 200 ms; the time stands in for jiffies.
            let wait = (now & 3) * DOMAIN_BACKOFF_MS + DOMAIN_BACKOFF_MS / 4;
            self.defer(now + wait, Deferred::JoinRetry);
            return;
        }
        let yes = j.yes;
        let next = match j.phase {
            JoinPhase::Query => {
                self.domain_map = yes;
                self.domain_map.insert(me);
                if self.dlm_proto.minor >= 1 {
                    JoinPhase::Nodeinfo
                } else {
                    JoinPhase::AssertJoined
                }
            }
            JoinPhase::Nodeinfo => JoinPhase::Region,
            JoinPhase::Region => JoinPhase::AssertJoined,
            JoinPhase::AssertJoined | JoinPhase::BackOff => {
                self.join = None;
                self.joining_node = None;
                self.state = DomainState::Joined;
                self.num_joins += 1;
                for n in self.domain_map.iter().collect::<Vec<_>>() {
                    self.reco_handle(now, RecoInput::NodeJoined(n));
                    self.mig_handle(now, crate::migration::MigInput::NodeJoined(n));
                }
                tracing::info!(node = me, domain = %self.cfg.name, map = ?self.domain_map, "o2dlm: joined domain");
                self.out.push(Output::Joined);
                return;
            }
        };
        if let Some(j) = self.join.as_mut() {
            j.phase = next;
            j.waiting = yes;
        }
        for n in yes.iter() {
            match next {
                JoinPhase::Nodeinfo => {
                    let msg = QueryNodeinfo {
                        nodenum: me,
                        domain: self.cfg.name,
                        nodes: self.cfg.nodes.clone(),
                    };
                    self.send(n, DlmMessage::QueryNodeinfo(msg), Sent::QueryNodeinfo(n));
                }
                JoinPhase::Region => {
                    let msg = QueryRegion {
                        node: me,
                        domain: self.cfg.name,
                        regions: self.cfg.regions.clone().unwrap_or_default(),
                    };
                    self.send(n, DlmMessage::QueryRegion(msg), Sent::QueryRegion(n));
                }
                _ => self.send_assert_joined(n),
            }
        }
        self.join_advance(now);
    }

    fn send_assert_joined(&mut self, n: u8) {
        let msg = JoinNotice {
            node_idx: self.cfg.node,
            domain: self.cfg.name,
        };
        self.send(n, DlmMessage::AssertJoined(msg), Sent::AssertJoined(n));
    }

    fn cancel_join_to(&mut self, nodes: NodeMap) {
        for n in nodes.iter() {
            let msg = JoinNotice {
                node_idx: self.cfg.node,
                domain: self.cfg.name,
            };
            self.send(n, DlmMessage::CancelJoin(msg), Sent::Notice);
        }
    }

    /// `dlm_query_join_handler` for this domain (a node-wide handler finds the domain by name;
    /// for a domain that does not exist here it answers with [`join::answer_query_join`] and
    /// no domain).
    pub fn answer_query_join(&mut self, req: &QueryJoinRequest) -> i32 {
        // `dlm_query_join_handler`: no joins while recovery runs.
        if self.reco.as_ref().is_some_and(|r| r.is_active()) {
            return crate::wire::QueryJoinResponse {
                code: JoinCode::Disallow,
                dlm_minor: 0,
                fs_minor: 0,
            }
            .to_status();
        }
        let heartbeating = self.live.contains(req.node_idx);
        let answer = join::answer_query_join(req, heartbeating, Some(&self.join_state()));
        if answer.code == JoinCode::Ok {
            self.joining_node = Some(req.node_idx);
        }
        answer.to_status()
    }

    // ----- leave -----

    fn start_leave(&mut self, now: u64) {
        if self.leaving {
            return;
        }
        if self.state == DomainState::New {
            self.join = None;
            self.joining_node = None;
            self.state = DomainState::Leaving;
            self.out.push(Output::Left);
            return;
        }
        self.leaving = true;
        self.state = DomainState::InShutdown;
        if self.dlm_proto.minor >= 2 {
            let msg = ExitDomain {
                node_idx: self.cfg.node,
            };
            for n in self.others().collect::<Vec<_>>() {
                self.send(n, DlmMessage::BeginExitDomain(msg), Sent::Notice);
            }
        }
        self.leave_loop(now);
    }

    /// Drops every unused resource at once (references go back to their masters) and waits
    /// for the rest; once the table is empty and nobody is joining, says goodbye.
    fn leave_loop(&mut self, now: u64) {
        if !self.leaving || self.state == DomainState::Leaving {
            // Gone, or saying goodbye already.
            return;
        }
        // What others use is handed over first (`dlm_migrate_all_locks`).
        self.migrate_on_leave(now);
        let names: Vec<LockName> = self.res.keys().copied().collect();
        for name in names {
            if self.res.get(&name).is_some_and(|r| r.is_unused()) {
                self.drop_resource(now, name);
            }
        }
        if !self.res.is_empty() || self.joining_node.is_some() {
            let busy = self.res.len();
            tracing::debug!(node = self.cfg.node, domain = %self.cfg.name, busy, "o2dlm: leave waits for resources in use");
            self.defer(now + LEAVE_LOOP_MS, Deferred::LeaveLoop);
            return;
        }
        self.state = DomainState::Leaving;
        self.exits_waiting = self.others().collect();
        for n in self.exits_waiting.iter().collect::<Vec<_>>() {
            self.send_exit(n);
        }
        self.finish_leave();
    }

    fn send_exit(&mut self, n: u8) {
        let msg = ExitDomain {
            node_idx: self.cfg.node,
        };
        self.send(n, DlmMessage::ExitDomain(msg), Sent::Exit(n));
    }

    fn finish_leave(&mut self) {
        if self.state == DomainState::Leaving && self.exits_waiting.is_empty() && self.leaving {
            self.leaving = false;
            self.domain_map = NodeMap::new();
            tracing::info!(node = self.cfg.node, domain = %self.cfg.name, "o2dlm: left domain");
            self.out.push(Output::Left);
        }
    }

    // ----- API operations -----

    fn lock(&mut self, now: u64, cookie: u64, name: LockName, mode: LockMode, flags: LkmFlags) {
        let fail = |s: &mut Self, status| {
            s.out.push(Output::Done {
                cookie,
                result: Err(status),
            })
        };
        if self.state != DomainState::Joined || self.leaving {
            return fail(self, DlmStatus::Rejected);
        }
        if !LkmFlags::VALID_LOCK.contains(flags) || flags.contains(LkmFlags::CONVERT) {
            return fail(self, DlmStatus::Badparam);
        }
        if flags.contains(LkmFlags::RECOVERY) && !name.is_recovery_lock() {
            return fail(self, DlmStatus::Badparam);
        }
        if self.own.contains_key(&cookie) {
            return fail(self, DlmStatus::Badargs);
        }
        self.own.insert(
            cookie,
            OwnMeta {
                name,
                mode,
                flags,
                cancel_wanted: false,
                create_maybe_at: None,
                convert: None,
                lvb: [0; LVB_LEN],
                unlock_puts_lvb: false,
                last_send: 0,
            },
        );
        let res = self.res.entry(name).or_insert_with(|| {
            self.counts.resources_total += 1;
            Box::new(Res::new(self.counts.resources_total))
        });
        res.unused_since = None;
        if res.owner.is_none() && !res.in_progress && !res.recovering && !res.dropping_ref {
            if flags.contains(LkmFlags::LOCAL) {
                res.owner = Some(self.cfg.node);
                res.role = Role::Master(LockResource::new(name));
            } else {
                res.in_progress = true;
                res.waiting.push(Op::Lock {
                    cookie,
                    mode,
                    flags,
                });
                self.start_mastery(now, name);
                return;
            }
        }
        self.run_op(
            now,
            Op::Lock {
                cookie,
                mode,
                flags,
            },
        );
    }

    fn unlock(&mut self, now: u64, cookie: u64, flags: LkmFlags, lvb: Lvb) {
        if !LkmFlags::VALID_UNLOCK.contains(flags) {
            self.out.push(Output::Unlocked {
                cookie,
                status: DlmStatus::Badparam,
                removed: false,
                cancel: flags.contains(LkmFlags::CANCEL),
            });
            return;
        }
        // A cancel of a request still waiting for mastery never reached any queue, unless
        // its create may have reached a master that is still there: then the retry goes on
        // and the cancel follows its answer.
        if flags.contains(LkmFlags::CANCEL) {
            if let Some(meta) = self.own.get(&cookie) {
                let name = meta.name;
                let maybe_at = meta.create_maybe_at;
                if let Some(res) = self.res.get_mut(&name) {
                    if maybe_at.is_some_and(|o| res.owner == Some(o) && self.domain_map.contains(o))
                    {
                        if let Some(m) = self.own.get_mut(&cookie) {
                            m.cancel_wanted = true;
                        }
                        return;
                    }
                    let before = res.waiting.len();
                    res.waiting
                        .retain(|op| !matches!(op, Op::Lock { cookie: c, .. } if *c == cookie));
                    if res.waiting.len() != before {
                        self.own.remove(&cookie);
                        self.tell_cancelled(cookie, true);
                        self.note_if_unused(now, name);
                        return;
                    }
                }
            }
        }
        self.run_op(now, Op::Unlock { cookie, flags, lvb });
    }

    fn op_failed(&mut self, now: u64, op: &Op, status: DlmStatus) {
        let cookie = op.cookie();
        match op {
            Op::Lock { .. } => {
                if let Some(meta) = self.own.remove(&cookie) {
                    self.note_if_unused(now, meta.name);
                }
                self.out.push(Output::Done {
                    cookie,
                    result: Err(status),
                });
            }
            Op::Convert { .. } => self.out.push(Output::Done {
                cookie,
                result: Err(status),
            }),
            Op::Unlock { flags, .. } => self.out.push(Output::Unlocked {
                cookie,
                status,
                removed: false,
                cancel: flags.contains(LkmFlags::CANCEL),
            }),
        }
    }

    /// Runs an operation against a resource whose owner is known, or parks it.
    fn run_op(&mut self, now: u64, op: Op) {
        let me = self.cfg.node;
        let cookie = op.cookie();
        let Some(name) = self.own.get(&cookie).map(|m| m.name) else {
            return self.op_failed(now, &op, DlmStatus::Ivlockid);
        };
        let Some(res) = self.res.get_mut(&name) else {
            return self.op_failed(now, &op, DlmStatus::Ivlockid);
        };
        if res.in_progress || res.dropping_ref || res.recovering || res.migrating {
            res.waiting.push(op);
            return;
        }
        let queued = match &res.role {
            Role::Unknown => false,
            Role::Master(engine) => engine.find(LockId { node: me, cookie }).is_some(),
            Role::Remote(own) => own.get(cookie).is_some(),
        };
        if matches!(op, Op::Lock { .. }) && queued {
            // A second copy of a request that is already on the queues (a retry that was
            // also parked for recovery): asking again would make a second lock of the cookie.
            return;
        }
        match &mut res.role {
            Role::Unknown => {
                // The resource was dropped and is being looked up again.
                res.waiting.push(op);
                res.in_progress = true;
                self.start_mastery(now, name);
            }
            Role::Master(engine) => {
                let id = LockId { node: me, cookie };
                match op {
                    Op::Lock { mode, flags, .. } => match engine.request(id, mode, flags) {
                        // `$RECOVERY` has no AST: the status is the grant.
                        Ok(crate::lockres::Requested::Granted) if name.is_recovery_lock() => {
                            self.out.push(Output::Done {
                                cookie,
                                result: Ok(Grant { mode, lvb: None }),
                            })
                        }
                        Ok(_) => {}
                        Err(s) => self.op_failed(now, &op, s),
                    },
                    Op::Convert {
                        mode, flags, lvb, ..
                    } => {
                        if let Err(s) = engine.convert(id, mode, flags, Some(&lvb)) {
                            self.op_failed(now, &op, s);
                        }
                    }
                    Op::Unlock { flags, lvb, .. } => {
                        let r = engine.unlock(id, flags, Some(&lvb));
                        self.local_unlocked(now, cookie, flags.contains(LkmFlags::CANCEL), r);
                    }
                }
                self.kick(now, name);
            }
            Role::Remote(own) => {
                let owner = res.owner.unwrap_or(me);
                // One network operation per lock at a time: anything else waits for the
                // reply (a cancel of a request waiting for its reply is remembered below).
                let busy = own.get(cookie).and_then(|l| l.pending);
                let early_cancel = matches!(op, Op::Unlock { flags, .. } if flags.contains(LkmFlags::CANCEL))
                    && matches!(busy, Some(PendingOp::Lock | PendingOp::Convert));
                if busy.is_some() && !early_cancel {
                    res.waiting.push(op);
                    return;
                }
                match op {
                    Op::Lock { mode, flags, .. } => {
                        let msg = own.begin_lock(cookie, mode, flags);
                        self.send(owner, DlmMessage::CreateLock(msg), Sent::Create(cookie));
                    }
                    Op::Convert {
                        mode, flags, lvb, ..
                    } => match own.begin_convert(cookie, mode, flags, &lvb) {
                        Ok(Some(msg)) if self.own.contains_key(&cookie) => {
                            if let Some(m) = self.own.get_mut(&cookie) {
                                m.convert = Some((mode, flags, lvb));
                                if let Some(v) = msg.lvb {
                                    m.lvb = v;
                                }
                            }
                            self.send(owner, DlmMessage::ConvertLock(msg), Sent::Convert(cookie))
                        }
                        Ok(Some(msg)) => {
                            self.send(owner, DlmMessage::ConvertLock(msg), Sent::Convert(cookie))
                        }
                        Ok(None) => self.out.push(Output::Done {
                            cookie,
                            result: Ok(Grant { mode, lvb: None }),
                        }),
                        Err(s) => self.op_failed(now, &op, s),
                    },
                    Op::Unlock { flags, lvb, .. } => {
                        let waiting_reply = own.get(cookie).is_some_and(|l| {
                            matches!(l.pending, Some(PendingOp::Lock | PendingOp::Convert))
                        });
                        if flags.contains(LkmFlags::CANCEL) && waiting_reply {
                            if let Some(m) = self.own.get_mut(&cookie) {
                                m.cancel_wanted = true;
                            }
                            return;
                        }
                        match own.begin_unlock(cookie, flags, &lvb) {
                            Ok(msg) => {
                                if let Some(m) = self.own.get_mut(&cookie) {
                                    // The caller's write is in its status block from now on,
                                    // as in the kernel's lksb: a retry and recovery use it.
                                    m.unlock_puts_lvb = msg.lvb.is_some();
                                    if let Some(v) = msg.lvb {
                                        m.lvb = v;
                                    }
                                }
                                self.send(owner, DlmMessage::UnlockLock(msg), Sent::Unlock(cookie))
                            }
                            Err(s) => self.out.push(Output::Unlocked {
                                cookie,
                                status: s,
                                removed: false,
                                cancel: flags.contains(LkmFlags::CANCEL),
                            }),
                        }
                    }
                }
            }
        }
    }

    fn local_unlocked(
        &mut self,
        now: u64,
        cookie: u64,
        cancel: bool,
        r: Result<Unlocked, DlmStatus>,
    ) {
        match r {
            Ok(u) => {
                let status = u.status();
                let removed = matches!(u, Unlocked::Unlocked(_) | Unlocked::CancelledRequest(_));
                match u {
                    Unlocked::CancelledRequest(_) | Unlocked::CancelledConvert => {
                        self.out.push(Output::Done {
                            cookie,
                            result: Err(DlmStatus::Cancel),
                        })
                    }
                    _ => {}
                }
                if removed {
                    if let Some(meta) = self.own.remove(&cookie) {
                        self.note_if_unused(now, meta.name);
                    }
                }
                self.out.push(Output::Unlocked {
                    cookie,
                    status,
                    removed,
                    cancel,
                });
            }
            Err(s) => self.out.push(Output::Unlocked {
                cookie,
                status: s,
                removed: false,
                cancel,
            }),
        }
    }

    /// The dlm thread's pass over a resource we master: shuffle, then hand out ASTs and BASTs.
    fn kick(&mut self, now: u64, name: LockName) {
        let me = self.cfg.node;
        let Some(res) = self.res.get_mut(&name) else {
            return;
        };
        let Role::Master(engine) = &mut res.role else {
            return;
        };
        if engine.is_dirty() {
            engine.shuffle();
        }
        if !engine.has_pending_deliveries() {
            self.note_if_unused(now, name);
            return;
        }
        let mut deliveries = std::mem::take(&mut self.deliveries);
        engine.flush(&mut deliveries);
        for d in deliveries.drain(..) {
            let lock = d.lock();
            if lock.node == me {
                match d {
                    Delivery::Ast { mode, lvb, .. } => self.out.push(Output::Done {
                        cookie: lock.cookie,
                        result: Ok(Grant { mode, lvb }),
                    }),
                    Delivery::Bast { blocked, .. } => self.out.push(Output::Bast {
                        cookie: lock.cookie,
                        blocked,
                    }),
                }
            } else {
                self.send_proxy_ast(name, &d);
            }
        }
        self.deliveries = deliveries;
        self.note_if_unused(now, name);
    }

    fn send_proxy_ast(&mut self, name: LockName, d: &Delivery) {
        let msg = d.to_proxy_ast(self.cfg.node, name);
        let (lock, blocked, lvb) = match *d {
            Delivery::Ast { lock, lvb, .. } => (lock, None, lvb.is_some()),
            Delivery::Bast { lock, blocked } => (lock, Some(blocked), false),
        };
        let what = Sent::ProxyAst {
            name,
            lock,
            blocked,
            lvb,
        };
        self.send(lock.node, DlmMessage::ProxyAst(msg), what);
    }

    /// A proxy AST or BAST the connection lost goes again while it still holds: the grant
    /// stands (the lock is granted, not converting) or the lock still blocks someone. The
    /// kernel only logs the failure; its requester would wait for good. A requester ignores
    /// an AST for a lock it already holds granted.
    fn resend_proxy_ast(
        &mut self,
        name: LockName,
        id: LockId,
        blocked: Option<LockMode>,
        lvb: bool,
    ) {
        if !self.domain_map.contains(id.node) {
            return;
        }
        let Some(Role::Master(engine)) = self.res.get(&name).map(|r| &r.role) else {
            return;
        };
        let Some((queue, lock)) = engine.find(id) else {
            return;
        };
        let d = match blocked {
            None if queue == QueueKind::Granted => Delivery::Ast {
                lock: id,
                mode: lock.mode,
                lvb: lvb.then_some(*engine.lvb()),
            },
            Some(b) if queue != QueueKind::Blocked && !LockMode::compatible(lock.mode, b) => {
                Delivery::Bast {
                    lock: id,
                    blocked: b,
                }
            }
            _ => return,
        };
        self.send_proxy_ast(name, &d);
    }

    fn note_if_unused(&mut self, now: u64, name: LockName) {
        let Some(res) = self.res.get_mut(&name) else {
            return;
        };
        if res.unused_since.is_none() && res.is_unused() {
            res.unused_since = Some(now);
            if let Role::Master(e) = &mut res.role {
                e.shrink_if_idle();
            }
            // One check on the agenda at a time; it re-arms itself if the resource was used
            // again meanwhile.
            if !res.purge_armed {
                res.purge_armed = true;
                let wait = if self.leaving {
                    0
                } else {
                    self.cfg.purge_interval_ms
                };
                self.defer(now.saturating_add(wait), Deferred::Purge(name));
            }
        }
    }

    fn retry(&mut self, now: u64, cookie: u64) {
        let Some(name) = self.own.get(&cookie).map(|m| m.name) else {
            return;
        };
        let Some(res) = self.res.get_mut(&name) else {
            return;
        };
        let mut retry_ops = Vec::new();
        res.waiting.retain(|op| {
            if op.cookie() == cookie {
                retry_ops.push(op.clone());
                false
            } else {
                true
            }
        });
        for op in retry_ops {
            self.run_op(now, op);
        }
    }

    /// Parks `op` and runs it again after the kernel's retry delay.
    /// Drops our view of `name`'s owner so that it is looked up again, when nothing of ours
    /// is on its queues there (no lock granted or converting). Returns whether it did.
    fn forget_owner(&mut self, name: LockName) -> bool {
        let Some(res) = self.res.get_mut(&name) else {
            return false;
        };
        let idle = matches!(&res.role, Role::Remote(own) if own.is_empty());
        if !idle || res.recovering || res.migrating || res.dropping_ref || res.in_progress {
            return false;
        }
        tracing::warn!(node = self.cfg.node, domain = %self.cfg.name, lock = %name, "o2dlm: node {:?} is not the master of {name} after all; looking it up again", res.owner);
        res.owner = None;
        res.role = Role::Unknown;
        res.in_progress = true;
        true
    }

    fn retry_later(&mut self, now: u64, name: LockName, op: Op) {
        let delay = if matches!(op, Op::Unlock { .. }) {
            UNLOCK_RETRY_MS
        } else {
            LOCK_RETRY_MS
        };
        let cookie = op.cookie();
        if let Some(res) = self.res.get_mut(&name) {
            res.waiting.push(op);
        }
        // A parked op must not keep `run_op` from running it: it is taken out by `retry`.
        self.defer(now + delay, Deferred::Retry(cookie));
    }

    // ----- mastery, requesting side -----

    fn start_mastery(&mut self, now: u64, name: LockName) {
        let me = self.cfg.node;
        if let Some(mle) = self.mles.get(&name) {
            // Another node is mastering it (BLOCK) or we already are: wait for the assert.
            if mle.kind == MleKind::Block {
                self.defer(
                    now + self.cfg.mastery_timeout_ms,
                    Deferred::MasteryTimeout(name),
                );
            }
            return;
        }
        let mut mle = Mle::new(MleKind::Master, name, me, &self.domain_map);
        mle.maybe.insert(me);
        self.mles.insert(name, mle);
        self.counts.mles_total[1] += 1;
        self.ask_anew(now, name);
    }

    /// Starts (or restarts) the votes of our MASTER entry for `name`, unless recovery runs:
    /// then they start when it ends. `$RECOVERY` itself is mastered at once.
    fn ask_anew(&mut self, now: u64, name: LockName) {
        self.asking.remove(&name);
        self.mle_rounds += 1;
        if let Some(mle) = self.mles.get_mut(&name) {
            mle.round = self.mle_rounds;
        }
        self.defer(
            now + self.cfg.mastery_timeout_ms,
            Deferred::MasteryTimeout(name),
        );
        if self.recovery_running() && !name.is_recovery_lock() {
            self.after_recovery.insert(name);
            return;
        }
        self.after_recovery.remove(&name);
        self.ask_next(name);
        self.check_mastery(now, name);
    }

    /// Recovery is active, or running now (its machine is out while it calls this core).
    fn recovery_running(&self) -> bool {
        self.reco.as_ref().is_none_or(|r| r.is_active())
    }

    /// Once recovery has ended, the masteries it held ask everyone from scratch.
    fn resume_masteries(&mut self, now: u64) {
        if self.after_recovery.is_empty() || self.recovery_running() {
            return;
        }
        for name in std::mem::take(&mut self.after_recovery) {
            if self
                .mles
                .get(&name)
                .is_some_and(|m| m.kind == MleKind::Master)
            {
                self.ask_next(name);
                self.check_mastery(now, name);
            }
        }
    }

    /// Asks the lowest node that has not answered yet, unless one is being asked or the
    /// master is known.
    fn ask_next(&mut self, name: LockName) {
        if self.asking.contains_key(&name) {
            return;
        }
        if self.after_recovery.contains(&name) {
            return;
        }
        let Some(mle) = self.mles.get(&name) else {
            return;
        };
        if mle.kind != MleKind::Master || mle.master.is_some() {
            return;
        }
        let next = mle.vote.iter().find(|&n| !mle.response.contains(n));
        if let Some(n) = next {
            self.asking.insert(name, n);
            self.send_master_request(name, n);
        }
    }

    fn send_master_request(&mut self, name: LockName, n: u8) {
        let round = self.mles.get(&name).map_or(0, |m| m.round);
        let msg = MasterRequest {
            node_idx: self.cfg.node,
            flags: 0,
            name,
        };
        self.send(
            n,
            DlmMessage::MasterRequest(msg),
            Sent::MasterRequest(name, n, round),
        );
    }

    fn master_request_reply(
        &mut self,
        now: u64,
        name: LockName,
        node: u8,
        round: u64,
        result: Result<i32, i32>,
    ) {
        if self.mles.get(&name).is_some_and(|m| m.round != round) {
            // An answer to a round of votes that has been restarted since.
            return;
        }
        if self.asking.get(&name) == Some(&node) {
            self.asking.remove(&name);
        }
        let Some(mle) = self.mles.get_mut(&name) else {
            return;
        };
        if mle.kind != MleKind::Master || !mle.node.contains(node) {
            self.ask_next(name);
            return;
        }
        match result {
            Ok(v) => match MasterResponse::from_wire(v) {
                Some(MasterResponse::Yes) => {
                    mle.response.insert(node);
                    mle.master = Some(node);
                }
                Some(MasterResponse::Maybe) => {
                    mle.response.insert(node);
                    mle.maybe.insert(node);
                }
                Some(MasterResponse::Error) => {
                    self.asking.insert(name, node);
                    self.defer(
                        now + MASTER_REQUEST_RETRY_MS,
                        Deferred::ResendMasterRequest(name, node),
                    );
                    return;
                }
                Some(MasterResponse::No) | None => mle.response.insert(node),
            },
            // No answer is no vote (`dlm_do_master_request`): the node is asked again until
            // it answers or heartbeat declares it dead, which restarts the votes.
            Err(_) => {
                self.asking.insert(name, node);
                self.defer(
                    now + MASTER_REQUEST_RETRY_MS,
                    Deferred::ResendMasterRequest(name, node),
                );
                return;
            }
        }
        self.ask_next(name);
        self.check_mastery(now, name);
    }

    /// `dlm_wait_for_lock_mastery`'s decision once the votes are in: a node that said YES is
    /// master; else the lowest node of the maybe map is, and if that is us we assert.
    fn check_mastery(&mut self, now: u64, name: LockName) {
        let me = self.cfg.node;
        if self.after_recovery.contains(&name) {
            return;
        }
        let Some(mle) = self.mles.get(&name) else {
            return;
        };
        if mle.kind != MleKind::Master {
            return;
        }
        // Recovery made a master meanwhile (`dlm_wait_for_lock_mastery`: the owner is
        // suddenly known): the entry is done, and that master learns of our reference.
        let settled = self
            .res
            .get(&name)
            .filter(|r| !r.in_progress && !r.recovering);
        if let Some(owner) = settled.and_then(|r| r.owner) {
            self.mles.remove(&name);
            self.asking.remove(&name);
            if owner != me {
                self.send_master_request(name, owner);
            }
            return;
        }
        // Told who the master is: done, whoever has not been asked yet.
        if let Some(m) = mle.master {
            self.mles.remove(&name);
            self.asking.remove(&name);
            self.set_owner(now, name, m);
            return;
        }
        if mle.node.iter().any(|n| !mle.response.contains(n)) {
            return;
        }
        let lowest = mle.maybe.iter().next().unwrap_or(me);
        if lowest < me {
            // A lower node is mastering too: its assert will come.
            return;
        }
        let nodes = mle.node;
        self.mles.remove(&name);
        self.asking.remove(&name);
        tracing::debug!(node = me, domain = %self.cfg.name, lock = %name, "o2dlm: mastered resource");
        self.set_owner(now, name, me);
        for n in nodes.iter() {
            self.send_assert(name, n, 0);
        }
    }

    fn send_assert(&mut self, name: LockName, n: u8, flags: u32) {
        let msg = AssertMaster {
            node_idx: self.cfg.node,
            flags,
            name,
        };
        self.send(
            n,
            DlmMessage::AssertMaster(msg),
            Sent::AssertMaster(name, n),
        );
    }

    fn set_owner(&mut self, now: u64, name: LockName, owner: u8) {
        let me = self.cfg.node;
        let Some(res) = self.res.get_mut(&name) else {
            return;
        };
        res.owner = Some(owner);
        res.in_progress = false;
        res.role = if owner == me {
            Role::Master(LockResource::new(name))
        } else {
            Role::Remote(OwnLocks::new(me, name))
        };
        let ops = std::mem::take(&mut res.waiting);
        for op in ops {
            self.run_op(now, op);
        }
        self.note_if_unused(now, name);
    }

    fn mastery_timeout(&mut self, now: u64, name: LockName) {
        let me = self.cfg.node;
        let waiting = self
            .res
            .get(&name)
            .is_some_and(|r| r.in_progress && r.owner.is_none());
        if !waiting {
            return;
        }
        // No assert came: ask everyone again, as a master (a BLOCK entry whose master
        // never asserted turns into a MASTER one, as on the node's death).
        let mut mle = Mle::new(MleKind::Master, name, me, &self.domain_map);
        mle.maybe.insert(me);
        self.mles.insert(name, mle);
        self.ask_anew(now, name);
    }

    // ----- purge and deref -----

    fn purge(&mut self, now: u64, name: LockName) {
        let interval = if self.leaving {
            0
        } else {
            self.cfg.purge_interval_ms
        };
        let Some(res) = self.res.get_mut(&name) else {
            return;
        };
        res.purge_armed = false;
        let Some(since) = res.unused_since.filter(|_| res.is_unused()) else {
            return;
        };
        let due = since.saturating_add(interval);
        if due <= now {
            self.drop_resource(now, name);
        } else {
            res.purge_armed = true;
            self.defer(due, Deferred::Purge(name));
        }
    }

    /// Frees an unused resource; a remote master is told first (`dlm_purge_lockres`).
    fn drop_resource(&mut self, now: u64, name: LockName) {
        let me = self.cfg.node;
        let Some(res) = self.res.get_mut(&name) else {
            return;
        };
        if res.dropping_ref {
            return;
        }
        match res.owner {
            Some(o) if o != me && !res.recovering && self.domain_map.contains(o) => {
                res.dropping_ref = true;
                let msg = DerefLockres { node_idx: me, name };
                self.send(o, DlmMessage::DerefLockres(msg), Sent::Deref(name));
            }
            _ => {
                self.res.remove(&name);
                self.counts.purged += 1;
            }
        }
        let _ = now;
    }

    fn deref_done(&mut self, now: u64, name: LockName) {
        let Some(res) = self.res.get_mut(&name) else {
            return;
        };
        if !res.dropping_ref {
            return;
        }
        let waiting = std::mem::take(&mut res.waiting);
        self.res.remove(&name);
        self.counts.purged += 1;
        self.leave_when_empty(now);
        if !waiting.is_empty() {
            // Requests made while the reference was being dropped look the resource up anew.
            self.counts.resources_total += 1;
            let mut res = Box::new(Res::new(self.counts.resources_total));
            res.in_progress = true;
            res.waiting = waiting;
            self.res.insert(name, res);
            self.start_mastery(now, name);
        }
    }

    // ----- send completions -----

    fn send_done(&mut self, now: u64, token: u64, result: Result<i32, i32>) {
        let Some(what) = self.sends.remove(&token) else {
            return;
        };
        if let Sent::Create(c) | Sent::Convert(c) | Sent::Unlock(c) = what {
            if self.own.get(&c).is_some_and(|m| m.last_send != token) {
                return;
            }
        }
        match what {
            Sent::QueryJoin(_)
            | Sent::QueryNodeinfo(_)
            | Sent::QueryRegion(_)
            | Sent::AssertJoined(_) => self.join_reply(now, what, result),
            Sent::MasterRequest(name, n, round) => {
                self.master_request_reply(now, name, n, round, result)
            }
            Sent::AssertMaster(name, n) => match result {
                Ok(v) if v >= 0 => {
                    if v & ASSERT_RESPONSE_MASTERY_REF != 0 {
                        if let Some(r) = self.res.get_mut(&name) {
                            if r.owner == Some(self.cfg.node) {
                                r.refmap.insert(n);
                                r.unused_since = None;
                            }
                        }
                    }
                    if v & ASSERT_RESPONSE_REASSERT != 0 {
                        for m in self.others().collect::<Vec<_>>() {
                            self.send_assert(name, m, 0);
                        }
                    }
                }
                Ok(v) => {
                    // `dlm_do_assert_master`: a member that believes another node masters
                    // the name answers "die"; going on would leave two masters.
                    self.out.push(Output::Fatal(format!(
                        "node {n} refused our assert of mastery of {name} with {v}: it knows another master"
                    )));
                }
                Err(_) => {}
            },
            Sent::Create(cookie) => self.create_reply(now, cookie, result),
            Sent::Convert(cookie) => self.convert_reply(now, cookie, result),
            Sent::Unlock(cookie) => self.unlock_reply(now, cookie, result),
            Sent::Deref(name) => match result {
                Ok(1) => {} // DEREF_DONE follows
                _ => self.deref_done(now, name),
            },
            Sent::Exit(n) => match result {
                Err(e)
                    if e != errno::ENOPROTOOPT && e != errno::ENOTCONN && self.live.contains(n) =>
                {
                    self.defer(now + DOMAIN_BACKOFF_MS, Deferred::ExitRetry(n));
                }
                _ => {
                    self.exits_waiting.remove(n);
                    self.finish_leave();
                }
            },
            Sent::ProxyAst {
                name,
                lock,
                blocked,
                lvb,
            } => {
                if result.is_err() && self.domain_map.contains(lock.node) {
                    let what = Deferred::ResendProxyAst {
                        name,
                        lock,
                        blocked,
                        lvb,
                    };
                    self.defer(now + LOCK_RETRY_MS, what);
                }
            }
            Sent::Notice => {}
            Sent::Committed(name, c) => self.committed_reply(now, name, c, result),
            Sent::Reco(t) => {
                self.reco_handle(now, RecoInput::SendDone { token: t, result });
            }
            Sent::Mig(t) => {
                self.mig_handle(
                    now,
                    crate::migration::MigInput::SendDone { token: t, result },
                );
            }
        }
    }

    /// The status a lock operation's send maps to: a node going down reads as
    /// `DLM_RECOVERING` (retried) while it is still a member, else as the kernel's net-error
    /// mapping.
    fn reply_status(&self, owner: Option<u8>, result: Result<i32, i32>) -> DlmStatus {
        match result {
            Ok(v) => DlmStatus::from_wire(v).unwrap_or(DlmStatus::Badargs),
            Err(e) if is_host_down(e) => {
                if owner.is_some_and(|o| self.domain_map.contains(o)) {
                    DlmStatus::Nolockmgr
                } else {
                    DlmStatus::Recovering
                }
            }
            Err(e) => DlmStatus::from_send_error(e),
        }
    }

    fn remote_parts(&mut self, cookie: u64) -> Option<(LockName, Option<u8>, &mut OwnLocks)> {
        let name = self.own.get(&cookie)?.name;
        let res = self.res.get_mut(&name)?;
        let owner = res.owner;
        match &mut res.role {
            Role::Remote(own) => Some((name, owner, own)),
            _ => None,
        }
    }

    fn create_reply(&mut self, now: u64, cookie: u64, result: Result<i32, i32>) {
        let owner = self.remote_parts(cookie).and_then(|p| p.1);
        let status = self.reply_status(owner, result);
        let Some((mode, flags)) = self.own.get(&cookie).map(|m| (m.mode, m.flags)) else {
            return;
        };
        let Some((name, _, own)) = self.remote_parts(cookie) else {
            return;
        };
        // Parked when its master died: it is asked again of the new master.
        if own.get(cookie).and_then(|l| l.pending) != Some(PendingOp::Lock) {
            return;
        }
        own.lock_reply(cookie, status);
        // A send that broke off with the connection to a master still in the domain may have
        // been delivered: the outcome is unknown until the master answers a retry.
        let uncertain = matches!(result, Err(e) if is_host_down(e))
            && owner.is_some_and(|o| self.domain_map.contains(o));
        if let Some(m) = self.own.get_mut(&cookie) {
            m.create_maybe_at = if uncertain { owner } else { None };
        }
        let op = Op::Lock {
            cookie,
            mode,
            flags,
        };
        match status {
            DlmStatus::Normal => {
                if name.is_recovery_lock() {
                    // No proxy AST comes for `$RECOVERY`: the status is the grant.
                    if let Some((_, _, own)) = self.remote_parts(cookie) {
                        let past = crate::wire::ProxyAst {
                            node_idx: owner.unwrap_or(NODE_UNKNOWN),
                            ast_type: crate::wire::AstType::Ast,
                            blocked_type: None,
                            cookie,
                            name,
                            flags: LkmFlags::empty(),
                            lvb: None,
                        };
                        let _ = own.proxy_ast(&past);
                    }
                    self.out.push(Output::Done {
                        cookie,
                        result: Ok(Grant { mode, lvb: None }),
                    });
                }
                self.after_reply(now, cookie);
                self.retry(now, cookie);
            }
            DlmStatus::Recovering
            | DlmStatus::Migrating
            | DlmStatus::Forward
            | DlmStatus::Nolockmgr
                if owner.is_some_and(|o| self.domain_map.contains(o)) =>
            {
                if !uncertain && self.own.get(&cookie).is_some_and(|m| m.cancel_wanted) {
                    self.op_failed(now, &op, DlmStatus::Cancel);
                    self.out.push(Output::Unlocked {
                        cookie,
                        status: DlmStatus::Normal,
                        removed: true,
                        cancel: true,
                    });
                } else if status == DlmStatus::Forward && self.forget_owner(name) {
                    // The node we took for master says it is not (our view went stale, e.g.
                    // its assert reached us but our reference never reached it): look the
                    // master up again rather than asking it forever.
                    if let Some(res) = self.res.get_mut(&name) {
                        res.waiting.push(op);
                    }
                    self.start_mastery(now, name);
                } else {
                    self.retry_later(now, name, op);
                }
            }
            s => self.op_failed(now, &op, s),
        }
    }

    fn convert_reply(&mut self, now: u64, cookie: u64, result: Result<i32, i32>) {
        let owner = self.remote_parts(cookie).and_then(|p| p.1);
        let status = self.reply_status(owner, result);
        let Some((_, _, own)) = self.remote_parts(cookie) else {
            return;
        };
        if own.get(cookie).and_then(|l| l.pending) != Some(PendingOp::Convert) {
            return;
        }
        own.convert_reply(cookie, status);
        let again = matches!(
            status,
            DlmStatus::Recovering
                | DlmStatus::Migrating
                | DlmStatus::Forward
                | DlmStatus::Nolockmgr
        ) && owner.is_some_and(|o| self.domain_map.contains(o));
        let conv = self.own.get(&cookie).filter(|m| !m.cancel_wanted);
        if let (true, Some((mode, flags, lvb))) = (again, conv.and_then(|m| m.convert)) {
            // `dlmlock` asks again (after the master's death is known, if it is dying);
            // the caller does not see the status.
            let name = conv.map(|m| m.name);
            if let Some(name) = name {
                self.retry_later(
                    now,
                    name,
                    Op::Convert {
                        cookie,
                        mode,
                        flags,
                        lvb,
                    },
                );
            }
        } else if status == DlmStatus::Normal {
            self.after_reply(now, cookie);
            self.retry(now, cookie);
        } else {
            if let Some(m) = self.own.get_mut(&cookie) {
                m.cancel_wanted = false;
            }
            self.out.push(Output::Done {
                cookie,
                result: Err(status),
            });
            self.retry(now, cookie);
        }
    }

    /// The create/convert reply is in: send a cancel that waited for it.
    fn after_reply(&mut self, now: u64, cookie: u64) {
        let Some(meta) = self.own.get_mut(&cookie) else {
            return;
        };
        if meta.cancel_wanted {
            meta.cancel_wanted = false;
            self.run_op(
                now,
                Op::Unlock {
                    cookie,
                    flags: LkmFlags::CANCEL,
                    lvb: [0; LVB_LEN],
                },
            );
        }
    }

    fn unlock_reply(&mut self, now: u64, cookie: u64, result: Result<i32, i32>) {
        let owner = self.remote_parts(cookie).and_then(|p| p.1);
        let mut status = self.reply_status(owner, result);
        // An unlock sent to a master that has left the domain is done (`dlmunlock_remote`).
        if result.is_err() && status == DlmStatus::Recovering {
            status = DlmStatus::Normal;
        }
        let Some((name, _, own)) = self.remote_parts(cookie) else {
            return;
        };
        let Some(l) = own.get(cookie) else { return };
        let was_cancel = l.pending == Some(PendingOp::Cancel);
        let queue = l.queue;
        let done = own.unlock_reply(cookie, status);
        if matches!(
            status,
            DlmStatus::Recovering
                | DlmStatus::Migrating
                | DlmStatus::Forward
                | DlmStatus::Nolockmgr
        ) {
            let (puts, lvb) = self
                .own
                .get(&cookie)
                .map_or((false, [0; LVB_LEN]), |m| (m.unlock_puts_lvb, m.lvb));
            let flags = if was_cancel {
                LkmFlags::CANCEL
            } else if puts {
                LkmFlags::VALBLK
            } else {
                LkmFlags::empty()
            };
            // The retry writes back the value block the caller gave (kept as in its lksb).
            self.retry_later(now, name, Op::Unlock { cookie, flags, lvb });
            return;
        }
        if was_cancel && status == DlmStatus::Normal && queue != QueueKind::Granted {
            self.out.push(Output::Done {
                cookie,
                result: Err(DlmStatus::Cancel),
            });
        }
        if done.removed {
            self.own.remove(&cookie);
            self.note_if_unused(now, name);
        }
        self.out.push(Output::Unlocked {
            cookie,
            status: done.status,
            removed: done.removed,
            cancel: was_cancel,
        });
        if !done.removed {
            self.retry(now, cookie);
        }
    }

    // ----- handlers -----

    fn receive(&mut self, now: u64, from: u8, msg: DlmMessage) -> i32 {
        let me = self.cfg.node;
        match msg {
            DlmMessage::QueryJoin(req) => self.answer_query_join(&req),
            DlmMessage::AssertJoined(n) => {
                let node = n.node_idx;
                self.domain_map.insert(node);
                self.exit_map.remove(node);
                self.reco_handle(now, RecoInput::NodeJoined(node));
                self.mig_handle(now, crate::migration::MigInput::NodeJoined(node));
                if self.joining_node == Some(node) {
                    self.joining_node = None;
                }
                // Mastery in progress asks the newcomer too (`dlm_restart_lock_mastery`).
                let names: Vec<LockName> = self
                    .mles
                    .iter()
                    .filter(|(_, m)| m.kind == MleKind::Master && !m.node.contains(node))
                    .map(|(k, _)| *k)
                    .collect();
                for name in names {
                    if let Some(m) = self.mles.get_mut(&name) {
                        m.node.insert(node);
                        m.vote.insert(node);
                    }
                    self.ask_next(name);
                }
                tracing::info!(node = me, domain = %self.cfg.name, peer = node, "o2dlm: node {node} joins domain {}", self.cfg.name);
                0
            }
            DlmMessage::CancelJoin(n) => {
                if self.joining_node == Some(n.node_idx) {
                    self.joining_node = None;
                }
                0
            }
            DlmMessage::QueryRegion(qr) => {
                let regions = self.cfg.regions.clone().unwrap_or_default();
                join::check_query_region(
                    Some(&self.join_state()),
                    &qr,
                    self.cfg.regions.is_some(),
                    &regions,
                )
            }
            DlmMessage::QueryNodeinfo(qn) => {
                join::check_query_nodeinfo(Some(&self.join_state()), &qn, &self.cfg.nodes)
            }
            DlmMessage::BeginExitDomain(e) => {
                self.exit_map.insert(e.node_idx);
                0
            }
            DlmMessage::ExitDomain(e) => {
                self.reco_handle(now, RecoInput::NodeLeft(e.node_idx));
                self.member_gone(now, e.node_idx, false);
                0
            }
            DlmMessage::MasterRequest(req) => self.handle_master_request(now, req),
            DlmMessage::MasterRequery(q) => self.answer_requery(q),
            DlmMessage::AssertMaster(a) if a.flags & ASSERT_MASTER_FINISH_MIGRATION != 0 => {
                self.mig_message(now, from, msg)
            }
            DlmMessage::AssertMaster(a) if a.flags & ASSERT_MASTER_REQUERY != 0 => {
                self.handle_reclaim(now, a)
            }
            DlmMessage::AssertMaster(a) => self.handle_assert(now, a),
            // A node already taken for dead (a BEGIN_RECO can say so before our heartbeat
            // does) may still have a request in flight: its locks are gone, so is it.
            DlmMessage::CreateLock(c) if !self.domain_map.contains(c.node_idx) => {
                DlmStatus::Rejected.to_wire()
            }
            DlmMessage::CreateLock(c) => self.handle_create(now, c),
            DlmMessage::ConvertLock(c) => self.handle_convert(now, c),
            DlmMessage::UnlockLock(u) => self.handle_unlock(now, u),
            DlmMessage::ProxyAst(p) => self.handle_proxy_ast(now, p),
            DlmMessage::DerefLockres(d) => {
                let Some(res) = self.res.get_mut(&d.name) else {
                    return errno::EINVAL;
                };
                if res.owner != Some(me) || !res.refmap.contains(d.node_idx) {
                    return errno::EINVAL;
                }
                res.refmap.remove(d.node_idx);
                self.note_if_unused(now, d.name);
                0
            }
            DlmMessage::DerefLockresDone(d) => {
                self.deref_done(now, d.name);
                0
            }
            DlmMessage::BeginReco(_)
            | DlmMessage::LockRequest(_)
            | DlmMessage::RecoDataDone(_)
            | DlmMessage::FinalizeReco(_) => {
                self.reco_handle(now, RecoInput::Message { from, msg })
            }
            DlmMessage::MigLockres(ref m) if m.flags & MRES_RECOVERY != 0 => {
                self.reco_handle(now, RecoInput::Message { from, msg })
            }
            DlmMessage::MigLockres(_) | DlmMessage::MigrateRequest(_) => {
                self.mig_message(now, from, msg)
            }
        }
    }

    fn handle_master_request(&mut self, now: u64, req: MasterRequest) -> i32 {
        let me = self.cfg.node;
        let joined = self.state == DomainState::Joined || self.state == DomainState::InShutdown;
        // A resource whose reference is being dropped counts as absent here.
        let res = self
            .res
            .get(&req.name)
            .filter(|r| !r.dropping_ref)
            .map(|r| r.mastery());
        let answer = match mastery::answer_master_request(
            me,
            joined,
            &self.domain_map,
            req.node_idx,
            req.name,
            res.as_ref(),
            self.mles.get_mut(&req.name),
        ) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(node = me, domain = %self.cfg.name, "o2dlm: {e}");
                return MasterResponse::Error as i32;
            }
        };
        if answer.set_refmap {
            if let Some(r) = self.res.get_mut(&req.name) {
                r.refmap.insert(req.node_idx);
                r.unused_since = None;
            }
        }
        if let Some(mle) = answer.new_mle {
            self.mles.insert(req.name, mle);
            self.counts.mles_total[0] += 1;
        }
        if answer.dispatch_assert {
            for n in self.others().collect::<Vec<_>>() {
                self.send_assert(req.name, n, ASSERT_MASTER_MLE_CLEANUP);
            }
        }
        let _ = now;
        answer.response as i32
    }

    /// `dlm_master_requery_handler`: a recovery master with data of unknown owner (or a node
    /// about to master `$RECOVERY`) asks who masters a name. The answer is this node's view
    /// of the owner, 255 when it has none (or has left); the master also asserts it again to
    /// every member (REQUERY), so that they stop taking it for recovery.
    fn answer_requery(&mut self, q: crate::wire::MasterRequery) -> i32 {
        let me = self.cfg.node;
        let joined = self.state == DomainState::Joined || self.state == DomainState::InShutdown;
        let owner = if joined {
            self.res.get(&q.name).and_then(|r| r.owner)
        } else {
            None
        };
        if owner == Some(me) {
            for n in self.others().collect::<Vec<_>>() {
                self.send_assert(q.name, n, ASSERT_MASTER_REQUERY);
            }
        }
        i32::from(owner.unwrap_or(NODE_UNKNOWN))
    }

    fn handle_assert(&mut self, now: u64, a: AssertMaster) -> i32 {
        let me = self.cfg.node;
        let res = self
            .res
            .get(&a.name)
            .filter(|r| !r.dropping_ref)
            .map(|r| r.mastery());
        let answer =
            match mastery::answer_assert_master(me, &a, res.as_ref(), self.mles.get(&a.name)) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(node = me, domain = %self.cfg.name, "o2dlm: {e}");
                    return errno::EINVAL;
                }
            };
        if answer.finish_mle {
            self.mles.remove(&a.name);
            self.asking.remove(&a.name);
        }
        if let Some(owner) = answer.set_owner {
            let unresolved = self
                .res
                .get(&a.name)
                .is_some_and(|r| r.owner.is_none() && r.in_progress);
            if unresolved {
                self.set_owner(now, a.name, owner);
            }
        }
        answer.reply
    }

    /// The master's lookup for create/convert/unlock: the resource must be ours and settled.
    fn master_engine(&mut self, name: &LockName) -> Result<&mut LockResource, DlmStatus> {
        let me = self.cfg.node;
        if !self.res.contains_key(name) {
            return Err(self.handed_over_or(name, DlmStatus::Ivlockid));
        }
        let Some(res) = self.res.get_mut(name) else {
            return Err(DlmStatus::Ivlockid);
        };
        if res.recovering {
            return Err(DlmStatus::Recovering);
        }
        if res.migrating {
            return Err(DlmStatus::Migrating);
        }
        if res.in_progress {
            return Err(DlmStatus::Forward);
        }
        if res.owner != Some(me) {
            return Err(DlmStatus::Forward);
        }
        match &mut res.role {
            Role::Master(e) => {
                res.unused_since = None;
                Ok(e)
            }
            _ => Err(DlmStatus::Forward),
        }
    }

    fn handle_create(&mut self, now: u64, c: CreateLock) -> i32 {
        if self.state != DomainState::Joined && self.state != DomainState::InShutdown {
            return self.handed_over_or(&c.name, DlmStatus::Rejected).to_wire();
        }
        let engine = match self.master_engine(&c.name) {
            Ok(e) => e,
            Err(DlmStatus::Ivlockid) => return DlmStatus::Ivlockid.to_wire(),
            Err(s) => return s.to_wire(),
        };
        let id = LockId {
            node: c.node_idx,
            cookie: c.cookie,
        };
        if let Some((queue, lock)) = engine.find(id) {
            // The requester asks again because our answer was lost with its connection:
            // the request stands, and a grant it missed is sent again.
            if queue == QueueKind::Granted {
                let wants_lvb = c.flags.contains(LkmFlags::GET_LVB)
                    || (c.flags.contains(LkmFlags::VALBLK) && lock.mode >= LockMode::Pr);
                let ast = Delivery::Ast {
                    lock: id,
                    mode: lock.mode,
                    lvb: wants_lvb.then_some(*engine.lvb()),
                };
                self.send_proxy_ast(c.name, &ast);
            }
            return DlmStatus::Normal.to_wire();
        }
        let status = match engine.request(id, c.requested_type, c.flags) {
            Ok(_) => DlmStatus::Normal,
            Err(s) => s,
        };
        self.kick(now, c.name);
        status.to_wire()
    }

    fn handle_convert(&mut self, now: u64, c: ConvertLock) -> i32 {
        let engine = match self.master_engine(&c.name) {
            Ok(e) => e,
            Err(s) => return s.to_wire(),
        };
        let id = LockId {
            node: c.node_idx,
            cookie: c.cookie,
        };
        if engine.find(id).is_none_or(|(q, _)| q != QueueKind::Granted) {
            return DlmStatus::Ivlockid.to_wire();
        }
        let status = match engine.convert(id, c.requested_type, c.flags, c.lvb.as_ref()) {
            Ok(_) => DlmStatus::Normal,
            Err(s) => s,
        };
        self.kick(now, c.name);
        status.to_wire()
    }

    fn handle_unlock(&mut self, now: u64, u: UnlockLock) -> i32 {
        if u.flags.contains(LkmFlags::GET_LVB)
            || u.flags.contains(LkmFlags::PUT_LVB | LkmFlags::CANCEL)
        {
            return DlmStatus::Badargs.to_wire();
        }
        let engine = match self.master_engine(&u.name) {
            Ok(e) => e,
            Err(DlmStatus::Ivlockid) => return DlmStatus::Forward.to_wire(),
            Err(s) => return s.to_wire(),
        };
        let id = LockId {
            node: u.node_idx,
            cookie: u.cookie,
        };
        // The requester's PUT_LVB is the VALBLK of its unlock.
        let mut flags = u.flags;
        if flags.contains(LkmFlags::PUT_LVB) {
            flags |= LkmFlags::VALBLK;
        }
        let status = match engine.unlock(id, flags, u.lvb.as_ref()) {
            Ok(x) => x.status(),
            Err(s) => s,
        };
        self.kick(now, u.name);
        status.to_wire()
    }

    fn handle_proxy_ast(&mut self, now: u64, p: crate::wire::ProxyAst) -> i32 {
        let Some(res) = self.res.get_mut(&p.name) else {
            return DlmStatus::Ivlockid.to_wire();
        };
        if res.recovering {
            return DlmStatus::Recovering.to_wire();
        }
        let Role::Remote(own) = &mut res.role else {
            return DlmStatus::Normal.to_wire();
        };
        let (status, notice) = own.proxy_ast(&p);
        // The grant is told at once, as the kernel calls the AST, even if the create or
        // convert reply is still on its way: operations on the lock wait for that reply
        // (see `run_op`), so telling early is safe and saves the caller half a round trip.
        match notice {
            Some(Notice::Ast { cookie, mode, lvb }) => {
                if let (Some(v), Some(m)) = (lvb, self.own.get_mut(&cookie)) {
                    m.lvb = v;
                }
                self.out.push(Output::Done {
                    cookie,
                    result: Ok(Grant { mode, lvb }),
                });
            }
            Some(Notice::Bast { cookie, blocked }) => {
                self.out.push(Output::Bast { cookie, blocked })
            }
            None => {}
        }
        let _ = now;
        status.to_wire()
    }

    // ----- node death and exit -----

    fn node_down(&mut self, now: u64, node: u8) {
        self.live.remove(node);
        // `__dlm_hb_node_down`: a node that died while joining never cancels; without this
        // every later join is refused and a leave waits for it forever.
        if self.joining_node == Some(node) {
            self.joining_node = None;
        }
        if let Some(j) = self.join.as_mut() {
            if j.waiting.contains(node) {
                j.waiting.remove(node);
                j.retry = j.phase == JoinPhase::Query || j.retry;
                self.join_advance(now);
            }
        }
        self.reco_handle(now, RecoInput::NodeDown(node));
        if self.domain_map.contains(node) {
            self.member_gone(now, node, true);
        }
        if self.exits_waiting.contains(node) {
            self.exits_waiting.remove(node);
            self.finish_leave();
        }
    }

    /// A member left (cleanly, or by dying): its locks on resources we master go, resources
    /// it mastered are marked RECOVERING, mastery in progress stops waiting for it.
    fn member_gone(&mut self, now: u64, node: u8, died: bool) {
        let me = self.cfg.node;
        self.mig_node_gone(now, node, died);
        self.domain_map.remove(node);
        self.exit_map.remove(node);
        if self.joining_node == Some(node) {
            self.joining_node = None;
        }
        let names: Vec<LockName> = self.res.keys().copied().collect();
        for name in names {
            let Some(res) = self.res.get_mut(&name) else {
                continue;
            };
            res.refmap.remove(node);
            match res.owner {
                Some(o) if o == me => {
                    if let Role::Master(engine) = &mut res.role {
                        let removed = engine.remove_node_locks(node);
                        if removed.held_ex {
                            engine.invalidate_lvb();
                        }
                    }
                    self.kick(now, name);
                }
                Some(o) if o == node => {
                    if res.dropping_ref {
                        self.deref_done(now, name);
                        continue;
                    }
                    if died && name.is_recovery_lock() {
                        // `$RECOVERY` is not recovered: whoever asks next masters it anew,
                        // and the election retries on DLM_RECOVERING.
                        let ops = std::mem::take(&mut res.waiting);
                        for op in ops {
                            self.op_failed(now, &op, DlmStatus::Recovering);
                        }
                        self.park_pending_remote(now, name, false);
                        let cookies: Vec<u64> = match self.res.get(&name).map(|r| &r.role) {
                            Some(Role::Remote(own)) => own.locks().map(|l| l.cookie).collect(),
                            _ => Vec::new(),
                        };
                        for c in cookies {
                            self.own.remove(&c);
                        }
                        self.res.remove(&name);
                    } else if died {
                        if !res.recovering {
                            tracing::warn!(node = me, domain = %self.cfg.name, lock = %name, "o2dlm: master {node} of {name} died; resource awaits recovery");
                        }
                        // Requests wait for the new master (`dlmlock` retries them while
                        // the resource is RECOVERING); callers do not see the status.
                        res.recovering = true;
                        self.park_pending_remote(now, name, true);
                    } else {
                        // A node that left cleanly had no one's reference left.
                        self.res.remove(&name);
                    }
                }
                _ => {}
            }
        }
        // Mastery in progress no longer waits for the node.
        let names: Vec<LockName> = self.mles.keys().copied().collect();
        for name in names {
            let Some(mle) = self.mles.get_mut(&name) else {
                continue;
            };
            mle.node.remove(node);
            mle.vote.remove(node);
            mle.response.remove(node);
            mle.maybe.remove(node);
            if mle.master == Some(node) {
                mle.master = None;
            }
            if self.asking.get(&name) == Some(&node) {
                self.asking.remove(&name);
            }
            match mle.kind {
                MleKind::Master => {
                    // `dlm_restart_lock_mastery`: answers given before the change may name
                    // a master that is gone or miss one that recovery makes, so the votes
                    // start over, after recovery if a node died.
                    mle.maybe = NodeMap::new();
                    mle.maybe.insert(me);
                    mle.response = NodeMap::new();
                    mle.vote = mle.node;
                    self.ask_anew(now, name);
                }
                MleKind::Block | MleKind::Migration => {
                    let waiting = self.res.get(&name).is_some_and(|r| r.in_progress);
                    let blocked_on_dead = self.mles.get(&name).is_some_and(|m| m.maybe.is_empty());
                    if blocked_on_dead {
                        self.mles.remove(&name);
                        if waiting {
                            self.mastery_timeout(now, name);
                        }
                    }
                }
            }
        }
    }

    /// This node's requests on a resource whose master died: a waiting new lock leaves the
    /// queues and a waiting conversion goes back to its granted mode; with `park` both are
    /// asked again of the new master once recovery ends (the kernel's dlmlock retries them),
    /// else they fail with DLM_RECOVERING. An unlock or cancel in flight is done (the kernel
    /// commits them when the master dies). Granted locks stay.
    fn park_pending_remote(&mut self, now: u64, name: LockName, park: bool) {
        let Some(Role::Remote(own)) = self.res.get(&name).map(|r| &r.role) else {
            return;
        };
        let locks: Vec<(u64, QueueKind, Option<PendingOp>)> = own
            .locks()
            .map(|l| (l.cookie, l.queue, l.pending))
            .collect();
        for (cookie, queue, pending) in locks {
            let Some(Role::Remote(own)) = self.res.get_mut(&name).map(|r| &mut r.role) else {
                return;
            };
            match (pending, queue) {
                (Some(PendingOp::Unlock), _) | (Some(PendingOp::Cancel), QueueKind::Blocked) => {
                    own.lock_reply(cookie, DlmStatus::Recovering);
                    let meta = self.own.remove(&cookie);
                    let cancel = pending == Some(PendingOp::Cancel);
                    let lvb = meta.filter(|m| !cancel && m.unlock_puts_lvb).map(|m| m.lvb);
                    self.committed_at_death(name, cookie, cancel, lvb);
                    if pending == Some(PendingOp::Cancel) {
                        self.out.push(Output::Done {
                            cookie,
                            result: Err(DlmStatus::Cancel),
                        });
                    }
                    self.out.push(Output::Unlocked {
                        cookie,
                        status: DlmStatus::Normal,
                        removed: true,
                        cancel: pending == Some(PendingOp::Cancel),
                    });
                }
                (_, QueueKind::Blocked) => {
                    own.lock_reply(cookie, DlmStatus::Recovering);
                    let meta = self.own.get(&cookie).map(|m| (m.mode, m.flags));
                    match meta {
                        Some((mode, flags)) if park => {
                            self.park(
                                name,
                                Op::Lock {
                                    cookie,
                                    mode,
                                    flags,
                                },
                            );
                        }
                        _ => {
                            self.own.remove(&cookie);
                            self.out.push(Output::Done {
                                cookie,
                                result: Err(DlmStatus::Recovering),
                            });
                        }
                    }
                }
                (_, QueueKind::Converting) => {
                    own.convert_reply(cookie, DlmStatus::Recovering);
                    let conv = self.own.get(&cookie).and_then(|m| m.convert);
                    match conv {
                        Some((mode, flags, lvb)) if park => {
                            self.park(
                                name,
                                Op::Convert {
                                    cookie,
                                    mode,
                                    flags,
                                    lvb,
                                },
                            );
                        }
                        _ => self.out.push(Output::Done {
                            cookie,
                            result: Err(DlmStatus::Recovering),
                        }),
                    }
                }
                (_, QueueKind::Granted) => {}
            }
        }
        let _ = now;
    }

    fn park(&mut self, name: LockName, op: Op) {
        if let Some(res) = self.res.get_mut(&name) {
            if !res.waiting.contains(&op) {
                res.waiting.push(op);
            }
        }
    }

    // ----- dumps -----

    /// The domain's `locking_state` (one record per resource, the kernel's debugfs format).
    pub fn write_locking_state<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        let mut names: Vec<&LockName> = self.res.keys().collect();
        names.sort();
        for name in names {
            let Some(res) = self.res.get(name) else {
                continue;
            };
            let info = crate::debug::LockresDebug {
                owner: res.owner.unwrap_or(crate::wire::NODE_UNKNOWN),
                state: res.state_bits(),
                last_used: res.unused_since.map_or(0, |t| t as i64),
                on_purge_list: res.unused_since.is_some(),
                refs: 1,
                refmap: res.refmap,
                migration_pending: res.migrating && res.owner == Some(self.cfg.node),
                ..Default::default()
            };
            match &res.role {
                Role::Master(e) => crate::debug::write_locking_state(w, e, &info)?,
                Role::Remote(own) => {
                    crate::debug::write_locking_state_secondary(w, name, own, &info)?
                }
                Role::Unknown => {
                    let empty = OwnLocks::new(self.cfg.node, *name);
                    crate::debug::write_locking_state_secondary(w, name, &empty, &info)?
                }
            }
        }
        Ok(())
    }

    /// The domain's `mle_state`.
    pub fn write_mle_state<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        let mut names: Vec<&LockName> = self.mles.keys().collect();
        names.sort();
        for name in names {
            let Some(m) = self.mles.get(name) else {
                continue;
            };
            let d = crate::debug::MleDebug {
                name: m.name,
                kind: m.kind,
                master: m.master.unwrap_or(crate::wire::NODE_UNKNOWN),
                new_master: m.new_master.unwrap_or(crate::wire::NODE_UNKNOWN),
                hb_events: true,
                in_use: true,
                refs: 1,
                maybe: m.maybe,
                vote: m.vote,
                response: m.response,
                node: m.node,
            };
            crate::debug::write_mle_state(w, &d)?;
        }
        Ok(())
    }

    /// The domain's `dlm_state`.
    pub fn write_dlm_state<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        let reco = self.recovery_state().unwrap_or(RecoveryState {
            active: false,
            finalizing: false,
            dead_node: None,
            new_master: None,
            recovery_map: NodeMap::new(),
            nodes: Vec::new(),
            completed: 0,
        });
        let count = |k: MleKind| self.mles.values().filter(|m| m.kind == k).count() as u32;
        let d = crate::debug::DomainDebug {
            name: self.cfg.name.to_string(),
            key: self.key,
            dlm_proto: self.dlm_proto,
            thread_pid: 0,
            node: self.cfg.node,
            state: self.state,
            num_joins: self.num_joins,
            joining_node: self.joining_node.unwrap_or(crate::wire::NODE_UNKNOWN),
            domain_map: self.domain_map,
            exit_domain_map: self.exit_map,
            live_map: self.live,
            resources: (self.res.len() as u32, self.counts.resources_total),
            blocking_mles: (count(MleKind::Block), self.counts.mles_total[0]),
            mastery_mles: (count(MleKind::Master), self.counts.mles_total[1]),
            migration_mles: (count(MleKind::Migration), self.counts.mles_total[2]),
            dirty_list_used: false,
            purge_list_used: self.res.values().any(|r| r.unused_since.is_some()),
            pending_asts: false,
            pending_basts: false,
            purge_count: self
                .res
                .values()
                .filter(|r| r.unused_since.is_some())
                .count() as u32,
            refs: 1,
            dead_node: reco.dead_node.unwrap_or(NODE_UNKNOWN),
            recovery_pid: 0,
            recovery_master: reco.new_master.unwrap_or(NODE_UNKNOWN),
            recovery_active: reco.active,
            recovery_map: reco.recovery_map,
            recovery_nodes: reco.nodes,
        };
        crate::debug::write_dlm_state(w, &d)
    }
}

/// The cookie of this node's `$RECOVERY` lock: the node byte with sequence 0, which
/// [`crate::secondary::CookieSource`] never hands out.
fn recovery_cookie(node: u8) -> u64 {
    u64::from(node) << 56
}

impl DomainCore {
    /// Runs the recovery machine on one input with this core as its store.
    fn reco_handle(&mut self, now: u64, input: RecoInput) -> i32 {
        let Some(mut reco) = self.reco.take() else {
            // Re-entered from a store call: the outer run sees the same facts.
            return 0;
        };
        let status = reco.handle(now, input, self);
        self.reco = Some(reco);
        status
    }

    /// Carries out what recovery asked for, and feeds it the answers to its `$RECOVERY`
    /// lock, until both sides are quiet.
    fn pump_recovery(&mut self, now: u64) {
        let rc = recovery_cookie(self.cfg.node);
        loop {
            let mut answers = Vec::new();
            if self.out.iter().any(|o| output_cookie(o) == Some(rc)) {
                self.out.retain(|o| match o {
                    Output::Done { cookie, result } if *cookie == rc => {
                        answers.push(match result {
                            Ok(_) => DlmStatus::Normal,
                            Err(s) => *s,
                        });
                        false
                    }
                    o => output_cookie(o) != Some(rc),
                });
            }
            let outs: Vec<RecoOutput> = match self.reco.as_mut() {
                Some(r) => r.drain_outputs().collect(),
                None => Vec::new(),
            };
            if answers.is_empty() && outs.is_empty() {
                break;
            }
            for a in answers {
                self.reco_handle(now, RecoInput::RecoveryLock(a));
            }
            for o in outs {
                match o {
                    RecoOutput::Send { token, to, msg } => self.send(to, msg, Sent::Reco(token)),
                    RecoOutput::LockRecoveryLock => match LockName::new(RECOVERY_LOCK_NAME) {
                        Ok(name) => self.lock(
                            now,
                            rc,
                            name,
                            LockMode::Ex,
                            LkmFlags::NOQUEUE | LkmFlags::RECOVERY,
                        ),
                        Err(_) => {
                            self.reco_handle(now, RecoInput::RecoveryLock(DlmStatus::Badargs));
                        }
                    },
                    RecoOutput::UnlockRecoveryLock => {
                        self.unlock(now, rc, LkmFlags::empty(), [0; LVB_LEN])
                    }
                    RecoOutput::Log(e) => {
                        self.last_reco_event = Some(e);
                        if let RecoEvent::NodeDied { dead } = e {
                            // BEGIN_RECO told us before heartbeat did.
                            if self.domain_map.contains(dead) {
                                self.member_gone(now, dead, true);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn output_cookie(o: &Output) -> Option<u64> {
    match o {
        Output::Done { cookie, .. }
        | Output::Bast { cookie, .. }
        | Output::Unlocked { cookie, .. } => Some(*cookie),
        _ => None,
    }
}

impl RecoveryStore for DomainCore {
    fn local_cleanup(&mut self, dead: u8) {
        let now = self.now;
        self.member_gone(now, dead, true);
    }

    fn recovery_data(&mut self, dead: u8, out: &mut Vec<crate::wire::MigLockres>) {
        let me = self.cfg.node;
        let mut next_cookie = 0u64;
        for (name, res) in self.res.iter() {
            let of_dead = match res.owner {
                Some(o) => o == dead,
                None => res.recovering,
            };
            if !of_dead || !res.recovering || matches!(res.role, Role::Master(_)) {
                continue;
            }
            let mut locks = Vec::new();
            let mut lvbs = Vec::new();
            if let Role::Remote(own) = &res.role {
                for l in own.locks() {
                    locks.push(crate::wire::MigratableLock {
                        cookie: l.cookie,
                        list: l.queue,
                        flags: l.lksb_flags,
                        type_: Some(l.mode),
                        convert_type: l.convert_type,
                        highest_blocked: None,
                        node: me,
                    });
                    lvbs.push(self.own.get(&l.cookie).map_or([0; LVB_LEN], |m| m.lvb));
                }
            }
            let lvb = match sender_lvb(*name, locks.iter().zip(lvbs.iter())) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(node = me, domain = %self.cfg.name, lock = %name, "o2dlm recovery: {e}; sending no value block");
                    [0; LVB_LEN]
                }
            };
            let head = MresHeader {
                sender: me,
                master: res.owner.unwrap_or(NODE_UNKNOWN),
                flags: MRES_RECOVERY,
                name: *name,
                lvb,
            };
            pack_lockres(head, &locks, &mut next_cookie, out);
        }
    }

    fn rebuild(&mut self, from: u8, mres: &crate::wire::MigLockres) -> Result<(), crate::Error> {
        let me = self.cfg.node;
        if self.has_live_master(&mres.name) {
            tracing::debug!(node = me, domain = %self.cfg.name, lock = %mres.name, "o2dlm recovery: {} has a live master; data from node {from} dropped", mres.name);
            return Ok(());
        }
        if !self.res.contains_key(&mres.name) {
            self.counts.resources_total += 1;
            let mut r = Box::new(Res::new(self.counts.resources_total));
            r.recovering = true;
            self.res.insert(mres.name, r);
        }
        let own_meta = &self.own;
        let Some(res) = self.res.get_mut(&mres.name) else {
            return Ok(());
        };
        res.owner = Some(me);
        res.recovering = true;
        res.unused_since = None;
        if !matches!(res.role, Role::Master(_)) {
            // This node's own locks go on the rebuilt queues at once, whichever sender's data
            // comes first; its own MIG_LOCKRES then finds them there.
            let mut engine = LockResource::new(mres.name);
            if let Role::Remote(own) = &res.role {
                for l in own.locks() {
                    let ml = crate::wire::MigratableLock {
                        cookie: l.cookie,
                        list: l.queue,
                        flags: l.lksb_flags,
                        type_: Some(l.mode),
                        convert_type: l.convert_type,
                        highest_blocked: None,
                        node: me,
                    };
                    let lvb = own_meta.get(&l.cookie).map_or([0; LVB_LEN], |m| m.lvb);
                    engine.add_migrated_lock(NODE_UNKNOWN, MRES_RECOVERY, &lvb, &ml)?;
                }
            }
            res.role = Role::Master(engine);
        }
        let Role::Master(engine) = &mut res.role else {
            return Ok(());
        };
        let local = if from == me { NODE_UNKNOWN } else { me };
        for ml in &mres.locks {
            match engine.add_migrated_lock(local, mres.flags, &mres.lvb, ml)? {
                crate::lockres::Migrated::Reference(n) | crate::lockres::Migrated::Created(n)
                    if n != me =>
                {
                    res.refmap.insert(n)
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn settling(&self, dead: u8) -> bool {
        self.mig.settling(dead)
    }

    fn finish(&mut self, dead: u8, new_master: u8) -> usize {
        let me = self.cfg.node;
        let now = self.now;
        self.recovered_claims(dead);
        let mut moved = 0;
        let mut touched = Vec::new();
        for (name, res) in self.res.iter_mut() {
            let of_dead = res.owner == Some(dead)
                || (res.recovering && res.owner == Some(me) && new_master == me);
            if !of_dead {
                continue;
            }
            moved += 1;
            res.recovering = false;
            res.in_progress = false;
            res.owner = Some(new_master);
            if new_master == me {
                if !matches!(res.role, Role::Master(_)) {
                    res.role = Role::Master(LockResource::new(*name));
                }
            } else {
                match &res.role {
                    Role::Remote(_) => {}
                    // Queues rebuilt here for a recovery another master finished, or nothing
                    // of ours: our locks (if any) were sent to that master.
                    _ => res.role = Role::Remote(OwnLocks::new(me, *name)),
                }
            }
            touched.push(*name);
        }
        self.forget_committed(&touched);
        for name in touched {
            self.kick(now, name);
            let ops = self
                .res
                .get_mut(&name)
                .map(|r| std::mem::take(&mut r.waiting))
                .unwrap_or_default();
            for op in ops {
                self.run_op(now, op);
            }
            self.note_if_unused(now, name);
        }
        moved
    }
}
