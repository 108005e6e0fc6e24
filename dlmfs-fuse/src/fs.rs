//! The FUSE file system: the kernel dlmfs' tree and VFS operations (`dlmfs.c`) over
//! [`crate::cached::LockFile`]s and a [`Dlm`].
//!
//! The root holds domain directories (mkdir joins, rmdir leaves once the directory is
//! forgotten), a domain holds lock files (create makes one, unlink unlocks and removes it),
//! and a lock file's open takes its lock. Every errno and attribute is the kernel's, where
//! FUSE lets the kernel's own VFS checks run first (EEXIST, EISDIR, ENOTDIR, ENAMETOOLONG,
//! permissions with `default_permissions`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, PollEvents, PollFlags, PollNotifier, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyPoll, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};
use o2dlm::wire::{LockMode, LVB_LEN};
use parking_lot::Mutex;

use crate::cached::{LockFile, Worker};
use crate::dlm::{Dlm, DlmDomain};

/// `GROUP_NAME_MAX`: a domain name must be shorter.
pub const DOMAIN_NAME_LIMIT: usize = 64;
/// `USER_DLM_LOCK_ID_MAX_LEN`: a lock name must be shorter.
pub const LOCK_NAME_LIMIT: usize = 32;
/// The page size the kernel reports as block size.
const BLOCK_SIZE: u32 = 4096;
/// How long the kernel may cache entries and attributes: nothing changes them behind its
/// back (the tree is this node's own; other nodes only move locks).
const TTL: Duration = Duration::from_secs(1);

enum Kind {
    Root,
    Domain(Arc<dyn DlmDomain>),
    File(Arc<LockFile>, Arc<PollWaiters>),
}

/// Kernel poll handles waiting for a BAST on one lock file.
#[derive(Default)]
struct PollWaiters(Mutex<Vec<PollNotifier>>);

impl PollWaiters {
    fn wake(&self) {
        for n in std::mem::take(&mut *self.0.lock()) {
            // The kernel may have dropped the poll already; nothing to do then.
            let _ = n.notify();
        }
    }
}

struct Inode {
    kind: Kind,
    parent: u64,
    children: HashMap<Vec<u8>, u64>,
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    /// The kernel's lookup count; a removed inode goes away when it drops to 0.
    lookups: u64,
    removed: bool,
}

struct Tree {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
}

struct Open {
    lock: Arc<LockFile>,
    level: LockMode,
    /// Where the descriptor's offset is, as far as this file system can tell (the end of
    /// its last read or write): the position of its writes while it has `O_APPEND`.
    pos: u64,
    /// A close of the descriptor was seen (FUSE's flush): its release, which FUSE sends
    /// after close(2) has returned, may be on its way.
    flushed: bool,
}

impl Open {
    fn new(lock: Arc<LockFile>, level: LockMode) -> Open {
        Open {
            lock,
            level,
            pos: 0,
            flushed: false,
        }
    }
}

/// How long an unlink waits for the releases of descriptors already closed.
const RELEASE_PATIENCE: Duration = Duration::from_secs(1);

/// Whether thread `tid` (a FUSE request's caller) has a signal pending that it does not
/// block: the kernel dlmfs' `signal_pending(current)`, read from `/proc/TID/status`. The
/// caller cannot be woken by the signal: fuser answers FUSE_INTERRUPT with ENOSYS, after
/// which the kernel sends none and the caller waits for the reply (killable, but a fatal
/// signal still waits for a request already read), as dlmfs' own waits are uninterruptible.
/// A thread that is gone or unreadable has nothing pending.
fn signal_pending(tid: u32) -> bool {
    if tid == 0 {
        return false;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return false;
    };
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    (mask("SigPnd:") | mask("ShdPnd:")) & !mask("SigBlk:") != 0
}

/// The domain directories of a mount, read from its tree rather than through the mount: a
/// readdir of the mount's root waits behind a mkdir still joining (the kernel holds the
/// directory locked), so the process serving the mount must never readdir it itself.
pub struct Listing(Arc<Mutex<Tree>>);

