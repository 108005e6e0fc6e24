//! The ocfs2-tools `o2cb` commands, with ocfs2-tools 1.8.7's arguments,
//! messages, output bytes and exit codes (its quirks included, such as exit
//! code 0 for `add-cluster` of an existing cluster or `list-nodes` of an
//! unknown one, which scripts may rely on).
//!
//! Every command first loads the configuration file (a missing file is an
//! empty configuration); a file the tools would refuse is refused with our own
//! message naming the file, the line and the problem. A command that changed
//! the configuration then rewrites the file atomically.
//!
//! The commands that act on the kernel's configfs belong to the node daemon:
//! `cluster-status` asks the running daemons; `register-cluster`,
//! `unregister-cluster`, `start-heartbeat` and `stop-heartbeat` refuse to run
//! and name `o2cb online` / `o2cb offline`, which do their work.

mod commands;
pub mod getopt;

use std::path::Path;
use std::process::ExitCode;

use o2nm::ClusterConf;

use crate::{eprint_text, path_text, Global};

/// One ocfs2-tools command: its name, usage and help as the tools print them.
pub struct Command {
    pub name: &'static str,
    pub usage: &'static str,
    pub help: &'static str,
    action: Action,
}

#[derive(Clone, Copy)]
enum Action {
    AddCluster,
    RemoveCluster,
    AddNode,
    RemoveNode,
    AddHeartbeat,
    RemoveHeartbeat,
    HeartbeatMode,
    ListClusters,
    List(commands::ListWhat),
    /// Needs the kernel cluster stack (configfs) in ocfs2-tools.
    Kernel,
}

/// The commands in the order `o2cb -h` lists them.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "add-cluster",
        usage: "<clustername>",
        help: "Add cluster to the config file.",
        action: Action::AddCluster,
    },
    Command {
        name: "remove-cluster",
        usage: "<clustername>",
        help: "Removes cluster from the config file.",
        action: Action::RemoveCluster,
    },
    Command {
        name: "add-node",
        usage: "[--ip <ip>] [--port <port>] [--number <num>] <clustername> <nodename>",
        help: "Adds a node to the cluster in the config file.",
        action: Action::AddNode,
    },
    Command {
        name: "remove-node",
        usage: "<clustername> <nodename>",
        help: "Removes a node from the cluster in the config file.",
        action: Action::RemoveNode,
    },
    Command {
        name: "add-heartbeat",
        usage: "<clustername> [<uuid>|<device>]",
        help: "Adds a heartbeat region to the cluster in the config file.",
        action: Action::AddHeartbeat,
    },
    Command {
        name: "remove-heartbeat",
        usage: "<clustername> [<uuid>|<device>]",
        help: "Removes a heartbeat region from the cluster in the config file.",
        action: Action::RemoveHeartbeat,
    },
    Command {
        name: "heartbeat-mode",
        usage: "<clustername> {global|local}",
        help: "Toggles the heartbeat mode between global and local.",
        action: Action::HeartbeatMode,
    },
    Command {
        name: "list-clusters",
        usage: "",
        help: "Lists all the cluster names in the config file.",
        action: Action::ListClusters,
    },
    Command {
        name: "list-cluster",
        usage: "[--oneline] <clustername>",
        help: "Lists all the nodes and heartbeat regions associated with the cluster in the config file.",
        action: Action::List(commands::ListWhat::Cluster),
    },
    Command {
        name: "list-nodes",
        usage: "[--oneline] <clustername>",
        // The trailing space is in ocfs2-tools' help text too.
        help: "Lists all the nodes associated with the cluster in the config file. ",
        action: Action::List(commands::ListWhat::Nodes),
    },
    Command {
        name: "list-heartbeats",
        usage: "[--oneline] <clustername>",
        help: "Lists all the heartbeat regions associated with the cluster in the config file.",
        action: Action::List(commands::ListWhat::Heartbeats),
    },
    Command {
        name: "register-cluster",
        usage: "<clustername>",
        help: "Registers the cluster with configfs.",
        action: Action::Kernel,
    },
    Command {
        name: "unregister-cluster",
        usage: "<clustername>",
        help: "Unregisters the cluster from configfs.",
        action: Action::Kernel,
    },
    Command {
        name: "start-heartbeat",
        usage: "<clustername>",
        help: "Starts global heartbeat.",
        action: Action::Kernel,
    },
    Command {
        name: "stop-heartbeat",
        usage: "<clustername>",
        help: "Stops global heartbeat.",
        action: Action::Kernel,
    },
    Command {
        name: "cluster-status",
        usage: "[<clustername>]",
        help: "Returns 0 if cluster online, 1 otherwise.",
        action: Action::Kernel,
    },
];

