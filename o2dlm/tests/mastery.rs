//! Mastery handlers: the answers both kernels gave in the capture's mastery race, then the
//! rules of the master-request and assert-master handlers one by one.

mod common;

use common::{capture_stream, frames, Frame};
use o2dlm::mastery::*;
use o2dlm::wire::*;

fn xlock() -> LockName {
    LockName::new(b"xlock").unwrap()
}

fn map(nodes: &[u8]) -> NodeMap {
    nodes.iter().copied().collect()
}

fn requests(fr: &[Frame], t: MsgType) -> Vec<DlmMessage> {
    fr.iter()
        .filter(|f| f.magic == 0xfa55 && f.msg_type == t.to_wire())
        .map(|f| DlmMessage::decode(f.msg_type, &f.payload).unwrap())
        .collect()
}

fn replies(fr: &[Frame], t: MsgType) -> Vec<i32> {
    fr.iter()
        .filter(|f| f.magic == 0xfa56 && f.msg_type == t.to_wire())
        .map(|f| f.status)
        .collect()
}

fn res(owner: Option<u8>, in_progress: bool) -> ResourceMastery {
    ResourceMastery {
        owner,
        recovering: false,
        migrating: false,
        in_progress,
    }
}

#[test]
fn the_captured_mastery_race() {
    let from1 = frames(&capture_stream(1, 2));
    let from2 = frames(&capture_stream(2, 1));
    let domain = map(&[1, 2]);
    let req1 = requests(&from1, MsgType::MasterRequest);
    let asserts1 = requests(&from1, MsgType::AssertMaster);
    let req2 = requests(&from2, MsgType::MasterRequest);
    let (
        DlmMessage::MasterRequest(r1),
        [DlmMessage::AssertMaster(a0), DlmMessage::AssertMaster(a1), DlmMessage::AssertMaster(a2)],
    ) = (&req1[0], &asserts1[..3])
    else {
        panic!("capture shape")
    };
    let node2_replies_500 = replies(&from2, MsgType::MasterRequest);
    let node2_replies_502 = replies(&from2, MsgType::AssertMaster);
    let node1_replies_500 = replies(&from1, MsgType::MasterRequest);

    // Node 2, with neither the resource nor an entry, answers node 1's request NO and starts
    // waiting in a BLOCK entry.
    let a = answer_master_request(2, true, &domain, r1.node_idx, xlock(), None, None).unwrap();
    assert_eq!(a.response as i32, node2_replies_500[0]);
    let block = a.new_mle.unwrap();
    assert_eq!((block.kind, block.maybe), (MleKind::Block, map(&[1])));
    // Node 1 asserts (no flags): node 2's entry is done; it has no resource, so no reference.
    let a = answer_assert_master(2, a0, None, Some(&block)).unwrap();
    assert!(a.finish_mle);
    assert_eq!(a.reply, node2_replies_502[0]);

    // Later node 2 masters "xlock" itself and asks node 1, which owns it: YES, take node 2
    // into the refmap, and assert to clean up.
    for r in &req2 {
        let DlmMessage::MasterRequest(r) = r else {
            panic!()
        };
        let a = answer_master_request(
            1,
            true,
            &domain,
            r.node_idx,
            xlock(),
            Some(&res(Some(1), false)),
            None,
        )
        .unwrap();
        assert_eq!(a.response as i32, node1_replies_500[0]);
        assert!(a.set_refmap && a.dispatch_assert && a.new_mle.is_none());
    }
    assert_eq!(node1_replies_500, vec![1, 1]);
    // Node 1's cleanup assert beat its YES reply: node 2's MASTER entry and in-progress
    // resource take owner 1, and node 2 tells node 1 it holds a reference.
    let mut mine = Mle::new(MleKind::Master, xlock(), 2, &domain);
    mine.maybe.insert(2);
    let a = answer_assert_master(2, a1, Some(&res(None, true)), Some(&mine)).unwrap();
    assert_eq!(
        (a.set_owner, a.finish_mle, a.setref_inprog),
        (Some(1), true, true)
    );
    assert_eq!(a.reply, node2_replies_502[1]);
    assert_eq!(a.reply, ASSERT_RESPONSE_MASTERY_REF);
    // Node 2 asked again once it knew the owner; the second cleanup assert finds no entry.
    let a = answer_assert_master(2, a2, Some(&res(Some(1), false)), None).unwrap();
    assert_eq!(
        (a.reply, a.set_owner, a.finish_mle),
        (node2_replies_502[2], None, false)
    );
}

