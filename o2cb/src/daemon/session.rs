//! `o2cb lock` sessions: a lock held for as long as the client's connection says so.
//!
//! Request `lock DOMAIN NAME MODE [trylock]` (MODE `ex`, `pr` or `nl`). The daemon registers
//! the domain (waiting for the node to be online; a trylock does not wait), asks for the lock
//! and answers `ok granted` with a body line `lease_ms N` (or `busy` when a trylock is not
//! granted at once, `err` otherwise); from then on the lock is held until the client sends
//! `unlock` (answered `ok unlocked`) or goes away, whichever comes first: a client killed
//! while running its command never leaves a lock behind. A client gone before the grant
//! cancels its request. While it holds the lock the client sends `alive` at least every
//! lease, answered `ok alive`: a client that hears nothing for a lease (this daemon died or
//! is paused, and the other nodes may soon take the lock over) must stop using the lock. When
//! the node goes offline or fences, the lock is gone and the client told `err`.
//!
//! The lease is half of the heartbeat's dead time less a period: the other nodes declare this
//! node dead, and may grant the lock elsewhere, no sooner than the dead time after its last
//! heartbeat write, so a client that stops within a lease of the daemon's last answer stops
//! before anyone else can hold the lock.
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
    next_request(r).await.is_some()
}

/// The client's next request, decoded (empty words for a line that does not decode); None
/// at its end.
async fn next_request(r: &mut BufReader<OwnedReadHalf>) -> Option<Vec<String>> {
    let mut line = Vec::new();
    match (&mut *r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await
    {
        Ok(n) if n > 0 => Some(super::proto::decode_request(&line).unwrap_or_default()),
        _ => None,
    }
}

/// How long a client may go without an answer from this daemon (see the module docs).
pub(crate) fn lease_ms(t: &o2nm::Timeouts) -> u64 {
    let period = u64::from(t.heartbeat_period_ms);
    (u64::from(t.dead_threshold.saturating_sub(1)) * period / 2).max(50)
}

/// How a held lock ends.
enum Held {
    /// The client asked to unlock, or went away.
    Released,
    /// The node went offline or fenced under the lock.
    Lost(&'static str),
}

/// Holds the lock for the client: answers its `alive` requests until it unlocks or goes,
/// or the node stops being able to hold it.
async fn hold(
    d: &Arc<Daemon>,
    r: &mut BufReader<OwnedReadHalf>,
    w: &mut OwnedWriteHalf,
    leaving: &mut tokio::sync::watch::Receiver<bool>,
) -> Held {
    let mut stage = d.node.watch_stage();
    loop {
        let words = tokio::select! {
            words = next_request(r) => words,
            _ = leaving.wait_for(|l| *l) => return Held::Lost("the node went offline; the lock was released"),
            _ = stage.wait_for(|s| *s == o2node::Stage::Fenced) => return Held::Lost("the node fenced itself; the lock is lost"),
        };
        match words.as_deref() {
            Some([w0]) if w0 == "alive" => {
                let alive = Reply {
                    status: Status::Ok,
                    word: "alive".into(),
                    body: String::new(),
                };
                if w.write_all(&alive.encode()).await.is_err() {
                    return Held::Released;
                }
            }
            _ => return Held::Released,
        }
    }
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
                body: format!("lease_ms {}\n", lease_ms(d.cluster.timeouts())),
            };
            let held = if w.write_all(&granted.encode()).await.is_ok() {
                hold(d, r, w, &mut leaving).await
            } else {
                Held::Released
            };
            let unlocked = handle.unlock().await;
            tracing::info!(node = d.local, domain = %domain, lock = %name, "lock released by a client");
            Some(match (unlocked, held) {
                (_, Held::Lost(why)) => Reply::err(why),
                (Err(e), _) => Reply::err(e.to_string()),
                (Ok(()), Held::Released) => Reply {
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
