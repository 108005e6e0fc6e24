//! The kernel's heartbeat rules, asserted on the sans-I/O core with virtual time
//! (period 2000 ms, dead threshold 31, as the kernel defaults).

mod sim;

use o2hb::core::LogKind;
use o2hb::{Mode, NegoKind, Output, TimerKind, Timing};
use sim::Sim;

const GA: u64 = 0xA11CE;
const GB: u64 = 0xB0B;

fn up(node: u8, generation: u64) -> impl Fn(&Output) -> bool {
    move |o| matches!(o, Output::NodeUp { node: n, generation: g, .. } if *n == node && *g == generation)
}

fn down(node: u8, generation: u64) -> impl Fn(&Output) -> bool {
    move |o| matches!(o, Output::NodeDown { node: n, generation: g, .. } if *n == node && *g == generation)
}

/// Node 0 from t=0, node 1 from t=11000: their iterations never coincide (0 on even
/// thousands, 1 on odd ones).
fn two_nodes() -> Sim {
    let mut sim = Sim::new(1, 512);
    let a = sim.add_node(0, Mode::Local, Timing::default(), &[0]);
    let b = sim.add_node(1, Mode::Local, Timing::default(), &[0]);
    sim.start(a, 0, GA);
    sim.run_until(11000);
    sim.start(b, 0, GB);
    sim.run_until(20000);
    sim
}

#[test]
fn a_node_is_up_after_two_changed_reads() {
    let sim = two_nodes();
    // Node 1's baseline read (t=11000) saw node 0's seq 10; its first iteration (same instant)
    // saw no change; node 0 wrote at 12000 (change 1, read at 13000) and 14000 (change 2,
    // read at 15000): up on node 1's third iteration.
    let b_iters = sim.iteration_starts(1, 0);
    assert_eq!(&b_iters[..3], &[11000, 13000, 15000]);
    assert_eq!(sim.first_time(1, up(0, GA)), Some(15000));
    // Node 0 had slot 1 empty in its baseline; node 1 wrote at 11000 and 13000, read by node 0
    // at 12000 and 14000: up at 14000.
    assert_eq!(sim.first_time(0, up(1, GB)), Some(14000));
    // Each node also sees itself come up, on its second iteration (its own writes change).
    assert_eq!(sim.first_time(0, up(0, GA)), Some(2000));
    assert_eq!(sim.first_time(1, up(1, GB)), Some(13000));
    // Up events come once: no duplicates while the node keeps beating.
    assert_eq!(sim.events(0).len(), 2);
}

#[test]
fn kill_9_is_down_after_exactly_dead_threshold_unchanged_reads() {
    let mut sim = two_nodes();
    sim.run_until(20500);
    sim.kill(1); // its last write was at 19000
    sim.run_until(200_000);
    // Node 0 read that write at 20000; reads at 22000, 24000, … are unchanged; the 31st
    // unchanged read is at 22000 + 30 × 2000.
    assert_eq!(sim.first_time(0, down(1, GB)), Some(82_000));
    assert_eq!(
        sim.first_time(0, down(1, GB)),
        sim.iteration_starts(0, 0).get(41).copied()
    );
    assert_eq!(
        sim.events(0)
            .iter()
            .filter(|(_, o)| matches!(o, Output::NodeDown { .. }))
            .count(),
        1
    );
}

#[test]
fn a_clean_stop_is_seen_at_the_next_read() {
    let mut sim = two_nodes();
    sim.run_until(20500);
    sim.stop(1, 0);
    // The stopping node reports its peers down locally, then writes generation 0.
    assert_eq!(sim.first_time(1, down(0, GA)), Some(20500));
    assert!(matches!(
        sim.nodes[1].log.last(),
        Some((20500, Output::Stopped { clean: true, .. }))
    ));
    let slot = o2hb::SlotView::parse(sim.disks[0].slot(1)).unwrap();
    assert!(slot.crc_ok);
    assert_eq!(
        (slot.block.node, slot.block.generation, slot.block.dead_ms),
        (1, 0, 62000)
    );
    sim.run_until(30000);
    assert_eq!(sim.first_time(0, down(1, GB)), Some(22000));
}

