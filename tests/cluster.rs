//! `serve --cluster redis://...`: one chat room across two hubcat instances through a real
//! `redis-server` (Debian's, started here on loopback): messages cross, nicknames stay unique,
//! an outage is reported while each instance keeps relaying locally, and the link comes back.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{LIMIT, ServeProcess, free_port};

/// A redis-server on `port`, stopped when dropped.
struct Redis(Child);

impl Redis {
    fn start(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        let deadline = Instant::now() + LIMIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis(child)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A chat client that has chosen `nick`.
fn chatter(server: &ServeProcess, nick: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).expect("connects");
    stream.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    stream.write_all(format!("{nick}\n").as_bytes()).expect("sends");
    listen(&mut stream, &format!("welcome, {nick}"));
    stream
}

/// Reads until what arrived contains `needle`; fails after [`LIMIT`].
fn listen(stream: &mut TcpStream, needle: &str) -> String {
    let heard = listen_for(stream, needle, LIMIT);
    assert!(heard.contains(needle), "no {needle:?} in {heard:?}");
    heard
}

/// What arrived until it contains `needle`, or until `limit` passed.
fn listen_for(stream: &mut TcpStream, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut heard = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&heard).contains(needle) && Instant::now() < deadline {
        if let Ok(n) = stream.read(&mut buf) {
            heard.extend_from_slice(&buf[..n]);
        }
    }
    String::from_utf8_lossy(&heard).into_owned()
}

#[test]
fn two_instances_share_a_room_through_redis_and_survive_its_outage() {
    let port = free_port();
    let redis = Redis::start(port);
    let url = format!("redis://127.0.0.1:{port}/lobby");
    let mut one = ServeProcess::start(&["127.0.0.1", "0", "--mode", "chat", "--cluster", &url]);
    let mut two = ServeProcess::start(&["127.0.0.1", "0", "--mode", "chat", "--cluster", &url]);

    let mut ivo = chatter(&one, "IVO");
    let mut marc = chatter(&two, "MARC");
    // Once the other instance has heard of IVO (announcements cross in milliseconds)...
    let deadline = Instant::now() + LIMIT;
    loop {
        marc.write_all(b"/who\n").expect("sends");
        if listen(&mut marc, "* here:").contains("ivo") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(Instant::now() < deadline, "IVO never showed up on the other instance");
    }
    // ...the name is taken there too.
    let mut other = TcpStream::connect(two.addr).expect("connects");
    other.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    listen(&mut other, "send your nickname");
    other.write_all(b"ivo\n").expect("sends");
    listen(&mut other, "the nickname ivo is taken");
    drop(other);
    ivo.write_all(b"hi from one\n").expect("sends");
    listen(&mut marc, "<IVO> hi from one");
    marc.write_all(b"and back from two\n").expect("sends");
    listen(&mut ivo, "<MARC> and back from two");

    // Redis goes away: reported once, and each instance still relays among its own clients.
    drop(redis);
    one.wait_for_event("cluster: cannot reach");
    let mut ana = chatter(&one, "ANA");
    ivo.write_all(b"still here\n").expect("sends");
    listen(&mut ana, "<IVO> still here");

    // It comes back: so does the link, by itself.
    let _redis = Redis::start(port);
    one.wait_for_event("is back");
    two.wait_for_event("is back");
    let deadline = Instant::now() + LIMIT;
    loop {
        // Until both ends have subscribed again, a line may cross to nobody: say it again.
        ivo.write_all(b"after the outage\n").expect("sends");
        if listen_for(&mut marc, "<IVO> after the outage", Duration::from_millis(500))
            .contains("after the outage")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the rooms did not join again");
    }
    drop((ivo, marc, ana));
    assert!(one.stop().status.success());
    assert!(two.stop().status.success());
}
