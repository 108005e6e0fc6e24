//! The `o2cb` command.
//!
//! `o2cb [--config-file=path] [-h|--help] [-v|--verbose] [-V|--version] COMMAND [ARGS]`
//!
//! The global options and the ocfs2-tools commands (`add-cluster`, `list-nodes`,
//! ...) behave as ocfs2-tools 1.8.7's `o2cb` does, byte for byte: same usage
//! text, same messages, same exit codes, same file. They live in [`compat`].
//!
//! # Adding a project command
//!
//! Commands that ocfs2-tools does not have (`heartbeat`, `sim`, `node`,
//! `status`, `demo`, ...) are one module each, `src/cmd_<name>.rs`, exposing
//!
//! ```ignore
//! pub fn run(global: &Global, args: &[String]) -> anyhow::Result<std::process::ExitCode>
//! ```
//!
//! where `args` are the words after the command name (the module may parse
//! them with clap). Declare the module below (`mod cmd_<name>;`) and add one
//! arm to [`project_command`]. A project command name must not be one of the
//! ocfs2-tools commands in [`compat::COMMANDS`]. An `Err` is printed as
//! `o2cb: <error>` on stderr and the exit code is 1. The cluster
//! configuration for a command is `o2nm::ClusterConf::load(&global.config_file)`.
//!
//! Arguments are text in which bytes that are not UTF-8 stand as private-use
//! characters (`o2nm::text`), so that names match the file byte for byte;
//! [`path_of`] turns an argument into the path it names, and [`print_text`] /
//! [`eprint_text`] write text back as the original bytes.

mod cmd_demo;
mod cmd_exec;
mod cmd_hbctl;
mod cmd_heartbeat;
mod cmd_lock;
mod cmd_node;
mod cmd_sim;
mod cmd_status;
mod compat;
mod daemon;
mod lease;

use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use compat::getopt::{Getopt, Item, LongOpt, Order};

/// The default cluster configuration file, as ocfs2-tools.
pub const DEFAULT_CONFIG_FILE: &str = o2nm::DEFAULT_CLUSTER_CONF;

/// What the global options said; handed to every command.
#[derive(Debug, Clone)]
pub struct Global {
    /// `--config-file`, or [`DEFAULT_CONFIG_FILE`].
    pub config_file: PathBuf,
    /// Whether `--config-file` was given.
    pub config_file_given: bool,
    /// Whether `-v` was given at least once.
    pub verbose: bool,
    /// How many times `-v` was given (ocfs2-tools prints debug lines from 3 on).
    pub verbosity: u32,
    /// The program name used in messages (`basename(argv[0])`).
    pub progname: String,
    /// `argv[0]` as given, which getopt diagnostics use.
    pub argv0: String,
}

/// A project command's entry point (see the module documentation).
type CommandFn = fn(&Global, &[String]) -> anyhow::Result<ExitCode>;

/// The project commands: one arm per `cmd_<name>` module.
fn project_command(name: &str) -> Option<CommandFn> {
    #[allow(clippy::match_single_binding)]
    match name {
        // start|stop go to the node daemon, the rest to cmd_heartbeat.
        "heartbeat" => Some(cmd_hbctl::run),
        "demo" => Some(cmd_demo::run),
        "exec" => Some(cmd_exec::run),
        "lock" => Some(cmd_lock::lock),
        "lockdump" => Some(cmd_lock::lockdump),
        "node" => Some(cmd_node::run),
        "online" => Some(cmd_node::online),
        "offline" => Some(cmd_node::offline),
        "sim" => Some(cmd_sim::run),
        "status" => Some(cmd_status::status),
        "nodes" => Some(cmd_status::nodes),
        "list-connections" => Some(cmd_status::list_connections),
        _ => None,
    }
}

const USAGE: &str = "[--config-file=path] [-h|--help] [-v|--verbose] [-V|--version] COMMAND [ARGS]";

/// The version ocfs2-tools prints for `-V`: the release whose behaviour the
/// configuration commands reproduce.
const COMPAT_VERSION: &str = "1.8.7";

