//! The kernel's o2net wire format: the 32-byte handshake, the 24-byte message
//! header and the keepalive frames, all big-endian (docs/o2net.md §2-3), plus
//! an incremental stream decoder that turns received TCP bytes into frames.
//!
//! Only framing lives here: payloads are opaque bytes owned by the layer that
//! registered the message type (o2dlm, o2hb).

use bytes::{Bytes, BytesMut};

/// `O2NET_PROTOCOL_VERSION` of Linux 6.1 (tcp_internal.h).
pub const PROTOCOL_VERSION: u64 = 11;
/// The `connector_id` every kernel sends; it is never compared on receipt.
pub const CONNECTOR_ID: u64 = 1;
/// Size of `struct o2net_handshake`.
pub const HANDSHAKE_LEN: usize = 32;
/// Size of `struct o2net_msg`.
pub const HEADER_LEN: usize = 24;
/// `O2NET_MAX_PAYLOAD_BYTES`: one page minus the header.
pub const MAX_PAYLOAD: usize = 4096 - HEADER_LEN;

/// Magic of a request that expects a status reply.
pub const MAGIC_REQUEST: u16 = 0xFA55;
/// Magic of a status reply.
pub const MAGIC_STATUS: u16 = 0xFA56;
/// Magic of a keepalive request.
pub const MAGIC_KEEP_REQ: u16 = 0xFA57;
/// Magic of a keepalive response.
pub const MAGIC_KEEP_RESP: u16 = 0xFA58;

/// The four frame kinds a header's magic can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Magic {
    /// 0xFA55: a handler request.
    Request,
    /// 0xFA56: a handler's status reply.
    Status,
    /// 0xFA57: keepalive request.
    KeepReq,
    /// 0xFA58: keepalive response.
    KeepResp,
}

impl Magic {
    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            Magic::Request => MAGIC_REQUEST,
            Magic::Status => MAGIC_STATUS,
            Magic::KeepReq => MAGIC_KEEP_REQ,
            Magic::KeepResp => MAGIC_KEEP_RESP,
        }
    }

    /// The kind named by a wire value, if any.
    pub fn from_u16(v: u16) -> Option<Magic> {
        match v {
            MAGIC_REQUEST => Some(Magic::Request),
            MAGIC_STATUS => Some(Magic::Status),
            MAGIC_KEEP_REQ => Some(Magic::KeepReq),
            MAGIC_KEEP_RESP => Some(Magic::KeepResp),
            _ => None,
        }
    }
}

/// `enum o2net_system_error`: the transport-level verdict in a status reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SysStatus {
    /// 0: the handler ran; `status` is its return value.
    None,
    /// 1: no handler registered for (type, key).
    NoHandler,
    /// 2: payload longer than the handler's max_len.
    Overflow,
    /// 3: the connection died while waiting (never sent by the kernel).
    Died,
}

impl SysStatus {
    /// The wire value.
    pub fn to_u32(self) -> u32 {
        match self {
            SysStatus::None => 0,
            SysStatus::NoHandler => 1,
            SysStatus::Overflow => 2,
            SysStatus::Died => 3,
        }
    }

    /// The verdict named by a wire value; values ≥ `O2NET_ERR_MAX` are not one.
    pub fn from_u32(v: u32) -> Option<SysStatus> {
        match v {
            0 => Some(SysStatus::None),
            1 => Some(SysStatus::NoHandler),
            2 => Some(SysStatus::Overflow),
            3 => Some(SysStatus::Died),
            _ => None,
        }
    }
}

/// `struct o2net_handshake`, with host-order fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Handshake {
    pub protocol_version: u64,
    pub connector_id: u64,
    /// `O2HB_MAX_WRITE_TIMEOUT_MS` = 2000 × (dead_threshold − 1).
    pub heartbeat_timeout_ms: u32,
    pub idle_timeout_ms: u32,
    pub keepalive_delay_ms: u32,
    pub reconnect_delay_ms: u32,
}

