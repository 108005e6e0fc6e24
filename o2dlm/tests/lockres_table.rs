//! Exhaustive table tests of the lock-resource engine: mode compatibility, new-lock grants,
//! and every conversion outcome, checked against the compatibility matrix written out from
//! docs/o2dlm.md §2 (not computed by the code under test).

mod engine;

use engine::{ast, bast, id, res, settle};
use o2dlm::lockres::Requested;
use o2dlm::wire::{DlmStatus, LkmFlags, LockMode, QueueKind};

use LockMode::{Ex, Nl, Pr};

/// `dlm_lock_compatible(existing, request)` as the table of docs/o2dlm.md shows it, rows = existing.
fn spec_compatible(existing: LockMode, request: LockMode) -> bool {
    const TABLE: [[bool; 3]; 3] = [
        // request: NL    PR     EX
        [true, true, true],   // existing NL
        [true, true, false],  // existing PR
        [true, false, false], // existing EX
    ];
    let i = |m: LockMode| match m {
        Nl => 0,
        Pr => 1,
        Ex => 2,
    };
    TABLE[i(existing)][i(request)]
}

fn noqueue(nq: bool) -> LkmFlags {
    if nq {
        LkmFlags::NOQUEUE
    } else {
        LkmFlags::empty()
    }
}

/// What a new lock or a conversion returns: granted when it can be at once (`immediate`),
/// else refused under NOQUEUE (`nq`) or queued.
fn outcome(immediate: bool, nq: bool) -> Result<Requested, DlmStatus> {
    if immediate {
        Ok(Requested::Granted)
    } else if nq {
        Err(DlmStatus::Notqueued)
    } else {
        Ok(Requested::Queued)
    }
}

#[test]
fn compatibility_matrix_is_the_kernels() {
    for e in LockMode::ALL {
        for q in LockMode::ALL {
            assert_eq!(
                LockMode::compatible(e, q),
                spec_compatible(e, q),
                "existing {e} request {q}"
            );
        }
    }
    // The wire values of the modes.
    assert_eq!(
        LockMode::ALL.map(LockMode::to_wire),
        [0, 3, 5],
        "NL, PR, EX wire values"
    );
    for unsupported in [1i8, 2, 4, 6, -2] {
        assert_eq!(LockMode::from_wire(unsupported), Err(unsupported));
    }
    assert_eq!(LockMode::from_wire(-1), Ok(None));
}

#[test]
fn new_lock_against_each_granted_mode() {
    for held in LockMode::ALL {
        for want in LockMode::ALL {
            for nq in [false, true] {
                let ctx = format!("held {held}, request {want}, noqueue {nq}");
                let mut r = res("table");
                r.request(id(1), held, LkmFlags::empty()).unwrap();
                settle(&mut r);
                let got = r.request(id(2), want, noqueue(nq));
                let expect = outcome(spec_compatible(held, want), nq);
                assert_eq!(got, expect, "{ctx}");
                let d = settle(&mut r);
                match expect {
                    Ok(Requested::Granted) => {
                        assert_eq!(d, vec![ast(2, want)], "{ctx}");
                    }
                    Ok(Requested::Queued) => {
                        // The holder is told which mode it blocks; the request waits.
                        assert_eq!(d, vec![bast(1, want)], "{ctx}");
                        assert_eq!(r.find(id(2)).unwrap().0, QueueKind::Blocked, "{ctx}");
                        // Releasing the holder grants the request.
                        r.unlock(id(1), LkmFlags::empty(), None).unwrap();
                        assert_eq!(settle(&mut r), vec![ast(2, want)], "{ctx}");
                    }
                    // NOQUEUE failures leave no trace and tell nobody.
                    Err(_) => {
                        assert!(d.is_empty(), "{ctx}");
                        assert!(r.find(id(2)).is_none(), "{ctx}");
                    }
                }
            }
        }
    }
}

