//! Typed payloads of the DLM messages 500–522 with their exact kernel byte layouts
//! (`dlmcommon.h`, `docs/o2dlm.md` §7.1), and [`DlmMessage`], the union of them keyed by
//! o2net message type.
//!
//! Decoders accept what the kernel's handlers accept: padding and name bytes past the name
//! length are ignored, and a payload longer than the fixed struct is tolerated (o2net
//! already bounds it by the handler's maximum). Encoders write the full fixed struct with
//! zero padding, as the kernel does from its zeroed structs.

use std::net::Ipv4Addr;

use bytes::BufMut;

use super::codec::{put_name, put_opt_lvb, Reader};
use super::{
    DecodeError, DomainName, LkmFlags, LockMode, LockName, Lvb, MsgType, NodeMap, Problem,
    ProtocolVersion, LOCK_NAME_MAX, LVB_LEN, MAX_MIGRATABLE_LOCKS, MAX_NODES, NAME_FIELD_LEN,
};

/// Size of the fixed part of `dlm_migratable_lockres`.
pub const MIG_LOCKRES_HEADER_LEN: usize = 112;
/// Size of one `dlm_migratable_lock` record.
pub const MIGRATABLE_LOCK_LEN: usize = 16;
/// `O2NM_MAX_REGIONS`: region slots in `dlm_query_region`.
pub const MAX_REGIONS: usize = 32;
/// Size of a region name slot (`O2HB_MAX_REGION_NAME_LEN`).
pub const REGION_NAME_LEN: usize = 32;
/// Size of `dlm_query_region`.
pub const QUERY_REGION_LEN: usize = 4 + NAME_FIELD_LEN + MAX_REGIONS * REGION_NAME_LEN;
/// Size of `dlm_query_nodeinfo`.
pub const QUERY_NODEINFO_LEN: usize = 4 + NAME_FIELD_LEN + MAX_NODES * 8;

/// `DLM_ASSERT_MASTER_MLE_CLEANUP`: the assert answers a master request that found us master.
pub const ASSERT_MASTER_MLE_CLEANUP: u32 = 0x1;
/// `DLM_ASSERT_MASTER_REQUERY`: the assert answers a master requery during recovery.
pub const ASSERT_MASTER_REQUERY: u32 = 0x2;
/// `DLM_ASSERT_MASTER_FINISH_MIGRATION`: the new master ends a migration.
pub const ASSERT_MASTER_FINISH_MIGRATION: u32 = 0x4;
/// Assert-master reply bit: the asserting node must re-send its assert to everyone.
pub const ASSERT_RESPONSE_REASSERT: i32 = 0x1;
/// Assert-master reply bit: the replier holds the resource; set its refmap bit.
pub const ASSERT_RESPONSE_MASTERY_REF: i32 = 0x2;
/// Migrate-request reply: the replier holds the resource; set its refmap bit.
pub const MIGRATE_RESPONSE_MASTERY_REF: i32 = 0x1;
/// `DLM_MRES_RECOVERY`: the lock records are recovery data.
pub const MRES_RECOVERY: u8 = 0x01;
/// `DLM_MRES_MIGRATION`: the lock records migrate the resource.
pub const MRES_MIGRATION: u8 = 0x02;
/// `DLM_MRES_ALL_DONE`: last message for this resource.
pub const MRES_ALL_DONE: u8 = 0x04;
/// `DLM_FINALIZE_STAGE2`: second stage of finalize-recovery.
pub const FINALIZE_STAGE2: u8 = 0x01;

/// Reply of `DLM_MASTER_REQUEST_MSG` (`DLM_MASTER_RESP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterResponse {
    No = 0,
    Yes = 1,
    Maybe = 2,
    Error = 3,
}

impl MasterResponse {
    /// The response for a reply status, if it is one.
    pub fn from_wire(v: i32) -> Option<MasterResponse> {
        match v {
            0 => Some(MasterResponse::No),
            1 => Some(MasterResponse::Yes),
            2 => Some(MasterResponse::Maybe),
            3 => Some(MasterResponse::Error),
            _ => None,
        }
    }
}

/// Reply of `DLM_DEREF_LOCKRES_MSG` when positive (`DLM_DEREF_RESPONSE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerefResponse {
    Done = 0,
    InProgress = 1,
}

/// The verdict of a query-join reply (`JOIN_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinCode {
    Disallow = 0,
    Ok = 1,
    OkNoMap = 2,
    ProtocolMismatch = 3,
}

/// The reply to `DLM_QUERY_JOIN_MSG`: packed into the 32-bit o2net status so that its wire
/// bytes are `code, dlm_minor, fs_minor, 0` (`dlm_query_join_packet`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryJoinResponse {
    pub code: JoinCode,
    pub dlm_minor: u8,
    pub fs_minor: u8,
}

impl QueryJoinResponse {
    /// The o2net reply status carrying this response.
    pub fn to_status(&self) -> i32 {
        i32::from_be_bytes([self.code as u8, self.dlm_minor, self.fs_minor, 0])
    }

    /// Reads a reply status. A status that is not a packed response (an unknown code) is an
    /// error the requester turns into -EINVAL.
    pub fn from_status(status: i32) -> Result<QueryJoinResponse, DecodeError> {
        let [code, dlm_minor, fs_minor, _reserved] = status.to_be_bytes();
        let code = match code {
            0 => JoinCode::Disallow,
            1 => JoinCode::Ok,
            2 => JoinCode::OkNoMap,
            3 => JoinCode::ProtocolMismatch,
            other => {
                return Err(DecodeError {
                    message: MsgType::QueryJoin.name(),
                    field: "reply code",
                    problem: Problem::BadValue(u64::from(other)),
                })
            }
        };
        Ok(QueryJoinResponse {
            code,
            dlm_minor,
            fs_minor,
        })
    }
}