#[test]
fn master_request_rules() {
    let domain = map(&[1, 2, 3]);
    let ask = |res: Option<&ResourceMastery>, mle: Option<&mut Mle>| {
        answer_master_request(1, true, &domain, 3, xlock(), res, mle)
    };
    assert_eq!(
        answer_master_request(1, false, &domain, 3, xlock(), None, None)
            .unwrap()
            .response,
        MasterResponse::No,
        "domain not joined"
    );
    let mut busy = res(None, true);
    busy.recovering = true;
    assert_eq!(
        ask(Some(&busy), None).unwrap().response,
        MasterResponse::Error
    );
    busy = res(Some(2), false);
    busy.migrating = true;
    assert_eq!(
        ask(Some(&busy), None).unwrap().response,
        MasterResponse::Error
    );
    let a = ask(Some(&res(Some(2), false)), None).unwrap();
    assert_eq!(
        (a.response, a.set_refmap, a.dispatch_assert),
        (MasterResponse::No, false, false)
    );

    // We are mastering it ourselves, undecided: MAYBE, and the requester is a contender.
    let mut m = Mle::new(MleKind::Master, xlock(), 1, &domain);
    assert_eq!((m.vote, m.node), (map(&[2, 3]), map(&[2, 3])));
    assert_eq!(
        ask(Some(&res(None, true)), Some(&mut m)).unwrap().response,
        MasterResponse::Maybe
    );
    assert!(m.maybe.contains(3));
    // Decided for us: YES; decided for another: NO; neither adds to maybe.
    let mut won = Mle::new(MleKind::Master, xlock(), 1, &domain);
    won.master = Some(1);
    let a = ask(Some(&res(None, true)), Some(&mut won)).unwrap();
    assert_eq!(
        (a.response, a.set_refmap, a.dispatch_assert),
        (MasterResponse::Yes, true, true)
    );
    assert!(won.maybe.is_empty());
    let mut lost = Mle::new(MleKind::Master, xlock(), 1, &domain);
    lost.master = Some(2);
    assert_eq!(
        ask(Some(&res(None, true)), Some(&mut lost))
            .unwrap()
            .response,
        MasterResponse::No
    );
    // Waiting for someone else's assert, or a migration elsewhere: NO.
    let mut block = Mle::new(MleKind::Block, xlock(), 1, &domain);
    assert_eq!(
        ask(Some(&res(None, true)), Some(&mut block))
            .unwrap()
            .response,
        MasterResponse::No
    );
    assert!(block.maybe.contains(3));
    let mut mig = Mle::new(MleKind::Migration, xlock(), 1, &domain);
    mig.master = Some(2);
    assert_eq!(
        ask(Some(&res(None, true)), Some(&mut mig))
            .unwrap()
            .response,
        MasterResponse::No
    );
    // No resource: an existing entry answers by its kind.
    let mut m = Mle::new(MleKind::Master, xlock(), 1, &domain);
    assert_eq!(
        ask(None, Some(&mut m)).unwrap().response,
        MasterResponse::Maybe
    );
    let mut b = Mle::new(MleKind::Block, xlock(), 1, &domain);
    assert_eq!(
        ask(None, Some(&mut b)).unwrap().response,
        MasterResponse::No
    );
    // States the kernel crashes on.
    assert!(ask(Some(&res(None, false)), None).is_err());
    assert!(ask(Some(&res(None, true)), None).is_err());
    let mut ours = Mle::new(MleKind::Block, xlock(), 1, &domain);
    ours.master = Some(1);
    let e = ask(None, Some(&mut ours)).unwrap_err();
    assert!(e.to_string().contains("lock resource xlock"), "{e}");
}

#[test]
fn assert_master_rules() {
    let domain = map(&[1, 2, 3]);
    let assert_from = |node, flags| AssertMaster {
        node_idx: node,
        flags,
        name: xlock(),
    };
    let kill = -22;
    // A recovering resource, a different known owner, or a resource not being mastered: the
    // asserting node is told to die.
    let mut reco = res(None, true);
    reco.recovering = true;
    let m = Mle::new(MleKind::Master, xlock(), 1, &domain);
    assert_eq!(
        answer_assert_master(1, &assert_from(2, 0), Some(&reco), Some(&m))
            .unwrap()
            .reply,
        kill
    );
    assert_eq!(
        answer_assert_master(1, &assert_from(2, 0), Some(&res(Some(3), false)), Some(&m))
            .unwrap()
            .reply,
        kill
    );
    assert_eq!(
        answer_assert_master(1, &assert_from(2, 0), Some(&res(None, false)), Some(&m))
            .unwrap()
            .reply,
        kill
    );
    // The known owner re-asserting is fine.
    let a =
        answer_assert_master(1, &assert_from(2, 0), Some(&res(Some(2), false)), Some(&m)).unwrap();
    assert_eq!(
        (a.reply, a.set_owner),
        (ASSERT_RESPONSE_MASTERY_REF, Some(2))
    );
    // Without an entry, another owner is impossible.
    assert!(answer_assert_master(1, &assert_from(2, 0), Some(&res(Some(3), false)), None).is_err());
    // We had asked node 3 too: the new master must assert again to everyone.
    let mut asked = Mle::new(MleKind::Master, xlock(), 1, &domain);
    asked.response = map(&[2, 3]);
    let a =
        answer_assert_master(1, &assert_from(2, 0), Some(&res(None, true)), Some(&asked)).unwrap();
    assert_eq!(
        a.reply,
        ASSERT_RESPONSE_REASSERT | ASSERT_RESPONSE_MASTERY_REF
    );
    // Without a resource there is no reference to report.
    let a = answer_assert_master(1, &assert_from(2, 0), None, Some(&asked)).unwrap();
    assert_eq!(
        (a.reply, a.set_owner, a.setref_inprog),
        (ASSERT_RESPONSE_REASSERT, None, false)
    );

    // Migration: only the new master's FINISH_MIGRATION assert ends it.
    let mut mig = Mle::new(MleKind::Migration, xlock(), 1, &domain);
    mig.master = Some(3);
    mig.new_master = Some(2);
    let migrating = ResourceMastery {
        migrating: true,
        ..res(Some(3), false)
    };
    assert_eq!(
        answer_assert_master(1, &assert_from(2, 0), Some(&migrating), Some(&mig)).unwrap(),
        AssertAnswer::default()
    );
    assert_eq!(
        answer_assert_master(
            1,
            &assert_from(3, ASSERT_MASTER_FINISH_MIGRATION),
            Some(&migrating),
            Some(&mig)
        )
        .unwrap()
        .reply,
        kill
    );
    let a = answer_assert_master(
        1,
        &assert_from(2, ASSERT_MASTER_FINISH_MIGRATION),
        Some(&migrating),
        Some(&mig),
    )
    .unwrap();
    assert_eq!(
        (a.set_owner, a.clear_migrating, a.finish_mle, a.reply),
        (Some(2), true, true, ASSERT_RESPONSE_MASTERY_REF)
    );
}
