//! Server-wide counters and the summary printed at exit.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::registry::Refusal;
use super::timer::Expired;

/// Counters shared by every connection; each connection adds its totals once, when it ends.
#[derive(Debug, Default)]
pub struct Stats {
    connections: AtomicU64,
    refused: AtomicU64,
    denied: AtomicU64,
    datagrams: AtomicU64,
    bytes: AtomicU64,
    lines: AtomicU64,
    /// Bytes and lines sent to connections that have closed (counted only with the console).
    sent: AtomicU64,
    sent_lines: AtomicU64,
    /// Clients turned away, by [`REFUSALS`].
    refusals: [AtomicU64; REFUSALS.len()],
    /// Connections closed by a timeout, by [`TIMEOUTS`].
    timeouts: [AtomicU64; TIMEOUTS.len()],
    /// Transient accept errors, by [`ACCEPT_ERRORS`].
    accept_errors: [AtomicU64; ACCEPT_ERRORS.len()],
}

/// Reasons a client is turned away, as metrics label them.
const REFUSALS: [&str; 6] = ["cap", "per_ip", "descriptors", "acl", "rate", "proxy"];
/// Timeouts, as metrics label them.
const TIMEOUTS: [&str; 3] = ["first_byte", "idle", "max_duration"];
/// Kinds of transient accept error, as metrics label them.
const ACCEPT_ERRORS: [&str; 4] = ["descriptors", "memory", "aborted", "other"];

impl Stats {
    /// Counts a finished connection and what it sent.
    pub fn add_connection(&self, bytes: u64, lines: u64) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.add_data(bytes, lines);
    }

    /// Counts a client turned away at a cap.
    pub fn add_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a client refused by the access rules.
    pub fn add_denied(&self) {
        self.denied.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one datagram and what it held.
    pub fn add_datagram(&self, bytes: u64, lines: u64) {
        self.datagrams.fetch_add(1, Ordering::Relaxed);
        self.add_data(bytes, lines);
    }

    fn add_data(&self, bytes: u64, lines: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.lines.fetch_add(lines, Ordering::Relaxed);
    }

    /// Counts a client turned away, in the summary and by why.
    pub fn add_refusal(&self, refusal: Refusal) {
        match refusal {
            Refusal::Denied => self.add_denied(),
            _ => self.add_refused(),
        }
        let index = match refusal {
            Refusal::Full => 0,
            Refusal::PerAddress => 1,
            Refusal::OutOfDescriptors => 2,
            Refusal::Denied => 3,
            Refusal::TooFast => 4,
            Refusal::NotProxied => 5,
        };
        self.refusals[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection closed by a timeout.
    pub fn add_timeout(&self, expired: Expired) {
        let index = match expired {
            Expired::FirstByte(_) => 0,
            Expired::Idle(_) => 1,
            Expired::Session(_) => 2,
        };
        self.timeouts[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a transient accept error.
    pub fn add_accept_error(&self, err: &std::io::Error) {
        let index = match err.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => 0,
            Some(libc::ENOMEM | libc::ENOBUFS) => 1,
            Some(libc::ECONNABORTED | libc::ECONNRESET | libc::EPROTO) => 2,
            _ => 3,
        };
        self.accept_errors[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts bytes and lines a closed connection was sent.
    pub fn add_sent(&self, bytes: u64, lines: u64) {
        self.sent.fetch_add(bytes, Ordering::Relaxed);
        self.sent_lines.fetch_add(lines, Ordering::Relaxed);
    }

    /// Bytes and lines sent to connections that have closed.
    pub fn sent(&self) -> (u64, u64) {
        (self.sent.load(Ordering::Relaxed), self.sent_lines.load(Ordering::Relaxed))
    }

    /// Clients turned away, by reason.
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        labelled(&REFUSALS, &self.refusals)
    }

    /// Connections closed by a timeout, by kind.
    pub fn timeouts(&self) -> Vec<(&'static str, u64)> {
        labelled(&TIMEOUTS, &self.timeouts)
    }

    /// Transient accept errors, by kind.
    pub fn accept_errors(&self) -> Vec<(&'static str, u64)> {
        labelled(&ACCEPT_ERRORS, &self.accept_errors)
    }

    /// The totals so far.
    pub fn summary(&self, cut_off: u64) -> Summary {
        Summary {
            connections: self.connections.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            datagrams: self.datagrams.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            lines: self.lines.load(Ordering::Relaxed),
            cut_off,
            dropped: 0,
            kicked: 0,
        }
    }
}

fn labelled(labels: &[&'static str], counts: &[AtomicU64]) -> Vec<(&'static str, u64)> {
    labels.iter().zip(counts).map(|(&label, count)| (label, count.load(Ordering::Relaxed))).collect()
}

/// What a server did in its life, printed as one line when it stops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// TCP connections served to the end.
    pub connections: u64,
    /// Clients turned away at a connection cap.
    pub refused: u64,
    /// Clients (or datagrams) refused by `--allow`/`--deny`.
    pub denied: u64,
    /// UDP datagrams received.
    pub datagrams: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Lines received.
    pub lines: u64,
    /// Connections still open when the grace period ended, closed by the server.
    pub cut_off: u64,
    /// Relay messages not delivered to clients too slow to take them (`--slow-client drop`).
    pub dropped: u64,
    /// Relay clients disconnected for being too slow (`--slow-client disconnect`).
    pub kicked: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.datagrams > 0 || self.connections == 0 && self.bytes > 0 {
            write!(f, "received {} in {}", plural(self.datagrams, "datagram"), plural(self.bytes, "byte"))?;
        } else {
            write!(
                f,
                "served {}; received {}",
                plural(self.connections, "connection"),
                plural(self.bytes, "byte")
            )?;
        }
        write!(f, " and {}", plural(self.lines, "line"))?;
        if self.cut_off > 0 {
            write!(f, "; {} still open at the end of the grace period", plural(self.cut_off, "connection"))?;
        }
        if self.refused > 0 {
            write!(f, "; {} turned away at a cap", plural(self.refused, "client"))?;
        }
        if self.denied > 0 {
            write!(f, "; {} refused by --allow/--deny", plural(self.denied, "client"))?;
        }
        if self.kicked > 0 {
            write!(f, "; {} disconnected for being too slow", plural(self.kicked, "client"))?;
        }
        if self.dropped > 0 {
            write!(f, "; {} not delivered to slow clients", plural(self.dropped, "message"))?;
        }
        Ok(())
    }
}

/// `1 line`, `2 lines`.
pub(crate) fn plural(count: u64, noun: &str) -> String {
    if count == 1 { format!("1 {noun}") } else { format!("{count} {noun}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_well() {
        let tcp = Summary { connections: 3, bytes: 96, lines: 3, ..Summary::default() };
        assert_eq!(tcp.to_string(), "served 3 connections; received 96 bytes and 3 lines");
        let cut = Summary { connections: 1, bytes: 1, lines: 1, cut_off: 1, ..Summary::default() };
        assert_eq!(
            cut.to_string(),
            "served 1 connection; received 1 byte and 1 line; 1 connection still open at the end of the grace period"
        );
        let udp = Summary { datagrams: 2, bytes: 10, lines: 2, ..Summary::default() };
        assert_eq!(udp.to_string(), "received 2 datagrams in 10 bytes and 2 lines");
    }
}
