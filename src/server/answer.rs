//! What a connection writes back to its client, by mode: nothing (print), its own bytes
//! (echo), the room's messages (chat, broker), or a command's output (exec). The connection core (`conn.rs`) calls these
//! at fixed points of its life; the state is boxed and made on first use, so an idle client
//! holds none of it.

use std::task::{Context, Poll};

use super::Shared;
use super::echo::Echo;
use super::exec::Exec;
use super::relay::Relay;
use super::socket::Socket;
use super::transcript::End;
use super::wire::Wire;
use crate::config::Mode;
use crate::output::Origin;

/// The state of a mode that answers its client.
pub(super) enum Answer {
    /// `--mode echo`: bytes the client has not taken back yet.
    Echo(Echo),
    /// `--mode chat` and `--mode broker`: the client's place in the room.
    Relay(Relay),
    /// `--exec`: the connection's command (boxed: the other modes' answers stay small).
    Exec(Box<Exec>),
}

impl Answer {
    /// Once the greeting is out: a broker client joins the room (not before, or a client that
    /// does not take its greeting would be a reader nobody watches); an exec client's command
    /// starts. An error when the command cannot be run.
    pub fn greeted(
        answer: &mut Option<Box<Answer>>,
        shared: &Shared,
        origin: Origin,
        socket: &dyn Socket,
    ) -> Result<(), End> {
        if answer.is_some() {
            return Ok(());
        }
        let id = origin.conn.unwrap_or(0);
        match shared.config.mode {
            Mode::Broker => *answer = Some(Box::new(Answer::Relay(Relay::join_broker(shared, id)))),
            Mode::Exec => {
                let local = super::socket::local_addr(socket);
                *answer = Some(Box::new(Answer::Exec(Box::new(Exec::spawn(shared, origin, local)?))));
            }
            _ => {}
        }
        Ok(())
    }

    /// Acts on input read earlier and held back while the room was congested; true when there
    /// was some (the socket is not read until it is all handled).
    pub fn handle_backlog(answer: &mut Option<Box<Answer>>, shared: &Shared, id: u64) -> bool {
        match answer.as_deref_mut() {
            Some(Answer::Relay(relay)) if !relay.backlog.is_empty() => {
                let backlog = std::mem::take(&mut relay.backlog);
                super::chat::received(relay, shared, id, &backlog);
                true
            }
            _ => false,
        }
    }

