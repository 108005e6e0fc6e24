//! The lock workload of a simulated node: the applications that use its DLM.
//!
//! [`DlmLayer`] is the node's lock clients. They enter the node's [`NodeStack`] through the
//! same requests the daemon's users make (`join`, `lock`, `convert`, `unlock`, `leave`) and
//! hear back through its events, so everything between them and the wire (the node's
//! rules, o2net's faults, reconnects and node-down failures of sends) is the daemon's. The
//! users mount once the node is online. A crash or fence drops the clients with the rest of
//! the machine: nothing of a node's locks survives it.
//!
//! The clients lock a few contended names in random modes (NOQUEUE, VALBLK, cancels,
//! down-conversions, NOQUEUE up-conversions), hold them a while or until a BAST, write a
//! fresh value block under EX and release. Everything they see is reported as a
//! [`DlmNote`], which the lock checkers of [`crate::check::locks`] judge.

use std::fmt;

use o2dlm::domain::Grant;
use o2dlm::wire::{DlmStatus, DomainName, LkmFlags, LockMode, LockName, Lvb, LVB_LEN};
use o2node::{Event, NodeStack};
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

/// What the workload asks its simulated machine to do.
#[derive(Clone, Debug)]
pub enum DlmAct {
    /// Arm (or move) a workload timer.
    Timer {
        timer: DlmTimer,
        at_ms: u64,
    },
    Note(DlmNote),
}

/// The workload's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DlmTimer {
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
}

/// Cookies of locks the bypass sabotage takes without the DLM: apart from the node's own.
const BYPASS_COOKIE_BASE: u64 = 1 << 55;

/// The lock clients of one node. See the module documentation.
pub struct DlmLayer {
    node: NodeId,
    domain: DomainName,
    clients: Vec<Client>,
    names: Vec<LockName>,
    /// Per name, the incarnation of its resource if this node mastered it at the last look
    /// (to see purges, also of a resource freed and made again within one step).
    mastered: Vec<Option<u32>>,
    work: LockWork,
    rng: ChaCha8Rng,
    joined: bool,
    next_value: u64,
    next_bypass: u64,
    /// Values written carry the boot, so two boots' values differ.
    incarnation: u32,
    sabotage: Option<Sabotage>,
    /// A leave asked for: when to join again, and whether the node was told to leave (once
    /// every client has let go).
    leave: Option<(u64, bool)>,
}

