//! kill -9 of the node daemon that masters a contended lock: a waiter on another node gets
//! the lock once heartbeat declares the node dead and o2dlm recovery remasters it, and a
//! counter kept under the lock by the survivors ends exact.

mod daemon_common;

use daemon_common::{wait_file, TestCluster};
use std::time::{Duration, Instant};

#[test]
fn killing_the_master_daemon_hands_its_lock_to_a_waiter() {
    let mut c = TestCluster::three_up(131);
    let d = c.dir.path().to_path_buf();
    // Node 2 takes the lock first (so it masters it) and never lets go.
    let lock = |c: &TestCluster, i: usize, script: &str| {
        let mut cmd = c.cmd();
        cmd.args(["lock", "dom", "res"])
            .args(c.node_args(i))
            .args(["--", "sh", "-c", script]);
        cmd
    };
    let mut holder = lock(&c, 2, "touch held; exec sleep 60").spawn().unwrap();
    wait_file(&d.join("held"), Duration::from_secs(20));
    // Nodes 0 and 1 each count five times under the lock; they wait behind node 2.
    let script = "v=$(cat counter 2>/dev/null || echo 0); sleep 0.05; echo $((v+1)) > counter";
    let mut waiters = Vec::new();
    for i in 0..2 {
        for _ in 0..5 {
            waiters.push(lock(&c, i, script).spawn().unwrap());
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(!d.join("counter").exists(), "nobody got past node 2's lock");
    c.kill9(2);
    let _ = holder.kill();
    let _ = holder.wait();
    let deadline = Instant::now() + Duration::from_secs(60);
    for mut w in waiters {
        loop {
            if let Some(st) = w.try_wait().unwrap() {
                assert!(st.success(), "a waiter failed: {st}");
                break;
            }
            if Instant::now() > deadline {
                let _ = w.kill();
                panic!("a waiter never got the lock; node 0 log:\n{}", c.log(0));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let v = std::fs::read_to_string(d.join("counter")).unwrap();
    assert_eq!(v.trim(), "10");
}
