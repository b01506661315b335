//! Record formats: how one read (or one event) becomes bytes for the sink.
//!
//! Formatting runs in the connection task, so both cores share the work, and each read becomes
//! one buffer of whole records: the single writer never has to split or merge anything.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::escape::escape_into;
use crate::framing::{Line, Piece};

/// How received data is written to the sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// One line per line received, prefixed with the peer, escaped.
    #[default]
    Lines,
    /// Each read as `<N:bytes>`, the textbook's improved server, prefixed with the peer, escaped.
    Chunks,
    /// Each read as an `xxd`-style hex dump, prefixed with the peer.
    Hex,
    /// One JSON object per line of data and per connection event.
    Json,
    /// The bytes as received, no prefix, no escaping (whole lines are kept together).
    Raw,
}

/// What the records of a format carry besides the data.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    /// The record format.
    pub format: Format,
    /// Put an RFC 3339 time in front of every text record (JSON records always have one).
    pub timestamps: bool,
}

/// Where a record comes from: a TCP connection (with its number) or a UDP sender.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    /// Connection number, counted from 1; `None` for datagrams.
    pub conn: Option<u64>,
    /// Who sent it.
    pub peer: Peer,
}

/// Who is at the other end of a connection: an address, or a local process (Unix socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A TCP or UDP peer.
    Ip(SocketAddr),
    /// A Unix-socket client, by its credentials (SO_PEERCRED); `None` when the kernel had none.
    Local {
        /// The client's process id.
        pid: Option<u32>,
        /// The client's user id.
        uid: Option<u32>,
    },
}

impl Peer {
    /// The address, for a network peer (access rules and per-address limits key on it).
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            Peer::Ip(addr) => Some(addr.ip()),
            Peer::Local { .. } => None,
        }
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Self {
        Peer::Ip(addr)
    }
}

/// `127.0.0.1:39054`, `[::1]:39054`, or `unix:pid=4321:uid=1000` for a local client.
impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Ip(addr) => addr.fmt(f),
            Peer::Local { pid, uid } => {
                f.write_str("unix")?;
                if let Some(pid) = pid {
                    write!(f, ":pid={pid}")?;
                }
                if let Some(uid) = uid {
                    write!(f, ":uid={uid}")?;
                }
                Ok(())
            }
        }
    }
}

/// Appends `peer` as `Display` writes it; IPv4 without `core::fmt`, which was 2-3% of an echo
/// server's CPU (one label per round trip).
fn write_peer(out: &mut Vec<u8>, peer: Peer) {
    match peer {
        Peer::Ip(SocketAddr::V4(v4)) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_decimal(out, u32::from(octet));
            }
            out.push(b':');
            push_decimal(out, u32::from(v4.port()));
        }
        Peer::Ip(SocketAddr::V6(_)) | Peer::Local { .. } => {
            let _ = write!(out, "{peer}");
        }
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Renders the records of one read into a buffer, with the prefix built once per read.
pub struct Records<'a> {
    out: &'a mut Vec<u8>,
    /// Length of the prefix written at the start of `out`, copied in front of every record.
    head_len: usize,
    count: usize,
    format: Format,
}

impl<'a> Records<'a> {
    /// Starts the records of one read from `origin` into `out` (which must be empty).
    pub fn new(style: Style, origin: Origin, out: &'a mut Vec<u8>) -> Self {
        debug_assert!(out.is_empty());
        match style.format {
            Format::Raw => {}
            Format::Json => json_head(out, origin, "data"),
            _ => {
                if style.timestamps {
                    let _ = write!(out, "{} ", humantime::format_rfc3339_micros(SystemTime::now()));
                }
                write_peer(out, origin.peer);
                out.push(b' ');
            }
        }
        let head_len = out.len();
        Self { out, head_len, count: 0, format: style.format }
    }

    /// Ends the batch; the buffer holds only whole records (empty when there were none).
    pub fn finish(self) {
        if self.count == 0 {
            self.out.clear();
        }
    }

    fn start_record(&mut self) {
        if self.count > 0 {
            self.out.extend_from_within(..self.head_len);
        }
        self.count += 1;
    }

    /// One line (or a piece of a long one) in the `lines` or `json` format.
    pub fn line(&mut self, line: Line<'_>) {
        self.start_record();
        let Line { bytes, piece, plain } = line;
        if self.format == Format::Json {
            json_text_fields(self.out, bytes, plain);
            if piece == Piece::Continued {
                self.out.extend_from_slice(b",\"continued\":true");
            }
            self.out.extend_from_slice(b"}\n");
            return;
        }
        if plain {
            self.out.extend_from_slice(bytes);
        } else {
            escape_into(self.out, bytes);
        }
        if piece == Piece::Continued {
            // Unambiguous because a literal backslash is always escaped as `\\`.
            self.out.push(b'\\');
        }
        self.out.push(b'\n');
    }

