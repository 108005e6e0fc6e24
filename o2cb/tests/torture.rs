//! The promise of a lock manager, tried on real processes: three node daemons with their dlmfs
//! mounts, and on each node two `o2cb lock` loops and one dlmfs loop all doing a
//! read-sleep-write of one counter file under the EX lock `counter` of domain `dom`, while
//! nodes are killed (SIGKILL of the node's whole process group: its "machine"), paused past
//! the heartbeat's dead time (the node must fence itself when it runs again, before any of
//! its processes does), paused briefly (nothing may happen), and restarted. Judged as a user
//! would: no value written twice and none going back (the history of writes only grows),
//! at most as many increments as attempts and at least as many as acknowledged ones, every
//! client getting the lock again once the faults stop, and no daemon panic.
//!
//! A node that fences itself on its own is reset and started again, as a cluster manager
//! would. `o2cb lock` clients are not in their node's group: when their daemon is killed or paused,
//! the lease of `o2cb lock` must stop their commands before another node can get the lock.
//! The fault schedule comes from a seed (printed; `TORTURE_SEED=N` replays it) and lasts
//! `TORTURE_SECS` seconds (default 30).

mod daemon_common;

use daemon_common::{dlmfs_args, TestCluster, Unmount, BIN};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One write under the lock: read the counter, pause so that an unprotected writer would
/// interleave, write the next value atomically (a command killed mid-way leaves the old or
/// the new value, never a torn file) and append it to the history with the writer's name.
const STEP: &str = r#"v=$(cat "$D/counter") || exit 3
case $v in ''|*[!0-9]*) echo "$1 read a bad counter '$v'" >> "$D/errors"; exit 3;; esac
sleep 0.02
n=$((v + 1))
echo $n > "$D/counter.$$" && mv "$D/counter.$$" "$D/counter" && echo "$n $1" >> "$D/history"
"#;

/// `o2cb lock` in a loop: $1 node, $2 client name.
const LOCK_LOOP: &str = r#"while [ ! -e "$D/stop" ]; do
  echo >> "$D/attempts"
  "$BIN" --config-file "$CONF" lock dom counter --node "n$1" --sysconfig "$SYSCONFIG" -- sh "$D/step.sh" "$2" 2>> "$D/$2.err"
  case $? in
    0) echo >> "$D/acked" ;;
    *) sleep 0.05 ;;
  esac
done
"#;

/// dlmfs in a loop: $1 mount, $2 client name. Opening the lock file read-write takes EX;
/// closing it (the end of the block) releases it. Nothing is done before the mount is there
/// (a mkdir would make a plain directory under it, and its files hold no lock).
const FS_LOOP: &str = r#"while [ ! -e "$D/stop" ]; do
  if ! mountpoint -q "$1"; then sleep 0.05; continue; fi
  mkdir "$1/dom" 2> /dev/null
  echo >> "$D/attempts"
  if { sh "$D/step.sh" "$2"; } 2>> "$D/$2.err" 3<> "$1/dom/counter"; then
    echo >> "$D/acked"
  else
    sleep 0.05
  fi
done
"#;

const NODES: usize = 3;
const LOCK_CLIENTS_PER_NODE: usize = 2;

/// A small deterministic generator for the fault schedule (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

struct Torture {
    c: TestCluster,
    mounts: Vec<PathBuf>,
    /// The `o2cb lock` loops (process group leaders) and the dlmfs loop of each node.
    lock_loops: Vec<Child>,
    fs_loops: Vec<Option<Child>>,
    log: Vec<String>,
}

impl Torture {
    fn dir(&self) -> &Path {
        self.c.dir.path()
    }

