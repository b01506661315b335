//! One connection's life: greeting, reads turned into records, and a close reason.
//!
//! The connection is a hand-written future rather than an `async fn` because tens of thousands
//! of them sit idle at once: the task holds the socket, the unfinished line and a few counters,
//! and nothing else (an `async fn` stored its argument twice and was 448 bytes; this is at
//! most 160, see the test). What few connections need (a wait for sink capacity, timeouts) is
//! boxed. Reads go into a per-worker buffer, taken only once the socket is readable and sink
//! capacity is reserved, so an idle connection holds no buffer and a slow sink stops reads
//! instead of piling up memory. Records are rendered here, on whichever
//! worker runs the task, so both cores share the formatting.
//!
//! Safe points: the server's phase and the deadlines are checked before every read, never in
//! the middle of turning a read into records, so a connection never stops halfway through a
//! line, and whatever it had read is flushed when it closes.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::net::TcpStream;
use tokio::sync::mpsc::error::{SendError, TrySendError};
use tracing::{debug, info};

use super::Shared;
use super::registry::Phase;
use super::timer::Deadlines;
use super::transcript::{End, Transcript};
use crate::config::READ_BUFFER_BYTES;
use crate::output::{Event, Format, Origin, OwnedReservation, Reservation, json_event};

thread_local! {
    /// Each worker thread reads into this one buffer; connections never own a read buffer.
    static READ_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUFFER_BYTES].into_boxed_slice());
}

/// A wait for room in the sink's queue; boxed because it is rare and the task must stay small.
type CapacityWait = Pin<Box<dyn Future<Output = Result<OwnedReservation, SendError<()>>> + Send>>;

/// One client connection in `print` mode.
pub(super) struct Connection {
    stream: TcpStream,
    shared: Arc<Shared>,
    transcript: Transcript,
    /// What most connections never need, boxed so the task stays small.
    extras: Option<Box<Extras>>,
    peer: SocketAddr,
    id: u64,
    /// This connection's entry in the registry (its waker, its place under the caps).
    slot: u32,
    /// Bytes of the greeting already written.
    greeted: u32,
    /// The shutdown notice was sent.
    noticed: bool,
}

/// The rarely needed parts of a connection.
#[derive(Default)]
struct Extras {
    /// Set while waiting for room in the sink's queue, with the socket known to be readable.
    capacity: Option<CapacityWait>,
    /// Present when timeouts are configured.
    deadlines: Option<Deadlines>,
}

impl Connection {
    /// A connection admitted into registry slot `slot`; nothing happens until it is polled.
    pub(super) fn new(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, id: u64, slot: u32) -> Self {
        info!("#{id} {peer} connected");
        let extras = Deadlines::start(&shared.config)
            .map(|deadlines| Box::new(Extras { capacity: None, deadlines: Some(deadlines) }));
        Connection {
            stream,
            shared,
            transcript: Transcript::default(),
            extras,
            peer,
            id,
            slot,
            greeted: 0,
            noticed: false,
        }
    }

    /// The record announcing the connection, for formats that record events.
    pub(super) fn connect_record(&self) -> Option<Vec<u8>> {
        (self.shared.config.style.format == Format::Json).then(|| {
            let mut out = Vec::new();
            json_event(&mut out, self.origin(), Event::Connect);
            out
        })
    }

    fn origin(&self) -> Origin {
        Origin { conn: Some(self.id), peer: self.peer }
    }

