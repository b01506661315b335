//! Caps, timeouts and abusive clients, against a server in this process on loopback.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{TestServer, lines_from, within};
use hubcat::ServerSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const BUSY: &[u8] = b"server busy: too many connections; try again later\n";

/// Reads until the server closes; `None` when it did not close within a short wait.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    match tokio::time::timeout(wait, stream.read_to_end(&mut got)).await {
        Ok(Ok(_)) => Some(got),
        Ok(Err(_)) => Some(got), // reset: closed all the same
        Err(_) => None,
    }
}

async fn connect_from(source: &str, target: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{source}:0").parse().expect("valid source")).expect("bind source");
    within(socket.connect(target)).await.expect("connects")
}

#[tokio::test]
async fn max_conns_turns_extra_clients_away_with_a_message() {
    let server = TestServer::start(ServerSettings { max_conns: 10, ..ServerSettings::default() }).await;
    let mut held = Vec::new();
    for i in 0..10 {
        let mut client = within(TcpStream::connect(server.addr)).await.expect("connects");
        client.write_all(format!("held {i}\n").as_bytes()).await.expect("sends");
        held.push(client);
    }
    server.wait_for(|text| text.lines().count() == 10).await;
    for _ in 0..10 {
        let mut extra =
            within(TcpStream::connect(server.addr)).await.expect("the kernel completes the handshake");
        let said = closed_within(&mut extra, common::LIMIT).await.expect("turned away, not left hanging");
        assert_eq!(said, BUSY);
    }
    for client in &mut held {
        assert!(closed_within(client, Duration::from_millis(50)).await.is_none(), "admitted clients stay");
    }
    drop(held);
    let (summary, text) = server.stop().await;
    assert_eq!(summary.connections, 10);
    assert_eq!(summary.refused, 10);
    assert_eq!(text.lines().count(), 10, "turned-away clients leave no records:\n{text}");
}

#[tokio::test]
async fn one_address_cannot_take_every_slot() {
    let config = ServerSettings { max_conns_per_ip: Some(2), ..ServerSettings::default() };
    let server = TestServer::start(config).await;
    let _a = connect_from("127.0.0.2", server.addr).await;
    let _b = connect_from("127.0.0.2", server.addr).await;
    let mut third = connect_from("127.0.0.2", server.addr).await;
    assert_eq!(closed_within(&mut third, common::LIMIT).await.expect("turned away"), BUSY);
    let mut other = connect_from("127.0.0.3", server.addr).await;
    other.write_all(b"another address is welcome\n").await.expect("sends");
    assert!(closed_within(&mut other, Duration::from_millis(50)).await.is_none());
    drop(other);
    server.wait_for(|text| text.contains("another address is welcome")).await;
    let (summary, _) = server.stop().await;
    assert_eq!(summary.refused, 1);
}

#[tokio::test]
async fn an_idle_client_is_closed_and_its_data_kept() {
    let config =
        ServerSettings { idle_timeout: Some(Duration::from_millis(200)), ..ServerSettings::default() };
    let server = TestServer::start(config).await;
    let mut client = within(TcpStream::connect(server.addr)).await.expect("connects");
    let peer = client.local_addr().expect("bound");
    client.write_all(b"said something\nthen went quiet").await.expect("sends");
    closed_within(&mut client, common::LIMIT).await.expect("the idle timeout closes it");
    let (_, text) = server.stop().await;
    assert_eq!(lines_from(&text, peer), ["said something", "then went quiet"]);
}

#[tokio::test]
async fn a_silent_client_meets_the_first_byte_timeout() {
    let config =
        ServerSettings { first_byte_timeout: Some(Duration::from_millis(150)), ..ServerSettings::default() };
    let server = TestServer::start(config).await;
    let mut silent = within(TcpStream::connect(server.addr)).await.expect("connects");
    closed_within(&mut silent, common::LIMIT).await.expect("closed for sending nothing");
    let mut talker = within(TcpStream::connect(server.addr)).await.expect("connects");
    talker.write_all(b"quick\n").await.expect("sends");
    tokio::time::sleep(Duration::from_millis(300)).await;
    talker.write_all(b"still here\n").await.expect("a client that spoke in time stays");
    talker.shutdown().await.expect("half-closes");
    closed_within(&mut talker, common::LIMIT).await.expect("closes after its end");
    let (summary, text) = server.stop().await;
    assert_eq!(summary.connections, 2);
    assert!(text.ends_with(" quick\n") || text.contains(" still here"), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");
}

#[tokio::test]
async fn a_byte_a_while_does_not_outlive_max_duration() {
    let config = ServerSettings {
        max_duration: Some(Duration::from_millis(400)),
        idle_timeout: Some(Duration::from_secs(30)),
        ..ServerSettings::default()
    };
    let server = TestServer::start(config).await;
    let mut slow = within(TcpStream::connect(server.addr)).await.expect("connects");
    let closed = within(async {
        for byte in b"slowloris never ends its line".iter().cycle() {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            let mut probe = [0; 1];
            if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(50), slow.read(&mut probe)).await {
                return;
            }
        }
    });
    closed.await;
    let (summary, text) = server.stop().await;
    assert_eq!(summary.connections, 1);
    let kept = text.split_once(' ').map_or("", |(_, body)| body.trim_end());
    assert!(
        !kept.is_empty() && "slowloris never ends its line".starts_with(kept),
        "what it sent is kept: {text}"
    );
}

