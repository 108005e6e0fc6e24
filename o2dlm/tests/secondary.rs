//! The requester's side of a remotely mastered resource: the messages it sends for each
//! request, what replies and proxy ASTs do to its copy of its locks, and the races the kernel
//! allows (an AST before the reply, a cancel that comes too late, retries).

use o2dlm::secondary::{Notice, OwnLocks, PendingOp, UnlockDone};
use o2dlm::wire::{AstType, DlmStatus, LkmFlags, LockMode, LockName, Lvb, ProxyAst, QueueKind};

use LockMode::{Ex, Nl, Pr};

const NONE: LkmFlags = LkmFlags::empty();
const ZERO: Lvb = [0; 64];

fn own(name: &str) -> OwnLocks {
    OwnLocks::new(2, LockName::new(name.as_bytes()).unwrap())
}

fn past(cookie: u64, ast_type: AstType, blocked: LockMode, lvb: Option<Lvb>) -> ProxyAst {
    let name = LockName::new(b"r").unwrap();
    ProxyAst {
        cookie,
        flags: if lvb.is_some() {
            LkmFlags::GET_LVB
        } else {
            NONE
        },
        node_idx: 1,
        ast_type,
        blocked_type: Some(blocked),
        name,
        lvb,
    }
}

/// A lock of ours granted in `mode`.
fn granted(o: &mut OwnLocks, cookie: u64, mode: LockMode) {
    o.begin_lock(cookie, mode, NONE);
    assert_eq!(o.lock_reply(cookie, DlmStatus::Normal), DlmStatus::Normal);
    let a = past(cookie, AstType::Ast, Nl, None);
    assert!(matches!(o.proxy_ast(&a).1, Some(Notice::Ast { .. })));
}

fn state(o: &OwnLocks, cookie: u64) -> (QueueKind, LockMode, Option<LockMode>, Option<PendingOp>) {
    let l = o.get(cookie).unwrap();
    (l.queue, l.mode, l.convert_type, l.pending)
}

#[test]
fn create_requests_and_their_replies() {
    let mut o = own("r");
    // VALBLK asks for the LVB on PR/EX and is dropped on NL.
    let m = o.begin_lock(1, Pr, LkmFlags::VALBLK | LkmFlags::NOQUEUE);
    assert_eq!(
        m.flags,
        LkmFlags::VALBLK | LkmFlags::NOQUEUE | LkmFlags::GET_LVB
    );
    assert_eq!((m.node_idx, m.requested_type, m.cookie), (2, Pr, 1));
    assert_eq!(
        state(&o, 1),
        (QueueKind::Blocked, Pr, None, Some(PendingOp::Lock))
    );
    assert_eq!(o.begin_lock(2, Nl, LkmFlags::VALBLK).flags, NONE);
    // A refusal forgets the request; success leaves it waiting for its AST.
    assert_eq!(o.lock_reply(1, DlmStatus::Notqueued), DlmStatus::Notqueued);
    assert!(o.get(1).is_none());
    o.lock_reply(2, DlmStatus::Normal);
    assert_eq!(state(&o, 2), (QueueKind::Blocked, Nl, None, None));
    // The AST may come before the reply.
    o.begin_lock(3, Ex, NONE);
    let a = past(3, AstType::Ast, Nl, None);
    assert_eq!(
        o.proxy_ast(&a),
        (
            DlmStatus::Normal,
            Some(Notice::Ast {
                cookie: 3,
                mode: Ex,
                lvb: None
            })
        )
    );
    o.lock_reply(3, DlmStatus::Normal);
    assert_eq!(state(&o, 3), (QueueKind::Granted, Ex, None, None));
    // A master that went away: the request is withdrawn so it can be sent again.
    o.begin_lock(4, Pr, NONE);
    o.lock_reply(4, DlmStatus::Recovering);
    assert!(o.get(4).is_none());
}

#[test]
fn recovery_lock_is_granted_by_the_reply() {
    let mut o = own("$RECOVERY");
    o.begin_lock(1, Ex, LkmFlags::NOQUEUE | LkmFlags::RECOVERY);
    o.lock_reply(1, DlmStatus::Normal);
    assert_eq!(state(&o, 1), (QueueKind::Granted, Ex, None, None));
}

