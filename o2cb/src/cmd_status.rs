//! `o2cb status`, `o2cb nodes` and `o2cb list-connections`: what a running node says about
//! itself over its control socket (see `daemon::report` for the wording of `status`).

use std::process::ExitCode;

use clap::Parser;

use crate::cmd_node::parse;
use crate::daemon::client::{self, Target};
use crate::daemon::report;
use crate::Global;

#[derive(Parser, Debug)]
#[command(name = "o2cb status", about = "The init script's status of this node")]
struct StatusCli {
    #[command(flatten)]
    target: Target,
}

/// `o2cb status [CLUSTER]`: the running node's status, or that it is offline.
pub fn status(global: &Global, args: &[String]) -> anyhow::Result<ExitCode> {
    let cli = match parse::<StatusCli>("o2cb status", args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let at = client::locate(global, &cli.target)?;
    let text = match at.connect() {
        Some(mut c) => {
            let r = c.call(&["status"])?;
            if r.status != crate::daemon::proto::Status::Ok {
                anyhow::bail!("{}", r.word);
            }
            r.body
        }
        None => format!(
            "{}Checking O2CB cluster \"{}\": Offline\n",
            report::daemon_line(&at.cluster, None),
            at.cluster
        ),
    };
    crate::print_text(&text);
    Ok(ExitCode::SUCCESS)
}

#[derive(Parser, Debug)]
#[command(name = "o2cb nodes", about = "Nodes as this node sees them")]
struct NodesCli {
    #[command(flatten)]
    target: Target,
}

/// `o2cb nodes [CLUSTER]`: node, name, address, heartbeat, connection, generation.
pub fn nodes(global: &Global, args: &[String]) -> anyhow::Result<ExitCode> {
    let cli = match parse::<NodesCli>("o2cb nodes", args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    crate::print_text(&client::simple(global, &cli.target, &["nodes"])?);
    Ok(ExitCode::SUCCESS)
}

#[derive(Parser, Debug)]
#[command(
    name = "o2cb list-connections",
    about = "o2net connections of this node"
)]
struct ConnectionsCli {
    #[command(flatten)]
    target: Target,
}

/// `o2cb list-connections [CLUSTER]`: o2net's connection table.
pub fn list_connections(global: &Global, args: &[String]) -> anyhow::Result<ExitCode> {
    let cli = match parse::<ConnectionsCli>("o2cb list-connections", args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    crate::print_text(&client::simple(global, &cli.target, &["connections"])?);
    Ok(ExitCode::SUCCESS)
}

/// The clusters of the daemons answering in the runtime directory, and whether each has a
/// heartbeat region active and runs global heartbeat.
fn running_clusters() -> Vec<(String, bool, bool)> {
    let dir = crate::daemon::proto::runtime_dir();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return found;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.extension().is_none_or(|e| e != "sock") {
            continue;
        }
        let Ok(mut c) = crate::daemon::proto::Client::connect(&p) else {
            continue;
        };
        let (Ok(ping), Ok(status)) = (c.call(&["ping"]), c.call(&["status"])) else {
            continue;
        };
        let field = |k: &str| {
            ping.body
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(str::to_string)
        };
        if let Some(cluster) = field("cluster ") {
            let global = field("mode ").as_deref() == Some("Global");
            let active = status.body.contains("Checking O2CB heartbeat: Active\n");
            found.push((cluster, active, global));
        }
    }
    found
}

/// ocfs2-tools' `o2cb cluster-status [CLUSTER]` over the node daemons: the active cluster is
/// one whose daemon runs on this machine; it is online in local heartbeat mode, or in global
/// mode with a region active. Prints `Cluster 'C' is online|offline` (or only `offline`
/// when no cluster is active); exit status 0 when online, else 1.
pub fn cluster_status(argv: &[String]) -> ExitCode {
    let wanted = argv.get(1);
    let running = running_clusters();
    let (name, online) = match (running.first(), wanted) {
        (None, None) => (None, false),
        (None, Some(w)) => (Some(w.clone()), false),
        (Some(_), Some(w)) => match running.iter().find(|(c, _, _)| c == w) {
            Some((c, active, global)) => (Some(c.clone()), *active || !*global),
            None => (Some(w.clone()), false),
        },
        (Some((c, active, global)), None) => (Some(c.clone()), *active || !*global),
    };
    let word = if online { "online" } else { "offline" };
    match name {
        Some(c) => crate::print_text(&format!("Cluster '{c}' is {word}\n")),
        None => crate::print_text(&format!("{word}\n")),
    }
    ExitCode::from(if online { 0 } else { 1 })
}
