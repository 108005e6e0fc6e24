//! Recovery and migration take anything: arbitrary sequences of node deaths, time, lock
//! answers, send completions, leaves and decoded messages never panic the state machines.

use o2dlm::recovery_cluster::drive_node_from_bytes;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn arbitrary_inputs_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let applied = drive_node_from_bytes(&data);
        prop_assert!(applied <= data.len() / 2);
    }
}

#[test]
fn inputs_are_read_in_pairs_and_messages_with_their_payload() {
    // A node-down of node 3, a leave, then a BEGIN_RECO (type 517) of 8 bytes from node 2.
    let data = [0, 3, 4, 0, 5, 17, 8, 1, 3, 0, 0, 0, 0, 0, 0];
    assert_eq!(drive_node_from_bytes(&data), 3);
}