impl Handshake {
    /// The bytes, as the kernel lays them out.
    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut b = [0u8; HANDSHAKE_LEN];
        b[0..8].copy_from_slice(&self.protocol_version.to_be_bytes());
        b[8..16].copy_from_slice(&self.connector_id.to_be_bytes());
        b[16..20].copy_from_slice(&self.heartbeat_timeout_ms.to_be_bytes());
        b[20..24].copy_from_slice(&self.idle_timeout_ms.to_be_bytes());
        b[24..28].copy_from_slice(&self.keepalive_delay_ms.to_be_bytes());
        b[28..32].copy_from_slice(&self.reconnect_delay_ms.to_be_bytes());
        b
    }

    /// Reads the first 32 bytes; `None` if fewer are given. Every bit pattern
    /// is a handshake: whether it is acceptable is the connection's decision.
    pub fn decode(b: &[u8]) -> Option<Handshake> {
        let b: &[u8; HANDSHAKE_LEN] = b.get(..HANDSHAKE_LEN)?.try_into().ok()?;
        Some(Handshake {
            protocol_version: u64::from_be_bytes(arr(b, 0)),
            connector_id: u64::from_be_bytes(arr(b, 8)),
            heartbeat_timeout_ms: u32::from_be_bytes(arr(b, 16)),
            idle_timeout_ms: u32::from_be_bytes(arr(b, 20)),
            keepalive_delay_ms: u32::from_be_bytes(arr(b, 24)),
            reconnect_delay_ms: u32::from_be_bytes(arr(b, 28)),
        })
    }
}

/// `struct o2net_msg`, with host-order fields. `magic` is kept raw so that a
/// header with an unknown magic can still be decoded, logged and refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MsgHeader {
    pub magic: u16,
    pub data_len: u16,
    pub msg_type: u16,
    pub pad1: u16,
    pub sys_status: u32,
    pub status: i32,
    pub key: u32,
    pub msg_num: u32,
}

impl MsgHeader {
    /// A request header as `o2net_init_msg` fills it.
    pub fn request(msg_type: u16, key: u32, data_len: u16, msg_num: u32) -> MsgHeader {
        MsgHeader {
            magic: MAGIC_REQUEST,
            data_len,
            msg_type,
            key,
            msg_num,
            ..MsgHeader::default()
        }
    }

    /// A keepalive header: only the magic is set.
    pub fn keepalive(magic: Magic) -> MsgHeader {
        MsgHeader {
            magic: magic.to_u16(),
            ..MsgHeader::default()
        }
    }

    /// The status reply to this request, as `o2net_send_status_magic` turns
    /// the request header around: type, key and msg_num (and pad) kept.
    pub fn reply(&self, sys: SysStatus, status: i32) -> MsgHeader {
        MsgHeader {
            magic: MAGIC_STATUS,
            data_len: 0,
            sys_status: sys.to_u32(),
            status,
            ..*self
        }
    }

    /// The frame kind, if the magic is one of the four.
    pub fn kind(&self) -> Option<Magic> {
        Magic::from_u16(self.magic)
    }

    /// The 24 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&self.magic.to_be_bytes());
        b[2..4].copy_from_slice(&self.data_len.to_be_bytes());
        b[4..6].copy_from_slice(&self.msg_type.to_be_bytes());
        b[6..8].copy_from_slice(&self.pad1.to_be_bytes());
        b[8..12].copy_from_slice(&self.sys_status.to_be_bytes());
        b[12..16].copy_from_slice(&self.status.to_be_bytes());
        b[16..20].copy_from_slice(&self.key.to_be_bytes());
        b[20..24].copy_from_slice(&self.msg_num.to_be_bytes());
        b
    }

    /// Reads the first 24 bytes; `None` if fewer are given.
    pub fn decode(b: &[u8]) -> Option<MsgHeader> {
        let b: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
        Some(MsgHeader {
            magic: u16::from_be_bytes(arr(b, 0)),
            data_len: u16::from_be_bytes(arr(b, 2)),
            msg_type: u16::from_be_bytes(arr(b, 4)),
            pad1: u16::from_be_bytes(arr(b, 6)),
            sys_status: u32::from_be_bytes(arr(b, 8)),
            status: i32::from_be_bytes(arr(b, 12)),
            key: u32::from_be_bytes(arr(b, 16)),
            msg_num: u32::from_be_bytes(arr(b, 20)),
        })
    }
}

