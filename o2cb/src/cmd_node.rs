//! `o2cb node run` (the node daemon in the foreground, for containers and systemd),
//! `o2cb online` (the same in the background; returns once the node is up) and
//! `o2cb offline` (a clean stop), with the init script's `online`/`offline` lines.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::daemon::client::{self, Target};
use crate::daemon::{self, proto, Options};
use crate::Global;

/// Where the init script mounts dlmfs.
const DEFAULT_DLMFS: &str = "/dlm";
/// How long `online` waits for the node to come up (global heartbeat must be steady).
const ONLINE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `offline` waits for the daemon to end after it answered.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The options of a node (`node run` and `online`).
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// The cluster to bring online (else O2CB_BOOTCLUSTER, else the only one of cluster.conf).
    pub cluster: Option<String>,
    /// Same as the CLUSTER argument.
    #[arg(long = "cluster", id = "cluster_opt", conflicts_with = "cluster")]
    pub cluster_opt: Option<String>,
    /// The local node's name (else $O2CB_NODE, else the host name).
    #[arg(long)]
    pub node: Option<String>,
    /// The o2cb sysconfig file (else /etc/sysconfig/o2cb or /etc/default/o2cb).
    #[arg(long)]
    pub sysconfig: Option<PathBuf>,
    /// Heartbeat period in ms (the kernel's is 2000; shorter for tests and demos; every node
    /// of a cluster must use the same).
    #[arg(long)]
    pub heartbeat_period_ms: Option<u32>,
    /// A file or device that may hold one of the cluster's global heartbeat regions (matched
    /// by region name, the UUID); repeat for each region. Regions on no such path are looked
    /// for on the block devices.
    #[arg(long = "region-path")]
    pub region_paths: Vec<PathBuf>,
    /// Fence by running this shell command instead of exiting (status 86).
    #[arg(long)]
    pub fence_command: Option<String>,
    /// Mount dlmfs here (default /dlm; a failure to mount the default is only a warning).
    #[arg(long, conflicts_with = "no_dlmfs")]
    pub dlmfs: Option<PathBuf>,
    /// Do not mount dlmfs.
    #[arg(long)]
    pub no_dlmfs: bool,
}

impl NodeArgs {
    pub fn options(&self) -> Options {
        Options {
            cluster: self.cluster.clone().or_else(|| self.cluster_opt.clone()),
            node: self.node.clone(),
            sysconfig: self.sysconfig.clone(),
            heartbeat_period_ms: self.heartbeat_period_ms,
            region_paths: self.region_paths.clone(),
            fence_command: self.fence_command.clone(),
            dlmfs: match (&self.dlmfs, self.no_dlmfs) {
                (_, true) => None,
                (Some(p), false) => Some(p.clone()),
                (None, false) => Some(PathBuf::from(DEFAULT_DLMFS)),
            },
            dlmfs_required: self.dlmfs.is_some(),
        }
    }

    fn target(&self) -> Target {
        let o = self.options();
        Target {
            cluster: o.cluster,
            node: o.node,
            sysconfig: o.sysconfig,
        }
    }
}

#[derive(Parser, Debug)]
#[command(name = "o2cb node", about = "The node daemon")]
struct NodeCli {
    #[command(subcommand)]
    cmd: NodeCmd,
}

#[derive(Subcommand, Debug)]
enum NodeCmd {
    /// Run this node in the foreground until `o2cb offline`, SIGTERM or SIGINT.
    Run(NodeArgs),
}

#[derive(Parser, Debug)]
#[command(
    name = "o2cb online",
    about = "Bring this node online in the background"
)]
struct OnlineCli {
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(Parser, Debug)]
#[command(name = "o2cb offline", about = "Take this node offline cleanly")]
struct OfflineCli {
    #[command(flatten)]
    target: Target,
}

/// Parses `args` as `name ARGS`; help and errors print and give the exit code.
pub fn parse<P: Parser>(name: &str, args: &[String]) -> Result<P, ExitCode> {
    P::try_parse_from(std::iter::once(name.to_string()).chain(args.iter().cloned())).map_err(|e| {
        let _ = e.print();
        ExitCode::from(if e.use_stderr() { 1 } else { 0 })
    })
}