/// `dlm_master_request` (500): "who masters this resource?"
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterRequest {
    pub node_idx: u8,
    /// Always 0 in the kernel.
    pub flags: u32,
    pub name: LockName,
}

/// `dlm_assert_master` (502): "I master this resource".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssertMaster {
    pub node_idx: u8,
    /// `ASSERT_MASTER_*` bits.
    pub flags: u32,
    pub name: LockName,
}

fn decode_master_shape(msg: MsgType, buf: &[u8]) -> Result<(u8, u32, LockName), DecodeError> {
    let mut r = Reader::new(msg.name(), buf);
    let node_idx = r.u8("node_idx")?;
    let namelen = r.u8("namelen")?;
    r.skip("pad1", 2)?;
    let flags = r.u32("flags")?;
    let name = r.lock_name("namelen", namelen, "name", NAME_FIELD_LEN)?;
    Ok((node_idx, flags, name))
}

fn encode_master_shape<B: BufMut>(buf: &mut B, node_idx: u8, flags: u32, name: &LockName) {
    buf.put_u8(node_idx);
    buf.put_u8(name.len() as u8);
    buf.put_u16(0);
    buf.put_u32(flags);
    put_name(buf, name.as_bytes(), NAME_FIELD_LEN);
}

impl MasterRequest {
    pub const LEN: usize = 72;
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (node_idx, flags, name) = decode_master_shape(MsgType::MasterRequest, buf)?;
        Ok(MasterRequest {
            node_idx,
            flags,
            name,
        })
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        encode_master_shape(buf, self.node_idx, self.flags, &self.name);
    }
}

impl AssertMaster {
    pub const LEN: usize = 72;
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (node_idx, flags, name) = decode_master_shape(MsgType::AssertMaster, buf)?;
        Ok(AssertMaster {
            node_idx,
            flags,
            name,
        })
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        encode_master_shape(buf, self.node_idx, self.flags, &self.name);
    }
}

/// `dlm_migrate_request` (508): the new master tells a node that `name` moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrateRequest {
    pub master: u8,
    pub new_master: u8,
    pub name: LockName,
}

impl MigrateRequest {
    pub const LEN: usize = 72;
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(MsgType::MigrateRequest.name(), buf);
        let master = r.u8("master")?;
        let new_master = r.u8("new_master")?;
        let namelen = r.u8("namelen")?;
        r.skip("pad1", 1)?;
        r.skip("pad2", 4)?;
        let name = r.lock_name("namelen", namelen, "name", NAME_FIELD_LEN)?;
        Ok(MigrateRequest {
            master,
            new_master,
            name,
        })
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(self.master);
        buf.put_u8(self.new_master);
        buf.put_u8(self.name.len() as u8);
        buf.put_u8(0);
        buf.put_u32(0);
        put_name(buf, self.name.as_bytes(), NAME_FIELD_LEN);
    }
}

/// `dlm_master_requery` (514): "who masters this resource now?" during recovery; the reply
/// is the owner's node number or 255.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterRequery {
    pub node_idx: u8,
    pub name: LockName,
}

impl MasterRequery {
    pub const LEN: usize = 72;
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(MsgType::MasterRequery.name(), buf);
        r.skip("pad1", 2)?;
        let node_idx = r.u8("node_idx")?;
        let namelen = r.u8("namelen")?;
        r.skip("pad3", 4)?;
        let name = r.lock_name("namelen", namelen, "name", NAME_FIELD_LEN)?;
        Ok(MasterRequery { node_idx, name })
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(0);
        buf.put_u8(self.node_idx);
        buf.put_u8(self.name.len() as u8);
        buf.put_u32(0);
        put_name(buf, self.name.as_bytes(), NAME_FIELD_LEN);
    }
}

/// `dlm_create_lock` (503): a new lock request sent to the resource's master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateLock {
    pub cookie: u64,
    pub flags: LkmFlags,
    /// The lock's owner (the sender).
    pub node_idx: u8,
    pub requested_type: LockMode,
    pub name: LockName,
}

impl CreateLock {
    pub const LEN: usize = 80;
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        Self::read(&mut Reader::new(MsgType::CreateLock.name(), buf))
    }
    /// Reads the fixed part, which `dlm_convert_lock` shares.
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let cookie = r.u64("cookie")?;
        let flags = LkmFlags(r.u32("flags")?);
        r.skip("pad1", 1)?;
        let node_idx = r.u8("node_idx")?;
        let requested_type = r.mode("requested_type")?;
        let namelen = r.u8("namelen")?;
        let name = r.lock_name("namelen", namelen, "name", NAME_FIELD_LEN)?;
        Ok(CreateLock {
            cookie,
            flags,
            node_idx,
            requested_type,
            name,
        })
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u64(self.cookie);
        buf.put_u32(self.flags.0);
        buf.put_u8(0);
        buf.put_u8(self.node_idx);
        buf.put_i8(self.requested_type.to_wire());
        buf.put_u8(self.name.len() as u8);
        put_name(buf, self.name.as_bytes(), NAME_FIELD_LEN);
    }
}

/// `dlm_convert_lock` (504): a conversion request; carries the holder's LVB when flags has
/// `LKM_PUT_LVB` (an EX holder writing back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvertLock {
    pub cookie: u64,
    /// On encode, `LKM_PUT_LVB` is set exactly when `lvb` is present.
    pub flags: LkmFlags,
    pub node_idx: u8,
    pub requested_type: LockMode,
    pub name: LockName,
    pub lvb: Option<Lvb>,
}

