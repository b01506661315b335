//! `hubcat serve` behaviour through the library, with real clients on loopback.

mod common;

use common::{TestServer, lines_from, within};
use hubcat::{Format, ServerSettings, Style};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn config(format: Format) -> ServerSettings {
    ServerSettings { style: Style { format, timestamps: false }, ..ServerSettings::default() }
}

async fn send_and_close(addr: std::net::SocketAddr, data: &[u8]) -> std::net::SocketAddr {
    let mut client = within(TcpStream::connect(addr)).await.expect("connects");
    let local = client.local_addr().expect("bound");
    within(client.write_all(data)).await.expect("sends");
    within(client.shutdown()).await.expect("half-closes");
    // Wait for the server to close its side, so everything sent has been read.
    let mut rest = Vec::new();
    let _ = within(client.read_to_end(&mut rest)).await;
    local
}

#[tokio::test]
async fn the_textbook_session_with_three_clients_at_once() {
    let server = TestServer::start(ServerSettings::default()).await;
    let names = ["IVO", "CHRIS", "MARC"];
    let mut clients = Vec::new();
    for name in names {
        let addr = server.addr;
        clients.push(tokio::spawn(async move {
            let mut stream = within(TcpStream::connect(addr)).await.expect("connects");
            let local = stream.local_addr().expect("bound");
            for i in 0..300 {
                // Lines are written in two halves so reads split them at random places.
                let line = format!("{name} says: message {i} from a busy client\n");
                let (a, b) = line.as_bytes().split_at(line.len() / 2);
                stream.write_all(a).await.expect("sends");
                stream.write_all(b).await.expect("sends");
            }
            stream.shutdown().await.expect("half-closes");
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            (name, local)
        }));
    }
    let mut peers = Vec::new();
    for client in clients {
        peers.push(within(client).await.expect("client ran"));
    }
    let (summary, text) = server.stop().await;
    assert_eq!(summary.connections, 3);
    assert_eq!(summary.lines, 900);
    assert_eq!(text.lines().count(), 900, "every line once:\n{text}");
    for (name, peer) in peers {
        let want: Vec<String> =
            (0..300).map(|i| format!("{name} says: message {i} from a busy client")).collect();
        assert_eq!(lines_from(&text, peer), want, "{name}'s lines, whole and in order");
    }
}

#[tokio::test]
async fn chunks_are_shown_like_the_improved_textbook_server() {
    let server = TestServer::start(ServerSettings { read_size: 25, ..config(Format::Chunks) }).await;
    let peer = send_and_close(server.addr, b"Ivo says: Hi server, do you hear me ?").await;
    let (_, text) = server.stop().await;
    assert_eq!(lines_from(&text, peer), ["<25:Ivo says: Hi server, do y>", "<12:ou hear me ?>"]);
}

