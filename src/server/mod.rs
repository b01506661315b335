//! `hubcat serve`: accept clients on bound listeners, one task per connection, records to one
//! sink; on shutdown stop accepting, drain connections within the grace period, flush, summarise.
//!
//! | file | owns |
//! |---|---|
//! | `accept` | the accept loop: access rules, rate, caps, backoff, the reserve descriptor |
//! | `conn`, `conn/park` | one connection's life, the same in every mode (the hand-written future); leaving its task for the parking lot and back |
//! | `wire` | a connection's bytes on the socket, plain or through TLS (rustls, sans-IO) |
//! | `answer` | what a mode writes back: dispatch to `echo`, `relay` or `exec` |
//! | `exec`, `process` | `--exec`: a command per connection and its pipes; its process group |
//! | `proxied` | the PROXY protocol header of a load balancer |
//! | `socket` | TCP and Unix streams and listeners, as the core uses them |
//! | `relay`, `outbox`, `room`, `chat` | a relay client's own side; its queue and health; the room and its gate; chat lines |
//! | `parking` | idle print-mode connections outside the runtime, and the idle clock |
//! | `console` | the web console's view: live connections, metrics, lines and disconnects it sends |
//! | `registry`, `timer`, `transcript`, `stats`, `rate` | slots and phase; deadlines; records and close reasons; counters; connects per address |

mod accept;
mod answer;
mod chat;
mod cluster;
mod conn;
mod console;
mod echo;
mod exec;
mod outbox;
mod parking;
mod process;
mod proxied;
mod rate;
mod registry;
mod relay;
mod room;
mod socket;
mod stats;
mod timer;
mod transcript;
mod udp;
mod wire;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use cluster::ClusterUrl;
pub use console::{ConnectionView, Console, Metrics, NotSent, mode_name};
pub use process::kill_all_commands;
pub use stats::Summary;
pub use udp::run_udp;

use crate::config::ServerConfig;
use crate::error::NetError;
use crate::output::{RecordSender, Sink, SinkError};
use crate::shutdown::Shutdown;
use crate::unix::{SocketFile, UnixBinding};
use registry::{Phase, Registry};
use room::Room;
use stats::Stats;

/// Why the server stopped other than by request.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener failed for good.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The output could not be written.
    #[error(transparent)]
    Output(#[from] SinkError),
}

/// State every connection task shares (behind one `Arc`, so a task holds one pointer to it).
#[derive(Debug)]
struct Shared {
    config: ServerConfig,
    records: RecordSender,
    registry: Registry,
    /// The clients of the chat and broker modes.
    room: Room,
    /// With `--cluster`: the frames to publish, until the link's task takes them.
    cluster_frames: std::sync::Mutex<Option<cluster::Pending>>,
    /// New connections per address, when `--max-conn-rate-per-ip` is set.
    rate: Option<rate::ConnectionRate>,
    stats: Stats,
    next_id: AtomicU64,
    /// Idle print-mode connections outside the runtime (`--park-after`).
    parking: Option<parking::Lot>,
}

impl Shared {
    fn new(config: ServerConfig, records: RecordSender) -> Self {
        let room = Room::new(&config);
        let cluster_frames = config.cluster.as_ref().map(|_| {
            let (link, frames) = cluster::Link::new();
            room.connect(Arc::clone(&link));
            (link, frames)
        });
        let parking = match config.parks_idle() {
            true => parking::Lot::new(config.park_after, descriptor_limit().min(config.max_conns))
                .map_err(|err| tracing::warn!("idle connections will not be parked: {err}"))
                .ok(),
            false => None,
        };
        Shared {
            parking,
            registry: Registry::new(config.max_conns, config.max_conns_per_ip, descriptor_limit()),
            room,
            cluster_frames: std::sync::Mutex::new(cluster_frames),
            rate: config.max_conn_rate_per_ip.map(rate::ConnectionRate::new),
            config,
            records,
            stats: Stats::default(),
            next_id: AtomicU64::new(1),
        }
    }
}

/// A socket the server accepts clients on.
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix listener, and its socket file (removed when the listener closes).
    Unix(UnixListener, String, Option<SocketFile>),
}

impl Listener {
    /// Registers a bound Unix listener with the runtime.
    pub fn unix(binding: UnixBinding) -> std::io::Result<Self> {
        let label = binding.addr.to_string();
        Ok(Listener::Unix(UnixListener::from_std(binding.listener)?, label, binding.file))
    }

