//! A room of relay clients (chat and broker): who is in it, their nicknames, handing a message
//! to every queue, and the gate that pauses senders while a healthy reader catches up.
//!
//! Flow control (DESIGN invariant 8): a sender reads only while no reader is congested, so the
//! room moves at the pace of its slowest *healthy* reader and never evicts one; a reader that
//! stays behind for `--slow-timeout`, or fills its queue, is declared slow and stops holding
//! the room back (see `outbox.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::cluster::Link;
use super::outbox::{Health, Limits, Message, Outbox, Pushed};
use crate::config::{ServerConfig, SlowClient};

/// The clients of the room and the state of its flow control.
#[derive(Debug)]
pub(super) struct Room {
    /// No `.await` happens while this lock is held; an outbox lock may be taken inside it.
    members: Mutex<HashMap<u64, Member>>,
    limits: Limits,
    /// Readers over the high-water mark and not yet declared slow.
    congested: AtomicUsize,
    /// Senders waiting for `congested` to fall, by connection.
    paused: Mutex<HashMap<u64, Waker>>,
    /// Messages not delivered to slow clients (drop policy).
    dropped: AtomicU64,
    /// Clients disconnected for being slow (disconnect policy).
    kicked: AtomicU64,
    /// With `--cluster`: the link to the other instances.
    link: std::sync::OnceLock<Arc<Link>>,
}

#[derive(Debug)]
struct Member {
    nick: Option<String>,
    outbox: Arc<Outbox>,
}

/// A nickname is already in use.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct NickTaken;

impl Default for Room {
    fn default() -> Self {
        Room::new(&ServerConfig::default())
    }
}

impl Room {
    /// An empty room with the queue limits and slow-client policy of `config`.
    pub fn new(config: &ServerConfig) -> Self {
        Room {
            members: Mutex::default(),
            limits: Limits {
                high_water: config.relay_queue_bytes / 2,
                full: config.relay_queue_bytes,
                policy: config.slow_client,
            },
            congested: AtomicUsize::new(0),
            paused: Mutex::default(),
            dropped: AtomicU64::new(0),
            kicked: AtomicU64::new(0),
            link: std::sync::OnceLock::new(),
        }
    }

