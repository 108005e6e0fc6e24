//! The crate's error type and the Linux errno numbers o2net puts on the wire
//! or returns to senders (x86 / asm-generic numbering, docs/o2net.md §4).

/// Errno values as the kernel numbers them on x86 and asm-generic targets.
/// They are wire values (handler statuses), so they are fixed here rather
/// than taken from the host's libc.
pub mod errno {
    pub const ENOENT: i32 = 2;
    pub const ESRCH: i32 = 3;
    pub const EIO: i32 = 5;
    pub const EAGAIN: i32 = 11;
    pub const ENOMEM: i32 = 12;
    pub const EEXIST: i32 = 17;
    pub const EINVAL: i32 = 22;
    pub const ELOOP: i32 = 40;
    pub const EPROTO: i32 = 71;
    pub const EOVERFLOW: i32 = 75;
    pub const ENOPROTOOPT: i32 = 92;
    pub const ENOTCONN: i32 = 107;
    pub const EHOSTDOWN: i32 = 112;
}

/// Everything o2net can refuse or fail. [`NetError::errno`] gives the
/// negative errno the kernel's `o2net_send_message_vec` /
/// `o2net_register_handler` would have returned.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// o2net is not running (shut down): −ESRCH.
    #[error("o2net is not running on this node")]
    NotRunning,
    /// A vectored send with no vectors: −EINVAL.
    #[error("message type {msg_type} key {key:#010x} to node {node}: empty vector")]
    EmptyVector { node: u8, msg_type: u16, key: u32 },
    /// Payload above 4072 bytes: −EINVAL.
    #[error("message type {msg_type} key {key:#010x} to node {node}: payload of {len} bytes exceeds 4072")]
    TooLarge {
        node: u8,
        msg_type: u16,
        key: u32,
        len: usize,
    },
    /// Sending to ourselves: −ELOOP.
    #[error("message type {msg_type} to node {node}: that is this node")]
    ToSelf { node: u8, msg_type: u16 },
    /// No usable connection (never connected since heartbeat saw the node,
    /// handshake refused, connection lost, node down): −ENOTCONN.
    #[error("not connected to node {node}")]
    NotConnected { node: u8 },
    /// The connection died while waiting for the reply (O2NET_ERR_DIED): −EHOSTDOWN.
    #[error("node {node} went down before replying to message type {msg_type} key {key:#010x}")]
    HostDown { node: u8, msg_type: u16, key: u32 },
    /// The peer has no handler for (type, key) (O2NET_ERR_NO_HNDLR): −ENOPROTOOPT.
    #[error("node {node} has no handler for message type {msg_type} key {key:#010x}")]
    NoHandler { node: u8, msg_type: u16, key: u32 },
    /// The payload exceeded the peer handler's max_len (O2NET_ERR_OVERFLOW): −EOVERFLOW.
    #[error("node {node} refused message type {msg_type} key {key:#010x}: payload above its handler's limit")]
    Overflow { node: u8, msg_type: u16, key: u32 },
    /// A reply carried a sys_status the kernel never sends (it would BUG): −EPROTO.
    #[error("node {node} replied to message type {msg_type} key {key:#010x} with unknown system status {value}")]
    BadSysStatus {
        node: u8,
        msg_type: u16,
        key: u32,
        value: u32,
    },
    /// Handler registration with type 0 or max_len above 4072: −EINVAL.
    #[error("cannot register a handler for message type {msg_type} key {key:#010x} with max_len {max_len}")]
    InvalidHandler {
        msg_type: u16,
        key: u32,
        max_len: u32,
    },
    /// A handler for (type, key) exists already: −EEXIST.
    #[error("a handler for message type {msg_type} key {key:#010x} is already registered")]
    HandlerExists { msg_type: u16, key: u32 },
    /// The configuration cannot work (timeouts, local node missing).
    #[error("o2net configuration: {0}")]
    Config(String),
    /// A socket operation of the driver failed.
    // The io error is in the message and deliberately not `source()`, so
    // that a chain printer (anyhow's `{:#}`) says it once.
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
}

impl NetError {
    /// The negative errno the kernel returns for this failure.
    pub fn errno(&self) -> i32 {
        use errno::*;
        -match self {
            NetError::NotRunning => ESRCH,
            NetError::EmptyVector { .. }
            | NetError::TooLarge { .. }
            | NetError::InvalidHandler { .. }
            | NetError::Config(_) => EINVAL,
            NetError::ToSelf { .. } => ELOOP,
            NetError::NotConnected { .. } => ENOTCONN,
            NetError::HostDown { .. } => EHOSTDOWN,
            NetError::NoHandler { .. } => ENOPROTOOPT,
            NetError::Overflow { .. } => EOVERFLOW,
            NetError::BadSysStatus { .. } => EPROTO,
            NetError::HandlerExists { .. } => EEXIST,
            NetError::Io { err, .. } => err.raw_os_error().unwrap_or(EIO),
        }
    }
}