    /// Written to every client of `mode` after the greeting.
    pub fn banner(mode: Mode) -> &'static [u8] {
        match mode {
            Mode::Chat => super::chat::WELCOME.as_bytes(),
            _ => b"",
        }
    }

    fn relay(answer: &mut Option<Box<Answer>>) -> &mut Relay {
        let answer = answer.get_or_insert_with(|| Box::new(Answer::Relay(Relay::new())));
        match answer.as_mut() {
            Answer::Relay(relay) => relay,
            _ => unreachable!("a connection keeps its mode"),
        }
    }

    fn echo(answer: &mut Option<Box<Answer>>) -> &mut Echo {
        let answer = answer.get_or_insert_with(|| Box::new(Answer::Echo(Echo::default())));
        match answer.as_mut() {
            Answer::Echo(echo) => echo,
            _ => unreachable!("a connection keeps its mode"),
        }
    }

    /// Writes what the client is owed, as far as its socket takes it; an error ends the
    /// connection (a failed write, or a relay client found too slow).
    pub fn poll_write(
        answer: &mut Option<Box<Answer>>,
        wire: &mut Wire<'_>,
        shared: &Shared,
        id: u64,
        cx: &mut Context<'_>,
    ) -> Result<(), End> {
        let idle = match answer.as_deref_mut() {
            None => return Ok(()),
            Some(Answer::Echo(echo)) => {
                echo.poll_write(wire, cx)?;
                !echo.has_unsent()
            }
            Some(Answer::Relay(relay)) => {
                relay.poll_write(wire, &shared.room, cx)?;
                relay.poll_health(shared, id, cx)?;
                relay.is_idle_outsider()
            }
            Some(Answer::Exec(exec)) => {
                exec.poll_write(wire, shared, cx)?;
                false
            }
        };
        if idle {
            // Nothing owed and nothing to remember: an idle client keeps none of it.
            *answer = None;
        }
        Ok(())
    }

    /// After the connection ended: ready once everything owed is written or cannot be.
    pub fn poll_flush(
        answer: &mut Option<Box<Answer>>,
        wire: &mut Wire<'_>,
        shared: &Shared,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let written = match answer.as_deref_mut() {
            None => Ok(()),
            Some(Answer::Echo(echo)) => echo.poll_write(wire, cx),
            Some(Answer::Relay(relay)) => relay.poll_write(wire, &shared.room, cx),
            // The command's output is all sent before an exec connection ends.
            Some(Answer::Exec(_)) => Ok(()),
        };
        if written.is_err() {
            return Poll::Ready(());
        }
        if Answer::has_unsent(answer) {
            return Poll::Pending;
        }
        // TLS may still hold the last records (and the mode's last bytes) for the socket.
        match wire.poll_write_ready(cx) {
            Poll::Ready(Ok(())) if wire.has_unsent() => Poll::Pending,
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Ready when the client may be read: its echo has gone out, or its room is not waiting
    /// for a reader to catch up.
    pub fn poll_ready_for_input(
        answer: &Option<Box<Answer>>,
        shared: &Shared,
        id: u64,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        match answer.as_deref() {
            None => Poll::Ready(()),
            Some(Answer::Echo(echo)) if echo.has_unsent() => Poll::Pending,
            Some(Answer::Echo(_)) => Poll::Ready(()),
            Some(Answer::Relay(relay)) => relay.poll_open(&shared.room, id, cx),
            // Woken by the command taking its input, or by its output.
            Some(Answer::Exec(exec)) if exec.ready_for_input() => Poll::Ready(()),
            Some(Answer::Exec(_)) => Poll::Pending,
        }
    }

    /// Acts on bytes just read.
    pub fn received(
        answer: &mut Option<Box<Answer>>,
        wire: &mut Wire<'_>,
        shared: &Shared,
        id: u64,
        data: &[u8],
    ) -> Result<(), End> {
        match shared.config.mode {
            Mode::Print => Ok(()),
            Mode::Echo => match answer.as_deref_mut() {
                Some(Answer::Echo(echo)) => echo.received(wire, data),
                _ => match Echo::write_now(wire, data)? {
                    [] => Ok(()),
                    rest => Answer::echo(answer).received(wire, rest),
                },
            },
            Mode::Broker => {
                Answer::relay(answer).broadcast(shared, id, data);
                Ok(())
            }
            Mode::Chat => {
                super::chat::received(Answer::relay(answer), shared, id, data);
                Ok(())
            }
            Mode::Exec => {
                if let Some(Answer::Exec(exec)) = answer.as_deref_mut() {
                    exec.received(data);
                }
                Ok(())
            }
        }
    }

    /// The client closed its sending side: how the connection ends, or `None` when it goes on
    /// (an exec command still has output to send).
    pub fn input_ended(answer: &mut Option<Box<Answer>>, shared: &Shared, id: u64) -> Option<End> {
        match answer.as_deref_mut() {
            Some(Answer::Relay(relay)) => {
                super::chat::input_ended(relay, shared, id);
                if relay.quit {
                    return Some(End::Quit);
                }
            }
            Some(Answer::Exec(exec)) => {
                exec.input_ended();
                return None;
            }
            _ => {}
        }
        Some(End::ClosedByClient)
    }

    /// True when a chat client asked to leave.
    pub fn quit(answer: &Option<Box<Answer>>) -> bool {
        matches!(answer.as_deref(), Some(Answer::Relay(relay)) if relay.quit)
    }

    /// True while the client is owed bytes.
    pub fn has_unsent(answer: &Option<Box<Answer>>) -> bool {
        match answer.as_deref() {
            None => false,
            Some(Answer::Echo(echo)) => echo.has_unsent(),
            Some(Answer::Relay(relay)) => relay.has_unsent(),
            Some(Answer::Exec(exec)) => exec.has_unsent(),
        }
    }

    /// Queues the shutdown notice behind what the client is owed.
    pub fn notice(answer: &mut Option<Box<Answer>>, shared: &Shared, notice: &[u8]) {
        match shared.config.mode {
            // The command owns what its client reads: nothing may be put in the middle of it.
            Mode::Print | Mode::Exec => {}
            Mode::Echo => Answer::echo(answer).queue(notice),
            Mode::Chat | Mode::Broker => Answer::relay(answer).reply(shared, notice),
        }
    }

    /// Queues a line from the web console for the client, behind what it is already owed.
    pub fn console(answer: &mut Option<Box<Answer>>, shared: &Shared, text: &[u8]) {
        match shared.config.mode {
            Mode::Print | Mode::Echo => Answer::echo(answer).queue(text),
            Mode::Chat | Mode::Broker => Answer::relay(answer).reply(shared, text),
            Mode::Exec => {
                if let Some(Answer::Exec(exec)) = answer.as_deref_mut() {
                    exec.queue(text);
                }
            }
        }
    }

    /// Leaves the room (once), telling the others in chat mode.
    pub fn leave(answer: &mut Option<Box<Answer>>, shared: &Shared, id: u64, end: &End) {
        match answer.as_deref_mut() {
            Some(Answer::Relay(relay)) => relay.leave(shared, id, end),
            Some(Answer::Exec(exec)) => exec.leave(end),
            _ => {}
        }
    }
}
