//! Fuzzes the o2dlm lock-resource engine and the requester side with arbitrary operation
//! sequences (what a hostile or buggy peer could make a master or requester do): nothing may
//! panic, and the master's granted and converting locks must stay pairwise compatible.
#![no_main]

use libfuzzer_sys::fuzz_target;
use o2dlm::lockres::{LockId, LockResource};
use o2dlm::secondary::OwnLocks;
use o2dlm::wire::{
    AstType, LkmFlags, LockMode, LockName, MigratableLock, ProxyAst, QueueKind,
};

fn mode(b: u8) -> LockMode {
    LockMode::ALL[usize::from(b % 3)]
}

fuzz_target!(|data: &[u8]| {
    let name = LockName::new(b"fuzz").unwrap();
    let mut res = LockResource::new(name);
    let mut own = OwnLocks::new(1, name);
    let mut out = Vec::new();
    // Locks recreated from migration records are the sender's claim, not our grants.
    let mut imported = false;
    for op in data.chunks_exact(4) {
        let (kind, a, b, c) = (op[0], op[1], op[2], op[3]);
        let id = LockId {
            node: a % 4,
            cookie: u64::from(b % 8),
        };
        let flags = LkmFlags(u32::from(c) << 8 | u32::from(c) << 24);
        let lvb = [c; 64];
        match kind % 12 {
            0 => {
                let _ = res.request(id, mode(c), flags);
            }
            1 => {
                let _ = res.convert(id, mode(c), flags, Some(&lvb).filter(|_| c & 1 == 0));
            }
            2 => {
                let _ = res.unlock(id, flags, Some(&lvb).filter(|_| c & 1 == 0));
            }
            3 => res.shuffle(),
            4 => {
                out.clear();
                res.flush(&mut out);
            }
            5 => {
                res.remove_node_locks(a % 4);
            }
            6 => {
                let ml = MigratableLock {
                    cookie: u64::from(b % 8),
                    list: QueueKind::ALL[usize::from(c % 3)],
                    flags: c,
                    type_: LockMode::from_wire(b as i8).ok().flatten().or(Some(mode(c))),
                    convert_type: (c & 0x40 != 0).then(|| mode(c >> 2)),
                    highest_blocked: None,
                    node: a % 4,
                };
                imported |= res.add_migrated_lock(0, c >> 4, &lvb, &ml).is_ok();
            }
            7 => {
                own.begin_lock(u64::from(b % 8), mode(c), flags);
            }
            8 => {
                let _ = own.begin_convert(u64::from(b % 8), mode(c), flags, &lvb);
            }
            9 => {
                let _ = own.begin_unlock(u64::from(b % 8), flags, &lvb);
            }
            10 => {
                let status = o2dlm::wire::DlmStatus::ALL[usize::from(c) % 42];
                match a % 3 {
                    0 => {
                        own.lock_reply(u64::from(b % 8), status);
                    }
                    1 => {
                        own.convert_reply(u64::from(b % 8), status);
                    }
                    _ => {
                        own.unlock_reply(u64::from(b % 8), status);
                    }
                }
            }
            _ => {
                let past = ProxyAst {
                    cookie: u64::from(b % 8),
                    flags,
                    node_idx: 0,
                    ast_type: [AstType::Ast, AstType::Bast, AstType::AstUnlock][usize::from(a % 3)],
                    blocked_type: LockMode::from_wire(c as i8).ok().flatten(),
                    name,
                    lvb: (c & 1 == 0).then_some(lvb),
                };
                let _ = own.proxy_ast(&past);
            }
        }
        if !imported {
            let holders: Vec<LockMode> = res
                .queue(QueueKind::Granted)
                .iter()
                .chain(res.queue(QueueKind::Converting))
                .map(|l| l.mode)
                .collect();
            for (i, x) in holders.iter().enumerate() {
                for y in &holders[i + 1..] {
                    assert!(LockMode::compatible(*x, *y), "{x} and {y} held together");
                }
            }
        }
    }
});
