//! The cluster in containers of `containers/`, checked across containers: the image built
//! FROM scratch by `containers/build-image.sh` from this build's o2cb, the 3-node compose
//! cluster on its own network with the heartbeat region on a shared volume, then what a user
//! of containers meets:
//!
//! - every node sees the other two heartbeating and connected, `o2cb status` says so and the
//!   logs show the nodes joining;
//! - `docker kill` of a node: the others declare it dead after the dead threshold, not before;
//! - the killed container started again rejoins with a new heartbeat generation;
//! - `docker network disconnect` of a node: its heartbeat still reaches the shared volume, so
//!   the others keep seeing it alive while it cannot reach them; o2net quorum makes it fence
//!   itself (its container exits with the fence status) while the other two keep serving;
//! - reconnected and started again, it rejoins.
//!
//! Needs a Docker engine with Compose (`docker compose` or `docker-compose`); without one the
//! tests fail, they do not skip. Everything they make (containers, network, volume, image) is
//! removed at the end, also when they fail, and leftovers of a run that could not clean up
//! (killed) are removed at the start. Runs are serialized by a lock file: the compose
//! network's subnet is fixed by `containers/cluster.conf`.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Compose project names of these tests start with this, then the pid and the test's name.
const PROJECT_PREFIX: &str = "o2cbctest";
/// Image tags of these tests: `o2cb-rs:ctest-PIDNAME`.
const IMAGE_REPO: &str = "o2cb-rs";
const IMAGE_TAG_PREFIX: &str = "ctest-";
/// The nodes as the compose file names its services.
const NODES: [&str; 3] = ["node0", "node1", "node2"];
/// `--heartbeat-period-ms` of the compose file's nodes.
const PERIOD_MS: u64 = 200;
/// Serializes runs on this machine (see the module documentation).
const LOCK_FILE: &str = "/tmp/o2cb-rs-containers-test.lock";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn containers_dir() -> PathBuf {
    repo().join("containers")
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a command to its end; panics only if it cannot be started.
fn output(cmd: &mut Command) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run `{}`: {e}", describe(cmd)),
    }
}

/// Runs a command that must succeed; its standard output.
fn check(cmd: &mut Command) -> String {
    let o = output(cmd);
    assert!(
        o.status.success(),
        "`{}` failed ({}):\n{}{}",
        describe(cmd),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn docker(args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.args(args);
    c
}

/// How Compose is run here: `docker compose` (v2) if the engine's CLI has it, else
/// Debian's `docker-compose` (v1).
fn compose_program() -> Vec<String> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if v2 {
        return vec!["docker".into(), "compose".into()];
    }
    let v1 = Command::new("docker-compose")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        v1,
        "neither `docker compose` nor `docker-compose` works: this test needs Docker Compose"
    );
    vec!["docker-compose".into()]
}

/// Holds the lock file for the whole run.
fn exclusive() -> File {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .unwrap_or_else(|e| panic!("{LOCK_FILE}: {e}"));
    // SAFETY: flock on a descriptor we own; blocks until the other run ends.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(
        r,
        0,
        "flock {LOCK_FILE}: {}",
        std::io::Error::last_os_error()
    );
    f
}

fn compose(program: &[String], project: &str) -> Command {
    let (first, rest) = program.split_first().expect("a compose program");
    let mut c = Command::new(first);
    c.args(rest)
        .arg("--project-name")
        .arg(project)
        .arg("--file")
        .arg(containers_dir().join("docker-compose.yml"));
    c
}

