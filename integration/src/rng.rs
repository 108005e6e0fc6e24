//! The run's randomness: one seed, split into independent ChaCha streams.
//!
//! Every latency, fault and generation number is drawn from the seed. Each
//! consumer (fault plan, network, disks, node generations, workload) draws from
//! its own stream of the same seed, so that a change in how often one consumer
//! draws (say, more messages because a core changed) does not reshuffle the
//! fault plan: the same seed keeps the same faults at the same moments.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// Which consumer a stream belongs to; the discriminant is the ChaCha stream number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    FaultPlan = 1,
    Network = 2,
    Disk = 3,
    Generations = 4,
    Workload = 5,
}

/// A deterministic random stream.
#[derive(Clone, Debug)]
pub struct SimRng(ChaCha8Rng);

impl SimRng {
    pub fn new(seed: u64, stream: Stream) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream as u64);
        SimRng(rng)
    }

    /// Uniform in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.0.gen_range(0..n)
        }
    }

    /// Uniform in `lo..=hi` (returns `lo` if the range is empty).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            self.0.gen_range(lo..=hi)
        }
    }

    /// A duration uniform in `lo..=hi`, at microsecond resolution.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_us = u64::try_from(lo.as_micros()).unwrap_or(u64::MAX);
        let hi_us = u64::try_from(hi.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(self.between(lo_us, hi_us))
    }

    /// True with probability `p` (clamped to 0..=1).
    pub fn chance(&mut self, p: f64) -> bool {
        self.0.gen_bool(p.clamp(0.0, 1.0))
    }

    pub fn u64(&mut self) -> u64 {
        self.0.gen()
    }

    /// A non-zero u64, as the kernel insists for heartbeat generations.
    pub fn nonzero_u64(&mut self) -> u64 {
        loop {
            let v = self.u64();
            if v != 0 {
                return v;
            }
        }
    }

    /// Picks an index into a slice of length `len` (0 if empty).
    pub fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_same_draws() {
        let mut a = SimRng::new(42, Stream::Network);
        let mut b = SimRng::new(42, Stream::Network);
        let xa: Vec<u64> = (0..32).map(|_| a.u64()).collect();
        let xb: Vec<u64> = (0..32).map(|_| b.u64()).collect();
        assert_eq!(xa, xb);
    }

    #[test]
    fn streams_of_one_seed_differ() {
        let mut a = SimRng::new(42, Stream::Network);
        let mut b = SimRng::new(42, Stream::Disk);
        assert_ne!(a.u64(), b.u64());
    }

    #[test]
    fn bounded_draws_stay_in_range() {
        let mut r = SimRng::new(7, Stream::Workload);
        for _ in 0..1000 {
            let v = r.between(3, 9);
            assert!((3..=9).contains(&v));
            assert!(r.below(5) < 5);
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.between(9, 3), 9);
    }
}
