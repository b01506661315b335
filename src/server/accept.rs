//! The accept loop: admit each client under the caps into a task of its own, turn the rest away
//! with a one-line message, survive transient errors with a capped backoff (one warning per
//! burst, not one per failure), and on stop take what is already queued before closing.

use std::fs::File;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Shared;
use super::conn::Connection;
use super::proxied;
use super::registry::Refusal;
use super::socket::{Accept, Socket, Stream};
use crate::config::{ACCEPT_BACKOFF_FIRST, ACCEPT_BACKOFF_MAX, PROXY_HEADER_TIMEOUT};
use crate::error::{NetError, is_out_of_descriptors, is_transient_accept, reason};
use crate::output::{Event, Format, Origin, Peer, json_event};

/// Accepts until `stop` is cancelled (then drops the listener) or the listener fails for good.
pub(super) async fn accept_loop<L: Accept>(
    listener: L,
    local: String,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> Result<(), NetError> {
    let mut backoff = Backoff::default();
    let mut turned_away = Burst::default();
    // Held so that, out of descriptors, one can be freed to accept a client and tell it to go.
    let mut reserve = File::open("/dev/null").ok();
    // With --proxy-protocol: connections whose PROXY header is being read, each in a task.
    let mut headers = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => {
                take_queued(listener, &shared, &mut turned_away, &stop, &mut headers).await;
                return Ok(());
            }
            Some(joined) = headers.join_next(), if !headers.is_empty() => {
                headed(joined, &shared, &mut turned_away, &stop).await;
                continue;
            }
            accepted = poll_fn(|cx| listener.poll_accept(cx)) => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.succeeded(&local);
                take_in(&shared, stream, peer, &mut turned_away, &stop, &mut headers).await;
            }
            Err(err) if is_transient_accept(&err) => {
                shared.stats.add_accept_error(&err);
                if is_out_of_descriptors(&err) {
                    refuse_with_reserve(&listener, &shared, &mut reserve, &mut turned_away).await;
                }
                let pause = backoff.failed(&local, &err);
                tokio::select! {
                    _ = stop.cancelled() => {
                        take_queued(listener, &shared, &mut turned_away, &stop, &mut headers).await;
                        return Ok(());
                    }
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            Err(source) => return Err(NetError::Accept { addr: local, source }),
        }
    }
}

/// A new connection: admitted, or first its PROXY header read (with `--proxy-protocol`).
async fn take_in<S: Stream>(
    shared: &Arc<Shared>,
    stream: S,
    peer: Peer,
    turned_away: &mut Burst,
    stop: &CancellationToken,
    headers: &mut JoinSet<Headed<S>>,
) {
    match &shared.config.proxy_from {
        Some(trusted) => read_proxy_header(stream, peer, trusted, shared, headers, turned_away),
        None => admit(shared, stream, peer, turned_away, stop).await,
    }
}

/// A connection with its PROXY header read: the client's own address, or `None` for the
/// balancer's own check (LOCAL, UNKNOWN); or why it was refused.
type Headed<S> = Result<(S, Option<SocketAddr>), (Peer, String)>;

/// A connection from a load balancer: its PROXY header is read in a task of its own (a
/// balancer that stalls holds up nobody), then it is admitted under the client's own address.
/// A connection from anywhere else is closed at once, and so is one more than the connection
/// cap can hold while headers are being read (each holds a descriptor).
fn read_proxy_header<S: Stream>(
    mut stream: S,
    peer: Peer,
    trusted: &[ipnet::IpNet],
    shared: &Arc<Shared>,
    headers: &mut JoinSet<Headed<S>>,
    turned_away: &mut Burst,
) {
    let balancer = match peer {
        // A dual-stack listener sees an IPv4 balancer as ::ffff:a.b.c.d.
        Peer::Ip(addr) if trusted.iter().any(|net| net.contains(&addr.ip().to_canonical())) => addr,
        _ => {
            record_refusal(shared, peer, Refusal::NotProxied);
            turned_away.refused(Refusal::NotProxied, peer, shared.registry.len());
            return;
        }
    };
    if headers.len() + shared.registry.len() >= shared.config.max_conns {
        refuse(shared, &stream, peer, Refusal::Full);
        turned_away.refused(Refusal::Full, peer, shared.registry.len());
        return;
    }
    headers.spawn(async move {
        let read = tokio::time::timeout(PROXY_HEADER_TIMEOUT, proxied::read_header(&mut stream)).await;
        match read {
            Ok(Ok(client)) => {
                Ok((stream, client.map(|addr| SocketAddr::new(addr.ip().to_canonical(), addr.port()))))
            }
            Ok(Err(err)) => Err((Peer::Ip(balancer), crate::error::reason(&err))),
            Err(_) => Err((Peer::Ip(balancer), format!("no PROXY header within {PROXY_HEADER_TIMEOUT:?}"))),
        }
    });
}