/// Copies `N` bytes at `off` out of a fixed-size array; offsets are constants
/// inside the array, so the slice is always in range.
fn arr<const N: usize, const L: usize>(b: &[u8; L], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[off..off + N]);
    out
}

/// One unit read off an o2net stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The peer's 32-byte handshake (always the first frame).
    Handshake(Handshake),
    /// A header and its `data_len` payload bytes. The magic is not checked
    /// here: the kernel reads the payload before it looks at the magic.
    Message(MsgHeader, Bytes),
}

/// Why a stream cannot be decoded further; the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A header announced more than `O2NET_MAX_PAYLOAD_BYTES` (kernel: −EOVERFLOW).
    #[error(
        "message header announces {data_len} payload bytes, more than the maximum {MAX_PAYLOAD}"
    )]
    TooLong { data_len: u16 },
}

/// Incremental decoder of one direction of an o2net connection: a handshake,
/// then header+payload frames. Bytes may arrive split anywhere.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    handshake_done: bool,
    buf: BytesMut,
}

impl StreamDecoder {
    /// A decoder expecting the handshake first.
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// A decoder for a stream whose handshake was already consumed (or that
    /// has none, e.g. a capture cut mid-connection).
    pub fn after_handshake() -> StreamDecoder {
        StreamDecoder {
            handshake_done: true,
            buf: BytesMut::new(),
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received and not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if !self.handshake_done {
            let Some(h) = Handshake::decode(&self.buf) else {
                return Ok(None);
            };
            // Bytes after the handshake stay as the start of the message
            // stream, as the kernel keeps them (o2net_check_handshake).
            let _ = self.buf.split_to(HANDSHAKE_LEN);
            self.handshake_done = true;
            return Ok(Some(Frame::Handshake(h)));
        }
        let Some(hdr) = MsgHeader::decode(&self.buf) else {
            return Ok(None);
        };
        if usize::from(hdr.data_len) > MAX_PAYLOAD {
            return Err(FrameError::TooLong {
                data_len: hdr.data_len,
            });
        }
        let total = HEADER_LEN + usize::from(hdr.data_len);
        if self.buf.len() < total {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total);
        let payload = frame.split_off(HEADER_LEN).freeze();
        Ok(Some(Frame::Message(hdr, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn handshake_layout_matches_the_kernel_table() {
        let h = Handshake {
            protocol_version: 11,
            connector_id: 1,
            heartbeat_timeout_ms: 60000,
            idle_timeout_ms: 30000,
            keepalive_delay_ms: 2000,
            reconnect_delay_ms: 2000,
        };
        let expect: [u8; 32] = [
            0, 0, 0, 0, 0, 0, 0, 11, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xea, 0x60, 0, 0, 0x75, 0x30, 0,
            0, 0x07, 0xd0, 0, 0, 0x07, 0xd0,
        ];
        assert_eq!(h.encode(), expect);
        assert_eq!(Handshake::decode(&expect), Some(h));
    }

    #[test]
    fn reply_echoes_type_key_and_msg_num_with_no_payload() {
        let req = MsgHeader::request(510, 0x666c_6172, 104, 7);
        let rep = req.reply(SysStatus::NoHandler, 0);
        assert_eq!(rep.magic, MAGIC_STATUS);
        assert_eq!(rep.data_len, 0);
        assert_eq!((rep.msg_type, rep.key, rep.msg_num), (510, 0x666c_6172, 7));
        assert_eq!(rep.sys_status, 1);
        let b = rep.encode();
        assert_eq!(&b[0..4], &[0xfa, 0x56, 0, 0]);
        assert_eq!(&b[8..12], &[0, 0, 0, 1]);
    }

    #[test]
    fn negative_status_is_twos_complement_big_endian() {
        let rep = MsgHeader::request(1, 2, 0, 3).reply(SysStatus::None, -22);
        assert_eq!(&rep.encode()[12..16], &[0xff, 0xff, 0xff, 0xea]);
    }

    #[test]
    fn oversized_header_is_refused_before_its_payload_arrives() {
        let mut d = StreamDecoder::after_handshake();
        let mut h = MsgHeader::request(1, 0, 0, 0);
        h.data_len = 4073;
        d.push(&h.encode());
        assert_eq!(d.next_frame(), Err(FrameError::TooLong { data_len: 4073 }));
        let mut d = StreamDecoder::after_handshake();
        h.data_len = 4072;
        d.push(&h.encode());
        assert_eq!(d.next_frame(), Ok(None));
        d.push(&[0u8; 4072]);
        assert!(matches!(d.next_frame(), Ok(Some(Frame::Message(_, p))) if p.len() == 4072));
    }

    fn header() -> impl Strategy<Value = MsgHeader> {
        (
            any::<u16>(),
            0u16..=4072,
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<i32>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(
                |(magic, data_len, msg_type, pad1, sys_status, status, key, msg_num)| MsgHeader {
                    magic,
                    data_len,
                    msg_type,
                    pad1,
                    sys_status,
                    status,
                    key,
                    msg_num,
                },
            )
    }

    proptest! {
        #[test]
        fn header_roundtrip(h in header()) {
            prop_assert_eq!(MsgHeader::decode(&h.encode()), Some(h));
        }

        #[test]
        fn handshake_roundtrip(v in any::<u64>(), c in any::<u64>(), a in any::<u32>(),
                               b in any::<u32>(), k in any::<u32>(), r in any::<u32>()) {
            let h = Handshake { protocol_version: v, connector_id: c, heartbeat_timeout_ms: a,
                                idle_timeout_ms: b, keepalive_delay_ms: k, reconnect_delay_ms: r };
            prop_assert_eq!(Handshake::decode(&h.encode()), Some(h));
        }

        /// Any split of a valid stream decodes to the same frames.
        #[test]
        fn stream_roundtrip_any_split(msgs in proptest::collection::vec((header(), any::<u8>()), 0..8),
                                      cut in 1usize..64) {
            let hs = Handshake { protocol_version: 11, connector_id: 1, heartbeat_timeout_ms: 1,
                                 idle_timeout_ms: 2, keepalive_delay_ms: 3, reconnect_delay_ms: 4 };
            let mut wire = hs.encode().to_vec();
            let mut expect = vec![Frame::Handshake(hs)];
            for (h, fill) in &msgs {
                let payload = vec![*fill; usize::from(h.data_len)];
                wire.extend_from_slice(&h.encode());
                wire.extend_from_slice(&payload);
                expect.push(Frame::Message(*h, Bytes::from(payload)));
            }
            let mut d = StreamDecoder::new();
            let mut got = Vec::new();
            for chunk in wire.chunks(cut) {
                d.push(chunk);
                while let Some(f) = d.next_frame().map_err(|e| TestCaseError::fail(e.to_string()))? {
                    got.push(f);
                }
            }
            prop_assert_eq!(got, expect);
            prop_assert_eq!(d.buffered(), 0);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..9000),
                                       cut in 1usize..5000) {
            let mut d = StreamDecoder::new();
            for chunk in data.chunks(cut) {
                d.push(chunk);
                while let Ok(Some(_)) = d.next_frame() {}
            }
        }
    }
}
