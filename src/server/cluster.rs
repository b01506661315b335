//! `--cluster redis://HOST:PORT/ROOM`: one chat or broker room across several hubcat
//! instances, through Redis pub/sub. Each instance publishes what its own clients say and
//! delivers what the others publish to its own clients; nicknames are announced, so a name in
//! use on one instance is refused on the others. Redis is a link, never a dependency: while it
//! is down, each instance relays among its own clients, says so once, and reconnects by itself.
//!
//! Frames on the channel: the sender's instance number (8 bytes), a kind (`M` message, `J`
//! nickname joined or still here, `L` nickname left, `H` hello: tell me your nicknames), then
//! the payload. Announced nicknames are forgotten after [`NICK_TTL`] without a refresh, so
//! those of an instance that died free up by themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::Shared;
use super::outbox::Message;
use crate::config::Mode;

/// Frames waiting to be published; past this, new ones are dropped: a slow or
/// absent Redis never holds the room back.
const OUTGOING: usize = 8192;
/// How often an instance announces its nicknames again.
const REFRESH: Duration = Duration::from_secs(10);
/// How long an announced nickname is kept without a refresh.
const NICK_TTL: Duration = Duration::from_secs(30);
/// Pauses between attempts to reach Redis: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Where the room lives: the Redis server and the channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterUrl {
    /// `redis://HOST:PORT/` (the room's name taken off).
    pub redis: String,
    /// The room's name.
    pub room: String,
}

impl ClusterUrl {
    /// Parses `redis://HOST:PORT/ROOM`.
    pub fn parse(text: &str) -> Result<ClusterUrl, String> {
        let rest = text
            .strip_prefix("redis://")
            .ok_or_else(|| format!("--cluster {text:?}: expected redis://HOST:PORT/ROOM"))?;
        let (server, room) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if server.is_empty() || room.is_empty() || !room.chars().all(valid) || room.len() > 64 {
            return Err(format!(
                "--cluster {text:?}: expected redis://HOST:PORT/ROOM, ROOM of letters, digits, - _ ."
            ));
        }
        Ok(ClusterUrl { redis: format!("redis://{server}/"), room: room.to_string() })
    }
}

/// A link made with the room, and the frames its task is to publish once the server runs.
pub(super) type Pending = (Arc<Link>, mpsc::Receiver<Vec<u8>>);

/// This instance's side of the link, shared by the room and the link's task.
#[derive(Debug)]
pub(super) struct Link {
    instance: u64,
    out: mpsc::Sender<Vec<u8>>,
    /// Nicknames announced by other instances (lowercase), and when last heard of.
    remote_nicks: Mutex<HashMap<String, Instant>>,
}

impl Link {
    /// A link and the frames it will publish.
    pub fn new() -> (Arc<Link>, mpsc::Receiver<Vec<u8>>) {
        let (out, frames) = mpsc::channel(OUTGOING);
        let instance = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        let link = Link { instance, out, remote_nicks: Mutex::default() };
        (Arc::new(link), frames)
    }

    fn frame(&self, kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::with_capacity(9 + payload.len());
        frame.extend_from_slice(&self.instance.to_be_bytes());
        frame.push(kind);
        frame.extend_from_slice(payload);
        frame
    }

    fn publish(&self, kind: u8, payload: &[u8]) {
        // Full or closed: this frame is lost to the other instances, never held.
        let _ = self.out.try_send(self.frame(kind, payload));
    }

    /// What a local client said, for the other instances.
    pub fn message(&self, message: &[u8]) {
        self.publish(b'M', message);
    }

    /// A local client took (or still has) `nick`.
    pub fn joined(&self, nick: &str) {
        self.publish(b'J', nick.as_bytes());
    }

    /// A local client gave up `nick`.
    pub fn left(&self, nick: &str) {
        self.publish(b'L', nick.as_bytes());
    }

    /// True when another instance has announced `nick` lately.
    pub fn taken_elsewhere(&self, nick: &str) -> bool {
        let mut nicks = self.nicks();
        nicks.retain(|_, seen| seen.elapsed() < NICK_TTL);
        nicks.contains_key(&nick.to_lowercase())
    }

    /// The nicknames other instances have announced lately.
    pub fn remote_nicks(&self) -> Vec<String> {
        let mut nicks = self.nicks();
        nicks.retain(|_, seen| seen.elapsed() < NICK_TTL);
        nicks.keys().cloned().collect()
    }

