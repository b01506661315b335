//! How bench clients reach the server: from spread-out loopback source addresses, over TCP or
//! TLS (`--tls`; the certificate is not checked, bench only loads servers on this machine).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::client::tls::{Verify, client_config};

/// Client `index`'s source address: spread over 127.0.0.2-127.0.0.254 when the target is IPv4
/// loopback, so thousands of connections never run out of local ports.
fn source_for(index: usize, target: SocketAddr) -> Option<SocketAddr> {
    match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let last = 2 + (index % 253) as u8;
            Some(SocketAddr::new(Ipv4Addr::new(127, 0, 0, last).into(), 0))
        }
        _ => None,
    }
}

/// Connects client `index` to `target` from its spread-out source address.
pub(super) async fn connect(index: usize, target: SocketAddr) -> io::Result<TcpStream> {
    let Some(source) = source_for(index, target) else {
        return TcpStream::connect(target).await;
    };
    let socket = TcpSocket::new_v4()?;
    socket.bind(source)?;
    socket.connect(target).await
}

/// The server's address, and TLS when the run asks for it.
#[derive(Clone)]
pub(super) struct Dialer {
    /// Where clients connect.
    pub addr: SocketAddr,
    tls: Option<TlsConnector>,
}

impl Dialer {
    /// Clients of `addr`, speaking TLS when `tls`.
    pub fn new(addr: SocketAddr, tls: bool) -> io::Result<Dialer> {
        let tls = match tls {
            true => {
                let mut config = client_config(&Verify::Insecure).map_err(io::Error::other)?;
                // Every connection a full handshake, whatever the server offers.
                config.resumption = rustls::client::Resumption::disabled();
                Some(TlsConnector::from(Arc::new(config)))
            }
            false => None,
        };
        Ok(Dialer { addr, tls })
    }

    /// Connects client `index` (and finishes the TLS handshake).
    pub async fn connect(&self, index: usize) -> io::Result<Conn> {
        let stream = connect(index, self.addr).await?;
        match &self.tls {
            None => Ok(Conn::Plain(stream)),
            Some(tls) => {
                let name = ServerName::IpAddress(self.addr.ip().into());
                Ok(Conn::Tls(Box::new(tls.connect(name, stream).await?)))
            }
        }
    }
}

/// A client connection, plain or TLS.
pub(super) enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    /// Closes the sending side; over TLS, also reads to the server's close, so that nothing it
    /// sent (session tickets) is left unread to turn the close into a reset that could cost
    /// the server the client's last lines.
    pub async fn finish(&mut self) -> io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.shutdown().await?;
        if let Conn::Tls(_) = self {
            let mut sink = [0; 4096];
            let drain = async {
                while self.read(&mut sink).await? > 0 {}
                io::Result::Ok(())
            };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
        }
        Ok(())
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(stream) => stream,
            Conn::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Conn::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
