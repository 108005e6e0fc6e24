//! A simulated machine running one O2CB node: the real [`NodeStack`] (o2hb, o2net and
//! o2dlm composed as the daemon runs them) and, with the lock workload, the node's lock
//! users ([`DlmLayer`]), adapted to the simulator's [`Stack`] boundary.
//!
//! The adapter only translates: simulator inputs become stack inputs (connection ids are
//! mapped both ways, a connect that fails before it completes becomes `ConnectFailed`), the
//! stack's outputs become effects, its events become the notes the trace shows and the
//! checkers judge. The stack's one deadline is one simulator timer, named after what is due.
//! The ping workload's requests are application messages through the stack's o2net.

use crate::config::Workload;
use crate::disk::RegionSpec;
use crate::dlm_node::{DlmAct, DlmLayer, DlmTimer, LockWork};
use crate::stack::{
    ConnId, Effect, FenceReason, Input, NodeId, NodeSetup, Note, RegionId, Stack, TimerKey,
};
use crate::time::SimTime;
use bytes::Bytes;
use o2net::{Magic, MsgHeader, NetConfig, NodeInfo};
use o2node::{Event, Layer, NodeConfig, NodeStack, Output};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};

/// o2net message type of the workload's requests: clear of o2hb's (1, 2) and the DLM's (500-522).
pub const PING_MSG_TYPE: u16 = 0x0f00;
/// Handler key of the workload's requests ("SIMP").
pub const PING_KEY: u32 = 0x5349_4d50;
/// The simulated wall clock starts on 2026-01-01 (heartbeat seq is wall-clock seconds).
const WALL_EPOCH_MS: u64 = 1_767_225_600_000;

const T_DLM_JOIN: &str = "dlm.join";
const T_DLM_CLIENT: &str = "dlm.client";

/// The address a node listens on in the simulated network (no packet ever leaves the process).
pub fn node_addr(node: NodeId) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, node), 7777)
}

/// One simulated machine. See the module documentation.
pub struct O2Stack {
    node: NodeId,
    incarnation: u32,
    generation: u64,
    verbose: bool,
    specs: Vec<RegionSpec>,
    /// None if the stack refused the simulated cluster's configuration (the checkers then
    /// see a node that never comes up).
    stack: Option<NodeStack>,
    work: Option<DlmLayer>,
    /// Stack connection id ↔ simulator connection id.
    to_sim: BTreeMap<o2net::ConnId, ConnId>,
    to_core: BTreeMap<ConnId, o2net::ConnId>,
    /// Outgoing connections whose TCP handshake has not completed.
    connecting: BTreeSet<o2net::ConnId>,
    opened: u32,
    /// The simulator timer standing for the stack's deadline.
    armed: Option<(TimerKey, u64)>,
    workload_peers: BTreeMap<u64, NodeId>,
    /// A broken invariant was reported (once per node is enough: the run is judged failed).
    invariant_broken: bool,
}

impl O2Stack {
    pub fn new(setup: &NodeSetup, specs: &[RegionSpec]) -> Self {
        let stack = node_config(setup, specs).and_then(|cfg| {
            let mut stack = NodeStack::new(cfg).ok()?;
            stack
                .register_app_handler(PING_MSG_TYPE, PING_KEY, 8)
                .ok()?;
            Some(stack)
        });
        let work = match setup.workload {
            Workload::Locks {
                clients,
                names,
                think,
            } => DlmLayer::new(
                setup.node,
                setup.incarnation,
                setup.generation,
                LockWork {
                    clients,
                    names,
                    think_ms: u64::try_from(think.as_millis()).unwrap_or(u64::MAX),
                },
                setup.sabotage,
            ),
            _ => None,
        };
        O2Stack {
            node: setup.node,
            incarnation: setup.incarnation,
            generation: setup.generation,
            verbose: setup.verbose,
            specs: specs.to_vec(),
            stack,
            work,
            to_sim: BTreeMap::new(),
            to_core: BTreeMap::new(),
            connecting: BTreeSet::new(),
            opened: 0,
            armed: None,
            workload_peers: BTreeMap::new(),
            invariant_broken: false,
        }
    }
}

