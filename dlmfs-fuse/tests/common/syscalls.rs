//! The system calls the mount tests make on lock files, with errors as errno values, and a
//! lock file descriptor that closes itself (a failing test still lets its mounts go).
//! Included with `#[path]` by fuse_semantics and o2dlm_mounts.

#![allow(dead_code)] // each test file uses its own subset

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

pub fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// An open lock file; closed on drop.
#[derive(Debug, PartialEq, Eq)]
pub struct Fd(pub i32);

impl Drop for Fd {
    fn drop(&mut self) {
        unsafe { libc::close(self.0) };
    }
}

/// open(2): the fd, or the errno.
pub fn open(p: &Path, flags: i32) -> Result<Fd, i32> {
    let fd = unsafe { libc::open(c(p).as_ptr(), flags | libc::O_CLOEXEC, 0o664) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(Fd(fd))
    }
}

/// close(2), checked.
pub fn close(fd: Fd) {
    let n = fd.0;
    std::mem::forget(fd);
    assert_eq!(unsafe { libc::close(n) }, 0, "close");
}

pub fn pwrite(fd: &Fd, data: &[u8], off: i64) -> Result<usize, i32> {
    let n = unsafe { libc::pwrite(fd.0, data.as_ptr().cast(), data.len(), off) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

pub fn pread(fd: &Fd, len: usize, off: i64) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let n = unsafe { libc::pread(fd.0, buf.as_mut_ptr().cast(), len, off) };
    assert!(n >= 0, "pread failed: errno {}", errno());
    buf.truncate(n as usize);
    buf
}

/// Waits up to 5 s for `cond` (what unmount and rmdir leave happens a little later).
pub fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
