//! `o2cb heartbeat`: make, inspect and run disk heartbeat regions.
//!
//! - `format FILE [--block-bytes 512|4096] [--blocks N]` creates a plain region file.
//! - `dump REGION [--watch] [--interval-ms MS] [--all]` decodes every slot and tells, from two
//!   reads `interval` apart, which writers are live; `--raw [--block-bytes B] [--start-block S]`
//!   reads a bare image of slots instead (a captured region).
//! - `run REGION... --node N [--period-ms MS] [--dead-threshold T] [--fence-command CMD]
//!   [--mode local|global] [--cluster NAME]` heartbeats in the foreground until SIGINT/SIGTERM, then stops
//!   cleanly (generation-0 block).
//!
//! REGION is a region file or an OCFS2 volume (its heartbeat system file), detected by magic.
//! `start`/`stop` (ocfs2_hb_ctl's job) need the node daemon and are not here yet.

use crate::Global;
use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use o2hb::disk::{BlockIo, DirectFile};
use o2hb::driver::{DriverConfig, FenceAction, HbEvent, Heartbeat, FENCE_EXIT_STATUS};
use o2hb::source::{RegionKind, RegionSource};
use o2hb::{Mode, NodeMap, SlotView, Timing};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "o2cb heartbeat",
    about = "Disk heartbeat regions",
    // start and stop are parsed by cmd_hbctl before this parser runs; say so
    // here, or `o2cb heartbeat --help` hides them.
    after_help = "Also, for a running node (what ocfs2_hb_ctl does):\n  \
                  o2cb heartbeat start REGION [CLUSTER]   start heartbeat on a local-mode region\n  \
                  o2cb heartbeat stop REGION [CLUSTER]    stop it"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a plain heartbeat region file: a header block, then one slot per node.
    Format {
        file: PathBuf,
        /// Slot size in bytes (512..4096, a power of two).
        #[arg(long, default_value_t = 512)]
        block_bytes: u64,
        /// Number of slots (1..255).
        #[arg(long, default_value_t = o2hb::regionfile::DEFAULT_BLOCKS)]
        blocks: u64,
    },
    /// Decode every slot of a region and show which writers are live.
    Dump {
        region: PathBuf,
        /// Keep reading and print every change.
        #[arg(long)]
        watch: bool,
        /// Time between the two reads that tell live from dead (ms).
        #[arg(long, default_value_t = 2000)]
        interval_ms: u64,
        /// Also list empty (all-zero) slots.
        #[arg(long)]
        all: bool,
        /// The file is a bare image of slots (a captured region), not a region file or volume.
        #[arg(long)]
        raw: bool,
        /// With --raw: slot size.
        #[arg(long, default_value_t = 512, requires = "raw")]
        block_bytes: u64,
        /// With --raw: slot 0 is at this block (in block_bytes units).
        #[arg(long, default_value_t = 0, requires = "raw")]
        start_block: u64,
    },
    /// Heartbeat on one or more regions in the foreground.
    Run {
        #[arg(required = true, num_args = 1..=32)]
        regions: Vec<PathBuf>,
        /// This node's number (its slot).
        #[arg(long)]
        node: u8,
        /// Iteration period in ms (the kernel's is 2000; shorter for tests and demos).
        #[arg(long, default_value_t = 2000)]
        period_ms: u64,
        /// Unchanged reads before a node is declared dead (O2CB_HEARTBEAT_THRESHOLD).
        #[arg(long, default_value_t = 31)]
        dead_threshold: u32,
        /// Fence by running this shell command instead of exiting at once.
        #[arg(long)]
        fence_command: Option<String>,
        /// Heartbeat mode: local (default) or global.
        #[arg(long, default_value = "local", value_parser = ["local", "global"])]
        mode: String,
        /// Only this cluster's nodes (from the cluster.conf of --config-file) are configured:
        /// slots of other nodes are ignored, as the kernel ignores unconfigured nodes.
        /// Without it every slot counts.
        #[arg(long)]
        cluster: Option<String>,
    },
}