    /// Where it listens, as the log shows it.
    pub fn label(&self) -> String {
        match self {
            Listener::Tcp(listener) => listener.local_addr().map_or_else(|_| "?".into(), |a| a.to_string()),
            Listener::Unix(_, label, _) => label.clone(),
        }
    }
}

/// Serves clients on `listeners` until `shutdown` is triggered or the output fails, then
/// drains: stops accepting, lets connections send for the grace period, closes the rest,
/// and waits until everything read is written to `sink`.
pub async fn run(
    listeners: Vec<Listener>,
    config: ServerConfig,
    sink: Sink,
    shutdown: Shutdown,
) -> Result<Summary, ServeError> {
    let grace = config.grace;
    let shared = Arc::new(Shared::new(config, sink.sender()));
    if let Some(console) = &shared.config.console {
        console.attach(&shared);
    }
    let taken = shared.cluster_frames.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    let cluster = match (taken, shared.config.cluster.clone()) {
        (Some((link, frames)), Some(url)) => {
            Some(tokio::spawn(cluster::run(link, url, frames, Arc::clone(&shared))))
        }
        _ => None,
    };
    if let Err(err) = parking::Lot::start(&shared) {
        tracing::warn!("idle connections will not be parked: cannot start the parking thread: {err}");
    }
    let stop_accepting = CancellationToken::new();
    let mut accepting = JoinSet::new();
    for listener in listeners {
        let (label, shared, stop) = (listener.label(), Arc::clone(&shared), stop_accepting.clone());
        match listener {
            Listener::Tcp(listener) => accepting.spawn(accept::accept_loop(listener, label, shared, stop)),
            Listener::Unix(listener, _, file) => accepting.spawn(async move {
                let accepted = accept::accept_loop(listener, label, shared, stop).await;
                drop(file);
                accepted
            }),
        };
    }
    let output_failed = sink.failed();
    let mut fatal = None;
    tokio::select! {
        _ = shutdown.triggered() => {}
        _ = output_failed.cancelled() => {}
        Some(Ok(Err(err))) = accepting.join_next() => fatal = Some(err),
    }
    stop_accepting.cancel();
    // Every listener is dropped before draining, so new clients are refused rather than queued.
    while accepting.join_next().await.is_some() {}
    let grace = if output_failed.is_cancelled() { Default::default() } else { grace };
    let cut_off = drain(&shared, grace).await;
    if let Some(lot) = &shared.parking {
        lot.stop();
    }
    // Commands of --exec still running past the grace period do not outlive the server.
    kill_all_commands();
    if let Some(cluster) = cluster {
        // Its hold on the shared state must go before the output can finish.
        cluster.abort();
        let _ = cluster.await;
    }
    let mut summary = shared.stats.summary(cut_off);
    (summary.dropped, summary.kicked) = shared.room.slow_counts();
    drop(shared);
    match tokio::time::timeout(FINISH_LIMIT, sink.finish()).await {
        Ok(finished) => finished?,
        Err(_) => {
            tracing::error!("the output did not take the last records within {FINISH_LIMIT:?}; they are lost")
        }
    }
    match fatal {
        Some(err) => Err(err.into()),
        None => Ok(summary),
    }
}

/// After the grace period, how long connections get to close before the server goes on without
/// them (they close at their next poll, so this is never reached in practice).
const CLOSE_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);
/// How long the output may take to write what was read, after the connections closed, before
/// the server gives up on it (a stuck terminal or pipe reader, not a client).
const FINISH_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The most descriptors this process may open, hence the most connections it can hold.
fn descriptor_limit() -> usize {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| usize::try_from(soft).unwrap_or(0))
}

/// Lets connections finish within `grace`, then closes the rest; returns how many were cut off.
async fn drain(shared: &Arc<Shared>, grace: std::time::Duration) -> u64 {
    let registry = &shared.registry;
    registry.advance(Phase::Draining);
    if let Some(lot) = &shared.parking {
        // Parked connections have no task to wake: they get one, to hear the notice and close.
        lot.resume_all(shared);
    }
    if tokio::time::timeout(grace, registry.wait_empty()).await.is_ok() {
        return 0;
    }
    let cut_off = registry.len() as u64;
    registry.advance(Phase::Closing);
    // Every connection ends at its next poll once it sees `Closing`, and the registry tracks
    // each one until its state is dropped; the bound is a safeguard so the exit never hangs.
    if tokio::time::timeout(CLOSE_LIMIT, registry.wait_empty()).await.is_err() {
        tracing::warn!("{} connections did not close in time; exiting without them", registry.len());
    }
    cut_off
}
