//! `hold`: many idle connections at once; what each costs the server in memory (PSS of its
//! process tree, minus the baseline), and whether a new client is still served at once.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::dial::Conn;
use super::{BenchError, Metric, UnderTest, progress, seconds};

/// Connection attempts in flight at once (keeps the server's accept queue from overflowing).
const CONNECTS_IN_FLIGHT: usize = 256;
/// How long to wait for the next line while the server prints the held connections' lines.
const PRINT_STALL: Duration = Duration::from_secs(3);
/// Short clients served before the baseline is read.
const WARM_UP_CLIENTS: usize = 32;
/// How long the new client may take to be served before it counts as not served.
const PROBE_LIMIT: Duration = Duration::from_secs(5);
/// Held connections that send a second line, one at a time, after the memory is read.
const WAKE_SAMPLES: usize = 500;
/// Held connections not served after which the others are not tried (each waits `PROBE_LIMIT`).
const WAKE_MISSES: u32 = 5;

pub(super) async fn run(
    under_test: &mut UnderTest,
    conns: usize,
    settle: Duration,
    limit: Duration,
) -> Result<Vec<Metric>, BenchError> {
    let dialer = under_test.dialer.clone();
    warm_up(under_test, settle).await?;
    let baseline = under_test.spawned.as_ref().map(|s| s.pss_bytes());
    let printed_before = under_test.spawned.as_ref().map_or(0, |s| s.lines());
    let bar = progress(conns as u64, "hold");
    let start = Instant::now();
    let gate = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
    let mut opening = JoinSet::new();
    for index in 0..conns {
        let (gate, bar, dialer) = (Arc::clone(&gate), bar.clone(), dialer.clone());
        opening.spawn(async move {
            let _slot = gate.acquire_owned().await;
            let mut stream = dialer.connect(index).await?;
            stream.write_all(format!("hold {index}\n").as_bytes()).await?;
            bar.inc(1);
            io::Result::Ok(stream)
        });
    }
    let mut held = Vec::with_capacity(conns);
    let mut failures = 0;
    let mut first_failure = None;
    while let Some(opened) = opening.join_next().await {
        match opened {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(err)) => {
                failures += 1;
                first_failure.get_or_insert(err.to_string());
            }
            Err(err) => return Err(BenchError::Server(format!("a client task failed: {err}"))),
        }
        if start.elapsed() > limit {
            return Err(BenchError::Server(format!("opened only {} connections in time", held.len())));
        }
    }
    let opened_in = start.elapsed();
    bar.finish_and_clear();

    let mut metrics = vec![Metric::new("opened", held.len() as f64, "conns")];
    metrics.push(Metric::new("failed_to_open", failures as f64, "conns"));
    metrics.push(Metric::new("open_time", seconds(opened_in), "s"));
    if let Some(spawned) = under_test.spawned.as_mut() {
        let goal = printed_before + held.len() as u64;
        let printed = spawned.wait_for_lines_while_printing(goal, PRINT_STALL.min(limit)).await.is_some();
        metrics.push(Metric::new("lines_printed", (spawned.lines() - printed_before) as f64, "lines"));
        if !printed {
            tracing::warn!("the server printed fewer lines than connections were opened");
        }
    }
    tokio::time::sleep(settle).await;
    let alive = held.iter().filter(|s| is_open(s)).count();
    metrics.push(Metric::new("held", alive as f64, "conns"));
    if let (Some(spawned), Some(baseline)) = (under_test.spawned.as_ref(), baseline) {
        let pss = spawned.pss_bytes();
        metrics.push(Metric::new("server_pss_baseline", baseline as f64 / 1024.0, "KiB"));
        metrics.push(Metric::new("server_pss", pss as f64 / 1024.0, "KiB"));
        let per_conn = pss.saturating_sub(baseline) as f64 / alive.max(1) as f64 / 1024.0;
        metrics.push(Metric::new("pss_per_connection", per_conn, "KiB"));
    }
    metrics.push(probe(under_test, held.len() + failures).await);
    metrics.extend(wake_held(under_test, &mut held).await);
    metrics.extend(wake_herd(under_test, &mut held).await);
    if let Some(spawned) = under_test.spawned.as_mut() {
        metrics.push(Metric::new("server_alive", f64::from(u8::from(spawned.is_running())), ""));
    }
    if let Some(reason) = first_failure {
        tracing::warn!("{failures} connections failed to open; the first: {reason}");
    }
    drop(held);
    Ok(metrics)
}

