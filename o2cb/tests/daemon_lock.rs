//! DLM locks through the node daemons, as shell scripts use them: `o2cb lock` from three
//! nodes serializes a read-modify-write, a trylock fails while another node holds the lock
//! and a waiter gets it once released, the command's exit status comes back, a killed
//! client releases its lock, and `lockdump`/`status` show the domain.

mod daemon_common;

use daemon_common::{wait_file, TestCluster, BIN};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `o2cb lock DOMAIN NAME [extra] --node n<i> ... -- command...`
fn lock_cmd(c: &TestCluster, i: usize, extra: &[&str], command: &[&str]) -> Command {
    let mut cmd = c.cmd();
    cmd.args(["lock", "dom", "res"])
        .args(extra)
        .args(c.node_args(i))
        .arg("--")
        .args(command);
    cmd
}

/// Node `i` takes the lock and holds it until the file `release` appears in the cluster's
/// directory; returns once it holds it (the file `held` appeared).
fn hold_until_release(c: &TestCluster, i: usize) -> (std::process::Child, Pids) {
    let holder = lock_cmd(
        c,
        i,
        &[],
        &[
            "sh",
            "-c",
            "touch held; while [ ! -e release ]; do sleep 0.05; done",
        ],
    )
    .current_dir(c.dir.path())
    .spawn()
    .unwrap();
    let pids = Pids(vec![holder.id() as i32]);
    wait_file(&c.dir.path().join("held"), Duration::from_secs(20));
    (holder, pids)
}

/// Kills a process this test started, directly or through a shell.
struct Pids(Vec<i32>);

impl Drop for Pids {
    fn drop(&mut self) {
        for p in &self.0 {
            // SAFETY: kill(2) on a process this test started.
            unsafe {
                libc::kill(*p, libc::SIGKILL);
            }
        }
    }
}

