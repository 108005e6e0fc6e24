//! dlmfs mounted by the node daemons (FUSE): a lock taken through one node's mount blocks
//! the other node's trylock open, and its value block reaches the other node when the lock
//! is handed over; `o2cb lock` and `o2cb lockdump` share the mount's membership of a domain
//! (one registry per node), while a lock of `o2cb lock` is a plain, uncached DLM lock;
//! status shows the mount and the domain.

mod daemon_common;

use daemon_common::{dlmfs_args, TestCluster, Unmount};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// open(2) with raw flags: the fd or the errno.
fn open(path: &Path, flags: i32) -> Result<i32, i32> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CREAT, 0o600) };
    if fd < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(fd)
    }
}

/// Starts nodes 0..n, each with its dlmfs mounted at `dlmN` of the cluster's directory.
fn start_with_mounts(c: &mut TestCluster, n: usize) -> (Vec<PathBuf>, Unmount) {
    let mounts: Vec<_> = (0..n)
        .map(|i| c.dir.path().join(format!("dlm{i}")))
        .collect();
    let unmount = Unmount(mounts.clone());
    for (i, m) in mounts.iter().enumerate() {
        let args = dlmfs_args(c, i, m);
        c.start_args(i, args);
    }
    (mounts, unmount)
}

fn close(fd: i32) {
    // SAFETY: fd was returned by open and is closed once.
    unsafe {
        libc::close(fd);
    }
}

#[test]
fn a_lock_and_its_value_block_pass_between_two_nodes_mounts() {
    let mut c = TestCluster::new(121, 2, false, 200, 7);
    let (mounts, _unmount) = start_with_mounts(&mut c, 2);
    c.wait_all_up(0, &[0, 1]);
    c.wait_all_up(1, &[0, 1]);
    let status = c.ok(0, &["status"]);
    assert!(
        status.contains(&format!(
            "Driver for \"ocfs2_dlmfs\": Loaded\nFilesystem \"ocfs2_dlmfs\": Mounted ({})\n",
            mounts[0].display()
        )),
        "{status}"
    );
    for m in &mounts {
        std::fs::create_dir(m.join("dom")).unwrap();
    }
    let lock0 = mounts[0].join("dom/lk");
    let lock1 = mounts[1].join("dom/lk");
    // Node 0 takes EX (write open) and writes the value block.
    let fd = open(&lock0, libc::O_RDWR).unwrap();
    let msg = b"hello from node 0";
    // SAFETY: fd is open; msg is a valid buffer.
    let n = unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
    assert_eq!(n, msg.len() as isize);
    // Node 1's trylock open fails with the kernel's errno while node 0 holds it.
    assert_eq!(
        open(&lock1, libc::O_RDONLY | libc::O_NONBLOCK),
        Err(libc::ETXTBSY)
    );
    let st = c.ok(1, &["status"]);
    assert!(st.ends_with("Active userdlm domains:  dom\n"), "{st}");
    close(fd);
    // Closed on node 0 (lock cached there): node 1's blocking PR open gets it, with the value.
    let (tx, rx) = std::sync::mpsc::channel();
    let l1 = lock1.clone();
    std::thread::spawn(move || {
        let r = open(&l1, libc::O_RDONLY).map(|fd| {
            let mut buf = [0u8; 64];
            // SAFETY: fd is open; buf is valid for 64 bytes.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            close(fd);
            buf[..usize::try_from(n).unwrap_or(0)].to_vec()
        });
        let _ = tx.send(r);
    });
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("node 1's open never returned");
    let value = got.expect("node 1's open failed");
    assert_eq!(&value[..msg.len()], msg);
    // The domain node 1 joined through its mount is the node's one membership: lockdump
    // sees it, with the lock the mount holds cached.
    let dump = c.ok(1, &["lockdump", "dom"]);
    assert!(dump.lines().any(|l| l == "NAME:lk"), "{dump}");
    // o2cb lock on the same domain shares that membership (joining it twice failed with
    // EEXIST): node 0's command holds EX, node 1's trylock is refused.
    let flag = c.dir.path().join("held");
    let release = c.dir.path().join("release");
    let mut holder = c
        .cmd()
        .args(["lock", "dom", "scripted"])
        .args(c.node_args(0))
        .args(["--", "sh", "-c"])
        .arg(format!(
            "touch '{}'; while [ ! -e '{}' ]; do sleep 0.05; done",
            flag.display(),
            release.display()
        ))
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !flag.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "node 0 never got the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let trylock = |i: usize| {
        c.cmd()
            .args(["lock", "dom", "scripted", "--trylock"])
            .args(c.node_args(i))
            .args(["--", "true"])
            .output()
            .unwrap()
    };
    let busy = trylock(1);
    assert_eq!(busy.status.code(), Some(1), "{busy:?}");
    // A plain DLM lock, not a lock file: nothing appears in the mount.
    assert!(!mounts[0].join("dom/scripted").exists());
    let dump = c.ok(0, &["lockdump", "dom"]);
    assert!(dump.lines().any(|l| l == "NAME:scripted"), "{dump}");
    std::fs::write(&release, "").unwrap();
    assert!(holder.wait().unwrap().success());
    // Released when the command ends, not cached as a dlmfs open would be: node 1's
    // trylock gets it at once.
    let free = trylock(1);
    assert!(free.status.success(), "{free:?}");
    // The mount's domain outlives the o2cb lock sessions' registrations.
    assert!(c.ok(0, &["lockdump", "dom"]).contains("NAME:lk"));
    // A clean offline unmounts.
    let out = c.ok(0, &["offline"]);
    assert!(
        out.starts_with("Clean userdlm domains: OK\n"),
        "{out}\n{}",
        c.log(0)
    );
    c.wait_exit(0, Duration::from_secs(15));
}

