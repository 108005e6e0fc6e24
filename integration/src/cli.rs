//! `o2cb sim`: run the simulator from the command line and report like a test tool.
//!
//! One seed prints the fault plan, a per-node summary table and each
//! checker's tally; a seed range runs the seeds on every core and prints one
//! line per seed that broke a rule. On a violation the report gives the seed,
//! the rule broken, the trace window just before it (for the nodes
//! involved, recorded by replaying the seed with tracing on) and the exact
//! command that replays it. [`run`] returns whether every run was clean, so
//! the command can exit non-zero.

use crate::check::Violation;
use crate::config::{Sabotage, SimConfig, Timing, TraceMode, Workload};
use crate::error::SimError;
use crate::faults::FaultSet;
use crate::sim::{Outcome, Simulation};
use crate::stack::NodeId;
use crate::time::SimTime;
use crate::trace::Detail;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::ops::Range;
use std::time::{Duration, Instant};

/// Arguments of `o2cb sim`.
#[derive(Clone, Debug, clap::Args)]
pub struct SimArgs {
    /// Number of nodes (1-255), numbered from 0.
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// Heartbeat regions (1-32): 1 is the kernel's local mode, more run global heartbeat mode.
    #[arg(long, default_value_t = 1)]
    pub regions: u8,
    /// The seed of a single run.
    #[arg(long, default_value_t = 1, conflicts_with = "seeds")]
    pub seed: u64,
    /// A range of seeds A..B (B excluded), run in parallel; only failures are detailed.
    #[arg(long)]
    pub seeds: Option<String>,
    /// Fault kinds to draw from: all, none, or a list of
    /// partition,oneway,drop,stall,slow,corrupt,crash,pause,leave,migcrash,migcut (leave: a
    /// node's DLM leaves its lock domain cleanly and joins again, with --workload locks;
    /// migcrash: a leave and, milliseconds into it while resources may be migrating, a crash
    /// of the leaving node or of another member; migcut: a leave with a likely migration
    /// target's traffic to the others cut one way, and a crash of the leaving node, the cut
    /// healing after the others declared it dead).
    #[arg(long, default_value = "all")]
    pub faults: String,
    /// Let fault episodes overlap (compound failures); overlapped episodes are judged less strictly.
    #[arg(long)]
    pub overlap: bool,
    /// Virtual length of each run (e.g. 600s, 20m, 1h, 1500ms).
    #[arg(long, default_value = "900s")]
    pub duration: String,
    /// Print the trace of a single run: readable (for people) or compact (for tools).
    #[arg(long, num_args = 0..=1, default_missing_value = "readable")]
    pub trace: Option<String>,
    /// Only trace these nodes (comma-separated numbers); world-wide records are always shown.
    #[arg(long)]
    pub trace_nodes: Option<String>,
    /// Only trace from this many seconds of virtual time on.
    #[arg(long)]
    pub trace_from: Option<f64>,
    /// Only trace up to this many seconds of virtual time.
    #[arg(long)]
    pub trace_to: Option<f64>,
    /// Workload: ping (requests between random nodes), locks (o2dlm clients on every node
    /// contend for a few lock names) or idle.
    #[arg(long, default_value = "ping")]
    pub workload: String,
    /// Heartbeat dead threshold (iterations).
    #[arg(long, default_value_t = 31)]
    pub dead_threshold: u32,
    /// Heartbeat period in ms (the kernel's is 2000).
    #[arg(long, default_value_t = 2000)]
    pub hb_period_ms: u64,
    /// o2net idle timeout in ms.
    #[arg(long, default_value_t = 30000)]
    pub idle_timeout_ms: u64,
    /// o2net keepalive delay in ms.
    #[arg(long, default_value_t = 2000)]
    pub keepalive_ms: u64,
    /// o2net reconnect delay in ms.
    #[arg(long, default_value_t = 2000)]
    pub reconnect_ms: u64,
    /// Network latency of one direction, in microseconds.
    #[arg(long, default_value_t = 200)]
    pub latency_us: u64,
    /// Random extra latency per segment, up to this many microseconds.
    #[arg(long, default_value_t = 300)]
    pub spread_us: u64,
    /// Service time of one heartbeat I/O on a healthy path, in microseconds.
    #[arg(long, default_value_t = 500)]
    pub disk_latency_us: u64,
    /// Random extra service time per I/O, up to this many microseconds.
    #[arg(long, default_value_t = 2000)]
    pub disk_spread_us: u64,
    /// Break a rule on purpose to see the checkers catch it: wrong-side-survives,
    /// ignore-write-timeout, or (with --workload locks) dlm-bypass, dlm-lose-lvb, dlm-hold-forever.
    #[arg(long)]
    pub sabotage: Option<String>,
}

