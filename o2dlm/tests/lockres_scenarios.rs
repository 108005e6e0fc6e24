//! Scenario tests of the lock-resource engine: grant order and fairness, BAST coalescing and
//! cancellation, value-block rules, cancel and unlock, the recovery lock, dead-node cleanup,
//! and moving a resource's locks by migration and recovery.

mod engine;

use engine::{ast, bast, flush, id, res, settle};
use o2dlm::lockres::{Delivery, LockResource, Migrated, Requested, Unlocked};
use o2dlm::wire::{
    DlmStatus, LkmFlags, LockMode, Lvb, MigratableLock, QueueKind, LKSB_GET_LVB, LKSB_PUT_LVB,
    MRES_ALL_DONE, MRES_MIGRATION, MRES_RECOVERY,
};

use LockMode::{Ex, Nl, Pr};

const NONE: LkmFlags = LkmFlags::empty();

fn lvb(text: &str) -> Lvb {
    let mut l = [0u8; 64];
    l[..text.len()].copy_from_slice(text.as_bytes());
    l
}

fn queue_ids(r: &LockResource, k: QueueKind) -> Vec<u8> {
    r.queue(k).iter().map(|l| l.id.node).collect()
}

#[test]
fn blocked_queue_is_fifo_and_only_its_head_is_considered() {
    let mut r = res("fifo");
    r.request(id(1), Ex, NONE).unwrap();
    settle(&mut r);
    for (n, m) in [(2, Pr), (3, Ex), (4, Pr)] {
        assert_eq!(r.request(id(n), m, NONE), Ok(Requested::Queued));
    }
    assert_eq!(settle(&mut r), vec![bast(1, Pr)]);
    r.unlock(id(1), NONE, None).unwrap();
    // PR(2) is granted; EX(3) waits for it; PR(4), though compatible, waits behind EX(3).
    assert_eq!(settle(&mut r), vec![ast(2, Pr), bast(2, Ex)]);
    assert_eq!(queue_ids(&r, QueueKind::Blocked), vec![3, 4]);
    r.unlock(id(2), NONE, None).unwrap();
    assert_eq!(settle(&mut r), vec![ast(3, Ex), bast(3, Pr)]);
    r.unlock(id(3), NONE, None).unwrap();
    assert_eq!(settle(&mut r), vec![ast(4, Pr)]);
}

#[test]
fn compatible_newcomer_passes_waiting_requests() {
    // dlm_can_grant_new_lock ignores the blocked queue.
    let mut r = res("pass");
    r.request(id(1), Pr, NONE).unwrap();
    r.request(id(2), Ex, NONE).unwrap();
    assert_eq!(r.request(id(3), Pr, NONE), Ok(Requested::Granted));
    assert_eq!(
        settle(&mut r),
        vec![ast(1, Pr), ast(3, Pr), bast(1, Ex), bast(3, Ex)]
    );
}

#[test]
fn waiting_conversion_holds_back_the_blocked_queue() {
    let mut r = res("cvt");
    r.request(id(1), Pr, NONE).unwrap();
    r.request(id(2), Pr, NONE).unwrap();
    settle(&mut r);
    assert_eq!(r.convert(id(2), Ex, NONE, None), Ok(Requested::Queued));
    // NL is compatible with everything, even the conversion's target: granted.
    assert_eq!(r.request(id(3), Nl, NONE), Ok(Requested::Granted));
    // PR conflicts with the conversion's target EX: it waits.
    assert_eq!(r.request(id(4), Pr, NONE), Ok(Requested::Queued));
    assert_eq!(settle(&mut r), vec![ast(3, Nl), bast(1, Ex)]);
    // Node 1 goes away: the conversion is granted, and PR(4) now waits on node 2's EX.
    r.unlock(id(1), NONE, None).unwrap();
    assert_eq!(settle(&mut r), vec![ast(2, Ex), bast(2, Pr)]);
    assert_eq!(queue_ids(&r, QueueKind::Blocked), vec![4]);
}

#[test]
fn conversions_are_granted_in_queue_order() {
    let mut r = res("order");
    for n in 1..=3 {
        r.request(id(n), Nl, NONE).unwrap();
    }
    r.request(id(4), Pr, NONE).unwrap();
    settle(&mut r);
    // 1 and 2 want EX (blocked by PR(4)), 3 wants PR (compatible, but behind them).
    assert_eq!(r.convert(id(1), Ex, NONE, None), Ok(Requested::Queued));
    assert_eq!(r.convert(id(2), Ex, NONE, None), Ok(Requested::Queued));
    assert_eq!(r.convert(id(3), Pr, NONE, None), Ok(Requested::Queued));
    assert_eq!(settle(&mut r), vec![bast(4, Ex)]);
    r.unlock(id(4), NONE, None).unwrap();
    assert_eq!(settle(&mut r), vec![ast(1, Ex), bast(1, Ex)]);
    r.convert(id(1), Nl, NONE, None).unwrap();
    assert_eq!(settle(&mut r), vec![ast(1, Nl), ast(2, Ex), bast(2, Pr)]);
}

