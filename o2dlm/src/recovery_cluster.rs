//! A deterministic, virtual-time cluster of [`Recovery`] machines over [`MemStore`]s, with the
//! faults recovery must survive (a node killed, a node paused, a link cut shorter than the
//! idle timeout, a node restarted and joining again) and a checker of the end state: the harness of the recovery
//! tests, the seeded fault runs and the recovery benchmark.
//!
//! Messages go through their codecs (encoded and decoded on delivery) with a per-link delay
//! and o2net's per-connection order. A killed node's connections drop at once: its in-flight
//! messages are lost and sends to it fail with a host-down errno; each survivor's heartbeat
//! declares it dead after its own delay. The `$RECOVERY` lock is a grant-to-first oracle
//! released on unlock or when its holder is killed, which is what the election needs of it.
//!
//! [`RecoCluster::check`] judges what users would notice: every surviving lock on exactly one
//! master that every survivor agrees on, no dead node's lock left, granted modes compatible,
//! value blocks kept or zeroed by the kernel's rules, no recovery left running, and exactly
//! one recovery master finishing each death.

use std::collections::{BTreeMap, BTreeSet};

use bytes::BytesMut;

use crate::lockres::{Delivery, LockResource};
use crate::migration::{MigInput, MigOutput, Migration, MigrationStore};
use crate::recovery::{RecoEvent, RecoInput, RecoOutput, Recovery};
use crate::recovery_store::{MemRes, MemStore};
use crate::wire::{
    errno, DlmMessage, DlmStatus, DomainName, LockMode, LockName, Lvb, MigratableLock, NodeMap,
    QueueKind, ASSERT_MASTER_FINISH_MIGRATION, LVB_LEN, MRES_MIGRATION, NODE_UNKNOWN,
};

/// Whether a message belongs to migration rather than recovery.
fn is_migration_message(msg: &DlmMessage) -> bool {
    match msg {
        DlmMessage::MigLockres(m) => m.flags & MRES_MIGRATION != 0,
        DlmMessage::MigrateRequest(_) => true,
        DlmMessage::AssertMaster(a) => a.flags & ASSERT_MASTER_FINISH_MIGRATION != 0,
        _ => false,
    }
}

/// One live node of the cluster.
#[derive(Debug)]
pub struct RecoNode {
    pub reco: Recovery,
    pub mig: Migration,
    pub store: MemStore,
}

impl RecoNode {
    fn new(n: u8, domain: DomainName, members: NodeMap) -> RecoNode {
        RecoNode {
            reco: Recovery::new(n, domain, members),
            mig: Migration::new(n, domain, members),
            store: MemStore::new(n),
        }
    }
}

#[derive(Debug, Clone)]
enum Event {
    Deliver {
        from: u8,
        to: u8,
        token: u64,
        msg_type: u16,
        payload: Vec<u8>,
    },
    Reply {
        to: u8,
        token: u64,
        result: Result<i32, i32>,
    },
    NodeDown {
        at: u8,
        dead: u8,
    },
    LockAnswer {
        at: u8,
        status: DlmStatus,
    },
    Tick(u8),
}

impl Event {
    /// The node that handles the event (paused nodes hold theirs back).
    fn target(&self) -> u8 {
        match *self {
            Event::Deliver { to, .. } => to,
            Event::Reply { to, .. } => to,
            Event::NodeDown { at, .. } | Event::LockAnswer { at, .. } => at,
            Event::Tick(n) => n,
        }
    }
}

/// What a resource looked like before faults, for the checker's value-block rule.
#[derive(Debug, Clone)]
struct Original {
    master: u8,
    lvb: Lvb,
    /// Nodes holding EX (granted, or converting from EX).
    ex_holders: BTreeSet<u8>,
    /// Nodes holding PR or EX (granted or converting): their status blocks have the LVB.
    readers: BTreeSet<u8>,
    /// Nodes holding or waiting for EX: a grant during the run makes them EX holders.
    ex_wanters: BTreeSet<u8>,
}