impl SimArgs {
    /// The configuration of the run with `seed`.
    pub fn config(&self, seed: u64) -> Result<SimConfig, SimError> {
        if self.nodes == 0 || self.nodes > 255 {
            return Err(SimError::NodeCount(u64::from(self.nodes)));
        }
        let mut cfg = SimConfig::new(self.nodes, seed);
        cfg.regions = self.regions;
        cfg.duration = parse_duration(&self.duration)?;
        cfg.faults = FaultSet::parse(&self.faults)?;
        cfg.overlap = self.overlap;
        cfg.timing = Timing {
            hb_period: Duration::from_millis(self.hb_period_ms),
            dead_threshold: self.dead_threshold,
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            keepalive_delay: Duration::from_millis(self.keepalive_ms),
            reconnect_delay: Duration::from_millis(self.reconnect_ms),
        };
        cfg.net.latency = Duration::from_micros(self.latency_us);
        cfg.net.spread = Duration::from_micros(self.spread_us);
        cfg.disk.latency = Duration::from_micros(self.disk_latency_us);
        cfg.disk.spread = Duration::from_micros(self.disk_spread_us);
        cfg.workload = match self.workload.as_str() {
            "idle" => Workload::Idle,
            "ping" => Workload::Ping {
                interval: Duration::from_secs(5),
            },
            "locks" => Workload::Locks {
                clients: 3,
                names: 3,
                think: Duration::from_millis(200),
            },
            other => return Err(SimError::Workload(other.to_string())),
        };
        cfg.sabotage = match self.sabotage.as_deref() {
            None => None,
            Some("wrong-side-survives") => Some(Sabotage::WrongSideSurvives),
            Some("ignore-write-timeout") => Some(Sabotage::IgnoreWriteTimeout),
            Some("dlm-bypass") => Some(Sabotage::DlmBypass),
            Some("dlm-lose-lvb") => Some(Sabotage::DlmLoseLvb),
            Some("dlm-hold-forever") => Some(Sabotage::DlmHoldForever),
            Some(other) => return Err(SimError::Sabotage(other.to_string())),
        };
        cfg.trace = match self.trace.as_deref() {
            None => TraceMode::Off,
            Some("readable") => TraceMode::Readable,
            Some("compact") => TraceMode::Compact,
            Some(other) => return Err(SimError::TraceMode(other.to_string())),
        };
        Ok(cfg)
    }

