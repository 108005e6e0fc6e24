//! Recovery after a node dies, on a virtual-time cluster of recovery machines: the election,
//! the data each survivor sends, the rebuilt queues, the value-block rules, the FINALIZE
//! stages, and deaths during recovery (a survivor, the recovery master itself).

use o2dlm::debug::RecoNodeState;
use o2dlm::recovery::{
    pack_lockres, sender_lvb, MresHeader, RecoEvent, RecoInput, RecoOutput, Recovery, RecoveryStore,
};
use o2dlm::recovery_cluster::RecoCluster;
use o2dlm::recovery_store::MemStore;
use o2dlm::wire::{
    DlmMessage, DlmStatus, DomainName, FinalizeReco, LockMode, LockName, MigLockres,
    MigratableLock, NodeMap, QueueKind, RecoNotice, MAX_MIGRATABLE_LOCKS, MRES_ALL_DONE,
    MRES_RECOVERY,
};

use LockMode::{Ex, Nl, Pr};
use QueueKind::{Blocked, Converting, Granted};

fn name(s: &str) -> LockName {
    LockName::new(s.as_bytes()).unwrap()
}

fn domain() -> DomainName {
    DomainName::new(b"reco").unwrap()
}

fn lvb(b: u8) -> [u8; 64] {
    [b; 64]
}

/// Steps where node `n` logged something about dead node `dead`.
fn events_of(c: &RecoCluster, dead: u8) -> Vec<(u8, RecoEvent)> {
    c.log
        .iter()
        .filter(|(_, _, e)| e.dead() == dead)
        .map(|&(_, n, e)| (n, e))
        .collect()
}

fn masters_finished(c: &RecoCluster, dead: u8) -> Vec<u8> {
    let mut m: Vec<u8> = events_of(c, dead)
        .into_iter()
        .filter_map(|(n, e)| match e {
            RecoEvent::Finished { master, .. } if master == n => Some(n),
            _ => None,
        })
        .collect();
    m.dedup();
    m
}

fn queue_of(c: &RecoCluster, master: u8, res: &str) -> Vec<(u8, LockMode, QueueKind)> {
    let r = c.nodes()[&master].store.get(&name(res)).unwrap();
    r.engine
        .as_ref()
        .unwrap()
        .locks()
        .map(|(q, l)| (l.id.node, l.mode, q))
        .collect()
}

/// Three nodes; node 3 masters four resources and node 1 one, then node 3 is killed.
fn three_nodes() -> RecoCluster {
    let mut c = RecoCluster::new(domain(), &[1, 2, 3], 1);
    // 1 holds EX, 2 waits for EX.
    c.add_resource(
        name("ex-held"),
        3,
        &[(1, Ex, Granted, None), (2, Ex, Blocked, None)],
        lvb(7),
        &[],
    );
    // 1 and 2 read the value block.
    c.add_resource(
        name("shared"),
        3,
        &[(1, Pr, Granted, None), (2, Pr, Granted, None)],
        lvb(9),
        &[],
    );
    // The dead master held EX itself; 1 waits for PR.
    c.add_resource(
        name("master-ex"),
        3,
        &[(3, Ex, Granted, None), (1, Pr, Blocked, None)],
        lvb(5),
        &[],
    );
    // Only a reference from node 2.
    c.add_resource(name("ref-only"), 3, &[], [0; 64], &[2]);
    // Mastered by survivor 1: dead node 3 held EX, 2 waits for PR.
    c.add_resource(
        name("survivor-mastered"),
        1,
        &[(3, Ex, Granted, None), (2, Pr, Blocked, None)],
        lvb(3),
        &[],
    );
    c
}

