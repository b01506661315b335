//! `--mode broker`: the raw bytes of each read from one client go to all the others (ncat's
//! `--broker`), through the same bounded queues and slow-client policy as chat.

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::relay::{Message, Outbound};
use super::session::Session;
use super::transcript::End;
use crate::config::RELAY_BUFFER_BYTES;

/// Serves one broker client to its end.
pub async fn run(mut session: Session, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let config = &session.shared.config;
    let outbound = Outbound::start(writer, config.relay_queue);
    if let Some(greeting) = &config.greeting {
        outbound.reply(greeting.clone());
    }
    let room = &session.shared.room;
    let _ = room.join(session.id, None, outbound.queue.clone(), outbound.kick.clone());
    let mut buffer = vec![0; RELAY_BUFFER_BYTES];
    let end = loop {
        let read = tokio::select! {
            biased;
            _ = outbound.kick.cancelled() => break End::TooSlow,
            read = session.guard(reader.read(&mut buffer)) => read,
        };
        if let Some(notice) = session.take_notice() {
            outbound.reply(notice);
        }
        let n = match read {
            Ok(Ok(0)) => break End::ClosedByClient,
            Ok(Ok(n)) => n,
            Ok(Err(err)) => break End::from_io(err),
            Err(end) => break end,
        };
        if let Err(end) = session.record(&buffer[..n]).await {
            break end;
        }
        // Clients disconnected for being slow report it themselves as they close.
        session.shared.room.broadcast(Some(session.id), &Message::from(&buffer[..n]));
    };
    session.shared.room.leave(session.id);
    outbound.finish(!matches!(end, End::TooSlow | End::Shutdown)).await;
    session.close(&end);
}