#[tokio::test]
async fn each_client_is_greeted() {
    let greeting = ServerSettings { greeting: Some(b"Let's GO!\n".to_vec()), ..ServerSettings::default() };
    let server = TestServer::start(greeting).await;
    let mut client = within(TcpStream::connect(server.addr)).await.expect("connects");
    let mut hello = [0; 10];
    within(client.read_exact(&mut hello)).await.expect("greeting arrives");
    assert_eq!(&hello, b"Let's GO!\n");
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn control_bytes_and_invalid_utf8_are_escaped() {
    let server = TestServer::start(ServerSettings::default()).await;
    let peer =
        send_and_close(server.addr, b"\x1b]0;owned\x07\x1b[2J tab\there \xff\xfe caf\xc3\xa9\r\n").await;
    let (_, text) = server.stop().await;
    assert_eq!(lines_from(&text, peer), ["\\x1b]0;owned\\x07\\x1b[2J tab\\there \\xff\\xfe café"]);
    assert!(!text.bytes().any(|b| b < 0x20 && b != b'\n'), "no raw control byte reaches the output");
}

#[tokio::test]
async fn an_unterminated_last_line_is_printed_when_the_client_leaves() {
    let server = TestServer::start(ServerSettings::default()).await;
    let peer = send_and_close(server.addr, b"first\nno newline at the end").await;
    let (summary, text) = server.stop().await;
    assert_eq!(lines_from(&text, peer), ["first", "no newline at the end"]);
    assert_eq!(summary.lines, 2);
    assert_eq!(summary.bytes, 27);
}

#[tokio::test]
async fn ipv6_loopback_works() {
    let Some(server) = TestServer::start_on("[::1]:0", ServerSettings::default()).await else {
        eprintln!("skipped: ::1 is not available here");
        return;
    };
    let peer = send_and_close(server.addr, b"over IPv6\n").await;
    assert!(peer.is_ipv6());
    let (_, text) = server.stop().await;
    assert_eq!(text, format!("{peer} over IPv6\n"));
}

#[tokio::test]
async fn long_lines_arrive_in_marked_pieces() {
    let server = TestServer::start(ServerSettings { max_line: 10, ..ServerSettings::default() }).await;
    let peer = send_and_close(server.addr, b"0123456789abcdefghijKLM\nshort\n").await;
    let (_, text) = server.stop().await;
    assert_eq!(lines_from(&text, peer), ["0123456789\\", "abcdefghij\\", "KLM", "short"]);
}

#[tokio::test]
async fn hex_dumps_count_offsets_per_connection() {
    let server = TestServer::start(ServerSettings { read_size: 8, ..config(Format::Hex) }).await;
    let peer = send_and_close(server.addr, b"0123456789ABCDEF\x00\x1b").await;
    let (_, text) = server.stop().await;
    let rows = lines_from(&text, peer);
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows[0].starts_with("00000000: 3031 3233 3435 3637"), "{}", rows[0]);
    assert!(rows[1].starts_with("00000008: 3839 4142 4344 4546"), "{}", rows[1]);
    assert!(rows[2].starts_with("00000010: 001b") && rows[2].ends_with(".."), "{}", rows[2]);
}

#[tokio::test]
async fn json_has_events_and_data_that_always_parse() {
    let server = TestServer::start(config(Format::Json)).await;
    let peer = send_and_close(server.addr, b"hello \"json\"\n\xff\x1b\n").await;
    let (_, text) = server.stop().await;
    let records: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).expect("every record is JSON")).collect();
    let events: Vec<&str> = records.iter().map(|r| r["event"].as_str().expect("event field")).collect();
    assert_eq!(events, ["connect", "data", "data", "disconnect"]);
    assert!(records.iter().all(|r| r["peer"] == peer.to_string() && r["conn"] == 1));
    assert_eq!(records[1]["text"], "hello \"json\"");
    assert_eq!(records[2]["base64"], "/xs=");
    assert_eq!(records[3]["reason"], "closed by client");
    assert_eq!(records[3]["bytes"], 16);
}

#[tokio::test]
async fn raw_output_is_verbatim_and_keeps_lines_whole() {
    let server = TestServer::start(config(Format::Raw)).await;
    send_and_close(server.addr, b"raw \x1b[1m bytes\r\nand a tail").await;
    let (_, text) = server.stop().await;
    assert_eq!(text, "raw \x1b[1m bytes\r\nand a tail");
}

#[tokio::test]
async fn a_client_that_resets_only_ends_its_own_connection() {
    let server = TestServer::start(ServerSettings::default()).await;
    let rude = within(TcpStream::connect(server.addr)).await.expect("connects");
    socket2::SockRef::from(&rude).set_linger(Some(std::time::Duration::ZERO)).expect("linger");
    drop(rude); // RST
    let peer = send_and_close(server.addr, b"still served\n").await;
    let (summary, text) = server.stop().await;
    assert_eq!(lines_from(&text, peer), ["still served"]);
    assert_eq!(summary.connections, 2);
}