#[test]
fn dead_master_resources_are_rebuilt_on_one_recovery_master() {
    let mut c = three_nodes();
    c.kill(3, |s| if s == 1 { 1000 } else { 1200 });
    assert!(c.run_until_quiet(60_000), "recovery never went quiet");
    assert_eq!(c.check(), Vec::<String>::new());

    let masters = masters_finished(&c, 3);
    assert_eq!(masters.len(), 1, "one recovery master: {:?}", c.log);
    let m = masters[0];
    // Node 1 saw the death first, took $RECOVERY and won.
    assert_eq!(m, 1);
    // Both survivors log the end with the same master and count.
    let finished: Vec<(u8, RecoEvent)> = events_of(&c, 3)
        .into_iter()
        .filter(|(_, e)| matches!(e, RecoEvent::Finished { .. }))
        .collect();
    assert_eq!(finished.len(), 2, "{finished:?}");
    for (_, e) in &finished {
        assert!(matches!(e, RecoEvent::Finished { master: 1, .. }));
    }

    // The EX holder keeps its lock, the waiter still waits; the value block survives.
    assert_eq!(
        queue_of(&c, m, "ex-held"),
        vec![(1, Ex, Granted), (2, Ex, Blocked)]
    );
    let ex = c.nodes()[&m].store.get(&name("ex-held")).unwrap();
    assert_eq!(*ex.engine.as_ref().unwrap().lvb(), lvb(7));
    // Readers bring the value block back.
    let shared = c.nodes()[&m].store.get(&name("shared")).unwrap();
    assert_eq!(*shared.engine.as_ref().unwrap().lvb(), lvb(9));
    // The dead master's EX is gone: its value block too, and the PR waiter is granted.
    assert_eq!(queue_of(&c, m, "master-ex"), vec![(1, Pr, Granted)]);
    let mex = c.nodes()[&m].store.get(&name("master-ex")).unwrap();
    assert_eq!(*mex.engine.as_ref().unwrap().lvb(), [0; 64]);
    // The reference-only resource moved with node 2's reference.
    let refonly = c.nodes()[&m].store.get(&name("ref-only")).unwrap();
    assert!(refonly.refmap.contains(2));
    assert_eq!(
        c.nodes()[&2].store.get(&name("ref-only")).unwrap().owner,
        Some(1)
    );
    // On a survivor's resource the dead EX lock is dropped, LVB zeroed, waiter granted once
    // recovery ends, and node 2 hears of the grant.
    assert_eq!(queue_of(&c, 1, "survivor-mastered"), vec![(2, Pr, Granted)]);
    let sm = c.nodes()[&1].store.get(&name("survivor-mastered")).unwrap();
    assert_eq!(*sm.engine.as_ref().unwrap().lvb(), [0; 64]);
    let own2 = &c.nodes()[&2]
        .store
        .get(&name("survivor-mastered"))
        .unwrap()
        .own;
    assert_eq!(own2[0].0.list, Granted);
}

#[test]
fn the_recovery_master_dying_before_finalize_restarts_the_election() {
    let mut c = RecoCluster::new(domain(), &[1, 2, 3, 4], 5);
    c.add_resource(
        name("a"),
        4,
        &[
            (1, Pr, Granted, None),
            (3, Pr, Granted, None),
            (2, Ex, Blocked, None),
        ],
        lvb(1),
        &[],
    );
    c.add_resource(name("b"), 4, &[(3, Ex, Granted, None)], lvb(2), &[]);
    // Node 2 masters "c", where node 1 (the future recovery master) holds EX.
    c.add_resource(
        name("c"),
        2,
        &[(1, Ex, Granted, None), (3, Nl, Granted, None)],
        lvb(4),
        &[],
    );
    c.kill(4, |s| 100 * u64::from(s));
    // Run until the others know node 1 as recovery master, then kill it mid-collection.
    while !c
        .log
        .iter()
        .any(|(_, n, e)| *n == 3 && matches!(e, RecoEvent::MasterKnown { dead: 4, master: 1 }))
    {
        let t = c.now() + 1;
        c.run_until(t);
        assert!(c.now() < 10_000, "node 1 never elected");
    }
    c.kill(1, |_| 2000);
    assert!(c.run_until_quiet(120_000));
    assert_eq!(c.check(), Vec::<String>::new());

    // Survivors saw the master die and elected again.
    assert!(c
        .log
        .iter()
        .any(|(_, _, e)| matches!(e, RecoEvent::MasterDied { dead: 4, master: 1 })));
    // Both deaths recovered, each by exactly one live master.
    for dead in [1, 4] {
        let m = masters_finished(&c, dead);
        let live: Vec<u8> = m.into_iter().filter(|n| [2, 3].contains(n)).collect();
        assert_eq!(live.len(), 1, "dead {dead}: {:?}", c.log);
    }
    // Node 3's locks survived both deaths; node 1's went with it (EX: LVB zeroed on "c").
    let b_master = c.nodes()[&3].store.get(&name("b")).unwrap().owner.unwrap();
    assert_eq!(queue_of(&c, b_master, "b"), vec![(3, Ex, Granted)]);
    assert_eq!(queue_of(&c, 2, "c"), vec![(3, Nl, Granted)]);
    let cres = c.nodes()[&2].store.get(&name("c")).unwrap();
    assert_eq!(*cres.engine.as_ref().unwrap().lvb(), [0; 64]);
    let a_master = c.nodes()[&2].store.get(&name("a")).unwrap().owner.unwrap();
    let a = queue_of(&c, a_master, "a");
    assert!(a.contains(&(3, Pr, Granted)), "{a:?}");
    assert!(a.contains(&(2, Ex, Blocked)), "{a:?}");
    assert!(!a.iter().any(|l| l.0 == 1), "{a:?}");
}