pub fn run(global: &Global, args: &[String]) -> anyhow::Result<ExitCode> {
    let cli = match Cli::try_parse_from(
        std::iter::once("o2cb heartbeat".to_string()).chain(args.iter().cloned()),
    ) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return Ok(ExitCode::from(if e.use_stderr() { 1 } else { 0 }));
        }
    };
    match cli.cmd {
        Cmd::Format {
            file,
            block_bytes,
            blocks,
        } => format(&file, block_bytes, blocks),
        Cmd::Dump {
            region,
            watch,
            interval_ms,
            all,
            raw,
            block_bytes,
            start_block,
        } => {
            let target = if raw {
                DumpTarget::raw(&region, block_bytes, start_block)?
            } else {
                DumpTarget::region(&region)?
            };
            dump(&target, watch, interval_ms, all)
        }
        Cmd::Run {
            regions,
            node,
            period_ms,
            dead_threshold,
            fence_command,
            mode,
            cluster,
        } => {
            let mode = if mode == "global" {
                Mode::Global
            } else {
                Mode::Local
            };
            let configured = match cluster {
                Some(name) => Some(cluster_nodes(&global.config_file, &name, node)?),
                None => None,
            };
            let settings = RunSettings {
                node,
                period_ms,
                dead_threshold,
                fence_command,
                mode,
                configured,
            };
            run_heartbeat(&regions, settings)
        }
    }
}

fn format(file: &Path, block_bytes: u64, blocks: u64) -> anyhow::Result<ExitCode> {
    let h = o2hb::regionfile::format(file, block_bytes, blocks)?;
    let g = h.geometry;
    println!(
        "Formatted heartbeat region {} on {}: block_bytes {}, start_block {}, blocks {}",
        h.uuid,
        file.display(),
        g.block_bytes(),
        g.start_block(),
        g.blocks()
    );
    Ok(ExitCode::SUCCESS)
}

fn open_region(path: &Path) -> anyhow::Result<RegionSource> {
    Ok(o2hb::source::open(path)?)
}

/// What `dump` reads: where the slots are and how to present the region.
struct DumpTarget {
    name: String,
    path: PathBuf,
    kind: String,
    block_bytes: usize,
    start_block: u64,
    blocks: u16,
}

impl DumpTarget {
    fn region(path: &Path) -> anyhow::Result<DumpTarget> {
        let src: RegionSource = open_region(path)?;
        let kind = match &src.kind {
            RegionKind::RegionFile => "region file".to_string(),
            RegionKind::Ocfs2(hb) => format!(
                "OCFS2 volume, heartbeat inode {}, cluster {}{}",
                hb.inode_blkno,
                hb.superblock.cluster_name.as_deref().unwrap_or("-"),
                if hb.superblock.global_heartbeat {
                    ", global heartbeat"
                } else {
                    ""
                }
            ),
        };
        let g = src.geometry;
        Ok(DumpTarget {
            name: src.name,
            path: src.path,
            kind,
            block_bytes: g.block_bytes(),
            start_block: g.start_block(),
            blocks: g.blocks(),
        })
    }

    /// A bare slot image: as many slots (up to 255) as the file holds after `start_block`.
    fn raw(path: &Path, block_bytes: u64, start_block: u64) -> anyhow::Result<DumpTarget> {
        if !(512..=4096).contains(&block_bytes) || !block_bytes.is_power_of_two() {
            bail!("invalid block_bytes {block_bytes}: must be a power of two from 512 to 4096");
        }
        let len = std::fs::metadata(path)
            .with_context(|| format!("{}", path.display()))?
            .len();
        let slots = (len / block_bytes)
            .saturating_sub(start_block)
            .min(o2hb::MAX_NODES as u64);
        if slots == 0 {
            bail!(
                "{}: no {block_bytes}-byte slot after block {start_block} ({len} bytes)",
                path.display()
            );
        }
        Ok(DumpTarget {
            name: "-".into(),
            path: path.to_path_buf(),
            kind: "raw slots".into(),
            block_bytes: block_bytes as usize,
            start_block,
            blocks: slots as u16,
        })
    }
}

fn read_slots(t: &DumpTarget, dev: &mut DirectFile) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0u8; t.block_bytes * usize::from(t.blocks)];
    dev.read_at(t.start_block * t.block_bytes as u64, &mut buf)
        .with_context(|| format!("{}: reading {} slots", t.path.display(), t.blocks))?;
    Ok(buf)
}