#[test]
fn a_restart_with_a_new_generation_is_down_then_up_again() {
    let mut sim = two_nodes();
    sim.run_until(20500);
    sim.kill(1);
    sim.run_until(31000);
    let b2 = sim.add_node(1, Mode::Local, Timing::default(), &[0]);
    sim.start(b2, 0, 0xB0B2);
    sim.run_until(40000);
    // 32000: the generation changed -> down at once (with the old generation); the changed
    // count is kept, so the second change at 34000 brings it back up with the new one.
    assert_eq!(sim.first_time(0, down(1, GB)), Some(32000));
    assert_eq!(sim.first_time(0, up(1, 0xB0B2)), Some(34000));
}

#[test]
fn a_corrupted_slot_counts_as_a_miss_and_is_reported() {
    let mut sim = two_nodes();
    // A slot that never was live may hold garbage silently (a fresh disk has no CRC).
    sim.disks[0].slot_mut(5)[40] = 0xFF;
    sim.run_until(20500);
    sim.kill(1);
    sim.disks[0].slot_mut(1)[100] ^= 1;
    sim.run_until(100_000);
    let bad = sim.logs(0, LogKind::BadCrc);
    assert_eq!(
        bad.first().map(|(t, m)| (*t, m.as_str())),
        Some((22000, "Node 1 has written a bad crc to disk0"))
    );
    assert!(bad.iter().all(|(_, m)| !m.starts_with("Node 5")));
    // Each bad read is a miss: down at the same time as a plain kill.
    assert_eq!(sim.first_time(0, down(1, GB)), Some(82_000));
}

#[test]
fn another_writer_in_our_slot_is_reported_with_the_kernels_messages() {
    let mut sim = two_nodes();
    // A block from node 5 lands in node 0's slot (a misconfigured region, say).
    sim.run_until(20500);
    let foreign = o2hb::HbBlock {
        seq: 77,
        node: 5,
        generation: 0x55,
        dead_ms: 62000,
    }
    .to_bytes(512)
    .unwrap();
    sim.disks[0].slot_mut(0).copy_from_slice(&foreign);
    sim.run_until(22000);
    let msgs = sim.logs(0, LogKind::AnotherNodeInOurSlot);
    assert_eq!(msgs.len(), 1);
    assert!(msgs[0].1.starts_with("Another node is heartbeating on device (disk0): expected(0:0xa11ce, 0x14), ondisk(5:0x55, 0x4d)"), "{}", msgs[0].1);

    // A second instance configured with the same node number and its own generation.
    let twin = sim.add_node(0, Mode::Local, Timing::default(), &[0]);
    sim.run_until(22500);
    sim.start(twin, 0, 0x7777);
    sim.run_until(30000);
    let gen = sim.logs(0, LogKind::OwnGenerationMismatch);
    assert!(!gen.is_empty());
    assert!(
        gen[0]
            .1
            .starts_with("Heartbeat generation mismatch on device (disk0): expected(0:0xa11ce,"),
        "{}",
        gen[0].1
    );
    // The newcomer never gets a good own-slot check either: its start fails, as a kernel
    // mount would with EIO, after nine iterations (22500 + 8 × 2000); the first instance
    // then reads its own block again and carries on without fencing.
    sim.run_until(100_000);
    let abort = sim.logs(twin, LogKind::UnableToStabilize);
    assert_eq!(abort.first().map(|(t, _)| *t), Some(38500));
    assert!(sim.first_time(0, |o| *o == Output::Fence).is_none());
    assert!(sim.nodes[0]
        .timers
        .contains_key(&(0, TimerKind::WriteTimeout)));
}

