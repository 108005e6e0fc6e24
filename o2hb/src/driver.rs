//! The real-time driver: runs a [`HeartbeatSet`] against real devices and a real clock.
//!
//! Threads: one event loop owns the core, the timers and the subscribers; each region has an
//! I/O thread doing its blocking O_DIRECT reads and writes, so a stalled device stalls only its
//! own region (and the write timeout still fires). Generations are random and non-zero.
//!
//! ```no_run
//! use o2hb::driver::{DriverConfig, Heartbeat};
//! let hb = Heartbeat::start(DriverConfig::new(1)).unwrap();
//! let mut events = hb.subscribe();
//! let region = o2hb::source::open(std::path::Path::new("/srv/hb.region")).unwrap();
//! hb.start_region(&region).unwrap(); // returns once the region is steady
//! while let Some(ev) = events.blocking_recv() { println!("{ev:?}"); }
//! ```

use crate::core::{
    nego_key, Geometry, HeartbeatSet, Input, LogLevel, Mode, NegoKind, Now, Output, RegionConfig,
    RegionId, SetConfig, TimerKind, Timing,
};
use crate::disk::{BlockIo, DirectFile};
use crate::iothread::{IoDone, IoRequest, IoThread};
use crate::source::RegionSource;
use crate::{Error, NodeMap, MAX_NODES};
use std::collections::HashMap;
use std::fmt;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// Exit status of a process fenced with [`FenceAction::Exit`].
pub const FENCE_EXIT_STATUS: i32 = 86;

/// What fencing does. The kernel resets the machine; our default is the closest a process can
/// do: exit at once, without the clean-stop write, so peers see the node die.
#[derive(Clone, Default)]
pub enum FenceAction {
    #[default]
    Exit,
    /// Run this shell command (reboot a VM, kill a container); heartbeat stays stopped.
    Command(String),
    /// Call this (tests, embedding programs); heartbeat stays stopped.
    Callback(Arc<dyn Fn() + Send + Sync>),
}

impl fmt::Debug for FenceAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FenceAction::Exit => f.write_str("Exit"),
            FenceAction::Command(c) => write!(f, "Command({c:?})"),
            FenceAction::Callback(_) => f.write_str("Callback"),
        }
    }
}

/// A negotiation message for o2net to send: type `kind as u16`, this key, one-byte payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NegoSend {
    pub key: u32,
    pub to: u8,
    pub kind: NegoKind,
    pub node_num: u8,
}

/// How o2net sends negotiation messages (absent: they are dropped with a debug log).
pub type NegoSender = Arc<dyn Fn(NegoSend) + Send + Sync>;

#[derive(Clone)]
pub struct DriverConfig {
    pub node: u8,
    pub mode: Mode,
    pub timing: Timing,
    /// Configured nodes; default: every slot (no cluster.conf needed).
    pub configured: NodeMap,
    pub fence: FenceAction,
    pub nego_sender: Option<NegoSender>,
}

impl DriverConfig {
    /// Local mode, the kernel's timing, every node configured, fence by exiting.
    pub fn new(node: u8) -> DriverConfig {
        DriverConfig {
            node,
            mode: Mode::Local,
            timing: Timing::default(),
            configured: NodeMap::first_n(MAX_NODES),
            fence: FenceAction::Exit,
            nego_sender: None,
        }
    }
}

/// o2net's callback priority (`O2NET_HB_PRI`): it handles up and down first.
pub const O2NET_HB_PRI: u32 = 0x1;
/// o2dlm's node-up priority (`DLM_HB_NODE_UP_PRI`).
pub const DLM_HB_NODE_UP_PRI: u32 = 0x800_0000;
/// o2dlm's node-down priority (`DLM_HB_NODE_DOWN_PRI`): after o2net has failed its sends.
pub const DLM_HB_NODE_DOWN_PRI: u32 = 0xf00_0000;

