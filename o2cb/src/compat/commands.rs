//! The configuration commands of ocfs2-tools' `o2cb`, one function each,
//! reproducing its argument handling, messages and exit codes.

use std::ffi::{CStr, CString};
use std::net::Ipv4Addr;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use o2nm::cnum::{c_space, strtol0_int};
use o2nm::{
    check_cluster_name, parse_ipv4_strict, ClusterNameProblem, ClusterStanza, HeartbeatMode,
    NodeStanza, SourceLine,
};

use super::getopt::{Getopt, Item, LongOpt, Order};
use super::{Ctx, Outcome};
use crate::print_text;

/// Which objects a `list-*` command shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListWhat {
    Cluster,
    Nodes,
    Heartbeats,
}

/// ocfs2-tools' `tools_strstrip`: drop leading and trailing whitespace.
fn strip(s: &str) -> &str {
    s.trim_matches(|c: char| u8::try_from(c).is_ok_and(c_space))
}

pub(super) fn add_cluster(ctx: &mut Ctx) -> Outcome {
    let Some(arg) = ctx.argv.get(1) else {
        return Outcome::usage();
    };
    let name = strip(arg);
    if let Err(problem) = check_cluster_name(name) {
        let why = match problem {
            ClusterNameProblem::Empty => "zero length".to_string(),
            ClusterNameProblem::TooLong => format!("max {} characters", o2nm::CLUSTER_NAME_MAX),
            ClusterNameProblem::NotAlphanumeric => {
                "only alpha-numeric characters allowed".to_string()
            }
        };
        ctx.error(&format!("Cluster name is invalid ; {why}"));
        return Outcome::failed();
    }
    match ctx.conf.add_cluster(name) {
        Ok(_) => {
            ctx.verbose(&format!("Added cluster '{name}'"));
            Outcome::done(true)
        }
        Err(err) => {
            // ocfs2-tools reports this but exits 0.
            ctx.error(&err.to_string());
            Outcome::done(false)
        }
    }
}

pub(super) fn remove_cluster(ctx: &mut Ctx) -> Outcome {
    let name = match ctx.argv.get(1).map(|a| strip(a)) {
        Some(name) if !name.is_empty() => name,
        _ => return Outcome::usage(),
    };
    match ctx.conf.remove_cluster(name) {
        Ok(_) => {
            ctx.verbose(&format!("Removed cluster '{name}'"));
            Outcome::done(true)
        }
        Err(err) => {
            ctx.error(&err.to_string());
            Outcome::failed()
        }
    }
}

/// `getaddrinfo` for an IPv4 TCP address, as `o2cb add-node` looks up a node
/// name given without `--ip`; the error is `gai_strerror`'s text.
fn resolve_ipv4(name: &str) -> Result<Ipv4Addr, String> {
    let c_name = CString::new(o2nm::text::encode(name))
        .map_err(|_| "Name or service not known".to_string())?;
    // SAFETY: zeroed addrinfo is the documented way to build hints.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_INET;
    hints.ai_protocol = libc::IPPROTO_TCP;
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C string and hints; res is freed below.
    let rc = unsafe { libc::getaddrinfo(c_name.as_ptr(), std::ptr::null(), &hints, &mut res) };
    if rc != 0 {
        // SAFETY: gai_strerror returns a static NUL-terminated string.
        let msg = unsafe { CStr::from_ptr(libc::gai_strerror(rc)) };
        return Err(msg.to_string_lossy().into_owned());
    }
    // SAFETY: on success res points to at least one entry; AF_INET entries
    // carry a sockaddr_in.
    let addr = unsafe {
        let first = &*res;
        let found = if first.ai_addr.is_null() || first.ai_family != libc::AF_INET {
            None
        } else {
            let sin = &*(first.ai_addr as *const libc::sockaddr_in);
            Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
        };
        libc::freeaddrinfo(res);
        found
    };
    addr.ok_or_else(|| "Address family for hostname not supported".to_string())
}

