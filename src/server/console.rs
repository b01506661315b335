//! What the web console sees of a running server, and what it may do to it: every live
//! connection with its counters, the server's metrics, a line to one client or to all, and a
//! disconnect. A view only: connections update their own counters (no shared cache line on
//! the read path) and take what the console left them at their next poll; the console never
//! waits on a connection.
//!
//! Present only with `--web`: without it a connection holds none of this.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use super::Shared;
use crate::config::Mode;
use crate::output::Peer;

/// The console's handle on a server: made before the server starts, attached when it does.
#[derive(Clone, Debug, Default)]
pub struct Console {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The server, once it runs; weak, so the console never keeps it (and its output) alive.
    shared: OnceLock<Weak<Shared>>,
    live: Mutex<HashMap<u64, Arc<LiveConn>>>,
}

/// One connection as the console sees it; updated by the connection itself.
#[derive(Debug)]
pub(super) struct LiveConn {
    id: u64,
    peer: Peer,
    slot: u32,
    opened: Instant,
    opened_at: SystemTime,
    /// Milliseconds from `opened` to the last byte received.
    last_read_ms: AtomicU64,
    pub(super) bytes_in: AtomicU64,
    pub(super) lines_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    pub(super) lines_out: AtomicU64,
    nick: Mutex<Option<String>>,
    /// Set when `mail` holds something: the connection looks at one flag per poll.
    has_mail: AtomicBool,
    mail: Mutex<Mail>,
}

/// What the console left for a connection.
#[derive(Debug, Default)]
pub(super) struct Mail {
    /// Bytes to send to the client.
    pub text: Vec<u8>,
    /// Disconnect it.
    pub kick: bool,
}

/// Most bytes the console may leave waiting for one connection; more is refused, so a console
/// user cannot make a stalled client hold unbounded memory.
const MAIL_LIMIT: usize = 64 * 1024;

/// Why a line from the console was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotSent {
    /// No live connection has that number.
    NoSuchConnection,
    /// The connection has too much console text waiting already.
    Busy,
    /// The server sends nothing to its clients (`--recv-only`, print mode `--send-only`), or
    /// has not started.
    NotServing,
}

/// A live connection, as `/api/connections` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionView {
    /// Connection number.
    pub id: u64,
    /// Address, or Unix credentials.
    pub peer: String,
    /// Chat nickname, once chosen.
    pub nick: Option<String>,
    /// When it connected.
    pub opened_at: SystemTime,
    /// How long it has been open.
    pub age: Duration,
    /// How long since it last sent anything (since it connected, if it never did).
    pub idle: Duration,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Bytes sent to it.
    pub bytes_out: u64,
}

