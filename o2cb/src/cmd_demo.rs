//! `o2cb demo`: the first run. With no configuration at all it writes a 3-node cluster
//! (127.0.0.1-3, one heartbeat region file, short timeouts) into a temporary directory,
//! starts the three node daemons as real processes, shows status, hands a DLM lock from one
//! node to another, kills one node with
//! SIGKILL and shows the others declare it dead, takes the rest offline cleanly, and removes
//! every process and file it made, also on Ctrl-C or SIGTERM.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

use crate::cmd_node::parse;
use crate::daemon::proto::{self, Client, Status};
use crate::Global;

const CLUSTER: &str = "demo";
const NODES: u8 = 3;
const PERIOD_MS: u32 = 200;
/// The smallest threshold the sysconfig file accepts (O2CB_HEARTBEAT_THRESHOLD >= 7).
const THRESHOLD: u32 = 7;

#[derive(Parser, Debug)]
#[command(
    name = "o2cb demo",
    about = "Run a 3-node cluster on 127.0.0.1-3: heartbeat, connections, a lock handed over, a node's death"
)]
struct Cli {
    /// o2net port of the three nodes.
    #[arg(long, default_value_t = 7777)]
    port: u16,
    /// Keep the temporary directory (configuration, region, daemon logs) for a look after.
    #[arg(long)]
    keep: bool,
}

