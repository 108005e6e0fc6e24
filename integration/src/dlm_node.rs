//! The o2dlm layer of a simulated node and its lock workload.
//!
//! [`DlmLayer`] holds the node's real [`DomainCore`] for the simulated cluster's one domain
//! and the node's lock clients. [`crate::o2stack::O2Stack`] carries its messages over the
//! node's o2net core (so o2net's faults, reconnects and node-down failures of sends reach
//! the DLM as they do in the kernel) and feeds it heartbeat NODE_UP/NODE_DOWN after o2net,
//! as the kernel's callback priorities order them. A crash or fence drops the layer with the
//! rest of the stack: nothing of a node's locks survives its machine.
//!
//! The clients lock a few contended names in random modes (NOQUEUE, VALBLK, cancels,
//! down-conversions, NOQUEUE up-conversions), hold them a while or until a BAST, write a
//! fresh value block under EX and release. Everything they see is reported as a
//! [`DlmNote`], which the lock checkers of [`crate::check::locks`] judge.

use std::fmt;

use o2dlm::domain::{DomainConfig, DomainCore, Grant, Input, Output};
use o2dlm::secondary::CookieSource;
use o2dlm::wire::{
    DlmMessage, DlmStatus, DomainName, LkmFlags, LockMode, LockName, Lvb, NodeMap, LVB_LEN,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::Sabotage;
use crate::stack::NodeId;

/// The one domain every node joins.
pub const DOMAIN: &[u8] = b"simdomain";

/// What a node's lock clients saw, in the order they saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DlmNote {
    Joined,
    /// The node left the domain cleanly (what it mastered that others used migrated).
    Left,
    JoinFailed(i32),
    /// A client asked for a lock (`convert`: a conversion of lock `cookie`).
    Requested {
        cookie: u64,
        name: LockName,
        mode: LockMode,
        convert: bool,
    },
    /// A request or conversion was granted; `lvb` is the value block it read.
    Granted {
        cookie: u64,
        name: LockName,
        mode: LockMode,
        lvb: Option<Lvb>,
    },
    /// A request or conversion finished without a grant.
    Failed {
        cookie: u64,
        name: LockName,
        status: DlmStatus,
    },
    Bast {
        cookie: u64,
        name: LockName,
        blocked: LockMode,
    },
    /// The client lets go (`now_mode` None) or down-converts; `wrote` is the value block an
    /// EX holder writes back.
    Released {
        cookie: u64,
        name: LockName,
        now_mode: Option<LockMode>,
        wrote: Option<Lvb>,
    },
    /// An unlock finished.
    Unlocked {
        cookie: u64,
        name: LockName,
        status: DlmStatus,
    },
    /// This node mastered `name` and freed the idle resource (its value block with it).
    Purged {
        name: LockName,
    },
}

impl fmt::Display for DlmNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DlmNote::Joined => write!(f, "dlm: joined domain simdomain"),
            DlmNote::Left => write!(f, "dlm: left domain simdomain"),
            DlmNote::JoinFailed(e) => write!(f, "dlm: join failed with errno {e}"),
            DlmNote::Requested {
                cookie,
                name,
                mode,
                convert,
            } => {
                let what = if *convert { "convert" } else { "lock" };
                write!(f, "dlm: {what} {name} to {mode} asked (lock {cookie:#x})")
            }
            DlmNote::Granted {
                cookie,
                name,
                mode,
                lvb,
            } => {
                write!(f, "dlm: GRANT {mode} on {name} (lock {cookie:#x})")?;
                if let Some(v) = lvb {
                    write!(f, ", value block reads {}", value_of(v))?;
                }
                Ok(())
            }
            DlmNote::Failed {
                cookie,
                name,
                status,
            } => write!(
                f,
                "dlm: request on {name} ended with {status} (lock {cookie:#x})"
            ),
            DlmNote::Bast {
                cookie,
                name,
                blocked,
            } => write!(
                f,
                "dlm: BAST on {name}: a {blocked} request waits for lock {cookie:#x}"
            ),
            DlmNote::Released {
                cookie,
                name,
                now_mode,
                wrote,
            } => {
                match now_mode {
                    Some(m) => write!(f, "dlm: release {name} down to {m} (lock {cookie:#x})")?,
                    None => write!(f, "dlm: release {name} (lock {cookie:#x})")?,
                }
                if let Some(v) = wrote {
                    write!(f, ", writing value block {}", value_of(v))?;
                }
                Ok(())
            }
            DlmNote::Unlocked {
                cookie,
                name,
                status,
            } => write!(f, "dlm: unlock of {name} done: {status} (lock {cookie:#x})"),
            DlmNote::Purged { name } => write!(f, "dlm: purged idle resource {name} (master)"),
        }
    }
}

