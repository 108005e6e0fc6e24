//! Finding the heartbeat region of an OCFS2 volume, the way ocfs2-tools does
//! (`ocfs2_fill_heartbeat_desc`): superblock, system directory, the `heartbeat` system
//! inode, its single extent.
//!
//! On-disk facts used (OCFS2 `ocfs2_fs.h`; all little-endian, offsets in bytes):
//! - The superblock is an inode (`ocfs2_dinode`) at block 2, for a block size of 512..4096
//!   probed in turn; signature `OCFSV2`. Its `id2` part starts at 0xC0: blocksize_bits @0xF8,
//!   clustersize_bits @0xFC, system_dir_blkno @0xF0, feature_incompat @0xE0, label @0x110 (64),
//!   uuid @0x150 (16 bytes), cluster info @0x160 (stack name: 4 bytes, stack flags: u8 @0x164,
//!   cluster name: 16 bytes @0x168).
//! - Inodes: signature `INODE01` @0, i_size @0x20, i_mode @0x28, i_flags @0x2C, i_blkno @0x50,
//!   i_dyn_features @0x76 (bit 0: inline data), and at 0xC0 either inline data
//!   (id_count u16, data from 0xC8) or an extent list (depth u16, count u16, next_free u16,
//!   records of 16 bytes from 0xD0: cpos u32, clusters (u16 in a leaf, u32 above), blkno u64).
//! - Extent blocks: signature `EXBLK01`, extent list at 0x30.
//! - Directory entries: inode u64, rec_len u16, name_len u8, file_type u8, name.
//!
//! Region: name = volume UUID in uppercase hex; block_bytes = the device's sector size;
//! start_block = extent start in sectors; blocks = the file's blocks, at most 255.

use crate::core::Geometry;
use crate::{Error, MAX_NODES};
use std::path::{Path, PathBuf};

const SUPERBLOCK_BLKNO: u64 = 2;
const SIG_SUPER: &[u8] = b"OCFSV2";
const SIG_INODE: &[u8] = b"INODE01";
const SIG_EXTENT_BLOCK: &[u8] = b"EXBLK01";
const ID2: usize = 0xC0;
const VALID_FL: u32 = 0x1;
const SYSTEM_FL: u32 = 0x10;
const HEARTBEAT_FL: u32 = 0x200;
const INLINE_DATA_FL: u16 = 0x1;
const INCOMPAT_USERSPACE_STACK: u32 = 0x80;
const INCOMPAT_CLUSTERINFO: u32 = 0x4000;
const STACKFLAG_GLOBAL_HEARTBEAT: u8 = 0x1;
const S_IFMT: u16 = 0o170000;
const S_IFDIR: u16 = 0o040000;
/// Most directory blocks we scan; the system directory of the largest volume is far smaller.
const MAX_DIR_BLOCKS: u64 = 1 << 16;
const MAX_TREE_DEPTH: u16 = 8;

/// Random access to a volume image (a file, a block device, or bytes in memory).
pub trait ReadAt {
    /// Exactly `len` bytes at `offset`, or an error text.
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, String>;
}

impl ReadAt for [u8] {
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, String> {
        let start = usize::try_from(offset).map_err(|_| "offset too large".to_string())?;
        let end = start.checked_add(len).ok_or("offset too large")?;
        self.get(start..end).map(<[u8]>::to_vec).ok_or_else(|| {
            format!(
                "read of {len} bytes at {offset} is past the end ({} bytes)",
                self.len()
            )
        })
    }
}

impl ReadAt for std::fs::File {
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, String> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, offset)
            .map_err(|e| format!("read of {len} bytes at {offset}: {e}"))?;
        Ok(buf)
    }
}

/// What the superblock says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superblock {
    pub block_size_bits: u32,
    pub cluster_size_bits: u32,
    pub system_dir_blkno: u64,
    /// 32 uppercase hex digits.
    pub uuid: String,
    pub label: String,
    pub cluster_stack: Option<String>,
    pub cluster_name: Option<String>,
    pub global_heartbeat: bool,
}

/// The heartbeat system file and the region it gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatFile {
    pub superblock: Superblock,
    pub inode_blkno: u64,
    /// First block (fs blocks) and length (clusters) of the file's single extent.
    pub extent_blkno: u64,
    pub extent_clusters: u32,
    /// The region: name = UUID, geometry in `sector_size` units.
    pub region_name: String,
    pub geometry: Geometry,
}

