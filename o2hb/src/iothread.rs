//! One thread per region doing its blocking reads and writes, so that a stalled device
//! stalls only its own region (and the write timeout still fires): what the real-time
//! drivers (this crate's [`crate::driver`], the node driver of `o2node`) run their regions'
//! I/O on. Also [`MemDisk`], a region in memory that the nodes of one process share, for
//! in-process clusters and tests.

use std::io;
use std::sync::mpsc;
use std::sync::Arc;

use crate::disk::BlockIo;

/// An I/O for the region's thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoRequest {
    Read { offset: u64, len: usize },
    Write { offset: u64, data: Vec<u8> },
}

/// A finished I/O.
#[derive(Debug)]
pub enum IoDone {
    Read(io::Result<Vec<u8>>),
    Write(io::Result<()>),
}

/// The I/O thread of one region; dropping it ends the thread once its current request is
/// done.
pub struct IoThread {
    tx: mpsc::Sender<IoRequest>,
}

impl IoThread {
    /// Starts a thread named `name` doing `io`'s requests in order and handing each result to
    /// `done`; the thread ends when `done` returns false or the [`IoThread`] is dropped.
    pub fn spawn(
        name: String,
        mut io: Box<dyn BlockIo>,
        mut done: impl FnMut(IoDone) -> bool + Send + 'static,
    ) -> io::Result<IoThread> {
        let (tx, rx) = mpsc::channel::<IoRequest>();
        std::thread::Builder::new().name(name).spawn(move || {
            while let Ok(req) = rx.recv() {
                let result = match req {
                    IoRequest::Read { offset, len } => {
                        let mut buf = vec![0u8; len];
                        IoDone::Read(io.read_at(offset, &mut buf).map(|_| buf))
                    }
                    IoRequest::Write { offset, data } => IoDone::Write(io.write_at(offset, &data)),
                };
                if !done(result) {
                    return;
                }
            }
        })?;
        Ok(IoThread { tx })
    }

    /// Queues a request; false if the thread has ended.
    pub fn submit(&self, req: IoRequest) -> bool {
        self.tx.send(req).is_ok()
    }
}

/// A region's bytes in memory, shared by every clone (the nodes of one process).
#[derive(Clone)]
pub struct MemDisk {
    bytes: Arc<parking_lot::Mutex<Vec<u8>>>,
}

impl MemDisk {
    /// `len` zero bytes.
    pub fn new(len: usize) -> MemDisk {
        MemDisk {
            bytes: Arc::new(parking_lot::Mutex::new(vec![0; len])),
        }
    }
}

impl BlockIo for MemDisk {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let bytes = self.bytes.lock();
        let range = range(offset, buf.len(), bytes.len())?;
        buf.copy_from_slice(&bytes[range]);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut bytes = self.bytes.lock();
        let range = range(offset, buf.len(), bytes.len())?;
        bytes[range].copy_from_slice(buf);
        Ok(())
    }
}

fn range(offset: u64, len: usize, size: usize) -> io::Result<std::ops::Range<usize>> {
    usize::try_from(offset)
        .ok()
        .and_then(|start| Some(start..start.checked_add(len)?))
        .filter(|r| r.end <= size)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{len} bytes at {offset} are past the end of a {size}-byte disk"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mem_disk_is_shared_by_its_clones_and_refuses_io_past_its_end() {
        let mut a = MemDisk::new(1024);
        let mut b = a.clone();
        a.write_at(512, &[7; 512]).unwrap();
        let mut back = [0u8; 512];
        b.read_at(512, &mut back).unwrap();
        assert_eq!(back, [7; 512]);
        let e = b.read_at(1000, &mut back).unwrap_err();
        assert!(e.to_string().contains("past the end"), "{e}");
    }

    #[test]
    fn the_thread_does_requests_in_order() {
        let (tx, rx) = mpsc::channel();
        let t = IoThread::spawn("test-io".into(), Box::new(MemDisk::new(4096)), move |d| {
            tx.send(d).is_ok()
        })
        .unwrap();
        assert!(t.submit(IoRequest::Write {
            offset: 0,
            data: vec![9; 512]
        }));
        assert!(t.submit(IoRequest::Read {
            offset: 0,
            len: 512
        }));
        assert!(matches!(rx.recv().unwrap(), IoDone::Write(Ok(()))));
        match rx.recv().unwrap() {
            IoDone::Read(Ok(b)) => assert_eq!(b, vec![9; 512]),
            other => panic!("{other:?}"),
        }
    }
}