fn flags_with_lvb(flags: LkmFlags, bit: LkmFlags, present: bool) -> LkmFlags {
    if present {
        flags | bit
    } else {
        flags.without(bit)
    }
}

impl ConvertLock {
    pub const LEN: usize = 80;
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(MsgType::ConvertLock.name(), buf);
        let fixed = CreateLock::read(&mut r)?;
        let lvb = r.opt_lvb("lvb", fixed.flags.contains(LkmFlags::PUT_LVB))?;
        Ok(ConvertLock {
            cookie: fixed.cookie,
            flags: fixed.flags,
            node_idx: fixed.node_idx,
            requested_type: fixed.requested_type,
            name: fixed.name,
            lvb,
        })
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        CreateLock {
            cookie: self.cookie,
            flags: flags_with_lvb(self.flags, LkmFlags::PUT_LVB, self.lvb.is_some()),
            node_idx: self.node_idx,
            requested_type: self.requested_type,
            name: self.name,
        }
        .encode(buf);
        put_opt_lvb(buf, &self.lvb);
    }
}

/// `dlm_unlock_lock` (506): unlock or cancel (`LKM_CANCEL`) sent to the master; carries the
/// EX holder's LVB when flags has `LKM_PUT_LVB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnlockLock {
    pub cookie: u64,
    /// On encode, `LKM_PUT_LVB` is set exactly when `lvb` is present.
    pub flags: LkmFlags,
    pub node_idx: u8,
    pub name: LockName,
    pub lvb: Option<Lvb>,
}

impl UnlockLock {
    pub const LEN: usize = 80;
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(MsgType::UnlockLock.name(), buf);
        let cookie = r.u64("cookie")?;
        let flags = LkmFlags(r.u32("flags")?);
        r.skip("pad1", 2)?;
        let node_idx = r.u8("node_idx")?;
        let namelen = r.u8("namelen")?;
        let name = r.lock_name("namelen", namelen, "name", NAME_FIELD_LEN)?;
        let lvb = r.opt_lvb("lvb", flags.contains(LkmFlags::PUT_LVB))?;
        Ok(UnlockLock {
            cookie,
            flags,
            node_idx,
            name,
            lvb,
        })
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u64(self.cookie);
        buf.put_u32(flags_with_lvb(self.flags, LkmFlags::PUT_LVB, self.lvb.is_some()).0);
        buf.put_u16(0);
        buf.put_u8(self.node_idx);
        buf.put_u8(self.name.len() as u8);
        put_name(buf, self.name.as_bytes(), NAME_FIELD_LEN);
        put_opt_lvb(buf, &self.lvb);
    }
}

/// The kind of a proxy AST (`DLM_AST`, `DLM_BAST`, `DLM_ASTUNLOCK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AstType {
    /// Grant completion.
    Ast = 0,
    /// Blocking notification.
    Bast = 1,
    /// Defined by the kernel but never sent.
    AstUnlock = 2,
}

/// `dlm_proxy_ast` (505): the master delivers an AST or BAST to a remote lock's node; carries
/// the resource's LVB when flags has `LKM_GET_LVB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyAst {
    pub cookie: u64,
    /// On encode, `LKM_GET_LVB` is set exactly when `lvb` is present.
    pub flags: LkmFlags,
    /// The sender (the master).
    pub node_idx: u8,
    pub ast_type: AstType,
    /// For a BAST, the mode being blocked; the kernel sends NL (0) with an AST.
    pub blocked_type: Option<LockMode>,
    pub name: LockName,
    pub lvb: Option<Lvb>,
}

impl ProxyAst {
    pub const LEN: usize = 80;
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(MsgType::ProxyAst.name(), buf);
        let cookie = r.u64("cookie")?;
        let flags = LkmFlags(r.u32("flags")?);
        let node_idx = r.u8("node_idx")?;
        let ast_type = match r.u8("type")? {
            0 => AstType::Ast,
            1 => AstType::Bast,
            2 => AstType::AstUnlock,
            other => return Err(r.error("type", Problem::BadValue(u64::from(other)))),
        };
        let blocked_type = r.opt_mode("blocked_type")?;
        let namelen = r.u8("namelen")?;
        let name = r.lock_name("namelen", namelen, "name", NAME_FIELD_LEN)?;
        let lvb = r.opt_lvb("lvb", flags.contains(LkmFlags::GET_LVB))?;
        Ok(ProxyAst {
            cookie,
            flags,
            node_idx,
            ast_type,
            blocked_type,
            name,
            lvb,
        })
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u64(self.cookie);
        buf.put_u32(flags_with_lvb(self.flags, LkmFlags::GET_LVB, self.lvb.is_some()).0);
        buf.put_u8(self.node_idx);
        buf.put_u8(self.ast_type as u8);
        buf.put_i8(super::mode_to_wire(self.blocked_type));
        buf.put_u8(self.name.len() as u8);
        put_name(buf, self.name.as_bytes(), NAME_FIELD_LEN);
        put_opt_lvb(buf, &self.lvb);
    }
}

/// `dlm_deref_lockres` (507) and `dlm_deref_lockres_done` (522): a non-master drops its
/// reference on a resource / the master confirms a deferred deref.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DerefLockres {
    pub node_idx: u8,
    pub name: LockName,
}

