//! Test helpers: an in-process server on a port-0 listener with captured output, the real binary
//! as a server process, and a time limit on every wait so a hang fails fast.
#![allow(dead_code)] // each test file uses a different subset

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use hubcat::output::Capture;
use hubcat::server::{self, ServeError};
use hubcat::{ServerConfig, ServerSettings, Shutdown, Sink, Summary, Target};
use tokio::task::JoinHandle;

/// Upper bound on any single wait in a test.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Awaits `future`, failing the test if it takes longer than [`LIMIT`].
pub async fn within<F: Future>(future: F) -> F::Output {
    match tokio::time::timeout(LIMIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {LIMIT:?}"),
    }
}

/// A server running in this process, its output captured in memory.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub capture: Capture,
    join: JoinHandle<Result<Summary, ServeError>>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1, port 0.
    pub async fn start(config: ServerSettings) -> TestServer {
        Self::start_on("127.0.0.1:0", config).await.expect("IPv4 loopback is available")
    }

    /// Starts a server on `addr`; `None` when that address cannot be bound here (no IPv6).
    pub async fn start_on(addr: &str, settings: ServerSettings) -> Option<TestServer> {
        let config = ServerConfig::new(settings).expect("the test's settings are valid");
        let addr: SocketAddr = addr.parse().expect("valid test address");
        let std_listeners = hubcat::addr::bind_tcp(&[addr]).ok()?;
        let listeners: Vec<_> = std_listeners
            .into_iter()
            .map(|l| tokio::net::TcpListener::from_std(l).expect("register listener"))
            .collect();
        let addr = listeners[0].local_addr().expect("bound address");
        let listeners = listeners.into_iter().map(server::Listener::Tcp).collect();
        let capture = Capture::default();
        let sink = Sink::start(Target::Memory(capture.clone())).expect("memory sink");
        let shutdown = Shutdown::new();
        let join = tokio::spawn(server::run(listeners, config, sink, shutdown.clone()));
        Some(TestServer { addr, shutdown, capture, join })
    }

    /// Waits until the captured output satisfies `done`.
    pub async fn wait_for(&self, done: impl Fn(&str) -> bool) -> String {
        within(async {
            loop {
                let text = self.capture.text();
                if done(&text) {
                    return text;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }

    /// Triggers shutdown and returns the summary and everything written.
    pub async fn stop(self) -> (Summary, String) {
        self.shutdown.trigger();
        let summary = within(self.join).await.expect("server task ran").expect("server stopped cleanly");
        (summary, self.capture.text())
    }
}

/// The lines of `text` that came from `peer`, without the peer prefix.
pub fn lines_from(text: &str, peer: SocketAddr) -> Vec<String> {
    let prefix = format!("{peer} ");
    text.lines().filter_map(|l| l.strip_prefix(&prefix)).map(str::to_string).collect()
}

/// The path of the `hubcat` binary under test.
pub fn hubcat_bin() -> &'static str {
    env!("CARGO_BIN_EXE_hubcat")
}

/// A `hubcat` command with stdin, stdout and stderr piped.
pub fn hubcat(args: &[&str]) -> Command {
    let mut command = Command::new(hubcat_bin());
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// `hubcat serve` running as a child process.
pub struct ServeProcess {
    pub child: Child,
    /// The address it listens on (unspecified when it listens on a Unix socket).
    pub addr: SocketAddr,
    /// What follows `listening on`, as printed.
    pub listening: String,
    /// stderr lines after `listening on`, as they arrive.
    pub events: mpsc::Receiver<String>,
    /// stderr lines read so far.
    pub stderr_seen: Vec<String>,
    /// stdout lines, as they arrive.
    pub data: mpsc::Receiver<String>,
    /// stdout lines read so far.
    pub data_seen: Vec<String>,
    /// Where the data goes when the server was given `--output`.
    pub output_file: Option<std::path::PathBuf>,
}

impl ServeProcess {
    /// Starts `hubcat serve ARGS` and waits for its `listening on` line.
    pub fn start(args: &[&str]) -> ServeProcess {
        Self::start_with(hubcat_bin(), &[&["serve"], args].concat())
    }

    /// Starts `PROGRAM ARGS` (a `hubcat serve` under a wrapper such as prlimit) and waits for
    /// its `listening on` line.
    pub fn start_with(program: &str, args: &[&str]) -> ServeProcess {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let events = forward_lines(child.stderr.take().expect("stderr is piped"));
        let data = forward_lines(child.stdout.take().expect("stdout is piped"));
        let mut stderr_seen = Vec::new();
        let listening = loop {
            let line = events.recv_timeout(LIMIT).expect("hubcat serve prints its address");
            stderr_seen.push(line.clone());
            if let Some(addr) = line.split("listening on ").nth(1) {
                break addr.trim_start_matches("udp ").trim().to_string();
            }
        };
        let addr = match listening.strip_prefix("unix:") {
            Some(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            None => listening.parse().expect("a socket address follows `listening on`"),
        };
        let output_file = None;
        ServeProcess { child, addr, listening, events, stderr_seen, data, data_seen: Vec::new(), output_file }
    }

    /// Waits until `count` lines of data are out, on stdout or in the output file.
    pub fn wait_for_data_or_file(&mut self, count: usize) {
        let Some(path) = self.output_file.clone() else { return self.wait_for_data(count) };
        let deadline = std::time::Instant::now() + LIMIT;
        loop {
            let written = std::fs::read(&path).unwrap_or_default();
            if written.iter().filter(|&&b| b == b'\n').count() >= count {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "fewer than {count} lines in {}", path.display());
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until a stdout line contains `needle`.
    pub fn wait_for_data_containing(&mut self, needle: &str) {
        while !self.data_seen.iter().any(|l| l.contains(needle)) {
            let line = self.data.recv_timeout(LIMIT).unwrap_or_else(|_| panic!("no `{needle}` on stdout"));
            self.data_seen.push(line);
        }
    }

    /// Stops reading the server's stdout: its read end closes at the next line that arrives.
    pub fn close_stdout(&mut self) {
        self.data = mpsc::channel().1;
    }

    /// Waits until stdout has shown `count` lines in all.
    pub fn wait_for_data(&mut self, count: usize) {
        while self.data_seen.len() < count {
            let line = self
                .data
                .recv_timeout(LIMIT)
                .unwrap_or_else(|_| panic!("fewer than {count} lines on stdout"));
            self.data_seen.push(line);
        }
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_for_event(&mut self, needle: &str) -> String {
        loop {
            let line = self.events.recv_timeout(LIMIT).unwrap_or_else(|_| panic!("no `{needle}` on stderr"));
            self.stderr_seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Sends `signal` (e.g. `INT`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Sends SIGINT; returns the exit status, every stdout line and every stderr line.
    pub fn stop(self) -> Stopped {
        self.signal("INT");
        self.finish()
    }

    /// Waits for the server to exit by itself; returns what [`ServeProcess::stop`] returns.
    pub fn finish(mut self) -> Stopped {
        let status = wait_with_limit(&mut self.child);
        let mut stdout = std::mem::take(&mut self.data_seen);
        // The forwarding threads end at EOF, which follows the exit.
        while let Ok(line) = self.data.recv_timeout(LIMIT) {
            stdout.push(line);
        }
        let mut stderr = std::mem::take(&mut self.stderr_seen);
        while let Ok(line) = self.events.recv_timeout(LIMIT) {
            stderr.push(line);
        }
        Stopped { status, stdout, stderr }
    }
}

/// What a stopped server process left.
pub struct Stopped {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

/// Forwards the lines of a pipe to a channel, from a thread, until EOF.
pub fn forward_lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on (at the moment of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("bound").port()
}

/// Waits for a child to exit, killing it (and failing) after [`LIMIT`].
pub fn wait_with_limit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {LIMIT:?}", child.id());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `hubcat ARGS` with `input` on stdin; returns its output, failing after [`LIMIT`].
pub fn run_hubcat(args: &[&str], input: &[u8]) -> Output {
    let mut child = hubcat(args).spawn().expect("hubcat starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&input);
    });
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let out_reader = thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let err_reader = thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let status = wait_with_limit(&mut child);
    let _ = writer.join();
    Output {
        status,
        stdout: out_reader.join().expect("stdout reader").into_bytes(),
        stderr: err_reader.join().expect("stderr reader").into_bytes(),
    }
}
