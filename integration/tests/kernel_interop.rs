//! A mixed cluster with a real Linux kernel node (issue 10): Debian's stock 6.1 kernel with its
//! ocfs2 modules and ocfs2-tools, booted under qemu (TCG), and one node of ours, in one O2CB
//! cluster inside a network namespace this test creates. The kernel's own logs and debugfs files
//! are the witnesses.
//!
//! The guest is built from Debian packages by `kernel-guest/build.sh` (cached under
//! `target/kernel-guest/`), with `kernel-guest/dlmtool.c` for what busybox cannot do on the
//! kernel's dlmfs (a trylock open, poll()). Our node is `o2cb node run` (the node daemon), built
//! by this test into its own target directory unless current (or `$O2CB_INTEROP_BIN`), and asked
//! with `o2cb status`, `nodes`, `list-connections` and `lockdump`. The tests need root (network
//! namespace, tap device); they fail, and do not skip, when qemu, gcc, the kernel package or
//! root are missing (`scripts/install-deps.sh` installs what it needs).
//!
//! `kernel_node_and_ours_share_heartbeat_and_o2net` checks heartbeat both ways on one
//! global-heartbeat volume made by mkfs.ocfs2 (issue check 1), the o2net connection and
//! keepalives for longer than the idle timeout (2), the request/status exchange of the kernel's
//! DLM_QUERY_JOIN, and a clean stop of our node.
//!
//! `kernel_dlmfs_and_ours_exclude_each_other_and_recover` gives our node its dlmfs (FUSE) on a
//! scratch mount and does on our side what a program does on the kernel's `/dlm`: one domain
//! made by mkdir on both sides, each in the other's domain map (3); EX exclusion both ways with
//! ETXTBSY for a trylock open, a blocking open that waits, the value block handed over by read
//! and write, each side's poll() reporting the other's BAST, and read-only (PR) opens on both
//! sides holding a lock at once (4); mastery both ways, seen in both sides' locking_state (5);
//! then failures (6): the kernel node killed while it masters a lock we hold and one we wait
//! for, our node recovering the domain and granting the waiter (`o2cb status` shows the
//! recovery), the kernel rebooted and rejoining; then our node killed while it masters and
//! holds a lock the kernel waits for, the kernel recovering, and ours restarted and rejoining.

#[path = "../../o2cb/tests/config_common/ocfs2_volume.rs"]
mod ocfs2_volume;

use ocfs2_volume::{mkfs_global_with, tool};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Namespaces of this test are `o2cb-ki-PID`: one per test process, so that runs in separate
/// processes (two engineers' `cargo test`) never touch each other's, and a run can remove what
/// a killed run left behind (its PID is gone).
const NS_PREFIX: &str = "o2cb-ki-";

