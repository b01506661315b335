//! A room of relay clients (chat and broker modes). Each client has an outbound queue bounded by
//! the bytes it holds (a "sendq", so thousands of small notices fit where a few large lines do),
//! drained by a writer task of its own, and a message is handed to every queue without waiting:
//! a client that cannot keep up is disconnected or loses messages (counted, and told once it
//! catches up), so one stalled reader never slows the others (ncat's broker blocks them all).

use std::collections::HashMap;
use std::io::IoSlice;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::session::Session;
use super::transcript::End;
use crate::config::{RELAY_FLUSH_LIMIT, ServerConfig, SlowClient};

/// One message, shared by every queue it is in.
pub type Message = Arc<[u8]>;

/// Most queued messages written with one system call.
const WRITE_BATCH: usize = 64;

/// The clients of the room and how slow ones are treated.
#[derive(Debug, Default)]
pub struct Room {
    /// No `.await` happens while this lock is held: sending is `try_send`.
    members: Mutex<HashMap<u64, Member>>,
    policy: SlowClient,
    /// Messages not delivered to slow clients (drop policy).
    dropped: AtomicU64,
    /// Clients disconnected for being slow (disconnect policy).
    kicked: AtomicU64,
}

/// A client's outbound queue: a channel, bounded by the bytes of the messages in it.
#[derive(Clone, Debug)]
pub struct ClientQueue {
    tx: mpsc::UnboundedSender<Message>,
    /// Bytes queued and not yet written; the writer takes them off.
    queued: Arc<AtomicUsize>,
    limit: usize,
}

/// Why a message did not go into a queue.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The queue holds its limit in bytes.
    Full,
    /// The client's writer has stopped.
    Closed,
}

impl ClientQueue {
    /// A queue holding at most `limit` bytes, and its receiving end.
    pub fn new(limit: usize) -> (ClientQueue, QueueReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        (ClientQueue { tx, queued: Arc::clone(&queued), limit }, QueueReceiver { rx, queued })
    }

    /// True when `bytes` more fit. An empty queue takes any one message, so a message longer
    /// than the limit still goes to a client that keeps up.
    fn has_room(&self, bytes: usize) -> bool {
        let queued = self.queued.load(Ordering::Acquire);
        queued == 0 || queued + bytes <= self.limit
    }

    /// Queues `message` unless that would pass the limit.
    pub fn try_send(&self, message: &Message) -> Result<(), QueueError> {
        if self.tx.is_closed() {
            return Err(QueueError::Closed);
        }
        if !self.has_room(message.len()) {
            return Err(QueueError::Full);
        }
        self.push(message)
    }

    /// Queues `message` without checking the limit (the caller did).
    fn push(&self, message: &Message) -> Result<(), QueueError> {
        self.queued.fetch_add(message.len(), Ordering::AcqRel);
        self.tx.send(Arc::clone(message)).map_err(|_| QueueError::Closed)
    }
}

/// The writer's end of a [`ClientQueue`].
#[derive(Debug)]
pub struct QueueReceiver {
    rx: mpsc::UnboundedReceiver<Message>,
    queued: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Member {
    nick: Option<String>,
    queue: ClientQueue,
    kick: CancellationToken,
    /// Messages dropped since this client last received one.
    dropped: u64,
}

/// A nickname is already in use.
#[derive(Debug, PartialEq, Eq)]
pub struct NickTaken;

impl Room {
    /// An empty room with the given slow-client policy.
    pub fn new(policy: SlowClient) -> Self {
        Room { policy, ..Room::default() }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Member>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds client `id` with its queue; `kick` is cancelled if the room disconnects it.
    pub fn join(
        &self,
        id: u64,
        nick: Option<String>,
        queue: ClientQueue,
        kick: CancellationToken,
    ) -> Result<(), NickTaken> {
        let mut members = self.lock();
        if let Some(nick) = &nick {
            if members.values().any(|m| m.nick.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(nick))) {
                return Err(NickTaken);
            }
        }
        members.insert(id, Member { nick, queue, kick, dropped: 0 });
        Ok(())
    }

    /// Removes client `id`; returns its nickname.
    pub fn leave(&self, id: u64) -> Option<String> {
        self.lock().remove(&id).and_then(|m| m.nick)
    }

    /// Renames client `id`; returns the old nickname.
    pub fn rename(&self, id: u64, new: &str) -> Result<Option<String>, NickTaken> {
        let mut members = self.lock();
        let taken = members
            .iter()
            .any(|(&other, m)| other != id && m.nick.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(new)));
        if taken {
            return Err(NickTaken);
        }
        Ok(members.get_mut(&id).and_then(|m| m.nick.replace(new.to_string())))
    }

