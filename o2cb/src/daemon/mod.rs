//! The node daemon: one process per node running the node's [`o2node::Node`] (o2hb, o2net
//! and o2dlm composed once, as the simulator runs them), its dlmfs mount and the control
//! socket that the `o2cb` commands talk to.
//!
//! Start-up follows `service o2cb online`: read cluster.conf and the sysconfig file, find the
//! local node, "register the cluster" (start the node: o2net listens with the cluster's
//! timeouts), then start global heartbeat on the configured regions (local mode: wait for
//! `o2cb heartbeat start`). The control socket answers from the start (`status`, `offline`),
//! but the node serves locks only once it is online, heartbeat steady on every region: a
//! lock asked earlier waits for that (a trylock is refused). A clean stop (`o2cb offline`,
//! SIGTERM, SIGINT) lets the lock users go, unmounts dlmfs, then stops the node: every
//! domain is left, then every region stops with the generation-0 block, so peers see the
//! node down at their next read instead of after the dead threshold.
//!
//! - [`proto`]: socket path rule and the line protocol; [`wire`]: its encoding.
//! - [`client`]: how the commands find and call a daemon.
//! - [`dlm`]: the node's configuration; [`session`]: `o2cb lock`.
//! - [`report`]: the text of `status` and `nodes`.

pub mod client;
pub mod proto;
pub mod report;
mod session;
pub mod wire;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use anyhow::{bail, Context};
use o2hb::FenceAction;
use o2nm::HeartbeatMode;
use o2node::{Node, RegionId, Stage};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use crate::Global;
use proto::Reply;

/// How to run a node (the options of `o2cb node run` and `o2cb online`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The cluster to bring online (else `O2CB_BOOTCLUSTER`, else the only one).
    pub cluster: Option<String>,
    /// The local node's name (else `$O2CB_NODE`, else the host name).
    pub node: Option<String>,
    /// The sysconfig file (else the init script's choice of `/etc/sysconfig/o2cb` and
    /// `/etc/default/o2cb`).
    pub sysconfig: Option<PathBuf>,
    /// Heartbeat period; the kernel's 2000 ms if not given.
    pub heartbeat_period_ms: Option<u32>,
    /// Where global heartbeat regions may be: each path is opened and matched by region name.
    pub region_paths: Vec<PathBuf>,
    /// Fence by running this shell command instead of exiting.
    pub fence_command: Option<String>,
    /// Where to mount dlmfs (None: not at all).
    pub dlmfs: Option<PathBuf>,
    /// The dlmfs path was asked for: failing to mount it is an error, not a warning.
    pub dlmfs_required: bool,
}

/// The cluster as `online` registers it, with the local node found.
pub fn load_cluster(global: &Global, opts: &Options) -> anyhow::Result<o2nm::Cluster> {
    let conf = o2nm::ClusterConf::load(&global.config_file)?;
    let (sysconfig_path, mut sysconfig) = match &opts.sysconfig {
        Some(p) => (p.clone(), o2nm::O2cbSysconfig::load(p)?),
        None => {
            let p = o2nm::O2cbSysconfig::path_under(Path::new("/"));
            (p.clone(), o2nm::O2cbSysconfig::load(&p)?)
        }
    };
    if let Some(ms) = opts.heartbeat_period_ms {
        sysconfig.timeouts.heartbeat_period_ms = ms;
    }
    let local = o2nm::LocalNode::from_env(opts.node.as_deref());
    let cluster = o2nm::Cluster::online(&conf, opts.cluster.as_deref(), &sysconfig, &local)
        .with_context(|| {
            format!(
                "{} (sysconfig {})",
                crate::path_text(&global.config_file),
                crate::path_text(&sysconfig_path)
            )
        })?;
    if cluster.local_node().is_none() {
        let o2nm::LocalNode::Hostname(host) = &local else {
            bail!("cluster '{}' has no local node", cluster.name());
        };
        bail!(
            "no node of cluster '{}' is this host ('{host}'); name it with --node NAME or {}",
            cluster.name(),
            o2nm::LocalNode::ENV
        );
    }
    Ok(cluster)
}

/// Locks a mutex; a panic elsewhere while holding it leaves plain data, still usable.
pub(crate) trait Guard<T> {
    fn guard(&self) -> MutexGuard<'_, T>;
}

