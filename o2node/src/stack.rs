//! [`NodeStack`]: the node's state, its one contract (`handle`, `poll_output`,
//! `poll_timeout`), the requests of its users, and the rules of its stages.
//!
//! The wiring between the layers lives beside this file: [`crate::hb`] (heartbeat outputs,
//! node up/down in the kernel's order), [`crate::net`] (o2net outputs, handler dispatch) and
//! [`crate::dlm`] (the domains, their outputs, the join-time answers of a node without the
//! domain).

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use o2dlm::wire::{DomainName, LkmFlags, LockMode, LockName, Lvb};
use o2hb::{HeartbeatSet, RegionConfig, SetConfig, TimerKind};
use o2net::{NetCore, NodeSet};
use rustc_hash::FxHashMap;

use crate::config::NodeConfig;
use crate::dlm::Dlm;
use crate::error::NodeError;
use crate::net::{Handler, SendOwner};
use crate::types::{
    ConnId, Event, FenceReason, Input, Layer, Level, Log, Output, PeerHb, RegionId, Stage,
};

/// A heartbeat region the node runs.
#[derive(Debug, Clone)]
pub(crate) struct Region {
    pub name: String,
    pub geometry: o2hb::Geometry,
    pub nego_key: u32,
    pub state: RegionState,
}

/// Where a region's heartbeat is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegionState {
    Starting,
    Steady,
    Failed,
    Stopping,
}

/// One O2CB node, sans I/O. See the crate documentation.
pub struct NodeStack {
    pub(crate) cfg: NodeConfig,
    pub(crate) stage: Stage,
    /// The time of the call being handled.
    pub(crate) now: u64,
    pub(crate) hb: HeartbeatSet,
    pub(crate) hb_timers: BTreeMap<(RegionId, TimerKind), u64>,
    pub(crate) regions: BTreeMap<RegionId, Region>,
    pub(crate) peers: BTreeMap<u8, PeerHb>,
    pub(crate) net: NetCore<Handler>,
    pub(crate) quorum_connected: NodeSet,
    pub(crate) sends: FxHashMap<u64, SendOwner>,
    pub(crate) next_send: u64,
    pub(crate) dlm: Dlm,
    /// When a clean stop stops waiting for its domains.
    pub(crate) stop_deadline: Option<u64>,
    /// A quorum fence decided during this call: it takes effect once the call's other work
    /// is out, as the kernel decides quorum on a work queue after o2hb's events.
    pub(crate) fence_pending: Option<FenceReason>,
    pub(crate) out: VecDeque<Output>,
}

impl NodeStack {
    /// A node that has started nothing yet: no region, no connection, no domain.
    pub fn new(cfg: NodeConfig) -> Result<NodeStack, NodeError> {
        let node = cfg.node();
        let mut configured = o2hb::NodeMap::new();
        for n in &cfg.net.nodes {
            configured.insert(n.num);
        }
        let hb = HeartbeatSet::new(SetConfig {
            node,
            mode: cfg.mode,
            timing: cfg.timing,
            configured,
        })
        .map_err(|e| NodeError::Config(e.to_string()))?;
        let mut net =
            NetCore::new(cfg.net.clone()).map_err(|e| NodeError::Config(e.to_string()))?;
        crate::dlm::register_module_handlers(&mut net)?;
        Ok(NodeStack {
            dlm: Dlm::new(node),
            cfg,
            stage: Stage::Starting,
            now: 0,
            hb,
            hb_timers: BTreeMap::new(),
            regions: BTreeMap::new(),
            peers: BTreeMap::new(),
            net,
            quorum_connected: NodeSet::new(),
            sends: FxHashMap::default(),
            next_send: 1,
            stop_deadline: None,
            fence_pending: None,
            out: VecDeque::new(),
        })
    }

    // ----- the contract --------------------------------------------------------------------

