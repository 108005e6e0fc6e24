//! The real protocol stack of a simulated node: the o2hb heartbeat core and
//! the o2net core, wired to each other as the kernel wires them and to the
//! simulator through [`Stack`].
//!
//! Heartbeat NODE_UP/NODE_DOWN go to o2net (connect, quorum, fail sends) in
//! the order o2hb reports them; o2hb's timeout-negotiation messages travel
//! through o2net; either core's fence becomes the node's fence. A workload
//! request is an o2net message to a handler every node registers, so sends
//! exercise the same request/reply path the DLM will use.

use crate::config::Workload;
use crate::disk::RegionSpec;
use crate::dlm_node::{DlmAct, DlmLayer, DlmTimer, LockWork};
use crate::stack::{
    ConnId, Effect, FenceReason, Input, NodeId, NodeSetup, Note, RegionId, Stack, TimerKey,
};
use crate::time::SimTime;
use bytes::Bytes;
use o2hb::{HeartbeatSet, NegoKind, TimerKind};
use o2net::{Magic, MsgHeader, NetConfig, NetCore, NodeInfo, NodeSet};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};

/// o2net message type of the workload's requests: clear of o2hb's (1, 2) and the DLM's (500-522).
pub const PING_MSG_TYPE: u16 = 0x0f00;
/// Handler key of the workload's requests ("SIMP").
pub const PING_KEY: u32 = 0x5349_4d50;
/// Send ids at or above this are the stack's own (negotiation), not the workload's.
const NEGO_SEND_BASE: u64 = 1 << 63;
/// Send ids from here up to [`NEGO_SEND_BASE`] are the DLM's (token + base).
const DLM_SEND_BASE: u64 = 1 << 62;
/// The simulated wall clock starts on 2026-01-01 (heartbeat seq is wall-clock seconds).
const WALL_EPOCH_MS: u64 = 1_767_225_600_000;

const T_ITERATION: &str = "hb.iteration";
const T_WRITE_TIMEOUT: &str = "hb.write_timeout";
const T_NEGO: &str = "hb.nego_timeout";
const T_NET: &str = "net.timers";
const T_DLM_CORE: &str = "dlm.core";
const T_DLM_JOIN: &str = "dlm.join";
const T_DLM_CLIENT: &str = "dlm.client";

/// What a delivered request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handler {
    /// o2hb timeout negotiation of one region.
    Nego(NegoKind, o2hb::RegionId),
    Ping,
    /// A DLM message of this o2net type.
    Dlm(u16),
}

/// The address a node listens on in the simulated network (no packet ever leaves the process).
pub fn node_addr(node: NodeId) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, node), 7777)
}

/// o2hb + o2net of one node. See the module documentation.
pub struct O2Stack {
    node: NodeId,
    incarnation: u32,
    generation: u64,
    verbose: bool,
    /// Geometry of each region, indexed by the simulator's region number,
    /// which is also the o2hb region number (regions are added in order).
    geometry: Vec<o2hb::Geometry>,
    hb: Option<HeartbeatSet>,
    net: Option<NetCore<Handler>>,
    /// o2net key of each region's negotiation messages.
    nego_keys: Vec<u32>,
    /// Core connection id ↔ simulator connection id.
    to_sim: BTreeMap<o2net::ConnId, ConnId>,
    to_core: BTreeMap<ConnId, o2net::ConnId>,
    /// Outgoing connections whose TCP handshake has not completed.
    connecting: BTreeSet<o2net::ConnId>,
    opened: u32,
    net_timer: Option<u64>,
    quorum_connected: NodeSet,
    workload_peers: BTreeMap<u64, NodeId>,
    next_nego_send: u64,
    /// The node's o2dlm, when the workload takes locks.
    dlm: Option<DlmLayer>,
}