/// The cluster. See the module documentation.
#[derive(Debug)]
pub struct RecoCluster {
    now: u64,
    domain: DomainName,
    nodes: BTreeMap<u8, RecoNode>,
    killed: BTreeSet<u8>,
    /// Every node killed at some point, rejoined or not.
    ever_killed: BTreeSet<u8>,
    /// When each restarted node joined again: each death is its own recovery.
    rejoined: Vec<(u64, u8)>,
    events: BTreeMap<(u64, u64), Event>,
    seq: u64,
    latency_ms: u64,
    /// Last delivery time per (from, to): o2net keeps a connection's order.
    link_last: BTreeMap<(u8, u8), u64>,
    cut: BTreeMap<(u8, u8), u64>,
    paused_until: BTreeMap<u8, u64>,
    tick_at: BTreeMap<u8, u64>,
    lock_holder: Option<u8>,
    originals: BTreeMap<LockName, Original>,
    /// Every recovery step, with its time and node.
    pub log: Vec<(u64, u8, RecoEvent)>,
    /// Every migration: time, old master, resource, new master.
    pub migrations: Vec<(u64, u8, LockName, u8)>,
    left: BTreeSet<u8>,
    /// Nodes whose migration is done, waiting for recovery to end before they exit.
    leaving: BTreeSet<u8>,
    /// Handled events (the benchmark's and the seed runs' measure of work).
    pub steps: u64,
}

impl RecoCluster {
    /// Nodes `nodes` all members of domain `domain`, each message taking `latency_ms`.
    pub fn new(domain: DomainName, nodes: &[u8], latency_ms: u64) -> RecoCluster {
        let mut map = NodeMap::new();
        for &n in nodes {
            map.insert(n);
        }
        let nodes = nodes
            .iter()
            .map(|&n| (n, RecoNode::new(n, domain, map)))
            .collect();
        RecoCluster {
            now: 0,
            domain,
            nodes,
            killed: BTreeSet::new(),
            ever_killed: BTreeSet::new(),
            rejoined: Vec::new(),
            events: BTreeMap::new(),
            seq: 0,
            latency_ms,
            link_last: BTreeMap::new(),
            cut: BTreeMap::new(),
            paused_until: BTreeMap::new(),
            tick_at: BTreeMap::new(),
            lock_holder: None,
            originals: BTreeMap::new(),
            log: Vec::new(),
            migrations: Vec::new(),
            left: BTreeSet::new(),
            leaving: BTreeSet::new(),
            steps: 0,
        }
    }

    /// Virtual time in milliseconds.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The live nodes.
    pub fn nodes(&self) -> &BTreeMap<u8, RecoNode> {
        &self.nodes
    }

