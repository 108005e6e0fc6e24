//! OCFS2 volumes made by ocfs2-tools for tests: `mkfs.ocfs2` on a plain file with global
//! heartbeat, and what `debugfs.ocfs2` reports for it. Included with `#[path]` by every test
//! that needs a volume or an installed tool: config_diff and heartbeat_cli here, the compat unit
//! tests, o2hb's ocfs2_oracle and the integration crate's kernel_interop.

#![allow(dead_code)] // each includer uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A program `scripts/install-deps.sh` installs (ocfs2-tools, qemu), wherever the
/// distribution put it.
pub fn tool(name: &str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is not installed: run scripts/install-deps.sh"))
}

/// Creates `path` of `bytes` bytes and formats it for cluster `cluster` with global heartbeat,
/// 4K blocks and clusters and 4 slots; panics with mkfs.ocfs2's message if it refuses.
pub fn mkfs_global(path: &Path, bytes: u64, cluster: &str) {
    mkfs_global_with(path, bytes, cluster, &["-b", "4K", "-C", "4K", "-N", "4"]);
}

/// [`mkfs_global`] with mkfs.ocfs2 `options` (block and cluster size, slots, label, features)
/// in place of its geometry.
pub fn mkfs_global_with(path: &Path, bytes: u64, cluster: &str, options: &[&str]) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(bytes))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let out = Command::new(tool("mkfs.ocfs2"))
        .arg("-q")
        .args(options)
        .arg("--cluster-stack=o2cb")
        .arg(format!("--cluster-name={cluster}"))
        .args(["--global-heartbeat", "-F"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("mkfs.ocfs2 runs");
    assert!(
        out.status.success(),
        "mkfs.ocfs2 {options:?} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `debugfs.ocfs2 -R <request>` prints for the volume at `path`; panics if it fails.
pub fn debugfs(path: &Path, request: &str) -> String {
    let out = Command::new(tool("debugfs.ocfs2"))
        .args(["-R", request])
        .arg(path)
        .output()
        .expect("debugfs.ocfs2 runs");
    assert!(
        out.status.success(),
        "debugfs.ocfs2 -R {request:?} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The volume UUID as `debugfs.ocfs2 -R stats` prints it.
pub fn debugfs_uuid(path: &Path) -> String {
    debugfs(path, "stats")
        .lines()
        .find_map(|l| l.trim().strip_prefix("UUID:"))
        .map(|u| u.trim().to_string())
        .unwrap_or_else(|| panic!("debugfs.ocfs2 printed no UUID for {}", path.display()))
}