/// The namespace every packet of this process's tests stays in.
fn ns() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| format!("{NS_PREFIX}{}", std::process::id()))
}
const TAP: &str = "o2tap0";
const CLUSTER: &str = "kpeer";
const OUR_NODE: (&str, u8, &str) = ("hostpeer", 0, "10.213.0.1");
const KERNEL_NODE: (&str, u8, &str) = ("guest1", 1, "10.213.0.2");
/// Shorter than the kernel's defaults (31, 30000) so that the test takes minutes; the kernel
/// takes any of these through configfs, and the handshake checks both sides agree.
const DEAD_THRESHOLD: u32 = 7;
const IDLE_TIMEOUT_MS: u64 = 10_000;
const KEEPALIVE_DELAY_MS: u64 = 2_000;
const RECONNECT_DELAY_MS: u64 = 2_000;
const HB_PERIOD_MS: u64 = 2_000;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the integration crate lives in the workspace")
        .to_path_buf()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` every 250 ms until it returns `Some` or `limit` passes.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Removes this process's namespace and every process in it, and those of test processes
/// that are gone. Runs before a test (leftovers of a killed run) and from [`Harness`]'s Drop.
fn remove_namespaces() {
    let Ok(listed) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    for name in listed.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let ours = name == ns();
        if !ours && Path::new("/proc").join(pid).exists() {
            continue;
        }
        if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", name]).status();
    }
}

/// Everything this test started: processes, the namespace, our node's dlmfs mount, the scratch
/// directory. Drop ends the processes, detaches the mount and removes the namespace even when
/// the test panics, and then prints the logs that tell why.
struct Harness {
    dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
    mounts: Vec<PathBuf>,
}

impl Harness {
    fn new() -> Harness {
        remove_namespaces();
        let scratch = workspace_root().join("target/kernel-guest/run");
        std::fs::create_dir_all(&scratch).expect("create target/kernel-guest/run");
        // Under target/, not /tmp: O_DIRECT (ours and qemu's cache=none) fails on tmpfs.
        let dir = tempfile::tempdir_in(&scratch).expect("scratch directory");
        run_ok(Command::new("ip").args(["netns", "add", ns()]));
        let h = Harness {
            dir,
            children: Vec::new(),
            mounts: Vec::new(),
        };
        run_ok(Command::new("ip").args(["-n", ns(), "link", "set", "lo", "up"]));
        run_ok(Command::new("ip").args(["-n", ns(), "tuntap", "add", TAP, "mode", "tap"]));
        run_ok(Command::new("ip").args([
            "-n",
            ns(),
            "addr",
            "add",
            &format!("{}/24", OUR_NODE.2),
            "dev",
            TAP,
        ]));
        run_ok(Command::new("ip").args(["-n", ns(), "link", "set", TAP, "up"]));
        h
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn(&mut self, label: &str, cmd: &mut Command) -> u32 {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        let pid = child.id();
        self.children.push((label.to_string(), child));
        pid
    }

    /// SIGKILL to one of our processes; waits for it.
    fn kill(&mut self, label: &str) {
        if let Some(i) = self.children.iter().position(|(l, _)| l == label) {
            let (_, mut child) = self.children.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn running(&mut self, label: &str) -> bool {
        self.children
            .iter_mut()
            .any(|(l, c)| l == label && matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, then waits up to `limit` for a clean exit; returns whether it exited with 0.
    fn stop(&mut self, label: &str, limit: Duration) -> bool {
        let Some(i) = self.children.iter().position(|(l, _)| l == label) else {
            return false;
        };
        let (_, mut child) = self.children.remove(i);
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A FUSE mount whose daemon is gone answers ENOTCONN until detached.
        for m in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        remove_namespaces();
        if std::thread::panicking() {
            for name in ["console.log", "qemu.err", "peer.err", "peer.out"] {
                let text = std::fs::read_to_string(self.path(name)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("---- last lines of {name} ----");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// The kernel guest: qemu in the namespace, its console in `console.log`, and the control
/// channel of kernel-guest/init on a virtio serial port.
struct Guest {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Guest {
    fn boot(h: &mut Harness, guest_dir: &Path, volume: &Path) -> Guest {
        let qemu = tool("qemu-system-x86_64");
        let sock = h.path("ctl.sock");
        let _ = std::fs::remove_file(&sock);
        let console = h.path("console.log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns()])
            .arg(qemu)
            .args(["-accel", "tcg", "-m", "512M", "-smp", "1", "-cpu", "max"])
            .args(["-display", "none", "-monitor", "none", "-no-reboot"])
            .arg("-kernel")
            .arg(guest_dir.join("vmlinuz"))
            .arg("-initrd")
            .arg(guest_dir.join("initrd.img"))
            .arg("-append")
            .arg(format!("console=ttyS0 panic=-1 o2ip={}/24", KERNEL_NODE.2))
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            // cache=none: the host side of the disk is O_DIRECT, so the guest's writes reach the
            // file our node reads with O_DIRECT, and ours reach the guest.
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,cache=none,aio=threads",
                volume.display()
            ))
            .args([
                "-netdev",
                &format!("tap,id=n0,ifname={TAP},script=no,downscript=no"),
            ])
            .args(["-device", "virtio-net-pci,netdev=n0,romfile="])
            .args(["-device", "virtio-serial-pci"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=ctl,path={},server=on,wait=off",
                sock.display()
            ))
            .args(["-device", "virtserialport,chardev=ctl,name=ctl"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(h.path("qemu.err")).expect("qemu.err"),
            ));
        h.spawn("qemu", &mut cmd);
        // The first command is answered once init has loaded the modules. A connection made
        // while qemu is still setting up its devices can be reset (seen once after a reboot):
        // connect again.
        let mut attempt = 0;
        let (g, rc, uname) = loop {
            attempt += 1;
            let stream = wait_for("qemu's control socket", Duration::from_secs(30), || {
                UnixStream::connect(&sock).ok()
            });
            stream
                .set_read_timeout(Some(Duration::from_secs(120)))
                .expect("read timeout");
            let writer = stream.try_clone().expect("clone control socket");
            let mut g = Guest {
                reader: BufReader::new(stream),
                writer,
            };
            match g.try_run("uname -r") {
                Ok((rc, out)) => break (g, rc, out),
                Err(e) if attempt < 5 => {
                    eprintln!("control channel: {e}; connecting again");
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => panic!("guest did not answer on its control channel: {e}"),
            }
        };
        assert_eq!(rc, 0, "guest did not answer: {uname}");
        g
    }

    /// Runs one shell command line in the guest; returns its status and output.
    fn run(&mut self, cmd: &str) -> (i32, String) {
        self.try_run(cmd)
            .unwrap_or_else(|e| panic!("guest's answer to {cmd:?}: {e}"))
    }

    fn try_run(&mut self, cmd: &str) -> std::io::Result<(i32, String)> {
        assert!(!cmd.contains('\n'), "one line per command");
        self.writer.write_all(format!("{cmd}\n").as_bytes())?;
        let mut out = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("control channel closed while running {cmd:?}"),
                ));
            }
            // Output without a final newline puts the marker at the end of its last line.
            if let Some(at) = line.find("@@O2END@@ ") {
                out.push_str(&line[..at]);
                let rc = line[at + "@@O2END@@ ".len()..]
                    .trim()
                    .parse()
                    .expect("status after the end marker");
                return Ok((rc, out));
            }
            out.push_str(&line);
        }
    }

    /// Runs a command that must succeed.
    fn sh(&mut self, cmd: &str) -> String {
        let (rc, out) = self.run(cmd);
        assert_eq!(rc, 0, "guest command {cmd:?} failed:\n{out}");
        out
    }

    /// Node numbers in a debugfs node-map file (space-separated numbers).
    fn node_list(&mut self, file: &str) -> BTreeSet<u8> {
        self.sh(&format!("cat {file}"))
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect()
    }

    fn dmesg(&mut self) -> String {
        self.sh("dmesg")
    }
}

/// Our node: `o2cb node run` (the node daemon) in the namespace, asked through its control
/// socket with `o2cb status`, `nodes` and `list-connections`, as a user would.
struct Peer {
    o2cb: PathBuf,
    conf: PathBuf,
    sysconfig: PathBuf,
    rundir: PathBuf,
    log: PathBuf,
}

/// What our node says about the kernel node (and the cluster's live nodes).
#[derive(Debug, Default, Clone, PartialEq)]
struct PeerView {
    /// `o2cb status`'s "Nodes in O2CB cluster:" (the init script's print of livenodes).
    live: BTreeSet<u8>,
    /// `o2cb nodes`: the kernel node's heartbeat and connected columns.
    heartbeat: String,
    connected: String,
    /// `o2cb list-connections`: the kernel node's state and bytes each way.
    state: String,
    bytes_sent: u64,
    bytes_received: u64,
    /// Requests and status replies (keepalives apart), each way.
    msgs_sent: u64,
    msgs_received: u64,
}

impl Peer {
    /// Starts the daemon, with its dlmfs mounted on `dlmfs` if given.
    fn start(
        h: &mut Harness,
        o2cb: &Path,
        conf: &Path,
        sysconfig: &Path,
        volume: &Path,
        dlmfs: Option<&Path>,
    ) -> Peer {
        let rundir = h.path("run");
        std::fs::create_dir_all(&rundir).expect("runtime directory");
        let log = h.path("peer.err");
        let file = |p: &Path| {
            Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .expect("our node's log"),
            )
        };
        // Into the namespace's network only (`ip netns exec` would also give it a mount
        // namespace of its own, hiding its dlmfs mount from this test).
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", ns()))
            .arg(o2cb)
            .arg("--config-file")
            .arg(conf)
            .args(["node", "run", "--node", OUR_NODE.0, "--sysconfig"])
            .arg(sysconfig);
        match dlmfs {
            Some(dir) => {
                if !h.mounts.iter().any(|m| m == dir) {
                    h.mounts.push(dir.to_path_buf());
                }
                cmd.arg("--dlmfs").arg(dir);
            }
            // The default mount point is the host's /dlm, outside what this test owns.
            None => {
                cmd.arg("--no-dlmfs");
            }
        }
        cmd.arg("--region-path")
            .arg(volume)
            .env("O2CB_RUNTIME_DIR", &rundir)
            .stdin(Stdio::null())
            .stdout(file(&h.path("peer.out")))
            .stderr(file(&log));
        h.spawn("peer", &mut cmd);
        Peer {
            o2cb: o2cb.to_path_buf(),
            conf: conf.to_path_buf(),
            sysconfig: sysconfig.to_path_buf(),
            rundir,
            log,
        }
    }

    /// An `o2cb` command (its name, then its arguments) addressed to our node; None while the
    /// daemon does not answer.
    fn ask(&self, cmd: &[&str]) -> Option<String> {
        let out = Command::new(&self.o2cb)
            .arg("--config-file")
            .arg(&self.conf)
            .args(cmd)
            .args(["--node", OUR_NODE.0, "--sysconfig"])
            .arg(&self.sysconfig)
            .env("O2CB_RUNTIME_DIR", &self.rundir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn view(&self) -> PeerView {
        let mut view = PeerView::default();
        let kernel = KERNEL_NODE.1.to_string();
        if let Some(status) = self.ask(&["status"]) {
            if let Some(line) = status
                .lines()
                .find_map(|l| l.strip_prefix("Nodes in O2CB cluster:"))
            {
                view.live = line
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect();
            }
        }
        if let Some(nodes) = self.ask(&["nodes"]) {
            if let Some(row) = nodes
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|w| w.first() == Some(&kernel.as_str()))
            {
                view.heartbeat = row.get(3).unwrap_or(&"").to_string();
                view.connected = row.get(4).unwrap_or(&"").to_string();
            }
        }
        if let Some(conns) = self.ask(&["list-connections"]) {
            if let Some(row) = conns
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|w| w.first() == Some(&kernel.as_str()))
            {
                // "BYTES/MSGS" columns.
                let count = |i: usize, part: usize| {
                    row.get(i)
                        .and_then(|w| w.split('/').nth(part))
                        .and_then(|b| b.parse().ok())
                        .unwrap_or(0)
                };
                view.state = row.get(3).unwrap_or(&"").to_string();
                view.bytes_sent = count(5, 0);
                view.msgs_sent = count(5, 1);
                view.bytes_received = count(6, 0);
                view.msgs_received = count(6, 1);
            }
        }
        view
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn build_guest() -> (PathBuf, String) {
    let root = workspace_root();
    let out = root.join("target/kernel-guest");
    run_ok(Command::new(root.join("kernel-guest/build.sh")).arg(&out));
    let version = std::fs::read_to_string(out.join("kernel-version")).expect("kernel-version");
    (out, version.trim().to_string())
}

/// Newest modification time of the files under `dir`.
fn newest_mtime(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return newest;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH)
        };
        newest = newest.max(t);
    }
    newest
}

/// The `o2cb` that `cargo test --workspace --release` linked beside this test, if no source of
/// the library crates or manifest is newer than it.
fn fresh_workspace_o2cb() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("o2cb");
    let built = bin.metadata().and_then(|m| m.modified()).ok()?;
    let root = workspace_root();
    let mut newest = root
        .join("Cargo.lock")
        .metadata()
        .and_then(|m| m.modified())
        .ok()?;
    for entry in std::fs::read_dir(&root).ok()?.flatten() {
        let dir = entry.path();
        let name = entry.file_name();
        let skip = ["integration", "fuzz", "kernel-guest", "target"]
            .iter()
            .any(|n| name == *n);
        if !skip && dir.join("Cargo.toml").is_file() {
            newest = newest.max(newest_mtime(&dir.join("src")));
            newest = newest.max(
                dir.join("Cargo.toml")
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()?,
            );
        }
    }
    (built >= newest).then_some(bin)
}

/// Our `o2cb`: `$O2CB_INTEROP_BIN` if set, else the one `cargo test --workspace` built if it is
/// current, else one built here into a target directory of its own (the one of this `cargo
/// test` is locked while it runs).
fn build_o2cb() -> PathBuf {
    if let Some(bin) = std::env::var_os("O2CB_INTEROP_BIN") {
        return PathBuf::from(bin);
    }
    if let Some(bin) = fresh_workspace_o2cb() {
        return bin;
    }
    let root = workspace_root();
    let target = root.join("target/kernel-guest/o2cb-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run_ok(
        Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "o2cb",
                "--target-dir",
            ])
            .arg(&target),
    );
    target.join("release/o2cb")
}

