//! A UDP session: one datagram per line of input, replies shown as they arrive, and once the
//! input has ended, replies still shown until none has come for the wait period.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;

use super::tcp::trim_line_ending;
use super::{InputMode, SessionEnd};
use crate::config::{MAX_DATAGRAM_BYTES, QUIT_WORD};
use crate::output::escape_text_into;

/// Runs a session over a connected UDP socket.
pub async fn udp_session<R, W>(
    socket: UdpSocket,
    input: R,
    mut output: W,
    mode: InputMode,
    escape: bool,
    wait: Duration,
) -> io::Result<SessionEnd>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0; MAX_DATAGRAM_BYTES];
    tokio::select! {
        sent = send_lines(&socket, input, &mode) => sent?,
        received = show_replies(&socket, &mut output, &mut buffer, escape) => received?,
    }
    loop {
        match tokio::time::timeout(wait, socket.recv(&mut buffer)).await {
            Ok(Ok(n)) => show_datagram(&mut output, &buffer[..n], escape).await?,
            Ok(Err(err)) => return Err(err),
            Err(_) => return Ok(SessionEnd::Finished),
        }
    }
}

/// Sends each line of input as one datagram, without its line ending.
async fn send_lines<R>(socket: &UdpSocket, mut input: R, mode: &InputMode) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
{
    let mut line = Vec::new();
    let mut datagram = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = trim_line_ending(&line);
        datagram.clear();
        if let InputMode::Named(name) | InputMode::Chat(name) = mode {
            if text == QUIT_WORD.as_bytes() {
                return Ok(());
            }
            datagram.extend_from_slice(format!("{name} says: ").as_bytes());
        }
        datagram.extend_from_slice(text);
        socket.send(&datagram).await?;
    }
}

/// Shows datagrams until receiving fails (it never ends otherwise).
async fn show_replies<W>(
    socket: &UdpSocket,
    output: &mut W,
    buffer: &mut [u8],
    escape: bool,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    loop {
        let n = socket.recv(buffer).await?;
        show_datagram(output, &buffer[..n], escape).await?;
    }
}

/// Writes one datagram as a line of its own.
async fn show_datagram<W>(output: &mut W, datagram: &[u8], escape: bool) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut shown = Vec::with_capacity(datagram.len() + 1);
    if escape {
        escape_text_into(&mut shown, datagram);
    } else {
        shown.extend_from_slice(datagram);
    }
    if !shown.ends_with(b"\n") {
        shown.push(b'\n');
    }
    output.write_all(&shown).await?;
    output.flush().await
}