impl DerefLockres {
    pub const LEN: usize = 72;
    fn decode_as(msg: MsgType, buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(msg.name(), buf);
        r.skip("pad1", 4)?;
        r.skip("pad2", 2)?;
        let node_idx = r.u8("node_idx")?;
        let namelen = r.u8("namelen")?;
        let name = r.lock_name("namelen", namelen, "name", NAME_FIELD_LEN)?;
        Ok(DerefLockres { node_idx, name })
    }
    /// Decodes a `DLM_DEREF_LOCKRES_MSG` payload.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_as(MsgType::DerefLockres, buf)
    }
    /// Decodes a `DLM_DEREF_LOCKRES_DONE` payload (same layout).
    pub fn decode_done(buf: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_as(MsgType::DerefLockresDone, buf)
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u32(0);
        buf.put_u16(0);
        buf.put_u8(self.node_idx);
        buf.put_u8(self.name.len() as u8);
        put_name(buf, self.name.as_bytes(), NAME_FIELD_LEN);
    }
}

/// Which queue of a resource a lock sits on (`DLM_GRANTED_LIST` ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueKind {
    Granted = 0,
    Converting = 1,
    Blocked = 2,
}

impl QueueKind {
    /// The three queues in the kernel's scan order.
    pub const ALL: [QueueKind; 3] = [
        QueueKind::Granted,
        QueueKind::Converting,
        QueueKind::Blocked,
    ];
}

/// `dlm_migratable_lock`: one lock as migration and recovery carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigratableLock {
    pub cookie: u64,
    pub list: QueueKind,
    /// Low byte of the lock's lksb flags (`LKSB_PUT_LVB` / `LKSB_GET_LVB`).
    pub flags: u8,
    /// Granted mode (requested mode on the blocked queue); IV for the dummy lock.
    pub type_: Option<LockMode>,
    pub convert_type: Option<LockMode>,
    pub highest_blocked: Option<LockMode>,
    pub node: u8,
}

impl MigratableLock {
    /// The placeholder record of a resource that has no lock, only a mastery reference.
    pub fn dummy(node: u8) -> MigratableLock {
        MigratableLock {
            cookie: 0,
            list: QueueKind::Blocked,
            flags: 0,
            type_: None,
            convert_type: None,
            highest_blocked: None,
            node,
        }
    }

    /// Whether this is the dummy record (`dlm_is_dummy_lock`: all modes IV, cookie 0).
    pub fn is_dummy(&self) -> bool {
        self.cookie == 0
            && self.type_.is_none()
            && self.convert_type.is_none()
            && self.highest_blocked.is_none()
    }
}

/// `dlm_migratable_lockres` (509): a resource's locks, sent to a new master by migration or
/// to the recovery master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigLockres {
    /// Sender's view of the owner (the dead node or 255 in recovery, the sender in migration).
    pub master: u8,
    /// `MRES_*` bits.
    pub flags: u8,
    /// Locks of the resource across all messages.
    pub total_locks: u32,
    /// 0 when everything fits one message, else a sender-global counter from 1.
    pub mig_cookie: u64,
    pub name: LockName,
    pub lvb: Lvb,
    /// At most [`MAX_MIGRATABLE_LOCKS`] records.
    pub locks: Vec<MigratableLock>,
}

impl MigLockres {
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(MsgType::MigLockres.name(), buf);
        let master = r.u8("master")?;
        let lockname_len = r.u8("lockname_len")?;
        let num_locks = usize::from(r.u8("num_locks")?);
        let flags = r.u8("flags")?;
        let total_locks = r.u32("total_locks")?;
        let mig_cookie = r.u64("mig_cookie")?;
        let name = r.lock_name("lockname_len", lockname_len, "lockname", LOCK_NAME_MAX)?;
        let lvb = r.lvb("lvb")?;
        r.at_most("num_locks", num_locks, MAX_MIGRATABLE_LOCKS)?;
        r.require(
            "ml",
            MIG_LOCKRES_HEADER_LEN + num_locks * MIGRATABLE_LOCK_LEN,
        )?;
        let mut locks = Vec::with_capacity(num_locks);
        for _ in 0..num_locks {
            let cookie = r.u64("ml.cookie")?;
            r.skip("ml.pad1", 2)?;
            let list = match r.u8("ml.list")? {
                0 => QueueKind::Granted,
                1 => QueueKind::Converting,
                2 => QueueKind::Blocked,
                other => return Err(r.error("ml.list", Problem::BadValue(u64::from(other)))),
            };
            let lflags = r.u8("ml.flags")?;
            let type_ = r.opt_mode("ml.type")?;
            let convert_type = r.opt_mode("ml.convert_type")?;
            let highest_blocked = r.opt_mode("ml.highest_blocked")?;
            let node = r.u8("ml.node")?;
            locks.push(MigratableLock {
                cookie,
                list,
                flags: lflags,
                type_,
                convert_type,
                highest_blocked,
                node,
            });
        }
        Ok(MigLockres {
            master,
            flags,
            total_locks,
            mig_cookie,
            name,
            lvb,
            locks,
        })
    }

    /// Encodes the message. Records beyond [`MAX_MIGRATABLE_LOCKS`] are a caller bug (the
    /// sender splits a resource's locks across messages); they are not written.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        let locks = &self.locks[..self.locks.len().min(MAX_MIGRATABLE_LOCKS)];
        buf.put_u8(self.master);
        buf.put_u8(self.name.len() as u8);
        buf.put_u8(locks.len() as u8);
        buf.put_u8(self.flags);
        buf.put_u32(self.total_locks);
        buf.put_u64(self.mig_cookie);
        put_name(buf, self.name.as_bytes(), LOCK_NAME_MAX);
        buf.put_slice(&self.lvb);
        for l in locks {
            buf.put_u64(l.cookie);
            buf.put_u16(0);
            buf.put_u8(l.list as u8);
            buf.put_u8(l.flags);
            buf.put_i8(super::mode_to_wire(l.type_));
            buf.put_i8(super::mode_to_wire(l.convert_type));
            buf.put_i8(super::mode_to_wire(l.highest_blocked));
            buf.put_u8(l.node);
        }
    }
}

