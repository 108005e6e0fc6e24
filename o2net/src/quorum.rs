//! o2quo: the rule that decides which side of a network partition fences
//! itself (docs/o2hb.md §10, quorum.c). Pure bookkeeping: the caller feeds
//! heartbeat and connection events and gets back a [`Decision`] when one is
//! due; fencing itself is the caller's job.

/// A set of node numbers (0..=255) as a 256-bit bitmap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NodeSet([u64; 4]);

impl NodeSet {
    /// The empty set.
    pub fn new() -> NodeSet {
        NodeSet::default()
    }

    /// Adds `n`; true if it was absent.
    pub fn insert(&mut self, n: u8) -> bool {
        let (w, b) = (usize::from(n / 64), 1u64 << (n % 64));
        let absent = self.0[w] & b == 0;
        self.0[w] |= b;
        absent
    }

    /// Removes `n`; true if it was present.
    pub fn remove(&mut self, n: u8) -> bool {
        let (w, b) = (usize::from(n / 64), 1u64 << (n % 64));
        let present = self.0[w] & b != 0;
        self.0[w] &= !b;
        present
    }

    /// Whether `n` is in the set.
    pub fn contains(&self, n: u8) -> bool {
        self.0[usize::from(n / 64)] & (1u64 << (n % 64)) != 0
    }

    /// Number of members.
    pub fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// Lowest member.
    pub fn first(&self) -> Option<u8> {
        self.iter().next()
    }

    /// Members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(move |n| self.contains(*n))
    }
}

/// The outcome of a quorum decision, with the kernel's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// This node must fence itself.
    Fence { reason: String },
    /// This node keeps running.
    Survive { message: String },
}

/// o2quo state for one node.
#[derive(Debug, Clone)]
pub struct Quorum {
    local: u8,
    heartbeating: NodeSet,
    connected: NodeSet,
    holds: NodeSet,
    pending: bool,
}

impl Quorum {
    /// The state when o2net starts listening: the local node counts as
    /// connected to itself (`o2quo_conn_up(self)` in `o2net_start_listening`).
    pub fn new(local: u8) -> Quorum {
        let mut q = Quorum {
            local,
            heartbeating: NodeSet::new(),
            connected: NodeSet::new(),
            holds: NodeSet::new(),
            pending: false,
        };
        // Cannot decide anything: no hold is released here.
        let _ = q.conn_up(local);
        q
    }

    /// Nodes seen heartbeating.
    pub fn heartbeating(&self) -> NodeSet {
        self.heartbeating
    }

    /// Nodes with a working connection, self included.
    pub fn connected(&self) -> NodeSet {
        self.connected
    }

    /// `o2quo_hb_up`: until the connection's fate is known, hold decisions.
    pub fn hb_up(&mut self, n: u8) -> Option<Decision> {
        // The kernel BUGs on a duplicate; we ignore it so bad input cannot
        // skew the counts.
        if !self.heartbeating.insert(n) {
            return None;
        }
        if self.connected.contains(n) {
            self.clear_hold(n)
        } else {
            self.set_hold(n);
            None
        }
    }

    /// `o2quo_hb_down`: a dead node releases whatever hold it had.
    pub fn hb_down(&mut self, n: u8) -> Option<Decision> {
        if !self.heartbeating.remove(n) {
            return None;
        }
        self.clear_hold(n)
    }

    /// `o2quo_hb_still_up`: the node kept heartbeating for the quorum delay
    /// after its connection was lost, so a decision is due.
    pub fn hb_still_up(&mut self, n: u8) -> Option<Decision> {
        self.pending = true;
        self.clear_hold(n)
    }

    /// `o2quo_conn_up`.
    pub fn conn_up(&mut self, n: u8) -> Option<Decision> {
        if !self.connected.insert(n) {
            return None;
        }
        if self.heartbeating.contains(n) {
            self.clear_hold(n)
        } else {
            self.set_hold(n);
            None
        }
    }

    /// `o2quo_conn_err`: a heartbeating node we lost the connection to holds
    /// decisions until it dies or `hb_still_up`.
    pub fn conn_err(&mut self, n: u8) {
        if self.connected.remove(n) && self.heartbeating.contains(n) {
            self.set_hold(n);
        }
    }

    fn set_hold(&mut self, n: u8) {
        self.holds.insert(n);
    }

    fn clear_hold(&mut self, n: u8) -> Option<Decision> {
        if self.holds.remove(n) && self.holds.is_empty() && self.pending {
            self.pending = false;
            return Some(self.decide());
        }
        None
    }