#[test]
fn basts_coalesce_until_flushed_and_repeat_each_pass() {
    let mut r = res("bast");
    r.request(id(1), Ex, NONE).unwrap();
    settle(&mut r);
    r.request(id(2), Pr, NONE).unwrap();
    r.shuffle();
    // Before the BAST for PR goes out, PR is withdrawn and EX is wanted instead.
    r.unlock(id(2), LkmFlags::CANCEL, None).unwrap();
    r.request(id(3), Nl, NONE).unwrap();
    r.request(id(4), Ex, NONE).unwrap();
    r.shuffle();
    r.shuffle();
    // One BAST, carrying the strongest mode blocked since the last one.
    assert_eq!(flush(&mut r), vec![ast(3, Nl), bast(1, Ex)]);
    // Still blocking after the BAST went out: the next pass tells it again.
    r.shuffle();
    assert_eq!(flush(&mut r), vec![bast(1, Ex)]);
}

#[test]
fn grant_cancels_a_bast_that_no_longer_applies() {
    // dlm_should_cancel_bast: NL blocks nothing; PR blocks only EX; EX blocks everything.
    for (down, blocked, kept) in [
        (Nl, Pr, false),
        (Nl, Ex, false),
        (Pr, Pr, false),
        (Pr, Ex, true),
    ] {
        let ctx = format!("EX->{down} with a BAST for {blocked} queued");
        let mut r = res("cancel-bast");
        r.request(id(1), Ex, NONE).unwrap();
        settle(&mut r);
        r.request(id(2), blocked, NONE).unwrap();
        r.shuffle();
        // The holder down-converts before the BAST is delivered.
        r.convert(id(1), down, NONE, None).unwrap();
        let d = flush(&mut r);
        let mut expect = vec![ast(1, down)];
        if kept {
            expect.push(bast(1, blocked));
        }
        assert_eq!(d, expect, "{ctx}");
    }
}

#[test]
fn lvb_flows_from_ex_writeback_to_readers() {
    let mut r = res("lvb");
    // An EX holder reads the (zero) LVB with its grant and writes it back on down-convert.
    r.request(id(1), Ex, LkmFlags::VALBLK).unwrap();
    assert_eq!(
        flush(&mut r),
        vec![Delivery::Ast {
            lock: id(1),
            mode: Ex,
            lvb: Some([0; 64])
        }]
    );
    r.request(id(2), Pr, LkmFlags::VALBLK).unwrap();
    r.request(id(3), Nl, LkmFlags::VALBLK).unwrap();
    settle(&mut r);
    r.convert(id(1), Nl, LkmFlags::VALBLK, Some(&lvb("v1")))
        .unwrap();
    assert_eq!(r.lvb(), &lvb("v1"));
    // The PR reader gets v1 with its AST; an NL request never carries the LVB.
    assert_eq!(
        settle(&mut r),
        vec![
            ast(1, Nl),
            Delivery::Ast {
                lock: id(2),
                mode: Pr,
                lvb: Some(lvb("v1"))
            },
        ]
    );
    assert_eq!(r.find(id(3)).unwrap().1.mode, Nl);
    // A remote requester asks with GET_LVB on the wire.
    r.request(id(4), Pr, LkmFlags::GET_LVB).unwrap();
    assert_eq!(
        flush(&mut r),
        vec![Delivery::Ast {
            lock: id(4),
            mode: Pr,
            lvb: Some(lvb("v1"))
        }]
    );
    // NL->PR with VALBLK re-reads; PR unlock with VALBLK does not write.
    r.convert(id(3), Pr, LkmFlags::VALBLK, None).unwrap();
    assert_eq!(
        flush(&mut r),
        vec![Delivery::Ast {
            lock: id(3),
            mode: Pr,
            lvb: Some(lvb("v1"))
        }]
    );
    r.unlock(id(3), LkmFlags::VALBLK, Some(&lvb("ignored")))
        .unwrap();
    assert_eq!(r.lvb(), &lvb("v1"));
    // INVVALBLK is accepted and, as in o2dlm, changes nothing.
    r.unlock(id(4), LkmFlags::INVVALBLK, None).unwrap();
    assert_eq!(r.lvb(), &lvb("v1"));
    // An EX unlock with VALBLK writes; a remote one sends PUT_LVB with the value.
    r.unlock(id(2), NONE, None).unwrap();
    r.convert(id(1), Ex, NONE, None).unwrap();
    settle(&mut r);
    r.unlock(
        id(1),
        LkmFlags::VALBLK | LkmFlags::PUT_LVB,
        Some(&lvb("v2")),
    )
    .unwrap();
    assert_eq!(r.lvb(), &lvb("v2"));
}

