//! The sans-I/O heartbeat core: a set of up to 32 regions, each with the kernel's per-slot
//! liveness state machine, and the set-wide state (global live map, quorum and failed
//! regions, the fence decision, timeout negotiation).
//!
//! The core does no I/O, reads no clock and draws no random numbers. A driver (the real one
//! in [`crate::driver`], or the deterministic simulator) calls
//! [`HeartbeatSet::handle`]`(now, input)` and performs the [`Output`]s it gets back:
//!
//! ```text
//! Input::Start{region, generation}  -> Read{all slots}                       (baseline, docs/o2hb.md §5)
//! Input::ReadDone{..}               -> Write{own block}, NodeUp/NodeDown, Log (one iteration, §4)
//! Input::WriteDone{..}              -> ArmTimer{Iteration, at}, ArmTimer{WriteTimeout..}, Steady
//! Input::Timer{Iteration}           -> Read{lowest..highest configured slot}
//! Input::Timer{WriteTimeout}        -> Log, Fence                            (§7)
//! Input::Stop{region}               -> NodeDown.., Write{generation-0 block}, then Stopped
//! ```
//!
//! Timers are "at" deadlines on the monotonic clock of [`Now`]; a driver may deliver a timer
//! late or more than once — the core ignores a timer that is not armed or not yet due.
//! Events come out in the kernel's order: slots are checked in ascending node order, a node is
//! UP when it becomes live in its first region and DOWN when it is dead in all of them.

use crate::block::{HbBlock, SlotView};
use crate::{Error, NodeMap, MAX_NODES, MAX_REGIONS, MAX_REGION_NAME_LEN};
use std::fmt;

/// Index of a region in its set; it is also the kernel's region number (lowest free, 0..32),
/// which keys the o2net negotiation messages in global mode.
pub type RegionId = usize;

/// `O2HB_LIVE_THRESHOLD`: changed reads before a node is live.
pub const LIVE_THRESHOLD: u32 = 2;
/// The kernel's default dead threshold (iterations).
pub const DEFAULT_DEAD_THRESHOLD: u32 = 31;
/// `O2HB_MIN_DEAD_THRESHOLD`: values at or below it are refused.
pub const MIN_DEAD_THRESHOLD: u32 = 2;
/// `O2HB_REGION_TIMEOUT_MS`: the kernel's (and our default) iteration period.
pub const DEFAULT_PERIOD_MS: u64 = 2000;
/// Shortest period we accept; below it a disk round trip may not fit in one iteration.
pub const MIN_PERIOD_MS: u64 = 10;
/// The negotiation master re-checks the requesters this often (ms) with the kernel's period;
/// it scales with a shortened period (see [`Timing::nego_recheck_ms`]).
pub const NEGO_RECHECK_MS: u64 = 1000;

/// The time a driver passes with each input. `mono_ms` drives timers; `wall_ms` (ms since the
/// Unix epoch) becomes the block's sequence number, as the kernel writes wall-clock seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub mono_ms: u64,
    pub wall_ms: u64,
}

impl Now {
    /// One virtual clock for both (simulation and tests).
    pub fn virtual_ms(ms: u64) -> Now {
        Now {
            mono_ms: ms,
            wall_ms: ms,
        }
    }
}

/// Heartbeat mode (`heartbeat/mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// One region per volume; a write timeout in any region fences.
    #[default]
    Local,
    /// Up to 32 shared regions; fence only when half or more of the quorum regions failed.
    Global,
}

/// Period and dead threshold. The kernel fixes the period at 2000 ms; a shorter one is our
/// option (tests, demos), and every derived timeout scales with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    period_ms: u64,
    dead_threshold: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            period_ms: DEFAULT_PERIOD_MS,
            dead_threshold: DEFAULT_DEAD_THRESHOLD,
        }
    }
}

impl Timing {
    pub fn new(period_ms: u64, dead_threshold: u32) -> Result<Timing, Error> {
        if !(MIN_PERIOD_MS..=DEFAULT_PERIOD_MS).contains(&period_ms) {
            return Err(Error::BadPeriod(period_ms));
        }
        if dead_threshold <= MIN_DEAD_THRESHOLD {
            return Err(Error::BadDeadThreshold(dead_threshold));
        }
        Ok(Timing {
            period_ms,
            dead_threshold,
        })
    }

    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    pub fn dead_threshold(&self) -> u32 {
        self.dead_threshold
    }

    /// `hb_dead_ms` written to disk: dead_threshold × period (62000 by default).
    pub fn dead_ms(&self) -> u32 {
        u32::try_from(u64::from(self.dead_threshold) * self.period_ms).unwrap_or(u32::MAX)
    }

    /// `O2HB_MAX_WRITE_TIMEOUT_MS`: period × (dead_threshold − 1) (60000 by default).
    pub fn max_write_timeout_ms(&self) -> u64 {
        self.period_ms * u64::from(self.dead_threshold - 1)
    }

    /// `O2HB_NEGO_TIMEOUT_MS`: half the write timeout.
    pub fn nego_timeout_ms(&self) -> u64 {
        self.max_write_timeout_ms() / 2
    }

    /// How often the negotiation master re-checks: 1000 ms with the kernel's 2000 ms period,
    /// half the period when it is shortened, so that it stays well inside the write timeout.
    pub fn nego_recheck_ms(&self) -> u64 {
        NEGO_RECHECK_MS * self.period_ms / DEFAULT_PERIOD_MS
    }