#[test]
fn a_node_restarted_after_sigkill_mounts_again_over_its_dead_mount() {
    let mut c = TestCluster::new(122, 1, false, 200, 7);
    let mount = c.dir.path().join("dlm");
    let _unmount = Unmount(vec![mount.clone()]);
    let args = dlmfs_args(&c, 0, &mount);
    c.start_args(0, args.clone());
    c.wait_all_up(0, &[0]);
    std::fs::create_dir(mount.join("dom")).unwrap();
    c.kill9(0);
    // The dead daemon's mount answers ENOTCONN.
    let dead = std::fs::metadata(&mount).unwrap_err();
    assert_eq!(dead.raw_os_error(), Some(libc::ENOTCONN));
    c.start_args(0, args);
    c.wait_all_up(0, &[0]);
    let status = c.ok(0, &["status"]);
    assert!(
        status.contains("Filesystem \"ocfs2_dlmfs\": Mounted ("),
        "{status}"
    );
    // A fresh mount: the old domain went with the old node.
    assert_eq!(std::fs::read_dir(&mount).unwrap().count(), 0);
    c.ok(0, &["offline"]);
    c.wait_exit(0, Duration::from_secs(15));
}

#[test]
fn offline_waits_for_a_lock_file_being_closed_and_fails_over_one_kept_open() {
    let mut c = TestCluster::new(123, 2, false, 200, 7);
    let (mounts, _unmount) = start_with_mounts(&mut c, 2);
    c.wait_all_up(0, &[0, 1]);
    for m in &mounts {
        std::fs::create_dir(m.join("dom")).unwrap();
    }
    // Node 0: a program closes its lock file half a second into the offline; the unmount
    // waits for it instead of failing with EBUSY.
    // O_CLOEXEC: the `o2cb offline` client must not inherit it.
    let fd = open(
        &mounts[0].join("dom/closing"),
        libc::O_RDWR | libc::O_CLOEXEC,
    )
    .unwrap();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        close(fd);
    });
    let out = c.ok(0, &["offline"]);
    closer.join().unwrap();
    assert!(
        out.starts_with("Clean userdlm domains: OK\n"),
        "{out}\n{}",
        c.log(0)
    );
    c.wait_exit(0, Duration::from_secs(15));
    // Node 1: a file kept open fails the clean-up (the init script's Failed), the node still
    // goes offline, and the lazily detached mount finishes once the file is closed.
    let kept = open(&mounts[1].join("dom/kept"), libc::O_RDWR | libc::O_CLOEXEC).unwrap();
    let out = c.ok(1, &["offline"]);
    assert!(
        out.starts_with("Clean userdlm domains: Failed\n"),
        "{out}\n{}",
        c.log(1)
    );
    c.wait_exit(1, Duration::from_secs(15));
    close(kept);
}