    /// One read in the `chunks` format: `<N:text>`.
    pub fn chunk(&mut self, data: &[u8]) {
        self.start_record();
        let _ = write!(self.out, "<{}:", data.len());
        escape_into(self.out, data);
        self.out.extend_from_slice(b">\n");
    }

    /// One read in the `hex` format, rows of 16 bytes; `offset` counts from the connection's start.
    pub fn hex(&mut self, data: &[u8], offset: u64) {
        for (row, bytes) in data.chunks(16).enumerate() {
            self.start_record();
            hex_row(self.out, offset + 16 * row as u64, bytes);
        }
    }

    /// Bytes written verbatim (`raw` format).
    pub fn raw(&mut self, data: &[u8]) {
        self.count += 1;
        self.out.extend_from_slice(data);
    }
}

/// Appends one `xxd`-style row: offset, hex pairs in groups of two, printable column.
fn hex_row(out: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let _ = write!(out, "{offset:08x}: ");
    for i in 0..16 {
        match bytes.get(i) {
            Some(&b) => out.extend_from_slice(&[HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]),
            None => out.extend_from_slice(b"  "),
        }
        if i % 2 == 1 {
            out.push(b' ');
        }
    }
    out.push(b' ');
    out.extend(bytes.iter().map(|&b| if (0x20..0x7f).contains(&b) { b } else { b'.' }));
    out.push(b'\n');
}

/// Appends `{"time":...,"conn":N,"peer":"...","event":"EVENT"` (the object is left open).
fn json_head(out: &mut Vec<u8>, origin: Origin, event: &str) {
    let _ = write!(out, "{{\"time\":\"{}\"", humantime::format_rfc3339_micros(SystemTime::now()));
    if let Some(conn) = origin.conn {
        let _ = write!(out, ",\"conn\":{conn}");
    }
    let _ = write!(out, ",\"peer\":\"{}\",\"event\":\"{event}\"", origin.peer);
}

/// Appends `,"text":"..."`, plus `,"base64":"..."` with the exact bytes when they are not UTF-8.
fn json_text_fields(out: &mut Vec<u8>, line: &[u8], plain: bool) {
    out.extend_from_slice(b",\"text\":");
    if plain || is_printable_ascii(line) {
        out.push(b'"');
        for &b in line {
            if b == b'\\' || b == b'"' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
        return;
    }
    let text = String::from_utf8_lossy(line);
    let _ = serde_json::to_writer(&mut *out, &text);
    if std::str::from_utf8(line).is_err() {
        let _ = write!(out, ",\"base64\":\"{}\"", BASE64.encode(line));
    }
}

/// True when every byte is printable ASCII, the common case that needs no UTF-8 checks.
fn is_printable_ascii(line: &[u8]) -> bool {
    line.iter().all(|&b| (0x20..0x7f).contains(&b))
}

/// A connection event, rendered as a JSON record (text formats log events to stderr instead).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Event<'a> {
    /// A client connected.
    Connect,
    /// A TLS client finished its handshake; `subject` names its certificate (mutual TLS).
    Tls {
        /// The subject of the client's certificate, empty without one.
        subject: &'a str,
    },
    /// A client was turned away at a cap.
    Refused {
        /// Which cap.
        reason: &'a str,
    },
    /// Bytes sent to the client by an `--exec` command, as read from its output.
    Sent {
        /// The bytes.
        data: &'a [u8],
    },
    /// A client left: why, and what it sent.
    Disconnect {
        /// Why the connection ended, in words (`closed by client`, `reset by client`...).
        reason: &'a str,
        /// Bytes received from the client.
        bytes: u64,
        /// Lines received from the client.
        lines: u64,
    },
}

