//! The o2dlm lock workload inside the main simulator: real domain cores on every node,
//! their messages through the real o2net cores, heartbeat node up/down feeding both, judged
//! by the lock checkers (dlm-locks: mutual exclusion and value blocks; dlm-progress).

use integration::{
    FaultKind, FaultSet, Outcome, Sabotage, SimConfig, Simulation, Timing, TraceMode, Workload,
};
use std::time::Duration;

/// Short heartbeat timings (200 ms period, 7 iterations) so a run of two minutes of virtual
/// time holds joins, a workload and several fault episodes.
fn config(nodes: u16, seed: u64, kinds: &[FaultKind]) -> SimConfig {
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.faults = FaultSet::only(kinds);
    cfg.duration = Duration::from_secs(120);
    cfg.timing = Timing {
        hb_period: Duration::from_millis(200),
        dead_threshold: 7,
        idle_timeout: Duration::from_millis(3000),
        keepalive_delay: Duration::from_millis(500),
        reconnect_delay: Duration::from_millis(500),
    };
    cfg.workload = Workload::Locks {
        clients: 3,
        names: 3,
        think: Duration::from_millis(200),
    };
    cfg
}

fn judged(o: &Outcome, checker: &str) -> u64 {
    o.tallies
        .iter()
        .find(|(n, _)| *n == checker)
        .map_or(0, |(_, t)| t.judged)
}

fn run(cfg: SimConfig) -> Outcome {
    Simulation::new(cfg).expect("valid config").run()
}

#[test]
fn lock_seeds_with_network_delays_break_no_rule() {
    let seeds = if cfg!(debug_assertions) { 4 } else { 40 };
    let mut grants = 0;
    for nodes in 3..=7u16 {
        for seed in 0..seeds {
            let o = run(config(nodes, seed, &[FaultKind::Slow]));
            assert!(
                o.violations.is_empty(),
                "{nodes} nodes, seed {seed}: {}",
                o.violations[0]
            );
            let g = judged(&o, "dlm-locks");
            assert!(g > 100, "{nodes} nodes, seed {seed}: only {g} grants");
            grants += g;
            assert!(judged(&o, "dlm-progress") > g / 2);
        }
    }
    assert!(grants > 0);
}

/// Eight nodes contend for one name without faults: every request is granted in turn.
#[test]
fn eight_nodes_one_lock_break_no_rule() {
    let mut cfg = config(8, 1234, &[]);
    cfg.workload = Workload::Locks {
        clients: 3,
        names: 1,
        think: Duration::from_millis(200),
    };
    let o = run(cfg);
    assert!(o.violations.is_empty(), "{}", o.violations[0]);
    let g = judged(&o, "dlm-locks");
    assert!(g > 100, "only {g} grants");
    assert!(judged(&o, "dlm-progress") > g / 2);
}

