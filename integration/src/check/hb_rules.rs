//! Heartbeat liveness: nodes come up and go down after exactly the iterations
//! the rules say.
//!
//! For every node, the checker replays the kernel's per-slot rules (docs/o2hb.md
//! §5: two changed reads make a node live; `dead_threshold` unchanged
//! reads or a new generation make it dead; any change resets the miss count;
//! a bad CRC counts as unchanged for a live node and is ignored otherwise)
//! on the very bytes that node's reads returned, and on the block it writes
//! for its own slot. From that it knows which NODE_UP and NODE_DOWN events
//! each iteration must produce, and checks that the core produced exactly
//! those, in that iteration, with the right generation. With several
//! regions (global heartbeat mode) a node is UP when it becomes live in its
//! first region and DOWN when it is dead in all of them. It shares no code
//! with the o2hb core beyond the block decoder.

use super::{before, Checker, Tally, Violation, World};
use crate::config::SimConfig;
use crate::disk::RegionSpec;
use crate::sim::region_specs;
use crate::stack::{NodeId, Note, RegionId};
use crate::trace::{Record, What};
use o2hb::SlotView;
use std::collections::BTreeMap;
use std::time::Duration;

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

/// What one iteration of one region of one observer must report: node → event.
#[derive(Debug, Default)]
struct Expectation {
    iteration: u64,
    events: BTreeMap<NodeId, Event>,
    /// Why, for messages: node → (changed, equal) after the read.
    counts: BTreeMap<NodeId, (u32, u32)>,
}

#[derive(Debug, Default)]
struct RegionModel {
    baseline_done: bool,
    slots: Vec<SlotModel>,
    /// The iteration read waiting for the observer's own write.
    read: Option<(u64, Vec<u8>)>,
    pending: Option<Expectation>,
    iterations: u64,
}

/// One boot of one node, as the rules see it.
#[derive(Debug, Default)]
struct Observer {
    regions: Vec<RegionModel>,
    /// Per node, a bit per region where the model has it live.
    live_in: BTreeMap<NodeId, u32>,
}

pub struct HbRules {
    dead_threshold: u32,
    /// How far back a violation's trace window reaches.
    lookback: Duration,
    specs: Vec<RegionSpec>,
    observers: Vec<Observer>,
    tally: Tally,
}

impl HbRules {
    pub fn new(cfg: &SimConfig) -> Self {
        HbRules {
            dead_threshold: cfg.timing.dead_threshold,
            lookback: cfg.timing.hb_period * 3,
            specs: region_specs(cfg),
            observers: (0..cfg.nodes).map(|_| Observer::default()).collect(),
            tally: Tally::default(),
        }
    }

    fn fresh_observer(&self) -> Observer {
        Observer {
            regions: self.specs.iter().map(|_| RegionModel::default()).collect(),
            live_in: BTreeMap::new(),
        }
    }

    fn block_bytes(&self, region: RegionId) -> usize {
        self.specs
            .get(usize::from(region))
            .and_then(|s| usize::try_from(s.block_bytes).ok())
            .unwrap_or(512)
    }

    /// Slot number of the first block of an I/O at `offset` in `region`.
    fn first_slot(&self, region: RegionId, offset: u64) -> Option<usize> {
        let spec = self.specs.get(usize::from(region))?;
        let block = offset / u64::from(spec.block_bytes.max(1));
        usize::try_from(block.checked_sub(spec.start_block)?).ok()
    }

