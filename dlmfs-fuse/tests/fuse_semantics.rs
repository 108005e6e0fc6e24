//! The kernel dlmfs rules of `docs/dlmfs.md`, checked through real system calls on
//! real FUSE mounts: two mounts, as nodes 1 and 2 of one in-process DLM (o2dlm's lock
//! resource engine), contend as two cluster nodes do. Needs root and /dev/fuse; fails (never
//! skips) without them. Every mount is unmounted when its test ends, pass or fail.

#[path = "common/syscalls.rs"]
mod syscalls;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dlmfs_fuse::{mount, LocalDlm, MountHandle, MountOptions};
use syscalls::{c, close, errno, eventually, open, pread, pwrite, Fd};

/// Two nodes' mounts; unmounted on drop (before the temporary directory goes).
struct Pair {
    n1: Option<MountHandle>,
    n2: Option<MountHandle>,
    dir: tempfile::TempDir,
    dlm: LocalDlm,
}

impl Pair {
    fn new() -> Pair {
        assert!(
            Path::new("/dev/fuse").exists(),
            "/dev/fuse is missing: these tests need FUSE (run .ci/run or load the fuse module)"
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        let dlm = LocalDlm::new();
        let mut m = Vec::new();
        for n in [1u8, 2u8] {
            let p = dir.path().join(format!("n{n}"));
            std::fs::create_dir(&p).expect("mount point");
            m.push(
                mount(&p, Arc::new(dlm.node(n)), MountOptions::default())
                    .unwrap_or_else(|e| panic!("FUSE mount failed (tests need root): {e}")),
            );
        }
        let n2 = m.pop();
        let n1 = m.pop();
        Pair { n1, n2, dir, dlm }
    }

    fn p1(&self, rel: &str) -> PathBuf {
        self.dir.path().join("n1").join(rel)
    }

    fn p2(&self, rel: &str) -> PathBuf {
        self.dir.path().join("n2").join(rel)
    }

    /// The same domain directory on both nodes.
    fn domain(&self, name: &str) {
        std::fs::create_dir(self.p1(name)).expect("mkdir on node 1");
        std::fs::create_dir(self.p2(name)).expect("mkdir on node 2");
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        drop(self.n1.take());
        drop(self.n2.take());
    }
}

fn mkdir(p: &Path) -> Result<(), i32> {
    if unsafe { libc::mkdir(c(p).as_ptr(), 0o755) } < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

fn poll_in(fd: &Fd, timeout_ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: fd.0,
        events: libc::POLLIN,
        revents: 0,
    };
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    assert!(n >= 0, "poll failed: errno {}", errno());
    n == 1 && p.revents & libc::POLLIN != 0
}

#[test]
fn domain_directories_follow_the_kernel_rules() {
    let t = Pair::new();
    let root = t.p1("");
    let st = std::fs::metadata(&root).unwrap();
    assert!(st.is_dir());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&st.permissions()) & 0o7777,
        0o755
    );

    assert_eq!(
        mkdir(&t.p1(&"d".repeat(64))),
        Err(libc::EINVAL),
        "64-byte domain name"
    );
    assert_eq!(mkdir(&t.p1(&"d".repeat(63))), Ok(()), "63-byte domain name");
    assert_eq!(mkdir(&t.p1("dom")), Ok(()));
    assert_eq!(mkdir(&t.p1("dom")), Err(libc::EEXIST));
    assert_eq!(
        mkdir(&t.p1("dom/sub")),
        Err(libc::EPERM),
        "no directories in a domain"
    );
    assert_eq!(
        open(&t.p1("file"), libc::O_CREAT | libc::O_RDWR),
        Err(libc::EACCES),
        "no files in the root"
    );
    // mknod of a regular file is how FUSE creates lock files (see the crate docs); other
    // types are refused as the kernel refuses every mknod.
    let node = c(&t.p1("dom/fifo"));
    assert_eq!(
        unsafe { libc::mknod(node.as_ptr(), libc::S_IFIFO | 0o644, 0) },
        -1
    );
    assert_eq!(errno(), libc::EPERM, "mknod");
    let nlink = std::os::unix::fs::MetadataExt::nlink(&std::fs::metadata(&root).unwrap());
    assert_eq!(nlink, 4, "2 + one per domain, as inc_nlink on mkdir");

    let fd = open(&t.p1("dom/lock"), libc::O_CREAT | libc::O_RDONLY).unwrap();
    close(fd);
    assert_eq!(
        std::fs::remove_dir(t.p1("dom")).unwrap_err().raw_os_error(),
        Some(libc::ENOTEMPTY)
    );
    std::fs::remove_file(t.p1("dom/lock")).unwrap();
    std::fs::remove_dir(t.p1("dom")).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["d".repeat(63)]);

    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statfs(c(&root).as_ptr(), &mut sfs) }, 0);
    assert_eq!(sfs.f_bsize, 4096, "block size = page size");
    assert_eq!(sfs.f_namelen, 255);
    assert_eq!((sfs.f_blocks, sfs.f_files), (0, 0));
}