    /// The sequence number for a write at `wall_ms`. With the kernel's 2 s period it is
    /// wall-clock seconds, exactly as the kernel writes it; with a shorter period seconds would
    /// repeat between iterations and peers would count misses, so it is milliseconds instead
    /// (peers, the kernel included, only compare it for change). Never 0.
    pub fn seq_at(&self, wall_ms: u64) -> u64 {
        let seq = if self.period_ms >= DEFAULT_PERIOD_MS {
            wall_ms / 1000
        } else {
            wall_ms
        };
        seq.max(1)
    }
}

/// Where a region's slots are (configfs `block_bytes`, `start_block`, `blocks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    block_bytes: u32,
    start_block: u64,
    blocks: u16,
}

impl Geometry {
    /// Validates as the kernel's configfs stores do (docs/o2hb.md §3).
    pub fn new(block_bytes: u64, start_block: u64, blocks: u64) -> Result<Geometry, Error> {
        if !(512..=4096).contains(&block_bytes) || !block_bytes.is_power_of_two() {
            return Err(Error::BadBlockBytes(block_bytes));
        }
        if !(1..=MAX_NODES as u64).contains(&blocks) {
            return Err(Error::BadBlocks(blocks));
        }
        if start_block == 0 {
            return Err(Error::ZeroStartBlock);
        }
        if start_block
            .checked_add(blocks)
            .and_then(|e| e.checked_mul(block_bytes))
            .is_none()
        {
            return Err(Error::BadBlocks(blocks));
        }
        Ok(Geometry {
            block_bytes: block_bytes as u32,
            start_block,
            blocks: blocks as u16,
        })
    }

    pub fn block_bytes(&self) -> usize {
        self.block_bytes as usize
    }

    pub fn start_block(&self) -> u64 {
        self.start_block
    }

    pub fn blocks(&self) -> u16 {
        self.blocks
    }

    /// Byte offset of `slot` on the device: (start_block + slot) × block_bytes.
    pub fn slot_offset(&self, slot: u16) -> u64 {
        (self.start_block + u64::from(slot)) * u64::from(self.block_bytes)
    }
}

/// A region as configured: name (≤ 32 chars, the volume UUID for OCFS2), a device name for
/// messages (the kernel prints the block device), and geometry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionConfig {
    pub name: String,
    pub device: String,
    pub geometry: Geometry,
}

/// Set-wide settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetConfig {
    /// This node's number (its slot in every region).
    pub node: u8,
    pub mode: Mode,
    pub timing: Timing,
    /// Configured nodes (cluster.conf). Slots of other nodes are ignored unless live.
    pub configured: NodeMap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// Next iteration (period after the previous one began).
    Iteration,
    /// Self-fence if no good write completes before it.
    WriteTimeout,
    /// Negotiate the write timeout with the other nodes.
    NegoTimeout,
}

impl TimerKind {
    fn index(self) -> usize {
        match self {
            TimerKind::Iteration => 0,
            TimerKind::WriteTimeout => 1,
            TimerKind::NegoTimeout => 2,
        }
    }
}

/// The two o2net messages o2hb owns (o2net types 1 and 2, payload one byte: node number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NegoKind {
    /// `O2HB_NEGO_TIMEOUT_MSG`: "my writes hang" (to the master).
    Timeout = 1,
    /// `O2HB_NEGO_APPROVE_MSG`: "all writes hang; re-arm" (from the master).
    Approve = 2,
}

/// o2net key of a region's negotiation messages: `crc32_le(region_num + 32, name)`
/// (region_num is 0 in local mode).
pub fn nego_key(region_num: RegionId, name: &str) -> u32 {
    crate::crc32_le(region_num as u32 + 32, name.as_bytes())
}

/// What the driver feeds the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// Start heartbeating on a region that [`HeartbeatSet::add_region`] created. `generation`
    /// must be non-zero (the driver draws it at random).
    Start { region: RegionId, generation: u64 },
    /// A [`Output::Read`] finished: the bytes of exactly the slots asked for, or an error text.
    ReadDone {
        region: RegionId,
        result: Result<&'a [u8], String>,
    },
    /// A [`Output::Write`] finished.
    WriteDone {
        region: RegionId,
        result: Result<(), String>,
    },
    /// A timer armed by [`Output::ArmTimer`] fired.
    Timer { region: RegionId, timer: TimerKind },
    /// Stop the region cleanly (slots shut down, generation-0 block written).
    Stop { region: RegionId },
    /// A negotiation message arrived from o2net for this region.
    Nego {
        region: RegionId,
        kind: NegoKind,
        node_num: u8,
    },
}

/// What the core asks the driver to do, or tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Read `slots` slots starting at slot `first_slot` into one buffer; answer with ReadDone.
    Read {
        region: RegionId,
        first_slot: u16,
        slots: u16,
    },
    /// Write `block` into `slot`; answer with WriteDone.
    Write {
        region: RegionId,
        slot: u16,
        block: Vec<u8>,
    },
    /// Fire `timer` at monotonic time `at_ms` (replaces the same timer if armed).
    ArmTimer {
        region: RegionId,
        timer: TimerKind,
        at_ms: u64,
    },
    CancelTimer {
        region: RegionId,
        timer: TimerKind,
    },
    /// `node` became live (first region where it is live).
    NodeUp {
        region: RegionId,
        node: u8,
        generation: u64,
    },
    /// `node` is dead in every region; `generation` is the one it had when it came up.
    NodeDown {
        region: RegionId,
        node: u8,
        generation: u64,
    },
    Log(LogEvent),
    /// Send a negotiation message through o2net to node `to`.
    SendNego {
        region: RegionId,
        to: u8,
        kind: NegoKind,
        node_num: u8,
    },
    /// The region reached steady state (the kernel's `dev` write returns).
    Steady {
        region: RegionId,
    },
    /// The region could not stabilize (or its baseline read failed): start failed with EIO.
    StartAborted {
        region: RegionId,
    },
    /// The region's loop has ended; `clean` if the generation-0 block was written.
    Stopped {
        region: RegionId,
        clean: bool,
    },
    /// Fence this node now (every region has been stopped without a clean stop).
    Fence,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Notice,
    Error,
}