/// The writer's counter in a value block written by the workload.
pub fn value_of(lvb: &Lvb) -> String {
    let mut b = [0u8; 8];
    b.copy_from_slice(&lvb[..8]);
    match u64::from_be_bytes(b) {
        0 => "zeros".to_string(),
        v => format!("n{}#{}", v >> 56, v & 0x00ff_ffff_ffff_ffff),
    }
}

/// What the layer asks its stack to do.
#[derive(Clone, Debug)]
pub enum DlmAct {
    Send {
        token: u64,
        to: NodeId,
        msg: DlmMessage,
    },
    /// Arm (or move) the layer timer `index` (see [`DlmTimer`]).
    Timer {
        timer: DlmTimer,
        at_ms: u64,
    },
    Note(DlmNote),
}

/// The layer's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DlmTimer {
    /// The domain core's next deadline.
    Core,
    /// Time to (re)try joining.
    Join,
    /// Client `n`'s next step.
    Client(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Idle,
    Requesting {
        cookie: u64,
    },
    Holding {
        cookie: u64,
        mode: LockMode,
        valblk: bool,
        /// Taken behind the DLM's back (the bypass sabotage).
        bypass: bool,
    },
    Converting {
        cookie: u64,
        from: LockMode,
    },
    Unlocking {
        cookie: u64,
    },
}

impl ClientState {
    fn cookie(self) -> Option<u64> {
        match self {
            ClientState::Idle => None,
            ClientState::Requesting { cookie }
            | ClientState::Holding { cookie, .. }
            | ClientState::Converting { cookie, .. }
            | ClientState::Unlocking { cookie } => Some(cookie),
        }
    }
}

struct Client {
    state: ClientState,
    name: LockName,
    cancel_sent: bool,
}

/// The workload's shape.
#[derive(Clone, Copy, Debug)]
pub struct LockWork {
    pub clients: u8,
    pub names: u8,
    /// Mean pause between a client's steps, in ms.
    pub think_ms: u64,
    /// How long after boot to first try joining, in ms: a node mounts once its heartbeat
    /// has seen the live nodes (a join before that would make a domain of its own).
    pub join_after_ms: u64,
}

/// The DLM of one node and its lock clients. See the module documentation.
pub struct DlmLayer {
    node: NodeId,
    core: DomainCore,
    domain: DomainName,
    cookies: CookieSource,
    clients: Vec<Client>,
    names: Vec<LockName>,
    /// Per name, whether this node mastered it at the last look (to see purges).
    mastered: Vec<bool>,
    work: LockWork,
    rng: ChaCha8Rng,
    joined: bool,
    core_timer: Option<u64>,
    next_value: u64,
    /// Values written carry the boot, so two boots' values differ.
    incarnation: u32,
    sabotage: Option<Sabotage>,
    /// How the core was set up: a rejoin after a leave starts a fresh one.
    cfg: DomainConfig,
    /// The nodes heartbeat says are live, for a fresh core.
    live: NodeMap,
    /// A leave asked for: when to join again, and whether the core was told to leave (once
    /// every client has let go).
    leave: Option<(u64, bool)>,
}