pub(super) fn add_node(ctx: &mut Ctx) -> Outcome {
    const LONGS: &[LongOpt] = &[
        LongOpt::with_arg("ip", 'i'),
        LongOpt::with_arg("port", 'p'),
        LongOpt::with_arg("number", 'n'),
    ];
    let (mut ip, mut port, mut number) = (None::<String>, -1i32, -1i32);
    let mut bad_usage = false;
    let mut opts = Getopt::new(ctx.argv, "", LONGS, Order::Permute);
    for item in opts.by_ref() {
        match item {
            Item::Opt { key: 'i', arg } => ip = arg,
            Item::Opt { key, arg } => {
                let (slot, what) = if key == 'p' {
                    (&mut port, "port")
                } else {
                    (&mut number, "node")
                };
                match strtol0_int(arg.as_deref().unwrap_or("")) {
                    Some(v) => *slot = v,
                    None => {
                        ctx.error(&format!("Invalid {what} number"));
                        return Outcome::usage();
                    }
                }
            }
            Item::Error(msg) => {
                crate::eprint_text(&format!("{msg}\n"));
                bad_usage = true;
            }
        }
    }
    let operands = opts.into_operands();
    let (Some(cluster_name), Some(raw_node), false) =
        (operands.first(), operands.get(1), bad_usage)
    else {
        return Outcome::usage();
    };
    let node_name = strip(raw_node);
    if node_name.is_empty() {
        ctx.error("Node name cannot be zero length");
        return Outcome::usage();
    }
    ctx.debug(&format!(
        "Add node '{node_name}' in cluster '{cluster_name}' having ip '{}', port '{port}' and number '{number}'",
        ip.as_deref().unwrap_or("auto")
    ));
    let Some(cluster) = ctx.conf.cluster(cluster_name) else {
        ctx.error(&format!("Unknown cluster '{cluster_name}'"));
        return Outcome::failed();
    };
    let addr = match &ip {
        Some(text) => match parse_ipv4_strict(text) {
            Some(a) => a,
            None => {
                ctx.error(&format!("Bad IP Address '{text}'"));
                return Outcome::failed();
            }
        },
        None => match resolve_ipv4(node_name) {
            Ok(a) => a,
            Err(why) => {
                ctx.error(&format!(
                    "{why}, while looking up the IP address for '{node_name}'"
                ));
                return Outcome::failed();
            }
        },
    };
    ctx.debug(&format!("Validated IP address '{addr}'"));
    let number = if number == -1 {
        match cluster.lowest_unused_number() {
            Some(n) => n,
            None => {
                ctx.error("Cluster is full - No more nodes can be added to it");
                return Outcome::failed();
            }
        }
    } else {
        let Some(n) = u32::try_from(number)
            .ok()
            .filter(|n| *n <= u32::from(o2nm::MAX_NODE_NUMBER))
        else {
            ctx.error(&format!(
                "Nodenum should be >=0 and < {} but is {number}",
                o2nm::MAX_NODES
            ));
            return Outcome::failed();
        };
        if cluster.node_by_number(n).is_some() {
            ctx.error(&format!("Choose another node number as '{n}' is in use"));
            return Outcome::failed();
        }
        n
    };
    ctx.debug(&format!("Validated node number '{number}'"));
    if port == -1 {
        port = i32::from(o2nm::DEFAULT_PORT);
    }
    let node = NodeStanza {
        name: node_name.to_string(),
        number,
        ip_address: addr,
        // The tools keep the port in an unsigned int: -5 becomes 4294967291.
        ip_port: port as u32,
        line: SourceLine(None),
    };
    let added = match ctx.conf.cluster_mut(cluster_name) {
        Some(c) => c.add_node(node),
        None => return Outcome::failed(),
    };
    if let Err(err) = added {
        ctx.error(&err.to_string());
        return Outcome::failed();
    }
    ctx.verbose(&format!(
        "Added node '{node_name}' in cluster '{cluster_name}' having ip '{addr}', port '{port}' and number '{number}'"
    ));
    Outcome::done(true)
}

