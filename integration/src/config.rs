//! What a simulation run is made of: cluster size, seed, timings, faults, workload.

use crate::disk::DiskParams;
use crate::faults::FaultSet;
use crate::net::NetParams;
use std::time::Duration;

/// The cluster's timers. Defaults are the kernel's (docs/timing.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// O2HB_REGION_TIMEOUT_MS: one heartbeat iteration.
    pub hb_period: Duration,
    /// Heartbeat dead threshold T, in iterations.
    pub dead_threshold: u32,
    /// o2net idle timeout.
    pub idle_timeout: Duration,
    /// o2net keepalive delay.
    pub keepalive_delay: Duration,
    /// o2net reconnect delay.
    pub reconnect_delay: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            hb_period: Duration::from_millis(2000),
            dead_threshold: 31,
            idle_timeout: Duration::from_millis(30_000),
            keepalive_delay: Duration::from_millis(2000),
            reconnect_delay: Duration::from_millis(2000),
        }
    }
}

impl Timing {
    /// O2HB_MAX_WRITE_TIMEOUT_MS = period × (T − 1): the self-fence timer.
    pub fn write_timeout(&self) -> Duration {
        self.hb_period * self.dead_threshold.saturating_sub(1)
    }

    /// T unchanged reads, one per period: how long a silent node stays live.
    pub fn dead_time(&self) -> Duration {
        self.hb_period * self.dead_threshold
    }

    /// O2NET_QUORUM_DELAY_MS = (T + 2) × period.
    pub fn quorum_delay(&self) -> Duration {
        self.hb_period * self.dead_threshold.saturating_add(2)
    }
}

/// A rule broken on purpose, to show the checkers can fail. Never used by `o2cb sim` users
/// except to see a violation reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// When a node fences by quorum, it survives and the lowest-numbered
    /// node of the other side is reset instead: the wrong side survives.
    WrongSideSurvives,
    /// A node's heartbeat write-timeout fence is ignored: it keeps running
    /// after its writes stalled, past the moment the others declare it dead.
    IgnoreWriteTimeout,
    /// Node 0's lock clients take every lock without asking the DLM (a node that bypasses
    /// the lock manager): the mutual-exclusion checker must see overlapping grants.
    DlmBypass,
    /// Node 0's EX holders report writing a value block but unlock without VALBLK (the
    /// write-back is lost): the value-block checker must see a stale read.
    DlmLoseLvb,
    /// Node 0's lock clients never let go of a granted lock, BAST or not: the progress
    /// checker must see requests that never finish.
    DlmHoldForever,
}

/// The messages the simulated applications send, to exercise o2net end to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Nothing but the stack's own traffic (heartbeat, keepalives).
    Idle,
    /// Each node sends a request to a random peer, on average every `interval`.
    Ping { interval: Duration },
    /// Every node joins one o2dlm domain once the cluster is up, and `clients` lock clients
    /// per node take, convert and release `names` contended lock names (NOQUEUE, VALBLK,
    /// cancels), each pausing on average `think` between steps.
    Locks {
        clients: u8,
        names: u8,
        think: Duration,
    },
}

/// How much trace to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceMode {
    Off,
    /// Human-readable lines, for teaching and debugging.
    Readable,
    /// One short line per record, for diffing and tools.
    Compact,
}

/// Everything that determines a run. Same config, same run, byte for byte.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of nodes, 1..=255, numbered from 0.
    pub nodes: u16,
    /// Heartbeat regions, 1..=32. One is the kernel's local mode (a region per
    /// volume); more run global heartbeat mode, where a node fences only when
    /// half or more of its quorum regions time out.
    pub regions: u8,
    pub seed: u64,
    /// Virtual length of the run.
    pub duration: Duration,
    pub faults: FaultSet,
    /// Let fault episodes overlap (compound failures). The checkers judge
    /// overlapped episodes only by the rules that hold whatever happens.
    pub overlap: bool,
    pub timing: Timing,
    pub net: NetParams,
    pub disk: DiskParams,
    pub workload: Workload,
    pub sabotage: Option<Sabotage>,
    pub trace: TraceMode,
}

impl SimConfig {
    /// A fault-free run of `nodes` nodes with kernel timings.
    pub fn new(nodes: u16, seed: u64) -> Self {
        SimConfig {
            nodes,
            regions: 1,
            seed,
            duration: Duration::from_secs(600),
            faults: FaultSet::none(),
            overlap: false,
            timing: Timing::default(),
            net: NetParams::default(),
            disk: DiskParams::default(),
            workload: Workload::Ping {
                interval: Duration::from_secs(5),
            },
            sabotage: None,
            trace: TraceMode::Off,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_defaults_give_the_kernels_derived_timeouts() {
        let t = Timing::default();
        assert_eq!(t.write_timeout(), Duration::from_millis(60_000));
        assert_eq!(t.dead_time(), Duration::from_millis(62_000));
        assert_eq!(t.quorum_delay(), Duration::from_millis(66_000));
    }
}