#[test]
fn a_shell_script_on_three_nodes_counts_under_an_ex_lock() {
    let c = TestCluster::three_up(111);
    let counter = c.dir.path().join("counter");
    std::fs::write(&counter, "0\n").unwrap();
    // Read, pause, write: without the lock, concurrent scripts lose updates.
    let script = |i: usize| {
        format!(
            "for k in 1 2 3 4; do \
               '{BIN}' --config-file '{}' lock dom counter --node n{i} --sysconfig '{}' -- \
                 sh -c 'v=$(cat \"$0\"); sleep 0.05; echo $((v+1)) > \"$0\"' '{}' || exit 1; \
             done",
            c.conf.display(),
            c.sysconfig.display(),
            counter.display()
        )
    };
    let children: Vec<_> = (0..3)
        .map(|i| {
            Command::new("sh")
                .arg("-c")
                .arg(script(i))
                .env("O2CB_RUNTIME_DIR", &c.run)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let _guard = Pids(children.iter().map(|ch| ch.id() as i32).collect());
    for ch in children {
        let out = ch.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "12\n");
}

#[test]
fn trylock_fails_while_held_elsewhere_and_a_waiter_gets_the_lock_after() {
    let c = TestCluster::three_up(112);
    let d = c.dir.path();
    let (mut holder, mut pids) = hold_until_release(&c, 0);

    // Another node's trylock: refused at once, with the exit status asked for.
    let t = Instant::now();
    let busy = lock_cmd(&c, 1, &["--trylock"], &["touch", "wrong"])
        .output()
        .unwrap();
    assert_eq!(busy.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("is held elsewhere (--trylock)"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    let busy = lock_cmd(&c, 2, &["--trylock", "-E", "75"], &["touch", "wrong"])
        .output()
        .unwrap();
    assert_eq!(busy.status.code(), Some(75));
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(!d.join("wrong").exists());
    // A shared lock is not compatible with the EX either.
    let pr = lock_cmd(&c, 1, &["--mode", "pr", "--trylock"], &["true"])
        .output()
        .unwrap();
    assert_eq!(pr.status.code(), Some(1));

    // The node holding it shows the resource and the domain.
    let dump = c.ok(0, &["lockdump", "dom"]);
    assert!(dump.lines().any(|l| l == "NAME:res"), "{dump}");
    // The domain's state as the kernel's debugfs dlm_state shows it: this node in the domain
    // map (nodes 1 and 2 may be leaving it after their trylocks) and no recovery under way.
    let state = c.ok(0, &["lockdump", "dom", "--dump", "dlm_state"]);
    assert!(state.starts_with("Domain: dom  Key: 0x"), "{state}");
    assert!(state.contains("\nDomain Map: 0 "), "{state}");
    assert!(state.contains("\nRecovery Map: \n"), "{state}");
    assert!(state.contains("  State: INACTIVE\n"), "{state}");
    let mles = c.o2cb(0, &["lockdump", "dom", "--dump", "mle_state"]);
    assert!(mles.status.success(), "{mles:?}");
    let bad = c.o2cb(0, &["lockdump", "dom", "--dump", "nonsense"]);
    assert!(!bad.status.success());
    let status = c.ok(0, &["status"]);
    assert!(
        status.ends_with("Active userdlm domains:  dom\n"),
        "{status}"
    );

    // A waiter on node 2 gets the lock only once node 0's command ends.
    let waiter = lock_cmd(&c, 2, &[], &["sh", "-c", "touch got; exit 7"])
        .spawn()
        .unwrap();
    pids.0.push(waiter.id() as i32);
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        !d.join("got").exists(),
        "granted while node 0 held the lock"
    );
    std::fs::write(d.join("release"), "").unwrap();
    let out = waiter.wait_with_output().unwrap();
    // The command's exit status is o2cb lock's.
    assert_eq!(out.status.code(), Some(7));
    assert!(d.join("got").exists());
    assert!(holder.wait().unwrap().success());
    // Released everywhere: the domain is left once nothing holds a lock in it.
    let status = c.wait_for(0, &["status"], Duration::from_secs(10), |s| {
        !s.contains("Active userdlm domains")
    });
    assert!(
        status.ends_with("Nodes in O2CB cluster: 0 1 2 \n"),
        "{status}"
    );
    let gone = c.o2cb(0, &["lockdump", "dom"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("is not joined on node 0"));
}

#[test]
fn a_killed_lock_client_releases_its_lock() {
    let c = TestCluster::three_up(113);
    let d = c.dir.path();
    let mut client = lock_cmd(&c, 0, &[], &["sh", "-c", "echo $$ > pid; exec sleep 30"])
        .spawn()
        .unwrap();
    let mut pids = Pids(vec![client.id() as i32]);
    wait_file(&d.join("pid"), Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(50));
    let sleeper: i32 = std::fs::read_to_string(d.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    pids.0.push(sleeper);
    let held = lock_cmd(&c, 1, &["--trylock"], &["true"]).output().unwrap();
    assert_eq!(held.status.code(), Some(1));
    client.kill().unwrap();
    client.wait().unwrap();
    // The daemon sees the connection end and unlocks: node 1 gets it without waiting.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = lock_cmd(&c, 1, &["--trylock"], &["true"]).output().unwrap();
        if r.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed client's lock was never released"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_lock_held_by_a_killed_node_is_recovered_and_granted_to_a_waiter() {
    let mut c = TestCluster::three_up(124);
    let mut pids = Pids(Vec::new());
    let d = c.dir.path().to_path_buf();
    // The commands run until the test ends (the file `stop`, made even if it fails).
    struct Stop(std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = std::fs::write(&self.0, "");
        }
    }
    let _stop = Stop(d.join("stop"));
    // Ends also once the test's directory is gone.
    let until_stop = format!(
        "while [ -d '{0}' ] && [ ! -e '{0}/stop' ]; do sleep 0.05; done",
        d.display()
    );
    // Node 2 holds EX (its client keeps running: only the node is killed).
    let mut holder = lock_cmd(
        &c,
        2,
        &[],
        &["sh", "-c", &format!("touch held; {until_stop}")],
    )
    .current_dir(&d)
    .spawn()
    .unwrap();
    pids.0.push(holder.id() as i32);
    wait_file(&d.join("held"), Duration::from_secs(20));
    // It keeps the lock (and node 0 in the domain) while status is read.
    let mut waiter = lock_cmd(
        &c,
        0,
        &[],
        &["sh", "-c", &format!("touch got; {until_stop}")],
    )
    .current_dir(&d)
    .spawn()
    .unwrap();
    pids.0.push(waiter.id() as i32);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!d.join("got").exists(), "node 0 got the lock node 2 holds");
    c.kill9(2);
    // Node 2 is declared dead, the domain recovered, and node 0's waiter granted.
    wait_file(&d.join("got"), Duration::from_secs(30));
    let status = c.wait_for(0, &["status"], Duration::from_secs(10), |s| {
        s.contains("Recovery of domain dom: idle,") && s.contains("completed: 1\n")
    });
    assert!(status.contains("to recover: none"), "{status}");
    std::fs::write(d.join("stop"), "").unwrap();
    assert!(waiter.wait().unwrap().success());
    // Node 2's client lost its daemon: its command was killed before anyone else could get
    // the lock, and it says so with its own exit status.
    let lost = holder.try_wait().unwrap();
    assert_eq!(
        lost.and_then(|s| s.code()),
        Some(75),
        "the holder's client did not end with 'lock lost' before node 0 got the lock"
    );
}

/// The node mastering a lock another node waits on leaves the domain once its command ends:
/// it hands the resource to the waiter's node (o2dlm migration, no recovery), the waiter
/// gets the lock, and the node that left can use the domain again at once.
#[test]
fn a_master_leaving_hands_its_lock_to_the_waiter_and_can_join_again() {
    let c = TestCluster::three_up(114);
    let d = c.dir.path();
    let first = lock_cmd(&c, 1, &[], &["sh", "-c", "touch held1; sleep 1"])
        .spawn()
        .unwrap();
    let mut pids = Pids(vec![first.id() as i32]);
    wait_file(&d.join("held1"), Duration::from_secs(20));
    let mut waiter = lock_cmd(
        &c,
        0,
        &[],
        &[
            "sh",
            "-c",
            "touch got0; while [ ! -e release0 ]; do sleep 0.05; done",
        ],
    )
    .spawn()
    .unwrap();
    pids.0.push(waiter.id() as i32);
    wait_file(&d.join("got0"), Duration::from_secs(20));
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");

    // Node 1 left cleanly, nothing recovered: node 0 now masters the lock it holds.
    let status = c.wait_for(1, &["status"], Duration::from_secs(10), |s| {
        !s.contains("Active userdlm domains")
    });
    assert!(!status.contains("Recovery of domain"), "{status}");
    let dump = c.ok(0, &["lockdump", "dom", "--dump", "locking_state"]);
    // The kernel's LRES line: version, owner, ...
    let owner = dump
        .lines()
        .skip_while(|l| *l != "NAME:res")
        .find_map(|l| l.strip_prefix("LRES:"))
        .and_then(|f| f.split(',').nth(1));
    assert_eq!(owner, Some("0"), "{dump}");
    // Node 1 joins again: busy while node 0 holds the lock, granted once it lets go.
    let busy = lock_cmd(&c, 1, &["--trylock", "-E", "75"], &["true"])
        .output()
        .unwrap();
    assert_eq!(busy.status.code(), Some(75), "{busy:?}");
    std::fs::write(d.join("release0"), "").unwrap();
    assert!(waiter.wait().unwrap().success());
    let again = lock_cmd(&c, 1, &[], &["true"]).output().unwrap();
    assert!(again.status.success(), "{again:?}");
}

/// A node killed and started again grants nothing another node holds, however early it is
/// asked: a lock asked the moment its daemon runs waits for the node to be online and then
/// for the holder, and trylocks from start-up until well after it is online are all refused.
/// (Once a restarted daemon answered lock requests before its heartbeat was steady, joined
/// the domain alone and granted an EX lock that another node held.)
#[test]
fn a_restarted_node_grants_nothing_another_node_holds() {
    let mut c = TestCluster::three_up(126);
    let d = c.dir.path().to_path_buf();
    let (mut holder, mut pids) = hold_until_release(&c, 0);
    c.kill9(2);
    c.start(2);
    // As soon as the restarted daemon answers (the killed one left its socket file behind):
    // one blocking lock, then trylocks.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.o2cb(2, &["status"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "n2 never answered
{}",
            c.log(2)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut waiter = lock_cmd(&c, 2, &[], &["touch", "waiter-got"])
        .current_dir(&d)
        .spawn()
        .unwrap();
    pids.0.push(waiter.id() as i32);
    let mut online_at = None;
    let mut refused = 0;
    while online_at.is_none_or(|t: Instant| t.elapsed() < Duration::from_secs(3)) {
        let out = lock_cmd(&c, 2, &["--trylock"], &["touch", "trylock-got"])
            .current_dir(&d)
            .output()
            .unwrap();
        assert!(
            !d.join("trylock-got").exists() && !d.join("waiter-got").exists(),
            "the restarted node granted the lock node 0 holds\n{}\n{}",
            c.log(2),
            c.log(0)
        );
        assert_ne!(out.status.code(), Some(0), "a trylock succeeded");
        refused += 1;
        if online_at.is_none()
            && c.o2cb(2, &["status"])
                .stdout
                .windows(7)
                .any(|w| w == b"online)")
        {
            online_at = Some(Instant::now());
        }
    }
    assert!(refused > 3, "only {refused} trylocks were tried");
    // Released by node 0: the waiter asked at start-up gets it.
    std::fs::write(d.join("release"), "").unwrap();
    assert!(holder.wait().unwrap().success());
    wait_file(&d.join("waiter-got"), Duration::from_secs(20));
    assert!(waiter.wait().unwrap().success());
}
