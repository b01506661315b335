//! `hubcat connect`: dial, pick the session kind from the terminal and the flags, report.

use std::io::IsTerminal;
use std::process::ExitCode;

use hubcat::client::tls::{TlsError, Verify};
use hubcat::client::{self, Direction, InputMode, SessionEnd, SessionOptions};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::args::ConnectArgs;
use crate::fail;

/// Exit code when the server closed or reset the connection before the user was done.
const EXIT_SERVER_ENDED: u8 = 3;

/// Dials and runs the session; see the module docs of `hubcat::client` for the behaviour.
pub async fn connect(args: ConnectArgs) -> ExitCode {
    let unix = match args.unix_addr() {
        Ok(unix) => unix,
        Err(err) => err.exit(),
    };
    let (host, port) = match (&unix, args.target()) {
        (Some(_), _) => (String::new(), 0),
        (None, Ok(target)) => target,
        (None, Err(err)) => err.exit(),
    };
    let config = args.config();
    let interactive = std::io::stdin().is_terminal();
    let escape = std::io::stdout().is_terminal();
    let mut input = BufReader::new(tokio::io::stdin());
    let output = tokio::io::stdout();
    let transport = if args.udp { "udp " } else { "" };

    let outcome = if args.udp {
        let socket = match client::dial_udp(&host, port).await {
            Ok(socket) => socket,
            Err(err) => return fail(err),
        };
        let peer = socket.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| format!("{host}:{port}"));
        let Some(mode) =
            session_mode(&mut input, &args, Direction::Both, interactive, &peer, transport).await
        else {
            return ExitCode::SUCCESS;
        };
        client::udp_session(socket, input, output, mode, escape, config.udp_wait).await.map_err(|e| (peer, e))
    } else if let Some(addr) = unix {
        let stream = match hubcat::unix::dial_unix(&addr, config.dial_timeout).await {
            Ok(stream) => stream,
            Err(err) => return fail(err),
        };
        let peer = addr.to_string();
        let direction = direction(&args);
        let Some(mode) = session_mode(&mut input, &args, direction, interactive, &peer, "").await else {
            return ExitCode::SUCCESS;
        };
        let options = SessionOptions { escape, crlf: args.crlf, direction };
        client::tcp_session(stream, input, output, mode, options).await.map_err(|e| (peer, e))
    } else {
        let stream = match client::dial_tcp(&host, port, &config).await {
            Ok(stream) => stream,
            Err(err) => return fail(err),
        };
        let peer = match &config.proxy {
            Some(proxy) => format!("{host}:{port} via {proxy}"),
            None => stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| format!("{host}:{port}")),
        };
        let stream = match args.tls() {
            Some(verify) => {
                if verify == Verify::Insecure {
                    eprintln!(
                        "hubcat: warning: --tls-insecure: the server's certificate is not checked; \
                         anyone on the path can read and change this session"
                    );
                }
                match client::tls::handshake(stream, &host, &verify, config.dial_timeout).await {
                    Ok(tls) => Wire::Tls(Box::new(tls)),
                    // Named by the target, not the proxy's address the socket is connected to.
                    Err(TlsError::Handshake { reason, .. }) if config.proxy.is_some() => {
                        return fail(TlsError::Handshake { peer, reason });
                    }
                    Err(err) => return fail(err),
                }
            }
            None => Wire::Plain(stream),
        };
        let transport = if matches!(stream, Wire::Tls(_)) { "tls " } else { transport };
        let direction = direction(&args);
        let Some(mode) = session_mode(&mut input, &args, direction, interactive, &peer, transport).await
        else {
            return ExitCode::SUCCESS;
        };
        let options = SessionOptions { escape, crlf: args.crlf, direction };
        match stream {
            Wire::Tls(tls) => client::tcp_session(*tls, input, output, mode, options).await,
            Wire::Plain(stream) => client::tcp_session(stream, input, output, mode, options).await,
        }
        .map_err(|e| (peer, e))
    };
    match outcome {
        Ok(SessionEnd::Finished) => ExitCode::SUCCESS,
        Ok(SessionEnd::ClosedByServer) => server_ended("the server closed the connection"),
        Ok(SessionEnd::ResetByServer) => server_ended("the server reset the connection"),
        Err((peer, err)) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
            fail(format_args!("no {transport}server at {peer}: connection refused (is the server running?)"))
        }
        Err((peer, err)) => {
            fail(format_args!("{transport}session with {peer}: {}", hubcat::error::reason(&err)))
        }
    }
}

/// The connection a session runs over.
enum Wire {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

/// Which ways bytes go, from --send-only and --recv-only.
fn direction(args: &ConnectArgs) -> Direction {
    match (args.send_only, args.recv_only) {
        (true, _) => Direction::SendOnly,
        (_, true) => Direction::RecvOnly,
        _ => Direction::Both,
    }
}

fn server_ended(what: &str) -> ExitCode {
    eprintln!("hubcat: {what}");
    ExitCode::from(EXIT_SERVER_ENDED)
}

/// Raw when only receiving; chat when asked for; named lines when a name is given or the user
/// types at a terminal (asking for the name if needed); raw bytes otherwise. `None` when the
/// input ends before a name is given.
async fn session_mode<R>(
    input: &mut BufReader<R>,
    args: &ConnectArgs,
    direction: Direction,
    interactive: bool,
    peer: &str,
    transport: &str,
) -> Option<InputMode>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let (name, chat) = (args.name.clone(), args.chat);
    if direction == Direction::RecvOnly {
        return Some(InputMode::Raw);
    }
    if !interactive && !chat {
        return Some(name.map_or(InputMode::Raw, InputMode::Named));
    }
    let name = match name {
        Some(name) => name,
        None => ask_name(input).await?,
    };
    if interactive {
        eprintln!("connected to {transport}{peer} as {name}; type lines to send, Q to quit");
    }
    Some(if chat { InputMode::Chat(name) } else { InputMode::Named(name) })
}

async fn ask_name<R>(input: &mut BufReader<R>) -> Option<String>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let mut stderr = tokio::io::stderr();
    loop {
        let _ = stderr.write_all(b"What is your name? ").await;
        let _ = stderr.flush().await;
        let mut line = String::new();
        if input.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let name = line.trim();
        if !name.is_empty() {
            return Some(name.to_string());
        }
    }
}
