//! `o2cb heartbeat start|stop`: local-mode heartbeat regions of a running node (the job of
//! ocfs2-tools' `ocfs2_hb_ctl -S/-K`, done by the node daemon). Every other `heartbeat`
//! subcommand is `cmd_heartbeat`'s.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::cmd_node::parse;
use crate::daemon::client::{self, Target};
use crate::Global;

#[derive(Parser, Debug)]
#[command(
    name = "o2cb heartbeat",
    about = "Heartbeat regions of the running node"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start heartbeat on a region (file or OCFS2 volume) in local mode.
    Start {
        region: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Stop heartbeat on a region (by path or region name) with the generation-0 block.
    Stop {
        region: String,
        #[command(flatten)]
        target: Target,
    },
}

pub fn run(global: &Global, args: &[String]) -> anyhow::Result<ExitCode> {
    if !matches!(args.first().map(String::as_str), Some("start" | "stop")) {
        return crate::cmd_heartbeat::run(global, args);
    }
    let cli = match parse::<Cli>("o2cb heartbeat", args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let out = match cli.cmd {
        Cmd::Start { region, target } => {
            let abs = std::path::absolute(&region).with_context(|| crate::path_text(&region))?;
            client::simple(global, &target, &["hb-start", &crate::path_text(&abs)])?
        }
        Cmd::Stop { region, target } => {
            // A path names the region by where it is; anything else is a region name.
            let which = match std::path::absolute(crate::path_of(&region)) {
                Ok(p) if p.exists() => crate::path_text(&p),
                _ => region,
            };
            client::simple(global, &target, &["hb-stop", &which])?
        }
    };
    crate::print_text(&out);
    Ok(ExitCode::SUCCESS)
}
