//! Behaviour against the kernel: node 1 of the kernel-to-kernel capture mastered "xlock" and
//! served node 2's lock requests. Feeding node 2's captured requests into our master engine
//! must give the kernel's replies, and our proxy ASTs and migration message must be the bytes
//! node 1 sent.
//!
//! Node 1's own lock never crossed the wire; its operations are the ones its messages imply:
//! it held EX (NOQUEUE requests failed), wrote "from-A" and dropped to NL (node 2's PR was
//! then granted with that LVB), asked for PR again (node 2 got a BAST for PR), got it once node
//! 2 wrote "from-B" back, and unlocked before leaving the domain (migration sent only node 2's
//! lock).

mod common;

use common::{capture_stream, frames, Frame};
use o2dlm::lockres::{Delivery, LockId, LockResource, Requested};
use o2dlm::wire::*;

fn lvb(text: &str) -> Lvb {
    let mut l = [0u8; LVB_LEN];
    l[..text.len()].copy_from_slice(text.as_bytes());
    l
}

fn status<T>(r: Result<T, DlmStatus>) -> i32 {
    r.map_or_else(DlmStatus::to_wire, |_| DlmStatus::Normal.to_wire())
}

/// The master of "xlock" on node 1: the engine plus what it hands out.
struct Master {
    res: LockResource,
    /// Proxy ASTs sent to node 2, encoded.
    sent: Vec<Vec<u8>>,
    /// Deliveries to node 1's own lock.
    local: Vec<Delivery>,
}

impl Master {
    fn settle(&mut self) {
        let mut out = Vec::new();
        self.res.shuffle();
        self.res.flush(&mut out);
        for d in out {
            if d.lock().node == 1 {
                self.local.push(d);
            } else {
                let msg = DlmMessage::ProxyAst(d.to_proxy_ast(1, *self.res.name()));
                self.sent.push(msg.to_vec());
            }
        }
    }

    /// The master's handler for a lock message from node 2; returns the reply status.
    fn handle(&mut self, msg: &DlmMessage) -> i32 {
        let s = match msg {
            DlmMessage::CreateLock(c) => status(self.res.request(
                LockId {
                    node: c.node_idx,
                    cookie: c.cookie,
                },
                c.requested_type,
                c.flags,
            )),
            DlmMessage::ConvertLock(c) => status(self.res.convert(
                LockId {
                    node: c.node_idx,
                    cookie: c.cookie,
                },
                c.requested_type,
                c.flags,
                c.lvb.as_ref(),
            )),
            other => panic!("not a lock request: {other:?}"),
        };
        self.settle();
        s
    }
}

fn requests_of(frames: &[Frame], types: &[MsgType]) -> Vec<(DlmMessage, Vec<u8>)> {
    frames
        .iter()
        .filter(|f| f.magic == 0xfa55)
        .filter(|f| types.iter().any(|t| t.to_wire() == f.msg_type))
        .map(|f| {
            (
                DlmMessage::decode(f.msg_type, &f.payload).unwrap(),
                f.payload.clone(),
            )
        })
        .collect()
}

