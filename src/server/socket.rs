//! The two kinds of stream a server accepts, TCP and Unix, behind what the connection core
//! needs of them. The core is generic over the socket, so a connection holds its stream
//! inline with no tag (the task's size is the idle-memory budget); writes go through `&dyn`,
//! where one indirect call per write costs nothing next to the system call.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::task::{Context, Poll};

use tokio::io::AsyncRead;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::output::Peer;

/// A connected stream socket, driven by readiness without waiting.
pub(super) trait Socket: Send + Sync + Unpin + 'static {
    /// Ready when a read may make progress.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Ready when a write may make progress.
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Reads what is there now; `WouldBlock` when nothing is.
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Writes what the socket takes now, from several buffers in order.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// The descriptor, for socket options (shutdown, linger).
    fn fd(&self) -> BorrowedFd<'_>;
    /// Small answers go out at once (no Nagle); a no-op where there is no Nagle.
    fn answer_promptly(&self);
    /// The stream of a non-blocking descriptor, registered with the runtime (a parked
    /// connection's, as it resumes).
    fn from_fd(fd: OwnedFd) -> io::Result<Self>
    where
        Self: Sized;
}

/// A socket the core can also read through `AsyncRead` (which notes a short read as drained).
pub(super) trait Stream: Socket + AsyncRead {}

impl<S: Socket + AsyncRead> Stream for S {}

macro_rules! socket_for {
    ($stream:ty, $std:ty) => {
        impl Socket for $stream {
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$stream>::poll_read_ready(self, cx)
            }
            fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$stream>::poll_write_ready(self, cx)
            }
            fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
                <$stream>::try_read(self, buf)
            }
            fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
                <$stream>::try_write(self, buf)
            }
            fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                <$stream>::try_write_vectored(self, bufs)
            }
            fn fd(&self) -> BorrowedFd<'_> {
                self.as_fd()
            }
            fn answer_promptly(&self) {
                set_nodelay(self);
            }
            fn from_fd(fd: OwnedFd) -> io::Result<Self> {
                <$stream>::from_std(<$std>::from(fd))
            }
        }
    };
}

socket_for!(TcpStream, std::net::TcpStream);
socket_for!(UnixStream, std::os::unix::net::UnixStream);

fn set_nodelay<S: AsFd>(stream: &S) {
    // Unix sockets have no Nagle; the call fails there and that is fine.
    let _ = socket2::SockRef::from(stream).set_tcp_nodelay(true);
}

/// Shuts down one or both directions of `socket`, ignoring a socket already gone.
pub(super) fn shutdown(socket: &dyn Socket, how: std::net::Shutdown) {
    let fd = socket.fd();
    let _ = socket2::SockRef::from(&fd).shutdown(how);
}

/// The local address of a TCP connection (`None` for a Unix socket).
pub(super) fn local_addr(socket: &dyn Socket) -> Option<std::net::SocketAddr> {
    let fd = socket.fd();
    socket2::SockRef::from(&fd).local_addr().ok()?.as_socket()
}

/// The credentials of a Unix-socket client, as its label.
pub(super) fn local_peer(stream: &UnixStream) -> Peer {
    match stream.peer_cred() {
        Ok(cred) => {
            Peer::Local { pid: cred.pid().and_then(|pid| u32::try_from(pid).ok()), uid: Some(cred.uid()) }
        }
        Err(_) => Peer::Local { pid: None, uid: None },
    }
}

/// A listening socket: hands out each new client with its label.
pub(super) trait Accept: Send + Sync + 'static {
    /// The kind of stream it accepts.
    type Stream: Stream;
    /// Accepts a client if one is waiting.
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Self::Stream, Peer)>>;
}

impl Accept for TcpListener {
    type Stream = TcpStream;

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, Peer)>> {
        TcpListener::poll_accept(self, cx).map_ok(|(stream, addr)| (stream, Peer::Ip(addr)))
    }
}

impl Accept for UnixListener {
    type Stream = UnixStream;

    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(UnixStream, Peer)>> {
        UnixListener::poll_accept(self, cx).map_ok(|(stream, _)| {
            let peer = local_peer(&stream);
            (stream, peer)
        })
    }
}
