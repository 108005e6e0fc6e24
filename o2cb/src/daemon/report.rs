//! The text the daemon answers `status`, `nodes` and `ping` with.
//!
//! `status` prints what `service o2cb status` prints (ocfs2-tools' o2cb init script, docs/o2nm.md
//! §7) from the running node, except where a kernel module has no userspace meaning:
//! the two configfs lines become one line about the node daemon, the debugfs line is left
//! out (the dumps are `o2cb nodes`, `o2cb list-connections` and `o2cb lockdump`), and a
//! heartbeat period other than the kernel's 2000 ms gets a line of its own. The userdlm
//! domains listed are those the node is in (through /dlm or `o2cb lock`).

use std::fmt::Write;

use o2nm::HeartbeatMode;

use super::{Daemon, Guard};

/// `Nodes in O2CB cluster:` as the init script prints the kernel's debugfs `livenodes`
/// file: every live node followed by one space.
pub fn live_nodes_line(live: impl Iterator<Item = u8>) -> String {
    let mut s = String::from("Nodes in O2CB cluster: ");
    for n in live {
        let _ = write!(s, "{n} ");
    }
    s
}

/// The lines of the timeouts, as `show_timeouts_o2cb` prints them.
pub fn timeout_lines(t: &o2nm::Timeouts) -> String {
    let mut s = format!(
        "  Heartbeat dead threshold: {}\n  Network idle timeout: {}\n  Network keepalive delay: {}\n  Network reconnect delay: {}\n",
        t.dead_threshold, t.idle_timeout_ms, t.keepalive_delay_ms, t.reconnect_delay_ms
    );
    if t.heartbeat_period_ms != o2nm::Timeouts::KERNEL_HEARTBEAT_PERIOD_MS {
        let _ = writeln!(s, "  Heartbeat period (ms): {}", t.heartbeat_period_ms);
    }
    s
}

pub fn mode_name(mode: HeartbeatMode) -> &'static str {
    match mode {
        HeartbeatMode::Global => "Global",
        HeartbeatMode::Local => "Local",
    }
}

/// The first line of `status`: who serves this node, and how far it is in its start-up or
/// stop (locks are served only `online`).
pub fn daemon_line(cluster: &str, running: Option<(u32, &str, &str)>) -> String {
    match running {
        Some((pid, socket, stage)) => {
            format!("Node daemon for cluster \"{cluster}\": Running (pid {pid}, control socket {socket}, {stage})\n")
        }
        None => format!("Node daemon for cluster \"{cluster}\": Not running\n"),
    }
}

pub(crate) fn status(d: &Daemon) -> String {
    let c = &d.cluster;
    let name = c.name();
    let stage = stage_name(d.node.stage());
    let mut s = daemon_line(name, Some((d.pid, &crate::path_text(&d.socket), stage)));
    // dlmfs-fuse is built in: always "Loaded".
    s.push_str("Driver for \"ocfs2_dlmfs\": Loaded\n");
    match d.dlmfs.guard().as_ref() {
        Some(m) => {
            let _ = writeln!(
                s,
                "Filesystem \"ocfs2_dlmfs\": Mounted ({})",
                crate::path_text(m.path())
            );
        }
        None => s.push_str("Filesystem \"ocfs2_dlmfs\": Not mounted\n"),
    }
    let _ = writeln!(s, "Checking O2CB cluster \"{name}\": Online");
    s.push_str(&timeout_lines(c.timeouts()));
    let _ = writeln!(s, "  Heartbeat mode: {}", mode_name(c.heartbeat_mode()));
    let regions = d.regions.guard().clone();
    if regions.is_empty() {
        s.push_str("Checking O2CB heartbeat: Not active\n");
    } else {
        s.push_str("Checking O2CB heartbeat: Active\n");
    }
    if !regions.is_empty() && c.heartbeat_mode() == HeartbeatMode::Global {
        for r in &regions {
            let _ = writeln!(s, "  {} {}", r.name, crate::path_text(&r.path));
        }
        let live = d.node.inspect(|s| s.heartbeat().live_nodes());
        let _ = writeln!(
            s,
            "{}",
            live_nodes_line((0..=254u8).filter(|n| live.contains(*n)))
        );
    }
    // The node's domain memberships (dlmfs' and `o2cb lock`'s), and the mount's directories
    // (the init script's `ls /dlm`), read from the mount's own tree: a readdir through the
    // mount would wait behind a mkdir whose join needs this runtime.
    let mut names = d.domains.names();
    if let Some(m) = d.dlmfs.guard().as_ref() {
        names.extend(m.domains());
    }
    let mut domains: Vec<String> = names.iter().map(|n| o2nm::text::decode(n)).collect();
    domains.sort();
    domains.dedup();
    for name in d.domains.names() {
        if let Some(line) = d
            .domains
            .get(&name)
            .and_then(|dom| recovery_line(&o2nm::text::decode(&name), &dom))
        {
            s.push_str(&line);
        }
    }
    if !domains.is_empty() {
        // The init script's `echo "Active userdlm domains: " $(ls /dlm)`: two spaces.
        let _ = writeln!(s, "Active userdlm domains:  {}", domains.join(" "));
    }
    s
}

