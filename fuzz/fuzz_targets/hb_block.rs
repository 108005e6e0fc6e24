//! Heartbeat block decoder: arbitrary slot bytes never panic, and a decoded block re-encodes
//! to bytes that decode to the same fields with a good CRC.
#![no_main]

use libfuzzer_sys::fuzz_target;
use o2hb::SlotView;

fuzz_target!(|data: &[u8]| {
    if let Ok(view) = SlotView::parse(data) {
        let len = data.len().clamp(32, 4096);
        let bytes = view
            .block
            .to_bytes(len)
            .expect("a block of 32+ bytes encodes");
        let again = SlotView::parse(&bytes).expect("re-encoded block decodes");
        assert!(again.crc_ok);
        assert_eq!(again.block, view.block);
    }
});