/// Which events a callback wants (the kernel's `O2HB_NODE_UP_CB` / `O2HB_NODE_DOWN_CB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackKind {
    NodeUp,
    NodeDown,
}

/// A node event callback. It runs on the driver's thread, so it must return quickly and must
/// not call back into [`Heartbeat`] methods that wait for the driver.
pub type HbCallback = Arc<dyn Fn(&HbEvent) + Send + Sync>;

/// A snapshot of the heartbeat, for status displays (the kernel's debugfs files).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HbStatus {
    /// Nodes live in at least one region (`livenodes`).
    pub live: NodeMap,
    pub regions: Vec<RegionStatus>,
    pub fenced: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionStatus {
    pub id: RegionId,
    pub name: String,
    pub device: String,
    /// Nodes live in this region.
    pub live: NodeMap,
    pub steady: bool,
    /// Global mode: the region sees every live node (`quorum_regions`).
    pub quorum: bool,
    /// Global mode: its write timed out (`failed_regions`).
    pub failed: bool,
}

/// Node events for o2net and o2dlm, in the kernel's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HbEvent {
    NodeUp {
        node: u8,
        generation: u64,
        region: String,
    },
    NodeDown {
        node: u8,
        generation: u64,
        region: String,
    },
    /// This node fenced itself; no more events follow.
    Fenced,
}

enum Msg {
    NegoByKey {
        key: u32,
        kind: NegoKind,
        node_num: u8,
    },
    Add {
        cfg: RegionConfig,
        io: Box<dyn BlockIo>,
        reply: mpsc::Sender<Result<RegionId, Error>>,
    },
    Stop {
        id: RegionId,
        reply: mpsc::Sender<Result<(), Error>>,
    },
    ReadDone {
        id: RegionId,
        result: std::io::Result<Vec<u8>>,
    },
    WriteDone {
        id: RegionId,
        result: std::io::Result<()>,
    },
    Nego {
        id: RegionId,
        kind: NegoKind,
        node_num: u8,
    },
    Subscribe(UnboundedSender<HbEvent>),
    Register {
        kind: CallbackKind,
        priority: u32,
        f: HbCallback,
        reply: mpsc::Sender<()>,
    },
    Shutdown {
        reply: mpsc::Sender<()>,
    },
}

/// A running heartbeat. Dropping it stops every region cleanly.
pub struct Heartbeat {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
    status: Arc<Mutex<HbStatus>>,
}

impl Heartbeat {
    pub fn start(cfg: DriverConfig) -> Result<Heartbeat, Error> {
        let core = HeartbeatSet::new(SetConfig {
            node: cfg.node,
            mode: cfg.mode,
            timing: cfg.timing,
            configured: cfg.configured,
        })?;
        let (tx, rx) = mpsc::channel();
        let status = Arc::new(Mutex::new(HbStatus::default()));
        let mut ev = EventLoop {
            core,
            node: cfg.node,
            fence: cfg.fence,
            nego_sender: cfg.nego_sender,
            tx: tx.clone(),
            timers: HashMap::new(),
            workers: HashMap::new(),
            starting: HashMap::new(),
            stopping: HashMap::new(),
            subs: Vec::new(),
            epoch: Instant::now(),
            status: status.clone(),
            callbacks: Vec::new(),
            shutdown: None,
            fenced: false,
        };
        let thread = std::thread::Builder::new()
            .name(format!("o2hb-node{}", cfg.node))
            .spawn(move || ev.run(rx))
            .map_err(|e| Error::io("o2hb thread", e))?;
        Ok(Heartbeat {
            tx,
            thread: Some(thread),
            status,
        })
    }

    /// Node up/down events from now on.
    pub fn subscribe(&self) -> UnboundedReceiver<HbEvent> {
        let (tx, rx) = unbounded_channel();
        let _ = self.tx.send(Msg::Subscribe(tx));
        rx
    }

