//! Fuzzes every o2dlm payload decoder: the first byte picks the message type (500 + n % 23),
//! the rest is the payload. Whatever decodes must re-encode to bytes that decode to the same
//! value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use o2dlm::wire::DlmMessage;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, payload)) = data.split_first() else {
        return;
    };
    let msg_type = 500 + u16::from(sel % 23);
    if let Ok(msg) = DlmMessage::decode(msg_type, payload) {
        let again = DlmMessage::decode(msg_type, &msg.to_vec()).expect("canonical bytes decode");
        assert_eq!(again, msg);
    }
});
