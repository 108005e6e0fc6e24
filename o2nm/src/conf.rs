//! `/etc/ocfs2/cluster.conf`: the clusters, nodes and heartbeat regions it
//! describes, read and written exactly as ocfs2-tools 1.8.7 does
//! (`o2cb_ctl/o2cb_config.c`), plus the checks the O2CB documentation states
//! but the tools skip (reported as [`Warning`]s).
//!
//! What the tools accept when loading, and so what we accept:
//! * `cluster:` needs `name` (a missing name crashes the tools; we refuse it)
//!   and `node_count` (a decimal number up to 2^32-1, not checked against the
//!   nodes); `heartbeat_mode` is `local` (the default) or `global`, in any case.
//! * `node:` and `heartbeat:` stanzas belong to the cluster named by their
//!   `cluster` key; those naming no loaded cluster are ignored (and dropped
//!   when the tools rewrite the file).
//! * A node needs a non-empty `name` (unique in its cluster), a decimal
//!   `number` below 2^31-1, a dotted-quad `ip_address` and a decimal `ip_port`
//!   up to 2^32-1. A heartbeat needs a non-empty `region`, unique in its
//!   cluster. Other keys and stanza types are ignored.
//! * A duplicate cluster name refuses the whole file.
//!
//! Values are text; bytes that are not UTF-8 are kept exactly, as the
//! private-use characters of [`crate::text`].

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;

use crate::error::{Error, Result};
use crate::jconfig::{self, OutStanza, RawStanza};
use crate::text;

/// Where something was read from. Equality ignores it, so that a model read
/// from a file equals the same model built in code.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceLine(pub Option<usize>);

impl PartialEq for SourceLine {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SourceLine {}

impl std::fmt::Display for SourceLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(line) => write!(f, "line {line}"),
            None => f.write_str("(not from a file)"),
        }
    }
}

/// Heartbeat mode of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeartbeatMode {
    /// One heartbeat region per mounted volume, started by the mount.
    #[default]
    Local,
    /// The configured regions, started with the cluster.
    Global,
}

impl HeartbeatMode {
    /// The word the file and the tools use.
    pub fn as_str(self) -> &'static str {
        match self {
            HeartbeatMode::Local => "local",
            HeartbeatMode::Global => "global",
        }
    }

    /// Reads `local` / `global`, in any case, as the tools do.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("local") {
            Some(HeartbeatMode::Local)
        } else if s.eq_ignore_ascii_case("global") {
            Some(HeartbeatMode::Global)
        } else {
            None
        }
    }
}

impl std::fmt::Display for HeartbeatMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `node:` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStanza {
    pub name: String,
    /// As in the file: the tools accept up to 2^31-2; the kernel only 0-254.
    pub number: u32,
    pub ip_address: Ipv4Addr,
    /// As in the file: the tools accept up to 2^32-1; the kernel only 1-65534.
    pub ip_port: u32,
    pub line: SourceLine,
}

/// A `heartbeat:` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatStanza {
    /// The region name: the volume UUID in upper-case hex.
    pub region: String,
    pub line: SourceLine,
}

/// A `cluster:` stanza with the nodes and heartbeat regions that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStanza {
    pub name: String,
    pub heartbeat_mode: HeartbeatMode,
    /// As written in the file. The tools add one per node added and subtract
    /// one per node removed (wrapping like a C `unsigned int`), whatever the
    /// real number of nodes.
    pub node_count: u32,
    pub nodes: Vec<NodeStanza>,
    pub heartbeats: Vec<HeartbeatStanza>,
    pub line: SourceLine,
}

/// Something the documentation forbids but ocfs2-tools lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: SourceLine,
    pub what: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line.0 {
            Some(line) => write!(f, "line {line}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// Why a cluster name is refused by `o2cb add-cluster`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterNameProblem {
    Empty,
    /// Longer than [`crate::CLUSTER_NAME_MAX`].
    TooLong,
    NotAlphanumeric,
}

impl std::fmt::Display for ClusterNameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClusterNameProblem::Empty => "it is empty",
            ClusterNameProblem::TooLong => "it is longer than 16 characters",
            ClusterNameProblem::NotAlphanumeric => "only letters and digits are allowed",
        })
    }
}

