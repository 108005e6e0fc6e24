//! Property test of the heartbeat rules on the sans-I/O core: three nodes on one disk, random
//! start offsets, dead thresholds, kills (kill -9), clean stops and restarts. Whatever happens,
//! every observer's up/down events alternate and carry matching generations, and once things
//! have been quiet for a dead time the live map of every running node is exactly the set of
//! running nodes.

mod sim;

use o2hb::{Mode, NodeMap, Output, Timing};
use proptest::prelude::*;
use sim::Sim;
use std::collections::HashMap;

#[derive(Clone, Debug)]
enum Fate {
    Runs,
    Killed { at: u64, restart: Option<u64> },
    Stopped { at: u64, restart: Option<u64> },
}

fn fate() -> impl Strategy<Value = Fate> {
    let when = 20_000u64..80_000;
    let restart = proptest::option::of(1_000u64..40_000);
    prop_oneof![
        Just(Fate::Runs),
        (when.clone(), restart.clone()).prop_map(|(at, r)| Fate::Killed {
            at,
            restart: r.map(|d| at + d)
        }),
        (when, restart).prop_map(|(at, r)| Fate::Stopped {
            at,
            restart: r.map(|d| at + d)
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn events_alternate_and_live_maps_converge(
        threshold in 3u32..10,
        offsets in proptest::collection::vec(0u64..4000, 3),
        fates in proptest::collection::vec(fate(), 3),
    ) {
        let timing = Timing::new(2000, threshold).unwrap();
        let mut sim = Sim::new(1, 512);
        // (time, node number, what): 0 = start, 1 = kill, 2 = clean stop.
        let mut plan: Vec<(u64, u8, u8)> = Vec::new();
        for (n, (off, f)) in offsets.iter().zip(&fates).enumerate() {
            let n = n as u8;
            plan.push((*off, n, 0));
            match f {
                Fate::Runs => {}
                Fate::Killed { at, restart } | Fate::Stopped { at, restart } => {
                    plan.push((*at, n, if matches!(f, Fate::Killed { .. }) { 1 } else { 2 }));
                    if let Some(r) = restart {
                        plan.push((*r, n, 0));
                    }
                }
            }
        }
        plan.sort();
        let mut current: HashMap<u8, usize> = HashMap::new();
        let mut generation = 1u64;
        for (at, n, what) in &plan {
            sim.run_until(*at);
            match what {
                0 => {
                    let i = sim.add_node(*n, Mode::Local, timing, &[0]);
                    generation += 1;
                    sim.start(i, 0, generation);
                    current.insert(*n, i);
                }
                1 => {
                    if let Some(i) = current.remove(n) {
                        sim.kill(i);
                    }
                }
                _ => {
                    if let Some(i) = current.remove(n) {
                        sim.stop(i, 0);
                        sim.kill(i); // stopped for good: it never writes again
                    }
                }
            }
        }
        let last = plan.iter().map(|p| p.0).max().unwrap_or(0);
        sim.run_until(last + u64::from(threshold + 12) * 2000);

        for (i, node) in sim.nodes.iter().enumerate() {
            let mut up: HashMap<u8, u64> = HashMap::new();
            for (t, o) in &node.log {
                match o {
                    Output::NodeUp { node: n, generation: g, .. } => {
                        prop_assert!(up.insert(*n, *g).is_none(), "instance {i}: node {n} up twice (t={t})");
                    }
                    Output::NodeDown { node: n, generation: g, .. } => {
                        prop_assert_eq!(up.remove(n), Some(*g), "instance {}: down for node {} at {} without a matching up", i, n, t);
                    }
                    _ => {}
                }
            }
        }
        let running: NodeMap = current.keys().copied().collect();
        for (n, i) in &current {
            prop_assert_eq!(sim.nodes[*i].set.live_nodes(), running, "node {} sees the wrong live set", n);
        }
    }
}