/// What a log line is about, for code that reacts to it (tests, status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogKind {
    AnotherNodeInOurSlot,
    OwnGenerationMismatch,
    OwnSequenceMismatch,
    BadCrc,
    DeadMsMismatch,
    NodeJoinedRegion,
    NodeLeftRegion,
    NodeChangedGeneration,
    ReadError,
    WriteError,
    UnableToStabilize,
    HeartbeatStarted,
    HeartbeatStopped,
    QuorumDevice,
    WriteTimeout,
    FailedRegions,
    Fencing,
    NegoHung,
    NegoAllHung,
    NegoAskMaster,
    NegoReceived,
    NegoBadNode,
    NegoApproved,
}

/// A log line: the kernel's message text (with our device name where it prints `%pg`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEvent {
    pub level: LogLevel,
    pub kind: LogKind,
    pub region: Option<RegionId>,
    pub message: String,
}

impl fmt::Display for LogEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    last_time: u64,
    last_generation: u64,
    changed: u32,
    equal: u32,
    live: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Populating,
    Reading {
        started: u64,
        first: u16,
        count: u16,
    },
    Writing {
        started: u64,
        own_ok: bool,
        membership_change: bool,
    },
    Sleeping,
    FinalWrite,
    Stopped,
}

#[derive(Debug)]
struct Region {
    cfg: RegionConfig,
    slots: Vec<Slot>,
    generation: u64,
    phase: Phase,
    steady_left: u32,
    unsteady_left: u32,
    aborted: bool,
    stop_requested: bool,
    /// hr_stopping: no timer may be armed any more.
    stopping: bool,
    last_hb_failed: bool,
    last_timeout_start: u64,
    live: NodeMap,
    nego: NodeMap,
    timers: [Option<u64>; 3],
    quorum: bool,
    failed: bool,
}

impl Region {
    /// How the kernel names a region in its messages: `name (device)`.
    fn label(&self) -> String {
        format!("{} ({})", self.cfg.name, self.cfg.device)
    }
}

#[derive(Debug)]
struct Globals {
    /// Per node: bit r set when the node is live in region r (`o2hb_live_slots`).
    live_in: Vec<u32>,
    /// Per node: generation when it came up.
    up_generation: Vec<u64>,
}

impl Globals {
    fn live_map(&self) -> NodeMap {
        self.live_in
            .iter()
            .enumerate()
            .filter(|(_, r)| **r != 0)
            .map(|(n, _)| n as u8)
            .collect()
    }
}

/// The heartbeat of one node over up to 32 regions. See the module docs.
#[derive(Debug)]
pub struct HeartbeatSet {
    cfg: SetConfig,
    regions: Vec<Option<Region>>,
    globals: Globals,
    fenced: bool,
}

impl HeartbeatSet {
    pub fn new(cfg: SetConfig) -> Result<HeartbeatSet, Error> {
        if usize::from(cfg.node) >= MAX_NODES {
            return Err(Error::BadNode(u32::from(cfg.node)));
        }
        Ok(HeartbeatSet {
            cfg,
            regions: (0..MAX_REGIONS).map(|_| None).collect(),
            globals: Globals {
                live_in: vec![0; 256],
                up_generation: vec![0; 256],
            },
            fenced: false,
        })
    }

    pub fn config(&self) -> &SetConfig {
        &self.cfg
    }

    /// Adds a region (the configfs `mkdir`); it takes the lowest free region number.
    pub fn add_region(&mut self, cfg: RegionConfig) -> Result<RegionId, Error> {
        if cfg.name.is_empty() || cfg.name.len() > MAX_REGION_NAME_LEN {
            return Err(Error::BadRegionName(cfg.name));
        }
        if u16::from(self.cfg.node) >= cfg.geometry.blocks() {
            return Err(Error::NodeOutsideRegion {
                node: self.cfg.node,
                region: cfg.name,
                blocks: cfg.geometry.blocks(),
            });
        }
        if self
            .regions
            .iter()
            .flatten()
            .any(|r| r.cfg.name == cfg.name)
        {
            return Err(Error::DuplicateRegion(cfg.name));
        }
        let id = self
            .regions
            .iter()
            .position(Option::is_none)
            .ok_or(Error::TooManyRegions)?;
        let blocks = usize::from(cfg.geometry.blocks());
        self.regions[id] = Some(Region {
            cfg,
            slots: vec![Slot::default(); blocks],
            generation: 0,
            phase: Phase::Idle,
            steady_left: 0,
            unsteady_left: 0,
            aborted: false,
            stop_requested: false,
            stopping: false,
            last_hb_failed: false,
            last_timeout_start: 0,
            live: NodeMap::new(),
            nego: NodeMap::new(),
            timers: [None; 3],
            quorum: false,
            failed: false,
        });
        Ok(id)
    }

    /// Forgets a region that has stopped (or never started).
    pub fn remove_region(&mut self, id: RegionId) -> Result<(), Error> {
        match self.regions.get(id).and_then(Option::as_ref) {
            Some(r) if matches!(r.phase, Phase::Idle | Phase::Stopped) => {
                self.regions[id] = None;
                Ok(())
            }
            Some(r) => Err(Error::AlreadyStarted(r.cfg.name.clone())),
            None => Err(Error::NoSuchRegion(id)),
        }
    }

