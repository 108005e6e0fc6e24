//! Cost of one heartbeat iteration over a full region (255 slots of 512 and of 4096 bytes),
//! against a baseline measured in the same run: plainly reading the same bytes.
//!
//! - core: the sans-I/O iteration alone (timer -> read request -> check 255 slots -> own
//!   block -> write done), slots already in memory; baseline: copying those bytes.
//! - O_DIRECT: a whole iteration with the region on a file read and written with O_DIRECT;
//!   baseline: one O_DIRECT read of the same 255 slots from the same file.
//!
//! Run: `cargo bench -p o2hb --bench iteration`. Results go in BENCHMARKS.md (## o2hb).

use o2hb::disk::{BlockIo, DirectFile};
use o2hb::{
    Geometry, HbBlock, HeartbeatSet, Input, Mode, NodeMap, Now, Output, RegionConfig, SetConfig,
    TimerKind, Timing,
};
use std::hint::black_box;
use std::time::Instant;

const SLOTS: usize = 255;

/// Two versions of a full region: every other node's slot holds a valid block whose sequence
/// differs between the versions, so each read sees 254 live, changing nodes.
fn regions(bb: usize) -> [Vec<u8>; 2] {
    let mut out = [vec![0u8; SLOTS * bb], vec![0u8; SLOTS * bb]];
    for (v, buf) in out.iter_mut().enumerate() {
        for node in 1..SLOTS {
            let b = HbBlock {
                seq: 1000 + v as u64,
                node: node as u8,
                generation: 0x1000 + node as u64,
                dead_ms: 62000,
            };
            b.encode_into(&mut buf[node * bb..(node + 1) * bb]).unwrap();
        }
    }
    out
}

fn new_set(bb: usize) -> HeartbeatSet {
    let mut set = HeartbeatSet::new(SetConfig {
        node: 0,
        mode: Mode::Local,
        timing: Timing::default(),
        configured: NodeMap::first_n(SLOTS),
    })
    .unwrap();
    let geometry = Geometry::new(bb as u64, 1, SLOTS as u64).unwrap();
    set.add_region(RegionConfig {
        name: "BENCH".into(),
        device: "bench".into(),
        geometry,
    })
    .unwrap();
    set
}

/// A region's set under test, fed by `disk` (which answers each read and write output at
/// once), and when its iteration timer fires next.
struct Runner<D> {
    set: HeartbeatSet,
    disk: D,
    out: Vec<Output>,
    scratch: Vec<u8>,
    at: u64,
}

impl<D: FnMut(&Output, &mut Vec<u8>)> Runner<D> {
    /// Starts heartbeating on a fresh set and runs its first iteration.
    fn start(bb: usize, disk: D) -> Self {
        let mut r = Runner {
            set: new_set(bb),
            disk,
            out: Vec::new(),
            scratch: Vec::new(),
            at: 0,
        };
        r.drive(Input::Start {
            region: 0,
            generation: 7,
        });
        r
    }

    /// One heartbeat iteration.
    fn iterate(&mut self) {
        self.drive(Input::Timer {
            region: 0,
            timer: TimerKind::Iteration,
        });
    }

