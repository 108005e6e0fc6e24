//! A C program linked with Debian's libo2dlm (ocfs2-tools-dev) runs unmodified on two FUSE
//! dlmfs mounts once this library is preloaded: initialize (the statfs magic check), EX
//! lock, LVB write, trylock refused across nodes, unlock, PR lock, LVB read, a lock with a
//! BAST callback (gated on the dlmfs capabilities file), destroy.
//! Without the preload libo2dlm refuses the mount. Needs root, /dev/fuse, cc and
//! ocfs2-tools-dev (scripts/install-deps.sh); fails loudly without them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use dlmfs_fuse::{mount, LocalDlm, MountOptions};

const LIBO2DLM: &str = "/usr/lib/x86_64-linux-gnu/libo2dlm.a";

/// The cdylib cargo built for this test run, beside the test executable
/// (target/<profile>/deps/libdlmfs_preload.so).
fn preload_library() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let lib = exe
        .parent()
        .expect("target/<profile>/deps")
        .join("libdlmfs_preload.so");
    assert!(lib.is_file(), "{} was not built", lib.display());
    lib
}

fn compile(out: &Path) {
    assert!(
        Path::new(LIBO2DLM).is_file() && Path::new("/usr/include/o2dlm/o2dlm.h").is_file(),
        "libo2dlm is missing: install ocfs2-tools-dev and comerr-dev (scripts/install-deps.sh)"
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/libo2dlm_client.c");
    let st = Command::new("cc")
        .arg("-o")
        .arg(out)
        .arg(&src)
        .arg(LIBO2DLM)
        .args(["-lcom_err", "-ldl"])
        .status()
        .expect("cc must be installed");
    assert!(
        st.success(),
        "compiling {} against libo2dlm failed",
        src.display()
    );
}

#[test]
fn a_libo2dlm_program_runs_unmodified_under_the_preload() {
    assert!(Path::new("/dev/fuse").exists(), "/dev/fuse is missing");
    let dir = tempfile::tempdir().unwrap();
    let prog = dir.path().join("client");
    compile(&prog);
    let dlm = LocalDlm::new();
    let (p1, p2) = (dir.path().join("n1"), dir.path().join("n2"));
    std::fs::create_dir(&p1).unwrap();
    std::fs::create_dir(&p2).unwrap();
    let m1 = mount(&p1, Arc::new(dlm.node(1)), MountOptions::default()).expect("mount node 1");
    let m2 = mount(&p2, Arc::new(dlm.node(2)), MountOptions::default()).expect("mount node 2");

    let without = Command::new(&prog).arg(&p1).arg(&p2).output().unwrap();
    let text = String::from_utf8_lossy(&without.stdout);
    assert!(
        !without.status.success() && text.contains("initialize node 1"),
        "libo2dlm must refuse a FUSE mount without the preload: {text}"
    );

    let with = Command::new(&prog)
        .arg(&p1)
        .arg(&p2)
        .env("LD_PRELOAD", preload_library())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&with.stdout);
    assert!(with.status.success(), "libo2dlm client failed: {text}");
    assert_eq!(text, "OK\n");
    // libo2dlm's destroy removed its lock files and domain directories.
    assert!(!p1.join("capp").exists());
    drop(m1);
    drop(m2);
}
