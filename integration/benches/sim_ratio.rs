//! How much faster than real time the simulator runs: virtual seconds
//! simulated per wall-clock second, for a 64-node cluster with every kind of
//! fault and the ping workload (and an 8-node one for scale). The baseline is
//! the wall clock of the same run; the ratio is the result.
//!
//! `cargo bench -p integration --bench sim_ratio`

use integration::{FaultSet, SimConfig, Simulation};
use std::time::{Duration, Instant};

fn measure(nodes: u16, seed: u64, virtual_len: Duration) -> (f64, u64, Duration) {
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.faults = FaultSet::all();
    cfg.duration = virtual_len;
    let mut sim = Simulation::new(cfg).expect("valid config");
    let started = Instant::now();
    let outcome = sim.run();
    let wall = started.elapsed();
    assert!(
        outcome.violations.is_empty(),
        "seed {seed}: {}",
        outcome.violations[0]
    );
    (
        outcome.reached.since_start().as_secs_f64() / wall.as_secs_f64(),
        outcome.events,
        wall,
    )
}

fn main() {
    for (nodes, virtual_len) in [
        (64u16, Duration::from_secs(600)),
        (8, Duration::from_secs(3600)),
    ] {
        let mut ratios = Vec::new();
        for seed in 1..=3 {
            let (ratio, events, wall) = measure(nodes, seed, virtual_len);
            println!(
                "{nodes} nodes, seed {seed}: {} s virtual in {:.2} s wall = {ratio:.0}x real time ({events} events, {:.2} M events/s)",
                virtual_len.as_secs(),
                wall.as_secs_f64(),
                events as f64 / wall.as_secs_f64() / 1e6
            );
            ratios.push(ratio);
        }
        ratios.sort_by(f64::total_cmp);
        println!("{nodes} nodes: median {:.0}x real time", ratios[1]);
    }
}
