//! The table of live connections: how many there are, the server's phase, and a waker per
//! connection so a phase change reaches even the idle ones.
//!
//! A slab of wakers costs about 24 bytes per connection in one dense array. Per-connection
//! futures such as `CancellationToken::cancelled()` would add 50-100 bytes to every task and push
//! its allocation into the next 128-byte size class (see issue 3's memory target).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use slab::Slab;
use tokio::sync::Notify;

/// Where the server is in its life; connections read it between reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Accepting and reading.
    Serving,
    /// No longer accepting; connections are told and may finish within the grace period.
    Draining,
    /// Connections close now, flushing what they hold.
    Closing,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            0 => Phase::Serving,
            1 => Phase::Draining,
            _ => Phase::Closing,
        }
    }
}

/// Live connections and the phase they follow.
#[derive(Debug)]
pub struct Registry {
    /// No `.await` happens while this lock is held: it guards a few pointer copies.
    wakers: Mutex<Slab<Option<Waker>>>,
    phase: AtomicU8,
    emptied: Notify,
}

impl Default for Registry {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl Registry {
    /// A registry with room for `capacity` connections before it grows. Reserving the most
    /// connections the server can hold costs nothing until used (untouched pages are not
    /// resident) and avoids doubling growth, which left up to half the slots idle.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            wakers: Mutex::new(Slab::with_capacity(capacity)),
            phase: AtomicU8::new(Phase::Serving as u8),
            emptied: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slab<Option<Waker>>> {
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a connection; returns its slot.
    pub fn insert(&self) -> u32 {
        let key = self.lock().insert(None);
        // Slab keys are dense indices, bounded by the number of open descriptors.
        u32::try_from(key).unwrap_or(u32::MAX)
    }

    /// Removes a connection; wakes [`Registry::wait_empty`] when it was the last one.
    pub fn remove(&self, slot: u32) {
        let mut wakers = self.lock();
        wakers.try_remove(slot as usize);
        if wakers.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Remembers the waker of the connection in `slot`, unless it is already known.
    pub fn register(&self, slot: u32, waker: &Waker) {
        if let Some(entry) = self.lock().get_mut(slot as usize) {
            match entry {
                Some(known) if known.will_wake(waker) => {}
                _ => *entry = Some(waker.clone()),
            }
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Moves to `phase` (never backwards) and wakes every connection so each sees it.
    pub fn advance(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::AcqRel);
        // Taking the lock after the store pairs with `register`: a connection either registered
        // before this wake-up, or reads the new phase after registering.
        for (_, waker) in self.lock().iter() {
            if let Some(waker) = waker {
                waker.wake_by_ref();
            }
        }
    }

    /// Number of live connections.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Completes once no connection is live.
    pub async fn wait_empty(&self) {
        loop {
            let notified = self.emptied.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_empty() {
                return;
            }
            notified.await;
        }
    }
}