    /// Adds a resource mastered by `master` with `locks` (node, mode, queue, conversion
    /// target) in queue order and value block `lvb`; `refs` are nodes holding only a
    /// reference. Cookies are `node << 56 | seq` with a per-resource sequence.
    pub fn add_resource(
        &mut self,
        name: LockName,
        master: u8,
        locks: &[(u8, LockMode, QueueKind, Option<LockMode>)],
        lvb: Lvb,
        refs: &[u8],
    ) {
        let mut engine = LockResource::new(name);
        let mut refmap = NodeMap::new();
        let mut own: BTreeMap<u8, Vec<(MigratableLock, Lvb)>> = BTreeMap::new();
        let mut ex_holders = BTreeSet::new();
        let mut readers = BTreeSet::new();
        let mut ex_wanters = BTreeSet::new();
        let zero = [0; LVB_LEN];
        for (i, &(node, mode, list, convert_type)) in locks.iter().enumerate() {
            let ml = MigratableLock {
                cookie: (u64::from(node) << 56) | (i as u64 + 1),
                list,
                flags: 0,
                type_: Some(mode),
                convert_type,
                highest_blocked: None,
                node,
            };
            // NODE_UNKNOWN as receiver: every record is created, the master's own included.
            if engine
                .add_migrated_lock(NODE_UNKNOWN, MRES_MIGRATION, &zero, &ml)
                .is_err()
            {
                continue;
            }
            if node != master {
                refmap.insert(node);
            }
            if mode == LockMode::Ex && list != QueueKind::Blocked {
                ex_holders.insert(node);
            }
            let holds = list != QueueKind::Blocked && mode >= LockMode::Pr;
            if holds {
                readers.insert(node);
            }
            if mode == LockMode::Ex || convert_type == Some(LockMode::Ex) {
                ex_wanters.insert(node);
            }
            own.entry(node)
                .or_default()
                .push((ml, if holds { lvb } else { zero }));
        }
        engine.set_lvb(lvb);
        for &r in refs {
            if r != master {
                refmap.insert(r);
                own.entry(r).or_default();
            }
        }
        self.originals.insert(
            name,
            Original {
                master,
                lvb,
                ex_holders,
                readers,
                ex_wanters,
            },
        );
        if let Some(n) = self.nodes.get_mut(&master) {
            n.store
                .insert(name, MemRes::mastered(master, engine, refmap));
        }
        for (node, locks) in own {
            if node == master {
                continue;
            }
            if let Some(n) = self.nodes.get_mut(&node) {
                n.store.insert(name, MemRes::remote(master, locks));
            }
        }
    }

    fn push(&mut self, at: u64, e: Event) {
        self.seq += 1;
        self.events.insert((at, self.seq), e);
    }

    /// Kills `node` now; survivor `s` hears of it from heartbeat after `detect(s)` ms.
    pub fn kill(&mut self, node: u8, detect: impl Fn(u8) -> u64) {
        if self.nodes.remove(&node).is_none() {
            return;
        }
        self.killed.insert(node);
        self.ever_killed.insert(node);
        if self.lock_holder == Some(node) {
            self.lock_holder = None;
        }
        // Its connections drop: what it sent and had not arrived is lost.
        self.events
            .retain(|_, e| !matches!(e, Event::Deliver { from, .. } if *from == node));
        let survivors: Vec<u8> = self.nodes.keys().copied().collect();
        for s in survivors {
            let at = self.now + detect(s);
            self.push(at, Event::NodeDown { at: s, dead: node });
        }
    }

    /// Holds back everything `node` would handle until `until` (a stalled process).
    pub fn pause(&mut self, node: u8, until: u64) {
        self.paused_until.insert(node, until);
    }

    /// Cuts the link between `a` and `b` until `until`, shorter than o2net's idle timeout:
    /// messages either way are held back until it heals, as TCP retransmits them. (A longer
    /// partition ends with o2net quorum fencing one side: kill those nodes instead.)
    pub fn cut(&mut self, a: u8, b: u8, until: u64) {
        self.cut.insert((a.min(b), a.max(b)), until);
    }

    /// A killed node comes back and joins once no survivor is recovering (joins are refused
    /// while recovery runs). Returns whether it joined.
    pub fn try_rejoin(&mut self, node: u8) -> bool {
        if !self.killed.contains(&node) || self.nodes.values().any(|n| n.reco.is_active()) {
            return false;
        }
        // Its death must be known everywhere first (a new generation).
        if self
            .events
            .values()
            .any(|e| matches!(e, Event::NodeDown { dead, .. } if *dead == node))
        {
            return false;
        }
        self.killed.remove(&node);
        self.rejoined.push((self.now, node));
        let mut map = NodeMap::new();
        map.insert(node);
        for (&n, rn) in self.nodes.iter_mut() {
            map.insert(n);
            rn.reco
                .handle(self.now, RecoInput::NodeJoined(node), &mut rn.store);
        }
        for rn in self.nodes.values_mut() {
            rn.mig
                .handle(self.now, MigInput::NodeJoined(node), &mut rn.store);
        }
        self.nodes
            .insert(node, RecoNode::new(node, self.domain, map));
        true
    }