/// The cluster-name rule of ocfs2-tools: 1 to 16 ASCII letters and digits.
pub fn check_cluster_name(name: &str) -> std::result::Result<(), ClusterNameProblem> {
    if name.is_empty() {
        Err(ClusterNameProblem::Empty)
    } else if name.len() > crate::CLUSTER_NAME_MAX {
        Err(ClusterNameProblem::TooLong)
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Err(ClusterNameProblem::NotAlphanumeric)
    } else {
        Ok(())
    }
}

/// The whole file: every cluster in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterConf {
    pub clusters: Vec<ClusterStanza>,
}

/// glibc `inet_pton(AF_INET, ...)`: exactly four decimal octets, no leading
/// zeros, nothing else.
pub fn parse_ipv4_strict(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut count = 0;
    for part in s.split('.') {
        let slot = octets.get_mut(count)?;
        if part.is_empty()
            || part.len() > 3
            || !part.bytes().all(|b| b.is_ascii_digit())
            || (part.len() > 1 && part.starts_with('0'))
        {
            return None;
        }
        *slot = part.parse().ok()?;
        count += 1;
    }
    (count == 4).then(|| Ipv4Addr::from(octets))
}

/// The node and heartbeat stanzas, in file order, by (stanza type, raw
/// `cluster` value).
type Members<'r> = HashMap<(String, Vec<u8>), Vec<&'r RawStanza>>;

struct Loader<'a> {
    file: &'a Path,
}

impl Loader<'_> {
    fn invalid<T>(&self, line: usize, what: impl Into<String>) -> Result<T> {
        Err(Error::Invalid {
            file: self.file.to_path_buf(),
            line,
            what: what.into(),
        })
    }

    fn text(&self, stanza: &RawStanza, key: &str) -> Option<(String, usize)> {
        stanza
            .get(key)
            .map(|(bytes, line)| (text::decode(bytes), line))
    }

    fn required(&self, stanza: &RawStanza, key: &str) -> Result<(String, usize)> {
        match self.text(stanza, key) {
            Some((v, line)) if !v.is_empty() => Ok((v, line)),
            Some((_, line)) => self.invalid(line, format!("{} '{key}' is empty", stanza.kind)),
            None => self.invalid(
                stanza.line,
                format!("{} stanza has no '{key}' (it is required)", stanza.kind),
            ),
        }
    }

    /// A decimal number, as the tools read it, that must be `<= max`.
    fn number(&self, stanza: &RawStanza, key: &str, max: u64) -> Result<u32> {
        let (text, line) = self.required(stanza, key)?;
        match crate::cnum::strtoul10_whole(text.as_bytes()) {
            Ok(Some(v)) if v <= max => u32::try_from(v)
                .or_else(|_| self.invalid(line, format!("'{key}' is out of range: {text}"))),
            Ok(_) => self.invalid(
                line,
                format!("'{key}' is out of range (at most {max}): {text}"),
            ),
            Err(()) => self.invalid(line, format!("'{key}' is not a decimal number: '{text}'")),
        }
    }

    fn node(&self, stanza: &RawStanza) -> Result<NodeStanza> {
        let (name, _) = self.required(stanza, "name")?;
        let number = self.number(stanza, "number", i32::MAX as u64 - 1)?;
        let (ip, ip_line) = self.required(stanza, "ip_address")?;
        let Some(ip_address) = parse_ipv4_strict(&ip) else {
            return self.invalid(
                ip_line,
                format!("'ip_address' is not a dotted-quad IPv4 address: '{ip}'"),
            );
        };
        let ip_port = self.number(stanza, "ip_port", u64::from(u32::MAX))?;
        Ok(NodeStanza {
            name,
            number,
            ip_address,
            ip_port,
            line: SourceLine(Some(stanza.line)),
        })
    }

    fn cluster(&self, stanza: &RawStanza, members: &Members) -> Result<ClusterStanza> {
        let Some((name, _)) = self.text(stanza, "name") else {
            return self.invalid(stanza.line, "cluster stanza has no 'name' (it is required)");
        };
        let heartbeat_mode = match self.text(stanza, "heartbeat_mode") {
            None => HeartbeatMode::Local,
            Some((mode, line)) => match HeartbeatMode::parse(&mode) {
                Some(m) => m,
                None => {
                    return self.invalid(
                        line,
                        format!("'heartbeat_mode' must be 'local' or 'global', not '{mode}'"),
                    )
                }
            },
        };
        let raw_name = text::encode(&name);
        let of_kind = |kind: &str| -> &[&RawStanza] {
            members
                .get(&(kind.to_string(), raw_name.clone()))
                .map_or(&[], Vec::as_slice)
        };
        let mut nodes: Vec<NodeStanza> = Vec::new();
        let mut node_lines: HashMap<String, SourceLine> = HashMap::new();
        for raw in of_kind("node") {
            let node = self.node(raw)?;
            if let Some(first) = node_lines.get(&node.name) {
                return self.invalid(
                    raw.line,
                    format!(
                        "node '{}' is defined twice in cluster '{name}' (first at {first})",
                        node.name
                    ),
                );
            }
            node_lines.insert(node.name.clone(), node.line);
            nodes.push(node);
        }
        let node_count = self.number(stanza, "node_count", u64::from(u32::MAX))?;
        let mut heartbeats: Vec<HeartbeatStanza> = Vec::new();
        let mut region_lines: HashMap<String, SourceLine> = HashMap::new();
        for raw in of_kind("heartbeat") {
            let (region, _) = self.required(raw, "region")?;
            if let Some(first) = region_lines.get(&region) {
                return self.invalid(
                    raw.line,
                    format!(
                        "heartbeat region '{region}' is listed twice for cluster '{name}' (first at {first})"
                    ),
                );
            }
            region_lines.insert(region.clone(), SourceLine(Some(raw.line)));
            heartbeats.push(HeartbeatStanza {
                region,
                line: SourceLine(Some(raw.line)),
            });
        }
        Ok(ClusterStanza {
            name,
            heartbeat_mode,
            node_count,
            nodes,
            heartbeats,
            line: SourceLine(Some(stanza.line)),
        })
    }
}

