//! A tiny deterministic harness for the sans-I/O core: shared in-memory disks, virtual time,
//! I/O that completes at once unless a test stalls it.

#![allow(dead_code)]

use o2hb::core::LogKind;
use o2hb::{
    Geometry, HeartbeatSet, Input, Mode, NodeMap, Now, Output, RegionConfig, SetConfig, TimerKind,
    Timing,
};
use std::collections::{BTreeMap, VecDeque};

pub struct Disk {
    pub bytes: Vec<u8>,
    pub geometry: Geometry,
}

impl Disk {
    pub fn slot(&self, n: u16) -> &[u8] {
        let bb = self.geometry.block_bytes();
        let off = self.geometry.slot_offset(n) as usize;
        &self.bytes[off..off + bb]
    }

    pub fn slot_mut(&mut self, n: u16) -> &mut [u8] {
        let bb = self.geometry.block_bytes();
        let off = self.geometry.slot_offset(n) as usize;
        &mut self.bytes[off..off + bb]
    }
}

pub struct Node {
    pub num: u8,
    pub set: HeartbeatSet,
    pub timers: BTreeMap<(usize, TimerKind), u64>,
    /// Disk index of each region id.
    pub disks: Vec<usize>,
    pub alive: bool,
    /// Regions whose writes never complete (and never reach the disk).
    pub stalled: Vec<usize>,
    pub log: Vec<(u64, Output)>,
}

pub struct Sim {
    pub now: u64,
    /// Negotiation messages in flight: (to node number, region, kind, sender's node_num).
    pub nego: Vec<(u8, usize, o2hb::NegoKind, u8)>,
    pub disks: Vec<Disk>,
    pub nodes: Vec<Node>,
}

impl Sim {
    pub fn new(disks: usize, block_bytes: u64) -> Sim {
        let geometry = Geometry::new(block_bytes, 1, 16).unwrap();
        let disks = (0..disks)
            .map(|_| Disk {
                bytes: vec![0u8; geometry.block_bytes() * 17],
                geometry,
            })
            .collect();
        Sim {
            now: 0,
            nego: Vec::new(),
            disks,
            nodes: Vec::new(),
        }
    }

    /// Adds a node heartbeating on the given disks; returns its index.
    pub fn add_node(&mut self, num: u8, mode: Mode, timing: Timing, disks: &[usize]) -> usize {
        let mut set = HeartbeatSet::new(SetConfig {
            node: num,
            mode,
            timing,
            configured: NodeMap::first_n(16),
        })
        .unwrap();
        for d in disks {
            let cfg = RegionConfig {
                name: format!("R{d}"),
                device: format!("disk{d}"),
                geometry: self.disks[*d].geometry,
            };
            set.add_region(cfg).unwrap();
        }
        self.nodes.push(Node {
            num,
            set,
            timers: BTreeMap::new(),
            disks: disks.to_vec(),
            alive: true,
            stalled: vec![],
            log: vec![],
        });
        self.nodes.len() - 1
    }

    pub fn start(&mut self, node: usize, region: usize, generation: u64) {
        self.input(node, Input::Start { region, generation });
    }

    pub fn stop(&mut self, node: usize, region: usize) {
        self.input(node, Input::Stop { region });
    }

    /// kill -9: the node stops doing anything at all.
    pub fn kill(&mut self, node: usize) {
        self.nodes[node].alive = false;
        self.nodes[node].timers.clear();
    }

    fn input(&mut self, node: usize, input: Input<'_>) {
        let now = Now::virtual_ms(self.now);
        let out = self.nodes[node].set.handle(now, input);
        self.process(node, out);
    }