struct Vol<'a, R: ?Sized> {
    r: &'a R,
    path: &'a Path,
    bits: u32,
    cluster_bits: u32,
}

impl<R: ReadAt + ?Sized> Vol<'_, R> {
    fn bad(&self, what: &'static str, block: u64, reason: impl Into<String>) -> Error {
        Error::BadOcfs2 {
            path: self.path.to_path_buf(),
            what,
            block,
            reason: reason.into(),
        }
    }

    fn block(&self, what: &'static str, blkno: u64) -> Result<Vec<u8>, Error> {
        let off = blkno
            .checked_mul(1 << self.bits)
            .ok_or_else(|| self.bad(what, blkno, "block number too large"))?;
        self.r
            .read_at(off, 1 << self.bits)
            .map_err(|e| self.bad(what, blkno, e))
    }

    /// Reads and checks an inode: signature, valid flag, and its own block number.
    fn inode(&self, what: &'static str, blkno: u64) -> Result<Vec<u8>, Error> {
        let b = self.block(what, blkno)?;
        if b.get(..7) != Some(SIG_INODE) {
            return Err(self.bad(what, blkno, "no INODE01 signature"));
        }
        if le32(&b, 0x2C) & VALID_FL == 0 {
            return Err(self.bad(what, blkno, "inode is not marked valid"));
        }
        if le64(&b, 0x50) != blkno {
            return Err(self.bad(
                what,
                blkno,
                format!("inode says it is block {}", le64(&b, 0x50)),
            ));
        }
        Ok(b)
    }

    /// Leaf extents (blkno, clusters) of the extent list at `off` in `block`, descending
    /// through extent blocks.
    fn extents(
        &self,
        what: &'static str,
        blkno: u64,
        block: &[u8],
        off: usize,
        depth_left: u16,
        out: &mut Vec<(u64, u32)>,
    ) -> Result<(), Error> {
        let depth = le16(block, off);
        let count = le16(block, off + 2);
        let next_free = le16(block, off + 4);
        if next_free > count {
            return Err(self.bad(
                what,
                blkno,
                format!("extent list uses {next_free} of {count} records"),
            ));
        }
        if depth > 0 && depth_left == 0 {
            return Err(self.bad(what, blkno, "extent tree too deep"));
        }
        for i in 0..usize::from(next_free) {
            let rec = off + 0x10 + i * 16;
            if rec + 16 > block.len() {
                return Err(self.bad(
                    what,
                    blkno,
                    format!("extent record {i} runs past the block"),
                ));
            }
            let child = le64(block, rec + 8);
            if depth == 0 {
                out.push((child, u32::from(le16(block, rec + 4))));
            } else {
                let eb = self.block("extent block", child)?;
                if eb.get(..7) != Some(SIG_EXTENT_BLOCK) {
                    return Err(self.bad("extent block", child, "no EXBLK01 signature"));
                }
                self.extents("extent block", child, &eb, 0x30, depth_left - 1, out)?;
            }
        }
        Ok(())
    }
}

/// Reads the superblock, probing block sizes 512..4096 as ocfs2-tools does.
pub fn read_superblock<R: ReadAt + ?Sized>(r: &R, path: &Path) -> Result<Superblock, Error> {
    for bits in 9..=12u32 {
        let Ok(b) = r.read_at(SUPERBLOCK_BLKNO << bits, 1 << bits) else {
            continue;
        };
        if b.get(..6) != Some(SIG_SUPER) {
            continue;
        }
        let bad = |reason: String| Error::BadOcfs2 {
            path: path.to_path_buf(),
            what: "superblock",
            block: SUPERBLOCK_BLKNO,
            reason,
        };
        let block_size_bits = le32(&b, ID2 + 0x38);
        if block_size_bits != bits {
            return Err(bad(format!(
                "block size bits {block_size_bits} found in a {}-byte block",
                1u32 << bits
            )));
        }
        let cluster_size_bits = le32(&b, ID2 + 0x3C);
        if !(12..=20).contains(&cluster_size_bits) {
            return Err(bad(format!(
                "cluster size bits {cluster_size_bits} out of range 12..20"
            )));
        }
        let system_dir_blkno = le64(&b, ID2 + 0x30);
        if system_dir_blkno == 0 {
            return Err(bad("no system directory".into()));
        }
        let incompat = le32(&b, ID2 + 0x20);
        let uuid = b[ID2 + 0x90..ID2 + 0xA0]
            .iter()
            .map(|x| format!("{x:02X}"))
            .collect();
        let label = c_string(&b[ID2 + 0x50..ID2 + 0x90]);
        let (mut cluster_stack, mut cluster_name, mut global_heartbeat) = (None, None, false);
        if incompat & (INCOMPAT_USERSPACE_STACK | INCOMPAT_CLUSTERINFO) != 0 {
            cluster_stack = Some(c_string(&b[ID2 + 0xA0..ID2 + 0xA4]));
            global_heartbeat = b[ID2 + 0xA4] & STACKFLAG_GLOBAL_HEARTBEAT != 0;
            cluster_name = Some(c_string(&b[ID2 + 0xA8..ID2 + 0xB8]));
        }
        return Ok(Superblock {
            block_size_bits,
            cluster_size_bits,
            system_dir_blkno,
            uuid,
            label,
            cluster_stack,
            cluster_name,
            global_heartbeat,
        });
    }
    Err(Error::NotOcfs2 {
        path: path.to_path_buf(),
        reason: "no OCFSV2 superblock at block 2 for any block size".into(),
    })
}

