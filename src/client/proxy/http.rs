//! HTTP `CONNECT` (RFC 9110 section 9.3.6). The answer's head is peeked before it is read, so
//! not one byte past its blank line is taken from the socket: whatever the target sent early
//! is still there for the session.

use std::io;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::url::Credentials;
use crate::output::escape_into;

/// Longest answer head accepted; a proxy's is a few hundred bytes.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Longest reason phrase shown in an error.
const MAX_REASON_CHARS: usize = 80;

/// Why a `CONNECT` did not open a tunnel.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The socket failed, or closed before the head ended.
    Io(io::Error),
    /// The answer is not HTTP.
    Malformed(&'static str),
    /// The head did not end within [`MAX_HEAD_BYTES`].
    TooLong,
    /// The proxy answered, but not 2xx: the status code and the reason, escaped.
    Status(u16, String),
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Failure {
        Failure::Io(err)
    }
}

/// Asks the proxy on `stream` for a tunnel to `target` (`host:port`, IPv6 in brackets).
pub(crate) async fn connect(
    stream: &mut TcpStream,
    target: &str,
    credentials: Option<&Credentials>,
) -> Result<(), Failure> {
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(creds) = credentials {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.user, creds.password));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str(concat!("User-Agent: hubcat/", env!("CARGO_PKG_VERSION"), "\r\n\r\n"));
    stream.write_all(request.as_bytes()).await?;
    let head = read_head(stream).await?;
    match status(&head)? {
        (200..=299, _) => Ok(()),
        (code, reason) => Err(Failure::Status(code, reason)),
    }
}

/// Reads up to and including the blank line that ends the head, and nothing after it.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, Failure> {
    let mut head = Vec::new();
    let mut peeked = vec![0; 4096];
    loop {
        let n = stream.peek(&mut peeked).await?;
        if n == 0 {
            let what =
                if head.is_empty() { "closed the connection" } else { "closed the connection mid-answer" };
            return Err(Failure::Io(io::Error::new(io::ErrorKind::UnexpectedEof, what)));
        }
        let start = head.len();
        head.extend_from_slice(&peeked[..n]);
        // The end may straddle what was read before and what was peeked now.
        let end = head_end(&head, start.saturating_sub(2));
        let take = end.map_or(n, |end| end - start);
        head.truncate(start + take);
        stream.read_exact(&mut peeked[..take]).await?;
        if end.is_some() {
            return Ok(head);
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err(Failure::TooLong);
        }
    }
}

/// Where the head ends (just past its blank line), searching from `from`; bare `\n` line ends
/// are accepted as RFC 9112 allows.
pub(crate) fn head_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(found) = bytes.get(at..).and_then(|rest| memchr::memchr(b'\n', rest)) {
        let i = at + found;
        match bytes.get(i + 1..) {
            Some([b'\n', ..]) => return Some(i + 2),
            Some([b'\r', b'\n', ..]) => return Some(i + 3),
            _ => at = i + 1,
        }
    }
    None
}

