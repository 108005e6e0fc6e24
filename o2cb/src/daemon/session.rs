//! `o2cb lock` sessions: a lock held for as long as the client's connection says so.
//!
//! Request `lock DOMAIN NAME MODE [trylock]` (MODE `ex`, `pr` or `nl`). The daemon registers
//! the domain, asks for the lock and answers `ok granted` (or `busy` when a trylock is not
//! granted at once, `err` otherwise); from then on the lock is held until the client sends
//! `unlock` (answered `ok unlocked`) or goes away, whichever comes first: a client killed
//! while running its command never leaves a lock behind. A client gone before the grant
//! cancels its request. When the node goes offline the lock is released and the client told
//! `err`.
//!
//! The lock is a plain DLM lock in the node's membership of the domain, which the dlmfs
//! mount shares (one [`dlmfs_fuse::DomainRegistry`]): unlike a lock file, it is not cached
//! once released, so a trylock elsewhere succeeds as soon as `o2cb lock` ends.

use std::sync::Arc;

use o2dlm::wire::{LkmFlags, LockMode};
use o2dlm::DlmError;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::proto::{Reply, Status, MAX_LINE};
use super::Daemon;

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
    let domain_bytes = o2nm::text::encode(domain);
    // A trylock does not wait for a starting node either: it is refused with the reason.
    let dom = match d.domains.register(&domain_bytes, !trylock).await {
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
    d.domains.unregister(&domain_bytes).await;
}
