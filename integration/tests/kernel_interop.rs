//! A mixed cluster with a real Linux kernel node (issue 10): Debian's stock 6.1 kernel with its
//! ocfs2 modules and ocfs2-tools, booted under qemu (TCG), and one node of ours, in one O2CB
//! cluster inside a network namespace this test creates. The kernel's own logs and debugfs files
//! are the witnesses.
//!
//! The guest is built from Debian packages by `kernel-guest/build.sh` (cached under
//! `target/kernel-guest/`). In the first test our node is `o2cb node run` (the node daemon),
//! built by this test into its own target directory unless current (or `$O2CB_INTEROP_BIN`),
//! and asked with `o2cb status`, `nodes` and `list-connections`. The tests need root (network
//! namespace, tap device); they fail, and do not skip, when qemu, the kernel package or root
//! are missing (`scripts/install-deps.sh` installs what it needs).
//!
//! `kernel_node_and_ours_share_heartbeat_and_o2net` (our node: the node daemon) checks heartbeat
//! both ways on one global-heartbeat volume made by mkfs.ocfs2 (issue check 1), the o2net
//! connection and keepalives for longer than the idle timeout (2), the request/status exchange
//! of the kernel's DLM_QUERY_JOIN, and membership-level failure both ways (part of 6): our node
//! killed and restarted, then the kernel killed and rebooted, and a clean stop.
//!
//! `kernel_dlmfs_and_our_dlm_exclude_each_other` (our node: kernel-guest/peer, o2hb + o2net +
//! o2dlm's driver, until the daemon hosts the DLM) checks one dlmfs domain on both sides with
//! each in the other's domain map (3), EX exclusion both ways with the value block handed over
//! and our BAST (4, at the o2dlm API: dlmfs over FUSE is not wired yet), and mastery both ways
//! (5), and the kernel's lock recovery when our node dies mastering and holding a lock it waits
//! for (6). Recovery on our side and the kernel-side poll() on a BAST are still to do; see
//! kernel-guest/README.md.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
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