#[test]
fn conversions() {
    let mut o = own("r");
    granted(&mut o, 1, Ex);
    // EX writes back with VALBLK; the LVB travels with PUT_LVB.
    let lvb = [7u8; 64];
    let m = o
        .begin_convert(1, Nl, LkmFlags::VALBLK, &lvb)
        .unwrap()
        .unwrap();
    assert_eq!(
        m.flags,
        LkmFlags::VALBLK | LkmFlags::CONVERT | LkmFlags::PUT_LVB
    );
    assert_eq!(m.lvb, Some(lvb));
    assert_eq!(
        state(&o, 1),
        (
            QueueKind::Converting,
            Ex,
            Some(Nl),
            Some(PendingOp::Convert)
        )
    );
    // Already converting.
    assert_eq!(o.begin_convert(1, Pr, NONE, &ZERO), Err(DlmStatus::Denied));
    o.convert_reply(1, DlmStatus::Normal);
    o.proxy_ast(&past(1, AstType::Ast, Nl, None));
    assert_eq!(state(&o, 1), (QueueKind::Granted, Nl, None, None));
    // NL->PR with VALBLK asks for the LVB; PR->NL with VALBLK sends nothing about it.
    let m = o
        .begin_convert(1, Pr, LkmFlags::VALBLK, &ZERO)
        .unwrap()
        .unwrap();
    assert_eq!(
        m.flags,
        LkmFlags::VALBLK | LkmFlags::CONVERT | LkmFlags::GET_LVB
    );
    assert_eq!(m.lvb, None);
    o.convert_reply(1, DlmStatus::Normal);
    assert_eq!(
        o.proxy_ast(&past(1, AstType::Ast, Nl, Some(lvb))).1,
        Some(Notice::Ast {
            cookie: 1,
            mode: Pr,
            lvb: Some(lvb)
        })
    );
    let m = o
        .begin_convert(1, Nl, LkmFlags::VALBLK, &ZERO)
        .unwrap()
        .unwrap();
    assert_eq!(m.flags, LkmFlags::CONVERT);
    // A refused conversion goes back to the granted queue in the old mode.
    assert_eq!(
        o.convert_reply(1, DlmStatus::Notqueued),
        DlmStatus::Notqueued
    );
    assert_eq!(state(&o, 1), (QueueKind::Granted, Pr, None, None));
    // Converting to the mode already held asks nobody.
    assert_eq!(o.begin_convert(1, Pr, NONE, &ZERO), Ok(None));
    assert_eq!(
        o.begin_convert(9, Pr, NONE, &ZERO),
        Err(DlmStatus::Ivlockid)
    );
    // A lock still waiting for its grant cannot convert.
    o.begin_lock(2, Ex, NONE);
    o.lock_reply(2, DlmStatus::Normal);
    assert_eq!(o.begin_convert(2, Nl, NONE, &ZERO), Err(DlmStatus::Denied));
}

