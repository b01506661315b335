//! SOCKS5 (RFC 1928, with RFC 1929 username/password) over a socket already connected to
//! the proxy, by tokio-socks; its errors put back into words with the reply code.

use std::io;

use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;

use super::{ProxyUrl, Target};
use crate::error::reason;

/// Asks the proxy on `stream` for a tunnel to `target`.
pub(super) async fn connect(
    stream: TcpStream,
    target: &Target<'_>,
    proxy: &ProxyUrl,
) -> Result<TcpStream, tokio_socks::Error> {
    let tunnel = match (target, proxy.credentials()) {
        (Target::Addr(addr), None) => Socks5Stream::connect_with_socket(stream, *addr).await?,
        (Target::Name(host, port), None) => Socks5Stream::connect_with_socket(stream, (*host, *port)).await?,
        (Target::Addr(addr), Some(c)) => {
            Socks5Stream::connect_with_password_and_socket(stream, *addr, &c.user, &c.password).await?
        }
        (Target::Name(host, port), Some(c)) => {
            Socks5Stream::connect_with_password_and_socket(stream, (*host, *port), &c.user, &c.password)
                .await?
        }
    };
    Ok(tunnel.into_inner())
}

/// A SOCKS5 failure in words, and whether retrying may help (RFC 1928 section 6 reply codes).
pub(super) fn failure(err: tokio_socks::Error, target: &Target<'_>, proxy: &ProxyUrl) -> (String, bool) {
    use tokio_socks::Error as E;
    let reply = |code: u8, text: &str, transient: bool| {
        let verb = if transient || code == 1 { "could not connect to" } else { "refused the connection to" };
        (format!("{verb} {target}: {text} (reply {code})"), transient)
    };
    let creds_hint = if proxy.credentials().is_some() { "" } else { " (put USER:PASS@ in the --proxy URL)" };
    match err {
        E::GeneralSocksServerFailure => reply(1, "general SOCKS server failure", false),
        E::ConnectionNotAllowedByRuleset => reply(2, "connection not allowed by ruleset", false),
        E::NetworkUnreachable => reply(3, "network unreachable", true),
        E::HostUnreachable => reply(4, "host unreachable", true),
        E::ConnectionRefused => reply(5, "connection refused", true),
        E::TtlExpired => reply(6, "TTL expired", true),
        E::CommandNotSupported => reply(7, "command not supported", false),
        E::AddressTypeNotSupported => reply(8, "address type not supported", false),
        E::PasswordAuthFailure(status) => (
            format!(
                "rejected the username and password (status {status}); check USER:PASS in the --proxy URL"
            ),
            false,
        ),
        E::AuthorizationRequired | E::NoAcceptableAuthMethods => {
            (format!("accepts none of the authentication methods offered{creds_hint}"), false)
        }
        E::InvalidTargetAddress(why) => (format!("cannot be asked for {target}: {why}"), false),
        E::Io(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
            ("closed the connection during the handshake (is it a SOCKS5 proxy?)".into(), false)
        }
        E::Io(err) => (format!("failed during the handshake: {}", reason(&err)), false),
        E::InvalidResponseVersion | E::InvalidReservedByte | E::UnknownAddressType | E::UnknownAuthMethod => {
            ("answered with something that is not SOCKS5 (is it a SOCKS5 proxy?)".into(), false)
        }
        other => (format!("failed the handshake: {}", other.to_string().to_lowercase()), false),
    }
}