/// The node as the simulated cluster configures it: nodes `0..nodes` on 127.0.0.N, one
/// region for local heartbeat or several for global, the lock workload's short DLM timings.
fn node_config(setup: &NodeSetup, specs: &[RegionSpec]) -> Option<NodeConfig> {
    let t = setup.timing;
    let ms = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    let infos = (0..setup.nodes)
        .filter_map(|n| NodeId::try_from(n).ok())
        .map(|n| NodeInfo {
            num: n,
            name: format!("node{n}"),
            addr: node_addr(n),
        })
        .collect();
    let mut net =
        NetConfig::new(setup.node, infos).with_heartbeat(ms(t.hb_period), t.dead_threshold);
    net.idle_timeout_ms = ms(t.idle_timeout);
    net.keepalive_delay_ms = ms(t.keepalive_delay);
    net.reconnect_delay_ms = ms(t.reconnect_delay);
    let timing = o2hb::Timing::new(u64::from(ms(t.hb_period)), t.dead_threshold).ok()?;
    // One region is the kernel's local mode; several are global heartbeat.
    let mode = if specs.len() > 1 {
        o2hb::Mode::Global
    } else {
        o2hb::Mode::Local
    };
    let mut cfg = NodeConfig::new(net, mode, timing);
    if mode == o2hb::Mode::Global {
        cfg.regions = specs.iter().map(|s| s.name.clone()).collect();
    }
    // Short enough that purges and mastery retries happen within a run.
    cfg.dlm.purge_interval_ms = 500;
    cfg.dlm.mastery_timeout_ms = 1000;
    cfg.wall_epoch_ms = WALL_EPOCH_MS;
    cfg.log_messages = setup.verbose;
    Some(cfg)
}

impl Stack for O2Stack {
    fn handle(&mut self, now: SimTime, input: Input, out: &mut Vec<Effect>) {
        let ms = now.as_millis();
        let mut acts = Vec::new();
        match input {
            Input::Boot => self.boot(ms, out),
            Input::Timer(key) => match key.name {
                T_DLM_JOIN | T_DLM_CLIENT => {
                    let timer = if key.name == T_DLM_JOIN {
                        DlmTimer::Join
                    } else {
                        DlmTimer::Client(usize::try_from(key.index).unwrap_or(usize::MAX))
                    };
                    if let (Some(w), Some(s)) = (self.work.as_mut(), self.stack.as_mut()) {
                        w.timer(ms, timer, s, &mut acts);
                    }
                }
                _ => {
                    self.armed = None;
                    self.feed(ms, o2node::Input::Tick);
                }
            },
            Input::DiskReadDone { region, result, .. } => {
                let result = match &result {
                    Ok(bytes) => Ok(bytes.as_slice()),
                    Err(errno) => Err(format!("errno {errno}")),
                };
                let region = usize::from(region);
                self.feed(ms, o2node::Input::ReadDone { region, result });
            }
            Input::DiskWriteDone { region, result, .. } => {
                let result = result.map_err(|errno| format!("errno {errno}"));
                let region = usize::from(region);
                self.feed(ms, o2node::Input::WriteDone { region, result });
            }
            Input::Connected { conn, .. } => {
                if let Some(&c) = self.to_core.get(&conn) {
                    self.connecting.remove(&c);
                    self.feed(ms, o2node::Input::ConnectDone { conn: c });
                }
            }
            Input::Accepted { conn, from } => {
                if let Some(stack) = self.stack.as_mut() {
                    let c = stack.new_conn_id();
                    self.to_sim.insert(c, conn);
                    self.to_core.insert(conn, c);
                    let from = node_addr(from);
                    self.feed(ms, o2node::Input::Accepted { conn: c, from });
                }
            }
            Input::Received { conn, data } => {
                if let Some(&c) = self.to_core.get(&conn) {
                    self.feed(
                        ms,
                        o2node::Input::Received {
                            conn: c,
                            data: &data,
                        },
                    );
                }
            }
            Input::Closed { conn, errno } => {
                if let Some(c) = self.to_core.remove(&conn) {
                    self.to_sim.remove(&c);
                    let input = if self.connecting.remove(&c) {
                        o2node::Input::ConnectFailed { conn: c, errno }
                    } else {
                        o2node::Input::Closed { conn: c }
                    };
                    self.feed(ms, input);
                }
            }
            Input::LeaveDomain { rejoin_after } => {
                let rejoin_ms = u64::try_from(rejoin_after.as_millis()).unwrap_or(u64::MAX);
                if let Some(w) = self.work.as_mut() {
                    w.leave(ms, rejoin_ms, &mut acts);
                }
            }
            Input::SendRequest { id, peer } => {
                self.workload_peers.insert(id, peer);
                if let Some(stack) = self.stack.as_mut() {
                    let payload = Bytes::copy_from_slice(&id.to_be_bytes());
                    if let Err(e) = stack.send_app(ms, id, peer, PING_MSG_TYPE, PING_KEY, payload) {
                        self.workload_peers.remove(&id);
                        out.push(Effect::Note(Note::SendDone {
                            id,
                            peer,
                            status: e.errno(),
                        }));
                    }
                }
            }
        }
        self.acts(ms, acts, out);
        self.drain(ms, out);
    }
}

