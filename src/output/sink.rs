//! The sink's single writer (DESIGN invariant 2): one thread owns stdout or the output file.
//!
//! Connection tasks send whole records over a bounded channel; a full channel makes them wait,
//! which stops their reads, which lets TCP flow control slow the clients, so nothing read is
//! dropped. The writer drains everything queued into one batch and writes it, so an interactive
//! line appears at once while a flood goes out in large writes.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, oneshot};
use tokio_util::sync::CancellationToken;

use super::queue::{RecordReceiver, RecordSender, queue};
use crate::config::{SINK_BATCH_BYTES, SINK_QUEUE_BYTES, SINK_QUEUE_DEPTH, SINK_WRITER_LINGER};

/// Pipe buffer asked for on stdout (Linux's default limit for unprivileged processes).
const PIPE_BYTES: usize = 1024 * 1024;
/// Most buffers handed to one `writev` (Linux's IOV_MAX).
const MAX_SLICES: usize = 1024;

/// Where the records go.
#[derive(Clone, Debug)]
pub enum Target {
    /// The process's standard output.
    Stdout,
    /// A file, appended to, flushed and fsync'd when the sink finishes.
    File(PathBuf),
    /// An in-memory buffer (tests, embedding).
    Memory(Capture),
}

/// A shared in-memory buffer that a [`Target::Memory`] sink appends to.
#[derive(Clone, Debug, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Everything written so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }

    /// Everything written so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Why the sink stopped writing.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The reader of stdout went away (`hubcat serve | head`): a normal way to stop.
    #[error("standard output was closed by its reader")]
    Closed,
    /// Any other write, flush or sync failure.
    #[error("cannot write to {target}: {}", crate::error::reason(source))]
    Write {
        /// What was being written (`standard output` or the file name).
        target: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Records as the sink wrote them, for live viewers (the web console): one write's buffers
/// (each holds whole records), handed over without a copy, and how many records came before
/// them, so a viewer that fell behind knows how many it missed.
#[derive(Clone, Debug)]
pub struct Written {
    /// Records (lines, in the text formats) written before these.
    pub first: u64,
    /// How many records these are.
    pub count: u64,
    /// The buffers, in order.
    pub buffers: Arc<Vec<Vec<u8>>>,
}

/// How many writes a live viewer may fall behind before it skips some: each holds up to
/// `SINK_BATCH_BYTES`, and the ones a viewer has not taken stay allocated until overwritten.
const WATCH_DEPTH: usize = 16;
/// Viewers are handed a big write at most this often; the big writes between are only counted.
const WATCH_EVERY: Duration = Duration::from_millis(20);
/// Writes smaller than this are always handed to viewers.
const WATCH_SMALL: usize = 16 * 1024;

/// A running sink: its channel, and a way to learn that it failed or finished.
pub struct Sink {
    tx: RecordSender,
    watch: broadcast::Sender<Written>,
    failed: CancellationToken,
    done: oneshot::Receiver<Result<(), SinkError>>,
}

impl Sink {
    /// Opens the target and starts the writer thread.
    pub fn start(target: Target) -> io::Result<Sink> {
        let (name, out) = open(&target)?;
        let (tx, rx) = queue(SINK_QUEUE_DEPTH, SINK_QUEUE_BYTES);
        let failed = CancellationToken::new();
        let (done_tx, done) = oneshot::channel();
        let (watch, _) = broadcast::channel(WATCH_DEPTH);
        let writer = Writer {
            out,
            name,
            rx,
            failed: failed.clone(),
            watch: watch.clone(),
            watched: 0,
            last_shown: None,
        };
        thread::Builder::new().name("hubcat-writer".into()).spawn(move || {
            let _ = done_tx.send(writer.run());
        })?;
        Ok(Sink { tx, watch, failed, done })
    }

    /// What is written from now on, as it is written. A viewer never slows the writer: one that
    /// falls behind skips records, and learns how many from [`Written::first`].
    pub fn watch(&self) -> broadcast::Sender<Written> {
        self.watch.clone()
    }

    /// A sender for records; the writer stops once every sender is dropped.
    pub(crate) fn sender(&self) -> RecordSender {
        self.tx.clone()
    }

    /// Cancelled when the writer stops because of an error (closed stdout, full disk).
    pub fn failed(&self) -> CancellationToken {
        self.failed.clone()
    }

    /// Waits until every sender is gone and everything queued is written (and synced, for a file).
    pub async fn finish(self) -> Result<(), SinkError> {
        drop(self.tx);
        self.done.await.unwrap_or(Ok(()))
    }
}

/// What the writer thread writes into.
enum Out {
    File { file: File, sync: bool },
    Memory(Capture),
}

impl Out {
    /// Writes every buffer, in order, in as few system calls as the kernel allows.
    fn write_all(&mut self, batch: &[Vec<u8>]) -> io::Result<()> {
        match self {
            Out::File { file, .. } => {
                let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
                let mut slices = &mut slices[..];
                while !slices.is_empty() {
                    let n = file.write_vectored(&slices[..slices.len().min(MAX_SLICES)])?;
                    if n == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    IoSlice::advance_slices(&mut slices, n);
                }
                Ok(())
            }
            Out::Memory(capture) => {
                let mut memory = capture.0.lock().unwrap_or_else(PoisonError::into_inner);
                batch.iter().for_each(|b| memory.extend_from_slice(b));
                Ok(())
            }
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        match self {
            Out::File { file, sync: true } => file.sync_all(),
            _ => Ok(()),
        }
    }
}

fn open(target: &Target) -> io::Result<(String, Out)> {
    Ok(match target {
        // A duplicate of fd 1 as a File: unbuffered, so our batches are the only buffering.
        Target::Stdout => {
            let file = File::from(io::stdout().as_fd().try_clone_to_owned()?);
            // When stdout is a pipe, a bigger one means fewer sleeps and wake-ups on both ends.
            // Not a pipe, or a size above the system's limit: keep what there is.
            let _ = rustix::pipe::fcntl_setpipe_size(&file, PIPE_BYTES);
            ("standard output".to_string(), Out::File { file, sync: false })
        }
        Target::File(path) => {
            let file = append(path)?;
            // fsync is for files on disk; /dev/null or a FIFO would refuse it at the end.
            let sync = file.metadata()?.is_file();
            (display(path), Out::File { file, sync })
        }
        Target::Memory(capture) => ("memory".to_string(), Out::Memory(capture.clone())),
    })
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

struct Writer {
    out: Out,
    name: String,
    rx: RecordReceiver,
    failed: CancellationToken,
    watch: broadcast::Sender<Written>,
    /// Records written while someone was watching.
    watched: u64,
    /// When viewers were last handed a write.
    last_shown: Option<Instant>,
}

impl Writer {
    fn run(mut self) -> Result<(), SinkError> {
        let result = self.copy_all();
        if result.is_err() {
            // Producers see a closed channel at once instead of waiting on a dead writer.
            self.rx.close();
            self.failed.cancel();
        }
        result
    }

    fn copy_all(&mut self) -> Result<(), SinkError> {
        let mut batch = Vec::with_capacity(SINK_QUEUE_DEPTH);
        loop {
            // After a write, pause briefly before sleeping on the queue: on a busy server more
            // records arrive meanwhile and go out together, without waking this thread for
            // each (an echo server's round trips: +30%). A lone interactive line is written at
            // once; only a write right after another can wait this long.
            let first = match self.rx.try_recv() {
                Ok(first) => first,
                Err(_) => {
                    thread::sleep(SINK_WRITER_LINGER);
                    match self.rx.try_recv() {
                        Ok(first) => first,
                        Err(_) => match self.rx.blocking_recv() {
                            Some(first) => first,
                            None => break,
                        },
                    }
                }
            };
            let mut bytes = first.len();
            batch.push(first);
            while bytes < SINK_BATCH_BYTES {
                match self.rx.try_recv() {
                    Ok(more) => {
                        bytes += more.len();
                        batch.push(more);
                    }
                    Err(_) => break,
                }
            }
            self.out.write_all(&batch).map_err(|e| self.error(e))?;
            self.rx.written(bytes);
            self.show(&mut batch);
            batch.clear();
        }
        self.out.finish().map_err(|e| self.error(e))
    }

    /// Hands what was written to the viewers, if there are any (one atomic load when not).
    fn show(&mut self, batch: &mut Vec<Vec<u8>>) {
        if self.watch.receiver_count() == 0 {
            return;
        }
        let count = batch.iter().map(|records| memchr::memchr_iter(b'\n', records).count() as u64).sum();
        // Viewers show a few lines a moment: in a flood, most big writes are only counted. A
        // small write (a quiet server's) is always handed over, so a viewer never misses the
        // last line for want of a next one.
        let bytes: usize = batch.iter().map(Vec::len).sum();
        if bytes < WATCH_SMALL || self.last_shown.is_none_or(|shown| shown.elapsed() >= WATCH_EVERY) {
            self.last_shown = Some(Instant::now());
            // The buffers move into the broadcast; the next batch starts a new list.
            let buffers = Arc::new(std::mem::replace(batch, Vec::with_capacity(batch.len())));
            let _ = self.watch.send(Written { first: self.watched, count, buffers });
        }
        self.watched += count;
    }

    fn error(&self, source: io::Error) -> SinkError {
        if source.kind() == io::ErrorKind::BrokenPipe {
            SinkError::Closed
        } else {
            SinkError::Write { target: self.name.clone(), source }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_everything_in_order_then_finishes() {
        let capture = Capture::default();
        let sink = Sink::start(Target::Memory(capture.clone())).expect("memory sink starts");
        let tx = sink.sender();
        for i in 0..1000 {
            tx.send(format!("line {i}\n").into_bytes()).await.expect("writer is alive");
        }
        drop(tx);
        sink.finish().await.expect("finishes cleanly");
        let text = capture.text();
        assert_eq!(text.lines().count(), 1000);
        assert!(text.lines().enumerate().all(|(i, l)| l == format!("line {i}")));
    }

    #[tokio::test]
    async fn a_file_is_appended_to() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.log");
        std::fs::write(&path, "before\n").expect("seed file");
        let sink = Sink::start(Target::File(path.clone())).expect("file sink starts");
        sink.sender().send(b"after\n".to_vec()).await.expect("writer is alive");
        sink.finish().await.expect("finishes cleanly");
        assert_eq!(std::fs::read_to_string(&path).expect("read back"), "before\nafter\n");
    }
}