    pub fn region_config(&self, id: RegionId) -> Option<&RegionConfig> {
        self.region(id).map(|r| &r.cfg)
    }

    /// Nodes live in at least one region (the kernel's `o2hb_live_node_bitmap`).
    pub fn live_nodes(&self) -> NodeMap {
        self.globals.live_map()
    }

    /// Nodes live in one region.
    pub fn region_live_nodes(&self, id: RegionId) -> NodeMap {
        self.region(id).map(|r| r.live).unwrap_or_default()
    }

    pub fn quorum_regions(&self) -> Vec<RegionId> {
        self.ids_where(|r| r.quorum)
    }

    pub fn failed_regions(&self) -> Vec<RegionId> {
        self.ids_where(|r| r.failed)
    }

    /// Every region of the set, started or not.
    pub fn region_ids(&self) -> Vec<RegionId> {
        self.ids_where(|_| true)
    }

    /// Regions that reached steady state and are still running.
    pub fn steady_regions(&self) -> Vec<RegionId> {
        self.ids_where(|r| {
            r.steady_left == 0 && r.generation != 0 && !matches!(r.phase, Phase::Stopped)
        })
    }

    pub fn is_fenced(&self) -> bool {
        self.fenced
    }

    /// Whether the region's loop has ended.
    pub fn is_stopped(&self, id: RegionId) -> bool {
        match self.region(id) {
            Some(r) => r.phase == Phase::Stopped,
            None => true,
        }
    }