    /// The nicknames in the room, sorted.
    pub fn who(&self) -> Vec<String> {
        let mut nicks: Vec<String> = self.lock().values().filter_map(|m| m.nick.clone()).collect();
        nicks.sort_unstable_by_key(|n| n.to_lowercase());
        nicks
    }

    /// Queues `message` for every client but `from`, applying the slow-client policy; returns
    /// the nicknames of clients disconnected for being too slow.
    pub fn broadcast(&self, from: Option<u64>, message: &Message) -> Vec<String> {
        let mut kicked = Vec::new();
        let mut members = self.lock();
        for (&id, member) in members.iter_mut() {
            if Some(id) == from {
                continue;
            }
            if member.dropped > 0 {
                // Caught up: tell it what it missed, then go on as usual.
                let notice = format!("* {} messages dropped: you could not keep up\n", member.dropped);
                if member.queue.has_room(notice.len() + message.len()) {
                    let _ = member.queue.push(&Message::from(notice.into_bytes()));
                    let _ = member.queue.push(message);
                    member.dropped = 0;
                    continue;
                }
            }
            match member.queue.try_send(message) {
                Ok(()) | Err(QueueError::Closed) => {}
                Err(QueueError::Full) => match self.policy {
                    SlowClient::Drop => {
                        member.dropped += 1;
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    SlowClient::Disconnect => {
                        member.kick.cancel();
                        kicked.push(id);
                    }
                },
            }
        }
        let nicks = kicked.iter().filter_map(|id| members.remove(id)).filter_map(|m| m.nick).collect();
        self.kicked.fetch_add(kicked.len() as u64, Ordering::Relaxed);
        nicks
    }

    /// Messages dropped and clients disconnected for being slow, so far.
    pub fn slow_counts(&self) -> (u64, u64) {
        (self.dropped.load(Ordering::Relaxed), self.kicked.load(Ordering::Relaxed))
    }
}

/// A relay client's outbound side: its queue, the token the room cancels to disconnect it, and
/// the task that writes the queue to its socket.
pub struct Outbound {
    /// Messages for this client.
    pub queue: ClientQueue,
    /// Cancelled when the room disconnects this client for being too slow.
    pub kick: CancellationToken,
    writer: JoinHandle<()>,
}

impl Outbound {
    /// Splits a relay client's connection into its read half and its outbound side, which
    /// already holds the greeting.
    pub fn open(stream: TcpStream, config: &ServerConfig) -> (OwnedReadHalf, Outbound) {
        // Relayed lines are small and someone waits for each: do not hold them back (Nagle).
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let outbound = Outbound::start(writer, config.relay_queue_bytes);
        if let Some(greeting) = &config.greeting {
            outbound.reply(greeting.clone());
        }
        (reader, outbound)
    }

    /// Starts writing to `socket` whatever is queued, at most `limit` bytes waiting.
    fn start(socket: OwnedWriteHalf, limit: usize) -> Outbound {
        let (queue, rx) = ClientQueue::new(limit);
        let kick = CancellationToken::new();
        let writer = tokio::spawn(write_queue(socket, rx, kick.clone()));
        Outbound { queue, kick, writer }
    }

    /// Queues a message for this client alone (a reply, a notice); dropped if its queue is full.
    pub fn reply(&self, text: impl Into<Vec<u8>>) {
        let _ = self.queue.try_send(&Message::from(text.into()));
    }