    fn shell(&self, script: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("sh")
            .args(args)
            .env("D", self.dir())
            .env("BIN", BIN)
            .env("CONF", &self.c.conf)
            .env("SYSCONFIG", &self.c.sysconfig)
            .env("O2CB_RUNTIME_DIR", &self.c.run)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    /// Starts node `n` (its daemon leading its group) and its dlmfs loop inside that group.
    fn start_node(&mut self, n: usize) {
        let args = dlmfs_args(&self.c, n, &self.mounts[n]);
        self.c.start_grouped(n, args);
        let group = self.c.pid(n) as i32;
        let mount = self.mounts[n].display().to_string();
        let child = self
            .shell(FS_LOOP, &[&mount, &format!("F{n}")])
            .process_group(group)
            .spawn()
            .unwrap();
        if let Some(mut old) = self.fs_loops[n].replace(child) {
            let _ = old.wait();
        }
    }

    fn note(&mut self, what: String) {
        eprintln!("torture: {what}");
        self.log.push(what);
    }

    /// Kills node `n` and everything on it, waits a moment, starts it again.
    fn kill_and_restart(&mut self, n: usize, down: Duration) {
        self.note(format!("kill -9 n{n}, restart after {down:?}"));
        self.c.kill9(n);
        if let Some(mut fs) = self.fs_loops[n].take() {
            let _ = fs.wait();
        }
        std::thread::sleep(down);
        self.start_node(n);
    }

    /// Stops node `n` for `pause` (longer than the dead time): the others declare it dead
    /// and recover its locks. Its daemon alone runs again first, as a kernel would before its
    /// processes: it must fence itself; then the machine is reset and started again.
    fn long_pause(&mut self, n: usize, pause: Duration) {
        self.note(format!("pause n{n} for {pause:?}"));
        self.c.signal_node(n, libc::SIGSTOP);
        std::thread::sleep(pause);
        self.c.signal_daemon(n, libc::SIGCONT);
        let status = self.c.wait_exit(n, Duration::from_secs(10));
        assert_eq!(
            status.code(),
            Some(86),
            "n{n}, paused past its dead time, did not fence itself when it ran again: {status:?}\n{}",
            self.c.log(n)
        );
        self.note(format!("n{n} fenced itself on resuming"));
        // The rest of the machine never runs again.
        self.reset_and_start(n);
    }

    /// Node `n`'s daemon has exited: kills what is left of its machine (its group, still
    /// stopped or not) and starts the node again.
    fn reset_and_start(&mut self, n: usize) {
        self.kill_group_of_dead(n);
        if let Some(mut fs) = self.fs_loops[n].take() {
            let _ = fs.wait();
        }
        self.start_node(n);
    }

    /// A node may fence itself on its own (the cluster's rules, a kernel node's panic); the
    /// harness then does what a cluster manager does: resets the machine and starts it again.
    /// Any other end of a daemon is a failure.
    fn restart_fenced(&mut self) {
        for n in 0..NODES {
            let Some(child) = self.c.nodes[n].as_mut() else {
                continue;
            };
            let Ok(Some(st)) = child.try_wait() else {
                continue;
            };
            assert_eq!(
                st.code(),
                Some(86),
                "n{n} ended without fencing: {st:?}\n{}",
                self.c.log(n)
            );
            self.c.nodes[n] = None;
            self.note(format!(
                "n{n} fenced itself on its own; reset and started again"
            ));
            self.reset_and_start(n);
        }
    }

    /// Kills what is left of node `n`'s group once its daemon has exited.
    fn kill_group_of_dead(&self, n: usize) {
        if let Some(fs) = &self.fs_loops[n] {
            // SAFETY: kill(2) on the process group of a node this test started; its leader
            // (the daemon) has exited but the group lives on with its members.
            unsafe {
                libc::killpg(getpgid(fs.id() as i32), libc::SIGKILL);
            }
        }
    }

    /// Stops node `n` for less than the dead time: nothing is to happen.
    fn short_pause(&mut self, n: usize, pause: Duration) {
        self.note(format!("short pause n{n} for {pause:?}"));
        self.c.signal_node(n, libc::SIGSTOP);
        std::thread::sleep(pause);
        self.c.signal_node(n, libc::SIGCONT);
    }

    /// Every client name's line count in the history from line `from` on.
    fn writers_since(&self, from: usize) -> Vec<String> {
        let history = std::fs::read_to_string(self.dir().join("history")).unwrap_or_default();
        history
            .lines()
            .skip(from)
            .filter_map(|l| l.split(' ').nth(1).map(str::to_string))
            .collect()
    }

    fn lines(&self, file: &str) -> usize {
        std::fs::read_to_string(self.dir().join(file))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn logs(&self) -> String {
        let mut s = self.log.join("\n");
        for n in 0..NODES {
            s.push('\n');
            s.push_str(&self.c.log(n));
        }
        s
    }
}

fn getpgid(pid: i32) -> i32 {
    // SAFETY: getpgid(2) has no preconditions.
    unsafe { libc::getpgid(pid) }
}

impl Drop for Torture {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir().join("stop"), "");
        for c in &mut self.lock_loops {
            // SAFETY: kill(2) on a process group this test made.
            unsafe {
                libc::kill(-(c.id() as i32), libc::SIGKILL);
            }
            let _ = c.wait();
        }
    }
}

fn client_names() -> Vec<String> {
    let mut names = Vec::new();
    for n in 0..NODES {
        for k in 0..LOCK_CLIENTS_PER_NODE {
            names.push(format!("L{n}{k}"));
        }
        names.push(format!("F{n}"));
    }
    names
}