pub(super) fn remove_node(ctx: &mut Ctx) -> Outcome {
    let (Some(cluster_name), Some(node_name)) = (ctx.argv.get(1), ctx.argv.get(2)) else {
        return Outcome::usage();
    };
    edit_cluster(
        ctx,
        cluster_name,
        |c| c.remove_node(node_name),
        format!("Removed node '{node_name}' from cluster '{cluster_name}'"),
    )
}

/// Applies `edit` to the cluster named `cluster_name` and says `done` at `-v`; an unknown
/// cluster or an edit the configuration refuses is reported and fails the command.
fn edit_cluster<T, E: ToString>(
    ctx: &mut Ctx,
    cluster_name: &str,
    edit: impl FnOnce(&mut ClusterStanza) -> Result<T, E>,
    done: String,
) -> Outcome {
    let Some(cluster) = ctx.conf.cluster_mut(cluster_name) else {
        ctx.error(&format!("Unknown cluster '{cluster_name}'"));
        return Outcome::failed();
    };
    if let Err(err) = edit(cluster) {
        ctx.error(&err.to_string());
        return Outcome::failed();
    }
    ctx.verbose(&done);
    Outcome::done(true)
}

/// The UUID of the OCFS2 volume at `path`, from its superblock.
fn volume_uuid(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", crate::path_text(path)))?;
    o2hb::ocfs2::read_superblock(&file, path)
        .map(|sb| sb.uuid)
        .map_err(|e| e.to_string())
}

/// The region named by a command argument: a block device stands for its
/// OCFS2 volume, whose UUID names the region; anything else is the name.
fn region_of(ctx: &Ctx, arg: &str) -> Option<String> {
    let path = crate::path_of(arg);
    let is_block = std::fs::metadata(&path).is_ok_and(|m| m.file_type().is_block_device());
    if !is_block {
        ctx.debug(&format!("'{arg}' is not a block device; assuming region"));
        ctx.debug(&format!("Heartbeat region '{arg}'"));
        return Some(arg.to_string());
    }
    ctx.debug(&format!("Reading region of block device '{arg}'"));
    match volume_uuid(&path) {
        Ok(uuid) => {
            ctx.debug(&format!("Heartbeat region '{uuid}'"));
            Some(uuid)
        }
        Err(why) => {
            ctx.error(&format!("{why} while reading region on device '{arg}'"));
            None
        }
    }
}

pub(super) fn add_heartbeat(ctx: &mut Ctx) -> Outcome {
    let (Some(cluster_name), Some(arg)) = (ctx.argv.get(1), ctx.argv.get(2)) else {
        return Outcome::usage();
    };
    let Some(region) = region_of(ctx, strip(arg)) else {
        return Outcome::failed();
    };
    edit_cluster(
        ctx,
        cluster_name,
        |c| c.add_heartbeat(&region),
        format!("Added heartbeat region '{region}' to cluster '{cluster_name}'"),
    )
}

pub(super) fn remove_heartbeat(ctx: &mut Ctx) -> Outcome {
    let (Some(cluster_name), Some(arg)) = (ctx.argv.get(1), ctx.argv.get(2)) else {
        return Outcome::usage();
    };
    let Some(region) = region_of(ctx, arg) else {
        return Outcome::failed();
    };
    edit_cluster(
        ctx,
        cluster_name,
        |c| c.remove_heartbeat(&region),
        format!("Removed heartbeat region '{region}' from cluster '{cluster_name}'"),
    )
}