/// Makes the cluster in the guest with ocfs2-tools' `o2cb` and starts global heartbeat on the
/// shared volume; returns the cluster.conf the tools wrote.
fn configure_guest(g: &mut Guest) -> String {
    g.sh(&format!("hostname {}", KERNEL_NODE.0));
    g.sh(&format!("o2cb add-cluster {CLUSTER}"));
    for (name, num, ip) in [OUR_NODE, KERNEL_NODE] {
        g.sh(&format!(
            "o2cb add-node {CLUSTER} {name} --ip {ip} --port 7777 --number {num}"
        ));
    }
    g.sh(&format!("o2cb heartbeat-mode {CLUSTER} global"));
    g.sh(&format!("o2cb add-heartbeat {CLUSTER} /dev/vda"));
    g.sh(&format!("o2cb register-cluster {CLUSTER}"));
    let c = format!("/sys/kernel/config/cluster/{CLUSTER}");
    g.sh(&format!("echo {IDLE_TIMEOUT_MS} > {c}/idle_timeout_ms"));
    g.sh(&format!(
        "echo {KEEPALIVE_DELAY_MS} > {c}/keepalive_delay_ms"
    ));
    g.sh(&format!(
        "echo {RECONNECT_DELAY_MS} > {c}/reconnect_delay_ms"
    ));
    g.sh(&format!(
        "echo {DEAD_THRESHOLD} > {c}/heartbeat/dead_threshold"
    ));
    let out = g.sh(&format!("o2cb start-heartbeat {CLUSTER}"));
    assert!(
        out.contains("Global heartbeat started"),
        "o2cb start-heartbeat said:\n{out}"
    );
    g.sh("cat /etc/ocfs2/cluster.conf")
}