impl O2Stack {
    /// The machine booted: heartbeat starts on every region.
    fn boot(&mut self, ms: u64, out: &mut Vec<Effect>) {
        let Some(stack) = self.stack.as_mut() else {
            if self.verbose {
                out.push(Effect::Note(Note::Text(
                    "o2cb: the node stack refused the simulated cluster's configuration".into(),
                )));
            }
            return;
        };
        for (r, spec) in self.specs.iter().enumerate() {
            let Ok(geometry) = o2hb::Geometry::new(
                u64::from(spec.block_bytes),
                spec.start_block,
                u64::from(spec.blocks),
            ) else {
                continue;
            };
            let region = o2hb::RegionConfig {
                name: spec.name.clone(),
                device: format!("simdisk{r}"),
                geometry,
            };
            // The kernel draws a generation per region; derive one per region from the boot's.
            let generation = region_generation(self.generation, r);
            // Regions take the lowest free number: the simulator's region number.
            if stack.start_region(ms, region, generation).ok() != Some(r) && self.verbose {
                out.push(Effect::Note(Note::Text(format!(
                    "o2cb: region {r} did not start as region {r}"
                ))));
            }
        }
    }

    fn feed(&mut self, ms: u64, input: o2node::Input<'_>) {
        if let Some(stack) = self.stack.as_mut() {
            stack.handle(ms, input);
        }
    }

    /// Carries out the stack's outputs (handing its events to the workload, whose requests
    /// may produce more), then re-arms the stack's timer.
    fn drain(&mut self, ms: u64, out: &mut Vec<Effect>) {
        loop {
            let Some(o) = self.stack.as_mut().and_then(NodeStack::poll_output) else {
                break;
            };
            let mut acts = Vec::new();
            // Purges first: a resource freed and made again in this step must be seen freed
            // before a grant on its new incarnation.
            if let (Some(w), Some(s)) = (self.work.as_mut(), self.stack.as_ref()) {
                w.see_purges(s, &mut acts);
            }
            self.output(ms, o, out, &mut acts);
            self.acts(ms, acts, out);
        }
        if let (Some(w), Some(s)) = (self.work.as_mut(), self.stack.as_ref()) {
            let mut acts = Vec::new();
            w.see_purges(s, &mut acts);
            self.acts(ms, acts, out);
        }
        self.check_invariants(out);
        self.arm(out);
    }

    /// After every step: the rules each domain's state keeps (the invariants checker turns
    /// a broken one into a violation at this very step).
    fn check_invariants(&mut self, out: &mut Vec<Effect>) {
        let Some(stack) = self.stack.as_ref().filter(|_| !self.invariant_broken) else {
            return;
        };
        for name in stack.domains() {
            if let Some(broken) = stack.domain(&name).and_then(|d| d.broken_invariant()) {
                self.invariant_broken = true;
                out.push(Effect::Note(Note::Invariant(format!(
                    "domain {name}: {broken}"
                ))));
                return;
            }
        }
    }

    fn arm(&mut self, out: &mut Vec<Effect>) {
        let next = self
            .stack
            .as_ref()
            .and_then(|s| s.poll_timeout().map(|at| (s.timeout_label(), at)));
        let want = next.map(|(name, at)| (TimerKey { name, index: 0 }, at));
        if want == self.armed {
            return;
        }
        if let Some((key, _)) = self.armed.take() {
            if want.is_none_or(|(k, _)| k != key) {
                out.push(Effect::CancelTimer { key });
            }
        }
        if let Some((key, at)) = want {
            out.push(Effect::SetTimer {
                key,
                at: SimTime::from_millis(at),
            });
        }
        self.armed = want;
    }

    fn acts(&mut self, _ms: u64, acts: Vec<DlmAct>, out: &mut Vec<Effect>) {
        for act in acts {
            match act {
                DlmAct::Timer { timer, at_ms } => {
                    let key = match timer {
                        DlmTimer::Join => TimerKey {
                            name: T_DLM_JOIN,
                            index: 0,
                        },
                        DlmTimer::Client(c) => TimerKey {
                            name: T_DLM_CLIENT,
                            index: u32::try_from(c).unwrap_or(u32::MAX),
                        },
                    };
                    out.push(Effect::SetTimer {
                        key,
                        at: SimTime::from_millis(at_ms),
                    });
                }
                DlmAct::Note(n) => out.push(Effect::Note(Note::Dlm(n))),
            }
        }
    }

