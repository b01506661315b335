//! A relay client's outbound queue and the health that flow control reads from it.
//!
//! Senders push into the queue; the owning connection writes it out. The byte count, the queue
//! and the health change together under one lock, so a push can never pass the limit between a
//! check and an add. A queue over the high-water mark is *congested*: the room pauses its
//! senders until it drains. One that stays congested for `--slow-timeout`, or fills up, is
//! *slow*: the slow-client policy applies to it alone and the room stops waiting for it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use tokio::time::Instant;

use crate::config::SlowClient;

/// One message, shared by every queue it is in.
pub(super) type Message = Arc<[u8]>;

/// Where a reader stands with the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Health {
    /// Under the high-water mark.
    Healthy,
    /// Over the mark since `since`: the room's senders wait for it.
    Congested {
        /// When the queue crossed the mark.
        since: Instant,
    },
    /// Too slow, under the drop policy: gets what fits, loses the rest, until it has caught up.
    Slow,
    /// Too slow, under the disconnect policy: gets nothing more and is closing.
    Kicked,
}

/// The limits of every queue in a room.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Past this many queued bytes a reader holds the room back.
    pub high_water: usize,
    /// A queue never holds more (but an empty queue takes any one message).
    pub full: usize,
    /// What happens to a reader found too slow.
    pub policy: SlowClient,
}

/// What a push did to a queue's health, for the room's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pushed {
    /// Queued; the health did not change.
    Queued,
    /// Queued, and the queue crossed the high-water mark.
    Congested,
    /// Not queued: the client is too slow and the message was dropped (drop policy).
    Dropped,
    /// Not queued: the queue was full, so the client is now slow.
    Overflowed {
        /// It was congested, so the room no longer waits for it.
        was_congested: bool,
    },
    /// Not queued: the client is leaving.
    Ignored,
}

/// A relay client's outbound queue, shared by the room's senders and the connection that
/// writes it.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Message>,
    /// Bytes pushed and not yet written, including those the writer has taken out of `queue`.
    queued: usize,
    health: Health,
    /// Messages dropped since the client last caught up.
    dropped: u64,
    /// The owning connection, woken when there is something new to write or a health change.
    waker: Option<Waker>,
}

impl Default for State {
    fn default() -> Self {
        State { queue: VecDeque::new(), queued: 0, health: Health::Healthy, dropped: 0, waker: None }
    }
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a message from the room, within `limits`. When the queue crosses the mark,
    /// `congested` (the room's count) goes up under this queue's lock, so the drain that
    /// takes it down again, under the same lock, always comes after.
    pub fn push(&self, message: &Message, limits: Limits, congested: &AtomicUsize) -> Pushed {
        let mut state = self.lock();
        let len = message.len();
        let fits = state.queued == 0 || state.queued.saturating_add(len) <= limits.full;
        match state.health {
            Health::Kicked => return Pushed::Ignored,
            Health::Slow if !fits => {
                state.dropped += 1;
                return Pushed::Dropped;
            }
            Health::Healthy | Health::Congested { .. } if !fits => {
                let was_congested = matches!(state.health, Health::Congested { .. });
                state.health = match limits.policy {
                    SlowClient::Disconnect => Health::Kicked,
                    SlowClient::Drop => {
                        state.dropped += 1;
                        Health::Slow
                    }
                };
                state.wake();
                return Pushed::Overflowed { was_congested };
            }
            _ => {}
        }
        let was_empty = state.queued == 0;
        state.queue.push_back(Arc::clone(message));
        state.queued += len;
        if state.health == Health::Healthy && state.queued > limits.high_water {
            state.health = Health::Congested { since: Instant::now() };
            congested.fetch_add(1, Ordering::AcqRel);
            state.wake();
            return Pushed::Congested;
        }
        if was_empty {
            state.wake();
        }
        Pushed::Queued
    }

    /// Queues a message for this client alone (a reply, a notice): never counted against the
    /// room, but dropped when the queue is full, so a client that asks without reading cannot
    /// grow it.
    pub fn reply(&self, message: Message, limits: Limits) {
        let mut state = self.lock();
        if state.health == Health::Kicked || state.queued > 0 && state.queued + message.len() > limits.full {
            return;
        }
        state.queued += message.len();
        state.queue.push_back(message);
        state.wake();
    }