/// `dlm_query_join_request` (510): a joining node asks each live node whether it may join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryJoinRequest {
    pub node_idx: u8,
    pub domain: DomainName,
    pub dlm_proto: ProtocolVersion,
    pub fs_proto: ProtocolVersion,
    /// The requester's heartbeat live-node map.
    pub node_map: NodeMap,
}

impl QueryJoinRequest {
    pub const LEN: usize = 104;
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(MsgType::QueryJoin.name(), buf);
        let node_idx = r.u8("node_idx")?;
        r.skip("pad1", 2)?;
        let name_len = r.u8("name_len")?;
        let dlm_proto = ProtocolVersion {
            major: r.u8("dlm_proto.pv_major")?,
            minor: r.u8("dlm_proto.pv_minor")?,
        };
        let fs_proto = ProtocolVersion {
            major: r.u8("fs_proto.pv_major")?,
            minor: r.u8("fs_proto.pv_minor")?,
        };
        let domain = r.domain_name("name_len", name_len, "domain")?;
        let node_map = NodeMap(r.array("node_map")?);
        Ok(QueryJoinRequest {
            node_idx,
            domain,
            dlm_proto,
            fs_proto,
            node_map,
        })
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(self.node_idx);
        buf.put_u16(0);
        buf.put_u8(self.domain.as_bytes().len() as u8);
        buf.put_u8(self.dlm_proto.major);
        buf.put_u8(self.dlm_proto.minor);
        buf.put_u8(self.fs_proto.major);
        buf.put_u8(self.fs_proto.minor);
        put_name(buf, self.domain.as_bytes(), NAME_FIELD_LEN);
        buf.put_slice(&self.node_map.0);
    }
}

/// `dlm_assert_joined` (511) and `dlm_cancel_join` (512): a node finishes or abandons its
/// join of `domain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinNotice {
    pub node_idx: u8,
    pub domain: DomainName,
}

impl JoinNotice {
    pub const LEN: usize = 68;
    fn decode_as(msg: MsgType, buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(msg.name(), buf);
        let node_idx = r.u8("node_idx")?;
        r.skip("pad1", 2)?;
        let name_len = r.u8("name_len")?;
        let domain = r.domain_name("name_len", name_len, "domain")?;
        Ok(JoinNotice { node_idx, domain })
    }
    /// Decodes a `DLM_ASSERT_JOINED_MSG` payload.
    pub fn decode_assert_joined(buf: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_as(MsgType::AssertJoined, buf)
    }
    /// Decodes a `DLM_CANCEL_JOIN_MSG` payload.
    pub fn decode_cancel_join(buf: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_as(MsgType::CancelJoin, buf)
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(self.node_idx);
        buf.put_u16(0);
        buf.put_u8(self.domain.as_bytes().len() as u8);
        put_name(buf, self.domain.as_bytes(), NAME_FIELD_LEN);
    }
}

/// `dlm_exit_domain` (513, and 521 `DLM_BEGIN_EXIT_DOMAIN_MSG`): a node leaves the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitDomain {
    pub node_idx: u8,
}

impl ExitDomain {
    pub const LEN: usize = 4;
    fn decode_as(msg: MsgType, buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(msg.name(), buf);
        let node_idx = r.u8("node_idx")?;
        r.skip("pad1", 3)?;
        Ok(ExitDomain { node_idx })
    }
    /// Decodes a `DLM_EXIT_DOMAIN_MSG` payload.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_as(MsgType::ExitDomain, buf)
    }
    /// Decodes a `DLM_BEGIN_EXIT_DOMAIN_MSG` payload.
    pub fn decode_begin(buf: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_as(MsgType::BeginExitDomain, buf)
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(self.node_idx);
        buf.put_bytes(0, 3);
    }
}

/// `dlm_lock_request` (515) and `dlm_begin_reco` (517): the recovery master asks for a dead
/// node's lock state / announces itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoNotice {
    pub node_idx: u8,
    pub dead_node: u8,
}

impl RecoNotice {
    pub const LEN: usize = 8;
    fn decode_as(msg: MsgType, buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(msg.name(), buf);
        let node_idx = r.u8("node_idx")?;
        let dead_node = r.u8("dead_node")?;
        r.skip("pad1", 2)?;
        r.skip("pad2", 4)?;
        Ok(RecoNotice {
            node_idx,
            dead_node,
        })
    }
    /// Decodes a `DLM_LOCK_REQUEST_MSG` payload.
    pub fn decode_lock_request(buf: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_as(MsgType::LockRequest, buf)
    }
    /// Decodes a `DLM_BEGIN_RECO_MSG` payload.
    pub fn decode_begin_reco(buf: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_as(MsgType::BeginReco, buf)
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(self.node_idx);
        buf.put_u8(self.dead_node);
        buf.put_u16(0);
        buf.put_u32(0);
    }
}

/// `dlm_reco_data_done` (516): a node has sent all its recovery data for `dead_node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoDataDone {
    pub node_idx: u8,
    pub dead_node: u8,
}

impl RecoDataDone {
    pub const LEN: usize = 72;
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(MsgType::RecoDataDone.name(), buf);
        let node_idx = r.u8("node_idx")?;
        let dead_node = r.u8("dead_node")?;
        r.skip("pad1", 2)?;
        r.skip("pad2", 4)?;
        // reco_lvb is unused by the kernel; it is always zero.
        r.skip("reco_lvb", LVB_LEN)?;
        Ok(RecoDataDone {
            node_idx,
            dead_node,
        })
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(self.node_idx);
        buf.put_u8(self.dead_node);
        buf.put_u16(0);
        buf.put_u32(0);
        buf.put_bytes(0, LVB_LEN);
    }
}

