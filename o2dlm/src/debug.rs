//! Lock-state dumps in the format of the kernel's debugfs files
//! (`/sys/kernel/debug/o2dlm/<domain>/locking_state`, `dlmdebug.c`), so that tools and people
//! used to reading the kernel's dumps can read ours.
//!
//! `dlm_state` describes the domain ([`write_dlm_state`]), `mle_state` the master list
//! entries ([`write_mle_state`]), and `locking_state` the resources; one resource's record
//! is:
//!
//! ```text
//! NAME:<lock name>
//! LRES:1,<owner>,<state>,<last_used>,<on purge list>,<on dirty list>,<on recovery list>,<inflight locks>,<migration pending>,<asts reserved>,<refs>
//! RMAP:<node> <node> ...
//! LVBX:<64 bytes in hex>
//! LOCK:1,<queue>,<type>,<convert type>,<node>,<cookie node>:<cookie seq>,<on ast list>,<on bast list>,<ast pending>,<bast pending>,<convert pending>,<lock pending>,<cancel pending>,<unlock pending>,<refs>
//! (one LOCK line per lock: granted, then converting, then blocked)
//! <empty line>
//! ```

use std::io::{self, Write};

use crate::join::DomainState;
use crate::lockres::LockResource;
use crate::mastery::MleKind;
use crate::secondary::{OwnLocks, PendingOp};
use crate::wire::{cookie_node, cookie_seq, mode_to_wire, LockName, NodeMap, ProtocolVersion};

/// The per-resource fields of the `LRES:` and `RMAP:` lines that belong to the domain holding
/// the resource rather than to its queues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockresDebug {
    /// The master's node number (255 while unknown).
    pub owner: u8,
    /// `DLM_LOCK_RES_*` state bits.
    pub state: u32,
    /// When the resource became unused, in the driver's clock ticks (jiffies in the kernel).
    pub last_used: i64,
    pub on_purge_list: bool,
    pub on_dirty_list: bool,
    pub on_recovery_list: bool,
    /// Locks being created between mastery and their request.
    pub inflight_locks: u32,
    pub migration_pending: bool,
    pub asts_reserved: u32,
    /// References held on the resource.
    pub refs: u32,
    /// Nodes holding a reference (the master's refmap).
    pub refmap: NodeMap,
}

/// The kernel's `stringify_lockname`: ocfs2 dentry locks ("N" + 17 characters + a big-endian
/// 64-bit inode block number at byte 18) print the block number's low 32 bits in hex; other
/// names print up to their first NUL.
fn write_lock_name<W: Write>(w: &mut W, name: &LockName) -> io::Result<()> {
    const INO_START: usize = 18;
    let b = name.as_bytes();
    let text = |s: &[u8]| -> Vec<u8> { s.iter().copied().take_while(|&c| c != 0).collect() };
    match b.get(INO_START..INO_START + 8) {
        Some(ino) if b.first() == Some(&b'N') => {
            let mut be = [0u8; 8];
            be.copy_from_slice(ino);
            w.write_all(&text(&b[..INO_START - 1]))?;
            write!(w, "{:08x}", u64::from_be_bytes(be) as u32)
        }
        _ => w.write_all(&text(b)),
    }
}

/// Writes one resource's `locking_state` record.
pub fn write_locking_state<W: Write>(
    w: &mut W,
    res: &LockResource,
    info: &LockresDebug,
) -> io::Result<()> {
    write_lockres_header(w, res.name(), res.lvb(), info)?;
    for (queue, l) in res.locks() {
        // The master's copy of a lock carries no requester-side pending flags; its references
        // are the creator's and the queue's, plus one per delivery list it is on.
        let refs = 2 + u32::from(l.ast_pending) + u32::from(l.bast_pending);
        writeln!(
            w,
            "LOCK:1,{},{},{},{},{}:{},{},{},{},{},0,0,0,0,{}",
            queue as u8,
            mode_to_wire(Some(l.mode)),
            mode_to_wire(l.convert_type),
            l.id.node,
            cookie_node(l.id.cookie),
            cookie_seq(l.id.cookie),
            u8::from(l.ast_pending),
            u8::from(l.bast_pending),
            u8::from(l.ast_pending),
            u8::from(l.bast_pending),
            refs
        )?;
    }
    w.write_all(b"\n")
}