/// Appends one event record in the JSON format.
pub(crate) fn json_event(out: &mut Vec<u8>, origin: Origin, event: Event<'_>) {
    match event {
        Event::Connect => json_head(out, origin, "connect"),
        Event::Tls { subject } => {
            json_head(out, origin, "tls");
            out.extend_from_slice(b",\"subject\":");
            let _ = serde_json::to_writer(&mut *out, subject);
        }
        Event::Refused { reason } => {
            json_head(out, origin, "refused");
            out.extend_from_slice(b",\"reason\":");
            let _ = serde_json::to_writer(&mut *out, reason);
        }
        Event::Sent { data } => {
            json_head(out, origin, "sent");
            json_text_fields(out, data, false);
        }
        Event::Disconnect { reason, bytes, lines } => {
            json_head(out, origin, "disconnect");
            out.extend_from_slice(b",\"reason\":");
            let _ = serde_json::to_writer(&mut *out, reason);
            let _ = write!(out, ",\"bytes\":{bytes},\"lines\":{lines}");
        }
    }
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(bytes: &[u8], piece: Piece) -> Line<'_> {
        Line { bytes, piece, plain: false }
    }

    fn origin() -> Origin {
        Origin { conn: Some(7), peer: Peer::Ip("127.0.0.1:49346".parse().expect("valid address")) }
    }

    fn render(format: Format, f: impl FnOnce(&mut Records<'_>)) -> String {
        let mut out = Vec::new();
        let mut records = Records::new(Style { format, timestamps: false }, origin(), &mut out);
        f(&mut records);
        records.finish();
        String::from_utf8(out).expect("records are UTF-8")
    }

    #[test]
    fn lines_are_prefixed_escaped_and_marked() {
        let got = render(Format::Lines, |r| {
            r.line(line(b"IVO says: Hi Server, what's up?", Piece::End));
            r.line(line(b"\x1b[31mred", Piece::Continued));
            r.line(line(b"\xff", Piece::End));
        });
        assert_eq!(
            got,
            "127.0.0.1:49346 IVO says: Hi Server, what's up?\n\
             127.0.0.1:49346 \\x1b[31mred\\\n\
             127.0.0.1:49346 \\xff\n"
        );
    }

    #[test]
    fn chunks_match_the_textbook() {
        let got = render(Format::Chunks, |r| {
            r.chunk(b"Ivo says: Hi server, do y");
            r.chunk(b"ou hear me ?");
        });
        assert_eq!(
            got,
            "127.0.0.1:49346 <25:Ivo says: Hi server, do y>\n127.0.0.1:49346 <12:ou hear me ?>\n"
        );
    }

    #[test]
    fn hex_rows_look_like_xxd() {
        let got = render(Format::Hex, |r| r.hex(b"Ivo says: Hi server\n", 16));
        assert_eq!(
            got,
            "127.0.0.1:49346 00000010: 4976 6f20 7361 7973 3a20 4869 2073 6572  Ivo says: Hi ser\n\
             127.0.0.1:49346 00000020: 7665 720a                                ver.\n"
        );
    }

    #[test]
    fn json_records_parse_and_keep_exact_bytes() {
        let got = render(Format::Json, |r| {
            r.line(line(b"plain \"quoted\" back\\slash", Piece::End));
            r.line(line(b"\x1b\xffbin", Piece::Continued));
        });
        let records: Vec<serde_json::Value> =
            got.lines().map(|l| serde_json::from_str(l).expect("each record is JSON")).collect();
        assert_eq!(records[0]["text"], "plain \"quoted\" back\\slash");
        assert_eq!(records[0]["conn"], 7);
        assert_eq!(records[0]["peer"], "127.0.0.1:49346");
        assert_eq!(records[0]["event"], "data");
        assert_eq!(records[1]["continued"], true);
        let exact =
            BASE64.decode(records[1]["base64"].as_str().expect("base64 field")).expect("valid base64");
        assert_eq!(exact, b"\x1b\xffbin");
    }

    #[test]
    fn empty_batches_stay_empty() {
        assert_eq!(render(Format::Lines, |_| {}), "");
        assert_eq!(render(Format::Json, |_| {}), "");
    }

    #[test]
    fn timestamps_come_first() {
        let mut out = Vec::new();
        let mut r = Records::new(Style { format: Format::Lines, timestamps: true }, origin(), &mut out);
        r.line(line(b"hi", Piece::End));
        r.finish();
        let text = String::from_utf8(out).expect("UTF-8");
        let (time, rest) = text.split_once(' ').expect("a space after the time");
        assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
        assert_eq!(rest, "127.0.0.1:49346 hi\n");
    }
}

#[cfg(test)]
mod peer_tests {
    use super::*;

    #[test]
    fn peers_are_written_as_display_writes_them() {
        for text in ["127.0.0.1:49346", "0.0.0.0:0", "255.255.255.255:65535", "10.0.0.9:8", "[::1]:50000"] {
            let peer = Peer::Ip(text.parse().expect("valid"));
            let mut out = Vec::new();
            write_peer(&mut out, peer);
            assert_eq!(out, text.as_bytes());
        }
        let local = Peer::Local { pid: Some(4321), uid: Some(1000) };
        assert_eq!(local.to_string(), "unix:pid=4321:uid=1000");
    }
}