#[test]
fn new_lock_against_a_pending_conversion() {
    // Node 1 holds `a`; node 2 holds `b` and waits to convert to `c`; node 3 asks for `want`.
    // A newcomer must be compatible with node 2's current and target modes too.
    let mut cases = 0;
    for a in LockMode::ALL {
        for b in LockMode::ALL {
            for c in LockMode::ALL {
                if !(spec_compatible(a, b) && c > b && !spec_compatible(a, c)) {
                    continue;
                }
                for want in LockMode::ALL {
                    let ctx = format!("held {a}, converting {b}->{c}, request {want}");
                    let mut r = res("table");
                    r.request(id(1), a, LkmFlags::empty()).unwrap();
                    r.request(id(2), b, LkmFlags::empty()).unwrap();
                    settle(&mut r);
                    assert_eq!(
                        r.convert(id(2), c, LkmFlags::empty(), None),
                        Ok(Requested::Queued),
                        "{ctx}"
                    );
                    settle(&mut r);
                    let grant = spec_compatible(a, want)
                        && spec_compatible(b, want)
                        && spec_compatible(c, want);
                    assert_eq!(
                        r.request(id(3), want, LkmFlags::NOQUEUE),
                        outcome(grant, true),
                        "{ctx}"
                    );
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(
        cases, 12,
        "(NL,PR->EX), (PR,NL->EX), (PR,PR->EX), (EX,NL->PR/EX)... each x3"
    );
}

#[test]
fn every_conversion_outcome() {
    // Our lock (node 2) holds `from` and converts to `to`; another holder (node 1) holds
    // `other` (or nothing).
    for other in [None, Some(Nl), Some(Pr), Some(Ex)] {
        for from in LockMode::ALL {
            if other.is_some_and(|o| !spec_compatible(o, from)) {
                continue;
            }
            for to in LockMode::ALL {
                for nq in [false, true] {
                    let ctx = format!("other {other:?}, {from}->{to}, noqueue {nq}");
                    let mut r = res("table");
                    if let Some(o) = other {
                        r.request(id(1), o, LkmFlags::empty()).unwrap();
                    }
                    r.request(id(2), from, LkmFlags::empty()).unwrap();
                    settle(&mut r);
                    let got = r.convert(id(2), to, noqueue(nq), None);
                    let immediate = to <= from || other.is_none_or(|o| spec_compatible(o, to));
                    let expect = outcome(immediate, nq);
                    assert_eq!(got, expect, "{ctx}");
                    let d = settle(&mut r);
                    match expect {
                        Ok(Requested::Granted) => {
                            assert_eq!(d, vec![ast(2, to)], "{ctx}");
                            let (q, l) = r.find(id(2)).unwrap();
                            assert_eq!((q, l.mode, l.convert_type), (QueueKind::Granted, to, None));
                            // Granted conversions move to the tail of the granted queue.
                            assert_eq!(r.queue(QueueKind::Granted).last().unwrap().id, id(2));
                        }
                        Ok(Requested::Queued) => {
                            let o = other.unwrap();
                            assert_eq!(d, vec![bast(1, to)], "{ctx}");
                            let (q, l) = r.find(id(2)).unwrap();
                            assert_eq!(
                                (q, l.mode, l.convert_type),
                                (QueueKind::Converting, from, Some(to)),
                                "{ctx}"
                            );
                            // The holder down-converting to something compatible lets it
                            // through: the holder's AST first, then ours from the shuffle.
                            let down = if spec_compatible(Nl, to) { Nl } else { o };
                            r.convert(id(1), down, LkmFlags::empty(), None).unwrap();
                            assert_eq!(settle(&mut r), vec![ast(1, down), ast(2, to),], "{ctx}");
                        }
                        Err(_) => {
                            assert!(d.is_empty(), "{ctx}");
                            let (q, l) = r.find(id(2)).unwrap();
                            assert_eq!(
                                (q, l.mode, l.convert_type),
                                (QueueKind::Granted, from, None)
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn conversion_preconditions() {
    let mut r = res("table");
    r.request(id(1), Ex, LkmFlags::empty()).unwrap();
    r.request(id(2), Pr, LkmFlags::empty()).unwrap();
    settle(&mut r);
    // Only granted locks convert; unknown locks are reported as such.
    assert_eq!(
        r.convert(id(2), Ex, LkmFlags::empty(), None),
        Err(DlmStatus::Denied)
    );
    assert_eq!(
        r.convert(id(9), Ex, LkmFlags::empty(), None),
        Err(DlmStatus::Ivlockid)
    );
    // An EX holder writing its LVB back must supply it; PUT and GET together are refused.
    assert_eq!(
        r.convert(id(1), Pr, LkmFlags::VALBLK, None),
        Err(DlmStatus::Badargs)
    );
    assert_eq!(
        r.convert(
            id(1),
            Pr,
            LkmFlags::PUT_LVB | LkmFlags::GET_LVB,
            Some(&[0; 64])
        ),
        Err(DlmStatus::Badargs)
    );
    // A lock waiting to convert cannot convert again.
    let mut r = res("table");
    r.request(id(1), Pr, LkmFlags::empty()).unwrap();
    r.request(id(2), Pr, LkmFlags::empty()).unwrap();
    settle(&mut r);
    assert_eq!(
        r.convert(id(2), Ex, LkmFlags::empty(), None),
        Ok(Requested::Queued)
    );
    assert_eq!(
        r.convert(id(2), Nl, LkmFlags::empty(), None),
        Err(DlmStatus::Denied)
    );
}
