//! The trace: every message, disk I/O, timer, fault and state change, per node.
//!
//! One [`Record`] type feeds both the trace and the checkers. The readable
//! form is meant for teaching (one line per happening, aligned, with node
//! numbers and decoded messages); the compact form is one short line of
//! space-separated fields for tools and diffs. The same seed gives the same
//! trace byte for byte.

use crate::config::TraceMode;
use crate::faults::Action;
use crate::stack::{ConnId, FenceReason, NodeId, Note, RegionId, TimerKey};
use crate::time::SimTime;
use std::fmt::Write as _;

/// What happened.
#[derive(Debug)]
pub enum What<'a> {
    Boot {
        generation: u64,
    },
    Crash,
    Fence(FenceReason),
    Pause {
        until: SimTime,
    },
    Resume,
    Timer(TimerKey),
    /// An I/O is issued; `data` is what a write carries (empty for reads).
    IoSubmit {
        write: bool,
        region: RegionId,
        offset: u64,
        len: usize,
        data: &'a [u8],
    },
    /// An I/O finished; `data` is what a read returned (empty for writes and errors).
    IoDone {
        write: bool,
        region: RegionId,
        offset: u64,
        data: &'a [u8],
        ok: bool,
    },
    Connect {
        conn: ConnId,
        peer: NodeId,
    },
    Accepted {
        conn: ConnId,
        peer: NodeId,
    },
    Connected {
        conn: ConnId,
        peer: NodeId,
    },
    Closed {
        conn: ConnId,
        errno: i32,
    },
    Send {
        conn: ConnId,
        peer: NodeId,
        len: usize,
        what: &'a str,
    },
    Recv {
        conn: ConnId,
        len: usize,
    },
    CloseSent {
        conn: ConnId,
    },
    /// The workload asks the node to send request `id` to `peer`.
    SendStart {
        id: u64,
        peer: NodeId,
    },
    Note(&'a Note),
    /// A planned fault action of episode `episode` takes effect.
    Fault {
        action: &'a Action,
        episode: usize,
    },
}

/// Levels of a violation's trace window: it shows state changes, and messages
/// only when the violation is about messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Detail {
    /// Heartbeat I/O, timers, received bytes, keepalives.
    Routine,
    /// Requests, replies and the workload's sends.
    Message,
    /// Boots, crashes, fences, faults, connections, liveness and quorum changes.
    State,
}

/// One happening, at one moment, on one node (or the whole world).
#[derive(Debug)]
pub struct Record<'a> {
    pub at: SimTime,
    pub node: Option<NodeId>,
    pub what: What<'a>,
}

