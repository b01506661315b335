//! The accept loop: hand each client to its own task, survive transient errors with a capped
//! backoff (one warning per burst, not one per failure), and stop when told to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Shared;
use super::handler::Connection;
use crate::config::{ACCEPT_BACKOFF_FIRST, ACCEPT_BACKOFF_MAX};
use crate::error::{NetError, is_out_of_descriptors, is_transient_accept, reason};

/// Accepts until `stop` is cancelled (then drops the listener) or the listener fails for good.
pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Result<(), NetError> {
    let local = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut backoff = Backoff::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.succeeded(local);
                let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                let connection = Connection::new(Arc::clone(&shared), stream, peer, id);
                if let Some(record) = connection.connect_record() {
                    // Queued before the task starts, so it precedes the connection's data.
                    let _ = shared.records.send(record).await;
                }
                tokio::spawn(connection);
            }
            Err(err) if is_transient_accept(&err) => {
                let pause = backoff.failed(local, &err);
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            Err(source) => return Err(NetError::Accept { addr: local, source }),
        }
    }
}

/// Exponential pause between failing accepts, reset by the next success.
#[derive(Debug, Default)]
struct Backoff {
    /// Failures in the current burst (0 when accepting normally).
    failures: u64,
    pause: Duration,
}

impl Backoff {
    fn failed(&mut self, local: SocketAddr, err: &std::io::Error) -> Duration {
        if self.failures == 0 {
            let hint = if is_out_of_descriptors(err) {
                " (raise the open-files limit with `ulimit -n`, or lower the connection count)"
            } else {
                ""
            };
            warn!("cannot accept on {local}: {}{hint}; retrying with backoff", reason(err));
            self.pause = ACCEPT_BACKOFF_FIRST;
        } else {
            self.pause = (self.pause * 2).min(ACCEPT_BACKOFF_MAX);
        }
        self.failures += 1;
        self.pause
    }

    fn succeeded(&mut self, local: SocketAddr) {
        if self.failures > 0 {
            info!("accepting on {local} again after {} failed attempts", self.failures);
            self.failures = 0;
        }
    }
}