    /// The command line that replays `seed` with the readable trace, limited
    /// to the nodes and moments of `focus` when given.
    pub fn replay_command(&self, seed: u64, focus: Option<&Violation>) -> String {
        let d = SimArgs::defaults();
        let mut s = format!(
            "o2cb sim --nodes {} --seed {seed} --faults {} --duration {}",
            self.nodes, self.faults, self.duration
        );
        let mut flag = |name: &str, v: u64, default: u64| {
            if v != default {
                let _ = write!(s, " --{name} {v}");
            }
        };
        flag("regions", u64::from(self.regions), u64::from(d.regions));
        flag(
            "dead-threshold",
            u64::from(self.dead_threshold),
            u64::from(d.dead_threshold),
        );
        flag("hb-period-ms", self.hb_period_ms, d.hb_period_ms);
        flag("idle-timeout-ms", self.idle_timeout_ms, d.idle_timeout_ms);
        flag("keepalive-ms", self.keepalive_ms, d.keepalive_ms);
        flag("reconnect-ms", self.reconnect_ms, d.reconnect_ms);
        flag("latency-us", self.latency_us, d.latency_us);
        flag("spread-us", self.spread_us, d.spread_us);
        flag("disk-latency-us", self.disk_latency_us, d.disk_latency_us);
        flag("disk-spread-us", self.disk_spread_us, d.disk_spread_us);
        if self.workload != d.workload {
            let _ = write!(s, " --workload {}", self.workload);
        }
        if self.overlap {
            s.push_str(" --overlap");
        }
        if let Some(sab) = &self.sabotage {
            let _ = write!(s, " --sabotage {sab}");
        }
        s.push_str(" --trace");
        if let Some(v) = focus {
            let secs = |t: SimTime| t.as_micros() as f64 / 1e6;
            let _ = write!(
                s,
                " --trace-from {:.6} --trace-to {:.6}",
                secs(v.since),
                secs(v.at)
            );
            if !v.nodes.is_empty() {
                let names: Vec<String> = v.nodes.iter().map(|n| n.to_string()).collect();
                let _ = write!(s, " --trace-nodes {}", names.join(","));
            }
        }
        s
    }

    /// Which trace lines to print: (from, to, nodes).
    fn trace_filter(&self) -> Result<(SimTime, SimTime, Vec<NodeId>), SimError> {
        let at = |secs: Option<f64>, default: SimTime| match secs {
            Some(x) if x.is_finite() && x >= 0.0 => SimTime::from_micros((x * 1e6) as u64),
            _ => default,
        };
        let from = at(self.trace_from, SimTime::ZERO);
        let to = at(self.trace_to, SimTime::from_micros(u64::MAX));
        let mut nodes = Vec::new();
        for word in self
            .trace_nodes
            .iter()
            .flat_map(|s| s.split(','))
            .map(str::trim)
            .filter(|w| !w.is_empty())
        {
            let n: NodeId = word
                .trim_start_matches('n')
                .parse()
                .map_err(|_| SimError::TraceNodes(word.to_string()))?;
            nodes.push(n);
        }
        Ok((from, to, nodes))
    }

    /// The arguments of `o2cb sim` given no option: each field's default is the one its
    /// `#[arg]` attribute declares, so the command line and this value cannot disagree.
    pub fn defaults() -> SimArgs {
        use clap::{Args, FromArgMatches};
        let matches = SimArgs::augment_args(clap::Command::new("sim"))
            .try_get_matches_from(["sim"])
            .expect("every option of o2cb sim has a default or is optional");
        SimArgs::from_arg_matches(&matches).expect("the matches come from SimArgs itself")
    }
}

/// Parses `600s`, `20m`, `1h`, `1500ms` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, SimError> {
    let bad = || SimError::Duration(s.to_string());
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" | "min" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(bad());
    }
    Ok(d)
}

/// Most seeds one command runs: every outcome is kept for the report.
pub const MAX_SEEDS: u64 = 1_000_000;

/// Parses `A..B` into a non-empty range of at most [`MAX_SEEDS`] seeds.
pub fn parse_seeds(s: &str) -> Result<Range<u64>, SimError> {
    let bad = || SimError::SeedRange(s.to_string());
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let a: u64 = a.trim().parse().map_err(|_| bad())?;
    let b: u64 = b.trim().parse().map_err(|_| bad())?;
    if a >= b || b - a > MAX_SEEDS {
        return Err(bad());
    }
    Ok(a..b)
}