    /// Opens the region's device with O_DIRECT and starts heartbeating; returns once the
    /// region is steady (the kernel's `dev` write), or the error if it could not stabilize.
    pub fn start_region(&self, source: &RegionSource) -> Result<RegionId, Error> {
        let io = DirectFile::open(&source.path).map_err(|e| Error::io(&source.path, e))?;
        self.start_region_with(
            &source.name,
            &source.device(),
            source.geometry,
            Box::new(io),
        )
    }

    /// [`Heartbeat::start_region`] over any [`BlockIo`] (tests use slow or failing devices).
    pub fn start_region_with(
        &self,
        name: &str,
        device: &str,
        geometry: Geometry,
        io: Box<dyn BlockIo>,
    ) -> Result<RegionId, Error> {
        let (reply, wait) = mpsc::channel();
        let cfg = RegionConfig {
            name: name.to_string(),
            device: device.to_string(),
            geometry,
        };
        self.tx
            .send(Msg::Add { cfg, io, reply })
            .map_err(|_| Error::DriverGone)?;
        wait.recv().map_err(|_| Error::DriverGone)?
    }

    /// Stops a region cleanly (DOWN for nodes seen only there, then the generation-0 block).
    pub fn stop_region(&self, id: RegionId) -> Result<(), Error> {
        let (reply, wait) = mpsc::channel();
        self.tx
            .send(Msg::Stop { id, reply })
            .map_err(|_| Error::DriverGone)?;
        wait.recv().map_err(|_| Error::DriverGone)?
    }

    /// Nodes live in at least one region.
    pub fn live_nodes(&self) -> NodeMap {
        self.status().live
    }

    /// Live nodes, regions, quorum and failed regions as of the last event.
    pub fn status(&self) -> HbStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Calls `f` for every event of `kind`, in ascending `priority` (equal priorities in
    /// registration order), before channel subscribers hear of it: the kernel's
    /// `o2hb_register_callback`, so that o2net ([`O2NET_HB_PRI`]) reacts to a death before
    /// o2dlm ([`DLM_HB_NODE_DOWN_PRI`]) starts recovery.
    pub fn register_callback(&self, kind: CallbackKind, priority: u32, f: HbCallback) {
        let (reply, wait) = mpsc::channel();
        if self
            .tx
            .send(Msg::Register {
                kind,
                priority,
                f,
                reply,
            })
            .is_ok()
        {
            let _ = wait.recv();
        }
    }

    /// Hands a negotiation message received by o2net to a region.
    pub fn deliver_nego(&self, id: RegionId, kind: NegoKind, node_num: u8) {
        let _ = self.tx.send(Msg::Nego { id, kind, node_num });
    }

    /// Hands a negotiation message to the region whose o2net key is `key` (what an o2net
    /// handler for message types 1 and 2 knows); messages for no region are dropped.
    pub fn deliver_nego_by_key(&self, key: u32, kind: NegoKind, node_num: u8) {
        let _ = self.tx.send(Msg::NegoByKey {
            key,
            kind,
            node_num,
        });
    }

    /// Stops every region cleanly and ends the driver; returns when the regions have stopped.
    /// Starts still waiting for steady state fail; later calls get [`Error::DriverGone`].
    pub fn stop(&self) {
        let (reply, wait) = mpsc::channel();
        if self.tx.send(Msg::Shutdown { reply }).is_ok() {
            let _ = wait.recv();
        }
    }

    /// [`Heartbeat::stop`], then waits for the driver thread to end.
    pub fn shutdown(mut self) {
        self.shutdown_inner();
    }

    fn shutdown_inner(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.shutdown_inner();
    }
}

struct EventLoop {
    core: HeartbeatSet,
    node: u8,
    fence: FenceAction,
    nego_sender: Option<NegoSender>,
    tx: mpsc::Sender<Msg>,
    timers: HashMap<(RegionId, TimerKind), u64>,
    workers: HashMap<RegionId, IoThread>,
    starting: HashMap<RegionId, mpsc::Sender<Result<RegionId, Error>>>,
    stopping: HashMap<RegionId, Vec<mpsc::Sender<Result<(), Error>>>>,
    subs: Vec<UnboundedSender<HbEvent>>,
    epoch: Instant,
    status: Arc<Mutex<HbStatus>>,
    callbacks: Vec<(CallbackKind, u32, HbCallback)>,
    shutdown: Option<mpsc::Sender<()>>,
    fenced: bool,
}

impl EventLoop {
    fn now(&self) -> Now {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Now {
            mono_ms: self.epoch.elapsed().as_millis() as u64,
            wall_ms,
        }
    }