/// Admits a connection whose header was read, or counts why it was not.
async fn headed<S: Stream>(
    joined: Result<Headed<S>, tokio::task::JoinError>,
    shared: &Arc<Shared>,
    turned_away: &mut Burst,
    stop: &CancellationToken,
) {
    match joined {
        Ok(Ok((stream, Some(client)))) => admit(shared, stream, Peer::Ip(client), turned_away, stop).await,
        // The balancer checking that the server is up: nothing to record.
        Ok(Ok((_, None))) => {}
        Ok(Err((peer, why))) => {
            warn!("{peer}: closed: {why}");
            record_refusal(shared, peer, Refusal::NotProxied);
        }
        Err(_) => shared.stats.add_refused(),
    }
}

/// Starts a connection's task if the caps allow it, or turns the client away.
async fn admit<S: Stream>(
    shared: &Arc<Shared>,
    stream: S,
    peer: Peer,
    turned_away: &mut Burst,
    stop: &CancellationToken,
) {
    // Access rules and rates are about addresses; a Unix socket's file mode is its access rule.
    if peer.ip().is_some_and(|ip| !shared.config.access.permits(ip)) {
        // Closed before any greeting: a refused client learns nothing about the server.
        record_refusal(shared, peer, Refusal::Denied);
        turned_away.refused(Refusal::Denied, peer, shared.registry.len());
        return;
    }
    if shared.rate.as_ref().zip(peer.ip()).is_some_and(|(rate, ip)| !rate.admit(ip)) {
        refuse(shared, &stream, peer, Refusal::TooFast);
        turned_away.refused(Refusal::TooFast, peer, shared.registry.len());
        return;
    }
    let slot = match shared.registry.try_insert(peer.ip()) {
        Ok(slot) => slot,
        Err(refusal) => {
            refuse(shared, &stream, peer, refusal);
            turned_away.refused(refusal, peer, shared.registry.len());
            return;
        }
    };
    turned_away.admitted();
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let connection = Connection::new(Arc::clone(shared), stream, peer, id, slot);
    if let Some(record) = connection.connect_record() {
        // Queued before the task starts, so it precedes the connection's data; a full output
        // may delay it, but never past a stop.
        tokio::select! {
            biased;
            permit = shared.records.clone().reserve_owned() => {
                if let Ok(permit) = permit {
                    permit.send(record);
                }
            }
            _ = stop.cancelled() => {}
        }
    }
    tokio::spawn(connection);
}

/// Tells a client why it is turned away and closes (the message goes first, then FIN). One
/// write that never waits: the socket is new, so its send buffer is empty.
fn refuse(shared: &Shared, stream: &dyn Socket, peer: Peer, refusal: Refusal) {
    let fd = stream.fd();
    let socket = socket2::SockRef::from(&fd);
    let _ = socket.send(&shared.config.busy_message);
    let _ = socket.shutdown(std::net::Shutdown::Write);
    record_refusal(shared, peer, refusal);
}

/// Counts a client turned away and, in formats that record events, records it.
fn record_refusal(shared: &Shared, peer: Peer, refusal: Refusal) {
    shared.stats.add_refusal(refusal);
    if shared.config.style.format == Format::Json {
        let mut out = Vec::new();
        let reason = match refusal {
            Refusal::Full => "at --max-conns",
            Refusal::PerAddress => "at --max-conns-per-ip",
            Refusal::OutOfDescriptors => "out of file descriptors",
            Refusal::Denied => "not allowed by --allow/--deny",
            Refusal::TooFast => "over --max-conn-rate-per-ip",
            Refusal::NotProxied => "not from --proxy-from with a PROXY header",
        };
        json_event(&mut out, Origin { conn: None, peer }, Event::Refused { reason });
        let _ = shared.records.try_send(out);
    }
}

