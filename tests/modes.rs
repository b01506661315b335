//! Echo, chat and broker modes with real clients on loopback.

mod common;

use std::time::Duration;

use common::{TestServer, lines_from, run_hubcat, within};
use hubcat::ServerSettings;
use hubcat::config::{Mode, SlowClient};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

fn mode(mode: Mode) -> ServerSettings {
    ServerSettings { mode, ..ServerSettings::default() }
}

#[tokio::test]
async fn echo_returns_a_large_payload_and_respects_half_close() {
    let server = TestServer::start(mode(Mode::Echo)).await;
    let stream = within(TcpStream::connect(server.addr)).await.expect("connects");
    let peer = stream.local_addr().expect("bound");
    let (mut reader, mut writer) = stream.into_split();
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sending = {
        let payload = payload.clone();
        tokio::spawn(async move {
            writer.write_all(&payload).await.expect("sends");
            writer.shutdown().await.expect("half-closes");
        })
    };
    let mut echoed = Vec::new();
    within(reader.read_to_end(&mut echoed)).await.expect("the server closes after echoing everything");
    within(sending).await.expect("sender");
    assert!(echoed == payload, "every byte back, in order ({} of {} bytes)", echoed.len(), payload.len());
    let (summary, text) = server.stop().await;
    assert_eq!(summary.bytes, payload.len() as u64, "the transcript counts what was received");
    assert!(!lines_from(&text, peer).is_empty(), "the transcript is still written");
}

/// A chat client: a line reader and a writer.
struct Chatter {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Chatter {
    async fn join(addr: std::net::SocketAddr, nick: &str) -> Chatter {
        let stream = within(TcpStream::connect(addr)).await.expect("connects");
        let (reader, writer) = stream.into_split();
        let mut chatter = Chatter { lines: BufReader::new(reader).lines(), writer };
        assert_eq!(chatter.next().await, "* welcome to hubcat chat; send your nickname");
        chatter.say(nick).await;
        chatter
    }

    async fn say(&mut self, line: &str) {
        within(self.writer.write_all(format!("{line}\n").as_bytes())).await.expect("sends");
    }