#[test]
fn remote_ex_holder_writes_back_with_put_lvb() {
    // The captured kernel exchange: node 2 converts EX->PR with VALBLK|PUT_LVB and "from-B".
    let mut r = res("xlock");
    r.request(id(2), Ex, LkmFlags::GET_LVB | LkmFlags::VALBLK)
        .unwrap();
    flush(&mut r);
    r.convert(
        id(2),
        Pr,
        LkmFlags::VALBLK | LkmFlags::CONVERT | LkmFlags::PUT_LVB,
        Some(&lvb("from-B")),
    )
    .unwrap();
    assert_eq!(r.lvb(), &lvb("from-B"));
    // The grant AST of a write-back carries no LVB (the kernel's proxy AST had no GET_LVB).
    assert_eq!(flush(&mut r), vec![ast(2, Pr)]);
}

#[test]
fn cancel_withdraws_pending_requests_only() {
    let mut r = res("cancel");
    r.request(id(1), Ex, NONE).unwrap();
    r.request(id(2), Pr, NONE).unwrap();
    r.request(id(3), Nl, NONE).unwrap();
    settle(&mut r);
    r.convert(id(3), Ex, NONE, None).unwrap();
    settle(&mut r);
    // Blocked request: removed.
    assert!(matches!(
        r.unlock(id(2), LkmFlags::CANCEL, None),
        Ok(Unlocked::CancelledRequest(l)) if l.id == id(2) && l.mode == Pr
    ));
    // Converting lock: back on the granted queue in its old mode.
    assert_eq!(
        r.unlock(id(3), LkmFlags::CANCEL | LkmFlags::VALBLK, None),
        Ok(Unlocked::CancelledConvert)
    );
    let (q, l) = r.find(id(3)).unwrap();
    assert_eq!((q, l.mode, l.convert_type), (QueueKind::Granted, Nl, None));
    // Granted lock: too late.
    let too_late = r.unlock(id(1), LkmFlags::CANCEL, None).unwrap();
    assert_eq!(too_late, Unlocked::CancelGrant);
    assert_eq!(too_late.status(), DlmStatus::Cancelgrant);
    assert_eq!(r.find(id(1)).unwrap().1.mode, Ex);
    assert_eq!(
        r.unlock(id(8), LkmFlags::CANCEL, None),
        Err(DlmStatus::Ivlockid)
    );
}

#[test]
fn unlock_rules() {
    let mut r = res("unlock");
    r.request(id(1), Ex, NONE).unwrap();
    // Its grant AST has not gone out yet.
    assert_eq!(r.unlock(id(1), NONE, None), Err(DlmStatus::Badparam));
    flush(&mut r);
    r.request(id(2), Ex, NONE).unwrap();
    // A waiting request must be cancelled, not unlocked.
    assert_eq!(r.unlock(id(2), NONE, None), Err(DlmStatus::Denied));
    // An EX unlock that writes the LVB must supply it.
    assert_eq!(
        r.unlock(id(1), LkmFlags::VALBLK, None),
        Err(DlmStatus::Badargs)
    );
    assert!(matches!(
        r.unlock(id(1), NONE, None),
        Ok(Unlocked::Unlocked(_))
    ));
    assert_eq!(r.unlock(id(1), NONE, None), Err(DlmStatus::Ivlockid));
    assert_eq!(settle(&mut r), vec![ast(2, Ex)]);
    // A queued BAST dies with the lock it was meant for.
    r.request(id(3), Pr, NONE).unwrap();
    r.shuffle();
    r.unlock(id(2), NONE, None).unwrap();
    assert_eq!(settle(&mut r), vec![ast(3, Pr)]);
    assert!(!r.has_pending_deliveries());
    assert_eq!(r.request(id(3), Pr, NONE), Err(DlmStatus::Badargs));
}