#[test]
fn master_engine_answers_node_2_as_the_kernel_did() {
    let from2 = frames(&capture_stream(2, 1));
    let from1 = frames(&capture_stream(1, 2));
    let lock_msgs = [MsgType::CreateLock, MsgType::ConvertLock];
    let requests = requests_of(&from2, &lock_msgs);
    let kernel_replies: Vec<i32> = from1
        .iter()
        .filter(|f| f.magic == 0xfa56 && lock_msgs.iter().any(|t| t.to_wire() == f.msg_type))
        .map(|f| f.status)
        .collect();
    let kernel_asts: Vec<Vec<u8>> = requests_of(&from1, &[MsgType::ProxyAst])
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    let kernel_mig = requests_of(&from1, &[MsgType::MigLockres]);
    assert_eq!(
        (requests.len(), kernel_replies.len(), kernel_asts.len()),
        (5, 5, 4)
    );

    let xlock = LockName::new(b"xlock").unwrap();
    let mut m = Master {
        res: LockResource::new(xlock),
        sent: Vec::new(),
        local: Vec::new(),
    };
    let mine = LockId {
        node: 1,
        cookie: (1 << 56) | 1,
    };
    let mut replies = Vec::new();

    // Node 1 holds EX; node 2 tries PR and EX with NOQUEUE, then waits for PR.
    assert_eq!(
        m.res.request(mine, LockMode::Ex, LkmFlags::VALBLK),
        Ok(Requested::Granted)
    );
    m.settle();
    for (msg, _) in &requests[..3] {
        replies.push(m.handle(msg));
    }
    assert!(m.sent.is_empty(), "nothing granted to node 2 yet");
    // Node 1 writes back and drops to NL: node 2's PR is granted with "from-A".
    m.res
        .convert(mine, LockMode::Nl, LkmFlags::VALBLK, Some(&lvb("from-A")))
        .unwrap();
    m.settle();
    // Node 2 converts PR->EX: granted at once, the AST brings "from-A" again.
    replies.push(m.handle(&requests[3].0));
    // Node 1 wants PR: node 2 gets a BAST for PR.
    assert_eq!(
        m.res.convert(mine, LockMode::Pr, LkmFlags::VALBLK, None),
        Ok(Requested::Queued)
    );
    m.settle();
    // Node 2 writes "from-B" back and drops to PR; node 1's PR is granted.
    replies.push(m.handle(&requests[4].0));

    assert_eq!(replies, kernel_replies);
    assert_eq!(
        m.sent, kernel_asts,
        "proxy ASTs differ from the kernel's bytes"
    );
    assert_eq!(
        m.local,
        vec![
            Delivery::Ast {
                lock: mine,
                mode: LockMode::Ex,
                lvb: Some([0; LVB_LEN])
            },
            Delivery::Bast {
                lock: mine,
                blocked: LockMode::Pr
            },
            Delivery::Ast {
                lock: mine,
                mode: LockMode::Nl,
                lvb: None
            },
            Delivery::Ast {
                lock: mine,
                mode: LockMode::Pr,
                lvb: Some(lvb("from-B"))
            },
        ]
    );

    // Node 1 unlocks and leaves: the resource migrates to node 2 with node 2's lock only.
    m.res.unlock(mine, LkmFlags::empty(), None).unwrap();
    m.settle();
    let locks: Vec<MigratableLock> = m.res.migratable_locks().collect();
    let mig = DlmMessage::MigLockres(MigLockres {
        master: 1,
        flags: MRES_MIGRATION | MRES_ALL_DONE,
        total_locks: locks.len() as u32,
        mig_cookie: 0,
        name: xlock,
        lvb: *m.res.lvb(),
        locks,
    });
    assert_eq!(kernel_mig.len(), 1);
    assert_eq!(
        mig.to_vec(),
        kernel_mig[0].1,
        "migration differs from the kernel's bytes"
    );
}

