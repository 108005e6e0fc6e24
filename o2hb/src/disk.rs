//! Block I/O for regions: O_DIRECT reads and writes with aligned buffers, so that nodes on
//! other machines or in other containers see each other's writes, as the kernel's bios do.
//!
//! A file system that refuses O_DIRECT (tmpfs) gets a logged notice and synchronous buffered
//! I/O (O_DSYNC) instead: still coherent between processes of one machine.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Alignment of the I/O buffers: enough for any logical block size up to 4096.
const ALIGN: usize = 4096;

/// What a region driver needs from its device. Tests wrap it to inject stalls and errors.
pub trait BlockIo: Send {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, durably.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
}

/// A buffer whose usable part starts at a 4096-byte boundary (safe code: over-allocate, slice).
struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    fn new() -> Self {
        AlignedBuf {
            raw: Vec::new(),
            start: 0,
            len: 0,
        }
    }

    fn get(&mut self, len: usize) -> &mut [u8] {
        if self.raw.len() < len + ALIGN {
            self.raw = vec![0u8; len + ALIGN];
            self.start = self.raw.as_ptr().align_offset(ALIGN).min(ALIGN);
        }
        self.len = len;
        &mut self.raw[self.start..self.start + len]
    }
}

/// A region file or block device opened for heartbeat I/O.
pub struct DirectFile {
    path: PathBuf,
    file: File,
    direct: bool,
    writable: bool,
    buf: AlignedBuf,
}

impl DirectFile {
    /// Opens read-write with O_DIRECT, or falls back (with a notice) to O_DSYNC where O_DIRECT
    /// is refused.
    pub fn open(path: &Path) -> io::Result<DirectFile> {
        Self::open_access(path, true)
    }

    /// Opens for reading only (dumps, inspection): a read-only device or file is enough.
    pub fn open_read_only(path: &Path) -> io::Result<DirectFile> {
        Self::open_access(path, false)
    }

    fn open_access(path: &Path, writable: bool) -> io::Result<DirectFile> {
        let (file, direct) = match Self::open_with(path, true, writable) {
            Ok(file) => (file, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::warn!(path = %path.display(), "O_DIRECT refused by this file system; using synchronous buffered I/O");
                (Self::open_with(path, false, writable)?, false)
            }
            Err(e) => return Err(e),
        };
        Ok(DirectFile {
            path: path.to_path_buf(),
            file,
            direct,
            writable,
            buf: AlignedBuf::new(),
        })
    }

    fn open_with(path: &Path, direct: bool, writable: bool) -> io::Result<File> {
        let flags = if direct {
            libc::O_DIRECT | libc::O_DSYNC
        } else {
            libc::O_DSYNC
        };
        OpenOptions::new()
            .read(true)
            .write(writable)
            .custom_flags(flags)
            .open(path)
    }

    /// Whether I/O bypasses the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Some file systems accept O_DIRECT at open and refuse it on the first unaligned or
    /// unsupported request; switch to buffered I/O then, once.
    fn fall_back(&mut self, e: &io::Error) -> io::Result<bool> {
        if !self.direct || e.raw_os_error() != Some(libc::EINVAL) {
            return Ok(false);
        }
        tracing::warn!(path = %self.path.display(), "O_DIRECT I/O refused ({e}); using synchronous buffered I/O");
        self.file = Self::open_with(&self.path, false, self.writable)?;
        self.direct = false;
        Ok(true)
    }
}

impl BlockIo for DirectFile {
    fn read_at(&mut self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let res = {
            let buf = self.buf.get(out.len());
            self.file.read_exact_at(buf, offset)
        };
        match res {
            Ok(()) => {}
            Err(e) if self.fall_back(&e)? => {
                let buf = self.buf.get(out.len());
                self.file.read_exact_at(buf, offset)?;
            }
            Err(e) => return Err(e),
        }
        let len = self.buf.len;
        out.copy_from_slice(&self.buf.raw[self.buf.start..self.buf.start + len]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let res = {
            let buf = self.buf.get(data.len());
            buf.copy_from_slice(data);
            self.file.write_all_at(buf, offset)
        };
        match res {
            Ok(()) => Ok(()),
            Err(e) if self.fall_back(&e)? => {
                let buf = self.buf.get(data.len());
                buf.copy_from_slice(data);
                self.file.write_all_at(buf, offset)
            }
            Err(e) => Err(e),
        }
    }
}

/// The logical sector size: BLKSSZGET for a block device, 512 for anything else (as
/// ocfs2-tools falls back to).
pub fn logical_sector_size(file: &File) -> io::Result<u32> {
    if !file.metadata()?.file_type().is_block_device() {
        return Ok(512);
    }
    use std::os::fd::AsRawFd;
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one c_int through the pointer, which points at a live c_int.
    let rc = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            libc::BLKSSZGET,
            &mut size as *mut libc::c_int,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    u32::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative sector size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_it_writes_at_block_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev");
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        let mut f = DirectFile::open(&path).unwrap();
        let block: Vec<u8> = (0..512).map(|i| (i % 251) as u8).collect();
        f.write_at(1024, &block).unwrap();
        let mut back = vec![0u8; 512];
        f.read_at(1024, &mut back).unwrap();
        assert_eq!(back, block);
        // Another open (another process would do the same) sees the write.
        assert_eq!(&std::fs::read(&path).unwrap()[1024..1536], &block[..]);
        assert_eq!(
            logical_sector_size(&File::open(&path).unwrap()).unwrap(),
            512
        );
    }

    #[test]
    fn tmpfs_works_with_or_without_o_direct() {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            return;
        }
        let dir = tempfile::tempdir_in(shm).unwrap();
        let path = dir.path().join("dev");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let mut f = DirectFile::open(&path).unwrap();
        f.write_at(512, &[7u8; 512]).unwrap();
        let mut back = [0u8; 512];
        f.read_at(512, &mut back).unwrap();
        assert_eq!(back, [7u8; 512]);
        // Older tmpfs refuses O_DIRECT (the fallback runs), newer accepts it; both must work.
        let _ = f.is_direct();
    }
}
