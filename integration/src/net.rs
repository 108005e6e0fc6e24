//! The simulated network: TCP-like connections between nodes, with latency,
//! segmentation, partitions and resets.
//!
//! Each connection delivers bytes in order in each direction. A byte's
//! arrival is `send time + latency + a random part of the spread`, but never
//! before the previous byte of the same direction. A partition blocks a
//! direction between two nodes: what is sent meanwhile waits (TCP keeps
//! retransmitting, and o2net sets an effectively infinite user timeout), and
//! arrives in order once the direction heals. A crashed machine sends nothing,
//! not even a reset; a rebooted one answers the old connection's bytes with a
//! reset, as a real TCP stack would.

use crate::events::{Agenda, Event};
use crate::rng::SimRng;
use crate::stack::{ConnId, Input, NodeId, Owner};
use crate::time::SimTime;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Linux errno for a reset connection.
pub const ECONNRESET: i32 = 104;

/// Latency of one direction of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetParams {
    pub latency: Duration,
    /// Extra delay drawn uniformly in `0..=spread` for each segment.
    pub spread: Duration,
}

impl Default for NetParams {
    fn default() -> Self {
        NetParams {
            latency: Duration::from_micros(200),
            spread: Duration::from_micros(300),
        }
    }
}

/// Side 0 opened the connection, side 1 accepted it.
type Side = usize;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Syn,
    SynAck,
    Data(Vec<u8>),
    /// An orderly close (errno 0) or a reset.
    Close(i32),
}

/// A segment in flight towards one side of a connection.
#[derive(Debug)]
pub struct NetEvent {
    conn: ConnId,
    to: Side,
    segment: Segment,
}

#[derive(Clone, Copy, Debug)]
struct Endpoint {
    node: NodeId,
    /// The incarnation that owns this end; `None` for an acceptor not reached yet.
    incarnation: Option<u32>,
    open: bool,
}

#[derive(Debug)]
struct Conn {
    ends: [Endpoint; 2],
    /// Earliest time the next segment towards side i may arrive.
    next_arrival: [SimTime; 2],
    /// Segments towards side i waiting for a partition to heal.
    held: [VecDeque<Segment>; 2],
}

/// Something the network hands to a node, with what the trace should say about it.
#[derive(Debug)]
pub struct Delivery {
    pub node: NodeId,
    pub incarnation: u32,
    pub input: Input,
}

/// Per-node traffic counters for the summary table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub sends: u64,
    pub bytes_sent: u64,
    pub receives: u64,
    pub connects: u64,
    pub resets: u64,
}

/// The whole simulated network.
pub struct SimNet {
    params: NetParams,
    nodes: usize,
    /// `blocked[from * nodes + to]`: the direction from → to is cut.
    blocked: Vec<bool>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    counters: Vec<NetCounters>,
}

impl SimNet {
    pub fn new(nodes: usize, params: NetParams) -> Self {
        SimNet {
            params,
            nodes,
            blocked: vec![false; nodes * nodes],
            conns: BTreeMap::new(),
            next_conn: 1,
            counters: vec![NetCounters::default(); nodes],
        }
    }

    pub fn counters(&self, node: NodeId) -> NetCounters {
        self.counters
            .get(usize::from(node))
            .copied()
            .unwrap_or_default()
    }