impl<T> Guard<T> for Mutex<T> {
    fn guard(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A heartbeat region this node runs.
#[derive(Debug, Clone)]
pub(crate) struct ActiveRegion {
    pub name: String,
    pub path: PathBuf,
    pub id: RegionId,
}

/// The running node, shared by the control connections.
pub(crate) struct Daemon {
    pub cluster: o2nm::Cluster,
    pub local: u8,
    /// The node: heartbeat, o2net and the DLM.
    pub node: Node,
    /// The node's domain memberships, shared with the dlmfs mount.
    pub domains: Arc<dlmfs_fuse::DomainRegistry>,
    pub regions: Mutex<Vec<ActiveRegion>>,
    /// The dlmfs mount, while mounted.
    pub dlmfs: Mutex<Option<dlmfs_fuse::MountHandle>>,
    pub socket: PathBuf,
    pub pid: u32,
    pub started: Instant,
    /// Set once the node starts going offline; later requests to do it are no-ops.
    offline: AtomicBool,
    /// Start-up is over (global heartbeat steady, dlmfs mounted): what `o2cb online` waits
    /// for.
    pub online: AtomicBool,
    /// Becomes true when the node starts going offline: lock sessions release their locks.
    pub leaving: tokio::sync::watch::Sender<bool>,
    /// The offline report, for whoever asked second.
    offline_lines: Mutex<Option<String>>,
    /// Wakes the main task once the node is offline and the requester answered.
    exit: Notify,
}

/// `o2cb node run`: runs the node in the foreground until `o2cb offline` or a signal.
pub fn run(global: &Global, opts: &Options) -> anyhow::Result<ExitCode> {
    let cluster = load_cluster(global, opts)?;
    let local = cluster
        .local_node()
        .map(|n| n.num)
        .context("no local node")?;
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("o2cb-node{local}"))
        .enable_all()
        .build()?;
    rt.block_on(serve(cluster, opts.clone()))
}

/// Logs to stderr at `info` unless RUST_LOG says otherwise: the daemon's and the foreground
/// heartbeat's.
pub(crate) fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
}

fn say(line: &str) {
    crate::print_text(&format!("{line}\n"));
    let _ = std::io::stdout().flush();
}

