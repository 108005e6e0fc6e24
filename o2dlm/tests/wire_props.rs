//! Property tests of the DLM message codecs: every message value survives encode/decode,
//! and no byte string, of any length and for any message type, makes a decoder panic.

use std::net::Ipv4Addr;

use o2dlm::wire::*;
use proptest::collection::vec;
use proptest::prelude::*;

fn lock_name() -> impl Strategy<Value = LockName> {
    vec(any::<u8>(), 1..=LOCK_NAME_MAX).prop_map(|b| LockName::new(&b).unwrap())
}

fn domain_name() -> impl Strategy<Value = DomainName> {
    vec(1u8..=255, 1..=DOMAIN_NAME_MAX).prop_map(|b| DomainName::new(&b).unwrap())
}

fn mode() -> impl Strategy<Value = LockMode> {
    prop::sample::select(LockMode::ALL.to_vec())
}

fn opt_mode() -> impl Strategy<Value = Option<LockMode>> {
    prop::option::of(mode())
}

fn lvb() -> impl Strategy<Value = Lvb> {
    any::<[u8; LVB_LEN]>()
}

/// Flags with the LVB-presence bit cleared, as the encoders derive it from the LVB.
fn flags_without(bit: LkmFlags) -> impl Strategy<Value = LkmFlags> {
    any::<u32>().prop_map(move |f| LkmFlags(f).without(bit))
}

fn with_lvb(flags: LkmFlags, bit: LkmFlags, lvb: &Option<Lvb>) -> LkmFlags {
    if lvb.is_some() {
        flags | bit
    } else {
        flags
    }
}

fn queue() -> impl Strategy<Value = QueueKind> {
    prop::sample::select(QueueKind::ALL.to_vec())
}

fn migratable_lock() -> impl Strategy<Value = MigratableLock> {
    (
        any::<u64>(),
        queue(),
        any::<u8>(),
        opt_mode(),
        opt_mode(),
        opt_mode(),
        any::<u8>(),
    )
        .prop_map(
            |(cookie, list, flags, type_, convert_type, highest_blocked, node)| MigratableLock {
                cookie,
                list,
                flags,
                type_,
                convert_type,
                highest_blocked,
                node,
            },
        )
}

fn proto() -> impl Strategy<Value = ProtocolVersion> {
    (any::<u8>(), any::<u8>()).prop_map(|(major, minor)| ProtocolVersion { major, minor })
}

