//! The parking lot: idle print-mode connections leave the runtime and wait, as a descriptor and
//! a few fields, in an epoll set of their own that one thread watches; when one turns readable
//! (data, its end, an error) it gets a task again.
//!
//! A connection waiting as a task costs a task cell and the runtime's readiness record, both
//! cache-line aligned: about half a KiB, before any state of its own. Parked, it costs its entry
//! here and its registry slot. The same thread ticks the idle clock: each tick advances the epoch
//! and wakes the connections that still have a task, and one that has read nothing for
//! `IDLE_TICKS` ticks parks itself (it alone knows whether it holds nothing a task must keep).
//! A parked connection's timeouts keep counting: the thread also sleeps until the soonest of
//! them, and resumes the connection it belongs to, which then closes as timed out.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;
use std::{io, thread};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use tokio::time::Instant;

use super::Shared;
use super::registry::{MAX_RESERVED_SLOTS, Phase};
use super::timer::Resting;
use super::transcript::Transcript;
use crate::output::Peer;

/// Ticks without a read after which a connection parks: idle between `IDLE_TICKS - 1` and
/// `IDLE_TICKS` tick periods, so a tick is `--park-after` divided by `IDLE_TICKS - 1`.
const IDLE_TICKS: u8 = 3;
/// The token of the lot's own waker (slab keys are bounded by the descriptor limit).
const WAKE: Token = Token(usize::MAX);
/// Readiness events taken per wait.
const EVENTS_PER_WAIT: usize = 1024;

/// Gives a parked connection a task again (the kind of stream is known where it parked).
pub(super) type Resume = fn(Arc<Shared>, OwnedFd, IdleState);

/// A parked connection: its socket, and how to give it a task again.
pub(super) struct Parked {
    /// The socket (non-blocking), registered with the lot only.
    pub fd: OwnedFd,
    pub resume: Resume,
    pub state: IdleState,
}

/// What an idle connection keeps besides its socket: enough to carry on where it stopped.
pub(super) struct IdleState {
    /// The unfinished line and the counters.
    pub transcript: Transcript,
    pub peer: Peer,
    pub id: u64,
    pub slot: u32,
    /// Its timeouts, when any are set; due ones are resumed to close.
    pub deadlines: Option<Box<Resting>>,
}

/// The parked connections, and the deadlines of those that have any, soonest first.
struct Table {
    parked: Slab<Parked>,
    dues: BTreeSet<(Instant, usize)>,
}

/// Idle connections outside the runtime, and the idle clock.
pub(super) struct Lot {
    registry: mio::Registry,
    waker: mio::Waker,
    /// Taken by the watching thread when it starts.
    poll: Mutex<Option<Poll>>,
    table: Mutex<Table>,
    epoch: AtomicU8,
    tick: Duration,
    /// The watching thread runs: connections may park.
    running: AtomicBool,
    /// A connection could not park (and stays a task): said once.
    warned: AtomicBool,
}

impl std::fmt::Debug for Lot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lot").field("parked", &self.len()).field("tick", &self.tick).finish()
    }
}