    fn link_cut_until(&self, a: u8, b: u8) -> Option<u64> {
        self.cut
            .get(&(a.min(b), a.max(b)))
            .copied()
            .filter(|&until| self.now < until)
    }

    /// Runs events until virtual time `until` or until nothing is left.
    pub fn run_until(&mut self, until: u64) {
        while let Some(entry) = self.events.first_entry() {
            let (at, _) = *entry.key();
            if at > until {
                break;
            }
            let e = entry.remove();
            self.now = self.now.max(at);
            let target = e.target();
            if let Some(&p) = self.paused_until.get(&target) {
                if self.now < p {
                    self.push(p, e);
                    continue;
                }
            }
            self.steps += 1;
            self.dispatch(e);
        }
        self.now = self.now.max(until.min(self.next_event().unwrap_or(until)));
    }

    fn next_event(&self) -> Option<u64> {
        self.events.keys().next().map(|&(t, _)| t)
    }

    /// Runs until no event is left or `limit` ms of virtual time passed; returns whether the
    /// cluster went quiet.
    pub fn run_until_quiet(&mut self, limit: u64) -> bool {
        let end = self.now + limit;
        self.run_until(end);
        self.events.is_empty()
    }

    fn dispatch(&mut self, e: Event) {
        let now = self.now;
        let target = e.target();
        let Some(node) = self.nodes.get_mut(&target) else {
            // The connection to a killed node dropped under this message.
            if let Event::Deliver { from, token, .. } = e {
                self.push(
                    now + self.latency_ms,
                    Event::Reply {
                        to: from,
                        token,
                        result: Err(errno::ENOTCONN),
                    },
                );
            }
            return;
        };
        let store = &mut node.store;
        match e {
            Event::Deliver {
                from,
                to,
                token,
                msg_type,
                payload,
            } => {
                let status = match DlmMessage::decode(msg_type, &payload) {
                    Ok(msg) if is_migration_message(&msg) => {
                        node.mig.handle(now, MigInput::Message { from, msg }, store)
                    }
                    Ok(msg) => node
                        .reco
                        .handle(now, RecoInput::Message { from, msg }, store),
                    Err(_) => errno::EINVAL,
                };
                self.after(to);
                let at = now + self.latency_ms;
                self.push(
                    at,
                    Event::Reply {
                        to: from,
                        token,
                        result: Ok(status),
                    },
                );
                return;
            }
            // Even tokens are recovery's, odd ones migration's (see `after`).
            Event::Reply { token, result, .. } if token % 2 == 1 => {
                let token = token / 2;
                node.mig
                    .handle(now, MigInput::SendDone { token, result }, store);
            }
            Event::Reply { token, result, .. } => {
                let token = token / 2;
                node.reco
                    .handle(now, RecoInput::SendDone { token, result }, store);
            }
            Event::NodeDown { dead, .. } => {
                node.reco.handle(now, RecoInput::NodeDown(dead), store);
                node.mig.handle(now, MigInput::NodeGone(dead), store);
            }
            Event::LockAnswer { status, .. } => {
                node.reco
                    .handle(now, RecoInput::RecoveryLock(status), store);
            }
            Event::Tick(_) => {
                self.tick_at.remove(&target);
                node.reco.handle(now, RecoInput::Tick, store);
                node.mig.handle(now, MigInput::Tick, store);
            }
        }
        self.after(target);
    }

    /// Node `node` leaves the domain: it migrates what it masters, then exits.
    pub fn leave(&mut self, node: u8) {
        let now = self.now;
        if let Some(n) = self.nodes.get_mut(&node) {
            let exiting = NodeMap::new();
            n.mig.handle(now, MigInput::Leave { exiting }, &mut n.store);
            self.after(node);
        }
    }

    /// The nodes that left cleanly.
    pub fn left(&self) -> &BTreeSet<u8> {
        &self.left
    }