const KNOWN_KEYS: &[(&str, &[&str])] = &[
    ("cluster", &["name", "node_count", "heartbeat_mode"]),
    (
        "node",
        &["name", "cluster", "number", "ip_address", "ip_port"],
    ),
    ("heartbeat", &["region", "cluster"]),
];

impl ClusterConf {
    /// Reads a cluster.conf text as ocfs2-tools does. `file` names the file
    /// in errors.
    pub fn parse(text: &[u8], file: &Path) -> Result<ClusterConf> {
        Self::parse_checked(text, file).map(|(conf, _)| conf)
    }

    /// [`ClusterConf::parse`], plus warnings for what the tools silently
    /// ignore or the kernel would refuse (see [`ClusterConf::check`]).
    pub fn parse_checked(text: &[u8], file: &Path) -> Result<(ClusterConf, Vec<Warning>)> {
        let (raw, notes) = jconfig::parse(text, file)?;
        let loader = Loader { file };
        let mut members: Members = HashMap::new();
        for s in raw.iter().filter(|s| s.kind != "cluster") {
            if let Some((owner, _)) = s.get("cluster") {
                members
                    .entry((s.kind.clone(), owner.to_vec()))
                    .or_default()
                    .push(s);
            }
        }
        let mut conf = ClusterConf::default();
        let mut seen: HashMap<String, SourceLine> = HashMap::new();
        for stanza in raw.iter().filter(|s| s.kind == "cluster") {
            let cluster = loader.cluster(stanza, &members)?;
            if let Some(first) = seen.get(&cluster.name) {
                return loader.invalid(
                    stanza.line,
                    format!(
                        "cluster '{}' is defined twice (first at {first})",
                        cluster.name
                    ),
                );
            }
            seen.insert(cluster.name.clone(), cluster.line);
            conf.clusters.push(cluster);
        }
        let mut warnings: Vec<Warning> = notes
            .into_iter()
            .map(|(line, what)| Warning {
                line: SourceLine(Some(line)),
                what,
            })
            .collect();
        for stanza in &raw {
            let warn = |what: String| Warning {
                line: SourceLine(Some(stanza.line)),
                what,
            };
            let Some((_, keys)) = KNOWN_KEYS.iter().find(|(k, _)| *k == stanza.kind) else {
                warnings.push(warn(format!(
                    "unknown stanza type '{}:' is ignored",
                    stanza.kind
                )));
                continue;
            };
            for attr in stanza
                .attrs
                .iter()
                .filter(|a| !keys.contains(&a.key.as_str()))
            {
                warnings.push(Warning {
                    line: SourceLine(Some(attr.line)),
                    what: format!(
                        "unknown key '{}' in a {} stanza is ignored",
                        attr.key, stanza.kind
                    ),
                });
            }
            if stanza.kind != "cluster" {
                let owner = stanza.get("cluster").map(|(v, _)| text::decode(v));
                match owner {
                    None => warnings.push(warn(format!(
                        "{} stanza has no 'cluster' key and is ignored",
                        stanza.kind
                    ))),
                    Some(c) if !seen.contains_key(&c) => warnings.push(warn(format!(
                        "{} stanza names unknown cluster '{c}' and is ignored",
                        stanza.kind
                    ))),
                    Some(_) => {}
                }
            }
        }
        warnings.extend(conf.check());
        Ok((conf, warnings))
    }

