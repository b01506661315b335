//! Flow control in chat and broker rooms (issue 8): one client floods the room, a fast reader
//! gets every byte in order and is never evicted, a stalled reader is handled by the slow-client
//! policy within `--slow-timeout` + 1 s, and a second sender's lines keep arriving meanwhile.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::TestServer;
use hubcat::ServerSettings;
use hubcat::config::{Mode, SlowClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes per flooded line, newline included (the 1 KB lines).
const LINE: usize = 1024;
/// How long the stalled reader may hold the room back in these tests.
const SLOW_TIMEOUT: Duration = Duration::from_secs(1);
/// Upper bound on a whole flood, so a stall fails the test instead of hanging it.
const FLOOD_LIMIT: Duration = Duration::from_secs(240);
/// How often the second sender speaks.
const TICK: Duration = Duration::from_millis(20);

/// Byte `at` of the flooding sender's stream: line `i` is 1023 copies of one letter, then `\n`.
fn flood_byte(at: u64) -> u8 {
    if at % LINE as u64 == LINE as u64 - 1 { b'\n' } else { b'a' + ((at / LINE as u64) % 26) as u8 }
}

fn flood_line(i: u64) -> Vec<u8> {
    (i * LINE as u64..(i + 1) * LINE as u64).map(flood_byte).collect()
}

/// Connects and, in chat mode, joins as `nick` and reads the welcome lines.
async fn join(addr: SocketAddr, mode: Mode, nick: &str) -> TcpStream {
    let mut stream = common::within(TcpStream::connect(addr)).await.expect("connects");
    if mode == Mode::Chat {
        stream.write_all(format!("{nick}\n").as_bytes()).await.expect("sends its nickname");
    }
    stream
}

/// What the fast reader saw.
#[derive(Default)]
struct Seen {
    flood_bytes: u64,
    /// The second sender's numbers, in the order they arrived.
    ticks: Vec<u64>,
    /// How many of them arrived while the flood was under way.
    ticks_mid_flood: usize,
}

/// Checks the fast reader's stream as it arrives, without keeping it: every flood byte in
/// order, every tick in order. Broker: flood bytes are `[a-z\n]`, ticks are `T<n>;`. Chat:
/// `<flood> LINE` and `<ticker> T<n>` lines, and `* ...` notices.
struct Checker {
    mode: Mode,
    total: u64,
    seen: Seen,
    /// An unfinished tick number (broker) or line (chat).
    partial: Vec<u8>,
}

impl Checker {
    fn feed(&mut self, data: &[u8]) {
        match self.mode {
            Mode::Chat => {
                for &byte in data {
                    if byte == b'\n' {
                        let line = std::mem::take(&mut self.partial);
                        self.chat_line(&line);
                    } else {
                        self.partial.push(byte);
                    }
                }
            }
            _ => {
                for &byte in data {
                    match byte {
                        b'a'..=b'z' | b'\n' => self.flood(&[byte]),
                        b'T' => self.partial.clear(),
                        b'0'..=b'9' => self.partial.push(byte),
                        b';' => {
                            let tick = std::mem::take(&mut self.partial);
                            self.tick(&tick);
                        }
                        other => panic!("unexpected byte {other:#x} at the fast reader"),
                    }
                }
            }
        }
    }

    fn chat_line(&mut self, line: &[u8]) {
        if let Some(text) = line.strip_prefix(b"<flood> ") {
            self.flood(text);
            self.flood(b"\n");
        } else if let Some(tick) = line.strip_prefix(b"<ticker> T") {
            self.tick(tick);
        } else {
            assert!(line.starts_with(b"* "), "unexpected line: {}", String::from_utf8_lossy(line));
        }
    }

    fn flood(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            let at = self.seen.flood_bytes;
            assert!(at < self.total, "more flood bytes than were sent");
            assert_eq!(byte, flood_byte(at), "flood byte {at} out of order or corrupted");
            self.seen.flood_bytes += 1;
        }
    }

    fn tick(&mut self, digits: &[u8]) {
        let n: u64 = std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()).expect("a tick number");
        assert_eq!(n, self.seen.ticks.len() as u64, "ticks arrive in order, none lost");
        self.seen.ticks.push(n);
        if self.seen.flood_bytes > 0 && self.seen.flood_bytes < self.total {
            self.seen.ticks_mid_flood += 1;
        }
    }
}