    /// Carries out what node `n` asked for after an input.
    fn after(&mut self, n: u8) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(&n) else {
            return;
        };
        let outs: Vec<RecoOutput> = node.reco.drain_outputs().collect();
        let mig_outs: Vec<MigOutput> = node.mig.drain_outputs().collect();
        let deadline = match (node.reco.next_deadline(), node.mig.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let deliveries = node.store.take_deliveries();
        for (name, d) in deliveries {
            self.deliver_ast(name, d);
        }
        for o in outs {
            match o {
                RecoOutput::Send { token, to, msg } => self.send(n, to, token * 2, msg),
                RecoOutput::LockRecoveryLock => {
                    let status = match self.lock_holder {
                        None => {
                            self.lock_holder = Some(n);
                            DlmStatus::Normal
                        }
                        Some(h) if h == n => DlmStatus::Normal,
                        Some(_) => DlmStatus::Notqueued,
                    };
                    self.push(now + self.latency_ms, Event::LockAnswer { at: n, status });
                }
                RecoOutput::UnlockRecoveryLock => {
                    if self.lock_holder == Some(n) {
                        self.lock_holder = None;
                    }
                }
                RecoOutput::Log(e) => {
                    // A death learnt from BEGIN_RECO before heartbeat: the whole domain
                    // (migration included) drops the node.
                    if let RecoEvent::NodeDied { dead } = e {
                        if let Some(node) = self.nodes.get_mut(&n) {
                            node.mig
                                .handle(now, MigInput::NodeGone(dead), &mut node.store);
                        }
                    }
                    self.log.push((now, n, e));
                }
            }
        }
        let mig_outs: Vec<MigOutput> = match self.nodes.get_mut(&n) {
            Some(node) => mig_outs
                .into_iter()
                .chain(node.mig.drain_outputs())
                .collect(),
            None => mig_outs,
        };
        let mut exits = false;
        for o in mig_outs {
            match o {
                MigOutput::Send { token, to, msg } => self.send(n, to, token * 2 + 1, msg),
                MigOutput::Migrated { name, new_master } => {
                    self.migrations.push((now, n, name, new_master))
                }
                MigOutput::Done => exits = true,
            }
        }
        if exits {
            self.leaving.insert(n);
        }
        if self.leaving.contains(&n) {
            let busy = self
                .nodes
                .get(&n)
                .is_some_and(|node| node.reco.is_active() || node.mig.in_flight().is_some());
            if !busy {
                // What recovery gave this node meanwhile migrates too before it goes (the
                // kernel's leave loop runs until nothing is left).
                let left_over = self
                    .nodes
                    .get(&n)
                    .is_some_and(|node| node.store.next_migratable(&NodeMap::new()).is_some());
                if left_over {
                    self.leaving.remove(&n);
                    self.leave(n);
                } else {
                    self.leaving.remove(&n);
                    self.exit(n);
                }
                return;
            }
        }
        if let Some(t) = deadline {
            if self.tick_at.get(&n).is_none_or(|&at| t < at) {
                self.tick_at.insert(n, t);
                self.push(t, Event::Tick(n));
            }
        }
    }

    /// A node that migrated everything leaves: the others drop it from the domain.
    fn exit(&mut self, n: u8) {
        let now = self.now;
        self.nodes.remove(&n);
        self.left.insert(n);
        let others: Vec<u8> = self.nodes.keys().copied().collect();
        for o in others {
            if let Some(node) = self.nodes.get_mut(&o) {
                node.reco
                    .handle(now, RecoInput::NodeLeft(n), &mut node.store);
                node.mig.handle(now, MigInput::NodeGone(n), &mut node.store);
                node.store.forget_node(n);
            }
            self.after(o);
        }
    }

    /// A grant released by the end of recovery reaches its owner (the proxy AST).
    fn deliver_ast(&mut self, name: LockName, d: Delivery) {
        let Delivery::Ast { lock, mode, lvb } = d else {
            return;
        };
        let Some(owner) = self.nodes.get_mut(&lock.node) else {
            return;
        };
        owner.store.apply_ast(&name, lock.cookie, mode, lvb);
    }