#[test]
fn a_survivor_dying_during_collection_is_marked_dead_and_recovered_next() {
    let mut c = RecoCluster::new(domain(), &[1, 2, 3], 10);
    c.add_resource(
        name("x"),
        3,
        &[(1, Pr, Granted, None), (2, Pr, Granted, None)],
        lvb(6),
        &[],
    );
    c.add_resource(
        name("y"),
        2,
        &[(2, Ex, Granted, None), (1, Ex, Blocked, None)],
        lvb(8),
        &[],
    );
    // Node 2 stalls so its data is late; it dies before sending it.
    c.kill(3, |_| 50);
    c.pause(2, 200);
    c.run_until(120);
    c.kill(2, |_| 500);
    assert!(c.run_until_quiet(60_000));
    assert_eq!(c.check(), Vec::<String>::new());
    // Node 1 alone: it masters both, has EX on "y" (its master and EX holder died: LVB zero),
    // and PR on "x" with the value block it read.
    assert_eq!(queue_of(&c, 1, "x"), vec![(1, Pr, Granted)]);
    assert_eq!(
        *c.nodes()[&1]
            .store
            .get(&name("x"))
            .unwrap()
            .engine
            .as_ref()
            .unwrap()
            .lvb(),
        lvb(6)
    );
    assert_eq!(queue_of(&c, 1, "y"), vec![(1, Ex, Granted)]);
    assert_eq!(
        *c.nodes()[&1]
            .store
            .get(&name("y"))
            .unwrap()
            .engine
            .as_ref()
            .unwrap()
            .lvb(),
        [0; 64]
    );
    assert_eq!(masters_finished(&c, 3), vec![1]);
    assert_eq!(masters_finished(&c, 2), vec![1]);
}

#[test]
fn begin_reco_ahead_of_heartbeat_forces_local_cleanup() {
    let mut c = three_nodes();
    // Node 2's heartbeat is a minute late: the recovery master's BEGIN_RECO tells it first.
    c.kill(3, |s| if s == 1 { 100 } else { 60_000 });
    c.run_until(5_000);
    assert!(c
        .log
        .iter()
        .any(|(t, n, e)| *n == 2 && *t < 5_000 && matches!(e, RecoEvent::NodeDied { dead: 3 })));
    assert_eq!(masters_finished(&c, 3), vec![1]);
    assert!(!c.nodes()[&2].reco.is_active());
    assert!(c.run_until_quiet(120_000));
    assert_eq!(c.check(), Vec::<String>::new());
    // The late heartbeat event changes nothing: one death, one recovery.
    let died: Vec<_> = c
        .log
        .iter()
        .filter(|(_, n, e)| *n == 2 && matches!(e, RecoEvent::NodeDied { .. }))
        .collect();
    assert_eq!(died.len(), 1);
}

#[test]
fn recovery_state_shows_progress_for_the_dumps() {
    let mut c = three_nodes();
    c.kill(3, |_| 100);
    c.run_until(103);
    let st = c.nodes()[&1].reco.state();
    assert!(st.active);
    assert_eq!(st.dead_node, Some(3));
    assert!(st.recovery_map.contains(3));
    c.run_until_quiet(60_000);
    let st = c.nodes()[&1].reco.state();
    assert!(!st.active);
    assert_eq!(st.completed, 1);
    assert!(st.recovery_map.is_empty());
}

/// A store that only counts, for protocol rules on one machine.
#[derive(Default)]
struct Counting {
    cleanups: Vec<u8>,
    finished: Vec<(u8, u8)>,
}

impl RecoveryStore for Counting {
    fn local_cleanup(&mut self, dead: u8) {
        self.cleanups.push(dead);
    }
    fn recovery_data(&mut self, _dead: u8, _out: &mut Vec<MigLockres>) {}
    fn rebuild(&mut self, _from: u8, _mres: &MigLockres) -> Result<(), o2dlm::Error> {
        Ok(())
    }
    fn finish(&mut self, dead: u8, new_master: u8) -> usize {
        self.finished.push((dead, new_master));
        0
    }
}