    /// The limits of every queue in this room.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Member>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds client `id`, whose messages go to `outbox`.
    pub fn join(&self, id: u64, nick: Option<String>, outbox: &Arc<Outbox>) -> Result<(), NickTaken> {
        let mut members = self.lock();
        if let Some(nick) = &nick {
            if members.values().any(|m| m.nick.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(nick)))
                || self.link.get().is_some_and(|link| link.taken_elsewhere(nick))
            {
                return Err(NickTaken);
            }
            if let Some(link) = self.link.get() {
                link.joined(nick);
            }
        }
        members.insert(id, Member { nick, outbox: Arc::clone(outbox) });
        Ok(())
    }

    /// Removes client `id`, so the room no longer waits for it; returns its nickname.
    pub fn leave(&self, id: u64) -> Option<String> {
        self.paused.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        let member = self.lock().remove(&id)?;
        if matches!(member.outbox.close(), Health::Congested { .. }) {
            self.uncongest();
        }
        if let (Some(link), Some(nick)) = (self.link.get(), &member.nick) {
            link.left(nick);
        }
        member.nick
    }

    /// Renames client `id`; returns the old nickname.
    pub fn rename(&self, id: u64, new: &str) -> Result<Option<String>, NickTaken> {
        let mut members = self.lock();
        let taken = members
            .iter()
            .any(|(&other, m)| other != id && m.nick.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(new)));
        if taken || self.link.get().is_some_and(|link| link.taken_elsewhere(new)) {
            return Err(NickTaken);
        }
        let old = members.get_mut(&id).and_then(|m| m.nick.replace(new.to_string()));
        if let Some(link) = self.link.get() {
            link.joined(new);
            if let Some(old) = &old {
                link.left(old);
            }
        }
        Ok(old)
    }

    /// The nicknames in the room, sorted.
    pub fn who(&self) -> Vec<String> {
        let mut nicks: Vec<String> = self.lock().values().filter_map(|m| m.nick.clone()).collect();
        nicks.sort_unstable_by_key(|n| n.to_lowercase());
        nicks
    }

    /// Queues `message` for every client but `from`. Never waits: a reader whose queue crosses
    /// the mark pauses the senders (see [`Room::poll_open`]); one whose queue is full is slow.
    pub fn broadcast(&self, from: Option<u64>, message: &Message) {
        self.deliver(from, message);
        if let Some(link) = self.link.get() {
            link.message(message);
        }
    }

    /// Queues `message` for this server's members other than `from` (what another instance of
    /// the cluster relayed arrives here, with no `from`).
    pub fn deliver(&self, from: Option<u64>, message: &Message) {
        let members = self.lock();
        for (&id, member) in members.iter() {
            if Some(id) == from {
                continue;
            }
            match member.outbox.push(message, self.limits, &self.congested) {
                Pushed::Queued | Pushed::Ignored | Pushed::Congested => {}
                Pushed::Dropped => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Pushed::Overflowed { was_congested } => {
                    match self.limits.policy {
                        SlowClient::Drop => self.dropped.fetch_add(1, Ordering::Relaxed),
                        SlowClient::Disconnect => self.kicked.fetch_add(1, Ordering::Relaxed),
                    };
                    if was_congested {
                        self.uncongest();
                    }
                }
            }
        }
    }

    /// True when no reader but (perhaps) the sender itself is congested.
    pub fn is_open(&self, self_congested: bool) -> bool {
        self.congested.load(Ordering::Acquire) <= usize::from(self_congested)
    }

    /// Ready when sender `id` may read: no reader but itself is congested. Otherwise its
    /// waker is kept until one drains or is declared slow.
    pub fn poll_open(&self, id: u64, self_congested: bool, cx: &mut Context<'_>) -> Poll<()> {
        let open = |congested: usize| congested <= usize::from(self_congested);
        if open(self.congested.load(Ordering::Acquire)) {
            return Poll::Ready(());
        }
        // Checked again under the lock that `uncongest` wakes under, so no wake-up is lost.
        let mut paused = self.paused.lock().unwrap_or_else(PoisonError::into_inner);
        if open(self.congested.load(Ordering::Acquire)) {
            return Poll::Ready(());
        }
        match paused.get_mut(&id) {
            Some(known) if known.will_wake(cx.waker()) => {}
            _ => {
                paused.insert(id, cx.waker().clone());
            }
        }
        Poll::Pending
    }

    /// A congested reader drained below the mark, left, or was declared slow: wake the
    /// paused senders to look again.
    pub fn uncongest(&self) {
        self.congested.fetch_sub(1, Ordering::AcqRel);
        let waiting = std::mem::take(&mut *self.paused.lock().unwrap_or_else(PoisonError::into_inner));
        for waker in waiting.into_values() {
            waker.wake();
        }
    }

    /// A reader stayed congested for the slow timeout and was declared slow by the policy.
    pub fn declared_slow(&self) {
        if self.limits.policy == SlowClient::Disconnect {
            self.kicked.fetch_add(1, Ordering::Relaxed);
        }
        self.uncongest();
    }

    /// Readers congested now (for tests and the bench).
    #[cfg(test)]
    pub fn congested(&self) -> usize {
        self.congested.load(Ordering::Acquire)
    }

    /// Bytes waiting in the members' queues.
    pub fn queued_bytes(&self) -> usize {
        self.lock().values().map(|member| member.outbox.queued()).sum()
    }

    /// Everyone in the room: this server's members, then those of the cluster's other instances
    /// (as they announced themselves, in lowercase).
    pub fn who_everywhere(&self) -> Vec<String> {
        let mut nicks = self.who();
        if let Some(link) = self.link.get() {
            nicks.extend(link.remote_nicks());
        }
        nicks
    }

    /// Joins the room to the other instances' through `link` (`--cluster`).
    pub fn connect(&self, link: Arc<Link>) {
        let _ = self.link.set(link);
    }

    /// Messages dropped and clients disconnected for being slow, so far.
    pub fn slow_counts(&self) -> (u64, u64) {
        (self.dropped.load(Ordering::Relaxed), self.kicked.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerSettings;
    use std::collections::VecDeque;

    fn room(policy: SlowClient) -> Room {
        let settings =
            ServerSettings { relay_queue_bytes: 16, slow_client: policy, ..ServerSettings::default() };
        let config = ServerConfig::new(settings).expect("valid");
        Room::new(&config)
    }

    fn member(room: &Room, id: u64, nick: &str) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox::default());
        room.join(id, Some(nick.into()), &outbox).expect("free nickname");
        outbox
    }

    #[test]
    fn nicknames_are_unique_ignoring_case() {
        let room = room(SlowClient::Disconnect);
        member(&room, 1, "Ivo");
        assert_eq!(room.join(2, Some("ivo".into()), &Arc::new(Outbox::default())), Err(NickTaken));
        member(&room, 3, "marc");
        assert_eq!(room.rename(3, "IVO"), Err(NickTaken));
        assert_eq!(room.rename(3, "Marcus"), Ok(Some("marc".into())));
        assert_eq!(room.who(), ["Ivo", "Marcus"]);
    }

    #[test]
    fn a_congested_reader_pauses_the_others_until_it_drains() {
        let room = room(SlowClient::Disconnect);
        let reader = member(&room, 1, "reader");
        member(&room, 2, "sender");
        room.broadcast(Some(2), &Message::from(vec![b'x'; 12]));
        assert_eq!(room.congested(), 1);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(room.poll_open(2, false, &mut cx).is_pending(), "the sender waits");
        assert!(room.poll_open(1, true, &mut cx).is_ready(), "a reader is not paused by itself");
        let mut writing = VecDeque::new();
        reader.take(&mut writing, Waker::noop());
        let (before, after, _) = reader.written(12, room.limits());
        assert!(matches!(before, Health::Congested { .. }) && after == Health::Healthy);
        room.uncongest();
        assert!(room.poll_open(2, false, &mut cx).is_ready());
    }

    #[test]
    fn leaving_while_congested_releases_the_room() {
        let room = room(SlowClient::Disconnect);
        member(&room, 1, "reader");
        room.broadcast(None, &Message::from(vec![b'x'; 12]));
        assert_eq!(room.congested(), 1);
        assert_eq!(room.leave(1).as_deref(), Some("reader"));
        assert_eq!(room.congested(), 0);
    }

    #[test]
    fn a_full_queue_is_slow_at_once_and_counted() {
        let room = room(SlowClient::Disconnect);
        let slow = member(&room, 1, "slow");
        for _ in 0..2 {
            room.broadcast(None, &Message::from(vec![b'x'; 10]));
        }
        assert_eq!(slow.health(), Health::Kicked);
        assert_eq!(room.congested(), 0, "the room no longer waits for it");
        assert_eq!(room.slow_counts(), (0, 1));
    }
}
