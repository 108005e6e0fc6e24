//! Fuzzes the recovery and migration state machines of one node: the bytes are a sequence
//! of inputs (node deaths, time, `$RECOVERY` answers, send completions, a leave, decoded DLM
//! messages) as `o2dlm::recovery_cluster::drive_node_from_bytes` reads them; none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    o2dlm::recovery_cluster::drive_node_from_bytes(data);
});
