//! `hubcat bench`: its arguments, and running a scenario to a table (or JSON) on stdout.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use hubcat::bench::{BenchConfig, Fanout, Scenario, Server};
use hubcat::config::{DEFAULT_HOST, DEFAULT_PORT};

use crate::args::usage_error;
use crate::fail;

/// Runs the scenario and prints its report.
pub async fn bench(args: BenchArgs) -> ExitCode {
    let config = match args.scenario.config() {
        Ok(config) => config,
        Err(err) => err.exit(),
    };
    match hubcat::bench::run(config).await {
        Ok(report) if args.scenario.common().json => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => fail(format_args!("bench: {err}")),
    }
}

/// Arguments of `hubcat bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The load to apply.
    #[command(subcommand)]
    pub scenario: ScenarioArgs,
}

/// The bench scenarios.
#[derive(Debug, Subcommand)]
pub enum ScenarioArgs {
    /// Clients stream lines as fast as they can; throughput until the server printed the last one.
    Ingest {
        #[command(flatten)]
        common: BenchCommon,
        /// Concurrent clients.
        #[arg(long, default_value_t = 100)]
        clients: usize,
        /// Lines each client sends.
        #[arg(long, default_value_t = 20_000)]
        lines: u64,
        /// Bytes per line, newline included.
        #[arg(long, value_name = "BYTES", default_value_t = 64)]
        line_bytes: usize,
        /// Lines the server prints for the whole run, when not one per line sent.
        #[arg(long, value_name = "N")]
        expect_lines: Option<u64>,
    },
    /// Hold idle connections (one line each); memory per connection, and a new client's wait.
    Hold {
        #[command(flatten)]
        common: BenchCommon,
        /// Connections to hold at once (keep under 18,900: 20,000 descriptors per process here).
        #[arg(long, default_value_t = 10_000)]
        conns: usize,
        /// Pause before memory is read, once every connection is open (hubcat parks connections
        /// idle for 1 s and its allocator returns the freed memory over about 10 s: give 15s).
        #[arg(long, value_name = "DURATION", default_value_t = Duration::from_secs(1).into())]
        settle: humantime::Duration,
    },
    /// Short connections (connect, one line, close); connections per second.
    Churn {
        #[command(flatten)]
        common: BenchCommon,
        /// Connections in all.
        #[arg(long, default_value_t = 20_000)]
        conns: usize,
        /// Connections in flight at once.
        #[arg(long, default_value_t = 50)]
        concurrency: usize,
    },
    /// A room on a chat or broker server; senders' paced messages reach everyone else.
    Fanout {
        #[command(flatten)]
        common: BenchCommon,
        /// Clients in the room (keep under 18,900 per bench process).
        #[arg(long, default_value_t = 500)]
        clients: usize,
        /// How many of them send.
        #[arg(long, default_value_t = 5)]
        senders: usize,
        /// Messages each sender sends.
        #[arg(long, default_value_t = 1000)]
        messages: u64,
        /// Messages per second per sender (0: as fast as possible).
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Clients that join and never read, to see what they cost the others.
        #[arg(long, default_value_t = 0)]
        stalled: usize,
        /// Bytes per message, newline included.
        #[arg(long, default_value_t = 64)]
        bytes: usize,
    },
    /// Ping-pong messages against an echo server; round trips per second and latency.
    Echo {
        #[command(flatten)]
        common: BenchCommon,
        /// Concurrent clients.
        #[arg(long, default_value_t = 50)]
        clients: usize,
        /// Message size in bytes (the last one is a newline).
        #[arg(long, default_value_t = 64)]
        bytes: usize,
        /// How long to run.
        #[arg(long, value_name = "DURATION", default_value_t = Duration::from_secs(5).into())]
        duration: humantime::Duration,
    },
}

/// Options every scenario shares.
#[derive(Debug, Args)]
pub struct BenchCommon {
    /// Server to load, HOST:PORT on this machine [default: 127.0.0.1:50000].
    #[arg(long, conflicts_with = "spawn")]
    pub target: Option<String>,
    /// Start the server with this shell command, `{port}` replaced by a free port; bench then
    /// counts its output lines and reads its CPU time and memory from /proc.
    #[arg(long, value_name = "COMMAND")]
    pub spawn: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Give up if the run takes longer than this.
    #[arg(long, value_name = "DURATION", default_value_t = Duration::from_secs(120).into())]
    pub time_limit: humantime::Duration,
    /// Clients speak TLS (ingest, hold, churn); the server's certificate is not checked.
    #[arg(long)]
    pub tls: bool,
}

impl ScenarioArgs {
    /// The options every scenario shares.
    pub fn common(&self) -> &BenchCommon {
        match self {
            ScenarioArgs::Ingest { common, .. }
            | ScenarioArgs::Hold { common, .. }
            | ScenarioArgs::Churn { common, .. }
            | ScenarioArgs::Fanout { common, .. }
            | ScenarioArgs::Echo { common, .. } => common,
        }
    }

    /// The library's bench settings; the target must be on this machine.
    pub fn config(&self) -> Result<BenchConfig, clap::Error> {
        let common = self.common();
        let server = match (&common.spawn, &common.target) {
            (Some(command), _) => Server::Spawn(command.clone()),
            (None, target) => {
                let text = target.clone().unwrap_or_else(|| format!("{DEFAULT_HOST}:{DEFAULT_PORT}"));
                let addr: SocketAddr = text.parse().map_err(|_| {
                    usage_error(format!("--target {text}: give an address and port, like 127.0.0.1:50000"))
                })?;
                if !addr.ip().is_loopback() {
                    return Err(usage_error("bench only loads servers on this machine (127.0.0.0/8 or ::1)"));
                }
                Server::At(addr)
            }
        };
        let scenario = match *self {
            ScenarioArgs::Ingest { clients, lines, line_bytes, expect_lines, .. } => {
                Scenario::Ingest { clients, lines, line_bytes, expect_lines }
            }
            ScenarioArgs::Hold { conns, settle, .. } => Scenario::Hold { conns, settle: settle.into() },
            ScenarioArgs::Churn { conns, concurrency, .. } => Scenario::Churn { conns, concurrency },
            ScenarioArgs::Echo { clients, bytes, duration, .. } => {
                Scenario::Echo { clients, bytes, duration: duration.into() }
            }
            ScenarioArgs::Fanout { clients, senders, messages, rate, bytes, stalled, .. } => {
                Scenario::Fanout(Fanout { clients, senders, messages, rate, bytes, stalled })
            }
        };
        Ok(BenchConfig { server, scenario, time_limit: common.time_limit.into(), tls: common.tls })
    }
}