    /// Moves what is queued into `writing` (the writer's own list) once that is empty, so it
    /// can be written without holding the lock, and remembers `waker` for the next push or
    /// health change.
    pub fn take(&self, writing: &mut VecDeque<Message>, waker: &Waker) {
        let mut state = self.lock();
        match &mut state.waker {
            Some(known) if known.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        if writing.is_empty() && !state.queue.is_empty() {
            std::mem::swap(&mut state.queue, writing);
        }
    }

    /// Records that `bytes` were written; returns the health before and after, and the number
    /// of messages the client missed if it has just caught up after being slow.
    pub fn written(&self, bytes: usize, limits: Limits) -> (Health, Health, u64) {
        let mut state = self.lock();
        state.queued = state.queued.saturating_sub(bytes);
        let before = state.health;
        let mut missed = 0;
        match before {
            Health::Congested { .. } if state.queued <= limits.high_water => state.health = Health::Healthy,
            Health::Slow if state.queued == 0 => {
                state.health = Health::Healthy;
                missed = std::mem::take(&mut state.dropped);
            }
            _ => {}
        }
        (before, state.health, missed)
    }

    /// The health now.
    pub fn health(&self) -> Health {
        self.lock().health
    }

    /// Declares the client slow if it is still congested since `since`: kicked or slow by the
    /// policy. True when it was (the room must stop waiting for it).
    pub fn declare_slow(&self, since: Instant, policy: SlowClient) -> bool {
        let mut state = self.lock();
        if state.health != (Health::Congested { since }) {
            return false;
        }
        state.health = match policy {
            SlowClient::Disconnect => Health::Kicked,
            SlowClient::Drop => Health::Slow,
        };
        true
    }

    /// Marks the client as leaving: nothing more is queued, what is queued can still be
    /// written. Returns the health it had.
    pub fn close(&self) -> Health {
        let mut state = self.lock();
        std::mem::replace(&mut state.health, Health::Kicked)
    }

    /// True while bytes are queued or being written.
    pub fn has_unsent(&self) -> bool {
        self.queued() > 0
    }

    /// Bytes queued or being written.
    pub fn queued(&self) -> usize {
        self.lock().queued
    }
}

impl State {
    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static COUNT: AtomicUsize = AtomicUsize::new(0);
    const LIMITS: Limits = Limits { high_water: 8, full: 16, policy: SlowClient::Disconnect };

    fn message(len: usize) -> Message {
        Message::from(vec![b'x'; len])
    }

    #[tokio::test]
    async fn the_mark_congests_and_draining_heals() {
        let outbox = Outbox::default();
        assert_eq!(outbox.push(&message(6), LIMITS, &COUNT), Pushed::Queued);
        assert_eq!(outbox.push(&message(6), LIMITS, &COUNT), Pushed::Congested);
        let mut writing = VecDeque::new();
        outbox.take(&mut writing, Waker::noop());
        assert_eq!(writing.len(), 2);
        let (before, after, _) = outbox.written(6, LIMITS);
        assert!(matches!(before, Health::Congested { .. }));
        assert_eq!(after, Health::Healthy);
    }

    #[tokio::test]
    async fn a_full_queue_makes_its_client_slow_by_the_policy() {
        let outbox = Outbox::default();
        outbox.push(&message(10), LIMITS, &COUNT);
        assert_eq!(outbox.push(&message(10), LIMITS, &COUNT), Pushed::Overflowed { was_congested: true });
        assert_eq!(outbox.health(), Health::Kicked);
        assert_eq!(outbox.push(&message(1), LIMITS, &COUNT), Pushed::Ignored);

        let drop = Limits { policy: SlowClient::Drop, ..LIMITS };
        let outbox = Outbox::default();
        outbox.push(&message(10), drop, &COUNT);
        assert_eq!(outbox.push(&message(10), drop, &COUNT), Pushed::Overflowed { was_congested: true });
        assert_eq!(outbox.push(&message(10), drop, &COUNT), Pushed::Dropped);
        assert_eq!(outbox.push(&message(6), drop, &COUNT), Pushed::Queued, "what fits still goes");
        assert_eq!(
            outbox.written(16, drop),
            (Health::Slow, Health::Healthy, 2),
            "caught up: told it missed 2"
        );
    }

    #[tokio::test]
    async fn an_oversized_message_still_reaches_a_client_that_keeps_up() {
        let outbox = Outbox::default();
        assert_eq!(outbox.push(&message(40), LIMITS, &COUNT), Pushed::Congested);
        outbox.written(40, LIMITS);
        assert_eq!(outbox.health(), Health::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_reader_still_congested_is_declared_slow() {
        let outbox = Outbox::default();
        outbox.push(&message(12), LIMITS, &COUNT);
        let Health::Congested { since } = outbox.health() else { panic!("congested") };
        outbox.written(12, LIMITS);
        assert!(!outbox.declare_slow(since, SlowClient::Disconnect), "it drained in time");
        outbox.push(&message(12), LIMITS, &COUNT);
        let Health::Congested { since } = outbox.health() else { panic!("congested") };
        assert!(outbox.declare_slow(since, SlowClient::Disconnect));
        assert_eq!(outbox.health(), Health::Kicked);
    }
}
