//! The `hubcat` binary: parse arguments, log to stderr, run a subcommand, map the outcome to an
//! exit code (0 done, 1 runtime failure, 2 usage error, 3 the server ended the session,
//! 130 stopped by a second Ctrl-C).

mod args;
mod bench;
mod connect;
mod privilege;
mod serve;
mod systemd;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing::level_filters::LevelFilter;

use args::{Cli, Command};

// Fewer bytes per idle connection than glibc's malloc for tokio's 128-byte-aligned task cells.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long a finished command waits for background work (a blocked stdin read) before exiting.
const RUNTIME_EXIT_WAIT: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => return fail(format_args!("cannot start the async runtime: {err}")),
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::serve(*args).await,
            Command::Connect(args) => connect::connect(args).await,
            Command::Bench(args) => bench::bench(args).await,
        }
    });
    runtime.shutdown_timeout(RUNTIME_EXIT_WAIT);
    code
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => LevelFilter::WARN,
        (_, true) => LevelFilter::DEBUG,
        _ => LevelFilter::INFO,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_max_level(level)
        .init();
}

/// Prints one `error: ...` line and returns exit code 1.
pub fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(1)
}
