//! Plain region files made by `o2cb heartbeat format`: a header block, then one slot per node.
//!
//! Header (block 0, little-endian; the rest of the block is zero):
//!
//! | off | size | field |
//! |-----|------|-------|
//! | 0   | 8    | magic `O2HBRGN\0` |
//! | 8   | 4    | format version (1) |
//! | 12  | 4    | block_bytes (512..4096, power of two) |
//! | 16  | 8    | start_block of slot 0, in block_bytes units (1) |
//! | 24  | 4    | blocks (slots, 1..255) |
//! | 28  | 4    | crc32_le(0) of the first 512 bytes with this field zero |
//! | 32  | 32   | region UUID: 32 uppercase hex digits (the region name, as ocfs2-tools names regions) |
//!
//! Slot N is at byte (1 + N) × block_bytes, so the file is (1 + blocks) × block_bytes long.

use crate::core::Geometry;
use crate::{crc32_le, Error, MAX_NODES};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"O2HBRGN\0";
pub const VERSION: u32 = 1;
/// Bytes of the header that are checked (the smallest block size).
pub const HEADER_BYTES: usize = 512;

/// A region file's identity and layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionFileHeader {
    /// 32 uppercase hex digits.
    pub uuid: String,
    pub geometry: Geometry,
}

impl RegionFileHeader {
    /// The header block, `block_bytes` long.
    pub fn to_bytes(&self) -> Vec<u8> {
        let g = &self.geometry;
        let mut b = vec![0u8; g.block_bytes()];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(g.block_bytes() as u32).to_le_bytes());
        b[16..24].copy_from_slice(&g.start_block().to_le_bytes());
        b[24..28].copy_from_slice(&u32::from(g.blocks()).to_le_bytes());
        b[32..64].copy_from_slice(self.uuid.as_bytes());
        let crc = crc32_le(0, &b[..HEADER_BYTES]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Whether `bytes` starts with the region-file magic (then [`RegionFileHeader::parse`] says
    /// whether the rest is sound).
    pub fn has_magic(bytes: &[u8]) -> bool {
        bytes.get(..8) == Some(&MAGIC[..])
    }

    /// Decodes the first 512 bytes of a region file.
    pub fn parse(bytes: &[u8]) -> Result<RegionFileHeader, String> {
        let b = bytes
            .get(..HEADER_BYTES)
            .ok_or_else(|| format!("header is {} bytes, need {HEADER_BYTES}", bytes.len()))?;
        if !Self::has_magic(b) {
            return Err("bad magic".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let version = u32_at(8);
        if version != VERSION {
            return Err(format!("unsupported format version {version}"));
        }
        let stored = u32_at(28);
        let mut copy = b.to_vec();
        copy[28..32].fill(0);
        let crc = crc32_le(0, &copy);
        if crc != stored {
            return Err(format!(
                "header checksum 0x{stored:08x} does not match 0x{crc:08x}"
            ));
        }
        let mut sb = [0u8; 8];
        sb.copy_from_slice(&b[16..24]);
        let geometry = Geometry::new(
            u64::from(u32_at(12)),
            u64::from_le_bytes(sb),
            u64::from(u32_at(24)),
        )
        .map_err(|e| e.to_string())?;
        let uuid = std::str::from_utf8(&b[32..64]).map_err(|_| "UUID is not text".to_string())?;
        if !is_uuid(uuid) {
            return Err(format!("UUID {uuid:?} is not 32 uppercase hex digits"));
        }
        Ok(RegionFileHeader {
            uuid: uuid.to_string(),
            geometry,
        })
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
}

/// A fresh random region UUID: 32 uppercase hex digits.
pub fn new_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Creates a region file: header then `blocks` zeroed slots. Refuses to replace an existing
/// file, since that would wipe a region other nodes may be heartbeating on.
pub fn format(path: &Path, block_bytes: u64, blocks: u64) -> Result<RegionFileHeader, Error> {
    let geometry = Geometry::new(block_bytes, 1, blocks)?;
    let header = RegionFileHeader {
        uuid: new_uuid(),
        geometry,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut data = header.to_bytes();
    data.resize(
        geometry.block_bytes() * (1 + usize::from(geometry.blocks())),
        0,
    );
    file.write_all(&data)
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(path, e))?;
    Ok(header)
}

/// Default number of slots: one per possible node.
pub const DEFAULT_BLOCKS: u64 = MAX_NODES as u64;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn format_then_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        let h = format(&path, 4096, 16).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 4096 * 17);
        assert_eq!(RegionFileHeader::parse(&bytes).unwrap(), h);
        assert!(is_uuid(&h.uuid));
        assert_eq!(h.geometry.slot_offset(3), 4 * 4096);
        // A second format of the same path is refused rather than wiping the region.
        assert!(matches!(format(&path, 512, 4), Err(Error::Io { .. })));
    }

    #[test]
    fn corrupt_headers_are_refused() {
        let h = RegionFileHeader {
            uuid: "0123456789ABCDEF0123456789ABCDEF".into(),
            geometry: Geometry::new(512, 1, 255).unwrap(),
        };
        let good = h.to_bytes();
        let mut bad = good.clone();
        bad[40] = b'x';
        assert!(RegionFileHeader::parse(&bad)
            .unwrap_err()
            .contains("checksum"));
        assert!(RegionFileHeader::parse(&good[..100]).is_err());
        assert_eq!(RegionFileHeader::parse(&good).unwrap(), h);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..700), magic: bool) {
            if magic && bytes.len() >= 8 {
                bytes[..8].copy_from_slice(MAGIC);
            }
            let _ = RegionFileHeader::parse(&bytes);
        }

        #[test]
        fn roundtrip(bb_bits in 9u32..=12, blocks in 1u64..=255, uuid in "[0-9A-F]{32}") {
            let h = RegionFileHeader { uuid, geometry: Geometry::new(1 << bb_bits, 1, blocks).unwrap() };
            prop_assert_eq!(RegionFileHeader::parse(&h.to_bytes()).unwrap(), h);
        }
    }
}