fn message() -> impl Strategy<Value = DlmMessage> {
    prop_oneof![
        (any::<u8>(), any::<u32>(), lock_name()).prop_map(|(node_idx, flags, name)| {
            DlmMessage::MasterRequest(MasterRequest {
                node_idx,
                flags,
                name,
            })
        }),
        (any::<u8>(), any::<u32>(), lock_name()).prop_map(|(node_idx, flags, name)| {
            DlmMessage::AssertMaster(AssertMaster {
                node_idx,
                flags,
                name,
            })
        }),
        (any::<u64>(), any::<u32>(), any::<u8>(), mode(), lock_name()).prop_map(
            |(cookie, flags, node_idx, requested_type, name)| {
                DlmMessage::CreateLock(CreateLock {
                    cookie,
                    flags: LkmFlags(flags),
                    node_idx,
                    requested_type,
                    name,
                })
            }
        ),
        (
            any::<u64>(),
            flags_without(LkmFlags::PUT_LVB),
            any::<u8>(),
            mode(),
            lock_name(),
            prop::option::of(lvb())
        )
            .prop_map(|(cookie, flags, node_idx, requested_type, name, lvb)| {
                DlmMessage::ConvertLock(ConvertLock {
                    cookie,
                    flags: with_lvb(flags, LkmFlags::PUT_LVB, &lvb),
                    node_idx,
                    requested_type,
                    name,
                    lvb,
                })
            }),
        (
            any::<u64>(),
            flags_without(LkmFlags::GET_LVB),
            any::<u8>(),
            prop::sample::select(vec![AstType::Ast, AstType::Bast, AstType::AstUnlock]),
            opt_mode(),
            lock_name(),
            prop::option::of(lvb())
        )
            .prop_map(
                |(cookie, flags, node_idx, ast_type, blocked_type, name, lvb)| {
                    DlmMessage::ProxyAst(ProxyAst {
                        cookie,
                        flags: with_lvb(flags, LkmFlags::GET_LVB, &lvb),
                        node_idx,
                        ast_type,
                        blocked_type,
                        name,
                        lvb,
                    })
                }
            ),
        (
            any::<u64>(),
            flags_without(LkmFlags::PUT_LVB),
            any::<u8>(),
            lock_name(),
            prop::option::of(lvb())
        )
            .prop_map(|(cookie, flags, node_idx, name, lvb)| {
                DlmMessage::UnlockLock(UnlockLock {
                    cookie,
                    flags: with_lvb(flags, LkmFlags::PUT_LVB, &lvb),
                    node_idx,
                    name,
                    lvb,
                })
            }),
        (any::<u8>(), lock_name())
            .prop_map(|(node_idx, name)| DlmMessage::DerefLockres(DerefLockres { node_idx, name })),
        (any::<u8>(), any::<u8>(), lock_name()).prop_map(|(master, new_master, name)| {
            DlmMessage::MigrateRequest(MigrateRequest {
                master,
                new_master,
                name,
            })
        }),
        (
            any::<u8>(),
            any::<u8>(),
            any::<u32>(),
            any::<u64>(),
            lock_name(),
            lvb(),
            vec(migratable_lock(), 0..=MAX_MIGRATABLE_LOCKS)
        )
            .prop_map(
                |(master, flags, total_locks, mig_cookie, name, lvb, locks)| {
                    DlmMessage::MigLockres(MigLockres {
                        master,
                        flags,
                        total_locks,
                        mig_cookie,
                        name,
                        lvb,
                        locks,
                    })
                }
            ),
        (
            any::<u8>(),
            domain_name(),
            proto(),
            proto(),
            any::<[u8; 32]>()
        )
            .prop_map(|(node_idx, domain, dlm_proto, fs_proto, map)| {
                DlmMessage::QueryJoin(QueryJoinRequest {
                    node_idx,
                    domain,
                    dlm_proto,
                    fs_proto,
                    node_map: NodeMap(map),
                })
            }),
        (any::<u8>(), domain_name()).prop_map(|(node_idx, domain)| DlmMessage::AssertJoined(
            JoinNotice { node_idx, domain }
        )),
        (any::<u8>(), domain_name())
            .prop_map(|(node_idx, domain)| DlmMessage::CancelJoin(JoinNotice { node_idx, domain })),
        any::<u8>().prop_map(|node_idx| DlmMessage::ExitDomain(ExitDomain { node_idx })),
        any::<u8>().prop_map(|node_idx| DlmMessage::BeginExitDomain(ExitDomain { node_idx })),
        (any::<u8>(), lock_name()).prop_map(|(node_idx, name)| DlmMessage::MasterRequery(
            MasterRequery { node_idx, name }
        )),
        (any::<u8>(), any::<u8>()).prop_map(|(node_idx, dead_node)| {
            DlmMessage::LockRequest(RecoNotice {
                node_idx,
                dead_node,
            })
        }),
        (any::<u8>(), any::<u8>()).prop_map(|(node_idx, dead_node)| {
            DlmMessage::BeginReco(RecoNotice {
                node_idx,
                dead_node,
            })
        }),
        (any::<u8>(), any::<u8>()).prop_map(|(node_idx, dead_node)| {
            DlmMessage::RecoDataDone(RecoDataDone {
                node_idx,
                dead_node,
            })
        }),
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(node_idx, dead_node, flags)| {
            DlmMessage::FinalizeReco(FinalizeReco {
                node_idx,
                dead_node,
                flags,
            })
        }),
        (
            any::<u8>(),
            domain_name(),
            vec(any::<[u8; REGION_NAME_LEN]>(), 0..=MAX_REGIONS)
        )
            .prop_map(|(node, domain, regions)| {
                DlmMessage::QueryRegion(QueryRegion {
                    node,
                    domain,
                    regions,
                })
            }),
        (
            any::<u8>(),
            domain_name(),
            vec((any::<u8>(), any::<u16>(), any::<u32>()), 0..=MAX_NODES)
        )
            .prop_map(|(nodenum, domain, nodes)| {
                DlmMessage::QueryNodeinfo(QueryNodeinfo {
                    nodenum,
                    domain,
                    nodes: nodes
                        .into_iter()
                        .map(|(n, port, addr)| NodeInfo {
                            nodenum: n,
                            ipv4_port: port,
                            ipv4_address: Ipv4Addr::from(addr),
                        })
                        .collect(),
                })
            }),
        (any::<u8>(), lock_name()).prop_map(|(node_idx, name)| {
            DlmMessage::DerefLockresDone(DerefLockres { node_idx, name })
        }),
    ]
}

proptest! {
    // No regression files: tests leave nothing behind; a failure prints its minimal input.
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_message_roundtrips(msg in message()) {
        let bytes = msg.to_vec();
        prop_assert!(bytes.len() <= msg.msg_type().max_len());
        let back = DlmMessage::decode(msg.msg_type().to_wire(), &bytes).unwrap();
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn arbitrary_bytes_never_panic(t in 495u16..530, bytes in vec(any::<u8>(), 0..4200)) {
        if let Ok(msg) = DlmMessage::decode(t, &bytes) {
            // Whatever decodes has one canonical encoding that decodes to the same value.
            let again = DlmMessage::decode(t, &msg.to_vec()).unwrap();
            prop_assert_eq!(again, msg);
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        msg in message(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        // Start from valid bytes so the decoders get past their early checks.
        let mut bytes = msg.to_vec();
        for (at, val) in flips {
            let i = at.index(bytes.len());
            bytes[i] = val;
        }
        let keep = cut.index(bytes.len() + 1);
        let _ = DlmMessage::decode(msg.msg_type().to_wire(), &bytes[..keep]);
        let _ = DlmMessage::decode(msg.msg_type().to_wire(), &bytes);
    }

    #[test]
    fn query_join_replies_roundtrip(code in 0u8..4, dlm_minor in any::<u8>(), fs_minor in any::<u8>()) {
        let status = i32::from_be_bytes([code, dlm_minor, fs_minor, 0]);
        let r = QueryJoinResponse::from_status(status).unwrap();
        prop_assert_eq!(r.to_status(), status);
    }
}
