//! Same seed, same run, byte for byte: the trace of a faulty 5-node run is
//! identical across two runs, in both formats, and another seed differs.

use integration::{FaultSet, SimConfig, Simulation, TraceMode};
use std::time::Duration;

fn trace(seed: u64, mode: TraceMode) -> (String, integration::Outcome) {
    let mut cfg = SimConfig::new(5, seed);
    cfg.faults = FaultSet::all();
    cfg.duration = Duration::from_secs(900);
    cfg.trace = mode;
    let mut sim = Simulation::new(cfg).expect("valid config");
    let outcome = sim.run();
    (sim.trace().text(), outcome)
}

#[test]
fn same_seed_gives_a_byte_identical_trace() {
    for mode in [TraceMode::Readable, TraceMode::Compact] {
        let (a, oa) = trace(11, mode);
        let (b, ob) = trace(11, mode);
        assert!(oa.episodes > 0, "the run should have had faults");
        assert!(
            a.lines().count() > 10_000,
            "the trace should record every happening"
        );
        assert_eq!(a, b, "{mode:?} traces of seed 11 differ");
        assert_eq!(oa.events, ob.events);
        let (c, _) = trace(12, mode);
        assert_ne!(a, c, "seeds 11 and 12 gave the same {mode:?} trace");
    }
}

#[test]
fn tracing_does_not_change_the_run() {
    let (_, traced) = trace(13, TraceMode::Readable);
    let (_, silent) = trace(13, TraceMode::Off);
    assert_eq!(traced.events, silent.events);
    assert_eq!(traced.stats, silent.stats);
}

#[test]
fn the_readable_trace_shows_messages_timers_io_and_state_per_node() {
    let (text, _) = trace(14, TraceMode::Readable);
    for needle in [
        "n0   node  boot",
        "timer hb.iteration",
        "disk  write region 0",
        "handshake v11",
        "KEEP_REQ",
        "hb: n1 UP in region 0",
        "net: quorum counts n",
        "FAULT episode 0",
    ] {
        assert!(text.contains(needle), "readable trace lacks {needle:?}");
    }
}
