//! An `LD_PRELOAD` library for programs written against the kernel's dlmfs.
//!
//! libo2dlm (ocfs2-tools) refuses a dlmfs mount unless `fstatfs` reports `DLMFS_MAGIC`
//! (0x76a9f425), and checks `/sys/module/ocfs2_dlmfs/parameters/capabilities` before it
//! offers BASTs. A FUSE file system can report neither. Loaded with `LD_PRELOAD` (`o2cb exec`
//! does it), this library wraps `statfs`, `fstatfs` and their `64` variants: when the kernel
//! says FUSE and the mount table says the file system is ours (type `fuse.ocfs2_dlmfs`, see
//! `dlmfs_fuse::FS_NAME`), `f_type` becomes `DLMFS_MAGIC`. Every other file system is left
//! alone. `fopen` of the capabilities file, which has no userspace counterpart, reads what
//! the kernel module reports (`bast stackglue`) when no kernel module provides it.

use std::ffi::{c_char, c_int, CStr};
use std::sync::OnceLock;

/// `DLMFS_MAGIC` from the kernel's `fs/ocfs2/dlmfs/dlmfs.c`.
pub const DLMFS_MAGIC: i64 = 0x76a9_f425;
/// `FUSE_SUPER_MAGIC`.
pub const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
/// The mount type our FUSE dlmfs shows in the mount table.
pub const MOUNT_TYPE: &str = "fuse.ocfs2_dlmfs";
/// The kernel module's capabilities file, and what it reads.
pub const CAPABILITIES_PATH: &str = "/sys/module/ocfs2_dlmfs/parameters/capabilities";
pub const CAPABILITIES: &str = "bast stackglue\n";

/// Whether the mount with device number `dev` is of type `fuse.ocfs2_dlmfs`, according to
/// `mountinfo` (the text of `/proc/self/mountinfo`).
pub fn is_dlmfs_device(mountinfo: &str, dev: u64) -> bool {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let want = format!("{major}:{minor}");
    mountinfo.lines().any(|line| {
        let mut fields = line.split(' ');
        // mount ID, parent ID, major:minor, root, mount point, options, optional fields...,
        // "-", type, source, super options.
        let devno = fields.nth(2);
        let fstype = line
            .split(" - ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next());
        devno == Some(want.as_str()) && fstype == Some(MOUNT_TYPE)
    })
}

fn is_ours(dev: u64) -> bool {
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => is_dlmfs_device(&text, dev),
        Err(_) => false,
    }
}

type StatfsFn = unsafe extern "C" fn(*const c_char, *mut libc::statfs) -> c_int;
type FstatfsFn = unsafe extern "C" fn(c_int, *mut libc::statfs) -> c_int;
type FopenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut libc::FILE;

/// The next definition of `name` after this library (glibc's).
fn next<T: Copy>(cell: &OnceLock<usize>, name: &CStr) -> Option<T> {
    let addr = *cell.get_or_init(|| {
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name.
        unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) as usize }
    });
    if addr == 0 {
        return None;
    }
    // SAFETY: T is the C function pointer type of `name`; pointers are usize-sized.
    Some(unsafe { std::mem::transmute_copy::<usize, T>(&addr) })
}

static STATFS: OnceLock<usize> = OnceLock::new();
static FSTATFS: OnceLock<usize> = OnceLock::new();
static FOPEN: OnceLock<usize> = OnceLock::new();

fn enosys() -> c_int {
    // SAFETY: errno is thread-local.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    -1
}

/// After a successful statfs: turn FUSE's type into dlmfs' when the device is our mount.
fn fix_type(buf: *mut libc::statfs, dev: impl FnOnce() -> Option<u64>) {
    // SAFETY: the caller's buffer was just filled by a successful statfs.
    let sfs = unsafe { &mut *buf };
    if sfs.f_type == FUSE_SUPER_MAGIC && dev().is_some_and(is_ours) {
        sfs.f_type = DLMFS_MAGIC;
    }
}

unsafe fn do_statfs(path: *const c_char, buf: *mut libc::statfs) -> c_int {
    let Some(real) = next::<StatfsFn>(&STATFS, c"statfs") else {
        return enosys();
    };
    let rc = real(path, buf);
    if rc == 0 && !buf.is_null() {
        fix_type(buf, || {
            let mut st: libc::stat = std::mem::zeroed();
            (libc::stat(path, &mut st) == 0).then_some(st.st_dev)
        });
    }
    rc
}