/// Runs one flood through a room and checks what everyone got.
async fn flood(mode: Mode, policy: SlowClient, megabytes: u64) {
    let config = ServerSettings {
        mode,
        slow_client: policy,
        slow_timeout: SLOW_TIMEOUT,
        max_line: 4 * LINE,
        ..ServerSettings::default()
    };
    let server = TestServer::start(config).await;
    let addr = server.addr;
    let mut fast = join(addr, mode, "fast").await;
    let stalled = join(addr, mode, "stalled").await;
    let ticker = join(addr, mode, "ticker").await;
    let mut flooder = join(addr, mode, "flood").await;
    // Everyone is in the room once the fast reader has heard the last join (chat) or a first
    // tick (broker, which has no notices).
    if mode == Mode::Chat {
        let mut heard = Vec::new();
        while !String::from_utf8_lossy(&heard).contains("* flood joined\n") {
            let mut buf = [0; 1024];
            let n = common::within(fast.read(&mut buf)).await.expect("reads");
            assert!(n > 0, "the server closed the fast reader");
            heard.extend_from_slice(&buf[..n]);
        }
    } else {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let lines = megabytes * 1024 * 1024 / LINE as u64;
    let total = lines * LINE as u64;
    let flooding = Arc::new(AtomicBool::new(true));
    let started = Instant::now();

    // The stalled reader never reads; it only notices when the server resets it.
    let stalled_watch = tokio::spawn(async move {
        loop {
            if let Ok(Some(_)) = socket2::SockRef::from(&stalled).take_error() {
                return Some(started.elapsed());
            }
            if started.elapsed() > FLOOD_LIMIT {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    // The second sender reads what the room sends it too: it is a healthy reader as well.
    let (mut ticker_in, mut ticker) = ticker.into_split();
    let ticker_drain = tokio::spawn(async move {
        let mut sink = vec![0; 64 * 1024];
        while ticker_in.read(&mut sink).await.is_ok_and(|n| n > 0) {}
    });
    let ticks_sent = tokio::spawn({
        let flooding = Arc::clone(&flooding);
        async move {
            let mut n = 0u64;
            while flooding.load(Ordering::Acquire) {
                let tick = if mode == Mode::Chat { format!("T{n}\n") } else { format!("T{n};") };
                ticker.write_all(tick.as_bytes()).await.expect("the ticker is never cut off");
                n += 1;
                tokio::time::sleep(TICK).await;
            }
            (n, ticker)
        }
    });
    let sender = tokio::spawn({
        let flooding = Arc::clone(&flooding);
        async move {
            let mut chunk = Vec::with_capacity(64 * LINE);
            for i in 0..lines {
                chunk.extend_from_slice(&flood_line(i));
                if chunk.len() == 64 * LINE || i + 1 == lines {
                    flooder.write_all(&chunk).await.expect("the flooder is never cut off");
                    chunk.clear();
                }
            }
            flooding.store(false, Ordering::Release);
            flooder
        }
    });

    let mut checker = Checker { mode, total, seen: Seen::default(), partial: Vec::new() };
    let mut buffer = vec![0; 256 * 1024];
    let deadline = tokio::time::Instant::from_std(started + FLOOD_LIMIT);
    let mut ticks_sent = Some(ticks_sent);
    let mut ticker = None;
    loop {
        if let Some((expected, _)) = &ticker {
            if checker.seen.flood_bytes == total && checker.seen.ticks.len() as u64 == *expected {
                break;
            }
        }
        tokio::select! {
            read = fast.read(&mut buffer) => {
                let n = read.expect("the fast reader is never cut off");
                assert!(n > 0, "the server closed the fast reader");
                checker.feed(&buffer[..n]);
            }
            done = async { ticks_sent.as_mut().expect("still running").await }, if ticks_sent.is_some() => {
                ticker = Some(done.expect("ticker"));
                ticks_sent = None;
            }
            _ = tokio::time::sleep_until(deadline) => panic!(
                "the flood did not finish within {FLOOD_LIMIT:?}: {} of {total} bytes",
                checker.seen.flood_bytes
            ),
        }
    }
    let flood_time = started.elapsed();
    let flooder = sender.await.expect("flooder");
    let seen = &checker.seen;
    assert_eq!(seen.flood_bytes, total, "the fast reader got every flooded byte");
    assert!(
        seen.ticks_mid_flood >= 3,
        "the second sender was starved: {} of {} ticks arrived during the flood ({flood_time:?})",
        seen.ticks_mid_flood,
        seen.ticks.len()
    );

    let (summary, _) = match policy {
        SlowClient::Disconnect => {
            let reset = stalled_watch.await.expect("watch").expect("the stalled reader was disconnected");
            assert!(
                reset <= SLOW_TIMEOUT + Duration::from_secs(1),
                "the stalled reader held the room for {reset:?} (slow timeout {SLOW_TIMEOUT:?})"
            );
            drop(flooder);
            ticker_drain.abort();
            server.stop().await
        }
        SlowClient::Drop => {
            ticker_drain.abort();
            stalled_watch.abort();
            drop(flooder);
            server.stop().await
        }
    };
    match policy {
        SlowClient::Disconnect => assert_eq!(summary.kicked, 1, "only the stalled reader was disconnected"),
        SlowClient::Drop => {
            assert_eq!(summary.kicked, 0);
            assert!(summary.dropped > 0, "the stalled reader lost what it could not take");
        }
    }
    eprintln!(
        "{mode:?} {megabytes} MB: flood took {flood_time:?}; {} ticks, {} during the flood",
        seen.ticks.len(),
        seen.ticks_mid_flood
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_20_mb_flood_with_a_stalled_reader() {
    flood(Mode::Broker, SlowClient::Disconnect, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_20_mb_flood_with_a_stalled_reader() {
    flood(Mode::Chat, SlowClient::Disconnect, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_20_mb_flood_with_the_drop_policy() {
    flood(Mode::Chat, SlowClient::Drop, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_200_mb_flood_with_a_stalled_reader() {
    flood(Mode::Broker, SlowClient::Disconnect, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_200_mb_flood_with_a_stalled_reader() {
    flood(Mode::Chat, SlowClient::Disconnect, 200).await;
}

/// Sends `payload` from one client and checks that a reader that keeps reading gets all of
/// `expected_bytes` and is never cut off.
async fn burst_reaches_a_fast_reader(
    settings: ServerSettings,
    nick: &str,
    payload: Vec<u8>,
    expected_bytes: usize,
) {
    let mode = settings.mode;
    let server = TestServer::start(settings).await;
    let mut reader = join(server.addr, mode, "reader").await;
    let mut sender = join(server.addr, mode, nick).await;
    // Wait until both are in the room.
    let mut heard = Vec::new();
    if mode == Mode::Chat {
        while !String::from_utf8_lossy(&heard).contains(" joined\n") {
            let mut buf = [0; 1024];
            let n = common::within(reader.read(&mut buf)).await.expect("reads");
            assert!(n > 0, "closed");
            heard.extend_from_slice(&buf[..n]);
        }
    } else {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sending = tokio::spawn(async move {
        sender.write_all(&payload).await.expect("the sender is never cut off");
        sender
    });
    let mut got = 0;
    let mut buffer = vec![0; 256 * 1024];
    while got < expected_bytes {
        let n = common::within(reader.read(&mut buffer)).await.expect("the reader is never cut off");
        assert!(n > 0, "the server closed a reader that keeps up after {got} of {expected_bytes} bytes");
        got += n;
    }
    let _sender = sending.await.expect("sender");
    let (summary, _) = server.stop().await;
    assert_eq!(summary.kicked, 0);
    assert_eq!(summary.dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_lines_that_grow_with_a_long_nickname_do_not_overflow_a_fast_reader() {
    let nick = "n".repeat(32);
    let lines = 4 * 1024 * 1024;
    let settings = ServerSettings { mode: Mode::Chat, ..ServerSettings::default() };
    // Each bare newline arrives as `<NICK> ` and a newline: 36 bytes out per byte in.
    burst_reaches_a_fast_reader(settings, &nick, vec![b'\n'; lines], lines * (nick.len() + 4)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_queue_does_not_overflow_a_fast_broker_reader() {
    let settings =
        ServerSettings { mode: Mode::Broker, relay_queue_bytes: 16 * 1024, ..ServerSettings::default() };
    let bytes = 16 * 1024 * 1024;
    burst_reaches_a_fast_reader(settings, "unused", vec![b'x'; bytes], bytes).await;
}
