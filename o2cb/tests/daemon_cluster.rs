//! Node daemons as real processes on loopback: they come up and see each other, a node
//! killed with SIGKILL is declared dead after the dead threshold, a clean offline writes the
//! generation-0 block and peers see the node down at once, a restarted node rejoins, and
//! `o2cb online/offline/status` print what the init script prints.

mod daemon_common;
#[path = "config_common/loop_device.rs"]
mod loop_device;

use daemon_common::TestCluster;
use loop_device::LoopDevice;
use std::time::{Duration, Instant};

const UP: Duration = Duration::from_secs(30);

#[test]
fn three_daemons_see_each_other_and_status_reads_as_the_init_script() {
    let c = TestCluster::three_up(101);
    let nodes = c.ok(1, &["nodes"]);
    assert_eq!(
        nodes
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        [
            "node",
            "name",
            "address",
            "heartbeat",
            "connected",
            "generation"
        ]
    );
    let row = TestCluster::row(&nodes, 2);
    assert_eq!(&row[..5], ["2", "n2", "127.0.101.3:7777", "live", "yes"]);
    // The generation node 1 shows for node 2 is the one node 2 writes in its slot.
    let (slot_node, generation) = c.slot(2);
    assert_eq!(slot_node, 2);
    assert_eq!(row[5], format!("0x{generation:016x}"));

    // Node 1 sees the live nodes once the heartbeat says so; the lines are the init
    // script's but for the daemon line and the heartbeat period, which is not the kernel's.
    let status = c.wait_for(1, &["status"], UP, |s| {
        s.contains("Nodes in O2CB cluster: 0 1 2 \n")
    });
    let socket = c.run.join("test101.n1.sock");
    let expected = format!(
        "Node daemon for cluster \"test101\": Running (pid {}, control socket {}, online)\n\
         Driver for \"ocfs2_dlmfs\": Loaded\n\
         Filesystem \"ocfs2_dlmfs\": Not mounted\n\
         Checking O2CB cluster \"test101\": Online\n\
         \x20 Heartbeat dead threshold: 7\n\
         \x20 Network idle timeout: 5000\n\
         \x20 Network keepalive delay: 1000\n\
         \x20 Network reconnect delay: 2000\n\
         \x20 Heartbeat period (ms): 200\n\
         \x20 Heartbeat mode: Global\n\
         Checking O2CB heartbeat: Active\n\
         \x20 {} {}\n\
         Nodes in O2CB cluster: 0 1 2 \n",
        c.pid(1),
        socket.display(),
        c.uuid,
        c.region.display()
    );
    assert_eq!(status, expected);

    let conns = c.ok(0, &["list-connections"]);
    let peer = |n: &str| {
        conns
            .lines()
            .find(|l| l.split_whitespace().next() == Some(n))
            .unwrap_or_else(|| panic!("no row for node {n}:\n{conns}"))
            .to_string()
    };
    assert!(peer("1").contains("connected"), "{conns}");
    assert!(peer("2").contains("connected"), "{conns}");
    assert!(
        conns
            .lines()
            .all(|l| l.split_whitespace().next() != Some("0")),
        "{conns}"
    );

    // The foreground daemon printed the init script's online lines.
    let out = std::fs::read_to_string(c.dir.path().join("n0.out")).unwrap();
    assert_eq!(
        out,
        "Registering O2CB cluster \"test101\": OK\nSetting O2CB cluster timeouts : OK\n\
         Starting global heartbeat for cluster \"test101\": OK\n"
    );
}

#[test]
fn a_killed_node_is_declared_dead_after_the_dead_threshold() {
    let (period, threshold) = (200u32, 7u32);
    let mut c = TestCluster::new(102, 3, false, period, threshold);
    for i in 0..3 {
        c.start(i);
    }
    c.wait_all_up(0, &[0, 1, 2]);
    c.wait_all_up(1, &[0, 1, 2]);
    let killed = Instant::now();
    c.kill9(2);
    for i in [0, 1] {
        c.wait_for(i, &["nodes"], UP, |s| {
            TestCluster::node_is(s, 2, "down", "no")
        });
    }
    // Heartbeat, not the dropped connection, decides death: not before the slot has stayed
    // unchanged for (threshold - 1) periods.
    let elapsed = killed.elapsed();
    let floor = Duration::from_millis(u64::from(period * (threshold - 1)));
    assert!(
        elapsed >= floor,
        "declared dead after {elapsed:?}, before {floor:?}"
    );
    // The others stay up and connected to each other.
    let nodes = c.ok(0, &["nodes"]);
    assert!(TestCluster::node_is(&nodes, 1, "live", "yes"), "{nodes}");
    let status = c.ok(1, &["status"]);
    assert!(status.contains("Nodes in O2CB cluster: 0 1 \n"), "{status}");
}