/// Removes what a run that could not clean up left: every compose project of this test
/// (we hold the lock, so none is running) and its images.
fn remove_leftovers(program: &[String]) {
    let mut projects = BTreeSet::new();
    let label = "{{.Label \"com.docker.compose.project\"}}";
    for kind in ["container", "network", "volume"] {
        let mut c = docker(&[kind, "ls", "--filter", "label=com.docker.compose.project"]);
        if kind == "container" {
            c.arg("--all");
        }
        c.args(["--format", label]);
        for p in check(&mut c).lines() {
            if p.starts_with(PROJECT_PREFIX) {
                projects.insert(p.to_string());
            }
        }
    }
    for p in projects {
        eprintln!("removing compose project {p} left by an earlier run");
        check(compose(program, &p).args(["down", "--volumes", "--remove-orphans", "-t", "1"]));
    }
    let images = check(&mut docker(&[
        "images",
        "--filter",
        &format!("reference={IMAGE_REPO}:{IMAGE_TAG_PREFIX}*"),
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]));
    for image in images.lines() {
        let _ = output(&mut docker(&["rmi", "--force", image]));
    }
}

/// The running cluster; dropping it removes everything (showing the logs if the test failed).
struct Cluster {
    program: Vec<String>,
    project: String,
    image: String,
    /// Container id of each node, in [`NODES`] order.
    ids: Vec<String>,
    network: String,
    _lock: File,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = output(compose(&self.program, &self.project).args(["logs", "--no-color"]));
            eprintln!(
                "---- logs of compose project {}:\n{}{}",
                self.project,
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        let down = output(compose(&self.program, &self.project).args([
            "down",
            "--volumes",
            "--remove-orphans",
            "-t",
            "1",
        ]));
        if !down.status.success() {
            eprintln!(
                "compose down of {} failed: {}",
                self.project,
                String::from_utf8_lossy(&down.stderr)
            );
        }
        let _ = output(&mut docker(&["rmi", "--force", &self.image]));
    }
}

