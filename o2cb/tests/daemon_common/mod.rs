//! A cluster of node daemons as real processes on 127.0.X.1-N, each test with its own X, its
//! own temporary directory (configuration, region file, runtime directory) and a guard that
//! kills every process it started, even when the test fails; and the heartbeat region files
//! they and single `o2cb heartbeat run` processes write to.

#![allow(dead_code)] // each test binary uses part of it

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_o2cb");

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub sysconfig: PathBuf,
    pub region: PathBuf,
    /// The region's name (UUID).
    pub uuid: String,
    pub run: PathBuf,
    pub period_ms: u32,
    pub nodes: Vec<Option<Child>>,
    /// Whether node `i`'s daemon leads a process group of its own (the node's "machine",
    /// with the processes that use its dlmfs mount): killed and paused as a whole.
    pub grouped: Vec<bool>,
    /// Daemons started by `o2cb online` (not our children): killed by pid.
    pub detached: Vec<i32>,
}

/// A heartbeat region file of `blocks` slots made by `o2cb heartbeat format` as `dir/region`:
/// its path and its UUID as the command printed it.
pub fn format_region(dir: &Path, blocks: u32) -> (PathBuf, String) {
    let path = dir.join("region");
    let out = Command::new(BIN)
        .args(["heartbeat", "format"])
        .arg(&path)
        .args(["--blocks", &blocks.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uuid = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(3)
        .unwrap()
        .trim_end_matches(':')
        .to_string();
    (path, uuid)
}

/// Waits until `path` exists (a file the command under a lock writes); fails after `timeout`.
pub fn wait_file(path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Detaches the mounts on drop, after the daemons (declared before) are gone: a test that
/// fails leaves no dead FUSE mount behind.
pub struct Unmount(pub Vec<PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        for p in &self.0 {
            let c = CString::new(p.as_os_str().as_bytes()).unwrap();
            // SAFETY: c is a valid NUL-terminated path.
            unsafe {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// Node `node`'s daemon arguments with its dlmfs mounted at `mount`.
pub fn dlmfs_args(c: &TestCluster, node: usize, mount: &Path) -> Vec<String> {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: these tests need FUSE (run .ci/run or load the fuse module)"
    );
    let mut args = c.daemon_args(node);
    args.retain(|a| a != "--no-dlmfs");
    args.extend(["--dlmfs".to_string(), mount.display().to_string()]);
    args
}

impl TestCluster {
    /// `n` nodes `n0..` on 127.0.`net`.1.. port 7777; global heartbeat on a region file
    /// unless `local`; heartbeat period `period_ms`, dead threshold `threshold`.
    pub fn new(net: u8, n: u8, local: bool, period_ms: u32, threshold: u32) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let (region, uuid) = format_region(dir.path(), 8);
        let mode = if local { "local" } else { "global" };
        let mut conf = format!(
            "cluster:\n\tnode_count = {n}\n\theartbeat_mode = {mode}\n\tname = test{net}\n\n"
        );
        for i in 0..n {
            conf.push_str(&format!(
                "node:\n\tip_port = 7777\n\tip_address = 127.0.{net}.{}\n\tnumber = {i}\n\tname = n{i}\n\tcluster = test{net}\n\n",
                i + 1
            ));
        }
        if !local {
            conf.push_str(&format!(
                "heartbeat:\n\tregion = {uuid}\n\tcluster = test{net}\n\n"
            ));
        }
        let conf_path = dir.path().join("cluster.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let sysconfig = dir.path().join("o2cb");
        std::fs::write(
            &sysconfig,
            format!(
                "O2CB_ENABLED=true\nO2CB_STACK=o2cb\nO2CB_BOOTCLUSTER=test{net}\nO2CB_HEARTBEAT_THRESHOLD={threshold}\n\
                 O2CB_IDLE_TIMEOUT_MS=5000\nO2CB_KEEPALIVE_DELAY_MS=1000\nO2CB_RECONNECT_DELAY_MS=2000\n"
            ),
        )
        .unwrap();
        let run = dir.path().join("run");
        TestCluster {
            conf: conf_path,
            sysconfig,
            region,
            uuid,
            run,
            period_ms,
            nodes: (0..n).map(|_| None).collect(),
            grouped: vec![false; usize::from(n)],
            detached: Vec::new(),
            dir,
        }
    }

    /// Three nodes on 127.0.`net`.1-3 (global heartbeat, period 200 ms, dead threshold 7),
    /// started, each seeing all three live and connected.
    pub fn three_up(net: u8) -> TestCluster {
        let mut c = TestCluster::new(net, 3, false, 200, 7);
        for i in 0..3 {
            c.start(i);
        }
        for i in 0..3 {
            c.wait_all_up(i, &[0, 1, 2]);
        }
        c
    }

    /// `o2cb --config-file CONF ARGS`, in this cluster's runtime directory.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config-file")
            .arg(&self.conf)
            .env("O2CB_RUNTIME_DIR", &self.run)
            .env_remove("O2CB_NODE")
            .current_dir(self.dir.path());
        c
    }

    /// The options that name node `i` and this cluster's files.
    pub fn node_args(&self, i: usize) -> Vec<String> {
        vec![
            "--node".into(),
            format!("n{i}"),
            "--sysconfig".into(),
            self.sysconfig.display().to_string(),
        ]
    }

    /// The options of a daemon for node `i`.
    pub fn daemon_args(&self, i: usize) -> Vec<String> {
        let mut v = self.node_args(i);
        v.extend([
            "--heartbeat-period-ms".into(),
            self.period_ms.to_string(),
            "--region-path".into(),
            self.region.display().to_string(),
            "--no-dlmfs".into(),
        ]);
        v
    }

    /// Runs `o2cb COMMAND --node n<i> ...` and returns its output.
    pub fn o2cb(&self, i: usize, command: &[&str]) -> Output {
        self.cmd()
            .args(command)
            .args(self.node_args(i))
            .output()
            .unwrap()
    }

    /// Like [`TestCluster::o2cb`], asserting success; stdout.
    pub fn ok(&self, i: usize, command: &[&str]) -> String {
        let out = self.o2cb(i, command);
        assert!(
            out.status.success(),
            "o2cb {command:?} on n{i}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `o2cb node run` for node `i` in the foreground (our child); logs in the
    /// temporary directory.
    pub fn start(&mut self, i: usize) {
        let args = self.daemon_args(i);
        self.start_args(i, args);
    }

    /// Starts `o2cb node run ARGS` as node `i`.
    pub fn start_args(&mut self, i: usize, args: Vec<String>) {
        self.spawn_daemon(i, args, false);
    }

    /// Starts `o2cb node run ARGS` as node `i`, leading a new process group that stands for
    /// the node's machine: [`TestCluster::signal_node`] reaches every process in it.
    pub fn start_grouped(&mut self, i: usize, args: Vec<String>) {
        self.spawn_daemon(i, args, true);
    }

    /// Sends `sig` to node `i`'s whole process group (it must have been started grouped).
    pub fn signal_node(&self, i: usize, sig: i32) {
        assert!(
            self.grouped[i],
            "n{i} was not started in a group of its own"
        );
        // SAFETY: kill(2) on a process group this test made.
        unsafe {
            libc::kill(-(self.pid(i) as i32), sig);
        }
    }

    /// Sends `sig` to node `i`'s daemon only.
    pub fn signal_daemon(&self, i: usize, sig: i32) {
        // SAFETY: kill(2) on a process this test started.
        unsafe {
            libc::kill(self.pid(i) as i32, sig);
        }
    }

    fn spawn_daemon(&mut self, i: usize, args: Vec<String>, grouped: bool) {
        // Appended to: the logs of every run of the node, restarts included.
        let log = |ext: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join(format!("n{i}.{ext}")))
                .unwrap()
        };
        let (out, err) = (log("out"), log("err"));
        let mut cmd = self.cmd();
        cmd.args(["node", "run"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if grouped {
            cmd.process_group(0);
        }
        let child = cmd.spawn().unwrap();
        self.nodes[i] = Some(child);
        self.grouped[i] = grouped;
    }

    pub fn log(&self, i: usize) -> String {
        let read = |ext: &str| {
            std::fs::read_to_string(self.dir.path().join(format!("n{i}.{ext}"))).unwrap_or_default()
        };
        format!(
            "--- n{i} stdout\n{}--- n{i} stderr\n{}",
            read("out"),
            read("err")
        )
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.nodes[i].as_ref().unwrap().id()
    }

    /// Kills node `i`'s daemon (and, when it was started grouped, everything in its group).
    pub fn kill9(&mut self, i: usize) {
        if self.nodes[i].is_some() && self.grouped[i] {
            self.signal_node(i, libc::SIGKILL);
        }
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for node `i`'s process to end; its exit status.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let c = self.nodes[i].as_mut().unwrap();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                self.nodes[i] = None;
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "n{i} did not exit\n{}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `o2cb COMMAND` on node `i` until `pred` holds for its stdout; the output.
    pub fn wait_for(
        &self,
        i: usize,
        command: &[&str],
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            let out = self.o2cb(i, command);
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() && pred(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let logs: Vec<String> = (0..self.nodes.len()).map(|n| self.log(n)).collect();
        panic!(
            "o2cb {command:?} on n{i}: condition not met in {timeout:?}; last output:\n{last}\n{}",
            logs.join("\n")
        );
    }

    /// The row of node `n` in `o2cb nodes` output, split in columns.
    pub fn row(nodes: &str, n: u8) -> Vec<String> {
        nodes
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|cols| cols.first().map(String::as_str) == Some(&n.to_string()))
            .unwrap_or_default()
    }

    /// Whether, in `o2cb nodes` output, node `n` has heartbeat `hb` and connection `conn`.
    pub fn node_is(nodes: &str, n: u8, hb: &str, conn: &str) -> bool {
        let r = Self::row(nodes, n);
        r.get(3).map(String::as_str) == Some(hb) && r.get(4).map(String::as_str) == Some(conn)
    }

    /// Waits until node `i` heartbeats (its start-up is over) and sees every node in `live`
    /// live and connected (itself: self).
    pub fn wait_all_up(&self, i: usize, live: &[u8]) -> String {
        self.wait_for(i, &["status"], Duration::from_secs(30), |s| {
            s.contains("Checking O2CB heartbeat: Active\n")
        });
        self.wait_for(i, &["nodes"], Duration::from_secs(30), |out| {
            live.iter().all(|&n| {
                let conn = if usize::from(n) == i { "self" } else { "yes" };
                Self::node_is(out, n, "live", conn)
            })
        })
    }

    /// Node `n`'s slot of the region file: (node byte, generation).
    pub fn slot(&self, n: usize) -> (u8, u64) {
        let bytes = std::fs::read(&self.region).unwrap();
        // Header block, then one 512-byte slot per node (docs/o2hb.md §1).
        let b = &bytes[512 * (n + 1)..512 * (n + 2)];
        (b[8], u64::from_le_bytes(b[16..24].try_into().unwrap()))
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
        for c in self.nodes.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for pid in &self.detached {
            // SAFETY: kill(2) on a pid this test started.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
    }
}