#[test]
fn recovery_lock_is_granted_without_an_ast() {
    let mut r = res("$RECOVERY");
    let flags = LkmFlags::NOQUEUE | LkmFlags::RECOVERY;
    assert_eq!(r.request(id(1), Ex, flags), Ok(Requested::Granted));
    assert_eq!(r.request(id(2), Ex, flags), Err(DlmStatus::Notqueued));
    assert!(settle(&mut r).is_empty());
    assert!(r.unlock(id(1), NONE, None).is_ok());
}

#[test]
fn dead_node_locks_are_dropped_and_waiters_proceed() {
    let mut r = res("dead");
    r.request(id(1), Ex, LkmFlags::VALBLK).unwrap();
    settle(&mut r);
    r.convert(id(1), Ex, LkmFlags::VALBLK, Some(&lvb("dirty")))
        .unwrap();
    r.request(id(2), Pr, LkmFlags::VALBLK).unwrap();
    r.request(id(1 + 2), Ex, NONE).unwrap();
    settle(&mut r);
    let removed = r.remove_node_locks(1);
    assert_eq!(removed.count, 1);
    assert!(removed.held_ex);
    assert!(r.is_dirty());
    // Recovery zeroes the value block when an EX holder died.
    r.invalidate_lvb();
    assert_eq!(
        settle(&mut r),
        vec![
            Delivery::Ast {
                lock: id(2),
                mode: Pr,
                lvb: Some([0; 64])
            },
            bast(2, Ex),
        ]
    );
    // A node that only waited held no EX.
    let removed = r.remove_node_locks(3);
    assert_eq!((removed.count, removed.held_ex), (1, false));
    assert_eq!(r.remove_node_locks(9).count, 0);
}

