//! `echo`: clients ping-pong fixed-size messages against an echo server; round trips per second
//! and latency percentiles from an HDR histogram.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use super::{BenchError, Metric, UnderTest, connect, seconds};

/// Highest latency the histogram tracks exactly, in microseconds (60 s).
const MAX_LATENCY_US: u64 = 60_000_000;

pub(super) async fn run(
    under_test: &UnderTest,
    clients: usize,
    bytes: usize,
    duration: Duration,
) -> Result<Vec<Metric>, BenchError> {
    if bytes == 0 || clients == 0 {
        return Err(BenchError::Usage("echo needs at least 1 client and 1-byte messages".into()));
    }
    // A newline at the end, so line-based echo servers answer too.
    let mut message = vec![b'e'; bytes];
    message[bytes - 1] = b'\n';
    let start = Instant::now();
    let deadline = start + duration;
    let mut pingers = JoinSet::new();
    for index in 0..clients {
        let (addr, message) = (under_test.addr, message.clone());
        pingers.spawn(async move {
            let mut histogram = new_histogram()?;
            let mut stream = connect(index, addr).await?;
            stream.set_nodelay(true)?;
            let mut reply = vec![0; message.len()];
            while Instant::now() < deadline {
                let sent = Instant::now();
                stream.write_all(&message).await?;
                stream.read_exact(&mut reply).await?;
                let _ = histogram.record(sent.elapsed().as_micros() as u64);
            }
            std::io::Result::Ok(histogram)
        });
    }
    let mut histogram = new_histogram()?;
    while let Some(done) = pingers.join_next().await {
        match done {
            Ok(Ok(h)) => {
                let _ = histogram.add(&h);
            }
            Ok(Err(err)) => return Err(BenchError::Server(format!("an echo client failed: {err}"))),
            Err(err) => return Err(BenchError::Server(format!("an echo client task failed: {err}"))),
        }
    }
    let elapsed = seconds(start.elapsed());
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    Ok(vec![
        Metric::new("round_trips_per_second", histogram.len() as f64 / elapsed, "rt/s"),
        Metric::new("round_trips", histogram.len() as f64, ""),
        Metric::new("p50", ms(0.5), "ms"),
        Metric::new("p99", ms(0.99), "ms"),
        Metric::new("p99.9", ms(0.999), "ms"),
    ])
}

fn new_histogram() -> std::io::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(std::io::Error::other)
}
