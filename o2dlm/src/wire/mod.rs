//! o2dlm wire facts: lock modes, `LKM_*` flags, `dlm_status` values, the DLM message types
//! 500–522, lock and domain names, node bitmaps and the domain key, plus the typed payload
//! codecs of every DLM message in [`messages`].
//!
//! Everything here is byte-for-byte what Linux 6.1's o2dlm puts on the wire (`docs/o2dlm.md`
//! §1–§7): payload integers are big-endian, names travel in fixed-size zero-padded
//! fields with a separate length byte, and every reply is the 32-bit o2net `status`.

mod codec;
pub mod messages;

use std::fmt;

pub use codec::{DecodeError, Problem};
pub use messages::*;

/// `DLM_LVB_LEN`: size of a lock value block.
pub const LVB_LEN: usize = 64;
/// A lock value block: 64 opaque bytes that travel with a lock resource.
pub type Lvb = [u8; LVB_LEN];
/// `DLM_LOCKID_NAME_MAX`: the longest lock name, in bytes.
pub const LOCK_NAME_MAX: usize = 32;
/// `O2NM_MAX_NAME_LEN`: the size of the name fields on the wire; a domain name must be shorter.
pub const NAME_FIELD_LEN: usize = 64;
/// The longest domain name (`strlen(domain) < O2NM_MAX_NAME_LEN`).
pub const DOMAIN_NAME_MAX: usize = NAME_FIELD_LEN - 1;
/// `O2NM_MAX_NODES`: node numbers are 0..=254.
pub const MAX_NODES: usize = 255;
/// Node number meaning "none / unknown owner" (`DLM_LOCK_RES_OWNER_UNKNOWN`).
pub const NODE_UNKNOWN: u8 = 255;
/// `DLM_MAX_MIGRATABLE_LOCKS`: lock records in one `DLM_MIG_LOCKRES_MSG`.
pub const MAX_MIGRATABLE_LOCKS: usize = 240;
/// `DLM_MOD_KEY`: the o2net key of the domain-join messages (510, 511, 512, 519, 520).
pub const DLM_MOD_KEY: u32 = 0x666c_6172;
/// `DLM_RECOVERY_LOCK_NAME`: the lock used to elect a recovery master.
pub const RECOVERY_LOCK_NAME: &[u8] = b"$RECOVERY";
/// The dlm protocol this implementation speaks (`dlm_protocol`).
pub const DLM_PROTOCOL: ProtocolVersion = ProtocolVersion { major: 1, minor: 3 };
/// The fs/user locking protocol of ocfs2 and dlmfs (`OCFS2_LOCKING_PROTOCOL_*`).
pub const FS_PROTOCOL: ProtocolVersion = ProtocolVersion { major: 1, minor: 0 };

/// The wire value of "no mode" (`LKM_IVMODE`, -1 as s8).
pub const LKM_IVMODE: i8 = -1;

/// The lock modes o2dlm supports (`dlmlock` rejects CR, CW and PW with `DLM_BADPARAM`).
///
/// Ordered by strength, so `a > b` means "a is a stronger mode than b", as the kernel compares
/// its numeric mode values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockMode {
    /// `LKM_NLMODE` (0): null, compatible with everything.
    Nl,
    /// `LKM_PRMODE` (3): protected read, shared.
    Pr,
    /// `LKM_EXMODE` (5): exclusive.
    Ex,
}

impl LockMode {
    /// All supported modes, weakest first.
    pub const ALL: [LockMode; 3] = [LockMode::Nl, LockMode::Pr, LockMode::Ex];

    /// The mode's wire value (s8).
    pub fn to_wire(self) -> i8 {
        match self {
            LockMode::Nl => 0,
            LockMode::Pr => 3,
            LockMode::Ex => 5,
        }
    }