impl O2Stack {
    /// Builds the cores; a core that refuses the configuration is reported in
    /// the trace and leaves the node without that layer (the checkers then see
    /// a node that never comes up).
    pub fn new(setup: &NodeSetup, specs: &[RegionSpec]) -> Self {
        let t = setup.timing;
        let period_ms = u64::try_from(t.hb_period.as_millis()).unwrap_or(u64::MAX);
        let mut configured = o2hb::NodeMap::new();
        let mut infos = Vec::new();
        for n in 0..setup.nodes {
            let Ok(n) = NodeId::try_from(n) else { continue };
            configured.insert(n);
            infos.push(NodeInfo {
                num: n,
                name: format!("node{n}"),
                addr: node_addr(n),
            });
        }
        let geometry: Vec<o2hb::Geometry> = specs
            .iter()
            .filter_map(|s| {
                o2hb::Geometry::new(u64::from(s.block_bytes), s.start_block, u64::from(s.blocks))
                    .ok()
            })
            .collect();
        // One region is the kernel's local mode; several are global heartbeat.
        let mode = if specs.len() > 1 {
            o2hb::Mode::Global
        } else {
            o2hb::Mode::Local
        };
        let hb = o2hb::Timing::new(period_ms, t.dead_threshold)
            .ok()
            .and_then(|timing| {
                let cfg = o2hb::SetConfig {
                    node: setup.node,
                    mode,
                    timing,
                    configured,
                };
                let mut set = HeartbeatSet::new(cfg).ok()?;
                for (r, (spec, g)) in specs.iter().zip(&geometry).enumerate() {
                    let region = o2hb::RegionConfig {
                        name: spec.name.clone(),
                        device: format!("simdisk{r}"),
                        geometry: *g,
                    };
                    // Regions take the lowest free number: the simulator's region number.
                    if set.add_region(region).ok()? != r {
                        return None;
                    }
                }
                Some(set)
            });
        let ms = |d: std::time::Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        let mut net_cfg =
            NetConfig::new(setup.node, infos).with_heartbeat(ms(t.hb_period), t.dead_threshold);
        net_cfg.idle_timeout_ms = ms(t.idle_timeout);
        net_cfg.keepalive_delay_ms = ms(t.keepalive_delay);
        net_cfg.reconnect_delay_ms = ms(t.reconnect_delay);
        let nego_keys: Vec<u32> = specs
            .iter()
            .enumerate()
            .map(|(r, s)| o2hb::core::nego_key(r, &s.name))
            .collect();
        let net = NetCore::new(net_cfg).ok().and_then(|mut core| {
            for (r, key) in nego_keys.iter().enumerate() {
                for kind in [NegoKind::Timeout, NegoKind::Approve] {
                    core.register_handler(kind as u16, *key, 1, Handler::Nego(kind, r))
                        .ok()?;
                }
            }
            core.register_handler(PING_MSG_TYPE, PING_KEY, 8, Handler::Ping)
                .ok()?;
            Some(core)
        });
        let dlm = match setup.workload {
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
                    join_after_ms: u64::try_from(crate::faults::warmup(&t).as_millis())
                        .unwrap_or(u64::MAX),
                },
                setup.sabotage,
            ),
            _ => None,
        };
        let mut net = net;
        if let (Some(core), Some(layer)) = (net.as_mut(), dlm.as_ref()) {
            let domain_key = layer.domain().key();
            for t in o2dlm::wire::MsgType::ALL {
                let key = match t.key_kind() {
                    o2dlm::wire::KeyKind::Module => o2dlm::wire::DLM_MOD_KEY,
                    o2dlm::wire::KeyKind::Domain => domain_key,
                    o2dlm::wire::KeyKind::Unused => continue,
                };
                let max = u32::try_from(t.max_len()).unwrap_or(u32::MAX);
                // A refused registration leaves that message type unhandled: peers see
                // errors and the checkers report what follows.
                let _ = core.register_handler(t.to_wire(), key, max, Handler::Dlm(t.to_wire()));
            }
        }
        O2Stack {
            node: setup.node,
            incarnation: setup.incarnation,
            generation: setup.generation,
            verbose: setup.verbose,
            geometry,
            hb,
            net,
            nego_keys,
            to_sim: BTreeMap::new(),
            to_core: BTreeMap::new(),
            connecting: BTreeSet::new(),
            opened: 0,
            net_timer: None,
            quorum_connected: NodeSet::new(),
            workload_peers: BTreeMap::new(),
            next_nego_send: NEGO_SEND_BASE,
            dlm,
        }
    }

    fn text(&self, out: &mut Vec<Effect>, f: impl FnOnce() -> String) {
        if self.verbose {
            out.push(Effect::Note(Note::Text(f())));
        }
    }

    fn hb_now(now: SimTime) -> o2hb::Now {
        let ms = now.as_millis();
        o2hb::Now {
            mono_ms: ms,
            wall_ms: WALL_EPOCH_MS + ms,
        }
    }

    fn drive_hb(&mut self, now: SimTime, input: o2hb::Input<'_>, out: &mut Vec<Effect>) {
        let Some(hb) = self.hb.as_mut() else { return };
        let outputs = hb.handle(Self::hb_now(now), input);
        for o in outputs {
            self.hb_output(now, o, out);
        }
    }

    fn hb_output(&mut self, now: SimTime, o: o2hb::Output, out: &mut Vec<Effect>) {
        use o2hb::Output as H;
        // The simulator's region number is o2hb's (see `new`).
        let sim = |r: o2hb::RegionId| RegionId::try_from(r).unwrap_or(RegionId::MAX);
        match o {
            H::Read {
                region,
                first_slot,
                slots,
            } => {
                if let Some(g) = self.geometry.get(region) {
                    out.push(Effect::DiskRead {
                        region: sim(region),
                        offset: g.slot_offset(first_slot),
                        len: usize::from(slots) * g.block_bytes(),
                        tag: 0,
                    });
                }
            }
            H::Write {
                region,
                slot,
                block,
            } => {
                if let Some(g) = self.geometry.get(region) {
                    out.push(Effect::DiskWrite {
                        region: sim(region),
                        offset: g.slot_offset(slot),
                        data: block,
                        tag: 0,
                    });
                }
            }
            H::ArmTimer {
                timer,
                at_ms,
                region,
            } => out.push(Effect::SetTimer {
                key: hb_timer(timer, region),
                at: SimTime::from_millis(at_ms),
            }),
            H::CancelTimer { timer, region } => out.push(Effect::CancelTimer {
                key: hb_timer(timer, region),
            }),
            H::NodeUp {
                region,
                node,
                generation,
            } => {
                out.push(Effect::Note(Note::HbUp {
                    region: sim(region),
                    node,
                    generation,
                }));
                self.drive_net(now, o2net::Input::HeartbeatUp(node), out);
                self.drive_dlm(now, out, |d, now, acts| d.node_up(now, node, acts));
            }
            H::NodeDown { region, node, .. } => {
                out.push(Effect::Note(Note::HbDown {
                    region: sim(region),
                    node,
                }));
                self.drive_net(now, o2net::Input::HeartbeatDown(node), out);
                self.drive_dlm(now, out, |d, now, acts| d.node_down(now, node, acts));
            }
            H::Log(ev) => self.text(out, || format!("o2hb: {}", ev.message)),
            H::SendNego {
                region,
                to,
                kind,
                node_num,
            } => {
                let Some(&key) = self.nego_keys.get(region) else {
                    return;
                };
                let id = self.next_nego_send;
                self.next_nego_send += 1;
                let payload = Bytes::copy_from_slice(&[node_num]);
                let input = o2net::Input::Send {
                    id,
                    node: to,
                    msg_type: kind as u16,
                    key,
                    payload,
                };
                self.drive_net(now, input, out);
            }
            H::Steady { region } => out.push(Effect::Note(Note::HbSteady {
                region: sim(region),
            })),
            H::StartAborted { region } => out.push(Effect::Note(Note::HbStartFailed {
                region: sim(region),
            })),
            H::Stopped { region, clean } => self.text(out, || {
                format!("o2hb: region {region} stopped (clean: {clean})")
            }),
            H::Fence => out.push(Effect::Fence(FenceReason::WriteTimeout)),
        }
    }

    fn drive_net(&mut self, now: SimTime, input: o2net::Input<'_>, out: &mut Vec<Effect>) {
        let Some(net) = self.net.as_mut() else { return };
        net.handle(now.as_millis(), input);
        while let Some(o) = self.net.as_mut().and_then(NetCore::poll_output) {
            self.net_output(now, o, out);
        }
        self.sync_net(out);
    }

    /// Re-arms the core's timer and reports changes in what quorum counts as connected.
    fn sync_net(&mut self, out: &mut Vec<Effect>) {
        let Some(net) = self.net.as_ref() else { return };
        let next = net.next_timeout();
        if next != self.net_timer {
            self.net_timer = next;
            let key = TimerKey {
                name: T_NET,
                index: 0,
            };
            out.push(match next {
                Some(ms) => Effect::SetTimer {
                    key,
                    at: SimTime::from_millis(ms),
                },
                None => Effect::CancelTimer { key },
            });
        }
        let connected = net.quorum().connected();
        if connected != self.quorum_connected {
            for n in connected
                .iter()
                .filter(|n| !self.quorum_connected.contains(*n) && *n != self.node)
            {
                out.push(Effect::Note(Note::NetUp { peer: n }));
            }
            for n in self
                .quorum_connected
                .iter()
                .filter(|n| !connected.contains(*n) && *n != self.node)
            {
                out.push(Effect::Note(Note::NetDown { peer: n }));
            }
            self.quorum_connected = connected;
        }
    }

    fn net_output(&mut self, now: SimTime, o: o2net::Output<Handler>, out: &mut Vec<Effect>) {
        use o2net::Output as N;
        match o {
            N::Connect { conn, node, .. } => {
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
            N::Transmit { conn, data } => {
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
            N::Close { conn } => {
                self.connecting.remove(&conn);
                if let Some(id) = self.to_sim.remove(&conn) {
                    self.to_core.remove(&id);
                    out.push(Effect::Close { conn: id });
                }
            }
            N::Deliver {
                conn,
                node,
                header,
                payload,
                handler,
            } => {
                let mut status = 0;
                if let Handler::Dlm(msg_type) = handler {
                    status = match o2dlm::wire::DlmMessage::decode(msg_type, &payload) {
                        Ok(msg) => {
                            let mut st = 0;
                            self.drive_dlm(now, out, |d, now, acts| {
                                st = d.message(now, node, msg, acts);
                            });
                            st
                        }
                        Err(e) => {
                            self.text(out, || format!("o2dlm: bad message from n{node}: {e}"));
                            -22
                        }
                    };
                }
                if let Handler::Nego(kind, region) = handler {
                    let node_num = payload.first().copied().unwrap_or(u8::MAX);
                    self.drive_hb(
                        now,
                        o2hb::Input::Nego {
                            region,
                            kind,
                            node_num,
                        },
                        out,
                    );
                }
                self.drive_net(
                    now,
                    o2net::Input::HandlerDone {
                        conn,
                        request: header,
                        status,
                    },
                    out,
                );
            }
            N::SendDone { id, result } => {
                if id >= NEGO_SEND_BASE {
                    if let Err(e) = result {
                        self.text(out, || {
                            format!("o2hb: negotiation message not delivered: {e}")
                        });
                    }
                    return;
                }
                if id >= DLM_SEND_BASE {
                    let result = result.map_err(|e| e.errno());
                    let token = id - DLM_SEND_BASE;
                    self.drive_dlm(now, out, |d, now, acts| {
                        d.send_done(now, token, result, acts)
                    });
                    return;
                }
                let peer = self.workload_peers.remove(&id).unwrap_or(NodeId::MAX);
                let status = match result {
                    Ok(s) => s,
                    Err(e) => e.errno(),
                };
                out.push(Effect::Note(Note::SendDone { id, peer, status }));
            }
            // The reason was logged already, as the kernel logs it before fencing.
            N::Fence { .. } => out.push(Effect::Fence(FenceReason::Quorum)),
            N::Log { message, .. } => self.text(out, || format!("o2net: {message}")),
        }
    }
}

impl O2Stack {
    /// Runs `f` on the DLM layer, then carries out what it asked: sends go through o2net,
    /// as o2dlm's driver sends them.
    fn drive_dlm(
        &mut self,
        now: SimTime,
        out: &mut Vec<Effect>,
        f: impl FnOnce(&mut DlmLayer, u64, &mut Vec<DlmAct>),
    ) {
        let Some(layer) = self.dlm.as_mut() else {
            return;
        };
        let mut acts = Vec::new();
        f(layer, now.as_millis(), &mut acts);
        for act in acts {
            match act {
                DlmAct::Send { token, to, msg } => {
                    if self.verbose {
                        let mut detail = format!("{msg:?}");
                        if let Some((cut, _)) = detail.char_indices().nth(160) {
                            detail.truncate(cut);
                            detail.push('…');
                        }
                        let text = format!("o2dlm → n{to}: {} {detail}", msg.msg_type());
                        out.push(Effect::Note(Note::Text(text)));
                    }
                    let Some(layer) = self.dlm.as_ref() else {
                        return;
                    };
                    let key = msg.key(layer.domain());
                    let input = o2net::Input::Send {
                        id: DLM_SEND_BASE + token,
                        node: to,
                        msg_type: msg.msg_type().to_wire(),
                        key,
                        payload: Bytes::from(msg.to_vec()),
                    };
                    self.drive_net(now, input, out);
                }
                DlmAct::Timer { timer, at_ms } => {
                    let key = match timer {
                        DlmTimer::Core => TimerKey {
                            name: T_DLM_CORE,
                            index: 0,
                        },
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

fn hb_timer(timer: TimerKind, region: o2hb::RegionId) -> TimerKey {
    let name = match timer {
        TimerKind::Iteration => T_ITERATION,
        TimerKind::WriteTimeout => T_WRITE_TIMEOUT,
        TimerKind::NegoTimeout => T_NEGO,
    };
    TimerKey {
        name,
        index: u32::try_from(region).unwrap_or(u32::MAX),
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

impl Stack for O2Stack {
    fn handle(&mut self, now: SimTime, input: Input, out: &mut Vec<Effect>) {
        let start = out.len();
        self.handle_input(now, input, out);
        // The kernel decides quorum on a work queue, after o2hb has delivered
        // all of an iteration's NODE_UP/NODE_DOWN events: a fence asked for
        // in the middle of them takes effect once they are all out.
        let mut fence = None;
        let mut i = start;
        while i < out.len() {
            if let Effect::Fence(reason) = out[i] {
                fence.get_or_insert(reason);
                out.remove(i);
            } else {
                i += 1;
            }
        }
        if let Some(reason) = fence {
            out.push(Effect::Fence(reason));
        }
    }
}

impl O2Stack {
    fn handle_input(&mut self, now: SimTime, input: Input, out: &mut Vec<Effect>) {
        match input {
            Input::Boot => {
                if self.hb.is_none() || self.net.is_none() {
                    self.text(out, || {
                        "o2cb: a core refused the simulated cluster's configuration".to_string()
                    });
                }
                for region in 0..self.geometry.len() {
                    // The kernel draws a generation per region; derive one per region from the boot's.
                    let generation = region_generation(self.generation, region);
                    self.drive_hb(now, o2hb::Input::Start { region, generation }, out);
                }
                self.sync_net(out);
                self.drive_dlm(now, out, |d, now, acts| d.boot(now, acts));
            }
            Input::Timer(key) => match key.name {
                T_DLM_CORE | T_DLM_JOIN | T_DLM_CLIENT => {
                    let timer = match key.name {
                        T_DLM_CORE => DlmTimer::Core,
                        T_DLM_JOIN => DlmTimer::Join,
                        _ => DlmTimer::Client(usize::try_from(key.index).unwrap_or(usize::MAX)),
                    };
                    self.drive_dlm(now, out, |d, now, acts| d.timer(now, timer, acts));
                }
                T_NET => {
                    self.net_timer = None;
                    self.drive_net(now, o2net::Input::Timeout, out);
                }
                name => {
                    let timer = match name {
                        T_ITERATION => TimerKind::Iteration,
                        T_WRITE_TIMEOUT => TimerKind::WriteTimeout,
                        _ => TimerKind::NegoTimeout,
                    };
                    let region = usize::try_from(key.index).unwrap_or(usize::MAX);
                    self.drive_hb(now, o2hb::Input::Timer { region, timer }, out);
                }
            },
            Input::DiskReadDone { region, result, .. } => {
                let region = usize::from(region);
                let result = match &result {
                    Ok(bytes) => Ok(bytes.as_slice()),
                    Err(errno) => Err(format!("errno {errno}")),
                };
                self.drive_hb(now, o2hb::Input::ReadDone { region, result }, out);
            }
            Input::DiskWriteDone { region, result, .. } => {
                let region = usize::from(region);
                let result = result.map_err(|errno| format!("errno {errno}"));
                self.drive_hb(now, o2hb::Input::WriteDone { region, result }, out);
            }
            Input::Connected { conn, .. } => {
                if let Some(&c) = self.to_core.get(&conn) {
                    self.connecting.remove(&c);
                    self.drive_net(now, o2net::Input::ConnectDone { conn: c }, out);
                }
            }
            Input::Accepted { conn, from } => {
                let Some(net) = self.net.as_mut() else { return };
                let c = net.new_conn_id();
                self.to_sim.insert(c, conn);
                self.to_core.insert(conn, c);
                self.drive_net(
                    now,
                    o2net::Input::Accepted {
                        conn: c,
                        from: node_addr(from),
                    },
                    out,
                );
            }
            Input::Received { conn, data } => {
                if let Some(&c) = self.to_core.get(&conn) {
                    self.drive_net(
                        now,
                        o2net::Input::Received {
                            conn: c,
                            data: &data,
                        },
                        out,
                    );
                }
            }
            Input::Closed { conn, errno } => {
                let Some(c) = self.to_core.remove(&conn) else {
                    return;
                };
                self.to_sim.remove(&c);
                let input = if self.connecting.remove(&c) {
                    o2net::Input::ConnectFailed { conn: c, errno }
                } else {
                    o2net::Input::Closed { conn: c }
                };
                self.drive_net(now, input, out);
            }
            Input::LeaveDomain { rejoin_after } => {
                let rejoin_ms = u64::try_from(rejoin_after.as_millis()).unwrap_or(u64::MAX);
                self.drive_dlm(now, out, |d, now, acts| d.leave(now, rejoin_ms, acts));
            }
            Input::SendRequest { id, peer } => {
                self.workload_peers.insert(id, peer);
                let input = o2net::Input::Send {
                    id,
                    node: peer,
                    msg_type: PING_MSG_TYPE,
                    key: PING_KEY,
                    payload: Bytes::copy_from_slice(&id.to_be_bytes()),
                };
                self.drive_net(now, input, out);
            }
        }
    }
}
