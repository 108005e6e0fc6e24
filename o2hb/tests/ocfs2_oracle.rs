//! OCFS2 heartbeat discovery checked against ocfs2-tools: volumes made by `mkfs.ocfs2` with
//! several block and cluster sizes (inline and extent-mapped system directories), compared
//! with what `debugfs.ocfs2` reports; then our heartbeat writes read back through
//! `debugfs.ocfs2 -R "dump //heartbeat"`.

#[path = "../../o2cb/tests/config_common/ocfs2_volume.rs"]
mod ocfs2_volume;

use o2hb::driver::{DriverConfig, Heartbeat};
use o2hb::source::RegionKind;
use o2hb::{SlotView, Timing};
use ocfs2_volume::{debugfs, mkfs_global_with};
use std::path::Path;

/// A 200 MiB volume of cluster `oracle` with 8 slots and the given geometry and features.
fn mkfs(path: &Path, block: &str, cluster: &str, features: &str) {
    let features = format!("--fs-features={features}");
    let geometry = [
        "-b", block, "-C", cluster, "-N", "8", "-L", "hbtest", &features,
    ];
    mkfs_global_with(path, 200 << 20, "oracle", &geometry);
}

/// The whitespace-separated word after `key` on the first line containing it.
fn field(text: &str, key: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.contains(key))
        .unwrap_or_else(|| panic!("no {key:?} in:\n{text}"));
    let rest = &line[line.find(key).unwrap() + key.len()..];
    rest.split_whitespace().next().unwrap_or("").to_string()
}

#[test]
fn discovery_matches_debugfs_for_several_geometries() {
    let dir = tempfile::tempdir().unwrap();
    for (block, cluster, features) in [
        ("512", "4K", "noinline-data"),
        ("1K", "8K", "noinline-data"),
        ("2K", "4K", "inline-data"),
        ("4K", "4K", "inline-data"),
        ("4K", "64K", "noinline-data"),
    ] {
        let img = dir.path().join(format!("vol-{block}-{cluster}"));
        mkfs(&img, block, cluster, features);
        let hb = o2hb::ocfs2::heartbeat_file_at(&img).unwrap();
        let what = format!("{block}/{cluster}/{features}");

        let stats = debugfs(&img, "stats");
        assert_eq!(hb.superblock.uuid, field(&stats, "UUID:"), "{what}");
        assert_eq!(
            hb.superblock.block_size_bits.to_string(),
            field(&stats, "Block Size Bits:"),
            "{what}"
        );
        assert_eq!(
            hb.superblock.cluster_size_bits.to_string(),
            field(&stats, "Cluster Size Bits:"),
            "{what}"
        );
        assert_eq!(
            hb.superblock.system_dir_blkno.to_string(),
            field(&stats, "System Dir Blknum:"),
            "{what}"
        );
        assert_eq!(hb.superblock.label, field(&stats, "Label:"), "{what}");
        assert_eq!(
            hb.superblock.cluster_name.as_deref(),
            Some("oracle"),
            "{what}"
        );
        assert!(
            stats.contains("Globalheartbeat") && hb.superblock.global_heartbeat,
            "{what}"
        );

        let stat = debugfs(&img, "stat //heartbeat");
        assert_eq!(hb.inode_blkno.to_string(), field(&stat, "Inode:"), "{what}");
        let extent = stat
            .lines()
            .skip_while(|l| !l.contains("Block#"))
            .nth(1)
            .unwrap_or_else(|| panic!("{stat}"));
        let cols: Vec<&str> = extent.split_whitespace().collect();
        assert_eq!(hb.extent_clusters.to_string(), cols[2], "{what}");
        assert_eq!(hb.extent_blkno.to_string(), cols[3], "{what}");

        // The region ocfs2-tools would hand the kernel: UUID name, 512-byte sectors on a file,
        // start in sectors, at most 255 slots.
        let bits = hb.superblock.block_size_bits;
        assert_eq!(hb.region_name, hb.superblock.uuid);
        assert_eq!(hb.geometry.block_bytes(), 512);
        assert_eq!(
            hb.geometry.start_block(),
            hb.extent_blkno << (bits - 9),
            "{what}"
        );
        let file_blocks =
            (u64::from(hb.extent_clusters) << hb.superblock.cluster_size_bits) >> bits;
        assert_eq!(
            u64::from(hb.geometry.blocks()),
            file_blocks.min(255),
            "{what}"
        );
    }
}

#[test]
fn our_heartbeat_lands_in_the_volumes_heartbeat_file() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("vol");
    mkfs(&img, "4K", "4K", "inline-data");
    let src = o2hb::source::open(&img).unwrap();
    assert!(matches!(src.kind, RegionKind::Ocfs2(_)));

    let mut cfg = DriverConfig::new(3);
    cfg.timing = Timing::new(50, 5).unwrap();
    let hb = Heartbeat::start(cfg).unwrap();
    hb.start_region(&src).unwrap();
    hb.shutdown();

    // ocfs2-tools' view of the heartbeat file: slot 3 holds our clean-stop block.
    let out = dir.path().join("hbfile");
    debugfs(&img, &format!("dump //heartbeat {}", out.display()));
    let file = std::fs::read(&out).unwrap();
    let slot = SlotView::parse(&file[3 * 512..4 * 512]).unwrap();
    assert!(slot.crc_ok);
    assert_eq!(
        (slot.block.node, slot.block.generation, slot.block.dead_ms),
        (3, 0, 250)
    );
    assert_ne!(slot.block.seq, 0);
    assert!(
        file[..3 * 512]
            .iter()
            .chain(&file[4 * 512..])
            .all(|b| *b == 0),
        "nothing else in the file changed"
    );
}
