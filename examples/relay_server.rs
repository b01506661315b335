//! The reference relay for `bench/compare.sh`: the least a tokio server can do to relay what
//! each client sends to all the others. One task per client; every read goes into one
//! broadcast channel; a client that falls behind skips what it missed. No nicknames, no
//! transcript, the system allocator. Usage: relay_server PORT
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::sync::broadcast;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(50000);
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(([127, 0, 0, 1], port).into())?;
    let listener = socket.listen(4096)?;
    let (room, _) = broadcast::channel::<(u64, Arc<[u8]>)>(4096);
    for id in 0.. {
        let Ok((mut stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let (room, mut heard) = (room.clone(), room.subscribe());
        tokio::spawn(async move {
            let (mut reader, mut writer) = stream.split();
            let mut buffer = vec![0; 16 * 1024];
            loop {
                tokio::select! {
                    read = reader.read(&mut buffer) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => { let _ = room.send((id, Arc::from(&buffer[..n]))); }
                    },
                    message = heard.recv() => match message {
                        Ok((from, bytes)) if from != id => {
                            if writer.write_all(&bytes).await.is_err() { return; }
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                }
            }
        });
    }
    Ok(())
}
