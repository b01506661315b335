//! The server under test when bench starts it itself: a free port, the command, a count of the
//! lines it prints (so the clock stops when the last line is out), and its /proc figures.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::BenchError;
use super::procfs;

/// How long a spawned server may take to accept its first connection.
const START_LIMIT: Duration = Duration::from_secs(10);
/// Pause between readiness probes while it starts, and between checks of the line count.
const POLL: Duration = Duration::from_millis(2);

/// A server process started by bench; killed when dropped.
pub struct Spawned {
    child: Child,
    /// Held open so servers that relay stdin to clients never see it end.
    _stdin: Option<ChildStdin>,
    /// Where the server listens.
    pub addr: SocketAddr,
    output: Arc<LineCount>,
}

/// Lines seen on the server's stdout, and when the count first reached the awaited number.
#[derive(Default)]
struct LineCount {
    lines: AtomicU64,
    goal: AtomicU64,
    reached: Mutex<Option<Instant>>,
}

impl Spawned {
    /// Runs `command` (with `{port}` replaced by a free port) under `sh -c` and waits until it
    /// accepts a connection.
    pub async fn start(command: &str) -> Result<Spawned, BenchError> {
        if !command.contains("{port}") {
            return Err(BenchError::Usage("--spawn needs `{port}` where the server's port goes".into()));
        }
        let port =
            TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(BenchError::Io)?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let script = format!("exec {}", command.replace("{port}", &port.to_string()));
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| BenchError::Spawn(format!("cannot run `{command}`: {e}")))?;
        let stdin = child.stdin.take();
        let output = Arc::new(LineCount { goal: AtomicU64::new(u64::MAX), ..LineCount::default() });
        if let Some(stdout) = child.stdout.take() {
            let output = Arc::clone(&output);
            thread::spawn(move || count_lines(stdout, &output));
        }
        let mut spawned = Spawned { child, _stdin: stdin, addr, output };
        spawned.wait_until_accepting(command).await?;
        Ok(spawned)
    }

    async fn wait_until_accepting(&mut self, command: &str) -> Result<(), BenchError> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BenchError::Spawn(format!("`{command}` exited before accepting: {status}")));
            }
            if Instant::now() > deadline {
                return Err(BenchError::Spawn(format!(
                    "`{command}` did not accept on {} within 10s",
                    self.addr
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines printed so far.
    pub fn lines(&self) -> u64 {
        self.output.lines.load(Ordering::Acquire)
    }

    /// Waits until `goal` lines have been printed, giving up when no new line came for
    /// `stall` (a server that dropped some will never print them).
    pub async fn wait_for_lines_while_printing(&mut self, goal: u64, stall: Duration) -> Option<Instant> {
        loop {
            let before = self.lines();
            if let Some(done) = self.wait_for_lines(goal, stall).await {
                return Some(done);
            }
            if self.lines() == before {
                return None;
            }
        }
    }

    /// Waits until `goal` lines have been printed; returns when that happened, or `None` if
    /// it did not within `limit` or the server exited.
    pub async fn wait_for_lines(&mut self, goal: u64, limit: Duration) -> Option<Instant> {
        *self.output.reached.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.output.goal.store(goal, Ordering::Release);
        let deadline = Instant::now() + limit;
        loop {
            if self.lines() >= goal {
                let reached = *self.output.reached.lock().unwrap_or_else(PoisonError::into_inner);
                return Some(reached.unwrap_or_else(Instant::now));
            }
            if Instant::now() > deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// True while the server process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// CPU seconds the server's process tree has used.
    pub fn cpu_seconds(&self) -> f64 {
        procfs::cpu_seconds(self.pid())
    }

    /// The server tree's proportional memory, in bytes.
    pub fn pss_bytes(&self) -> u64 {
        procfs::pss_bytes(self.pid())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for pid in procfs::process_tree(self.pid()).into_iter().skip(1) {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count_lines(mut stdout: impl Read, output: &LineCount) {
    let mut buffer = vec![0; 256 * 1024];
    while let Ok(n) = stdout.read(&mut buffer) {
        if n == 0 {
            break;
        }
        let found = memchr::memchr_iter(b'\n', &buffer[..n]).count() as u64;
        let total = output.lines.fetch_add(found, Ordering::AcqRel) + found;
        if total >= output.goal.load(Ordering::Acquire) {
            output.reached.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert_with(Instant::now);
        }
    }
}
