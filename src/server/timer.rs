//! A connection's deadlines: first byte, idle and whole session, on one timer that is moved
//! only when it fires (a read just notes the time; it does not touch the timer wheel).

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep_until};

use crate::config::ServerConfig;
#[cfg(test)]
use crate::config::ServerSettings;

/// Which deadline closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expired {
    /// Nothing arrived within `--first-byte-timeout` of connecting.
    FirstByte(Duration),
    /// Nothing arrived for `--idle-timeout`.
    Idle(Duration),
    /// The connection reached `--max-duration`.
    Session(Duration),
}

impl Expired {
    /// The close reason, in words.
    pub fn describe(self) -> String {
        let human = |d: Duration| humantime::format_duration(d).to_string();
        match self {
            Expired::FirstByte(d) => format!("sent nothing within {} (first-byte timeout)", human(d)),
            Expired::Idle(d) => format!("idle for {} (idle timeout)", human(d)),
            Expired::Session(d) => format!("open for {} (maximum duration)", human(d)),
        }
    }
}

/// The deadlines of a parked connection: only what they count from, without a timer (32
/// bytes: the parking lot keeps when each falls in its own ordered index).
#[derive(Clone, Copy, Debug)]
pub struct Resting {
    opened: Instant,
    last_read: Option<Instant>,
}

impl Resting {
    /// When the next deadline falls (`None`: never).
    pub fn due(&self, config: &ServerConfig) -> Option<Instant> {
        next_deadline(self.opened, self.last_read, config).map(|(at, _)| at)
    }
}

/// The deadlines of one connection.
pub struct Deadlines {
    sleep: Pin<Box<Sleep>>,
    opened: Instant,
    last_read: Option<Instant>,
}

impl Deadlines {
    /// Deadlines for a connection opened now; `None` when no timeout is configured.
    pub fn start(config: &ServerConfig) -> Option<Deadlines> {
        if !config.has_timeouts() {
            return None;
        }
        let opened = Instant::now();
        let mut deadlines = Deadlines { sleep: Box::pin(sleep_until(opened)), opened, last_read: None };
        if let Some((at, _)) = deadlines.next(config) {
            deadlines.sleep.as_mut().reset(at);
        }
        Some(deadlines)
    }

    /// Gives up the timer for a connection that parks.
    pub fn rest(self) -> Resting {
        Resting { opened: self.opened, last_read: self.last_read }
    }

    /// The deadlines of a parked connection that has a task again.
    pub fn wake(resting: &Resting, config: &ServerConfig) -> Deadlines {
        let Resting { opened, last_read } = *resting;
        let mut deadlines = Deadlines { sleep: Box::pin(sleep_until(opened)), opened, last_read };
        if let Some((at, _)) = deadlines.next(config) {
            deadlines.sleep.as_mut().reset(at);
        }
        deadlines
    }

    /// Notes that data arrived.
    pub fn read(&mut self) {
        self.last_read = Some(Instant::now());
    }

    /// Ready with the deadline that passed, if one has.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>, config: &ServerConfig) -> Poll<Expired> {
        loop {
            let Some((at, expired)) = self.next(config) else { return Poll::Pending };
            if Instant::now() >= at {
                return Poll::Ready(expired);
            }
            if self.sleep.deadline() != at {
                self.sleep.as_mut().reset(at);
            }
            ready!(self.sleep.as_mut().poll(cx));
        }
    }

    /// The earliest deadline still to come, and what it is.
    fn next(&self, config: &ServerConfig) -> Option<(Instant, Expired)> {
        next_deadline(self.opened, self.last_read, config)
    }
}

/// The earliest deadline of a connection opened at `opened` that last read at `last_read`.
fn next_deadline(
    opened: Instant,
    last_read: Option<Instant>,
    config: &ServerConfig,
) -> Option<(Instant, Expired)> {
    // A deadline past what the clock can hold never comes.
    let first_byte = match (config.first_byte_timeout, last_read) {
        (Some(d), None) => opened.checked_add(d).map(|at| (at, Expired::FirstByte(d))),
        _ => None,
    };
    let idle = config
        .idle_timeout
        .and_then(|d| Some((last_read.unwrap_or(opened).checked_add(d)?, Expired::Idle(d))));
    let session = config.max_duration.and_then(|d| Some((opened.checked_add(d)?, Expired::Session(d))));
    [first_byte, idle, session].into_iter().flatten().min_by_key(|(at, _)| *at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(first_byte: Option<u64>, idle: Option<u64>, session: Option<u64>) -> ServerConfig {
        let secs = |s: Option<u64>| s.map(Duration::from_secs);
        ServerConfig::new(ServerSettings {
            first_byte_timeout: secs(first_byte),
            idle_timeout: secs(idle),
            max_duration: secs(session),
            ..ServerSettings::default()
        })
        .expect("valid settings")
    }

    async fn expiry(deadlines: &mut Deadlines, config: &ServerConfig) -> Expired {
        std::future::poll_fn(|cx| deadlines.poll_expired(cx, config)).await
    }

    #[tokio::test(start_paused = true)]
    async fn first_byte_then_idle_then_session() {
        let cfg = config(Some(5), Some(10), Some(60));
        let mut d = Deadlines::start(&cfg).expect("timeouts configured");
        assert_eq!(expiry(&mut d, &cfg).await, Expired::FirstByte(Duration::from_secs(5)));

        let mut d = Deadlines::start(&cfg).expect("timeouts configured");
        tokio::time::advance(Duration::from_secs(4)).await;
        d.read();
        let start = Instant::now();
        assert_eq!(expiry(&mut d, &cfg).await, Expired::Idle(Duration::from_secs(10)));
        assert_eq!(Instant::now() - start, Duration::from_secs(10));

        let cfg = config(None, Some(10), Some(25));
        let mut d = Deadlines::start(&cfg).expect("timeouts configured");
        for _ in 0..5 {
            tokio::time::advance(Duration::from_secs(8)).await;
            d.read(); // busy, never idle for 10 s
        }
        assert_eq!(expiry(&mut d, &cfg).await, Expired::Session(Duration::from_secs(25)));
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_carry_over_a_rest() {
        let cfg = config(None, Some(10), Some(60));
        let mut d = Deadlines::start(&cfg).expect("timeouts configured");
        tokio::time::advance(Duration::from_secs(3)).await;
        d.read();
        let resting = d.rest();
        assert_eq!(resting.due(&cfg), Some(Instant::now() + Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(4)).await;
        let mut d = Deadlines::wake(&resting, &cfg);
        let start = Instant::now();
        assert_eq!(expiry(&mut d, &cfg).await, Expired::Idle(Duration::from_secs(10)));
        assert_eq!(Instant::now() - start, Duration::from_secs(6), "counted from the read, not the wake");
    }

    #[test]
    fn nothing_to_do_without_timeouts() {
        assert!(Deadlines::start(&ServerConfig::default()).is_none());
    }
}