#[test]
fn migration_moves_queues_exactly() {
    let mut r = res("mig");
    r.request(id(1), Pr, NONE).unwrap();
    r.request(id(2), Pr, LkmFlags::VALBLK).unwrap();
    settle(&mut r);
    r.convert(id(2), Ex, NONE, None).unwrap();
    r.request(id(3), Ex, LkmFlags::VALBLK).unwrap();
    r.request(id(4), Nl, NONE).unwrap();
    settle(&mut r);
    r.set_lvb(lvb("carried"));
    let records: Vec<MigratableLock> = r.migratable_locks().collect();
    assert_eq!(
        records.iter().map(|m| (m.node, m.list)).collect::<Vec<_>>(),
        vec![
            (1, QueueKind::Granted),
            (4, QueueKind::Granted),
            (2, QueueKind::Converting),
            (3, QueueKind::Blocked),
        ]
    );
    assert_eq!(records[3].flags, LKSB_GET_LVB);
    // The new master is node 4, which already holds its own lock locally.
    let mut target = res("mig");
    target.request(id(4), Nl, NONE).unwrap();
    flush(&mut target);
    let flags = MRES_MIGRATION | MRES_ALL_DONE;
    let outcomes: Vec<Migrated> = records
        .iter()
        .map(|m| target.add_migrated_lock(4, flags, r.lvb(), m).unwrap())
        .collect();
    assert_eq!(
        outcomes,
        vec![
            Migrated::Created(1),
            Migrated::Requeued,
            Migrated::Created(2),
            Migrated::Created(3),
        ]
    );
    for k in QueueKind::ALL {
        assert_eq!(
            target
                .queue(k)
                .iter()
                .map(|l| (l.id, l.mode, l.convert_type))
                .collect::<Vec<_>>(),
            r.queue(k)
                .iter()
                .map(|l| (l.id, l.mode, l.convert_type))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(target.lvb(), &lvb("carried"));
    // The new master's shuffle carries on: 1 leaves, 2 converts, 3 waits on 2's EX.
    target.unlock(id(1), NONE, None).unwrap();
    assert_eq!(settle(&mut target), vec![ast(2, Ex), bast(2, Ex)]);
    target.unlock(id(2), NONE, None).unwrap();
    assert_eq!(
        settle(&mut target),
        vec![Delivery::Ast {
            lock: id(3),
            mode: Ex,
            lvb: Some(lvb("carried"))
        }]
    );
}

fn rec(
    node: u8,
    list: QueueKind,
    type_: LockMode,
    convert_type: Option<LockMode>,
) -> MigratableLock {
    MigratableLock {
        cookie: id(node).cookie,
        list,
        flags: 0,
        type_: Some(type_),
        convert_type,
        highest_blocked: None,
        node,
    }
}

#[test]
fn recovery_puts_down_conversions_first_and_rejects_bad_records() {
    let mut r = res("reco");
    let zero = [0u8; 64];
    let add =
        |r: &mut LockResource, m: &MigratableLock| r.add_migrated_lock(9, MRES_RECOVERY, &zero, m);
    assert_eq!(
        add(&mut r, &rec(1, QueueKind::Converting, Nl, Some(Ex))).unwrap(),
        Migrated::Created(1)
    );
    // A conversion from EX down to PR that was in flight when the master died.
    add(&mut r, &rec(2, QueueKind::Converting, Ex, Some(Pr))).unwrap();
    assert_eq!(queue_ids(&r, QueueKind::Converting), vec![2, 1]);
    // Only recovery reorders: migration keeps the sender's order.
    let mut m = res("reco");
    for x in [
        rec(1, QueueKind::Converting, Nl, Some(Ex)),
        rec(2, QueueKind::Converting, Ex, Some(Pr)),
    ] {
        m.add_migrated_lock(9, MRES_MIGRATION, &zero, &x).unwrap();
    }
    assert_eq!(queue_ids(&m, QueueKind::Converting), vec![1, 2]);

    assert_eq!(
        add(&mut r, &MigratableLock::dummy(5)).unwrap(),
        Migrated::Reference(5)
    );
    assert!(r.find(id(5)).is_none());
    assert_eq!(
        add(&mut r, &rec(1, QueueKind::Converting, Nl, Some(Ex))).unwrap(),
        Migrated::Duplicate
    );
    let mut bad = rec(3, QueueKind::Granted, Pr, None);
    bad.highest_blocked = Some(Ex);
    let e = add(&mut r, &bad).unwrap_err();
    assert!(e.to_string().contains("lock resource reco"), "{e}");
    assert!(add(&mut r, &rec(3, QueueKind::Converting, Pr, None)).is_err());
    assert!(add(&mut r, &rec(3, QueueKind::Granted, Pr, Some(Ex))).is_err());
    // Recovery never sends the recovery master's own locks.
    assert!(add(&mut r, &rec(9, QueueKind::Granted, Pr, None)).is_err());
    // Migration to a node whose own lock is missing is a protocol violation.
    assert!(r
        .add_migrated_lock(
            9,
            MRES_MIGRATION,
            &zero,
            &rec(9, QueueKind::Granted, Pr, None)
        )
        .is_err());
}

#[test]
fn recovered_value_blocks_follow_the_kernel_rules() {
    let v1 = lvb("v1");
    let v2 = lvb("v2");
    let add = |r: &mut LockResource, m: &MigratableLock, v: &Lvb| {
        r.add_migrated_lock(9, MRES_RECOVERY, v, m)
    };
    // A PR holder's copy becomes the resource's; another PR holder must agree.
    let mut r = res("lvb");
    add(&mut r, &rec(1, QueueKind::Granted, Pr, None), &v1).unwrap();
    assert_eq!(r.lvb(), &v1);
    add(&mut r, &rec(2, QueueKind::Granted, Pr, None), &v1).unwrap();
    assert!(add(&mut r, &rec(3, QueueKind::Granted, Pr, None), &v2).is_err());
    // NL holders and waiting requests carry no valid value block.
    add(&mut r, &rec(4, QueueKind::Granted, Nl, None), &v2).unwrap();
    add(&mut r, &rec(5, QueueKind::Blocked, Ex, None), &v2).unwrap();
    assert_eq!(r.lvb(), &v1);
    // A holder that was writing back when the master died wins.
    let mut w = rec(6, QueueKind::Converting, Pr, Some(Ex));
    w.flags = LKSB_PUT_LVB;
    add(&mut r, &w, &v2).unwrap();
    assert_eq!(r.lvb(), &v2);
    assert_eq!(r.find(id(6)).unwrap().1.lksb_flags, LKSB_PUT_LVB);
    // An EX holder is the only writer: any existing value contradicts it.
    assert!(add(&mut r, &rec(7, QueueKind::Granted, Ex, None), &v2).is_err());
    let mut fresh = res("lvb");
    add(&mut fresh, &rec(7, QueueKind::Granted, Ex, None), &v2).unwrap();
    assert_eq!(fresh.lvb(), &v2);
    // The same EX record again (the recovery master's own lock, placed before its own data
    // arrives) is a duplicate, not a contradiction.
    assert_eq!(
        add(&mut fresh, &rec(7, QueueKind::Granted, Ex, None), &v2).unwrap(),
        Migrated::Duplicate
    );
    // An all-zero value block says nothing.
    add(&mut fresh, &rec(8, QueueKind::Granted, Nl, None), &[0; 64]).unwrap();
    assert_eq!(fresh.lvb(), &v2);
}
