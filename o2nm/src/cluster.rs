//! The running node manager: one cluster, its nodes, which one is this node,
//! its timeouts and heartbeat regions, and runtime changes under the rules the
//! kernel's configfs tree enforces (`fs/ocfs2/cluster/nodemanager.c`,
//! `heartbeat.c`), with the same errno for each refusal.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::conf::{check_cluster_name, ClusterConf, HeartbeatMode};
use crate::error::{Errno, Error, Result};
use crate::sysconfig::{O2cbSysconfig, Stack};

/// The timers of a cluster, with the kernel's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Heartbeat iterations without a change before a node is dead (T).
    pub dead_threshold: u32,
    /// o2net: a connection silent this long is dead.
    pub idle_timeout_ms: u32,
    /// o2net: send a keepalive this long after the last message received.
    pub keepalive_delay_ms: u32,
    /// o2net: minimum gap between connection attempts.
    pub reconnect_delay_ms: u32,
    /// Heartbeat iteration period (`O2HB_REGION_TIMEOUT_MS`, 2000 in the
    /// kernel). Not a kernel setting: shorter periods are for tests, and every
    /// node of a cluster must use the same one.
    pub heartbeat_period_ms: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            dead_threshold: Timeouts::DEFAULT_DEAD_THRESHOLD,
            idle_timeout_ms: Timeouts::DEFAULT_IDLE_TIMEOUT_MS,
            keepalive_delay_ms: Timeouts::DEFAULT_KEEPALIVE_DELAY_MS,
            reconnect_delay_ms: Timeouts::DEFAULT_RECONNECT_DELAY_MS,
            heartbeat_period_ms: Timeouts::KERNEL_HEARTBEAT_PERIOD_MS,
        }
    }
}

impl Timeouts {
    pub const DEFAULT_DEAD_THRESHOLD: u32 = 31;
    pub const DEFAULT_IDLE_TIMEOUT_MS: u32 = 30000;
    pub const DEFAULT_KEEPALIVE_DELAY_MS: u32 = 2000;
    pub const DEFAULT_RECONNECT_DELAY_MS: u32 = 2000;
    pub const KERNEL_HEARTBEAT_PERIOD_MS: u32 = 2000;
    /// Thresholds at or below this are ignored by the kernel
    /// (`O2HB_MIN_DEAD_THRESHOLD`).
    pub const MIN_DEAD_THRESHOLD_KERNEL: u32 = 2;

    /// The kernel's rules: each delay 1 to 2^32-2 ms, keepalive below idle,
    /// threshold above 2; and a non-zero heartbeat period.
    pub fn validate(&self) -> Result<()> {
        let in_range = |v: u32| (1..u32::MAX).contains(&v);
        for (what, v) in [
            ("idle timeout", self.idle_timeout_ms),
            ("keepalive delay", self.keepalive_delay_ms),
            ("reconnect delay", self.reconnect_delay_ms),
        ] {
            if !in_range(v) {
                return Err(Error::runtime(
                    Errno::Inval,
                    format!("{what} {v} ms is out of range"),
                ));
            }
        }
        if self.keepalive_delay_ms >= self.idle_timeout_ms {
            return Err(Error::runtime(
                Errno::Inval,
                format!(
                    "keepalive delay {} ms must be below the idle timeout {} ms",
                    self.keepalive_delay_ms, self.idle_timeout_ms
                ),
            ));
        }
        if self.dead_threshold <= Self::MIN_DEAD_THRESHOLD_KERNEL {
            return Err(Error::runtime(
                Errno::Inval,
                format!("dead threshold {} must be above 2", self.dead_threshold),
            ));
        }
        if self.heartbeat_period_ms == 0 {
            return Err(Error::runtime(
                Errno::Inval,
                "heartbeat period must not be 0",
            ));
        }
        Ok(())
    }