/// `dlm_finalize_reco` (518): the recovery master ends recovery of `dead_node`, in two stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalizeReco {
    pub node_idx: u8,
    pub dead_node: u8,
    /// [`FINALIZE_STAGE2`] or 0.
    pub flags: u8,
}

impl FinalizeReco {
    pub const LEN: usize = 8;
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(MsgType::FinalizeReco.name(), buf);
        let node_idx = r.u8("node_idx")?;
        let dead_node = r.u8("dead_node")?;
        let flags = r.u8("flags")?;
        r.skip("pad1", 1)?;
        r.skip("pad2", 4)?;
        Ok(FinalizeReco {
            node_idx,
            dead_node,
            flags,
        })
    }
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u8(self.node_idx);
        buf.put_u8(self.dead_node);
        buf.put_u8(self.flags);
        buf.put_u8(0);
        buf.put_u32(0);
    }
}

/// The layout the two join-time queries share: the sender, a count of table entries, the
/// domain name, then a fixed table of `max` slots of `slot_len` bytes of which `count` are
/// used. Only the kernel's field names differ.
struct QueryHeader {
    node: &'static str,
    count: &'static str,
    namelen: &'static str,
    domain: &'static str,
    table: &'static str,
    max: usize,
    slot_len: usize,
    /// The whole message: header and table.
    len: usize,
}

const QUERY_REGION_HEADER: QueryHeader = QueryHeader {
    node: "qr_node",
    count: "qr_numregions",
    namelen: "qr_namelen",
    domain: "qr_domain",
    table: "qr_regions",
    max: MAX_REGIONS,
    slot_len: REGION_NAME_LEN,
    len: QUERY_REGION_LEN,
};

const QUERY_NODEINFO_HEADER: QueryHeader = QueryHeader {
    node: "qn_nodenum",
    count: "qn_numnodes",
    namelen: "qn_namelen",
    domain: "qn_domain",
    table: "qn_nodes",
    max: MAX_NODES,
    slot_len: 8,
    len: QUERY_NODEINFO_LEN,
};

impl QueryHeader {
    /// Reads the header and checks that the whole table is present; returns the sender, the
    /// number of used slots and the domain.
    fn decode(&self, r: &mut Reader<'_>) -> Result<(u8, usize, DomainName), DecodeError> {
        let node = r.u8(self.node)?;
        let count = usize::from(r.u8(self.count)?);
        let namelen = r.u8(self.namelen)?;
        r.skip("pad1", 1)?;
        let domain = r.domain_name(self.namelen, namelen, self.domain)?;
        let count = r.at_most(self.count, count, self.max)?;
        r.require(self.table, self.len)?;
        Ok((node, count, domain))
    }

    fn encode<B: BufMut>(&self, buf: &mut B, node: u8, count: usize, domain: &DomainName) {
        buf.put_u8(node);
        buf.put_u8(count as u8);
        buf.put_u8(domain.as_bytes().len() as u8);
        buf.put_u8(0);
        put_name(buf, domain.as_bytes(), NAME_FIELD_LEN);
    }

    /// Zero-fills the table's unused slots.
    fn pad_table<B: BufMut>(&self, buf: &mut B, used: usize) {
        buf.put_bytes(0, (self.max - used) * self.slot_len);
    }
}

/// `dlm_query_region` (519): the joining node's global-heartbeat regions; must equal ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRegion {
    pub node: u8,
    pub domain: DomainName,
    /// Region names, each a 32-byte slot compared whole; empty in local heartbeat mode.
    pub regions: Vec<[u8; REGION_NAME_LEN]>,
}

impl QueryRegion {
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(MsgType::QueryRegion.name(), buf);
        let (node, numregions, domain) = QUERY_REGION_HEADER.decode(&mut r)?;
        let mut regions = Vec::with_capacity(numregions);
        for _ in 0..numregions {
            regions.push(r.array::<REGION_NAME_LEN>("qr_regions")?);
        }
        Ok(QueryRegion {
            node,
            domain,
            regions,
        })
    }
    /// Encodes the message; regions beyond [`MAX_REGIONS`] are not written.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        let regions = &self.regions[..self.regions.len().min(MAX_REGIONS)];
        QUERY_REGION_HEADER.encode(buf, self.node, regions.len(), &self.domain);
        for region in regions {
            buf.put_slice(region);
        }
        QUERY_REGION_HEADER.pad_table(buf, regions.len());
    }
}

/// One configured node in `dlm_query_nodeinfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    pub nodenum: u8,
    pub ipv4_port: u16,
    pub ipv4_address: Ipv4Addr,
}

/// `dlm_query_nodeinfo` (520): the joining node's node table; must equal ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryNodeinfo {
    pub nodenum: u8,
    pub domain: DomainName,
    /// Configured nodes in ascending order, at most [`MAX_NODES`].
    pub nodes: Vec<NodeInfo>,
}