/// Whether an OCFS2 superblock is present (no further checks).
pub fn looks_like_ocfs2<R: ReadAt + ?Sized>(r: &R) -> bool {
    (9..=12u32).any(|bits| {
        r.read_at(SUPERBLOCK_BLKNO << bits, 8)
            .is_ok_and(|b| b.get(..6) == Some(SIG_SUPER))
    })
}

/// Finds the heartbeat region of the volume read through `r`; `sector_size` is the device's
/// logical sector size (512 for a plain file).
pub fn heartbeat_file<R: ReadAt + ?Sized>(
    r: &R,
    path: &Path,
    sector_size: u32,
) -> Result<HeartbeatFile, Error> {
    let sb = read_superblock(r, path)?;
    let vol = Vol {
        r,
        path,
        bits: sb.block_size_bits,
        cluster_bits: sb.cluster_size_bits,
    };
    let hb_blkno = lookup(&vol, sb.system_dir_blkno, b"heartbeat")?;
    let inode = vol.inode("heartbeat inode", hb_blkno)?;
    let flags = le32(&inode, 0x2C);
    if flags & (SYSTEM_FL | HEARTBEAT_FL) != SYSTEM_FL | HEARTBEAT_FL {
        return Err(vol.bad(
            "heartbeat inode",
            hb_blkno,
            format!("flags 0x{flags:x} lack system|heartbeat"),
        ));
    }
    let depth = le16(&inode, ID2);
    let next_free = le16(&inode, ID2 + 4);
    if depth != 0 || next_free != 1 {
        return Err(vol.bad(
            "heartbeat inode",
            hb_blkno,
            format!("bad heartbeat file: needs exactly one extent at depth 0, has {next_free} at depth {depth}"),
        ));
    }
    let extent_clusters = u32::from(le16(&inode, ID2 + 0x10 + 4));
    let extent_blkno = le64(&inode, ID2 + 0x10 + 8);
    if !sector_size.is_power_of_two() || sector_size < 512 {
        return Err(Error::BadBlockBytes(u64::from(sector_size)));
    }
    let sect_bits = sector_size.trailing_zeros();
    if sb.block_size_bits < sect_bits {
        return Err(vol.bad(
            "superblock",
            SUPERBLOCK_BLKNO,
            format!(
                "block size {} is smaller than the sector size {sector_size}",
                1u32 << sb.block_size_bits
            ),
        ));
    }
    let blocks = (u64::from(extent_clusters) << sb.cluster_size_bits) >> sb.block_size_bits;
    let blocks = blocks.min(MAX_NODES as u64);
    let start_block = extent_blkno
        .checked_mul(1 << sb.block_size_bits)
        .map(|b| b >> sect_bits)
        .ok_or_else(|| vol.bad("heartbeat inode", hb_blkno, "extent block number too large"))?;
    let geometry = Geometry::new(u64::from(sector_size), start_block, blocks)
        .map_err(|e| vol.bad("heartbeat inode", hb_blkno, e.to_string()))?;
    Ok(HeartbeatFile {
        region_name: sb.uuid.clone(),
        superblock: sb,
        inode_blkno: hb_blkno,
        extent_blkno,
        extent_clusters,
        geometry,
    })
}