unsafe fn do_fstatfs(fd: c_int, buf: *mut libc::statfs) -> c_int {
    let Some(real) = next::<FstatfsFn>(&FSTATFS, c"fstatfs") else {
        return enosys();
    };
    let rc = real(fd, buf);
    if rc == 0 && !buf.is_null() {
        fix_type(buf, || {
            let mut st: libc::stat = std::mem::zeroed();
            (libc::fstat(fd, &mut st) == 0).then_some(st.st_dev)
        });
    }
    rc
}

/// `statfs(2)` wrapper.
///
/// # Safety
/// As `statfs`: `path` a C string, `buf` writable.
#[no_mangle]
pub unsafe extern "C" fn statfs(path: *const c_char, buf: *mut libc::statfs) -> c_int {
    do_statfs(path, buf)
}

/// `statfs64`: the same structure on 64-bit glibc.
///
/// # Safety
/// As `statfs`.
#[no_mangle]
pub unsafe extern "C" fn statfs64(path: *const c_char, buf: *mut libc::statfs) -> c_int {
    do_statfs(path, buf)
}

/// `fstatfs(2)` wrapper.
///
/// # Safety
/// As `fstatfs`: `buf` writable.
#[no_mangle]
pub unsafe extern "C" fn fstatfs(fd: c_int, buf: *mut libc::statfs) -> c_int {
    do_fstatfs(fd, buf)
}

/// `fstatfs64`: the same structure on 64-bit glibc.
///
/// # Safety
/// As `fstatfs`.
#[no_mangle]
pub unsafe extern "C" fn fstatfs64(fd: c_int, buf: *mut libc::statfs) -> c_int {
    do_fstatfs(fd, buf)
}

/// `fopen(3)` wrapper: the dlmfs capabilities file reads as the kernel module's when no
/// module provides it.
///
/// # Safety
/// As `fopen`.
#[no_mangle]
pub unsafe extern "C" fn fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    let Some(real) = next::<FopenFn>(&FOPEN, c"fopen") else {
        enosys();
        return std::ptr::null_mut();
    };
    let f = real(path, mode);
    if !f.is_null()
        || path.is_null()
        || CStr::from_ptr(path).to_bytes() != CAPABILITIES_PATH.as_bytes()
    {
        return f;
    }
    let text = CAPABILITIES.as_bytes();
    // A read-only in-memory stream that lives until fclose.
    let mem = libc::fmemopen(std::ptr::null_mut(), text.len() + 1, c"w+".as_ptr());
    if mem.is_null() {
        return mem;
    }
    libc::fwrite(text.as_ptr().cast(), 1, text.len(), mem);
    libc::rewind(mem);
    mem
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
98 22 0:52 / /dlm rw,nosuid,nodev,relatime shared:60 - fuse.ocfs2_dlmfs ocfs2_dlmfs rw,user_id=0,group_id=0,default_permissions,allow_other
99 22 0:53 / /mnt/other rw,nosuid,nodev,relatime - fuse.sshfs host: rw,user_id=0,group_id=0
";

    #[test]
    fn only_the_fuse_dlmfs_device_is_recognised() {
        assert!(is_dlmfs_device(MOUNTINFO, libc::makedev(0, 52)));
        assert!(
            !is_dlmfs_device(MOUNTINFO, libc::makedev(0, 53)),
            "another FUSE fs"
        );
        assert!(!is_dlmfs_device(MOUNTINFO, libc::makedev(8, 1)));
        assert!(!is_dlmfs_device("", libc::makedev(0, 52)));
        assert!(!is_dlmfs_device("garbage\n - \n", libc::makedev(0, 52)));
    }

    #[test]
    fn statfs_of_an_ordinary_directory_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let p = std::ffi::CString::new(dir.path().to_str().unwrap()).unwrap();
        let mut ours: libc::statfs = unsafe { std::mem::zeroed() };
        let mut real: libc::statfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { do_statfs(p.as_ptr(), &mut ours) }, 0);
        assert_eq!(unsafe { libc::statfs(p.as_ptr(), &mut real) }, 0);
        assert_eq!(ours.f_type, real.f_type);
        assert_ne!(ours.f_type, DLMFS_MAGIC);
    }
}
