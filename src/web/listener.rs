//! The console's listener, bounded: at most [`MAX_CONNECTIONS`] at once, and a connection that
//! sends nothing within [`FIRST_BYTE`] is closed. The console shares the server's descriptors,
//! so idle sockets on its port must not be able to starve the clients the server is for.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Most console connections at once (each browser holds one or two).
const MAX_CONNECTIONS: usize = 64;
/// How long a new console connection may take to send its first byte.
const FIRST_BYTE: Duration = Duration::from_secs(10);

/// The console's listener.
pub(super) struct Bounded {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

impl Bounded {
    pub fn new(listener: TcpListener) -> Self {
        Bounded { listener, slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)) }
    }
}

/// A console connection, holding its slot until it closes.
pub(super) struct Conn {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// Until the first byte arrives.
    first_byte: Option<Pin<Box<Sleep>>>,
}

impl axum::serve::Listener for Bounded {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            let Ok(slot) = Arc::clone(&self.slots).acquire_owned().await else { continue };
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let first_byte = Some(Box::pin(tokio::time::sleep(FIRST_BYTE)));
                    return (Conn { stream, _slot: slot, first_byte }, addr);
                }
                // Out of descriptors or the like: the server's own accept loop reports it.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.first_byte = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                if let Some(limit) = self.first_byte.as_mut() {
                    ready!(limit.as_mut().poll(cx));
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no request in time")));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
