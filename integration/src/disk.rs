//! Simulated shared disks: one byte array per heartbeat region, seen by every node.
//!
//! Each (node, region) pair is its own I/O path with its own latency, slow
//! factor and stall switch, as when one node's HBA or multipath hangs while
//! the others still reach the array. I/Os of one path complete in submission
//! order. A read sees the disk as it is when the read completes and a write
//! lands when it completes, so every I/O is atomic at its completion moment.
//! A stalled path holds its I/Os until it is released; a crash loses the held
//! ones, while I/Os already on their way to the array still land.

use crate::events::{Agenda, Event};
use crate::rng::SimRng;
use crate::stack::{Input, NodeId, Owner, RegionId};
use crate::time::SimTime;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Linux errno for an I/O error.
pub const EIO: i32 = 5;

/// Where in a written block corruption strikes.
const CORRUPT_AT: usize = 40;

/// Service time of one I/O on a healthy path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskParams {
    pub latency: Duration,
    pub spread: Duration,
}

impl Default for DiskParams {
    fn default() -> Self {
        DiskParams {
            latency: Duration::from_micros(500),
            spread: Duration::from_millis(2),
        }
    }
}

/// Geometry of one shared region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionSpec {
    /// 32 uppercase hex characters, as ocfs2-tools names a volume's region.
    pub name: String,
    pub block_bytes: u32,
    /// First heartbeat block, in units of `block_bytes`.
    pub start_block: u64,
    /// Number of slots (ocfs2-tools always uses 255).
    pub blocks: u32,
}

impl RegionSpec {
    fn size(&self) -> usize {
        let blocks = self.start_block.saturating_add(u64::from(self.blocks));
        usize::try_from(blocks.saturating_mul(u64::from(self.block_bytes))).unwrap_or(0)
    }
}

/// What an I/O does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoKind {
    Read { offset: u64, len: usize },
    Write { offset: u64, data: Vec<u8> },
}

/// One I/O as a node issues it; `tag` comes back with the completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoRequest {
    pub region: RegionId,
    pub tag: u64,
    pub kind: IoKind,
}

#[derive(Debug)]
struct Io {
    node: NodeId,
    incarnation: u32,
    region: RegionId,
    tag: u64,
    kind: IoKind,
    /// A write that lands with one byte flipped (decided when it is scheduled).
    corrupt: bool,
}

#[derive(Debug, Default)]
struct Path {
    last_done: SimTime,
    stalled: bool,
    slow: u32,
    /// Chance, in thousandths, that a write lands corrupted.
    corrupt_permille: u32,
    held: VecDeque<u64>,
}

/// A finished I/O, to hand to the node that issued it.
#[derive(Debug)]
pub struct Completion {
    pub node: NodeId,
    pub incarnation: u32,
    pub input: Input,
}

/// Per-node I/O counters for the summary table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskCounters {
    pub reads: u64,
    pub writes: u64,
}

pub struct SimDisk {
    params: DiskParams,
    nodes: usize,
    specs: Vec<RegionSpec>,
    data: Vec<Vec<u8>>,
    paths: Vec<Path>,
    ios: BTreeMap<u64, Io>,
    next_io: u64,
    counters: Vec<DiskCounters>,
}

impl SimDisk {
    /// Regions start zero-filled, like a freshly formatted heartbeat file.
    pub fn new(nodes: usize, specs: Vec<RegionSpec>, params: DiskParams) -> Self {
        let data = specs.iter().map(|s| vec![0u8; s.size()]).collect();
        let paths = (0..nodes * specs.len())
            .map(|_| Path {
                slow: 1,
                ..Path::default()
            })
            .collect();
        SimDisk {
            params,
            nodes,
            specs,
            data,
            paths,
            ios: BTreeMap::new(),
            next_io: 1,
            counters: vec![DiskCounters::default(); nodes],
        }
    }

    pub fn counters(&self, node: NodeId) -> DiskCounters {
        self.counters
            .get(usize::from(node))
            .copied()
            .unwrap_or_default()
    }