impl DlmLayer {
    /// A workload for `node` (its boot `incarnation`), drawing its choices from `seed`.
    pub fn new(
        node: NodeId,
        incarnation: u32,
        seed: u64,
        work: LockWork,
        sabotage: Option<Sabotage>,
    ) -> Option<DlmLayer> {
        let domain = DomainName::new(DOMAIN).ok()?;
        let names: Vec<LockName> = (0..work.names.max(1))
            .filter_map(|i| LockName::new(format!("simlock{i}").as_bytes()).ok())
            .collect();
        let first = *names.first()?;
        Some(DlmLayer {
            node,
            leave: None,
            domain,
            clients: (0..work.clients)
                .map(|_| Client {
                    state: ClientState::Idle,
                    name: first,
                    cancel_sent: false,
                })
                .collect(),
            mastered: vec![None; names.len()],
            names,
            work,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xd1a0_5eed),
            joined: false,
            next_value: 1,
            next_bypass: 1,
            incarnation,
            sabotage,
        })
    }

    pub fn domain(&self) -> &DomainName {
        &self.domain
    }

    /// Something the node reported: its coming online (the users mount, a little later
    /// on each node), and what the DLM did with the clients' requests.
    pub fn on_event(&mut self, now: u64, ev: &Event, out: &mut Vec<DlmAct>) {
        match ev {
            // Nodes mount at different moments: joins that collide back off, but a tie of
            // perfectly simultaneous machines would repeat forever.
            Event::Online => {
                let at = now + u64::from(self.node) * 40 + self.rng.gen_range(0..20);
                out.push(DlmAct::Timer {
                    timer: DlmTimer::Join,
                    at_ms: at,
                });
            }
            Event::Joined { domain } if *domain == self.domain => self.joined_now(now, out),
            Event::JoinFailed { domain, errno } if *domain == self.domain => {
                out.push(DlmAct::Note(DlmNote::JoinFailed(*errno)));
                out.push(DlmAct::Timer {
                    timer: DlmTimer::Join,
                    at_ms: now + 1000,
                });
            }
            Event::Left { domain, .. } if *domain == self.domain => {
                self.joined = false;
                out.push(DlmAct::Note(DlmNote::Left));
                let at = self.leave.map_or(now, |(at, _)| at.max(now));
                out.push(DlmAct::Timer {
                    timer: DlmTimer::Join,
                    at_ms: at,
                });
            }
            Event::LockDone {
                domain,
                cookie,
                result,
            } if *domain == self.domain => self.done(now, *cookie, *result, out),
            Event::Bast {
                domain,
                cookie,
                blocked,
            } if *domain == self.domain => self.bast(now, *cookie, *blocked, out),
            Event::Unlocked {
                domain,
                cookie,
                status,
                removed,
                cancel,
                // A cancel that came too late leaves the lock to its grant.
            } if *domain == self.domain && (!*cancel || *removed) => {
                self.unlocked(now, *cookie, *status, out)
            }
            _ => {}
        }
    }

    fn joined_now(&mut self, now: u64, out: &mut Vec<DlmAct>) {
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

    fn bast(&mut self, now: u64, cookie: u64, blocked: LockMode, out: &mut Vec<DlmAct>) {
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

    fn unlocked(&mut self, now: u64, cookie: u64, status: DlmStatus, out: &mut Vec<DlmAct>) {
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

    /// Notes the idle resources this node mastered and freed since the last look.
    pub fn see_purges(&mut self, stack: &NodeStack, out: &mut Vec<DlmAct>) {
        let core = stack.domain(&self.domain);
        for (name, was) in self.names.iter().zip(self.mastered.iter_mut()) {
            let owner = core.and_then(|c| c.owner_of(name));
            let now = core.and_then(|c| c.incarnation_of(name));
            // A resource that moved to another master (migration) was not freed: it is the
            // same incarnation with another owner.
            if was.is_some() && (owner.is_none() || now != *was) {
                out.push(DlmAct::Note(DlmNote::Purged { name: *name }));
            }
            *was = now.filter(|_| owner == Some(self.node));
        }
    }

    /// The lock users unmount: every client lets go (cancels its request, unlocks what it
    /// holds), then the node leaves the domain (`dlm_unregister_domain`, which migrates
    /// what others use), and `rejoin_ms` later joins again.
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

    /// Tells the node to leave once no client holds or waits for anything.
    fn leave_when_idle(&mut self, now: u64, stack: &mut NodeStack) {
        let idle = self.clients.iter().all(|c| c.state == ClientState::Idle);
        if let Some((at, false)) = self.leave {
            if idle {
                self.leave = Some((at, true));
                // Refused only if the node is going away, which ends the leave too.
                let _ = stack.leave(now, self.domain);
            }
        }
    }

    pub fn timer(
        &mut self,
        now: u64,
        timer: DlmTimer,
        stack: &mut NodeStack,
        out: &mut Vec<DlmAct>,
    ) {
        match timer {
            DlmTimer::Join => {
                if !self.joined {
                    if let Err(e) = stack.join(now, self.domain, true) {
                        if !matches!(e, o2node::NodeError::AlreadyJoined { .. }) {
                            out.push(DlmAct::Note(DlmNote::JoinFailed(e.errno())));
                        }
                    }
                }
            }
            DlmTimer::Client(c) => self.client_step(now, c, stack, out),
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

    fn set_state(&mut self, c: usize, state: ClientState) {
        if let Some(cl) = self.clients.get_mut(c) {
            cl.state = state;
        }
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
        self.set_state(c, next);
        let at = now + self.think() / 4;
        out.push(DlmAct::Timer {
            timer: DlmTimer::Client(c),
            at_ms: at,
        });
    }

    fn sabotaged(&self, s: Sabotage) -> bool {
        self.node == 0 && self.sabotage == Some(s)
    }

    fn client_step(&mut self, now: u64, c: usize, stack: &mut NodeStack, out: &mut Vec<DlmAct>) {
        let Some(cl) = self.clients.get(c) else {
            return;
        };
        let (state, cancel_sent) = (cl.state, cl.cancel_sent);
        match state {
            ClientState::Idle if self.leave.is_some() => self.leave_when_idle(now, stack),
            ClientState::Idle if self.joined => self.start_request(now, c, stack, out),
            ClientState::Idle => {}
            ClientState::Requesting { cookie } => {
                if !cancel_sent {
                    if let Some(cl) = self.clients.get_mut(c) {
                        cl.cancel_sent = true;
                    }
                    let _ = stack.unlock(now, self.domain, cookie, LkmFlags::CANCEL, [0; LVB_LEN]);
                }
            }
            ClientState::Holding {
                cookie,
                mode,
                valblk,
                bypass,
            } => self.holder_step(now, c, cookie, mode, valblk, bypass, stack, out),
            ClientState::Converting { .. } | ClientState::Unlocking { .. } => {}
        }
    }

    /// A holder lets go: down-converts, tries an up-conversion, or unlocks (always when its
    /// users unmount), writing a fresh value block back from EX most of the time.
    #[allow(clippy::too_many_arguments)]
    fn holder_step(
        &mut self,
        now: u64,
        c: usize,
        cookie: u64,
        mode: LockMode,
        valblk: bool,
        bypass: bool,
        stack: &mut NodeStack,
        out: &mut Vec<DlmAct>,
    ) {
        let Some(name) = self.clients.get(c).map(|cl| cl.name) else {
            return;
        };
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
            self.set_state(c, ClientState::Idle);
            let at = now + self.think();
            out.push(DlmAct::Timer {
                timer: DlmTimer::Client(c),
                at_ms: at,
            });
            return;
        }
        let roll = if self.leave.is_some() {
            100
        } else {
            self.rng.gen_range(0..100)
        };
        let domain = self.domain;
        if roll < 25 && mode != LockMode::Nl {
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
            self.set_state(c, ClientState::Converting { cookie, from: to });
            let flags = if lvb.is_some() || mode != LockMode::Ex {
                LkmFlags::VALBLK
            } else {
                LkmFlags::empty()
            };
            let lvb = lvb.unwrap_or([0; LVB_LEN]);
            if let Err(e) = stack.convert(now, domain, cookie, to, flags, lvb) {
                self.refused(c, cookie, name, &e, out);
            }
        } else if roll < 35 && mode != LockMode::Ex {
            out.push(DlmAct::Note(DlmNote::Requested {
                cookie,
                name,
                mode: LockMode::Ex,
                convert: true,
            }));
            self.set_state(c, ClientState::Converting { cookie, from: mode });
            let flags = LkmFlags::VALBLK | LkmFlags::NOQUEUE;
            if let Err(e) = stack.convert(now, domain, cookie, LockMode::Ex, flags, [0; LVB_LEN]) {
                self.refused(c, cookie, name, &e, out);
            }
        } else {
            let lvb = self.write_value(cookie, name, mode, valblk);
            out.push(DlmAct::Note(DlmNote::Released {
                cookie,
                name,
                now_mode: None,
                wrote: lvb,
            }));
            self.set_state(c, ClientState::Unlocking { cookie });
            let flags = if lvb.is_some() && !self.sabotaged(Sabotage::DlmLoseLvb) {
                LkmFlags::VALBLK
            } else {
                LkmFlags::empty()
            };
            let lvb = lvb.unwrap_or([0; LVB_LEN]);
            if let Err(e) = stack.unlock(now, domain, cookie, flags, lvb) {
                self.refused(c, cookie, name, &e, out);
            }
        }
    }

    /// The node refused a request at once (it is going away): the client stops there.
    fn refused(
        &mut self,
        c: usize,
        cookie: u64,
        name: LockName,
        e: &o2node::NodeError,
        out: &mut Vec<DlmAct>,
    ) {
        let _ = e;
        out.push(DlmAct::Note(DlmNote::Failed {
            cookie,
            name,
            status: DlmStatus::Rejected,
        }));
        self.set_state(c, ClientState::Idle);
    }

    fn start_request(&mut self, now: u64, c: usize, stack: &mut NodeStack, out: &mut Vec<DlmAct>) {
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
        if let Some(cl) = self.clients.get_mut(c) {
            cl.name = name;
            cl.cancel_sent = false;
        }
        if self.sabotaged(Sabotage::DlmBypass) {
            let cookie = (u64::from(self.node) << 56) | BYPASS_COOKIE_BASE | self.next_bypass;
            self.next_bypass += 1;
            out.push(DlmAct::Note(DlmNote::Requested {
                cookie,
                name,
                mode,
                convert: false,
            }));
            out.push(DlmAct::Note(DlmNote::Granted {
                cookie,
                name,
                mode,
                lvb: None,
            }));
            self.set_state(
                c,
                ClientState::Holding {
                    cookie,
                    mode,
                    valblk: false,
                    bypass: true,
                },
            );
            let at = now + self.think();
            out.push(DlmAct::Timer {
                timer: DlmTimer::Client(c),
                at_ms: at,
            });
            return;
        }
        // Some requests are given up on (cancelled) if they wait.
        let cancel_at = (self.rng.gen_range(0..100) < 10).then(|| now + self.rng.gen_range(1..20));
        match stack.lock(now, self.domain, name, mode, flags) {
            Ok(cookie) => {
                out.push(DlmAct::Note(DlmNote::Requested {
                    cookie,
                    name,
                    mode,
                    convert: false,
                }));
                self.set_state(c, ClientState::Requesting { cookie });
                if let Some(at) = cancel_at {
                    out.push(DlmAct::Timer {
                        timer: DlmTimer::Client(c),
                        at_ms: at,
                    });
                }
            }
            Err(_) => self.set_state(c, ClientState::Idle),
        }
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
