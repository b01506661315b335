//! `hubcat serve --udp`: each datagram becomes records labelled with its sender's address;
//! with `--mode echo` it also goes back to its sender.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tracing::warn;

use super::stats::Stats;
use super::{ServeError, Summary};
use crate::config::{MAX_DATAGRAM_BYTES, Mode, ServerConfig};
use crate::error::{NetError, is_transient_accept, reason};
use crate::framing::{Framer, Line, Piece};
use crate::output::{Format, Origin, RecordSender, Records, Sink};
use crate::shutdown::Shutdown;

/// Receives datagrams on every socket until `shutdown` is triggered or the output fails.
pub async fn run_udp(
    sockets: Vec<UdpSocket>,
    config: ServerConfig,
    sink: Sink,
    shutdown: Shutdown,
) -> Result<Summary, ServeError> {
    let stats = Arc::new(Stats::default());
    let config = Arc::new(config);
    let mut receivers = JoinSet::new();
    for socket in sockets {
        receivers.spawn(receive_loop(socket, Arc::clone(&config), sink.sender(), Arc::clone(&stats)));
    }
    let output_failed = sink.failed();
    let mut fatal = None;
    tokio::select! {
        _ = shutdown.triggered() => {}
        _ = output_failed.cancelled() => {}
        Some(Ok(Err(err))) = receivers.join_next() => fatal = Some(err),
    }
    receivers.shutdown().await;
    sink.finish().await?;
    match fatal {
        Some(err) => Err(err.into()),
        None => Ok(stats.summary(0)),
    }
}

async fn receive_loop(
    socket: UdpSocket,
    config: Arc<ServerConfig>,
    records: RecordSender,
    stats: Arc<Stats>,
) -> Result<(), NetError> {
    let local = socket.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let mut buffer = vec![0; MAX_DATAGRAM_BYTES];
    loop {
        let (n, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            // An ICMP error for an earlier send, or a brief shortage: nothing to do with the socket.
            Err(err) if is_transient_accept(&err) || err.kind() == io::ErrorKind::ConnectionRefused => {
                warn!("receiving on {local}: {}", reason(&err));
                continue;
            }
            Err(source) => return Err(NetError::Accept { addr: local.to_string(), source }),
        };
        if !config.access.permits(peer.ip()) {
            // Not echoed, not recorded: a datagram from a refused address is dropped unread.
            stats.add_denied();
            continue;
        }
        if config.mode == Mode::Echo {
            // Best effort, like UDP itself: a full send buffer loses the echo, not the server.
            let _ = socket.try_send_to(&buffer[..n], peer);
        }
        let (out, lines) = render_datagram(&config, peer, &buffer[..n]);
        stats.add_datagram(n as u64, lines);
        if !out.is_empty() && records.send(out).await.is_err() {
            return Ok(());
        }
    }
}

/// Renders one datagram; a datagram is a whole message, so its last line ends with it.
fn render_datagram(config: &ServerConfig, peer: SocketAddr, data: &[u8]) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(data.len() + 128);
    let mut records = Records::new(config.style, Origin { conn: None, peer: peer.into() }, &mut out);
    let mut lines = 0;
    match config.style.format {
        Format::Lines | Format::Json => {
            let mut framer = Framer::new();
            let mut emit = |line: Line<'_>| {
                lines += u64::from(line.piece == Piece::End);
                records.line(line);
            };
            framer.lines(data, config.max_line, &mut emit);
            framer.finish_lines(config.max_line, &mut emit);
        }
        Format::Raw => {
            records.raw(data);
            lines = memchr::memchr_iter(b'\n', data).count() as u64;
        }
        Format::Chunks => records.chunk(data),
        Format::Hex => records.hex(data, 0),
    }
    records.finish();
    (out, lines)
}
