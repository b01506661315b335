//! The reference limit for `bench/compare.sh`: the least a tokio server can do to print what
//! clients send. One task per connection copies raw bytes to stdout; no labels, no escaping,
//! the system allocator. Usage: copy_server PORT
use std::io::Write;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(50000);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    loop {
        let (mut stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buffer = vec![0; 64 * 1024];
            while let Ok(n) = stream.read(&mut buffer).await {
                if n == 0 || std::io::stdout().lock().write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        });
    }
}