/// Out of descriptors with a client waiting: free the reserve descriptor, accept the client,
/// tell it the server is busy, and take the reserve back. Without this the client would wait in
/// the queue, unanswered, until a descriptor frees up.
async fn refuse_with_reserve<L: Accept>(
    listener: &L,
    shared: &Shared,
    reserve: &mut Option<File>,
    burst: &mut Burst,
) {
    if reserve.take().is_none() {
        *reserve = File::open("/dev/null").ok();
        return;
    }
    // Polled once, never waited on: the listener just reported a pending client.
    let accepted = poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await;
    if let Poll::Ready(Ok((stream, peer))) = accepted {
        refuse(shared, &stream, peer, Refusal::OutOfDescriptors);
        burst.refused(Refusal::OutOfDescriptors, peer, shared.registry.len());
    }
    *reserve = File::open("/dev/null").ok();
}

/// At shutdown: clients whose connection the kernel already completed are accepted and served
/// through the drain rather than reset when the listener closes; then the listener is dropped,
/// so later clients are refused at once.
async fn take_queued<L: Accept>(
    listener: L,
    shared: &Arc<Shared>,
    turned_away: &mut Burst,
    stop: &CancellationToken,
    headers: &mut JoinSet<Headed<L::Stream>>,
) {
    // Polled, never waited on: what the kernel has queued, and no more.
    while let Poll::Ready(Ok((stream, peer))) = poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await {
        take_in(shared, stream, peer, turned_away, stop, headers).await;
    }
    drop(listener);
    // Headers on their way get the grace period (at most their own limit) to arrive.
    let deadline = tokio::time::Instant::now() + shared.config.grace.min(PROXY_HEADER_TIMEOUT);
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, headers.join_next()).await {
        headed(joined, shared, turned_away, stop).await;
    }
    headers.abort_all();
}

/// Exponential pause between failing accepts, reset by the next success.
#[derive(Debug, Default)]
struct Backoff {
    /// Failures in the current burst (0 when accepting normally).
    failures: u64,
    pause: Duration,
}

impl Backoff {
    fn failed(&mut self, local: &str, err: &std::io::Error) -> Duration {
        if self.failures == 0 {
            let hint = if is_out_of_descriptors(err) {
                " (raise the open-files limit with `ulimit -n`, or lower --max-conns)"
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

    fn succeeded(&mut self, local: &str) {
        if self.failures > 0 {
            info!("accepting on {local} again after {} failed attempts", self.failures);
            self.failures = 0;
        }
    }
}

/// Clients turned away since the last one admitted: one warning per burst.
#[derive(Debug, Default)]
struct Burst {
    refused: u64,
}

impl Burst {
    fn refused(&mut self, refusal: Refusal, peer: Peer, live: usize) {
        let from = peer.ip().map_or_else(|| peer.to_string(), |ip| ip.to_string());
        if self.refused == 0 {
            match refusal {
                Refusal::Full => warn!("at the connection cap ({live} open): turning new clients away"),
                Refusal::PerAddress => {
                    warn!("{from} is at --max-conns-per-ip: turning its new connections away")
                }
                Refusal::OutOfDescriptors => {
                    warn!("out of file descriptors with {live} open: turning new clients away")
                }
                Refusal::Denied => info!("{from} refused: not allowed by --allow/--deny"),
                Refusal::TooFast => {
                    warn!("{from} is over --max-conn-rate-per-ip: turning its new connections away")
                }
                Refusal::NotProxied => {
                    warn!("{from}: closed: --proxy-protocol takes connections only from --proxy-from")
                }
            }
        }
        self.refused += 1;
    }

    fn admitted(&mut self) {
        if self.refused > 0 {
            info!("admitting clients again after turning {} away", self.refused);
            self.refused = 0;
        }
    }
}