    /// Reads the file; a missing file is an empty configuration, as for the
    /// tools.
    pub fn load(path: &Path) -> Result<ClusterConf> {
        Self::load_checked(path).map(|(conf, _)| conf)
    }

    /// [`ClusterConf::load`] with warnings.
    pub fn load_checked(path: &Path) -> Result<(ClusterConf, Vec<Warning>)> {
        match std::fs::read(path) {
            Ok(text) => Self::parse_checked(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok((ClusterConf::default(), Vec::new()))
            }
            Err(source) => Err(Error::Io {
                file: path.to_path_buf(),
                err: source,
            }),
        }
    }

    /// The file text ocfs2-tools writes for this configuration, byte for byte.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for c in &self.clusters {
            out.push(OutStanza {
                kind: "cluster",
                attrs: vec![
                    ("name", c.name.clone()),
                    ("heartbeat_mode", c.heartbeat_mode.as_str().to_string()),
                    ("node_count", c.node_count.to_string()),
                ],
            });
            for hb in &c.heartbeats {
                out.push(OutStanza {
                    kind: "heartbeat",
                    attrs: vec![("cluster", c.name.clone()), ("region", hb.region.clone())],
                });
            }
            for n in &c.nodes {
                out.push(OutStanza {
                    kind: "node",
                    attrs: vec![
                        ("cluster", c.name.clone()),
                        ("name", n.name.clone()),
                        ("ip_address", n.ip_address.to_string()),
                        ("ip_port", n.ip_port.to_string()),
                        ("number", n.number.to_string()),
                    ],
                });
            }
        }
        jconfig::write(&out)
    }

    /// Writes the file so that it is never seen half-written: a temporary
    /// file in the same directory, fsync, rename. An existing file keeps its
    /// mode; a new one gets 0644, as the tools create it. The directory must
    /// exist.
    pub fn store(&self, path: &Path) -> Result<()> {
        crate::atomic_write(path, &self.to_bytes(), 0o644)
    }

    /// The cluster with this name.
    pub fn cluster(&self, name: &str) -> Option<&ClusterStanza> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The cluster with this name, to edit.
    pub fn cluster_mut(&mut self, name: &str) -> Option<&mut ClusterStanza> {
        self.clusters.iter_mut().find(|c| c.name == name)
    }

    /// Adds an empty cluster (local heartbeat, node_count 0) at the end.
    pub fn add_cluster(&mut self, name: &str) -> Result<&mut ClusterStanza> {
        if self.cluster(name).is_some() {
            return Err(Error::edit(format!("Cluster '{name}' already exists")));
        }
        self.clusters.push(ClusterStanza {
            name: name.to_string(),
            heartbeat_mode: HeartbeatMode::Local,
            node_count: 0,
            nodes: Vec::new(),
            heartbeats: Vec::new(),
            line: SourceLine(None),
        });
        let last = self.clusters.len() - 1;
        Ok(&mut self.clusters[last])
    }

    /// Removes a cluster with its nodes and regions.
    pub fn remove_cluster(&mut self, name: &str) -> Result<ClusterStanza> {
        match self.clusters.iter().position(|c| c.name == name) {
            Some(i) => Ok(self.clusters.remove(i)),
            None => Err(Error::edit(format!("Unknown cluster '{name}'"))),
        }
    }

    /// What the documentation forbids and the tools let through: node numbers
    /// outside 0-254, ports outside 1-65534, duplicate node numbers or
    /// addresses, names too long for configfs, a node_count that differs from
    /// the number of nodes, cluster names the tools would not create, too
    /// many or too long heartbeat regions.
    pub fn check(&self) -> Vec<Warning> {
        let mut out = Vec::new();
        for c in &self.clusters {
            let mut warn = |line: SourceLine, what: String| out.push(Warning { line, what });
            if let Err(problem) = check_cluster_name(&c.name) {
                warn(
                    c.line,
                    format!(
                        "cluster name '{}' is invalid ({problem}); o2cb would not create such a cluster",
                        c.name
                    ),
                );
            }
            if c.node_count as usize != c.nodes.len() {
                warn(
                    c.line,
                    format!(
                        "cluster '{}' says node_count = {} but has {} node stanza(s)",
                        c.name,
                        c.node_count,
                        c.nodes.len()
                    ),
                );
            }
            let mut by_number: HashMap<u32, &str> = HashMap::new();
            let mut by_address: HashMap<Ipv4Addr, &str> = HashMap::new();
            for n in &c.nodes {
                if n.number > u32::from(crate::MAX_NODE_NUMBER) {
                    warn(
                        n.line,
                        format!(
                            "node '{}' has number {}; node numbers are 0-254",
                            n.name, n.number
                        ),
                    );
                }
                if n.ip_port == 0 || n.ip_port >= 65535 {
                    warn(
                        n.line,
                        format!(
                            "node '{}' has port {}; ports are 1-65534",
                            n.name, n.ip_port
                        ),
                    );
                }
                if n.name.len() > crate::NODE_NAME_MAX {
                    warn(
                        n.line,
                        format!("node name '{}' is longer than 64 characters", n.name),
                    );
                }
                if let Some(other) = by_number.insert(n.number, &n.name) {
                    warn(
                        n.line,
                        format!("nodes '{other}' and '{}' share number {}", n.name, n.number),
                    );
                }
                if let Some(other) = by_address.insert(n.ip_address, &n.name) {
                    warn(
                        n.line,
                        format!(
                            "nodes '{other}' and '{}' share address {}",
                            n.name, n.ip_address
                        ),
                    );
                }
            }
            if c.heartbeat_mode == HeartbeatMode::Global && c.heartbeats.len() > crate::MAX_REGIONS
            {
                warn(
                    c.line,
                    format!(
                        "cluster '{}' lists {} heartbeat regions; at most 32 are used",
                        c.name,
                        c.heartbeats.len()
                    ),
                );
            }
            for h in &c.heartbeats {
                let uuid = h.region.len() == 32 && h.region.bytes().all(|b| b.is_ascii_hexdigit());
                if h.region.len() > crate::REGION_NAME_MAX {
                    warn(
                        h.line,
                        format!(
                            "heartbeat region '{}' is longer than 32 characters",
                            h.region
                        ),
                    );
                } else if !uuid {
                    warn(
                        h.line,
                        format!(
                            "heartbeat region '{}' is not a volume UUID (32 hex digits)",
                            h.region
                        ),
                    );
                }
            }
            if c.heartbeat_mode == HeartbeatMode::Local && !c.heartbeats.is_empty() {
                warn(
                    c.line,
                    format!("cluster '{}' is in local heartbeat mode: its heartbeat regions are not used", c.name),
                );
            }
        }
        out
    }
}

