//! Socket plumbing shared by the tokio drivers of an o2net core (this crate's [`crate::Net`]
//! and the node driver of `o2node`): the listening socket, outgoing connects, reads that
//! drain a socket in one syscall, and per-connection write buffers.
//!
//! Bytes for a connection are appended to its [`ConnIo`] buffer while the caller holds its
//! core's lock (keeping the core's order) and written after the lock is released by
//! [`flush_now`]; when the socket is full a [`flusher`] task takes over. The kernel's socket
//! options are set here: SO_REUSEADDR and a backlog of 64 on the listener, TCP_NODELAY and
//! a TCP_USER_TIMEOUT that never gives up on every connection.

use std::io;
use std::net::SocketAddrV4;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;

/// `O2NET_TCP_USER_TIMEOUT`: TCP itself never gives up on a peer.
const TCP_USER_TIMEOUT: Duration = Duration::from_millis(0x7fff_ffff);
/// `o2net_open_listening_sock`'s backlog.
const LISTEN_BACKLOG: i32 = 64;

/// Per-connection write side.
pub struct ConnIo {
    w: Mutex<WriteState>,
    wake_flusher: Notify,
    /// Signalled once by [`close_io`]: ends a connect still in progress.
    pub closed: Notify,
}

struct WriteState {
    stream: Option<std::sync::Arc<TcpStream>>,
    buf: BytesMut,
    /// Someone (a task in a syscall, or the flusher task) owns writing.
    flushing: bool,
    closed: bool,
}

impl ConnIo {
    /// A connection's write side; `stream` is `None` until an outgoing connect completes.
    pub fn new(stream: Option<std::sync::Arc<TcpStream>>) -> ConnIo {
        ConnIo {
            w: Mutex::new(WriteState {
                stream,
                buf: BytesMut::new(),
                flushing: false,
                closed: false,
            }),
            wake_flusher: Notify::new(),
            closed: Notify::new(),
        }
    }

    /// Queues bytes to write after everything queued before (dropped once closed).
    pub fn append(&self, data: &[u8]) {
        let mut w = self.w.lock();
        if !w.closed {
            w.buf.extend_from_slice(data);
        }
    }

    /// An outgoing connect completed: writes may go out. False if closed meanwhile.
    pub fn connected(&self, stream: std::sync::Arc<TcpStream>) -> bool {
        let mut w = self.w.lock();
        if w.closed {
            return false;
        }
        w.stream = Some(stream);
        true
    }

    pub fn is_closed(&self) -> bool {
        self.w.lock().closed
    }
}

/// Closes a connection: the peer is told at once, its reader sees EOF, its flusher and a
/// pending connect let go.
pub fn close_io(io: &ConnIo) {
    let mut w = io.w.lock();
    w.closed = true;
    w.buf.clear();
    if let Some(s) = w.stream.take() {
        let _ = SockRef::from(s.as_ref()).shutdown(std::net::Shutdown::Both);
    }
    drop(w);
    io.wake_flusher.notify_one();
    io.closed.notify_one();
}

/// Writes the buffer now if nobody else is (or hands it to the flusher task when `defer`);
/// leaves what the socket refuses to the flusher.
pub fn flush_now(io: &ConnIo, defer: bool) {
    let stream = {
        let mut w = io.w.lock();
        if w.flushing || w.buf.is_empty() {
            return;
        }
        let Some(s) = w.stream.clone() else { return };
        w.flushing = true;
        s
    };
    if defer || !write_out(io, &stream) {
        io.wake_flusher.notify_one();
    }
}

/// Writes buffered bytes until the buffer is empty (true: flushing released) or the socket
/// is full (false: the caller keeps `flushing` and waits). The syscall runs without the lock
/// so that senders keep appending.
fn write_out(io: &ConnIo, stream: &TcpStream) -> bool {
    loop {
        let chunk = {
            let mut w = io.w.lock();
            if w.buf.is_empty() || w.closed {
                w.flushing = false;
                return true;
            }
            w.buf.split().freeze()
        };
        let mut rest = chunk;
        while !rest.is_empty() {
            match stream.try_write(&rest) {
                Ok(n) => rest.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut w = io.w.lock();
                    let mut back = BytesMut::with_capacity(rest.len() + w.buf.len());
                    back.extend_from_slice(&rest);
                    back.extend_from_slice(&w.buf);
                    w.buf = back;
                    return false;
                }
                Err(_) => {
                    // The reader sees the same error and reports the close.
                    let mut w = io.w.lock();
                    w.buf.clear();
                    w.flushing = false;
                    return true;
                }
            }
        }
    }
}

/// The task that writes what a full socket left in the buffer once it drains.
pub async fn flusher(io: std::sync::Arc<ConnIo>, stream: std::sync::Arc<TcpStream>) {
    loop {
        io.wake_flusher.notified().await;
        if io.is_closed() {
            return;
        }
        loop {
            if stream.writable().await.is_err() {
                return;
            }
            if write_out(&io, &stream) {
                break;
            }
        }
    }
}

/// Waits for data and reads what is there into `buf`; `Ok(0)` is EOF. A read that does not
/// fill the buffer has drained the socket: readiness is cleared then (by answering
/// WouldBlock to `try_io`) instead of by one more read that fails, a syscall per wake-up
/// saved. Tokio clears it only if no readiness came since this read began, so data that
/// arrives meanwhile still wakes the reader.
pub async fn read_some(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        let mut short = 0;
        let cap = buf.len();
        let r = stream.try_io(tokio::io::Interest::READABLE, || {
            match stream.try_read(&mut *buf) {
                Ok(n) if n > 0 && n < cap => {
                    short = n;
                    Err(io::ErrorKind::WouldBlock.into())
                }
                r => r,
            }
        });
        match r {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if short > 0 {
                    return Ok(short);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The listening socket: SO_REUSEADDR, the kernel's backlog.
pub fn listen(addr: SocketAddrV4) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&std::net::SocketAddr::V4(addr).into())?;
    s.listen(LISTEN_BACKLOG)?;
    s.set_nonblocking(true)?;
    TcpListener::from_std(s.into())
}

/// Sets the kernel's options on an accepted connection.
pub fn accepted(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = SockRef::from(stream).set_tcp_user_timeout(Some(TCP_USER_TIMEOUT));
}

/// Connects from `from` (port 0) to `remote` with the kernel's options.
pub async fn connect_socket(from: SocketAddrV4, remote: SocketAddrV4) -> io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(std::net::SocketAddr::V4(from))?;
    let stream = sock.connect(std::net::SocketAddr::V4(remote)).await?;
    stream.set_nodelay(true)?;
    SockRef::from(&stream).set_tcp_user_timeout(Some(TCP_USER_TIMEOUT))?;
    Ok(stream)
}