    fn send(&mut self, from: u8, to: u8, token: u64, msg: DlmMessage) {
        let now = self.now;
        if !self.nodes.contains_key(&to) {
            self.push(
                now + self.latency_ms,
                Event::Reply {
                    to: from,
                    token,
                    result: Err(errno::ENOTCONN),
                },
            );
            return;
        }
        let mut buf = BytesMut::new();
        msg.encode(&mut buf);
        // A cut link holds messages back (TCP retransmits) until it heals.
        let held = self.link_cut_until(from, to).unwrap_or(0);
        let at = (now + self.latency_ms)
            .max(held)
            .max(self.link_last.get(&(from, to)).copied().unwrap_or(0));
        self.link_last.insert((from, to), at);
        self.push(
            at,
            Event::Deliver {
                from,
                to,
                token,
                msg_type: msg.msg_type() as u16,
                payload: buf.to_vec(),
            },
        );
    }

    /// What each live node holds of resource `name`, for failure reports.
    pub fn describe(&self, name: &LockName) -> String {
        let mut s = String::new();
        if let Some(o) = self.originals.get(name) {
            s += &format!(
                "{name}: first master {}, lvb[0] {}, EX holders {:?}\n",
                o.master, o.lvb[0], o.ex_holders
            );
        }
        for (t, old, _, new) in self.migrations.iter().filter(|m| m.2 == *name) {
            s += &format!("  t={t} migrated from {old} to {new}\n");
        }
        for (n, node) in &self.nodes {
            if let Some(r) = node.store.get(name) {
                s += &format!(
                    "  node {n}: owner {:?} recovering {} own {:?}\n",
                    r.owner,
                    r.recovering,
                    r.own
                        .iter()
                        .map(|(m, l)| (m.node, m.type_, m.list, l[0]))
                        .collect::<Vec<_>>()
                );
                if let Some(e) = &r.engine {
                    s += &format!(
                        "    queues {:?} lvb[0] {}\n",
                        e.locks()
                            .map(|(q, l)| (l.id.node, l.mode, q))
                            .collect::<Vec<_>>(),
                        e.lvb()[0]
                    );
                }
            }
        }
        s
    }

    /// Judges the end state; each string is one violation.
    pub fn check(&self) -> Vec<String> {
        let mut bad = Vec::new();
        for (&n, node) in &self.nodes {
            if node.reco.is_active() {
                bad.push(format!(
                    "node {n}: recovery still running: {:?}",
                    node.reco.state()
                ));
            }
        }
        let mut names: BTreeSet<LockName> = BTreeSet::new();
        for node in self.nodes.values() {
            names.extend(node.store.resources().map(|(k, _)| *k));
        }
        for name in &names {
            self.check_resource(name, &mut bad);
        }
        // One recovery master finishing each death (a restarted node dies anew).
        let mut finished: BTreeMap<(u8, usize), BTreeSet<u8>> = BTreeMap::new();
        for &(t, n, e) in &self.log {
            if let RecoEvent::Finished { dead, master, .. } = e {
                if master == n {
                    let life = self
                        .rejoined
                        .iter()
                        .filter(|&&(at, r)| r == dead && at <= t)
                        .count();
                    finished.entry((dead, life)).or_default().insert(master);
                }
            }
        }
        for ((dead, _), masters) in &finished {
            let alive_masters: Vec<u8> = masters
                .iter()
                .copied()
                .filter(|m| self.nodes.contains_key(m))
                .collect();
            if alive_masters.len() > 1 {
                bad.push(format!(
                    "dead node {dead}: several recovery masters finished: {alive_masters:?}"
                ));
            }
        }
        bad
    }