impl ClusterStanza {
    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&NodeStanza> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The first node with this number.
    pub fn node_by_number(&self, number: u32) -> Option<&NodeStanza> {
        self.nodes.iter().find(|n| n.number == number)
    }

    /// The lowest node number 0-254 no node uses (what `o2cb add-node` picks).
    pub fn lowest_unused_number(&self) -> Option<u32> {
        (0..=u32::from(crate::MAX_NODE_NUMBER)).find(|n| self.node_by_number(*n).is_none())
    }

    /// Appends a node; node_count goes up by one, as with the tools.
    pub fn add_node(&mut self, node: NodeStanza) -> Result<()> {
        if self.node(&node.name).is_some() {
            return Err(Error::edit(format!("Node '{}' already exists", node.name)));
        }
        self.nodes.push(node);
        self.node_count = self.node_count.wrapping_add(1);
        Ok(())
    }

    /// Removes a node; node_count goes down by one, as with the tools.
    pub fn remove_node(&mut self, name: &str) -> Result<NodeStanza> {
        match self.nodes.iter().position(|n| n.name == name) {
            Some(i) => {
                self.node_count = self.node_count.wrapping_sub(1);
                Ok(self.nodes.remove(i))
            }
            None => Err(Error::edit(format!("Unknown node '{name}'"))),
        }
    }