fn sysconfig_text() -> String {
    format!(
        "O2CB_ENABLED=true\nO2CB_STACK=o2cb\nO2CB_BOOTCLUSTER={CLUSTER}\n\
         O2CB_HEARTBEAT_THRESHOLD={DEAD_THRESHOLD}\nO2CB_IDLE_TIMEOUT_MS={IDLE_TIMEOUT_MS}\n\
         O2CB_KEEPALIVE_DELAY_MS={KEEPALIVE_DELAY_MS}\nO2CB_RECONNECT_DELAY_MS={RECONNECT_DELAY_MS}\n"
    )
}

/// The kernel's log line for an o2net connection to our node.
fn connected_line() -> String {
    format!(
        "o2net: Connected to node {} (num {}) at {}:7777",
        OUR_NODE.0, OUR_NODE.1, OUR_NODE.2
    )
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Waits until both sides list each other as heartbeating and connected; returns the guest's
/// log at that point.
fn wait_joined(g: &mut Guest, peer: &Peer, connects_before: usize, limit: Duration) -> String {
    let both: BTreeSet<u8> = [OUR_NODE.1, KERNEL_NODE.1].into();
    wait_for(
        "the kernel to list our node in o2hb/livenodes",
        limit,
        || (g.node_list("/sys/kernel/debug/o2hb/livenodes") == both).then_some(()),
    );
    wait_for("our node to list the kernel node live", limit, || {
        (peer.view().live == both).then_some(())
    });
    let log = wait_for(
        "the kernel to log its connection to our node",
        limit,
        || {
            let log = g.dmesg();
            (count(&log, &connected_line()) > connects_before).then_some(log)
        },
    );
    wait_for("our node to list the kernel node connected", limit, || {
        let v = peer.view();
        (v.connected == "yes" && v.state == "connected").then_some(())
    });
    let kernel_connected = g.node_list("/sys/kernel/debug/o2net/connected_nodes");
    assert!(
        kernel_connected.contains(&OUR_NODE.1),
        "kernel's o2net/connected_nodes lacks our node: {kernel_connected:?}"
    );
    log
}

/// What every test starts from: the namespace, the volume, the guest booted with global
/// heartbeat running on it, and the cluster.conf and sysconfig files for our node.
struct Setup {
    h: Harness,
    g: Guest,
    guest_dir: PathBuf,
    volume: PathBuf,
    region: String,
    conf: PathBuf,
    sysconfig: PathBuf,
}

/// One test at a time: they share the namespace, and two TCG guests on 2 cores would starve
/// each other's heartbeat.
static SERIAL: Mutex<()> = Mutex::new(());

fn setup() -> Setup {
    assert!(
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false),
        "this test needs root (network namespace, tap device)"
    );
    // Missing tools fail the test before the guest is built.
    tool("qemu-system-x86_64");
    tool("mkfs.ocfs2");
    let o2cb_tool = tool("o2cb");
    let (guest_dir, kernel_version) = build_guest();
    eprintln!("kernel guest: {kernel_version}");
    let mut h = Harness::new();
    let volume = h.path("hb.img");
    let geometry = ["-b", "4K", "-C", "4K", "-N", "4", "-L", "hb1"];
    mkfs_global_with(&volume, 1 << 30, CLUSTER, &geometry);
    let region = o2hb::source::open(&volume)
        .expect("our reading of the volume")
        .name;

    let mut g = Guest::boot(&mut h, &guest_dir, &volume);
    let uname = g.sh("uname -r");
    assert!(
        kernel_version.contains(uname.trim()),
        "guest runs {uname}, built from {kernel_version}"
    );
    let conf_text = configure_guest(&mut g);
    // The same cluster.conf on both sides: what ocfs2-tools wrote in the guest is what they
    // write on the host, given the region by UUID (found by us in the volume).
    assert!(
        conf_text.contains(&format!("region = {region}")),
        "guest's cluster.conf:\n{conf_text}"
    );
    let conf = h.path("cluster.conf");
    let host_conf = h.path("host-cluster.conf");
    let tool = |args: &[&str]| {
        run_ok(
            Command::new(&o2cb_tool)
                .arg("--config-file")
                .arg(&host_conf)
                .args(args),
        );
    };
    tool(&["add-cluster", CLUSTER]);
    for (name, num, ip) in [OUR_NODE, KERNEL_NODE] {
        tool(&[
            "add-node",
            CLUSTER,
            name,
            "--ip",
            ip,
            "--port",
            "7777",
            "--number",
            &num.to_string(),
        ]);
    }
    tool(&["heartbeat-mode", CLUSTER, "global"]);
    tool(&["add-heartbeat", CLUSTER, &region]);
    assert_eq!(
        std::fs::read_to_string(&host_conf).expect("host cluster.conf"),
        conf_text,
        "ocfs2-tools wrote different cluster.conf files in the guest and on the host"
    );
    std::fs::write(&conf, &conf_text).expect("cluster.conf");
    let sysconfig = h.path("o2cb.sysconfig");
    std::fs::write(&sysconfig, sysconfig_text()).expect("sysconfig");

    Setup {
        h,
        g,
        guest_dir,
        volume,
        region,
        conf,
        sysconfig,
    }
}