#[tokio::test]
async fn a_ten_mebibyte_line_arrives_in_bounded_marked_pieces() {
    let server = TestServer::start(ServerSettings::default()).await;
    let mut client = within(TcpStream::connect(server.addr)).await.expect("connects");
    let peer = client.local_addr().expect("bound");
    let huge = vec![b'x'; 10 * 1024 * 1024];
    within(client.write_all(&huge)).await.expect("sends 10 MiB");
    client.shutdown().await.expect("half-closes");
    closed_within(&mut client, common::LIMIT).await.expect("closes");
    let (_, text) = server.stop().await;
    let pieces = lines_from(&text, peer);
    assert_eq!(pieces.len(), 160, "10 MiB in 64 KiB pieces");
    let (last, marked) = pieces.split_last().expect("pieces");
    assert!(marked.iter().all(|p| p.len() == 64 * 1024 + 1 && p.ends_with('\\')));
    assert_eq!(last.len(), 64 * 1024);
}

#[tokio::test]
async fn thousands_of_idle_clients_do_not_delay_a_new_one() {
    // Both ends of every connection live in this process: 5,000 clients need 10,000
    // descriptors; with a lower limit, hold what fits (other tests run alongside).
    let limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024) as usize;
    let clients = 5000.min(limit.saturating_sub(1000) / 2);
    if clients < 100 {
        eprintln!("skipped: the open-files limit ({limit}) is too low");
        return;
    }
    let server = TestServer::start(ServerSettings::default()).await;
    let mut idle = Vec::new();
    for i in 0..clients {
        let source = format!("127.0.0.{}", 2 + i % 200);
        idle.push(connect_from(&source, server.addr).await);
    }
    let mut fresh = within(TcpStream::connect(server.addr)).await.expect("connects");
    let peer = fresh.local_addr().expect("bound");
    fresh.write_all(b"served at once\n").await.expect("sends");
    let text = server.wait_for(|text| text.contains("served at once")).await;
    assert_eq!(lines_from(&text, peer), ["served at once"]);
    drop(idle);
    drop(fresh);
    let (summary, _) = server.stop().await;
    assert_eq!(summary.connections as usize, clients + 1);
}

#[tokio::test]
async fn resets_and_half_closes_only_end_their_own_connection() {
    let server =
        TestServer::start(ServerSettings { greeting: Some(b"hello\n".to_vec()), ..Default::default() }).await;
    // A reset in the middle of a line.
    let mut rude = within(TcpStream::connect(server.addr)).await.expect("connects");
    rude.write_all(b"complete\nhalf a li").await.expect("sends");
    server.wait_for(|text| text.contains("complete")).await;
    socket2::SockRef::from(&rude).set_linger(Some(Duration::ZERO)).expect("linger");
    drop(rude);
    // A half-closed client still gets everything the server sends, then the close.
    let mut half = within(TcpStream::connect(server.addr)).await.expect("connects");
    let peer = half.local_addr().expect("bound");
    half.write_all(b"before my half-close\n").await.expect("sends");
    half.shutdown().await.expect("half-closes");
    let got = closed_within(&mut half, common::LIMIT).await.expect("closed after its end");
    assert_eq!(got, b"hello\n");
    let (summary, text) = server.stop().await;
    assert_eq!(summary.connections, 2);
    assert_eq!(lines_from(&text, peer), ["before my half-close"]);
    for line in text.lines() {
        let body = line.split_once(' ').map(|(_, b)| b).unwrap_or("");
        assert!(
            ["complete", "half a li", "before my half-close"].contains(&body),
            "intact records only: {line:?}"
        );
    }
}
