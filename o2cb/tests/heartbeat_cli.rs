//! `o2cb heartbeat format` and `dump` as a user meets them: region files of both block sizes,
//! OCFS2 volumes made by mkfs.ocfs2 (checked against debugfs.ocfs2), and clear errors.

use std::path::Path;
use std::process::{Command, Output};

#[path = "config_common/ocfs2_volume.rs"]
mod ocfs2_volume;
use ocfs2_volume::{debugfs_uuid, mkfs_global};

const BIN: &str = env!("CARGO_BIN_EXE_o2cb");

fn o2cb(args: &[&str], path: &Path) -> Output {
    Command::new(BIN).args(args).arg(path).output().unwrap()
}

fn o2cb_then(pre: &[&str], path: &Path, post: &[&str]) -> Output {
    Command::new(BIN)
        .args(pre)
        .arg(path)
        .args(post)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn format_and_dump_a_4096_byte_region() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r4k");
    let out = o2cb_then(
        &["heartbeat", "format"],
        &path,
        &["--block-bytes", "4096", "--blocks", "32"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("block_bytes 4096, start_block 1, blocks 32"),
        "{stdout}"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 33 * 4096);
    let uuid = stdout.split_whitespace().nth(3).unwrap().to_string();
    assert_eq!(uuid.len(), 32);

    let out = o2cb_then(&["heartbeat", "dump"], &path, &["--interval-ms", "50"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.starts_with(&format!(
            "Region {uuid} on {} (region file): block_bytes 4096, start_block 1, blocks 32",
            path.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("(32 empty slots not shown)"), "{stdout}");

    // Formatting over an existing region would wipe it: refused.
    let out = o2cb(&["heartbeat", "format"], &path);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("File exists"), "{stderr}");
}

#[test]
fn bad_arguments_and_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = o2cb_then(
        &["heartbeat", "format"],
        &dir.path().join("x"),
        &["--block-bytes", "1000"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("invalid block_bytes 1000"),
        "{}",
        text(&out).1
    );

    // A missing file is named once, with the system's reason once.
    let out = o2cb(&["heartbeat", "dump"], &dir.path().join("missing"));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out).1;
    assert!(err.contains("missing: No such file or directory"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");

    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0x5au8; 70000]).unwrap();
    let out = o2cb(&["heartbeat", "dump"], &junk);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains("neither an o2cb heartbeat region file nor an OCFS2 volume"),
        "{}",
        text(&out).1
    );

    let region = dir.path().join("small");
    assert!(
        o2cb_then(&["heartbeat", "format"], &region, &["--blocks", "4"])
            .status
            .success()
    );
    let out = o2cb_then(
        &["heartbeat", "run"],
        &region,
        &["--node", "9", "--period-ms", "100"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("node 9 has no slot in region"),
        "{}",
        text(&out).1
    );

    let out = o2cb_then(
        &["heartbeat", "run"],
        &region,
        &["--node", "1", "--period-ms", "5"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains("heartbeat period 5 ms is out of range"),
        "{}",
        text(&out).1
    );

    // A region file whose header was damaged is named as such.
    let mut bytes = std::fs::read(&region).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&region, &bytes).unwrap();
    let out = o2cb(&["heartbeat", "dump"], &region);
    assert!(
        text(&out)
            .1
            .contains("not a heartbeat region file: header checksum"),
        "{}",
        text(&out).1
    );
}

#[test]
fn dump_of_an_ocfs2_volume_names_it_as_ocfs2_tools_does() {
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    mkfs_global(&vol, 128 << 20, "clitest");
    let uuid = debugfs_uuid(&vol);

    let out = o2cb_then(&["heartbeat", "dump"], &vol, &["--interval-ms", "50"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let first = stdout.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "Region {uuid} on {} (OCFS2 volume, heartbeat inode",
            vol.display()
        )),
        "{first}"
    );
    assert!(
        first.contains("cluster clitest, global heartbeat): block_bytes 512"),
        "{first}"
    );
    assert!(first.ends_with("blocks 255"), "{first}");
}

#[test]
fn dump_raw_decodes_the_kernels_region_capture() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/kernel-6.1/hb-region-node1.bin");
    let out = o2cb_then(
        &["heartbeat", "dump", "--raw"],
        &fixture,
        &["--interval-ms", "10"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].ends_with("(raw slots): block_bytes 512, start_block 0, blocks 255"),
        "{stdout}"
    );
    // The kernel's block, with the field values the capture's README gives; a static image
    // shows no change between the two reads: "dead".
    assert_eq!(
        lines[2],
        "   1     1  1795304788            0xb5b8d44cc0cd52ac  0xf5a82e13  good    62000  dead"
    );
    assert_eq!(lines[3], "(254 empty slots not shown)");
}

#[test]
fn help_names_start_and_stop() {
    let out = Command::new(BIN)
        .args(["heartbeat", "--help"])
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    for cmd in [
        "heartbeat start REGION",
        "heartbeat stop REGION",
        "format",
        "dump",
        "run",
    ] {
        assert!(stdout.contains(cmd), "{cmd} missing from:\n{stdout}");
    }
}
