//! The on-disk heartbeat block (`struct o2hb_disk_heartbeat_block`, docs/o2hb.md §1–2).
//!
//! One block per node slot, little-endian:
//! `seq:u64 @0, node:u8 @8, pad[3] @9, cksum:u32 @12, generation:u64 @16, dead_ms:u32 @24`,
//! then zeros up to `block_bytes`. The checksum is `crc32_le(0, block)` over the whole
//! block with the checksum field zeroed.

use crate::{crc32_le, Error};

/// Bytes of the block that carry fields (the C struct's `sizeof`, padding included).
pub const HB_BLOCK_HEADER_BYTES: usize = 32;

const OFF_SEQ: usize = 0;
const OFF_NODE: usize = 8;
const OFF_CKSUM: usize = 12;
const OFF_GENERATION: usize = 16;
const OFF_DEAD_MS: usize = 24;

/// The fields a node writes into its slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HbBlock {
    /// Writer's clock (the kernel: wall-clock seconds, never 0). Only "changed or not" matters.
    pub seq: u64,
    /// Writer's node number.
    pub node: u8,
    /// Random non-zero value per region start; 0 on a clean stop.
    pub generation: u64,
    /// Writer's dead time in ms (dead_threshold × period).
    pub dead_ms: u32,
}

impl HbBlock {
    /// Writes this block into `buf` the way `o2hb_prepare_block` does: zero the whole block,
    /// fill the fields, then store the CRC of the whole block computed with cksum = 0.
    pub fn encode_into(&self, buf: &mut [u8]) -> Result<(), Error> {
        if buf.len() < HB_BLOCK_HEADER_BYTES {
            return Err(Error::BlockTooShort {
                len: buf.len(),
                need: HB_BLOCK_HEADER_BYTES,
            });
        }
        buf.fill(0);
        buf[OFF_SEQ..OFF_SEQ + 8].copy_from_slice(&self.seq.to_le_bytes());
        buf[OFF_NODE] = self.node;
        buf[OFF_GENERATION..OFF_GENERATION + 8].copy_from_slice(&self.generation.to_le_bytes());
        buf[OFF_DEAD_MS..OFF_DEAD_MS + 4].copy_from_slice(&self.dead_ms.to_le_bytes());
        let crc = crc32_le(0, buf);
        buf[OFF_CKSUM..OFF_CKSUM + 4].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// The block as `block_bytes` bytes.
    pub fn to_bytes(&self, block_bytes: usize) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; block_bytes];
        self.encode_into(&mut buf)?;
        Ok(buf)
    }
}

/// A slot as read from disk: its fields, the stored checksum, and whether it verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotView {
    pub block: HbBlock,
    pub cksum: u32,
    /// The stored checksum equals the CRC of the slot's bytes (with cksum zeroed).
    pub crc_ok: bool,
}

impl SlotView {
    /// Decodes one slot; `bytes` is the whole slot (`block_bytes` long), since the CRC covers it all.
    pub fn parse(bytes: &[u8]) -> Result<SlotView, Error> {
        let head = bytes
            .get(..HB_BLOCK_HEADER_BYTES)
            .ok_or(Error::BlockTooShort {
                len: bytes.len(),
                need: HB_BLOCK_HEADER_BYTES,
            })?;
        let block = HbBlock {
            seq: le64(head, OFF_SEQ),
            node: head[OFF_NODE],
            generation: le64(head, OFF_GENERATION),
            dead_ms: le32(head, OFF_DEAD_MS),
        };
        let cksum = le32(head, OFF_CKSUM);
        Ok(SlotView {
            block,
            cksum,
            crc_ok: block_crc(bytes) == cksum,
        })
    }
}

/// CRC of a slot as the kernel computes it: the whole block with the cksum field taken as 0.
pub fn block_crc(bytes: &[u8]) -> u32 {
    if bytes.len() < OFF_CKSUM + 4 {
        return crc32_le(0, bytes);
    }
    let before = crc32_le(0, &bytes[..OFF_CKSUM]);
    let zeroed = crc32_le(before, &[0u8; 4]);
    crc32_le(zeroed, &bytes[OFF_CKSUM + 4..])
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn le32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NODE1: &[u8] = include_bytes!("../../testdata/kernel-6.1/hb-region-node1.bin");
    const NODE01: &[u8] = include_bytes!("../../testdata/kernel-6.1/hb-region-node0-node1.bin");

    fn kernel_block() -> HbBlock {
        HbBlock {
            seq: 1_795_304_788,
            node: 1,
            generation: 0xb5b8_d44c_c0cd_52ac,
            dead_ms: 62000,
        }
    }

    #[test]
    fn decodes_the_kernels_block() {
        let slot = SlotView::parse(&NODE1[512..1024]).unwrap();
        assert_eq!(slot.block, kernel_block());
        assert_eq!(slot.cksum, 0xf5a8_2e13);
        assert!(slot.crc_ok);
        // Every other slot of the fresh region is zero and passes the CRC (seq 0).
        let empty = SlotView::parse(&NODE1[0..512]).unwrap();
        assert_eq!((empty.block, empty.crc_ok), (HbBlock::default(), true));
    }

    #[test]
    fn encodes_the_kernels_block_byte_for_byte() {
        assert_eq!(kernel_block().to_bytes(512).unwrap(), &NODE1[512..1024]);
        // The peer slot in the second capture was accepted by the kernel; we re-encode it exactly.
        let peer = SlotView::parse(&NODE01[0..512]).unwrap();
        assert!(peer.crc_ok);
        assert_eq!(peer.block.node, 0);
        assert_eq!(peer.block.to_bytes(512).unwrap(), &NODE01[0..512]);
        let kernel = SlotView::parse(&NODE01[512..1024]).unwrap();
        assert_eq!(kernel.block.to_bytes(512).unwrap(), &NODE01[512..1024]);
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let mut b = NODE1[512..1024].to_vec();
        b[300] ^= 0x10;
        assert!(!SlotView::parse(&b).unwrap().crc_ok);
    }

    #[test]
    fn short_input_is_an_error() {
        assert!(matches!(
            SlotView::parse(&[0u8; 31]),
            Err(Error::BlockTooShort { len: 31, .. })
        ));
        assert!(HbBlock::default().encode_into(&mut [0u8; 8]).is_err());
    }

    proptest! {
        #[test]
        fn roundtrip(seq: u64, node: u8, generation: u64, dead_ms: u32, big: bool) {
            let b = HbBlock { seq, node, generation, dead_ms };
            let bytes = b.to_bytes(if big { 4096 } else { 512 }).unwrap();
            let v = SlotView::parse(&bytes).unwrap();
            prop_assert!(v.crc_ok);
            prop_assert_eq!(v.block, b);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = SlotView::parse(&bytes);
        }
    }
}