/// One row per configured node: heartbeat and connection state, generation.
pub(crate) fn nodes(d: &Daemon) -> String {
    let (peers, connected) = d.node.inspect(|s| (s.peers().clone(), s.connected_nodes()));
    let mut s = String::from(
        "node  name              address                heartbeat  connected  generation\n",
    );
    for n in d.cluster.nodes() {
        let hb = peers.get(&n.num);
        let state = match hb {
            Some(p) if p.live => "live",
            Some(_) => "down",
            None => "-",
        };
        let conn = if n.num == d.local {
            "self"
        } else if connected.contains(n.num) {
            "yes"
        } else {
            "no"
        };
        let generation = match hb {
            Some(p) if p.live => format!("0x{:016x}", p.generation),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            s,
            "{:>4}  {:<16}  {:<21}  {:<9}  {:<9}  {}",
            n.num,
            n.name,
            format!("{}:{}", n.addr, n.port),
            state,
            conn,
            generation
        );
    }
    s
}

/// Who the daemon is: `key value` lines for the commands (and for people with `socat`).
pub(crate) fn ping(d: &Daemon) -> String {
    let local = d.cluster.local_node();
    format!(
        "pid {}\ncluster {}\nnode {} {}\nmode {}\nstate {}\nuptime_ms {}\nstage {}\n",
        d.pid,
        d.cluster.name(),
        d.local,
        local.map(|n| n.name.as_str()).unwrap_or(""),
        mode_name(d.cluster.heartbeat_mode()),
        if d.online.load(std::sync::atomic::Ordering::Acquire) {
            "online"
        } else {
            "starting"
        },
        d.started.elapsed().as_millis(),
        stage_name(d.node.stage()),
    )
}

/// The node's stage, as `ping` and `status` print it.
pub fn stage_name(stage: o2node::Stage) -> &'static str {
    match stage {
        o2node::Stage::Starting => "starting",
        o2node::Stage::Online => "online",
        o2node::Stage::Stopping => "stopping",
        o2node::Stage::Stopped => "stopped",
        o2node::Stage::Fenced => "fenced",
    }
}

/// A domain's recovery, once there has been one: active or idle, the dead node, the
/// recovery master, the nodes still to recover and the recoveries completed here.
fn recovery_line(name: &str, dom: &o2node::Domain) -> Option<String> {
    let r = dom.recovery_state()?;
    let to_recover: Vec<String> = r.recovery_map.iter().map(|n| n.to_string()).collect();
    if !r.active && to_recover.is_empty() && r.completed == 0 {
        return None;
    }
    let node = |n: Option<u8>| n.map_or_else(|| "none".to_string(), |n| n.to_string());
    Some(format!(
        "Recovery of domain {name}: {}, dead node {}, recovery master {}, to recover: {}, completed: {}\n",
        if r.active { "active" } else { "idle" },
        node(r.dead_node),
        node(r.new_master),
        if to_recover.is_empty() { "none".to_string() } else { to_recover.join(" ") },
        r.completed
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_nodes_keep_the_kernel_trailing_space() {
        assert_eq!(
            live_nodes_line([0u8, 2, 5].into_iter()),
            "Nodes in O2CB cluster: 0 2 5 "
        );
    }

    #[test]
    fn timeouts_print_as_the_init_script_and_the_period_only_when_not_the_kernel_s() {
        let mut t = o2nm::Timeouts::default();
        assert_eq!(
            timeout_lines(&t),
            "  Heartbeat dead threshold: 31\n  Network idle timeout: 30000\n  Network keepalive delay: 2000\n  Network reconnect delay: 2000\n"
        );
        t.heartbeat_period_ms = 200;
        assert!(timeout_lines(&t).ends_with("  Heartbeat period (ms): 200\n"));
    }
}