/// Clean leaves under the lock workload: a node's users let go, its DLM hands what it masters
/// that others use to them (MIG_LOCKRES, MIGRATE_REQUEST, FINISH_MIGRATION asserts) and
/// leaves, then joins again; the others' locks keep working throughout.
#[test]
fn lock_seeds_with_clean_leaves_break_no_rule() {
    let seeds = if cfg!(debug_assertions) { 2 } else { 12 };
    let (mut leaves, mut migrations) = (0, 0);
    for nodes in 3..=5u16 {
        for seed in 0..seeds {
            let mut cfg = config(nodes, seed, &[FaultKind::Leave]);
            cfg.trace = TraceMode::Readable;
            let mut sim = Simulation::new(cfg).expect("valid config");
            let o = sim.run();
            assert!(
                o.violations.is_empty(),
                "{nodes} nodes, seed {seed}: {}",
                o.violations[0]
            );
            assert!(judged(&o, "dlm-locks") > 100, "{nodes} nodes, seed {seed}");
            let text = sim.trace().text();
            let left = text.matches("dlm: left domain").count();
            assert!(left > 0, "{nodes} nodes, seed {seed}: nobody left");
            // Every member asked to leave left, and every node that left joined again.
            let (mut members, mut leaving, mut out_of_domain) = (
                std::collections::BTreeSet::new(),
                std::collections::BTreeSet::new(),
                std::collections::BTreeSet::new(),
            );
            for l in text.lines() {
                if let Some(at) = l.find(" leaves the lock domain") {
                    let node = l[..at].rsplit(' ').next().unwrap_or("").to_string();
                    if members.contains(&node) {
                        leaving.insert(node);
                    }
                    continue;
                }
                let node = l.get(15..19).unwrap_or("").trim().to_string();
                if l.contains("dlm: left domain") {
                    members.remove(&node);
                    leaving.remove(&node);
                    out_of_domain.insert(node);
                } else if l.contains("dlm: joined domain") {
                    out_of_domain.remove(&node);
                    members.insert(node);
                }
            }
            assert!(
                leaving.is_empty(),
                "{nodes} nodes, seed {seed}: {leaving:?} never left"
            );
            assert!(
                out_of_domain.is_empty(),
                "{nodes} nodes, seed {seed}: {out_of_domain:?} never joined again"
            );
            leaves += left;
            migrations += text.matches("DLM_MIG_LOCKRES_MSG").count();
        }
    }
    assert!(leaves > 20, "only {leaves} leaves");
    assert!(migrations > 0, "no resource ever migrated");
}

#[test]
fn same_seed_same_lock_run() {
    let a = run(config(4, 9, &[FaultKind::Slow]));
    let b = run(config(4, 9, &[FaultKind::Slow]));
    assert_eq!(a.events, b.events);
    assert_eq!(judged(&a, "dlm-locks"), judged(&b, "dlm-locks"));
}

fn caught(sabotage: Sabotage, checker: &str) {
    for seed in 0..3 {
        let clean = run(config(3, seed, &[]));
        assert!(
            clean.violations.is_empty(),
            "seed {seed}: {}",
            clean.violations[0]
        );
        let mut cfg = config(3, seed, &[]);
        cfg.sabotage = Some(sabotage);
        let broken = run(cfg);
        let first = broken.violations.first().map(|v| v.checker);
        assert_eq!(
            first,
            Some(checker),
            "seed {seed}, {sabotage:?}: {:?}",
            broken.violations
        );
    }
}

#[test]
fn a_node_bypassing_the_dlm_is_caught_by_the_exclusion_checker() {
    caught(Sabotage::DlmBypass, "dlm-exclusion");
}

#[test]
fn a_lost_value_block_write_back_is_caught_by_the_lvb_checker() {
    caught(Sabotage::DlmLoseLvb, "dlm-lvb");
}

#[test]
fn a_holder_ignoring_basts_is_caught_by_the_progress_checker() {
    caught(Sabotage::DlmHoldForever, "dlm-progress");
}

/// Every node and link fault the simulator has, and clean leaves among them, on 3 to 7 nodes:
/// o2dlm recovery, migration, mastery and the retries after a lost reply keep exclusion,
/// value blocks and progress. A node
/// paused past its heartbeat write timeout fences on resume (the kernel's o2hb timer work
/// fires before its heartbeat thread runs again), so it is judged as a fenced node.
/// The kernel only logs a proxy AST or a reply lost with a reset connection; o2dlm sends a
/// lost AST again and answers a repeated request idempotently, so resets are judged too.
#[test]
fn lock_seeds_with_node_and_link_faults_break_no_rule() {
    let seeds = if cfg!(debug_assertions) { 2 } else { 30 };
    let mut broken = Vec::new();
    let mut grants = 0;
    for nodes in 3..=7u16 {
        for seed in 0..seeds {
            let o = run(config(nodes, seed, &NODE_AND_LINK));
            if let Some(v) = o.violations.first() {
                broken.push(format!("{nodes} nodes seed {seed}: {v}"));
            }
            grants += judged(&o, "dlm-locks");
        }
    }
    assert!(
        broken.is_empty(),
        "{} runs broke a rule:\n{}",
        broken.len(),
        broken.join("\n")
    );
    assert!(grants > 1000, "only {grants} grants judged");
}

