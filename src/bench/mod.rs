//! `hubcat bench`: a load generator for hubcat and any other TCP server, like redis-benchmark is
//! for Redis. Every run is bounded in count and time, and talks to loopback only.

mod churn;
mod dial;
mod echo;
mod fanout;
mod hold;
mod ingest;
mod procfs;
mod report;
mod spawn;

use dial::connect;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use fanout::Fanout;
pub use report::{Metric, Report};
pub use spawn::Spawned;

/// The scenarios and their sizes.
#[derive(Clone, Debug)]
pub enum Scenario {
    /// `clients` clients each stream `lines` lines of `line_bytes` bytes (newline included), then close.
    Ingest {
        /// Concurrent clients.
        clients: usize,
        /// Lines per client.
        lines: u64,
        /// Bytes per line, newline included.
        line_bytes: usize,
        /// Lines the server prints for the whole run (default: clients × lines).
        expect_lines: Option<u64>,
    },
    /// Open `conns` connections that each send one line and stay idle; measure memory per connection.
    Hold {
        /// Connections held at once.
        conns: usize,
        /// Pause after the last connection before memory is read.
        settle: Duration,
    },
    /// `conns` short connections (connect, one line, close), `concurrency` at a time.
    Churn {
        /// Connections in all.
        conns: usize,
        /// Connections in flight at once.
        concurrency: usize,
    },
    /// A room of clients on a chat or broker server; a few send paced messages to all.
    Fanout(Fanout),
    /// `clients` clients ping-pong `bytes`-byte messages for `duration` against an echo server.
    Echo {
        /// Concurrent clients.
        clients: usize,
        /// Message size.
        bytes: usize,
        /// How long to run.
        duration: Duration,
    },
}

impl Scenario {
    /// The scenario's name, as on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Ingest { .. } => "ingest",
            Scenario::Hold { .. } => "hold",
            Scenario::Churn { .. } => "churn",
            Scenario::Echo { .. } => "echo",
            Scenario::Fanout(_) => "fanout",
        }
    }
}

/// Which server to load.
#[derive(Clone, Debug)]
pub enum Server {
    /// One that is already running at this address.
    At(SocketAddr),
    /// A command bench starts itself, with `{port}` replaced by a free port; its stdout is
    /// counted and its process tree measured.
    Spawn(String),
}

/// Settings of one bench run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// The server to load.
    pub server: Server,
    /// What to do.
    pub scenario: Scenario,
    /// Upper bound on the whole run.
    pub time_limit: Duration,
    /// Clients speak TLS (ingest, hold and churn; the certificate is not checked).
    pub tls: bool,
}

/// Why a bench run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The settings do not fit together.
    #[error("{0}")]
    Usage(String),
    /// The server command could not be started or never accepted.
    #[error("{0}")]
    Spawn(String),
    /// The server stopped answering as the scenario needs.
    #[error("{0}")]
    Server(String),
    /// A local failure (sockets, descriptors).
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The server being loaded: its address, and the process when bench started it.
pub struct UnderTest {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// How clients connect.
    dialer: dial::Dialer,
    /// The process, when bench started it.
    pub spawned: Option<Spawned>,
}

/// Runs one scenario against the configured server.
pub async fn run(config: BenchConfig) -> Result<Report, BenchError> {
    // Every held or churned connection is a descriptor here too.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mut under_test = match &config.server {
        Server::At(addr) => {
            UnderTest { addr: *addr, dialer: dial::Dialer::new(*addr, config.tls)?, spawned: None }
        }
        Server::Spawn(command) => {
            let spawned = Spawned::start(command).await?;
            UnderTest {
                addr: spawned.addr,
                dialer: dial::Dialer::new(spawned.addr, config.tls)?,
                spawned: Some(spawned),
            }
        }
    };
    if config.tls && matches!(config.scenario, Scenario::Echo { .. } | Scenario::Fanout(_)) {
        return Err(BenchError::Usage("--tls works with ingest, hold and churn".into()));
    }
    let target = match &config.server {
        Server::At(addr) => addr.to_string(),
        Server::Spawn(command) => command.clone(),
    };
    let run = async {
        match config.scenario.clone() {
            Scenario::Ingest { clients, lines, line_bytes, expect_lines } => {
                ingest::run(&mut under_test, clients, lines, line_bytes, expect_lines, config.time_limit)
                    .await
            }
            Scenario::Hold { conns, settle } => {
                hold::run(&mut under_test, conns, settle, config.time_limit).await
            }
            Scenario::Churn { conns, concurrency } => {
                churn::run(&mut under_test, conns, concurrency, config.time_limit).await
            }
            Scenario::Echo { clients, bytes, duration } => {
                echo::run(&under_test, clients, bytes, duration).await
            }
            Scenario::Fanout(sizes) => fanout::run(&under_test, sizes).await,
        }
    };
    let limit = config.time_limit + Duration::from_secs(5);
    let metrics = tokio::time::timeout(limit, run).await.map_err(|_| {
        BenchError::Server(format!("the run did not finish within {}", humantime::format_duration(limit)))
    })??;
    Ok(Report { scenario: config.scenario.name(), target, metrics })
}

/// A progress bar on stderr, hidden when stderr is not a terminal.
fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style.progress_chars("=> "));
    bar.set_message(what.to_string());
    bar
}

/// Seconds between two instants, never zero (rates divide by it).
fn seconds(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64().max(1e-9)
}