#[test]
fn lock_files_have_the_kernels_names_and_attributes() {
    let t = Pair::new();
    t.domain("dom");
    assert_eq!(
        open(
            &t.p1(&format!("dom/{}", "l".repeat(32))),
            libc::O_CREAT | libc::O_RDONLY
        ),
        Err(libc::EINVAL),
        "32-byte lock name"
    );
    assert_eq!(
        open(&t.p1("dom/$RECOVERY"), libc::O_CREAT | libc::O_RDONLY),
        Err(libc::EINVAL),
        "names starting with $ are reserved"
    );
    let name = format!("dom/{}", "l".repeat(31));
    let fd = open(&t.p1(&name), libc::O_CREAT | libc::O_RDONLY).unwrap();
    close(fd);
    let st = std::fs::metadata(t.p1(&name)).unwrap();
    assert!(st.is_file());
    assert_eq!(st.len(), 64, "st_size is DLM_LVB_LEN");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(st.nlink(), 1);
    assert_eq!(st.blksize(), 4096);

    // Size changes are ignored, other attributes applied.
    assert_eq!(unsafe { libc::truncate(c(&t.p1(&name)).as_ptr(), 0) }, 0);
    assert_eq!(std::fs::metadata(t.p1(&name)).unwrap().len(), 64);
    assert_eq!(unsafe { libc::chmod(c(&t.p1(&name)).as_ptr(), 0o600) }, 0);
    assert_eq!(
        std::fs::metadata(t.p1(&name)).unwrap().mode() & 0o7777,
        0o600
    );

    // Each node has its own tree: the file exists on node 1 only.
    assert!(!t.p2(&name).exists());
}

#[test]
fn opens_take_pr_or_ex_and_trylock_fails_with_etxtbsy() {
    let t = Pair::new();
    t.domain("dom");
    let (a, b) = (t.p1("dom/L"), t.p2("dom/L"));
    let ra = open(&a, libc::O_CREAT | libc::O_RDONLY).unwrap();
    // PR and PR are compatible across nodes.
    let rb = open(&b, libc::O_CREAT | libc::O_RDONLY | libc::O_NONBLOCK).unwrap();
    close(rb);
    // EX is not while node 1 holds PR: O_WRONLY and O_RDWR both mean EX.
    for flags in [libc::O_WRONLY, libc::O_RDWR] {
        assert_eq!(open(&b, flags | libc::O_NONBLOCK), Err(libc::ETXTBSY));
    }
    close(ra);
    // Node 1's lock stays cached at PR after close, and a refused trylock queues nothing (no
    // BAST, as dlmlock_master): trylocks keep failing until a blocking request takes it.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        open(&b, libc::O_RDWR | libc::O_NONBLOCK),
        Err(libc::ETXTBSY)
    );
    let wb = open(&b, libc::O_RDWR).expect("blocking open: the BAST downconverts node 1");
    // Node 2 now holds EX: node 1 can take neither PR nor EX without waiting.
    assert_eq!(
        open(&a, libc::O_RDONLY | libc::O_NONBLOCK),
        Err(libc::ETXTBSY)
    );
    // Two opens on one node share its lock: EX and PR holders on node 2 at once.
    let rb2 = open(&b, libc::O_RDONLY | libc::O_NONBLOCK).unwrap();
    let wb2 = open(&b, libc::O_WRONLY | libc::O_NONBLOCK).unwrap();
    for fd in [wb, rb2, wb2] {
        close(fd);
    }
}