/// Server-wide numbers for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// The mode served.
    pub mode: &'static str,
    /// Connections open now.
    pub open: u64,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Clients turned away, by reason (`cap`, `per_ip`, `descriptors`, `acl`, `rate`).
    pub refused: Vec<(&'static str, u64)>,
    /// Connections closed by a timeout, by kind (`first_byte`, `idle`, `max_duration`).
    pub timed_out: Vec<(&'static str, u64)>,
    /// Transient accept errors, by kind.
    pub accept_errors: Vec<(&'static str, u64)>,
    /// Bytes and lines received, and bytes and lines sent, since start.
    pub bytes_in: u64,
    /// Lines received since start.
    pub lines_in: u64,
    /// Bytes sent to clients since start.
    pub bytes_out: u64,
    /// Lines sent to clients since start.
    pub lines_out: u64,
    /// Bytes waiting for the output writer.
    pub output_queue_bytes: u64,
    /// Bytes waiting in relay clients' queues.
    pub relay_queue_bytes: u64,
    /// Relay messages dropped for slow clients (`--slow-client drop`).
    pub slow_dropped: u64,
    /// Relay clients disconnected for being slow.
    pub slow_disconnected: u64,
}

impl Console {
    /// A console not yet attached to a server.
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn attach(&self, shared: &Arc<Shared>) {
        let _ = self.inner.shared.set(Arc::downgrade(shared));
    }

    fn shared(&self) -> Option<Arc<Shared>> {
        self.inner.shared.get().and_then(Weak::upgrade)
    }

    fn live(&self) -> MutexGuard<'_, HashMap<u64, Arc<LiveConn>>> {
        self.inner.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn open(&self, id: u64, peer: Peer, slot: u32) -> Arc<LiveConn> {
        let conn = Arc::new(LiveConn {
            id,
            peer,
            slot,
            opened: Instant::now(),
            opened_at: SystemTime::now(),
            last_read_ms: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            lines_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            lines_out: AtomicU64::new(0),
            nick: Mutex::new(None),
            has_mail: AtomicBool::new(false),
            mail: Mutex::new(Mail::default()),
        });
        self.live().insert(id, Arc::clone(&conn));
        conn
    }

    /// Forgets a closed connection, keeping its totals (added first, so they never dip).
    pub(super) fn close(&self, conn: &LiveConn) {
        if let Some(shared) = self.shared() {
            shared
                .stats
                .add_sent(conn.bytes_out.load(Ordering::Relaxed), conn.lines_out.load(Ordering::Relaxed));
        }
        self.live().remove(&conn.id);
    }

    /// Notes connection `id`'s chat nickname.
    pub(super) fn set_nick(&self, id: u64, nick: &str) {
        if let Some(conn) = self.live().get(&id) {
            *conn.nick.lock().unwrap_or_else(PoisonError::into_inner) = Some(nick.to_string());
        }
    }

    /// Every live connection, newest first.
    pub fn connections(&self) -> Vec<ConnectionView> {
        let now = Instant::now();
        // The table's lock is held only to copy pointers: accepts and closes wait on it.
        let live: Vec<Arc<LiveConn>> = self.live().values().cloned().collect();
        let mut views: Vec<ConnectionView> = live.iter().map(|conn| conn.view(now)).collect();
        views.sort_by_key(|view| std::cmp::Reverse(view.id));
        views
    }

    /// True when the records are raw bytes, which the console must escape itself.
    pub fn records_are_raw(&self) -> bool {
        self.shared().is_some_and(|shared| shared.config.style.format == crate::output::Format::Raw)
    }

    /// The server's numbers now (all zero before it starts).
    pub fn metrics(&self) -> Metrics {
        let Some(shared) = self.shared() else { return Metrics::default() };
        let live: Vec<Arc<LiveConn>> = self.live().values().cloned().collect();
        let sum = |field: fn(&LiveConn) -> &AtomicU64| -> u64 {
            live.iter().map(|conn| field(conn).load(Ordering::Relaxed)).sum()
        };
        let totals = shared.stats.summary(0);
        let (slow_dropped, slow_disconnected) = shared.room.slow_counts();
        let mut refused = shared.stats.refusals();
        let timed_out = shared.stats.timeouts();
        // A client that connects and never speaks is turned away by the first-byte timeout.
        refused
            .extend(timed_out.iter().filter(|(kind, _)| *kind == "first_byte").map(|&(_, n)| ("timeout", n)));
        Metrics {
            mode: mode_name(shared.config.mode),
            open: shared.registry.len() as u64,
            accepted: shared.next_id.load(Ordering::Relaxed).saturating_sub(1),
            refused,
            timed_out,
            accept_errors: shared.stats.accept_errors(),
            bytes_in: totals.bytes + sum(|c| &c.bytes_in),
            lines_in: totals.lines + sum(|c| &c.lines_in),
            bytes_out: shared.stats.sent().0 + sum(|c| &c.bytes_out),
            lines_out: shared.stats.sent().1 + sum(|c| &c.lines_out),
            output_queue_bytes: shared.records.queued_bytes() as u64,
            relay_queue_bytes: shared.room.queued_bytes() as u64,
            slow_dropped,
            slow_disconnected,
        }
    }

    /// Sends `text` and a newline to connection `to`, or to every connection; returns how many
    /// took it (a connection with too much console text already waiting does not).
    pub fn send(&self, to: Option<u64>, text: &str) -> Result<usize, NotSent> {
        let Some(shared) = self.shared() else { return Err(NotSent::NotServing) };
        if shared.config.recv_only || shared.config.send_only && shared.config.mode == Mode::Print {
            return Err(NotSent::NotServing);
        }
        let targets: Vec<Arc<LiveConn>> = match to {
            Some(id) => vec![self.live().get(&id).cloned().ok_or(NotSent::NoSuchConnection)?],
            None => self.live().values().cloned().collect(),
        };
        let mut sent = 0;
        for conn in targets {
            if conn.leave(|mail| {
                if mail.text.len() + text.len() + 1 > MAIL_LIMIT {
                    return false;
                }
                mail.text.extend_from_slice(text.as_bytes());
                mail.text.push(b'\n');
                true
            }) {
                shared.registry.wake(conn.slot);
                sent += 1;
            }
        }
        match (to, sent) {
            (Some(_), 0) => Err(NotSent::Busy),
            _ => Ok(sent),
        }
    }

    /// Disconnects connection `id`; false when there is no such connection.
    pub fn disconnect(&self, id: u64) -> bool {
        let Some(shared) = self.shared() else { return false };
        let Some(conn) = self.live().get(&id).cloned() else { return false };
        conn.leave(|mail| {
            mail.kick = true;
            true
        });
        shared.registry.wake(conn.slot);
        true
    }
}

impl LiveConn {
    fn view(&self, now: Instant) -> ConnectionView {
        let age = now.saturating_duration_since(self.opened);
        let last_read = Duration::from_millis(self.last_read_ms.load(Ordering::Relaxed));
        ConnectionView {
            id: self.id,
            peer: self.peer.to_string(),
            nick: self.nick.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            opened_at: self.opened_at,
            age,
            idle: age.saturating_sub(last_read),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }

    /// Counts a read of `bytes` holding `lines` lines.
    pub(super) fn received(&self, bytes: usize, lines: u64) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.lines_in.fetch_add(lines, Ordering::Relaxed);
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_read_ms.store(ms, Ordering::Relaxed);
    }

    fn leave(&self, write: impl FnOnce(&mut Mail) -> bool) -> bool {
        let mut mail = self.mail.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = write(&mut mail);
        if taken {
            self.has_mail.store(true, Ordering::Release);
        }
        taken
    }

    /// True while the console has left something (one atomic load).
    pub(super) fn has_mail(&self) -> bool {
        self.has_mail.load(Ordering::Acquire)
    }

    /// What the console left: a kick at once; text only when `room` (the client has taken
    /// what it was owed), so console text waits here, within [`MAIL_LIMIT`], not in the
    /// connection's unbounded answer.
    pub(super) fn take_mail(&self, room: bool) -> Option<Mail> {
        if !self.has_mail() {
            return None;
        }
        let mut mail = self.mail.lock().unwrap_or_else(PoisonError::into_inner);
        if !mail.kick && (!room || mail.text.is_empty()) {
            self.has_mail.store(!mail.text.is_empty(), Ordering::Release);
            return None;
        }
        self.has_mail.store(false, Ordering::Release);
        Some(std::mem::take(&mut *mail))
    }
}

/// The mode's name, as `--mode` spells it.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Print => "print",
        Mode::Echo => "echo",
        Mode::Chat => "chat",
        Mode::Broker => "broker",
        Mode::Exec => "exec",
    }
}
