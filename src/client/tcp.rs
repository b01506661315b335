//! A TCP session: input to the socket (named lines or raw bytes, then a half-close) while
//! everything the server sends is shown as it arrives.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{InputMode, SessionEnd};
use crate::config::{QUIT_LINGER, QUIT_WORD};
use crate::output::escape_text_into;

/// Size of the buffer for what the server sends.
const RECEIVE_BUFFER_BYTES: usize = 16 * 1024;

/// Which ways a session carries bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    /// Send the input and show what the server sends.
    #[default]
    Both,
    /// Send the input, never read (`--send-only`): done when the input ends.
    SendOnly,
    /// Never send (`--recv-only`, like `nc -d`): the sending side is closed at once and what
    /// the server sends is shown until it closes.
    RecvOnly,
}

/// How a TCP session treats its bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionOptions {
    /// Make what the server sends safe for a terminal.
    pub escape: bool,
    /// End lines with `\r\n` (`--crlf`): named and chat lines, and each `\n` of raw input
    /// that has no `\r` before it.
    pub crlf: bool,
    /// Which ways bytes go.
    pub direction: Direction,
}

/// Runs a session over `stream` (a TCP socket, or TLS over one) until the input ends (or `Q`)
/// and the server has answered, or the server leaves.
pub async fn tcp_session<S, R, W>(
    stream: S,
    input: R,
    output: W,
    mode: InputMode,
    options: SessionOptions,
) -> io::Result<SessionEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (from_server, mut to_server) = tokio::io::split(stream);
    match options.direction {
        Direction::Both => {}
        Direction::SendOnly => {
            return match send_input(input, to_server, &mode, options.crlf).await {
                Ok(()) => Ok(SessionEnd::Finished),
                Err(err) if is_peer_gone(&err) => Ok(SessionEnd::ClosedByServer),
                Err(err) => Err(err),
            };
        }
        Direction::RecvOnly => {
            to_server.shutdown().await?;
            return ended_by_server(show_replies(from_server, output, options.escape).await, &InputMode::Raw);
        }
    }
    let receiving = show_replies(from_server, output, options.escape);
    tokio::pin!(receiving);
    let sending = send_input(input, to_server, &mode, options.crlf);
    tokio::pin!(sending);
    tokio::select! {
        sent = &mut sending => {
            if let Err(err) = sent {
                if !is_peer_gone(&err) {
                    return Err(err);
                }
                // The server left before taking all the input; how it left is in what the reading
                // side sees.
                return match receiving.await {
                    Ok(()) => Ok(SessionEnd::ClosedByServer),
                    Err(err) => ended_by_server(Err(err), &mode),
                };
            }
            match mode {
                // A raw request is answered until the server closes (the textbook's HTTP GET).
                InputMode::Raw => ended_by_server(receiving.await, &mode),
                // The user quit: give the server a moment to finish, then leave.
                InputMode::Named(_) | InputMode::Chat(_) => match tokio::time::timeout(QUIT_LINGER, receiving).await {
                    Ok(Err(err)) if !is_peer_gone(&err) => Err(err),
                    _ => Ok(SessionEnd::Finished),
                },
            }
        }
        received = &mut receiving => ended_by_server(received, &mode),
    }
}

/// Maps the end of the server's stream to how the session ended.
fn ended_by_server(received: io::Result<()>, mode: &InputMode) -> io::Result<SessionEnd> {
    match received {
        Ok(()) if *mode == InputMode::Raw => Ok(SessionEnd::Finished),
        Ok(()) => Ok(SessionEnd::ClosedByServer),
        Err(err) if is_peer_gone(&err) => Ok(SessionEnd::ResetByServer),
        Err(err) => Err(err),
    }
}

fn is_peer_gone(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted
    )
}

/// Sends the input, then closes the sending side so the server sees the end of it.
async fn send_input<R>(
    mut input: R,
    mut to_server: impl AsyncWrite + Unpin,
    mode: &InputMode,
    crlf: bool,
) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
{
    let ending: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    match mode {
        InputMode::Raw if crlf => copy_with_crlf(&mut input, &mut to_server).await?,
        InputMode::Raw => {
            tokio::io::copy_buf(&mut input, &mut to_server).await?;
        }
        InputMode::Named(name) | InputMode::Chat(name) => {
            let chat = matches!(mode, InputMode::Chat(_));
            let prefix = if chat {
                // The room's first line is the nickname; later lines go as typed.
                to_server.write_all(name.as_bytes()).await?;
                to_server.write_all(ending).await?;
                String::new()
            } else {
                format!("{name} says: ")
            };
            let mut line = Vec::new();
            let mut message = Vec::new();
            loop {
                line.clear();
                if input.read_until(b'\n', &mut line).await? == 0 {
                    break;
                }
                let text = trim_line_ending(&line);
                if text == QUIT_WORD.as_bytes() {
                    break;
                }
                message.clear();
                message.extend_from_slice(prefix.as_bytes());
                message.extend_from_slice(text);
                message.extend_from_slice(ending);
                to_server.write_all(&message).await?;
                if chat && text == b"/quit" {
                    break;
                }
            }
        }
    }
    to_server.shutdown().await
}

/// Copies raw input, turning each `\n` without a `\r` before it into `\r\n`.
async fn copy_with_crlf<R>(input: &mut R, to_server: &mut (impl AsyncWrite + Unpin)) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
{
    let mut previous = 0u8;
    let mut out = Vec::new();
    loop {
        let chunk = input.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(());
        }
        out.clear();
        for &byte in chunk {
            if byte == b'\n' && previous != b'\r' {
                out.push(b'\r');
            }
            out.push(byte);
            previous = byte;
        }
        let taken = chunk.len();
        input.consume(taken);
        to_server.write_all(&out).await?;
    }
}

/// Removes the `\n` or `\r\n` that ends a line of input.
pub(super) fn trim_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Copies what the server sends to `output` until the server closes its side.
async fn show_replies<W>(
    mut from_server: impl AsyncRead + Unpin,
    mut output: W,
    escape: bool,
) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut buffer = vec![0; RECEIVE_BUFFER_BYTES];
    let mut shown = Vec::new();
    loop {
        let n = match from_server.read(&mut buffer).await {
            // A TLS server that closes without close_notify has still said all it will say.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => 0,
            read => read?,
        };
        if n == 0 {
            return output.flush().await;
        }
        let bytes = if escape {
            shown.clear();
            escape_text_into(&mut shown, &buffer[..n]);
            &shown[..]
        } else {
            &buffer[..n]
        };
        output.write_all(bytes).await?;
        output.flush().await?;
    }
}