    /// `o2quo_make_decision`.
    pub fn decide(&self) -> Decision {
        let h = self.heartbeating.len();
        let c = self.connected.len();
        let lowest = self.heartbeating.first();
        let lowest_reachable = lowest.is_some_and(|l| self.connected.contains(l));
        let lowest_num = lowest.map_or(255, u32::from);
        if self.heartbeating.contains(self.local) && h != 1 {
            let short = |quorum: u32| {
                Decision::Fence {
                reason: format!(
                    "fencing this node because it is only connected to {c} nodes and {quorum} is needed to make a quorum out of {h} heartbeating nodes"
                ),
            }
            };
            if h & 1 == 1 {
                let quorum = h.div_ceil(2);
                if c < quorum {
                    return short(quorum);
                }
            } else {
                let quorum = h / 2;
                if c < quorum {
                    return short(quorum);
                }
                if c == quorum && !lowest_reachable {
                    return Decision::Fence {
                        reason: format!(
                            "fencing this node because it is connected to a half-quorum of {quorum} out of {h} nodes which doesn't include the lowest active node {lowest_num}"
                        ),
                    };
                }
            }
        }
        Decision::Survive {
            message: format!(
                "not fencing this node, heartbeating: {h}, connected: {c}, lowest: {lowest_num} ({}reachable)",
                if lowest_reachable { "" } else { "un" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Local node `me` in a cluster where all of `nodes` heartbeat and are
    /// connected, then loses the connections to `lost` while they heartbeat.
    fn partition(me: u8, nodes: &[u8], lost: &[u8]) -> Decision {
        let mut q = Quorum::new(me);
        for &n in nodes {
            assert_eq!(q.hb_up(n), None);
            if n != me {
                assert_eq!(q.conn_up(n), None);
            }
        }
        for &n in lost {
            q.conn_err(n);
        }
        let mut out = None;
        for &n in lost {
            let d = q.hb_still_up(n);
            if n != *lost.last().unwrap_or(&n) {
                assert_eq!(d, None, "decision before every hold was released");
            }
            out = d;
        }
        out.expect("a decision once the last hold is released")
    }

    #[test]
    fn two_node_split_fences_the_higher_node_with_the_kernels_message() {
        assert_eq!(
            partition(1, &[0, 1], &[0]),
            Decision::Fence {
                reason: "fencing this node because it is connected to a half-quorum of 1 out of 2 nodes which doesn't include the lowest active node 0".into()
            }
        );
        assert!(matches!(
            partition(0, &[0, 1], &[1]),
            Decision::Survive { .. }
        ));
    }

    #[test]
    fn odd_cluster_minority_fences_majority_survives() {
        let d = partition(3, &[1, 2, 3], &[1, 2]);
        assert_eq!(
            d,
            Decision::Fence {
                reason: "fencing this node because it is only connected to 1 nodes and 2 is needed to make a quorum out of 3 heartbeating nodes".into()
            }
        );
        assert_eq!(
            partition(1, &[1, 2, 3], &[3]),
            Decision::Survive {
                message:
                    "not fencing this node, heartbeating: 3, connected: 2, lowest: 1 (reachable)"
                        .into()
            }
        );
    }

    #[test]
    fn even_split_keeps_the_half_with_the_lowest_node() {
        // 4 nodes, {1,2} | {3,4}
        assert!(matches!(
            partition(2, &[1, 2, 3, 4], &[3, 4]),
            Decision::Survive { .. }
        ));
        assert!(matches!(
            partition(3, &[1, 2, 3, 4], &[1, 2]),
            Decision::Fence { .. }
        ));
    }

    #[test]
    fn node_death_releases_the_hold_without_a_decision() {
        let mut q = Quorum::new(0);
        q.hb_up(0);
        q.hb_up(1);
        q.conn_up(1);
        q.conn_err(1);
        assert_eq!(q.hb_down(1), None);
        assert_eq!(q.connected().len(), 1);
    }

    #[test]
    fn still_up_waits_for_other_holds() {
        // Node 2 is heartbeating but not yet connected: its hold delays the
        // decision that node 1's still_up asks for.
        let mut q = Quorum::new(0);
        q.hb_up(0);
        q.hb_up(1);
        q.conn_up(1);
        q.hb_up(2);
        q.conn_err(1);
        assert_eq!(q.hb_still_up(1), None);
        let d = q.conn_up(2).expect("decision when node 2's hold goes");
        assert!(matches!(d, Decision::Survive { .. }), "{d:?}");
    }

    #[test]
    fn no_decision_when_self_is_not_heartbeating() {
        let q = Quorum::new(5);
        assert!(matches!(q.decide(), Decision::Survive { .. }));
    }
}