fn usage(progname: &str) -> ExitCode {
    let mut text = format!("usage: {progname} {USAGE}\n\nThe commands are:\n");
    for cmd in compat::COMMANDS {
        text.push_str(&format!("  {:<18}  {}\n", cmd.name, cmd.help));
    }
    text.push('\n');
    eprint_text(&text);
    ExitCode::from(1)
}

/// Writes text to stderr as the bytes it stands for (see [`o2nm::text`]),
/// ignoring failures (there is nowhere left to report them).
pub fn eprint_text(text: &str) {
    let _ = std::io::stderr()
        .lock()
        .write_all(&o2nm::text::encode(text));
}

/// Writes text to stdout as the bytes it stands for, ignoring failures (a
/// closed pipe is not our error).
pub fn print_text(text: &str) {
    let _ = std::io::stdout()
        .lock()
        .write_all(&o2nm::text::encode(text));
}

/// The path an argument names, byte for byte.
pub fn path_of(arg: &str) -> PathBuf {
    PathBuf::from(std::ffi::OsString::from_vec(o2nm::text::encode(arg)))
}

/// A path as text for messages, byte for byte.
pub fn path_text(path: &Path) -> String {
    o2nm::text::decode(path.as_os_str().as_bytes())
}

fn basename(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit('/').next() {
        Some(base) if !base.is_empty() => base.to_string(),
        _ => path.to_string(),
    }
}

fn main() -> ExitCode {
    // Arguments are bytes, like the names in the file: keep them exactly.
    let argv: Vec<String> = std::env::args_os()
        .map(|a| o2nm::text::decode(a.as_bytes()))
        .collect();
    let argv0 = argv.first().cloned().unwrap_or_else(|| "o2cb".to_string());
    let progname = basename(&argv0);

    const LONGS: &[LongOpt] = &[
        LongOpt::with_arg("config-file", 'c'),
        LongOpt::flag("help", 'h'),
        LongOpt::flag("verbose", 'v'),
        LongOpt::flag("version", 'V'),
    ];
    let mut config_file = None;
    let (mut show_help, mut show_version, mut verbosity) = (false, false, 0u32);
    let mut opts = Getopt::new(&argv, "hvV", LONGS, Order::RequireOrder);
    for item in opts.by_ref() {
        match item {
            Item::Opt { key: 'h', .. } => show_help = true,
            Item::Opt { key: 'v', .. } => verbosity = verbosity.saturating_add(1),
            Item::Opt { key: 'V', .. } => show_version = true,
            Item::Opt { key: 'c', arg } => config_file = arg,
            Item::Opt { .. } => return usage(&progname),
            Item::Error(msg) => {
                eprint_text(&format!("{msg}\n"));
                return usage(&progname);
            }
        }
    }
    let operands = opts.into_operands();

    let global = Global {
        config_file_given: config_file.is_some(),
        config_file: path_of(&config_file.unwrap_or_else(|| DEFAULT_CONFIG_FILE.into())),
        verbose: verbosity > 0,
        verbosity,
        progname,
        argv0,
    };
    if show_version {
        eprint_text(&format!("{} {COMPAT_VERSION}\n", global.progname));
        return ExitCode::from(1);
    }
    if show_help {
        return usage(&global.progname);
    }
    let Some((command, args)) = operands.split_first() else {
        return usage(&global.progname);
    };

    if let Some(run) = project_command(command) {
        return match run(&global, args) {
            Ok(code) => code,
            Err(err) => {
                eprint_text(&format!("{}: {err:#}\n", global.progname));
                ExitCode::from(1)
            }
        };
    }

    if global.verbose {
        eprint_text(&format!(
            "Using config file '{}'\n",
            path_text(&global.config_file)
        ));
    }
    match compat::find(command) {
        Some(cmd) => compat::run(&global, cmd, &operands),
        None => {
            eprint_text(&format!(
                "{}: Unknown command '{command}'\n",
                global.progname
            ));
            usage(&global.progname)
        }
    }
}