    async fn next(&mut self) -> String {
        within(self.lines.next_line()).await.expect("reads").expect("a line before the end")
    }
}

#[tokio::test]
async fn a_chat_between_three_clients() {
    let server = TestServer::start(mode(Mode::Chat)).await;
    let mut ivo = Chatter::join(server.addr, "IVO").await;
    assert!(ivo.next().await.starts_with("* welcome, IVO; nobody else is here"));
    let mut chris = Chatter::join(server.addr, "ivo").await;
    assert_eq!(chris.next().await, "* the nickname ivo is taken; send another");
    chris.say("CHRIS").await;
    assert!(chris.next().await.starts_with("* welcome, CHRIS; 1 other here: IVO"));
    assert_eq!(ivo.next().await, "* CHRIS joined");
    let mut marc = Chatter::join(server.addr, "MARC").await;
    assert!(marc.next().await.starts_with("* welcome, MARC; 2 others here: CHRIS, IVO"));
    assert_eq!(ivo.next().await, "* MARC joined");
    assert_eq!(chris.next().await, "* MARC joined");

    ivo.say("Hi all, \u{1b}[2Jwhat's up?").await;
    assert_eq!(chris.next().await, "<IVO> Hi all, \\x1b[2Jwhat's up?");
    assert_eq!(marc.next().await, "<IVO> Hi all, \\x1b[2Jwhat's up?");
    ivo.say("/who").await;
    assert_eq!(ivo.next().await, "* here: CHRIS, IVO, MARC", "no echo of its own message, only the reply");
    chris.say("/nick Christopher").await;
    assert_eq!(chris.next().await, "* you are now Christopher");
    assert_eq!(ivo.next().await, "* CHRIS is now Christopher");
    assert_eq!(marc.next().await, "* CHRIS is now Christopher");
    marc.say("/quit").await;
    assert_eq!(marc.next().await, "* bye");
    assert_eq!(ivo.next().await, "* MARC left");
    assert_eq!(chris.next().await, "* MARC left");
    drop((ivo, chris, marc));
    let (summary, text) = server.stop().await;
    assert_eq!(summary.connections, 3);
    assert!(
        text.contains(" IVO\n") && text.contains(" /nick Christopher\n"),
        "the transcript has it all:\n{text}"
    );
}

#[tokio::test]
async fn nobody_in_the_chat_sees_an_address() {
    let server = TestServer::start(mode(Mode::Chat)).await;
    let mut a = Chatter::join(server.addr, "a").await;
    let mut b = Chatter::join(server.addr, "b").await;
    let mut seen = vec![a.next().await, b.next().await, a.next().await];
    a.say("/who").await;
    seen.push(a.next().await);
    let ip = server.addr.ip().to_string();
    assert!(seen.iter().all(|l| !l.contains(&ip)), "{seen:?}");
    drop((a, b));
    server.stop().await;
}

#[tokio::test]
async fn a_reader_that_stalls_is_disconnected_and_the_room_goes_on() {
    let config = ServerSettings { relay_queue_bytes: 200_000, ..mode(Mode::Chat) };
    let server = TestServer::start(config).await;
    let mut sender = Chatter::join(server.addr, "sender").await;
    sender.next().await;
    let mut fast = Chatter::join(server.addr, "fast").await;
    fast.next().await;
    assert_eq!(sender.next().await, "* fast joined");
    let mut stalled = Chatter::join(server.addr, "stalled").await; // never reads again
    fast.next().await;
    sender.next().await;
    let big = "x".repeat(60_000);
    let mut kicked = false;
    for i in 0..400 {
        sender.say(&format!("{i} {big}")).await;
        let line = fast.next().await;
        if line.starts_with("* stalled left") {
            assert_eq!(line, "* stalled left (too slow to keep up)");
            kicked = true;
            break;
        }
        assert!(line.starts_with(&format!("<sender> {i} ")), "the fast reader gets every message in order");
    }
    assert!(kicked, "the stalled reader was disconnected within 24 MB of traffic");
    let mut rest = Vec::new();
    let _ = within(stalled.lines.get_mut().read_to_end(&mut rest)).await;
    stalled.writer.shutdown().await.ok();
    drop((sender, fast, stalled));
    let (summary, _) = server.stop().await;
    assert_eq!(summary.kicked, 1);
}

#[tokio::test]
async fn with_the_drop_policy_a_stalled_reader_misses_messages_and_is_told() {
    let config =
        ServerSettings { relay_queue_bytes: 200_000, slow_client: SlowClient::Drop, ..mode(Mode::Chat) };
    let server = TestServer::start(config).await;
    let mut sender = Chatter::join(server.addr, "sender").await;
    sender.next().await;
    let mut stalled = Chatter::join(server.addr, "stalled").await;
    stalled.next().await;
    assert_eq!(sender.next().await, "* stalled joined");
    let big = "y".repeat(60_000);
    for i in 0..200 {
        sender.say(&format!("{i} {big}")).await;
    }
    sender.say("/who").await; // a round trip: every message above has been handed out
    assert_eq!(sender.next().await, "* here: sender, stalled");
    // The stalled reader catches up with what was queued and buffered for it, and is told how
    // many it missed as soon as it has.
    let mut got = 0;
    let mut dropped_notice = None;
    while let Ok(line) = tokio::time::timeout(Duration::from_millis(500), stalled.next()).await {
        if line.contains("messages dropped") {
            dropped_notice = Some(line);
            continue;
        }
        assert!(line.starts_with("<sender> "), "{line}");
        assert!(dropped_notice.is_none(), "the notice comes once it has caught up");
        got += 1;
    }
    sender.say("last").await;
    assert_eq!(stalled.next().await, "<sender> last", "healthy again: gets every message");
    let notice = dropped_notice.expect("told what it missed");
    let missed: usize = notice.split(' ').nth(1).and_then(|n| n.parse().ok()).expect("a count");
    assert_eq!(got + missed, 200, "every message is either delivered or counted as dropped");
    assert!(missed > 0);
    drop((sender, stalled));
    let (summary, _) = server.stop().await;
    assert_eq!(summary.dropped as usize, missed);
    assert_eq!(summary.kicked, 0);
}

#[tokio::test]
async fn the_broker_relays_bytes_verbatim_to_the_others() {
    let server = TestServer::start(mode(Mode::Broker)).await;
    let mut a = within(TcpStream::connect(server.addr)).await.expect("connects");
    let mut b = within(TcpStream::connect(server.addr)).await.expect("connects");
    let mut c = within(TcpStream::connect(server.addr)).await.expect("connects");
    // Wait until all three are in the room: each says hello and hears the others'.
    for (i, client) in [&mut a, &mut b, &mut c].into_iter().enumerate() {
        client.write_all(format!("{i}").as_bytes()).await.expect("sends");
    }
    for client in [&mut a, &mut b, &mut c] {
        let mut hello = [0; 2];
        within(client.read_exact(&mut hello)).await.expect("two hellos");
    }
    let binary = b"\x00\xff\x1b[2J raw \r\n bytes\x7f";
    a.write_all(binary).await.expect("sends");
    for client in [&mut b, &mut c] {
        let mut got = vec![0; binary.len()];
        within(client.read_exact(&mut got)).await.expect("relayed");
        assert_eq!(got, binary);
    }
    let mut own = [0; 1];
    let echoed = tokio::time::timeout(Duration::from_millis(100), a.read(&mut own)).await;
    assert!(echoed.is_err(), "a sender does not get its own bytes back");
    drop((a, b, c));
    let (summary, _) = server.stop().await;
    assert_eq!(summary.connections, 3);
}

#[test]
fn hubcat_connect_joins_a_chat_room() {
    let server = common::ServeProcess::start(&["127.0.0.1", "0", "--mode", "chat"]);
    let port = server.addr.port().to_string();
    let out = run_hubcat(&["connect", "--chat", "--name", "IVO", "127.0.0.1", &port], b"/who\n/quit\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("* welcome, IVO"), "{shown}");
    assert!(shown.contains("* here: IVO"), "{shown}");
    assert!(shown.contains("* bye"), "{shown}");
    let stopped = server.stop();
    assert!(stopped.status.success());
}