    fn ids_where(&self, f: impl Fn(&Region) -> bool) -> Vec<RegionId> {
        self.regions
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().filter(|r| f(r)).map(|_| i))
            .collect()
    }

    fn region(&self, id: RegionId) -> Option<&Region> {
        self.regions.get(id).and_then(Option::as_ref)
    }

    /// Feeds one input; returns what to do.
    pub fn handle(&mut self, now: Now, input: Input<'_>) -> Vec<Output> {
        let mut out = Vec::new();
        self.handle_into(now, input, &mut out);
        out
    }

    /// [`HeartbeatSet::handle`] appending to a caller's buffer (no allocation per call).
    pub fn handle_into(&mut self, now: Now, input: Input<'_>, out: &mut Vec<Output>) {
        if self.fenced {
            return;
        }
        match input {
            Input::Start { region, generation } => self.start(now, region, generation, out),
            Input::ReadDone { region, result } => self.read_done(now, region, result, out),
            Input::WriteDone { region, result } => self.write_done(now, region, result, out),
            Input::Timer { region, timer } => self.timer(now, region, timer, out),
            Input::Stop { region } => self.stop(now, region, out),
            Input::Nego {
                region,
                kind,
                node_num,
            } => self.nego(now, region, kind, node_num, out),
        }
    }

    fn start(&mut self, now: Now, id: RegionId, generation: u64, out: &mut Vec<Output>) {
        let global = self.cfg.mode == Mode::Global;
        let region_count = self.regions.iter().flatten().count();
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if reg.phase != Phase::Idle {
            return;
        }
        if generation == 0 {
            // Generation 0 means "left the region"; a start with it could never be seen as live.
            reg.phase = Phase::Stopped;
            out.push(Output::StartAborted { region: id });
            out.push(Output::Stopped {
                region: id,
                clean: false,
            });
            return;
        }
        reg.generation = generation;
        let mut live_threshold = LIVE_THRESHOLD;
        if global && region_count == 1 {
            live_threshold <<= 1;
        }
        reg.steady_left = live_threshold + 1;
        reg.unsteady_left = reg.steady_left * 3;
        reg.last_timeout_start = now.mono_ms;
        reg.phase = Phase::Populating;
        out.push(Output::Read {
            region: id,
            first_slot: 0,
            slots: reg.cfg.geometry.blocks(),
        });
    }

    fn read_done(
        &mut self,
        now: Now,
        id: RegionId,
        result: Result<&[u8], String>,
        out: &mut Vec<Output>,
    ) {
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let bb = reg.cfg.geometry.block_bytes();
        match reg.phase {
            Phase::Populating => {
                let blocks = usize::from(reg.cfg.geometry.blocks());
                match result {
                    Ok(data) if data.len() == blocks * bb => {
                        // Seed every slot from disk, without a CRC check, so stale blocks do not
                        // count as changes (o2hb_populate_slot_data).
                        for (slot, bytes) in reg.slots.iter_mut().zip(data.chunks_exact(bb)) {
                            if let Ok(v) = SlotView::parse(bytes) {
                                slot.last_time = v.block.seq;
                                slot.last_generation = v.block.generation;
                            }
                        }
                        self.begin_iteration(now, id, out);
                    }
                    other => {
                        let why = read_error_text(other.map(|d| d.len()), blocks * bb);
                        let msg = format!("o2hb: read error on device {}: {why}", reg.cfg.device);
                        reg.phase = Phase::Stopped;
                        push_log(out, LogLevel::Error, LogKind::ReadError, Some(id), msg);
                        out.push(Output::StartAborted { region: id });
                        out.push(Output::Stopped {
                            region: id,
                            clean: false,
                        });
                    }
                }
            }
            Phase::Reading {
                started,
                first,
                count,
            } => {
                let want = usize::from(count) * bb;
                match result {
                    Ok(data) if data.len() == want => {
                        self.iterate(now, id, started, first, data, out)
                    }
                    other => {
                        let msg =
                            format!("IO Error {}", read_error_text(other.map(|d| d.len()), want));
                        push_log(out, LogLevel::Error, LogKind::ReadError, Some(id), msg);
                        self.end_iteration(now, id, started, false, false, false, out);
                    }
                }
            }
            _ => {}
        }
    }

    /// The middle of `o2hb_do_disk_heartbeat`: own-slot check, our write, every slot's check.
    fn iterate(
        &mut self,
        now: Now,
        id: RegionId,
        started: u64,
        first: u16,
        data: &[u8],
        out: &mut Vec<Output>,
    ) {
        let me = self.cfg.node;
        let timing = self.cfg.timing;
        let configured = self.configured_with_live();
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let bb = reg.cfg.geometry.block_bytes();
        let slot_bytes = |node: u8| -> Option<&[u8]> {
            let i = usize::from(node).checked_sub(usize::from(first))?;
            data.get(i * bb..(i + 1) * bb)
        };

        let own_ok = match slot_bytes(me) {
            Some(bytes) => check_own_slot(reg, me, bytes, out, id),
            None => false,
        };

        let block = HbBlock {
            seq: timing.seq_at(now.wall_ms),
            node: me,
            generation: reg.generation,
            dead_ms: timing.dead_ms(),
        };
        let mut own = vec![0u8; bb];
        if block.encode_into(&mut own).is_err() {
            return;
        }
        out.push(Output::Write {
            region: id,
            slot: u16::from(me),
            block: own.clone(),
        });

        let mut membership_change = false;
        for node in configured.iter() {
            // Our own slot is checked against what we are writing now, as the kernel checks the
            // buffer it just prepared: that is how our own node comes up.
            let bytes = if node == me {
                Some(own.as_slice())
            } else {
                slot_bytes(node)
            };
            if let Some(bytes) = bytes {
                membership_change |=
                    check_slot(&self.cfg, &mut self.globals, reg, id, node, bytes, out);
            }
        }
        reg.phase = Phase::Writing {
            started,
            own_ok,
            membership_change,
        };
    }

    fn write_done(
        &mut self,
        now: Now,
        id: RegionId,
        result: Result<(), String>,
        out: &mut Vec<Output>,
    ) {
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        match reg.phase {
            Phase::Writing {
                started,
                own_ok,
                membership_change,
            } => {
                if let Err(e) = result {
                    let msg = format!("Write error {e} on device \"{}\"", reg.cfg.device);
                    push_log(out, LogLevel::Error, LogKind::WriteError, Some(id), msg);
                    self.end_iteration(now, id, started, false, false, membership_change, out);
                    return;
                }
                if own_ok {
                    self.set_quorum_device(id, out);
                    self.arm_timeout(now, id, out);
                    if let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) {
                        reg.last_timeout_start = now.mono_ms;
                    }
                }
                self.end_iteration(now, id, started, true, own_ok, membership_change, out);
            }
            Phase::FinalWrite => {
                if let Err(e) = result {
                    let msg = format!("Write error {e} on device \"{}\"", reg.cfg.device);
                    push_log(out, LogLevel::Error, LogKind::WriteError, Some(id), msg);
                }
                self.finish_stopped(id, true, out);
            }
            _ => {}
        }
    }

    /// The tail of `o2hb_do_disk_heartbeat` and of one `o2hb_thread` loop turn.
    #[allow(clippy::too_many_arguments)]
    fn end_iteration(
        &mut self,
        now: Now,
        id: RegionId,
        started: u64,
        ok: bool,
        own_ok: bool,
        membership_change: bool,
        out: &mut Vec<Output>,
    ) {
        let global = self.cfg.mode == Mode::Global;
        let period = self.cfg.timing.period_ms();
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        reg.last_hb_failed = !ok;
        let mut became_steady = false;
        if reg.steady_left != 0 && ok && own_ok && !membership_change {
            reg.steady_left -= 1;
            became_steady = reg.steady_left == 0;
        }
        if reg.steady_left != 0 {
            reg.unsteady_left = reg.unsteady_left.saturating_sub(1);
            if reg.unsteady_left == 0 {
                reg.steady_left = 0;
                reg.aborted = true;
                let msg = format!(
                    "o2hb: Unable to stabilize heartbeat on region {}",
                    reg.label()
                );
                notice(out, id, LogKind::UnableToStabilize, msg);
                out.push(Output::StartAborted { region: id });
                self.finish(now, id, out);
                return;
            }
        }
        if became_steady {
            out.push(Output::Steady { region: id });
            if global {
                let msg = format!("o2hb: Heartbeat started on region {}", reg.label());
                notice(out, id, LogKind::HeartbeatStarted, msg);
            }
        }
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if reg.stop_requested {
            self.finish(now, id, out);
            return;
        }
        let at = (started + period).max(now.mono_ms);
        reg.phase = Phase::Sleeping;
        reg.timers[TimerKind::Iteration.index()] = Some(at);
        out.push(Output::ArmTimer {
            region: id,
            timer: TimerKind::Iteration,
            at_ms: at,
        });
    }

    fn begin_iteration(&mut self, now: Now, id: RegionId, out: &mut Vec<Output>) {
        let configured = self.configured_with_live();
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let blocks = reg.cfg.geometry.blocks();
        let in_region: NodeMap = configured
            .iter()
            .filter(|n| u16::from(*n) < blocks)
            .collect();
        // Our own node is always configured (add_region checked it fits), so the map is not empty.
        let (Some(lo), Some(hi)) = (in_region.first(), in_region.last()) else {
            return;
        };
        let count = u16::from(hi) - u16::from(lo) + 1;
        reg.phase = Phase::Reading {
            started: now.mono_ms,
            first: u16::from(lo),
            count,
        };
        out.push(Output::Read {
            region: id,
            first_slot: u16::from(lo),
            slots: count,
        });
    }

    /// Configured nodes, our own, and every live node (a live node that was unconfigured must
    /// still be read so that it can go down).
    fn configured_with_live(&self) -> NodeMap {
        let mut map = self.cfg.configured.union(&self.globals.live_map());
        map.insert(self.cfg.node);
        map
    }

    fn timer(&mut self, now: Now, id: RegionId, timer: TimerKind, out: &mut Vec<Output>) {
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        match reg.timers[timer.index()] {
            Some(at) if now.mono_ms >= at => reg.timers[timer.index()] = None,
            _ => return,
        }
        match timer {
            TimerKind::Iteration => {
                if reg.phase == Phase::Sleeping {
                    self.begin_iteration(now, id, out);
                }
            }
            TimerKind::WriteTimeout => self.write_timeout(now, id, out),
            TimerKind::NegoTimeout => self.nego_timeout(now, id, out),
        }
    }

    fn arm_timeout(&mut self, now: Now, id: RegionId, out: &mut Vec<Output>) {
        let global = self.cfg.mode == Mode::Global;
        let timing = self.cfg.timing;
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if reg.stopping || reg.steady_left != 0 {
            return;
        }
        if global {
            reg.failed = false;
        }
        let w = now.mono_ms + timing.max_write_timeout_ms();
        let n = now.mono_ms + timing.nego_timeout_ms();
        reg.timers[TimerKind::WriteTimeout.index()] = Some(w);
        reg.timers[TimerKind::NegoTimeout.index()] = Some(n);
        reg.nego = NodeMap::new();
        out.push(Output::ArmTimer {
            region: id,
            timer: TimerKind::WriteTimeout,
            at_ms: w,
        });
        out.push(Output::ArmTimer {
            region: id,
            timer: TimerKind::NegoTimeout,
            at_ms: n,
        });
    }

    fn set_quorum_device(&mut self, id: RegionId, out: &mut Vec<Output>) {
        if self.cfg.mode != Mode::Global {
            return;
        }
        let live = self.globals.live_map();
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if reg.stop_requested || reg.steady_left != 0 || reg.quorum || reg.live != live {
            return;
        }
        reg.quorum = true;
        let msg = format!("o2hb: Region {} is now a quorum device", reg.label());
        notice(out, id, LogKind::QuorumDevice, msg);
    }

    fn write_timeout(&mut self, now: Now, id: RegionId, out: &mut Vec<Output>) {
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        let msg = format!(
            "Heartbeat write timeout to device {} after {} milliseconds",
            reg.cfg.device,
            now.mono_ms.saturating_sub(reg.last_timeout_start)
        );
        if self.cfg.mode == Mode::Global && reg.quorum {
            reg.failed = true;
        }
        push_log(out, LogLevel::Error, LogKind::WriteTimeout, Some(id), msg);
        if self.cfg.mode == Mode::Global {
            let failed = self.failed_regions().len();
            let quorum = self.quorum_regions().len();
            let msg = format!("Number of regions {quorum}, failed regions {failed}");
            push_log(out, LogLevel::Debug, LogKind::FailedRegions, Some(id), msg);
            if failed * 2 < quorum {
                return;
            }
        }
        self.fence(out);
    }

    /// `o2quo_fence_self` with the default `reset` method: every region stops at once, with no
    /// generation-0 write, and the driver carries out the fence action.
    fn fence(&mut self, out: &mut Vec<Output>) {
        let msg = "*** ocfs2 is very sorry to be fencing this system by restarting ***".to_string();
        push_log(out, LogLevel::Error, LogKind::Fencing, None, msg);
        for (id, slot) in self.regions.iter_mut().enumerate() {
            let Some(reg) = slot.as_mut() else { continue };
            if reg.phase == Phase::Stopped || reg.phase == Phase::Idle {
                continue;
            }
            reg.stopping = true;
            for (k, t) in [
                TimerKind::Iteration,
                TimerKind::WriteTimeout,
                TimerKind::NegoTimeout,
            ]
            .into_iter()
            .enumerate()
            {
                if reg.timers[k].take().is_some() {
                    out.push(Output::CancelTimer {
                        region: id,
                        timer: t,
                    });
                }
            }
            reg.phase = Phase::Stopped;
            out.push(Output::Stopped {
                region: id,
                clean: false,
            });
        }
        self.fenced = true;
        out.push(Output::Fence);
    }

    fn nego_timeout(&mut self, now: Now, id: RegionId, out: &mut Vec<Output>) {
        let me = self.cfg.node;
        let live = self.globals.live_map();
        let secs = self.cfg.timing.nego_timeout_ms() / 1000;
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if reg.last_hb_failed {
            return;
        }
        let Some(master) = live.first() else { return };
        let (name, dev) = (reg.cfg.name.clone(), reg.cfg.device.clone());
        if master == me {
            if !reg.nego.contains(me) {
                reg.nego.insert(me);
                let msg =
                    format!("o2hb: node {me} hb write hung for {secs}s on region {name} ({dev}).");
                notice(out, id, LogKind::NegoHung, msg);
            }
            let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
                return;
            };
            if reg.nego != live {
                if !reg.stopping {
                    let at = now.mono_ms + self.cfg.timing.nego_recheck_ms();
                    reg.timers[TimerKind::NegoTimeout.index()] = Some(at);
                    out.push(Output::ArmTimer {
                        region: id,
                        timer: TimerKind::NegoTimeout,
                        at_ms: at,
                    });
                }
                return;
            }
            let msg =
                format!("o2hb: all nodes hb write hung, maybe region {name} ({dev}) is down.");
            notice(out, id, LogKind::NegoAllHung, msg);
            self.arm_timeout(now, id, out);
            for node in live.iter().filter(|n| *n != master) {
                out.push(Output::SendNego {
                    region: id,
                    to: node,
                    kind: NegoKind::Approve,
                    node_num: me,
                });
            }
        } else {
            let msg = format!(
                "o2hb: node {me} hb write hung for {secs}s on region {name} ({dev}), negotiate timeout with node {master}."
            );
            notice(out, id, LogKind::NegoAskMaster, msg);
            out.push(Output::SendNego {
                region: id,
                to: master,
                kind: NegoKind::Timeout,
                node_num: me,
            });
        }
    }

    fn nego(
        &mut self,
        now: Now,
        id: RegionId,
        kind: NegoKind,
        node_num: u8,
        out: &mut Vec<Output>,
    ) {
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        if matches!(reg.phase, Phase::Idle | Phase::Stopped) {
            return;
        }
        let (name, dev) = (reg.cfg.name.clone(), reg.cfg.device.clone());
        match kind {
            NegoKind::Timeout => {
                let msg = format!("o2hb: receive negotiate timeout message from node {node_num} on region {name} ({dev}).");
                if usize::from(node_num) < MAX_NODES {
                    reg.nego.insert(node_num);
                    notice(out, id, LogKind::NegoReceived, msg);
                } else {
                    notice(out, id, LogKind::NegoReceived, msg);
                    let msg = "got nego timeout message from bad node.".to_string();
                    push_log(out, LogLevel::Error, LogKind::NegoBadNode, Some(id), msg);
                }
            }
            NegoKind::Approve => {
                let msg = format!(
                    "o2hb: negotiate timeout approved by master node on region {name} ({dev})."
                );
                notice(out, id, LogKind::NegoApproved, msg);
                self.arm_timeout(now, id, out);
            }
        }
    }

    fn stop(&mut self, now: Now, id: RegionId, out: &mut Vec<Output>) {
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        match reg.phase {
            Phase::Idle => {
                reg.phase = Phase::Stopped;
                out.push(Output::Stopped {
                    region: id,
                    clean: true,
                });
            }
            Phase::Sleeping => {
                reg.timers[TimerKind::Iteration.index()] = None;
                out.push(Output::CancelTimer {
                    region: id,
                    timer: TimerKind::Iteration,
                });
                self.finish(now, id, out);
            }
            Phase::Populating | Phase::Reading { .. } | Phase::Writing { .. } => {
                // The kernel's thread finishes the iteration in progress before it exits.
                reg.stop_requested = true;
                reg.stopping = true;
            }
            Phase::FinalWrite | Phase::Stopped => {}
        }
    }

    /// The end of `o2hb_thread`: disarm timeouts, shut every slot down (DOWN for nodes live
    /// only here), then write the generation-0 block unless the start was aborted.
    fn finish(&mut self, now: Now, id: RegionId, out: &mut Vec<Output>) {
        let me = self.cfg.node;
        let timing = self.cfg.timing;
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        reg.stopping = true;
        for t in [TimerKind::WriteTimeout, TimerKind::NegoTimeout] {
            if reg.timers[t.index()].take().is_some() {
                out.push(Output::CancelTimer {
                    region: id,
                    timer: t,
                });
            }
        }
        if reg.phase == Phase::Populating {
            reg.aborted = true;
        }
        for node in 0..reg.slots.len() {
            let slot = &mut reg.slots[node];
            if !slot.live {
                continue;
            }
            slot.live = false;
            let node = node as u8;
            let bit = 1u32 << id;
            let was = self.globals.live_in[usize::from(node)];
            self.globals.live_in[usize::from(node)] = was & !bit;
            if was == bit {
                let generation = self.globals.up_generation[usize::from(node)];
                out.push(Output::NodeDown {
                    region: id,
                    node,
                    generation,
                });
            }
        }
        if reg.aborted {
            self.finish_stopped(id, false, out);
            return;
        }
        let block = HbBlock {
            seq: timing.seq_at(now.wall_ms),
            node: me,
            generation: 0,
            dead_ms: timing.dead_ms(),
        };
        match block.to_bytes(reg.cfg.geometry.block_bytes()) {
            Ok(bytes) => {
                reg.phase = Phase::FinalWrite;
                out.push(Output::Write {
                    region: id,
                    slot: u16::from(me),
                    block: bytes,
                });
            }
            Err(_) => self.finish_stopped(id, false, out),
        }
    }

    fn finish_stopped(&mut self, id: RegionId, clean: bool, out: &mut Vec<Output>) {
        let global = self.cfg.mode == Mode::Global;
        let Some(reg) = self.regions.get_mut(id).and_then(Option::as_mut) else {
            return;
        };
        reg.phase = Phase::Stopped;
        reg.quorum = false;
        reg.failed = false;
        if global {
            let what = if reg.aborted {
                "start aborted"
            } else {
                "stopped"
            };
            let msg = format!("o2hb: Heartbeat {what} on region {}", reg.label());
            notice(out, id, LogKind::HeartbeatStopped, msg);
        }
        out.push(Output::Stopped { region: id, clean });
    }
}