fn members(nodes: &[u8]) -> NodeMap {
    let mut m = NodeMap::new();
    for &n in nodes {
        m.insert(n);
    }
    m
}

#[test]
fn begin_reco_in_the_finalize_state_gets_eagain_and_stage2_ends_it() {
    let mut r = Recovery::new(2, domain(), members(&[1, 2, 3, 4]));
    let mut s = Counting::default();
    r.handle(0, RecoInput::NodeDown(4), &mut s);
    assert_eq!(s.cleanups, vec![4]);
    let begin = |from| RecoInput::Message {
        from,
        msg: DlmMessage::BeginReco(RecoNotice {
            node_idx: from,
            dead_node: 4,
        }),
    };
    assert_eq!(r.handle(1, begin(1), &mut s), 0);
    assert_eq!(r.state().new_master, Some(1));
    let fin = |flags| RecoInput::Message {
        from: 1,
        msg: DlmMessage::FinalizeReco(FinalizeReco {
            node_idx: 1,
            dead_node: 4,
            flags,
        }),
    };
    // A FINALIZE from someone else is refused.
    let wrong = RecoInput::Message {
        from: 3,
        msg: DlmMessage::FinalizeReco(FinalizeReco {
            node_idx: 3,
            dead_node: 4,
            flags: 0,
        }),
    };
    assert_eq!(r.handle(2, wrong, &mut s), -22);
    assert_eq!(r.handle(3, fin(0), &mut s), 0);
    assert_eq!(s.finished, vec![(4, 1)]);
    assert!(r.state().finalizing);
    assert_eq!(
        r.handle(4, begin(3), &mut s),
        -11,
        "EAGAIN while finalizing"
    );
    assert_eq!(r.handle(5, fin(1), &mut s), 0);
    let st = r.state();
    assert!(!st.active && !st.finalizing && st.completed == 1);
}

#[test]
fn lock_request_for_another_dead_node_is_refused_and_data_ends_with_data_done() {
    let mut r = Recovery::new(2, domain(), members(&[1, 2, 3]));
    let mut s = MemStore::new(2);
    r.handle(0, RecoInput::NodeDown(3), &mut s);
    r.drain_outputs().for_each(drop);
    let lock_req = |dead| RecoInput::Message {
        from: 1,
        msg: DlmMessage::LockRequest(RecoNotice {
            node_idx: 1,
            dead_node: dead,
        }),
    };
    r.handle(
        1,
        RecoInput::Message {
            from: 1,
            msg: DlmMessage::BeginReco(RecoNotice {
                node_idx: 1,
                dead_node: 3,
            }),
        },
        &mut s,
    );
    assert_eq!(
        r.handle(2, lock_req(5), &mut s),
        -12,
        "ENOMEM: not that node"
    );
    assert_eq!(r.handle(3, lock_req(3), &mut s), 0);
    let sends: Vec<DlmMessage> = r
        .drain_outputs()
        .filter_map(|o| match o {
            RecoOutput::Send { to: 1, msg, .. } => Some(msg),
            _ => None,
        })
        .collect();
    assert!(
        matches!(sends.last(), Some(DlmMessage::RecoDataDone(d)) if d.node_idx == 2 && d.dead_node == 3)
    );
}