    /// Lets the queue drain for a moment when `flush` (a client leaving normally gets its last
    /// messages), then stops the writer, which closes the socket.
    pub async fn finish(self, flush: bool) {
        let Outbound { queue, kick, mut writer } = self;
        drop(queue);
        if flush && tokio::time::timeout(RELAY_FLUSH_LIMIT, &mut writer).await.is_ok() {
            return;
        }
        kick.cancel();
        let _ = writer.await;
    }
}

/// Reads what a relay client sends next (see [`Session::read`]), unless the room disconnects it
/// first; a pending shutdown notice is queued for it.
pub async fn read_relayed(
    session: &mut Session,
    outbound: &Outbound,
    reader: &mut OwnedReadHalf,
    buffer: &mut [u8],
) -> Result<usize, End> {
    let read = tokio::select! {
        biased;
        _ = outbound.kick.cancelled() => Err(End::TooSlow),
        read = session.read(reader, buffer) => read,
    };
    if let Some(notice) = session.take_notice() {
        outbound.reply(notice);
    }
    read
}

/// Writes a client's queue to its socket until the queue closes or `stop` is cancelled; queued
/// messages go out several per system call.
async fn write_queue(mut socket: OwnedWriteHalf, mut queue: QueueReceiver, stop: CancellationToken) {
    let mut batch: Vec<Message> = Vec::with_capacity(WRITE_BATCH);
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            next = queue.rx.recv() => match next {
                Some(message) => message,
                None => break,
            },
        };
        batch.push(first);
        while batch.len() < WRITE_BATCH {
            match queue.rx.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        let written = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            written = write_all_vectored(&mut socket, &batch) => written,
        };
        if written.is_err() {
            return;
        }
        let bytes: usize = batch.iter().map(|m| m.len()).sum();
        queue.queued.fetch_sub(bytes, Ordering::AcqRel);
        batch.clear();
    }
    let _ = socket.shutdown().await;
}

async fn write_all_vectored(socket: &mut OwnedWriteHalf, batch: &[Message]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|m| IoSlice::new(m)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        let n = socket.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(room: &Room, id: u64, nick: &str, limit: usize) -> (QueueReceiver, CancellationToken) {
        let (queue, rx) = ClientQueue::new(limit);
        let kick = CancellationToken::new();
        room.join(id, Some(nick.into()), queue, kick.clone()).expect("free nickname");
        (rx, kick)
    }

    fn drain(rx: &mut QueueReceiver) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| rx.rx.try_recv().ok().map(|m| m.to_vec())).collect()
    }

    #[test]
    fn nicknames_are_unique_ignoring_case() {
        let room = Room::new(SlowClient::Disconnect);
        let _ivo = member(&room, 1, "Ivo", 64);
        let (queue, _rx) = ClientQueue::new(64);
        assert_eq!(room.join(2, Some("ivo".into()), queue, CancellationToken::new()), Err(NickTaken));
        let _marc = member(&room, 3, "marc", 64);
        assert_eq!(room.rename(3, "IVO"), Err(NickTaken));
        assert_eq!(room.rename(3, "Marcus"), Ok(Some("marc".into())));
        assert_eq!(room.who(), ["Ivo", "Marcus"]);
    }

    #[test]
    fn a_full_queue_gets_its_client_disconnected_not_the_room_stalled() {
        let room = Room::new(SlowClient::Disconnect);
        let (_slow_rx, slow_kick) = member(&room, 1, "slow", 4);
        let (mut fast_rx, _) = member(&room, 2, "fast", 64);
        let message: Message = Arc::from(&b"hi\n"[..]);
        assert!(room.broadcast(None, &message).is_empty());
        assert_eq!(room.broadcast(None, &message), ["slow"]);
        assert!(slow_kick.is_cancelled());
        assert_eq!(room.who(), ["fast"]);
        assert_eq!(drain(&mut fast_rx), [b"hi\n".to_vec(), b"hi\n".to_vec()]);
        assert_eq!(room.slow_counts(), (0, 1));
    }

    #[test]
    fn with_the_drop_policy_a_slow_client_is_told_what_it_missed() {
        let room = Room::new(SlowClient::Drop);
        let (mut slow_rx, kick) = member(&room, 1, "slow", 6);
        for i in 0..5 {
            room.broadcast(None, &Message::from(format!("m{i}\n").into_bytes()));
        }
        assert!(!kick.is_cancelled());
        assert_eq!(room.slow_counts(), (3, 0));
        assert_eq!(drain(&mut slow_rx), [b"m0\n".to_vec(), b"m1\n".to_vec()]);
        slow_rx.queued.store(0, Ordering::Release); // as the writer does once they are written
        room.broadcast(None, &Message::from(&b"m5\n"[..]));
        let got = drain(&mut slow_rx);
        assert_eq!(got, [b"* 3 messages dropped: you could not keep up\n".to_vec(), b"m5\n".to_vec()]);
    }

    #[test]
    fn an_oversized_message_still_reaches_a_client_that_keeps_up() {
        let (queue, mut rx) = ClientQueue::new(4);
        let big: Message = Arc::from(&b"longer than four bytes\n"[..]);
        assert_eq!(queue.try_send(&big), Ok(()));
        assert_eq!(queue.try_send(&big), Err(QueueError::Full));
        assert_eq!(drain(&mut rx).len(), 1);
    }
}
