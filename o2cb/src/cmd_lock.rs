//! `o2cb lock DOMAIN NAME [--mode ex|pr] [--trylock] -- COMMAND [ARGS...]`: runs COMMAND
//! while this node holds the DLM lock NAME of DOMAIN, for shell scripts (as flock(1) does
//! with a file). The exit status is COMMAND's (128 + N when killed by signal N); a trylock
//! that is not granted at once prints why and exits with `--conflict-exit-code` (1). A lock
//! asked of a node that is still starting waits until it is online (a trylock is refused).
//! If the lock is lost under the command (the node daemon dies, is paused past its lease,
//! goes offline or fences, or the unlock fails), the command is killed at once ([`crate::lease`])
//! and `o2cb lock` says why and exits with [`LOST_EXIT`].
//!
//! `o2cb lockdump DOMAIN [--dump locking_state|dlm_state|mle_state]`: one of the kernel's
//! debugfs dumps of a domain the node is in (through /dlm or `o2cb lock`), in the kernel's
//! format: the lock resources (default), the domain's state with its recovery state
//! (recovery master and state, dead node, recovery map), or the master list entries.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser};

use crate::cmd_node::parse;
use crate::daemon::client::{self, Target};
use crate::daemon::proto::Status;
use crate::lease::{self, Outcome};
use crate::Global;

#[derive(Parser, Debug)]
#[command(
    name = "o2cb lock",
    about = "Run a command while holding a DLM lock",
    trailing_var_arg = true
)]
struct LockCli {
    domain: String,
    name: String,
    /// Lock mode: ex (exclusive) or pr (shared).
    #[arg(long, default_value = "ex", value_parser = ["ex", "pr"])]
    mode: String,
    /// Fail at once instead of waiting when the lock is held elsewhere.
    #[arg(long)]
    trylock: bool,
    /// Exit status when --trylock finds the lock busy.
    #[arg(short = 'E', long, default_value_t = 1)]
    conflict_exit_code: u8,
    #[command(flatten)]
    target: NodeOptions,
    /// The command and its arguments (after `--`).
    #[arg(required = true, num_args = 1.., allow_hyphen_values = true)]
    command: Vec<String>,
}

/// The node to ask, as [`Target`] names it but with the cluster as `--cluster` (the
/// positional arguments are the lock's).
#[derive(Args, Debug)]
struct NodeOptions {
    /// The cluster (else O2CB_BOOTCLUSTER, else the only one of cluster.conf).
    #[arg(long)]
    cluster: Option<String>,
    /// The local node's name (else $O2CB_NODE, else the host name).
    #[arg(long)]
    node: Option<String>,
    /// The o2cb sysconfig file (else /etc/sysconfig/o2cb or /etc/default/o2cb).
    #[arg(long)]
    sysconfig: Option<PathBuf>,
}

impl From<NodeOptions> for Target {
    fn from(o: NodeOptions) -> Target {
        Target {
            cluster: o.cluster,
            node: o.node,
            sysconfig: o.sysconfig,
        }
    }
}

/// Exit status when the lock was lost under the command (EX_TEMPFAIL).
pub const LOST_EXIT: u8 = 75;

pub fn lock(global: &Global, args: &[String]) -> anyhow::Result<ExitCode> {
    let cli = match parse::<LockCli>("o2cb lock", args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let t = Target::from(cli.target);
    let (_, mut c) = client::connect(global, &t)?;
    let mut words = vec![
        "lock",
        cli.domain.as_str(),
        cli.name.as_str(),
        cli.mode.as_str(),
    ];
    if cli.trylock {
        words.push("trylock");
    }
    let r = c.call(&words)?;
    match r.status {
        Status::Ok => {}
        Status::Busy => {
            crate::eprint_text(&format!(
                "{}: lock {} of domain {} is held elsewhere (--trylock)\n",
                global.progname, cli.name, cli.domain
            ));
            return Ok(ExitCode::from(cli.conflict_exit_code));
        }
        Status::Err => bail!("{}", r.word),
    }
    let lease = r
        .body
        .lines()
        .find_map(|l| l.strip_prefix("lease_ms "))
        .and_then(|v| v.parse::<u64>().ok())
        .map(std::time::Duration::from_millis)
        .context("the node daemon gave no lease with the lock")?;
    let (program, rest) = cli.command.split_first().context("no command to run")?;
    let mut cmd = std::process::Command::new(crate::path_of(program));
    cmd.args(rest.iter().map(|a| crate::path_of(a)));
    let (outcome, mut session) = lease::run(&mut cmd, c.into_session()?, lease)
        .with_context(|| format!("running {program}"))?;
    let lost = |why: &str| {
        crate::eprint_text(&format!(
            "{}: lock {} of domain {} lost while {program} ran: {why}; {program} was killed\n",
            global.progname, cli.name, cli.domain
        ));
        Ok(ExitCode::from(LOST_EXIT))
    };
    let status = match outcome {
        Outcome::Lost(why) => return lost(&why),
        Outcome::Ended(status) => status,
    };
    // Release the lock whatever happened to the command.
    let released = session
        .send(&["unlock"])
        .and_then(|_| session.reply_within(lease.max(std::time::Duration::from_secs(10))));
    match released {
        Ok(r) if r.status == Status::Ok => {}
        Ok(r) => return unlock_failed(global, &cli.name, &cli.domain, &r.word),
        Err(e) => return unlock_failed(global, &cli.name, &cli.domain, &e.to_string()),
    }
    let code = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// The command ended but its unlock did not go through: the lock may have been lost before
/// it ended, so the command's work is not to be trusted.
fn unlock_failed(global: &Global, name: &str, domain: &str, why: &str) -> anyhow::Result<ExitCode> {
    crate::eprint_text(&format!(
        "{}: lock {name} of domain {domain}: the unlock after the command failed: {why}\n",
        global.progname
    ));
    Ok(ExitCode::from(LOST_EXIT))
}

#[derive(Parser, Debug)]
#[command(
    name = "o2cb lockdump",
    about = "A domain's locks, state or MLEs (the kernel's debugfs dumps)"
)]
struct LockdumpCli {
    domain: String,
    /// Which dump: the file of the kernel's /sys/kernel/debug/o2dlm/DOMAIN/.
    #[arg(long, default_value = "locking_state", value_parser = ["locking_state", "dlm_state", "mle_state"])]
    dump: String,
    #[command(flatten)]
    target: NodeOptions,
}

pub fn lockdump(global: &Global, args: &[String]) -> anyhow::Result<ExitCode> {
    let cli = match parse::<LockdumpCli>("o2cb lockdump", args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let t = Target::from(cli.target);
    crate::print_text(&client::simple(
        global,
        &t,
        &["lockdump", &cli.domain, &cli.dump],
    )?);
    Ok(ExitCode::SUCCESS)
}
