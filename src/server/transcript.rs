//! What every connection records, whatever the mode: what it sends, as records for the sink;
//! its counters; and, when it ends, its report (the unfinished line, the disconnect event,
//! the server's counters and the log line).

use std::io;

use tokio::sync::mpsc::error::TrySendError;
use tracing::info;

use super::Shared;
use super::stats::plural;
use super::timer::Expired;
use crate::framing::{Framer, Piece};
use crate::output::{Event, Format, Origin, RecordSender, Records, json_event};

/// Why a connection ended.
#[derive(Debug)]
pub enum End {
    /// The client closed its side and everything it sent was read.
    ClosedByClient,
    /// The client reset the connection.
    Reset,
    /// A read or write failed for another reason.
    Failed(io::Error),
    /// The server is shutting down and the grace period is over.
    Shutdown,
    /// The sink stopped, so there is nowhere to put what would be read.
    OutputClosed,
    /// A timeout configured for connections passed.
    TimedOut(Expired),
    /// The client left a relay room (`/quit` or the end of its input).
    Quit,
    /// A relay client could not keep up with the room and was disconnected.
    TooSlow,
    /// The TLS session failed (a bad handshake, a certificate refused, a corrupt record).
    Tls(String),
    /// A plaintext client on a TLS port; it was told so in plaintext.
    NotTls,
    /// A TLS client on a plaintext port: its hello is not recorded as data.
    TlsOnPlaintext,
    /// `--exec`: the command could not be run.
    Command(String),
    /// `--exec`: the command's output ended and was sent; its exit status, when it exited.
    CommandDone(Option<String>),
    /// `--send-only` in print mode: the greeting is out, there is nothing more to send.
    Sent,
    /// Disconnected from the web console.
    Kicked,
}

impl End {
    /// The end that a failed read or write means.
    pub fn from_io(err: io::Error) -> End {
        match err.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => End::Reset,
            _ => End::Failed(err),
        }
    }

    /// The reason, in words, for the event log.
    pub fn describe(&self) -> String {
        match self {
            End::ClosedByClient => "closed by client".into(),
            End::Reset => "reset by client".into(),
            End::Failed(err) => format!("read error: {}", crate::error::reason(err)),
            End::Shutdown => "closed by server at shutdown".into(),
            End::OutputClosed => "closed because the output stopped".into(),
            End::TimedOut(expired) => format!("closed by server: {}", expired.describe()),
            End::Quit => "quit".into(),
            End::TooSlow => "disconnected: too slow to keep up with the room".into(),
            End::Tls(why) => format!("TLS failed: {why}"),
            End::NotTls => "not TLS: it sent plaintext to a TLS port (and was told so)".into(),
            End::Command(why) => format!("closed: {why}"),
            End::CommandDone(Some(status)) => format!("the command exited ({status})"),
            End::CommandDone(None) => "the command closed its output".into(),
            End::Sent => "closed by server: greeting sent (--send-only)".into(),
            End::Kicked => "disconnected from the web console".into(),
            End::TlsOnPlaintext => {
                "closed: a TLS client on a plaintext port (serve with --tls-cert/--tls-key or --tls-self-signed)".into()
            }
        }
    }
}

/// Room added to a record buffer beyond the read's own growth: one IPv4 prefix and then some.
const SMALL_READ_SLACK: usize = 64;

/// A connection's record of what it sent.
#[derive(Debug, Default)]
pub struct Transcript {
    framer: Framer,
    received: u64,
    lines: u64,
}

impl Transcript {
    /// True until the client has sent something.
    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// Turns one read into records; the buffer is empty when the read completed none.
    pub fn record(&mut self, shared: &Shared, origin: Origin, data: &[u8]) -> Vec<u8> {
        let config = &shared.config;
        // Room for the data plus a typical prefix per line (a larger expansion grows it once),
        // kept small for a short read: in a connection storm hundreds of these wait in the
        // sink's queue at once, and the allocator keeps their pages for a while.
        let mut out = Vec::with_capacity(data.len() + data.len() / 2 + SMALL_READ_SLACK);
        let mut records = Records::new(config.style, origin, &mut out);
        let mut lines = 0;
        match config.style.format {
            Format::Lines | Format::Json => self.framer.lines(data, config.max_line, |line| {
                lines += u64::from(line.piece == Piece::End);
                records.line(line);
            }),
            format => {
                lines = memchr::memchr_iter(b'\n', data).count() as u64;
                match format {
                    Format::Raw => self.framer.raw(data, config.max_line, |bytes| records.raw(bytes)),
                    Format::Hex => records.hex(data, self.received),
                    _ => records.chunk(data),
                }
            }
        }
        records.finish();
        self.received += data.len() as u64;
        self.lines += lines;
        out
    }

    /// Lines received so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Emits the unterminated last line and the closing event, counts the connection, and logs
    /// why it ended.
    pub fn close(&mut self, shared: &Shared, origin: Origin, end: &End) {
        let config = &shared.config;
        let mut out = Vec::new();
        let mut records = Records::new(config.style, origin, &mut out);
        let mut tail_lines = 0;
        match config.style.format {
            Format::Lines | Format::Json => self.framer.finish_lines(config.max_line, |line| {
                tail_lines += u64::from(line.piece == Piece::End);
                records.line(line);
            }),
            Format::Raw => self.framer.finish_raw(|bytes| records.raw(bytes)),
            Format::Chunks | Format::Hex => {}
        }
        records.finish();
        self.lines += tail_lines;
        let reason = end.describe();
        if config.style.format == Format::Json {
            let event = Event::Disconnect { reason: &reason, bytes: self.received, lines: self.lines };
            json_event(&mut out, origin, event);
        }
        if !out.is_empty() && !matches!(end, End::OutputClosed) {
            send_detached(&shared.records, out);
        }
        shared.stats.add_connection(self.received, self.lines);
        if let End::TimedOut(expired) = end {
            shared.stats.add_timeout(*expired);
        }
        let peer = origin.peer;
        let id = origin.conn.unwrap_or(0);
        let (bytes, lines) = (plural(self.received, "byte"), plural(self.lines, "line"));
        info!("#{id} {peer} left: {reason}; sent {bytes} in {lines}");
    }
}

/// Queues a connection's last records. When the queue is full they are handed to a small task
/// of their own: every earlier record of the connection is already queued, so order is kept,
/// and the sink finishes only after that task has delivered them.
fn send_detached(records: &RecordSender, out: Vec<u8>) {
    if let Err(TrySendError::Full(out)) = records.try_send(out) {
        let records = records.clone();
        tokio::spawn(async move {
            let _ = records.send(out).await;
        });
    }
}
