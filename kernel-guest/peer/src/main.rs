//! A node of ours beside the kernel guest (see kernel-guest/README.md): reads cluster.conf and
//! the o2cb sysconfig file as the node daemon does, heartbeats on the OCFS2 volume given (it must
//! be the cluster's global heartbeat region), and runs o2net with heartbeat events fed in.
//!
//! ```text
//! o2cb-kernel-peer CLUSTER_CONF SYSCONFIG NODE_NAME VOLUME
//! ```
//!
//! stdout carries one line per event, for the test to read: `region-started UUID`,
//! `node-up N`, `node-down N`, `fenced REASON`, and every 500 ms `stats live=A,B
//! connected=A,B` followed by one `peer N state=S ka_sent=K ka_received=K msgs_sent=M
//! msgs_received=M` per other node. Logs (o2net's connection lines included) go to stderr.
//! Stops cleanly (generation-0 heartbeat block) on SIGTERM or SIGINT.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("o2cb-kernel-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn list(nodes: impl Iterator<Item = u8>) -> String {
    nodes.map(|n| n.to_string()).collect::<Vec<_>>().join(",")
}

fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [conf, sysconfig, node_name, volume] = args.as_slice() else {
        return Err("usage: o2cb-kernel-peer CLUSTER_CONF SYSCONFIG NODE_NAME VOLUME".into());
    };
    let conf = o2nm::ClusterConf::load(&PathBuf::from(conf))?;
    let sysconfig = o2nm::O2cbSysconfig::load(&PathBuf::from(sysconfig))?;
    let cluster = o2nm::Cluster::online(
        &conf,
        None,
        &sysconfig,
        &o2nm::LocalNode::Named(node_name.clone()),
    )?;
    let local = cluster
        .local_node()
        .ok_or_else(|| format!("no node {node_name} in cluster {}", cluster.name()))?
        .num;
    let source = o2hb::source::open(&PathBuf::from(volume))?;
    if !cluster.regions().iter().any(|r| r.name == source.name) {
        return Err(format!(
            "{volume}: volume {} is not a heartbeat region of cluster {}",
            source.name,
            cluster.name()
        )
        .into());
    }
    let t = cluster.timeouts();
    let mut hb_cfg = o2hb::driver::DriverConfig::new(local);
    hb_cfg.mode = o2hb::Mode::Global;
    hb_cfg.timing = o2hb::Timing::new(u64::from(t.heartbeat_period_ms), t.dead_threshold)?;
    // Fencing is a process exit with the driver's status; the test sees it.
    let net_cfg = o2net::NetConfig::from_cluster(&cluster)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let hb = o2hb::driver::Heartbeat::start(hb_cfg)?;
    let mut events = hb.subscribe();
    let net = rt.block_on(async {
        o2net::Net::start(
            net_cfg,
            Arc::new(|reason: &str| {
                say(&format!("fenced {reason}"));
                std::process::exit(o2hb::driver::FENCE_EXIT_STATUS);
            }),
        )
    })?;
    // Starting a region waits for steady state, on a thread of its own so that this one keeps
    // serving events and signals.
    let code = std::thread::scope(|scope| {
        scope.spawn(|| match hb.start_region(&source) {
            Ok(_) => say(&format!("region-started {}", source.name)),
            Err(e) => say(&format!("region-failed {}: {e}", source.name)),
        });
        let code = serve(&rt, &hb, &net, &mut events, local);
        // A start still waiting for steady state gives up once the driver stops.
        net.shutdown();
        hb.stop();
        code
    })?;
    hb.shutdown();
    say("stopped");
    Ok(code)
}

fn serve(
    rt: &tokio::runtime::Runtime,
    hb: &o2hb::driver::Heartbeat,
    net: &o2net::Net,
    events: &mut tokio::sync::mpsc::UnboundedReceiver<o2hb::driver::HbEvent>,
    local: u8,
) -> std::io::Result<ExitCode> {
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                ev = events.recv() => match ev {
                    Some(o2hb::driver::HbEvent::NodeUp { node, .. }) => {
                        net.heartbeat_up(node);
                        say(&format!("node-up {node}"));
                    }
                    Some(o2hb::driver::HbEvent::NodeDown { node, .. }) => {
                        net.heartbeat_down(node);
                        say(&format!("node-down {node}"));
                    }
                    Some(o2hb::driver::HbEvent::Fenced) => {
                        say("fenced heartbeat");
                        return Ok::<_, std::io::Error>(ExitCode::from(o2hb::driver::FENCE_EXIT_STATUS as u8));
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    say(&format!(
                        "stats live={} connected={}",
                        list(hb.live_nodes().iter()),
                        list(net.connected_nodes().iter())
                    ));
                    for p in net.peer_stats() {
                        if p.node == local {
                            continue;
                        }
                        say(&format!(
                            "peer {} state={:?} ka_sent={} ka_received={} msgs_sent={} msgs_received={}",
                            p.node, p.state, p.traffic.keepalives_sent, p.traffic.keepalives_received,
                            p.traffic.msgs_sent, p.traffic.msgs_received
                        ));
                    }
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
