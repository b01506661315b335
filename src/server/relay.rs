//! A relay client's own side of the room (chat and broker): writing its queue to its socket,
//! watching its health (the slow timer), pausing while the room drains, and, for a broker
//! client, handing what it sends to the others.

use std::collections::VecDeque;
use std::future::Future as _;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::{Sleep, sleep_until};
use tracing::info;

use super::Shared;
use super::outbox::{Health, Message, Outbox};
use super::room::Room;
use super::transcript::End;
use super::wire::Wire;
use crate::config::SlowClient;
use crate::framing::Framer;

/// Most queued messages written with one system call.
const WRITE_BATCH: usize = 64;

/// One relay client's side of the room.
#[derive(Debug)]
pub(super) struct Relay {
    /// What the room and the server queue for this client.
    pub outbox: Arc<Outbox>,
    /// Messages taken from the outbox and being written, so no lock is held while writing.
    writing: VecDeque<Message>,
    /// Bytes of the first message of `writing` already written.
    front_written: usize,
    /// Armed while the queue is congested: when it fires the client is declared slow.
    slow_timer: Option<Pin<Box<Sleep>>>,
    /// In the room: its sending waits while another reader is congested.
    pub joined: bool,
    /// Chat: the nickname, once chosen.
    pub nick: Option<String>,
    /// Chat: the unfinished line.
    pub framer: Framer,
    /// Chat: the client sent `/quit`.
    pub quit: bool,
    /// Chat: input already read and recorded but not yet handed to the room, which paused.
    pub backlog: Vec<u8>,
}

impl Relay {
    /// A client not in the room yet.
    pub fn new() -> Relay {
        Relay {
            outbox: Arc::new(Outbox::default()),
            writing: VecDeque::new(),
            front_written: 0,
            slow_timer: None,
            joined: false,
            nick: None,
            framer: Framer::new(),
            quit: false,
            backlog: Vec::new(),
        }
    }

    /// A broker client, in the room from the start.
    pub fn join_broker(shared: &Shared, id: u64) -> Relay {
        let mut relay = Relay::new();
        relay.joined = shared.room.join(id, None, &relay.outbox).is_ok();
        relay
    }

    /// Broker: what the client sent goes to every other client.
    pub fn broadcast(&mut self, shared: &Shared, id: u64, data: &[u8]) {
        shared.room.broadcast(Some(id), &Message::from(data));
    }

    /// Queues a message for this client alone.
    pub fn reply(&self, shared: &Shared, text: impl AsRef<[u8]>) {
        self.outbox.reply(Message::from(text.as_ref()), shared.room.limits());
    }

    /// True while the client is owed bytes.
    pub fn has_unsent(&self) -> bool {
        !self.writing.is_empty() || self.outbox.has_unsent()
    }

    /// True for a client outside the room that is owed nothing and holds no unfinished line:
    /// its state can go until it next sends something.
    pub fn is_idle_outsider(&self) -> bool {
        !self.joined
            && !self.quit
            && !self.framer.has_pending()
            && !self.has_unsent()
            && self.backlog.is_empty()
    }

    /// Ready when this client may be read: it is not in the room, or no other reader is
    /// congested.
    pub fn poll_open(&self, room: &Room, id: u64, cx: &mut Context<'_>) -> Poll<()> {
        if !self.joined {
            return Poll::Ready(());
        }
        let congested = matches!(self.outbox.health(), Health::Congested { .. });
        room.poll_open(id, congested, cx)
    }

    /// Writes the queue to the socket as far as it takes it, several messages per system call.
    pub fn poll_write(&mut self, wire: &mut Wire<'_>, room: &Room, cx: &mut Context<'_>) -> Result<(), End> {
        let limits = room.limits();
        loop {
            self.outbox.take(&mut self.writing, cx.waker());
            if self.writing.is_empty() {
                return Ok(());
            }
            match wire.poll_write_ready(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Err(err)) => return Err(End::from_io(err)),
                Poll::Ready(Ok(())) => {}
            }
            let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
            let mut count = 0;
            for (slot, message) in slices.iter_mut().zip(&self.writing) {
                let skip = if count == 0 { self.front_written } else { 0 };
                *slot = IoSlice::new(&message[skip..]);
                count += 1;
            }
            let written = match wire.try_write_vectored(&slices[..count]) {
                Ok(0) => return Err(End::from_io(io::ErrorKind::WriteZero.into())),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Err(End::from_io(err)),
            };
            self.advance(written);
            let (before, after, missed) = self.outbox.written(written, limits);
            if matches!(before, Health::Congested { .. }) && after == Health::Healthy {
                room.uncongest();
            }
            if missed > 0 {
                let notice = format!("* {missed} messages dropped: you could not keep up\n");
                self.outbox.reply(Message::from(notice.as_bytes()), limits);
            }
        }
    }

    fn advance(&mut self, mut written: usize) {
        while let Some(front) = self.writing.front() {
            let left = front.len() - self.front_written;
            if written < left {
                self.front_written += written;
                return;
            }
            written -= left;
            self.writing.pop_front();
            self.front_written = 0;
        }
    }

    /// Applies the slow-client rules: a client kicked by the room ends, and one congested for
    /// `--slow-timeout` is declared slow and the room stops waiting for it.
    pub fn poll_health(&mut self, shared: &Shared, id: u64, cx: &mut Context<'_>) -> Result<(), End> {
        loop {
            let since = match self.outbox.health() {
                Health::Kicked => return Err(End::TooSlow),
                Health::Congested { since } => since,
                Health::Healthy | Health::Slow => {
                    self.slow_timer = None;
                    return Ok(());
                }
            };
            let Some(deadline) = since.checked_add(shared.config.slow_timeout) else { return Ok(()) };
            let timer = self.slow_timer.get_or_insert_with(|| Box::pin(sleep_until(deadline)));
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            let policy = shared.config.slow_client;
            if self.outbox.declare_slow(since, policy) {
                shared.room.declared_slow();
                if policy == SlowClient::Drop {
                    info!(
                        "#{id} cannot keep up with the room: dropping what it cannot take until it catches up"
                    );
                }
            }
        }
    }

    /// Leaves the room, once; in chat mode the others are told.
    pub fn leave(&mut self, shared: &Shared, id: u64, end: &End) {
        if !std::mem::take(&mut self.joined) {
            return;
        }
        if let Some(nick) = shared.room.leave(id) {
            let why = if matches!(end, End::TooSlow) { " (too slow to keep up)" } else { "" };
            shared.room.broadcast(None, &Message::from(format!("* {nick} left{why}\n").as_bytes()));
        }
    }
}