    /// Reads a mode byte: `Ok(None)` for `LKM_IVMODE`, an error for the unsupported or
    /// undefined values.
    pub fn from_wire(v: i8) -> Result<Option<LockMode>, i8> {
        match v {
            LKM_IVMODE => Ok(None),
            0 => Ok(Some(LockMode::Nl)),
            3 => Ok(Some(LockMode::Pr)),
            5 => Ok(Some(LockMode::Ex)),
            other => Err(other),
        }
    }

    /// `dlm_lock_compatible(existing, request)`: may a lock in `request` mode be held while
    /// another lock holds `existing`?
    pub fn compatible(existing: LockMode, request: LockMode) -> bool {
        use LockMode::*;
        !matches!((existing, request), (Pr, Ex) | (Ex, Pr) | (Ex, Ex))
    }

    /// The kernel's short name of the mode, as debugfs prints it.
    pub fn name(self) -> &'static str {
        match self {
            LockMode::Nl => "NL",
            LockMode::Pr => "PR",
            LockMode::Ex => "EX",
        }
    }
}

/// The wire byte of an optional mode (`None` is `LKM_IVMODE`).
pub fn mode_to_wire(mode: Option<LockMode>) -> i8 {
    mode.map_or(LKM_IVMODE, LockMode::to_wire)
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `LKM_*` flags of `dlmlock`/`dlmunlock`, also carried in the lock messages' `flags` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LkmFlags(pub u32);

impl LkmFlags {
    pub const ORPHAN: LkmFlags = LkmFlags(0x0000_0010);
    pub const PARENTABLE: LkmFlags = LkmFlags(0x0000_0020);
    pub const BLOCK: LkmFlags = LkmFlags(0x0000_0040);
    /// The caller asserts nobody else masters the resource.
    pub const LOCAL: LkmFlags = LkmFlags(0x0000_0080);
    /// Read (on grant) or write (on EX down-convert/unlock) the lock value block.
    pub const VALBLK: LkmFlags = LkmFlags(0x0000_0100);
    /// Trylock: fail with `DLM_NOTQUEUED` rather than wait.
    pub const NOQUEUE: LkmFlags = LkmFlags(0x0000_0200);
    pub const CONVERT: LkmFlags = LkmFlags(0x0000_0400);
    pub const NODLCKWT: LkmFlags = LkmFlags(0x0000_0800);
    pub const UNLOCK: LkmFlags = LkmFlags(0x0000_1000);
    /// Cancel a pending convert or blocked request.
    pub const CANCEL: LkmFlags = LkmFlags(0x0000_2000);
    pub const DEQALL: LkmFlags = LkmFlags(0x0000_4000);
    /// Invalidate the value block: accepted by o2dlm, with no effect.
    pub const INVVALBLK: LkmFlags = LkmFlags(0x0000_8000);
    pub const SYNCSTS: LkmFlags = LkmFlags(0x0001_0000);
    pub const TIMEOUT: LkmFlags = LkmFlags(0x0002_0000);
    pub const SNGLDLCK: LkmFlags = LkmFlags(0x0004_0000);
    pub const FINDLOCAL: LkmFlags = LkmFlags(0x0008_0000);
    pub const PROC_OWNED: LkmFlags = LkmFlags(0x0010_0000);
    pub const XID: LkmFlags = LkmFlags(0x0020_0000);
    pub const XID_CONFLICT: LkmFlags = LkmFlags(0x0040_0000);
    pub const FORCE: LkmFlags = LkmFlags(0x0080_0000);
    pub const REVVALBLK: LkmFlags = LkmFlags(0x0100_0000);
    /// Internal: a lock recreated by migration.
    pub const MIGRATION: LkmFlags = LkmFlags(0x1000_0000);
    /// On the wire: the message carries the sender's LVB for the master.
    pub const PUT_LVB: LkmFlags = LkmFlags(0x2000_0000);
    /// On the wire: the requester wants the resource's LVB (appended to its proxy AST).
    pub const GET_LVB: LkmFlags = LkmFlags(0x4000_0000);
    /// Internal: the recovery-master election lock "$RECOVERY".
    pub const RECOVERY: LkmFlags = LkmFlags(0x8000_0000);

    /// `LKM_VALID_FLAGS`: what `dlmlock` accepts.
    pub const VALID_LOCK: LkmFlags = LkmFlags(
        Self::VALBLK.0
            | Self::CONVERT.0
            | Self::UNLOCK.0
            | Self::CANCEL.0
            | Self::INVVALBLK.0
            | Self::FORCE.0
            | Self::RECOVERY.0
            | Self::LOCAL.0
            | Self::NOQUEUE.0,
    );
    /// What `dlmunlock` accepts.
    pub const VALID_UNLOCK: LkmFlags =
        LkmFlags(Self::CANCEL.0 | Self::VALBLK.0 | Self::INVVALBLK.0);

    /// No flag set.
    pub const fn empty() -> LkmFlags {
        LkmFlags(0)
    }
    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: LkmFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether any bit of `other` is set here.
    pub const fn intersects(self, other: LkmFlags) -> bool {
        self.0 & other.0 != 0
    }
    /// These flags without `other`'s bits.
    pub const fn without(self, other: LkmFlags) -> LkmFlags {
        LkmFlags(self.0 & !other.0)
    }
}

impl std::ops::BitOr for LkmFlags {
    type Output = LkmFlags;
    fn bitor(self, rhs: LkmFlags) -> LkmFlags {
        LkmFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for LkmFlags {
    fn bitor_assign(&mut self, rhs: LkmFlags) {
        self.0 |= rhs.0;
    }
}

/// lksb flags (`dlm_lockstatus.flags`): the LVB direction pending for a lock. Their low byte
/// also travels in `dlm_migratable_lock.flags`.
pub const LKSB_PUT_LVB: u8 = 0x02;
/// See [`LKSB_PUT_LVB`].
pub const LKSB_GET_LVB: u8 = 0x04;

macro_rules! dlm_status {
    ($($(#[$doc:meta])* $name:ident = $val:literal => $kname:literal,)*) => {
        /// `enum dlm_status`: the result of a lock operation, and the o2net reply status of
        /// the lock, convert, unlock and proxy-AST messages.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DlmStatus {
            $($(#[$doc])* $name = $val,)*
        }

        impl DlmStatus {
            /// Every status, in numeric order.
            pub const ALL: &'static [DlmStatus] = &[$(DlmStatus::$name,)*];

            /// The status for a wire value, if it is one.
            pub fn from_wire(v: i32) -> Option<DlmStatus> {
                match v {
                    $($val => Some(DlmStatus::$name),)*
                    _ => None,
                }
            }

            /// The kernel's name (`dlm_errname`).
            pub fn name(self) -> &'static str {
                match self {
                    $(DlmStatus::$name => $kname,)*
                }
            }
        }
    };
}

dlm_status! {
    Normal = 0 => "DLM_NORMAL",
    Granted = 1 => "DLM_GRANTED",
    Denied = 2 => "DLM_DENIED",
    DeniedNolocks = 3 => "DLM_DENIED_NOLOCKS",
    Working = 4 => "DLM_WORKING",
    Blocked = 5 => "DLM_BLOCKED",
    BlockedOrphan = 6 => "DLM_BLOCKED_ORPHAN",
    DeniedGracePeriod = 7 => "DLM_DENIED_GRACE_PERIOD",
    Syserr = 8 => "DLM_SYSERR",
    Nosupport = 9 => "DLM_NOSUPPORT",
    /// Cancel found the lock already granted.
    Cancelgrant = 10 => "DLM_CANCELGRANT",
    /// No such lock (cookie, node) on the resource.
    Ivlockid = 11 => "DLM_IVLOCKID",
    Sync = 12 => "DLM_SYNC",
    Badtype = 13 => "DLM_BADTYPE",
    Badresource = 14 => "DLM_BADRESOURCE",
    Maxhandles = 15 => "DLM_MAXHANDLES",
    Noclinfo = 16 => "DLM_NOCLINFO",
    /// The lock manager could not be reached (network timeout or link down).
    Nolockmgr = 17 => "DLM_NOLOCKMGR",
    Nopurged = 18 => "DLM_NOPURGED",
    Badargs = 19 => "DLM_BADARGS",
    Void = 20 => "DLM_VOID",
    /// NOQUEUE request could not be granted at once.
    Notqueued = 21 => "DLM_NOTQUEUED",
    /// Name too long.
    Ivbuflen = 22 => "DLM_IVBUFLEN",
    Cvtungrant = 23 => "DLM_CVTUNGRANT",
    Badparam = 24 => "DLM_BADPARAM",
    Valnotvalid = 25 => "DLM_VALNOTVALID",
    Rejected = 26 => "DLM_REJECTED",
    Abort = 27 => "DLM_ABORT",
    Cancel = 28 => "DLM_CANCEL",
    Ivreshandle = 29 => "DLM_IVRESHANDLE",
    Deadlock = 30 => "DLM_DEADLOCK",
    DeniedNoasts = 31 => "DLM_DENIED_NOASTS",
    /// The resource is busy (mastery or a local operation in progress): retry.
    Forward = 32 => "DLM_FORWARD",
    Timeout = 33 => "DLM_TIMEOUT",
    Ivgroupid = 34 => "DLM_IVGROUPID",
    VersConflict = 35 => "DLM_VERS_CONFLICT",
    BadDevicePath = 36 => "DLM_BAD_DEVICE_PATH",
    NoDevicePermission = 37 => "DLM_NO_DEVICE_PERMISSION",
    NoControlDevice = 38 => "DLM_NO_CONTROL_DEVICE",
    /// The resource's master died and recovery is under way: retry.
    Recovering = 39 => "DLM_RECOVERING",
    /// The resource is migrating to another master: retry.
    Migrating = 40 => "DLM_MIGRATING",
    Maxstats = 41 => "DLM_MAXSTATS",
}

impl DlmStatus {
    /// The status's wire value.
    pub fn to_wire(self) -> i32 {
        self as i32
    }

    /// The errno a stackglue user sees (`status_map` in stack_o2cb.c), as a negative number
    /// in the x86/asm-generic numbering (0 for `DLM_NORMAL`).
    pub fn to_errno(self) -> i32 {
        use DlmStatus::*;
        const EAGAIN: i32 = 11;
        const EBUSY: i32 = 16;
        const EACCES: i32 = 13;
        const ENOMEM: i32 = 12;
        const EPROTO: i32 = 71;
        const EPERM: i32 = 1;
        const EDEADLK: i32 = 35;
        const ETIMEDOUT: i32 = 110;
        const EOPNOTSUPP: i32 = 95;
        const ENOENT: i32 = 2;
        const ENOTCONN: i32 = 107;
        const ERESTART: i32 = 85;
        const EINVAL: i32 = 22;
        // DLM_ECANCEL, from linux/dlm.h: the fs sees a cancelled request with this value.
        const DLM_ECANCEL: i32 = 0x10001;
        match self {
            Normal => 0,
            Notqueued => -EAGAIN,
            Cancelgrant => -EBUSY,
            Denied | DeniedNolocks | Working | DeniedGracePeriod => -EACCES,
            Syserr | Maxhandles => -ENOMEM,
            Nosupport => -EPROTO,
            Cvtungrant | Rejected | NoDevicePermission => -EPERM,
            Cancel => -DLM_ECANCEL,
            Deadlock => -EDEADLK,
            Timeout => -ETIMEDOUT,
            VersConflict => -EOPNOTSUPP,
            BadDevicePath | NoControlDevice => -ENOENT,
            Recovering => -ENOTCONN,
            Migrating => -ERESTART,
            _ => -EINVAL,
        }
    }

    /// Whether a requester retries the operation after this status (recovery, migration or
    /// mastery in progress on the resource).
    pub fn is_retry(self) -> bool {
        matches!(
            self,
            DlmStatus::Recovering | DlmStatus::Migrating | DlmStatus::Forward
        )
    }
}

/// Linux (x86/asm-generic) errno values that o2net sends fail with, as negative numbers.
pub mod errno {
    pub const EBADF: i32 = -9;
    pub const EAGAIN: i32 = -11;
    pub const ENOMEM: i32 = -12;
    pub const EINVAL: i32 = -22;
    pub const EPIPE: i32 = -32;
    pub const ENAMETOOLONG: i32 = -36;
    pub const ENOPROTOOPT: i32 = -92;
    pub const ENETDOWN: i32 = -100;
    pub const ENETUNREACH: i32 = -101;
    pub const ENETRESET: i32 = -102;
    pub const ECONNABORTED: i32 = -103;
    pub const ECONNRESET: i32 = -104;
    pub const ENOTCONN: i32 = -107;
    pub const ESHUTDOWN: i32 = -108;
    pub const ETIMEDOUT: i32 = -110;
    pub const ECONNREFUSED: i32 = -111;
    pub const EHOSTDOWN: i32 = -112;
    pub const EHOSTUNREACH: i32 = -113;
    pub const ERESTARTSYS: i32 = -512;
}

/// `dlm_is_host_down`: whether a failed send means the target node is (being) lost, so the
/// requester waits for recovery instead of failing.
pub fn is_host_down(err: i32) -> bool {
    use errno::*;
    matches!(
        err,
        EBADF
            | ECONNREFUSED
            | ENOTCONN
            | ECONNRESET
            | EPIPE
            | EHOSTDOWN
            | EHOSTUNREACH
            | ETIMEDOUT
            | ECONNABORTED
            | ENETDOWN
            | ENETUNREACH
            | ENETRESET
            | ESHUTDOWN
            | ENOPROTOOPT
            | EINVAL
    )
}

impl DlmStatus {
    /// `dlm_err_to_dlm_status`: the status for a send that failed with `err` (negative errno)
    /// and is not treated as the host going down.
    pub fn from_send_error(err: i32) -> DlmStatus {
        use errno::*;
        match err {
            ENOMEM => DlmStatus::Syserr,
            // o2net_link_down's list, plus timeouts.
            ETIMEDOUT | ERESTARTSYS | EBADF | ECONNREFUSED | ENOTCONN | ECONNRESET | EPIPE => {
                DlmStatus::Nolockmgr
            }
            EINVAL => DlmStatus::Badparam,
            ENAMETOOLONG => DlmStatus::Ivbuflen,
            _ => DlmStatus::Badargs,
        }
    }
}

impl fmt::Display for DlmStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

macro_rules! msg_types {
    ($($(#[$doc:meta])* $name:ident = $val:literal => $kname:literal, $key:ident;)*) => {
        /// The o2net message types of o2dlm (500–522).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum MsgType {
            $($(#[$doc])* $name = $val,)*
        }

        impl MsgType {
            /// Every DLM message type, in numeric order.
            pub const ALL: &'static [MsgType] = &[$(MsgType::$name,)*];

            /// The type for an o2net `msg_type`, if it is a DLM one.
            pub fn from_wire(v: u16) -> Option<MsgType> {
                match v {
                    $($val => Some(MsgType::$name),)*
                    _ => None,
                }
            }

            /// The kernel's name of the message.
            pub fn name(self) -> &'static str {
                match self {
                    $(MsgType::$name => $kname,)*
                }
            }

            /// Which o2net key the message is sent with.
            pub fn key_kind(self) -> KeyKind {
                match self {
                    $(MsgType::$name => KeyKind::$key,)*
                }
            }
        }
    };
}

/// Which o2net key a DLM message uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// The domain's key, [`domain_key`].
    Domain,
    /// [`DLM_MOD_KEY`], for the join protocol.
    Module,
    /// Never sent.
    Unused,
}

msg_types! {
    MasterRequest = 500 => "DLM_MASTER_REQUEST_MSG", Domain;
    /// Number 501 is reserved and never sent.
    Unused1 = 501 => "DLM_UNUSED_MSG1", Unused;
    AssertMaster = 502 => "DLM_ASSERT_MASTER_MSG", Domain;
    CreateLock = 503 => "DLM_CREATE_LOCK_MSG", Domain;
    ConvertLock = 504 => "DLM_CONVERT_LOCK_MSG", Domain;
    ProxyAst = 505 => "DLM_PROXY_AST_MSG", Domain;
    UnlockLock = 506 => "DLM_UNLOCK_LOCK_MSG", Domain;
    DerefLockres = 507 => "DLM_DEREF_LOCKRES_MSG", Domain;
    MigrateRequest = 508 => "DLM_MIGRATE_REQUEST_MSG", Domain;
    MigLockres = 509 => "DLM_MIG_LOCKRES_MSG", Domain;
    QueryJoin = 510 => "DLM_QUERY_JOIN_MSG", Module;
    AssertJoined = 511 => "DLM_ASSERT_JOINED_MSG", Module;
    CancelJoin = 512 => "DLM_CANCEL_JOIN_MSG", Module;
    ExitDomain = 513 => "DLM_EXIT_DOMAIN_MSG", Domain;
    MasterRequery = 514 => "DLM_MASTER_REQUERY_MSG", Domain;
    LockRequest = 515 => "DLM_LOCK_REQUEST_MSG", Domain;
    RecoDataDone = 516 => "DLM_RECO_DATA_DONE_MSG", Domain;
    BeginReco = 517 => "DLM_BEGIN_RECO_MSG", Domain;
    FinalizeReco = 518 => "DLM_FINALIZE_RECO_MSG", Domain;
    QueryRegion = 519 => "DLM_QUERY_REGION", Module;
    QueryNodeinfo = 520 => "DLM_QUERY_NODEINFO", Module;
    BeginExitDomain = 521 => "DLM_BEGIN_EXIT_DOMAIN_MSG", Domain;
    DerefLockresDone = 522 => "DLM_DEREF_LOCKRES_DONE", Domain;
}

impl MsgType {
    /// The message's o2net type number.
    pub fn to_wire(self) -> u16 {
        self as u16
    }

    /// The handler's maximum payload length (o2net answers longer payloads with
    /// `O2NET_ERR_OVERFLOW`), 0 for the unused type.
    pub fn max_len(self) -> usize {
        use MsgType::*;
        match self {
            MasterRequest | AssertMaster | DerefLockres | MigrateRequest | MasterRequery
            | RecoDataDone | DerefLockresDone => 72,
            Unused1 => 0,
            CreateLock => 80,
            ConvertLock | ProxyAst | UnlockLock => 80 + LVB_LEN,
            MigLockres => messages::MIG_LOCKRES_HEADER_LEN + 16 * MAX_MIGRATABLE_LOCKS,
            QueryJoin => 104,
            AssertJoined | CancelJoin => 68,
            ExitDomain | BeginExitDomain => 4,
            LockRequest | BeginReco | FinalizeReco => 8,
            QueryRegion => messages::QUERY_REGION_LEN,
            QueryNodeinfo => messages::QUERY_NODEINFO_LEN,
        }
    }
}

impl fmt::Display for MsgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), *self as u16)
    }
}

/// A lock resource name: 1 to 32 arbitrary bytes (o2dlm puts no rule on the characters;
/// dlmfs additionally refuses a leading `$`, see [`LockName::is_reserved`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockName {
    len: u8,
    bytes: [u8; LOCK_NAME_MAX],
}

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is {len} bytes, longer than the {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error("name contains a NUL byte at offset {offset}")]
    Nul { offset: usize },
}