const NODE_AND_LINK: [FaultKind; 7] = [
    FaultKind::Crash,
    FaultKind::Pause,
    FaultKind::Partition,
    FaultKind::OneWay,
    FaultKind::Drop,
    FaultKind::Stall,
    FaultKind::Leave,
];

/// Every kind of fault the simulator had when the seeds replayed with it were found: the
/// plan a seed draws depends on the kinds it draws from, so a newer kind would change it.
const BEFORE_MIGRATION_CRASH: [FaultKind; 9] = [
    FaultKind::Partition,
    FaultKind::OneWay,
    FaultKind::Drop,
    FaultKind::Stall,
    FaultKind::Slow,
    FaultKind::Corrupt,
    FaultKind::Crash,
    FaultKind::Pause,
    FaultKind::Leave,
];

/// A seed that broke a rule before the fix it names: the same run now breaks none and
/// still grants locks.
fn replays_clean(nodes: u16, seed: u64, kinds: &[FaultKind], what: &str) {
    let o = run(config(nodes, seed, kinds));
    assert!(
        o.violations.is_empty(),
        "{nodes} nodes seed {seed} ({what}): {}",
        o.violations[0]
    );
    assert!(judged(&o, "dlm-locks") > 100, "{what}: too few grants");
}

/// n2 masters simlock0 and crashes; n3 was mastering the name anew and used to count n2's
/// failed master request as a NO and master it itself while n0 recovered it: after recovery
/// n0 held PR and n3 was granted EX. Mastery now waits for recovery and asks again.
#[test]
fn mastery_waits_for_recovery_of_a_dead_master() {
    replays_clean(4, 2, &[FaultKind::Crash], "double grant after recovery");
}

/// An EX holder's unlock (writing the value block) failed against its dying master; the
/// retry sent zeros, and the recovered resource kept the value the holder had read.
#[test]
fn an_unlock_retried_after_its_master_died_writes_its_value_block() {
    replays_clean(
        3,
        3,
        &[FaultKind::Crash],
        "stale value block after recovery",
    );
}

/// n3's EX unlock (writing its value block) reached its master n1 in a partition, the reply
/// did not: n1 granted on and n1 wrote a newer value, then n1 and n2 (the only nodes that
/// saw it) fenced. n3's lock, still granted while the unlock retried, carried its own write
/// into recovery and n0 read that older value. The kernel does the same
/// (`dlm_add_lock_to_array` sends the lksb value block); the checker now allows exactly this.
#[test]
fn an_unlock_unanswered_when_its_master_died_brings_back_its_own_value_block() {
    replays_clean(
        4,
        74,
        &NODE_AND_LINK,
        "value block of an unanswered unlock after recovery",
    );
}

/// n2's EX unlock (writing nothing) reached master n0 as a partition began, its reply lost;
/// n0, cut off, granted itself EX and wrote newer values, then fenced. n2's lock, still
/// granted while its unlock retried, brought back the value it had read at its grant, as
/// the kernel's recovery does (the lksb of a granted EX lock, written or not).
#[test]
fn an_unlock_that_wrote_nothing_brings_back_the_value_its_lock_read() {
    replays_clean(
        3,
        15,
        &BEFORE_MIGRATION_CRASH,
        "value block its unanswered unlock read",
    );
}

/// A third of n4's heartbeat writes landed corrupted: the others counted them as misses
/// (as the kernel counts a bad checksum) and declared n4 dead, dropping its connections, so
/// n4 lost quorum and fenced. Not a network fault, but the quorum rule's own consequence.
#[test]
fn a_node_declared_dead_for_corrupt_heartbeats_may_fence_by_quorum() {
    replays_clean(
        5,
        29,
        &BEFORE_MIGRATION_CRASH,
        "quorum fence after a heartbeat death",
    );
}

