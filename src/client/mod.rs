//! `hubcat connect`: resolve, dial with a timeout and retries, then run a session.

pub mod proxy;
mod tcp;
pub mod tls;
mod udp;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpStream, UdpSocket};
use tracing::warn;

pub use tcp::{Direction, SessionOptions, tcp_session};
pub use udp::udp_session;

use crate::addr::{resolve, unspecified_for};
use crate::config::{ConnectConfig, DIAL_RETRY_FIRST, DIAL_RETRY_MAX};
use crate::error::{NetError, dial_timed_out, is_transient_dial, reason};

/// What is sent for each line of input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputMode {
    /// `NAME says: LINE` per line, `\r\n` trimmed; the line `Q` ends the session.
    Named(String),
    /// The input verbatim; at its end the sending side is closed and the reply read to its end.
    Raw,
    /// A chat room (`hubcat serve --mode chat`): the name first, then each line as typed;
    /// `Q` or `/quit` ends the session.
    Chat(String),
}

/// How a session that did not fail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The user quit, or the input ended and the exchange completed.
    Finished,
    /// The server closed the connection while the user was still sending.
    ClosedByServer,
    /// The server reset the connection.
    ResetByServer,
}

/// Dials `host:port` over TCP: every resolved address in turn, each bounded by the dial timeout,
/// and the whole round retried with exponential backoff while failures are transient.
pub async fn dial_tcp(host: &str, port: u16, config: &ConnectConfig) -> Result<TcpStream, NetError> {
    if let Some(proxy) = &config.proxy {
        return proxy::dial(proxy, host, port, config).await;
    }
    let addrs = resolve(host, port).await?;
    let dial = || try_each(&addrs, config.dial_timeout);
    let transient = |(_, err): &(SocketAddr, io::Error)| is_transient_dial(err);
    let words = |(addr, err): &(SocketAddr, io::Error)| format!("cannot connect to {addr}: {}", reason(err));
    with_retries(config, dial, transient, words)
        .await
        .map_err(|(addr, source)| NetError::Connect { addr, source })
}

/// Runs `attempt` until it succeeds, fails for good (not `transient`), or `--retry` retries are
/// spent, pausing with exponential backoff and saying so on stderr (`words` tells the failure).
pub(crate) async fn with_retries<T, E, Fut>(
    config: &ConnectConfig,
    mut attempt: impl FnMut() -> Fut,
    transient: impl Fn(&E) -> bool,
    words: impl Fn(&E) -> String,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut pause = DIAL_RETRY_FIRST;
    let mut retries = 0;
    loop {
        let err = match attempt().await {
            Ok(done) => return Ok(done),
            Err(err) => err,
        };
        if retries >= config.retries || !transient(&err) {
            return Err(err);
        }
        retries += 1;
        warn!(
            "{}; retrying in {} (retry {retries} of {})",
            words(&err),
            humantime::format_duration(pause),
            config.retries
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(DIAL_RETRY_MAX);
    }
}

/// Tries each address once; returns the first connection, or the last failure.
async fn try_each(addrs: &[SocketAddr], limit: Duration) -> Result<TcpStream, (SocketAddr, io::Error)> {
    let mut failure = (SocketAddr::from(([0, 0, 0, 0], 0)), no_address());
    for &addr in addrs {
        let err = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(err)) => err,
            Err(_) => dial_timed_out(limit),
        };
        failure = (addr, err);
    }
    Err(failure)
}

fn no_address() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "no address to try")
}

/// Opens a UDP socket connected to the first address of `host:port` (UDP has no handshake,
/// so there is nothing to fall back on).
pub async fn dial_udp(host: &str, port: u16) -> Result<UdpSocket, NetError> {
    let addr = resolve(host, port).await?[..]
        .first()
        .copied()
        .ok_or_else(|| NetError::Resolve { host: host.to_string(), source: no_address() })?;
    let fail = |source| NetError::Connect { addr, source };
    let socket = UdpSocket::bind(unspecified_for(addr)).await.map_err(fail)?;
    socket.connect(addr).await.map_err(fail)?;
    Ok(socket)
}
