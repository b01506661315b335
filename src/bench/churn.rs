//! `churn`: short connections (connect, one line, close) as fast as they go, a few in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::{BenchError, Metric, UnderTest, progress, seconds};

/// How long to wait for the next line while the server prints the last clients' lines.
const PRINT_STALL: Duration = Duration::from_secs(3);

pub(super) async fn run(
    under_test: &mut UnderTest,
    conns: usize,
    concurrency: usize,
    limit: Duration,
) -> Result<Vec<Metric>, BenchError> {
    let printed_before = under_test.spawned.as_ref().map_or(0, |s| s.lines());
    let cpu_before = under_test.spawned.as_ref().map(|s| s.cpu_seconds());
    let bar = progress(conns as u64, "churn");
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + limit;
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.clamp(1, conns.max(1)) {
        let (next, failed, bar, dialer) =
            (Arc::clone(&next), Arc::clone(&failed), bar.clone(), under_test.dialer.clone());
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= conns || Instant::now() > deadline {
                    return;
                }
                let sent = async {
                    let mut stream = dialer.connect(index).await?;
                    stream.write_all(format!("churn {index}\n").as_bytes()).await?;
                    stream.finish().await
                };
                if sent.await.is_err() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                bar.inc(1);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let done = next.load(Ordering::Relaxed).min(conns);
    let failed = failed.load(Ordering::Relaxed);
    let mut metrics = vec![
        Metric::new("connections_per_second", done as f64 / seconds(elapsed), "conn/s"),
        Metric::new("connections", done as f64, "conns"),
        Metric::new("failed", failed as f64, "conns"),
        Metric::new("elapsed", seconds(elapsed), "s"),
    ];
    if let (Some(spawned), Some(before)) = (under_test.spawned.as_mut(), cpu_before) {
        let sent = (done - failed) as u64;
        spawned.wait_for_lines_while_printing(printed_before + sent, PRINT_STALL).await;
        let printed = spawned.lines() - printed_before;
        metrics.push(Metric::new("lines_lost", sent.saturating_sub(printed) as f64, "lines"));
        metrics.push(Metric::new("server_cpu", spawned.cpu_seconds() - before, "s"));
    }
    Ok(metrics)
}