/// How a slot looks from two reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Empty,
    BadCrc,
    /// Generation 0: the writer stopped cleanly.
    Stopped,
    Live,
    Dead,
}

impl SlotState {
    fn label(self) -> &'static str {
        match self {
            SlotState::Empty => "empty",
            SlotState::BadCrc => "bad-crc",
            SlotState::Stopped => "stopped",
            SlotState::Live => "live",
            SlotState::Dead => "dead",
        }
    }
}

fn slot_state(before: &[u8], after: &[u8]) -> SlotState {
    if after.iter().all(|b| *b == 0) {
        return SlotState::Empty;
    }
    let (Ok(a), Ok(b)) = (SlotView::parse(before), SlotView::parse(after)) else {
        return SlotState::BadCrc;
    };
    if !b.crc_ok {
        SlotState::BadCrc
    } else if b.block.generation == 0 {
        SlotState::Stopped
    } else if a.block.seq != b.block.seq || a.block.generation != b.block.generation {
        SlotState::Live
    } else {
        SlotState::Dead
    }
}

const HEADER: &str =
    "slot  node  seq                   generation          cksum       crc   dead_ms  state";

fn slot_line(slot: usize, bytes: &[u8], state: SlotState) -> String {
    match SlotView::parse(bytes) {
        Ok(v) => format!(
            "{slot:>4}  {:>4}  {:<20}  0x{:016x}  0x{:08x}  {:<4}  {:>7}  {}",
            v.block.node,
            v.block.seq,
            v.block.generation,
            v.cksum,
            if v.crc_ok { "good" } else { "bad" },
            v.block.dead_ms,
            state.label()
        ),
        Err(e) => format!("{slot:>4}  {e}"),
    }
}

fn dump(t: &DumpTarget, watch: bool, interval_ms: u64, all: bool) -> anyhow::Result<ExitCode> {
    let mut dev = DirectFile::open_read_only(&t.path)
        .with_context(|| format!("{}: open", t.path.display()))?;
    let bb = t.block_bytes;
    println!(
        "Region {} on {} ({}): block_bytes {}, start_block {}, blocks {}",
        t.name,
        t.path.display(),
        t.kind,
        bb,
        t.start_block,
        t.blocks
    );
    let interval = Duration::from_millis(interval_ms);
    let mut before = read_slots(t, &mut dev)?;
    std::thread::sleep(interval);
    let mut after = read_slots(t, &mut dev)?;
    println!("{HEADER}");
    let mut states = Vec::new();
    let mut hidden = 0;
    for (slot, (a, b)) in before
        .chunks_exact(bb)
        .zip(after.chunks_exact(bb))
        .enumerate()
    {
        let state = slot_state(a, b);
        states.push(state);
        if state == SlotState::Empty && !all {
            hidden += 1;
            continue;
        }
        println!("{}", slot_line(slot, b, state));
    }
    if hidden > 0 {
        println!("({hidden} empty slots not shown)");
    }
    let _ = std::io::stdout().flush();
    if !watch {
        return Ok(ExitCode::SUCCESS);
    }
    // --watch runs until interrupted (or until the region can no longer be read).
    loop {
        before = after;
        std::thread::sleep(interval);
        after = read_slots(t, &mut dev)?;
        for (slot, (a, b)) in before
            .chunks_exact(bb)
            .zip(after.chunks_exact(bb))
            .enumerate()
        {
            let state = slot_state(a, b);
            let gen_of = |x: &[u8]| SlotView::parse(x).map(|v| v.block.generation).unwrap_or(0);
            if states.get(slot) != Some(&state) || gen_of(a) != gen_of(b) {
                println!("{}", slot_line(slot, b, state));
                if let Some(s) = states.get_mut(slot) {
                    *s = state;
                }
            }
        }
        let _ = std::io::stdout().flush();
    }
}

