//! The engine: one cluster, one seed, virtual time.
//!
//! [`Simulation`] owns the agenda, the network, the disks, every node's stack
//! and the checkers. It pops the earliest event, turns it into an [`Input`]
//! for the node concerned (or a change to the world, for faults), carries out
//! the [`Effect`]s the stack returns, and shows every happening to the trace
//! and the checkers. Nothing in here reads a clock or an unseeded random
//! source, and every collection it iterates is ordered, so a seed fixes the
//! run to the byte.

use crate::check::{self, Checker, Life, NodeView, Tally, Violation, World};
use crate::config::{Sabotage, SimConfig, Workload};
use crate::disk::{DiskCounters, IoKind, IoRequest, RegionSpec, SimDisk};
use crate::error::SimError;
use crate::events::{Agenda, Event};
use crate::faults::{self, Action, FaultPlan};
use crate::net::{NetCounters, SimNet};
use crate::o2stack::O2Stack;
use crate::rng::{SimRng, Stream};
use crate::stack::{Effect, FenceReason, Input, NodeId, NodeSetup, Note, Owner, Stack, TimerKey};
use crate::time::SimTime;
use crate::trace::{Record, Trace, What};
use std::collections::HashMap;
use std::time::Duration;

/// Builds a node's stack at each boot.
pub type StackFactory = Box<dyn FnMut(&NodeSetup) -> Box<dyn Stack>>;

/// Per-node numbers for the summary table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    pub boots: u32,
    pub crashes: u32,
    pub fences: u32,
    /// NODE_UP / NODE_DOWN events this node's heartbeat reported.
    pub ups: u32,
    pub downs: u32,
    pub sends_ok: u64,
    pub sends_failed: u64,
    pub net: NetCounters,
    pub disk: DiskCounters,
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub seed: u64,
    pub nodes: u16,
    /// Virtual time reached (the configured duration, or the first violation).
    pub reached: SimTime,
    pub events: u64,
    pub episodes: usize,
    pub violations: Vec<Violation>,
    pub stats: Vec<NodeStats>,
    pub tallies: Vec<(&'static str, Tally)>,
    /// What each fault episode led to, in order: one line per machine-level
    /// consequence (fence, crash, boot) and per node declared dead.
    pub story: Vec<Vec<String>>,
}

#[derive(Default)]
struct Slot {
    stack: Option<Box<dyn Stack>>,
    timers: HashMap<TimerKey, u64>,
    /// Inputs that arrived while the process was paused, in arrival order.
    deferred: Vec<Input>,
}

/// A simulated cluster. See the module documentation.
pub struct Simulation {
    cfg: SimConfig,
    now: SimTime,
    end: SimTime,
    agenda: Agenda,
    net: SimNet,
    disk: SimDisk,
    rng_net: SimRng,
    rng_disk: SimRng,
    rng_gen: SimRng,
    rng_work: SimRng,
    plan: FaultPlan,
    views: Vec<NodeView>,
    slots: Vec<Slot>,
    stats: Vec<NodeStats>,
    factory: StackFactory,
    checkers: Vec<Box<dyn Checker>>,
    trace: Trace,
    violations: Vec<Violation>,
    next_token: u64,
    next_send: u64,
    events: u64,
    scratch: Vec<Effect>,
    /// The episode whose consequences are being collected, and the collection.
    current_episode: Option<usize>,
    story: Vec<Vec<String>>,
}

/// The shared heartbeat regions of a run, laid out as ocfs2-tools lays out a
/// volume's: named by a 32-hex-digit UUID, 255 slots of 512 bytes.
pub fn region_specs(cfg: &SimConfig) -> Vec<RegionSpec> {
    (0..cfg.regions.max(1))
        .map(|r| RegionSpec {
            name: format!("{:016X}{:08X}{:08X}", cfg.seed, 0x0C2F_5EED_u32, r),
            block_bytes: 512,
            start_block: 8,
            blocks: 255,
        })
        .collect()
}

impl Simulation {
    /// A run of the o2hb and o2net cores under `cfg`, with the standard checkers.
    pub fn new(cfg: SimConfig) -> Result<Self, SimError> {
        let specs = region_specs(&cfg);
        let factory: StackFactory = Box::new(move |setup: &NodeSetup| -> Box<dyn Stack> {
            Box::new(O2Stack::new(setup, &specs))
        });
        Self::with_stacks(cfg, factory)
    }