/// Writes the `locking_state` record of a resource mastered elsewhere: this node's own locks
/// (the kernel's non-master copy), with their pending-operation flags. A non-master's value
/// block is not kept with the resource, so `LVBX` is zero, as the kernel's usually is there.
pub fn write_locking_state_secondary<W: Write>(
    w: &mut W,
    name: &LockName,
    own: &OwnLocks,
    info: &LockresDebug,
) -> io::Result<()> {
    write_lockres_header(w, name, &[0; crate::wire::LVB_LEN], info)?;
    for l in own.locks() {
        let p = |op: PendingOp| u8::from(l.pending == Some(op));
        writeln!(
            w,
            "LOCK:1,{},{},{},{},{}:{},0,0,0,0,{},{},{},{},2",
            l.queue as u8,
            mode_to_wire(Some(l.mode)),
            mode_to_wire(l.convert_type),
            own.lock_id(l.cookie).node,
            cookie_node(l.cookie),
            cookie_seq(l.cookie),
            p(PendingOp::Convert),
            p(PendingOp::Lock),
            p(PendingOp::Cancel),
            p(PendingOp::Unlock),
        )?;
    }
    w.write_all(b"\n")
}

fn write_lockres_header<W: Write>(
    w: &mut W,
    name: &LockName,
    lvb: &crate::wire::Lvb,
    info: &LockresDebug,
) -> io::Result<()> {
    w.write_all(b"NAME:")?;
    write_lock_name(w, name)?;
    writeln!(
        w,
        "\nLRES:1,{},{},{},{},{},{},{},{},{},{}",
        info.owner,
        info.state,
        info.last_used,
        u8::from(info.on_purge_list),
        u8::from(info.on_dirty_list),
        u8::from(info.on_recovery_list),
        info.inflight_locks,
        u8::from(info.migration_pending),
        info.asts_reserved,
        info.refs
    )?;
    w.write_all(b"RMAP:")?;
    write_nodemap(w, &info.refmap)?;
    w.write_all(b"\nLVBX:")?;
    for b in lvb {
        write!(w, "{b:02x}")?;
    }
    w.write_all(b"\n")
}

fn write_nodemap<W: Write>(w: &mut W, map: &NodeMap) -> io::Result<()> {
    for n in map.iter() {
        write!(w, "{n} ")?;
    }
    Ok(())
}

/// What `mle_state` shows of one master list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MleDebug {
    pub name: LockName,
    pub kind: MleKind,
    /// The master once known, else 255.
    pub master: u8,
    /// The migration target, else 255.
    pub new_master: u8,
    /// Attached to heartbeat events.
    pub hb_events: bool,
    pub in_use: bool,
    pub refs: u32,
    pub maybe: NodeMap,
    pub vote: NodeMap,
    pub response: NodeMap,
    pub node: NodeMap,
}

/// Writes one entry of `mle_state` (`dump_mle`).
pub fn write_mle_state<W: Write>(w: &mut W, mle: &MleDebug) -> io::Result<()> {
    let kind = match mle.kind {
        MleKind::Block => "BLK",
        MleKind::Master => "MAS",
        MleKind::Migration => "MIG",
    };
    write_lock_name(w, &mle.name)?;
    writeln!(
        w,
        "\t{kind:>3}\tmas={:>3}\tnew={:>3}\tevt={}\tuse={}\tref={:>3}",
        mle.master,
        mle.new_master,
        u8::from(mle.hb_events),
        u8::from(mle.in_use),
        mle.refs
    )?;
    for (label, map) in [
        ("Maybe=", &mle.maybe),
        ("Vote=", &mle.vote),
        ("Response=", &mle.response),
        ("Node=", &mle.node),
    ] {
        w.write_all(label.as_bytes())?;
        write_nodemap(w, map)?;
        w.write_all(b"\n")?;
    }
    w.write_all(b"\n")
}

/// A recovery master's progress with one node (`dlm_reco_node_data` states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoNodeState {
    Init,
    Requesting,
    Dead,
    Receiving,
    Requested,
    Done,
    FinalizeSent,
}

impl RecoNodeState {
    fn name(self) -> &'static str {
        match self {
            RecoNodeState::Init => "INIT",
            RecoNodeState::Requesting => "REQUESTING",
            RecoNodeState::Dead => "DEAD",
            RecoNodeState::Receiving => "RECEIVING",
            RecoNodeState::Requested => "REQUESTED",
            RecoNodeState::Done => "DONE",
            RecoNodeState::FinalizeSent => "FINALIZE-SENT",
        }
    }
}