#[test]
fn steady_state_takes_three_good_quiet_iterations() {
    let mut sim = Sim::new(1, 512);
    let a = sim.add_node(0, Mode::Local, Timing::default(), &[0]);
    sim.start(a, 0, GA);
    sim.run_until(20000);
    // Iteration 1 (t=0) cannot check its own slot yet, iteration 2 (2000) sees itself come up
    // (a membership change), iterations 3, 4, 5 count: steady at t=8000.
    assert_eq!(
        sim.first_time(0, |o| matches!(o, Output::Steady { .. })),
        Some(8000)
    );
    // The write timeout is armed only by good iterations after that one (the kernel arms
    // before it counts the iteration toward steady state).
    assert_eq!(
        sim.first_time(0, |o| matches!(
            o,
            Output::ArmTimer {
                timer: TimerKind::WriteTimeout,
                ..
            }
        )),
        Some(10000)
    );

    // Global mode, first region: the live threshold doubles (5 quiet iterations).
    let mut sim = Sim::new(1, 512);
    let a = sim.add_node(0, Mode::Global, Timing::default(), &[0]);
    sim.start(a, 0, GA);
    sim.run_until(20000);
    assert_eq!(
        sim.first_time(0, |o| matches!(o, Output::Steady { .. })),
        Some(12000)
    );
    let started = sim.logs(0, LogKind::HeartbeatStarted);
    assert_eq!(
        started,
        vec![(
            12000,
            "o2hb: Heartbeat started on region R0 (disk0)".to_string()
        )]
    );
    assert_eq!(sim.logs(0, LogKind::QuorumDevice).len(), 1);
}

#[test]
fn unable_to_stabilize_when_our_slot_keeps_changing_under_us() {
    let mut sim = Sim::new(1, 512);
    let a = sim.add_node(0, Mode::Local, Timing::default(), &[0]);
    let twin = sim.add_node(0, Mode::Local, Timing::default(), &[0]);
    sim.start(a, 0, GA);
    sim.run_until(1000);
    sim.start(twin, 0, 0x7777);
    sim.run_until(60000);
    // Nine iterations (3 × the 3 steady ones) without a good own-slot check.
    let msg = sim.logs(0, LogKind::UnableToStabilize);
    assert_eq!(
        msg,
        vec![(
            16000,
            "o2hb: Unable to stabilize heartbeat on region R0 (disk0)".to_string()
        )]
    );
    assert!(sim.nodes[0]
        .log
        .iter()
        .any(|(t, o)| *t == 16000 && matches!(o, Output::StartAborted { .. })));
    // An aborted start writes no generation-0 block and leaves no timer behind.
    assert!(matches!(
        sim.nodes[0].log.last(),
        Some((16000, Output::Stopped { clean: false, .. }))
    ));
    assert!(sim.nodes[0].timers.is_empty());
}

#[test]
fn a_stalled_write_fences_after_the_write_timeout() {
    let mut sim = two_nodes();
    sim.run_until(30500);
    // Node 1 (steady since 21000) hangs from its iteration at 31000; its last good write
    // completed at 29000 and armed the timers.
    sim.nodes[1].stalled.push(0);
    sim.run_until(200_000);
    // At 30 s it asks the master (node 0) to negotiate; node 0's own writes are fine, so no
    // approval comes, and at 60 s node 1 fences.
    let ask = sim.logs(1, LogKind::NegoAskMaster);
    assert_eq!(ask.first().map(|(t, _)| *t), Some(59000));
    assert_eq!(
        ask[0].1,
        "o2hb: node 1 hb write hung for 30s on region R0 (disk0), negotiate timeout with node 0."
    );
    assert_eq!(
        sim.logs(0, LogKind::NegoReceived).first().map(|(t, _)| *t),
        Some(59000)
    );
    let timeout = sim.logs(1, LogKind::WriteTimeout);
    assert_eq!(
        timeout,
        vec![(
            89000,
            "Heartbeat write timeout to device disk0 after 60000 milliseconds".to_string()
        )]
    );
    assert_eq!(sim.first_time(1, |o| *o == Output::Fence), Some(89000));
    assert_eq!(
        sim.logs(1, LogKind::Fencing)[0].1,
        "*** ocfs2 is very sorry to be fencing this system by restarting ***"
    );
    // Node 0 read node 1's last write at 30000 and sees it dead 31 unchanged reads later.
    assert_eq!(sim.first_time(0, down(1, GB)), Some(92_000));
    assert!(sim.first_time(0, |o| *o == Output::Fence).is_none());
}

