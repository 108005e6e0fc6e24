//! dlmfs over FUSE: lock domains as directories, lock resources as files, with the kernel
//! dlmfs' semantics (`docs/dlmfs.md`).
//!
//! ```no_run
//! # fn main() -> Result<(), dlmfs_fuse::Error> {
//! use std::sync::Arc;
//! // An in-process DLM; the node daemon passes its o2dlm-backed one.
//! let dlm = dlmfs_fuse::LocalDlm::new();
//! let mount = dlmfs_fuse::mount("/dlm", Arc::new(dlm.node(1)), dlmfs_fuse::MountOptions::default())?;
//! std::fs::create_dir("/dlm/mydomain").ok();                  // joins the domain
//! let f = std::fs::File::create("/dlm/mydomain/mylock");      // takes EX (O_WRONLY)
//! drop(f);                                                     // holder gone, lock cached
//! drop(mount);                                                 // unmounts, leaves the domains
//! # Ok(()) }
//! ```
//!
//! A node daemon mounts its node's DLM instead (from a thread of its tokio runtime or with
//! its handle), through the [`DomainRegistry`] its other DLM users share, so that a domain
//! used through /dlm and directly is one membership:
//!
//! ```no_run
//! # fn daemon(node: o2node::Node) -> Result<dlmfs_fuse::MountHandle, dlmfs_fuse::Error> {
//! use std::sync::Arc;
//! let registry = Arc::new(dlmfs_fuse::DomainRegistry::new(node));
//! let node = dlmfs_fuse::O2dlmNode::with_registry(registry.clone(), tokio::runtime::Handle::current());
//! dlmfs_fuse::mount("/dlm", Arc::new(node), dlmfs_fuse::MountOptions::default())
//! # }
//! ```
//!
//! - [`mount`] mounts a node's dlmfs and returns a [`MountHandle`] that unmounts on drop.
//! - [`Dlm`] / [`DlmDomain`]: what dlmfs needs of a DLM; [`O2dlmNode`] implements it over
//!   a node's Rust API ([`o2node::Node`], the daemon's), [`LocalDlm`] in process over o2dlm's lock-resource
//!   engine; [`DomainRegistry`] counts a node's domain memberships for all its users.
//! - [`userdlm`]: the kernel's lock caching state machine, pure; [`cached`] runs it.
//!
//! Differences from the kernel:
//! - `statfs` reports FUSE's type, not `DLMFS_MAGIC`: run libo2dlm programs under
//!   `o2cb exec`, which preloads `dlmfs-preload`.
//! - A signal to a process blocked in `open` ends it as the kernel's does, once the lock is
//!   granted (the kernel's waits are uninterruptible; it looks for a signal between them):
//!   the open fails with EINTR and the grant stays cached with no holder. The kernel returns
//!   ERESTARTSYS, which restarts the open after a handler installed with SA_RESTART; FUSE
//!   cannot pass that on, so such a handler sees EINTR too. (fuser answers FUSE_INTERRUPT
//!   with ENOSYS, so the pending signal is read from `/proc/TID/status`.)
//! - `mknod` of a regular file in a domain creates a lock file (the kernel refuses every
//!   mknod with EPERM; in the root, EACCES as for an O_CREAT open): FUSE creates files that
//!   way so that the lock is taken in `open`, without the directory locked, as in the kernel.
//! - On an `O_APPEND` descriptor, writes go where this file system last left the descriptor's
//!   offset (the kernel ignores O_APPEND; FUSE sends such writes at the end of the file), but
//!   the kernel's own offset for it is past the end, so a read on it after a write returns 0
//!   bytes where the kernel's dlmfs would return the rest of the value block.
//! - A BAST that crosses this node's own downconvert ends the blocked state instead of
//!   leaving BLOCKED set on a lock that no longer blocks anything (see [`userdlm`]).

pub mod cached;
mod dlm;
mod fs;
mod local;
mod o2dlm_node;
mod registry;
pub mod userdlm;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use dlm::{Dlm, DlmDomain, JoinError, LockEvents};
pub use fs::{DOMAIN_NAME_LIMIT, LOCK_NAME_LIMIT};
pub use local::{LocalDlm, LocalNode};
pub use o2dlm_node::O2dlmNode;
pub use registry::DomainRegistry;