    fn run(&mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            if self.shutdown.is_some() && self.workers.is_empty() {
                if let Some(reply) = self.shutdown.take() {
                    let _ = reply.send(());
                }
                return;
            }
            let msg = match self.timers.values().min().copied() {
                Some(at) => {
                    let now = self.now().mono_ms;
                    if at <= now {
                        self.fire_due();
                        continue;
                    }
                    rx.recv_timeout(Duration::from_millis(at - now))
                }
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok(m) => self.on_msg(m),
                Err(RecvTimeoutError::Timeout) => self.fire_due(),
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn fire_due(&mut self) {
        let now = self.now();
        let mut due: Vec<((RegionId, TimerKind), u64)> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now.mono_ms)
            .map(|(k, at)| (*k, *at))
            .collect();
        due.sort_by_key(|(_, at)| *at);
        for ((region, timer), _) in due {
            self.timers.remove(&(region, timer));
            self.feed(Input::Timer { region, timer });
        }
    }

    fn feed(&mut self, input: Input<'_>) {
        let now = self.now();
        let outputs = self.core.handle(now, input);
        for o in outputs {
            self.perform(o);
        }
        self.publish_status();
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Add { cfg, io, reply } => {
                if self.fenced || self.shutdown.is_some() {
                    let _ = reply.send(Err(if self.fenced {
                        Error::Fenced
                    } else {
                        Error::DriverGone
                    }));
                    return;
                }
                let id = match self.core.add_region(cfg) {
                    Ok(id) => id,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        return;
                    }
                };
                match spawn_worker(id, self.node, io, self.tx.clone()) {
                    Ok(w) => {
                        self.workers.insert(id, w);
                    }
                    Err(e) => {
                        let _ = self.core.remove_region(id);
                        let _ = reply.send(Err(e));
                        return;
                    }
                }
                self.starting.insert(id, reply);
                let generation = loop {
                    let g: u64 = rand::random();
                    if g != 0 {
                        break g;
                    }
                };
                self.feed(Input::Start {
                    region: id,
                    generation,
                });
            }
            Msg::Stop { id, reply } => {
                if !self.workers.contains_key(&id) {
                    let _ = reply.send(Err(if self.fenced {
                        Error::Fenced
                    } else {
                        Error::NoSuchRegion(id)
                    }));
                    return;
                }
                self.stopping.entry(id).or_default().push(reply);
                self.feed(Input::Stop { region: id });
            }
            Msg::ReadDone { id, result } => match result {
                Ok(data) => self.feed(Input::ReadDone {
                    region: id,
                    result: Ok(&data),
                }),
                Err(e) => self.feed(Input::ReadDone {
                    region: id,
                    result: Err(e.to_string()),
                }),
            },
            Msg::WriteDone { id, result } => self.feed(Input::WriteDone {
                region: id,
                result: result.map_err(|e| e.to_string()),
            }),
            Msg::Nego { id, kind, node_num } => self.feed(Input::Nego {
                region: id,
                kind,
                node_num,
            }),
            Msg::NegoByKey {
                key,
                kind,
                node_num,
            } => {
                let found = self
                    .core
                    .region_ids()
                    .into_iter()
                    .find(|id| self.nego_key_of(*id) == Some(key));
                match found {
                    Some(region) => self.feed(Input::Nego {
                        region,
                        kind,
                        node_num,
                    }),
                    None => {
                        tracing::debug!(node = self.node, key, "negotiation message for no region")
                    }
                }
            }
            Msg::Subscribe(tx) => self.subs.push(tx),
            Msg::Register {
                kind,
                priority,
                f,
                reply,
            } => {
                // After every callback of lower or equal priority, as the kernel inserts.
                let at = self
                    .callbacks
                    .iter()
                    .position(|(_, p, _)| *p > priority)
                    .unwrap_or(self.callbacks.len());
                self.callbacks.insert(at, (kind, priority, f));
                let _ = reply.send(());
            }
            Msg::Shutdown { reply } => {
                self.shutdown = Some(reply);
                let ids: Vec<RegionId> = self.workers.keys().copied().collect();
                for id in ids {
                    self.feed(Input::Stop { region: id });
                }
            }
        }
    }