    /// Appends a heartbeat region.
    pub fn add_heartbeat(&mut self, region: &str) -> Result<()> {
        if self.heartbeats.iter().any(|h| h.region == region) {
            return Err(Error::edit(format!(
                "Heartbeat region '{region}' already exists"
            )));
        }
        self.heartbeats.push(HeartbeatStanza {
            region: region.to_string(),
            line: SourceLine(None),
        });
        Ok(())
    }

    /// Removes a heartbeat region.
    pub fn remove_heartbeat(&mut self, region: &str) -> Result<()> {
        match self.heartbeats.iter().position(|h| h.region == region) {
            Some(i) => {
                self.heartbeats.remove(i);
                Ok(())
            }
            None => Err(Error::edit(format!("Unknown heartbeat region '{region}'"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "cluster:\n\tname = kpeer\n\theartbeat_mode = global\n\tnode_count = 2\n\n\
heartbeat:\n\tcluster = kpeer\n\tregion = 70CE683A83964E2F8A240638A5209DED\n\n\
node:\n\tcluster = kpeer\n\tnumber = 0\n\tip_port = 7777\n\tip_address = 10.213.0.1\n\tname = hostpeer\n\n\
node:\n\tcluster = kpeer\n\tnumber = 1\n\tip_port = 7777\n\tip_address = 10.213.0.2\n\tname = guest1\n\n";

    fn parse(text: &str) -> Result<ClusterConf> {
        ClusterConf::parse(text.as_bytes(), Path::new("cluster.conf"))
    }

    #[test]
    fn kernel_fixture_reads_and_writes_back_identically() {
        let conf = parse(FIXTURE).unwrap();
        let c = conf.cluster("kpeer").unwrap();
        assert_eq!(c.heartbeat_mode, HeartbeatMode::Global);
        assert_eq!(c.nodes[1].name, "guest1");
        assert_eq!(c.nodes[1].ip_address, Ipv4Addr::new(10, 213, 0, 2));
        assert_eq!(c.heartbeats[0].region, "70CE683A83964E2F8A240638A5209DED");
        assert_eq!(String::from_utf8(conf.to_bytes()).unwrap(), FIXTURE);
    }

    #[test]
    fn ipv4_like_inet_pton() {
        assert_eq!(parse_ipv4_strict("127.0.0.1"), Some(Ipv4Addr::LOCALHOST));
        for bad in [
            "1.2.3",
            "1.2.3.4.",
            "01.2.3.4",
            "1.2.3.256",
            "1.2.3.4 ",
            "",
            "a.b.c.d",
            "1..2.3",
        ] {
            assert_eq!(parse_ipv4_strict(bad), None, "{bad}");
        }
    }

    #[test]
    fn refusals_name_the_line() {
        let cases = [
            ("cluster:\n\tname = a\n", 1, "node_count"),
            ("cluster:\n\tnode_count = 1\n", 1, "'name'"),
            ("cluster:\n\tname = a\n\tnode_count = x\n", 3, "decimal"),
            ("cluster:\n\tname = a\n\tnode_count = 0\n\theartbeat_mode = disk\n", 4, "heartbeat_mode"),
            ("cluster:\n\tname = a\n\tnode_count = 0\n\ncluster:\n\tname = a\n\tnode_count = 0\n", 5, "twice"),
            ("cluster:\n\tname = a\n\tnode_count = 0\n\nnode:\n\tcluster = a\n\tname = n\n\tnumber = 2147483647\n\tip_address = 1.1.1.1\n\tip_port = 1\n", 8, "out of range"),
            ("cluster:\n\tname = a\n\tnode_count = 0\n\nnode:\n\tcluster = a\n\tname = n\n\tnumber = 1\n\tip_address = 1.1.1\n\tip_port = 1\n", 9, "ip_address"),
            ("cluster:\n\tname = a\n\tnode_count = 0\n\nheartbeat:\n\tcluster = a\n", 5, "region"),
        ];
        for (text, want_line, want_word) in cases {
            match parse(text) {
                Err(Error::Invalid { line, what, .. }) => {
                    assert_eq!(line, want_line, "{text:?}: {what}");
                    assert!(what.contains(want_word), "{text:?}: {what}");
                }
                other => panic!("{text:?}: expected refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn stanzas_for_unknown_clusters_are_ignored_with_a_warning() {
        let text = "cluster:\n\tname = a\n\tnode_count = 3\n\nnode:\n\tcluster = b\n\tname = x\n";
        let (conf, warnings) = ClusterConf::parse_checked(text.as_bytes(), Path::new("f")).unwrap();
        assert!(conf.clusters[0].nodes.is_empty());
        assert!(warnings
            .iter()
            .any(|w| w.what.contains("unknown cluster 'b'")));
        assert!(warnings
            .iter()
            .any(|w| w.what.contains("node_count = 3 but has 0")));
        let text =
            "cluster:\n\tname = a\n\tnode_count = 0\n\nheartbeat:\n\tcluster = a\n\tregion = R1\n";
        let (_, warnings) = ClusterConf::parse_checked(text.as_bytes(), Path::new("f")).unwrap();
        let whats: Vec<&str> = warnings.iter().map(|w| w.what.as_str()).collect();
        assert!(
            whats
                .iter()
                .any(|w| w.contains("'R1' is not a volume UUID")),
            "{whats:?}"
        );
        assert!(
            whats.iter().any(|w| w.contains("local heartbeat mode")),
            "{whats:?}"
        );
        let (_, warnings) = ClusterConf::parse_checked(FIXTURE.as_bytes(), Path::new("f")).unwrap();
        assert!(
            warnings.is_empty(),
            "a file written by ocfs2-tools: {warnings:?}"
        );
    }

    #[test]
    fn node_count_follows_the_tools_arithmetic() {
        let mut conf = ClusterConf::default();
        let c = conf.add_cluster("a").unwrap();
        c.add_node(NodeStanza {
            name: "n".into(),
            number: 0,
            ip_address: Ipv4Addr::LOCALHOST,
            ip_port: 7777,
            line: SourceLine(None),
        })
        .unwrap();
        c.node_count = 0;
        c.remove_node("n").unwrap();
        assert_eq!(c.node_count, u32::MAX);
        assert!(conf.add_cluster("a").is_err());
    }

    #[test]
    fn store_replaces_the_file_atomically_and_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.conf");
        let conf = parse(FIXTURE).unwrap();
        conf.store(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), FIXTURE);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&path), 0o644);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut smaller = conf.clone();
        smaller.clusters[0].nodes.pop();
        smaller.store(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(ClusterConf::load(&path).unwrap(), smaller);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("cluster.conf")],
            "no temporary file left behind"
        );
        let missing = dir.path().join("no/such/dir/cluster.conf");
        match conf.store(&missing) {
            Err(Error::Io { file, .. }) => assert_eq!(file, missing),
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }
}
