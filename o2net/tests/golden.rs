//! Golden bytes from a real Linux 6.1 kernel (testdata/kernel-6.1):
//! our decoder reads every frame the kernel sent, our encoder reproduces
//! those bytes from the decoded fields, and our core, fed the kernel's
//! stream, answers as the kernel peer expects.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use o2net::wire::{Frame, StreamDecoder, HANDSHAKE_LEN, HEADER_LEN};
use o2net::{Handshake, Input, Magic, MsgHeader, NetConfig, NetCore, NodeInfo, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/kernel-6.1")
        .join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    let p = fixture(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Decodes a whole stream, checking that re-encoding each frame's fields
/// gives back the exact bytes.
fn decode_all(stream: &[u8], with_handshake: bool) -> Vec<Frame> {
    let mut d = if with_handshake {
        StreamDecoder::new()
    } else {
        StreamDecoder::after_handshake()
    };
    d.push(stream);
    let mut frames = Vec::new();
    let mut off = 0;
    while let Some(f) = d.next_frame().expect("kernel stream decodes") {
        match &f {
            Frame::Handshake(h) => {
                assert_eq!(&h.encode()[..], &stream[off..off + HANDSHAKE_LEN]);
                off += HANDSHAKE_LEN;
            }
            Frame::Message(h, p) => {
                assert_eq!(
                    &h.encode()[..],
                    &stream[off..off + HEADER_LEN],
                    "header at {off}"
                );
                off += HEADER_LEN + p.len();
            }
        }
        frames.push(f);
    }
    assert_eq!(d.buffered(), 0, "trailing partial frame");
    assert_eq!(off, stream.len());
    frames
}

#[test]
fn kernel_node_stream_decodes_and_reencodes_byte_for_byte() {
    let bytes = read_fixture("o2net-from-kernel-node1.bin");
    let frames = decode_all(&bytes, true);
    assert_eq!(
        frames[0],
        Frame::Handshake(Handshake {
            protocol_version: 11,
            connector_id: 1,
            heartbeat_timeout_ms: 60000,
            idle_timeout_ms: 30000,
            keepalive_delay_ms: 2000,
            reconnect_delay_ms: 2000,
        })
    );
    let mut keepalives = 0;
    let mut joins = 0;
    for f in &frames[1..] {
        let Frame::Message(h, p) = f else {
            panic!("second handshake")
        };
        match h.kind() {
            Some(Magic::KeepReq) => {
                assert_eq!(*h, MsgHeader::keepalive(Magic::KeepReq));
                keepalives += 1;
            }
            Some(Magic::Request) => {
                assert_eq!((h.msg_type, h.key, h.data_len), (510, 0x666c_6172, 104));
                assert_eq!(p.len(), 104);
                assert_eq!(&p[4..8], b"\x01\x03\x01\x00", "dlm 1.3, fs 1.0");
                joins += 1;
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(joins, 1);
    assert!(keepalives >= 10, "{keepalives} keepalives");
}

/// Our node 0 fed the kernel node 1's bytes: it validates the handshake,
/// answers every keepalive request, and answers the QUERY_JOIN it has no
/// handler for with O2NET_ERR_NO_HNDLR and the request's msg_num — what the
/// kernel accepted from the test peer in the capture run.
#[test]
fn core_accepts_the_kernels_handshake_and_answers_its_frames() {
    let bytes = read_fixture("o2net-from-kernel-node1.bin");
    let nodes = vec![
        NodeInfo {
            num: 0,
            name: "hostpeer".into(),
            addr: SocketAddrV4::new(Ipv4Addr::new(10, 213, 0, 1), 7777),
        },
        NodeInfo {
            num: 1,
            name: "guest1".into(),
            addr: SocketAddrV4::new(Ipv4Addr::new(10, 213, 0, 2), 7777),
        },
    ];
    let mut core: NetCore<()> = NetCore::new(NetConfig::new(0, nodes)).expect("config");
    core.handle(0, Input::HeartbeatUp(0));
    core.handle(0, Input::HeartbeatUp(1));
    let conn = core.new_conn_id();
    core.handle(
        1,
        Input::Accepted {
            conn,
            from: SocketAddrV4::new(Ipv4Addr::new(10, 213, 0, 2), 40000),
        },
    );
    // Byte by byte, to exercise reassembly too.
    for b in bytes.chunks(7) {
        core.handle(2, Input::Received { conn, data: b });
    }
    let mut sent = Vec::new();
    let mut logs = Vec::new();
    while let Some(o) = core.poll_output() {
        match o {
            Output::Transmit { data, .. } => sent.extend_from_slice(&data),
            Output::Log { message, .. } => logs.push(message),
            Output::Close { .. } => panic!("closed the kernel's connection: {logs:?}"),
            _ => {}
        }
    }
    assert!(
        logs.iter()
            .any(|l| l == "o2net: Accepted connection from node guest1 (num 1) at 10.213.0.2:7777"),
        "{logs:?}"
    );
    // Our handshake equals the kernel's, then one KEEP_RESP per KEEP_REQ and
    // a NO_HNDLR status for the join.
    assert_eq!(&sent[..HANDSHAKE_LEN], &bytes[..HANDSHAKE_LEN]);
    let frames = decode_all(&sent[HANDSHAKE_LEN..], false);
    let theirs = decode_all(&bytes, true);
    assert_eq!(frames.len(), theirs.len() - 1);
    for (ours, theirs) in frames.iter().zip(&theirs[1..]) {
        let (Frame::Message(o, _), Frame::Message(t, _)) = (ours, theirs) else {
            panic!("handshake in message stream")
        };
        match t.kind() {
            Some(Magic::KeepReq) => {
                assert_eq!(o.encode(), MsgHeader::keepalive(Magic::KeepResp).encode())
            }
            Some(Magic::Request) => {
                let mut want = [0u8; HEADER_LEN];
                want[0..2].copy_from_slice(&[0xfa, 0x56]);
                want[4..6].copy_from_slice(&510u16.to_be_bytes());
                want[8..12].copy_from_slice(&1u32.to_be_bytes());
                want[16..20].copy_from_slice(b"flar");
                want[20..24].copy_from_slice(&t.msg_num.to_be_bytes());
                assert_eq!(o.encode(), want);
            }
            _ => unreachable!("checked above"),
        }
    }
}

/// One TCP direction of the capture, reassembled by sequence number
/// (the capture holds retransmissions).
#[derive(Default)]
struct Direction {
    next_seq: Option<u32>,
    data: Vec<u8>,
    early: BTreeMap<u32, Vec<u8>>,
}

impl Direction {
    fn segment(&mut self, seq: u32, syn: bool, payload: &[u8]) {
        if syn {
            self.next_seq = Some(seq.wrapping_add(1));
            return;
        }
        let Some(next) = self.next_seq else { return };
        if payload.is_empty() {
            return;
        }
        self.early.insert(seq, payload.to_vec());
        let mut next = next;
        while let Some((&s, _)) = self.early.iter().next() {
            let off = next.wrapping_sub(s) as i32;
            if off < 0 {
                break; // a gap: wait for the missing bytes
            }
            let p = self.early.remove(&s).unwrap_or_default();
            if let Some(rest) = p.get(off as usize..) {
                self.data.extend_from_slice(rest);
                next = next.wrapping_add(rest.len() as u32);
            }
        }
        self.next_seq = Some(next);
    }
}

type Flow = (SocketAddrV4, SocketAddrV4);

/// The o2net streams of a classic pcap (Ethernet, IPv4, TCP port 7777),
/// keyed by (source, destination).
fn pcap_streams(pcap: &[u8]) -> BTreeMap<Flow, Direction> {
    pcap_timeline(pcap).0
}

/// The streams, and in capture order each packet's flow with the length of
/// that flow's reassembled stream after it.
fn pcap_timeline(pcap: &[u8]) -> (BTreeMap<Flow, Direction>, Vec<(Flow, usize)>) {
    let mut timeline = Vec::new();
    assert_eq!(&pcap[0..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    assert_eq!(
        u32::from_le_bytes(pcap[20..24].try_into().unwrap()),
        1,
        "Ethernet"
    );
    let mut off = 24;
    let mut dirs: BTreeMap<Flow, Direction> = BTreeMap::new();
    while off + 16 <= pcap.len() {
        let caplen = u32::from_le_bytes(pcap[off + 8..off + 12].try_into().unwrap()) as usize;
        let pkt = &pcap[off + 16..off + 16 + caplen];
        off += 16 + caplen;
        if pkt.len() < 14 + 20 || pkt[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &pkt[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if ip[9] != 6 {
            continue;
        }
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let tcp = &ip[ihl..total];
        let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
        let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
        if sport != 7777 && dport != 7777 {
            continue;
        }
        let seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
        let doff = usize::from(tcp[12] >> 4) * 4;
        let syn = tcp[13] & 0x02 != 0;
        let flow = (SocketAddrV4::new(src, sport), SocketAddrV4::new(dst, dport));
        let d = dirs.entry(flow).or_default();
        d.segment(seq, syn, &tcp[doff..]);
        timeline.push((flow, d.data.len()));
    }
    (dirs, timeline)
}

#[test]
fn kernel_to_kernel_capture_decodes_every_frame() {
    let dirs = pcap_streams(&read_fixture("o2net-kernel-to-kernel.pcap"));
    assert_eq!(dirs.len(), 2, "one connection, two directions");
    let mut per_dir = Vec::new();
    for ((src, dst), d) in &dirs {
        let frames = decode_all(&d.data, true);
        let Some(Frame::Handshake(h)) = frames.first() else {
            panic!("{src}->{dst}: no handshake")
        };
        assert_eq!(
            (h.protocol_version, h.idle_timeout_ms, h.keepalive_delay_ms),
            (11, 30000, 2000)
        );
        let headers: Vec<MsgHeader> = frames[1..]
            .iter()
            .map(|f| match f {
                Frame::Message(h, _) => *h,
                Frame::Handshake(_) => panic!("second handshake"),
            })
            .collect();
        for h in &headers {
            assert!(h.kind().is_some(), "{src}->{dst}: bad magic {:#x}", h.magic);
            if h.kind() == Some(Magic::Request) {
                assert!((500..=522).contains(&h.msg_type), "DLM type {}", h.msg_type);
            }
            if h.kind() == Some(Magic::Status) {
                assert_eq!(h.data_len, 0, "replies carry no payload");
            }
        }
        per_dir.push(headers);
    }
    // Every status reply answers a request of the other direction with the
    // same type, key and msg_num.
    for (i, headers) in per_dir.iter().enumerate() {
        let other = &per_dir[1 - i];
        for r in headers.iter().filter(|h| h.kind() == Some(Magic::Status)) {
            assert!(
                other.iter().any(|q| q.kind() == Some(Magic::Request)
                    && (q.msg_type, q.key, q.msg_num) == (r.msg_type, r.key, r.msg_num)),
                "reply {r:?} without request"
            );
        }
    }

    // Second opinion: tshark's OCFS2 dissector must see the same headers.
    let Ok(out) = Command::new("tshark")
        .arg("-r")
        .arg(fixture("o2net-kernel-to-kernel.pcap"))
        .args([
            "-d",
            "tcp.port==7777,ocfs2",
            "-Y",
            "ocfs2",
            "-T",
            "fields",
            "-E",
            "occurrence=a",
        ])
        .args([
            "-e",
            "ip.src",
            "-e",
            "ocfs2.msg.magic",
            "-e",
            "ocfs2.msg.msg_type",
        ])
        .args(["-e", "ocfs2.msg.msg_num", "-e", "ocfs2.msg.data_len"])
        .output()
    else {
        eprintln!(
            "tshark not installed (scripts/install-deps.sh installs it): cross-check skipped"
        );
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut theirs: BTreeMap<String, Vec<(u16, u16, u32, u16)>> = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let split = |i: usize| cols[i].split(',').map(str::to_owned).collect::<Vec<_>>();
        let (m, t, n, l) = (split(1), split(2), split(3), split(4));
        for k in 0..m.len() {
            let hex = |s: &str| u16::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
            theirs.entry(cols[0].to_owned()).or_default().push((
                hex(&m[k]),
                t[k].parse().unwrap(),
                n[k].parse().unwrap(),
                l[k].parse().unwrap(),
            ));
        }
    }
    for (((src, _), _), headers) in dirs.iter().zip(&per_dir) {
        let ours: Vec<(u16, u16, u32, u16)> = headers
            .iter()
            .map(|h| (h.magic, h.msg_type, h.msg_num, h.data_len))
            .collect();
        let t = theirs
            .get(&src.ip().to_string())
            .cloned()
            .unwrap_or_default();
        assert_eq!(ours, t, "frames from {src}: ours vs tshark");
    }
}

/// The capture run's cluster.conf, read by o2nm with default timeouts and
/// node 1 (the kernel's node) local, makes o2net send the very handshake
/// the kernel sent.
#[test]
fn config_from_the_capture_runs_cluster_conf_gives_the_kernels_handshake() {
    let conf = o2nm::ClusterConf::load(&fixture("cluster.conf")).expect("cluster.conf");
    let cluster = o2nm::Cluster::from_conf(
        &conf,
        "kpeer",
        o2nm::Timeouts::default(),
        &o2nm::LocalNode::Named("guest1".into()),
    )
    .expect("cluster");
    let cfg = NetConfig::from_cluster(&cluster).expect("o2net config");
    assert_eq!(cfg.local, 1);
    assert_eq!(cfg.quorum_delay_ms, 66_000);
    let mut core: NetCore<()> = NetCore::new(cfg).expect("core");
    core.handle(0, Input::HeartbeatUp(0));
    // Node 1 is the higher: it connects to node 0 at 10.213.0.1:7777.
    core.handle(0, Input::Timeout);
    let mut connect = None;
    while let Some(o) = core.poll_output() {
        if let Output::Connect {
            conn,
            local,
            remote,
            ..
        } = o
        {
            connect = Some((conn, local, remote));
        }
    }
    let (c, local, remote) = connect.expect("connects to node 0");
    assert_eq!(local, SocketAddrV4::new(Ipv4Addr::new(10, 213, 0, 2), 0));
    assert_eq!(
        remote,
        SocketAddrV4::new(Ipv4Addr::new(10, 213, 0, 1), 7777)
    );
    core.handle(1, Input::ConnectDone { conn: c });
    let Some(Output::Transmit { data, .. }) = core.poll_output() else {
        panic!("handshake expected")
    };
    let kernel = read_fixture("o2net-from-kernel-node1.bin");
    assert_eq!(&data[..], &kernel[..HANDSHAKE_LEN]);
}

/// A core playing node `local` of the kernel-to-kernel capture, where node 1 listens on
/// `n1` and node 2 connected from `from2`, with a handler for every request type `incoming`
/// (the stream sent to it) carries.
fn capture_core(local: u8, n1: SocketAddrV4, from2: SocketAddrV4, incoming: &[u8]) -> NetCore<()> {
    let nodes = vec![
        NodeInfo {
            num: 1,
            name: "k1".into(),
            addr: n1,
        },
        NodeInfo {
            num: 2,
            name: "k2".into(),
            addr: SocketAddrV4::new(*from2.ip(), 7777),
        },
    ];
    let mut core: NetCore<()> = NetCore::new(NetConfig::new(local, nodes)).expect("config");
    for f in decode_all(incoming, true).iter().skip(1) {
        if let Frame::Message(h, _) = f {
            if h.kind() == Some(Magic::Request) {
                // Already registered for an earlier request: fine.
                let _ = core.register_handler(h.msg_type, h.key, 4072, ());
            }
        }
    }
    core
}

/// Our core as the capture's node 1 (10.213.0.2), fed everything kernel node
/// 2 sent it, with handlers that return what kernel node 1's handlers
/// returned, answers with exactly kernel node 1's bytes: the same handshake,
/// one keepalive response per request, and every status reply identical.
#[test]
fn core_replays_the_kernel_acceptors_side_of_the_capture_byte_for_byte() {
    let dirs = pcap_streams(&read_fixture("o2net-kernel-to-kernel.pcap"));
    let n1 = SocketAddrV4::new(Ipv4Addr::new(10, 213, 0, 2), 7777);
    let (from2, to1) = dirs
        .iter()
        .find(|((_, dst), _)| *dst == n1)
        .map(|((src, _), d)| (*src, d))
        .expect("node 2 -> node 1 stream");
    let from1 = &dirs[&(n1, from2)];
    let kernel_frames = decode_all(&from1.data, true);
    let kernel_replies: Vec<MsgHeader> = kernel_frames[1..]
        .iter()
        .filter_map(|f| match f {
            Frame::Message(h, _) if h.kind() == Some(Magic::Status) => Some(*h),
            _ => None,
        })
        .collect();
    let kernel_keep_resps = kernel_frames[1..]
        .iter()
        .filter(|f| matches!(f, Frame::Message(h, _) if h.kind() == Some(Magic::KeepResp)))
        .count();

    let mut core = capture_core(1, n1, from2, &to1.data);
    core.handle(0, Input::HeartbeatUp(1));
    core.handle(0, Input::HeartbeatUp(2));
    let conn = core.new_conn_id();
    core.handle(0, Input::Accepted { conn, from: from2 });
    let mut sent = Vec::new();
    let mut answered = 0;
    for chunk in to1.data.chunks(1448) {
        core.handle(0, Input::Received { conn, data: chunk });
        while let Some(o) = core.poll_output() {
            match o {
                Output::Transmit { data, .. } => sent.extend_from_slice(&data),
                Output::Deliver { header, .. } => {
                    // The kernel's reply to this request: same type, key, msg_num,
                    // in order.
                    let k = kernel_replies[answered];
                    assert_eq!(
                        (k.msg_type, k.key, k.msg_num),
                        (header.msg_type, header.key, header.msg_num)
                    );
                    answered += 1;
                    core.handle(
                        0,
                        Input::HandlerDone {
                            conn,
                            request: header,
                            status: k.status,
                        },
                    );
                }
                Output::Close { .. } => panic!("closed the kernel's connection"),
                _ => {}
            }
        }
    }
    assert_eq!(
        answered,
        kernel_replies.len(),
        "every request the kernel answered"
    );
    assert_eq!(&sent[..HANDSHAKE_LEN], &from1.data[..HANDSHAKE_LEN]);
    let ours = decode_all(&sent, true);
    let our_replies: Vec<[u8; HEADER_LEN]> = ours[1..]
        .iter()
        .filter_map(|f| match f {
            Frame::Message(h, _) if h.kind() == Some(Magic::Status) => Some(h.encode()),
            _ => None,
        })
        .collect();
    let theirs: Vec<[u8; HEADER_LEN]> = kernel_replies.iter().map(|h| h.encode()).collect();
    assert_eq!(our_replies, theirs);
    let our_keep_resps = ours[1..]
        .iter()
        .filter(|f| matches!(f, Frame::Message(h, _) if h.kind() == Some(Magic::KeepResp)))
        .count();
    assert_eq!(our_keep_resps, kernel_keep_resps);
    assert!(answered >= 10, "{answered} replies compared");
}

/// Our core as the capture's node 2 (the connector), sending what kernel
/// node 2 sent when it sent it and answering node 1's requests with kernel
/// node 2's statuses, writes the same request and reply bytes. In this
/// capture every request went out after the previous reply, so the kernel's
/// lowest-free-id allocation gave msg_num 0 each time (a counter would not).
#[test]
fn core_replays_the_kernel_connectors_side_byte_for_byte() {
    let (dirs, timeline) = pcap_timeline(&read_fixture("o2net-kernel-to-kernel.pcap"));
    let n1 = SocketAddrV4::new(Ipv4Addr::new(10, 213, 0, 2), 7777);
    let (&(from2, _), _) = dirs
        .iter()
        .find(|((_, dst), _)| *dst == n1)
        .expect("2 -> 1");
    let up = (from2, n1);
    let down = (n1, from2);
    // Handlers for what node 1 asks of node 2.
    let mut core = capture_core(2, n1, from2, &dirs[&down].data);
    let kernel_up = &dirs[&up].data;
    core.handle(0, Input::HeartbeatUp(1));
    core.handle(0, Input::HeartbeatUp(2));
    core.handle(0, Input::Timeout);
    let conn = std::iter::from_fn(|| core.poll_output())
        .find_map(|o| match o {
            Output::Connect { conn, .. } => Some(conn),
            _ => None,
        })
        .expect("node 2 connects");
    core.handle(0, Input::ConnectDone { conn });

    // Node 2's handlers "return" when kernel node 2's reply shows up in its
    // stream, so that requests and replies interleave as they did.
    let mut delivered: Vec<MsgHeader> = Vec::new();
    let mut ours = Vec::new();
    let mut fed_down = 0;
    let mut up_dec = StreamDecoder::new();
    let mut up_seen = 0;
    let mut next_id = 1;
    let mut requests = 0;
    let drain = |core: &mut NetCore<()>, ours: &mut Vec<u8>, delivered: &mut Vec<MsgHeader>| {
        while let Some(o) = core.poll_output() {
            match o {
                Output::Transmit { data, .. } => ours.extend_from_slice(&data),
                Output::Deliver { header, .. } => delivered.push(header),
                Output::Close { .. } => panic!("connection closed"),
                _ => {}
            }
        }
    };
    for (flow, len) in timeline {
        if flow == down && len > fed_down {
            core.handle(
                0,
                Input::Received {
                    conn,
                    data: &dirs[&down].data[fed_down..len],
                },
            );
            fed_down = len;
            drain(&mut core, &mut ours, &mut delivered);
        } else if flow == up && len > up_seen {
            up_dec.push(&kernel_up[up_seen..len]);
            up_seen = len;
            while let Some(f) = up_dec.next_frame().expect("decodes") {
                let Frame::Message(h, p) = f else { continue };
                match h.kind() {
                    Some(Magic::Request) => {
                        let id = next_id;
                        next_id += 1;
                        requests += 1;
                        core.handle(
                            0,
                            Input::Send {
                                id,
                                node: 1,
                                msg_type: h.msg_type,
                                key: h.key,
                                payload: p,
                            },
                        );
                    }
                    Some(Magic::Status) => {
                        let i = delivered
                            .iter()
                            .position(|d| {
                                (d.msg_type, d.key, d.msg_num) == (h.msg_type, h.key, h.msg_num)
                            })
                            .expect("kernel 2 answered a request we delivered");
                        let request = delivered.remove(i);
                        core.handle(
                            0,
                            Input::HandlerDone {
                                conn,
                                request,
                                status: h.status,
                            },
                        );
                    }
                    _ => {}
                }
                drain(&mut core, &mut ours, &mut delivered);
            }
        }
    }
    // Compare every request and status reply we wrote with the kernel's.
    let pick = |frames: Vec<Frame>| -> Vec<(MsgHeader, Bytes)> {
        frames
            .into_iter()
            .skip(1)
            .filter_map(|f| match f {
                Frame::Message(h, p)
                    if matches!(h.kind(), Some(Magic::Request | Magic::Status)) =>
                {
                    Some((h, p))
                }
                _ => None,
            })
            .collect()
    };
    let ours = pick(decode_all(&ours, true));
    let theirs = pick(decode_all(kernel_up, true));
    assert!(requests >= 10, "{requests} requests replayed");
    assert_eq!(ours.len(), theirs.len());
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o.0.encode(), t.0.encode(), "header");
        assert_eq!(o.1, t.1, "payload");
    }
}