/// The nodes of `cluster` in the cluster.conf at `path`; `node` must be one of them.
fn cluster_nodes(path: &Path, cluster: &str, node: u8) -> anyhow::Result<NodeMap> {
    let conf = o2nm::ClusterConf::load(path)
        .with_context(|| format!("{}: reading the cluster configuration", path.display()))?;
    let stanza = conf
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .with_context(|| format!("{}: no cluster named {cluster}", path.display()))?;
    let nodes: NodeMap = stanza
        .nodes
        .iter()
        .filter_map(|n| u8::try_from(n.number).ok())
        .filter(|n| usize::from(*n) < o2hb::MAX_NODES)
        .collect();
    if !nodes.contains(node) {
        bail!(
            "{}: node {node} is not a node of cluster {cluster}",
            path.display()
        );
    }
    Ok(nodes)
}

struct RunSettings {
    node: u8,
    period_ms: u64,
    dead_threshold: u32,
    fence_command: Option<String>,
    mode: Mode,
    /// Configured nodes (None: every slot).
    configured: Option<NodeMap>,
}

fn run_heartbeat(paths: &[PathBuf], settings: RunSettings) -> anyhow::Result<ExitCode> {
    let RunSettings {
        node,
        period_ms,
        dead_threshold,
        fence_command,
        mode,
        configured,
    } = settings;
    crate::daemon::init_tracing();
    if usize::from(node) >= o2hb::MAX_NODES {
        bail!("node number {node} is out of range (0 to 254)");
    }
    let sources = paths
        .iter()
        .map(|p| open_region(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut cfg = DriverConfig::new(node);
    cfg.mode = mode;
    cfg.timing = Timing::new(period_ms, dead_threshold)?;
    if let Some(nodes) = configured {
        cfg.configured = nodes;
    }
    if let Some(cmd) = fence_command {
        cfg.fence = FenceAction::Command(cmd);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let hb = Heartbeat::start(cfg)?;
    let mut events = hb.subscribe();
    let (mut term, mut int) = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;
    // Regions start on a helper thread (each start waits for steady state, which may take
    // long or hang on a dead device) while this one keeps answering signals and printing events.
    let outcome = std::thread::scope(|scope| {
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let hb_ref = &hb;
        let sources = &sources;
        scope.spawn(move || {
            for src in sources {
                let res = hb_ref.start_region(src).map(|_| ());
                let failed = res.is_err();
                let _ = started_tx.send((src, res));
                if failed {
                    break;
                }
            }
        });
        rt.block_on(async {
            let mut starting = true;
            loop {
                tokio::select! {
                    _ = term.recv() => break Outcome::Signal,
                    _ = int.recv() => break Outcome::Signal,
                    st = started.recv(), if starting => match st {
                        Some((src, Ok(()))) => {
                            println!("heartbeat started on region {} ({}) as node {node}", src.name, src.path.display());
                        }
                        Some((src, Err(e))) => {
                            break Outcome::StartFailed(anyhow::Error::new(e).context(format!("{}: region {}", src.path.display(), src.name)));
                        }
                        None => starting = false,
                    },
                    ev = events.recv() => match ev {
                        Some(HbEvent::NodeUp { node, generation, region }) => {
                            println!("node {node} up, generation 0x{generation:016x}, region {region}");
                        }
                        Some(HbEvent::NodeDown { node, generation, region }) => {
                            println!("node {node} down, generation 0x{generation:016x}, region {region}");
                        }
                        Some(HbEvent::Fenced) => break Outcome::Fenced,
                        None => break Outcome::Signal,
                    },
                }
                let _ = std::io::stdout().flush();
            }
        })
        // A start still waiting for steady state ends with an error once the regions stop.
        .stop_driver_if_needed(&hb)
    });
    match outcome {
        Outcome::Fenced => {
            println!("node {node} fenced");
            Ok(ExitCode::from(FENCE_EXIT_STATUS as u8))
        }
        Outcome::StartFailed(e) => {
            hb.shutdown();
            Err(e)
        }
        Outcome::Signal => {
            hb.shutdown();
            println!("heartbeat stopped cleanly");
            Ok(ExitCode::SUCCESS)
        }
    }
}

enum Outcome {
    Signal,
    Fenced,
    StartFailed(anyhow::Error),
}

impl Outcome {
    /// Before the scope joins the start thread, make sure it cannot stay blocked: stop the
    /// driver unless the heartbeat should keep running (it never should past this point).
    fn stop_driver_if_needed(self, hb: &Heartbeat) -> Outcome {
        if !matches!(self, Outcome::Fenced) {
            hb.stop();
        }
        self
    }
}