fn require_tool(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: run scripts/install-deps.sh");
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

/// Everything this test started: processes, the namespace, the scratch directory. Drop ends the
/// processes and removes the namespace even when the test panics, and then prints the logs that
/// tell why.
struct Harness {
    dir: tempfile::TempDir,
    children: Vec<(String, Child)>,
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
        let qemu = require_tool("qemu-system-x86_64");
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
    fn start(h: &mut Harness, o2cb: &Path, conf: &Path, sysconfig: &Path, volume: &Path) -> Peer {
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
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns()])
            .arg(o2cb)
            .arg("--config-file")
            .arg(conf)
            // No dlmfs: its default mount point is the host's /dlm, outside what this test
            // owns (the DLM checks use kernel-guest/peer until they move to a scratch mount).
            .args([
                "node",
                "run",
                "--no-dlmfs",
                "--node",
                OUR_NODE.0,
                "--sysconfig",
            ])
            .arg(sysconfig)
            .arg("--region-path")
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

    /// An `o2cb` command addressed to our node; None while the daemon does not answer.
    fn ask(&self, cmd: &str) -> Option<String> {
        let out = Command::new(&self.o2cb)
            .arg("--config-file")
            .arg(&self.conf)
            .args([cmd, "--node", OUR_NODE.0, "--sysconfig"])
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
        if let Some(status) = self.ask("status") {
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
        if let Some(nodes) = self.ask("nodes") {
            if let Some(row) = nodes
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|w| w.first() == Some(&kernel.as_str()))
            {
                view.heartbeat = row.get(3).unwrap_or(&"").to_string();
                view.connected = row.get(4).unwrap_or(&"").to_string();
            }
        }
        if let Some(conns) = self.ask("list-connections") {
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
    require_tool("qemu-system-x86_64");
    let mkfs = require_tool("mkfs.ocfs2");
    let o2cb_tool = require_tool("o2cb");
    let (guest_dir, kernel_version) = build_guest();
    eprintln!("kernel guest: {kernel_version}");
    let mut h = Harness::new();
    let volume = h.path("hb.img");
    std::fs::File::create(&volume)
        .and_then(|f| f.set_len(1 << 30))
        .expect("volume file");
    run_ok(
        Command::new(&mkfs)
            .args([
                "-q",
                "-b",
                "4K",
                "-C",
                "4K",
                "-N",
                "4",
                "--cluster-stack=o2cb",
            ])
            .arg(format!("--cluster-name={CLUSTER}"))
            .args(["--global-heartbeat", "-L", "hb1", "-F"])
            .arg(&volume),
    );
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
        guest_dir,
        volume,
        region,
        conf,
        sysconfig,
    } = setup();

    // 1 and 2: heartbeat and o2net.
    let peer = Peer::start(&mut h, &o2cb, &conf, &sysconfig, &volume);
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
    // own domain map. (Our node in that map too is check 3, once the daemon hosts the DLM.)
    let before = peer.view();
    let (rc, out) = g.run("timeout 60 mkdir /dlm/kidom");
    assert_eq!(rc, 0, "mkdir /dlm/kidom in the guest: {out}");
    let state = g.sh("cat /sys/kernel/debug/o2dlm/kidom/dlm_state");
    let domain_map: BTreeSet<u8> = state
        .lines()
        .find_map(|l| l.trim().strip_prefix("Domain Map:"))
        .map(|m| {
            m.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        domain_map.contains(&KERNEL_NODE.1),
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

    // 6 (membership): our node dies; the kernel declares it dead and carries on without
    // fencing (it is the only live node); ours restarts and rejoins.
    h.kill("peer");
    let limit = Duration::from_millis(HB_PERIOD_MS * u64::from(DEAD_THRESHOLD + 10));
    wait_for(
        "the kernel to drop our node from o2hb/livenodes",
        limit,
        || {
            (g.node_list("/sys/kernel/debug/o2hb/livenodes") == [KERNEL_NODE.1].into())
                .then_some(())
        },
    );
    wait_for("the kernel to drop the connection", limit, || {
        (!g.node_list("/sys/kernel/debug/o2net/connected_nodes")
            .contains(&OUR_NODE.1))
        .then_some(())
    });
    let log = g.dmesg();
    assert!(
        !log.contains("fencing this node"),
        "the kernel fenced itself:\n{log}"
    );
    let peer = Peer::start(&mut h, &o2cb, &conf, &sysconfig, &volume);
    wait_joined(&mut g, &peer, 1, Duration::from_secs(90));

    // The reverse: the kernel node dies (qemu killed: no clean heartbeat stop); ours declares it
    // dead, closes the connection, and does not fence (it holds the lowest node). Then the
    // kernel boots again and rejoins.
    drop(g);
    h.kill("qemu");
    wait_for("our node to declare the kernel node dead", limit, || {
        let v = peer.view();
        (v.live == [OUR_NODE.1].into() && v.heartbeat != "live" && v.connected == "no")
            .then_some(())
    });
    assert!(
        h.running("peer"),
        "our node exited (fenced?):\n{}",
        peer.log()
    );
    let mut g = Guest::boot(&mut h, &guest_dir, &volume);
    configure_guest(&mut g);
    wait_joined(&mut g, &peer, 0, Duration::from_secs(90));

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

/// Builds kernel-guest/peer with the workspace's Cargo.lock (copied into a build directory under
/// target/, so that the versions are the workspace's and no tracked file changes).
fn build_peer() -> PathBuf {
    let root = workspace_root();
    let build = root.join("target/kernel-guest/peer-build");
    std::fs::create_dir_all(&build).expect("peer build directory");
    let manifest = std::fs::read_to_string(root.join("kernel-guest/peer/Cargo.toml"))
        .expect("kernel-guest/peer/Cargo.toml");
    let src = root.join("kernel-guest/peer/src/main.rs");
    let manifest = manifest
        .replace("\"../../", &format!("\"{}/", root.display()))
        .replace(
            "[dependencies]",
            &format!(
                "[[bin]]\nname = \"o2cb-kernel-peer\"\npath = \"{}\"\n\n[dependencies]",
                src.display()
            ),
        );
    std::fs::write(build.join("Cargo.toml"), manifest).expect("peer manifest");
    std::fs::copy(root.join("Cargo.lock"), build.join("Cargo.lock")).expect("Cargo.lock");
    let target = root.join("target/kernel-guest/peer-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run_ok(
        Command::new(cargo)
            .args(["build", "--release", "--quiet", "--manifest-path"])
            .arg(build.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target),
    );
    target.join("release/o2cb-kernel-peer")
}

/// kernel-guest/peer: our node with o2dlm's driver, driven by line commands (see its docs).
struct DlmPeer {
    stdin: std::process::ChildStdin,
    lines: Arc<Mutex<Vec<String>>>,
}

impl DlmPeer {
    fn start(h: &mut Harness, bin: &Path, conf: &Path, sysconfig: &Path, volume: &Path) -> DlmPeer {
        let err = std::fs::File::create(h.path("peer.err")).expect("peer.err");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns()])
            .arg(bin)
            .arg(conf)
            .arg(sysconfig)
            .arg(OUR_NODE.0)
            .arg(volume)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err));
        let mut child = cmd.spawn().expect("start our DLM node");
        let stdin = child.stdin.take().expect("piped stdin");
        let out = child.stdout.take().expect("piped stdout");
        h.children.push(("peer".into(), child));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let log = h.path("peer.out");
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(log).ok();
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if let Ok(mut v) = sink.lock() {
                    v.push(line);
                }
            }
        });
        DlmPeer { stdin, lines }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("command to our DLM node");
    }

    /// The first line starting with `prefix` printed after line number `from`.
    fn line_after(&self, from: usize, prefix: &str) -> Option<String> {
        let v = self.lines.lock().ok()?;
        v.iter().skip(from).find(|l| l.starts_with(prefix)).cloned()
    }

    fn mark(&self) -> usize {
        self.lines.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Sends `cmd` and waits for its answer, the first new line starting with one of
    /// `answers`.
    fn ask(&mut self, cmd: &str, answers: &[&str], limit: Duration) -> String {
        let from = self.mark();
        self.send(cmd);
        wait_for(&format!("our DLM node's answer to {cmd:?}"), limit, || {
            answers.iter().find_map(|a| self.line_after(from, a))
        })
    }
}