    /// A fresh connection id for a node about to connect.
    pub fn allocate(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        id
    }

    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked
            .get(usize::from(from) * self.nodes + usize::from(to))
            .copied()
            .unwrap_or(false)
    }

    /// Peer of `node` on `conn`, if `node` is one of its ends.
    pub fn peer_of(&self, conn: ConnId, node: NodeId) -> Option<NodeId> {
        let c = self.conns.get(&conn)?;
        if c.ends[0].node == node {
            Some(c.ends[1].node)
        } else if c.ends[1].node == node {
            Some(c.ends[0].node)
        } else {
            None
        }
    }

    fn bump(&mut self, node: NodeId, f: impl FnOnce(&mut NetCounters)) {
        if let Some(c) = self.counters.get_mut(usize::from(node)) {
            f(c);
        }
    }

    /// `from` opens connection `conn` to `to`.
    pub fn connect(
        &mut self,
        now: SimTime,
        conn: ConnId,
        from: Owner,
        to: NodeId,
        agenda: &mut Agenda,
        rng: &mut SimRng,
    ) {
        let Owner {
            node: from,
            incarnation: inc,
        } = from;
        self.bump(from, |c| c.connects += 1);
        self.conns.insert(
            conn,
            Conn {
                ends: [
                    Endpoint {
                        node: from,
                        incarnation: Some(inc),
                        open: true,
                    },
                    Endpoint {
                        node: to,
                        incarnation: None,
                        open: true,
                    },
                ],
                next_arrival: [now; 2],
                held: [VecDeque::new(), VecDeque::new()],
            },
        );
        self.transmit(now, conn, 1, Segment::Syn, agenda, rng);
    }

    /// Which side of `conn` belongs to `node` incarnation `inc`, if it is still open there.
    fn side_of(&self, conn: ConnId, node: NodeId, inc: u32) -> Option<Side> {
        let c = self.conns.get(&conn)?;
        (0..2).find(|&s| {
            c.ends[s].node == node && c.ends[s].incarnation == Some(inc) && c.ends[s].open
        })
    }

    /// `who` writes `data` on `conn`. Returns false if the connection is not its own or is closed.
    pub fn send(
        &mut self,
        now: SimTime,
        conn: ConnId,
        who: Owner,
        data: Vec<u8>,
        agenda: &mut Agenda,
        rng: &mut SimRng,
    ) -> bool {
        let node = who.node;
        let Some(side) = self.side_of(conn, node, who.incarnation) else {
            return false;
        };
        let len = data.len() as u64;
        self.bump(node, |c| {
            c.sends += 1;
            c.bytes_sent += len;
        });
        // TCP does not preserve write boundaries: cut some writes into several
        // segments so the receiver's reassembly is exercised.
        let pieces = if data.len() > 1 && rng.chance(0.2) {
            rng.between(2, 3)
        } else {
            1
        };
        let mut rest = data;
        for i in (1..pieces).rev() {
            let max_cut = rest.len().saturating_sub(usize::try_from(i).unwrap_or(0));
            if max_cut <= 1 {
                break;
            }
            let cut = 1 + rng.index(max_cut - 1);
            let tail = rest.split_off(cut);
            self.transmit(now, conn, 1 - side, Segment::Data(rest), agenda, rng);
            rest = tail;
        }
        self.transmit(now, conn, 1 - side, Segment::Data(rest), agenda, rng);
        true
    }

    /// `who` closes its end of `conn`; the peer sees an orderly close.
    pub fn close(
        &mut self,
        now: SimTime,
        conn: ConnId,
        who: Owner,
        agenda: &mut Agenda,
        rng: &mut SimRng,
    ) {
        let Some(side) = self.side_of(conn, who.node, who.incarnation) else {
            return;
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.ends[side].open = false;
        }
        self.transmit(now, conn, 1 - side, Segment::Close(0), agenda, rng);
        if self
            .conns
            .get(&conn)
            .is_some_and(|c| c.ends.iter().all(|e| !e.open))
        {
            self.conns.remove(&conn);
        }
    }

    /// The network resets every connection between `a` and `b`: both ends see ECONNRESET.
    pub fn reset_between(&mut self, now: SimTime, a: NodeId, b: NodeId, agenda: &mut Agenda) {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let (x, y) = (c.ends[0].node, c.ends[1].node);
                (x == a && y == b) || (x == b && y == a)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(c) = self.conns.get_mut(&id) {
                for side in 0..2 {
                    c.held[side].clear();
                    if c.ends[side].open {
                        // A reset overtakes queued data: it arrives one latency from now.
                        let at = now + self.params.latency;
                        c.next_arrival[side] = c.next_arrival[side].max(at);
                        agenda.push(
                            at,
                            Event::Net(NetEvent {
                                conn: id,
                                to: side,
                                segment: Segment::Close(ECONNRESET),
                            }),
                        );
                    }
                }
            }
        }
    }

    /// The machine of `node` went down: its ends vanish without a word to the
    /// peers, and what it had sent but a partition still held is lost (nobody
    /// is left to retransmit it). Segments already on the wire still arrive.
    pub fn crash(&mut self, node: NodeId) {
        for c in self.conns.values_mut() {
            for side in 0..2 {
                if c.ends[side].node == node {
                    c.ends[side].open = false;
                    c.held[1 - side].clear();
                }
            }
        }
        self.conns.retain(|_, c| c.ends.iter().any(|e| e.open));
    }

    /// Cuts or heals the direction `from` → `to`. Healing releases what waited, in order.
    pub fn set_blocked(
        &mut self,
        now: SimTime,
        from: NodeId,
        to: NodeId,
        blocked: bool,
        agenda: &mut Agenda,
        rng: &mut SimRng,
    ) {
        let idx = usize::from(from) * self.nodes + usize::from(to);
        let Some(slot) = self.blocked.get_mut(idx) else {
            return;
        };
        *slot = blocked;
        if blocked {
            return;
        }
        let mut release = Vec::new();
        for (id, c) in self.conns.iter_mut() {
            for side in 0..2 {
                if c.ends[side].node == to
                    && c.ends[1 - side].node == from
                    && !c.held[side].is_empty()
                {
                    release.push((*id, side, std::mem::take(&mut c.held[side])));
                }
            }
        }
        for (id, side, segs) in release {
            for seg in segs {
                self.transmit(now, id, side, seg, agenda, rng);
            }
        }
    }

    fn latency(&self, rng: &mut SimRng) -> Duration {
        self.params.latency + rng.duration(Duration::ZERO, self.params.spread)
    }

    fn transmit(
        &mut self,
        now: SimTime,
        conn: ConnId,
        to: Side,
        segment: Segment,
        agenda: &mut Agenda,
        rng: &mut SimRng,
    ) {
        let lat = self.latency(rng);
        let blocked_dir = match self.conns.get(&conn) {
            Some(c) => self.is_blocked(c.ends[1 - to].node, c.ends[to].node),
            None => return,
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if blocked_dir {
            c.held[to].push_back(segment);
            return;
        }
        let at = (now + lat).max(c.next_arrival[to]);
        c.next_arrival[to] = at;
        agenda.push(at, Event::Net(NetEvent { conn, to, segment }));
    }

    /// A segment arrives. `current` says which incarnation of a node is running (None: down).
    pub fn arrive(
        &mut self,
        now: SimTime,
        ev: NetEvent,
        current: &dyn Fn(NodeId) -> Option<u32>,
        agenda: &mut Agenda,
        rng: &mut SimRng,
    ) -> Option<Delivery> {
        let NetEvent { conn, to, segment } = ev;
        let c = self.conns.get_mut(&conn)?;
        let end = c.ends[to];
        let peer = c.ends[1 - to].node;
        let running = current(end.node);
        match segment {
            Segment::Syn => {
                let inc = running?;
                c.ends[1].incarnation = Some(inc);
                self.transmit(now, conn, 0, Segment::SynAck, agenda, rng);
                Some(Delivery {
                    node: end.node,
                    incarnation: inc,
                    input: Input::Accepted { conn, from: peer },
                })
            }
            Segment::SynAck => {
                let inc = end
                    .incarnation
                    .filter(|i| end.open && running == Some(*i))?;
                Some(Delivery {
                    node: end.node,
                    incarnation: inc,
                    input: Input::Connected { conn, peer },
                })
            }
            Segment::Data(data) => match (end.incarnation, running) {
                (Some(owner), Some(now_running)) if owner == now_running && end.open => {
                    self.bump(end.node, |k| k.receives += 1);
                    Some(Delivery {
                        node: end.node,
                        incarnation: owner,
                        input: Input::Received { conn, data },
                    })
                }
                (_, Some(_)) => {
                    // A rebooted (or closed) end answers with a reset.
                    if c.ends[1 - to].open {
                        self.transmit(now, conn, 1 - to, Segment::Close(ECONNRESET), agenda, rng);
                    }
                    None
                }
                (_, None) => None,
            },
            Segment::Close(errno) => {
                let inc = end
                    .incarnation
                    .filter(|i| end.open && running == Some(*i))?;
                c.ends[to].open = false;
                let both_closed = !c.ends[1 - to].open;
                if both_closed {
                    self.conns.remove(&conn);
                }
                if errno != 0 {
                    self.bump(end.node, |k| k.resets += 1);
                }
                Some(Delivery {
                    node: end.node,
                    incarnation: inc,
                    input: Input::Closed { conn, errno },
                })
            }
        }
    }

    /// Ids of connections with at least one open end (for tests and dumps).
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    /// A two-node network on which node 1 has opened connection `conn` to node 0 at time 0,
    /// with the agenda and random stream that drive it.
    struct Pair {
        net: SimNet,
        agenda: Agenda,
        rng: SimRng,
        conn: ConnId,
    }

    /// Incarnation 0 of `node`, the owner every test's sockets belong to.
    fn owner(node: NodeId) -> Owner {
        Owner {
            node,
            incarnation: 0,
        }
    }

    impl Pair {
        fn new(seed: u64, params: NetParams) -> Pair {
            let mut net = SimNet::new(2, params);
            let mut agenda = Agenda::default();
            let mut rng = SimRng::new(seed, Stream::Network);
            let conn = net.allocate();
            net.connect(SimTime::ZERO, conn, owner(1), 0, &mut agenda, &mut rng);
            Pair {
                net,
                agenda,
                rng,
                conn,
            }
        }

        /// `node` writes `data` on the connection at `at`.
        fn send(&mut self, at: SimTime, node: NodeId, data: Vec<u8>) {
            let Pair {
                net,
                agenda,
                rng,
                conn,
            } = self;
            net.send(at, *conn, owner(node), data, agenda, rng);
        }

        /// Delivers everything scheduled, with `up[n]` the incarnation node `n` runs (None:
        /// down).
        fn run(&mut self, up: &[Option<u32>]) -> Vec<(SimTime, Delivery)> {
            let mut out = Vec::new();
            while let Some((at, ev)) = self.agenda.pop() {
                if let Event::Net(ev) = ev {
                    let current = |n: NodeId| up.get(usize::from(n)).copied().flatten();
                    if let Some(d) =
                        self.net
                            .arrive(at, ev, &current, &mut self.agenda, &mut self.rng)
                    {
                        out.push((at, d));
                    }
                }
            }
            out
        }
    }

    const BOTH_UP: [Option<u32>; 2] = [Some(0), Some(0)];

    fn received(ds: &[(SimTime, Delivery)], node: NodeId) -> Vec<u8> {
        ds.iter()
            .filter(|(_, d)| d.node == node)
            .flat_map(|(_, d)| match &d.input {
                Input::Received { data, .. } => data.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn bytes_arrive_in_order_despite_spread_and_segmentation() {
        let mut p = Pair::new(
            1,
            NetParams {
                latency: Duration::from_micros(100),
                spread: Duration::from_millis(5),
            },
        );
        let ds = p.run(&BOTH_UP);
        assert!(matches!(ds[0].1.input, Input::Accepted { from: 1, .. }));
        assert!(matches!(ds[1].1.input, Input::Connected { peer: 0, .. }));
        let mut expected = Vec::new();
        for i in 0..200u32 {
            let msg = i.to_be_bytes().repeat(3);
            expected.extend_from_slice(&msg);
            p.send(SimTime::from_micros(u64::from(i) * 10), 1, msg);
        }
        let ds = p.run(&BOTH_UP);
        assert!(ds.len() > 200, "some writes should be split into segments");
        assert_eq!(received(&ds, 0), expected);
        assert!(ds.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn a_cut_direction_holds_data_until_it_heals() {
        let mut p = Pair::new(2, NetParams::default());
        p.run(&BOTH_UP);
        p.net
            .set_blocked(SimTime::from_secs(1), 1, 0, true, &mut p.agenda, &mut p.rng);
        p.send(SimTime::from_secs(1), 1, b"held".to_vec());
        p.send(SimTime::from_secs(1), 0, b"flows".to_vec());
        let ds = p.run(&BOTH_UP);
        assert_eq!(received(&ds, 1), b"flows");
        assert!(received(&ds, 0).is_empty());
        p.net.set_blocked(
            SimTime::from_secs(50),
            1,
            0,
            false,
            &mut p.agenda,
            &mut p.rng,
        );
        let ds = p.run(&BOTH_UP);
        assert_eq!(received(&ds, 0), b"held");
        assert!(ds.iter().all(|(t, _)| *t >= SimTime::from_secs(50)));
    }

    #[test]
    fn crashed_machine_is_silent_and_rebooted_one_resets() {
        let mut p = Pair::new(3, NetParams::default());
        p.run(&BOTH_UP);
        p.net.crash(0);
        p.send(SimTime::from_secs(1), 1, b"x".to_vec());
        // Node 0 is down: nothing comes back.
        assert!(p.run(&[None, Some(0)]).is_empty());
        p.send(SimTime::from_secs(2), 1, b"y".to_vec());
        // Node 0 rebooted (incarnation 1): node 1 gets a reset.
        let ds = p.run(&[Some(1), Some(0)]);
        assert_eq!(ds.len(), 1);
        assert_eq!(ds[0].1.node, 1);
        assert!(matches!(
            ds[0].1.input,
            Input::Closed {
                errno: ECONNRESET,
                ..
            }
        ));
    }

    #[test]
    fn network_reset_reaches_both_ends() {
        let mut p = Pair::new(4, NetParams::default());
        p.run(&BOTH_UP);
        p.net
            .reset_between(SimTime::from_secs(1), 0, 1, &mut p.agenda);
        let ds = p.run(&BOTH_UP);
        let mut closed: Vec<NodeId> = ds
            .iter()
            .filter(|(_, d)| {
                matches!(
                    d.input,
                    Input::Closed {
                        errno: ECONNRESET,
                        ..
                    }
                )
            })
            .map(|(_, d)| d.node)
            .collect();
        closed.sort_unstable();
        assert_eq!(closed, vec![0, 1]);
        assert_eq!(p.net.open_connections(), 0);
    }
}