/// A mkdir whose join waits (the other node is paused and not yet declared dead) must not
/// hold up the node: `status` answers at once and lists the domain once the join is done.
/// (`status` once listed the mount's directories through the mount, whose root the kernel
/// keeps locked for the mkdir: the daemon's own request waited on its own join, and with it
/// the runtime that the join needed.)
#[test]
fn status_answers_while_a_mkdir_waits_for_its_join() {
    // Dead after 20 × 100 ms: the join waits about two seconds for the paused node.
    let mut c = TestCluster::new(125, 2, false, 100, 20);
    let (mounts, _unmount) = start_with_mounts(&mut c, 2);
    c.wait_all_up(0, &[0, 1]);
    c.wait_all_up(1, &[0, 1]);
    c.signal_daemon(1, libc::SIGSTOP);
    let dom = mounts[0].join("dom");
    let started = std::time::Instant::now();
    let mkdir = std::thread::spawn(move || std::fs::create_dir(dom));
    std::thread::sleep(Duration::from_millis(300));
    // Bounded: a daemon that waits on its own mount never answers at all.
    let mut status = c
        .cmd()
        .arg("status")
        .args(c.node_args(0))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let asked = std::time::Instant::now();
    let answered = loop {
        if let Some(st) = status.try_wait().unwrap() {
            break st;
        }
        if asked.elapsed() > Duration::from_secs(1) {
            let _ = status.kill();
            panic!("status did not answer within 1 s while a mkdir was joining");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(answered.success());
    assert!(
        !mkdir.is_finished(),
        "the join did not wait for the paused node ({:?})",
        started.elapsed()
    );
    mkdir.join().unwrap().unwrap();
    let status = c.ok(0, &["status"]);
    assert!(
        status.contains("Active userdlm domains:  dom\n"),
        "{status}"
    );
    c.signal_daemon(1, libc::SIGCONT);
}

/// SIGTERM right after a node removed its domain directory while the other still uses its
/// locks (the leave is handing resources over to it), to both nodes or to the target only:
/// every daemon asked to stop ends within the stop bound the README states (10 s, with
/// slack), and a leaving node left running finishes its rmdir and can join again.
#[test]
fn sigterm_during_a_leave_handing_locks_over_ends_in_bound() {
    leave_then_sigterm(127, &[0, 1]);
    leave_then_sigterm(128, &[1]);
}

fn leave_then_sigterm(net: u8, stopped: &[usize]) {
    let mut c = TestCluster::new(net, 2, false, 100, 20);
    let (mounts, _unmount) = start_with_mounts(&mut c, 2);
    c.wait_all_up(0, &[0, 1]);
    c.wait_all_up(1, &[0, 1]);
    for m in &mounts {
        std::fs::create_dir(m.join("dom")).unwrap();
    }
    // Node 0 asks first (it masters them), then node 1 takes each lock too: both use all.
    let names: Vec<String> = (0..30).map(|i| format!("lock{i}")).collect();
    for m in &mounts {
        for n in &names {
            let fd = open(&m.join("dom").join(n), libc::O_RDWR | libc::O_CLOEXEC).unwrap();
            close(fd);
        }
    }
    // Node 0 lets go of its locks and leaves: its resources move to node 1.
    for n in &names {
        std::fs::remove_file(mounts[0].join("dom").join(n)).unwrap();
    }
    let dom = mounts[0].join("dom");
    let rmdir = std::thread::spawn(move || std::fs::remove_dir(dom));
    std::thread::sleep(Duration::from_millis(5));
    let asked = std::time::Instant::now();
    for &n in stopped {
        c.signal_daemon(n, libc::SIGTERM);
    }
    let bound = Duration::from_secs(12);
    for &n in stopped {
        let st = c.wait_exit(n, bound);
        assert!(
            asked.elapsed() < bound,
            "n{n} took {:?} to stop\n{}",
            asked.elapsed(),
            c.log(n)
        );
        assert!(st.code().is_some(), "n{n} ended by a signal: {st:?}");
    }
    if !stopped.contains(&0) {
        // The leaving node outlives its target: its rmdir ends and it can join again.
        while !rmdir.is_finished() {
            assert!(
                asked.elapsed() < bound,
                "n0's rmdir did not end\n{}",
                c.log(0)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        rmdir.join().unwrap().unwrap();
        std::fs::create_dir(mounts[0].join("dom")).unwrap();
        let fd = open(&mounts[0].join("dom/again"), libc::O_RDWR | libc::O_CLOEXEC).unwrap();
        close(fd);
    } else {
        let _ = rmdir.join();
    }
}
