//! The agenda: every future happening of the simulated world, in virtual-time order.
//!
//! Ties are broken by insertion order, so two events due at the same
//! microsecond always run in the order they were scheduled, on every run.

use crate::net::NetEvent;
use crate::stack::{NodeId, TimerKey};
use crate::time::SimTime;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Something due to happen.
#[derive(Debug)]
pub enum Event {
    /// A node's timer; stale unless `token` is still the key's current token.
    Timer {
        node: NodeId,
        incarnation: u32,
        key: TimerKey,
        token: u64,
    },
    /// A disk I/O finishes (the disk knows which node and incarnation issued it).
    DiskDone { io: u64 },
    /// Bytes, a handshake step or a reset arrives somewhere.
    Net(NetEvent),
    /// Entry `index` of the fault plan takes effect.
    Fault { index: usize },
    /// A node's machine (re)boots.
    Boot { node: NodeId },
    /// A paused node runs again.
    Resume { node: NodeId, incarnation: u32 },
    /// The workload issues its next request.
    Workload,
    /// Periodic moment for checkers that judge the passage of time.
    CheckTick,
}

struct Scheduled {
    at: SimTime,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A min-priority queue of events keyed by (time, insertion order).
#[derive(Default)]
pub struct Agenda {
    heap: BinaryHeap<Scheduled>,
    next_seq: u64,
}

impl Agenda {
    pub fn push(&mut self, at: SimTime, event: Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Scheduled { at, seq, event });
    }

    pub fn pop(&mut self) -> Option<(SimTime, Event)> {
        self.heap.pop().map(|s| (s.at, s.event))
    }

    pub fn peek_time(&self) -> Option<SimTime> {
        self.heap.peek().map(|s| s.at)
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_ties_in_insertion_order() {
        let mut a = Agenda::default();
        a.push(SimTime::from_secs(2), Event::Fault { index: 0 });
        a.push(SimTime::from_secs(1), Event::Fault { index: 1 });
        a.push(SimTime::from_secs(2), Event::Fault { index: 2 });
        a.push(SimTime::from_secs(1), Event::Fault { index: 3 });
        let order: Vec<usize> = std::iter::from_fn(|| a.pop())
            .map(|(_, e)| match e {
                Event::Fault { index } => index,
                _ => usize::MAX,
            })
            .collect();
        assert_eq!(order, vec![1, 3, 0, 2]);
        assert!(a.is_empty());
    }
}
