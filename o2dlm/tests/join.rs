//! The join protocol's decisions: the answers the kernel gave in the capture, then every rule
//! of the query-join handler, the reading of answers, and the region and node-table checks.

mod common;

use std::net::Ipv4Addr;

use common::{capture_stream, frames};
use o2dlm::join::*;
use o2dlm::wire::*;

const V13: ProtocolVersion = ProtocolVersion { major: 1, minor: 3 };
const V10: ProtocolVersion = ProtocolVersion { major: 1, minor: 0 };

fn member(map: &[u8]) -> JoinState {
    JoinState {
        state: DomainState::Joined,
        joining_node: None,
        domain_map: map.iter().copied().collect(),
        recovery_map: NodeMap::new(),
        recovery_active: false,
        dlm_proto: V13,
        fs_proto: V10,
    }
}

fn query(node: u8, map: &[u8]) -> QueryJoinRequest {
    QueryJoinRequest {
        node_idx: node,
        domain: DomainName::new(b"xdom").unwrap(),
        dlm_proto: V13,
        fs_proto: V10,
        node_map: map.iter().copied().collect(),
    }
}

fn nodes() -> Vec<NodeInfo> {
    (0..3)
        .map(|n| NodeInfo {
            nodenum: n,
            ipv4_port: 7777,
            ipv4_address: Ipv4Addr::new(10, 213, 0, n + 1),
        })
        .collect()
}

fn region() -> [u8; 32] {
    let mut r = [0u8; 32];
    r.copy_from_slice(b"B89F02201ADE4D25A2D9965BC19C0F5D");
    r
}

#[test]
fn answers_match_the_kernel_capture() {
    let from1 = frames(&capture_stream(1, 2));
    let from2 = frames(&capture_stream(2, 1));
    let msgs = |fr: &[common::Frame]| -> Vec<DlmMessage> {
        fr.iter()
            .filter(|f| f.magic == 0xfa55 && f.msg_type >= 510 && f.msg_type <= 520)
            .map(|f| DlmMessage::decode(f.msg_type, &f.payload).unwrap())
            .collect()
    };
    let status_of = |fr: &[common::Frame], t: MsgType| -> i32 {
        fr.iter()
            .find(|f| f.magic == 0xfa56 && f.msg_type == t.to_wire())
            .unwrap()
            .status
    };
    // Node 1 asked node 2 first; node 2 had no domain "xdom" yet.
    let DlmMessage::QueryJoin(q1) = &msgs(&from1)[0] else {
        panic!()
    };
    assert_eq!(
        answer_query_join(q1, true, None).to_status(),
        status_of(&from2, MsgType::QueryJoin)
    );
    // Then node 2 asked node 1, a member of {1}: accepted at dlm 1.3, fs 1.0.
    let from2_msgs = msgs(&from2);
    let DlmMessage::QueryJoin(q2) = &from2_msgs[0] else {
        panic!()
    };
    let mut node1 = member(&[1]);
    let a = answer_query_join(q2, true, Some(&node1));
    assert_eq!(a.to_status(), status_of(&from1, MsgType::QueryJoin));
    assert_eq!(
        read_query_join_reply(Ok(a.to_status())),
        Ok(JoinReply::Ok {
            dlm_minor: 3,
            fs_minor: 0
        })
    );
    node1.joining_node = Some(2);
    // Its node table and regions match node 1's.
    let DlmMessage::QueryNodeinfo(qn) = &from2_msgs[1] else {
        panic!()
    };
    assert_eq!(
        check_query_nodeinfo(Some(&node1), qn, &nodes()),
        status_of(&from1, MsgType::QueryNodeinfo)
    );
    let DlmMessage::QueryRegion(qr) = &from2_msgs[2] else {
        panic!()
    };
    assert_eq!(
        check_query_region(Some(&node1), qr, true, &[region()]),
        status_of(&from1, MsgType::QueryRegion)
    );
    assert_eq!(status_of(&from1, MsgType::QueryRegion), 0);
}

#[test]
fn query_join_rules_in_order() {
    let q = query(2, &[1, 2]);
    let code = |hb, d: Option<&JoinState>| answer_query_join(&q, hb, d).code;
    let m = member(&[1]);
    assert_eq!(
        code(false, Some(&m)),
        JoinCode::Disallow,
        "requester not heartbeating"
    );
    assert_eq!(code(true, None), JoinCode::OkNoMap, "no such domain");
    // A member the requester does not see yet.
    let m3 = member(&[1, 3]);
    assert_eq!(code(true, Some(&m3)), JoinCode::Disallow);
    // ...which wins even over leaving.
    let mut leaving3 = member(&[1, 3]);
    leaving3.state = DomainState::Leaving;
    assert_eq!(code(true, Some(&leaving3)), JoinCode::Disallow);
    let mut leaving = member(&[1]);
    leaving.state = DomainState::Leaving;
    assert_eq!(code(true, Some(&leaving)), JoinCode::OkNoMap);
    let mut fresh = member(&[]);
    fresh.state = DomainState::New;
    assert_eq!(
        code(true, Some(&fresh)),
        JoinCode::OkNoMap,
        "we have not started joining"
    );
    let mut us_joining = fresh.clone();
    us_joining.joining_node = Some(1);
    assert_eq!(
        code(true, Some(&us_joining)),
        JoinCode::Disallow,
        "parallel joins"
    );
    let mut other = member(&[1]);
    other.joining_node = Some(3);
    assert_eq!(code(true, Some(&other)), JoinCode::Disallow);
    let mut reco = member(&[1]);
    reco.recovery_active = true;
    assert_eq!(code(true, Some(&reco)), JoinCode::Disallow);
    let mut dead = member(&[1]);
    dead.recovery_map.insert(2);
    assert_eq!(code(true, Some(&dead)), JoinCode::Disallow);
    assert_eq!(
        code(true, Some(&member(&[1, 2]))),
        JoinCode::Disallow,
        "already a member"
    );
    assert_eq!(code(true, Some(&m)), JoinCode::Ok);
}