impl DlmLayer {
    /// A layer for `node` (its boot `incarnation`), drawing its choices from `seed`.
    pub fn new(
        node: NodeId,
        incarnation: u32,
        seed: u64,
        work: LockWork,
        sabotage: Option<Sabotage>,
    ) -> Option<DlmLayer> {
        let domain = DomainName::new(DOMAIN).ok()?;
        let mut dc = DomainConfig::new(node, domain);
        // Short enough that purges and mastery retries happen within a run.
        dc.purge_interval_ms = 500;
        dc.mastery_timeout_ms = 1000;
        let names: Vec<LockName> = (0..work.names.max(1))
            .filter_map(|i| LockName::new(format!("simlock{i}").as_bytes()).ok())
            .collect();
        let first = *names.first()?;
        Some(DlmLayer {
            node,
            core: DomainCore::new(dc.clone()),
            cfg: dc,
            live: NodeMap::new(),
            leave: None,
            domain,
            cookies: CookieSource::new(node),
            clients: (0..work.clients)
                .map(|_| Client {
                    state: ClientState::Idle,
                    name: first,
                    cancel_sent: false,
                })
                .collect(),
            mastered: vec![false; names.len()],
            names,
            work,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xd1a0_5eed),
            joined: false,
            core_timer: None,
            next_value: 1,
            incarnation,
            sabotage,
        })
    }

    pub fn domain(&self) -> &DomainName {
        &self.domain
    }

    /// The machine booted: this node is live, and it joins once the cluster is up.
    pub fn boot(&mut self, now: u64, out: &mut Vec<DlmAct>) {
        self.live.insert(self.node);
        self.input(now, Input::NodeUp(self.node), out);
        // Nodes mount at different moments: joins that collide back off, but a tie of
        // perfectly simultaneous machines would repeat forever.
        let at =
            now + self.work.join_after_ms + u64::from(self.node) * 40 + self.rng.gen_range(0..20);
        out.push(DlmAct::Timer {
            timer: DlmTimer::Join,
            at_ms: at,
        });
    }

    /// Heartbeat saw `node` come up (after o2net was told).
    pub fn node_up(&mut self, now: u64, node: NodeId, out: &mut Vec<DlmAct>) {
        self.live.insert(node);
        self.input(now, Input::NodeUp(node), out);
    }

    /// Heartbeat saw `node` die (after o2net was told).
    pub fn node_down(&mut self, now: u64, node: NodeId, out: &mut Vec<DlmAct>) {
        self.live.remove(node);
        self.input(now, Input::NodeDown(node), out);
    }

    /// A DLM request from `from`; returns the status the handler replies with.
    pub fn message(
        &mut self,
        now: u64,
        from: NodeId,
        msg: DlmMessage,
        out: &mut Vec<DlmAct>,
    ) -> i32 {
        self.input(now, Input::Message { from, msg }, out)
    }

    /// One of our sends finished.
    pub fn send_done(
        &mut self,
        now: u64,
        token: u64,
        result: Result<i32, i32>,
        out: &mut Vec<DlmAct>,
    ) {
        self.input(now, Input::SendDone { token, result }, out);
    }

    /// The lock users unmount: every client lets go (cancels its request, unlocks what it
    /// holds), then the core leaves the domain (`dlm_unregister_domain`, which migrates
    /// what others use), and `rejoin_ms` later the node joins again with a fresh core.
    pub fn leave(&mut self, now: u64, rejoin_ms: u64, out: &mut Vec<DlmAct>) {
        if !self.joined || self.leave.is_some() {
            return;
        }
        self.leave = Some((now.saturating_add(rejoin_ms), false));
        for c in 0..self.clients.len() {
            out.push(DlmAct::Timer {
                timer: DlmTimer::Client(c),
                at_ms: now,
            });
        }
    }

    /// Tells the core to leave once no client holds or waits for anything.
    fn leave_when_idle(&mut self, now: u64, out: &mut Vec<DlmAct>) {
        let idle = self.clients.iter().all(|c| c.state == ClientState::Idle);
        match self.leave {
            Some((at, false)) if idle => {
                self.leave = Some((at, true));
                self.input(now, Input::Leave, out);
            }
            _ => {}
        }
    }

    pub fn timer(&mut self, now: u64, timer: DlmTimer, out: &mut Vec<DlmAct>) {
        match timer {
            DlmTimer::Core => {
                self.core_timer = None;
                self.input(now, Input::Tick, out);
            }
            DlmTimer::Join => {
                if !self.joined {
                    self.input(now, Input::Join, out);
                }
            }
            DlmTimer::Client(c) => self.client_step(now, c, out),
        }
    }

    fn input(&mut self, now: u64, input: Input, out: &mut Vec<DlmAct>) -> i32 {
        let status = self.core.handle(now, input);
        let outputs: Vec<Output> = self.core.drain_outputs().collect();
        if let Some(d) = self.core.next_deadline() {
            if self.core_timer.is_none_or(|t| d < t) {
                self.core_timer = Some(d);
                out.push(DlmAct::Timer {
                    timer: DlmTimer::Core,
                    at_ms: d.max(now),
                });
            }
        }
        self.see_purges(out);
        for o in outputs {
            self.output(now, o, out);
        }
        status
    }

    fn see_purges(&mut self, out: &mut Vec<DlmAct>) {
        for (name, was) in self.names.iter().zip(self.mastered.iter_mut()) {
            let owner = self.core.owner_of(name);
            let now_master = owner == Some(self.node);
            // A resource that moved to another master (migration) was not freed.
            if *was && owner.is_none() {
                out.push(DlmAct::Note(DlmNote::Purged { name: *name }));
            }
            *was = now_master;
        }
    }

    fn output(&mut self, now: u64, o: Output, out: &mut Vec<DlmAct>) {
        match o {
            Output::Send { token, to, msg } => out.push(DlmAct::Send { token, to, msg }),
            Output::Joined => {
                self.joined = true;
                self.leave = None;
                out.push(DlmAct::Note(DlmNote::Joined));
                for c in 0..self.clients.len() {
                    let at = now + self.think();
                    out.push(DlmAct::Timer {
                        timer: DlmTimer::Client(c),
                        at_ms: at,
                    });
                }
            }
            Output::JoinFailed(e) => {
                out.push(DlmAct::Note(DlmNote::JoinFailed(e)));
                out.push(DlmAct::Timer {
                    timer: DlmTimer::Join,
                    at_ms: now + 1000,
                });
            }
            Output::Left => {
                self.joined = false;
                out.push(DlmAct::Note(DlmNote::Left));
                // `dlm_register_domain` later makes a new domain: a fresh core, told who is
                // live.
                self.core = DomainCore::new(self.cfg.clone());
                self.core_timer = None;
                for n in self.live.iter() {
                    self.core.handle(now, Input::NodeUp(n));
                }
                let at = self.leave.map_or(now, |(at, _)| at.max(now));
                out.push(DlmAct::Timer {
                    timer: DlmTimer::Join,
                    at_ms: at,
                });
            }
            Output::Done { cookie, result } => self.done(now, cookie, result, out),
            Output::Bast { cookie, blocked } => {
                let Some(c) = self.client_of(cookie) else {
                    return;
                };
                let Some(cl) = self.clients.get(c) else {
                    return;
                };
                out.push(DlmAct::Note(DlmNote::Bast {
                    cookie,
                    name: cl.name,
                    blocked,
                }));
                if let ClientState::Holding { mode, .. } = cl.state {
                    if !LockMode::compatible(mode, blocked) || mode == LockMode::Ex {
                        let at = now + self.rng.gen_range(0..3);
                        out.push(DlmAct::Timer {
                            timer: DlmTimer::Client(c),
                            at_ms: at,
                        });
                    }
                }
            }
            Output::Unlocked {
                cookie,
                status,
                removed,
                cancel,
            } => {
                // A cancel that came too late leaves the lock to its grant.
                if cancel && !removed {
                    return;
                }
                let Some(c) = self.client_of(cookie) else {
                    return;
                };
                let Some(cl) = self.clients.get_mut(c) else {
                    return;
                };
                if let ClientState::Unlocking { .. } = cl.state {
                    cl.state = ClientState::Idle;
                    out.push(DlmAct::Note(DlmNote::Unlocked {
                        cookie,
                        name: cl.name,
                        status,
                    }));
                    let at = now + self.think();
                    out.push(DlmAct::Timer {
                        timer: DlmTimer::Client(c),
                        at_ms: at,
                    });
                }
            }
        }
    }

    fn think(&mut self) -> u64 {
        self.rng.gen_range(0..=self.work.think_ms.saturating_mul(2))
    }

    fn client_of(&self, cookie: u64) -> Option<usize> {
        self.clients
            .iter()
            .position(|c| c.state.cookie() == Some(cookie))
    }

    fn done(
        &mut self,
        now: u64,
        cookie: u64,
        result: Result<Grant, DlmStatus>,
        out: &mut Vec<DlmAct>,
    ) {
        let Some(c) = self.client_of(cookie) else {
            return;
        };
        let Some(cl) = self.clients.get(c) else {
            return;
        };
        let (name, state) = (cl.name, cl.state);
        let next = match (state, result) {
            (ClientState::Requesting { .. } | ClientState::Converting { .. }, Ok(g)) => {
                out.push(DlmAct::Note(DlmNote::Granted {
                    cookie,
                    name,
                    mode: g.mode,
                    lvb: g.lvb,
                }));
                let valblk = g.lvb.is_some() || matches!(state, ClientState::Converting { .. });
                ClientState::Holding {
                    cookie,
                    mode: g.mode,
                    valblk,
                    bypass: false,
                }
            }
            (ClientState::Requesting { .. }, Err(status)) => {
                out.push(DlmAct::Note(DlmNote::Failed {
                    cookie,
                    name,
                    status,
                }));
                ClientState::Idle
            }
            (ClientState::Converting { from, .. }, Err(status)) => {
                out.push(DlmAct::Note(DlmNote::Failed {
                    cookie,
                    name,
                    status,
                }));
                ClientState::Holding {
                    cookie,
                    mode: from,
                    valblk: true,
                    bypass: false,
                }
            }
            _ => return,
        };
        if let Some(cl) = self.clients.get_mut(c) {
            cl.state = next;
        }
        let at = now + self.think() / 4;
        out.push(DlmAct::Timer {
            timer: DlmTimer::Client(c),
            at_ms: at,
        });
    }

    fn sabotaged(&self, s: Sabotage) -> bool {
        self.node == 0 && self.sabotage == Some(s)
    }

    fn client_step(&mut self, now: u64, c: usize, out: &mut Vec<DlmAct>) {
        let Some(cl) = self.clients.get(c) else {
            return;
        };
        let (state, name, cancel_sent) = (cl.state, cl.name, cl.cancel_sent);
        match state {
            ClientState::Idle if self.leave.is_some() => self.leave_when_idle(now, out),
            ClientState::Idle => self.start_request(now, c, out),
            ClientState::Requesting { cookie } => {
                if !cancel_sent {
                    if let Some(cl) = self.clients.get_mut(c) {
                        cl.cancel_sent = true;
                    }
                    self.input(
                        now,
                        Input::Unlock {
                            cookie,
                            flags: LkmFlags::CANCEL,
                            lvb: [0; LVB_LEN],
                        },
                        out,
                    );
                }
            }
            ClientState::Holding {
                cookie,
                mode,
                valblk,
                bypass,
            } => {
                if self.sabotaged(Sabotage::DlmHoldForever) {
                    return;
                }
                if bypass {
                    out.push(DlmAct::Note(DlmNote::Released {
                        cookie,
                        name,
                        now_mode: None,
                        wrote: None,
                    }));
                    out.push(DlmAct::Note(DlmNote::Unlocked {
                        cookie,
                        name,
                        status: DlmStatus::Normal,
                    }));
                    if let Some(cl) = self.clients.get_mut(c) {
                        cl.state = ClientState::Idle;
                    }
                    let at = now + self.think();
                    out.push(DlmAct::Timer {
                        timer: DlmTimer::Client(c),
                        at_ms: at,
                    });
                    return;
                }
                // Unmounting: let go.
                let roll = if self.leave.is_some() {
                    100
                } else {
                    self.rng.gen_range(0..100)
                };
                if roll < 25 && mode != LockMode::Nl {
                    // Down-convert, writing the value block back from EX.
                    let to = if mode == LockMode::Ex {
                        LockMode::Pr
                    } else {
                        LockMode::Nl
                    };
                    let lvb = self.write_value(cookie, name, mode, valblk);
                    out.push(DlmAct::Note(DlmNote::Released {
                        cookie,
                        name,
                        now_mode: Some(to),
                        wrote: lvb,
                    }));
                    out.push(DlmAct::Note(DlmNote::Requested {
                        cookie,
                        name,
                        mode: to,
                        convert: true,
                    }));
                    if let Some(cl) = self.clients.get_mut(c) {
                        cl.state = ClientState::Converting { cookie, from: to };
                    }
                    let flags = if lvb.is_some() || mode != LockMode::Ex {
                        LkmFlags::VALBLK
                    } else {
                        LkmFlags::empty()
                    };
                    let lvb = lvb.unwrap_or([0; LVB_LEN]);
                    self.input(
                        now,
                        Input::Convert {
                            cookie,
                            mode: to,
                            flags,
                            lvb,
                        },
                        out,
                    );
                } else if roll < 35 && mode != LockMode::Ex {
                    out.push(DlmAct::Note(DlmNote::Requested {
                        cookie,
                        name,
                        mode: LockMode::Ex,
                        convert: true,
                    }));
                    if let Some(cl) = self.clients.get_mut(c) {
                        cl.state = ClientState::Converting { cookie, from: mode };
                    }
                    let input = Input::Convert {
                        cookie,
                        mode: LockMode::Ex,
                        flags: LkmFlags::VALBLK | LkmFlags::NOQUEUE,
                        lvb: [0; LVB_LEN],
                    };
                    self.input(now, input, out);
                } else {
                    let lvb = self.write_value(cookie, name, mode, valblk);
                    out.push(DlmAct::Note(DlmNote::Released {
                        cookie,
                        name,
                        now_mode: None,
                        wrote: lvb,
                    }));
                    if let Some(cl) = self.clients.get_mut(c) {
                        cl.state = ClientState::Unlocking { cookie };
                    }
                    let flags = if lvb.is_some() && !self.sabotaged(Sabotage::DlmLoseLvb) {
                        LkmFlags::VALBLK
                    } else {
                        LkmFlags::empty()
                    };
                    let lvb = lvb.unwrap_or([0; LVB_LEN]);
                    self.input(now, Input::Unlock { cookie, flags, lvb }, out);
                }
            }
            ClientState::Converting { .. } | ClientState::Unlocking { .. } => {}
        }
    }

    fn start_request(&mut self, now: u64, c: usize, out: &mut Vec<DlmAct>) {
        let i = self.rng.gen_range(0..self.names.len());
        let Some(&name) = self.names.get(i) else {
            return;
        };
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
        let cookie = self.cookies.next_cookie();
        out.push(DlmAct::Note(DlmNote::Requested {
            cookie,
            name,
            mode,
            convert: false,
        }));
        if self.sabotaged(Sabotage::DlmBypass) {
            out.push(DlmAct::Note(DlmNote::Granted {
                cookie,
                name,
                mode,
                lvb: None,
            }));
            if let Some(cl) = self.clients.get_mut(c) {
                cl.name = name;
                cl.state = ClientState::Holding {
                    cookie,
                    mode,
                    valblk: false,
                    bypass: true,
                };
            }
            let at = now + self.think();
            out.push(DlmAct::Timer {
                timer: DlmTimer::Client(c),
                at_ms: at,
            });
            return;
        }
        if let Some(cl) = self.clients.get_mut(c) {
            cl.name = name;
            cl.cancel_sent = false;
            cl.state = ClientState::Requesting { cookie };
        }
        // Some requests are given up on (cancelled) if they wait.
        if self.rng.gen_range(0..100) < 10 {
            let at = now + self.rng.gen_range(1..20);
            out.push(DlmAct::Timer {
                timer: DlmTimer::Client(c),
                at_ms: at,
            });
        }
        self.input(
            now,
            Input::Lock {
                cookie,
                name,
                mode,
                flags,
            },
            out,
        );
    }

    /// An EX holder that read the value block writes a fresh one back (most of the time).
    fn write_value(
        &mut self,
        cookie: u64,
        name: LockName,
        mode: LockMode,
        valblk: bool,
    ) -> Option<Lvb> {
        if mode != LockMode::Ex || !valblk || self.rng.gen_range(0..100) < 20 {
            return None;
        }
        let mut lvb = [0u8; LVB_LEN];
        let v = (u64::from(self.node) << 56)
            | (u64::from(self.incarnation & 0xff_ffff) << 32)
            | (self.next_value & 0xffff_ffff);
        self.next_value += 1;
        lvb[..8].copy_from_slice(&v.to_be_bytes());
        lvb[8..16].copy_from_slice(&cookie.to_be_bytes());
        let n = name.len().min(LVB_LEN - 16);
        if let (Some(dst), Some(src)) = (lvb.get_mut(16..16 + n), name.as_bytes().get(..n)) {
            dst.copy_from_slice(src);
        }
        Some(lvb)
    }
}