impl QueryNodeinfo {
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(MsgType::QueryNodeinfo.name(), buf);
        let (nodenum, numnodes, domain) = QUERY_NODEINFO_HEADER.decode(&mut r)?;
        let mut nodes = Vec::with_capacity(numnodes);
        for _ in 0..numnodes {
            let nodenum = r.u8("ni_nodenum")?;
            r.skip("ni_pad1", 1)?;
            let ipv4_port = r.u16("ni_ipv4_port")?;
            let ipv4_address = Ipv4Addr::from(r.u32("ni_ipv4_address")?);
            nodes.push(NodeInfo {
                nodenum,
                ipv4_port,
                ipv4_address,
            });
        }
        Ok(QueryNodeinfo {
            nodenum,
            domain,
            nodes,
        })
    }
    /// Encodes the message; nodes beyond [`MAX_NODES`] are not written.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        let nodes = &self.nodes[..self.nodes.len().min(MAX_NODES)];
        QUERY_NODEINFO_HEADER.encode(buf, self.nodenum, nodes.len(), &self.domain);
        for n in nodes {
            buf.put_u8(n.nodenum);
            buf.put_u8(0);
            buf.put_u16(n.ipv4_port);
            buf.put_u32(u32::from(n.ipv4_address));
        }
        QUERY_NODEINFO_HEADER.pad_table(buf, nodes.len());
    }
}

/// Defines [`DlmMessage`] from one table of (variant = o2net message type, payload type,
/// decoder), so that the enum, its decoder, its type and its encoder cannot disagree.
macro_rules! dlm_messages {
    ($($variant:ident($payload:ty) = $decode:path,)*) => {
        /// Any DLM message payload, tagged by its o2net message type.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum DlmMessage {
            $($variant($payload),)*
        }

        impl DlmMessage {
            /// Decodes the payload of an o2net request of type `msg_type`.
            pub fn decode(msg_type: u16, payload: &[u8]) -> Result<DlmMessage, DecodeError> {
                let unknown = || DecodeError {
                    message: "o2net request",
                    field: "msg_type",
                    problem: Problem::UnknownType(msg_type),
                };
                Ok(match MsgType::from_wire(msg_type).ok_or_else(unknown)? {
                    $(MsgType::$variant => DlmMessage::$variant($decode(payload)?),)*
                    MsgType::Unused1 => return Err(unknown()),
                })
            }

            /// The o2net message type of this payload.
            pub fn msg_type(&self) -> MsgType {
                match self {
                    $(DlmMessage::$variant(_) => MsgType::$variant,)*
                }
            }

            /// Appends the payload bytes.
            pub fn encode<B: BufMut>(&self, buf: &mut B) {
                match self {
                    $(DlmMessage::$variant(m) => m.encode(buf),)*
                }
            }
        }
    };
}

dlm_messages! {
    MasterRequest(MasterRequest) = MasterRequest::decode,
    AssertMaster(AssertMaster) = AssertMaster::decode,
    CreateLock(CreateLock) = CreateLock::decode,
    ConvertLock(ConvertLock) = ConvertLock::decode,
    ProxyAst(ProxyAst) = ProxyAst::decode,
    UnlockLock(UnlockLock) = UnlockLock::decode,
    DerefLockres(DerefLockres) = DerefLockres::decode,
    MigrateRequest(MigrateRequest) = MigrateRequest::decode,
    MigLockres(MigLockres) = MigLockres::decode,
    QueryJoin(QueryJoinRequest) = QueryJoinRequest::decode,
    AssertJoined(JoinNotice) = JoinNotice::decode_assert_joined,
    CancelJoin(JoinNotice) = JoinNotice::decode_cancel_join,
    ExitDomain(ExitDomain) = ExitDomain::decode,
    MasterRequery(MasterRequery) = MasterRequery::decode,
    LockRequest(RecoNotice) = RecoNotice::decode_lock_request,
    RecoDataDone(RecoDataDone) = RecoDataDone::decode,
    BeginReco(RecoNotice) = RecoNotice::decode_begin_reco,
    FinalizeReco(FinalizeReco) = FinalizeReco::decode,
    QueryRegion(QueryRegion) = QueryRegion::decode,
    QueryNodeinfo(QueryNodeinfo) = QueryNodeinfo::decode,
    BeginExitDomain(ExitDomain) = ExitDomain::decode_begin,
    DerefLockresDone(DerefLockres) = DerefLockres::decode_done,
}

impl DlmMessage {
    /// The o2net key to send this message with, given the domain it belongs to.
    pub fn key(&self, domain: &DomainName) -> u32 {
        match self.msg_type().key_kind() {
            super::KeyKind::Module => super::DLM_MOD_KEY,
            super::KeyKind::Domain | super::KeyKind::Unused => domain.key(),
        }
    }

    /// The payload as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    //! Byte layouts of the messages the kernel capture does not contain, written out by hand
    //! from the offsets of docs/o2dlm.md §7.1.
    use super::*;

    fn name(s: &[u8]) -> LockName {
        LockName::new(s).unwrap()
    }

    /// `field` zero-padded to `len` bytes.
    fn padded(field: &[u8], len: usize) -> Vec<u8> {
        let mut v = field.to_vec();
        v.resize(len, 0);
        v
    }

    fn check(msg: DlmMessage, expected: Vec<u8>) {
        assert_eq!(msg.to_vec(), expected, "{}", msg.msg_type());
        assert_eq!(
            DlmMessage::decode(msg.msg_type().to_wire(), &expected).unwrap(),
            msg
        );
        assert!(expected.len() <= msg.msg_type().max_len());
    }

    #[test]
    fn unlock_lock_layout() {
        let mut lvb = [0u8; LVB_LEN];
        lvb[0] = 0xab;
        let mut expected = vec![0x03, 0, 0, 0, 0, 0, 0, 0x2a];
        expected.extend([0x20, 0, 0x01, 0x00]); // PUT_LVB | VALBLK
        expected.extend([0, 0, 3, 4]); // pad1(2), node_idx, namelen
        expected.extend(padded(b"lock", 64));
        expected.extend(lvb);
        check(
            DlmMessage::UnlockLock(UnlockLock {
                cookie: 0x0300_0000_0000_002a,
                flags: LkmFlags::VALBLK | LkmFlags::PUT_LVB,
                node_idx: 3,
                name: name(b"lock"),
                lvb: Some(lvb),
            }),
            expected,
        );
        // A cancel carries no LVB and is 80 bytes.
        let cancel = UnlockLock {
            cookie: 7,
            flags: LkmFlags::CANCEL,
            node_idx: 1,
            name: name(b"x"),
            lvb: None,
        };
        let mut v = Vec::new();
        cancel.encode(&mut v);
        assert_eq!(v.len(), 80);
        assert_eq!(&v[8..16], &[0, 0, 0x20, 0, 0, 0, 1, 1]);
    }