/// Looks a name up in a directory inode (inline or extent-mapped); returns its inode block.
fn lookup<R: ReadAt + ?Sized>(vol: &Vol<'_, R>, dir_blkno: u64, name: &[u8]) -> Result<u64, Error> {
    let dir = vol.inode("system directory", dir_blkno)?;
    if le16(&dir, 0x28) & S_IFMT != S_IFDIR {
        return Err(vol.bad("system directory", dir_blkno, "not a directory"));
    }
    let not_found = || {
        vol.bad(
            "system directory",
            dir_blkno,
            format!("no {:?} entry", String::from_utf8_lossy(name)),
        )
    };
    if le16(&dir, 0x76) & INLINE_DATA_FL != 0 {
        let count = usize::from(le16(&dir, ID2));
        let size = usize::try_from(le64(&dir, 0x20)).unwrap_or(usize::MAX);
        let end = (ID2 + 8).saturating_add(count.min(size)).min(dir.len());
        let data = dir.get(ID2 + 8..end).unwrap_or(&[]);
        return find_entry(vol, dir_blkno, data, name)?.ok_or_else(not_found);
    }
    let mut extents = Vec::new();
    vol.extents(
        "system directory",
        dir_blkno,
        &dir,
        ID2,
        MAX_TREE_DEPTH,
        &mut extents,
    )?;
    let per_cluster = 1u64 << vol.cluster_bits.saturating_sub(vol.bits);
    let mut scanned = 0u64;
    for (start, clusters) in extents {
        for i in 0..u64::from(clusters) * per_cluster {
            scanned += 1;
            if scanned > MAX_DIR_BLOCKS {
                return Err(vol.bad("system directory", dir_blkno, "directory too large"));
            }
            let blkno = start
                .checked_add(i)
                .ok_or_else(|| vol.bad("system directory", dir_blkno, "extent past the end"))?;
            let block = vol.block("directory block", blkno)?;
            if let Some(found) = find_entry(vol, blkno, &block, name)? {
                return Ok(found);
            }
        }
    }
    Err(not_found())
}