/// A notice about region `id`, the level of every region event the kernel logs.
fn notice(out: &mut Vec<Output>, id: RegionId, kind: LogKind, message: String) {
    push_log(out, LogLevel::Notice, kind, Some(id), message);
}

fn push_log(
    out: &mut Vec<Output>,
    level: LogLevel,
    kind: LogKind,
    region: Option<RegionId>,
    message: String,
) {
    out.push(Output::Log(LogEvent {
        level,
        kind,
        region,
        message,
    }));
}

fn read_error_text(got: Result<usize, String>, want: usize) -> String {
    match got {
        Ok(len) => format!("short read: {len} bytes of {want}"),
        Err(e) => e,
    }
}

/// `o2hb_check_own_slot`: our slot must hold exactly what we wrote last time.
fn check_own_slot(reg: &Region, me: u8, bytes: &[u8], out: &mut Vec<Output>, id: RegionId) -> bool {
    let Some(slot) = reg.slots.get(usize::from(me)) else {
        return false;
    };
    // Our first write has not happened yet: nothing to compare.
    if slot.last_time == 0 {
        return false;
    }
    let Ok(v) = SlotView::parse(bytes) else {
        return false;
    };
    let b = v.block;
    if b.seq == slot.last_time && b.generation == slot.last_generation && b.node == me {
        return true;
    }
    let (kind, what) = if b.node != me {
        (
            LogKind::AnotherNodeInOurSlot,
            "Another node is heartbeating on device",
        )
    } else if b.generation != slot.last_generation {
        (
            LogKind::OwnGenerationMismatch,
            "Heartbeat generation mismatch on device",
        )
    } else {
        (
            LogKind::OwnSequenceMismatch,
            "Heartbeat sequence mismatch on device",
        )
    };
    let message = format!(
        "{what} ({}): expected({me}:0x{:x}, 0x{:x}), ondisk({}:0x{:x}, 0x{:x})",
        reg.cfg.device, slot.last_generation, slot.last_time, b.node, b.generation, b.seq
    );
    out.push(Output::Log(LogEvent {
        level: LogLevel::Error,
        kind,
        region: Some(id),
        message,
    }));
    false
}