/// The ocfs2-tools command with this name.
pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// How a command ended.
struct Outcome {
    ok: bool,
    /// The configuration changed and must be written.
    modified: bool,
    /// Print `usage: <command> <usage>` (wrong arguments).
    usage: bool,
}

impl Outcome {
    fn usage() -> Self {
        Outcome {
            ok: false,
            modified: false,
            usage: true,
        }
    }
    fn failed() -> Self {
        Outcome {
            ok: false,
            modified: false,
            usage: false,
        }
    }
    fn done(modified: bool) -> Self {
        Outcome {
            ok: true,
            modified,
            usage: false,
        }
    }
}

/// What a command works with.
struct Ctx<'a> {
    global: &'a Global,
    /// The command's words, the command name first.
    argv: &'a [String],
    conf: ClusterConf,
}

impl Ctx<'_> {
    /// `o2cb: <message>` on stderr, as the tools' `errorf`.
    fn error(&self, msg: &str) {
        eprint_text(&format!("{}: {msg}\n", self.global.progname));
    }

    /// A message shown with `-v` (ocfs2-tools' VL_APP level).
    fn verbose(&self, msg: &str) {
        if self.global.verbosity >= 1 {
            eprint_text(&format!("{msg}\n"));
        }
    }

    /// A message shown with `-vvv` (ocfs2-tools' VL_DEBUG level).
    fn debug(&self, msg: &str) {
        if self.global.verbosity >= 3 {
            eprint_text(&format!("{msg}\n"));
        }
    }
}

/// Runs an ocfs2-tools command; `argv` starts with the command name.
pub fn run(global: &Global, cmd: &'static Command, argv: &[String]) -> ExitCode {
    let path = &global.config_file;
    // ocfs2-tools opens a directory and reads nothing from it: an empty
    // configuration (writing it back then fails).
    let loaded = if path.is_dir() {
        if global.verbose {
            eprint_text(&format!(
                "{}: warning: {} is a directory, read as an empty configuration\n",
                global.progname,
                path_text(path)
            ));
        }
        Ok((ClusterConf::default(), Vec::new()))
    } else {
        ClusterConf::load_checked(path)
    };
    let conf = match loaded {
        Ok((conf, warnings)) => {
            if global.verbose {
                for w in warnings {
                    // file:line: as in our load errors, so both point the same way.
                    let place = match w.line.0 {
                        Some(line) => format!("{}:{line}", path_text(path)),
                        None => path_text(path),
                    };
                    eprint_text(&format!(
                        "{}: warning: {place}: {}\n",
                        global.progname, w.what
                    ));
                }
            }
            conf
        }
        Err(err) => {
            eprint_text(&format!(
                "{}: {err} (while loading cluster configuration file '{}')\n",
                global.progname,
                path_text(path)
            ));
            return ExitCode::from(1);
        }
    };
    let mut ctx = Ctx { global, argv, conf };
    let outcome = match cmd.action {
        Action::AddCluster => commands::add_cluster(&mut ctx),
        Action::RemoveCluster => commands::remove_cluster(&mut ctx),
        Action::AddNode => commands::add_node(&mut ctx),
        Action::RemoveNode => commands::remove_node(&mut ctx),
        Action::AddHeartbeat => commands::add_heartbeat(&mut ctx),
        Action::RemoveHeartbeat => commands::remove_heartbeat(&mut ctx),
        Action::HeartbeatMode => commands::heartbeat_mode(&mut ctx),
        Action::ListClusters => commands::list_clusters(&ctx),
        Action::List(what) => commands::list(&ctx, what),
        Action::Kernel if cmd.name == "cluster-status" => {
            return crate::cmd_status::cluster_status(argv);
        }
        Action::Kernel => {
            ctx.error(&format!(
                "{} needs the O2CB kernel cluster stack (configfs), which o2cb-rs replaces with its \
                 node daemon: 'o2cb online' registers the cluster and starts global heartbeat, \
                 'o2cb offline' stops both; nothing was done",
                cmd.name
            ));
            Outcome::failed()
        }
    };
    if outcome.usage {
        ctx.error(&format!("usage: {} {}", cmd.name, cmd.usage));
    }
    if outcome.ok && outcome.modified {
        // ocfs2-tools creates /etc/ocfs2 before writing, and no other directory.
        let default_dir = Path::new(o2nm::DEFAULT_CLUSTER_CONF).parent();
        if let Some(dir) = default_dir.filter(|d| path.parent() == Some(*d)) {
            let _ = std::fs::create_dir(dir);
        }
        if let Err(err) = ctx.conf.store(path) {
            ctx.error(&format!(
                "{err} (while storing the cluster configuration in file '{}')",
                path_text(path)
            ));
            return ExitCode::from(1);
        }
    }
    ExitCode::from(if outcome.ok { 0 } else { 1 })
}