/// Walks the directory entries packed in `data`.
fn find_entry<R: ReadAt + ?Sized>(
    vol: &Vol<'_, R>,
    blkno: u64,
    data: &[u8],
    name: &[u8],
) -> Result<Option<u64>, Error> {
    let mut off = 0usize;
    while off + 12 <= data.len() {
        let inode = le64(data, off);
        let rec_len = usize::from(le16(data, off + 8));
        let name_len = usize::from(data[off + 10]);
        if rec_len < 12 || off + rec_len > data.len() || 12 + name_len > rec_len {
            return Err(vol.bad(
                "directory block",
                blkno,
                format!("corrupt entry at byte {off}: rec_len {rec_len}, name_len {name_len}"),
            ));
        }
        if inode != 0 && data.get(off + 12..off + 12 + name_len) == Some(name) {
            return Ok(Some(inode));
        }
        off += rec_len;
    }
    Ok(None)
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn le16(b: &[u8], off: usize) -> u16 {
    match b.get(off..off + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

fn le32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

fn le64(b: &[u8], off: usize) -> u64 {
    match b.get(off..off + 8) {
        Some(s) => u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
        None => 0,
    }
}

/// Opens `path` and finds its heartbeat region (sector size from the device, 512 for a file).
pub fn heartbeat_file_at(path: &Path) -> Result<HeartbeatFile, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let sector = crate::disk::logical_sector_size(&file).map_err(|e| Error::io(path, e))?;
    heartbeat_file(&file, path, sector)
}

/// The path used in errors for in-memory images.
pub fn memory_path() -> PathBuf {
    PathBuf::from("<memory>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal hand-built 4K-block volume: superblock at 2, inline system dir at 6,
    /// heartbeat inode at 10 with one extent of 256 clusters at block 273.
    fn image(inline_dir: bool) -> Vec<u8> {
        let bs = 4096usize;
        let mut img = vec![0u8; bs * 300];
        let sb = 2 * bs;
        img[sb..sb + 6].copy_from_slice(SIG_SUPER);
        img[sb + ID2 + 0x38..sb + ID2 + 0x3C].copy_from_slice(&12u32.to_le_bytes());
        img[sb + ID2 + 0x3C..sb + ID2 + 0x40].copy_from_slice(&12u32.to_le_bytes());
        img[sb + ID2 + 0x30..sb + ID2 + 0x38].copy_from_slice(&6u64.to_le_bytes());
        img[sb + ID2 + 0x90..sb + ID2 + 0xA0].copy_from_slice(&[0xAB; 16]);
        let inode = |img: &mut Vec<u8>, blk: usize, flags: u32, mode: u16| {
            let o = blk * bs;
            img[o..o + 7].copy_from_slice(SIG_INODE);
            img[o + 0x2C..o + 0x30].copy_from_slice(&flags.to_le_bytes());
            img[o + 0x28..o + 0x2A].copy_from_slice(&mode.to_le_bytes());
            img[o + 0x50..o + 0x58].copy_from_slice(&(blk as u64).to_le_bytes());
        };
        inode(&mut img, 6, 0x11, 0o40755);
        let mut entry = vec![0u8; 24];
        entry[..8].copy_from_slice(&10u64.to_le_bytes());
        entry[8..10].copy_from_slice(&24u16.to_le_bytes());
        entry[10] = 9;
        entry[12..21].copy_from_slice(b"heartbeat");
        let o = 6 * bs;
        if inline_dir {
            img[o + 0x76] = 1;
            img[o + 0x20..o + 0x28].copy_from_slice(&24u64.to_le_bytes());
            img[o + ID2..o + ID2 + 2].copy_from_slice(&24u16.to_le_bytes());
            img[o + ID2 + 8..o + ID2 + 32].copy_from_slice(&entry);
        } else {
            img[o + ID2 + 2] = 1;
            img[o + ID2 + 4] = 1;
            img[o + ID2 + 0x14] = 1;
            img[o + ID2 + 0x18..o + ID2 + 0x20].copy_from_slice(&20u64.to_le_bytes());
            let d = 20 * bs;
            img[d..d + 24].copy_from_slice(&entry);
            let last = [0u8; 12];
            img[d + 24..d + 36].copy_from_slice(&last);
            img[d + 24 + 8..d + 24 + 10].copy_from_slice(&((bs - 24) as u16).to_le_bytes());
        }
        inode(&mut img, 10, 0x211, 0o100644);
        let h = 10 * bs;
        img[h + ID2 + 2] = 243;
        img[h + ID2 + 4] = 1;
        img[h + ID2 + 0x14..h + ID2 + 0x16].copy_from_slice(&256u16.to_le_bytes());
        img[h + ID2 + 0x18..h + ID2 + 0x20].copy_from_slice(&273u64.to_le_bytes());
        img
    }

    #[test]
    fn finds_the_heartbeat_extent_inline_and_extent_dirs() {
        for inline in [true, false] {
            let img = image(inline);
            let hb = heartbeat_file(img.as_slice(), &memory_path(), 512).unwrap();
            assert_eq!(hb.region_name, "AB".repeat(16));
            assert_eq!(
                (hb.inode_blkno, hb.extent_blkno, hb.extent_clusters),
                (10, 273, 256)
            );
            assert_eq!(hb.geometry, Geometry::new(512, 273 * 8, 255).unwrap());
            let hb4k = heartbeat_file(img.as_slice(), &memory_path(), 4096).unwrap();
            assert_eq!(hb4k.geometry, Geometry::new(4096, 273, 255).unwrap());
        }
    }

    #[test]
    fn bad_volumes_get_clear_errors() {
        let mut img = image(true);
        img[10 * 4096 + ID2 + 4] = 2;
        let e = heartbeat_file(img.as_slice(), &memory_path(), 512)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad heartbeat file"), "{e}");
        let mut img = image(true);
        img[10 * 4096] = b'X';
        let e = heartbeat_file(img.as_slice(), &memory_path(), 512)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("heartbeat inode at block 10") && e.contains("INODE01"),
            "{e}"
        );
        let e = heartbeat_file(&[0u8; 20000][..], &memory_path(), 512).unwrap_err();
        assert!(matches!(e, Error::NotOcfs2 { .. }));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..20000)) {
            let _ = heartbeat_file(bytes.as_slice(), &memory_path(), 512);
        }

        #[test]
        fn corrupted_metadata_never_panics(pos in 0usize..(300 * 4096), val: u8, inline: bool) {
            let mut img = image(inline);
            // Aim at the metadata blocks most of the time.
            let blk = [2usize, 6, 10, 20][pos % 4];
            let off = blk * 4096 + (pos / 4) % 512;
            img[off] = val;
            let _ = heartbeat_file(img.as_slice(), &memory_path(), 512);
        }
    }
}
