//! The decisions of the domain join protocol (`dlmdomain.c`): how a domain member answers
//! `DLM_QUERY_JOIN_MSG`, `DLM_QUERY_REGION` and `DLM_QUERY_NODEINFO`, how the joining node
//! reads the answers, and the locking-protocol negotiation. Pure functions over a snapshot of
//! the domain; the domain applies their results (e.g. records the joining node).

use crate::wire::{
    errno, JoinCode, NodeInfo, NodeMap, ProtocolVersion, QueryJoinRequest, QueryJoinResponse,
    QueryNodeinfo, QueryRegion, MAX_REGIONS, REGION_NAME_LEN,
};

/// `dlm_state` of a domain on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainState {
    /// Created, join not finished (`DLM_CTXT_NEW`).
    New,
    /// A full member (`DLM_CTXT_JOINED`).
    Joined,
    /// Leaving: migrating its resources away (`DLM_CTXT_IN_SHUTDOWN`).
    InShutdown,
    /// Telling the others it has left (`DLM_CTXT_LEAVING`).
    Leaving,
}

/// What the join handlers consult about a local domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinState {
    pub state: DomainState,
    /// The node whose join this node has accepted and not yet seen finish or cancel.
    pub joining_node: Option<u8>,
    pub domain_map: NodeMap,
    pub recovery_map: NodeMap,
    /// A recovery is running (`DLM_RECO_STATE_ACTIVE`).
    pub recovery_active: bool,
    /// The negotiated dlm locking protocol.
    pub dlm_proto: ProtocolVersion,
    /// The negotiated fs locking protocol.
    pub fs_proto: ProtocolVersion,
}

/// `dlm_protocol_compare`: the requester can join if the majors are equal and our minor is
/// not above its; the result is the minor both then speak (ours).
pub fn protocol_compare(existing: ProtocolVersion, request: ProtocolVersion) -> Option<u8> {
    (existing.major == request.major && existing.minor <= request.minor).then_some(existing.minor)
}

/// The answer of `dlm_query_join_handler`. `requester_heartbeating` is whether heartbeat sees
/// the requester live here; `domain` is our copy of the requested domain, if we have one.
/// On [`JoinCode::Ok`] the caller records the requester as the domain's joining node.
pub fn answer_query_join(
    req: &QueryJoinRequest,
    requester_heartbeating: bool,
    domain: Option<&JoinState>,
) -> QueryJoinResponse {
    let answer = |code| QueryJoinResponse {
        code,
        dlm_minor: 0,
        fs_minor: 0,
    };
    if !requester_heartbeating {
        return answer(JoinCode::Disallow);
    }
    let Some(d) = domain else {
        return answer(JoinCode::OkNoMap);
    };
    // A requester that does not see every member yet must come back later.
    if d.domain_map.iter().any(|n| !req.node_map.contains(n)) {
        return answer(JoinCode::Disallow);
    }
    if d.state == DomainState::Leaving {
        return answer(JoinCode::OkNoMap);
    }
    let n = req.node_idx;
    if d.state == DomainState::New && d.joining_node.is_none() {
        // We have not started our own join: the other node won the race.
        return answer(JoinCode::OkNoMap);
    }
    if d.joining_node.is_some()
        || d.recovery_active
        || d.recovery_map.contains(n)
        || d.domain_map.contains(n)
    {
        return answer(JoinCode::Disallow);
    }
    match (
        protocol_compare(d.dlm_proto, req.dlm_proto),
        protocol_compare(d.fs_proto, req.fs_proto),
    ) {
        (Some(dlm_minor), Some(fs_minor)) => QueryJoinResponse {
            code: JoinCode::Ok,
            dlm_minor,
            fs_minor,
        },
        _ => answer(JoinCode::ProtocolMismatch),
    }
}