/// `o2hb_check_slot`: one slot's liveness rules (docs/o2hb.md §5). Returns true on a membership change
/// (a node UP or DOWN event).
fn check_slot(
    cfg: &SetConfig,
    globals: &mut Globals,
    reg: &mut Region,
    id: RegionId,
    node: u8,
    bytes: &[u8],
    out: &mut Vec<Output>,
) -> bool {
    let n = usize::from(node);
    let log = |out: &mut Vec<Output>, level, kind, message: String| {
        out.push(Output::Log(LogEvent {
            level,
            kind,
            region: Some(id),
            message,
        }));
    };
    if !cfg.configured.contains(node) && node != cfg.node && globals.live_in[n] == 0 {
        return false;
    }
    let Some(slot) = reg.slots.get_mut(n) else {
        return false;
    };
    let Ok(view) = SlotView::parse(bytes) else {
        return false;
    };
    let mut gen_changed = false;
    let dev = &reg.cfg.device;

    if !view.crc_ok {
        // A freshly formatted area has no CRC: only a live node's bad CRC is worth a word.
        if !slot.live {
            return false;
        }
        log(
            out,
            LogLevel::Error,
            LogKind::BadCrc,
            format!("Node {node} has written a bad crc to {dev}"),
        );
        let b = view.block;
        log(
            out,
            LogLevel::Error,
            LogKind::BadCrc,
            format!(
                "Dump slot information: seq = 0x{:x}, node = {}, cksum = 0x{:x}, generation 0x{:x}",
                b.seq, b.node, view.cksum, b.generation
            ),
        );
        slot.equal += 1;
    } else {
        let b = view.block;
        if slot.last_time != b.seq {
            slot.changed += 1;
        } else {
            slot.equal += 1;
        }
        slot.last_time = b.seq;
        if slot.last_generation != b.generation {
            gen_changed = true;
            slot.equal = 0;
            log(
                out,
                LogLevel::Debug,
                LogKind::NodeChangedGeneration,
                format!(
                    "Node {node} changed generation (0x{:x} to 0x{:x})",
                    slot.last_generation, b.generation
                ),
            );
        }
        slot.last_generation = b.generation;
    }

    let bit = 1u32 << id;
    if !slot.live && slot.changed >= LIVE_THRESHOLD {
        log(
            out,
            LogLevel::Debug,
            LogKind::NodeJoinedRegion,
            format!(
                "Node {node} (id 0x{:x}) joined my region",
                slot.last_generation
            ),
        );
        reg.live.insert(node);
        let mut changed = false;
        if globals.live_in[n] == 0 {
            globals.up_generation[n] = slot.last_generation;
            out.push(Output::NodeUp {
                region: id,
                node,
                generation: slot.last_generation,
            });
            changed = true;
        }
        globals.live_in[n] |= bit;
        slot.live = true;
        slot.equal = 0;
        let ours = cfg.timing.dead_ms();
        let theirs = view.block.dead_ms;
        if view.crc_ok && theirs != 0 && theirs != ours {
            log(
                out,
                LogLevel::Error,
                LogKind::DeadMsMismatch,
                format!(
                    "Node {node} on device {dev} has a dead count of {theirs} ms, but our count is {ours} ms.\nPlease double check your configuration values for 'O2CB_HEARTBEAT_THRESHOLD'"
                ),
            );
        }
        return changed;
    }
    if !slot.live {
        return false;
    }
    if slot.equal >= cfg.timing.dead_threshold() || gen_changed {
        log(
            out,
            LogLevel::Debug,
            LogKind::NodeLeftRegion,
            format!("Node {node} left my region"),
        );
        reg.live.remove(node);
        slot.live = false;
        let mut changed = false;
        globals.live_in[n] &= !bit;
        if globals.live_in[n] == 0 {
            out.push(Output::NodeDown {
                region: id,
                node,
                generation: globals.up_generation[n],
            });
            changed = true;
        }
        if !gen_changed {
            slot.changed = 0;
        }
        return changed;
    }
    if slot.changed != 0 {
        slot.changed = 0;
        slot.equal = 0;
    }
    false
}
