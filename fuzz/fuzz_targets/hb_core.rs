//! The heartbeat state machine fed arbitrary input sequences (any slot bytes, I/O results,
//! timers, stops, negotiation messages, time jumps): it never panics and never reports a node
//! down that it did not report up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use o2hb::{
    Geometry, HeartbeatSet, Input, Mode, NegoKind, NodeMap, Now, Output, RegionConfig, SetConfig,
    TimerKind, Timing,
};

fuzz_target!(|data: &[u8]| {
    let mut it = data.iter().copied();
    let mode = if it.next().unwrap_or(0) & 1 == 1 {
        Mode::Global
    } else {
        Mode::Local
    };
    let mut set = HeartbeatSet::new(SetConfig {
        node: 1,
        mode,
        timing: Timing::new(100, 3 + u32::from(it.next().unwrap_or(0) % 8)).unwrap(),
        configured: NodeMap::first_n(8),
    })
    .unwrap();
    for r in 0..2 {
        let geometry = Geometry::new(512, 1, 8).unwrap();
        set.add_region(RegionConfig {
            name: format!("r{r}"),
            device: format!("d{r}"),
            geometry,
        })
        .unwrap();
    }
    let mut now = 0u64;
    let mut up = NodeMap::new();
    while let Some(op) = it.next() {
        now += u64::from(it.next().unwrap_or(0)) * 10;
        let region = usize::from(op >> 7);
        let input_bytes: Vec<u8>;
        let input = match op & 7 {
            0 => Input::Start {
                region,
                generation: u64::from(it.next().unwrap_or(1)),
            },
            1 | 2 => {
                let len = usize::from(it.next().unwrap_or(0)) * 32;
                input_bytes = (0..len).map(|_| it.next().unwrap_or(0)).collect();
                Input::ReadDone {
                    region,
                    result: Ok(&input_bytes),
                }
            }
            3 => Input::WriteDone {
                region,
                result: if op & 8 == 0 {
                    Ok(())
                } else {
                    Err("EIO".into())
                },
            },
            4 => {
                let timer = [
                    TimerKind::Iteration,
                    TimerKind::WriteTimeout,
                    TimerKind::NegoTimeout,
                ][usize::from(op >> 3) % 3];
                Input::Timer { region, timer }
            }
            5 => Input::Stop { region },
            6 => Input::Nego {
                region,
                kind: if op & 8 == 0 {
                    NegoKind::Timeout
                } else {
                    NegoKind::Approve
                },
                node_num: it.next().unwrap_or(0),
            },
            _ => Input::ReadDone {
                region,
                result: Err("EIO".into()),
            },
        };
        for o in set.handle(Now::virtual_ms(now), input) {
            match o {
                Output::NodeUp { node, .. } => {
                    assert!(!up.contains(node), "node {node} up twice");
                    up.insert(node);
                }
                Output::NodeDown { node, .. } => {
                    assert!(up.contains(node), "node {node} down without up");
                    up.remove(node);
                }
                _ => {}
            }
        }
        assert_eq!(set.live_nodes(), up);
    }
});
