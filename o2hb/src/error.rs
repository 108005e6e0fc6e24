//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in o2hb; messages name the file, region, block or node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("heartbeat block too short: {len} bytes, need at least {need}")]
    BlockTooShort { len: usize, need: usize },
    #[error("invalid block_bytes {0}: must be a power of two from 512 to 4096")]
    BadBlockBytes(u64),
    #[error("invalid blocks {0}: a region has 1 to 255 slots")]
    BadBlocks(u64),
    #[error("invalid start_block 0: the first slot cannot be block 0")]
    ZeroStartBlock,
    #[error("region name {0:?} is empty or longer than 32 characters")]
    BadRegionName(String),
    #[error("node number {0} is out of range (0 to 254)")]
    BadNode(u32),
    #[error("node {node} has no slot in region {region} (it has {blocks} slots)")]
    NodeOutsideRegion {
        node: u8,
        region: String,
        blocks: u16,
    },
    #[error("dead threshold {0} is too small (the minimum is 3)")]
    BadDeadThreshold(u32),
    #[error("heartbeat period {0} ms is out of range (10 to 2000)")]
    BadPeriod(u64),
    #[error("too many regions: at most 32 in a heartbeat set")]
    TooManyRegions,
    #[error("a region named {0} already exists")]
    DuplicateRegion(String),
    #[error("no region with id {0}")]
    NoSuchRegion(usize),
    #[error("region {0} is already started")]
    AlreadyStarted(String),
    // The io error is shown in the message and deliberately not exposed as
    // `source()`, so that a chain printer (anyhow's `{:#}`) says it once.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: not a heartbeat region file: {reason}")]
    BadRegionFile { path: PathBuf, reason: String },
    #[error("{path}: not an OCFS2 volume: {reason}")]
    NotOcfs2 { path: PathBuf, reason: String },
    #[error("{path}: bad OCFS2 {what} at block {block}: {reason}")]
    BadOcfs2 {
        path: PathBuf,
        what: &'static str,
        block: u64,
        reason: String,
    },
    #[error("{path}: neither an o2cb heartbeat region file nor an OCFS2 volume")]
    UnknownRegionKind { path: PathBuf },
    #[error("region {region}: heartbeat start aborted (unable to stabilize heartbeat)")]
    StartAborted { region: String },
    #[error("the heartbeat driver has stopped")]
    DriverGone,
    #[error("this node was fenced")]
    Fenced,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err: source,
        }
    }
}
