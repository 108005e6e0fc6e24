//! Heartbeat liveness: nodes come up and go down after exactly the iterations
//! the rules say.
//!
//! For every node, the checker replays the kernel's per-slot rules (spec
//! o2hb.md §5: two changed reads make a node live; `dead_threshold` unchanged
//! reads or a new generation make it dead; any change resets the miss count;
//! a bad CRC counts as unchanged for a live node and is ignored otherwise)
//! on the very bytes that node's reads returned, and on the block it writes
//! for its own slot. From that it knows which NODE_UP and NODE_DOWN events
//! each iteration must produce, and checks that the core produced exactly
//! those, in that iteration, with the right generation. It shares no code
//! with the o2hb core beyond the block decoder.

use super::{before, Checker, Tally, Violation, World};
use crate::config::SimConfig;
use crate::sim::region_spec;
use crate::stack::{NodeId, Note};
use crate::trace::{Record, What};
use o2hb::SlotView;
use std::collections::BTreeMap;

const LIVE_THRESHOLD: u32 = 2;

#[derive(Clone, Copy, Debug, Default)]
struct SlotModel {
    seq: u64,
    generation: u64,
    changed: u32,
    equal: u32,
    live: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Up(u64),
    Down,
}

/// What one iteration of one observer must report: node → event.
#[derive(Debug, Default)]
struct Expectation {
    events: BTreeMap<NodeId, Event>,
    /// Why, for messages: node → (changed, equal) after the read.
    counts: BTreeMap<NodeId, (u32, u32)>,
}

#[derive(Debug, Default)]
struct Observer {
    baseline_done: bool,
    slots: Vec<SlotModel>,
    /// The iteration read waiting for the observer's own write.
    read: Option<(u64, Vec<u8>)>,
    pending: Option<Expectation>,
    iterations: u64,
}

pub struct HbRules {
    dead_threshold: u32,
    /// How far back a violation's trace window reaches.
    lookback: std::time::Duration,
    block_bytes: usize,
    start_block: u64,
    slots: usize,
    observers: Vec<Observer>,
    tally: Tally,
}

impl HbRules {
    pub fn new(cfg: &SimConfig) -> Self {
        let spec = region_spec(cfg.seed);
        HbRules {
            dead_threshold: cfg.timing.dead_threshold,
            lookback: cfg.timing.hb_period * 3,
            block_bytes: usize::try_from(spec.block_bytes).unwrap_or(512),
            start_block: spec.start_block,
            slots: usize::try_from(spec.blocks).unwrap_or(255),
            observers: (0..cfg.nodes).map(|_| Observer::default()).collect(),
            tally: Tally::default(),
        }
    }

    /// Slot number of the first block of an I/O at `offset`.
    fn first_slot(&self, offset: u64) -> Option<usize> {
        let block = offset / u64::try_from(self.block_bytes).ok()?;
        usize::try_from(block.checked_sub(self.start_block)?).ok()
    }

    /// Ends the observer's open iteration: every expected event must have been seen.
    fn settle(&mut self, node: NodeId, world: &World<'_>, out: &mut Vec<Violation>) {
        let since = before(world.now, self.lookback);
        let Some(obs) = self.observers.get_mut(usize::from(node)) else {
            return;
        };
        let Some(exp) = obs.pending.take() else {
            return;
        };
        self.tally.judged += 1;
        for (m, ev) in exp.events {
            let (changed, equal) = exp.counts.get(&m).copied().unwrap_or_default();
            let what = match ev {
                Event::Up(_) => format!("n{m} UP (it changed in {changed} reads)"),
                Event::Down => format!("n{m} DOWN ({equal} unchanged reads, or a new generation)"),
            };
            out.push(Violation {
                checker: "hb-rules",
                at: world.now,
                since,
                nodes: vec![node, m],
                message: format!(
                    "n{node}'s heartbeat iteration {} should have reported {what}, and did not",
                    obs.iterations
                ),
            });
        }
    }

    /// Applies the rules to one slot as read (or, for the own slot, as written).
    fn check_slot(&self, model: &mut SlotModel, bytes: &[u8]) -> Option<Event> {
        let view = SlotView::parse(bytes).ok()?;
        let mut gen_changed = false;
        if !view.crc_ok {
            if !model.live {
                return None;
            }
            model.equal += 1;
        } else {
            let b = view.block;
            if model.seq != b.seq {
                model.changed += 1;
            } else {
                model.equal += 1;
            }
            model.seq = b.seq;
            if model.generation != b.generation {
                gen_changed = true;
                model.equal = 0;
            }
            model.generation = b.generation;
        }
        if !model.live && model.changed >= LIVE_THRESHOLD {
            model.live = true;
            model.equal = 0;
            return Some(Event::Up(model.generation));
        }
        if !model.live {
            return None;
        }
        if model.equal >= self.dead_threshold || gen_changed {
            model.live = false;
            if !gen_changed {
                model.changed = 0;
            }
            return Some(Event::Down);
        }
        if model.changed != 0 {
            model.changed = 0;
            model.equal = 0;
        }
        None
    }