/// `o2cb node run ...`
pub fn run(global: &Global, args: &[String]) -> anyhow::Result<ExitCode> {
    let cli = match parse::<NodeCli>("o2cb node", args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    match cli.cmd {
        NodeCmd::Run(a) => daemon::run(global, &a.options()),
    }
}

/// The global options to hand on to a daemon started by `online`.
fn global_args(global: &Global) -> Vec<std::ffi::OsString> {
    let mut v = Vec::new();
    if global.config_file_given {
        v.push("--config-file".into());
        v.push(global.config_file.clone().into_os_string());
    }
    for _ in 0..global.verbosity {
        v.push("-v".into());
    }
    v
}

/// The last lines of the daemon's log, to show why it did not come up.
fn log_tail(path: &std::path::Path, from: u64) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.seek(SeekFrom::Start(from));
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        let text = o2nm::text::decode(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        for l in &lines[lines.len().saturating_sub(20)..] {
            s.push_str(l);
            s.push('\n');
        }
    }
    s
}

/// `o2cb online [CLUSTER] [node options]`
pub fn online(global: &Global, args: &[String]) -> anyhow::Result<ExitCode> {
    let cli = match parse::<OnlineCli>("o2cb online", args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let opts = cli.node.options();
    let cluster = daemon::load_cluster(global, &opts)?;
    let name = cluster.name().to_string();
    let at = client::locate(global, &cli.node.target())?;
    if at.connect().is_some() {
        crate::print_text(&format!("Cluster {name} already online\n"));
        return Ok(ExitCode::from(1));
    }
    let dir = proto::runtime_dir();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating {}", crate::path_text(&dir)))?;
    let log_path = proto::node_file(&dir, &at.cluster, &at.node, "log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| crate::path_text(&log_path))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("finding the o2cb executable")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(global_args(global))
        .arg("node")
        .arg("run")
        .args(args.iter().map(|a| crate::path_of(a)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from our terminal and
    // process group, so that a Ctrl-C at the shell does not reach it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the node daemon")?;
    let deadline = Instant::now() + ONLINE_TIMEOUT;
    loop {
        if let Some(mut c) = at.connect() {
            if let Ok(r) = c.call(&["ping"]) {
                if r.status == proto::Status::Ok && r.body.lines().any(|l| l == "state online") {
                    break;
                }
            }
        }
        let failed = match child.try_wait()? {
            Some(status) => Some(format!("the node daemon exited ({status})")),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                Some(format!(
                    "the node daemon did not come up within {} s",
                    ONLINE_TIMEOUT.as_secs()
                ))
            }
            None => None,
        };
        if let Some(why) = failed {
            crate::print_text(&format!("Starting O2CB node \"{}\": Failed\n", at.node));
            crate::eprint_text(&format!(
                "{why}; its log ({}):\n{}",
                crate::path_text(&log_path),
                log_tail(&log_path, log_start)
            ));
            return Ok(ExitCode::from(1));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out =
        format!("Registering O2CB cluster \"{name}\": OK\nSetting O2CB cluster timeouts : OK\n");
    if cluster.heartbeat_mode() == o2nm::HeartbeatMode::Global {
        out.push_str(&format!(
            "Starting global heartbeat for cluster \"{name}\": OK\n"
        ));
    }
    crate::print_text(&out);
    Ok(ExitCode::SUCCESS)
}

/// The pid a daemon reports in `ping`.
pub fn daemon_pid(c: &mut proto::Client) -> Option<i32> {
    let r = c.call(&["ping"]).ok()?;
    r.body
        .lines()
        .find_map(|l| l.strip_prefix("pid "))
        .and_then(|p| p.parse().ok())
}

/// Whether a process exists and has not ended (a zombie waiting for its parent has).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may hold any byte.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => false,
    }
}

/// `o2cb offline [CLUSTER]`: nothing to do (and no output) when the node is not online, as
/// the init script.
pub fn offline(global: &Global, args: &[String]) -> anyhow::Result<ExitCode> {
    let cli = match parse::<OfflineCli>("o2cb offline", args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let at = client::locate(global, &cli.target)?;
    let Some(mut c) = at.connect() else {
        return Ok(ExitCode::SUCCESS);
    };
    let pid = daemon_pid(&mut c);
    let r = c.call(&["offline"])?;
    crate::print_text(&r.body);
    if r.status != proto::Status::Ok {
        bail!("{}", r.word);
    }
    // The daemon exits right after answering; wait so that a following `online` finds the
    // address free.
    if let Some(pid) = pid {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(ExitCode::SUCCESS)
}