#[test]
fn protocol_negotiation() {
    let v = |major, minor| ProtocolVersion { major, minor };
    assert_eq!(protocol_compare(v(1, 3), v(1, 3)), Some(3));
    // A newer joiner speaks our older minor.
    assert_eq!(protocol_compare(v(1, 1), v(1, 3)), Some(1));
    // An older joiner cannot.
    assert_eq!(protocol_compare(v(1, 3), v(1, 2)), None);
    assert_eq!(protocol_compare(v(1, 3), v(2, 3)), None);
    let mut q = query(2, &[1, 2]);
    let mut m = member(&[1]);
    m.dlm_proto = v(1, 1);
    let a = answer_query_join(&q, true, Some(&m));
    assert_eq!((a.code, a.dlm_minor, a.fs_minor), (JoinCode::Ok, 1, 0));
    q.fs_proto = v(2, 0);
    assert_eq!(
        answer_query_join(&q, true, Some(&m)).code,
        JoinCode::ProtocolMismatch
    );
}

#[test]
fn reading_answers() {
    let packed = |code: JoinCode, d, f| {
        QueryJoinResponse {
            code,
            dlm_minor: d,
            fs_minor: f,
        }
        .to_status()
    };
    assert_eq!(
        read_query_join_reply(Ok(packed(JoinCode::Disallow, 0, 0))),
        Ok(JoinReply::Disallow)
    );
    assert_eq!(
        read_query_join_reply(Ok(packed(JoinCode::OkNoMap, 0, 0))),
        Ok(JoinReply::OkNoMap)
    );
    assert_eq!(
        read_query_join_reply(Ok(packed(JoinCode::ProtocolMismatch, 0, 0))),
        Err(-71)
    );
    assert_eq!(read_query_join_reply(Ok(0x0900_0000)), Err(errno::EINVAL));
    // No DLM on that node: a yes outside the domain (the kernel fixture's first run).
    assert_eq!(
        read_query_join_reply(Err(errno::ENOPROTOOPT)),
        Ok(JoinReply::OkNoMap)
    );
    assert_eq!(
        read_query_join_reply(Err(errno::EHOSTDOWN)),
        Err(errno::EHOSTDOWN)
    );
}

#[test]
fn region_and_node_checks() {
    let mut d = member(&[1]);
    d.joining_node = Some(2);
    let dom = DomainName::new(b"xdom").unwrap();
    let qr = |regions: Vec<[u8; 32]>| QueryRegion {
        node: 2,
        domain: dom,
        regions,
    };
    let other = [b'Z'; 32];
    assert_eq!(
        check_query_region(Some(&d), &qr(vec![region()]), true, &[region()]),
        0
    );
    assert_eq!(
        check_query_region(Some(&d), &qr(vec![region(), other]), true, &[region()]),
        errno::EINVAL
    );
    assert_eq!(
        check_query_region(Some(&d), &qr(vec![region()]), true, &[region(), other]),
        errno::EINVAL
    );
    assert_eq!(
        check_query_region(Some(&d), &qr(vec![]), true, &[region()]),
        errno::EINVAL
    );
    // Local heartbeat: neither side may name regions.
    assert_eq!(check_query_region(Some(&d), &qr(vec![]), false, &[]), 0);
    assert_eq!(
        check_query_region(Some(&d), &qr(vec![region()]), false, &[]),
        errno::EINVAL
    );
    // Only the node whose join we accepted, and only from dlm protocol 1.1 on.
    assert_eq!(
        check_query_region(None, &qr(vec![region()]), true, &[region()]),
        errno::EINVAL
    );
    let mut not_joining = d.clone();
    not_joining.joining_node = Some(3);
    assert_eq!(
        check_query_region(Some(&not_joining), &qr(vec![region()]), true, &[region()]),
        errno::EINVAL
    );
    let mut old = d.clone();
    old.dlm_proto = V10;
    assert_eq!(
        check_query_region(Some(&old), &qr(vec![region()]), true, &[region()]),
        errno::EINVAL
    );

    let qn = |nodes: Vec<NodeInfo>| QueryNodeinfo {
        nodenum: 2,
        domain: dom,
        nodes,
    };
    assert_eq!(check_query_nodeinfo(Some(&d), &qn(nodes()), &nodes()), 0);
    let mut moved = nodes();
    moved[1].ipv4_port = 7778;
    assert_eq!(
        check_query_nodeinfo(Some(&d), &qn(moved), &nodes()),
        errno::EINVAL
    );
    assert_eq!(
        check_query_nodeinfo(Some(&d), &qn(nodes()[..2].to_vec()), &nodes()),
        errno::EINVAL
    );
    assert_eq!(
        check_query_nodeinfo(Some(&old), &qn(nodes()), &nodes()),
        errno::EINVAL
    );
}
