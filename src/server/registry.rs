//! The table of live connections: the caps (in all and per client address), the server's phase,
//! and a waker per connection so a phase change reaches even the idle ones.
//!
//! A slab of wakers costs 16 bytes per connection in one dense array (a plain `Waker`, with
//! `Waker::noop()` until the task first runs: an `Option` would make each slot 24 bytes). Per-connection
//! futures such as `CancellationToken::cancelled()` would add 50-100 bytes to every task and push
//! its allocation into the next 128-byte size class (see issue 3's memory target). A slot is
//! taken before a connection's task starts and given back when the task's state is dropped, on
//! every exit path, like an owned semaphore permit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use slab::Slab;
use tokio::sync::Notify;

/// Slots reserved up front at most: beyond, the table grows (a container's descriptor limit
/// can be a billion, which no reservation should follow).
pub(super) const MAX_RESERVED_SLOTS: usize = 1 << 20;
/// Slots woken per hold of the lock by [`Registry::wake_all`].
const WAKE_BLOCK: usize = 1024;

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

/// Why a new connection was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The server holds `--max-conns` connections.
    Full,
    /// The client's address holds `--max-conns-per-ip` connections.
    PerAddress,
    /// The process is out of file descriptors (the client was accepted on the reserve one).
    OutOfDescriptors,
    /// The client's address is not allowed by `--allow`/`--deny`.
    Denied,
    /// The client's address opened connections faster than `--max-conn-rate-per-ip`.
    TooFast,
    /// With `--proxy-protocol`: not from `--proxy-from`, or no valid PROXY header.
    NotProxied,
}

/// Live connections and the phase they follow.
#[derive(Debug)]
pub struct Registry {
    /// No `.await` happens while this lock is held: it guards a few pointer and counter updates.
    table: Mutex<Table>,
    max_conns: usize,
    max_per_address: Option<usize>,
    phase: AtomicU8,
    emptied: Notify,
}

#[derive(Debug, Default)]
struct Table {
    wakers: Slab<Waker>,
    /// Connections per client address; kept only when there is a per-address cap.
    per_address: HashMap<IpAddr, usize>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(usize::MAX, None, 0)
    }
}

impl Registry {
    /// A registry that admits `max_conns` connections, `max_per_address` from one address, with
    /// room for `capacity` before it grows. Reserving the most connections the server can hold
    /// costs nothing until used (untouched pages are not resident) and avoids doubling growth,
    /// which left up to half the slots idle.
    pub fn new(max_conns: usize, max_per_address: Option<usize>, capacity: usize) -> Self {
        Self {
            table: Mutex::new(Table {
                wakers: Slab::with_capacity(capacity.min(max_conns).min(MAX_RESERVED_SLOTS)),
                ..Table::default()
            }),
            max_conns,
            max_per_address,
            phase: AtomicU8::new(Phase::Serving as u8),
            emptied: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection from `address` unless a cap is reached; returns its slot.
    pub fn try_insert(&self, address: Option<IpAddr>) -> Result<u32, Refusal> {
        let mut table = self.lock();
        if table.wakers.len() >= self.max_conns {
            return Err(Refusal::Full);
        }
        if let (Some(max), Some(address)) = (self.max_per_address, address) {
            let count = table.per_address.entry(address).or_default();
            if *count >= max {
                return Err(Refusal::PerAddress);
            }
            *count += 1;
        }
        // Slab keys are dense indices, bounded by the number of open descriptors.
        Ok(u32::try_from(table.wakers.insert(Waker::noop().clone())).unwrap_or(u32::MAX))
    }

    /// Gives back the slot of a connection from `address`; wakes [`Registry::wait_empty`] when
    /// it was the last one.
    pub fn remove(&self, slot: u32, address: Option<IpAddr>) {
        let mut table = self.lock();
        table.wakers.try_remove(slot as usize);
        if let (Some(_), Some(address)) = (self.max_per_address, address) {
            if let Some(count) = table.per_address.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    table.per_address.remove(&address);
                }
            }
        }
        if table.wakers.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Remembers the waker of the connection in `slot`, unless it is already known.
    pub fn register(&self, slot: u32, waker: &Waker) {
        if let Some(known) = self.lock().wakers.get_mut(slot as usize) {
            if !known.will_wake(waker) {
                known.clone_from(waker);
            }
        }
    }

    /// Forgets the waker of the connection in `slot`, which is leaving its task for the parking
    /// lot: a finished task's waker would keep its memory alive. Its next task registers anew.
    pub fn forget_waker(&self, slot: u32) {
        if let Some(known) = self.lock().wakers.get_mut(slot as usize) {
            *known = Waker::noop().clone();
        }
    }

    /// Wakes the connection in `slot` (the console left it something).
    pub fn wake(&self, slot: u32) {
        if let Some(waker) = self.lock().wakers.get(slot as usize) {
            waker.wake_by_ref();
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
        self.wake_all();
    }

    /// Wakes every connection that has a task (parked ones hold a no-op waker), a block of
    /// slots at a time so that admitting and closing connections never wait for all of them.
    pub fn wake_all(&self) {
        let mut from = 0;
        let mut used = None;
        loop {
            let table = self.lock();
            // Found once: a slot filled later reads the phase after registering (see `advance`).
            let used =
                *used.get_or_insert_with(|| table.wakers.iter().next_back().map_or(0, |(last, _)| last + 1));
            let end = used.min(from + WAKE_BLOCK);
            for slot in from..end {
                if let Some(waker) = table.wakers.get(slot) {
                    waker.wake_by_ref();
                }
            }
            if end >= used {
                return;
            }
            from = end;
        }
    }

    /// Number of live connections.
    pub fn len(&self) -> usize {
        self.lock().wakers.len()
    }

    /// True when no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Completes once no connection is live.
    pub async fn wait_empty(&self) {
        crate::notify::until(&self.emptied, || self.is_empty()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_address() {
        let registry = Registry::new(3, Some(2), 0);
        let a = Some("127.0.0.2".parse::<IpAddr>().expect("valid"));
        let b = Some("127.0.0.3".parse::<IpAddr>().expect("valid"));
        let first = registry.try_insert(a).expect("room");
        registry.try_insert(a).expect("room");
        assert_eq!(registry.try_insert(a), Err(Refusal::PerAddress));
        registry.try_insert(b).expect("room");
        assert_eq!(registry.try_insert(b), Err(Refusal::Full));
        registry.remove(first, a);
        registry.try_insert(a).expect("a slot was given back");
        assert_eq!(registry.len(), 3);
    }
}