async fn serve(cluster: o2nm::Cluster, opts: Options) -> anyhow::Result<ExitCode> {
    let local_node = cluster.local_node().context("no local node")?.clone();
    let local = local_node.num;
    let name = cluster.name().to_string();

    let dir = proto::runtime_dir();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating {}", crate::path_text(&dir)))?;
    let socket = proto::node_file(&dir, &name, &local_node.name, "sock");
    if proto::Client::connect(&socket).is_ok() {
        bail!(
            "node {} ({}) of cluster {name} is already running (control socket {})",
            local,
            local_node.name,
            crate::path_text(&socket)
        );
    }
    // Nobody answers: a socket left by a daemon that died.
    let _ = std::fs::remove_file(&socket);

    let fence = match &opts.fence_command {
        Some(cmd) => FenceAction::Command(cmd.clone()),
        None => FenceAction::Exit,
    };
    let node = Node::start(o2node::NodeConfig::from_cluster(&cluster)?, fence)?;
    say(&format!("Registering O2CB cluster \"{name}\": OK"));
    say("Setting O2CB cluster timeouts : OK");

    let daemon = Arc::new(Daemon {
        cluster,
        local,
        domains: Arc::new(dlmfs_fuse::DomainRegistry::new(node.clone())),
        node,
        regions: Mutex::new(Vec::new()),
        dlmfs: Mutex::new(None),
        socket: socket.clone(),
        pid: std::process::id(),
        started: Instant::now(),
        offline: AtomicBool::new(false),
        online: AtomicBool::new(false),
        leaving: tokio::sync::watch::channel(false).0,
        offline_lines: Mutex::new(None),
        exit: Notify::new(),
    });

    use tokio::signal::unix::{signal, SignalKind};
    // Hooked before the (possibly long) start of the regions, so that an early SIGTERM
    // still ends in a clean stop.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // Served from now on, so that `status` and `offline` work during a long start-up.
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("control socket {}", crate::path_text(&socket)))?;
    let d = daemon.clone();
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve_connection(d.clone(), stream));
                }
                Err(e) => {
                    tracing::warn!(node = d.local, "control socket: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });

    if daemon.cluster.heartbeat_mode() == HeartbeatMode::Global {
        let started = tokio::select! {
            r = start_global_regions(&daemon, &opts.region_paths) => Some(r),
            _ = term.recv() => None,
            _ = int.recv() => None,
        };
        match started {
            Some(Ok(())) => say(&format!(
                "Starting global heartbeat for cluster \"{name}\": OK"
            )),
            Some(Err(_)) if daemon.is_offline() => {
                // `o2cb offline` during start-up: its requester reports, then we end.
                daemon.exit.notified().await;
                return Ok(ExitCode::SUCCESS);
            }
            Some(Err(e)) => {
                say(&format!(
                    "Starting global heartbeat for cluster \"{name}\": Failed"
                ));
                daemon.go_offline().await;
                return Err(e);
            }
            None => {
                daemon.go_offline().await;
                return Ok(ExitCode::SUCCESS);
            }
        }
    }

    if let Some(path) = &opts.dlmfs {
        if let Err(e) = mount_dlmfs(&daemon, path).await {
            if opts.dlmfs_required {
                daemon.go_offline().await;
                return Err(e);
            }
            tracing::warn!(node = local, "dlmfs not mounted: {e:#}");
        }
    }
    daemon.online.store(true, Ordering::Release);
    tracing::info!(
        node = local,
        "node {local} ({}) online in cluster {name}; control socket {}",
        local_node.name,
        socket.display()
    );
    tokio::select! {
        _ = term.recv() => { daemon.go_offline().await; }
        _ = int.recv() => { daemon.go_offline().await; }
        _ = daemon.exit.notified() => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Mounts dlmfs at `path` (made if missing) on the node's DLM.
async fn mount_dlmfs(d: &Arc<Daemon>, path: &Path) -> anyhow::Result<()> {
    // A daemon killed with SIGKILL leaves its FUSE mount behind, answering ENOTCONN: detach
    // it so that the restarted node can mount again.
    if let Err(e) = std::fs::metadata(path) {
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .with_context(|| crate::path_text(path))?;
            // SAFETY: c is a valid NUL-terminated path.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
                tracing::info!(
                    node = d.local,
                    "detached a dead dlmfs mount at {}",
                    path.display()
                );
            }
        }
    }
    if !path.exists() {
        std::fs::create_dir_all(path).with_context(|| crate::path_text(path))?;
    }
    let dlm =
        dlmfs_fuse::O2dlmNode::with_registry(d.domains.clone(), tokio::runtime::Handle::current());
    let path = path.to_path_buf();
    let mount = tokio::task::spawn_blocking(move || {
        dlmfs_fuse::mount(&path, Arc::new(dlm), dlmfs_fuse::MountOptions::default())
    })
    .await??;
    tracing::info!(
        node = d.local,
        "dlmfs mounted at {}",
        mount.path().display()
    );
    *d.dlmfs.guard() = Some(mount);
    Ok(())
}

/// Where the block devices are listed, partitions included.
const SYS_BLOCK: &str = "/sys/class/block";

/// The regions found on this machine's block devices (as ocfs2-tools' `start-heartbeat`
/// finds a volume by its UUID), in device name order; devices that cannot be read or hold
/// no region are skipped.
fn scan_block_devices() -> Vec<o2hb::source::RegionSource> {
    let Ok(entries) = std::fs::read_dir(SYS_BLOCK) else {
        return Vec::new();
    };
    let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|n| o2hb::source::open(&Path::new("/dev").join(n)).ok())
        .collect()
}

/// Starts the cluster's regions: each on the `--region-path` that holds it, else on the
/// block device that does.
async fn start_global_regions(d: &Arc<Daemon>, paths: &[PathBuf]) -> anyhow::Result<()> {
    let mut sources = Vec::new();
    for p in paths {
        // Absolute, so that status shows where the region is whatever the daemon's cwd was.
        let p = std::path::absolute(p).with_context(|| crate::path_text(p))?;
        sources.push(o2hb::source::open(&p)?);
    }
    let wanted: Vec<String> = d.cluster.regions().iter().map(|r| r.name.clone()).collect();
    if wanted.is_empty() {
        bail!(
            "cluster {} is in global heartbeat mode but has no heartbeat region",
            d.cluster.name()
        );
    }
    if wanted.iter().any(|w| sources.iter().all(|s| &s.name != w)) {
        let found = tokio::task::spawn_blocking(scan_block_devices).await?;
        sources.extend(found);
    }
    for name in wanted {
        let Some(src) = sources.iter().find(|s| s.name == name) else {
            bail!(
                "heartbeat region {name} of cluster {}: on no --region-path ({} given) and on no block device",
                d.cluster.name(),
                paths.len()
            );
        };
        d.start_region(src.clone()).await?;
    }
    Ok(())
}