    #[test]
    fn migrate_request_layout() {
        let mut expected = vec![4, 9, 2, 0, 0, 0, 0, 0];
        expected.extend(padded(b"ab", 64));
        check(
            DlmMessage::MigrateRequest(MigrateRequest {
                master: 4,
                new_master: 9,
                name: name(b"ab"),
            }),
            expected,
        );
    }

    #[test]
    fn cancel_join_layout() {
        let mut expected = vec![5, 0, 0, 3];
        expected.extend(padded(b"dom", 64));
        check(
            DlmMessage::CancelJoin(JoinNotice {
                node_idx: 5,
                domain: DomainName::new(b"dom").unwrap(),
            }),
            expected,
        );
    }

    #[test]
    fn master_requery_layout() {
        let mut expected = vec![0, 0, 6, 9, 0, 0, 0, 0];
        expected.extend(padded(b"$RECOVERY", 64));
        check(
            DlmMessage::MasterRequery(MasterRequery {
                node_idx: 6,
                name: name(b"$RECOVERY"),
            }),
            expected,
        );
    }

    #[test]
    fn recovery_message_layouts() {
        let notice = RecoNotice {
            node_idx: 2,
            dead_node: 7,
        };
        check(
            DlmMessage::LockRequest(notice),
            vec![2, 7, 0, 0, 0, 0, 0, 0],
        );
        check(DlmMessage::BeginReco(notice), vec![2, 7, 0, 0, 0, 0, 0, 0]);
        check(
            DlmMessage::RecoDataDone(RecoDataDone {
                node_idx: 2,
                dead_node: 7,
            }),
            padded(&[2, 7], 72),
        );
        check(
            DlmMessage::FinalizeReco(FinalizeReco {
                node_idx: 2,
                dead_node: 7,
                flags: FINALIZE_STAGE2,
            }),
            vec![2, 7, 1, 0, 0, 0, 0, 0],
        );
    }

    #[test]
    fn deref_done_layout() {
        let mut expected = vec![0, 0, 0, 0, 0, 0, 3, 5];
        expected.extend(padded(b"xlock", 64));
        check(
            DlmMessage::DerefLockresDone(DerefLockres {
                node_idx: 3,
                name: name(b"xlock"),
            }),
            expected,
        );
    }

    #[test]
    fn dummy_migratable_lock_layout() {
        let m = MigLockres {
            master: crate::wire::NODE_UNKNOWN,
            flags: MRES_RECOVERY | MRES_ALL_DONE,
            total_locks: 1,
            mig_cookie: 0,
            name: name(b"r"),
            lvb: [0; LVB_LEN],
            locks: vec![MigratableLock::dummy(4)],
        };
        let v = DlmMessage::MigLockres(m.clone()).to_vec();
        assert_eq!(v.len(), MIG_LOCKRES_HEADER_LEN + MIGRATABLE_LOCK_LEN);
        assert_eq!(&v[..4], &[255, 1, 1, 5]);
        assert_eq!(
            &v[MIG_LOCKRES_HEADER_LEN..],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0xff, 0xff, 0xff, 4]
        );
        assert!(MigLockres::decode(&v).unwrap().locks[0].is_dummy());
    }

    #[test]
    fn decode_errors_name_message_and_field() {
        let e = CreateLock::decode(&[0u8; 20]).unwrap_err();
        assert_eq!(e.message, "DLM_CREATE_LOCK_MSG");
        assert_eq!(e.field, "name");
        assert_eq!(e.problem, Problem::Truncated { need: 80, have: 20 });

        let mut v = Vec::new();
        CreateLock {
            cookie: 1,
            flags: LkmFlags::empty(),
            node_idx: 1,
            requested_type: LockMode::Ex,
            name: name(b"a"),
        }
        .encode(&mut v);
        v[15] = 33;
        let e = CreateLock::decode(&v).unwrap_err();
        assert_eq!(
            (e.field, e.problem),
            ("namelen", Problem::NameTooLong { len: 33, max: 32 })
        );
        v[15] = 1;
        v[14] = 4; // PW: the kernel never sends it
        let e = CreateLock::decode(&v).unwrap_err();
        assert_eq!(
            (e.field, e.problem.clone()),
            ("requested_type", Problem::BadMode(4))
        );
        assert_eq!(
            e.to_string(),
            "DLM_CREATE_LOCK_MSG: field requested_type: invalid lock mode 4"
        );

        // A convert that announces an LVB must carry it.
        let mut c = Vec::new();
        ConvertLock {
            cookie: 1,
            flags: LkmFlags::CONVERT,
            node_idx: 1,
            requested_type: LockMode::Pr,
            name: name(b"a"),
            lvb: Some([1; LVB_LEN]),
        }
        .encode(&mut c);
        let e = ConvertLock::decode(&c[..100]).unwrap_err();
        assert_eq!(e.field, "lvb");

        let e = DlmMessage::decode(501, &[]).unwrap_err();
        assert_eq!(e.problem, Problem::UnknownType(501));
        assert!(QueryJoinResponse::from_status(0x0400_0000).is_err());
    }
}