    /// The observer wrote its own block: the iteration's slot checks can be replayed now.
    fn iterate(&mut self, node: NodeId, own: &[u8]) {
        let bb = self.block_bytes;
        let Some(obs) = self.observers.get_mut(usize::from(node)) else {
            return;
        };
        let Some((offset, data)) = obs.read.take() else {
            return;
        };
        let mut slots = std::mem::take(&mut obs.slots);
        let first = self.first_slot(offset).unwrap_or(0);
        let mut exp = Expectation::default();
        for (i, chunk) in data.chunks_exact(bb).enumerate() {
            let slot = first + i;
            let Ok(m) = NodeId::try_from(slot) else {
                continue;
            };
            let bytes = if m == node { own } else { chunk };
            let Some(model) = slots.get_mut(slot) else {
                continue;
            };
            if let Some(ev) = self.check_slot(model, bytes) {
                exp.events.insert(m, ev);
            }
            exp.counts.insert(m, (model.changed, model.equal));
        }
        if let Some(obs) = self.observers.get_mut(usize::from(node)) {
            obs.slots = slots;
            obs.iterations += 1;
            obs.pending = Some(exp);
        }
    }
}

impl Checker for HbRules {
    fn name(&self) -> &'static str {
        "hb-rules"
    }

    fn observe(&mut self, rec: &Record<'_>, world: &World<'_>, out: &mut Vec<Violation>) {
        let Some(node) = rec.node else { return };
        let idx = usize::from(node);
        match &rec.what {
            What::Boot { .. } | What::Crash | What::Fence(_) => {
                self.settle(node, world, out);
                if let Some(o) = self.observers.get_mut(idx) {
                    *o = Observer::default();
                }
            }
            What::IoDone {
                write: false,
                offset,
                data,
                ok,
                ..
            } => {
                self.settle(node, world, out);
                let bb = self.block_bytes;
                let first = self.first_slot(*offset);
                let slots = self.slots;
                let Some(obs) = self.observers.get_mut(idx) else {
                    return;
                };
                if !ok {
                    obs.read = None;
                    return;
                }
                if !obs.baseline_done {
                    // The baseline read seeds every slot without counting a change.
                    obs.baseline_done = true;
                    obs.slots = vec![SlotModel::default(); slots];
                    let first = first.unwrap_or(0);
                    for (i, chunk) in data.chunks_exact(bb).enumerate() {
                        if let (Ok(v), Some(m)) =
                            (SlotView::parse(chunk), obs.slots.get_mut(first + i))
                        {
                            m.seq = v.block.seq;
                            m.generation = v.block.generation;
                        }
                    }
                } else {
                    obs.read = Some((*offset, data.to_vec()));
                }
            }
            What::IoSubmit {
                write: true, data, ..
            } => {
                let pending_read = self.observers.get(idx).is_some_and(|o| o.read.is_some());
                if pending_read {
                    self.iterate(node, data);
                }
            }
            What::Note(Note::HbUp {
                node: m,
                generation,
                ..
            }) => {
                let lookback = self.lookback;
                let Some(obs) = self.observers.get_mut(idx) else {
                    return;
                };
                let expected = obs.pending.as_mut().and_then(|e| e.events.remove(m));
                match expected {
                    Some(Event::Up(g)) if g == *generation => {}
                    Some(Event::Up(g)) => out.push(Violation {
                        checker: "hb-rules",
                        at: rec.at,
                        since: before(rec.at, lookback),
                        nodes: vec![node, *m],
                        message: format!(
                            "n{node} reported n{m} UP with generation {generation:#x}; its slot holds {g:#x}"
                        ),
                    }),
                    _ => out.push(Violation {
                        checker: "hb-rules",
                        at: rec.at,
                        since: before(rec.at, lookback),
                        nodes: vec![node, *m],
                        message: format!(
                            "n{node} reported n{m} UP in iteration {}, where the rules do not bring it up",
                            obs.iterations
                        ),
                    }),
                }
            }
            What::Note(Note::HbDown { node: m, .. }) => {
                let lookback = self.lookback;
                let Some(obs) = self.observers.get_mut(idx) else {
                    return;
                };
                let expected = obs.pending.as_mut().and_then(|e| e.events.remove(m));
                if expected != Some(Event::Down) {
                    out.push(Violation {
                        checker: "hb-rules",
                        at: rec.at,
                        since: before(rec.at, lookback),
                        nodes: vec![node, *m],
                        message: format!(
                            "n{node} reported n{m} DOWN in iteration {}, where the rules keep it {}",
                            obs.iterations,
                            if expected.is_some() { "up and say UP" } else { "as it was" }
                        ),
                    });
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self, world: &World<'_>, out: &mut Vec<Violation>) {
        for n in 0..self.observers.len() {
            if let Ok(node) = NodeId::try_from(n) {
                self.settle(node, world, out);
            }
        }
    }

    fn tally(&self) -> Tally {
        self.tally
    }
}