/// Serves a few short clients before the baseline is read, so buffers a server allocates on its
/// first reads (per thread, per pool) count in the baseline rather than per held connection.
async fn warm_up(under_test: &mut UnderTest, settle: Duration) -> Result<(), BenchError> {
    let printed_before = under_test.spawned.as_ref().map_or(0, |s| s.lines());
    for index in 0..WARM_UP_CLIENTS {
        let mut stream = under_test.dialer.connect(index).await?;
        stream.write_all(format!("warm-up {index}\n").as_bytes()).await?;
    }
    if let Some(spawned) = under_test.spawned.as_mut() {
        spawned.wait_for_lines(printed_before + WARM_UP_CLIENTS as u64, PROBE_LIMIT).await;
    }
    tokio::time::sleep(settle).await;
    Ok(())
}

/// Times held connections, spread over all of them, from sending a second line to the server
/// printing it, one at a time: how long an idle client waits (a server that parks idle
/// connections resumes each one here).
async fn wake_held(under_test: &mut UnderTest, held: &mut [Conn]) -> Vec<Metric> {
    let Some(spawned) = under_test.spawned.as_mut() else { return Vec::new() };
    if held.is_empty() {
        return Vec::new();
    }
    let Ok(mut histogram) = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3) else {
        return Vec::new();
    };
    let step = (held.len() / WAKE_SAMPLES).max(1);
    let mut missed = 0;
    for stream in held.iter_mut().step_by(step).take(WAKE_SAMPLES) {
        if missed >= WAKE_MISSES {
            break;
        }
        let printed_before = spawned.lines();
        let start = Instant::now();
        if stream.write_all(b"wake\n").await.is_err() {
            missed += 1;
            continue;
        }
        match spawned.wait_for_lines(printed_before + 1, PROBE_LIMIT).await {
            Some(at) => {
                let micros =
                    u64::try_from(at.saturating_duration_since(start).as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.max(1));
            }
            None => missed += 1,
        }
    }
    // No sample is no result, not a perfect one.
    let ms = |q: f64| match histogram.is_empty() {
        true => f64::NAN,
        false => histogram.value_at_quantile(q) as f64 / 1000.0,
    };
    vec![
        Metric::new("held_client_served_p50", ms(0.5), "ms"),
        Metric::new("held_client_served_p99", ms(0.99), "ms"),
        Metric::new("held_client_not_served", f64::from(missed), "conns"),
    ]
}

/// Every held connection sends a line at once: the time from the first write to the last line
/// printed (a server that parks idle connections resumes them all together).
async fn wake_herd(under_test: &mut UnderTest, held: &mut [Conn]) -> Vec<Metric> {
    let Some(spawned) = under_test.spawned.as_mut() else { return Vec::new() };
    let printed_before = spawned.lines();
    let start = Instant::now();
    let mut sent = 0;
    for stream in held.iter_mut() {
        if stream.write_all(b"herd\n").await.is_ok() {
            sent += 1;
        }
    }
    let written = start.elapsed();
    let served = spawned.wait_for_lines(printed_before + sent, PRINT_STALL * 10).await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    vec![
        Metric::new("herd", sent as f64, "conns"),
        Metric::new("herd_written_in", ms(written), "ms"),
        Metric::new(
            "herd_served_in",
            served.map_or(f64::NAN, |at| ms(at.saturating_duration_since(start))),
            "ms",
        ),
    ]
}

/// True while the server has neither closed nor reset the connection.
fn is_open(stream: &Conn) -> bool {
    let mut byte = [0; 1];
    match stream.tcp().try_read(&mut byte) {
        Ok(0) => false,
        Ok(_) => true, // it sent something (a greeting): still open
        Err(err) => err.kind() == io::ErrorKind::WouldBlock,
    }
}

/// Times a new client from connect to its line being printed (or to connected, when the
/// server's output is not visible).
async fn probe(under_test: &mut UnderTest, index: usize) -> Metric {
    let start = Instant::now();
    let printed_before = under_test.spawned.as_ref().map_or(0, |s| s.lines());
    let Ok(Ok(mut stream)) = tokio::time::timeout(PROBE_LIMIT, under_test.dialer.connect(index)).await else {
        return Metric::new("new_client_served_in", f64::NAN, "ms");
    };
    if stream.write_all(b"probe\n").await.is_err() {
        return Metric::new("new_client_served_in", f64::NAN, "ms");
    }
    let served = match under_test.spawned.as_mut() {
        Some(spawned) => spawned.wait_for_lines(printed_before + 1, PROBE_LIMIT).await.map(|at| at - start),
        None => Some(start.elapsed()),
    };
    Metric::new("new_client_served_in", served.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0), "ms")
}