    fn process(&mut self, node: usize, out: Vec<Output>) {
        let mut queue: VecDeque<Output> = out.into();
        while let Some(o) = queue.pop_front() {
            if !self.nodes[node].alive {
                return;
            }
            let now = Now::virtual_ms(self.now);
            self.nodes[node].log.push((self.now, o.clone()));
            match o {
                Output::Read {
                    region,
                    first_slot,
                    slots,
                } => {
                    let d = &self.disks[self.nodes[node].disks[region]];
                    let bb = d.geometry.block_bytes();
                    let off = d.geometry.slot_offset(first_slot) as usize;
                    let data = d.bytes[off..off + bb * usize::from(slots)].to_vec();
                    let more = self.nodes[node].set.handle(
                        now,
                        Input::ReadDone {
                            region,
                            result: Ok(&data),
                        },
                    );
                    queue.extend(more);
                }
                Output::Write {
                    region,
                    slot,
                    block,
                } => {
                    if self.nodes[node].stalled.contains(&region) {
                        continue;
                    }
                    let di = self.nodes[node].disks[region];
                    self.disks[di].slot_mut(slot).copy_from_slice(&block);
                    let more = self.nodes[node].set.handle(
                        now,
                        Input::WriteDone {
                            region,
                            result: Ok(()),
                        },
                    );
                    queue.extend(more);
                }
                Output::ArmTimer {
                    region,
                    timer,
                    at_ms,
                } => {
                    self.nodes[node].timers.insert((region, timer), at_ms);
                }
                Output::CancelTimer { region, timer } => {
                    self.nodes[node].timers.remove(&(region, timer));
                }
                Output::SendNego {
                    region,
                    to,
                    kind,
                    node_num,
                } => {
                    self.nego.push((to, region, kind, node_num));
                }
                Output::Fence => {
                    self.nodes[node].alive = false;
                    self.nodes[node].timers.clear();
                }
                _ => {}
            }
        }
    }

    /// Runs every timer due up to and including `until`, in time order (ties by node index).
    pub fn run_until(&mut self, until: u64) {
        loop {
            let next = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.alive)
                .flat_map(|(i, n)| n.timers.iter().map(move |(k, at)| (*at, i, *k)))
                .min();
            let Some((at, node, (region, timer))) = next else {
                break;
            };
            if at > until {
                break;
            }
            self.now = at;
            self.nodes[node].timers.remove(&(region, timer));
            self.input(node, Input::Timer { region, timer });
            self.deliver_nego();
        }
        self.now = until;
    }

    /// Hands in-flight negotiation messages to live nodes with that number (o2net's job).
    fn deliver_nego(&mut self) {
        while let Some((to, region, kind, node_num)) = self.nego.pop() {
            let targets: Vec<usize> = self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.alive && n.num == to)
                .map(|(i, _)| i)
                .collect();
            for t in targets {
                self.input(
                    t,
                    Input::Nego {
                        region,
                        kind,
                        node_num,
                    },
                );
            }
        }
    }

    pub fn events(&self, node: usize) -> Vec<(u64, Output)> {
        self.nodes[node]
            .log
            .iter()
            .filter(|(_, o)| matches!(o, Output::NodeUp { .. } | Output::NodeDown { .. }))
            .cloned()
            .collect()
    }

    /// Times at which this node began an iteration on `region` (its Read of the slot range).
    pub fn iteration_starts(&self, node: usize, region: usize) -> Vec<u64> {
        self.nodes[node]
            .log
            .iter()
            .filter(|(_, o)| matches!(o, Output::Read { region: r, first_slot: _, slots: _ } if *r == region))
            .map(|(t, _)| *t)
            .skip(1) // the baseline read at start is not an iteration
            .collect()
    }

    pub fn logs(&self, node: usize, kind: LogKind) -> Vec<(u64, String)> {
        self.nodes[node]
            .log
            .iter()
            .filter_map(|(t, o)| match o {
                Output::Log(ev) if ev.kind == kind => Some((*t, ev.message.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn first_time(&self, node: usize, f: impl Fn(&Output) -> bool) -> Option<u64> {
        self.nodes[node]
            .log
            .iter()
            .find(|(_, o)| f(o))
            .map(|(t, _)| *t)
    }
}
