//! Running `o2cb lock`'s command while the lock is held, and only while it is.
//!
//! The lock lives in the node daemon; the command runs beside it. If the daemon dies, is
//! paused, or tells us the lock is gone, the other nodes may soon grant the lock elsewhere,
//! so the command must stop before they can: it runs in a process group of its own, which
//! is killed (SIGKILL) as soon as the daemon closes the connection, answers `err`, or leaves
//! an `alive` unanswered for a lease (the daemon's `lease_ms`, shorter than the time the
//! others need to declare this node dead). Signals that would end `o2cb lock` (SIGINT,
//! SIGTERM, SIGHUP, SIGQUIT) go to the command's group instead, and a command on a terminal
//! gets the terminal for the time it runs, as a shell gives a job.

use std::os::unix::process::CommandExt;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::daemon::proto::{NoReply, Session, Status};

/// The command's process group, for the signal handler.
static GROUP: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let g = GROUP.load(Ordering::Relaxed);
    if g > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe {
            libc::kill(-g, sig);
        }
    }
}

/// How the command's time under the lock ended.
pub enum Outcome {
    /// The command ended; the lock was still held until then.
    Ended(ExitStatus),
    /// The lock was lost under the command, which was killed: why.
    Lost(String),
}

/// Starts `cmd` in a group of its own (with the terminal, if we have it in the foreground).
fn spawn(cmd: &mut std::process::Command) -> std::io::Result<Child> {
    // SAFETY: isatty, getpgrp and tcgetpgrp have no preconditions.
    let foreground = unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() };
    cmd.process_group(0);
    if foreground {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                libc::tcsetpgrp(0, libc::getpid());
                libc::signal(libc::SIGTTOU, libc::SIG_DFL);
                Ok(())
            });
        }
    }
    let child = cmd.spawn()?;
    GROUP.store(child.id() as i32, Ordering::Relaxed);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: `forward` only calls kill(2).
        unsafe {
            libc::signal(
                sig,
                forward as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
    Ok(child)
}

/// Takes the terminal back after the command.
fn restore_terminal() {
    // SAFETY: plain calls on our own process and terminal.
    unsafe {
        if libc::isatty(0) == 1 {
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(0, libc::getpgrp());
            libc::signal(libc::SIGTTOU, libc::SIG_DFL);
        }
    }
}

/// Runs `cmd` while `session` holds its lock; `lease` is how long the daemon may stay
/// silent before the lock counts as lost.
pub fn run(
    cmd: &mut std::process::Command,
    session: Session,
    lease: Duration,
) -> std::io::Result<(Outcome, Session)> {
    let mut child = spawn(cmd)?;
    let group = child.id() as i32;
    let session = Arc::new(Mutex::new(session));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (session, stop) = (session.clone(), stop.clone());
        std::thread::spawn(move || watch(&session, &stop, lease, group))
    };
    let status = child.wait();
    stop.store(true, Ordering::Relaxed);
    let lost = watcher
        .join()
        .unwrap_or(Some("the lease watcher failed".into()));
    GROUP.store(0, Ordering::Relaxed);
    restore_terminal();
    let session = match Arc::try_unwrap(session) {
        Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
        Err(_) => unreachable!("the watcher has ended"),
    };
    let outcome = match lost {
        Some(why) => Outcome::Lost(why),
        None => Outcome::Ended(status?),
    };
    Ok((outcome, session))
}

/// Keeps the lease: `alive` every quarter lease, an answer within the lease. Returns why
/// the lock was lost (after killing the command's group), or None once `stop` is set.
fn watch(
    session: &Mutex<Session>,
    stop: &AtomicBool,
    lease: Duration,
    group: i32,
) -> Option<String> {
    let lost = |why: String| {
        // SAFETY: kill(2) of the command's own process group.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        Some(why)
    };
    let interval = lease / 4;
    let mut answered = Instant::now();
    loop {
        let mut s = session.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(NoReply::Gone(e)) = s.send(&["alive"]) {
            return lost(format!("the node daemon is gone ({e})"));
        }
        match s.reply_within(lease.saturating_sub(answered.elapsed())) {
            Ok(r) if r.status == Status::Ok && r.word == "alive" => answered = Instant::now(),
            Ok(r) => return lost(r.word),
            Err(NoReply::Gone(e)) => return lost(format!("the node daemon is gone ({e})")),
            Err(NoReply::Timeout) => {
                return lost(format!(
                    "no answer from the node daemon for {} ms (paused or stalled)",
                    lease.as_millis()
                ))
            }
        }
        drop(s);
        let next = Instant::now() + interval;
        while Instant::now() < next {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5).min(interval));
        }
    }
}
