//! A connection leaving its task for the parking lot and coming back: what it may take along
//! (the socket, the unfinished line, the times its deadlines count from) and when it may go.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::Context;

use tracing::debug;

use super::{Connection, Extras, greeting_len};
use crate::config::ServerConfig;
use crate::output::Origin;
use crate::server::Shared;
use crate::server::parking::{IdleState, Lot, Parked};
use crate::server::registry::Phase;
use crate::server::socket::Stream;
use crate::server::timer::{Deadlines, Resting};
use crate::server::transcript::End;

impl Extras {
    /// The extras of a connection back from the parking lot: its deadlines, if it had any.
    fn woken(deadlines: Option<Box<Resting>>, config: &ServerConfig) -> Option<Box<Extras>> {
        deadlines.map(|resting| {
            Box::new(Extras { deadlines: Some(Deadlines::wake(&resting, config)), ..Extras::default() })
        })
    }
}

impl<S: Stream> Connection<S> {
    /// A parked connection with its task again, carrying on where it stopped (greeted, idle).
    fn resumed(shared: Arc<Shared>, stream: S, parked: IdleState) -> Self {
        let greeted = greeting_len(&shared);
        let read_epoch = shared.parking.as_ref().map_or(0, Lot::epoch);
        let extras = Extras::woken(parked.deadlines, &shared.config);
        Connection {
            stream,
            shared,
            transcript: parked.transcript,
            extras,
            answer: None,
            peer: parked.peer,
            id: parked.id,
            slot: parked.slot,
            greeted,
            noticed: false,
            registered: false,
            read_epoch,
            parked: false,
        }
    }

    /// Moves an idle connection to the parking lot when that is all it is: print mode, past its
    /// greeting, nothing boxed but its deadlines, no read for a while, and the server serving.
    /// Then the only wait `poll_session` can have returned from is for the socket to be
    /// readable (or a deadline), and the socket, the unfinished line, the counters and the
    /// times the deadlines count from are all there is to keep.
    pub(super) fn try_park(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(lot) = self.shared.parking.as_ref() else { return false };
        // Asked at every wait for input, so what a busy connection fails first comes first.
        let idle = lot.is_idle(self.read_epoch)
            && lot.is_running()
            && self.extras.as_deref().is_none_or(Extras::holds_only_deadlines)
            && self.answer.is_none()
            && self.greeted as usize >= greeting_len(&self.shared) as usize
            && self.shared.registry.phase() == Phase::Serving;
        if !idle {
            return false;
        }
        // The lot keeps a descriptor of its own; this task's, registered with the runtime,
        // closes as the task ends. Out of descriptors, the connection stays a task for now.
        let fd = match self.stream.fd().try_clone_to_owned() {
            Ok(fd) => fd,
            Err(err) => {
                lot.could_not_park(&err);
                self.read_epoch = lot.epoch();
                return false;
            }
        };
        // The finished task's waker leaves the registry before anyone can resume the
        // connection and register the next one.
        self.shared.registry.forget_waker(self.slot);
        debug!("#{} {} idle: parked", self.id, self.peer);
        let deadlines = self.extras.take().and_then(|extras| extras.deadlines);
        let state = IdleState {
            transcript: std::mem::take(&mut self.transcript),
            peer: self.peer,
            id: self.id,
            slot: self.slot,
            deadlines: deadlines.map(|deadlines| Box::new(deadlines.rest())),
        };
        let parked = Parked { fd, resume: resume::<S>, state };
        match lot.park(parked, &self.shared) {
            Ok(()) => {
                self.parked = true;
                true
            }
            Err(parked) => {
                debug!("#{} {} not parked after all", self.id, self.peer);
                self.transcript = parked.state.transcript;
                self.extras = Extras::woken(parked.state.deadlines, &self.shared.config);
                self.read_epoch = lot.epoch();
                self.shared.registry.register(self.slot, cx.waker());
                // Polled again: the timer made anew, and a phase change made while the registry
                // held no waker for this connection, are seen then.
                cx.waker().wake_by_ref();
                false
            }
        }
    }
}

/// Gives a parked connection its task again: the socket registered with the runtime anew.
fn resume<S: Stream>(shared: Arc<Shared>, fd: OwnedFd, state: IdleState) {
    match S::from_fd(fd) {
        Ok(stream) => {
            tokio::spawn(Connection::resumed(shared, stream, state));
        }
        Err(err) => {
            let IdleState { mut transcript, peer, id, slot, .. } = state;
            tracing::warn!("#{id} {peer}: cannot resume the idle connection: {err}; closing it");
            transcript.close(&shared, Origin { conn: Some(id), peer }, &End::Failed(err));
            shared.registry.remove(slot, peer.ip());
        }
    }
}