impl LockName {
    /// Checks a lock name as `dlmlock` does (`1 <= len <= DLM_LOCKID_NAME_MAX`, else
    /// `DLM_IVBUFLEN`).
    pub fn new(name: &[u8]) -> Result<LockName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > LOCK_NAME_MAX {
            return Err(NameError::TooLong {
                len: name.len(),
                max: LOCK_NAME_MAX,
            });
        }
        let mut bytes = [0u8; LOCK_NAME_MAX];
        bytes[..name.len()].copy_from_slice(name);
        Ok(LockName {
            len: name.len() as u8,
            bytes,
        })
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The name's length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false: a lock name has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether this is the recovery-election lock "$RECOVERY".
    pub fn is_recovery_lock(&self) -> bool {
        self.as_bytes() == RECOVERY_LOCK_NAME
    }

    /// Whether dlmfs reserves the name (a leading `$`, like "$RECOVERY").
    pub fn is_reserved(&self) -> bool {
        self.bytes[0] == b'$'
    }
}

impl fmt::Debug for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockName(\"{}\")", self)
    }
}

impl fmt::Display for LockName {
    /// Prints the name as the kernel's `%.*s` would, escaping bytes that are not printable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_bytes().escape_ascii())
    }
}

/// A domain name: 1 to 63 bytes without NUL (`dlm_register_domain` measures it with strlen
/// and refuses 64 or more with ENAMETOOLONG).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName {
    len: u8,
    bytes: [u8; DOMAIN_NAME_MAX],
}