#[test]
fn kernel_node_and_ours_share_heartbeat_and_o2net() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let o2cb = build_o2cb();
    eprintln!("our node: {}", o2cb.display());
    let Setup {
        mut h,
        mut g,
        volume,
        region,
        conf,
        sysconfig,
        ..
    } = setup();

    // 1 and 2: heartbeat and o2net.
    let peer = Peer::start(&mut h, &o2cb, &conf, &sysconfig, &volume, None);
    let log = wait_joined(&mut g, &peer, 0, Duration::from_secs(90));
    assert!(
        log.contains(&format!("o2hb: Heartbeat started on region {region} (vda)")),
        "kernel did not start heartbeat on the shared volume:\n{log}"
    );
    let before = peer.view();
    let shutdowns_before = count(&log, "o2net: Connection to node hostpeer");
    // Keepalives both ways for longer than the idle timeout, and the link stays up: the kernel
    // drops a connection silent for idle_timeout_ms ("has been idle for"), and so do we.
    std::thread::sleep(Duration::from_millis(
        IDLE_TIMEOUT_MS + 2 * KEEPALIVE_DELAY_MS,
    ));
    let after = peer.view();
    let log = g.dmesg();
    assert_eq!(
        count(&log, "o2net: Connection to node hostpeer"),
        shutdowns_before,
        "the kernel closed or lost the connection:\n{log}"
    );
    assert!(
        !log.contains("has been idle for"),
        "kernel saw the link idle:\n{log}"
    );
    assert_eq!(
        count(&log, &connected_line()),
        1,
        "the kernel reconnected:\n{log}"
    );
    // At least one 24-byte keepalive (a bare message header) per keepalive delay, each way.
    let min = (IDLE_TIMEOUT_MS / KEEPALIVE_DELAY_MS - 1) * 24;
    assert!(
        after.bytes_sent >= before.bytes_sent + min
            && after.bytes_received >= before.bytes_received + min,
        "traffic over {} ms of idle link: sent {} -> {} bytes, received {} -> {}",
        IDLE_TIMEOUT_MS + 2 * KEEPALIVE_DELAY_MS,
        before.bytes_sent,
        after.bytes_sent,
        before.bytes_received,
        after.bytes_received
    );
    assert_eq!(
        (after.state.as_str(), after.connected.as_str()),
        ("connected", "yes")
    );
    assert!(g
        .node_list("/sys/kernel/debug/o2net/connected_nodes")
        .contains(&OUR_NODE.1));

    // o2net messages: a dlmfs domain made on the kernel side sends us DLM_QUERY_JOIN and
    // waits for our status reply; mkdir returns once the kernel has it, with the kernel in its
    // own domain map (this node has no dlmfs: our node in that map is the second test's).
    let before = peer.view();
    let (rc, out) = g.run("timeout 60 mkdir /dlm/kidom");
    assert_eq!(rc, 0, "mkdir /dlm/kidom in the guest: {out}");
    let state = g.sh("cat /sys/kernel/debug/o2dlm/kidom/dlm_state");
    assert!(
        domain_map(&state).contains(&KERNEL_NODE.1),
        "the kernel's dlm_state for kidom:\n{state}"
    );
    let after = peer.view();
    assert!(
        after.msgs_received > before.msgs_received && after.msgs_sent > before.msgs_sent,
        "our node saw no request/reply for the kernel's domain join: {before:?} -> {after:?}"
    );
    assert_eq!(
        (after.state.as_str(), after.connected.as_str()),
        ("connected", "yes")
    );

    // A clean stop of our node writes the generation-0 block and the kernel sees it leave.
    assert!(
        h.stop("peer", Duration::from_secs(20)),
        "our node did not stop cleanly"
    );
    // Sooner than a death: the generation-0 block says "gone" at once.
    let prompt = Duration::from_millis(HB_PERIOD_MS * u64::from(DEAD_THRESHOLD - 2));
    wait_for("the kernel to see our node leave", prompt, || {
        (g.node_list("/sys/kernel/debug/o2hb/livenodes") == [KERNEL_NODE.1].into()).then_some(())
    });
    drop(g);
    h.kill("qemu");
}

