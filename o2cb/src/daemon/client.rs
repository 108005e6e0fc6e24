//! How the `o2cb` commands find the daemon of a node and talk to it.
//!
//! The node is found as the daemon finds itself (cluster argument or `O2CB_BOOTCLUSTER` or
//! the only cluster; `--node`, `$O2CB_NODE` or the host name), which names its socket. When
//! the configuration cannot say (no file, no matching node), the one socket of the runtime
//! directory is used, if there is exactly one.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use super::proto::{self, Client};
use super::Options;
use crate::Global;

/// The options every client command takes to name its node.
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// The cluster (else O2CB_BOOTCLUSTER, else the only one of cluster.conf).
    pub cluster: Option<String>,
    /// The local node's name (else $O2CB_NODE, else the host name).
    #[arg(long)]
    pub node: Option<String>,
    /// The o2cb sysconfig file (else /etc/sysconfig/o2cb or /etc/default/o2cb).
    #[arg(long)]
    pub sysconfig: Option<PathBuf>,
}

/// A node's daemon, found (it may not be running).
#[derive(Debug, Clone)]
pub struct Located {
    pub cluster: String,
    pub node: String,
    pub socket: PathBuf,
}

impl Located {
    /// Connects; `None` when no daemon answers.
    pub fn connect(&self) -> Option<Client> {
        Client::connect(&self.socket).ok()
    }
}

pub fn locate(global: &Global, target: &Target) -> anyhow::Result<Located> {
    let opts = Options {
        cluster: target.cluster.clone(),
        node: target.node.clone(),
        sysconfig: target.sysconfig.clone(),
        ..Options::default()
    };
    let dir = proto::runtime_dir();
    let from_conf = super::load_cluster(global, &opts);
    if let Ok(c) = &from_conf {
        if let Some(n) = c.local_node() {
            return Ok(Located {
                cluster: c.name().to_string(),
                node: n.name.clone(),
                socket: proto::node_file(&dir, c.name(), &n.name, "sock"),
            });
        }
    }
    // The configuration does not say: look for the only running node that fits.
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let file = crate::path_text(std::path::Path::new(&e.file_name()));
            let Some(stem) = file.strip_suffix(".sock") else {
                continue;
            };
            let Some((cluster, node)) = stem.split_once('.') else {
                continue;
            };
            let fits = target.cluster.as_deref().is_none_or(|c| c == cluster)
                && target.node.as_deref().is_none_or(|n| n == node);
            if fits {
                found.push(Located {
                    cluster: cluster.to_string(),
                    node: node.to_string(),
                    socket: e.path(),
                });
            }
        }
    }
    match (found.len(), from_conf) {
        (1, _) => Ok(found.remove(0)),
        (0, Err(e)) => Err(e),
        (0, Ok(_)) => bail!("no node daemon found"),
        (n, _) => bail!(
            "{n} nodes run on this machine ({}): name one with --node NAME and the cluster",
            found
                .iter()
                .map(|l| format!("{}/{}", l.cluster, l.node))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Locates and connects, or fails saying the node is not online.
pub fn connect(global: &Global, target: &Target) -> anyhow::Result<(Located, Client)> {
    let at = locate(global, target)?;
    match at.connect() {
        Some(c) => Ok((at, c)),
        None => bail!(
            "node {} of cluster {} is not online (no daemon on {})",
            at.node,
            at.cluster,
            crate::path_text(&at.socket)
        ),
    }
}

/// One request whose `ok` body is printed as is; an `err` becomes the command's error.
pub fn simple(global: &Global, target: &Target, words: &[&str]) -> anyhow::Result<String> {
    let (_, mut c) = connect(global, target)?;
    let r = c.call(words)?;
    match r.status {
        proto::Status::Ok => Ok(r.body),
        _ => bail!("{}", r.word),
    }
}