    fn output(&mut self, ms: u64, o: Output, out: &mut Vec<Effect>, acts: &mut Vec<DlmAct>) {
        let sim = |r: o2node::RegionId| RegionId::try_from(r).unwrap_or(RegionId::MAX);
        match o {
            Output::Read {
                region,
                offset,
                len,
            } => out.push(Effect::DiskRead {
                region: sim(region),
                offset,
                len,
                tag: 0,
            }),
            Output::Write {
                region,
                offset,
                data,
            } => out.push(Effect::DiskWrite {
                region: sim(region),
                offset,
                data,
                tag: 0,
            }),
            Output::Connect { conn, node, .. } => {
                let id = ConnId::opened_by(self.node, self.incarnation, self.opened);
                self.opened = self.opened.wrapping_add(1);
                self.to_sim.insert(conn, id);
                self.to_core.insert(id, conn);
                self.connecting.insert(conn);
                out.push(Effect::Connect {
                    conn: id,
                    peer: node,
                });
            }
            Output::Transmit { conn, data } => {
                if let Some(&id) = self.to_sim.get(&conn) {
                    let what = if self.verbose {
                        describe(&data)
                    } else {
                        String::new()
                    };
                    out.push(Effect::Send {
                        conn: id,
                        data: data.to_vec(),
                        what,
                    });
                }
            }
            Output::Close { conn } => {
                self.connecting.remove(&conn);
                if let Some(id) = self.to_sim.remove(&conn) {
                    self.to_core.remove(&id);
                    out.push(Effect::Close { conn: id });
                }
            }
            Output::Event(e) => {
                if let Some(note) = self.note_of(&e) {
                    out.push(Effect::Note(note));
                }
                if let Some(w) = self.work.as_mut() {
                    w.on_event(ms, &e, acts);
                }
            }
            Output::Log(l) => {
                if self.verbose {
                    let prefix = match l.layer {
                        Layer::Hb => "o2hb: ",
                        Layer::Node => "o2node: ",
                        Layer::Net | Layer::Dlm => "",
                    };
                    out.push(Effect::Note(Note::Text(format!("{prefix}{}", l.message))));
                }
            }
            Output::Fence(reason) => out.push(Effect::Fence(match reason {
                o2node::FenceReason::WriteTimeout => FenceReason::WriteTimeout,
                o2node::FenceReason::Quorum(_) => FenceReason::Quorum,
                o2node::FenceReason::Dlm(_) => FenceReason::Dlm,
            })),
        }
    }

    /// The note the trace and the checkers get for a stack event.
    fn note_of(&mut self, e: &Event) -> Option<Note> {
        let sim = |r: o2node::RegionId| RegionId::try_from(r).unwrap_or(RegionId::MAX);
        Some(match *e {
            Event::NodeUp {
                node,
                generation,
                region,
            } => Note::HbUp {
                region: sim(region),
                node,
                generation,
            },
            Event::NodeDown { node, region, .. } => Note::HbDown {
                region: sim(region),
                node,
            },
            Event::RegionSteady { region } => Note::HbSteady {
                region: sim(region),
            },
            Event::RegionFailed { region } => Note::HbStartFailed {
                region: sim(region),
            },
            Event::NetUp { peer } => Note::NetUp { peer },
            Event::NetDown { peer } => Note::NetDown { peer },
            Event::AppDone { id, result } => {
                let peer = self.workload_peers.remove(&id).unwrap_or(NodeId::MAX);
                let status = result.unwrap_or_else(|e| e);
                Note::SendDone { id, peer, status }
            }
            Event::RegionStopped { region, clean } if self.verbose => {
                Note::Text(format!("o2hb: region {region} stopped (clean: {clean})"))
            }
            _ => return None,
        })
    }
}

/// A non-zero generation for `region`, distinct per region, fixed by the boot's generation.
fn region_generation(boot: u64, region: usize) -> u64 {
    let mixed = boot ^ (region as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    if mixed == 0 {
        boot.max(1)
    } else {
        mixed
    }
}

/// A one-line description of the o2net bytes of one write, for the readable trace.
fn describe(data: &[u8]) -> String {
    if data.len() == o2net::wire::HANDSHAKE_LEN {
        if let Some(h) = o2net::Handshake::decode(data) {
            if h.protocol_version == o2net::wire::PROTOCOL_VERSION {
                return format!(
                    "handshake v{} (hb timeout {} ms, idle {} ms, keepalive {} ms)",
                    h.protocol_version,
                    h.heartbeat_timeout_ms,
                    h.idle_timeout_ms,
                    h.keepalive_delay_ms
                );
            }
        }
    }
    let Some(h) = MsgHeader::decode(data) else {
        return String::new();
    };
    match Magic::from_u16(h.magic) {
        Some(Magic::KeepReq) => "KEEP_REQ".to_string(),
        Some(Magic::KeepResp) => "KEEP_RESP".to_string(),
        Some(Magic::Request) => {
            format!(
                "request type {} key {:#010x} msg {} ({} B payload)",
                h.msg_type, h.key, h.msg_num, h.data_len
            )
        }
        Some(Magic::Status) => format!(
            "status reply type {} msg {}: sys {} status {}",
            h.msg_type, h.msg_num, h.sys_status, h.status
        ),
        None => format!("unknown magic {:#06x}", h.magic),
    }
}