pub(super) fn heartbeat_mode(ctx: &mut Ctx) -> Outcome {
    let (Some(cluster_name), Some(mode)) = (ctx.argv.get(1), ctx.argv.get(2)) else {
        return Outcome::usage();
    };
    // Only the exact lower-case words, although the file may say "Global".
    let mode = match mode.as_str() {
        "global" => HeartbeatMode::Global,
        "local" => HeartbeatMode::Local,
        _ => return Outcome::usage(),
    };
    edit_cluster(
        ctx,
        cluster_name,
        |c| {
            c.heartbeat_mode = mode;
            Ok::<(), std::convert::Infallible>(())
        },
        format!("Changed heartbeat mode in cluster '{cluster_name}' to '{mode}'"),
    )
}

pub(super) fn list_clusters(ctx: &Ctx) -> Outcome {
    let mut out = String::new();
    for c in &ctx.conf.clusters {
        out.push_str(&c.name);
        out.push('\n');
    }
    print_text(&out);
    Outcome::done(false)
}

pub(super) fn list(ctx: &Ctx, what: ListWhat) -> Outcome {
    const LONGS: &[LongOpt] = &[LongOpt::flag("oneline", 'o')];
    let mut oneline = false;
    let mut bad_usage = false;
    let mut opts = Getopt::new(ctx.argv, "", LONGS, Order::Permute);
    for item in opts.by_ref() {
        match item {
            Item::Opt { .. } => oneline = true,
            Item::Error(msg) => {
                crate::eprint_text(&format!("{msg}\n"));
                bad_usage = true;
            }
        }
    }
    let operands = opts.into_operands();
    let (Some(name), false) = (operands.first(), bad_usage) else {
        return Outcome::usage();
    };
    let Some(cluster) = ctx.conf.cluster(name) else {
        // ocfs2-tools reports this but exits 0.
        ctx.error(&format!("Unknown cluster '{name}'"));
        return Outcome::done(false);
    };
    // The tools print these numbers with %d, so large values show negative.
    let mut out = String::new();
    if what != ListWhat::Nodes {
        for hb in &cluster.heartbeats {
            let region = &hb.region;
            out.push_str(&if oneline {
                format!("heartbeat: {region} {name}\n")
            } else {
                format!("heartbeat:\n\tregion = {region}\n\tcluster = {name}\n\n")
            });
        }
    }
    if what != ListWhat::Heartbeats {
        for n in &cluster.nodes {
            let (num, port, ip, node) = (n.number as i32, n.ip_port as i32, n.ip_address, &n.name);
            out.push_str(&if oneline {
                format!("node: {num} {node} {ip}:{port} {name}\n")
            } else {
                format!(
                    "node:\n\tnumber = {num}\n\tname = {node}\n\tip_address = {ip}\n\tip_port = {port}\n\tcluster = {name}\n\n"
                )
            });
        }
    }
    if what == ListWhat::Cluster {
        let (count, mode) = (cluster.node_count as i32, cluster.heartbeat_mode);
        out.push_str(&if oneline {
            format!("cluster: {count} {mode} {name}\n")
        } else {
            format!(
                "cluster:\n\tnode_count = {count}\n\theartbeat_mode = {mode}\n\tname = {name}\n\n"
            )
        });
    }
    print_text(&out);
    Outcome::done(false)
}

#[cfg(test)]
#[path = "../../tests/config_common/ocfs2_volume.rs"]
mod ocfs2_volume;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_uuid_matches_debugfs_ocfs2() {
        let dir = tempfile::tempdir().expect("temp dir");
        let image = dir.path().join("vol.img");
        ocfs2_volume::mkfs_global(&image, 64 << 20, "abc");
        let uuid = ocfs2_volume::debugfs_uuid(&image);
        assert_eq!(volume_uuid(&image), Ok(uuid));
        assert!(volume_uuid(dir.path()).is_err());
    }

    #[test]
    fn strip_like_tools_strstrip() {
        assert_eq!(strip(" \tab c\n "), "ab c");
        assert_eq!(strip("   "), "");
    }
}
