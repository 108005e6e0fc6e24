//! A small multiplicative hasher for the core's maps, whose keys are node
//! numbers, connection and send ids and message numbers we allocate: none
//! is chosen by a peer in a way that could flood a bucket, so SipHash's
//! protection buys nothing and costs several percent of a message's CPU.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash-style: rotate, xor, multiply by a large odd constant.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(SEED);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_map_and_spreads_small_keys() {
        let mut m: FastMap<(u16, u32), u32> = FastMap::default();
        for t in 0..300u16 {
            m.insert((t, u32::from(t) * 7), u32::from(t));
        }
        assert_eq!(m.len(), 300);
        assert_eq!(m.get(&(42, 294)), Some(&42));
        let mut h = std::collections::HashSet::new();
        for n in 0..=255u8 {
            let mut s = FastHasher::default();
            s.write_u8(n);
            h.insert(s.finish() >> 57); // the bits hashbrown uses for its tag
        }
        assert!(h.len() > 64, "{} distinct tags", h.len());
    }
}