/// Node 2 of the same capture used "xlock" mastered by node 1: our requester side, given the
/// same calls, must send node 2's bytes, and the replies and proxy ASTs node 1 sent must
/// produce the grants, value blocks and BAST a user of node 2 saw.
#[test]
fn requester_side_sends_node_2s_bytes_and_follows_node_1s_asts() {
    use o2dlm::secondary::{CookieSource, Notice, OwnLocks};

    let from2 = frames(&capture_stream(2, 1));
    let from1 = frames(&capture_stream(1, 2));
    let lock_msgs = [MsgType::CreateLock, MsgType::ConvertLock];
    let sent_by_kernel: Vec<Vec<u8>> = requests_of(&from2, &lock_msgs)
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    let replies: Vec<DlmStatus> = from1
        .iter()
        .filter(|f| f.magic == 0xfa56 && lock_msgs.iter().any(|t| t.to_wire() == f.msg_type))
        .map(|f| DlmStatus::from_wire(f.status).unwrap())
        .collect();
    let asts: Vec<ProxyAst> = requests_of(&from1, &[MsgType::ProxyAst])
        .into_iter()
        .map(|(m, _)| match m {
            DlmMessage::ProxyAst(p) => p,
            other => panic!("{other:?}"),
        })
        .collect();

    let xlock = LockName::new(b"xlock").unwrap();
    let mut cookies = CookieSource::new(2);
    let mut own = OwnLocks::new(2, xlock);
    let mut sent = Vec::new();
    let enc = |m: DlmMessage| m.to_vec();
    let zero = [0u8; LVB_LEN];

    // Trylocks PR and EX with VALBLK: both refused with NOTQUEUED and forgotten.
    for mode in [LockMode::Pr, LockMode::Ex] {
        let c = cookies.next_cookie();
        sent.push(enc(DlmMessage::CreateLock(own.begin_lock(
            c,
            mode,
            LkmFlags::VALBLK | LkmFlags::NOQUEUE,
        ))));
        assert_eq!(
            own.lock_reply(c, replies[sent.len() - 1]),
            DlmStatus::Notqueued
        );
        assert!(own.get(c).is_none());
    }
    // A waiting PR with VALBLK: queued, then granted by the first proxy AST with "from-A".
    let c = cookies.next_cookie();
    sent.push(enc(DlmMessage::CreateLock(own.begin_lock(
        c,
        LockMode::Pr,
        LkmFlags::VALBLK,
    ))));
    assert_eq!(own.lock_reply(c, replies[2]), DlmStatus::Normal);
    assert_eq!(own.get(c).unwrap().queue, QueueKind::Blocked);
    assert_eq!(
        own.proxy_ast(&asts[0]),
        (
            DlmStatus::Normal,
            Some(Notice::Ast {
                cookie: c,
                mode: LockMode::Pr,
                lvb: Some(lvb("from-A"))
            })
        )
    );
    // PR->EX with VALBLK: the master's AST arrives before its reply.
    let m = own
        .begin_convert(c, LockMode::Ex, LkmFlags::VALBLK, &zero)
        .unwrap()
        .unwrap();
    sent.push(enc(DlmMessage::ConvertLock(m)));
    assert_eq!(
        own.proxy_ast(&asts[1]),
        (
            DlmStatus::Normal,
            Some(Notice::Ast {
                cookie: c,
                mode: LockMode::Ex,
                lvb: Some(lvb("from-A"))
            })
        )
    );
    assert_eq!(own.convert_reply(c, replies[3]), DlmStatus::Normal);
    assert_eq!(own.get(c).unwrap().mode, LockMode::Ex);
    // Node 1 wants PR: a BAST; the user writes "from-B" and drops to PR.
    assert_eq!(
        own.proxy_ast(&asts[2]).1,
        Some(Notice::Bast {
            cookie: c,
            blocked: LockMode::Pr
        })
    );
    let m = own
        .begin_convert(c, LockMode::Pr, LkmFlags::VALBLK, &lvb("from-B"))
        .unwrap()
        .unwrap();
    sent.push(enc(DlmMessage::ConvertLock(m)));
    assert_eq!(own.convert_reply(c, replies[4]), DlmStatus::Normal);
    assert_eq!(
        own.proxy_ast(&asts[3]).1,
        Some(Notice::Ast {
            cookie: c,
            mode: LockMode::Pr,
            lvb: None
        })
    );

    assert_eq!(
        sent, sent_by_kernel,
        "our requests differ from node 2's bytes"
    );
    let l = own.get(c).unwrap();
    assert_eq!(
        (l.queue, l.mode, l.convert_type, l.pending),
        (QueueKind::Granted, LockMode::Pr, None, None)
    );
}