    /// How long a node's heartbeat must stay unchanged before it is declared
    /// dead, T x period (62000 ms by default); written to disk as `hb_dead_ms`.
    pub fn dead_ms(&self) -> u64 {
        u64::from(self.dead_threshold) * u64::from(self.heartbeat_period_ms)
    }

    /// Self-fence timeout if heartbeat writes stop completing, period x (T-1)
    /// (60000 ms by default); o2net's handshake carries it and peers must agree.
    pub fn hb_write_timeout_ms(&self) -> u64 {
        u64::from(self.dead_threshold.saturating_sub(1)) * u64::from(self.heartbeat_period_ms)
    }

    /// Global-heartbeat negotiation timeout: half the write timeout.
    pub fn hb_nego_timeout_ms(&self) -> u64 {
        self.hb_write_timeout_ms() / 2
    }

    /// o2net's wait before deciding quorum after losing a connection,
    /// (T + 2) x period (66000 ms by default).
    pub fn quorum_delay_ms(&self) -> u64 {
        (u64::from(self.dead_threshold) + 2) * u64::from(self.heartbeat_period_ms)
    }
}

/// A node of the running cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub num: u8,
    pub name: String,
    pub addr: Ipv4Addr,
    pub port: u16,
}

/// A heartbeat region (named by the volume UUID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: String,
}

/// How this process finds which node it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalNode {
    /// The node whose name matches this host name as ocfs2-tools'
    /// `node_is_local` decides: the name equals the start of the host name,
    /// ignoring case, up to the end or a `.`.
    Hostname(String),
    /// The node with exactly this name (`--node NAME` or `O2CB_NODE`): for
    /// containers and for several nodes on one machine (127.0.0.N).
    Named(String),
}

impl LocalNode {
    /// The environment variable naming the local node.
    pub const ENV: &'static str = "O2CB_NODE";

    /// `explicit` (a `--node` option) if given, else `$O2CB_NODE` if set and
    /// non-empty, else this machine's host name.
    pub fn from_env(explicit: Option<&str>) -> LocalNode {
        if let Some(name) = explicit {
            return LocalNode::Named(name.to_string());
        }
        match std::env::var(Self::ENV) {
            Ok(name) if !name.is_empty() => LocalNode::Named(name),
            _ => LocalNode::Hostname(hostname()),
        }
    }