    /// The current bytes of a region (for checkers and dumps).
    pub fn contents(&self, region: RegionId) -> &[u8] {
        self.data
            .get(usize::from(region))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn path_index(&self, node: NodeId, region: RegionId) -> usize {
        usize::from(region) * self.nodes + usize::from(node)
    }

    /// Issues `req` on behalf of `who`; its completion becomes an [`Event::DiskDone`].
    pub fn submit(
        &mut self,
        now: SimTime,
        who: Owner,
        req: IoRequest,
        agenda: &mut Agenda,
        rng: &mut SimRng,
    ) {
        let io = Io {
            node: who.node,
            incarnation: who.incarnation,
            region: req.region,
            tag: req.tag,
            kind: req.kind,
            corrupt: false,
        };
        self.enqueue(now, io, agenda, rng);
    }

    fn enqueue(&mut self, now: SimTime, io: Io, agenda: &mut Agenda, rng: &mut SimRng) {
        let id = self.next_io;
        self.next_io += 1;
        let pi = self.path_index(io.node, io.region);
        self.ios.insert(id, io);
        let stalled = self.paths.get(pi).is_some_and(|p| p.stalled);
        if stalled {
            if let Some(p) = self.paths.get_mut(pi) {
                p.held.push_back(id);
            }
        } else {
            self.schedule(now, pi, id, agenda, rng);
        }
    }

    fn schedule(
        &mut self,
        now: SimTime,
        pi: usize,
        id: u64,
        agenda: &mut Agenda,
        rng: &mut SimRng,
    ) {
        let service = self.params.latency + rng.duration(Duration::ZERO, self.params.spread);
        let Some(p) = self.paths.get_mut(pi) else {
            return;
        };
        if p.corrupt_permille > 0 {
            if let Some(io) = self
                .ios
                .get_mut(&id)
                .filter(|io| matches!(io.kind, IoKind::Write { .. }))
            {
                io.corrupt = rng.below(1000) < u64::from(p.corrupt_permille);
            }
        }
        let at = (now + service * p.slow).max(p.last_done);
        p.last_done = at;
        agenda.push(at, Event::DiskDone { io: id });
    }

    /// Stalls or releases every I/O of `node` on `region`.
    pub fn set_stalled(
        &mut self,
        now: SimTime,
        node: NodeId,
        region: RegionId,
        stalled: bool,
        agenda: &mut Agenda,
        rng: &mut SimRng,
    ) {
        let pi = self.path_index(node, region);
        let Some(p) = self.paths.get_mut(pi) else {
            return;
        };
        p.stalled = stalled;
        if !stalled {
            let held = std::mem::take(&mut p.held);
            for id in held {
                self.schedule(now, pi, id, agenda, rng);
            }
        }
    }

    /// Makes `permille` thousandths of `node`'s writes on `region` land with a
    /// flipped byte, as a torn or rotten sector would (0 = healthy).
    pub fn set_corrupt(&mut self, node: NodeId, region: RegionId, permille: u32) {
        let pi = self.path_index(node, region);
        if let Some(p) = self.paths.get_mut(pi) {
            p.corrupt_permille = permille.min(1000);
        }
    }

    /// Multiplies the service time of `node`'s I/O on `region` (1 = healthy).
    pub fn set_slow(&mut self, node: NodeId, region: RegionId, factor: u32) {
        let pi = self.path_index(node, region);
        if let Some(p) = self.paths.get_mut(pi) {
            p.slow = factor.max(1);
        }
    }

    /// The machine of `node` went down: I/Os stuck in its paths are lost.
    pub fn crash(&mut self, node: NodeId) {
        for region in 0..self.specs.len() {
            let pi = self.path_index(node, RegionId::try_from(region).unwrap_or(RegionId::MAX));
            if let Some(p) = self.paths.get_mut(pi) {
                for id in std::mem::take(&mut p.held) {
                    self.ios.remove(&id);
                }
            }
        }
    }

    /// An I/O finishes: the write lands or the read takes its snapshot.
    pub fn complete(&mut self, id: u64) -> Option<Completion> {
        let io = self.ios.remove(&id)?;
        let region_data = self.data.get_mut(usize::from(io.region));
        let counters = self.counters.get_mut(usize::from(io.node));
        match io.kind {
            IoKind::Read { offset, len } => {
                if let Some(c) = counters {
                    c.reads += 1;
                }
                let bytes =
                    region_data.and_then(|d| range(offset, len, d.len()).map(|r| d[r].to_vec()));
                let result = bytes.ok_or(EIO);
                Some(Completion {
                    node: io.node,
                    incarnation: io.incarnation,
                    input: Input::DiskReadDone {
                        region: io.region,
                        offset,
                        tag: io.tag,
                        result,
                    },
                })
            }
            IoKind::Write { offset, data } => {
                if let Some(c) = counters {
                    c.writes += 1;
                }
                let landed = match region_data {
                    Some(d) => match range(offset, data.len(), d.len()) {
                        Some(r) => {
                            let start = r.start;
                            d[r].copy_from_slice(&data);
                            if io.corrupt {
                                // A byte past the block's fields: the checksum no longer matches.
                                let at = start + CORRUPT_AT.min(data.len().saturating_sub(1));
                                if let Some(b) = d.get_mut(at) {
                                    *b ^= 0x5a;
                                }
                            }
                            true
                        }
                        None => false,
                    },
                    None => false,
                };
                Some(Completion {
                    node: io.node,
                    incarnation: io.incarnation,
                    input: Input::DiskWriteDone {
                        region: io.region,
                        offset,
                        tag: io.tag,
                        result: if landed { Ok(()) } else { Err(EIO) },
                    },
                })
            }
        }
    }
}

/// `offset..offset+len` if it lies within a device of `size` bytes.
fn range(offset: u64, len: usize, size: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(len)?;
    (end <= size).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    struct Rig {
        d: SimDisk,
        a: Agenda,
        rng: SimRng,
    }

    impl Rig {
        fn new(nodes: usize) -> Self {
            let spec = RegionSpec {
                name: "R".into(),
                block_bytes: 512,
                start_block: 1,
                blocks: 4,
            };
            let d = SimDisk::new(nodes, vec![spec], DiskParams::default());
            Rig {
                d,
                a: Agenda::default(),
                rng: SimRng::new(1, Stream::Disk),
            }
        }

        fn io(&mut self, at: SimTime, node: NodeId, kind: IoKind) {
            let who = Owner {
                node,
                incarnation: 0,
            };
            self.d.submit(
                at,
                who,
                IoRequest {
                    region: 0,
                    tag: 0,
                    kind,
                },
                &mut self.a,
                &mut self.rng,
            );
        }

        fn read(&mut self, at: SimTime, node: NodeId, offset: u64, len: usize) {
            self.io(at, node, IoKind::Read { offset, len });
        }

        fn write(&mut self, at: SimTime, node: NodeId, offset: u64, byte: u8) {
            self.io(
                at,
                node,
                IoKind::Write {
                    offset,
                    data: vec![byte; 512],
                },
            );
        }

        fn drain(&mut self) -> Vec<(SimTime, Completion)> {
            let mut out = Vec::new();
            while let Some((at, ev)) = self.a.pop() {
                if let Event::DiskDone { io } = ev {
                    out.extend(self.d.complete(io).map(|c| (at, c)));
                }
            }
            out
        }
    }

    #[test]
    fn other_nodes_read_what_one_wrote() {
        let mut r = Rig::new(2);
        r.write(SimTime::ZERO, 0, 512, 7);
        r.drain();
        r.read(SimTime::from_secs(1), 1, 512, 1024);
        let done = r.drain();
        let Input::DiskReadDone {
            result: Ok(bytes), ..
        } = &done[0].1.input
        else {
            panic!("read failed: {:?}", done[0].1.input);
        };
        assert_eq!(&bytes[..512], &[7u8; 512][..]);
        assert_eq!(&bytes[512..], &[0u8; 512][..]);
    }

    #[test]
    fn out_of_range_io_is_an_error_not_a_panic() {
        let mut r = Rig::new(1);
        r.read(SimTime::ZERO, 0, u64::MAX, 512);
        r.write(SimTime::ZERO, 0, 5 * 512, 1);
        let done = r.drain();
        assert!(matches!(
            done[0].1.input,
            Input::DiskReadDone {
                result: Err(EIO),
                ..
            }
        ));
        assert!(matches!(
            done[1].1.input,
            Input::DiskWriteDone {
                result: Err(EIO),
                ..
            }
        ));
    }

    #[test]
    fn a_stalled_path_holds_only_that_nodes_io_and_keeps_order() {
        let mut r = Rig::new(2);
        r.d.set_stalled(SimTime::ZERO, 0, 0, true, &mut r.a, &mut r.rng);
        r.write(SimTime::ZERO, 0, 512, 1);
        r.write(SimTime::ZERO, 0, 512, 2);
        r.read(SimTime::ZERO, 1, 512, 512);
        let done = r.drain();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].1.node, 1);
        r.d.set_stalled(SimTime::from_secs(30), 0, 0, false, &mut r.a, &mut r.rng);
        let done = r.drain();
        assert_eq!(done.len(), 2);
        assert!(done.iter().all(|(t, _)| *t >= SimTime::from_secs(30)));
        assert_eq!(&r.d.contents(0)[512..1024], &[2u8; 512][..]);
    }

    #[test]
    fn a_slow_path_takes_longer_than_a_healthy_one() {
        let mut r = Rig::new(2);
        r.d.set_slow(0, 0, 1000);
        r.read(SimTime::ZERO, 0, 512, 512);
        r.read(SimTime::ZERO, 1, 512, 512);
        let done = r.drain();
        assert_eq!(done[0].1.node, 1, "the healthy node finishes first");
        assert!(
            done[1].0 >= SimTime::from_millis(500),
            "x1000 of at least 0.5 ms"
        );
    }

    #[test]
    fn corrupted_writes_land_with_one_byte_flipped() {
        let mut r = Rig::new(1);
        r.d.set_corrupt(0, 0, 1000);
        r.write(SimTime::ZERO, 0, 512, 7);
        r.drain();
        let block = &r.d.contents(0)[512..1024];
        assert_eq!(block.iter().filter(|b| **b != 7).count(), 1);
        assert_eq!(block[CORRUPT_AT], 7 ^ 0x5a);
        r.d.set_corrupt(0, 0, 0);
        r.write(SimTime::from_secs(1), 0, 512, 7);
        r.drain();
        assert!(r.d.contents(0)[512..1024].iter().all(|b| *b == 7));
    }

    #[test]
    fn a_crash_loses_stalled_io() {
        let mut r = Rig::new(1);
        r.d.set_stalled(SimTime::ZERO, 0, 0, true, &mut r.a, &mut r.rng);
        r.write(SimTime::ZERO, 0, 512, 1);
        r.d.crash(0);
        r.d.set_stalled(SimTime::from_secs(1), 0, 0, false, &mut r.a, &mut r.rng);
        assert!(r.drain().is_empty());
        assert!(r.d.contents(0).iter().all(|b| *b == 0));
    }
}