impl Listing {
    /// The names of the domain directories, sorted.
    pub fn domains(&self) -> Vec<Vec<u8>> {
        let tree = self.0.lock();
        let mut names: Vec<Vec<u8>> = tree
            .inodes
            .get(&1)
            .map(|root| root.children.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// The dlmfs file system of one node.
pub(crate) struct DlmFs {
    dlm: Arc<dyn Dlm>,
    node: u8,
    worker: Worker,
    tree: Arc<Mutex<Tree>>,
    opens: Arc<Mutex<HashMap<u64, Open>>>,
    next_fh: AtomicU64,
    next_lock_id: AtomicU64,
}

fn err(e: i32) -> Errno {
    Errno::from_i32(e)
}

impl DlmFs {
    pub(crate) fn new(dlm: Arc<dyn Dlm>, uid: u32, gid: u32) -> std::io::Result<DlmFs> {
        let node = dlm.node();
        let now = SystemTime::now();
        let root = Inode {
            kind: Kind::Root,
            parent: 1,
            children: HashMap::new(),
            perm: 0o755,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
            lookups: 1,
            removed: false,
        };
        Ok(DlmFs {
            dlm,
            node,
            worker: Worker::start(node)?,
            tree: Arc::new(Mutex::new(Tree {
                inodes: HashMap::from([(1, root)]),
                next_ino: 2,
            })),
            opens: Arc::new(Mutex::new(HashMap::new())),
            next_fh: AtomicU64::new(1),
            next_lock_id: AtomicU64::new(1),
        })
    }

    fn attr(ino: u64, n: &Inode) -> FileAttr {
        let (kind, size, nlink) = match n.kind {
            Kind::Root => {
                let dirs = n.children.len() as u32;
                (FileType::Directory, 0, 2 + dirs)
            }
            Kind::Domain(_) => (FileType::Directory, 0, 2),
            Kind::File(..) => (FileType::RegularFile, LVB_LEN as u64, 1),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: 0,
            atime: n.atime,
            mtime: n.mtime,
            ctime: n.ctime,
            crtime: n.ctime,
            kind,
            perm: n.perm,
            nlink: if n.removed { 0 } else { nlink },
            uid: n.uid,
            gid: n.gid,
            rdev: 0,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }

    fn new_inode(
        tree: &mut Tree,
        parent: u64,
        name: &[u8],
        kind: Kind,
        (uid, gid): (u32, u32),
        mode: u32,
    ) -> u64 {
        let ino = tree.next_ino;
        tree.next_ino += 1;
        let now = SystemTime::now();
        tree.inodes.insert(
            ino,
            Inode {
                kind,
                parent,
                children: HashMap::new(),
                perm: (mode & 0o7777) as u16,
                uid,
                gid,
                atime: now,
                mtime: now,
                ctime: now,
                lookups: 1,
                removed: false,
            },
        );
        if let Some(p) = tree.inodes.get_mut(&parent) {
            p.children.insert(name.to_vec(), ino);
            p.mtime = now;
            p.ctime = now;
        }
        ino
    }

    /// Drops an inode that is removed and forgotten: a domain directory leaves its domain
    /// (the kernel does it when the inode is evicted).
    fn reap(tree: &mut Tree, ino: u64) {
        let gone = tree
            .inodes
            .get(&ino)
            .is_some_and(|n| n.removed && n.lookups == 0);
        if !gone {
            return;
        }
        if let Some(n) = tree.inodes.remove(&ino) {
            if let Kind::Domain(d) = n.kind {
                d.leave();
            }
        }
    }

    fn decode_open(flags: i32) -> (LockMode, bool) {
        let level = if flags & (libc::O_WRONLY | libc::O_RDWR) != 0 {
            LockMode::Ex
        } else {
            LockMode::Pr
        };
        (level, flags & libc::O_NONBLOCK != 0)
    }

    fn new_fh(&self, lock: Arc<LockFile>, level: LockMode) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.opens.lock().insert(fh, Open::new(lock, level));
        FileHandle(fh)
    }

    /// Takes the lock for an open by thread `pid`; answers at once when the cached level
    /// suffices, and from a thread of its own otherwise (the open may wait as long as other
    /// nodes hold the lock, and the file system must keep serving meanwhile, closes
    /// included). A signal pending for `pid` ends the open with EINTR where the kernel
    /// would end it with ERESTARTSYS (see [`signal_pending`]).
    fn open_lock(
        &self,
        lock: Arc<LockFile>,
        flags: i32,
        pid: u32,
        done: impl FnOnce(Result<FileHandle, Errno>) + Send + 'static,
    ) {
        let (level, trylock) = Self::decode_open(flags);
        if lock.acquire_cached(level) {
            done(Ok(self.new_fh(lock, level)));
            return;
        }
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let opens = self.opens.clone();
        let node = self.node;
        // The reply must be sent exactly once: keep it where a failed spawn can still use it.
        let done = Arc::new(Mutex::new(Some(done)));
        let done2 = done.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("dlmfs-open-{node}"))
            .spawn(move || {
                let r = lock.acquire(level, trylock, &|| signal_pending(pid));
                let reply = done2.lock().take();
                match (r, reply) {
                    (Ok(()), Some(done)) => {
                        opens.lock().insert(fh, Open::new(lock, level));
                        done(Ok(FileHandle(fh)));
                    }
                    (Err(e), Some(done)) => done(Err(err(e))),
                    (Ok(()), None) => lock.release(level),
                    (Err(_), None) => {}
                }
            });
        if let Err(e) = spawned {
            tracing::error!(node, "dlmfs: cannot start an open thread: {e}");
            if let Some(done) = done.lock().take() {
                done(Err(Errno::EAGAIN));
            }
        }
    }

    /// Whether every descriptor open on `lock` has been closed, its release still to come.
    fn closing(opens: &HashMap<u64, Open>, lock: &Arc<LockFile>) -> bool {
        let mut mine = opens
            .values()
            .filter(|o| Arc::ptr_eq(&o.lock, lock))
            .peekable();
        mine.peek().is_some() && mine.all(|o| o.flushed)
    }

    /// The inode of `name` in `parent`, for lookup.
    /// What lists the mount's domain directories from inside the process.
    pub(crate) fn listing(&self) -> Listing {
        Listing(self.tree.clone())
    }

    fn child(tree: &Tree, parent: u64, name: &[u8]) -> Option<u64> {
        tree.inodes.get(&parent)?.children.get(name).copied()
    }

    /// Leaves every domain and unlocks every lock: what the kernel's evictions do at umount.
    fn teardown(&self) {
        let opens: Vec<Open> = self.opens.lock().drain().map(|(_, o)| o).collect();
        for o in opens {
            o.lock.release(o.level);
        }
        let mut tree = self.tree.lock();
        let inodes: Vec<Inode> = tree.inodes.drain().map(|(_, n)| n).collect();
        drop(tree);
        let (files, dirs): (Vec<_>, Vec<_>) = inodes
            .into_iter()
            .partition(|n| matches!(n.kind, Kind::File(..)));
        for n in files {
            if let Kind::File(lock, _) = n.kind {
                let _ = lock.destroy();
            }
        }
        for n in dirs {
            if let Kind::Domain(d) = n.kind {
                d.leave();
            }
        }
    }
}

impl Filesystem for DlmFs {
    fn destroy(&mut self) {
        let start = std::time::Instant::now();
        self.teardown();
        tracing::info!(
            node = self.node,
            "dlmfs: unmounted (locks unlocked and domains given back in {} ms)",
            start.elapsed().as_millis()
        );
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut tree = self.tree.lock();
        let Some(ino) = Self::child(&tree, parent.0, name.as_bytes()) else {
            return reply.error(Errno::ENOENT);
        };
        match tree.inodes.get_mut(&ino) {
            Some(n) => {
                n.lookups += 1;
                reply.entry(&TTL, &Self::attr(ino, n), Generation(0));
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let mut tree = self.tree.lock();
        if let Some(n) = tree.inodes.get_mut(&ino.0) {
            n.lookups = n.lookups.saturating_sub(nlookup);
        }
        Self::reap(&mut tree, ino.0);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let tree = self.tree.lock();
        match tree.inodes.get(&ino.0) {
            Some(n) => reply.attr(&TTL, &Self::attr(ino.0, n)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        _size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut tree = self.tree.lock();
        let Some(n) = tree.inodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        // setattr_prepare: only the owner (or root) changes mode and times, only root the
        // owner; a size change is dropped silently (the size is the LVB's).
        let owner = req.uid() == 0 || req.uid() == n.uid;
        let chown = uid.is_some_and(|u| u != n.uid) || gid.is_some_and(|g| g != n.gid);
        if (mode.is_some() && !owner) || (chown && req.uid() != 0) {
            return reply.error(Errno::EPERM);
        }
        let now = SystemTime::now();
        let time = |t: TimeOrNow| match t {
            TimeOrNow::SpecificTime(t) => t,
            TimeOrNow::Now => now,
        };
        if let Some(m) = mode {
            n.perm = (m & 0o7777) as u16;
        }
        if let Some(u) = uid {
            n.uid = u;
        }
        if let Some(g) = gid {
            n.gid = g;
        }
        if let Some(t) = atime {
            n.atime = time(t);
        }
        if let Some(t) = mtime {
            n.mtime = time(t);
        }
        if mode.is_some() || uid.is_some() || gid.is_some() || atime.is_some() || mtime.is_some() {
            n.ctime = now;
        }
        reply.attr(&TTL, &Self::attr(ino.0, n));
    }

    /// Creates a lock file. The kernel's dlmfs creates it in `create` and takes its lock in
    /// `open`, after the VFS has let go of the directory; FUSE's `create` would take the
    /// lock with the directory still locked, so that a create waiting for another node
    /// would stop every lookup and listing of its domain. Without `create` the kernel asks
    /// for the file with `mknod` and then opens it as any other.
    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let mut tree = self.tree.lock();
        let domain = match tree.inodes.get(&parent.0).map(|n| &n.kind) {
            Some(Kind::Domain(d)) if mode & libc::S_IFMT == libc::S_IFREG => d.clone(),
            // The root has no create operation: an O_CREAT open there fails with EACCES.
            Some(Kind::Root) if mode & libc::S_IFMT == libc::S_IFREG => {
                return reply.error(Errno::EACCES)
            }
            // Neither directory level has a mknod operation.
            Some(_) => return reply.error(Errno::EPERM),
            None => return reply.error(Errno::ENOENT),
        };
        let name = name.as_bytes();
        if name.len() >= LOCK_NAME_LIMIT || name.first() == Some(&b'$') {
            tracing::warn!(node = self.node, lock = %String::from_utf8_lossy(name), "dlmfs: invalid lock name");
            return reply.error(Errno::EINVAL);
        }
        if Self::child(&tree, parent.0, name).is_some() {
            return reply.error(Errno::EEXIST);
        }
        let waiters = Arc::new(PollWaiters::default());
        let w = waiters.clone();
        let lock = LockFile::new(
            self.next_lock_id.fetch_add(1, Ordering::Relaxed),
            name.to_vec(),
            domain,
            self.node,
            self.worker.clone(),
            Box::new(move || w.wake()),
        );
        let ino = Self::new_inode(
            &mut tree,
            parent.0,
            name,
            Kind::File(lock, waiters),
            (req.uid(), req.gid()),
            mode & !umask,
        );
        match tree.inodes.get(&ino) {
            Some(n) => reply.entry(&TTL, &Self::attr(ino, n), Generation(0)),
            None => reply.error(Errno::EIO),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        if parent != INodeNo::ROOT {
            // Domain directories have no mkdir operation.
            return reply.error(Errno::EPERM);
        }
        let name = name.as_bytes();
        if name.len() >= DOMAIN_NAME_LIMIT {
            tracing::warn!(node = self.node, "dlmfs: invalid domain name for directory");
            return reply.error(Errno::EINVAL);
        }
        if Self::child(&self.tree.lock(), 1, name).is_some() {
            return reply.error(Errno::EEXIST);
        }
        let (dlm, tree, node) = (self.dlm.clone(), self.tree.clone(), self.node);
        let (name, owner) = (name.to_vec(), (req.uid(), req.gid()));
        // Off the session thread: joining waits for the other nodes (the kernel's mkdir
        // waits too, but only with the root locked, not the whole mount).
        let spawned = std::thread::Builder::new()
            .name(format!("dlmfs-mkdir-{node}"))
            .spawn(move || {
                let shown = String::from_utf8_lossy(&name).into_owned();
                let domain = match dlm.join(&name) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(
                            node,
                            domain = %shown,
                            "dlmfs: could not register domain: {} (errno {})",
                            e.message,
                            e.errno
                        );
                        return reply.error(err(e.errno));
                    }
                };
                let mut tree = tree.lock();
                if Self::child(&tree, 1, &name).is_some() {
                    // Lost a race with another mkdir of the same name.
                    drop(tree);
                    domain.leave();
                    return reply.error(Errno::EEXIST);
                }
                let kind = Kind::Domain(domain);
                let ino = Self::new_inode(&mut tree, 1, &name, kind, owner, mode & !umask);
                tracing::info!(node, domain = %shown, "dlmfs: domain registered");
                match tree.inodes.get(&ino) {
                    Some(n) => reply.entry(&TTL, &Self::attr(ino, n), Generation(0)),
                    None => reply.error(Errno::EIO),
                }
            });
        if let Err(e) = spawned {
            // The reply went with the closure: fuser answers EIO for it.
            tracing::error!(node = self.node, "dlmfs: cannot start a mkdir thread: {e}");
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let tree = self.tree.lock();
        let Some(ino) = Self::child(&tree, parent.0, name.as_bytes()) else {
            return reply.error(Errno::ENOENT);
        };
        let lock = match tree.inodes.get(&ino).map(|n| &n.kind) {
            Some(Kind::File(lock, _)) => lock.clone(),
            Some(_) => return reply.error(Errno::EPERM),
            None => return reply.error(Errno::ENOENT),
        };
        drop(tree);
        let (tree, opens) = (self.tree.clone(), self.opens.clone());
        let name = name.as_bytes().to_vec();
        // Off the session thread: the unlock may wait for the DLM, and for releases that
        // only the session's threads can handle.
        let spawned = std::thread::Builder::new()
            .name(format!("dlmfs-unlink-{}", self.node))
            .spawn(move || {
                let start = std::time::Instant::now();
                loop {
                    match lock.destroy() {
                        Ok(()) => break,
                        // In the kernel close(2) has dropped the holder when it returns; in
                        // FUSE the release comes after. Wait for those already closed.
                        Err(libc::EBUSY)
                            if start.elapsed() < RELEASE_PATIENCE
                                && Self::closing(&opens.lock(), &lock) =>
                        {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(e) => return reply.error(err(e)),
                    }
                }
                let mut tree = tree.lock();
                let now = SystemTime::now();
                if let Some(p) = tree.inodes.get_mut(&parent.0) {
                    p.children.remove(&name);
                    p.mtime = now;
                    p.ctime = now;
                }
                if let Some(n) = tree.inodes.get_mut(&ino) {
                    n.removed = true;
                    n.ctime = now;
                }
                Self::reap(&mut tree, ino);
                reply.ok();
            });
        if let Err(e) = spawned {
            // The reply went with the closure: fuser answers EIO for it.
            tracing::error!(
                node = self.node,
                "dlmfs: cannot start an unlink thread: {e}"
            );
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut tree = self.tree.lock();
        let Some(ino) = Self::child(&tree, parent.0, name.as_bytes()) else {
            return reply.error(Errno::ENOENT);
        };
        if parent != INodeNo::ROOT {
            return reply.error(Errno::EPERM);
        }
        match tree.inodes.get_mut(&ino) {
            Some(n) if !n.children.is_empty() => return reply.error(Errno::ENOTEMPTY),
            Some(n) => n.removed = true,
            None => return reply.error(Errno::ENOENT),
        }
        let now = SystemTime::now();
        if let Some(p) = tree.inodes.get_mut(&1) {
            p.children.remove(name.as_bytes());
            p.mtime = now;
            p.ctime = now;
        }
        Self::reap(&mut tree, ino);
        reply.ok();
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EPERM);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let lock = match self.tree.lock().inodes.get(&ino.0).map(|n| &n.kind) {
            Some(Kind::File(lock, _)) => lock.clone(),
            Some(_) => return reply.error(Errno::EISDIR),
            None => return reply.error(Errno::ENOENT),
        };
        self.open_lock(lock, flags.0, req.pid(), move |r| match r {
            Ok(fh) => reply.opened(fh, FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut opens = self.opens.lock();
        let Some(open) = opens.get_mut(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let lvb = open.lock.lvb();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(LVB_LEN);
        let end = start.saturating_add(size as usize).min(LVB_LEN);
        open.pos = offset.saturating_add((end - start) as u64);
        drop(opens);
        reply.data(lvb.get(start..end).unwrap_or(&[]));
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut opens = self.opens.lock();
        let Some(open) = opens.get_mut(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        // The kernel's dlmfs ignores O_APPEND (it drops it at open, and its write does not
        // look at it): writes go where the descriptor's offset is. FUSE puts them at the end
        // of the file instead, so the offset is this file system's own estimate.
        let offset = if flags.0 & libc::O_APPEND != 0 {
            open.pos
        } else {
            offset
        };
        let lock = open.lock.clone();
        if offset >= LVB_LEN as u64 {
            return reply.error(Errno::ENOSPC);
        }
        // offset < LVB_LEN, so this cannot truncate.
        let room = LVB_LEN - offset as usize;
        let count = data.len().min(room);
        open.pos = offset + count as u64;
        drop(opens);
        if count > 0 {
            lock.write_lvb(data.get(..count).unwrap_or(data));
        }
        reply.written(count as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        if let Some(o) = self.opens.lock().get_mut(&fh.0) {
            o.flushed = true;
        }
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let open = self.opens.lock().remove(&fh.0);
        if let Some(o) = open {
            o.lock.release(o.level);
        }
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let tree = self.tree.lock();
        let Some(dir) = tree.inodes.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let mut entries: Vec<(u64, FileType, &[u8])> = vec![
            (ino.0, FileType::Directory, b"."),
            (dir.parent, FileType::Directory, b".."),
        ];
        let mut children: Vec<(&Vec<u8>, &u64)> = dir.children.iter().collect();
        // Newest first, as the kernel's dcache_readdir lists a libfs directory.
        children.sort_by(|a, b| b.1.cmp(a.1));
        for (name, &child) in children {
            let kind = match tree.inodes.get(&child).map(|n| &n.kind) {
                Some(Kind::File(..)) => FileType::RegularFile,
                _ => FileType::Directory,
            };
            entries.push((child, kind, name));
        }
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (child, kind, name)) in entries.into_iter().enumerate().skip(skip) {
            if reply.add(
                INodeNo(child),
                (i + 1) as u64,
                kind,
                OsStr::from_bytes(name),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // simple_statfs: block size = page size, name length 255, every count 0. The type
        // (DLMFS_MAGIC) is FUSE's to report; dlmfs-preload fixes it up for libo2dlm.
        reply.statfs(0, 0, 0, 0, 0, BLOCK_SIZE, 255, BLOCK_SIZE);
    }

    fn poll(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        ph: PollNotifier,
        _events: PollEvents,
        flags: PollFlags,
        reply: ReplyPoll,
    ) {
        let (lock, waiters) = match self.tree.lock().inodes.get(&ino.0).map(|n| &n.kind) {
            Some(Kind::File(lock, w)) => (lock.clone(), w.clone()),
            _ => return reply.error(Errno::EBADF),
        };
        if flags.contains(PollFlags::FUSE_POLL_SCHEDULE_NOTIFY) {
            waiters.0.lock().push(ph);
        }
        // Checked after registering, so a BAST between the two still wakes the poller.
        if lock.is_blocked() {
            reply.poll(PollEvents::POLLIN | PollEvents::POLLRDNORM);
        } else {
            reply.poll(PollEvents::empty());
        }
    }
}