    /// Whether a node with this name is the local node.
    pub fn matches(&self, node_name: &str) -> bool {
        match self {
            LocalNode::Named(name) => name == node_name,
            LocalNode::Hostname(host) => {
                let n = node_name.len();
                match (host.get(..n), host.as_bytes().get(n)) {
                    (Some(prefix), None | Some(b'.')) => prefix.eq_ignore_ascii_case(node_name),
                    _ => false,
                }
            }
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// One cluster as the kernel's node manager holds it once registered.
#[derive(Debug, Clone)]
pub struct Cluster {
    name: String,
    nodes: BTreeMap<u8, Node>,
    local: Option<u8>,
    /// Nodes that other layers use; removing them fails with EBUSY.
    pins: BTreeMap<u8, u32>,
    timeouts: Timeouts,
    heartbeat_mode: HeartbeatMode,
    regions: Vec<Region>,
}

/// The configfs rule for the name of a new `what` (the directory made for it): not empty
/// (EINVAL) and at most `max` bytes (ENAMETOOLONG).
fn check_object_name(what: &str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() {
        return Err(Error::runtime(
            Errno::Inval,
            format!("a {what} needs a name"),
        ));
    }
    if name.len() > max {
        return Err(Error::runtime(
            Errno::NameTooLong,
            format!("{what} name '{name}' is longer than {max} characters"),
        ));
    }
    Ok(())
}

impl Cluster {
    /// An empty cluster.
    pub fn new(name: &str, timeouts: Timeouts) -> Result<Cluster> {
        if name.is_empty() {
            return Err(Error::runtime(Errno::Inval, "a cluster needs a name"));
        }
        timeouts.validate()?;
        Ok(Cluster {
            name: name.to_string(),
            nodes: BTreeMap::new(),
            local: None,
            pins: BTreeMap::new(),
            timeouts,
            heartbeat_mode: HeartbeatMode::Local,
            regions: Vec::new(),
        })
    }

    /// Registers cluster `name` of `conf` as `o2cb register-cluster` does:
    /// the heartbeat mode, then every node in file order (refused as configfs
    /// would refuse it: numbers 0-254, ports 1-65534, unique addresses), then
    /// in global mode the file's heartbeat regions (in local mode regions come
    /// and go with mounts, through [`Cluster::add_region`]); and marks the
    /// local node. A `LocalNode::Named` that is not
    /// in the cluster is an error (ENOENT); no host-name match leaves the
    /// cluster without a local node.
    pub fn from_conf(
        conf: &ClusterConf,
        name: &str,
        timeouts: Timeouts,
        local: &LocalNode,
    ) -> Result<Cluster> {
        let Some(stanza) = conf.cluster(name) else {
            return Err(Error::runtime(
                Errno::NoEnt,
                format!("cluster '{name}' is not in the configuration"),
            ));
        };
        // register-cluster refuses what add-cluster would not create.
        if let Err(problem) = check_cluster_name(name) {
            return Err(Error::runtime(
                Errno::Inval,
                format!("cluster name '{name}' is invalid: {problem}"),
            ));
        }
        let mut cluster = Cluster::new(name, timeouts)?;
        cluster.heartbeat_mode = stanza.heartbeat_mode;
        for n in &stanza.nodes {
            cluster
                .add_node(&n.name, n.number, n.ip_address, n.ip_port)
                .map_err(|e| match e {
                    Error::Runtime { errno, what } => Error::Runtime {
                        errno,
                        what: format!("cluster '{name}', node '{}' ({}): {what}", n.name, n.line),
                    },
                    other => other,
                })?;
        }
        // In local mode a region is the volume being mounted, added then;
        // the file's regions only matter in global mode.
        if stanza.heartbeat_mode == HeartbeatMode::Global {
            for hb in &stanza.heartbeats {
                cluster.add_region(&hb.region)?;
            }
        }
        // Like register-cluster, every matching node is made local; a second
        // one is refused by configfs (EBUSY).
        let mut matching = stanza.nodes.iter().filter(|n| local.matches(&n.name));
        match (matching.next(), matching.next(), local) {
            (Some(a), Some(b), _) => {
                return Err(Error::runtime(
                    Errno::Busy,
                    format!(
                        "nodes '{}' and '{}' of cluster '{name}' both match {local:?}; only one node can be local",
                        a.name, b.name
                    ),
                ))
            }
            (Some(n), None, _) => cluster.set_local(&n.name, true)?,
            (None, _, LocalNode::Named(n)) => {
                return Err(Error::runtime(
                    Errno::NoEnt,
                    format!("node '{n}' is not in cluster '{name}'"),
                ))
            }
            (None, _, LocalNode::Hostname(_)) => {}
        }
        Ok(cluster)
    }

    /// The cluster `service o2cb online [CLUSTER]` brings up: `cluster` if
    /// given, else `O2CB_BOOTCLUSTER`, else the only cluster of the file (an
    /// extension for containers, where there is no init script), registered
    /// with the sysconfig timeouts. Only `O2CB_STACK=o2cb` is implemented.
    pub fn online(
        conf: &ClusterConf,
        cluster: Option<&str>,
        sysconfig: &O2cbSysconfig,
        local: &LocalNode,
    ) -> Result<Cluster> {
        let name = match (cluster, sysconfig.boot_cluster.as_deref(), conf.clusters.as_slice()) {
            (Some(name), _, _) | (None, Some(name), _) => name,
            (None, None, [only]) => only.name.as_str(),
            (None, None, _) => {
                return Err(Error::runtime(
                    Errno::NoEnt,
                    format!(
                        "which cluster? the configuration has {} clusters and O2CB_BOOTCLUSTER is empty",
                        conf.clusters.len()
                    ),
                ))
            }
        };
        if sysconfig.stack != Stack::O2cb {
            return Err(Error::runtime(
                Errno::Inval,
                format!(
                    "O2CB_STACK={}: only the o2cb cluster stack is implemented",
                    sysconfig.stack.as_str()
                ),
            ));
        }
        Cluster::from_conf(conf, name, sysconfig.timeouts, local)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The nodes, by number.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    pub fn node(&self, num: u8) -> Option<&Node> {
        self.nodes.get(&num)
    }

    pub fn node_by_name(&self, name: &str) -> Option<&Node> {
        self.nodes.values().find(|n| n.name == name)
    }

    /// The node with this address: how o2net identifies a connecting peer.
    pub fn node_by_addr(&self, addr: Ipv4Addr) -> Option<&Node> {
        self.nodes.values().find(|n| n.addr == addr)
    }

    /// This node, if one is marked local.
    pub fn local_node(&self) -> Option<&Node> {
        self.local.and_then(|n| self.nodes.get(&n))
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    pub fn heartbeat_mode(&self) -> HeartbeatMode {
        self.heartbeat_mode
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    fn num_of(&self, name: &str) -> Result<u8> {
        self.node_by_name(name).map(|n| n.num).ok_or_else(|| {
            Error::runtime(
                Errno::NoEnt,
                format!("no node '{name}' in cluster '{}'", self.name),
            )
        })
    }

    /// Adds a node (configfs: mkdir `node/<name>`, then `ipv4_port`,
    /// `ipv4_address`, `num`, checked in that order).
    pub fn add_node(&mut self, name: &str, num: u32, addr: Ipv4Addr, port: u32) -> Result<&Node> {
        check_object_name("node", name, crate::NODE_NAME_MAX)?;
        if self.node_by_name(name).is_some() {
            return Err(Error::runtime(
                Errno::Exist,
                format!("node '{name}' already exists"),
            ));
        }
        let port = match port {
            0 => return Err(Error::runtime(Errno::Inval, "port 0 is not allowed")),
            p => u16::try_from(p)
                .ok()
                .filter(|p| *p < u16::MAX)
                .ok_or_else(|| Error::runtime(Errno::Range, format!("port {p} is above 65534")))?,
        };
        if let Some(other) = self.node_by_addr(addr) {
            return Err(Error::runtime(
                Errno::Exist,
                format!("address {addr} is already used by node '{}'", other.name),
            ));
        }
        let num = u8::try_from(num)
            .ok()
            .filter(|n| *n <= crate::MAX_NODE_NUMBER)
            .ok_or_else(|| {
                Error::runtime(Errno::Range, format!("node number {num} is above 254"))
            })?;
        if let Some(other) = self.nodes.get(&num) {
            return Err(Error::runtime(
                Errno::Exist,
                format!("node number {num} is already used by node '{}'", other.name),
            ));
        }
        let node = Node {
            num,
            name: name.to_string(),
            addr,
            port,
        };
        Ok(self.nodes.entry(num).or_insert(node))
    }

    /// Removes a node (configfs rmdir). A pinned node is busy (EBUSY); the
    /// local node stops being local.
    pub fn remove_node(&mut self, name: &str) -> Result<Node> {
        let num = self.num_of(name)?;
        if self.pins.get(&num).is_some_and(|p| *p > 0) {
            return Err(Error::runtime(
                Errno::Busy,
                format!("node '{name}' is in use"),
            ));
        }
        if self.local == Some(num) {
            self.local = None;
        }
        self.nodes
            .remove(&num)
            .ok_or_else(|| Error::runtime(Errno::NoEnt, format!("no node '{name}'")))
    }

    /// Marks a node in use by another layer (heartbeat, a connection, the
    /// DLM), so that removing it fails with EBUSY until [`Cluster::unpin_node`].
    pub fn pin_node(&mut self, num: u8) -> Result<()> {
        if !self.nodes.contains_key(&num) {
            return Err(Error::runtime(
                Errno::NoEnt,
                format!("no node number {num}"),
            ));
        }
        *self.pins.entry(num).or_insert(0) += 1;
        Ok(())
    }

    /// Undoes one [`Cluster::pin_node`].
    pub fn unpin_node(&mut self, num: u8) {
        if let Some(p) = self.pins.get_mut(&num) {
            *p = p.saturating_sub(1);
        }
    }

    /// Sets or clears the `local` flag of a node. Only one node can be local
    /// (another one: EBUSY).
    pub fn set_local(&mut self, name: &str, local: bool) -> Result<()> {
        let num = self.num_of(name)?;
        match (local, self.local) {
            (true, Some(other)) if other != num => Err(Error::runtime(
                Errno::Busy,
                format!("node number {other} is already the local node"),
            )),
            (true, _) => {
                self.local = Some(num);
                Ok(())
            }
            (false, Some(cur)) if cur == num => {
                self.local = None;
                Ok(())
            }
            (false, _) => Ok(()),
        }
    }

    /// Changes the idle timeout. While any peer is connected only the current
    /// value may be written (EINVAL otherwise); it must stay above the
    /// keepalive delay.
    pub fn set_idle_timeout_ms(&mut self, ms: u32, peers_connected: bool) -> Result<()> {
        self.set_net_timer(
            Timeouts {
                idle_timeout_ms: ms,
                ..self.timeouts
            },
            peers_connected,
        )
    }

    /// Changes the keepalive delay, under the same rules as the idle timeout.
    pub fn set_keepalive_delay_ms(&mut self, ms: u32, peers_connected: bool) -> Result<()> {
        self.set_net_timer(
            Timeouts {
                keepalive_delay_ms: ms,
                ..self.timeouts
            },
            peers_connected,
        )
    }

    fn set_net_timer(&mut self, new: Timeouts, peers_connected: bool) -> Result<()> {
        if peers_connected && new != self.timeouts {
            return Err(Error::runtime(
                Errno::Inval,
                "network timeouts cannot change while peers are connected",
            ));
        }
        new.validate()?;
        self.timeouts = new;
        Ok(())
    }

    /// Changes the reconnect delay (allowed at any time).
    pub fn set_reconnect_delay_ms(&mut self, ms: u32) -> Result<()> {
        let new = Timeouts {
            reconnect_delay_ms: ms,
            ..self.timeouts
        };
        new.validate()?;
        self.timeouts = new;
        Ok(())
    }

    /// Writes the dead threshold as configfs does: ignored (returns `false`)
    /// unless above 2 and no region exists yet.
    pub fn set_dead_threshold(&mut self, threshold: u32) -> bool {
        if threshold <= Timeouts::MIN_DEAD_THRESHOLD_KERNEL || !self.regions.is_empty() {
            return false;
        }
        self.timeouts.dead_threshold = threshold;
        true
    }

    /// Writes the heartbeat mode as configfs does: ignored (returns `false`) while
    /// any region exists.
    pub fn set_heartbeat_mode(&mut self, mode: HeartbeatMode) -> bool {
        if !self.regions.is_empty() {
            return false;
        }
        self.heartbeat_mode = mode;
        true
    }

    /// Adds a heartbeat region (configfs mkdir `heartbeat/<region>`).
    pub fn add_region(&mut self, name: &str) -> Result<&Region> {
        check_object_name("heartbeat region", name, crate::REGION_NAME_MAX)?;
        if self.regions.iter().any(|r| r.name == name) {
            return Err(Error::runtime(
                Errno::Exist,
                format!("heartbeat region '{name}' already exists"),
            ));
        }
        if self.heartbeat_mode == HeartbeatMode::Global && self.regions.len() >= crate::MAX_REGIONS
        {
            return Err(Error::runtime(
                Errno::FBig,
                format!(
                    "global heartbeat uses at most {} regions",
                    crate::MAX_REGIONS
                ),
            ));
        }
        self.regions.push(Region {
            name: name.to_string(),
        });
        Ok(&self.regions[self.regions.len() - 1])
    }

    /// Removes a heartbeat region.
    pub fn remove_region(&mut self, name: &str) -> Result<Region> {
        match self.regions.iter().position(|r| r.name == name) {
            Some(i) => Ok(self.regions.remove(i)),
            None => Err(Error::runtime(
                Errno::NoEnt,
                format!("no heartbeat region '{name}'"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, last)
    }

    #[test]
    fn derived_timeouts_match_the_kernel_defaults() {
        let t = Timeouts::default();
        assert_eq!(t.dead_ms(), 62000);
        assert_eq!(t.hb_write_timeout_ms(), 60000);
        assert_eq!(t.hb_nego_timeout_ms(), 30000);
        assert_eq!(t.quorum_delay_ms(), 66000);
        assert!(t.validate().is_ok());
        let bad = Timeouts {
            keepalive_delay_ms: 30000,
            ..t
        };
        assert_eq!(bad.validate().unwrap_err().errno(), Some(Errno::Inval));
    }

    #[test]
    fn configfs_rules_for_nodes() {
        let mut c = Cluster::new("c", Timeouts::default()).unwrap();
        c.add_node("a", 1, ip(1), 7777).unwrap();
        let errno = |r: Result<&Node>| r.unwrap_err().errno();
        let mut c2 = c.clone();
        assert_eq!(errno(c2.add_node("a", 2, ip(2), 7777)), Some(Errno::Exist));
        assert_eq!(errno(c2.add_node("b", 1, ip(2), 7777)), Some(Errno::Exist));
        assert_eq!(errno(c2.add_node("b", 2, ip(1), 7777)), Some(Errno::Exist));
        assert_eq!(
            errno(c2.add_node("b", 255, ip(2), 7777)),
            Some(Errno::Range)
        );
        assert_eq!(errno(c2.add_node("b", 2, ip(2), 0)), Some(Errno::Inval));
        assert_eq!(errno(c2.add_node("b", 2, ip(2), 65535)), Some(Errno::Range));
        assert_eq!(
            errno(c2.add_node(&"x".repeat(65), 2, ip(2), 1)),
            Some(Errno::NameTooLong)
        );
        c.add_node("b", 254, ip(2), 65534).unwrap();
        c.set_local("a", true).unwrap();
        assert_eq!(
            c.set_local("b", true).unwrap_err().errno(),
            Some(Errno::Busy)
        );
        c.pin_node(254).unwrap();
        assert_eq!(c.remove_node("b").unwrap_err().errno(), Some(Errno::Busy));
        c.unpin_node(254);
        c.remove_node("b").unwrap();
        c.remove_node("a").unwrap();
        assert!(c.local_node().is_none());
        assert_eq!(c.remove_node("a").unwrap_err().errno(), Some(Errno::NoEnt));
    }

    #[test]
    fn timers_and_mode_follow_configfs() {
        let mut c = Cluster::new("c", Timeouts::default()).unwrap();
        assert!(c.set_idle_timeout_ms(40000, true).is_err());
        c.set_idle_timeout_ms(40000, false).unwrap();
        assert_eq!(
            c.set_keepalive_delay_ms(40000, false).unwrap_err().errno(),
            Some(Errno::Inval)
        );
        assert!(!c.set_dead_threshold(2));
        assert!(c.set_heartbeat_mode(HeartbeatMode::Global));
        for i in 0..32 {
            c.add_region(&format!("R{i}")).unwrap();
        }
        assert_eq!(c.add_region("R32").unwrap_err().errno(), Some(Errno::FBig));
        assert!(!c.set_dead_threshold(61));
        assert!(!c.set_heartbeat_mode(HeartbeatMode::Local));
    }

    #[test]
    fn local_node_by_hostname_follows_node_is_local() {
        let host = LocalNode::Hostname("Node1.example.com".into());
        assert!(host.matches("node1"));
        assert!(host.matches("node1.example"));
        assert!(!host.matches("node"));
        assert!(!host.matches("node1x"));
        assert!(LocalNode::Hostname("node1".into()).matches("NODE1"));
        assert!(!LocalNode::Named("node1".into()).matches("NODE1"));
    }

    #[test]
    fn from_conf_registers_nodes_and_finds_the_local_one() {
        let text = "cluster:\n\tname = c\n\tnode_count = 2\n\theartbeat_mode = global\n\n\
heartbeat:\n\tcluster = c\n\tregion = R\n\n\
node:\n\tcluster = c\n\tname = n1\n\tnumber = 1\n\tip_address = 127.0.0.1\n\tip_port = 7001\n\n\
node:\n\tcluster = c\n\tname = n2\n\tnumber = 2\n\tip_address = 127.0.0.2\n\tip_port = 7002\n";
        let conf = ClusterConf::parse(text.as_bytes(), Path::new("f")).unwrap();
        let local = LocalNode::Named("n2".into());
        let c = Cluster::from_conf(&conf, "c", Timeouts::default(), &local).unwrap();
        assert_eq!(c.local_node().map(|n| n.num), Some(2));
        assert_eq!(c.node_by_addr(ip(1)).map(|n| n.name.as_str()), Some("n1"));
        assert_eq!(c.heartbeat_mode(), HeartbeatMode::Global);
        assert_eq!(c.regions().len(), 1);
        let local_mode = text.replace("heartbeat_mode = global", "heartbeat_mode = local");
        let conf_local = ClusterConf::parse(local_mode.as_bytes(), Path::new("f")).unwrap();
        let c = Cluster::from_conf(&conf_local, "c", Timeouts::default(), &local).unwrap();
        assert!(c.regions().is_empty());
        let mut sys = O2cbSysconfig::default();
        let online = Cluster::online(&conf, None, &sys, &local).unwrap();
        assert_eq!(online.name(), "c");
        sys.boot_cluster = Some("other".into());
        assert_eq!(
            Cluster::online(&conf, None, &sys, &local)
                .unwrap_err()
                .errno(),
            Some(Errno::NoEnt)
        );
        sys.timeouts.idle_timeout_ms = 60000;
        let online = Cluster::online(&conf, Some("c"), &sys, &local).unwrap();
        assert_eq!(online.timeouts().idle_timeout_ms, 60000);
        sys.stack = Stack::Pcmk;
        assert_eq!(
            Cluster::online(&conf, Some("c"), &sys, &local)
                .unwrap_err()
                .errno(),
            Some(Errno::Inval)
        );
        let by_host = LocalNode::Hostname("N1.example.com".into());
        let c = Cluster::from_conf(&conf, "c", Timeouts::default(), &by_host).unwrap();
        assert_eq!(c.local_node().map(|n| n.num), Some(1));
        let twice = text.replace("name = n2", "name = n1.example");
        let conf2 = ClusterConf::parse(twice.as_bytes(), Path::new("f")).unwrap();
        let err = Cluster::from_conf(&conf2, "c", Timeouts::default(), &by_host).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::Busy));
        let bad_name = text.replace("= c\n", "= c-1\n");
        let conf3 = ClusterConf::parse(bad_name.as_bytes(), Path::new("f")).unwrap();
        let err = Cluster::from_conf(&conf3, "c-1", Timeouts::default(), &local).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::Inval), "{err}");
        let missing = LocalNode::Named("n3".into());
        assert!(Cluster::from_conf(&conf, "c", Timeouts::default(), &missing).is_err());
        let bad = text.replace("number = 2", "number = 300");
        let conf = ClusterConf::parse(bad.as_bytes(), Path::new("f")).unwrap();
        let err = Cluster::from_conf(&conf, "c", Timeouts::default(), &local).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::Range));
        assert!(err.to_string().contains("node 'n2'"), "{err}");
    }
}
