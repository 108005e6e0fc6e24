//! `o2cb demo` runs to completion with no configuration (a killed node declared dead), and
//! leaves no process or file
//! behind, also when interrupted with Ctrl-C (SIGINT).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_o2cb");

/// The pids of the daemons the demo reports starting (`nodeN: pid P, ...`).
fn daemon_pids(out: &str) -> Vec<i32> {
    out.lines()
        .filter_map(|l| l.split_once(": pid "))
        .filter_map(|(_, rest)| rest.split(',').next()?.parse().ok())
        .collect()
}

/// Kills what a failing test would leave running (the demo, its daemons).
struct Guard(Vec<i32>);

impl Drop for Guard {
    fn drop(&mut self) {
        for pid in &self.0 {
            if !gone(*pid) {
                // SAFETY: kill(2) on a process this test started (directly or via the demo).
                unsafe {
                    libc::kill(*pid, libc::SIGKILL);
                }
            }
        }
    }
}

fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => matches!(
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => true,
    }
}

fn wait_gone(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids.iter().all(|p| gone(*p)) {
        assert!(Instant::now() < deadline, "daemons {pids:?} still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_demo_runs_to_completion_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--port", "17801"])
        .env("TMPDIR", tmp.path())
        .env_remove("O2CB_RUNTIME_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pids = daemon_pids(&stdout);
    let _guard = Guard(pids.clone());
    assert_eq!(pids.len(), 3, "{stdout}");
    for want in [
        "Checking O2CB cluster \"demo\": Online\n",
        "Nodes in O2CB cluster: 0 1 2 \n",
        "node 2: a PR trylock is refused: the lock is held elsewhere\n",
        "NAME:greeting\n",
        "node 1: granted after waiting ",
        "node 0 declared node 2 dead after ",
        "   2  node2             127.0.0.3:17801        down       no         -\n",
        "node 2: EX lock \"survivor\" granted\n",
        "node 1: granted the lock node 2 held, ",
        // The status after the kill: node 1's domain recovered once, nothing left to do.
        "Recovery of domain demo: idle, dead node none, recovery master none, to recover: none, completed: 1\n",
        "Stopping O2CB cluster demo: Unregistering O2CB cluster \"demo\": OK\n",
        "node 0's heartbeat slot now holds generation 0: a clean stop\n",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    wait_gone(&pids);
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn ctrl_c_stops_every_daemon_and_removes_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["demo", "--port", "17802"])
        .env("TMPDIR", tmp.path())
        .env_remove("O2CB_RUNTIME_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Guard(vec![i32::try_from(child.id()).unwrap()]);
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    // Interrupt once the three daemons are started, while the demo waits for them.
    while daemon_pids(&seen).len() < 3 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("the demo ended early:\n{seen}");
        }
        seen.push_str(&line);
    }
    guard.0.extend(daemon_pids(&seen));
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(pid, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr);
    assert!(
        !status.success(),
        "the demo finished despite Ctrl-C:\n{seen}"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    wait_gone(&daemon_pids(&seen));
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