/// How the joining node reads one member's answer (`dlm_request_join`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinReply {
    /// The node accepts us into its domain; adopt its minors.
    Ok { dlm_minor: u8, fs_minor: u8 },
    /// The node has no such domain (or no DLM at all): count it as a yes outside the domain.
    OkNoMap,
    /// Try again later.
    Disallow,
}

/// Reads the result of sending `DLM_QUERY_JOIN_MSG`: `Ok(status)` is the reply status,
/// `Err(errno)` a failed send (negative errno). A node without the handler
/// (`-ENOPROTOOPT`) has no DLM running: a yes without the domain. Errors: `-EPROTO` on a
/// protocol mismatch, `-EINVAL` on an unknown answer, and the send error itself.
pub fn read_query_join_reply(result: Result<i32, i32>) -> Result<JoinReply, i32> {
    let status = match result {
        Err(errno::ENOPROTOOPT) => return Ok(JoinReply::OkNoMap),
        Err(e) => return Err(e),
        Ok(s) => s,
    };
    const EPROTO: i32 = -71;
    match QueryJoinResponse::from_status(status) {
        Ok(r) => match r.code {
            JoinCode::Ok => Ok(JoinReply::Ok {
                dlm_minor: r.dlm_minor,
                fs_minor: r.fs_minor,
            }),
            JoinCode::OkNoMap => Ok(JoinReply::OkNoMap),
            JoinCode::Disallow => Ok(JoinReply::Disallow),
            JoinCode::ProtocolMismatch => Err(EPROTO),
        },
        Err(_) => Err(errno::EINVAL),
    }
}

/// Whether a join query about `node` may be answered at all: it must be the node whose join
/// we accepted, and the negotiated dlm protocol must be 1.1 or later (region and node queries
/// came with 1.1).
fn may_query(domain: Option<&JoinState>, node: u8) -> bool {
    domain.is_some_and(|d| {
        d.joining_node == Some(node) && !(d.dlm_proto.major == 1 && d.dlm_proto.minor == 0)
    })
}

/// `dlm_query_region_handler`: 0 if the joining node uses exactly our global heartbeat
/// regions (compared as whole 32-byte slots; no regions on either side in local mode), else
/// `-EINVAL`.
pub fn check_query_region(
    domain: Option<&JoinState>,
    qr: &QueryRegion,
    global_heartbeat: bool,
    local_regions: &[[u8; REGION_NAME_LEN]],
) -> i32 {
    if !may_query(domain, qr.node) {
        return errno::EINVAL;
    }
    if !global_heartbeat {
        return if qr.regions.is_empty() {
            0
        } else {
            errno::EINVAL
        };
    }
    if qr.regions.is_empty() || qr.regions.len() > MAX_REGIONS {
        return errno::EINVAL;
    }
    let local = &local_regions[..local_regions.len().min(MAX_REGIONS)];
    let subset =
        |a: &[[u8; REGION_NAME_LEN]], b: &[[u8; REGION_NAME_LEN]]| a.iter().all(|x| b.contains(x));
    if subset(local, &qr.regions) && subset(&qr.regions, local) {
        0
    } else {
        errno::EINVAL
    }
}

/// `dlm_query_nodeinfo_handler`: 0 if the joining node's node table matches ours (same
/// node numbers, each with the same IPv4 address and port), else `-EINVAL`.
pub fn check_query_nodeinfo(
    domain: Option<&JoinState>,
    qn: &QueryNodeinfo,
    local_nodes: &[NodeInfo],
) -> i32 {
    if !may_query(domain, qn.nodenum) {
        return errno::EINVAL;
    }
    for n in 0..crate::wire::MAX_NODES as u8 {
        let local = local_nodes.iter().find(|x| x.nodenum == n);
        let remote = qn.nodes.iter().find(|x| x.nodenum == n);
        match (local, remote) {
            (None, None) => {}
            (Some(l), Some(r)) if l == r => {}
            _ => return errno::EINVAL,
        }
    }
    0
}
