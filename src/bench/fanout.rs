//! `fanout`: a room of clients (a chat or broker server), a few of them sending paced messages
//! that carry an id and a send time; every other client should receive each one. Deliveries
//! per second, loss, and delivery latency percentiles.
//!
//! Every client first sends a line `bench-N`: a nickname for `hubcat serve --mode chat`, and a
//! harmless message for servers without nicknames (ncat --chat/--broker); only lines with a
//! `fanout` payload are counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{BenchError, Metric, UnderTest, connect, progress, seconds};

/// Connection attempts in flight at once while the room fills.
const CONNECTS_IN_FLIGHT: usize = 64;
/// Sending starts once the room has been quiet this long (join notices can take a while: each
/// join is announced to everyone).
const SETTLE: Duration = Duration::from_millis(500);
/// Longest wait for the room to settle.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
/// How long to wait for the next delivery once the senders are done.
const DRAIN_STALL: Duration = Duration::from_secs(3);
/// While sending, how long deliveries may stop before the server is taken to have stalled
/// (longer than hubcat's default --slow-timeout, which may pause a flood that long).
const SEND_STALL: Duration = Duration::from_secs(5);
/// Highest latency the histogram tracks, in microseconds (60 s).
const MAX_LATENCY_US: u64 = 60_000_000;

/// Sizes of one fanout run.
#[derive(Clone, Copy, Debug)]
pub struct Fanout {
    /// Clients in the room.
    pub clients: usize,
    /// How many of them send.
    pub senders: usize,
    /// Messages each sender sends.
    pub messages: u64,
    /// Messages per second per sender (0: as fast as possible).
    pub rate: u64,
    /// Bytes per message, newline included.
    pub bytes: usize,
    /// Clients that join and never read (the last ones): the room's healthy readers should
    /// not pay for them.
    pub stalled: usize,
}

pub(super) async fn run(under_test: &UnderTest, fanout: Fanout) -> Result<Vec<Metric>, BenchError> {
    let Fanout { clients, senders, messages, rate, bytes, stalled } = fanout;
    if clients < 2 || senders == 0 || senders + stalled > clients || bytes < 40 {
        return Err(BenchError::Usage(
            "fanout needs at least 2 clients, 1 or more senders, senders + stalled clients no more \
             than clients, and messages of at least 40 bytes"
                .into(),
        ));
    }
    let epoch = Instant::now();
    let blank = new_histogram()?;
    let stop = CancellationToken::new();
    let delivered = Arc::new(AtomicU64::new(0));
    let heard = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
    let bar = progress(clients as u64, "joining");
    let mut joining = JoinSet::new();
    for index in 0..clients {
        let (gate, addr, bar) = (Arc::clone(&gate), under_test.addr, bar.clone());
        joining.spawn(async move {
            let _slot = gate.acquire_owned().await;
            let stream = connect(index, addr).await?;
            stream.set_nodelay(true)?;
            let (reader, mut writer) = stream.into_split();
            writer.write_all(format!("bench-{index}\n").as_bytes()).await?;
            bar.inc(1);
            std::io::Result::Ok((index, reader, writer))
        });
    }
    let mut receivers = JoinSet::new();
    let mut writers = Vec::with_capacity(senders);
    // Held to the end: dropping a write half would close the client's sending side.
    let mut listeners_only = Vec::with_capacity(clients);
    // Never read: they stand for clients that stopped reading.
    let mut stalled_readers = Vec::with_capacity(stalled);
    while let Some(joined) = joining.join_next().await {
        let (index, reader, writer) = match joined {
            Ok(Ok(joined)) => joined,
            Ok(Err(err)) => {
                return Err(BenchError::Server(format!("a client could not join the room: {err}")));
            }
            Err(err) => return Err(BenchError::Server(format!("a client task failed: {err}"))),
        };
        if index >= clients - stalled {
            stalled_readers.push(reader);
            listeners_only.push(writer);
            continue;
        }
        let counters = (Arc::clone(&delivered), Arc::clone(&heard));
        receivers.spawn(receive(reader, epoch, counters, blank.clone(), stop.clone()));
        if index < senders {
            writers.push((index, writer));
        } else {
            listeners_only.push(writer);
        }
    }
    bar.finish_and_clear();
    wait_until_quiet(&heard, SETTLE, SETTLE_LIMIT).await;

    let cpu_before = under_test.spawned.as_ref().map(|s| s.cpu_seconds());
    let start = Instant::now();
    let mut sending = JoinSet::new();
    for (index, writer) in writers {
        sending.spawn(send(writer, index, messages, rate, bytes, epoch));
    }
    loop {
        // A server that stops delivering (ncat's broker behind a reader that stopped) would
        // block the senders for good: give up on them once deliveries have stalled.
        let sent = tokio::select! {
            sent = sending.join_next() => match sent {
                Some(sent) => sent,
                None => break,
            },
            _ = until_stalled(&delivered, SEND_STALL) => {
                sending.abort_all();
                break;
            }
        };
        match sent {
            // A sender is also in the room: it stays until the others are done.
            Ok(Ok(writer)) => listeners_only.push(writer),
            Ok(Err(err)) => return Err(BenchError::Server(format!("a sender failed: {err}"))),
            Err(err) => return Err(BenchError::Server(format!("a sender task failed: {err}"))),
        }
    }
    let expected = senders as u64 * messages * (clients - 1 - stalled) as u64;
    let last_change = wait_for(&delivered, expected, DRAIN_STALL).await;
    let elapsed = last_change - start;
    let cpu = under_test.spawned.as_ref().zip(cpu_before).map(|(s, before)| s.cpu_seconds() - before);
    stop.cancel();
    drop(listeners_only);
    drop(stalled_readers);
    let mut histogram = blank;
    while let Some(done) = receivers.join_next().await {
        if let Ok(h) = done {
            let _ = histogram.add(&h);
        }
    }
    let got = delivered.load(Ordering::Relaxed);
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let mut metrics = vec![
        Metric::new("deliveries_per_second", got as f64 / seconds(elapsed), "msg/s"),
        Metric::new("delivered_mb_per_second", (got * bytes as u64) as f64 / 1e6 / seconds(elapsed), "MB/s"),
        Metric::new("expected", expected as f64, "msgs"),
        Metric::new("delivered", got as f64, "msgs"),
        Metric::new("lost", expected.saturating_sub(got) as f64, "msgs"),
        Metric::new("p50", ms(0.5), "ms"),
        Metric::new("p99", ms(0.99), "ms"),
        Metric::new("p99.9", ms(0.999), "ms"),
    ];
    if let Some(cpu) = cpu {
        metrics.push(Metric::new("server_cpu", cpu, "s"));
        metrics.push(Metric::new("server_cpu_per_delivery", cpu * 1e6 / got.max(1) as f64, "us"));
    }
    Ok(metrics)
}

