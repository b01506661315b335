//! `hubcat connect --proxy`: reach the target through a SOCKS5 or HTTP `CONNECT` proxy. The
//! proxy is dialled like a direct target (every address, `--timeout` per attempt, `--retry`
//! with backoff); its handshake then has `--timeout` of its own. The result is a plain
//! `TcpStream`, so TLS and every session kind run over the tunnel unchanged.

mod http;
mod socks;
mod url;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

pub use url::{ProxyKind, ProxyUrl, ProxyUrlError};

use super::try_each;
use crate::addr::{resolve, strip_brackets};
use crate::config::ConnectConfig;
use crate::error::{NetError, is_transient_dial, reason};

/// Why a dial through a proxy failed; one line each, naming the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The proxy's name did not resolve.
    #[error("cannot resolve the {protocol} proxy {host:?}: {} (check the --proxy URL)", reason(source))]
    Resolve {
        /// `socks5` or `http`.
        protocol: &'static str,
        /// The proxy host as given.
        host: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The proxy could not be reached (after any retries).
    #[error("cannot connect to {addr} ({protocol} proxy): {}{}", reason(source), unreachable_hint(source))]
    Connect {
        /// `socks5` or `http`.
        protocol: &'static str,
        /// The proxy address dialled last.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The proxy was reached but opened no tunnel (it refused, failed or did not answer).
    #[error("{protocol} proxy {proxy} {what}")]
    Tunnel {
        /// `socks5` or `http`.
        protocol: &'static str,
        /// The proxy's address.
        proxy: SocketAddr,
        /// What it did, from the proxy's side (`refused the connection to ...`).
        what: String,
        /// Whether trying again may help (the target was refused or unreachable).
        transient: bool,
    },
}

fn unreachable_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => " (is the proxy running?)",
        io::ErrorKind::TimedOut => " (is the proxy up? raise --timeout to wait longer)",
        _ => "",
    }
}

impl ProxyError {
    fn is_transient(&self) -> bool {
        match self {
            ProxyError::Resolve { .. } => false,
            ProxyError::Connect { source, .. } => is_transient_dial(source),
            ProxyError::Tunnel { transient, .. } => *transient,
        }
    }
}

/// Dials `host:port` through `proxy`, retrying as `config` says while failures are transient.
pub async fn dial(
    proxy: &ProxyUrl,
    host: &str,
    port: u16,
    config: &ConnectConfig,
) -> Result<TcpStream, NetError> {
    let protocol = proxy.kind().protocol();
    let proxy_addrs = resolve(proxy.host(), proxy.port()).await.map_err(|err| match err {
        NetError::Resolve { source, .. } => {
            ProxyError::Resolve { protocol, host: proxy.host().into(), source }.into()
        }
        other => other,
    })?;
    let host = strip_brackets(host);
    if host.is_empty() || host.contains(|c: char| c.is_control() || c.is_whitespace()) {
        let source = io::Error::new(io::ErrorKind::InvalidInput, "not a host name");
        return Err(NetError::Resolve { host: host.into(), source });
    }
    let target = match proxy.kind() {
        // Resolved here, once, and the first address sent: a name that does not resolve is
        // the same error as without a proxy.
        ProxyKind::Socks5 => match resolve(host, port).await?.first() {
            Some(&addr) => Target::Addr(addr),
            None => {
                return Err(NetError::Resolve { host: host.into(), source: io::ErrorKind::NotFound.into() });
            }
        },
        ProxyKind::Socks5h | ProxyKind::Http => Target::Name(host, port),
    };
    let dial = || dial_once(proxy, &proxy_addrs, &target, config.dial_timeout);
    super::with_retries(config, dial, ProxyError::is_transient, ProxyError::to_string)
        .await
        .map_err(Into::into)
}

/// The target as the proxy is told it.
enum Target<'a> {
    Addr(SocketAddr),
    Name(&'a str, u16),
}

impl std::fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Addr(addr) => write!(f, "{addr}"),
            Target::Name(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            Target::Name(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

async fn dial_once(
    proxy: &ProxyUrl,
    addrs: &[SocketAddr],
    target: &Target<'_>,
    limit: Duration,
) -> Result<TcpStream, ProxyError> {
    let protocol = proxy.kind().protocol();
    let mut stream = try_each(addrs, limit).await.map_err(|(addr, source)| ProxyError::Connect {
        protocol,
        addr,
        source,
    })?;
    let proxy_addr = stream.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], proxy.port())));
    let refused =
        |what: String, transient: bool| ProxyError::Tunnel { protocol, proxy: proxy_addr, what, transient };
    let handshake = async {
        match proxy.kind() {
            ProxyKind::Socks5 | ProxyKind::Socks5h => {
                socks::connect(stream, target, proxy).await.map_err(|e| socks::failure(e, target, proxy))
            }
            ProxyKind::Http => {
                match http::connect(&mut stream, &target.to_string(), proxy.credentials()).await {
                    Ok(()) => Ok(stream),
                    Err(failure) => Err(http_failure(failure, target, proxy)),
                }
            }
        }
    };
    match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err((what, transient))) => Err(refused(what, transient)),
        Err(_) => Err(refused(
            format!(
                "gave no answer for {target} within {} (raise --timeout to wait longer)",
                humantime::format_duration(limit)
            ),
            false,
        )),
    }
}

fn http_failure(failure: http::Failure, target: &Target<'_>, proxy: &ProxyUrl) -> (String, bool) {
    match failure {
        http::Failure::Status(code, text) => {
            let hint = match (code, proxy.credentials()) {
                (407, None) => " (put USER:PASS@ in the --proxy URL)",
                // tinyproxy answers wrong credentials with 401, not 407.
                (401 | 407, Some(_)) => " (check USER:PASS in the --proxy URL)",
                _ => "",
            };
            let text = if text.is_empty() { String::new() } else { format!(" {text}") };
            (format!("answered CONNECT {target} with {code}{text}{hint}"), false)
        }
        http::Failure::Malformed(why) => {
            (format!("answered CONNECT {target} with something that is not HTTP: the answer {why}"), false)
        }
        http::Failure::TooLong => (
            format!("answered CONNECT {target} with a head longer than {} KiB", http::MAX_HEAD_BYTES / 1024),
            false,
        ),
        http::Failure::Io(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
            (format!("{} before answering CONNECT {target}", reason(&err)), false)
        }
        http::Failure::Io(err) => (format!("failed during CONNECT {target}: {}", reason(&err)), false),
    }
}