#[test]
fn a_blocking_open_waits_until_the_other_node_releases_and_poll_reports_the_bast() {
    let t = Pair::new();
    t.domain("dom");
    let (a, b) = (t.p1("dom/L"), t.p2("dom/L"));
    let wa = open(&a, libc::O_CREAT | libc::O_RDWR).unwrap();
    assert!(!poll_in(&wa, 0), "no BAST yet: not readable");
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let r = open(&b, libc::O_CREAT | libc::O_RDWR);
        let _ = tx.send(());
        r
    });
    // The waiter's request BASTs node 1: its holder sees POLLIN.
    assert!(poll_in(&wa, 5000), "poll reports the BAST");
    assert!(
        rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "the open must wait while node 1 holds EX"
    );
    close(wa);
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the waiting open is granted once node 1 closes");
    let wb = waiter.join().unwrap().expect("granted open");
    close(wb);
}

#[test]
fn the_value_block_moves_with_the_lock_and_writes_copy_from_byte_zero() {
    let t = Pair::new();
    t.domain("dom");
    let (a, b) = (t.p1("dom/L"), t.p2("dom/L"));
    let wa = open(&a, libc::O_CREAT | libc::O_RDWR).unwrap();
    assert_eq!(
        pread(&wa, 64, 0),
        vec![0u8; 64],
        "a new resource's LVB is zeros"
    );
    assert_eq!(pwrite(&wa, b"HELLO", 0), Ok(5));
    // The kernel's offset bug: a write at offset 3 lands at LVB byte 0.
    assert_eq!(pwrite(&wa, b"ab", 3), Ok(2));
    assert_eq!(pwrite(&wa, b"x", 64), Err(libc::ENOSPC));
    assert_eq!(pwrite(&wa, &[], 10), Ok(0));
    assert_eq!(
        pwrite(&wa, &[b'z'; 10], 60),
        Ok(4),
        "clipped to 64 - offset"
    );
    assert_eq!(&pread(&wa, 8, 0), b"zzzzO\0\0\0");
    assert_eq!(pread(&wa, 10, 60).len(), 4);
    assert!(pread(&wa, 10, 64).is_empty());
    // write(2) advances the file offset even though the bytes land at 0.
    assert_eq!(unsafe { libc::write(wa.0, b"QQ".as_ptr().cast(), 2) }, 2);
    assert_eq!(unsafe { libc::lseek(wa.0, 0, libc::SEEK_CUR) }, 2);
    close(wa);

    let rb = open(&b, libc::O_CREAT | libc::O_RDONLY).unwrap();
    let mut want = vec![0u8; 64];
    want[..5].copy_from_slice(b"QQzzO");
    assert_eq!(
        pread(&rb, 64, 0),
        want,
        "node 2 reads what node 1 wrote under EX"
    );
    assert_eq!(
        unsafe { libc::write(rb.0, b"no".as_ptr().cast(), 2) },
        -1,
        "read-only handle"
    );
    assert_eq!(errno(), libc::EBADF);
    close(rb);
}