    /// A run of whatever stacks `factory` builds (tests use this for toy protocols).
    pub fn with_stacks(cfg: SimConfig, factory: StackFactory) -> Result<Self, SimError> {
        validate(&cfg)?;
        let nodes = usize::from(cfg.nodes);
        let plan = FaultPlan::draw(&cfg);
        let checkers = check::standard(&cfg);
        Ok(Simulation {
            now: SimTime::ZERO,
            end: SimTime::ZERO + cfg.duration,
            agenda: Agenda::default(),
            net: SimNet::new(nodes, cfg.net),
            disk: SimDisk::new(nodes, region_specs(&cfg), cfg.disk),
            rng_net: SimRng::new(cfg.seed, Stream::Network),
            rng_disk: SimRng::new(cfg.seed, Stream::Disk),
            rng_gen: SimRng::new(cfg.seed, Stream::Generations),
            rng_work: SimRng::new(cfg.seed, Stream::Workload),
            plan,
            views: vec![NodeView::new(); nodes],
            slots: (0..nodes).map(|_| Slot::default()).collect(),
            stats: vec![NodeStats::default(); nodes],
            factory,
            checkers,
            trace: Trace::new(cfg.trace),
            violations: Vec::new(),
            next_token: 1,
            next_send: 1,
            events: 0,
            scratch: Vec::new(),
            current_episode: None,
            story: Vec::new(),
            cfg,
        })
    }

