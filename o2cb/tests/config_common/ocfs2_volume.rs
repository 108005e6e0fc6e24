//! OCFS2 volumes made by ocfs2-tools for tests: `mkfs.ocfs2` on a plain file
//! (global heartbeat, 4K blocks and clusters, 4 slots) and the UUID that
//! `debugfs.ocfs2` reports for it. Included with `#[path]` by the tests that
//! need a volume (config_diff, heartbeat_cli, the compat unit tests).

#![allow(dead_code)] // each includer uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// An ocfs2-tools program, wherever the distribution put it.
pub fn tool(name: &str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("{name} not found: install ocfs2-tools (scripts/install-deps.sh)")
        })
}

/// Creates `path` of `bytes` bytes and formats it for cluster `cluster` with
/// global heartbeat; panics with mkfs.ocfs2's message if it refuses.
pub fn mkfs_global(path: &Path, bytes: u64, cluster: &str) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(bytes))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let out = Command::new(tool("mkfs.ocfs2"))
        .args([
            "-q",
            "-b",
            "4K",
            "-C",
            "4K",
            "-N",
            "4",
            "--cluster-stack=o2cb",
        ])
        .arg(format!("--cluster-name={cluster}"))
        .args(["--global-heartbeat", "-F"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("mkfs.ocfs2 runs");
    assert!(
        out.status.success(),
        "mkfs.ocfs2 {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The volume UUID as `debugfs.ocfs2 -R stats` prints it.
pub fn debugfs_uuid(path: &Path) -> String {
    let out = Command::new(tool("debugfs.ocfs2"))
        .args(["-R", "stats"])
        .arg(path)
        .output()
        .expect("debugfs.ocfs2 runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("UUID:"))
        .map(|u| u.trim().to_string())
        .unwrap_or_else(|| panic!("debugfs.ocfs2 printed no UUID for {}", path.display()))
}