#[test]
fn unlink_is_refused_while_held_and_pushes_the_value_block() {
    let t = Pair::new();
    t.domain("dom");
    let a = t.p1("dom/L");
    let wa = open(&a, libc::O_CREAT | libc::O_WRONLY).unwrap();
    assert_eq!(pwrite(&wa, b"kept", 0), Ok(4));
    assert_eq!(
        std::fs::remove_file(&a).unwrap_err().raw_os_error(),
        Some(libc::EBUSY)
    );
    close(wa);
    std::fs::remove_file(&a).expect("unlink once no holder remains");
    assert!(!a.exists());
    // The unlock carried VALBLK from EX: the master kept the value.
    let rb = open(
        &t.p2("dom/L"),
        libc::O_CREAT | libc::O_RDONLY | libc::O_NONBLOCK,
    )
    .unwrap();
    assert_eq!(&pread(&rb, 4, 0), b"kept");
    close(rb);
    // Node 1 recreates the file; its lock is new.
    let ra = open(&a, libc::O_CREAT | libc::O_RDONLY | libc::O_NONBLOCK).unwrap();
    close(ra);
    // Once close(2) has returned, unlink finds no holder (FUSE releases after the close).
    for _ in 0..50 {
        let fd = open(&a, libc::O_CREAT | libc::O_RDWR).unwrap();
        close(fd);
        std::fs::remove_file(&a).expect("unlink right after close");
    }
}

#[test]
fn unmount_unlocks_cached_locks_and_leaves_the_domains() {
    let mut t = Pair::new();
    t.domain("dom");
    let wa = open(&t.p1("dom/L"), libc::O_CREAT | libc::O_RDWR).unwrap();
    assert_eq!(pwrite(&wa, b"bye", 0), Ok(3));
    close(wa);
    // Node 1 caches EX. Unmounting must give it up without any BAST.
    t.n1.take().expect("node 1").unmount().expect("unmount");
    let rb = open(
        &t.p2("dom/L"),
        libc::O_CREAT | libc::O_RDWR | libc::O_NONBLOCK,
    )
    .expect("granted at once: node 1 let go at unmount");
    assert_eq!(&pread(&rb, 3, 0), b"bye");
    close(rb);
}

#[test]
fn mkdir_registers_the_domain_and_rmdir_or_unmount_leaves_it() {
    let mut t = Pair::new();
    assert_eq!(t.dlm.registrations(b"dom"), 0);
    t.domain("dom");
    assert_eq!(
        t.dlm.registrations(b"dom"),
        2,
        "one registration per node's mkdir"
    );
    std::fs::remove_dir(t.p1("dom")).unwrap();
    eventually("rmdir leaves once the directory is forgotten", || {
        t.dlm.registrations(b"dom") == 1
    });
    t.n2.take().expect("node 2").unmount().expect("unmount");
    assert_eq!(
        t.dlm.registrations(b"dom"),
        0,
        "unmount leaves every domain"
    );
}

/// Runs `op` on a thread of its own and returns its result if it finishes within 2 s.
fn within_2s<T: Send + 'static>(op: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(op());
    });
    rx.recv_timeout(Duration::from_secs(2)).ok()
}

