//! Fuzz target for the o2cb control socket's encoding (`o2cb/src/daemon/wire.rs`, compiled
//! here as is: o2cb is a binary crate). No input panics; every request line the daemon
//! accepts encodes back to a line that decodes to the same words, and every reply the
//! client accepts encodes back to bytes that read as the same reply.
#![no_main]

#[path = "../../o2cb/src/daemon/wire.rs"]
#[allow(dead_code)]
mod wire;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The daemon decodes each line it reads on its own.
    for line in data.split_inclusive(|b| *b == b'\n') {
        if let Ok(words) = wire::decode_request(line) {
            let again = wire::encode_request(&words);
            assert_eq!(
                wire::decode_request(&again).as_ref(),
                Ok(&words),
                "request re-encoded differently"
            );
        }
    }
    // The client reads replies from the stream, one after the other.
    let mut stream = data;
    while let Ok(reply) = wire::read_reply(&mut stream) {
        let bytes = reply.encode();
        let again = wire::read_reply(&mut &bytes[..]).expect("an encoded reply reads back");
        assert_eq!(again, reply, "reply re-encoded differently");
    }
});