impl Cluster {
    /// Builds the image from this build's o2cb and starts the compose cluster.
    /// `test` tells apart the projects and images of this process's tests.
    fn up(test: &str) -> Cluster {
        // Fails here, with the engine's own words, when there is no Docker engine.
        check(&mut docker(&["info", "--format", "{{.ServerVersion}}"]));
        let program = compose_program();
        let lock = exclusive();
        remove_leftovers(&program);
        let pid = std::process::id();
        let mut cluster = Cluster {
            program,
            project: format!("{PROJECT_PREFIX}{pid}{test}"),
            image: format!("{IMAGE_REPO}:{IMAGE_TAG_PREFIX}{pid}{test}"),
            ids: Vec::new(),
            network: String::new(),
            _lock: lock,
        };
        check(
            Command::new(containers_dir().join("build-image.sh"))
                .arg("--binary")
                .arg(env!("CARGO_BIN_EXE_o2cb"))
                .arg("--tag")
                .arg(&cluster.image),
        );
        check(
            compose(&cluster.program, &cluster.project)
                .env("O2CB_IMAGE", &cluster.image)
                .args(["up", "--detach"]),
        );
        for node in NODES {
            let id = check(compose(&cluster.program, &cluster.project).args(["ps", "-q", node]));
            let id = id.trim().to_string();
            assert!(!id.is_empty(), "compose started no container for {node}");
            cluster.ids.push(id);
        }
        let net = check(&mut docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", cluster.project),
            "--filter",
            "label=com.docker.compose.network=o2cb",
        ]));
        cluster.network = net.trim().to_string();
        assert!(
            !cluster.network.is_empty(),
            "compose made no network o2cb for {}",
            cluster.project
        );
        cluster
    }

    fn id(&self, node: usize) -> &str {
        self.ids.get(node).map(String::as_str).unwrap_or("")
    }

    /// `docker exec` in node `node`'s container; the whole output.
    fn exec(&self, node: usize, args: &[&str]) -> Output {
        output(docker(&["exec", self.id(node)]).args(args))
    }

    /// `o2cb nodes` in node `node`'s container, if it answers.
    fn nodes_table(&self, node: usize) -> Option<String> {
        let o = self.exec(node, &["o2cb", "nodes"]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Waits until node `node`'s `o2cb nodes` table satisfies `pred`; the table and how
    /// long it took.
    fn wait_nodes(
        &self,
        node: usize,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> (String, Duration) {
        let start = Instant::now();
        let mut last = None;
        loop {
            if let Some(t) = self.nodes_table(node) {
                if pred(&t) {
                    return (t, start.elapsed());
                }
                last = Some(t);
            }
            assert!(
                start.elapsed() < timeout,
                "{}: {what} did not happen within {} s; last `o2cb nodes`:\n{}",
                NODES[node],
                timeout.as_secs(),
                last.as_deref().unwrap_or("(no answer)")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every node in `nodes` sees exactly `nodes` live and connected.
    fn wait_formed(&self, nodes: &[usize], timeout: Duration) {
        for &n in nodes {
            self.wait_nodes(
                n,
                &format!("nodes {nodes:?} live and connected"),
                timeout,
                |t| {
                    (0..NODES.len()).all(|m| {
                        let up = nodes.contains(&m);
                        let r = row(t, m);
                        let live = r.get(3).map(String::as_str) == Some("live");
                        let conn = matches!(r.get(4).map(String::as_str), Some("yes" | "self"));
                        if up {
                            live && conn
                        } else {
                            !live && !conn
                        }
                    })
                },
            );
        }
    }

    /// `docker inspect` of node `node`'s container: (running, exit code).
    fn state(&self, node: usize) -> (bool, i32) {
        let s = check(&mut docker(&[
            "inspect",
            "--format",
            "{{.State.Running}} {{.State.ExitCode}}",
            self.id(node),
        ]));
        let mut w = s.split_whitespace();
        let running = w.next() == Some("true");
        let code = w.next().and_then(|c| c.parse().ok()).unwrap_or(-1);
        (running, code)
    }

    /// Waits until node `node`'s container has stopped; its exit status.
    fn wait_exit(&self, node: usize, timeout: Duration) -> i32 {
        let start = Instant::now();
        loop {
            let (running, code) = self.state(node);
            if !running {
                return code;
            }
            assert!(
                start.elapsed() < timeout,
                "{} still runs after {timeout:?}; its log:\n{}",
                NODES[node],
                self.logs(node)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self, node: usize) -> String {
        let o = output(&mut docker(&["logs", self.id(node)]));
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }
}

/// The columns of node `n`'s row of an `o2cb nodes` table.
fn row(table: &str, n: usize) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|c| c.first().map(String::as_str) == Some(n.to_string().as_str()))
        .unwrap_or_default()
}

fn heartbeat_of(table: &str, n: usize) -> Option<String> {
    row(table, n).get(3).cloned()
}

fn generation_of(table: &str, n: usize) -> Option<String> {
    row(table, n).get(5).cloned()
}

#[test]
fn a_cluster_in_containers_survives_kill_partition_and_restart() {
    let sysconfig = o2nm::O2cbSysconfig::load(&containers_dir().join("o2cb.sysconfig"))
        .expect("containers/o2cb.sysconfig");
    let conf = o2nm::ClusterConf::load(&containers_dir().join("cluster.conf"))
        .expect("containers/cluster.conf");
    let threshold = u64::from(sysconfig.timeouts.dead_threshold);
    let idle = Duration::from_millis(u64::from(sysconfig.timeouts.idle_timeout_ms));
    let dead_time = Duration::from_millis(PERIOD_MS * threshold);

    let c = Cluster::up("faults");
    let all = [0, 1, 2];

    // Joining: every node sees the other two heartbeating and connected.
    c.wait_formed(&all, Duration::from_secs(90));
    let status = c.exec(0, &["o2cb", "status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    for line in [
        "Checking O2CB cluster \"o2cbdocker\": Online",
        "Checking O2CB heartbeat: Active",
        "Nodes in O2CB cluster: 0 1 2 \n",
        "  Heartbeat period (ms): 200",
    ] {
        assert!(
            status.contains(line),
            "`o2cb status` on node0 lacks {line:?}:\n{status}"
        );
    }
    let logs = c.logs(0);
    for line in [
        "o2hb: node 1 up",
        "o2hb: node 2 up",
        "Starting global heartbeat for cluster \"o2cbdocker\": OK",
    ] {
        assert!(logs.contains(line), "node0's log lacks {line:?}:\n{logs}");
    }
    assert!(
        logs.contains("o2net: Accepted connection from node node1")
            || logs.contains("o2net: Connected to node node1"),
        "node0's log shows no connection with node1:\n{logs}"
    );

    // docker kill of node1: declared dead after the dead threshold, by both others.
    let (table, _) = c.wait_nodes(0, "node1 live", Duration::from_secs(5), |t| {
        heartbeat_of(t, 1).as_deref() == Some("live")
    });
    let generation_before = generation_of(&table, 1);
    check(&mut docker(&["kill", c.id(1)]));
    let killed = Instant::now();
    assert_eq!(
        c.wait_exit(1, Duration::from_secs(10)),
        128 + 9,
        "node1's container exit status after docker kill (SIGKILL)"
    );
    c.wait_nodes(0, "node1 declared dead", Duration::from_secs(30), |t| {
        heartbeat_of(t, 1).as_deref() == Some("down")
    });
    let seen = killed.elapsed();
    // Its last write may be a period older than the kill, and the reads are a period apart.
    assert!(
        seen + Duration::from_millis(2 * PERIOD_MS) >= dead_time,
        "node0 declared node1 dead {seen:?} after the kill, before the dead threshold ({dead_time:?})"
    );
    c.wait_nodes(2, "node1 declared dead", Duration::from_secs(30), |t| {
        heartbeat_of(t, 1).as_deref() == Some("down")
    });
    c.wait_formed(&[0, 2], Duration::from_secs(30));

    // The killed container, started again, rejoins with a new heartbeat generation.
    check(&mut docker(&["start", c.id(1)]));
    c.wait_formed(&all, Duration::from_secs(60));
    let table = c.nodes_table(0).unwrap_or_default();
    let generation_after = generation_of(&table, 1);
    assert!(generation_after.is_some() && generation_after != generation_before,
        "node1 rejoined with generation {generation_after:?}, before the kill {generation_before:?}");

    // docker network disconnect of node2: quorum fences it, nodes 0 and 1 keep serving.
    check(&mut docker(&["network", "disconnect", &c.network, c.id(2)]));
    let cut = Instant::now();
    let code = c.wait_exit(2, idle * 4 + Duration::from_secs(30));
    let fenced_after = cut.elapsed();
    assert_eq!(
        code,
        o2hb::driver::FENCE_EXIT_STATUS,
        "node2's container exit status after the partition; its log:\n{}",
        c.logs(2)
    );
    let log2 = c.logs(2);
    assert!(
        log2.contains("only connected to 1 nodes and 2 is needed to make a quorum out of 3 heartbeating nodes"),
        "node2's log does not say quorum fenced it:\n{log2}"
    );
    // The connections must first go idle: a fence sooner would not be o2net's quorum.
    assert!(
        fenced_after + Duration::from_secs(1) >= idle,
        "node2 fenced {fenced_after:?} after the partition, before the idle timeout {idle:?}"
    );
    for n in [0, 1] {
        assert!(
            c.state(n).0,
            "{} stopped during node2's partition",
            NODES[n]
        );
    }
    c.wait_formed(&[0, 1], Duration::from_secs(30));
    let status = c.exec(1, &["o2cb", "status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("Nodes in O2CB cluster: 0 1 \n"),
        "`o2cb status` on node1 after node2 fenced:\n{status}"
    );

    // Reconnected at its address and started again, node2 rejoins.
    let node2 = conf
        .cluster("o2cbdocker")
        .and_then(|cl| cl.nodes.iter().find(|n| n.name == "node2"))
        .map(|n| n.ip_address.to_string())
        .expect("node2 in containers/cluster.conf");
    check(&mut docker(&[
        "network",
        "connect",
        "--ip",
        &node2,
        &c.network,
        c.id(2),
    ]));
    check(&mut docker(&["start", c.id(2)]));
    c.wait_formed(&all, Duration::from_secs(60));
}