    /// Greets, then reads until the client leaves, a read fails, a deadline passes, or the
    /// server closes.
    fn poll_session(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        loop {
            let registry = &self.shared.registry;
            registry.register(self.slot, cx.waker());
            match registry.phase() {
                Phase::Closing => return Poll::Ready(End::Shutdown),
                Phase::Draining if !self.noticed => self.send_notice(),
                _ => {}
            }
            if let Some(deadlines) = self.extras.as_mut().and_then(|e| e.deadlines.as_mut()) {
                if let Poll::Ready(expired) = deadlines.poll_expired(cx, &self.shared.config) {
                    return Poll::Ready(End::TimedOut(expired));
                }
            }
            ready!(self.poll_greeting(cx));
            if let Err(err) = ready!(self.stream.poll_read_ready(cx)) {
                return Poll::Ready(End::Failed(err));
            }
            let owned = match self.extras.as_mut().and_then(|e| e.capacity.as_mut()) {
                Some(wait) => {
                    let permit = ready!(wait.as_mut().poll(cx));
                    // Free the box too unless it still holds deadlines: an idle connection that
                    // once had to wait keeps nothing of it.
                    match self.extras.as_mut() {
                        Some(extras) if extras.deadlines.is_some() => extras.capacity = None,
                        _ => self.extras = None,
                    }
                    match permit {
                        Ok(permit) => Some(permit),
                        Err(_) => return Poll::Ready(End::OutputClosed),
                    }
                }
                None => None,
            };
            let records = &self.shared.records;
            let permit = match owned {
                Some(owned) => Reserved::Owned(owned),
                None => match records.try_reserve() {
                    Ok(reservation) => Reserved::Borrowed(reservation),
                    Err(TrySendError::Full(())) => {
                        let wait: CapacityWait = Box::pin(records.clone().reserve_owned());
                        self.extras.get_or_insert_default().capacity = Some(wait);
                        continue;
                    }
                    Err(TrySendError::Closed(())) => return Poll::Ready(End::OutputClosed),
                },
            };
            let read_size = match self.shared.config.style.format {
                Format::Chunks | Format::Hex => self.shared.config.read_size,
                _ => READ_BUFFER_BYTES,
            };
            let origin = self.origin();
            let (stream, transcript, shared) = (&mut self.stream, &mut self.transcript, &self.shared);
            let result: io::Result<usize> = READ_BUFFER.with_borrow_mut(|buffer| {
                let n = stream.try_read(&mut buffer[..read_size])?;
                if n > 0 {
                    let out = transcript.record(shared, origin, &buffer[..n]);
                    if !out.is_empty() {
                        permit.send(out);
                    }
                }
                Ok(n)
            });
            match result {
                Ok(0) => return Poll::Ready(End::ClosedByClient),
                Ok(_) => {
                    if let Some(deadlines) = self.extras.as_mut().and_then(|e| e.deadlines.as_mut()) {
                        deadlines.read();
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Poll::Ready(End::from_io(err)),
            }
        }
    }

    /// Tells the client the server is shutting down: one best-effort write that never waits
    /// (a client that reads nothing simply does not see it).
    fn send_notice(&mut self) {
        self.noticed = true;
        if let Some(notice) = self.shared.config.shutdown_notice.as_deref() {
            let _ = socket2::SockRef::from(&self.stream).send(notice);
        }
    }

    /// Writes whatever is left of the greeting. A client that is already gone only loses the
    /// greeting: what it sent before leaving is still read.
    fn poll_greeting(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(greeting) = self.shared.config.greeting.as_deref() else {
            return Poll::Ready(());
        };
        while (self.greeted as usize) < greeting.len() {
            let written = match ready!(self.stream.poll_write_ready(cx)) {
                Ok(()) => self.stream.try_write(&greeting[self.greeted as usize..]),
                Err(err) => Err(err),
            };
            match written {
                Ok(n) => self.greeted += n as u32,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => {
                    debug!("#{} {} greeting not sent: {}", self.id, self.peer, crate::error::reason(&err));
                    self.greeted = greeting.len() as u32;
                }
            }
        }
        Poll::Ready(())
    }
}

impl Future for Connection {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let end = ready!(this.poll_session(cx));
        let origin = this.origin();
        this.transcript.close(&this.shared, origin, &end);
        Poll::Ready(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.registry.remove(self.slot, self.peer.ip());
    }
}

/// Room in the sink's queue, reserved before reading so a read never has to wait to be queued.
enum Reserved<'a> {
    Borrowed(Reservation<'a>),
    Owned(OwnedReservation),
}

impl Reserved<'_> {
    fn send(self, out: Vec<u8>) {
        match self {
            Reserved::Borrowed(reservation) => reservation.send(out),
            Reserved::Owned(reservation) => reservation.send(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{Capture, Sink, Target};
    use crate::server::registry::Registry;
    use crate::server::stats::Stats;
    use std::sync::atomic::AtomicU64;

    #[tokio::test]
    async fn an_idle_connection_task_stays_small() {
        let sink = Sink::start(Target::Memory(Capture::default())).expect("memory sink");
        let shared = Arc::new(Shared {
            config: Default::default(),
            records: sink.sender(),
            registry: Registry::default(),
            room: Default::default(),
            stats: Stats::default(),
            next_id: AtomicU64::new(1),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (stream, peer) = listener.accept().await.expect("accept");
        let slot = shared.registry.try_insert(peer.ip()).expect("room");
        let task = Connection::new(shared, stream, peer, 1, slot);
        // tokio allocates 96 bytes of task header plus the future, rounded up to 128 bytes;
        // issue 3's memory target needs the whole cell to fit in 256 bytes.
        let size = std::mem::size_of_val(&task);
        assert!(size <= 160, "the connection future is {size} bytes");
    }
}
