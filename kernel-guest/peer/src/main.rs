//! A node of ours with the DLM, beside the kernel guest (see kernel-guest/README.md): reads
//! cluster.conf and the o2cb sysconfig file as the node daemon does, heartbeats on the OCFS2
//! volume given (the cluster's global heartbeat region), runs o2net and o2dlm's driver with
//! every heartbeat event fed to both, and takes commands on stdin, one a line:
//!
//! ```text
//! join DOMAIN                  -> joined DOMAIN members=A,B | error ...
//! lock NAME ex|pr [try]        -> (when granted) granted NAME lvb=TEXT owner=N | lockerr NAME ...
//! setlvb NAME TEXT             -> lvb NAME
//! bast NAME                    -> bast NAME ex|pr|none
//! unlock NAME                  -> unlocked NAME | error ...
//! ```
//!
//! Locks are taken in the one domain joined. A `lock` answers when it is granted or refused,
//! while other commands go on (a blocking lock can wait for the kernel). Events come as
//! `node-up N`, `node-down N`, `region-started UUID`. Logs go to stderr.
//!
//! ```text
//! o2cb-kernel-peer CLUSTER_CONF SYSCONFIG NODE_NAME VOLUME
//! ```

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use o2dlm::wire::{LkmFlags, LockMode, LVB_LEN};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Mutex;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("o2cb-kernel-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

type Held = Arc<Mutex<HashMap<String, o2dlm::LockHandle>>>;

fn run() -> Result<(), Box<dyn std::error::Error>> {
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
            "{volume}: volume {} is not a region of the cluster",
            source.name
        )
        .into());
    }
    let region: [u8; 32] = source
        .name
        .as_bytes()
        .try_into()
        .map_err(|_| format!("region name {} is not 32 characters", source.name))?;
    let t = cluster.timeouts();
    let mut hb_cfg = o2hb::driver::DriverConfig::new(local);
    hb_cfg.mode = o2hb::Mode::Global;
    hb_cfg.timing = o2hb::Timing::new(u64::from(t.heartbeat_period_ms), t.dead_threshold)?;
    let net_cfg = o2net::NetConfig::from_cluster(&cluster)?;
    let dlm_cfg = o2dlm::DlmConfig {
        regions: Some(vec![region]),
        nodes: cluster
            .nodes()
            .map(|n| o2dlm::wire::NodeInfo {
                nodenum: n.num,
                ipv4_port: n.port,
                ipv4_address: n.addr,
            })
            .collect(),
        ..Default::default()
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let hb = Arc::new(o2hb::driver::Heartbeat::start(hb_cfg)?);
    let mut events = hb.subscribe();
    let (net, dlm) = rt.block_on(async {
        let net = o2net::Net::start(
            net_cfg,
            Arc::new(|reason: &str| {
                say(&format!("fenced {reason}"));
                std::process::exit(o2hb::driver::FENCE_EXIT_STATUS);
            }),
        )?;
        let dlm = o2dlm::Dlm::start(net.clone(), dlm_cfg)?;
        Ok::<_, Box<dyn std::error::Error>>((net, dlm))
    })?;
    // Starting a region waits for steady state; the runtime keeps serving meanwhile.
    {
        let hb = hb.clone();
        std::thread::spawn(move || match hb.start_region(&source) {
            Ok(_) => say(&format!("region-started {}", source.name)),
            Err(e) => say(&format!("region-failed {}: {e}", source.name)),
        });
    }
    rt.block_on(async {
        {
            let (net, dlm) = (net.clone(), dlm.clone());
            tokio::spawn(async move {
                while let Some(ev) = events.recv().await {
                    match ev {
                        o2hb::driver::HbEvent::NodeUp { node, .. } => {
                            net.heartbeat_up(node);
                            dlm.node_up(node);
                            say(&format!("node-up {node}"));
                        }
                        o2hb::driver::HbEvent::NodeDown { node, .. } => {
                            net.heartbeat_down(node);
                            dlm.node_down(node);
                            say(&format!("node-down {node}"));
                        }
                        o2hb::driver::HbEvent::Fenced => {
                            say("fenced heartbeat");
                            std::process::exit(o2hb::driver::FENCE_EXIT_STATUS);
                        }
                    }
                }
            });
        }
        let held: Held = Arc::default();
        let mut domain: Option<o2dlm::Domain> = None;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let words: Vec<&str> = line.split_whitespace().collect();
            match (words.as_slice(), &domain) {
                (["join", name], _) => match dlm.join(name).await {
                    Ok(d) => {
                        let members: Vec<String> = d.members().iter().map(u8::to_string).collect();
                        say(&format!("joined {name} members={}", members.join(",")));
                        domain = Some(d);
                    }
                    Err(e) => say(&format!("error join {name}: {e}")),
                },
                (["lock", name, mode, rest @ ..], Some(d)) => {
                    let mode = if *mode == "ex" {
                        LockMode::Ex
                    } else {
                        LockMode::Pr
                    };
                    let mut flags = LkmFlags::VALBLK;
                    if rest.contains(&"try") {
                        flags |= LkmFlags::NOQUEUE;
                    }
                    let (d, held, name) = (d.clone(), held.clone(), name.to_string());
                    tokio::spawn(async move {
                        match d.lock(&name, mode, flags).await {
                            Ok(h) => {
                                let lvb = String::from_utf8_lossy(h.lvb())
                                    .trim_end_matches('\0')
                                    .to_string();
                                let owner = d.owner_of(&name).map_or(-1, i32::from);
                                held.lock().await.insert(name.clone(), h);
                                say(&format!("granted {name} lvb={lvb} owner={owner}"));
                            }
                            Err(e) => say(&format!("lockerr {name} {e}")),
                        }
                    });
                }
                (["setlvb", name, text], _) => {
                    if let Some(h) = held.lock().await.get_mut(*name) {
                        let mut lvb = [0u8; LVB_LEN];
                        let n = text.len().min(LVB_LEN);
                        lvb[..n].copy_from_slice(&text.as_bytes()[..n]);
                        h.set_lvb(lvb);
                        say(&format!("lvb {name}"));
                    } else {
                        say(&format!("error setlvb {name}: not held"));
                    }
                }
                (["bast", name], _) => {
                    let bast = held.lock().await.get(*name).and_then(|h| h.try_bast());
                    let word = match bast {
                        Some(LockMode::Ex) => "ex",
                        Some(LockMode::Pr) => "pr",
                        Some(_) => "other",
                        None => "none",
                    };
                    say(&format!("bast {name} {word}"));
                }
                (["unlock", name], _) => {
                    let h = held.lock().await.remove(*name);
                    match h {
                        Some(h) => match h.unlock_with(LkmFlags::VALBLK).await {
                            Ok(()) => say(&format!("unlocked {name}")),
                            Err(e) => say(&format!("error unlock {name}: {e}")),
                        },
                        None => say(&format!("error unlock {name}: not held")),
                    }
                }
                _ => say(&format!(
                    "error {line}: unknown command or no domain joined"
                )),
            }
        }
    });
    net.shutdown();
    hb.stop();
    Ok(())
}
