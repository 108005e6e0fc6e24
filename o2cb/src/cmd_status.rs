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