/// Waits until `counter` has not moved for `quiet` (at most `limit`).
async fn wait_until_quiet(counter: &AtomicU64, quiet: Duration, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut last = counter.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while last_change.elapsed() < quiet && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = counter.load(Ordering::Relaxed);
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
    }
}

/// Completes once `counter` has not moved for `stall`.
async fn until_stalled(counter: &AtomicU64, stall: Duration) {
    let mut last = counter.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while last_change.elapsed() < stall {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = counter.load(Ordering::Relaxed);
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
    }
}

/// Waits until `counter` reaches `goal`, or stops moving for `stall`; returns when it last
/// moved.
async fn wait_for(counter: &AtomicU64, goal: u64, stall: Duration) -> Instant {
    let mut last = counter.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while last < goal && last_change.elapsed() < stall {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now = counter.load(Ordering::Relaxed);
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
    }
    last_change
}

/// Sends `messages` lines `fanout SENDER SEQ NANOS` padded to `bytes`, `rate` per second.
async fn send(
    mut writer: OwnedWriteHalf,
    sender: usize,
    messages: u64,
    rate: u64,
    bytes: usize,
    epoch: Instant,
) -> std::io::Result<OwnedWriteHalf> {
    let start = Instant::now();
    let mut line = Vec::with_capacity(bytes);
    for seq in 0..messages {
        if rate > 0 {
            let due = start + Duration::from_secs_f64(seq as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        line.clear();
        let sent_at = epoch.elapsed().as_nanos();
        line.extend_from_slice(format!("fanout {sender} {seq} {sent_at} ").as_bytes());
        line.resize(bytes - 1, b'.');
        line.push(b'\n');
        writer.write_all(&line).await?;
    }
    Ok(writer)
}

/// Reads lines until `stop`; counts the fanout deliveries and records their latency.
async fn receive(
    reader: tokio::net::tcp::OwnedReadHalf,
    epoch: Instant,
    (delivered, heard): (Arc<AtomicU64>, Arc<AtomicU64>),
    mut histogram: Histogram<u64>,
    stop: CancellationToken,
) -> Histogram<u64> {
    let mut lines = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::select! {
            _ = stop.cancelled() => return histogram,
            read = lines.read_until(b'\n', &mut line) => read,
        };
        match read {
            Ok(0) | Err(_) => {
                stop.cancelled().await;
                return histogram;
            }
            Ok(_) => {}
        }
        heard.fetch_add(1, Ordering::Relaxed);
        let Some(at) = memchr::memmem::find(&line, b"fanout ") else { continue };
        let Some(sent_at) = line[at..]
            .split(|&b| b == b' ')
            .nth(3)
            .and_then(|w| std::str::from_utf8(w).ok()?.parse::<u128>().ok())
        else {
            continue;
        };
        let now = epoch.elapsed().as_nanos();
        let _ = histogram.record((now.saturating_sub(sent_at) / 1000) as u64);
        delivered.fetch_add(1, Ordering::Relaxed);
    }
}

fn new_histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|e| BenchError::Io(std::io::Error::other(e)))
}
