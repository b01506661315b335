//! The reference limit for `bench/compare.sh`: the least a tokio server can do to print what
//! clients send. One task per connection waits until its socket is readable, reads into a
//! per-thread buffer and copies the bytes to stdout; no labels, no escaping, the system
//! allocator. A failed accept is skipped after a short pause. Usage: copy_server PORT
use std::cell::RefCell;
use std::io::Write;
use std::time::Duration;

use tokio::net::TcpSocket;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 * 1024]);
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(50000);
    // The same listen backlog as the other servers in the race (tokio's default is 1024).
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(([127, 0, 0, 1], port).into())?;
    let listener = socket.listen(4096)?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(async move {
            loop {
                if stream.readable().await.is_err() {
                    break;
                }
                let copied = BUFFER.with_borrow_mut(|buffer| match stream.try_read(buffer) {
                    Ok(0) => Err(()),
                    Ok(n) => std::io::stdout().lock().write_all(&buffer[..n]).map_err(|_| ()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                    Err(_) => Err(()),
                });
                if copied.is_err() {
                    break;
                }
            }
        });
    }
}
