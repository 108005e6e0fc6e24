//! The control socket: where it lives and the small line protocol `o2cb` speaks over it.
//!
//! # Where
//!
//! One Unix socket per node, so that several nodes can run on one machine:
//! `RUNDIR/CLUSTER.NODE.sock`, where RUNDIR is `$O2CB_RUNTIME_DIR` if set, else `/run/o2cb`
//! for root, else `$XDG_RUNTIME_DIR/o2cb`, else `/tmp/o2cb-UID`. A daemon started by
//! `o2cb online` logs to `RUNDIR/CLUSTER.NODE.log`.
//!
//! # What (version 1)
//!
//! A request is one line: `O2CB/1` then the operation and its arguments, separated by single
//! spaces, each word percent-encoded (names are bytes, see `o2nm::text`, and may hold
//! spaces). The answer is a status line `O2CB/1 ok|err|busy [WORD]`, then body lines, then a
//! line holding only `.`; body lines starting with `.` get one more `.` in front (as SMTP).
//! A text protocol needs no dependency, carries names byte for byte, and can be typed by hand
//! with `socat`. A request of another version is answered `err` naming the versions spoken.
//! The encoding is [`super::wire`]'s.

use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub use super::wire::{decode_request, Reply, Status, MAX_LINE};
use super::wire::{encode_request, read_reply};

/// The environment variable that overrides the runtime directory.
pub const RUNTIME_DIR_ENV: &str = "O2CB_RUNTIME_DIR";

/// The directory of control sockets and daemon logs (see the module documentation).
pub fn runtime_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(RUNTIME_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from("/run/o2cb");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("o2cb"),
        None => PathBuf::from(format!("/tmp/o2cb-{uid}")),
    }
}

/// `RUNDIR/CLUSTER.NODE.EXT`, names byte for byte.
pub fn node_file(dir: &Path, cluster: &str, node: &str, ext: &str) -> PathBuf {
    dir.join(crate::path_of(&format!("{cluster}.{node}.{ext}")))
}

/// A connection to a daemon's control socket.
pub struct Client {
    reader: BufReader<UnixStream>,
    path: PathBuf,
}

impl Client {
    pub fn connect(path: &Path) -> std::io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        Ok(Client {
            reader: BufReader::new(stream),
            path: path.to_path_buf(),
        })
    }

    /// Sends a request and waits for its reply.
    pub fn call<S: AsRef<str>>(&mut self, words: &[S]) -> anyhow::Result<Reply> {
        self.send(words)?;
        self.reply()
    }

    pub fn send<S: AsRef<str>>(&mut self, words: &[S]) -> anyhow::Result<()> {
        self.reader
            .get_mut()
            .write_all(&encode_request(words))
            .map_err(|e| anyhow::anyhow!("{}: {e}", crate::path_text(&self.path)))
    }

    pub fn reply(&mut self) -> anyhow::Result<Reply> {
        read_reply(&mut self.reader)
            .map_err(|e| anyhow::anyhow!("{}: {e}", crate::path_text(&self.path)))
    }

    /// Turns the connection into a [`Session`]: a thread reads the replies as they come, so
    /// that the caller can wait for one with a timeout.
    pub fn into_session(self) -> anyhow::Result<Session> {
        let writer = self
            .reader
            .get_ref()
            .try_clone()
            .map_err(|e| anyhow::anyhow!("{}: {e}", crate::path_text(&self.path)))?;
        let (tx, replies) = std::sync::mpsc::channel();
        let mut reader = self.reader;
        std::thread::spawn(move || loop {
            let r = read_reply(&mut reader);
            let end = r.is_err();
            if tx.send(r).is_err() || end {
                return;
            }
        });
        Ok(Session {
            writer,
            replies,
            path: self.path,
        })
    }
}

/// A connection whose replies are read by a thread of their own.
pub struct Session {
    writer: UnixStream,
    replies: std::sync::mpsc::Receiver<Result<Reply, String>>,
    path: PathBuf,
}

/// Why no reply came.
#[derive(Debug)]
pub enum NoReply {
    /// Nothing within the time given.
    Timeout,
    /// The connection ended or broke.
    Gone(String),
}

impl std::fmt::Display for NoReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoReply::Timeout => f.write_str("no answer from the node daemon in time"),
            NoReply::Gone(why) => f.write_str(why),
        }
    }
}

impl Session {
    pub fn send<S: AsRef<str>>(&mut self, words: &[S]) -> Result<(), NoReply> {
        self.writer
            .write_all(&encode_request(words))
            .map_err(|e| NoReply::Gone(format!("{}: {e}", crate::path_text(&self.path))))
    }

    /// The next reply, waiting at most `timeout`.
    pub fn reply_within(&self, timeout: std::time::Duration) -> Result<Reply, NoReply> {
        use std::sync::mpsc::RecvTimeoutError;
        match self.replies.recv_timeout(timeout) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(NoReply::Gone(e)),
            Err(RecvTimeoutError::Timeout) => Err(NoReply::Timeout),
            Err(RecvTimeoutError::Disconnected) => {
                Err(NoReply::Gone("the connection ended".to_string()))
            }
        }
    }
}
