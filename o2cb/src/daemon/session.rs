//! `o2cb lock` sessions: a lock held for as long as the client's connection says so.
//!
//! Request `lock DOMAIN NAME MODE [trylock]` (MODE `ex`, `pr` or `nl`). The daemon registers
//! the domain, asks for the lock and answers `ok granted` (or `busy` when a trylock is not
//! granted at once, `err` otherwise); from then on the lock is held until the client sends
//! `unlock` (answered `ok unlocked`) or goes away, whichever comes first: a client killed
//! while running its command never leaves a lock behind. A client gone before the grant
//! cancels its request. When the node goes offline the lock is released and the client told
//! `err`. With dlmfs mounted, the lock is taken through the mount (see [`via_dlmfs`]).

use std::sync::Arc;

use o2dlm::wire::{LkmFlags, LockMode};
use o2dlm::DlmError;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::proto::{Reply, Status, MAX_LINE};
use super::{Daemon, Guard};

/// The mode words of the protocol and of `o2cb lock --mode`.
pub fn parse_mode(word: &str) -> Option<LockMode> {
    match word {
        "ex" => Some(LockMode::Ex),
        "pr" => Some(LockMode::Pr),
        "nl" => Some(LockMode::Nl),
        _ => None,
    }
}

/// Waits for the client's next line (true) or its end (false).
async fn next_line(r: &mut BufReader<OwnedReadHalf>) -> bool {
    let mut line = Vec::new();
    matches!(
        (&mut *r).take(MAX_LINE as u64).read_until(b'\n', &mut line).await,
        Ok(n) if n > 0
    )
}

/// With dlmfs mounted, the lock is taken through the mount as a shell script would take it
/// (open of DOMAIN/NAME: for writing for EX, for reading for PR, O_NONBLOCK for a trylock),
/// so that sessions share the mount's membership of the domain (o2dlm has one per node).
/// dlmfs keeps the lock cached at its level after the close, as the kernel's does, so a
/// trylock from another node fails while the lock is cached here (a blocking request makes
/// this node let go). The final reply, if the client is still there to get one.
#[allow(clippy::too_many_arguments)]
async fn via_dlmfs(
    mount: &std::path::Path,
    domain: &str,
    name: &str,
    mode: LockMode,
    trylock: bool,
    r: &mut BufReader<OwnedReadHalf>,
    w: &mut OwnedWriteHalf,
    leaving: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<Reply> {
    use std::os::unix::fs::OpenOptionsExt;
    if mode == LockMode::Nl {
        return Some(Reply::err("dlmfs takes PR and EX locks only"));
    }
    let dir = mount.join(crate::path_of(domain));
    let file = dir.join(crate::path_of(name));
    // A blocked open on FUSE cannot be interrupted: if the client goes away meanwhile, the
    // file is closed (and the lock released) as soon as the open returns.
    let opened = tokio::task::spawn_blocking(move || {
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        std::fs::OpenOptions::new()
            .read(true)
            .write(mode == LockMode::Ex)
            .create(true)
            .mode(0o600)
            .custom_flags(if trylock { libc::O_NONBLOCK } else { 0 })
            .open(&file)
    });
    let held = tokio::select! {
        res = opened => match res {
            Ok(Ok(f)) => f,
            Ok(Err(e)) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                return Some(Reply {
                    status: Status::Busy,
                    word: format!("domain {domain}: lock {name}: busy (dlmfs open: {e})"),
                    body: String::new(),
                })
            }
            Ok(Err(e)) => return Some(Reply::err(format!("dlmfs {domain}/{name}: {e}"))),
            Err(e) => return Some(Reply::err(e.to_string())),
        },
        _ = next_line(r) => return None,
        _ = leaving.wait_for(|l| *l) => return None,
    };
    let granted = Reply {
        status: Status::Ok,
        word: "granted".into(),
        body: String::new(),
    };
    if w.write_all(&granted.encode()).await.is_err() {
        return None;
    }
    let offline = tokio::select! {
        _ = next_line(r) => false,
        _ = leaving.wait_for(|l| *l) => true,
    };
    drop(held);
    Some(if offline {
        Reply::err("the node went offline; the lock was released")
    } else {
        Reply {
            status: Status::Ok,
            word: "unlocked".into(),
            body: String::new(),
        }
    })
}

pub(crate) async fn lock(
    d: &Arc<Daemon>,
    args: &[String],
    r: &mut BufReader<OwnedReadHalf>,
    w: &mut OwnedWriteHalf,
) {
    let (domain, name, mode, trylock) = match args {
        [domain, name, mode] => (domain, name, mode, false),
        [domain, name, mode, t] if t == "trylock" => (domain, name, mode, true),
        _ => {
            let _ = w
                .write_all(&Reply::err("usage: lock DOMAIN NAME ex|pr|nl [trylock]").encode())
                .await;
            return;
        }
    };
    let Some(mode) = parse_mode(mode) else {
        let _ = w
            .write_all(&Reply::err(format!("unknown lock mode '{mode}' (ex, pr or nl)")).encode())
            .await;
        return;
    };
    let mut leaving = d.leaving.subscribe();
    if *leaving.borrow() {
        let _ = w
            .write_all(&Reply::err("the node is going offline").encode())
            .await;
        return;
    }
    let mounted = d.dlmfs.guard().as_ref().map(|m| m.path().to_path_buf());
    if let Some(mount) = mounted {
        let reply = via_dlmfs(&mount, domain, name, mode, trylock, r, w, &mut leaving).await;
        if let Some(reply) = reply {
            let _ = w.write_all(&reply.encode()).await;
        }
        return;
    }
    let dom = match d.domains.register(domain).await {
        Ok(dom) => dom,
        Err(e) => {
            let _ = w.write_all(&Reply::err(e.to_string()).encode()).await;
            return;
        }
    };
    let flags = if trylock {
        LkmFlags::NOQUEUE
    } else {
        LkmFlags::empty()
    };
    let name_bytes = o2nm::text::encode(name);
    // Dropping the request (client gone, node leaving) cancels it.
    let granted = tokio::select! {
        res = dom.lock(&name_bytes, mode, flags) => Some(res),
        _ = next_line(r) => None,
        _ = leaving.wait_for(|l| *l) => None,
    };
    let reply = match granted {
        None => None,
        Some(Err(e @ DlmError::NotQueued { .. })) => Some(Reply {
            status: Status::Busy,
            word: e.to_string(),
            body: String::new(),
        }),
        Some(Err(e)) => Some(Reply::err(e.to_string())),
        Some(Ok(handle)) => {
            tracing::info!(node = d.local, domain = %domain, lock = %name, ?mode, "lock granted to a client");
            let granted = Reply {
                status: Status::Ok,
                word: "granted".into(),
                body: String::new(),
            };
            let client_there = w.write_all(&granted.encode()).await.is_ok();
            let offline = if client_there {
                tokio::select! {
                    _ = next_line(r) => false,
                    _ = leaving.wait_for(|l| *l) => true,
                }
            } else {
                false
            };
            let unlocked = handle.unlock().await;
            tracing::info!(node = d.local, domain = %domain, lock = %name, "lock released by a client");
            Some(match (unlocked, offline) {
                (Err(e), _) => Reply::err(e.to_string()),
                (Ok(()), true) => Reply::err("the node went offline; the lock was released"),
                (Ok(()), false) => Reply {
                    status: Status::Ok,
                    word: "unlocked".into(),
                    body: String::new(),
                },
            })
        }
    };
    if let Some(reply) = reply {
        let _ = w.write_all(&reply.encode()).await;
    }
    d.domains.unregister(domain).await;
}
