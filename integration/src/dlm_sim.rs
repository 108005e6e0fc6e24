//! The o2dlm lock workload on simulated nodes: every node runs the real domain core
//! ([`o2dlm::domain::DomainCore`]); messages are encoded to bytes and decoded again on the
//! way, travel over one FIFO connection per node pair (as o2net's TCP connection does), with
//! latencies, delay spikes and process pauses drawn from the seed, so messages on different
//! connections overtake each other freely. Faults here never kill a node (recovery is the
//! next issue's): the run checks locking, not failover.
//!
//! Client tasks on each node lock a few names in random modes (NOQUEUE, VALBLK, cancels,
//! down-conversions, NOQUEUE up-conversions), hold them for a while or until a BAST, write a
//! fresh value block under EX and release. The checkers of [`crate::dlm_check`] watch every
//! grant and release. At the end the workload stops, faults heal, and every request must
//! finish within a bound.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use o2dlm::domain::{DomainConfig, DomainCore, Grant, Input, Output};
use o2dlm::secondary::CookieSource;
use o2dlm::wire::{DlmMessage, DlmStatus, DomainName, LkmFlags, LockMode, LockName, Lvb, LVB_LEN};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::dlm_check::{LockChecker, LockEvent};

/// What a DLM simulation run does.
#[derive(Debug, Clone)]
pub struct DlmSimConfig {
    pub seed: u64,
    pub nodes: u8,
    /// Distinct lock names the clients share.
    pub locks: usize,
    pub clients_per_node: usize,
    /// How long clients issue requests (virtual ms).
    pub duration_ms: u64,
    /// Delay spikes and pauses.
    pub faults: bool,
    /// After the workload stops and faults heal, every request must finish within this.
    pub settle_bound_ms: u64,
}

impl DlmSimConfig {
    /// A small run: 4 nodes, 3 locks, 3 clients each, 4 s of work, faults on.
    pub fn new(seed: u64) -> DlmSimConfig {
        DlmSimConfig {
            seed,
            nodes: 4,
            locks: 3,
            clients_per_node: 3,
            duration_ms: 4000,
            faults: true,
            settle_bound_ms: 20_000,
        }
    }
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct DlmSimOutcome {
    pub seed: u64,
    pub grants: u64,
    pub basts: u64,
    pub notqueued: u64,
    pub cancels: u64,
    pub lvb_reads: u64,
    pub messages: u64,
    pub violations: Vec<String>,
}

#[derive(Debug, Clone)]
enum Ev {
    Request {
        from: u8,
        to: u8,
        token: u64,
        bytes: Vec<u8>,
        msg_type: u16,
    },
    Reply {
        to: u8,
        token: u64,
        status: i32,
    },
    Tick(u8),
    /// A client's next step; stale unless `gen` is the client's current one.
    Client(u8, usize, u64),
    Join(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Idle,
    Requesting {
        cookie: u64,
        since: u64,
    },
    Holding {
        cookie: u64,
        mode: LockMode,
        valblk: bool,
    },
    Converting {
        cookie: u64,
        since: u64,
        from: LockMode,
    },
    Unlocking {
        cookie: u64,
        since: u64,
    },
}

struct Client {
    state: ClientState,
    name: LockName,
    /// A cancel was sent for the current request.
    cancel_sent: bool,
    /// Only the latest scheduled step counts.
    gen: u64,
}

struct Node {
    core: DomainCore,
    cookies: CookieSource,
    clients: Vec<Client>,
    tick_at: Option<u64>,
    joined: bool,
}

/// One run. See the module documentation.
pub struct DlmSim {
    cfg: DlmSimConfig,
    now: u64,
    seq: u64,
    agenda: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<Option<Ev>>,
    free: Vec<usize>,
    nodes: Vec<Node>,
    /// Per directed connection: the arrival time of its last message (FIFO).
    channel_last: BTreeMap<(u8, u8), u64>,
    /// Delay spikes: (from, to, until, extra ms).
    spikes: Vec<(u8, u8, u64, u64)>,
    /// Process pauses: (node, from, until).
    pauses: Vec<(u8, u64, u64)>,
    rng: ChaCha8Rng,
    checker: LockChecker,
    out: DlmSimOutcome,
    next_value: u64,
    stopping: bool,
    /// Per node, the names it masters (to see purges).
    mastered: Vec<Vec<bool>>,
    lock_names: Vec<LockName>,
    /// Print every input and output (`DLM_SIM_TRACE=1`).
    trace: bool,
}

fn names(n: usize) -> Vec<LockName> {
    (0..n)
        .filter_map(|i| LockName::new(format!("simlock{i}").as_bytes()).ok())
        .collect()
}

impl DlmSim {
    /// Sets up the nodes (numbered 0..nodes) in one domain.
    pub fn new(cfg: DlmSimConfig) -> DlmSim {
        let domain = DomainName::new(b"simdomain").unwrap_or_else(|_| unreachable_name());
        let lock_names = names(cfg.locks.max(1));
        let mut nodes = Vec::new();
        for n in 0..cfg.nodes {
            let mut dc = DomainConfig::new(n, domain);
            dc.purge_interval_ms = 500;
            dc.mastery_timeout_ms = 1000;
            let mut core = DomainCore::new(dc);
            for m in 0..cfg.nodes {
                core.handle(0, Input::NodeUp(m));
            }
            let clients = (0..cfg.clients_per_node)
                .map(|_| Client {
                    state: ClientState::Idle,
                    name: lock_names[0],
                    cancel_sent: false,
                    gen: 0,
                })
                .collect();
            nodes.push(Node {
                core,
                cookies: CookieSource::new(n),
                clients,
                tick_at: None,
                joined: false,
            });
        }
        let cfg_nodes = cfg.nodes;
        DlmSim {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xd1a0_5eed),
            out: DlmSimOutcome {
                seed: cfg.seed,
                ..DlmSimOutcome::default()
            },
            cfg,
            now: 0,
            seq: 0,
            agenda: BinaryHeap::new(),
            events: Vec::new(),
            free: Vec::new(),
            nodes,
            channel_last: BTreeMap::new(),
            spikes: Vec::new(),
            pauses: Vec::new(),
            checker: LockChecker::default(),
            next_value: 1,
            stopping: false,
            mastered: vec![vec![false; lock_names.len()]; usize::from(cfg_nodes)],
            lock_names,
            trace: std::env::var_os("DLM_SIM_TRACE").is_some(),
        }
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(i) => {
                self.events[i] = Some(ev);
                i
            }
            None => {
                self.events.push(Some(ev));
                self.events.len() - 1
            }
        };
        self.agenda.push(Reverse((at, self.seq, slot)));
    }