    fn nicks(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.remote_nicks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Acts on a frame from the channel (this instance's own, and bad ones, are ignored).
    fn receive(&self, frame: &[u8], shared: &Shared) {
        let Some((sender, rest)) = frame.split_first_chunk::<8>() else { return };
        let Some((&kind, payload)) = rest.split_first() else { return };
        if u64::from_be_bytes(*sender) == self.instance {
            return;
        }
        let nick = || String::from_utf8_lossy(payload).to_lowercase();
        match kind {
            // A chat line was escaped by the instance it came from; one that was not (written to
            // the channel by something else) never reaches a terminal.
            b'M' if shared.config.mode == Mode::Chat && !is_escaped_text(payload) => {}
            b'M' => shared.room.deliver(None, &Message::from(payload)),
            b'J' => {
                self.nicks().insert(nick(), Instant::now());
            }
            b'L' => {
                self.nicks().remove(&nick());
            }
            b'H' => self.announce(shared),
            _ => {}
        }
    }

    fn announce(&self, shared: &Shared) {
        for nick in shared.room.who() {
            self.joined(&nick);
        }
    }
}

/// True for text as chat lines are relayed: no control bytes but the newlines ending them.
fn is_escaped_text(text: &[u8]) -> bool {
    text.iter().all(|&b| b == b'\n' || (b >= 0x20 && b != 0x7f))
}

/// Keeps the link up until the server stops: subscribe, publish, refresh, and after a failure
/// report it once and try again with backoff.
pub(super) async fn run(
    link: Arc<Link>,
    url: ClusterUrl,
    mut frames: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let channel = format!("hubcat:{}", url.room);
    let mut pause = RETRY_FIRST;
    let mut down_since: Option<Instant> = None;
    loop {
        match serve_link(&link, &url, &channel, &mut frames, &shared, &mut down_since).await {
            Ok(()) => return,
            Err(err) if down_since.is_none() => {
                tracing::warn!(
                    "cluster: cannot reach {}: {err}; relaying among this server's clients, retrying",
                    url.redis
                );
                down_since = Some(Instant::now());
                pause = RETRY_FIRST;
            }
            Err(_) => {}
        }
        // What was said meanwhile does not pile up for a Redis that may never come back.
        while frames.try_recv().is_ok() {}
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

/// One life of the link; `Ok` only when the server stops (the frames' sender is gone).
async fn serve_link(
    link: &Link,
    url: &ClusterUrl,
    channel: &str,
    frames: &mut mpsc::Receiver<Vec<u8>>,
    shared: &Shared,
    down_since: &mut Option<Instant>,
) -> redis::RedisResult<()> {
    let client = redis::Client::open(url.redis.as_str())?;
    let mut publisher = client.get_multiplexed_async_connection().await?;
    let mut subscriber = client.get_async_pubsub().await?;
    subscriber.subscribe(channel).await?;
    if let Some(since) = down_since.take() {
        tracing::info!("cluster: {} is back after {:.1?}", url.redis, since.elapsed());
    }
    let mut incoming = subscriber.into_on_message();
    // Ask the others for their nicknames, and tell them ours.
    redis::cmd("PUBLISH").arg(channel).arg(link.frame(b'H', b"")).query_async::<i64>(&mut publisher).await?;
    link.announce(shared);
    let mut refresh = tokio::time::interval(REFRESH);
    loop {
        tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { return Ok(()) };
                redis::cmd("PUBLISH").arg(channel).arg(frame).query_async::<i64>(&mut publisher).await?;
            }
            message = incoming.next() => {
                let Some(message) = message else {
                    let closed = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "Redis closed the connection");
                    return Err(closed.into());
                };
                link.receive(message.get_payload_bytes(), shared);
            }
            _ = refresh.tick() => link.announce(shared),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let url = ClusterUrl::parse("redis://127.0.0.1:6379/lobby").expect("valid");
        assert_eq!(url, ClusterUrl { redis: "redis://127.0.0.1:6379/".into(), room: "lobby".into() });
        for bad in [
            "127.0.0.1:6379/lobby",
            "redis://127.0.0.1:6379",
            "redis://127.0.0.1:6379/",
            "redis:///x",
            "redis://h/a b",
        ] {
            assert!(ClusterUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