/// The status code and escaped reason phrase of a head's status line (`HTTP/1.x CODE REASON`).
pub(crate) fn status(head: &[u8]) -> Result<(u16, String), Failure> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line.strip_prefix(b"HTTP/1.").ok_or(Failure::Malformed("does not start with HTTP/1."))?;
    let no_code = || Failure::Malformed("has no three-digit status code");
    let (version, rest) = rest.split_at_checked(1).ok_or_else(no_code)?;
    let rest =
        rest.strip_prefix(b" ").filter(|_| version.iter().all(u8::is_ascii_digit)).ok_or_else(no_code)?;
    let (digits, tail) = rest.split_at_checked(3).ok_or_else(no_code)?;
    let code = std::str::from_utf8(digits).ok().and_then(|d| d.parse::<u16>().ok());
    let reason = tail.strip_prefix(b" ").or(tail.is_empty().then_some(tail));
    let (Some(code @ 100..=999), Some(reason)) = (code, reason) else { return Err(no_code()) };
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(no_code());
    }
    let mut shown = Vec::new();
    escape_into(&mut shown, reason);
    let shown = String::from_utf8_lossy(&shown);
    Ok((code, shown.chars().take(MAX_REASON_CHARS).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn code(head: &[u8]) -> Result<(u16, String), String> {
        status(head).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            code(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Ok((200, "Connection established".into()))
        );
        assert_eq!(code(b"HTTP/1.0 200\r\n\r\n"), Ok((200, String::new())));
        assert_eq!(code(b"HTTP/1.1 403 Forbidden\n\n"), Ok((403, "Forbidden".into())));
        assert_eq!(code(b"HTTP/1.1 407 \x1b[31mred\r\n\r\n"), Ok((407, "\\x1b[31mred".into())), "escaped");
        for bad in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n",
            b"HTTP/1.1 2000 OK\r\n",
            b"HTTP/1.1 abc\r\n",
            b"",
            b"\r\n",
        ] {
            assert!(code(bad).is_err(), "{bad:?}");
        }
        assert!(code(b"HTTP/1.1 099 Low\r\n\r\n").is_err());
        assert!(code(b"HTTP/1.1 +20 Plus\r\n\r\n").is_err());
        let long = format!("HTTP/1.1 502 {}\r\n\r\n", "x".repeat(1000));
        assert_eq!(code(long.as_bytes()).map(|(_, r)| r.len()), Ok(MAX_REASON_CHARS));
    }

    #[test]
    fn the_head_ends_at_its_blank_line() {
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n\r\nbody", 0), Some(19));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\n\nbody", 0), Some(17));
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\nA: b\r\n", 0), None);
        assert_eq!(head_end(b"\r\n\r\n", 0), Some(4));
    }

    proptest! {
        #[test]
        fn any_answer_parses_or_fails_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = status(&bytes);
            if let Some(end) = head_end(&bytes, 0) {
                prop_assert!(end <= bytes.len());
                prop_assert!(bytes[..end].ends_with(b"\n\n") || bytes[..end].ends_with(b"\n\r\n"));
            }
        }

        #[test]
        fn the_end_is_found_from_any_resume_point(
            head in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'\r'), Just(b'\n')], 0..40),
            split in 0usize..40,
        ) {
            // read_head had `split` bytes without an end, and searches again from 2 before them.
            let split = split.min(head.len());
            prop_assume!(head_end(&head[..split], 0).is_none());
            prop_assert_eq!(head_end(&head, split.saturating_sub(2)), head_end(&head, 0));
        }
    }

    /// A proxy that answers in pieces, the blank line split, with the target's first bytes
    /// in the same write: the tunnel opens and those bytes are still there to read.
    #[tokio::test]
    async fn bytes_after_the_head_stay_in_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        let proxy = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut request = vec![0; 1024];
            let n = conn.read(&mut request).await.expect("request");
            for piece in
                [&b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r"[..], b"\nhello from the target\n"]
            {
                conn.write_all(piece).await.expect("answer");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            request.truncate(n);
            String::from_utf8(request).expect("ASCII request")
        });
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let creds = Credentials { user: "u".into(), password: "p".into() };
        connect(&mut stream, "[::1]:443", Some(&creds)).await.expect("tunnel");
        let mut rest = String::new();
        stream.read_to_string(&mut rest).await.expect("the early bytes");
        assert_eq!(rest, "hello from the target\n");
        let request = proxy.await.expect("proxy");
        assert!(request.starts_with("CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n"), "{request}");
        assert!(request.contains("Proxy-Authorization: Basic dTpw\r\n"), "{request}");
    }

    #[tokio::test]
    async fn an_endless_head_is_cut_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.expect("accept");
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let header = format!("X-Pad: {}\r\n", "a".repeat(1000));
            for _ in 0..64 {
                if conn.write_all(header.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let err = connect(&mut stream, "example.org:80", None).await.expect_err("too long");
        assert!(matches!(err, Failure::TooLong), "{err:?}");
    }
}
