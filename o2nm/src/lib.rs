//! o2nm: the O2CB node manager.
//!
//! Reads and writes `/etc/ocfs2/cluster.conf` exactly as ocfs2-tools does
//! ([`ClusterConf`]), reads the o2cb sysconfig file (`/etc/sysconfig/o2cb`,
//! `/etc/default/o2cb`: [`O2cbSysconfig`]), and holds the cluster model that the
//! other layers use ([`Cluster`]: nodes, the local node, timeouts, heartbeat
//! mode and regions, with the kernel's configfs rules for runtime changes).
//!
//! Plain data and validation: the only I/O is reading and writing those files.

mod cluster;
pub mod cnum;
mod conf;
mod error;
mod jconfig;
mod sysconfig;
pub mod text;

pub use cluster::{Cluster, LocalNode, Node, Region, Timeouts};
pub use conf::{
    check_cluster_name, parse_ipv4_strict, ClusterConf, ClusterNameProblem, ClusterStanza,
    HeartbeatMode, HeartbeatStanza, NodeStanza, SourceLine, Warning,
};
pub use error::{Errno, Error, Result};
pub use sysconfig::{O2cbSysconfig, Stack};

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Number of node slots (`O2NM_MAX_NODES`); valid node numbers are below it.
pub const MAX_NODES: usize = 255;
/// Highest valid node number.
pub const MAX_NODE_NUMBER: u8 = 254;
/// The node number meaning "no node" (`O2NM_INVALID_NODE_NUM`).
pub const INVALID_NODE_NUMBER: u8 = 255;
/// Longest node name configfs accepts (`O2NM_MAX_NAME_LEN`).
pub const NODE_NAME_MAX: usize = 64;
/// Longest cluster name ocfs2-tools accepts (`OCFS2_CLUSTER_NAME_LEN`).
pub const CLUSTER_NAME_MAX: usize = 16;
/// Most heartbeat regions in global mode (`O2NM_MAX_REGIONS`).
pub const MAX_REGIONS: usize = 32;
/// Longest heartbeat region name.
pub const REGION_NAME_MAX: usize = 32;
/// The o2net port ocfs2-tools gives a node by default.
pub const DEFAULT_PORT: u16 = 7777;
/// Where ocfs2-tools keeps the cluster configuration.
pub const DEFAULT_CLUSTER_CONF: &str = "/etc/ocfs2/cluster.conf";

/// Replaces `path` with `bytes` so that readers see the old or the new file,
/// never a mix: temporary file in the same directory, fsync, rename, fsync of
/// the directory. An existing file keeps its mode; a new one gets `new_mode`.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8], new_mode: u32) -> Result<()> {
    let io = |err: std::io::Error| Error::Io {
        file: path.to_path_buf(),
        err,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    let mode = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(_) => new_mode,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".o2nm-tmp.")
        .tempfile_in(&dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        // Best effort: the rename is already visible; this only makes it durable.
        let _ = d.sync_all();
    }
    Ok(())
}
