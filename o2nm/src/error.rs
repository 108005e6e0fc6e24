//! The error type of the o2nm crate.
//!
//! Configuration errors name the file and line; runtime (configfs-like)
//! errors carry the errno the kernel's node manager would return, so callers
//! that mimic configfs can report the same number.

use std::path::PathBuf;

/// Errno-like codes of the kernel node manager (`nodemanager.c`,
/// `heartbeat.c`), for errors of the runtime model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    /// Bad value (EINVAL).
    Inval,
    /// Out of range (ERANGE).
    Range,
    /// Already exists / already used (EEXIST).
    Exist,
    /// In use, or already set (EBUSY).
    Busy,
    /// No such object (ENOENT).
    NoEnt,
    /// Name too long (ENAMETOOLONG).
    NameTooLong,
    /// No room for another object (ENOSPC).
    NoSpc,
    /// Too many objects (EFBIG, the kernel's answer beyond 32 global regions).
    FBig,
}

impl Errno {
    /// The Linux errno number.
    pub fn raw(self) -> i32 {
        match self {
            Errno::Inval => libc::EINVAL,
            Errno::Range => libc::ERANGE,
            Errno::Exist => libc::EEXIST,
            Errno::Busy => libc::EBUSY,
            Errno::NoEnt => libc::ENOENT,
            Errno::NameTooLong => libc::ENAMETOOLONG,
            Errno::NoSpc => libc::ENOSPC,
            Errno::FBig => libc::EFBIG,
        }
    }

    /// The symbolic name (`"EEXIST"`).
    pub fn name(self) -> &'static str {
        match self {
            Errno::Inval => "EINVAL",
            Errno::Range => "ERANGE",
            Errno::Exist => "EEXIST",
            Errno::Busy => "EBUSY",
            Errno::NoEnt => "ENOENT",
            Errno::NameTooLong => "ENAMETOOLONG",
            Errno::NoSpc => "ENOSPC",
            Errno::FBig => "EFBIG",
        }
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything that can go wrong in o2nm.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file does not follow the cluster.conf grammar (ocfs2-tools: EIO).
    #[error("{}:{line}: {what}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        what: String,
    },

    /// The file parses but a stanza is unusable (ocfs2-tools refuses the
    /// whole file too).
    #[error("{}:{line}: {what}", file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        what: String,
    },

    /// A line of the o2cb sysconfig file is wrong.
    #[error("{}:{line}: {what}", file.display())]
    Sysconfig {
        file: PathBuf,
        line: usize,
        what: String,
    },

    /// Reading or writing a file failed.
    // The io error is in the message and deliberately not `source()`, so
    // that a chain printer (anyhow's `{:#}`) says it once.
    #[error("{}: {err}", file.display())]
    Io { file: PathBuf, err: std::io::Error },

    /// An edit of the configuration was refused (duplicate, unknown name, ...).
    #[error("{what}")]
    Edit { what: String },

    /// A runtime change of the node manager was refused, as configfs would.
    #[error("{what} ({errno})")]
    Runtime { errno: Errno, what: String },
}

impl Error {
    pub(crate) fn runtime(errno: Errno, what: impl Into<String>) -> Self {
        Error::Runtime {
            errno,
            what: what.into(),
        }
    }

    pub(crate) fn edit(what: impl Into<String>) -> Self {
        Error::Edit { what: what.into() }
    }

    /// The errno of a runtime error, if this is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Runtime { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// Result with the o2nm [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