#[test]
fn a_blocked_open_leaves_the_rest_of_the_mount_working() {
    let t = Pair::new();
    t.domain("dom");
    let wa = open(&t.p1("dom/L"), libc::O_CREAT | libc::O_RDWR).unwrap();
    let other = open(&t.p2("dom/M"), libc::O_CREAT | libc::O_RDWR).unwrap();
    assert_eq!(pwrite(&other, b"mine", 0), Ok(4));
    // Node 2 creates L and blocks in its open while node 1 holds EX.
    let b = t.p2("dom/L");
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let r = open(&b, libc::O_CREAT | libc::O_RDWR);
        let _ = tx.send(());
        r
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(rx.try_recv().is_err(), "node 2's open waits for node 1");

    // Everything else on node 2's mount, the blocked open's directory included, answers.
    let (dom, root, n) = (t.p2("dom"), t.p2(""), t.p2("dom/N"));
    let m = t.p2("dom/M");
    let fd = other.0;
    let done = within_2s(move || {
        let mut names: Vec<String> = std::fs::read_dir(&dom)
            .expect("readdir of the domain")
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let roots = std::fs::read_dir(&root)
            .expect("readdir of the root")
            .count();
        let size = std::fs::metadata(&m).expect("stat").len();
        let created = open(&n, libc::O_CREAT | libc::O_RDONLY).map(close);
        let reopened = open(&m, libc::O_RDONLY).map(close);
        let mut buf = [0u8; 4];
        let read = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), 4, 0) };
        (names, roots, size, created, reopened, read, buf)
    });
    let Some((names, roots, size, created, reopened, read, buf)) = done else {
        // Let the blocked calls finish before failing, so that the mounts can go.
        close(wa);
        let _ = waiter.join();
        panic!("calls on node 2's mount waited for its blocked open");
    };
    assert_eq!(names, ["L", "M"], "the blocked open's file exists already");
    assert_eq!(roots, 1);
    assert_eq!(size, 64);
    assert_eq!(created, Ok(()));
    assert_eq!(reopened, Ok(()));
    assert_eq!((read, &buf), (4, b"mine"));
    assert!(rx.try_recv().is_err(), "node 2's open still waits");

    close(wa);
    rx.recv_timeout(Duration::from_secs(5))
        .expect("the blocked open is granted once node 1 closes");
    close(waiter.join().unwrap().expect("granted open"));
    close(other);
}

/// A forked process (see [`fork_opener`]); killed and reaped on drop. Declare it before the
/// mounts: a child still in an open on a mount is freed when the mounts go, not before.
struct Child {
    pid: libc::pid_t,
    /// The read end of the child's pipe.
    pipe: Fd,
}

