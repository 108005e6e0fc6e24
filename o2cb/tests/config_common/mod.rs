//! Shared by the differential tests: running ocfs2-tools' `o2cb` (the oracle)
//! and ours side by side on separate files.

#![allow(dead_code)] // each test file uses its own subset

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};

use o2nm::text;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's ocfs2-tools `o2cb`.
pub const ORACLE: &str = "/usr/sbin/o2cb";

/// The oracle, or a loud failure telling how to get it.
pub fn oracle() -> PathBuf {
    assert!(
        Path::new(ORACLE).is_file(),
        "{ORACLE} is missing: these tests compare against Debian's ocfs2-tools; \
         install it with scripts/install-deps.sh (apt-get install ocfs2-tools)"
    );
    PathBuf::from(ORACLE)
}

/// Our `o2cb`.
pub fn ours() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_o2cb"))
}

/// What one run printed and how it ended (output bytes kept exactly, see
/// `o2nm::text`; arguments are passed as the bytes they stand for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The exit code, or `None` if a signal killed it.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `bin` as `o2cb` (argv[0], so that messages name the same program) in
/// `dir`, with `--config-file=<file>` then `args`.
pub fn run(bin: &Path, dir: &Path, file: &str, args: &[String]) -> Run {
    let mut all = vec![format!("--config-file={file}")];
    all.extend(args.iter().cloned());
    run_raw(bin, dir, &all)
}

/// Runs `bin` as `o2cb` in `dir` with exactly `args`.
pub fn run_raw(bin: &Path, dir: &Path, args: &[String]) -> Run {
    let out = Command::new(bin)
        .arg0("o2cb")
        .current_dir(dir)
        .env_remove("O2CB_NODE")
        .args(args.iter().map(|a| OsString::from_vec(text::encode(a))))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    Run {
        code: out.status.code(),
        signal: out.status.signal(),
        stdout: text::decode(&out.stdout),
        stderr: text::decode(&out.stderr),
    }
}

/// Stderr with the differences we make on purpose taken out: our warnings
/// (printed with -v only) and the text of a refusal to load the file (ours
/// names the file, the line and the problem; ocfs2-tools prints an error
/// number).
pub fn comparable_stderr(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.starts_with("o2cb: warning: "))
        .map(|l| {
            if l.contains("while loading cluster configuration file") {
                "<refused to load the configuration file>"
            } else {
                l
            }
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Fails unless both tools ended the same way, printed the same stdout and the same
/// [`comparable_stderr`], and left the same `file` (or none) in their directories `dirs`;
/// `ctx` says at which command.
pub fn prop_assert_same_outcome(
    theirs: &Run,
    ours: &Run,
    dirs: [&Path; 2],
    file: &str,
    ctx: &str,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(theirs.code, ours.code, "exit code differs at {}", ctx);
    prop_assert_eq!(&theirs.stdout, &ours.stdout, "stdout differs at {}", ctx);
    prop_assert_eq!(
        comparable_stderr(&theirs.stderr),
        comparable_stderr(&ours.stderr),
        "stderr differs at {}",
        ctx
    );
    let [a, b] = dirs.map(|d| std::fs::read(d.join(file)).ok());
    prop_assert_eq!(
        a.as_deref().map(String::from_utf8_lossy),
        b.as_deref().map(String::from_utf8_lossy),
        "file differs after {}",
        ctx
    );
    Ok(())
}

/// Every `list-*` output for every cluster of the file, as one text.
pub fn all_listings(bin: &Path, dir: &Path, file: &str) -> String {
    let clusters = run(bin, dir, file, &["list-clusters".to_string()]);
    let mut text = format!("{clusters:?}\n");
    if clusters.code == Some(0) {
        for name in clusters.stdout.lines() {
            for args in [
                vec!["list-cluster", name],
                vec!["list-cluster", "--oneline", name],
                vec!["list-nodes", name],
                vec!["list-nodes", "--oneline", name],
                vec!["list-heartbeats", name],
                vec!["list-heartbeats", "--oneline", name],
            ] {
                let args: Vec<String> = args.into_iter().map(String::from).collect();
                let r = run(bin, dir, file, &args);
                text.push_str(&format!("{args:?}: {r:?}\n"));
            }
        }
    }
    text
}