#[test]
fn unlock_and_cancel() {
    let mut o = own("r");
    granted(&mut o, 1, Ex);
    let lvb = [9u8; 64];
    // EX unlock with VALBLK writes back.
    let m = o.begin_unlock(1, LkmFlags::VALBLK, &lvb).unwrap();
    assert_eq!(m.flags, LkmFlags::VALBLK | LkmFlags::PUT_LVB);
    assert_eq!(m.lvb, Some(lvb));
    assert_eq!(state(&o, 1).3, Some(PendingOp::Unlock));
    // A BAST for a lock being unlocked is ignored.
    assert_eq!(
        o.proxy_ast(&past(1, AstType::Bast, Pr, None)),
        (DlmStatus::Normal, None)
    );
    // The master was busy: nothing changes, the caller retries.
    assert_eq!(
        o.unlock_reply(1, DlmStatus::Forward),
        UnlockDone {
            status: DlmStatus::Forward,
            removed: false
        }
    );
    assert_eq!(state(&o, 1), (QueueKind::Granted, Ex, None, None));
    o.begin_unlock(1, NONE, &ZERO).unwrap();
    assert_eq!(
        o.unlock_reply(1, DlmStatus::Normal),
        UnlockDone {
            status: DlmStatus::Normal,
            removed: true
        }
    );
    assert!(o.is_empty());

    // PR unlock: VALBLK is dropped.
    granted(&mut o, 2, Pr);
    assert_eq!(
        o.begin_unlock(2, LkmFlags::VALBLK, &lvb).unwrap().flags,
        NONE
    );
    o.unlock_reply(2, DlmStatus::Normal);

    // Cancel of a granted lock is settled here; unlock of a waiting one is refused.
    granted(&mut o, 3, Pr);
    assert_eq!(
        o.begin_unlock(3, LkmFlags::CANCEL, &ZERO),
        Err(DlmStatus::Cancelgrant)
    );
    o.begin_lock(4, Ex, NONE);
    o.lock_reply(4, DlmStatus::Normal);
    assert_eq!(o.begin_unlock(4, NONE, &ZERO), Err(DlmStatus::Denied));
    // Cancel of the waiting request: VALBLK never goes with CANCEL.
    let m = o
        .begin_unlock(4, LkmFlags::CANCEL | LkmFlags::VALBLK, &lvb)
        .unwrap();
    assert_eq!((m.flags, m.lvb), (LkmFlags::CANCEL, None));
    assert!(o.unlock_reply(4, DlmStatus::Normal).removed);
    assert!(o.get(4).is_none());

    // Cancel of a conversion puts the lock back in its old mode.
    o.begin_convert(3, Ex, NONE, &ZERO).unwrap();
    o.convert_reply(3, DlmStatus::Normal);
    // A BAST reaches a converting lock.
    assert_eq!(
        o.proxy_ast(&past(3, AstType::Bast, Ex, None)).1,
        Some(Notice::Bast {
            cookie: 3,
            blocked: Ex
        })
    );
    o.begin_unlock(3, LkmFlags::CANCEL, &ZERO).unwrap();
    assert_eq!(
        o.unlock_reply(3, DlmStatus::Normal),
        UnlockDone {
            status: DlmStatus::Normal,
            removed: false
        }
    );
    assert_eq!(state(&o, 3), (QueueKind::Granted, Pr, None, None));
    // A cancel the master found too late: the lock stays for its AST.
    o.begin_convert(3, Ex, NONE, &ZERO).unwrap();
    o.convert_reply(3, DlmStatus::Normal);
    o.begin_unlock(3, LkmFlags::CANCEL, &ZERO).unwrap();
    assert_eq!(
        o.unlock_reply(3, DlmStatus::Cancelgrant),
        UnlockDone {
            status: DlmStatus::Cancelgrant,
            removed: false
        }
    );
    o.proxy_ast(&past(3, AstType::Ast, Nl, None));
    assert_eq!(state(&o, 3), (QueueKind::Granted, Ex, None, None));
}

#[test]
fn proxy_ast_edge_cases() {
    let mut o = own("r");
    granted(&mut o, 1, Pr);
    // Unknown lock: ignored.
    assert_eq!(
        o.proxy_ast(&past(42, AstType::Ast, Nl, None)),
        (DlmStatus::Normal, None)
    );
    // An AST for a lock that is already granted and not converting finds nothing to do.
    assert_eq!(
        o.proxy_ast(&past(1, AstType::Ast, Nl, None)),
        (DlmStatus::Normal, None)
    );
    // The kernel never sends DLM_ASTUNLOCK; it is refused like an unknown lock.
    assert_eq!(
        o.proxy_ast(&past(1, AstType::AstUnlock, Nl, None)).0,
        DlmStatus::Ivlockid
    );
    let mut both = past(1, AstType::Ast, Nl, None);
    both.flags = LkmFlags::GET_LVB | LkmFlags::PUT_LVB;
    assert_eq!(o.proxy_ast(&both).0, DlmStatus::Badargs);
}