/// A lock file on our dlmfs mount opened read-write (EX) or read-only (PR), created if missing,
/// with O_NONBLOCK for a trylock, as a program would.
fn dlm_open(path: &Path, write: bool, trylock: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(write).create(write).mode(0o600);
    if trylock {
        o.custom_flags(libc::O_NONBLOCK);
    }
    o.open(path)
}

/// A blocking [`dlm_open`] in a thread of its own: the receiver gets the file (or the error)
/// when the open returns.
fn dlm_open_in_background(
    path: PathBuf,
    write: bool,
) -> std::sync::mpsc::Receiver<std::io::Result<std::fs::File>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(dlm_open(&path, write, false));
    });
    rx
}

/// The value block of a lock file, up to its first NUL (read at offset 0, as dlmfs wants).
fn lvb_text(file: &std::fs::File) -> String {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 64];
    let n = file.read_at(&mut buf, 0).expect("read of the value block");
    let end = buf[..n].iter().position(|&b| b == 0).unwrap_or(n);
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether poll(2) reports POLLIN (dlmfs' sign of a BAST: another node wants the lock) on
/// `file` within `limit`.
fn polls_in(file: &std::fs::File, limit: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(limit.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: p is one valid pollfd for the duration of the call.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    r > 0 && p.revents & libc::POLLIN != 0
}

/// The master of lock resource `name` in a locking_state dump (the kernel's debugfs file and
/// `o2cb lockdump` share the format): the owner field of the LRES line after its NAME line.
fn lres_owner(dump: &str, name: &str) -> Option<u8> {
    let mut lines = dump.lines();
    lines
        .by_ref()
        .find(|l| l.strip_prefix("NAME:") == Some(name))?;
    lines
        .next()?
        .strip_prefix("LRES:")?
        .split(',')
        .nth(1)?
        .parse()
        .ok()
}

/// The `Domain Map:` of a dlm_state dump (the kernel's debugfs file or `o2cb lockdump --dump
/// dlm_state`).
fn domain_map(dlm_state: &str) -> BTreeSet<u8> {
    dlm_state
        .lines()
        .find_map(|l| l.trim().strip_prefix("Domain Map:"))
        .map(|m| {
            m.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The kernel's debugfs dump `file` of domain `DOMAIN`.
fn kernel_dump(g: &mut Guest, file: &str) -> String {
    g.sh(&format!("cat /sys/kernel/debug/o2dlm/{DOMAIN}/{file}"))
}

/// Our node's `o2cb lockdump DOMAIN --dump file`.
fn our_dump(peer: &Peer, file: &str) -> String {
    peer.ask(&["lockdump", DOMAIN, "--dump", file])
        .unwrap_or_else(|| panic!("o2cb lockdump {DOMAIN} --dump {file} failed"))
}

/// What the guest's dlmtool (kernel-guest/dlmtool.c) started with `&` has printed to `out`, once
/// it has printed `line`.
fn wait_guest_line(g: &mut Guest, out: &str, line: &str, limit: Duration) -> String {
    wait_for(&format!("{line:?} in the guest's {out}"), limit, || {
        let (_, text) = g.run(&format!("cat {out}"));
        text.lines().any(|l| l == line).then_some(text)
    })
}

/// The dlmfs domain both sides use.
const DOMAIN: &str = "kidom";

#[test]
fn kernel_dlmfs_and_ours_exclude_each_other_and_recover() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let o2cb = build_o2cb();
    eprintln!("our node: {}", o2cb.display());
    let Setup {
        mut h,
        mut g,
        guest_dir,
        volume,
        conf,
        sysconfig,
        ..
    } = setup();
    let mount = h.path("dlm");
    std::fs::create_dir(&mount).expect("our dlmfs mount point");
    let peer = Peer::start(&mut h, &o2cb, &conf, &sysconfig, &volume, Some(&mount));
    wait_joined(&mut g, &peer, 0, Duration::from_secs(90));
    let both: BTreeSet<u8> = [OUR_NODE.1, KERNEL_NODE.1].into();
    let limit = Duration::from_secs(60);
    let file = |name: &str| mount.join(DOMAIN).join(name);

    // 3: the same domain made by mkdir on both sides, each in the other's domain map.
    let (rc, out) = g.run(&format!("timeout 60 mkdir /dlm/{DOMAIN}"));
    assert_eq!(rc, 0, "mkdir /dlm/{DOMAIN} in the guest: {out}");
    std::fs::create_dir(mount.join(DOMAIN)).expect("mkdir of the domain on our dlmfs");
    let log = g.dmesg();
    assert!(
        log.contains(&format!("o2dlm: Node 0 joins domain {DOMAIN}")),
        "kernel log:\n{log}"
    );
    assert_eq!(domain_map(&kernel_dump(&mut g, "dlm_state")), both);
    assert_eq!(domain_map(&our_dump(&peer, "dlm_state")), both);

    // 4, 5 and the kernel's poll(): the kernel masters klock and holds it EX through its /dlm
    // with its value block written, polling the file. Our trylock open fails with ETXTBSY and
    // sends no BAST; our blocking open waits, its BAST makes the kernel's poll() report POLLIN,
    // and once the kernel's holder closes (3 s later) we get the lock with the kernel's value
    // block.
    g.sh(&format!(
        "dlmtool -w kernel-lvb -p 120 -s 3 /dlm/{DOMAIN}/klock > /tmp/klock 2>&1 &"
    ));
    wait_guest_line(&mut g, "/tmp/klock", "wrote", limit);
    let busy = dlm_open(&file("klock"), true, true).map(|_| ());
    assert_eq!(
        busy.map_err(|e| e.raw_os_error()),
        Err(Some(libc::ETXTBSY)),
        "our trylock open of klock while the kernel holds EX"
    );
    std::thread::sleep(Duration::from_secs(1));
    let out = g.sh("cat /tmp/klock");
    assert!(!out.contains("poll:"), "a BAST from our trylock:\n{out}");
    let waiter = dlm_open_in_background(file("klock"), true);
    let out = wait_guest_line(&mut g, "/tmp/klock", "poll: POLLIN", limit);
    if !out.contains("closed") {
        assert!(
            waiter.try_recv().is_err(),
            "our open returned while the kernel holds klock EX"
        );
    }
    let klock = waiter
        .recv_timeout(limit)
        .expect("our open of klock never returned")
        .expect("our open of klock");
    assert_eq!(lvb_text(&klock), "kernel-lvb");
    let out = g.sh("cat /tmp/klock");
    assert!(out.ends_with("closed\n"), "the kernel's dlmtool:\n{out}");
    assert_eq!(
        lres_owner(&kernel_dump(&mut g, "locking_state"), "klock"),
        Some(KERNEL_NODE.1)
    );
    assert_eq!(
        lres_owner(&our_dump(&peer, "locking_state"), "klock"),
        Some(KERNEL_NODE.1)
    );
    // klock stays open (EX, mastered by the kernel) until the kernel node dies below.

    // 4 and 5, ours first: we master olock and hold it EX with our value block written. The
    // kernel's trylock gets ETXTBSY; its blocking open waits and its BAST makes our poll()
    // report POLLIN; our close hands it the lock and our value block.
    let olock = dlm_open(&file("olock"), true, false).expect("our open of olock");
    std::os::unix::fs::FileExt::write_at(&olock, b"rust-lvb", 0).expect("our value block");
    assert_eq!(
        lres_owner(&our_dump(&peer, "locking_state"), "olock"),
        Some(OUR_NODE.1)
    );
    let (rc, out) = g.run(&format!("dlmtool -n /dlm/{DOMAIN}/olock"));
    assert_eq!(
        (rc, out.as_str()),
        (1, "open: ETXTBSY\n"),
        "the kernel's trylock of olock"
    );
    assert!(
        !polls_in(&olock, Duration::from_secs(1)),
        "a BAST from the kernel's trylock"
    );
    g.sh(&format!("dlmtool /dlm/{DOMAIN}/olock > /tmp/olock 2>&1 &"));
    assert!(
        polls_in(&olock, limit),
        "no POLLIN on our olock after the kernel's request"
    );
    let out = g.sh("cat /tmp/olock");
    assert!(
        !out.contains("opened"),
        "the kernel opened olock while we hold EX:\n{out}"
    );
    drop(olock);
    let out = wait_guest_line(&mut g, "/tmp/olock", "closed", limit);
    assert_eq!(out, "opened\nlvb=rust-lvb\nclosed\n");
    assert_eq!(
        lres_owner(&kernel_dump(&mut g, "locking_state"), "olock"),
        Some(OUR_NODE.1)
    );

    // PR on both sides at once: the kernel's read-only open of olock (its EX still cached
    // from its close) and then ours: our blocking read-only open makes the kernel downconvert
    // to PR and returns while the kernel's reader still holds the file open, with the value
    // block.
    g.sh(&format!(
        "dlmtool -r -s 8 /dlm/{DOMAIN}/olock > /tmp/olockr 2>&1 &"
    ));
    wait_guest_line(&mut g, "/tmp/olockr", "lvb=rust-lvb", limit);
    let reader = dlm_open_in_background(file("olock"), false)
        .recv_timeout(limit)
        .expect("our read-only open of olock never returned")
        .expect("our read-only open of olock");
    let out = g.sh("cat /tmp/olockr");
    assert!(
        !out.contains("closed"),
        "our PR came only after the kernel's reader closed:\n{out}"
    );
    assert_eq!(lvb_text(&reader), "rust-lvb");
    drop(reader);

    // 6, recovery on our side: the kernel node dies (qemu killed) while it masters and holds
    // klost, which our open waits for, and masters klock, which we hold. Our node declares it
    // dead, does not fence, recovers the domain as its recovery master; our waiter gets klost
    // and we keep klock, both now mastered by us.
    g.sh(&format!(
        "dlmtool -w kernel-gone -p 120 -s 600 /dlm/{DOMAIN}/klost > /tmp/klost 2>&1 &"
    ));
    wait_guest_line(&mut g, "/tmp/klost", "wrote", limit);
    let waiter = dlm_open_in_background(file("klost"), true);
    wait_guest_line(&mut g, "/tmp/klost", "poll: POLLIN", limit);
    assert_eq!(
        lres_owner(&kernel_dump(&mut g, "locking_state"), "klost"),
        Some(KERNEL_NODE.1)
    );
    drop(g);
    h.kill("qemu");
    let dead = Duration::from_millis(HB_PERIOD_MS * u64::from(DEAD_THRESHOLD + 10));
    wait_for("our node to declare the kernel node dead", dead, || {
        let v = peer.view();
        (v.live == [OUR_NODE.1].into() && v.heartbeat != "live" && v.connected == "no")
            .then_some(())
    });
    let klost = waiter
        .recv_timeout(limit)
        .expect("our waiter on klost was not granted after the kernel node died")
        .expect("our open of klost");
    // What the kernel wrote under EX was never released: lost with it, as the kernel's
    // recovery blanks a value block whose EX holder died.
    assert_eq!(lvb_text(&klost), "", "klost's value block after recovery");
    assert!(
        h.running("peer"),
        "our node exited (fenced?):\n{}",
        peer.log()
    );
    // Our own EX lock on klock (with the value block we wrote) goes into the rebuilt
    // resource like any other record: recovery refuses nothing.
    let log = peer.log();
    assert!(
        !log.contains("ERROR"),
        "our node logged an error during recovery:\n{log}"
    );
    // Once idle, the line keeps only the count (the kernel's dlm_state forgets the dead node
    // and the recovery master too).
    let status = peer.ask(&["status"]).expect("o2cb status");
    assert!(
        status.contains(&format!(
            "Recovery of domain {DOMAIN}: idle, dead node none, recovery master none, to recover: none, completed: 1\n"
        )),
        "o2cb status:\n{status}"
    );
    let dump = our_dump(&peer, "locking_state");
    assert_eq!(lres_owner(&dump, "klost"), Some(OUR_NODE.1), "{dump}");
    assert_eq!(lres_owner(&dump, "klock"), Some(OUR_NODE.1), "{dump}");
    assert_eq!(
        domain_map(&our_dump(&peer, "dlm_state")),
        [OUR_NODE.1].into()
    );

    // The kernel boots again and rejoins the cluster and the domain; the locks we kept exclude
    // its trylocks, and it finds us their master.
    let mut g = Guest::boot(&mut h, &guest_dir, &volume);
    configure_guest(&mut g);
    wait_joined(&mut g, &peer, 0, Duration::from_secs(90));
    let (rc, out) = g.run(&format!("timeout 60 mkdir /dlm/{DOMAIN}"));
    assert_eq!(rc, 0, "mkdir /dlm/{DOMAIN} in the rebooted guest: {out}");
    assert_eq!(domain_map(&kernel_dump(&mut g, "dlm_state")), both);
    for name in ["klock", "klost"] {
        let (rc, out) = g.run(&format!("dlmtool -n /dlm/{DOMAIN}/{name}"));
        assert_eq!(
            (rc, out.as_str()),
            (1, "open: ETXTBSY\n"),
            "the kernel's trylock of {name}"
        );
    }
    assert_eq!(
        lres_owner(&kernel_dump(&mut g, "locking_state"), "klock"),
        Some(OUR_NODE.1)
    );

    // 6, recovery on the kernel's side: our node dies (SIGKILL) while it masters and holds
    // klock and the kernel waits for it. The kernel declares it dead, does not fence, recovers
    // the domain, and its waiter gets the lock. Our node restarts (mounting dlmfs again over
    // the dead mount) and rejoins the cluster and the domain.
    g.sh(&format!("dlmtool /dlm/{DOMAIN}/klock > /tmp/klock2 2>&1 &"));
    assert!(
        polls_in(&klock, limit),
        "no POLLIN on our klock after the kernel's request"
    );
    h.kill("peer");
    drop((klock, klost));
    wait_for(
        "the kernel to drop our node from o2hb/livenodes",
        dead,
        || {
            (g.node_list("/sys/kernel/debug/o2hb/livenodes") == [KERNEL_NODE.1].into())
                .then_some(())
        },
    );
    let log = wait_for(
        "the kernel to recover the domain without our node",
        dead,
        || {
            let log = g.dmesg();
            log.contains(&format!("o2dlm: End recovery on domain {DOMAIN}"))
                .then_some(log)
        },
    );
    assert!(
        log.contains(&format!(
            "o2dlm: Begin recovery on domain {DOMAIN} for node 0"
        )),
        "kernel log:\n{log}"
    );
    let out = wait_guest_line(&mut g, "/tmp/klock2", "closed", limit);
    assert!(out.starts_with("opened\n"), "the kernel's dlmtool:\n{out}");
    assert_eq!(
        domain_map(&kernel_dump(&mut g, "dlm_state")),
        [KERNEL_NODE.1].into()
    );
    assert!(
        !g.node_list("/sys/kernel/debug/o2net/connected_nodes")
            .contains(&OUR_NODE.1),
        "the kernel still lists our dead node connected"
    );
    let peer = Peer::start(&mut h, &o2cb, &conf, &sysconfig, &volume, Some(&mount));
    wait_joined(&mut g, &peer, 1, Duration::from_secs(90));
    std::fs::create_dir(mount.join(DOMAIN)).expect("mkdir of the domain on our new mount");
    assert_eq!(domain_map(&kernel_dump(&mut g, "dlm_state")), both);
    assert_eq!(domain_map(&our_dump(&peer, "dlm_state")), both);
    let log = g.dmesg();
    assert!(
        !log.contains("fencing this node"),
        "the kernel fenced itself:\n{log}"
    );
}
