//! How a node is set up: the cluster it is in, its heartbeat timing, o2net's timeouts and the
//! DLM's settings, in one value that the daemon builds from `cluster.conf` and the sysconfig
//! file ([`NodeConfig::from_cluster`]) and the simulator builds from its own configuration.

use o2dlm::wire::{ProtocolVersion, REGION_NAME_LEN};
use o2hb::{Mode, Timing};
use o2net::NetConfig;

use crate::error::NodeError;

/// The DLM's settings, the same for every domain of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlmSettings {
    /// `DLM_PURGE_INTERVAL_MS` (kernel: 8000): how long an unused resource is kept.
    pub purge_interval_ms: u64,
    /// `DLM_MASTERY_TIMEOUT_MS` (kernel: 5000).
    pub mastery_timeout_ms: u64,
    /// The fs locking protocol of the domains' users (ocfs2 and dlmfs: 1.0).
    pub fs_proto: ProtocolVersion,
}

impl Default for DlmSettings {
    fn default() -> Self {
        DlmSettings {
            purge_interval_ms: 8000,
            mastery_timeout_ms: 5000,
            fs_proto: o2dlm::wire::FS_PROTOCOL,
        }
    }
}

/// Everything a [`crate::NodeStack`] needs to know before it runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node, every configured node with its address, and o2net's timeouts.
    pub net: NetConfig,
    /// Local heartbeat (one region, started by hand) or global (the cluster's regions).
    pub mode: Mode,
    pub timing: Timing,
    /// Global mode: the names of the cluster's heartbeat regions. The node is online once
    /// every one of them is steady, and joining nodes compare them (QUERY_REGION).
    pub regions: Vec<String>,
    pub dlm: DlmSettings,
    /// Wall-clock milliseconds at monotonic time 0: heartbeat blocks carry wall-clock seconds.
    pub wall_epoch_ms: u64,
    /// Log every DLM message sent (debug level): costly, for traces.
    pub log_messages: bool,
    /// A clean stop gives up waiting for its domains to be left after this long and stops
    /// heartbeat all the same (the other nodes then recover what was left behind).
    pub stop_timeout_ms: u64,
}

/// How long a clean stop waits for its leaves, by default.
pub const DEFAULT_STOP_TIMEOUT_MS: u64 = 10_000;

impl NodeConfig {
    /// A node with the kernel's DLM settings and no heartbeat regions named (local mode, or
    /// global mode with `regions` to fill in).
    pub fn new(net: NetConfig, mode: Mode, timing: Timing) -> NodeConfig {
        NodeConfig {
            net,
            mode,
            timing,
            regions: Vec::new(),
            dlm: DlmSettings::default(),
            wall_epoch_ms: 0,
            log_messages: false,
            stop_timeout_ms: DEFAULT_STOP_TIMEOUT_MS,
        }
    }

    /// The node `service o2cb online` brings up for `cluster`: its local node, nodes,
    /// timeouts, heartbeat mode and regions.
    pub fn from_cluster(cluster: &o2nm::Cluster) -> Result<NodeConfig, NodeError> {
        let net = NetConfig::from_cluster(cluster).map_err(|e| NodeError::Config(e.to_string()))?;
        let t = cluster.timeouts();
        let timing = Timing::new(u64::from(t.heartbeat_period_ms), t.dead_threshold)
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let mode = match cluster.heartbeat_mode() {
            o2nm::HeartbeatMode::Global => Mode::Global,
            o2nm::HeartbeatMode::Local => Mode::Local,
        };
        let mut cfg = NodeConfig::new(net, mode, timing);
        if mode == Mode::Global {
            cfg.regions = cluster.regions().iter().map(|r| r.name.clone()).collect();
        }
        Ok(cfg)
    }

    /// This node's number.
    pub fn node(&self) -> u8 {
        self.net.local
    }

    /// The node table as the DLM compares it at join (QUERY_NODEINFO).
    pub(crate) fn dlm_nodes(&self) -> Vec<o2dlm::wire::NodeInfo> {
        self.net
            .nodes
            .iter()
            .map(|n| o2dlm::wire::NodeInfo {
                nodenum: n.num,
                ipv4_port: n.addr.port(),
                ipv4_address: *n.addr.ip(),
            })
            .collect()
    }

    /// The region names as the DLM compares them at join (QUERY_REGION); `None` in local mode.
    pub(crate) fn dlm_regions(&self) -> Option<Vec<[u8; REGION_NAME_LEN]>> {
        (self.mode == Mode::Global).then(|| {
            self.regions
                .iter()
                .map(|r| {
                    let mut slot = [0u8; REGION_NAME_LEN];
                    let name = o2nm::text::encode(r);
                    let n = name.len().min(REGION_NAME_LEN);
                    slot[..n].copy_from_slice(&name[..n]);
                    slot
                })
                .collect()
        })
    }
}
