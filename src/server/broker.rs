//! `--mode broker`: the raw bytes of each read from one client go to all the others (ncat's
//! `--broker`), through the same bounded queues and slow-client policy as chat.

use tokio::net::TcpStream;

use super::relay::{Message, Outbound, read_relayed};
use super::session::Session;
use super::transcript::End;
use crate::config::RELAY_BUFFER_BYTES;

/// Serves one broker client to its end.
pub async fn run(mut session: Session, stream: TcpStream) {
    let (mut reader, outbound) = Outbound::open(stream, &session.shared.config);
    let room = &session.shared.room;
    let _ = room.join(session.id, None, outbound.queue.clone(), outbound.kick.clone());
    let mut buffer = vec![0; RELAY_BUFFER_BYTES];
    let end = loop {
        let n = match read_relayed(&mut session, &outbound, &mut reader, &mut buffer).await {
            Ok(0) => break End::ClosedByClient,
            Ok(n) => n,
            Err(end) => break end,
        };
        // Clients disconnected for being slow report it themselves as they close.
        session.shared.room.broadcast(Some(session.id), &Message::from(&buffer[..n]));
    };
    session.shared.room.leave(session.id);
    outbound.finish(!matches!(end, End::TooSlow | End::Shutdown)).await;
    session.close(&end);
}