impl DomainName {
    /// Checks a domain name.
    pub fn new(name: &[u8]) -> Result<DomainName, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > DOMAIN_NAME_MAX {
            return Err(NameError::TooLong {
                len: name.len(),
                max: DOMAIN_NAME_MAX,
            });
        }
        if let Some(offset) = name.iter().position(|&b| b == 0) {
            return Err(NameError::Nul { offset });
        }
        let mut bytes = [0u8; DOMAIN_NAME_MAX];
        bytes[..name.len()].copy_from_slice(name);
        Ok(DomainName {
            len: name.len() as u8,
            bytes,
        })
    }

    /// The name's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The o2net key of the domain's messages.
    pub fn key(&self) -> u32 {
        domain_key(self.as_bytes())
    }
}

impl fmt::Debug for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DomainName(\"{}\")", self)
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_bytes().escape_ascii())
    }
}

/// The o2net key of a domain's messages: the kernel's `crc32_le(0, name, strlen(name))`
/// (reflected CRC-32, polynomial 0xEDB88320, seed 0, no final inversion).
pub fn domain_key(name: &[u8]) -> u32 {
    o2hb::crc32_le(0, name)
}

/// A dlm or fs locking protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolVersion {
    pub major: u8,
    pub minor: u8,
}

/// A set of node numbers as a 256-bit byte bitmap (node n is bit n%8 of byte n/8), the
/// layout of the join messages' node map (`byte_copymap`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NodeMap(pub [u8; 32]);