/// The mount's source and subtype: `/proc/mounts` shows `ocfs2_dlmfs <path>
/// fuse.ocfs2_dlmfs`, which is how `dlmfs-preload` recognises our mounts.
pub const FS_NAME: &str = "ocfs2_dlmfs";

/// Errors of the dlmfs-fuse crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// mount(2) of FUSE (or /dev/fuse) failed.
    #[error("dlmfs: cannot mount at {path}: {source}")]
    Mount {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The unmount failed (the mount stays until every file on it is closed).
    #[error("dlmfs: cannot unmount {path}: {source}")]
    Unmount {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Owner of the root directory (kernel: the mounting user, root).
    pub uid: u32,
    pub gid: u32,
    /// FUSE request threads (a blocked open never holds one).
    pub threads: usize,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            uid: 0,
            gid: 0,
            threads: 2,
        }
    }
}

/// A mounted dlmfs. Dropping it unmounts (lazily if files are still open: the rest happens
/// when they are closed), which unlocks every cached lock and leaves every domain.
pub struct MountHandle {
    path: PathBuf,
    session: Option<fuser::BackgroundSession>,
    listing: fs::Listing,
}

impl MountHandle {
    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names of the mount's domain directories (what `ls` of the mount shows), without
    /// going through the mount.
    pub fn domains(&self) -> Vec<Vec<u8>> {
        self.listing.domains()
    }

    /// Unmounts as umount(8) does: fails with EBUSY while files are open on the mount;
    /// otherwise waits until the file system has unlocked its locks and left its domains.
    pub fn unmount(mut self) -> Result<(), Error> {
        self.finish(false)
    }

    /// [`MountHandle::unmount`], trying again while files are open (EBUSY) for up to
    /// `patience`, for programs that are closing their lock files as the node stops; after
    /// that the mount is detached lazily and the EBUSY returned.
    pub fn unmount_within(mut self, patience: std::time::Duration) -> Result<(), Error> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            match self.finish(false) {
                Err(Error::Unmount { source, .. })
                    if source.raw_os_error() == Some(libc::EBUSY)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }

    fn finish(&mut self, lazy: bool) -> Result<(), Error> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let path = self.path.clone();
        let uerr = |source| Error::Unmount {
            path: path.clone(),
            source,
        };
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|e| uerr(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
        // SAFETY: c is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
            return session.join().map_err(uerr);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            // Already unmounted by someone else: the session has ended or is ending.
            Some(libc::EINVAL) => session.join().map_err(uerr),
            Some(libc::EBUSY) if lazy => {
                // Files are still open: detach now; the session ends (and leaves the
                // domains) when the last one is closed, on its own thread.
                // SAFETY: as above.
                if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                    return Err(uerr(std::io::Error::last_os_error()));
                }
                drop(session.guard);
                Ok(())
            }
            _ => {
                self.session = Some(session);
                Err(uerr(e))
            }
        }
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.finish(true) {
            tracing::warn!("{e}");
        }
    }
}

/// Mounts a dlmfs for `dlm` at `path` (an existing directory) and serves it from background
/// threads until the returned handle is dropped or [`MountHandle::unmount`]ed (or someone
/// runs `umount`). Needs root (mount(2) of FUSE).
pub fn mount(
    path: impl AsRef<Path>,
    dlm: Arc<dyn Dlm>,
    options: MountOptions,
) -> Result<MountHandle, Error> {
    let path = path.as_ref().to_path_buf();
    let merr = |source| Error::Mount {
        path: path.clone(),
        source,
    };
    let fs = fs::DlmFs::new(dlm, options.uid, options.gid).map_err(merr)?;
    let listing = fs.listing();
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(FS_NAME.to_owned()),
        fuser::MountOption::CUSTOM(format!("subtype={FS_NAME}")),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    config.acl = fuser::SessionACL::All;
    config.n_threads = Some(options.threads.max(1));
    let session = fuser::spawn_mount(fs, &path, &config).map_err(merr)?;
    tracing::info!("dlmfs: mounted at {}", path.display());
    Ok(MountHandle {
        path,
        session: Some(session),
        listing,
    })
}
