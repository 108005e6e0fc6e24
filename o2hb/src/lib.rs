//! o2hb: the O2CB disk heartbeat, byte-compatible with the kernel's.
//!
//! Layers, from the bytes up:
//! - [`block`]: the on-disk heartbeat block (`o2hb_disk_heartbeat_block`) and its CRC.
//! - [`core`]: the sans-I/O heartbeat set — per-region liveness state machines and the
//!   global (multi-region) bookkeeping, driven by `handle(now, input) -> outputs`.
//! - [`regionfile`] and [`ocfs2`]: where a region lives — a plain region file made by
//!   `o2cb heartbeat format`, or the heartbeat system file of a volume made by `mkfs.ocfs2`;
//!   [`source`] tells them apart.
//! - [`disk`] and [`driver`]: O_DIRECT block I/O and the threaded driver with a real clock,
//!   random generations, fencing and node up/down subscriptions.
//!
//! The facts followed are in `docs/o2hb.md` (Linux 6.1 `fs/ocfs2/cluster/heartbeat.c`).
//!
//! # For the other layers
//!
//! - Simulation: drive [`HeartbeatSet`] directly (`handle(Now, Input) -> Vec<Output>`); it never
//!   reads a clock, the generation is an input, and the simulator plays the disk.
//! - o2net / o2dlm in a node daemon: [`driver::Heartbeat::register_callback`] with
//!   [`driver::O2NET_HB_PRI`], [`driver::DLM_HB_NODE_UP_PRI`], [`driver::DLM_HB_NODE_DOWN_PRI`]
//!   runs callbacks in the kernel's order; [`driver::Heartbeat::subscribe`] gives a channel.
//! - Timeout negotiation over o2net: message types 1 and 2 ([`NegoKind`]), one-byte payload
//!   (the sender's node number), key [`core::nego_key`]; outgoing through
//!   [`driver::DriverConfig::nego_sender`], incoming with
//!   [`driver::Heartbeat::deliver_nego_by_key`].
//! - Message keys elsewhere: [`crc32_le`] is the kernel's.

pub mod block;
pub mod core;
pub mod disk;
pub mod driver;
mod error;
pub mod iothread;
pub mod nodemap;
pub mod ocfs2;
pub mod regionfile;
pub mod source;

pub use crate::block::{HbBlock, SlotView, HB_BLOCK_HEADER_BYTES};
pub use crate::core::{
    Geometry, HeartbeatSet, Input, LogEvent, LogLevel, Mode, NegoKind, Now, Output, RegionConfig,
    RegionId, SetConfig, TimerKind, Timing,
};
pub use crate::driver::{FenceAction, HbEvent, Heartbeat};
pub use crate::error::Error;
pub use crate::nodemap::NodeMap;

/// Highest number of node slots in a region, and one more than the highest node number
/// (`O2NM_MAX_NODES`).
pub const MAX_NODES: usize = 255;
/// Most regions one heartbeat set holds (`O2NM_MAX_REGIONS`).
pub const MAX_REGIONS: usize = 32;
/// Longest region name (`O2HB_MAX_REGION_NAME_LEN`).
pub const MAX_REGION_NAME_LEN: usize = 32;

/// The Linux kernel's `crc32_le(seed, bytes)`: reflected CRC-32 (polynomial 0xEDB88320)
/// with no pre- or post-inversion. Heartbeat blocks use seed 0; o2net message keys use it too.
///
/// ```
/// assert_eq!(o2hb::crc32_le(0, b"123456789"), 0x2DFD2D88);
/// ```
pub fn crc32_le(seed: u32, bytes: &[u8]) -> u32 {
    // crc32fast inverts on the way in and out; undo both to get the kernel's raw register.
    let mut hasher = crc32fast::Hasher::new_with_initial(!seed);
    hasher.update(bytes);
    !hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::crc32_le;

    #[test]
    fn crc32_le_matches_the_spec_vectors() {
        assert_eq!(crc32_le(0, b""), 0);
        assert_eq!(crc32_le(0, b"a"), 0x3AB5_51CE);
        assert_eq!(crc32_le(0, b"123456789"), 0x2DFD_2D88);
        assert_eq!(crc32_le(0, &[0u8; 512]), 0);
    }

    #[test]
    fn crc32_le_chains_like_the_kernel() {
        // Feeding a buffer in two parts, passing the first result as the seed, equals one pass.
        let data = b"heartbeat region 0123456789";
        let (a, b) = data.split_at(11);
        assert_eq!(crc32_le(crc32_le(0, a), b), crc32_le(0, data));
        // A non-zero seed changes the result (o2hb nego keys use region_num + 32).
        assert_ne!(crc32_le(32, data), crc32_le(0, data));
    }
}