/// The kernel's `Domain Map:` of a dlmfs domain, from its debugfs dlm_state.
fn kernel_domain_map(g: &mut Guest, domain: &str) -> BTreeSet<u8> {
    let state = g.sh(&format!("cat /sys/kernel/debug/o2dlm/{domain}/dlm_state"));
    state
        .lines()
        .find_map(|l| l.trim().strip_prefix("Domain Map:"))
        .map(|m| {
            m.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kernel_dlmfs_and_our_dlm_exclude_each_other() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let peer_bin = build_peer();
    let Setup {
        mut h,
        mut g,
        volume,
        conf,
        sysconfig,
        ..
    } = setup();
    let mut peer = DlmPeer::start(&mut h, &peer_bin, &conf, &sysconfig, &volume);
    let both: BTreeSet<u8> = [OUR_NODE.1, KERNEL_NODE.1].into();
    let limit = Duration::from_secs(90);
    wait_for("heartbeat and o2net both ways", limit, || {
        let up = peer
            .line_after(0, &format!("node-up {}", KERNEL_NODE.1))
            .is_some();
        (up && g.node_list("/sys/kernel/debug/o2hb/livenodes") == both
            && g.node_list("/sys/kernel/debug/o2net/connected_nodes")
                .contains(&OUR_NODE.1))
        .then_some(())
    });

    // 3: the same domain on both sides, each in the other's domain map.
    let (rc, out) = g.run("timeout 60 mkdir /dlm/kidom");
    assert_eq!(rc, 0, "mkdir /dlm/kidom in the guest: {out}");
    let joined = peer.ask("join kidom", &["joined", "error"], limit);
    assert_eq!(joined, "joined kidom members=0,1");
    let log = g.dmesg();
    assert!(
        log.contains("o2dlm: Node 0 joins domain kidom"),
        "kernel log:\n{log}"
    );
    assert_eq!(kernel_domain_map(&mut g, "kidom"), both);

    // 4 and 5, the kernel first: it masters klock and holds it EX through /dlm with its value
    // block written; our trylock is refused, our blocking lock waits until the kernel's holder
    // closes the file, and is granted with the kernel's value block.
    g.sh("(exec 3<>/dlm/kidom/klock; printf kernel-lvb >&3; sleep 12) >/dev/null 2>&1 &");
    wait_for("the kernel to hold klock", limit, || {
        g.sh("cat /sys/kernel/debug/o2dlm/kidom/locking_state")
            .contains("NAME:klock")
            .then_some(())
    });
    let tried = peer.ask(
        "lock klock ex try",
        &["granted klock", "lockerr klock"],
        limit,
    );
    assert!(
        tried.contains("DLM_NOTQUEUED"),
        "our trylock of klock: {tried}"
    );
    let from = peer.mark();
    let asked = Instant::now();
    peer.send("lock klock ex");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        peer.line_after(from, "granted klock"),
        None,
        "granted while the kernel holds EX"
    );
    let granted = wait_for("our EX on klock once the kernel lets go", limit, || {
        peer.line_after(from, "granted klock")
            .or_else(|| peer.line_after(from, "lockerr klock"))
    });
    assert_eq!(granted, "granted klock lvb=kernel-lvb owner=1");
    assert!(
        asked.elapsed() >= Duration::from_secs(5),
        "granted before the kernel's holder closed"
    );
    assert_eq!(
        peer.ask("unlock klock", &["unlocked", "error"], limit),
        "unlocked klock"
    );

    // 4 and 5, ours first: we master olock and hold it EX with our value block; the kernel's
    // open of the file waits and sends us a BAST; our unlock hands the kernel our value block.
    assert_eq!(
        peer.ask("lock olock ex", &["granted olock", "lockerr olock"], limit),
        "granted olock lvb= owner=0"
    );
    assert_eq!(
        peer.ask("setlvb olock rust-lvb", &["lvb", "error"], limit),
        "lvb olock"
    );
    g.sh("rm -f /tmp/got; (exec 3<>/dlm/kidom/olock; cat <&3 > /tmp/got.part; mv /tmp/got.part /tmp/got; sleep 5) >/dev/null 2>&1 &");
    let bast = wait_for("a BAST from the kernel's request", limit, || {
        let b = peer.ask("bast olock", &["bast olock"], limit);
        (b != "bast olock none").then_some(b)
    });
    assert_eq!(bast, "bast olock ex");
    let (rc, _) = g.run("test -e /tmp/got");
    assert_ne!(rc, 0, "the kernel opened olock while we hold EX");
    assert_eq!(
        peer.ask("unlock olock", &["unlocked", "error"], limit),
        "unlocked olock"
    );
    let got = wait_for("the kernel's open of olock after our unlock", limit, || {
        let (rc, out) = g.run("cat /tmp/got");
        (rc == 0).then_some(out)
    });
    assert!(
        got.starts_with("rust-lvb\0"),
        "the kernel read {got:?} from olock's value block"
    );

    // 6 (DLM, the kernel's side): our node dies while it masters and holds rlock EX and the
    // kernel waits for it; the kernel recovers the domain and its waiter gets the lock.
    assert_eq!(
        peer.ask("lock rlock ex", &["granted rlock", "lockerr rlock"], limit),
        "granted rlock lvb= owner=0"
    );
    g.sh("rm -f /tmp/rgot; (exec 3<>/dlm/kidom/rlock; echo granted > /tmp/rgot; sleep 5) >/dev/null 2>&1 &");
    wait_for("the kernel's request for rlock", limit, || {
        let b = peer.ask("bast rlock", &["bast rlock"], limit);
        (b == "bast rlock ex").then_some(())
    });
    h.kill("peer");
    let dead = Duration::from_millis(HB_PERIOD_MS * u64::from(DEAD_THRESHOLD + 20));
    let log = wait_for("the kernel to recover kidom without our node", dead, || {
        let log = g.dmesg();
        log.contains("o2dlm: End recovery on domain kidom")
            .then_some(log)
    });
    assert!(
        log.contains("o2dlm: Begin recovery on domain kidom for node 0"),
        "kernel log:\n{log}"
    );
    wait_for("the kernel's waiter on rlock to get it", dead, || {
        (g.run("test -e /tmp/rgot").0 == 0).then_some(())
    });
    assert_eq!(kernel_domain_map(&mut g, "kidom"), [KERNEL_NODE.1].into());
    assert!(
        !g.dmesg().contains("fencing this node"),
        "the kernel fenced itself"
    );
}