impl Daemon {
    /// Starts heartbeat on a region; returns once it is steady.
    pub(crate) async fn start_region(
        self: &Arc<Self>,
        src: o2hb::source::RegionSource,
    ) -> anyhow::Result<ActiveRegion> {
        if let Some(r) = self.regions.guard().iter().find(|r| r.name == src.name) {
            bail!(
                "heartbeat region {} is already active on {}",
                r.name,
                crate::path_text(&r.path)
            );
        }
        let id = self
            .node
            .start_region(&src)
            .await
            .with_context(|| format!("{}: region {}", crate::path_text(&src.path), src.name))?;
        let region = ActiveRegion {
            name: src.name.clone(),
            path: src.path.clone(),
            id,
        };
        self.regions.guard().push(region.clone());
        tracing::info!(node = self.local, region = %src.name, "heartbeat started on {}", src.path.display());
        Ok(region)
    }

    /// Stops a region cleanly (generation-0 block).
    pub(crate) async fn stop_region(self: &Arc<Self>, region: ActiveRegion) -> anyhow::Result<()> {
        self.node
            .stop_region(region.id)
            .await
            .with_context(|| format!("stopping region {}", region.name))?;
        self.regions.guard().retain(|r| r.id != region.id);
        tracing::info!(node = self.local, region = %region.name, "heartbeat stopped");
        Ok(())
    }