impl Lot {
    /// A lot for connections idle for `park_after`, with room for `capacity` before it grows
    /// (reserved like the registry: untouched pages cost nothing).
    pub fn new(park_after: Duration, capacity: usize) -> io::Result<Lot> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), WAKE)?;
        let tick = (park_after / u32::from(IDLE_TICKS - 1)).max(Duration::from_millis(1));
        Ok(Lot {
            registry,
            waker,
            poll: Mutex::new(Some(poll)),
            table: Mutex::new(Table {
                parked: Slab::with_capacity(capacity.min(MAX_RESERVED_SLOTS)),
                dues: BTreeSet::new(),
            }),
            epoch: AtomicU8::new(0),
            tick,
            running: AtomicBool::new(false),
            warned: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The idle clock: connections note it at each read.
    pub fn epoch(&self) -> u8 {
        self.epoch.load(Ordering::Relaxed)
    }

    /// True when a connection that last read at `read_epoch` has been idle long enough.
    pub fn is_idle(&self, read_epoch: u8) -> bool {
        self.epoch().wrapping_sub(read_epoch) >= IDLE_TICKS
    }

    /// True while connections may park.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Says, once, that idle connections stay tasks for want of `err` (they try again after
    /// another idle period).
    pub fn could_not_park(&self, err: &io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("cannot park an idle connection ({err}); it stays a task for now");
        }
    }

    /// Connections parked now.
    pub fn len(&self) -> usize {
        self.lock().parked.len()
    }

    /// Starts the thread that resumes readable connections and ticks the idle clock; it ends
    /// with [`Lot::stop`] or when the server's state is gone.
    pub fn start(shared: &Arc<Shared>) -> io::Result<()> {
        let Some(lot) = shared.parking.as_ref() else { return Ok(()) };
        let taken = lot.poll.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(poll) = taken else { return Ok(()) };
        let (weak, runtime) = (Arc::downgrade(shared), tokio::runtime::Handle::current());
        lot.running.store(true, Ordering::Release);
        let started = thread::Builder::new().name("hubcat-parking".into()).spawn(move || {
            // Resumed connections are spawned on, and register their sockets with, the runtime.
            let _entered = runtime.enter();
            watch(poll, &weak);
        });
        if let Err(err) = started {
            lot.stop();
            return Err(err);
        }
        Ok(())
    }

    /// Parks a connection (its waker is already out of the registry); gives it back when the
    /// socket cannot be watched.
    pub fn park(&self, parked: Parked, shared: &Arc<Shared>) -> Result<(), Parked> {
        let key = {
            let mut table = self.lock();
            // Looked at under the lock: a thread that stops and then resumes everyone finds
            // this connection, or this connection finds it stopped.
            if !self.running.load(Ordering::Acquire) {
                return Err(parked);
            }
            let entry = table.parked.vacant_entry();
            let key = entry.key();
            // Registered before the entry is there, under the lock: a readiness event for it
            // waits for the lock. A socket readable already is reported at once.
            let fd = parked.fd.as_raw_fd();
            if let Err(err) = self.registry.register(&mut SourceFd(&fd), Token(key), Interest::READABLE) {
                self.could_not_park(&err);
                return Err(parked);
            }
            let due = due_of(&parked, shared);
            entry.insert(parked);
            if let Some(due) = due {
                let sooner = table.dues.first().is_none_or(|(next, _)| due < *next);
                table.dues.insert((due, key));
                if sooner {
                    // The watching thread sleeps until the deadline it knew of: it must wake sooner.
                    let _ = self.waker.wake();
                }
            }
            key
        };
        // A drain that began meanwhile has resumed everyone it found; this one too.
        if shared.registry.phase() != Phase::Serving {
            self.resume(key, shared);
        }
        Ok(())
    }

    /// Gives the connection under `key` its task again (nothing when it was resumed already).
    fn resume(&self, key: usize, shared: &Arc<Shared>) {
        let parked = {
            let mut table = self.lock();
            let Some(parked) = table.parked.try_remove(key) else { return };
            if let Some(due) = due_of(&parked, shared) {
                table.dues.remove(&(due, key));
            }
            // Under the lock, so the key is not reused while the old registration stands.
            let _ = self.registry.deregister(&mut SourceFd(&parked.fd.as_raw_fd()));
            parked
        };
        (parked.resume)(Arc::clone(shared), parked.fd, parked.state);
    }

    /// Gives every parked connection its task again (the server is draining: each must hear
    /// the notice, and close within the grace period).
    pub fn resume_all(&self, shared: &Arc<Shared>) {
        let all: Vec<Parked> = {
            let mut table = self.lock();
            table.dues.clear();
            let all: Vec<Parked> = table.parked.drain().collect();
            for parked in &all {
                let _ = self.registry.deregister(&mut SourceFd(&parked.fd.as_raw_fd()));
            }
            all
        };
        for parked in all {
            (parked.resume)(Arc::clone(shared), parked.fd, parked.state);
        }
    }

    /// Resumes the connections whose deadline has come (each closes, timed out); returns the
    /// soonest deadline still to come.
    fn resume_due(&self, shared: &Arc<Shared>) -> Option<Instant> {
        let now = Instant::now();
        let mut due = Vec::new();
        let next_due = {
            let mut table = self.lock();
            while table.dues.first().is_some_and(|(at, _)| *at <= now) {
                due.extend(table.dues.pop_first().map(|(_, key)| key));
            }
            table.dues.first().map(|(at, _)| *at)
        };
        // Only this thread takes connections out while serving, so each key is still theirs.
        for key in due {
            self.resume(key, shared);
        }
        next_due
    }

    /// Ends the watching thread; connections no longer park.
    pub fn stop(&self) {
        self.running.store(false, Ordering::Release);
        let _ = self.waker.wake();
    }
}

impl Drop for Lot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// When a parked connection's next deadline falls, if it has any (the same every time it is
/// asked while the connection is parked: nothing it counts from changes).
fn due_of(parked: &Parked, shared: &Shared) -> Option<Instant> {
    parked.state.deadlines.as_ref().and_then(|deadlines| deadlines.due(&shared.config))
}

/// The watching thread: resumes what turns readable, and ticks the idle clock.
fn watch(mut poll: Poll, shared: &Weak<Shared>) {
    let mut events = Events::with_capacity(EVENTS_PER_WAIT);
    let mut next_tick = Instant::now();
    let mut next_due: Option<Instant> = None;
    loop {
        let wake_at = next_due.map_or(next_tick, |due| due.min(next_tick));
        let timeout = wake_at.saturating_duration_since(Instant::now());
        if let Err(err) = poll.poll(&mut events, Some(timeout)) {
            if err.kind() != io::ErrorKind::Interrupted {
                tracing::error!("parking: cannot wait for idle connections: {err}; resuming them all");
                if let Some(shared) = shared.upgrade() {
                    if let Some(lot) = shared.parking.as_ref() {
                        lot.stop();
                        lot.resume_all(&shared);
                    }
                }
                return;
            }
        }
        // Held only between waits, so the server's state can go while this thread sleeps.
        let Some(shared) = shared.upgrade() else { return };
        let Some(lot) = shared.parking.as_ref() else { return };
        if !lot.running.load(Ordering::Acquire) {
            return;
        }
        for event in &events {
            if event.token() != WAKE {
                lot.resume(event.token().0, &shared);
            }
        }
        next_due = lot.resume_due(&shared);
        if Instant::now() >= next_tick {
            lot.epoch.fetch_add(1, Ordering::Relaxed);
            // Each connection with a task looks at the clock; the idle ones park.
            shared.registry.wake_all();
            next_tick = Instant::now() + lot.tick;
        }
    }
}