    /// Runs the workload, stops it, lets everything settle, and judges.
    pub fn run(mut self) -> DlmSimOutcome {
        let n = self.cfg.nodes;
        // Staggered joins, as machines start at different times.
        for i in 0..n {
            let at = u64::from(i) * 40 + self.rng.gen_range(0..20);
            self.push(at, Ev::Join(i));
        }
        if self.cfg.faults {
            self.draw_faults();
        }
        // The workload runs for `duration_ms` once every node has joined (joins that collide
        // back off and retry, longer under delay spikes); a join must finish within a minute.
        const JOIN_BOUND_MS: u64 = 60_000;
        let mut stop = u64::MAX;
        let mut end = JOIN_BOUND_MS;
        while let Some(Reverse((at, _, slot))) = self.agenda.pop() {
            if at > end || !self.out.violations.is_empty() {
                break;
            }
            self.now = at;
            if stop == u64::MAX && self.nodes.iter().all(|n| n.joined) {
                stop = at + self.cfg.duration_ms;
                end = stop + self.cfg.settle_bound_ms;
            }
            if !self.stopping && at >= stop {
                self.stopping = true;
                self.spikes.clear();
                self.pauses.clear();
            }
            let Some(ev) = self.events.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            self.free.push(slot);
            self.step(ev);
        }
        if stop == u64::MAX {
            let missing: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes.get(i).is_some_and(|n| !n.joined))
                .collect();
            self.out.violations.push(format!(
                "progress: nodes {missing:?} had not joined after {JOIN_BOUND_MS} ms"
            ));
        }
        // Every request finished; every client is idle or holding (and was told to let go).
        for (i, node) in self.nodes.iter().enumerate() {
            for (c, client) in node.clients.iter().enumerate() {
                let since = match client.state {
                    ClientState::Idle => continue,
                    ClientState::Holding { .. } => stop,
                    ClientState::Requesting { since, .. }
                    | ClientState::Converting { since, .. }
                    | ClientState::Unlocking { since, .. } => since,
                };
                self.out.violations.push(format!(
                    "progress: node {i} client {c} ({}) still busy at {} ms, since {since} ms; the workload stopped and faults healed at {stop} ms: {:?}",
                    client.name, self.now, client.state
                ));
            }
        }
        self.out.violations.extend(self.checker.violations());
        self.out
    }

    fn draw_faults(&mut self) {
        let n = self.cfg.nodes;
        // Joins take about a second; faults strike during joins and the workload alike.
        let horizon = 1000 + self.cfg.duration_ms;
        for _ in 0..(self.cfg.duration_ms / 400).max(1) {
            let from = self.rng.gen_range(0..n);
            let to = self.rng.gen_range(0..n);
            let start = self.rng.gen_range(0..horizon);
            let len = self.rng.gen_range(50..600);
            let extra = self.rng.gen_range(10..250);
            self.spikes.push((from, to, start + len, extra));
        }
        for _ in 0..(self.cfg.duration_ms / 800).max(1) {
            let node = self.rng.gen_range(0..n);
            let start = self.rng.gen_range(0..horizon);
            let len = self.rng.gen_range(20..400);
            self.pauses.push((node, start, start + len));
        }
    }

    /// The end of a pause of `node` going on now.
    fn paused_until(&self, node: u8) -> Option<u64> {
        if self.stopping {
            return None;
        }
        self.pauses
            .iter()
            .filter(|&&(n, start, end)| n == node && start <= self.now && self.now < end)
            .map(|&(_, _, end)| end)
            .max()
    }

    fn latency(&mut self, from: u8, to: u8) -> u64 {
        let mut l = self.rng.gen_range(0..3u64);
        if !self.stopping {
            for &(f, t, until, extra) in &self.spikes {
                if f == from && t == to && self.now < until {
                    l += extra;
                }
            }
        }
        let arrive = self.now + l;
        let last = self.channel_last.entry((from, to)).or_insert(0);
        let at = arrive.max(*last);
        *last = at;
        at
    }

    fn step(&mut self, ev: Ev) {
        let node = match &ev {
            Ev::Request { to, .. } | Ev::Reply { to, .. } => *to,
            Ev::Tick(n) | Ev::Client(n, _, _) | Ev::Join(n) => *n,
        };
        if let Some(paused) = self.paused_until(node) {
            // A paused process handles nothing; its inputs wait, in order.
            self.push(paused, ev);
            return;
        }
        match ev {
            Ev::Join(n) => {
                self.input(n, Input::Join);
            }
            Ev::Request {
                from,
                to,
                token,
                bytes,
                msg_type,
            } => {
                self.out.messages += 1;
                let status = match DlmMessage::decode(msg_type, &bytes) {
                    Ok(msg) => self.input(to, Input::Message { from, msg }),
                    Err(e) => {
                        self.out
                            .violations
                            .push(format!("codec: node {to} cannot decode {msg_type}: {e}"));
                        -22
                    }
                };
                let at = self.latency(to, from);
                self.push(
                    at,
                    Ev::Reply {
                        to: from,
                        token,
                        status,
                    },
                );
            }
            Ev::Reply { to, token, status } => {
                self.input(
                    to,
                    Input::SendDone {
                        token,
                        result: Ok(status),
                    },
                );
            }
            Ev::Tick(n) => {
                if let Some(nd) = self.nodes.get_mut(usize::from(n)) {
                    nd.tick_at = None;
                }
                self.input(n, Input::Tick);
            }
            Ev::Client(n, c, gen) => {
                if self.client(n, c).is_some_and(|cl| cl.gen == gen) {
                    self.client_step(n, c);
                }
            }
        }
    }

    /// Feeds one input and carries out the outputs.
    fn input(&mut self, n: u8, input: Input) -> i32 {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(usize::from(n)) else {
            return -22;
        };
        let trace = self.trace;
        if trace {
            eprintln!("{now} n{n} <- {input:?}");
        }
        let status = node.core.handle(now, input);
        let outputs: Vec<Output> = node.core.drain_outputs().collect();
        if trace {
            for o in &outputs {
                eprintln!("{now} n{n} -> {o:?}");
            }
        }
        let deadline = node.core.next_deadline();
        if let Some(d) = deadline {
            if node.tick_at.is_none_or(|t| d < t) {
                node.tick_at = Some(d);
                self.push(d.max(now), Ev::Tick(n));
            }
        }
        self.see_purges(n);
        for o in outputs {
            self.output(n, o);
        }
        status
    }

    /// A name node `n` mastered and no longer has was purged there.
    fn see_purges(&mut self, n: u8) {
        let Some(node) = self.nodes.get(usize::from(n)) else {
            return;
        };
        let Some(row) = self.mastered.get_mut(usize::from(n)) else {
            return;
        };
        for (i, name) in self.lock_names.iter().enumerate() {
            let now_master = node.core.owner_of(name) == Some(n);
            if let Some(was) = row.get_mut(i) {
                if *was && !now_master {
                    self.checker.see(LockEvent::Purged {
                        at: self.now,
                        name: *name,
                    });
                }
                *was = now_master;
            }
        }
    }

    fn output(&mut self, n: u8, o: Output) {
        match o {
            Output::Send { token, to, msg } => {
                let bytes = msg.to_vec();
                let msg_type = msg.msg_type().to_wire();
                let at = self.latency(n, to);
                self.push(
                    at,
                    Ev::Request {
                        from: n,
                        to,
                        token,
                        bytes,
                        msg_type,
                    },
                );
            }
            Output::Joined => {
                if let Some(nd) = self.nodes.get_mut(usize::from(n)) {
                    nd.joined = true;
                }
                for c in 0..self.cfg.clients_per_node {
                    let at = self.now + c as u64;
                    self.wake(n, c, at);
                }
            }
            Output::JoinFailed(e) => self
                .out
                .violations
                .push(format!("join: node {n} failed to join with {e}")),
            Output::Left => {}
            Output::Done { cookie, result } => self.done(n, cookie, result),
            Output::Bast { cookie, blocked } => self.bast(n, cookie, blocked),
            Output::Unlocked {
                cookie,
                status,
                removed,
                cancel,
            } => {
                // A cancel that came too late leaves the lock to its grant.
                if !cancel || removed {
                    self.unlocked(n, cookie, status, removed);
                }
            }
        }
    }

    fn client_of(&self, n: u8, cookie: u64) -> Option<usize> {
        self.nodes
            .get(usize::from(n))?
            .clients
            .iter()
            .position(|c| match c.state {
                ClientState::Idle => false,
                ClientState::Requesting { cookie: k, .. }
                | ClientState::Holding { cookie: k, .. }
                | ClientState::Converting { cookie: k, .. }
                | ClientState::Unlocking { cookie: k, .. } => k == cookie,
            })
    }

    /// Schedules client `c` of node `n` at `at`, replacing its earlier schedule.
    fn wake(&mut self, n: u8, c: usize, at: u64) {
        let Some(cl) = self
            .nodes
            .get_mut(usize::from(n))
            .and_then(|nd| nd.clients.get_mut(c))
        else {
            return;
        };
        cl.gen += 1;
        let gen = cl.gen;
        self.push(at, Ev::Client(n, c, gen));
    }

    fn set_state(&mut self, n: u8, c: usize, s: ClientState) {
        if let Some(cl) = self
            .nodes
            .get_mut(usize::from(n))
            .and_then(|nd| nd.clients.get_mut(c))
        {
            cl.state = s;
        }
    }

    fn client(&self, n: u8, c: usize) -> Option<&Client> {
        self.nodes.get(usize::from(n))?.clients.get(c)
    }

    fn done(&mut self, n: u8, cookie: u64, result: Result<Grant, DlmStatus>) {
        let Some(c) = self.client_of(n, cookie) else {
            self.out.violations.push(format!(
                "api: node {n} got a result for unknown lock {cookie:#x}"
            ));
            return;
        };
        let Some(cl) = self.client(n, c) else { return };
        let name = cl.name;
        let state = cl.state;
        let now = self.now;
        match (state, result) {
            (ClientState::Requesting { .. }, Ok(g)) => {
                self.out.grants += 1;
                if g.lvb.is_some() {
                    self.out.lvb_reads += 1;
                }
                let valblk = g.lvb.is_some() || g.mode == LockMode::Nl;
                self.checker.see(LockEvent::Granted {
                    at: now,
                    node: n,
                    cookie,
                    name,
                    mode: g.mode,
                    lvb: g.lvb,
                });
                self.set_state(
                    n,
                    c,
                    ClientState::Holding {
                        cookie,
                        mode: g.mode,
                        valblk,
                    },
                );
                let hold = self.rng.gen_range(0..15);
                self.wake(n, c, now + hold);
            }
            (ClientState::Requesting { .. }, Err(s)) => {
                match s {
                    DlmStatus::Notqueued => self.out.notqueued += 1,
                    DlmStatus::Cancel => self.out.cancels += 1,
                    s => self.out.violations.push(format!(
                        "api: node {n} lock {name} request failed with {s} in a run without node deaths"
                    )),
                }
                self.set_state(n, c, ClientState::Idle);
                let wait = self.rng.gen_range(1..10);
                self.wake(n, c, now + wait);
            }
            (ClientState::Converting { from, .. }, Ok(g)) => {
                self.out.grants += 1;
                if g.lvb.is_some() {
                    self.out.lvb_reads += 1;
                }
                self.checker.see(LockEvent::Granted {
                    at: now,
                    node: n,
                    cookie,
                    name,
                    mode: g.mode,
                    lvb: g.lvb,
                });
                let _ = from;
                self.set_state(
                    n,
                    c,
                    ClientState::Holding {
                        cookie,
                        mode: g.mode,
                        valblk: true,
                    },
                );
                let hold = self.rng.gen_range(0..10);
                self.wake(n, c, now + hold);
            }
            (ClientState::Converting { from, .. }, Err(s)) => {
                if s == DlmStatus::Notqueued {
                    self.out.notqueued += 1;
                } else {
                    self.out.violations.push(format!(
                        "api: node {n} lock {name} conversion failed with {s}"
                    ));
                }
                self.set_state(
                    n,
                    c,
                    ClientState::Holding {
                        cookie,
                        mode: from,
                        valblk: true,
                    },
                );
                self.wake(n, c, now + 1);
            }
            (s, r) => self.out.violations.push(format!(
                "api: node {n} lock {name} {cookie:#x}: result {r:?} while {s:?}"
            )),
        }
    }

    fn bast(&mut self, n: u8, cookie: u64, blocked: LockMode) {
        self.out.basts += 1;
        let Some(c) = self.client_of(n, cookie) else {
            return;
        };
        if let Some(ClientState::Holding { mode, .. }) = self.client(n, c).map(|c| c.state) {
            if !LockMode::compatible(mode, blocked) || mode == LockMode::Ex {
                // Let go soon.
                let at = self.now + self.rng.gen_range(0..3);
                self.wake(n, c, at);
            }
        }
    }

    fn unlocked(&mut self, n: u8, cookie: u64, status: DlmStatus, removed: bool) {
        let Some(c) = self.client_of(n, cookie) else {
            return;
        };
        let Some(cl) = self.client(n, c) else { return };
        let name = cl.name;
        match cl.state {
            ClientState::Unlocking { .. } => {
                if status != DlmStatus::Normal || !removed {
                    self.out.violations.push(format!(
                        "api: node {n} unlock of {name} {cookie:#x} ended with {status} (removed {removed})"
                    ));
                }
                self.set_state(n, c, ClientState::Idle);
                let wait = self.rng.gen_range(0..8);
                self.wake(n, c, self.now + wait);
            }
            // The completion of a cancel: the request's own result comes as `Done`, and a
            // cancel that came too late (DLM_CANCELGRANT) leaves the lock granted.
            ClientState::Requesting { .. } => {}
            ClientState::Holding { .. } | ClientState::Converting { .. }
                if cl.cancel_sent && !removed => {}
            s => self.out.violations.push(format!(
                "api: node {n} unlock completion for {name} while {s:?}"
            )),
        }
    }

    fn client_step(&mut self, n: u8, c: usize) {
        let now = self.now;
        let Some(cl) = self.client(n, c) else { return };
        let state = cl.state;
        let cancel_sent = cl.cancel_sent;
        match state {
            ClientState::Idle => {
                if self.stopping {
                    return;
                }
                let names = names(self.cfg.locks.max(1));
                let name = names[self.rng.gen_range(0..names.len())];
                let roll = self.rng.gen_range(0..100);
                let mode = if roll < 45 {
                    LockMode::Ex
                } else if roll < 90 {
                    LockMode::Pr
                } else {
                    LockMode::Nl
                };
                let mut flags = LkmFlags::VALBLK;
                if self.rng.gen_range(0..100) < 15 {
                    flags |= LkmFlags::NOQUEUE;
                }
                let Some(node) = self.nodes.get_mut(usize::from(n)) else {
                    return;
                };
                let cookie = node.cookies.next_cookie();
                if let Some(cl) = node.clients.get_mut(c) {
                    cl.name = name;
                    cl.cancel_sent = false;
                    cl.state = ClientState::Requesting { cookie, since: now };
                }
                self.checker.see(LockEvent::Requested {
                    at: now,
                    node: n,
                    cookie,
                });
                // Some requests are given up on if they wait.
                if self.rng.gen_range(0..100) < 10 {
                    let at = now + self.rng.gen_range(1..20);
                    self.wake(n, c, at);
                }
                self.input(
                    n,
                    Input::Lock {
                        cookie,
                        name,
                        mode,
                        flags,
                    },
                );
            }
            ClientState::Requesting { cookie, .. } => {
                if !cancel_sent && !self.stopping {
                    if let Some(cl) = self
                        .nodes
                        .get_mut(usize::from(n))
                        .and_then(|nd| nd.clients.get_mut(c))
                    {
                        cl.cancel_sent = true;
                    }
                    self.input(
                        n,
                        Input::Unlock {
                            cookie,
                            flags: LkmFlags::CANCEL,
                            lvb: [0; LVB_LEN],
                        },
                    );
                }
            }
            ClientState::Holding {
                cookie,
                mode,
                valblk,
            } => {
                let Some(name) = self.client(n, c).map(|c| c.name) else {
                    return;
                };
                let roll = self.rng.gen_range(0..100);
                // Down-convert, NOQUEUE up-convert, or unlock.
                if roll < 25 && mode != LockMode::Nl && !self.stopping {
                    let to = if mode == LockMode::Ex {
                        LockMode::Pr
                    } else {
                        LockMode::Nl
                    };
                    let lvb = self.write_value(n, cookie, name, mode, valblk);
                    self.checker.see(LockEvent::Released {
                        at: now,
                        node: n,
                        cookie,
                        name,
                        now_mode: Some(to),
                        wrote: lvb.filter(|_| mode == LockMode::Ex),
                    });
                    self.set_state(
                        n,
                        c,
                        ClientState::Converting {
                            cookie,
                            since: now,
                            from: to,
                        },
                    );
                    // VALBLK from EX writes the block back: only with a value to write.
                    let flags = if lvb.is_some() || mode != LockMode::Ex {
                        LkmFlags::VALBLK
                    } else {
                        LkmFlags::empty()
                    };
                    self.input(
                        n,
                        Input::Convert {
                            cookie,
                            mode: to,
                            flags,
                            lvb: lvb.unwrap_or([0; LVB_LEN]),
                        },
                    );
                } else if roll < 35 && mode != LockMode::Ex && !self.stopping {
                    self.set_state(
                        n,
                        c,
                        ClientState::Converting {
                            cookie,
                            since: now,
                            from: mode,
                        },
                    );
                    self.input(
                        n,
                        Input::Convert {
                            cookie,
                            mode: LockMode::Ex,
                            flags: LkmFlags::VALBLK | LkmFlags::NOQUEUE,
                            lvb: [0; LVB_LEN],
                        },
                    );
                } else {
                    let lvb = self.write_value(n, cookie, name, mode, valblk);
                    self.checker.see(LockEvent::Released {
                        at: now,
                        node: n,
                        cookie,
                        name,
                        now_mode: None,
                        wrote: lvb.filter(|_| mode == LockMode::Ex),
                    });
                    self.set_state(n, c, ClientState::Unlocking { cookie, since: now });
                    let flags = if lvb.is_some() {
                        LkmFlags::VALBLK
                    } else {
                        LkmFlags::empty()
                    };
                    self.input(
                        n,
                        Input::Unlock {
                            cookie,
                            flags,
                            lvb: lvb.unwrap_or([0; LVB_LEN]),
                        },
                    );
                }
            }
            ClientState::Converting { .. } | ClientState::Unlocking { .. } => {}
        }
    }

    /// An EX holder that read the value block writes a fresh one back (most of the time).
    fn write_value(
        &mut self,
        n: u8,
        cookie: u64,
        name: LockName,
        mode: LockMode,
        valblk: bool,
    ) -> Option<Lvb> {
        if mode != LockMode::Ex || !valblk || self.rng.gen_range(0..100) < 20 {
            return None;
        }
        let mut lvb = [0u8; LVB_LEN];
        lvb[..8].copy_from_slice(&self.next_value.to_be_bytes());
        lvb[8] = n;
        lvb[9..17].copy_from_slice(&cookie.to_be_bytes());
        lvb[17..17 + name.len()].copy_from_slice(name.as_bytes());
        self.next_value += 1;
        Some(lvb)
    }
}

/// "simdomain" is a valid domain name; this is never reached.
fn unreachable_name() -> DomainName {
    match DomainName::new(b"d") {
        Ok(d) => d,
        Err(_) => unreachable!("a one-letter domain name is valid"),
    }
}