impl Record<'_> {
    pub fn readable(&self) -> String {
        let who = match self.node {
            Some(n) => format!("n{n}"),
            None => "--".to_string(),
        };
        let (cat, text) = match &self.what {
            What::Boot { generation } => (
                "node",
                format!("boot, heartbeat generation {generation:#018x}"),
            ),
            What::Crash => ("node", "CRASH: machine down, all memory lost".to_string()),
            What::Fence(r) => ("node", format!("FENCE ({}): machine reset", r.label())),
            What::Pause { until } => (
                "node",
                format!("process paused until {}", until.to_string().trim()),
            ),
            What::Resume => ("node", "process resumes; late timers fire now".to_string()),
            What::Timer(k) => ("timer", format!("{}[{}] fires", k.name, k.index)),
            What::IoSubmit {
                write,
                region,
                offset,
                len,
                ..
            } => {
                let op = if *write { "write" } else { "read " };
                (
                    "disk",
                    format!("{op} region {region} @{offset}+{len} issued"),
                )
            }
            What::IoDone {
                write,
                region,
                offset,
                ok,
                ..
            } => {
                let op = if *write { "write" } else { "read " };
                let res = if *ok { "done" } else { "failed: EIO" };
                ("disk", format!("{op} region {region} @{offset} {res}"))
            }
            What::Connect { conn, peer } => ("net", format!("connect -> n{peer} (conn {})", conn)),
            What::Accepted { conn, peer } => {
                ("net", format!("accepted from n{peer} (conn {})", conn))
            }
            What::Connected { conn, peer } => {
                ("net", format!("TCP established -> n{peer} (conn {})", conn))
            }
            What::Closed { conn, errno } => {
                ("net", format!("conn {} closed (errno {errno})", conn))
            }
            What::Send {
                conn,
                peer,
                len,
                what,
            } => {
                let desc = if what.is_empty() {
                    String::new()
                } else {
                    format!(": {what}")
                };
                (
                    "net",
                    format!("send -> n{peer} {len} B (conn {}){desc}", conn),
                )
            }
            What::Recv { conn, len } => ("net", format!("recv {len} B (conn {})", conn)),
            What::CloseSent { conn } => ("net", format!("close conn {}", conn)),
            What::SendStart { id, peer } => ("app", format!("send #{id} to n{peer} requested")),
            What::Note(n) => ("state", note_text(n)),
            What::Fault { action, episode } => ("FAULT", format!("episode {episode}: {action}")),
        };
        format!("[{}] {who:<4} {cat:<5} {text}", self.at)
    }

    /// How much this record matters in a violation's trace window.
    pub fn detail(&self) -> Detail {
        match &self.what {
            What::Timer(_) | What::IoSubmit { .. } | What::IoDone { .. } | What::Recv { .. } => {
                Detail::Routine
            }
            What::Send { what, .. } if what.starts_with("KEEP_") => Detail::Routine,
            What::Send { .. } | What::SendStart { .. } | What::Note(Note::SendDone { .. }) => {
                Detail::Message
            }
            _ => Detail::State,
        }
    }

    pub fn compact(&self) -> String {
        let mut s = format!(
            "{} {}",
            self.at.as_micros(),
            self.node.map_or("-".to_string(), |n| n.to_string())
        );
        let _ = match &self.what {
            What::Boot { generation } => write!(s, " B {generation:x}"),
            What::Crash => write!(s, " X"),
            What::Fence(r) => write!(
                s,
                " F {}",
                if *r == FenceReason::Quorum { "q" } else { "w" }
            ),
            What::Pause { until } => write!(s, " P {}", until.as_micros()),
            What::Resume => write!(s, " p"),
            What::Timer(k) => write!(s, " T {} {}", k.name, k.index),
            What::IoSubmit {
                write,
                region,
                offset,
                len,
                ..
            } => {
                write!(
                    s,
                    " {} {region} {offset} {len}",
                    if *write { "w" } else { "r" }
                )
            }
            What::IoDone {
                write,
                region,
                offset,
                ok,
                ..
            } => {
                write!(
                    s,
                    " {} {region} {offset} {}",
                    if *write { "W" } else { "R" },
                    u8::from(*ok)
                )
            }
            What::Connect { conn, peer } => write!(s, " C {} {peer}", conn),
            What::Accepted { conn, peer } => write!(s, " A {} {peer}", conn),
            What::Connected { conn, peer } => write!(s, " E {} {peer}", conn),
            What::Closed { conn, errno } => write!(s, " Z {} {errno}", conn),
            What::Send {
                conn, peer, len, ..
            } => write!(s, " S {} {peer} {len}", conn),
            What::Recv { conn, len } => write!(s, " r {} {len}", conn),
            What::CloseSent { conn } => write!(s, " z {}", conn),
            What::SendStart { id, peer } => write!(s, " Q {id} {peer}"),
            What::Note(n) => write!(s, " N {}", note_text(n)),
            What::Fault { action, episode } => write!(s, " ! {episode} {action}"),
        };
        s
    }
}

fn note_text(n: &Note) -> String {
    match n {
        Note::HbUp {
            region,
            node,
            generation,
        } => {
            format!("hb: n{node} UP in region {region} (generation {generation:#018x})")
        }
        Note::HbDown { region, node } => format!("hb: n{node} DOWN in region {region}"),
        Note::HbSteady { region } => format!("hb: region {region} steady, heartbeat started"),
        Note::HbStartFailed { region } => format!("hb: region {region} failed to stabilize"),
        Note::NetUp { peer } => format!("net: quorum counts n{peer} connected"),
        Note::NetDown { peer } => format!("net: quorum no longer counts n{peer} connected"),
        Note::SendDone { id, peer, status } => {
            format!("send #{id} to n{peer} done, status {status}")
        }
        Note::Dlm(d) => d.to_string(),
        Note::Invariant(t) => format!("INVARIANT BROKEN: {t}"),
        Note::Text(t) => t.clone(),
    }
}

/// Collects the formatted records of a run, if asked to.
#[derive(Debug)]
pub struct Trace {
    mode: TraceMode,
    lines: Vec<(SimTime, Option<NodeId>, Detail, String)>,
}

impl Trace {
    pub fn new(mode: TraceMode) -> Self {
        Trace {
            mode,
            lines: Vec::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.mode != TraceMode::Off
    }

    pub fn record(&mut self, rec: &Record<'_>) {
        let line = match self.mode {
            TraceMode::Off => return,
            TraceMode::Readable => rec.readable(),
            TraceMode::Compact => rec.compact(),
        };
        self.lines.push((rec.at, rec.node, rec.detail(), line));
    }

    /// The whole trace, one record per line.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for (_, _, _, l) in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// The records of at least `detail` of `nodes` (and world-wide ones) in
    /// `from..=to`, at most `max` of them, the last ones kept.
    pub fn window(
        &self,
        from: SimTime,
        to: SimTime,
        nodes: &[NodeId],
        detail: Detail,
        max: usize,
    ) -> Vec<&str> {
        let picked: Vec<&str> = self
            .lines
            .iter()
            .filter(|(at, n, d, _)| {
                *d >= detail
                    && *at >= from
                    && *at <= to
                    && n.is_none_or(|n| nodes.is_empty() || nodes.contains(&n))
            })
            .map(|(_, _, _, l)| l.as_str())
            .collect();
        let skip = picked.len().saturating_sub(max);
        picked.into_iter().skip(skip).collect()
    }
}