    /// Feeds outputs back like an instant disk until the iteration timer is armed again.
    fn drive(&mut self, first: Input<'_>) {
        let now = Now::virtual_ms(self.at);
        let out = &mut self.out;
        out.clear();
        self.set.handle_into(now, first, out);
        let mut i = 0;
        while i < out.len() {
            let o = out[i].clone();
            i += 1;
            let done = match o {
                Output::ArmTimer {
                    timer: TimerKind::Iteration,
                    at_ms,
                    ..
                } => {
                    self.at = at_ms;
                    return;
                }
                Output::Read { .. } => {
                    (self.disk)(&o, &mut self.scratch);
                    Input::ReadDone {
                        region: 0,
                        result: Ok(&self.scratch),
                    }
                }
                Output::Write { .. } => {
                    (self.disk)(&o, &mut self.scratch);
                    Input::WriteDone {
                        region: 0,
                        result: Ok(()),
                    }
                }
                _ => continue,
            };
            let mut more = Vec::new();
            self.set.handle_into(now, done, &mut more);
            out.extend(more);
        }
        panic!("iteration did not re-arm its timer");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Nanoseconds per call of `f` (given the call's index) over `iters` calls.
fn per_call(iters: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..iters {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

/// Nanoseconds per iteration of the core with in-memory slots, and of the memcpy baseline.
fn core_vs_copy(bb: usize, iters: usize) -> (f64, f64) {
    let mut versions = regions(bb);
    let mut turn = 0usize;
    let mut run = Runner::start(bb, |o: &Output, scratch: &mut Vec<u8>| match o {
        Output::Read {
            first_slot, slots, ..
        } => {
            let v = &versions[turn % 2];
            let start = usize::from(*first_slot) * bb;
            scratch.clear();
            scratch.extend_from_slice(&v[start..start + usize::from(*slots) * bb]);
            turn += 1;
        }
        Output::Write { slot, block, .. } => {
            for v in versions.iter_mut() {
                v[usize::from(*slot) * bb..(usize::from(*slot) + 1) * bb].copy_from_slice(block);
            }
        }
        _ => {}
    });
    for _ in 0..50 {
        run.iterate();
    }
    assert_eq!(
        run.set.live_nodes().len(),
        SLOTS,
        "every slot is live, as in a full cluster"
    );
    let mut core = Vec::new();
    let mut base = Vec::new();
    let region = regions(bb);
    let mut copy = vec![0u8; SLOTS * bb];
    for _ in 0..7 {
        core.push(per_call(iters, |_| run.iterate()));
        base.push(per_call(iters, |i| {
            copy.copy_from_slice(&region[i % 2]);
            black_box(&copy);
        }));
    }
    assert_eq!(run.set.live_nodes().len(), SLOTS);
    (median(core), median(base))
}

/// Nanoseconds per full iteration with O_DIRECT I/O on a region file, per O_DIRECT read of the
/// same slots, and per read plus one-slot write (the raw I/O of an iteration, without the core).
fn direct_vs_read(bb: usize, iters: usize) -> (f64, f64, f64, bool) {
    let dir = std::env::temp_dir().join(format!("o2hb-bench-{}-{bb}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let geometry = Geometry::new(bb as u64, 1, SLOTS as u64).unwrap();
    let mut image = vec![0u8; bb];
    image.extend_from_slice(&regions(bb)[0]);
    std::fs::write(&dir, &image).unwrap();
    let mut dev = DirectFile::open(&dir).unwrap();
    let direct = dev.is_direct();
    let mut run = Runner::start(bb, |o: &Output, scratch: &mut Vec<u8>| match o {
        Output::Read {
            first_slot, slots, ..
        } => {
            scratch.resize(usize::from(*slots) * bb, 0);
            dev.read_at(geometry.slot_offset(*first_slot), scratch)
                .unwrap();
        }
        Output::Write { slot, block, .. } => {
            dev.write_at(geometry.slot_offset(*slot), block).unwrap()
        }
        _ => {}
    });
    let mut full = Vec::new();
    let mut base = Vec::new();
    let mut raw = Vec::new();
    let own = HbBlock {
        seq: 1,
        node: 0,
        generation: 7,
        dead_ms: 62000,
    }
    .to_bytes(bb)
    .unwrap();
    let mut reader = DirectFile::open(&dir).unwrap();
    let mut buf = vec![0u8; SLOTS * bb];
    for _ in 0..5 {
        full.push(per_call(iters, |_| run.iterate()));
        base.push(per_call(iters, |_| {
            reader.read_at(geometry.slot_offset(0), &mut buf).unwrap();
            black_box(&buf);
        }));
        raw.push(per_call(iters, |_| {
            reader.read_at(geometry.slot_offset(0), &mut buf).unwrap();
            reader.write_at(geometry.slot_offset(0), &own).unwrap();
            black_box(&buf);
        }));
    }
    let _ = std::fs::remove_file(&dir);
    (median(full), median(base), median(raw), direct)
}

fn main() {
    println!("o2hb iteration, 255 slots (median of batches, ns per iteration)");
    println!(
        "{:<6} {:>9} {:>9} {:>6}   {:>10} {:>10} {:>6} {:>12} {:>6}",
        "bytes", "core", "memcpy", "ratio", "iteration", "read", "ratio", "read+write", "ratio"
    );
    for bb in [512usize, 4096] {
        let (core, copy) = core_vs_copy(bb, 2000);
        let (full, read, raw, direct) = direct_vs_read(bb, 300);
        println!(
            "{bb:<6} {core:>9.0} {copy:>9.0} {:>6.2}   {full:>10.0} {read:>10.0} {:>6.2} {raw:>12.0} {:>6.2}{}",
            core / copy,
            full / read,
            full / raw,
            if direct { "" } else { "  (O_DIRECT refused: buffered I/O)" }
        );
    }
}
