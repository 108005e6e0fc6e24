//! `o2cb heartbeat run` as separate processes on one region file (period 100 ms): up, kill -9,
//! clean stop, restart with a new generation, a corrupted slot, a second writer in a slot, and
//! the bytes on disk read back by a decoder written here from the project's docs alone.

mod daemon_common;

use daemon_common::{format_region, BIN};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `o2cb heartbeat run`, killed on drop; its stdout and stderr lines arrive on `lines`.
struct HbProc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    /// Lines before this index were consumed by an earlier `wait_for`.
    cursor: usize,
}

impl HbProc {
    fn spawn(region: &Path, node: u8, dead_threshold: u32) -> HbProc {
        let (node, threshold) = (node.to_string(), dead_threshold.to_string());
        let args = [
            "--node",
            &node,
            "--period-ms",
            "100",
            "--dead-threshold",
            &threshold,
        ];
        Self::spawn_args(&["heartbeat", "run"], region, &args)
    }

    /// `o2cb <pre> REGION <post>` with both output streams captured.
    fn spawn_args(pre: &[&str], region: &Path, post: &[&str]) -> HbProc {
        let mut child = Command::new(BIN)
            .args(pre)
            .arg(region)
            .args(post)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn o2cb");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        HbProc {
            child,
            lines,
            seen: Vec::new(),
            cursor: 0,
        }
    }

    /// Waits for a line containing `pat`, after the line the previous call matched; returns it
    /// and when it arrived.
    fn wait_for(&mut self, pat: &str, timeout: Duration) -> (String, Instant) {
        if let Some(i) = self.seen[self.cursor..]
            .iter()
            .position(|l| l.contains(pat))
        {
            self.cursor += i + 1;
            return (self.seen[self.cursor - 1].clone(), Instant::now());
        }
        self.cursor = self.seen.len();
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    self.cursor = self.seen.len();
                    if l.contains(pat) {
                        return (l, Instant::now());
                    }
                }
                Err(_) => panic!(
                    "no line containing {pat:?} within {timeout:?}; got:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits until every pattern has been seen (in any order, all after the cursor); returns
    /// the matching lines in the order of `pats`.
    fn wait_all(&mut self, pats: &[&str], timeout: Duration) -> Vec<String> {
        let start = self.cursor;
        let deadline = Instant::now() + timeout;
        loop {
            self.drain();
            let found: Vec<Option<String>> = pats
                .iter()
                .map(|p| self.seen[start..].iter().find(|l| l.contains(p)).cloned())
                .collect();
            if found.iter().all(Option::is_some) {
                self.cursor = self.seen.len();
                return found.into_iter().flatten().collect();
            }
            assert!(
                Instant::now() < deadline,
                "not all of {pats:?} within {timeout:?}; got:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }

    /// Takes every line of a process that has exited: its readers may still hold the last
    /// lines when it is reaped, so wait for both streams to end.
    fn drain_to_end(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the output streams did not end"),
            }
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn sigterm(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.child.wait().expect("wait")
    }
}

impl Drop for HbProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Nodes 0 and 1 heartbeating, with `dead_threshold`, in a fresh 4-slot region in `dir`.
fn two_nodes(dir: &Path, dead_threshold: u32) -> (PathBuf, HbProc, HbProc) {
    let (region, _) = format_region(dir, 4);
    let a = HbProc::spawn(&region, 0, dead_threshold);
    let b = HbProc::spawn(&region, 1, dead_threshold);
    (region, a, b)
}

fn generation_of(line: &str) -> String {
    line.split("generation ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_string()
}

/// The heartbeat block as docs/o2hb.md §1–2 describes it, decoded without the o2hb crate.
mod spec_decoder {
    pub struct Block {
        pub seq: u64,
        pub node: u8,
        pub cksum: u32,
        pub generation: u64,
        pub dead_ms: u32,
        pub crc_ok: bool,
    }

    /// Reflected CRC-32, polynomial 0xEDB88320, register starting at 0, no final inversion.
    fn crc32_le(bytes: &[u8]) -> u32 {
        let mut crc = 0u32;
        for b in bytes {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    pub fn decode(block: &[u8]) -> Block {
        let u64_at = |o: usize| u64::from_le_bytes(block[o..o + 8].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(block[o..o + 4].try_into().unwrap());
        let mut zeroed = block.to_vec();
        zeroed[12..16].fill(0);
        Block {
            seq: u64_at(0),
            node: block[8],
            cksum: u32_at(12),
            generation: u64_at(16),
            dead_ms: u32_at(24),
            crc_ok: crc32_le(&zeroed) == u32_at(12),
        }
    }

    #[test]
    fn spec_vectors() {
        assert_eq!(crc32_le(b"123456789"), 0x2DFD2D88);
        assert_eq!(crc32_le(b"a"), 0x3AB551CE);
    }
}

fn slot(region: &Path, n: usize) -> Vec<u8> {
    // Region files put slot N at (1 + N) × 512 with the default block size.
    let bytes = std::fs::read(region).unwrap();
    bytes[(1 + n) * 512..(2 + n) * 512].to_vec()
}

#[test]
fn three_processes_kill_9_and_restart_with_a_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let (region, _) = format_region(dir.path(), 8);
    let mut p: Vec<HbProc> = (0..3).map(|n| HbProc::spawn(&region, n, 5)).collect();
    let t = Duration::from_secs(10);
    let mut old = String::new();
    for proc in p.iter_mut() {
        let ups = proc.wait_all(
            &[
                "node 0 up, generation",
                "node 1 up, generation",
                "node 2 up, generation",
            ],
            t,
        );
        old = ups[2].clone();
    }

    // What the processes wrote, read back from the file with the docs-only decoder.
    for n in 0..3usize {
        let b = spec_decoder::decode(&slot(&region, n));
        assert!(
            b.crc_ok,
            "slot {n} checksum 0x{:08x} does not verify",
            b.cksum
        );
        assert_eq!(b.node as usize, n);
        assert_ne!(b.generation, 0);
        assert_ne!(b.seq, 0);
        assert_eq!(b.dead_ms, 5 * 100);
        assert!(slot(&region, n)[32..].iter().all(|x| *x == 0));
    }
    assert!(
        spec_decoder::decode(&slot(&region, 5)).crc_ok,
        "an empty slot passes the CRC (all zero)"
    );

    let killed = Instant::now();
    p[2].kill9();
    // Down after 5 unchanged reads: not before ~4 periods, well within a few seconds.
    let (_, at0) = p[0].wait_for("node 2 down", t);
    let (_, at1) = p[1].wait_for("node 2 down", t);
    for at in [at0, at1] {
        let after = at - killed;
        assert!(
            after >= Duration::from_millis(300) && after < Duration::from_secs(4),
            "down after {after:?}"
        );
    }

    p[2] = HbProc::spawn(&region, 2, 5);
    p[2].wait_for("heartbeat started", t);
    // The cursor of p[0] is past its "node 2 down" line: the next "node 2 up" is the restart.
    let (new, _) = p[0].wait_for("node 2 up, generation", t);
    assert_ne!(
        generation_of(&old),
        generation_of(&new),
        "a restart brings a new generation"
    );
}

#[test]
fn sigterm_stops_cleanly_and_peers_see_it_before_the_dead_time() {
    let dir = tempfile::tempdir().unwrap();
    // A long dead time (40 × 100 ms) tells a clean stop apart from a timeout.
    let (region, mut a, mut b) = two_nodes(dir.path(), 40);
    let t = Duration::from_secs(15);
    a.wait_for("node 1 up", t);
    b.wait_for("node 0 up", t);
    let stopped = Instant::now();
    let status = b.sigterm();
    assert!(status.success(), "clean stop exits 0, got {status}");
    b.drain_to_end();
    assert!(b
        .seen
        .iter()
        .any(|l| l.contains("heartbeat stopped cleanly")));
    let blk = spec_decoder::decode(&slot(&region, 1));
    assert!(blk.crc_ok);
    assert_eq!(
        (blk.node, blk.generation),
        (1, 0),
        "a clean stop leaves generation 0 in the slot"
    );
    let (_, at) = a.wait_for("node 1 down", t);
    assert!(
        at - stopped < Duration::from_secs(2),
        "generation 0 is seen at the next read, took {:?}",
        at - stopped
    );

    // dump reads the same: node 0 live, node 1 stopped.
    let out = Command::new(BIN)
        .args(["heartbeat", "dump"])
        .arg(&region)
        .args(["--interval-ms", "300"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let row = |n: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(n))
            .unwrap_or("")
            .to_string()
    };
    assert!(
        row("0").ends_with("live") && row("0").contains("good"),
        "{text}"
    );
    assert!(row("1").ends_with("stopped"), "{text}");
    assert!(text.contains("(2 empty slots not shown)"), "{text}");
}

#[test]
fn a_corrupted_slot_of_a_live_node_is_reported_as_a_bad_crc() {
    let dir = tempfile::tempdir().unwrap();
    let (region, mut a, mut b) = two_nodes(dir.path(), 20);
    let t = Duration::from_secs(10);
    a.wait_for("node 1 up", t);
    b.kill9();
    let mut bytes = std::fs::read(&region).unwrap();
    bytes[2 * 512 + 200] ^= 0x40;
    std::fs::write(&region, &bytes).unwrap();
    let (line, _) = a.wait_for("has written a bad crc to", t);
    assert!(line.contains("Node 1 has written a bad crc to"), "{line}");
    a.wait_for("node 1 down", t);
}

#[test]
fn a_second_process_in_the_same_slot_cannot_stabilize() {
    let dir = tempfile::tempdir().unwrap();
    let (region, _) = format_region(dir.path(), 4);
    let mut a = HbProc::spawn(&region, 0, 10);
    let t = Duration::from_secs(10);
    a.wait_for("heartbeat started", t);
    // The twin beats three times slower, so between two of its reads the first instance has
    // always rewritten the slot: it can never see its own block back, deterministically.
    let mut twin = HbProc::spawn_args(
        &["heartbeat", "run"],
        &region,
        &[
            "--node",
            "0",
            "--period-ms",
            "300",
            "--dead-threshold",
            "10",
        ],
    );
    let (line, _) = a.wait_for("Heartbeat generation mismatch on device", t);
    assert!(line.contains("expected(0:0x"), "{line}");
    let (line, _) = twin.wait_for("Unable to stabilize heartbeat on region", t);
    assert!(line.contains(&region.display().to_string()), "{line}");
    let status = twin.child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "a start that cannot stabilize fails"
    );
    twin.wait_for("heartbeat start aborted", t);
    // The first instance keeps heartbeating (no fence, still running).
    std::thread::sleep(Duration::from_millis(500));
    assert!(a.child.try_wait().unwrap().is_none());
}

#[test]
fn sigterm_while_starting_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (region, _) = format_region(dir.path(), 4);
    // With the kernel's 2 s period, steady state is 8 s away.
    let mut a = HbProc::spawn_args(&["heartbeat", "run"], &region, &["--node", "2"]);
    std::thread::sleep(Duration::from_millis(700));
    let t = Instant::now();
    let status = a.sigterm();
    assert!(status.success(), "{status}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    let blk = spec_decoder::decode(&slot(&region, 2));
    assert!(blk.crc_ok);
    assert_eq!(
        (blk.node, blk.generation, blk.dead_ms),
        (2, 0, 62000),
        "kernel defaults, clean stop"
    );
}

#[test]
fn dump_watch_follows_a_node_coming_and_dying() {
    let dir = tempfile::tempdir().unwrap();
    let (region, _) = format_region(dir.path(), 4);
    let mut watch = HbProc::spawn_args(
        &["heartbeat", "dump"],
        &region,
        &["--watch", "--interval-ms", "200"],
    );
    let t = Duration::from_secs(10);
    watch.wait_for("(4 empty slots not shown)", t);
    let mut b = HbProc::spawn(&region, 3, 5);
    let (line, _) = watch.wait_for(" live", t);
    assert!(line.trim_start().starts_with("3     3"), "{line}");
    b.kill9();
    let (line, _) = watch.wait_for(" dead", t);
    assert!(
        line.trim_start().starts_with("3     3") && line.contains("good"),
        "{line}"
    );
}

#[test]
fn with_a_cluster_only_its_nodes_count() {
    let dir = tempfile::tempdir().unwrap();
    let (region, _) = format_region(dir.path(), 8);
    let conf = dir.path().join("cluster.conf");
    let mut text = String::new();
    for (n, name) in [(0, "alpha"), (1, "beta")] {
        text.push_str(&format!(
            "node:\n\tip_port = 7777\n\tip_address = 127.0.0.{}\n\tnumber = {n}\n\tname = {name}\n\tcluster = hbtest\n\n",
            n + 1
        ));
    }
    text.push_str("cluster:\n\tnode_count = 2\n\tname = hbtest\n\n");
    std::fs::write(&conf, text).unwrap();
    let cfg = format!("--config-file={}", conf.display());
    let member = |node: &str| {
        let post = [
            "--node",
            node,
            "--period-ms",
            "100",
            "--dead-threshold",
            "5",
            "--cluster",
            "hbtest",
        ];
        HbProc::spawn_args(&[cfg.as_str(), "heartbeat", "run"], &region, &post)
    };
    let mut a = member("0");
    let mut b = member("1");
    // Node 3 heartbeats on the same region but is not in cluster.conf.
    let mut stranger = HbProc::spawn(&region, 3, 5);
    let t = Duration::from_secs(10);
    stranger.wait_all(
        &[
            "node 0 up, generation",
            "node 1 up, generation",
            "node 3 up, generation",
        ],
        t,
    );
    a.wait_all(&["node 0 up, generation", "node 1 up, generation"], t);
    b.wait_for("node 0 up, generation", t);
    std::thread::sleep(Duration::from_millis(600));
    a.drain();
    b.drain();
    for p in [&a, &b] {
        assert!(
            !p.seen.iter().any(|l| l.contains("node 3 up")),
            "an unconfigured node came up:\n{}",
            p.seen.join("\n")
        );
    }

    // A node that is not in the cluster is refused.
    let out = Command::new(BIN)
        .args([cfg.as_str(), "heartbeat", "run"])
        .arg(&region)
        .args(["--node", "5", "--cluster", "hbtest"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("node 5 is not a node of cluster hbtest"));
}

#[test]
fn global_mode_over_two_region_files() {
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db).unwrap();
    let ((r1, _), (r2, _)) = (format_region(&da, 4), format_region(&db, 4));
    let run = |node: &str| {
        let post = [
            r2.to_str().unwrap(),
            "--node",
            node,
            "--period-ms",
            "100",
            "--dead-threshold",
            "5",
            "--mode",
            "global",
        ];
        HbProc::spawn_args(&["heartbeat", "run"], &r1, &post)
    };
    let mut a = run("0");
    let mut b = run("1");
    let t = Duration::from_secs(15);
    // The kernel's global-mode messages, once per region.
    a.wait_all(
        &[
            "o2hb: Heartbeat started on region",
            "is now a quorum device",
            "node 1 up, generation",
        ],
        t,
    );
    b.wait_for("node 0 up, generation", t);
    // Let the second region finish starting too.
    std::thread::sleep(Duration::from_millis(1500));
    a.drain();
    let started = a
        .seen
        .iter()
        .filter(|l| l.contains("o2hb: Heartbeat started on region"))
        .count();
    assert_eq!(started, 2, "{}", a.seen.join("\n"));
    // Node 1 is up once, not once per region.
    let ups = a.seen.iter().filter(|l| l.starts_with("node 1 up")).count();
    assert_eq!(ups, 1, "{}", a.seen.join("\n"));
    assert!(b.sigterm().success());
    // A clean stop in global mode says so per region, as the kernel does.
    b.wait_for("o2hb: Heartbeat stopped on region", t);
    b.wait_for("o2hb: Heartbeat stopped on region", t);
    a.wait_for("node 1 down, generation", t);
}
