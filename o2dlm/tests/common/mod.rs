//! Test-only readers of the kernel fixtures: a classic pcap reader that reassembles TCP
//! streams, and an o2net frame splitter (header layout of docs/o2net.md §3; the real header
//! codec belongs to the o2net crate). Each test binary uses a subset.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use o2dlm::wire::MsgType;

/// The address of node N in the kernel-to-kernel capture (node 1 = 10.213.0.2).
pub fn capture_node(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 213, 0, n + 1)
}

/// The reassembled stream from node `from` to node `to` in the kernel-to-kernel capture.
pub fn capture_stream(from: u8, to: u8) -> Vec<u8> {
    let mut streams = tcp_streams(&fixture("o2net-kernel-to-kernel.pcap"), 7777);
    streams
        .remove(&(capture_node(from), capture_node(to)))
        .unwrap_or_else(|| panic!("no stream from node {from} to node {to}"))
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/kernel-6.1")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A test-only reader of a classic little-endian pcap of Ethernet/IPv4/TCP: returns each TCP
/// direction touching `port` as its reassembled byte stream, keyed by (src ip, dst ip).
pub fn tcp_streams(pcap: &[u8], port: u16) -> BTreeMap<(Ipv4Addr, Ipv4Addr), Vec<u8>> {
    let u16be = |b: &[u8], o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
    let u32le = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u32be = |b: &[u8], o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
    assert_eq!(
        u32le(pcap, 0),
        0xa1b2_c3d4,
        "classic microsecond pcap expected"
    );
    // Per direction: next expected sequence number and the stream so far.
    let mut streams: BTreeMap<(Ipv4Addr, Ipv4Addr), (Option<u32>, Vec<u8>)> = BTreeMap::new();
    let mut off = 24;
    while off + 16 <= pcap.len() {
        let incl = u32le(pcap, off + 8) as usize;
        let pkt = &pcap[off + 16..off + 16 + incl];
        off += 16 + incl;
        if pkt.len() < 14 || u16be(pkt, 12) != 0x0800 {
            continue;
        }
        let ip = &pkt[14..];
        let ihl = usize::from(ip[0] & 0xf) * 4;
        let total = usize::from(u16be(ip, 2));
        if ip[9] != 6 {
            continue;
        }
        let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let tcp = &ip[ihl..total];
        let (sport, dport, seq) = (u16be(tcp, 0), u16be(tcp, 2), u32be(tcp, 4));
        let data = &tcp[usize::from(tcp[12] >> 4) * 4..];
        if (sport != port && dport != port) || data.is_empty() {
            continue;
        }
        let (next, buf) = streams.entry((src, dst)).or_default();
        let expected = next.unwrap_or(seq);
        // Retransmissions start before what we have; keep only new bytes.
        let ahead = seq.wrapping_sub(expected) as i32;
        assert!(ahead <= 0, "capture lost a segment from {src} to {dst}");
        let already = ahead.unsigned_abs() as usize;
        if already < data.len() {
            buf.extend_from_slice(&data[already..]);
            *next = Some(seq.wrapping_add(data.len() as u32));
        }
    }
    streams.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

/// One o2net message split off a stream with the header layout of docs/o2net.md §3.
#[derive(Debug)]
pub struct Frame {
    pub magic: u16,
    pub msg_type: u16,
    pub status: i32,
    pub key: u32,
    pub payload: Vec<u8>,
}

/// Splits a stream (after its 32-byte handshake) into o2net messages.
pub fn frames(stream: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut p = 32;
    while p + 24 <= stream.len() {
        let h = &stream[p..p + 24];
        let magic = u16::from_be_bytes([h[0], h[1]]);
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        assert!(
            (0xfa55..=0xfa58).contains(&magic),
            "bad o2net magic {magic:#x} at {p}"
        );
        out.push(Frame {
            magic,
            msg_type: u16::from_be_bytes([h[4], h[5]]),
            status: i32::from_be_bytes(h[12..16].try_into().unwrap()),
            key: u32::from_be_bytes(h[16..20].try_into().unwrap()),
            payload: stream[p + 24..p + 24 + len].to_vec(),
        });
        p += 24 + len;
    }
    assert_eq!(p, stream.len(), "stream ends inside a message");
    out
}

/// The status replies of a stream, in order.
pub fn replies(frames: &[Frame]) -> Vec<(MsgType, i32)> {
    frames
        .iter()
        .filter(|f| f.magic == 0xfa56)
        .map(|f| (MsgType::from_wire(f.msg_type).unwrap(), f.status))
        .collect()
}