    /// Feeds one input at `now` (monotonic ms). What was due by `now` happens first: a
    /// node resuming from a pause past its write timeout fences before it reads a byte.
    pub fn handle(&mut self, now: u64, input: Input<'_>) {
        if !self.enter(now) {
            return;
        }
        match input {
            Input::ReadDone { region, result } => {
                self.hb_input(now, o2hb::Input::ReadDone { region, result })
            }
            Input::WriteDone { region, result } => {
                self.hb_input(now, o2hb::Input::WriteDone { region, result })
            }
            Input::Accepted { conn, from } => {
                self.net_input(now, o2net::Input::Accepted { conn, from })
            }
            Input::ConnectDone { conn } => self.net_input(now, o2net::Input::ConnectDone { conn }),
            Input::ConnectFailed { conn, errno } => {
                self.net_input(now, o2net::Input::ConnectFailed { conn, errno })
            }
            Input::Received { conn, data } => {
                self.net_input(now, o2net::Input::Received { conn, data })
            }
            Input::Closed { conn } => self.net_input(now, o2net::Input::Closed { conn }),
            Input::Tick => {}
        }
        self.finish();
    }

    /// The next thing to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Input::Tick`] has work to do (monotonic ms).
    pub fn poll_timeout(&self) -> Option<u64> {
        if matches!(self.stage, Stage::Fenced | Stage::Stopped) {
            return None;
        }
        let hb = self.hb_timers.values().min().copied();
        [
            hb,
            self.net.next_timeout(),
            self.dlm.next_deadline(),
            self.stop_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Which timer [`NodeStack::poll_timeout`] is, for traces.
    pub fn timeout_label(&self) -> &'static str {
        let Some(at) = self.poll_timeout() else {
            return "none";
        };
        if let Some(((_, kind), _)) = self.hb_timers.iter().find(|(_, t)| **t == at) {
            return match kind {
                TimerKind::Iteration => "hb.iteration",
                TimerKind::WriteTimeout => "hb.write_timeout",
                TimerKind::NegoTimeout => "hb.nego_timeout",
            };
        }
        if self.net.next_timeout() == Some(at) {
            return "net.timers";
        }
        if self.stop_deadline == Some(at) {
            return "node.stop";
        }
        "dlm.core"
    }

    /// A connection id for a connection the driver accepted.
    pub fn new_conn_id(&mut self) -> ConnId {
        self.net.new_conn_id()
    }

    // ----- requests of the node's users ----------------------------------------------------

    /// Starts heartbeat on a region; [`Event::RegionSteady`] or [`Event::RegionFailed`] tells
    /// how it went. `generation` must be non-zero (the driver draws it at random).
    pub fn start_region(
        &mut self,
        now: u64,
        region: RegionConfig,
        generation: u64,
    ) -> Result<RegionId, NodeError> {
        self.refuse_unless(now, &[Stage::Starting, Stage::Online])?;
        let r = self.add_region(now, region, generation);
        self.finish();
        r
    }

    /// Stops a region cleanly (generation-0 block); [`Event::RegionStopped`] follows. The
    /// last region cannot stop while domains are joined (the kernel's busy heartbeat).
    pub fn stop_region(&mut self, now: u64, region: RegionId) -> Result<(), NodeError> {
        self.refuse_unless(now, &[Stage::Starting, Stage::Online])?;
        let r = self.end_region(now, region);
        self.finish();
        r
    }

    /// Joins `domain` (`dlm_register_domain`): now if the node is online, else once it is
    /// (`wait`), else refused with [`NodeError::Starting`]. [`Event::Joined`] or
    /// [`Event::JoinFailed`] follows.
    pub fn join(&mut self, now: u64, domain: DomainName, wait: bool) -> Result<(), NodeError> {
        self.refuse_unless(now, &[Stage::Starting, Stage::Online])?;
        let r = match self.stage {
            Stage::Starting if !wait => Err(NodeError::Starting { node: self.node() }),
            _ => self.ask_join(now, domain),
        };
        self.finish();
        r
    }

    /// Leaves `domain` (`dlm_unregister_domain`) once this node's locks in it are unlocked,
    /// migrating what it masters that others use. [`Event::Left`] follows.
    pub fn leave(&mut self, now: u64, domain: DomainName) -> Result<(), NodeError> {
        self.refuse_unless(now, &[Stage::Online, Stage::Stopping])?;
        let r = self.dlm_leave(now, domain);
        self.finish();
        r
    }

    /// `dlmlock` of a new lock: the cookie it will be known by; [`Event::LockDone`] follows.
    pub fn lock(
        &mut self,
        now: u64,
        domain: DomainName,
        name: LockName,
        mode: LockMode,
        flags: LkmFlags,
    ) -> Result<u64, NodeError> {
        self.refuse_unless(now, &[Stage::Online])?;
        let r = self.dlm_lock(now, domain, name, mode, flags);
        self.finish();
        r
    }

    /// `dlmlock` with `LKM_CONVERT`; [`Event::LockDone`] follows. Allowed while stopping: a
    /// down-conversion lets go.
    pub fn convert(
        &mut self,
        now: u64,
        domain: DomainName,
        cookie: u64,
        mode: LockMode,
        flags: LkmFlags,
        lvb: Lvb,
    ) -> Result<(), NodeError> {
        self.refuse_unless(now, &[Stage::Online, Stage::Stopping])?;
        let input = o2dlm::domain::Input::Convert {
            cookie,
            mode,
            flags,
            lvb,
        };
        let r = self.dlm_api(now, domain, input);
        self.finish();
        r
    }

    /// `dlmunlock` (or a cancel, with `LKM_CANCEL`); [`Event::Unlocked`] follows.
    pub fn unlock(
        &mut self,
        now: u64,
        domain: DomainName,
        cookie: u64,
        flags: LkmFlags,
        lvb: Lvb,
    ) -> Result<(), NodeError> {
        self.refuse_unless(now, &[Stage::Online, Stage::Stopping])?;
        let r = self.dlm_api(
            now,
            domain,
            o2dlm::domain::Input::Unlock { cookie, flags, lvb },
        );
        self.finish();
        r
    }

    /// A clean stop: every domain is left (the users must let go of their locks: a stop that
    /// cannot leave within the stop timeout abandons what is left), then heartbeat stops with
    /// the generation-0 block, then [`Event::Stopped`].
    pub fn stop(&mut self, now: u64) {
        if self
            .refuse_unless(now, &[Stage::Starting, Stage::Online])
            .is_err()
        {
            return;
        }
        self.stage = Stage::Stopping;
        self.stop_deadline = Some(now.saturating_add(self.cfg.stop_timeout_ms));
        self.log(Layer::Node, Level::Info, || {
            "stopping: leaving every domain, then heartbeat".to_string()
        });
        self.dlm_stop(now);
        self.advance_stop(now);
        self.finish();
    }

    /// Registers a handler for application messages of (`msg_type`, `key`), answered with
    /// status 0 (the simulator's ping workload; test programs).
    pub fn register_app_handler(
        &mut self,
        msg_type: u16,
        key: u32,
        max_len: u32,
    ) -> Result<(), NodeError> {
        let node = self.node();
        self.net
            .register_handler(msg_type, key, max_len, Handler::App)
            .map_err(|e| NodeError::Net {
                node,
                message: e.to_string(),
            })
    }

    /// Sends an application message; [`Event::AppDone`] with `id` follows.
    pub fn send_app(
        &mut self,
        now: u64,
        id: u64,
        to: u8,
        msg_type: u16,
        key: u32,
        payload: Bytes,
    ) -> Result<(), NodeError> {
        self.refuse_unless(now, &[Stage::Starting, Stage::Online, Stage::Stopping])?;
        self.net_send(now, SendOwner::App(id), to, msg_type, key, payload);
        self.pump_net(now);
        self.finish();
        Ok(())
    }

    // ----- what the node knows -------------------------------------------------------------

    pub fn node(&self) -> u8 {
        self.cfg.node()
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The heartbeat set (live nodes, regions, quorum and failed regions).
    pub fn heartbeat(&self) -> &HeartbeatSet {
        &self.hb
    }

    /// The regions the node runs, with their names.
    pub fn regions(&self) -> impl Iterator<Item = (RegionId, &str)> {
        self.regions.iter().map(|(id, r)| (*id, r.name.as_str()))
    }

    /// What heartbeat last said about each node it has seen.
    pub fn peers(&self) -> &BTreeMap<u8, PeerHb> {
        &self.peers
    }

    /// One row per configured peer: connection state, traffic, last keepalive.
    pub fn peer_stats(&self) -> Vec<o2net::PeerStats> {
        self.net.peer_stats()
    }

    /// Nodes with a valid connection, this node included.
    pub fn connected_nodes(&self) -> NodeSet {
        self.net.connected_nodes()
    }

    /// A domain this node is in (or joining, or leaving), for dumps and status.
    pub fn domain(&self, name: &DomainName) -> Option<&o2dlm::domain::DomainCore> {
        self.dlm.core(name)
    }

    /// The domains this node is in (or joining, or leaving), by name.
    pub fn domains(&self) -> Vec<DomainName> {
        self.dlm.names()
    }

    // ----- the rules of every call ---------------------------------------------------------

    /// Starts a call at `now`: runs what was due first. False if the node can do nothing
    /// more (fenced, stopped).
    pub(crate) fn enter(&mut self, now: u64) -> bool {
        self.now = now;
        if matches!(self.stage, Stage::Fenced | Stage::Stopped) {
            return false;
        }
        self.catch_up(now);
        !matches!(self.stage, Stage::Fenced | Stage::Stopped)
    }

    /// [`NodeStack::enter`] for a request, refused unless the node is in one of `stages`.
    fn refuse_unless(&mut self, now: u64, stages: &[Stage]) -> Result<(), NodeError> {
        self.enter(now);
        if stages.contains(&self.stage) {
            return Ok(());
        }
        let node = self.node();
        Err(match self.stage {
            Stage::Starting => NodeError::Starting { node },
            Stage::Online | Stage::Stopping => NodeError::Stopping { node },
            Stage::Stopped => NodeError::Stopped { node },
            Stage::Fenced => NodeError::Fenced { node },
        })
    }

    /// Runs every timer due by `now`, heartbeat's first (its write timeout decides whether
    /// this node may still act), then o2net's, then the domains'.
    fn catch_up(&mut self, now: u64) {
        loop {
            let due = self
                .hb_timers
                .iter()
                .filter(|(_, at)| **at <= now)
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| *k);
            let Some((region, timer)) = due else { break };
            self.hb_timers.remove(&(region, timer));
            self.hb_input(now, o2hb::Input::Timer { region, timer });
            if self.stage == Stage::Fenced {
                return;
            }
        }
        if self.net.next_timeout().is_some_and(|t| t <= now) {
            self.net_input(now, o2net::Input::Timeout);
        }
        self.dlm_tick(now);
        if self.stop_deadline.is_some_and(|t| t <= now) {
            self.stop_deadline = None;
            self.abandon_domains(now);
            self.advance_stop(now);
        }
    }

    /// Ends a call: a quorum fence decided during it takes effect, and the invariants hold.
    pub(crate) fn finish(&mut self) {
        self.sync_quorum();
        if let Some(reason) = self.fence_pending.take() {
            if self.stage != Stage::Fenced {
                self.fence_now(reason);
            }
        }
        #[cfg(debug_assertions)]
        self.check_invariants();
    }

    /// The node fences: nothing more happens after this output.
    pub(crate) fn fence_now(&mut self, reason: FenceReason) {
        self.stage = Stage::Fenced;
        self.stop_deadline = None;
        self.out.push_back(Output::Fence(reason));
    }

    /// Moves the stage on after a region changed state or a stop made progress.
    pub(crate) fn update_stage(&mut self, now: u64) {
        let ready = self.heartbeat_ready();
        match self.stage {
            Stage::Starting if ready => {
                self.stage = Stage::Online;
                self.log(Layer::Node, Level::Info, || {
                    "online: heartbeat steady, domains may be joined".to_string()
                });
                self.out.push_back(Output::Event(Event::Online));
                self.start_queued_joins(now);
            }
            Stage::Online if !ready => {
                // Only a local-mode region stopped by hand with no domain joined gets here.
                self.stage = Stage::Starting;
            }
            Stage::Stopping => self.advance_stop(now),
            _ => {}
        }
    }

    /// Heartbeat knows the live nodes: every region the node needs is steady (global mode:
    /// the cluster's regions; local mode: the one started, and none still starting).
    fn heartbeat_ready(&self) -> bool {
        let steady = |name: &str| {
            self.regions
                .values()
                .any(|r| r.name == name && r.state == RegionState::Steady)
        };
        if self.cfg.mode == o2hb::Mode::Global && !self.cfg.regions.is_empty() {
            return self.cfg.regions.iter().all(|n| steady(n));
        }
        !self.regions.is_empty()
            && self
                .regions
                .values()
                .all(|r| r.state == RegionState::Steady)
    }

    /// A stop moves on: once no domain is left, heartbeat stops; once no region is left,
    /// the node is stopped.
    pub(crate) fn advance_stop(&mut self, now: u64) {
        if self.stage != Stage::Stopping || !self.dlm.is_empty() {
            return;
        }
        let running: Vec<RegionId> = self
            .regions
            .iter()
            .filter(|(_, r)| r.state != RegionState::Stopping)
            .map(|(id, _)| *id)
            .collect();
        for id in running {
            if let Some(r) = self.regions.get_mut(&id) {
                r.state = RegionState::Stopping;
            }
            self.hb_input(now, o2hb::Input::Stop { region: id });
        }
        if self.regions.is_empty() && self.stage == Stage::Stopping {
            self.stage = Stage::Stopped;
            self.stop_deadline = None;
            self.log(Layer::Node, Level::Info, || "stopped".to_string());
            self.out.push_back(Output::Event(Event::Stopped));
        }
    }

    pub(crate) fn log(&mut self, layer: Layer, level: Level, message: impl FnOnce() -> String) {
        self.out.push_back(Output::Log(Log {
            level,
            layer,
            message: message(),
        }));
    }

    /// Reports changes in what quorum counts as connected.
    fn sync_quorum(&mut self) {
        let connected = self.net.quorum().connected();
        if connected == self.quorum_connected {
            return;
        }
        let me = self.node();
        let before = self.quorum_connected;
        for n in connected
            .iter()
            .filter(|n| !before.contains(*n) && *n != me)
        {
            self.out.push_back(Output::Event(Event::NetUp { peer: n }));
        }
        for n in before
            .iter()
            .filter(|n| !connected.contains(*n) && *n != me)
        {
            self.out
                .push_back(Output::Event(Event::NetDown { peer: n }));
        }
        self.quorum_connected = connected;
    }

    /// What must hold after every call (checked in test and simulator builds).
    #[cfg(debug_assertions)]
    fn check_invariants(&self) {
        match self.stage {
            Stage::Online => debug_assert!(
                self.heartbeat_ready(),
                "node {} online without steady heartbeat",
                self.node()
            ),
            Stage::Starting => debug_assert!(
                self.dlm.joined_count() == 0,
                "node {} has a joined domain before it is online",
                self.node()
            ),
            Stage::Stopped => debug_assert!(
                self.dlm.is_empty() && self.regions.is_empty(),
                "node {} stopped with domains or regions left",
                self.node()
            ),
            Stage::Stopping | Stage::Fenced => {}
        }
        self.dlm.check_invariants();
    }
}
