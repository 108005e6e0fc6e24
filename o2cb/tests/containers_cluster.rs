//! The cluster in containers of `containers/`, checked across containers: the image built
//! FROM scratch by `containers/build-image.sh` from this build's o2cb, the 3-node compose
//! cluster on its own network with the heartbeat region on a shared volume, then what a user
//! of containers meets:
//!
//! - every node sees the other two heartbeating and connected, `o2cb status` says so and the
//!   logs show the nodes joining;
//! - `o2cb lock` held in one container blocks the others: a trylock is refused, waiters run
//!   their command only once the holder's command ended; the same through each container's
//!   dlmfs mount (/dlm, FUSE);
//! - `docker kill` of a node: the others declare it dead after the dead threshold, not before;
//! - the killed container started again rejoins with a new heartbeat generation;
//! - `docker network disconnect` of a node: its heartbeat still reaches the shared volume, so
//!   the others keep seeing it alive while it cannot reach them; o2net quorum makes it fence
//!   itself (its container exits with the fence status) while the other two keep serving,
//!   locks included;
//! - reconnected and started again, it rejoins;
//! - `docker kill` of the node that masters a counter lock and holds it mid-increment while the
//!   other two wait on it: they get it only after the dead threshold, once recovery moved it to
//!   one of them, and the counter has every completed increment exactly once and the killed
//!   node's in-flight one not at all.
//!
//! Needs a Docker engine with Compose: `docker compose` (v2) if present, else `docker-compose`
//! (v1; the only one tried so far); without one the tests fail, they do not skip. Everything they make (containers, network, volume, image) is
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

