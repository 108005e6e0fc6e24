//! Lock-state dumps in the format of the kernel's debugfs files
//! (`/sys/kernel/debug/o2dlm/<domain>/locking_state`, `dlmdebug.c`), so that tools and people
//! used to reading the kernel's dumps can read ours.
//!
//! One resource's record is:
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

use crate::lockres::LockResource;
use crate::wire::{cookie_node, cookie_seq, mode_to_wire, LockName, NodeMap};

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
    w.write_all(b"NAME:")?;
    write_lock_name(w, res.name())?;
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
    for n in info.refmap.iter() {
        write!(w, "{n} ")?;
    }
    w.write_all(b"\nLVBX:")?;
    for b in res.lvb() {
        write!(w, "{b:02x}")?;
    }
    w.write_all(b"\n")?;
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