#[test]
fn clean_offline_writes_generation_zero_peers_see_it_at_once_and_restart_rejoins() {
    // A long dead time (40 x 200 ms = 8 s) so that "at once" is clearly not the threshold.
    let mut c = TestCluster::new(103, 3, false, 200, 40);
    for i in 0..3 {
        c.start(i);
    }
    c.wait_all_up(0, &[0, 1, 2]);
    c.wait_all_up(1, &[0, 1, 2]);
    let old_generation = c.slot(1).1;
    assert_ne!(old_generation, 0);

    let t = Instant::now();
    let out = c.ok(1, &["offline"]);
    assert_eq!(
        out,
        "Stopping global heartbeat on cluster \"test103\": OK\n\
         Stopping O2CB cluster test103: Unregistering O2CB cluster \"test103\": OK\n"
    );
    assert!(
        c.wait_exit(1, Duration::from_secs(10)).success(),
        "{}",
        c.log(1)
    );
    assert_eq!(c.slot(1), (1, 0), "node 1's slot after a clean stop");
    c.wait_for(0, &["nodes"], UP, |s| {
        TestCluster::node_is(s, 1, "down", "no")
    });
    let seen = t.elapsed();
    assert!(
        seen < Duration::from_secs(4),
        "node 0 saw node 1 down after {seen:?}"
    );
    let status = c.ok(1, &["status"]);
    assert_eq!(
        status,
        "Node daemon for cluster \"test103\": Not running\nChecking O2CB cluster \"test103\": Offline\n"
    );
    // A second offline has nothing to do and says nothing, as the init script.
    assert_eq!(c.ok(1, &["offline"]), "");

    c.start(1);
    for i in [0, 2] {
        c.wait_for(i, &["nodes"], UP, |s| {
            TestCluster::node_is(s, 1, "live", "yes")
        });
    }
    let new_generation = c.slot(1).1;
    assert_ne!(new_generation, 0);
    assert_ne!(new_generation, old_generation);
    let row = TestCluster::row(&c.ok(2, &["nodes"]), 1);
    assert_eq!(row[5], format!("0x{new_generation:016x}"));
}