impl NodeMap {
    /// The empty set.
    pub const fn new() -> NodeMap {
        NodeMap([0; 32])
    }
    /// Adds a node.
    pub fn insert(&mut self, node: u8) {
        self.0[usize::from(node / 8)] |= 1 << (node % 8);
    }
    /// Removes a node.
    pub fn remove(&mut self, node: u8) {
        self.0[usize::from(node / 8)] &= !(1 << (node % 8));
    }
    /// Whether a node is in the set.
    pub fn contains(&self, node: u8) -> bool {
        self.0[usize::from(node / 8)] & (1 << (node % 8)) != 0
    }
    /// The nodes in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(move |&n| self.contains(n))
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&b| b == 0)
    }
}

impl fmt::Debug for NodeMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl FromIterator<u8> for NodeMap {
    fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> NodeMap {
        let mut m = NodeMap::new();
        for n in iter {
            m.insert(n);
        }
        m
    }
}

/// The creator node of a lock cookie (top byte).
pub fn cookie_node(cookie: u64) -> u8 {
    (cookie >> 56) as u8
}

/// The 56-bit sequence part of a lock cookie.
pub fn cookie_seq(cookie: u64) -> u64 {
    cookie & 0x00ff_ffff_ffff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_keys_match_the_kernel() {
        // "xdom" keyed every per-domain message in the kernel-to-kernel capture.
        assert_eq!(domain_key(b"xdom"), 0x3033_8102);
        // The vector of docs/o2dlm.md.
        assert_eq!(domain_key(b"ocfs2"), 0xB26E_7456);
    }

    #[test]
    fn names_follow_the_kernel_limits() {
        assert!(LockName::new(&[b'a'; 32]).is_ok());
        assert_eq!(
            LockName::new(&[b'a'; 33]),
            Err(NameError::TooLong { len: 33, max: 32 })
        );
        assert_eq!(LockName::new(b""), Err(NameError::Empty));
        assert!(LockName::new(b"$RECOVERY").unwrap().is_recovery_lock());
        assert!(LockName::new(b"$RECOVERY").unwrap().is_reserved());
        assert!(DomainName::new(&[b'd'; 63]).is_ok());
        assert_eq!(
            DomainName::new(&[b'd'; 64]),
            Err(NameError::TooLong { len: 64, max: 63 })
        );
        assert_eq!(DomainName::new(b"a\0b"), Err(NameError::Nul { offset: 1 }));
    }

    #[test]
    fn statuses_map_to_the_kernel_errnos() {
        assert_eq!(DlmStatus::ALL.len(), 42);
        for (i, s) in DlmStatus::ALL.iter().enumerate() {
            assert_eq!(s.to_wire(), i as i32);
            assert_eq!(DlmStatus::from_wire(i as i32), Some(*s));
        }
        assert_eq!(DlmStatus::from_wire(42), None);
        assert_eq!(DlmStatus::Notqueued.to_errno(), -11);
        assert_eq!(DlmStatus::Recovering.to_errno(), -107);
        assert_eq!(DlmStatus::Ivlockid.to_errno(), -22);
        assert_eq!(DlmStatus::Normal.name(), "DLM_NORMAL");
        assert_eq!(DlmStatus::from_send_error(errno::ENOMEM), DlmStatus::Syserr);
        assert_eq!(
            DlmStatus::from_send_error(errno::EPIPE),
            DlmStatus::Nolockmgr
        );
        assert_eq!(
            DlmStatus::from_send_error(errno::EINVAL),
            DlmStatus::Badparam
        );
        assert_eq!(
            DlmStatus::from_send_error(errno::ENAMETOOLONG),
            DlmStatus::Ivbuflen
        );
        assert_eq!(DlmStatus::from_send_error(-5), DlmStatus::Badargs);
        assert!(is_host_down(errno::EHOSTDOWN) && is_host_down(errno::ENOPROTOOPT));
        assert!(!is_host_down(errno::ENOMEM) && !is_host_down(errno::ERESTARTSYS));
    }

    #[test]
    fn message_types_cover_500_to_522() {
        assert_eq!(MsgType::ALL.len(), 23);
        for (i, t) in MsgType::ALL.iter().enumerate() {
            assert_eq!(t.to_wire(), 500 + i as u16);
            assert_eq!(MsgType::from_wire(500 + i as u16), Some(*t));
        }
        assert_eq!(MsgType::MigLockres.max_len(), 3952);
        assert_eq!(MsgType::QueryNodeinfo.max_len(), 2108);
        assert_eq!(MsgType::QueryRegion.max_len(), 1092);
        assert_eq!(MsgType::QueryJoin.key_kind(), KeyKind::Module);
        assert_eq!(MsgType::ExitDomain.key_kind(), KeyKind::Domain);
    }

    #[test]
    fn node_map_is_a_byte_bitmap() {
        let m: NodeMap = [1u8, 2, 9, 254].into_iter().collect();
        assert_eq!(m.0[0], 0b0000_0110);
        assert_eq!(m.0[1], 0b0000_0010);
        assert_eq!(m.0[31], 0b0100_0000);
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![1, 2, 9, 254]);
    }
}
