//! `o2cb exec [--dlmfs PATH] [--preload LIB] -- PROGRAM [ARGS...]`: runs PROGRAM with the
//! `dlmfs-preload` library in `LD_PRELOAD`, so programs linked with libo2dlm (which insists
//! on the kernel dlmfs' statfs magic) work on this project's FUSE dlmfs unmodified.
//!
//! The library is found, in order: `--preload LIB`, `$O2CB_DLMFS_PRELOAD`, beside the `o2cb`
//! executable (or in its `deps/`, as in a cargo build tree), `/usr/local/lib/o2cb/`, `/usr/lib/o2cb/`. `--dlmfs PATH` first checks that
//! PATH is a mounted dlmfs (ours or the kernel's) and fails otherwise.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::Global;

/// The library's file name, as cargo builds it.
const LIBRARY: &str = "libdlmfs_preload.so";
const USAGE: &str = "usage: o2cb exec [--dlmfs PATH] [--preload LIB] -- PROGRAM [ARGS...]";
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
const DLMFS_MAGIC: i64 = 0x76a9_f425;

/// Entry point.
pub fn run(_global: &Global, args: &[String]) -> anyhow::Result<ExitCode> {
    let mut dlmfs: Option<PathBuf> = None;
    let mut preload: Option<PathBuf> = std::env::var_os("O2CB_DLMFS_PRELOAD").map(PathBuf::from);
    let mut rest = args.iter();
    let program = loop {
        match rest.next().map(String::as_str) {
            Some("--") => break rest.next().map(String::as_str),
            Some("--dlmfs") => dlmfs = Some(crate::path_of(rest.next().context(USAGE)?)),
            Some("--preload") => preload = Some(crate::path_of(rest.next().context(USAGE)?)),
            Some("-h" | "--help") => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            Some(other) if other.starts_with('-') => bail!("unknown option {other:?}\n{USAGE}"),
            other => break other,
        }
    };
    let Some(program) = program else {
        bail!("no program to run\n{USAGE}");
    };
    if let Some(p) = &dlmfs {
        check_dlmfs(p)?;
    }
    let lib = find_library(preload)?;
    let mut value = OsString::from(lib.as_os_str());
    if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        value.push(" ");
        value.push(old);
    }
    let args: Vec<PathBuf> = rest.map(|a| crate::path_of(a)).collect();
    let err = std::process::Command::new(crate::path_of(program))
        .args(&args)
        .env("LD_PRELOAD", value)
        .exec();
    Err(err).with_context(|| format!("cannot run {program}"))
}

fn find_library(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        if p.is_file() {
            return Ok(p);
        }
        bail!("preload library {} does not exist", p.display());
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        candidates.push(dir.join(LIBRARY));
        // Where cargo leaves it in a build tree (target/<profile>/deps).
        candidates.push(dir.join("deps").join(LIBRARY));
    }
    candidates.push(PathBuf::from("/usr/local/lib/o2cb").join(LIBRARY));
    candidates.push(PathBuf::from("/usr/lib/o2cb").join(LIBRARY));
    match candidates.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => bail!(
            "cannot find {LIBRARY} (looked in {}); build it with `cargo build -p dlmfs-preload` \
             or name it with --preload or O2CB_DLMFS_PRELOAD",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// PATH must be a mount point of a FUSE file system (our dlmfs) or of the kernel's dlmfs.
fn check_dlmfs(path: &Path) -> anyhow::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{}: path contains a NUL byte", path.display()))?;
    // SAFETY: statfs fills the zeroed buffer; c is NUL-terminated.
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut sfs) } != 0 {
        let e = std::io::Error::last_os_error();
        bail!("{}: {e}", path.display());
    }
    #[allow(clippy::unnecessary_cast)]
    let ftype = sfs.f_type as i64;
    if ftype != FUSE_SUPER_MAGIC && ftype != DLMFS_MAGIC {
        bail!(
            "{} is not a mounted dlmfs (file system type {ftype:#x}); start the node with `o2cb online`",
            path.display()
        );
    }
    Ok(())
}
