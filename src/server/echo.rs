//! `--mode echo`: every byte goes back to its sender as received, in order. When the client
//! shuts its sending side, everything read has already been echoed; the server then closes.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::session::Session;
use super::transcript::End;
use crate::config::RELAY_BUFFER_BYTES;

/// Serves one echo client to its end.
pub async fn run(mut session: Session, mut stream: TcpStream) {
    // Each reply is one small write the client waits for: do not hold it back (Nagle).
    let _ = stream.set_nodelay(true);
    let mut buffer = vec![0; RELAY_BUFFER_BYTES];
    let end = loop {
        let read = session.read(&mut stream, &mut buffer).await;
        if let Some(notice) = session.take_notice() {
            let _ = stream.write_all(notice).await;
        }
        let n = match read {
            Ok(0) => break End::ClosedByClient,
            Ok(n) => n,
            Err(end) => break end,
        };
        match session.guard(stream.write_all(&buffer[..n])).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => break End::from_io(err),
            Err(end) => break end,
        }
    };
    let _ = stream.shutdown().await;
    session.close(&end);
}
