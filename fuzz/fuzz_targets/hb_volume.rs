//! Region discovery: arbitrary bytes as an OCFS2 image or a region-file header give an error
//! or a region, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use o2hb::ocfs2;
use o2hb::regionfile::RegionFileHeader;

fuzz_target!(|data: &[u8]| {
    let _ = RegionFileHeader::parse(data);
    let path = ocfs2::memory_path();
    for sector in [512u32, 4096] {
        if let Ok(hb) = ocfs2::heartbeat_file(data, &path, sector) {
            assert!(hb.geometry.blocks() >= 1 && hb.geometry.blocks() <= 255);
            assert_eq!(hb.region_name.len(), 32);
        }
    }
});
