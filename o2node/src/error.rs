//! Why the node refused a request: every error names the node and what was asked.

/// A request the node stack could not take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("node configuration: {0}")]
    Config(String),
    #[error("node {node} is starting: its heartbeat is not steady yet, so it cannot know the live nodes (ask again, or wait)")]
    Starting { node: u8 },
    #[error("node {node} is going offline")]
    Stopping { node: u8 },
    #[error("node {node} is offline")]
    Stopped { node: u8 },
    #[error("node {node} has fenced itself")]
    Fenced { node: u8 },
    #[error("domain {domain} is not joined on node {node}")]
    NotJoined { node: u8, domain: String },
    #[error("domain {domain} is already joined (or being joined or left) on node {node}")]
    AlreadyJoined { node: u8, domain: String },
    #[error("domain {domain}'s o2net key {key:#010x} is the key of domain {other}, joined on node {node}")]
    KeyCollision {
        node: u8,
        domain: String,
        other: String,
        key: u32,
    },
    #[error("node {node}: heartbeat region {region}: {message}")]
    Region {
        node: u8,
        region: String,
        message: String,
    },
    #[error("node {node}: o2net: {message}")]
    Net { node: u8, message: String },
}

impl NodeError {
    /// The negative errno the kernel answers for the same refusal, where there is one.
    pub fn errno(&self) -> i32 {
        match self {
            NodeError::Config(_) | NodeError::KeyCollision { .. } => -22,
            // dlm_register_domain of a node that is not heartbeating: EPROTO.
            NodeError::Starting { .. } => -71,
            NodeError::Stopping { .. } | NodeError::Stopped { .. } => -108,
            NodeError::Fenced { .. } => -5,
            NodeError::NotJoined { .. } => -2,
            NodeError::AlreadyJoined { .. } => -17,
            NodeError::Region { .. } => -16,
            NodeError::Net { .. } => -107,
        }
    }
}
