//! Host and port handling: resolution to every address, binding listeners (dual-stack for `::`,
//! one shared port when port 0 meets several addresses), and matching a UDP socket to a target.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::LISTEN_BACKLOG;
use crate::error::NetError;

/// How many times binding several addresses to one free port is attempted before giving up.
const SHARED_PORT_ATTEMPTS: usize = 8;

/// Removes the brackets of an IPv6 literal written as in a URL (`[::1]`).
pub(crate) fn strip_brackets(host: &str) -> &str {
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// Decodes the `%XX` escapes of a URL component; `None` when a `%` is not followed by two hex
/// digits.
pub(crate) fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok())?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

/// Every address `host` stands for, in resolver order, without duplicates.
pub async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, NetError> {
    let host = strip_brackets(host);
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let fail = |source| NetError::Resolve { host: host.to_string(), source };
    let found = tokio::net::lookup_host((host, port)).await.map_err(fail)?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in found {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(fail(io::Error::new(io::ErrorKind::NotFound, "no addresses found")));
    }
    Ok(addrs)
}

/// Binds a TCP listener on every address. With port 0 and several addresses, all of them get
/// the same free port, so a client can reach the server on any of them.
pub fn bind_tcp(addrs: &[SocketAddr]) -> Result<Vec<std::net::TcpListener>, NetError> {
    bind_tcp_with(addrs, false)
}

/// Like [`bind_tcp`]; with `reuse_port` (SO_REUSEPORT), other processes may listen on the same
/// port too, and the kernel spreads new connections among them.
pub fn bind_tcp_with(addrs: &[SocketAddr], reuse_port: bool) -> Result<Vec<std::net::TcpListener>, NetError> {
    bind_all(addrs, |addr| {
        let socket = new_socket(addr, Type::STREAM, Protocol::TCP)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(reuse_port)?;
        socket.bind(&addr.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(socket.into())
    })
}

/// Binds a UDP socket on every address, with the same port-sharing rule as [`bind_tcp`]; with
/// `reuse_port`, other processes may bind the port too and the kernel spreads datagrams.
pub fn bind_udp(addrs: &[SocketAddr], reuse_port: bool) -> Result<Vec<std::net::UdpSocket>, NetError> {
    bind_all(addrs, |addr| {
        let socket = new_socket(addr, Type::DGRAM, Protocol::UDP)?;
        socket.set_reuse_port(reuse_port)?;
        socket.bind(&addr.into())?;
        Ok(socket.into())
    })
}

/// The wildcard address of the same family as `target`, for a client's local end.
pub(crate) fn unspecified_for(target: SocketAddr) -> SocketAddr {
    match target {
        SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        SocketAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    }
}

fn new_socket(addr: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
    if let SocketAddr::V6(v6) = addr {
        // `::` means every interface, IPv4 included; a specific IPv6 address means just that one.
        // Set explicitly because the default differs between systems.
        socket.set_only_v6(!v6.ip().is_unspecified())?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn bind_all<S: LocalPort>(
    addrs: &[SocketAddr],
    bind_one: impl Fn(SocketAddr) -> io::Result<S>,
) -> Result<Vec<S>, NetError> {
    let fail = |addr, source| NetError::Listen { addr, source };
    let Some((&first, rest)) = addrs.split_first() else {
        return Ok(Vec::new());
    };
    let mut attempt = 0;
    'retry: loop {
        attempt += 1;
        let head = bind_one(first).map_err(|e| fail(first, e))?;
        let port = head.local_port().map_err(|e| fail(first, e))?;
        let mut bound = vec![head];
        for &addr in rest {
            let addr = if addr.port() == 0 { SocketAddr::new(addr.ip(), port) } else { addr };
            match bind_one(addr) {
                Ok(socket) => bound.push(socket),
                // The free port of the first address may be taken on another one; pick again.
                Err(e)
                    if first.port() == 0
                        && e.kind() == io::ErrorKind::AddrInUse
                        && attempt < SHARED_PORT_ATTEMPTS =>
                {
                    continue 'retry;
                }
                Err(e) => return Err(fail(addr, e)),
            }
        }
        return Ok(bound);
    }
}

/// Sockets whose bound port can be read back.
trait LocalPort {
    fn local_port(&self) -> io::Result<u16>;
}

impl LocalPort for std::net::TcpListener {
    fn local_port(&self) -> io::Result<u16> {
        Ok(self.local_addr()?.port())
    }
}

impl LocalPort for std::net::UdpSocket {
    fn local_port(&self) -> io::Result<u16> {
        Ok(self.local_addr()?.port())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_resolve_without_dns() {
        let v6 = resolve("[::1]", 80).await.expect("literal");
        assert_eq!(v6, vec!["[::1]:80".parse().expect("valid")]);
        let v4 = resolve("127.0.0.1", 0).await.expect("literal");
        assert_eq!(v4, vec!["127.0.0.1:0".parse().expect("valid")]);
    }

    #[test]
    fn several_addresses_share_one_free_port() {
        let addrs: Vec<SocketAddr> =
            vec!["127.0.0.1:0".parse().expect("valid"), "127.0.0.2:0".parse().expect("valid")];
        let listeners = bind_tcp(&addrs).expect("both bind");
        let ports: Vec<u16> = listeners.iter().map(|l| l.local_addr().expect("bound").port()).collect();
        assert_eq!(ports[0], ports[1]);
        assert_ne!(ports[0], 0);
    }

    #[test]
    fn a_port_in_use_is_reported_with_its_address() {
        let taken = bind_tcp(&["127.0.0.1:0".parse().expect("valid")]).expect("binds");
        let addr = taken[0].local_addr().expect("bound");
        let err = bind_tcp(&[addr]).expect_err("port is taken");
        assert!(
            err.to_string().starts_with(&format!("cannot listen on {addr}: address already in use")),
            "{err}"
        );
    }
}
