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
}