/// Fails, saying why, when a network outside these tests already takes the compose file's
/// subnet (the README's cluster left up, say): compose's own error names neither.
fn subnet_free() {
    let file = containers_dir().join("docker-compose.yml");
    let yml = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let subnet = yml
        .lines()
        .find_map(|l| l.trim().strip_prefix("- subnet:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no subnet in {}", file.display()));
    let format = "{{range .IPAM.Config}}{{.Subnet}} {{end}}";
    for net in check(&mut docker(&["network", "ls", "--format", "{{.Name}}"])).lines() {
        let subnets = check(&mut docker(&[
            "network", "inspect", "--format", format, net,
        ]));
        assert!(
            !subnets.split_whitespace().any(|s| s == subnet),
            "docker network {net} already has the subnet {subnet} of containers/docker-compose.yml \
             (the README's cluster still up? `docker-compose down -v` in containers/ removes it)"
        );
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
        subnet_free();
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

    /// `sh -c SCRIPT` in node `node`'s container, in the background (`docker exec -d`).
    fn spawn(&self, node: usize, script: &str) {
        check(&mut docker(&[
            "exec",
            "--detach",
            self.id(node),
            "sh",
            "-c",
            script,
        ]));
    }

    /// The content of a file of the shared volume, seen from node `node`'s container.
    fn shared_file(&self, node: usize, name: &str) -> Option<String> {
        let o = self.exec(node, &["cat", &format!("/shared/{name}")]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Waits until a file of the shared volume exists; its content and how long it took.
    fn wait_shared(&self, node: usize, name: &str, timeout: Duration) -> (String, Duration) {
        let start = Instant::now();
        loop {
            if let Some(text) = self.shared_file(node, name) {
                return (text, start.elapsed());
            }
            assert!(
                start.elapsed() < timeout,
                "/shared/{name} did not appear within {} s; logs:\n{}",
                timeout.as_secs(),
                (0..NODES.len())
                    .map(|n| self.logs(n))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// How a test runs a shell script under an EX lock: `(domain, lock name, script) -> script`.
type Under = fn(&str, &str, &str) -> String;

/// `o2cb lock DOMAIN NAME -- sh -c SCRIPT`, as a shell word list for `sh -c`.
fn locked(domain: &str, name: &str, script: &str) -> String {
    format!("o2cb lock {domain} {name} -- sh -c '{script}'")
}

/// SCRIPT with the lock file DOMAIN/NAME of the node's dlmfs open read-write (an EX lock,
/// waited for), as a program using /dlm does.
fn dlmfs_locked(domain: &str, name: &str, script: &str) -> String {
    format!("mkdir -p /dlm/{domain} && exec 3<>/dlm/{domain}/{name} && {script}")
}

/// Node `holder` takes lock `name` of domain ctest (through `under`) and keeps it until told: a trylock from
/// the first of `others` is refused, and a waiter on each of `others` runs its command only
/// once the holder let go.
fn lock_blocks(c: &Cluster, holder: usize, others: &[usize], name: &str, under: Under) {
    let held = format!("{name}.holder");
    let release = format!("{name}.release");
    c.spawn(
        holder,
        &under(
            "ctest",
            name,
            &format!(
                "echo $O2CB_NODE > /shared/{held}; while [ ! -e /shared/{release} ]; do sleep 0.1; done"
            ),
        ),
    );
    let first = *others.first().expect("at least one other node");
    c.wait_shared(first, &held, Duration::from_secs(30));
    let o = c.exec(
        first,
        &["o2cb", "lock", "ctest", name, "--trylock", "--", "true"],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        o.status.code(),
        Some(1),
        "trylock on {} of the lock {} holds: {stderr}",
        NODES[first],
        NODES[holder]
    );
    assert!(
        stderr.contains("held elsewhere"),
        "trylock on {} does not say why: {stderr}",
        NODES[first]
    );
    for &n in others {
        c.spawn(
            n,
            &under(
                "ctest",
                name,
                &format!("echo $O2CB_NODE > /shared/{name}.got{n}"),
            ),
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    for &n in others {
        assert_eq!(
            c.shared_file(n, &format!("{name}.got{n}")),
            None,
            "{} ran its command under the lock {} holds",
            NODES[n],
            NODES[holder]
        );
    }
    // The holder's command ends: the lock is released and every waiter gets it in turn.
    check(&mut docker(&[
        "exec",
        c.id(holder),
        "touch",
        &format!("/shared/{release}"),
    ]));
    for &n in others {
        c.wait_shared(n, &format!("{name}.got{n}"), Duration::from_secs(30));
    }
}

/// One increment of the shared counter file: a line `N NODE T` where N is one more than the
/// number of lines before and T the kernel's uptime (/proc/uptime, one clock for the
/// containers and the test) when the command began under the lock. `hold` runs between the
/// read and the append: a short sleep paces the nodes (waiters queue up behind each holder,
/// so the nodes take turns). Done under the lock, line N is N for every N; an increment made
/// outside the lock (two holders at once) repeats a number.
fn increment(hold: &str) -> String {
    format!(
        "read t x < /proc/uptime; n=$(wc -l < /shared/counter); {hold}; \
         echo \"$((n + 1)) $O2CB_NODE $t\" >> /shared/counter"
    )
}

/// How long an increment holds the counter lock between its read and its append.
const PACE: &str = "0.05";

/// One line of the counter file.
#[derive(Debug)]
struct Increment {
    node: String,
    /// Uptime in seconds when the increment began under the lock.
    began: f64,
}

/// Checks the counter file: line i is `i NODE T`, every number once, in order.
fn check_counter(text: &str) -> Vec<Increment> {
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let w: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            w.first().and_then(|n| n.parse::<usize>().ok()),
            Some(i + 1),
            "counter line {} is {line:?}: an increment was lost or made twice:\n{text}",
            i + 1
        );
        let began = w.get(2).and_then(|t| t.parse::<f64>().ok());
        let (Some(node), Some(began), 3) = (w.get(1), began, w.len()) else {
            panic!(
                "counter line {} is {line:?}, not `N NODE UPTIME`:\n{text}",
                i + 1
            )
        };
        lines.push(Increment {
            node: node.to_string(),
            began,
        });
    }
    lines
}

/// The kernel's uptime in seconds, the clock of the counter lines.
fn uptime() -> f64 {
    let text = std::fs::read_to_string("/proc/uptime").expect("/proc/uptime");
    text.split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("/proc/uptime is {text:?}"))
}

/// A lock resource as an `o2cb lockdump` (locking_state) dump shows it.
#[derive(Debug)]
struct Lockres {
    /// Its master: the owner field of its `LRES:` line.
    owner: u8,
    /// Each `LOCK:` line's queue (0 granted, 1 converting, 2 blocked) and node.
    locks: Vec<(u8, u8)>,
}

/// Resource `name` in an `o2cb lockdump` dump.
fn lockres_of(dump: &str, name: &str) -> Option<Lockres> {
    let mut lines = dump.lines();
    lines.find(|l| l.strip_prefix("NAME:") == Some(name))?;
    let mut owner = None;
    let mut locks = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let field = |l: &str, i: usize| l.split(',').nth(i).and_then(|f| f.parse::<u8>().ok());
        if let Some(lres) = line.strip_prefix("LRES:") {
            owner = field(lres, 1);
        } else if let Some(lock) = line.strip_prefix("LOCK:") {
            locks.push((field(lock, 1)?, field(lock, 4)?));
        }
    }
    Some(Lockres {
        owner: owner?,
        locks,
    })
}

/// `o2cb lockdump ctest` in node `node`'s container: resource `name` in it, and the dump.
fn lockres_on(c: &Cluster, node: usize, name: &str) -> (Option<Lockres>, String) {
    let dump = check(&mut docker(&[
        "exec",
        c.id(node),
        "o2cb",
        "lockdump",
        "ctest",
    ]));
    (lockres_of(&dump, name), dump)
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

    // A lock held in one container blocks the others: a trylock is refused, a waiter waits.
    lock_blocks(&c, 0, &[1, 2], "L", locked);

    // dlmfs, mounted by each node daemon at /dlm (FUSE, inside the container): a lock file
    // opened in node0's mount refuses node1's trylock and keeps node1's and node2's opens
    // waiting until node0 closes it.
    for n in all {
        let mounts = c.exec(n, &["cat", "/proc/mounts"]);
        let mounts = String::from_utf8_lossy(&mounts.stdout);
        assert!(
            mounts.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1..3) == Some(&["/dlm", "fuse.ocfs2_dlmfs"][..])
            }),
            "no dlmfs on /dlm in {}'s container:\n{mounts}",
            NODES[n]
        );
    }
    let status = c.exec(0, &["o2cb", "status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("Filesystem \"ocfs2_dlmfs\": Mounted (/dlm)"),
        "`o2cb status` on node0 does not show dlmfs mounted:\n{status}"
    );
    lock_blocks(&c, 0, &[1, 2], "D", dlmfs_locked);

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

    // The DLM of the two goes on too.
    lock_blocks(&c, 0, &[1], "P", locked);

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

/// Increments node1 and node2 each make under the counter lock.
const INCREMENTS: usize = 10;

#[test]
fn the_waiter_gets_the_lock_of_a_killed_holder_and_the_counter_stays_exact() {
    let sysconfig = o2nm::O2cbSysconfig::load(&containers_dir().join("o2cb.sysconfig"))
        .expect("containers/o2cb.sysconfig");
    let dead_time = Duration::from_millis(PERIOD_MS * u64::from(sysconfig.timeouts.dead_threshold));
    let c = Cluster::up("killedholder");
    c.wait_formed(&[0, 1, 2], Duration::from_secs(90));
    check(&mut docker(&["exec", c.id(0), "touch", "/shared/counter"]));
    // Sessions that keep each node in the domain, so that the increments do not each join
    // and leave it.
    for n in 0..3 {
        let keep = locked(
            "ctest",
            &format!("keep{n}"),
            &format!("touch /shared/kept{n}; sleep 600"),
        );
        c.spawn(n, &keep);
        c.wait_shared(n, &format!("kept{n}"), Duration::from_secs(30));
    }
    // node0 takes C first, so that it masters it: the node killed below is the holder and the
    // master, and the survivors must recover C before either gets it.
    let paced = increment(&format!("sleep {PACE}"));
    check(&mut docker(&[
        "exec",
        c.id(0),
        "sh",
        "-c",
        &locked("ctest", "C", &paced),
    ]));
    // The three increment in turns: node1 and node2 INCREMENTS times each, node0 until it is
    // told to stall; then node0's next increment stops under the lock after its read, before
    // its append, and says so.
    let stall = increment(
        "echo $n > /shared/holding.new; mv /shared/holding.new /shared/holding; sleep 600",
    );
    c.spawn(
        0,
        &format!(
            "while [ ! -e /shared/stall ]; do {} 2>>/shared/err0 || exit 1; done; {}",
            locked("ctest", "C", &paced),
            locked("ctest", "C", &stall)
        ),
    );
    for n in 1..3 {
        c.spawn(
            n,
            &format!(
                "s=done; for i in $(seq {INCREMENTS}); do {} 2>>/shared/err{n} || {{ s=failed; break; }}; done; \
                 echo $s > /shared/done{n}.new; mv /shared/done{n}.new /shared/done{n}",
                locked("ctest", "C", &paced)
            ),
        );
    }
    let counter = || c.shared_file(1, "counter").unwrap_or_default();
    let writers = |text: &str| {
        let mut counts = [0; 3];
        for l in text.lines() {
            if let Some(n) = NODES
                .iter()
                .position(|&node| l.split_whitespace().nth(1) == Some(node))
            {
                counts[n] += 1;
            }
        }
        counts
    };
    // Once the three have taken turns, node0 stalls holding C.
    let start = Instant::now();
    while writers(&counter()).contains(&0) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the three nodes did not each increment within 60 s:\n{}",
            counter()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    check(&mut docker(&["exec", c.id(0), "touch", "/shared/stall"]));
    let (held, _) = c.wait_shared(1, "holding", Duration::from_secs(30));
    let held: usize = held
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("/shared/holding is {held:?}"));

    // node0 holds C mid-increment and masters it; node1 and node2, with increments left,
    // wait on it and the counter stands still.
    std::thread::sleep(Duration::from_secs(1));
    let text = counter();
    assert_eq!(
        text.lines().count(),
        held,
        "the counter moved while node0 held C after reading {held}:\n{text}"
    );
    let before = writers(&text);
    for (n, node) in NODES.iter().enumerate().skip(1) {
        assert!(
            before[n] < INCREMENTS,
            "{node} finished before node0 stalled: nobody waits on C:\n{text}"
        );
        let (res, dump) = lockres_on(&c, n, "C");
        let res = res.unwrap_or_else(|| panic!("no C in {node}'s lockdump:\n{dump}"));
        assert_eq!(
            res.owner, 0,
            "{node} does not see node0 mastering C:\n{dump}"
        );
        assert!(
            res.locks.contains(&(2, n as u8)),
            "{node}'s lock on C is not blocked behind node0's:\n{dump}"
        );
    }

    // The kill lands between these two readings of the clock.
    let kill_sent = uptime();
    check(&mut docker(&["kill", c.id(0)]));
    let kill_done = uptime();
    assert_eq!(
        c.wait_exit(0, Duration::from_secs(10)),
        128 + 9,
        "node0's container exit status after docker kill (SIGKILL)"
    );
    for (n, node) in NODES.iter().enumerate().skip(1) {
        let (status, _) = c.wait_shared(n, &format!("done{n}"), Duration::from_secs(60));
        assert_eq!(
            status.trim(),
            "done",
            "{node}'s increments failed: {}",
            c.shared_file(n, &format!("err{n}")).unwrap_or_default()
        );
    }

    // Every completed increment once, node0's in-flight one not at all.
    let text = counter();
    let lines = check_counter(&text);
    let count = |node: &str| lines.iter().filter(|l| l.node == node).count();
    assert_eq!(count("node1"), INCREMENTS, "node1's increments:\n{text}");
    assert_eq!(count("node2"), INCREMENTS, "node2's increments:\n{text}");
    assert_eq!(
        count("node0"),
        before[0],
        "node0's increments, {} before it stalled:\n{text}",
        before[0]
    );
    // The first increment after node0's stalled one began once node0 was declared dead:
    // not before the dead threshold (less a period: node0's last heartbeat may be a period
    // older than the kill, and the others read a period apart; less the clock's 10 ms), and
    // promptly after it (recovery of one lock between two nodes takes milliseconds).
    let first = lines.get(held).expect("increments after the kill");
    let waited = Duration::from_secs_f64((first.began - kill_sent).max(0.0));
    let kill_took = Duration::from_secs_f64(kill_done - kill_sent);
    eprintln!(
        "{} got C {waited:?} after docker kill of node0 (which took {kill_took:?}) holding it \
         (dead threshold {dead_time:?}); counter:\n{text}",
        first.node
    );
    assert!(
        waited + Duration::from_millis(PERIOD_MS + 10) >= dead_time,
        "{} got C {waited:?} after docker kill of node0 (which took {kill_took:?}), before \
         node0 could be declared dead ({dead_time:?}):\n{text}",
        first.node
    );
    assert!(
        waited < dead_time + kill_took + Duration::from_secs(5),
        "{} got C only {waited:?} after docker kill of node0 (which took {kill_took:?}; dead \
         threshold {dead_time:?}):\n{text}",
        first.node
    );
    // Recovery moved C to a survivor.
    let (res, dump) = lockres_on(&c, 1, "C");
    assert!(
        matches!(res, Some(Lockres { owner: 1 | 2, .. })),
        "C is not mastered by a survivor after recovery:\n{dump}"
    );
}