#[test]
fn online_runs_the_node_in_the_background_and_offline_stops_it() {
    let mut c = TestCluster::new(104, 2, false, 200, 7);
    let online = |i: usize| {
        c.cmd()
            .arg("online")
            .args(c.daemon_args(i))
            .output()
            .unwrap()
    };
    // ocfs2-tools' cluster-status: "offline" alone while no cluster is active.
    fn cluster_status(c: &TestCluster, args: &[&str]) -> (Option<i32>, String) {
        let out = c.cmd().arg("cluster-status").args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
    assert_eq!(cluster_status(&c, &[]), (Some(1), "offline\n".to_string()));
    assert_eq!(
        cluster_status(&c, &["test104"]),
        (Some(1), "Cluster 'test104' is offline\n".to_string())
    );
    let out = online(0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        cluster_status(&c, &[]),
        (Some(0), "Cluster 'test104' is online\n".to_string())
    );
    assert_eq!(
        cluster_status(&c, &["other"]),
        (Some(1), "Cluster 'other' is offline\n".to_string())
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Registering O2CB cluster \"test104\": OK\nSetting O2CB cluster timeouts : OK\n\
         Starting global heartbeat for cluster \"test104\": OK\n"
    );
    let again = online(0);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "Cluster test104 already online\n"
    );
    assert!(online(1).status.success());
    let pid_of = |s: &str| -> i32 {
        s.split("(pid ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|p| p.parse().ok())
            .unwrap()
    };
    for i in 0..2 {
        let pid = pid_of(&c.ok(i, &["status"]));
        c.detached.push(pid);
    }
    c.wait_all_up(0, &[0, 1]);
    // The daemon logs next to its socket.
    assert!(c.run.join("test104.n0.log").exists());

    for i in 0..2 {
        let out = c.ok(i, &["offline"]);
        assert!(
            out.ends_with("Unregistering O2CB cluster \"test104\": OK\n"),
            "{out}"
        );
        let status = c.ok(i, &["status"]);
        assert!(status.ends_with("Offline\n"), "{status}");
    }
    assert_eq!(c.slot(0), (0, 0));
    assert_eq!(c.slot(1), (1, 0));
    assert_eq!(cluster_status(&c, &[]), (Some(1), "offline\n".to_string()));
    // Nothing left behind in the runtime directory but the logs.
    let mut left: Vec<String> = std::fs::read_dir(&c.run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["test104.n0.log", "test104.n1.log"]);
}

#[test]
fn local_mode_waits_for_heartbeat_start_and_stops_on_heartbeat_stop() {
    let mut c = TestCluster::new(105, 2, true, 200, 7);
    c.start(0);
    c.start(1);
    let status = c.wait_for(0, &["status"], UP, |s| s.contains("Online"));
    assert!(status.contains("  Heartbeat mode: Local\n"), "{status}");
    assert!(
        status.ends_with("Checking O2CB heartbeat: Not active\n"),
        "{status}"
    );
    let region = c.region.display().to_string();
    for i in 0..2 {
        let out = c.ok(i, &["heartbeat", "start", &region]);
        assert!(out.starts_with("heartbeat started on region "), "{out}");
    }
    c.wait_all_up(0, &[0, 1]);
    let status = c.ok(0, &["status"]);
    // Local mode: the init script lists neither regions nor live nodes.
    assert!(
        status.ends_with("Checking O2CB heartbeat: Active\n"),
        "{status}"
    );
    // A region starts once per node.
    let twice = c.o2cb(0, &["heartbeat", "start", &region]);
    assert!(!twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already active"));

    c.ok(1, &["heartbeat", "stop", &region]);
    assert_eq!(c.slot(1), (1, 0));
    c.wait_for(0, &["nodes"], UP, |s| {
        TestCluster::node_is(s, 1, "down", "no")
    });
    let status = c.ok(1, &["status"]);
    assert!(
        status.ends_with("Checking O2CB heartbeat: Not active\n"),
        "{status}"
    );
}

#[test]
fn sigterm_is_a_clean_stop() {
    let mut c = TestCluster::new(106, 2, false, 200, 7);
    c.start(0);
    c.wait_all_up(0, &[0]);
    assert_ne!(c.slot(0).1, 0);
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(c.pid(0) as i32, libc::SIGTERM);
    }
    let status = c.wait_exit(0, Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", c.log(0));
    assert_eq!(c.slot(0), (0, 0));
    assert!(!c.run.join("test106.n0.sock").exists());
}

#[test]
fn the_control_socket_answers_bad_requests_with_errors_and_keeps_serving() {
    use std::io::{BufRead, BufReader, Write};
    let mut c = TestCluster::new(107, 2, false, 200, 7);
    c.start(0);
    c.wait_all_up(0, &[0]);
    let socket = c.run.join("test107.n0.sock");
    let stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let mut answer = |request: &[u8]| {
        w.write_all(request).unwrap();
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            assert!(reader.read_line(&mut l).unwrap() > 0, "connection closed");
            if l == ".\n" {
                return lines;
            }
            lines.push(l);
        }
    };
    let r = answer(b"O2CB/2 status\n");
    assert!(r[0].starts_with("O2CB/1 err protocol%20O2CB/2"), "{r:?}");
    let r = answer(b"hello\n");
    assert!(r[0].starts_with("O2CB/1 err "), "{r:?}");
    let r = answer(b"O2CB/1 frobnicate x\n");
    assert!(r[0].starts_with("O2CB/1 err unknown%20request"), "{r:?}");
    let r = answer(b"O2CB/1 st%zz\n");
    assert!(r[0].starts_with("O2CB/1 err bad%20percent"), "{r:?}");
    // The same connection still works.
    let r = answer(b"O2CB/1 ping\n");
    assert_eq!(r[0], "O2CB/1 ok\n");
    assert!(r.contains(&"cluster test107\n".to_string()), "{r:?}");
    // A line longer than the limit ends the connection with an error; the daemon goes on.
    let mut long = b"O2CB/1 ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 70_000));
    long.push(b'\n');
    let r = answer(&long);
    assert!(
        r[0].starts_with("O2CB/1 err request%20line%20too%20long"),
        "{r:?}"
    );
    assert!(c.ok(0, &["status"]).contains("Online"));
}

#[test]
fn the_control_socket_serves_during_start_up_and_offline_aborts_it() {
    // The kernel's 2000 ms period: global heartbeat takes several seconds to be steady.
    let mut c = TestCluster::new(108, 2, false, 2000, 7);
    c.start(0);
    let status = c.wait_for(0, &["status"], UP, |s| s.contains("Online"));
    assert!(
        status.ends_with("Checking O2CB heartbeat: Not active\n"),
        "{status}"
    );
    let t = Instant::now();
    let out = c.ok(0, &["offline"]);
    assert!(
        out.ends_with("Unregistering O2CB cluster \"test108\": OK\n"),
        "{out}"
    );
    let st = c.wait_exit(0, Duration::from_secs(10));
    assert!(st.success(), "{st:?}\n{}", c.log(0));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(!c.run.join("test108.n0.sock").exists());
    // It never said it started.
    let said = std::fs::read_to_string(c.dir.path().join("n0.out")).unwrap();
    assert!(!said.contains("Starting global heartbeat"), "{said}");
}

#[test]
fn a_global_region_on_a_block_device_is_found_by_its_uuid() {
    if !std::path::Path::new("/dev/loop-control").exists() {
        eprintln!("no loop devices on this machine: test not run");
        return;
    }
    let mut c = TestCluster::new(109, 2, false, 200, 7);
    let dev = LoopDevice::attach(&c.region).unwrap_or_else(|e| panic!("{e}"));
    // No --region-path: the daemon looks at the block devices.
    let mut args = c.node_args(0);
    args.extend([
        "--heartbeat-period-ms".to_string(),
        "200".to_string(),
        "--no-dlmfs".to_string(),
    ]);
    c.start_args(0, args);
    let status = c.wait_for(0, &["status"], UP, |s| {
        s.contains("Checking O2CB heartbeat: Active\n")
    });
    assert!(
        status.contains(&format!("\n  {} {}\n", c.uuid, dev.dev())),
        "{status}"
    );
    c.ok(0, &["offline"]);
    c.wait_exit(0, Duration::from_secs(10));
    assert_eq!(c.slot(0), (0, 0));
}