    fn check_resource(&self, name: &LockName, bad: &mut Vec<String>) {
        // Who each survivor thinks is the owner.
        let mut owners: BTreeMap<u8, Option<u8>> = BTreeMap::new();
        let mut masters = Vec::new();
        for (&n, node) in &self.nodes {
            if let Some(r) = node.store.get(name) {
                owners.insert(n, r.owner);
                if r.owner == Some(n) && r.engine.is_some() {
                    masters.push(n);
                }
                if r.recovering {
                    bad.push(format!("{name}: still RECOVERING on node {n}"));
                }
            }
        }
        if masters.len() > 1 {
            bad.push(format!("{name}: mastered by several nodes {masters:?}"));
        }
        let Some(&master) = masters.first() else {
            // Nobody masters it: then nobody may hold a lock on it.
            for (&n, node) in &self.nodes {
                if let Some(r) = node.store.get(name) {
                    if !r.own.is_empty() {
                        bad.push(format!(
                            "{name}: node {n} holds {} locks but no live node masters it (owner {:?})",
                            r.own.len(),
                            r.owner
                        ));
                    }
                }
            }
            return;
        };
        for (&n, owner) in &owners {
            if *owner != Some(master) {
                bad.push(format!(
                    "{name}: node {n} thinks the owner is {owner:?}, node {master} masters it"
                ));
            }
        }
        let Some(engine) = self
            .nodes
            .get(&master)
            .and_then(|m| m.store.get(name))
            .and_then(|r| r.engine.as_ref())
        else {
            return;
        };
        let mut on_master: BTreeSet<u64> = BTreeSet::new();
        for (list, l) in engine.locks() {
            if !self.nodes.contains_key(&l.id.node) {
                bad.push(format!(
                    "{name}: lock {} of dead node {} still on master {master}",
                    l.id, l.id.node
                ));
            }
            if !on_master.insert(l.id.cookie) {
                bad.push(format!("{name}: lock {} twice on master {master}", l.id));
            }
            let _ = list;
        }
        // Every survivor's lock is on the master, once.
        for (&n, node) in &self.nodes {
            if n == master {
                continue;
            }
            if let Some(r) = node.store.get(name) {
                for (ml, _) in &r.own {
                    if !on_master.contains(&ml.cookie) {
                        bad.push(format!(
                            "{name}: lock {:#x} of node {n} lost (not on master {master})",
                            ml.cookie
                        ));
                    }
                }
            }
        }
        let granted = engine.queue(QueueKind::Granted);
        for (i, a) in granted.iter().enumerate() {
            for b in granted.iter().skip(i + 1) {
                if !LockMode::compatible(a.mode, b.mode) {
                    bad.push(format!(
                        "{name}: incompatible grants {} {:?} and {} {:?}",
                        a.id, a.mode, b.id, b.mode
                    ));
                }
            }
        }
        // Value block: zeroed if a dead node held EX, else what it was.
        if let Some(orig) = self.originals.get(name) {
            let ex_died = orig.ex_holders.iter().any(|h| self.ever_killed.contains(h));
            // Any node that mastered it may have died: its first master, a migration
            // target, a recovery master (of any resource, to keep the rule simple).
            let dead = |n: &u8| self.ever_killed.contains(n);
            let master_died = dead(&orig.master)
                || self
                    .migrations
                    .iter()
                    .any(|(_, _, n, new)| n == name && dead(new))
                || self.log.iter().any(|(_, n, e)| {
                    matches!(e, RecoEvent::Finished { master, .. } if master == n) && dead(n)
                });
            let expect_zero = ex_died;
            let lvb = engine.lvb();
            if expect_zero && lvb.iter().any(|&b| b != 0) {
                bad.push(format!(
                    "{name}: EX holder died but the value block survived on master {master}"
                ));
            }
            // A master's death loses the value block unless a survivor held PR/EX on it.
            let survivor_read = orig.readers.iter().any(|r| !self.ever_killed.contains(r));
            let ex_may_have_died = orig.ex_wanters.iter().any(|h| self.ever_killed.contains(h));
            let keep_expected = !ex_may_have_died && (!master_died || survivor_read);
            if keep_expected && *lvb != orig.lvb {
                bad.push(format!(
                    "{name}: value block changed on master {master} though no EX holder died"
                ));
            }
        }
    }
}