    /// Ends the open iteration of `region` (all regions if None): every expected event must have been seen.
    fn settle(
        &mut self,
        node: NodeId,
        region: Option<RegionId>,
        world: &World<'_>,
        out: &mut Vec<Violation>,
    ) {
        let since = before(world.now, self.lookback);
        let Some(obs) = self.observers.get_mut(usize::from(node)) else {
            return;
        };
        for (r, model) in obs.regions.iter_mut().enumerate() {
            if region.is_some_and(|want| usize::from(want) != r) {
                continue;
            }
            let Some(exp) = model.pending.take() else {
                continue;
            };
            self.tally.judged += 1;
            for (m, ev) in exp.events {
                let (changed, equal) = exp.counts.get(&m).copied().unwrap_or_default();
                let what = match ev {
                    Event::Up(_) => format!("n{m} UP (its slot changed in {changed} reads)"),
                    Event::Down => {
                        format!("n{m} DOWN ({equal} unchanged reads, or a new generation)")
                    }
                };
                out.push(Violation {
                    checker: "hb-rules",
                    at: world.now,
                    since,
                    nodes: vec![node, m],
                    message: format!(
                        "n{node}'s heartbeat iteration {} on region {r} should have reported {what}, and did not",
                        exp.iteration
                    ),
                });
            }
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

    /// The observer wrote its own block in `region`: replay the iteration's slot checks.
    fn iterate(&mut self, node: NodeId, region: RegionId, own: &[u8]) {
        let bb = self.block_bytes(region);
        let r = usize::from(region);
        let Some(mut obs) = self
            .observers
            .get_mut(usize::from(node))
            .map(std::mem::take)
        else {
            return;
        };
        if let Some(model) = obs.regions.get_mut(r) {
            if let Some((offset, data)) = model.read.take() {
                let first = self.first_slot(region, offset).unwrap_or(0);
                let mut exp = Expectation {
                    iteration: model.iterations,
                    ..Expectation::default()
                };
                for (i, chunk) in data.chunks_exact(bb).enumerate() {
                    let slot = first + i;
                    let Ok(m) = NodeId::try_from(slot) else {
                        continue;
                    };
                    let bytes = if m == node { own } else { chunk };
                    let Some(sm) = model.slots.get_mut(slot) else {
                        continue;
                    };
                    let ev = self.check_slot(sm, bytes);
                    exp.counts.insert(m, (sm.changed, sm.equal));
                    let bit = 1u32 << (r % 32);
                    let live_in = obs.live_in.entry(m).or_insert(0);
                    match ev {
                        Some(Event::Up(g)) => {
                            if *live_in == 0 {
                                exp.events.insert(m, Event::Up(g));
                            }
                            *live_in |= bit;
                        }
                        Some(Event::Down) => {
                            *live_in &= !bit;
                            if *live_in == 0 {
                                exp.events.insert(m, Event::Down);
                            }
                        }
                        None => {}
                    }
                }
                model.iterations += 1;
                model.pending = Some(exp);
            }
        }
        if let Some(slot) = self.observers.get_mut(usize::from(node)) {
            *slot = obs;
        }
    }

    fn unexpected(
        &self,
        node: NodeId,
        m: NodeId,
        region: RegionId,
        at: crate::time::SimTime,
        what: String,
    ) -> Violation {
        Violation {
            checker: "hb-rules",
            at,
            since: before(at, self.lookback),
            nodes: vec![node, m],
            message: format!("n{node} {what} (region {region})"),
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
                self.settle(node, None, world, out);
                let fresh = self.fresh_observer();
                if let Some(o) = self.observers.get_mut(idx) {
                    *o = fresh;
                }
            }
            What::IoDone {
                write: false,
                region,
                offset,
                data,
                ok,
            } => {
                self.settle(node, Some(*region), world, out);
                let bb = self.block_bytes(*region);
                let first = self.first_slot(*region, *offset);
                let slots = self
                    .specs
                    .get(usize::from(*region))
                    .map_or(0, |s| s.blocks as usize);
                let Some(model) = self
                    .observers
                    .get_mut(idx)
                    .and_then(|o| o.regions.get_mut(usize::from(*region)))
                else {
                    return;
                };
                if !ok {
                    model.read = None;
                } else if !model.baseline_done {
                    // The baseline read seeds every slot without counting a change.
                    model.baseline_done = true;
                    model.slots = vec![SlotModel::default(); slots];
                    let first = first.unwrap_or(0);
                    for (i, chunk) in data.chunks_exact(bb).enumerate() {
                        if let (Ok(v), Some(m)) =
                            (SlotView::parse(chunk), model.slots.get_mut(first + i))
                        {
                            m.seq = v.block.seq;
                            m.generation = v.block.generation;
                        }
                    }
                } else {
                    model.read = Some((*offset, data.to_vec()));
                }
            }
            What::IoSubmit {
                write: true,
                region,
                data,
                ..
            } => {
                let waiting = self
                    .observers
                    .get(idx)
                    .and_then(|o| o.regions.get(usize::from(*region)))
                    .is_some_and(|m| m.read.is_some());
                if waiting {
                    self.iterate(node, *region, data);
                }
            }
            What::Note(Note::HbStartFailed { region }) => {
                // The region gives up ("Unable to stabilize heartbeat"): its loop
                // ends and shuts every slot down, so a node live only there goes DOWN.
                self.settle(node, Some(*region), world, out);
                let r = usize::from(*region);
                let Some(obs) = self.observers.get_mut(idx) else {
                    return;
                };
                let bit = 1u32 << (r % 32);
                let mut exp = Expectation::default();
                for (m, live_in) in obs.live_in.iter_mut() {
                    if *live_in & bit != 0 {
                        *live_in &= !bit;
                        if *live_in == 0 {
                            exp.events.insert(*m, Event::Down);
                        }
                    }
                }
                if let Some(model) = obs.regions.get_mut(r) {
                    exp.iteration = model.iterations;
                    *model = RegionModel {
                        pending: Some(exp),
                        iterations: model.iterations,
                        ..RegionModel::default()
                    };
                    // A stopped region reads nothing more: no baseline to wait for.
                    model.baseline_done = true;
                }
            }
            What::Note(Note::HbUp {
                region,
                node: m,
                generation,
            }) => {
                let model = self
                    .observers
                    .get_mut(idx)
                    .and_then(|o| o.regions.get_mut(usize::from(*region)));
                let iteration = model.as_ref().map_or(0, |m| m.iterations);
                let expected = model
                    .and_then(|md| md.pending.as_mut())
                    .and_then(|e| e.events.remove(m));
                match expected {
                    Some(Event::Up(g)) if g == *generation => {}
                    Some(Event::Up(g)) => out.push(self.unexpected(
                        node,
                        *m,
                        *region,
                        rec.at,
                        format!("reported n{m} UP with generation {generation:#x}; its slot holds {g:#x}"),
                    )),
                    _ => out.push(self.unexpected(
                        node,
                        *m,
                        *region,
                        rec.at,
                        format!("reported n{m} UP after iteration {iteration}, where the rules do not bring it up"),
                    )),
                }
            }
            What::Note(Note::HbDown { region, node: m }) => {
                let model = self
                    .observers
                    .get_mut(idx)
                    .and_then(|o| o.regions.get_mut(usize::from(*region)));
                let iteration = model.as_ref().map_or(0, |m| m.iterations);
                let expected = model
                    .and_then(|md| md.pending.as_mut())
                    .and_then(|e| e.events.remove(m));
                if expected != Some(Event::Down) {
                    out.push(self.unexpected(
                        node,
                        *m,
                        *region,
                        rec.at,
                        format!("reported n{m} DOWN after iteration {iteration}, where the rules keep it live"),
                    ));
                }
            }
            _ => {}
        }
    }

    fn finish(&mut self, world: &World<'_>, out: &mut Vec<Violation>) {
        for n in 0..self.observers.len() {
            if let Ok(node) = NodeId::try_from(n) {
                self.settle(node, None, world, out);
            }
        }
    }

    fn tally(&self) -> Tally {
        self.tally
    }
}