#[test]
fn when_every_node_hangs_the_master_approves_and_nobody_fences() {
    let mut sim = two_nodes();
    sim.run_until(30500);
    sim.nodes[0].stalled.push(0);
    sim.nodes[1].stalled.push(0);
    sim.run_until(200_000);
    assert!(sim.first_time(0, |o| *o == Output::Fence).is_none());
    assert!(sim.first_time(1, |o| *o == Output::Fence).is_none());
    let all = sim.logs(0, LogKind::NegoAllHung);
    assert!(!all.is_empty());
    assert!(all[0]
        .1
        .starts_with("o2hb: all nodes hb write hung, maybe region R0 (disk0) is down."));
    assert!(sim.nodes[1]
        .log
        .iter()
        .any(|(_, o)| matches!(o, Output::Log(e) if e.kind == LogKind::NegoApproved)));
    assert!(sim.nodes[0].log.iter().any(|(_, o)| matches!(
        o,
        Output::SendNego {
            to: 1,
            kind: NegoKind::Approve,
            node_num: 0,
            ..
        }
    )));
}

fn global_pair() -> Sim {
    let mut sim = Sim::new(3, 512);
    let a = sim.add_node(0, Mode::Global, Timing::default(), &[0, 1, 2]);
    let b = sim.add_node(1, Mode::Global, Timing::default(), &[0, 1, 2]);
    for r in 0..3 {
        sim.start(a, r, GA);
    }
    sim.run_until(11000);
    for r in 0..3 {
        sim.start(b, r, GB);
    }
    sim.run_until(40000);
    sim
}

#[test]
fn global_mode_tolerates_one_stalled_region_of_three() {
    let mut sim = global_pair();
    assert_eq!(sim.nodes[1].set.quorum_regions(), vec![0, 1, 2]);
    sim.nodes[1].stalled.push(0);
    sim.run_until(300_000);
    assert_eq!(sim.nodes[1].set.failed_regions(), vec![0]);
    assert!(sim.first_time(1, |o| *o == Output::Fence).is_none());
    // Node 1 is dead in region 0 for node 0, but live in the others: no DOWN.
    assert!(!sim.nodes[0].set.region_live_nodes(0).contains(1));
    assert!(sim.nodes[0].set.live_nodes().contains(1));
    assert!(sim.first_time(0, down(1, GB)).is_none());
}

#[test]
fn global_mode_fences_when_two_regions_of_three_stall() {
    let mut sim = global_pair();
    sim.nodes[1].stalled.push(0);
    sim.run_until(41500);
    sim.nodes[1].stalled.push(1);
    sim.run_until(300_000);
    // Both stalled at the iteration after 39000: region 0 times out first (failed 1 of 3,
    // tolerated), region 1 right after (2 of 3): fence.
    let timeouts = sim.logs(1, LogKind::WriteTimeout);
    assert_eq!(
        timeouts.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        vec![99000, 101000]
    );
    assert_eq!(sim.first_time(1, |o| *o == Output::Fence), Some(101000));
    // Node 0 sees node 1 down only once it is dead in all three regions.
    let t = sim.first_time(0, down(1, GB)).unwrap();
    assert!(t > 101000);
}