    fn publish_status(&self) {
        let core = &self.core;
        let (quorum, failed, steady) = (
            core.quorum_regions(),
            core.failed_regions(),
            core.steady_regions(),
        );
        let regions = core
            .region_ids()
            .into_iter()
            .filter_map(|id| {
                let cfg = core.region_config(id)?;
                Some(RegionStatus {
                    id,
                    name: cfg.name.clone(),
                    device: cfg.device.clone(),
                    live: core.region_live_nodes(id),
                    steady: steady.contains(&id),
                    quorum: quorum.contains(&id),
                    failed: failed.contains(&id),
                })
            })
            .collect();
        let status = HbStatus {
            live: core.live_nodes(),
            regions,
            fenced: self.fenced,
        };
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// The o2net key of a region's negotiation messages (region number 0 in local mode).
    fn nego_key_of(&self, id: RegionId) -> Option<u32> {
        let num = if self.core.config().mode == Mode::Global {
            id
        } else {
            0
        };
        self.core.region_config(id).map(|c| nego_key(num, &c.name))
    }

    fn region_name(&self, id: RegionId) -> String {
        self.core
            .region_config(id)
            .map(|c| c.name.clone())
            .unwrap_or_default()
    }

    fn publish(&mut self, ev: HbEvent) {
        let kind = match ev {
            HbEvent::NodeUp { .. } => Some(CallbackKind::NodeUp),
            HbEvent::NodeDown { .. } => Some(CallbackKind::NodeDown),
            HbEvent::Fenced => None,
        };
        for (k, _, f) in &self.callbacks {
            if Some(*k) == kind {
                f(&ev);
            }
        }
        self.subs.retain(|s| s.send(ev.clone()).is_ok());
    }

    fn perform(&mut self, o: Output) {
        let node = self.node;
        match o {
            Output::Read {
                region,
                first_slot,
                slots,
            } => {
                if let (Some(cfg), Some(w)) =
                    (self.core.region_config(region), self.workers.get(&region))
                {
                    let g = cfg.geometry;
                    w.submit(IoRequest::Read {
                        offset: g.slot_offset(first_slot),
                        len: usize::from(slots) * g.block_bytes(),
                    });
                }
            }
            Output::Write {
                region,
                slot,
                block,
            } => {
                if let (Some(cfg), Some(w)) =
                    (self.core.region_config(region), self.workers.get(&region))
                {
                    w.submit(IoRequest::Write {
                        offset: cfg.geometry.slot_offset(slot),
                        data: block,
                    });
                }
            }
            Output::ArmTimer {
                region,
                timer,
                at_ms,
            } => {
                self.timers.insert((region, timer), at_ms);
            }
            Output::CancelTimer { region, timer } => {
                self.timers.remove(&(region, timer));
            }
            Output::NodeUp {
                region,
                node: up,
                generation,
            } => {
                let region = self.region_name(region);
                tracing::info!(node, peer = up, generation = format_args!("0x{generation:x}"), %region, "o2hb: node {up} up");
                self.publish(HbEvent::NodeUp {
                    node: up,
                    generation,
                    region,
                });
            }
            Output::NodeDown {
                region,
                node: down,
                generation,
            } => {
                let region = self.region_name(region);
                tracing::info!(node, peer = down, generation = format_args!("0x{generation:x}"), %region, "o2hb: node {down} down");
                self.publish(HbEvent::NodeDown {
                    node: down,
                    generation,
                    region,
                });
            }
            Output::Log(ev) => {
                let region = ev.region.map(|r| self.region_name(r)).unwrap_or_default();
                match ev.level {
                    LogLevel::Error => tracing::error!(node, %region, "{}", ev.message),
                    LogLevel::Notice => tracing::info!(node, %region, "{}", ev.message),
                    LogLevel::Debug => tracing::debug!(node, %region, "{}", ev.message),
                }
            }
            Output::SendNego {
                region,
                to,
                kind,
                node_num,
            } => {
                let Some(key) = self.nego_key_of(region) else {
                    return;
                };
                match &self.nego_sender {
                    Some(send) => send(NegoSend {
                        key,
                        to,
                        kind,
                        node_num,
                    }),
                    None => {
                        tracing::debug!(node, to, ?kind, "no o2net: negotiation message dropped")
                    }
                }
            }
            Output::Steady { region } => {
                if let Some(reply) = self.starting.remove(&region) {
                    let _ = reply.send(Ok(region));
                }
            }
            Output::StartAborted { region } => {
                if let Some(reply) = self.starting.remove(&region) {
                    let _ = reply.send(Err(Error::StartAborted {
                        region: self.region_name(region),
                    }));
                }
            }
            Output::Stopped { region, clean } => {
                // Dropping the sender ends the region's I/O thread once its current request is done.
                self.workers.remove(&region);
                self.timers.retain(|(r, _), _| *r != region);
                let name = self.region_name(region);
                let _ = self.core.remove_region(region);
                if let Some(reply) = self.starting.remove(&region) {
                    let _ = reply.send(Err(if self.fenced {
                        Error::Fenced
                    } else {
                        Error::StartAborted { region: name }
                    }));
                }
                for reply in self.stopping.remove(&region).unwrap_or_default() {
                    let _ = reply.send(if clean { Ok(()) } else { Err(Error::Fenced) });
                }
            }
            Output::Fence => self.do_fence(),
        }
    }

    /// Carries out the fence action, then tells subscribers (with the status already showing
    /// the fence), so that whoever hears of it can rely on the action having been taken.
    fn do_fence(&mut self) {
        self.fenced = true;
        match &self.fence {
            FenceAction::Exit => {
                tracing::error!(
                    node = self.node,
                    "fencing: exiting now without a clean heartbeat stop"
                );
                std::process::exit(FENCE_EXIT_STATUS);
            }
            FenceAction::Command(cmd) => {
                tracing::error!(node = self.node, command = %cmd, "fencing: running the fence command");
                match std::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(cmd)
                    .status()
                {
                    Ok(s) => {
                        tracing::error!(node = self.node, status = %s, "fence command finished")
                    }
                    Err(e) => {
                        tracing::error!(node = self.node, error = %e, "fence command could not run")
                    }
                }
            }
            FenceAction::Callback(f) => f(),
        }
        self.publish_status();
        self.publish(HbEvent::Fenced);
        for (_, reply) in self.starting.drain() {
            let _ = reply.send(Err(Error::Fenced));
        }
    }
}

fn spawn_worker(
    id: RegionId,
    node: u8,
    io: Box<dyn BlockIo>,
    tx: mpsc::Sender<Msg>,
) -> Result<IoThread, Error> {
    IoThread::spawn(format!("o2hb-io-{id}"), io, move |done| {
        let msg = match done {
            IoDone::Read(result) => {
                if let Err(e) = &result {
                    tracing::error!(node, region = id, "heartbeat read failed: {e}");
                }
                Msg::ReadDone { id, result }
            }
            IoDone::Write(result) => Msg::WriteDone { id, result },
        };
        tx.send(msg).is_ok()
    })
    .map_err(|e| Error::io("o2hb I/O thread", e))
}