/// The recovery master also had a mastery of the name pending; finishing it replaced the
/// queues recovery had rebuilt with empty ones (a PR holder lost, EX granted over it).
#[test]
fn a_mastery_pending_on_the_recovery_master_keeps_the_rebuilt_queues() {
    replays_clean(5, 7, &[FaultKind::Crash], "rebuilt queues wiped");
}

/// Two nodes die in a one-way cut; an answer to a master request of the round before the
/// second death (NO, from a node that recovery then made master) counted in the new round.
#[test]
fn answers_to_an_earlier_round_of_master_requests_do_not_count() {
    replays_clean(5, 15, &[FaultKind::OneWay], "two masters of one name");
}

/// A paused node resumed and sent a lock request that reached the master after another
/// node's BEGIN_RECO had removed it; its granted lock was never cleaned up.
#[test]
fn a_lock_request_from_a_node_taken_for_dead_is_refused() {
    replays_clean(
        6,
        5,
        &[FaultKind::Pause],
        "resource blocked by a dead node's lock",
    );
}

/// A reset lost the reply to a create the master had queued; the retry was refused
/// DLM_BADARGS while the master kept the lock granted to a requester that never knew.
#[test]
fn a_lock_request_repeated_after_a_reset_is_answered_again() {
    replays_clean(3, 16, &[FaultKind::Drop], "orphan lock after a lost reply");
}

/// A reset lost the proxy AST granting a lock; the requester waited for good.
#[test]
fn a_grant_lost_with_a_reset_connection_is_sent_again() {
    replays_clean(5, 3, &[FaultKind::Drop], "lost grant");
}

/// A host-down answer to a create sent to a master that died arrived after the request
/// was granted by the new master, and dropped that granted lock on the requester.
#[test]
fn a_late_answer_from_a_dead_master_does_not_undo_a_grant() {
    replays_clean(4, 3, &NODE_AND_LINK, "orphan lock after a stale reply");
}

/// n0 paused past its write timeout, was declared dead and recovered, and resumed as a
/// zombie master (its write completion re-armed the timeout first) instead of fencing.
#[test]
fn a_node_paused_past_its_write_timeout_fences_on_resume() {
    replays_clean(3, 8, &NODE_AND_LINK, "zombie master after a pause");
}

/// Crashes in the middle of migrations (the migcrash fault): a node's users let go and its
/// DLM starts handing what it masters to the nodes that use it, and milliseconds later the
/// leaving node (the old master) or another member (perhaps the migration target) crashes
/// with MIG_LOCKRES, MIGRATE_REQUEST or FINISH_MIGRATION messages of a migration in flight.
/// Migration and recovery together keep exclusion, value blocks and progress, and the leave
/// of a node that survives ends (dlm-leave).
#[test]
fn lock_seeds_with_crashes_during_migration_break_no_rule() {
    let seeds = if cfg!(debug_assertions) { 2 } else { 40 };
    let (grants, leaves) = sweep_3_to_7_nodes(seeds, FaultKind::MigrationCrash);
    assert!(grants > 1000, "only {grants} grants judged");
    assert!(leaves > 200, "only {leaves} leaves ended");
}

/// Runs `kind` over 3..=7 nodes and `seeds` seeds, asserts that no run broke a rule, and
/// returns how many grants (dlm-locks) and leaves (dlm-leave) were judged.
fn sweep_3_to_7_nodes(seeds: u64, kind: FaultKind) -> (u64, u64) {
    let mut broken = Vec::new();
    let (mut grants, mut leaves) = (0, 0);
    for nodes in 3..=7u16 {
        for seed in 0..seeds {
            let o = run(config(nodes, seed, &[kind]));
            if let Some(v) = o.violations.first() {
                broken.push(format!("{nodes} nodes seed {seed}: {v}"));
            }
            grants += judged(&o, "dlm-locks");
            leaves += judged(&o, "dlm-leave");
        }
    }
    assert!(
        broken.is_empty(),
        "{} runs broke a rule:\n{}",
        broken.len(),
        broken.join("\n")
    );
    (grants, leaves)
}

