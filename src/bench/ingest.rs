//! `ingest`: many clients stream lines as fast as they can; the clock stops when the server has
//! printed the last line (when bench started it), and the server's CPU time is read from /proc.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::{BenchError, Metric, UnderTest, progress, seconds};

/// Bytes written per call: whole lines, about 64 KiB.
const BLOCK_BYTES: usize = 64 * 1024;

pub(super) async fn run(
    under_test: &mut UnderTest,
    clients: usize,
    lines: u64,
    line_bytes: usize,
    expect_lines: Option<u64>,
    limit: Duration,
) -> Result<Vec<Metric>, BenchError> {
    if line_bytes < 2 || clients == 0 {
        return Err(BenchError::Usage("ingest needs at least 1 client and lines of at least 2 bytes".into()));
    }
    let block = block_of_lines(line_bytes);
    let lines_per_block = (block.len() / line_bytes) as u64;
    let total_bytes = clients as u64 * lines * line_bytes as u64;
    let expected = expect_lines.unwrap_or(clients as u64 * lines);
    let printed_before = under_test.spawned.as_ref().map_or(0, |s| s.lines());
    let cpu_before = under_test.spawned.as_ref().map(|s| s.cpu_seconds());
    let bar = progress(total_bytes, "ingest");

    // Connect everyone first, a few at a time: the race is about streaming, not about how a
    // server's accept queue copes with a connection storm (ncat's holds 10).
    let mut streams = Vec::with_capacity(clients);
    for index in 0..clients {
        let stream = under_test
            .dialer
            .connect(index)
            .await
            .map_err(|e| BenchError::Server(format!("client {index} could not connect: {e}")))?;
        streams.push(stream);
    }
    let start = Instant::now();
    let mut senders = JoinSet::new();
    for mut stream in streams {
        let (block, bar) = (block.clone(), bar.clone());
        senders.spawn(async move {
            let mut left = lines;
            while left > 0 {
                let n = left.min(lines_per_block);
                let bytes = &block[..n as usize * line_bytes];
                stream.write_all(bytes).await?;
                bar.inc(bytes.len() as u64);
                left -= n;
            }
            stream.finish().await
        });
    }
    while let Some(sent) = senders.join_next().await {
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(BenchError::Server(format!("a client could not send: {err}"))),
            Err(err) => return Err(BenchError::Server(format!("a client task failed: {err}"))),
        }
    }
    let sent = start.elapsed();
    bar.finish_and_clear();

    let mut metrics = Vec::new();
    let elapsed = match under_test.spawned.as_mut() {
        Some(spawned) => match spawned.wait_for_lines(printed_before + expected, limit).await {
            Some(done) => done.duration_since(start),
            None => {
                let printed = spawned.lines() - printed_before;
                return Err(BenchError::Server(format!(
                    "the server printed {printed} of {expected} lines within {}",
                    humantime::format_duration(limit)
                )));
            }
        },
        None => sent,
    };
    let secs = seconds(elapsed);
    metrics.push(Metric::new("throughput", total_bytes as f64 / secs / 1e6, "MB/s"));
    metrics.push(Metric::new("lines_per_second", (clients as u64 * lines) as f64 / secs, "lines/s"));
    metrics.push(Metric::new("elapsed", secs, "s"));
    metrics.push(Metric::new("clients_done_after", seconds(sent), "s"));
    if let (Some(spawned), Some(before)) = (under_test.spawned.as_ref(), cpu_before) {
        let cpu = spawned.cpu_seconds() - before;
        metrics.push(Metric::new("server_cpu", cpu, "s"));
        metrics.push(Metric::new("server_cpu_per_gb", cpu / (total_bytes as f64 / 1e9), "s/GB"));
    }
    Ok(metrics)
}

/// About 64 KiB of numbered lines of exactly `line_bytes` bytes each, newline included.
fn block_of_lines(line_bytes: usize) -> Vec<u8> {
    let count = (BLOCK_BYTES / line_bytes).max(1);
    let mut block = Vec::with_capacity(count * line_bytes);
    for i in 0..count {
        let mut line = format!("ingest line {i:06} ").into_bytes();
        line.resize(line_bytes - 1, b'x');
        line.push(b'\n');
        block.extend_from_slice(&line);
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_hold_whole_lines_of_the_asked_size() {
        for size in [2, 7, 64, 1000, 70_000] {
            let block = block_of_lines(size);
            assert_eq!(block.len() % size, 0);
            assert!(block.chunks(size).all(|line| line.len() == size && line.ends_with(b"\n")));
            assert_eq!(memchr::memchr_iter(b'\n', &block).count(), block.len() / size);
        }
    }
}