impl Drop for Child {
    fn drop(&mut self) {
        // pid is -1 once reaped: never kill(-1).
        if self.pid > 0 {
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

impl Child {
    /// The next `n` bytes the child wrote, if they come within `ms` milliseconds.
    fn read(&self, n: usize, ms: i32) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        while out.len() < n {
            let mut p = libc::pollfd {
                fd: self.pipe.0,
                events: libc::POLLIN,
                revents: 0,
            };
            if unsafe { libc::poll(&mut p, 1, ms) } != 1 {
                return None;
            }
            let mut buf = vec![0u8; n - out.len()];
            let got = unsafe { libc::read(self.pipe.0, buf.as_mut_ptr().cast(), buf.len()) };
            if got <= 0 {
                return None;
            }
            out.extend_from_slice(&buf[..got as usize]);
        }
        Some(out)
    }

    /// How the child ended, once it has (waits up to 5 s).
    fn wait(&mut self) -> i32 {
        let mut status = 0;
        for _ in 0..500 {
            if unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) } == self.pid {
                self.pid = -1;
                return status;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("child {} did not end", self.pid);
    }
}

static HANDLED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    HANDLED.store(1, std::sync::atomic::Ordering::SeqCst);
}

/// Forks a process that catches SIGUSR1 (a handler without SA_RESTART), writes one byte to
/// its pipe, opens `path` with `flags`, and writes the open's return value, errno and
/// whether the handler ran (three native i32s). Only async-signal-safe calls after fork.
fn fork_opener(path: &Path, flags: i32) -> Child {
    let path = c(path);
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: errno {}", errno());
    if pid == 0 {
        unsafe {
            // Not the mounts' /dev/fuse descriptors: a child stuck in an open must not keep
            // the connection alive once the test process (its server) is gone.
            libc::dup2(fds[1], 3);
            libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
            let fds = [-1, 3];
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_usr1 as extern "C" fn(libc::c_int) as usize;
            libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
            libc::write(fds[1], b"r".as_ptr().cast(), 1);
            let ret = libc::open(path.as_ptr(), flags);
            let out = [
                ret,
                *libc::__errno_location(),
                HANDLED.load(std::sync::atomic::Ordering::SeqCst),
            ];
            libc::write(fds[1], out.as_ptr().cast(), std::mem::size_of_val(&out));
            libc::_exit(0);
        }
    }
    unsafe { libc::close(fds[1]) };
    let child = Child {
        pid,
        pipe: Fd(fds[0]),
    };
    assert_eq!(child.read(1, 5000), Some(b"r".to_vec()), "child started");
    child
}

/// Node 1 holds EX; a forked process blocks opening the lock on node 2 and gets `signal`;
/// then node 1 closes and `ended` checks how the child's open ended. Whatever the signal,
/// the interrupted open must hold nothing: node 2 may remove the file, and node 1 gets its
/// lock back at once (node 2 only cached the grant, with no holder, and gives it up on the
/// BAST).
fn signal_a_blocked_opener(signal: i32, ended: impl FnOnce(&mut Child)) {
    let mut child;
    let t = Pair::new();
    t.domain("dom");
    let wa = open(&t.p1("dom/L"), libc::O_CREAT | libc::O_RDWR).unwrap();
    child = fork_opener(&t.p2("dom/L"), libc::O_CREAT | libc::O_RDWR);
    // Node 1 sees the BAST once the child's open has asked for the lock.
    assert!(poll_in(&wa, 5000), "the child's open asked for the lock");
    assert_eq!(unsafe { libc::kill(child.pid, signal) }, 0);
    // The kernel's dlmfs waits for the lock uninterruptibly and only then looks for a signal.
    assert_eq!(
        child.read(12, 300),
        None,
        "the open still waits for the lock"
    );
    close(wa);
    ended(&mut child);
    let again = t.p1("dom/L");
    let reopened = within_2s(move || open(&again, libc::O_RDWR)).expect("node 1 gets EX again");
    close(reopened.unwrap());
    std::fs::remove_file(t.p2("dom/L")).expect("node 2 has no holder left");
}

#[test]
fn a_signal_ends_a_blocked_open_with_eintr_once_the_lock_comes_as_in_the_kernel() {
    signal_a_blocked_opener(libc::SIGUSR1, |child| {
        let out = child
            .read(12, 5000)
            .expect("the open ends once node 1 closes");
        let word = |i: usize| i32::from_ne_bytes(out[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!(
            (word(0), word(1)),
            (-1, libc::EINTR),
            "open fails with EINTR"
        );
        assert_eq!(word(2), 1, "the signal handler ran");
        assert_eq!(child.wait(), 0);
    });
}

#[test]
fn a_killed_blocked_opener_leaves_no_holder_behind() {
    signal_a_blocked_opener(libc::SIGKILL, |child| {
        let status = child.wait();
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
            "killed: status {status:#x}"
        );
    });
}

#[test]
fn o_append_is_ignored_as_the_kernel_drops_it_at_open() {
    let t = Pair::new();
    t.domain("dom");
    let path = t.p1("dom/L");
    // `echo hello >> /dlm/dom/L`: the write lands at the descriptor's offset (0), not at the
    // end of the 64-byte file.
    std::fs::write(&path, b"0123456789").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    use std::io::Write;
    f.write_all(b"hello")
        .expect("an O_APPEND write is not refused");
    // The kernel writes from LVB byte 0 and moves the offset: 59 more bytes fit, then ENOSPC.
    assert_eq!(
        f.write(&[b'x'; 64]).expect("clipped to 64 - offset"),
        59,
        "clipped at the offset the first write left"
    );
    assert_eq!(
        f.write(b"y").unwrap_err().raw_os_error(),
        Some(libc::ENOSPC)
    );
    drop(f);
    let value = std::fs::read(&path).unwrap();
    assert_eq!(value.len(), 64);
    assert_eq!(&value[..12], b"xxxxxxxxxxxx", "every write went to byte 0");
    // A shell's `>>` to a fresh descriptor.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf abc >> '{}'", path.display()))
        .status()
        .unwrap();
    assert!(status.success(), "sh >> to a lock file");
    assert_eq!(&std::fs::read(&path).unwrap()[..4], b"abcx");
}
