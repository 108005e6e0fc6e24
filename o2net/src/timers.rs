//! A lazy timer queue for the sans-I/O core. The core keeps each timer's
//! authoritative deadline in its own state; this queue only remembers the
//! earliest instant at which each timer might be due. Pushing a deadline
//! later (what every received message does to the keepalive and idle
//! timers) then costs a map lookup instead of a heap update: the stale heap
//! entry pops, the core sees the later deadline and re-arms.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::Hash;

use crate::fasthash::FastMap;

/// Timer queue keyed by `K`, in milliseconds of virtual time.
#[derive(Debug)]
pub(crate) struct Timers<K: Copy + Ord + Hash> {
    heap: BinaryHeap<Reverse<(u64, K)>>,
    /// Earliest heap entry per key.
    queued: FastMap<K, u64>,
}

impl<K: Copy + Ord + Hash> Timers<K> {
    pub(crate) fn new() -> Timers<K> {
        Timers {
            heap: BinaryHeap::new(),
            queued: FastMap::default(),
        }
    }

    /// Makes sure `key` is looked at no later than `at`.
    pub(crate) fn arm(&mut self, key: K, at: u64) {
        match self.queued.get(&key) {
            Some(&q) if q <= at => {}
            _ => {
                self.queued.insert(key, at);
                self.heap.push(Reverse((at, key)));
            }
        }
    }

    /// The next key to look at, if its entry is due by `now`. The caller
    /// checks its own deadline and re-arms if the timer was pushed back.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<K> {
        let Reverse((at, key)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        if self.queued.get(&key) == Some(&at) {
            self.queued.remove(&key);
        }
        Some(key)
    }

    /// The earliest instant at which some timer may be due.
    pub(crate) fn next(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_arm_wins_and_later_arm_is_lazy() {
        let mut t = Timers::new();
        t.arm(1u8, 100);
        t.arm(1u8, 200);
        assert_eq!(t.next(), Some(100));
        t.arm(1u8, 50);
        assert_eq!(t.next(), Some(50));
        assert_eq!(t.pop_due(49), None);
        assert_eq!(t.pop_due(60), Some(1));
        // The stale entry at 100 still pops; the caller decides it is stale.
        assert_eq!(t.pop_due(150), Some(1));
        assert_eq!(t.pop_due(1000), None);
    }
}
