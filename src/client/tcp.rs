//! A TCP session: input to the socket (named lines or raw bytes, then a half-close) while
//! everything the server sends is shown as it arrives.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{InputMode, SessionEnd};
use crate::config::{QUIT_LINGER, QUIT_WORD};
use crate::output::escape_text_into;

/// Size of the buffer for what the server sends.
const RECEIVE_BUFFER_BYTES: usize = 16 * 1024;

/// Runs a session over `stream` (a TCP socket, or TLS over one) until the input ends (or `Q`)
/// and the server has answered, or the server leaves. `escape` makes what the server sends
/// safe for a terminal.
pub async fn tcp_session<S, R, W>(
    stream: S,
    input: R,
    output: W,
    mode: InputMode,
    escape: bool,
) -> io::Result<SessionEnd>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (from_server, to_server) = tokio::io::split(stream);
    let receiving = show_replies(from_server, output, escape);
    tokio::pin!(receiving);
    let sending = send_input(input, to_server, &mode);
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
) -> io::Result<()>
where
    R: AsyncBufRead + Unpin,
{
    match mode {
        InputMode::Raw => {
            tokio::io::copy_buf(&mut input, &mut to_server).await?;
        }
        InputMode::Named(name) | InputMode::Chat(name) => {
            let chat = matches!(mode, InputMode::Chat(_));
            let prefix = if chat {
                // The room's first line is the nickname; later lines go as typed.
                to_server.write_all(format!("{name}\n").as_bytes()).await?;
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
                message.push(b'\n');
                to_server.write_all(&message).await?;
                if chat && text == b"/quit" {
                    break;
                }
            }
        }
    }
    to_server.shutdown().await
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
