//! Fuzzes the o2net stream decoder: the first byte picks how the rest is
//! split into reads. Decoding must never panic, every frame it returns must
//! re-encode to the bytes it was read from, and nothing is lost or invented.
#![no_main]

use libfuzzer_sys::fuzz_target;
use o2net::wire::{Frame, StreamDecoder, HANDSHAKE_LEN, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(sel).max(1);
    let mut d = StreamDecoder::new();
    let mut consumed = 0usize;
    for piece in stream.chunks(chunk) {
        d.push(piece);
        loop {
            match d.next_frame() {
                Ok(Some(Frame::Handshake(h))) => {
                    assert_eq!(&h.encode()[..], &stream[consumed..consumed + HANDSHAKE_LEN]);
                    consumed += HANDSHAKE_LEN;
                }
                Ok(Some(Frame::Message(h, p))) => {
                    assert_eq!(&h.encode()[..], &stream[consumed..consumed + HEADER_LEN]);
                    assert_eq!(usize::from(h.data_len), p.len());
                    assert_eq!(&p[..], &stream[consumed + HEADER_LEN..consumed + HEADER_LEN + p.len()]);
                    consumed += HEADER_LEN + p.len();
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert_eq!(consumed + d.buffered(), stream.len());
});