#[test]
fn losers_wait_for_begin_reco_and_winner_unlocks_after_announcing() {
    let mut r = Recovery::new(1, domain(), members(&[1, 2, 3]));
    let mut s = Counting::default();
    r.handle(0, RecoInput::NodeDown(3), &mut s);
    let outs: Vec<RecoOutput> = r.drain_outputs().collect();
    assert!(outs.contains(&RecoOutput::LockRecoveryLock));
    // NOTQUEUED: wait a second for BEGIN_RECO, then try again.
    r.handle(1, RecoInput::RecoveryLock(DlmStatus::Notqueued), &mut s);
    assert_eq!(r.next_deadline(), Some(1001));
    r.drain_outputs().for_each(drop);
    r.handle(1001, RecoInput::Tick, &mut s);
    assert!(r.drain_outputs().any(|o| o == RecoOutput::LockRecoveryLock));
    // Granted: BEGIN_RECO to node 2 (not the dead node); $RECOVERY is held until it answers.
    r.handle(1002, RecoInput::RecoveryLock(DlmStatus::Normal), &mut s);
    let outs: Vec<RecoOutput> = r.drain_outputs().collect();
    let begins: Vec<(u64, u8)> = outs
        .iter()
        .filter_map(|o| match o {
            RecoOutput::Send {
                token,
                to,
                msg: DlmMessage::BeginReco(b),
            } if b.dead_node == 3 => Some((*token, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(begins.len(), 1);
    assert_eq!(begins[0].1, 2);
    assert!(!outs.contains(&RecoOutput::UnlockRecoveryLock));
    // EAGAIN: resent after 100 ms.
    r.handle(
        1003,
        RecoInput::SendDone {
            token: begins[0].0,
            result: Ok(-11),
        },
        &mut s,
    );
    assert_eq!(r.next_deadline(), Some(1103));
    r.handle(1103, RecoInput::Tick, &mut s);
    let token = r
        .drain_outputs()
        .find_map(|o| match o {
            RecoOutput::Send {
                token,
                msg: DlmMessage::BeginReco(_),
                ..
            } => Some(token),
            _ => None,
        })
        .unwrap();
    r.handle(
        1104,
        RecoInput::SendDone {
            token,
            result: Ok(0),
        },
        &mut s,
    );
    let outs: Vec<RecoOutput> = r.drain_outputs().collect();
    assert!(outs.contains(&RecoOutput::UnlockRecoveryLock));
    assert!(outs.iter().any(|o| matches!(
        o,
        RecoOutput::Send {
            to: 2,
            msg: DlmMessage::LockRequest(_),
            ..
        }
    )));
    assert_eq!(
        r.state().nodes,
        vec![(1, RecoNodeState::Done), (2, RecoNodeState::Requesting)]
    );
}

#[test]
fn pack_splits_big_resources_and_sends_a_dummy_for_references() {
    let n = name("big");
    let head = MresHeader {
        sender: 2,
        master: 3,
        flags: MRES_RECOVERY,
        name: n,
        lvb: [0; 64],
    };
    let mut cookie = 1;
    let mut out = Vec::new();
    pack_lockres(head, &[], &mut cookie, &mut out);
    assert_eq!(out.len(), 1);
    assert!(out[0].locks[0].is_dummy() && out[0].locks[0].node == 2);
    assert_eq!(out[0].flags, MRES_RECOVERY | MRES_ALL_DONE);
    assert_eq!((out[0].total_locks, out[0].mig_cookie), (0, 0));

    let locks: Vec<MigratableLock> = (0..500u64)
        .map(|i| MigratableLock {
            cookie: (2 << 56) | (i + 1),
            list: Granted,
            flags: 0,
            type_: Some(Nl),
            convert_type: None,
            highest_blocked: None,
            node: 2,
        })
        .collect();
    out.clear();
    pack_lockres(head, &locks, &mut cookie, &mut out);
    assert_eq!(
        out.iter().map(|m| m.locks.len()).collect::<Vec<_>>(),
        vec![MAX_MIGRATABLE_LOCKS, MAX_MIGRATABLE_LOCKS, 20]
    );
    assert!(out
        .iter()
        .all(|m| m.total_locks == 500 && m.mig_cookie == 1));
    assert_eq!(
        out.iter()
            .map(|m| m.flags & MRES_ALL_DONE)
            .collect::<Vec<_>>(),
        vec![0, 0, MRES_ALL_DONE]
    );
    assert_eq!(cookie, 2);
    // Each part is a valid message on the wire.
    for m in &out {
        let mut b = bytes::BytesMut::new();
        DlmMessage::MigLockres(m.clone()).encode(&mut b);
        assert_eq!(b.len(), 112 + 16 * m.locks.len());
        assert_eq!(
            DlmMessage::decode(509, &b).unwrap(),
            DlmMessage::MigLockres(m.clone())
        );
    }
}

#[test]
fn sender_lvb_comes_from_readers_and_writers_and_must_agree() {
    let n = name("v");
    let rec = |list, mode: LockMode, flags| MigratableLock {
        cookie: 1,
        list,
        flags,
        type_: Some(mode),
        convert_type: if list == Converting { Some(Ex) } else { None },
        highest_blocked: None,
        node: 1,
    };
    let a = rec(Granted, Nl, 0);
    let b = rec(Converting, Pr, 0);
    let c = rec(Blocked, Ex, 0);
    assert_eq!(
        sender_lvb(n, [(&a, &lvb(1)), (&b, &lvb(2)), (&c, &lvb(3))]).unwrap(),
        lvb(2)
    );
    assert_eq!(sender_lvb(n, [(&a, &lvb(1))]).unwrap(), [0; 64]);
    let d = rec(Granted, Pr, 0);
    assert!(sender_lvb(n, [(&b, &lvb(2)), (&d, &lvb(4))]).is_err());
}