    /// Adds a checker to the standard ones (call before [`Simulation::run`]):
    /// how rules of other layers, or of an experiment, watch a run.
    pub fn add_checker(&mut self, checker: Box<dyn Checker>) {
        self.checkers.push(checker);
    }

    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// Replaces the plan drawn from the seed by a scenario of one's own (call before [`Simulation::run`]).
    pub fn set_plan(&mut self, plan: FaultPlan) {
        self.plan = plan;
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Runs to the configured duration or the first violation.
    pub fn run(&mut self) -> Outcome {
        for n in 0..self.cfg.nodes {
            let Ok(node) = NodeId::try_from(n) else {
                continue;
            };
            // Machines do not power on in lockstep.
            let at = SimTime::ZERO
                + self
                    .rng_gen
                    .duration(Duration::ZERO, self.cfg.timing.hb_period);
            self.agenda.push(at, Event::Boot { node });
        }
        for (index, p) in self.plan.actions.iter().enumerate() {
            self.agenda.push(p.at, Event::Fault { index });
        }
        self.agenda
            .push(SimTime::ZERO + self.cfg.timing.hb_period, Event::CheckTick);
        if let Workload::Ping { .. } = self.cfg.workload {
            if self.cfg.nodes >= 2 {
                self.agenda.push(
                    SimTime::ZERO + faults::warmup(&self.cfg.timing),
                    Event::Workload,
                );
            }
        }
        while let Some(at) = self.agenda.peek_time() {
            if at > self.end || !self.violations.is_empty() {
                break;
            }
            let Some((at, ev)) = self.agenda.pop() else {
                break;
            };
            self.now = at;
            self.events += 1;
            self.step(ev);
        }
        if self.violations.is_empty() {
            self.now = self.now.max(self.end);
            let world = World {
                now: self.now,
                config: &self.cfg,
                nodes: &self.views,
                plan: &self.plan,
                net: &self.net,
            };
            for c in self.checkers.iter_mut() {
                c.finish(&world, &mut self.violations);
            }
        }
        let mut stats = self.stats.clone();
        for (i, s) in stats.iter_mut().enumerate() {
            let node = NodeId::try_from(i).unwrap_or(NodeId::MAX);
            s.net = self.net.counters(node);
            s.disk = self.disk.counters(node);
        }
        Outcome {
            seed: self.cfg.seed,
            nodes: self.cfg.nodes,
            reached: self.now,
            events: self.events,
            episodes: self.plan.episodes.len(),
            violations: self.violations.clone(),
            stats,
            tallies: self
                .checkers
                .iter()
                .map(|c| (c.name(), c.tally()))
                .collect(),
            story: self.story.clone(),
        }
    }

    fn view(&self, node: NodeId) -> Option<&NodeView> {
        self.views.get(usize::from(node))
    }

    /// Whether `incarnation` of `node` is the one running now.
    fn current(&self, node: NodeId, incarnation: u32) -> bool {
        self.view(node)
            .is_some_and(|v| v.is_running() && v.incarnation == incarnation)
    }

    fn emit(&mut self, node: Option<NodeId>, what: What<'_>) {
        let rec = Record {
            at: self.now,
            node,
            what,
        };
        self.trace.record(&rec);
        self.tell(&rec);
        let world = World {
            now: self.now,
            config: &self.cfg,
            nodes: &self.views,
            plan: &self.plan,
            net: &self.net,
        };
        for c in self.checkers.iter_mut() {
            c.observe(&rec, &world, &mut self.violations);
        }
    }

    /// Adds what `rec` means to the story of the current episode.
    fn tell(&mut self, rec: &Record<'_>) {
        if let What::Fault { episode, .. } = rec.what {
            if self.current_episode != Some(episode) {
                self.current_episode = Some(episode);
                self.story.resize(episode + 1, Vec::new());
            }
            return;
        }
        let Some(ep) = self.current_episode.and_then(|i| self.plan.episodes.get(i)) else {
            return;
        };
        let Some(node) = rec.node else { return };
        let offset = (rec.at - ep.start).as_secs_f64();
        let line = match &rec.what {
            What::Fence(r) => format!("+{offset:.1}s n{node} fenced ({})", r.label()),
            What::Crash => format!("+{offset:.1}s n{node} crashed"),
            What::Boot { .. } => format!("+{offset:.1}s n{node} booted"),
            What::Note(Note::HbDown { node: m, .. }) => {
                format!("+{offset:.1}s n{node} saw n{m} DOWN")
            }
            _ => return,
        };
        if let Some(lines) = self.current_episode.and_then(|i| self.story.get_mut(i)) {
            lines.push(line);
        }
    }

    fn step(&mut self, ev: Event) {
        match ev {
            Event::Timer {
                node,
                incarnation,
                key,
                token,
            } => {
                if !self.current(node, incarnation) {
                    return;
                }
                let Some(slot) = self.slots.get_mut(usize::from(node)) else {
                    return;
                };
                if slot.timers.get(&key) != Some(&token) {
                    return;
                }
                slot.timers.remove(&key);
                self.deliver(node, Input::Timer(key));
            }
            Event::DiskDone { io } => {
                if let Some(c) = self.disk.complete(io) {
                    if self.current(c.node, c.incarnation) {
                        self.deliver(c.node, c.input);
                    }
                }
            }
            Event::Net(ev) => {
                let views = &self.views;
                let running = |n: NodeId| {
                    views
                        .get(usize::from(n))
                        .filter(|v| v.is_running())
                        .map(|v| v.incarnation)
                };
                let delivery =
                    self.net
                        .arrive(self.now, ev, &running, &mut self.agenda, &mut self.rng_net);
                if let Some(d) = delivery {
                    if self.current(d.node, d.incarnation) {
                        self.deliver(d.node, d.input);
                    }
                }
            }
            Event::Fault { index } => {
                if let Some(p) = self.plan.actions.get(index) {
                    let (action, episode) = (p.action.clone(), p.episode);
                    self.apply_fault(&action, episode);
                }
            }
            Event::Boot { node } => self.boot(node),
            Event::Resume { node, incarnation } => {
                if !self.current(node, incarnation) {
                    return;
                }
                if let Some(v) = self.views.get_mut(usize::from(node)) {
                    v.life = Life::Running;
                }
                self.emit(Some(node), What::Resume);
                let mut deferred = self
                    .slots
                    .get_mut(usize::from(node))
                    .map(|s| std::mem::take(&mut s.deferred))
                    .unwrap_or_default();
                // Timers that came due during the pause fire before the I/O that completed
                // meanwhile is seen, as the kernel's timer work runs before the heartbeat
                // thread is scheduled again: a node paused past its write timeout fences
                // (the others declared it dead) instead of re-arming the timeout with the
                // completion of a write that took longer than it.
                deferred.sort_by_key(|i| !matches!(i, Input::Timer(_)));
                for input in deferred {
                    if !self
                        .view(node)
                        .is_some_and(|v| v.life == Life::Running && v.incarnation == incarnation)
                    {
                        break;
                    }
                    self.deliver(node, input);
                }
            }
            Event::Workload => self.workload(),
            Event::CheckTick => {
                let world = World {
                    now: self.now,
                    config: &self.cfg,
                    nodes: &self.views,
                    plan: &self.plan,
                    net: &self.net,
                };
                for c in self.checkers.iter_mut() {
                    c.tick(&world, &mut self.violations);
                }
                self.agenda
                    .push(self.now + self.cfg.timing.hb_period, Event::CheckTick);
            }
        }
    }

    fn workload(&mut self) {
        let Workload::Ping { interval } = self.cfg.workload else {
            return;
        };
        let nodes = u64::from(self.cfg.nodes);
        let from = NodeId::try_from(self.rng_work.below(nodes)).unwrap_or(0);
        let offset = 1 + self.rng_work.below(nodes.saturating_sub(1));
        let peer = NodeId::try_from((u64::from(from) + offset) % nodes).unwrap_or(0);
        if self.view(from).is_some_and(NodeView::is_running) && peer != from {
            let id = self.next_send;
            self.next_send += 1;
            self.deliver(from, Input::SendRequest { id, peer });
        }
        // On average each node sends one request per interval.
        let gap = interval / u32::from(self.cfg.nodes.max(1));
        let next = self.now + self.rng_work.duration(Duration::ZERO, gap * 2);
        self.agenda.push(next, Event::Workload);
    }

    fn boot(&mut self, node: NodeId) {
        let Some(v) = self.views.get_mut(usize::from(node)) else {
            return;
        };
        if v.is_running() {
            return;
        }
        v.incarnation += 1;
        v.generation = self.rng_gen.nonzero_u64();
        v.life = Life::Running;
        v.booted_at = self.now;
        v.hb_live.clear();
        v.net_up.clear();
        v.hb_failed = false;
        let setup = NodeSetup {
            node,
            nodes: self.cfg.nodes,
            timing: self.cfg.timing,
            incarnation: v.incarnation,
            generation: v.generation,
            verbose: self.trace.enabled(),
            workload: self.cfg.workload,
            sabotage: self.cfg.sabotage,
        };
        let generation = v.generation;
        let stack = (self.factory)(&setup);
        if let Some(slot) = self.slots.get_mut(usize::from(node)) {
            *slot = Slot {
                stack: Some(stack),
                ..Slot::default()
            };
        }
        if let Some(s) = self.stats.get_mut(usize::from(node)) {
            s.boots += 1;
        }
        self.emit(Some(node), What::Boot { generation });
        self.deliver(node, Input::Boot);
    }

    /// The machine goes down: crash (`fenced` None) or reset by a fence.
    fn take_down(&mut self, node: NodeId, fenced: Option<FenceReason>) {
        let Some(v) = self.views.get_mut(usize::from(node)) else {
            return;
        };
        if !v.is_running() {
            return;
        }
        v.life = Life::Down { fenced };
        v.hb_live.clear();
        v.net_up.clear();
        if let Some(slot) = self.slots.get_mut(usize::from(node)) {
            *slot = Slot::default();
        }
        self.net.crash(node);
        self.disk.crash(node);
        if let Some(s) = self.stats.get_mut(usize::from(node)) {
            match fenced {
                Some(_) => s.fences += 1,
                None => s.crashes += 1,
            }
        }
        match fenced {
            Some(r) => self.emit(Some(node), What::Fence(r)),
            None => self.emit(Some(node), What::Crash),
        }
    }

    fn fence(&mut self, node: NodeId, reason: FenceReason) {
        match (self.cfg.sabotage, reason) {
            (Some(Sabotage::WrongSideSurvives), FenceReason::Quorum) => {
                let victim = (0..self.cfg.nodes)
                    .filter_map(|m| NodeId::try_from(m).ok())
                    .find(|&m| {
                        m != node
                            && self.view(m).is_some_and(NodeView::is_running)
                            && (self.net.is_blocked(node, m) || self.net.is_blocked(m, node))
                    });
                if let Some(v) = victim {
                    let text = format!(
                        "SABOTAGE: n{node} ignores its quorum fence; n{v} is reset instead"
                    );
                    self.emit(Some(node), What::Note(&Note::Text(text)));
                    self.take_down(v, Some(FenceReason::Quorum));
                    return;
                }
            }
            (Some(Sabotage::IgnoreWriteTimeout), FenceReason::WriteTimeout) => {
                let text = "SABOTAGE: heartbeat write-timeout fence ignored".to_string();
                self.emit(Some(node), What::Note(&Note::Text(text)));
                return;
            }
            _ => {}
        }
        self.take_down(node, Some(reason));
    }

    fn deliver(&mut self, node: NodeId, input: Input) {
        let idx = usize::from(node);
        let Some(life) = self.views.get(idx).map(|v| v.life) else {
            return;
        };
        match life {
            Life::Paused => {
                if let Some(slot) = self.slots.get_mut(idx) {
                    slot.deferred.push(input);
                }
                return;
            }
            Life::Running => {}
            Life::Off | Life::Down { .. } => return,
        }
        self.record_input(node, &input);
        let Some(mut stack) = self.slots.get_mut(idx).and_then(|s| s.stack.take()) else {
            return;
        };
        let mut out = std::mem::take(&mut self.scratch);
        stack.handle(self.now, input, &mut out);
        if let Some(slot) = self.slots.get_mut(idx) {
            slot.stack = Some(stack);
        }
        let incarnation = self.views.get(idx).map_or(0, |v| v.incarnation);
        for effect in out.drain(..) {
            if !self.current(node, incarnation) {
                break;
            }
            self.apply(node, incarnation, effect);
        }
        self.scratch = out;
    }

    fn record_input(&mut self, node: NodeId, input: &Input) {
        let n = Some(node);
        match input {
            Input::Boot => {}
            Input::Timer(k) => self.emit(n, What::Timer(*k)),
            Input::DiskReadDone {
                region,
                offset,
                result,
                ..
            } => {
                let (data, ok) = match result {
                    Ok(d) => (d.as_slice(), true),
                    Err(_) => (&[][..], false),
                };
                self.emit(
                    n,
                    What::IoDone {
                        write: false,
                        region: *region,
                        offset: *offset,
                        data,
                        ok,
                    },
                );
            }
            Input::DiskWriteDone {
                region,
                offset,
                result,
                ..
            } => {
                let ok = result.is_ok();
                self.emit(
                    n,
                    What::IoDone {
                        write: true,
                        region: *region,
                        offset: *offset,
                        data: &[],
                        ok,
                    },
                );
            }
            Input::Connected { conn, peer } => self.emit(
                n,
                What::Connected {
                    conn: *conn,
                    peer: *peer,
                },
            ),
            Input::Accepted { conn, from } => self.emit(
                n,
                What::Accepted {
                    conn: *conn,
                    peer: *from,
                },
            ),
            Input::Received { conn, data } => self.emit(
                n,
                What::Recv {
                    conn: *conn,
                    len: data.len(),
                },
            ),
            Input::Closed { conn, errno } => self.emit(
                n,
                What::Closed {
                    conn: *conn,
                    errno: *errno,
                },
            ),
            Input::SendRequest { id, peer } => self.emit(
                n,
                What::SendStart {
                    id: *id,
                    peer: *peer,
                },
            ),
            // The fault that asks for it is in the trace already.
            Input::LeaveDomain { .. } => {}
        }
    }

    fn apply(&mut self, node: NodeId, incarnation: u32, effect: Effect) {
        let n = Some(node);
        match effect {
            Effect::DiskRead {
                region,
                offset,
                len,
                tag,
            } => {
                self.emit(
                    n,
                    What::IoSubmit {
                        write: false,
                        region,
                        offset,
                        len,
                        data: &[],
                    },
                );
                let req = IoRequest {
                    region,
                    tag,
                    kind: IoKind::Read { offset, len },
                };
                self.disk.submit(
                    self.now,
                    Owner { node, incarnation },
                    req,
                    &mut self.agenda,
                    &mut self.rng_disk,
                );
            }
            Effect::DiskWrite {
                region,
                offset,
                data,
                tag,
            } => {
                self.emit(
                    n,
                    What::IoSubmit {
                        write: true,
                        region,
                        offset,
                        len: data.len(),
                        data: &data,
                    },
                );
                let req = IoRequest {
                    region,
                    tag,
                    kind: IoKind::Write { offset, data },
                };
                self.disk.submit(
                    self.now,
                    Owner { node, incarnation },
                    req,
                    &mut self.agenda,
                    &mut self.rng_disk,
                );
            }
            Effect::SetTimer { key, at } => {
                let token = self.next_token;
                self.next_token += 1;
                if let Some(slot) = self.slots.get_mut(usize::from(node)) {
                    slot.timers.insert(key, token);
                }
                self.agenda.push(
                    at.max(self.now),
                    Event::Timer {
                        node,
                        incarnation,
                        key,
                        token,
                    },
                );
            }
            Effect::CancelTimer { key } => {
                if let Some(slot) = self.slots.get_mut(usize::from(node)) {
                    slot.timers.remove(&key);
                }
            }
            Effect::Connect { conn, peer } => {
                self.emit(n, What::Connect { conn, peer });
                if usize::from(peer) < self.views.len() {
                    self.net.connect(
                        self.now,
                        conn,
                        Owner { node, incarnation },
                        peer,
                        &mut self.agenda,
                        &mut self.rng_net,
                    );
                }
            }
            Effect::Send { conn, data, what } => {
                let peer = self.net.peer_of(conn, node).unwrap_or(NodeId::MAX);
                self.emit(
                    n,
                    What::Send {
                        conn,
                        peer,
                        len: data.len(),
                        what: &what,
                    },
                );
                self.net.send(
                    self.now,
                    conn,
                    Owner { node, incarnation },
                    data,
                    &mut self.agenda,
                    &mut self.rng_net,
                );
            }
            Effect::Close { conn } => {
                self.emit(n, What::CloseSent { conn });
                self.net.close(
                    self.now,
                    conn,
                    Owner { node, incarnation },
                    &mut self.agenda,
                    &mut self.rng_net,
                );
            }
            Effect::Fence(reason) => self.fence(node, reason),
            Effect::Note(note) => {
                self.note(node, &note);
                self.emit(n, What::Note(&note));
            }
        }
    }

    /// Keeps the per-node view and counters in step with what the stack reports.
    fn note(&mut self, node: NodeId, note: &Note) {
        let idx = usize::from(node);
        let (Some(v), Some(s)) = (self.views.get_mut(idx), self.stats.get_mut(idx)) else {
            return;
        };
        match note {
            Note::HbUp { node: m, .. } => {
                v.hb_live.insert(*m);
                s.ups += 1;
            }
            Note::HbDown { node: m, .. } => {
                v.hb_live.remove(m);
                s.downs += 1;
            }
            Note::NetUp { peer } => {
                v.net_up.insert(*peer);
            }
            Note::NetDown { peer } => {
                v.net_up.remove(peer);
            }
            Note::SendDone { status, .. } => {
                if *status == 0 {
                    s.sends_ok += 1;
                } else {
                    s.sends_failed += 1;
                }
            }
            Note::HbStartFailed { .. } => v.hb_failed = true,
            Note::HbSteady { .. } | Note::Text(_) | Note::Invariant(_) | Note::Dlm(_) => {}
        }
    }

    fn apply_fault(&mut self, action: &Action, episode: usize) {
        self.emit(None, What::Fault { action, episode });
        let nodes = self.cfg.nodes;
        let all = || (0..nodes).filter_map(|n| NodeId::try_from(n).ok());
        match action {
            Action::Cut { from, to, both } => {
                for &a in from {
                    for &b in to {
                        self.net.set_blocked(
                            self.now,
                            a,
                            b,
                            true,
                            &mut self.agenda,
                            &mut self.rng_net,
                        );
                        if *both {
                            self.net.set_blocked(
                                self.now,
                                b,
                                a,
                                true,
                                &mut self.agenda,
                                &mut self.rng_net,
                            );
                        }
                    }
                }
            }
            Action::HealNetwork => {
                for a in all() {
                    for b in all() {
                        if self.net.is_blocked(a, b) {
                            self.net.set_blocked(
                                self.now,
                                a,
                                b,
                                false,
                                &mut self.agenda,
                                &mut self.rng_net,
                            );
                        }
                    }
                }
            }
            Action::Reset { a, b } => self.net.reset_between(self.now, *a, *b, &mut self.agenda),
            Action::Stall {
                node,
                regions,
                stalled,
            } => {
                for &region in regions {
                    self.disk.set_stalled(
                        self.now,
                        *node,
                        region,
                        *stalled,
                        &mut self.agenda,
                        &mut self.rng_disk,
                    );
                }
            }
            Action::Slow {
                node,
                regions,
                factor,
            } => {
                for &region in regions {
                    self.disk.set_slow(*node, region, *factor);
                }
            }
            Action::Corrupt {
                node,
                regions,
                permille,
            } => {
                for &region in regions {
                    self.disk.set_corrupt(*node, region, *permille);
                }
            }
            Action::Crash { node } => self.take_down(*node, None),
            Action::Pause { node, length } => {
                let Some(v) = self.views.get_mut(usize::from(*node)) else {
                    return;
                };
                if v.life != Life::Running {
                    return;
                }
                v.life = Life::Paused;
                let incarnation = v.incarnation;
                let until = self.now + *length;
                self.emit(Some(*node), What::Pause { until });
                self.agenda.push(
                    until,
                    Event::Resume {
                        node: *node,
                        incarnation,
                    },
                );
            }
            Action::Leave { node, rejoin_after } => {
                let rejoin_after = *rejoin_after;
                self.deliver(*node, Input::LeaveDomain { rejoin_after });
            }
            Action::Recover => self.recover(),
        }
    }

    /// The operator's repair after an episode: power on what is down, reboot
    /// a node whose heartbeat failed to start (the kernel gives up after too
    /// many unsteady iterations), and reboot the higher-numbered end of any
    /// heartbeating pair that o2net left disconnected.
    fn recover(&mut self) {
        let nodes: Vec<NodeId> = (0..self.cfg.nodes)
            .filter_map(|n| NodeId::try_from(n).ok())
            .collect();
        let mut reboot = Vec::new();
        for &b in &nodes {
            let Some(vb) = self.view(b) else { continue };
            if vb.life != Life::Running {
                continue;
            }
            let stuck = nodes.iter().any(|&a| {
                a < b
                    && self.view(a).is_some_and(|va| {
                        va.life == Life::Running
                            && va.hb_live.contains(&b)
                            && vb.hb_live.contains(&a)
                            && !(va.net_up.contains(&b) && vb.net_up.contains(&a))
                    })
            });
            if stuck || vb.hb_failed {
                reboot.push(b);
            }
        }
        for b in reboot {
            self.take_down(b, None);
        }
        for &n in &nodes {
            if self.view(n).is_some_and(|v| !v.is_running()) {
                let at = self.now
                    + self
                        .rng_gen
                        .duration(self.cfg.timing.hb_period, self.cfg.timing.hb_period * 3);
                self.agenda.push(at, Event::Boot { node: n });
            }
        }
    }
}

fn validate(cfg: &SimConfig) -> Result<(), SimError> {
    if cfg.nodes == 0 || cfg.nodes > 255 {
        return Err(SimError::NodeCount(u64::from(cfg.nodes)));
    }
    if cfg.regions == 0 || cfg.regions > 32 {
        return Err(SimError::RegionCount(cfg.regions));
    }
    if cfg.timing.dead_threshold <= 2 {
        return Err(SimError::DeadThreshold(cfg.timing.dead_threshold));
    }
    // o2hb accepts periods up to the kernel's 2 s, and down to 10 ms.
    if cfg.timing.hb_period < Duration::from_millis(10)
        || cfg.timing.hb_period > Duration::from_millis(2000)
    {
        return Err(SimError::Period(
            u64::try_from(cfg.timing.hb_period.as_millis()).unwrap_or(u64::MAX),
        ));
    }
    if cfg.timing.reconnect_delay.is_zero() || cfg.timing.keepalive_delay.is_zero() {
        return Err(SimError::ZeroTimer);
    }
    if cfg.timing.idle_timeout <= cfg.timing.keepalive_delay {
        return Err(SimError::IdleTimeout {
            idle_ms: u64::try_from(cfg.timing.idle_timeout.as_millis()).unwrap_or(u64::MAX),
            keepalive_ms: u64::try_from(cfg.timing.keepalive_delay.as_millis()).unwrap_or(u64::MAX),
        });
    }
    Ok(())
}
