//! `o2cb exec`: runs a program with the dlmfs preload library in LD_PRELOAD (kept in front
//! of any LD_PRELOAD already set), passes arguments and the exit status through, and fails
//! with a clear message when the library or the dlmfs mount is missing. (That libo2dlm
//! programs then work is dlmfs-preload's libo2dlm test.)

use std::process::Command;

fn o2cb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_o2cb"))
}

#[test]
fn exec_sets_ld_preload_and_passes_arguments_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libdlmfs_preload.so");
    // Any loadable library stands in for the preload here: libc itself.
    std::fs::copy("/lib/x86_64-linux-gnu/libc.so.6", &lib).unwrap();
    let out = o2cb()
        .args(["exec", "--preload"])
        .arg(&lib)
        .args([
            "--",
            "sh",
            "-c",
            "echo \"$LD_PRELOAD|$1\"; exit 7",
            "sh",
            "arg one",
        ])
        .env("LD_PRELOAD", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}|arg one\n", lib.display())
    );
}

#[test]
fn exec_refuses_a_missing_library_a_missing_program_and_a_path_that_is_not_dlmfs() {
    let out = o2cb()
        .args(["exec", "--preload", "/nonexistent/lib.so", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/lib.so does not exist"));

    let out = o2cb().args(["exec", "--"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no program to run"));

    let dir = tempfile::tempdir().unwrap();
    let out = o2cb()
        .args(["exec", "--dlmfs"])
        .arg(dir.path())
        .args(["--preload", "/lib/x86_64-linux-gnu/libc.so.6", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a mounted dlmfs"),
        "{out:?}"
    );
}