#[test]
fn kills_pauses_and_restarts_never_let_two_nodes_write_under_one_ex_lock() {
    let seed = std::env::var("TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let secs: u64 = std::env::var("TORTURE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    eprintln!("torture: seed {seed} (TORTURE_SEED={seed} replays this schedule), {secs} s");
    let mut rng = Rng(seed);

    // Period 100 ms, dead after 7 silent reads: a node is declared dead about 0.7 s after
    // its last write, and the lease of `o2cb lock` is 0.3 s.
    let c = TestCluster::new(131, NODES as u8, false, 100, 7);
    let mounts: Vec<_> = (0..NODES)
        .map(|i| c.dir.path().join(format!("dlm{i}")))
        .collect();
    let _unmount = Unmount(mounts.clone());
    let mut t = Torture {
        c,
        mounts,
        lock_loops: Vec::new(),
        fs_loops: (0..NODES).map(|_| None).collect(),
        log: Vec::new(),
    };
    std::fs::write(t.dir().join("counter"), "0\n").unwrap();
    std::fs::write(t.dir().join("step.sh"), STEP).unwrap();
    for n in 0..NODES {
        t.start_node(n);
    }
    for n in 0..NODES {
        t.c.wait_all_up(n, &[0, 1, 2]);
    }
    for n in 0..NODES {
        for k in 0..LOCK_CLIENTS_PER_NODE {
            let child = t
                .shell(LOCK_LOOP, &[&n.to_string(), &format!("L{n}{k}")])
                .process_group(0)
                .spawn()
                .unwrap();
            t.lock_loops.push(child);
        }
    }

    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        std::thread::sleep(rng.millis(1000, 3000));
        let n = rng.below(NODES as u64) as usize;
        match rng.below(3) {
            0 => {
                let down = rng.millis(0, 1500);
                t.kill_and_restart(n, down);
            }
            1 => {
                let pause = rng.millis(1500, 2500);
                t.long_pause(n, pause);
            }
            _ => {
                let pause = rng.millis(50, 200);
                t.short_pause(n, pause);
            }
        }
        t.restart_fenced();
    }

    // The faults stop: every node comes back and every client gets the lock again.
    t.note("faults over".into());
    // Let the last fault play out (a node may still fence because of it), then all come up.
    std::thread::sleep(Duration::from_secs(3));
    t.restart_fenced();
    for n in 0..NODES {
        t.c.wait_all_up(n, &[0, 1, 2]);
    }
    let healed = t.lines("history");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let since = t.writers_since(healed);
        let missing: Vec<_> = client_names()
            .into_iter()
            .filter(|c| !since.contains(c))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the faults, clients {missing:?} never got the lock again in 60 s\n{}",
            t.logs()
        );
        t.restart_fenced();
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(t.dir().join("stop"), "").unwrap();
    let stopped = Instant::now() + Duration::from_secs(30);
    for c in t
        .lock_loops
        .iter_mut()
        .chain(t.fs_loops.iter_mut().flatten())
    {
        while c.try_wait().unwrap().is_none() {
            assert!(Instant::now() < stopped, "a client loop did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // The judgement.
    let dir = t.dir().to_path_buf();
    let errors = std::fs::read_to_string(dir.join("errors")).unwrap_or_default();
    assert!(errors.is_empty(), "torn reads: {errors}\n{}", t.logs());
    let history = std::fs::read_to_string(dir.join("history")).unwrap();
    let mut last = 0u64;
    for (i, line) in history.lines().enumerate() {
        let v: u64 = line
            .split(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("history line {i} unreadable: {line:?}"));
        assert!(
            v > last,
            "seed {seed}: value {v} written after {last} (line {}: two writers under one EX lock)\n{history}\n{}",
            i + 1,
            t.logs()
        );
        last = v;
    }
    let counter: u64 = std::fs::read_to_string(dir.join("counter"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (acked, attempts) = (t.lines("acked") as u64, t.lines("attempts") as u64);
    eprintln!(
        "torture: counter {counter}, acknowledged {acked}, attempts {attempts}, history {}",
        history.lines().count()
    );
    assert!(
        counter >= last,
        "the counter ({counter}) is behind the history ({last})"
    );
    assert!(
        acked <= counter && counter <= attempts,
        "acknowledged {acked} ≤ counter {counter} ≤ attempts {attempts} does not hold"
    );
    assert!(acked >= 50, "only {acked} increments in the whole run");
    let logs = t.logs();
    assert!(!logs.contains("panicked"), "a daemon panicked:\n{logs}");
}
