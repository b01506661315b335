//! What the echo, chat and broker modes share: a connection's registry slot, the server's
//! phase and the deadlines as something to await, the transcript, and the close report.
//!
//! These modes write to their clients, so their tasks are `async fn`s with buffers; only the
//! default `print` mode is written to be as small as possible (see `handler.rs`).

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::info;

use super::Shared;
use super::registry::Phase;
use super::timer::Deadlines;
use super::transcript::{End, Transcript};
use crate::output::{Event, Format, Origin, json_event};

/// One connection in a mode that answers its client.
pub struct Session {
    /// The server's shared state.
    pub shared: Arc<Shared>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The connection number.
    pub id: u64,
    slot: u32,
    transcript: Transcript,
    deadlines: Option<Deadlines>,
    /// The phase last acted on.
    seen: Phase,
    /// Shutdown started while the connection was busy: the notice is still to be sent.
    notice_due: bool,
}

impl Session {
    /// A session for a connection admitted into registry slot `slot`; queues its connect
    /// record (JSON) and logs it.
    pub async fn start(shared: Arc<Shared>, peer: SocketAddr, id: u64, slot: u32) -> Session {
        info!("#{id} {peer} connected");
        let deadlines = Deadlines::start(&shared.config);
        let session = Session {
            shared,
            peer,
            id,
            slot,
            transcript: Transcript::default(),
            deadlines,
            seen: Phase::Serving,
            notice_due: false,
        };
        if session.shared.config.style.format == Format::Json {
            let mut out = Vec::new();
            json_event(&mut out, session.origin(), Event::Connect);
            let _ = session.shared.records.send(out).await;
        }
        session
    }

    /// Who the records are about.
    pub fn origin(&self) -> Origin {
        Origin { conn: Some(self.id), peer: self.peer }
    }

    /// Adds what the client sent to the transcript, waiting for room in the sink.
    pub async fn record(&mut self, data: &[u8]) -> Result<(), End> {
        if let Some(deadlines) = self.deadlines.as_mut() {
            deadlines.read();
        }
        let out = self.transcript.record(&self.shared, self.origin(), data);
        if !out.is_empty() {
            self.shared.records.send(out).await.map_err(|_| End::OutputClosed)?;
        }
        Ok(())
    }

    /// Reads what the client sends next into `buffer` and adds it to the transcript; `Ok(0)`
    /// at the end of its data. A pending shutdown notice is left for [`Session::take_notice`].
    pub async fn read(
        &mut self,
        reader: &mut (impl AsyncRead + Unpin),
        buffer: &mut [u8],
    ) -> Result<usize, End> {
        let n = match self.guard(reader.read(buffer)).await {
            Ok(Ok(n)) => n,
            Ok(Err(err)) => return Err(End::from_io(err)),
            Err(end) => return Err(end),
        };
        self.record(&buffer[..n]).await?;
        Ok(n)
    }

    /// Awaits `work` unless the connection must end first (the server closes, a deadline
    /// passes). `work` is never dropped half-way for a mere shutdown notice: that notice is
    /// remembered and handed out by [`Session::take_notice`].
    pub async fn guard<T>(&mut self, work: impl Future<Output = T>) -> Result<T, End> {
        let mut work = pin!(work);
        poll_fn(|cx| {
            if let Poll::Ready(output) = work.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            let registry = &self.shared.registry;
            registry.register(self.slot, cx.waker());
            match registry.phase() {
                Phase::Closing => return Poll::Ready(Err(End::Shutdown)),
                Phase::Draining if self.seen == Phase::Serving => {
                    self.seen = Phase::Draining;
                    self.notice_due = self.shared.config.shutdown_notice.is_some();
                }
                _ => {}
            }
            if let Some(deadlines) = self.deadlines.as_mut() {
                if let Poll::Ready(expired) = deadlines.poll_expired(cx, &self.shared.config) {
                    return Poll::Ready(Err(End::TimedOut(expired)));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// The shutdown notice, once, if shutdown started since the last call.
    pub fn take_notice(&mut self) -> Option<&[u8]> {
        if !std::mem::take(&mut self.notice_due) {
            return None;
        }
        self.shared.config.shutdown_notice.as_deref()
    }

    /// Flushes the transcript, counts and logs the connection, and gives back its slot.
    pub fn close(mut self, end: &End) {
        let origin = self.origin();
        self.transcript.close(&self.shared, origin, end);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.registry.remove(self.slot, self.peer.ip());
    }
}
