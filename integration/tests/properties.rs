//! Properties over arbitrary input: the command-line parsers never panic and
//! accept exactly what they document; any small cluster configuration runs
//! without panicking, the same way twice, and breaks no rule.

use integration::cli::{parse_duration, parse_seeds};
use integration::{FaultKind, FaultSet, SimConfig, Simulation};
use proptest::prelude::*;
use std::time::Duration;

proptest! {
    #[test]
    fn parsers_never_panic(s in ".{0,40}") {
        let _ = parse_duration(&s);
        let _ = parse_seeds(&s);
        let _ = FaultSet::parse(&s);
    }

    #[test]
    fn durations_roundtrip_in_every_unit(n in 1u64..100_000, unit in 0usize..4) {
        let (text, expected) = match unit {
            0 => (format!("{n}s"), Duration::from_secs(n)),
            1 => (format!("{n}ms"), Duration::from_millis(n)),
            2 => (format!("{n}m"), Duration::from_secs(n * 60)),
            _ => (format!("{n}h"), Duration::from_secs(n * 3600)),
        };
        prop_assert_eq!(parse_duration(&text), Ok(expected));
    }

    #[test]
    fn seed_ranges_roundtrip(a in 0u64..1_000_000, len in 1u64..1000) {
        prop_assert_eq!(parse_seeds(&format!("{a}..{}", a + len)), Ok(a..a + len));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_small_cluster_runs_deterministically_and_breaks_no_rule(
        nodes in 1u16..=6,
        regions in 1u8..=3,
        seed in any::<u64>(),
        kinds in proptest::sample::subsequence(FaultKind::ALL.to_vec(), 0..=FaultKind::ALL.len()),
        latency_us in 10u64..5_000,
        spread_us in 0u64..20_000,
    ) {
        let mut cfg = SimConfig::new(nodes, seed);
        cfg.regions = regions;
        cfg.faults = FaultSet::only(&kinds);
        cfg.duration = Duration::from_secs(600);
        cfg.net.latency = Duration::from_micros(latency_us);
        cfg.net.spread = Duration::from_micros(spread_us);
        let a = Simulation::new(cfg.clone()).expect("valid config").run();
        let b = Simulation::new(cfg).expect("valid config").run();
        prop_assert_eq!(a.events, b.events);
        prop_assert_eq!(&a.stats, &b.stats);
        prop_assert!(a.violations.is_empty(), "{}", a.violations[0]);
    }
}
