//! The PROXY protocol (v1 text, v2 binary) that HAProxy and other load balancers put before a
//! client's bytes, so the server learns the client's own address instead of the balancer's.
//! Parsed with the `ppp` crate; read exactly to its end, so not one byte of the client's data
//! is taken with it. Only balancers in `--proxy-from` are believed; a header is required from
//! them, and anyone else is refused.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 header's first bytes; a v1 header starts `PROXY `.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, `\r\n` included (the protocol's own limit).
const V1_MAX: usize = 107;

/// Reads the header at the start of `stream`; returns the client's address, or `None` when
/// the balancer speaks for itself (v1 `UNKNOWN`, v2 `LOCAL`: a health check).
pub(super) async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Option<SocketAddr>> {
    let mut head = [0u8; 16];
    stream.read_exact(&mut head[..8]).await?;
    if head[..8] == V2_SIGNATURE[..8] {
        stream.read_exact(&mut head[8..]).await?;
        if head[..12] != V2_SIGNATURE {
            return Err(invalid("a PROXY v2 header with a wrong signature"));
        }
        let len = 16 + usize::from(u16::from_be_bytes([head[14], head[15]]));
        let mut header = vec![0u8; len];
        header[..16].copy_from_slice(&head);
        stream.read_exact(&mut header[16..]).await?;
        let parsed = ppp::v2::Header::try_from(&header[..])
            .map_err(|e| invalid(&format!("a bad PROXY v2 header: {e}")))?;
        return Ok(match (parsed.command, parsed.addresses) {
            (ppp::v2::Command::Local, _) => None,
            (_, ppp::v2::Addresses::IPv4(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
            (_, ppp::v2::Addresses::IPv6(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
            (_, _) => None,
        });
    }
    if &head[..6] != b"PROXY " {
        return Err(invalid("no PROXY header (is the balancer set to send-proxy?)"));
    }
    // Text: a byte at a time up to its `\r\n`, so nothing after it is read.
    let mut header = head[..8].to_vec();
    while !header.ends_with(b"\r\n") {
        if header.len() >= V1_MAX {
            return Err(invalid("a PROXY v1 header longer than 107 bytes"));
        }
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        header.push(byte[0]);
    }
    // Plain ASCII with its only `\r` at the end: anything else is refused here, before the
    // parser sees it (ppp 2.3 panics on a `\r` followed by a multi-byte character).
    let body = &header[..header.len() - 2];
    if !header.is_ascii() || body.contains(&b'\r') || body.contains(&b'\n') {
        return Err(invalid("a PROXY v1 header that is not one line of ASCII"));
    }
    let text = std::str::from_utf8(&header).map_err(|_| invalid("a PROXY v1 header that is not text"))?;
    let parsed =
        ppp::v1::Header::try_from(text).map_err(|e| invalid(&format!("a bad PROXY v1 header: {e}")))?;
    Ok(match parsed.addresses {
        ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v1::Addresses::Unknown => None,
    })
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> (io::Result<Option<SocketAddr>>, Vec<u8>) {
        let mut input = bytes;
        let result = read_header(&mut input).await;
        (result, input.to_vec())
    }

    #[tokio::test]
    async fn v1_and_v2_headers_give_the_client_and_leave_its_bytes() {
        let (addr, rest) = parse(b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443\r\nhello\n").await;
        assert_eq!(addr.expect("v1"), Some("192.0.2.7:56324".parse().expect("addr")));
        assert_eq!(rest, b"hello\n");
        let (addr, _) = parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 443\r\n").await;
        assert_eq!(addr.expect("v1 v6"), Some("[2001:db8::7]:56324".parse().expect("addr")));
        let (addr, rest) = parse(b"PROXY UNKNOWN\r\nx").await;
        assert_eq!(addr.expect("unknown"), None, "the balancer itself");
        assert_eq!(rest, b"x");

        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 7, 10, 0, 0, 1, 0xdc, 0x04, 0x01, 0xbb]);
        v2.extend_from_slice(b"data");
        let (addr, rest) = parse(&v2).await;
        assert_eq!(addr.expect("v2"), Some("192.0.2.7:56324".parse().expect("addr")));
        assert_eq!(rest, b"data");
    }

    #[tokio::test]
    async fn anything_else_is_refused_without_a_panic() {
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 nonsense\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 443",
            &[b'P', b'R', b'O', b'X', b'Y', b' ', b'T', b'C'].repeat(20),
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff",
            b"short",
            "PROXY \r\u{e9} TCP4 1.2.3.4 5.6.7.8 1 2\r\n".as_bytes(),
        ] {
            assert!(parse(bad).await.0.is_err(), "{bad:?}");
        }
    }
}