    /// Leaves the cluster cleanly: stops heartbeat (generation 0), then o2net. Returns the
    /// init script's offline lines; only the first call does the work.
    pub(crate) async fn go_offline(self: &Arc<Self>) -> String {
        if self.offline.swap(true, Ordering::AcqRel) {
            // Someone else is at it: wait for their report.
            loop {
                if let Some(lines) = self.offline_lines.guard().clone() {
                    return lines;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        let name = self.cluster.name().to_string();
        let mut out = String::new();
        // Lock sessions release their locks, dlmfs is unmounted (it unlocks its lock files and
        // gives its domain registrations back), then every domain is left, then heartbeat
        // stops.
        self.leaving.send_replace(true);
        let mount = self.dlmfs.guard().take();
        if let Some(m) = mount {
            // A program closing its lock files as the node stops gets a moment; one that keeps
            // them open gets a lazy unmount, which ends when it closes them.
            let start = std::time::Instant::now();
            let unmount = tokio::task::spawn_blocking(move || {
                m.unmount_within(std::time::Duration::from_secs(3))
            });
            match tokio::time::timeout(std::time::Duration::from_secs(10), unmount).await {
                Ok(Ok(Ok(()))) => {
                    out.push_str("Clean userdlm domains: OK\n");
                    tracing::info!(
                        node = self.local,
                        "dlmfs unmounted in {} ms",
                        start.elapsed().as_millis()
                    );
                }
                Ok(Ok(Err(e))) => {
                    out.push_str("Clean userdlm domains: Failed\n");
                    tracing::warn!(node = self.local, "{e}; unmounted lazily");
                }
                _ => {
                    out.push_str("Clean userdlm domains: Failed\n");
                    tracing::warn!(
                        node = self.local,
                        "dlmfs unlocking its locks for more than 10 s"
                    );
                }
            }
        }
        // Users that still hold a registration (a lock file kept open) are forgotten: the
        // node leaves every domain itself, within its stop bound.
        self.domains.forget_all();
        let had_regions = !self.regions.guard().is_empty();
        self.node.stop().await;
        let clean = self.node.stage() == Stage::Stopped;
        self.regions.guard().clear();
        if self.cluster.heartbeat_mode() == HeartbeatMode::Global && had_regions {
            let word = if clean { "OK" } else { "Failed" };
            out.push_str(&format!(
                "Stopping global heartbeat on cluster \"{name}\": {word}\n"
            ));
        }
        let _ = std::fs::remove_file(&self.socket);
        out.push_str(&format!(
            "Stopping O2CB cluster {name}: Unregistering O2CB cluster \"{name}\": OK\n"
        ));
        tracing::info!(node = self.local, "node {} offline", self.local);
        *self.offline_lines.guard() = Some(out.clone());
        out
    }

    fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }

    /// Answers one request. `offline` is handled by the connection loop (it must answer
    /// before the process ends).
    async fn handle(self: &Arc<Self>, words: &[String]) -> Reply {
        let (op, args) = match words.split_first() {
            Some((op, args)) => (op.as_str(), args),
            None => return Reply::err("empty request"),
        };
        if self.is_offline() {
            return Reply::err("the node is going offline");
        }
        match (op, args) {
            ("ping", []) => Reply::ok(report::ping(self)),
            ("status", []) => Reply::ok(report::status(self)),
            ("nodes", []) => Reply::ok(report::nodes(self)),
            ("connections", []) => Reply::ok(o2net::report::connections_table(
                &self.node.inspect(|s| s.peer_stats()),
                self.node.now_ms(),
            )),
            ("hb-start", [path]) => self.hb_start(path).await,
            ("hb-stop", [region]) => self.hb_stop(region).await,
            ("lockdump", [domain]) => self.lockdump(domain, "locking_state"),
            ("lockdump", [domain, what]) => self.lockdump(domain, what),
            _ => Reply::err(format!(
                "unknown request '{}' with {} arguments",
                words.join(" "),
                args.len()
            )),
        }
    }

    /// One of the kernel's debugfs dumps of a domain the node is in.
    fn lockdump(&self, domain: &str, what: &str) -> Reply {
        let Some(d) = self.domains.get(o2nm::text::encode(domain)) else {
            return Reply::err(format!(
                "domain {domain} is not joined on node {} (nothing holds a lock in it here)",
                self.local
            ));
        };
        match what {
            "locking_state" => Reply::ok(d.locking_state()),
            "dlm_state" => Reply::ok(d.dlm_state()),
            "mle_state" => Reply::ok(d.mle_state()),
            _ => Reply::err(format!(
                "unknown dump '{what}' (locking_state, dlm_state or mle_state)"
            )),
        }
    }

    async fn hb_start(self: &Arc<Self>, path: &str) -> Reply {
        if self.cluster.heartbeat_mode() == HeartbeatMode::Global {
            return Reply::err(format!(
                "cluster {} uses global heartbeat: its regions are those of cluster.conf, started with the node",
                self.cluster.name()
            ));
        }
        let src = match o2hb::source::open(&crate::path_of(path)) {
            Ok(s) => s,
            Err(e) => return Reply::err(e.to_string()),
        };
        match self.start_region(src).await {
            Ok(r) => Reply::ok(format!(
                "heartbeat started on region {} ({}) as node {}\n",
                r.name,
                crate::path_text(&r.path),
                self.local
            )),
            Err(e) => Reply::err(format!("{e:#}")),
        }
    }

    async fn hb_stop(self: &Arc<Self>, which: &str) -> Reply {
        if self.cluster.heartbeat_mode() == HeartbeatMode::Global {
            return Reply::err(format!(
                "cluster {} uses global heartbeat: its regions stop with the node (o2cb offline)",
                self.cluster.name()
            ));
        }
        let path = crate::path_of(which);
        let found = self
            .regions
            .guard()
            .iter()
            .find(|r| r.name == which || r.path == path)
            .cloned();
        let Some(region) = found else {
            return Reply::err(format!("no active heartbeat region {which}"));
        };
        match self.stop_region(region.clone()).await {
            Ok(()) => Reply::ok(format!("heartbeat stopped on region {}\n", region.name)),
            Err(e) => Reply::err(format!("{e:#}")),
        }
    }
}

async fn serve_connection(d: Arc<Daemon>, stream: UnixStream) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = Vec::new();
        match (&mut r)
            .take(proto::MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') {
            let _ = w
                .write_all(&Reply::err("request line too long or cut short").encode())
                .await;
            return;
        }
        let words = match proto::decode_request(&line) {
            Ok(w) => w,
            Err(e) => {
                if w.write_all(&Reply::err(e).encode()).await.is_err() {
                    return;
                }
                continue;
            }
        };
        if words.first().map(String::as_str) == Some("lock") {
            session::lock(&d, words.get(1..).unwrap_or_default(), &mut r, &mut w).await;
            return;
        }
        if words.first().map(String::as_str) == Some("offline") {
            let lines = d.go_offline().await;
            let _ = w.write_all(&Reply::ok(lines).encode()).await;
            let _ = w.flush().await;
            d.exit.notify_one();
            return;
        }
        let reply = d.handle(&words).await;
        if w.write_all(&reply.encode()).await.is_err() {
            return;
        }
    }
}