/// Every process and file of the demo; dropping it ends the processes and removes the files.
struct Demo {
    dir: PathBuf,
    conf: PathBuf,
    sysconfig: PathBuf,
    region: PathBuf,
    run: PathBuf,
    port: u16,
    children: Vec<Option<Child>>,
    keep: bool,
    interrupted: Arc<AtomicBool>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        // SIGTERM is a clean stop; a daemon that has not ended after 3 s is killed.
        for c in self.children.iter().flatten() {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: kill(2) on a child we started and have not reaped.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for c in self.children.iter_mut().flatten() {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.keep {
            println!("Kept {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn step(text: &str) {
    println!("\n=== {text}");
}

impl Demo {
    fn socket(&self, node: u8) -> PathBuf {
        proto::node_file(&self.run, CLUSTER, &format!("node{node}"), "sock")
    }

    fn check_interrupt(&self) -> anyhow::Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            bail!("interrupted; cleaning up");
        }
        Ok(())
    }

    /// One request to node `node`'s daemon; the body of its `ok` answer.
    fn call(&self, node: u8, words: &[&str]) -> anyhow::Result<String> {
        let mut c = Client::connect(&self.socket(node))
            .with_context(|| format!("node {node} does not answer"))?;
        let r = c.call(words)?;
        if r.status != Status::Ok {
            bail!("node {node}: {}", r.word);
        }
        Ok(r.body)
    }

    /// Shows `o2cb COMMAND` as run on node `node`.
    fn show(&self, node: u8, command: &str, op: &str) -> anyhow::Result<()> {
        println!("$ o2cb {command}        # on node {node}");
        print!("{}", self.call(node, &[op])?);
        Ok(())
    }

    /// Waits until `pred` holds for node `node`'s `o2cb nodes` table.
    fn wait_nodes(
        &self,
        node: u8,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Duration> {
        self.wait_answer(node, &["nodes"], what, timeout, pred)
    }

    /// Waits until node `node`'s start-up is over (its heartbeat region is steady).
    fn wait_online(&self, node: u8, timeout: Duration) -> anyhow::Result<()> {
        self.wait_answer(node, &["ping"], "coming online", timeout, |ping| {
            ping.lines().any(|l| l == "state online")
        })?;
        Ok(())
    }

    /// Asks node `node` `request` every 50 ms until `pred` holds for the answer (`what`, in
    /// the error when `timeout` passes first); returns how long it took.
    fn wait_answer(
        &self,
        node: u8,
        request: &[&str],
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            self.check_interrupt()?;
            if let Ok(answer) = self.call(node, request) {
                if pred(&answer) {
                    return Ok(start.elapsed());
                }
            }
            if start.elapsed() > timeout {
                bail!(
                    "node {node}: {what} did not happen within {} s; the daemons' logs are in {}",
                    timeout.as_secs(),
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_node(&mut self, node: u8) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join(format!("node{node}.log")))?;
        let child = Command::new(std::env::current_exe()?)
            .arg("--config-file")
            .arg(&self.conf)
            .args(["node", "run", "--node", &format!("node{node}")])
            .arg("--sysconfig")
            .arg(&self.sysconfig)
            .args(["--heartbeat-period-ms", &PERIOD_MS.to_string()])
            .arg("--region-path")
            .arg(&self.region)
            .arg("--no-dlmfs")
            .env(proto::RUNTIME_DIR_ENV, &self.run)
            .env_remove(o2nm::LocalNode::ENV)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C reaches the demo, which stops the nodes itself.
            .process_group(0)
            .spawn()
            .context("starting a node daemon")?;
        println!(
            "node{node}: pid {}, 127.0.0.{}:{}",
            child.id(),
            node + 1,
            self.port
        );
        if let Some(slot) = self.children.get_mut(usize::from(node)) {
            *slot = Some(child);
        }
        Ok(())
    }
}

impl Demo {
    /// Node 2 takes an EX lock and node 1 starts waiting for it: the lock node 2's death
    /// leaves behind, which node 1 gets once the survivors have recovered the domain. The
    /// holder's connection (kept until node 2 is gone) and the waiter's result.
    fn lock_before_kill(&self) -> anyhow::Result<(Client, LockWait)> {
        const DOMAIN: &str = "demo";
        const LOCK: &str = "survivor";
        let holder = lock_ex(&self.socket(2), 2, DOMAIN, LOCK)?;
        println!("node 2: EX lock \"{LOCK}\" granted");
        let waiter = self.wait_for_lock(1, DOMAIN, LOCK);
        println!("node 1: asks for it in EX and waits");
        // Node 2 is killed only once node 1 is in the domain with its request made: killed
        // earlier, node 1 would join a domain without node 2 and nothing would be recovered.
        self.wait_answer(
            1,
            &["lockdump", DOMAIN],
            "asking for the lock",
            Duration::from_secs(20),
            |dump| dump.contains(&format!("NAME:{LOCK}\n")),
        )?;
        Ok((holder, waiter))
    }

    /// Node `node` asks for an EX lock on `lock` of `domain` on a thread of its own.
    fn wait_for_lock(&self, node: u8, domain: &'static str, lock: &'static str) -> LockWait {
        let (tx, rx) = std::sync::mpsc::channel();
        let socket = self.socket(node);
        let asked = Instant::now();
        std::thread::spawn(move || {
            let _ = tx.send(lock_ex(&socket, node, domain, lock).map(|c| (c, asked.elapsed())));
        });
        rx
    }

    /// Node 0 holds an EX lock, node 1 waits for it, gets it when node 0 lets go.
    fn handoff(&self) -> anyhow::Result<()> {
        const DOMAIN: &str = "demo";
        const LOCK: &str = "greeting";
        let mut holder = lock_ex(&self.socket(0), 0, DOMAIN, LOCK)?;
        println!("node 0: EX lock \"{LOCK}\" of domain \"{DOMAIN}\" granted");
        let asked = Instant::now();
        let waiter = self.wait_for_lock(1, DOMAIN, LOCK);
        println!("node 1: asks for the same lock in EX and waits");
        let mut busy = Client::connect(&self.socket(2)).context("node 2 does not answer")?;
        let r = busy.call(&["lock", DOMAIN, LOCK, "pr", "trylock"])?;
        println!(
            "node 2: a PR trylock is {}",
            if r.status == Status::Busy {
                "refused: the lock is held elsewhere"
            } else {
                "granted (unexpected)"
            }
        );
        drop(busy);
        for _ in 0..10 {
            self.check_interrupt()?;
            std::thread::sleep(Duration::from_millis(100));
        }
        println!("$ o2cb lockdump {DOMAIN}        # on node 0");
        print!("{}", self.call(0, &["lockdump", DOMAIN])?);
        holder.call(&["unlock"])?;
        println!(
            "node 0: releases the lock after {:.1} s",
            asked.elapsed().as_secs_f64()
        );
        let (mut got, waited) = waiter
            .recv()
            .map_err(|_| anyhow::anyhow!("the waiting thread panicked"))??;
        println!(
            "node 1: granted after waiting {:.1} s",
            waited.as_secs_f64()
        );
        got.call(&["unlock"])?;
        println!(
            "node 1: releases it; from a shell: o2cb lock {DOMAIN} {LOCK} --mode ex -- COMMAND"
        );
        Ok(())
    }
}

/// A lock asked for on a thread of its own ([`Demo::wait_for_lock`]): the holding client and
/// how long the grant took, once granted.
type LockWait = std::sync::mpsc::Receiver<anyhow::Result<(Client, Duration)>>;

/// Asks node `node`'s daemon at `socket` for an EX lock on `lock` of `domain` and waits for
/// the grant; the lock is held until the client unlocks or disconnects.
fn lock_ex(socket: &Path, node: u8, domain: &str, lock: &str) -> anyhow::Result<Client> {
    let mut c = Client::connect(socket).with_context(|| format!("node {node} does not answer"))?;
    let r = c.call(&["lock", domain, lock, "ex"])?;
    if r.status != Status::Ok {
        bail!("node {node}: {}", r.word);
    }
    Ok(c)
}

/// The columns of node `n`'s row in an `o2cb nodes` table.
fn row(table: &str, n: u8) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|c| c.first().map(String::as_str) == Some(&n.to_string()))
        .unwrap_or_default()
}

fn node_is(table: &str, n: u8, hb: &str) -> bool {
    row(table, n).get(3).map(String::as_str) == Some(hb)
}

fn write_files(dir: &Path, port: u16) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let region = dir.join("heartbeat.region");
    let header = o2hb::regionfile::format(&region, 512, u64::from(NODES))?;
    let mut conf = format!(
        "cluster:\n\tnode_count = {NODES}\n\theartbeat_mode = global\n\tname = {CLUSTER}\n\n"
    );
    for n in 0..NODES {
        conf.push_str(&format!(
            "node:\n\tip_port = {port}\n\tip_address = 127.0.0.{}\n\tnumber = {n}\n\tname = node{n}\n\tcluster = {CLUSTER}\n\n",
            n + 1
        ));
    }
    conf.push_str(&format!(
        "heartbeat:\n\tregion = {}\n\tcluster = {CLUSTER}\n\n",
        header.uuid
    ));
    let conf_path = dir.join("cluster.conf");
    std::fs::write(&conf_path, conf)?;
    let sysconfig = dir.join("o2cb");
    std::fs::write(
        &sysconfig,
        format!(
            "O2CB_ENABLED=true\nO2CB_STACK=o2cb\nO2CB_BOOTCLUSTER={CLUSTER}\nO2CB_HEARTBEAT_THRESHOLD={THRESHOLD}\n\
             O2CB_IDLE_TIMEOUT_MS=5000\nO2CB_KEEPALIVE_DELAY_MS=1000\nO2CB_RECONNECT_DELAY_MS=2000\n"
        ),
    )?;
    Ok((conf_path, sysconfig, region))
}

/// SIGINT and SIGTERM set the flag instead of ending the demo, so that it can clean up.
fn catch_signals() -> anyhow::Result<Arc<AtomicBool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let flag = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Hooked here, before any daemon starts; waited for on a thread of their own.
    let (mut int, mut term) = {
        let _guard = rt.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    let f = flag.clone();
    std::thread::Builder::new()
        .name("o2cb-demo-signals".into())
        .spawn(move || {
            rt.block_on(async {
                loop {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    f.store(true, Ordering::Relaxed);
                }
            })
        })?;
    Ok(flag)
}

pub fn run(_global: &Global, args: &[String]) -> anyhow::Result<ExitCode> {
    let cli = match parse::<Cli>("o2cb demo", args) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let interrupted = catch_signals()?;
    let dir = std::env::temp_dir().join(format!("o2cb-demo-{}", std::process::id()));
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut demo = Demo {
        conf: dir.join("cluster.conf"),
        sysconfig: dir.join("o2cb"),
        region: dir.join("heartbeat.region"),
        run: dir.join("run"),
        dir,
        port: cli.port,
        children: (0..NODES).map(|_| None).collect(),
        keep: cli.keep,
        interrupted,
    };
    let (conf, sysconfig, region) = write_files(&demo.dir, cli.port)?;
    (demo.conf, demo.sysconfig, demo.region) = (conf, sysconfig, region);

    step(&format!(
        "A {NODES}-node cluster \"{CLUSTER}\" in {}",
        demo.dir.display()
    ));
    println!(
        "cluster.conf: nodes node0-node{} on 127.0.0.1-{}, port {}, global heartbeat on one region file",
        NODES - 1,
        NODES,
        cli.port
    );
    println!(
        "timeouts: heartbeat every {PERIOD_MS} ms, dead after {THRESHOLD} unchanged reads ({} ms)",
        PERIOD_MS * THRESHOLD
    );

    step("Starting the three node daemons (o2cb node run)");
    for n in 0..NODES {
        demo.start_node(n)?;
    }
    let all_up = |t: &str| {
        (0..NODES).all(|n| {
            let r = row(t, n);
            r.get(3).map(String::as_str) == Some("live")
                && matches!(r.get(4).map(String::as_str), Some("yes" | "self"))
        })
    };
    for n in 0..NODES {
        demo.wait_online(n, Duration::from_secs(60))?;
    }
    let up = demo.wait_nodes(0, "all nodes up", Duration::from_secs(60), all_up)?;
    // Every daemon answers once its own start-up is over.
    for n in 1..NODES {
        demo.wait_nodes(n, "all nodes up", Duration::from_secs(60), all_up)?;
    }
    println!(
        "node 0 sees every node heartbeating and connected ({:.1} s)",
        up.as_secs_f64()
    );
    demo.check_interrupt()?;

    step("Status");
    demo.show(0, "status", "status")?;
    println!();
    demo.show(0, "nodes", "nodes")?;
    println!();
    demo.show(0, "list-connections", "connections")?;

    step("A lock handed over (o2cb lock)");
    demo.handoff()?;

    step("Killing node 2 with SIGKILL while it holds a lock");
    let (_node2_lock, recovered) = demo.lock_before_kill()?;
    let Some(mut victim) = demo.children.get_mut(2).and_then(Option::take) else {
        bail!("node 2 is not running");
    };
    let pid = victim.id();
    victim.kill()?;
    victim.wait()?;
    println!("node2 (pid {pid}) killed; its heartbeat slot stops changing");
    let seen = demo.wait_nodes(0, "node 2 declared dead", Duration::from_secs(30), |t| {
        node_is(t, 2, "down")
    })?;
    println!(
        "node 0 declared node 2 dead after {:.1} s (dead threshold {THRESHOLD} x {PERIOD_MS} ms)",
        seen.as_secs_f64()
    );
    demo.wait_nodes(1, "node 2 declared dead", Duration::from_secs(30), |t| {
        node_is(t, 2, "down")
    })?;
    demo.show(1, "nodes", "nodes")?;
    let (mut got, waited) = recovered
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| anyhow::anyhow!("node 1 was not granted node 2's lock within 30 s"))??;
    println!(
        "node 1: granted the lock node 2 held, {:.1} s after asking (node 2 declared dead, its lock gone)",
        waited.as_secs_f64()
    );
    // Node 1 is still in the domain (it holds the lock), so its status has the domain's
    // recovery line; the grant may come just before recovery is marked finished.
    let start = Instant::now();
    let (node, status) = loop {
        demo.check_interrupt()?;
        let mut found = None;
        for n in 0..2u8 {
            let status = demo.call(n, &["status"])?;
            if status
                .lines()
                .any(|l| l.starts_with("Recovery of domain ") && l.contains(": idle,"))
            {
                found = Some((n, status));
                break;
            }
        }
        if let Some(f) = found {
            break f;
        }
        if start.elapsed() > Duration::from_secs(10) {
            break (1, demo.call(1, &["status"])?);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    println!("$ o2cb status        # on node {node}");
    print!("{status}");
    got.call(&["unlock"])?;

    step("Taking node 0 and node 1 offline (o2cb offline)");
    for n in 0..2u8 {
        demo.check_interrupt()?;
        println!("$ o2cb offline        # on node {n}");
        print!("{}", demo.call(n, &["offline"])?);
        if let Some(mut c) = demo.children.get_mut(usize::from(n)).and_then(Option::take) {
            c.wait()?;
        }
    }
    let (node, generation) = {
        let bytes = std::fs::read(&demo.region)?;
        let slot = bytes.get(512..1024).unwrap_or_default();
        (
            slot.get(8).copied().unwrap_or(0xff),
            slot.get(16..24)
                .and_then(|g| g.try_into().ok())
                .map(u64::from_le_bytes)
                .unwrap_or(u64::MAX),
        )
    };
    println!("node {node}'s heartbeat slot now holds generation {generation}: a clean stop");

    step("Done");
    let keep = demo.keep;
    drop(demo);
    if !keep {
        println!("every process stopped and every file removed");
    }
    Ok(ExitCode::SUCCESS)
}