/// n2 leaves; its target n1 for simlock1 dies after n0 took n1's MIGRATE_REQUEST and before
/// any FINISH_MIGRATION assert. n2 took the resource back and freed it at once (no reference
/// from n0), while n0 kept n2 as its master: n0's lock requests on simlock1 waited for good
/// and n2's master requests, after it joined again, were answered ERROR for good.
#[test]
fn a_migration_target_dying_before_any_finish_assert_strands_no_request() {
    replays_clean(
        3,
        95,
        &[FaultKind::MigrationCrash],
        "target dead before any FINISH_MIGRATION",
    );
}

/// n5 leaves; n3's unlock of simlock1, refused by n5 as migrating, went to the target n0,
/// which died having asserted to the bystanders only. n3 counted the unlock done with its
/// dead master, but n5 took the resource back with its own queues, where n3's lock was still
/// granted: n2's EX request waited behind it for good.
#[test]
fn an_unlock_lost_with_a_dead_migration_target_is_told_to_the_old_master() {
    replays_clean(
        6,
        67,
        &[FaultKind::MigrationCrash],
        "unlock lost with the target",
    );
}

/// n6 leaves; its target n0 for simlock0 dies after asserting to the bystanders only. n6
/// asserts the resource again (REQUERY); n4, looking simlock0 up, took that for nothing and,
/// as recovery master for n0, remastered simlock0 from the bystanders' data while n6 still
/// mastered it: two EX holders.
#[test]
fn a_reclaim_seen_during_a_lookup_keeps_recovery_from_a_second_master() {
    replays_clean(
        7,
        227,
        &[FaultKind::MigrationCrash],
        "second master after a reclaim",
    );
}

/// n0 leaves; its target n1 for simlock2 dies after asserting to the bystanders only. n3 had
/// released its EX (writing the value block) to n1: the unlock counted as done with its dead
/// master, and the one told again to n0, which kept the queues, must carry the value block.
#[test]
fn an_unlock_told_again_to_the_old_master_writes_its_value_block() {
    replays_clean(
        6,
        33,
        &[FaultKind::MigrationCrash],
        "value block of a re-sent unlock",
    );
}

/// A one-way cut lost n4's answer to n1's assert of simlock2 (its reference), so n1 freed the
/// resource and n2 mastered it anew; n4 kept n1 as master, refused n2's assert, and asked n1,
/// which answered DLM_FORWARD, for good. Such an answer now makes n4 look the master up again.
#[test]
fn a_stale_master_that_forwards_is_looked_up_again() {
    replays_clean(5, 111, &NODE_AND_LINK_LEAVES, "stale master forwarding");
}

const NODE_AND_LINK_LEAVES: [FaultKind; 8] = [
    FaultKind::Crash,
    FaultKind::Pause,
    FaultKind::Partition,
    FaultKind::OneWay,
    FaultKind::Drop,
    FaultKind::Stall,
    FaultKind::Leave,
    FaultKind::MigrationCrash,
];

/// Migrations whose target's messages are held up by a one-way cut while the leaving node
/// dies: bystanders start recovering what it mastered before the target's MIGRATE_REQUEST
/// arrives (migration race (a)), and still end with one master per resource.
#[test]
fn lock_seeds_with_cut_migrations_break_no_rule() {
    let seeds = if cfg!(debug_assertions) { 2 } else { 25 };
    let (grants, _) = sweep_3_to_7_nodes(seeds, FaultKind::MigrationCut);
    assert!(grants > 1000, "only {grants} grants judged");
}

/// A bystander's unlock, counted done when the old master died, was told to the target that
/// had its queues while the target was still MIGRATING: answered DLM_MIGRATING and never sent
/// again, it left a granted ghost lock that an EX request waited behind for good.
#[test]
fn an_unlock_told_to_a_target_still_migrating_is_sent_again() {
    replays_clean(5, 51, &[FaultKind::MigrationCut], "re-sent unlock refused");
    replays_clean(6, 142, &[FaultKind::MigrationCut], "re-sent unlock refused");
}