/// Runs `seeds` under `args` on up to `workers` threads, in seed order.
pub fn run_seeds(
    args: &SimArgs,
    seeds: Range<u64>,
    workers: usize,
) -> Result<Vec<(Outcome, Duration)>, SimError> {
    let seeds: Vec<u64> = seeds.collect();
    // Validate once up front so that workers cannot fail.
    for &s in seeds.iter().take(1) {
        args.config(s)?;
    }
    let workers = workers.clamp(1, seeds.len().max(1));
    let chunks: Vec<Vec<u64>> = (0..workers)
        .map(|w| seeds.iter().copied().skip(w).step_by(workers).collect())
        .collect();
    let mut results: Vec<(Outcome, Duration)> = Vec::with_capacity(seeds.len());
    let mut failure = None;
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                scope.spawn(move || -> Result<Vec<(Outcome, Duration)>, SimError> {
                    let mut v = Vec::new();
                    for &seed in chunk {
                        let mut cfg = args.config(seed)?;
                        cfg.trace = TraceMode::Off;
                        let started = Instant::now();
                        let outcome = Simulation::new(cfg)?.run();
                        v.push((outcome, started.elapsed()));
                    }
                    Ok(v)
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(Ok(v)) => results.extend(v),
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some(SimError::WorkerPanicked),
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    results.sort_by_key(|(o, _)| o.seed);
    Ok(results)
}

/// Runs what `args` asks and writes the report. Ok(true) when every run was clean.
pub fn run(args: &SimArgs, out: &mut dyn Write) -> Result<bool, CliError> {
    match &args.seeds {
        Some(range) => {
            let seeds = parse_seeds(range)?;
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
            let started = Instant::now();
            let results = run_seeds(args, seeds.clone(), workers)?;
            let wall = started.elapsed();
            let failed: Vec<&Outcome> = results
                .iter()
                .map(|(o, _)| o)
                .filter(|o| !o.violations.is_empty())
                .collect();
            let virt: Duration = results.iter().map(|(o, _)| o.reached.since_start()).sum();
            let episodes: usize = results.iter().map(|(o, _)| o.episodes).sum();
            writeln!(
                out,
                "{} seeds ({}..{}), {} nodes, faults {}: {} fault episodes, {:.0} s virtual in {:.2} s wall",
                results.len(),
                seeds.start,
                seeds.end,
                args.nodes,
                args.faults,
                episodes,
                virt.as_secs_f64(),
                wall.as_secs_f64()
            )?;
            write_tallies(out, &results.iter().map(|(o, _)| o).collect::<Vec<_>>())?;
            for o in &failed {
                if let Some(v) = o.violations.first() {
                    writeln!(out, "seed {}: VIOLATION {v}", o.seed)?;
                }
            }
            if let Some(first) = failed.first() {
                writeln!(out)?;
                explain(args, first, out)?;
            }
            writeln!(
                out,
                "{} of {} seeds broke a rule",
                failed.len(),
                results.len()
            )?;
            Ok(failed.is_empty())
        }
        None => {
            let cfg = args.config(args.seed)?;
            let tracing = cfg.trace != TraceMode::Off;
            args.trace_filter()?;
            let mut sim = Simulation::new(cfg)?;
            writeln!(
                out,
                "fault plan for seed {} ({} episodes):",
                args.seed,
                sim.plan().episodes.len()
            )?;
            for p in &sim.plan().actions {
                writeln!(out, "  [{}] episode {}: {}", p.at, p.episode, p.action)?;
            }
            let started = Instant::now();
            let outcome = sim.run();
            let wall = started.elapsed();
            if tracing {
                let (from, to, nodes) = args.trace_filter()?;
                for line in sim
                    .trace()
                    .window(from, to, &nodes, Detail::Routine, usize::MAX)
                {
                    writeln!(out, "{line}")?;
                }
            }
            write_story(out, &sim, &outcome)?;
            write_summary(out, &outcome, wall)?;
            if outcome.violations.is_empty() {
                writeln!(out, "no rule broken")?;
                Ok(true)
            } else {
                explain(args, &outcome, out)?;
                Ok(false)
            }
        }
    }
}

/// Errors of the command: bad arguments, or the output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error("writing the report: {0}")]
    Io(#[from] io::Error),
}

/// What each fault episode led to.
fn write_story(out: &mut dyn Write, sim: &Simulation, o: &Outcome) -> io::Result<()> {
    for (i, ep) in sim.plan().episodes.iter().enumerate() {
        let Some(lines) = o.story.get(i) else { break };
        let what: Vec<String> = sim
            .plan()
            .actions
            .iter()
            .filter(|p| p.episode == i && p.at == ep.start)
            .map(|p| p.action.to_string())
            .collect();
        let what = what.join("; ");
        writeln!(
            out,
            "episode {i} at {}s, {} ({:.1} s): {}",
            ep.start.to_string().trim(),
            what,
            (ep.heal - ep.start).as_secs_f64(),
            if lines.is_empty() {
                "no fence, crash or death"
            } else {
                ""
            }
        )?;
        for l in lines {
            writeln!(out, "    {l}")?;
        }
    }
    Ok(())
}

/// The per-node table and checker tallies of one run.
pub fn write_summary(out: &mut dyn Write, o: &Outcome, wall: Duration) -> io::Result<()> {
    let virt = o.reached.since_start().as_secs_f64();
    let ratio = virt / wall.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "seed {}: {} nodes, {:.0} s virtual in {:.3} s wall ({:.0}x), {} events, {} fault episodes",
        o.seed,
        o.nodes,
        virt,
        wall.as_secs_f64(),
        ratio,
        o.events,
        o.episodes
    )?;
    writeln!(
        out,
        "{:<5} {:>5} {:>7} {:>6} {:>5} {:>5} {:>9} {:>9} {:>7} {:>7} {:>8} {:>8}",
        "node",
        "boots",
        "crashes",
        "fences",
        "ups",
        "downs",
        "msgs-out",
        "msgs-in",
        "reads",
        "writes",
        "sends-ok",
        "failed"
    )?;
    for (i, s) in o.stats.iter().enumerate() {
        writeln!(
            out,
            "{:<5} {:>5} {:>7} {:>6} {:>5} {:>5} {:>9} {:>9} {:>7} {:>7} {:>8} {:>8}",
            format!("n{i}"),
            s.boots,
            s.crashes,
            s.fences,
            s.ups,
            s.downs,
            s.net.sends,
            s.net.receives,
            s.disk.reads,
            s.disk.writes,
            s.sends_ok,
            s.sends_failed
        )?;
    }
    write_tallies(out, &[o])
}

fn write_tallies(out: &mut dyn Write, outcomes: &[&Outcome]) -> io::Result<()> {
    let Some(first) = outcomes.first() else {
        return Ok(());
    };
    writeln!(
        out,
        "{:<14} {:>8} {:>6} {:>10}",
        "checker", "judged", "open", "violations"
    )?;
    for (name, _) in &first.tallies {
        let (mut judged, mut open, mut bad) = (0, 0, 0);
        for o in outcomes {
            if let Some((_, t)) = o.tallies.iter().find(|(n, _)| n == name) {
                judged += t.judged;
                open += t.open;
            }
            bad += o.violations.iter().filter(|v| v.checker == *name).count();
        }
        writeln!(out, "{name:<14} {judged:>8} {open:>6} {bad:>10}")?;
    }
    Ok(())
}

/// The violation, the trace window before it (replayed with tracing on) and the replay command.
fn explain(args: &SimArgs, o: &Outcome, out: &mut dyn Write) -> Result<(), CliError> {
    let Some(v) = o.violations.first() else {
        return Ok(());
    };
    writeln!(out, "VIOLATION (seed {}): {v}", o.seed)?;
    let mut cfg = args.config(o.seed)?;
    cfg.trace = TraceMode::Readable;
    let mut replay = Simulation::new(cfg)?;
    replay.run();
    let nodes: Vec<NodeId> = v.nodes.clone();
    let detail = if v.checker == "hb-rules" {
        Detail::Routine
    } else if v.checker == "send-progress" {
        Detail::Message
    } else {
        Detail::State
    };
    let lines = replay.trace().window(v.since, v.at, &nodes, detail, 60);
    let names: Vec<String> = nodes.iter().map(|n| format!("n{n}")).collect();
    writeln!(
        out,
        "trace of {} from {}s to {}s ({}; last {} lines):",
        names.join(","),
        v.since.to_string().trim(),
        v.at.to_string().trim(),
        if detail == Detail::Message {
            "state changes and messages"
        } else {
            "state changes"
        },
        lines.len()
    )?;
    for l in lines {
        writeln!(out, "  {l}")?;
    }
    writeln!(out, "replay: {}", args.replay_command(o.seed, Some(v)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: SimArgs,
    }

    #[test]
    fn the_replay_command_reproduces_every_non_default_setting() {
        let words = [
            "o2cb-sim",
            "--nodes",
            "6",
            "--regions",
            "3",
            "--seeds",
            "10..20",
            "--faults",
            "stall,crash",
            "--duration",
            "20m",
            "--dead-threshold",
            "13",
            "--hb-period-ms",
            "500",
            "--idle-timeout-ms",
            "9000",
            "--keepalive-ms",
            "700",
            "--reconnect-ms",
            "900",
            "--latency-us",
            "50",
            "--spread-us",
            "9",
            "--disk-latency-us",
            "70",
            "--disk-spread-us",
            "80",
            "--workload",
            "idle",
            "--sabotage",
            "wrong-side-survives",
            "--overlap",
        ];
        let original = Cmd::parse_from(words).args;
        let replay = original.replay_command(14, None);
        let words: Vec<&str> = std::iter::once("o2cb-sim")
            .chain(
                replay
                    .strip_prefix("o2cb sim ")
                    .unwrap_or(&replay)
                    .split_whitespace(),
            )
            .collect();
        let replayed = Cmd::parse_from(words).args;
        assert_eq!(replayed.seeds, None);
        assert_eq!(replayed.seed, 14);
        assert_eq!(
            format!(
                "{:?}",
                replayed.config(14).map(|mut c| {
                    c.trace = TraceMode::Off;
                    c
                })
            ),
            format!(
                "{:?}",
                original.config(14).map(|mut c| {
                    c.trace = TraceMode::Off;
                    c
                })
            )
        );
    }

    #[test]
    fn trace_filters_parse_nodes_and_window() {
        let mut a = SimArgs::defaults();
        a.trace_nodes = Some("0, n2".into());
        a.trace_from = Some(1.5);
        let (from, to, nodes) = a.trace_filter().unwrap();
        assert_eq!((from, nodes), (SimTime::from_millis(1500), vec![0, 2]));
        assert_eq!(to, SimTime::from_micros(u64::MAX));
        a.trace_nodes = Some("zero".into());
        assert!(matches!(a.trace_filter(), Err(SimError::TraceNodes(_))));
    }

    #[test]
    fn durations_and_seed_ranges_parse_or_explain() {
        assert_eq!(parse_duration("600s"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("20m"), Ok(Duration::from_secs(1200)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(matches!(parse_duration("soon"), Err(SimError::Duration(_))));
        assert!(matches!(parse_duration("0s"), Err(SimError::Duration(_))));
        assert_eq!(parse_seeds("0..1000"), Ok(0..1000));
        assert!(matches!(parse_seeds("5..5"), Err(SimError::SeedRange(_))));
        assert!(matches!(
            parse_seeds("0..18446744073709551615"),
            Err(SimError::SeedRange(_))
        ));
        assert!(matches!(parse_seeds("a..b"), Err(SimError::SeedRange(_))));
    }
}