/// Drives one node's recovery and migration machines (node 2 of members 1-4, with a few
/// resources of every kind) with inputs read from `data`, as the fuzz target and the property
/// test do: whatever arrives, in any order, must not panic. Each input is an opcode byte and
/// its operands: a node-down, time passing, a `$RECOVERY` answer, a send completion, a leave,
/// or a message (type byte, length byte, payload) routed as the cluster routes it. Returns
/// how many inputs were applied.
pub fn drive_node_from_bytes(data: &[u8]) -> usize {
    let domain = match DomainName::new(b"fuzz") {
        Ok(d) => d,
        Err(_) => return 0,
    };
    let mut members = NodeMap::new();
    for n in 1..=4 {
        members.insert(n);
    }
    let mut node = RecoNode::new(2, domain, members);
    let mk = |s: &str| LockName::new(s.as_bytes()).ok();
    let pr = |n: u8, list| MigratableLock {
        cookie: (u64::from(n) << 56) | 1,
        list,
        flags: 0,
        type_: Some(LockMode::Pr),
        convert_type: None,
        highest_blocked: None,
        node: n,
    };
    if let (Some(a), Some(b), Some(c)) = (mk("mine"), mk("theirs"), mk("ref")) {
        let mut e = LockResource::new(a);
        let _ = e.add_migrated_lock(
            NODE_UNKNOWN,
            MRES_MIGRATION,
            &[1; LVB_LEN],
            &pr(1, QueueKind::Granted),
        );
        let mut refs = NodeMap::new();
        refs.insert(1);
        node.store.insert(a, MemRes::mastered(2, e, refs));
        node.store.insert(
            b,
            MemRes::remote(3, vec![(pr(2, QueueKind::Granted), [2; LVB_LEN])]),
        );
        node.store.insert(c, MemRes::remote(4, Vec::new()));
    }
    let mut now = 0u64;
    let mut applied = 0;
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        let Some((&arg, tail)) = tail.split_first() else {
            break;
        };
        rest = tail;
        let store = &mut node.store;
        match op % 7 {
            0 => {
                node.reco.handle(now, RecoInput::NodeDown(arg % 6), store);
                node.mig.handle(now, MigInput::NodeGone(arg % 6), store);
            }
            1 => {
                now = now.saturating_add(u64::from(arg) * 10);
                node.reco.handle(now, RecoInput::Tick, store);
                node.mig.handle(now, MigInput::Tick, store);
            }
            2 => {
                let status = match arg % 3 {
                    0 => DlmStatus::Normal,
                    1 => DlmStatus::Notqueued,
                    _ => DlmStatus::Recovering,
                };
                node.reco
                    .handle(now, RecoInput::RecoveryLock(status), store);
            }
            3 => {
                let result = if arg & 0x80 != 0 {
                    Err(-i32::from(arg & 0x7f))
                } else {
                    Ok(i32::from(arg & 3))
                };
                let token = u64::from(arg % 16);
                node.reco
                    .handle(now, RecoInput::SendDone { token, result }, store);
                node.mig
                    .handle(now, MigInput::SendDone { token, result }, store);
            }
            4 => {
                let exiting = NodeMap::new();
                node.mig.handle(now, MigInput::Leave { exiting }, store);
            }
            _ => {
                let Some((&len, tail)) = rest.split_first() else {
                    break;
                };
                let len = usize::from(len).min(tail.len());
                let (payload, tail) = tail.split_at(len);
                rest = tail;
                let msg_type = 500 + u16::from(arg % 23);
                let from = 1 + op % 4;
                if let Ok(msg) = DlmMessage::decode(msg_type, payload) {
                    if is_migration_message(&msg) {
                        node.mig.handle(now, MigInput::Message { from, msg }, store);
                    } else {
                        node.reco
                            .handle(now, RecoInput::Message { from, msg }, store);
                    }
                }
            }
        }
        node.reco.drain_outputs().for_each(drop);
        node.mig.drain_outputs().for_each(drop);
        applied += 1;
    }
    applied
}