/// What `dlm_state` shows of a domain. Counts are "current (total ever)" pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainDebug {
    pub name: String,
    pub key: u32,
    pub dlm_proto: ProtocolVersion,
    /// The id of the task playing the dlm thread (the kernel prints its pid).
    pub thread_pid: i32,
    pub node: u8,
    pub state: DomainState,
    pub num_joins: u32,
    /// 255 when nobody is joining.
    pub joining_node: u8,
    pub domain_map: NodeMap,
    pub exit_domain_map: NodeMap,
    pub live_map: NodeMap,
    pub resources: (u32, u32),
    pub blocking_mles: (u32, u32),
    pub mastery_mles: (u32, u32),
    pub migration_mles: (u32, u32),
    pub dirty_list_used: bool,
    pub purge_list_used: bool,
    pub pending_asts: bool,
    pub pending_basts: bool,
    pub purge_count: u32,
    pub refs: u32,
    /// 255 when no node is being recovered.
    pub dead_node: u8,
    pub recovery_pid: i32,
    /// 255 when no recovery master is known.
    pub recovery_master: u8,
    pub recovery_active: bool,
    pub recovery_map: NodeMap,
    pub recovery_nodes: Vec<(u8, RecoNodeState)>,
}

/// Writes a domain's `dlm_state` (`debug_state_print`).
pub fn write_dlm_state<W: Write>(w: &mut W, d: &DomainDebug) -> io::Result<()> {
    let state = match d.state {
        DomainState::New => "NEW",
        DomainState::Joined => "JOINED",
        DomainState::InShutdown => "SHUTDOWN",
        DomainState::Leaving => "LEAVING",
    };
    let used = |b: bool| if b { "InUse" } else { "Empty" };
    writeln!(
        w,
        "Domain: {}  Key: 0x{:08x}  Protocol: {}.{}",
        d.name, d.key, d.dlm_proto.major, d.dlm_proto.minor
    )?;
    writeln!(
        w,
        "Thread Pid: {}  Node: {}  State: {state}",
        d.thread_pid, d.node
    )?;
    writeln!(
        w,
        "Number of Joins: {}  Joining Node: {}",
        d.num_joins, d.joining_node
    )?;
    for (label, map) in [
        ("Domain Map: ", &d.domain_map),
        ("Exit Domain Map: ", &d.exit_domain_map),
        ("Live Map: ", &d.live_map),
    ] {
        w.write_all(label.as_bytes())?;
        write_nodemap(w, map)?;
        w.write_all(b"\n")?;
    }
    let mles = [d.blocking_mles, d.mastery_mles, d.migration_mles];
    writeln!(w, "Lock Resources: {} ({})", d.resources.0, d.resources.1)?;
    writeln!(
        w,
        "MLEs: {} ({})",
        mles.iter().map(|m| m.0).sum::<u32>(),
        mles.iter().map(|m| m.1).sum::<u32>()
    )?;
    writeln!(
        w,
        "  Blocking: {} ({})",
        d.blocking_mles.0, d.blocking_mles.1
    )?;
    writeln!(w, "  Mastery: {} ({})", d.mastery_mles.0, d.mastery_mles.1)?;
    writeln!(
        w,
        "  Migration: {} ({})",
        d.migration_mles.0, d.migration_mles.1
    )?;
    writeln!(
        w,
        "Lists: Dirty={}  Purge={}  PendingASTs={}  PendingBASTs={}",
        used(d.dirty_list_used),
        used(d.purge_list_used),
        used(d.pending_asts),
        used(d.pending_basts)
    )?;
    writeln!(w, "Purge Count: {}  Refs: {}", d.purge_count, d.refs)?;
    writeln!(w, "Dead Node: {}", d.dead_node)?;
    writeln!(
        w,
        "Recovery Pid: {}  Master: {}  State: {}",
        d.recovery_pid,
        d.recovery_master,
        if d.recovery_active {
            "ACTIVE"
        } else {
            "INACTIVE"
        }
    )?;
    w.write_all(b"Recovery Map: ")?;
    write_nodemap(w, &d.recovery_map)?;
    w.write_all(b"\nRecovery Node State:\n")?;
    for (n, st) in &d.recovery_nodes {
        writeln!(w, "\t{n} - {}", st.name())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lockres::LockId;
    use crate::wire::{LkmFlags, LockMode};

    fn id(node: u8, seq: u64) -> LockId {
        LockId {
            node,
            cookie: (u64::from(node) << 56) | seq,
        }
    }

    #[test]
    fn dump_has_the_kernels_lines() {
        let mut r = LockResource::new(LockName::new(b"xlock").unwrap());
        r.request(id(1, 5), LockMode::Pr, LkmFlags::empty())
            .unwrap();
        r.request(id(2, 3), LockMode::Pr, LkmFlags::empty())
            .unwrap();
        let mut out = Vec::new();
        r.shuffle();
        r.flush(&mut out);
        r.convert(id(2, 3), LockMode::Ex, LkmFlags::empty(), None)
            .unwrap();
        r.request(id(1, 6), LockMode::Ex, LkmFlags::empty())
            .unwrap();
        // Shuffled but not flushed: both PR holders have a BAST queued.
        r.shuffle();
        let mut lvb = [0u8; 64];
        lvb[..6].copy_from_slice(b"from-A");
        r.set_lvb(lvb);
        let info = LockresDebug {
            owner: 1,
            state: 0,
            last_used: 0,
            refs: 3,
            refmap: [2u8].into_iter().collect(),
            ..LockresDebug::default()
        };
        let mut dump = Vec::new();
        write_locking_state(&mut dump, &r, &info).unwrap();
        let expected = format!(
            "NAME:xlock\n\
             LRES:1,1,0,0,0,0,0,0,0,0,3\n\
             RMAP:2 \n\
             LVBX:66726f6d2d41{}\n\
             LOCK:1,0,3,-1,1,1:5,0,1,0,1,0,0,0,0,3\n\
             LOCK:1,1,3,5,2,2:3,0,1,0,1,0,0,0,0,3\n\
             LOCK:1,2,5,-1,1,1:6,0,0,0,0,0,0,0,0,2\n\n",
            "0".repeat(116)
        );
        assert_eq!(String::from_utf8(dump).unwrap(), expected);
    }

    #[test]
    fn mle_state_lines() {
        let mle = MleDebug {
            name: LockName::new(b"xlock").unwrap(),
            kind: MleKind::Block,
            master: 255,
            new_master: 255,
            hb_events: true,
            in_use: false,
            refs: 2,
            maybe: [2u8].into_iter().collect(),
            vote: NodeMap::new(),
            response: NodeMap::new(),
            node: [1u8, 2].into_iter().collect(),
        };
        let mut out = Vec::new();
        write_mle_state(&mut out, &mle).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "xlock\tBLK\tmas=255\tnew=255\tevt=1\tuse=0\tref=  2\n\
             Maybe=2 \nVote=\nResponse=\nNode=1 2 \n\n"
        );
    }

    #[test]
    fn dlm_state_lines() {
        let d = DomainDebug {
            name: "xdom".into(),
            key: 0x3033_8102,
            dlm_proto: ProtocolVersion { major: 1, minor: 3 },
            thread_pid: 812,
            node: 1,
            state: DomainState::Joined,
            num_joins: 1,
            joining_node: 255,
            domain_map: [1u8, 2].into_iter().collect(),
            exit_domain_map: NodeMap::new(),
            live_map: [1u8, 2].into_iter().collect(),
            resources: (1, 3),
            blocking_mles: (0, 1),
            mastery_mles: (0, 2),
            migration_mles: (0, 0),
            dirty_list_used: false,
            purge_list_used: true,
            pending_asts: false,
            pending_basts: false,
            purge_count: 1,
            refs: 10,
            dead_node: 255,
            recovery_pid: 813,
            recovery_master: 255,
            recovery_active: false,
            recovery_map: NodeMap::new(),
            recovery_nodes: vec![(2, RecoNodeState::Done)],
        };
        let mut out = Vec::new();
        write_dlm_state(&mut out, &d).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Domain: xdom  Key: 0x30338102  Protocol: 1.3\n\
             Thread Pid: 812  Node: 1  State: JOINED\n\
             Number of Joins: 1  Joining Node: 255\n\
             Domain Map: 1 2 \n\
             Exit Domain Map: \n\
             Live Map: 1 2 \n\
             Lock Resources: 1 (3)\n\
             MLEs: 0 (3)\n\
             \x20 Blocking: 0 (1)\n\
             \x20 Mastery: 0 (2)\n\
             \x20 Migration: 0 (0)\n\
             Lists: Dirty=Empty  Purge=InUse  PendingASTs=Empty  PendingBASTs=Empty\n\
             Purge Count: 1  Refs: 10\n\
             Dead Node: 255\n\
             Recovery Pid: 813  Master: 255  State: INACTIVE\n\
             Recovery Map: \n\
             Recovery Node State:\n\
             \t2 - DONE\n"
        );
    }

    #[test]
    fn dentry_lock_names_print_their_inode() {
        // ocfs2 dentry lock: 'N', 17 characters, then the inode block number big-endian.
        let mut name = b"N000000000000001a".to_vec();
        name.push(0);
        name.extend(0x0000_0001_dead_beefu64.to_be_bytes());
        let r = LockResource::new(LockName::new(&name).unwrap());
        let mut dump = Vec::new();
        write_locking_state(&mut dump, &r, &LockresDebug::default()).unwrap();
        assert!(dump.starts_with(b"NAME:N000000000000001adeadbeef\n"));
        // A short name starting with N prints as it is.
        let r = LockResource::new(LockName::new(b"Nshort").unwrap());
        let mut dump = Vec::new();
        write_locking_state(&mut dump, &r, &LockresDebug::default()).unwrap();
        assert!(dump.starts_with(b"NAME:Nshort\n"));
    }
}
