//! Graceful drain with the real binary: nothing read is lost, late clients are refused, a
//! second signal stops at once, and output failures stop the server the right way.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{ServeProcess, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENTS: usize = 200;

/// Streams numbered lines until `stop`, then closes and waits for the server's close; returns
/// how many lines it wrote.
async fn stream_lines(mut stream: TcpStream, client: usize, stop: Arc<AtomicBool>) -> usize {
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) && sent < 20_000 {
        let line = format!("client-{client:03} line-{sent:05} padding to make the line longer\n");
        if stream.write_all(line.as_bytes()).await.is_err() {
            break;
        }
        sent += 1;
        if sent % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let _ = stream.shutdown().await;
    let mut rest = Vec::new();
    let _ = within(stream.read_to_end(&mut rest)).await;
    sent
}

/// Starts the clients, waits until the server is mid-stream, sends SIGTERM, lets the clients go
/// on within the grace period, and returns what each client sent.
async fn stream_through_shutdown(server: &mut ServeProcess) -> Vec<usize> {
    let stop = Arc::new(AtomicBool::new(false));
    // Everyone connects before the signal can land (late connects are refused, by design).
    let mut streams = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        streams.push(within(TcpStream::connect(server.addr)).await.expect("connects"));
    }
    let clients: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(c, stream)| tokio::spawn(stream_lines(stream, c, Arc::clone(&stop))))
        .collect();
    server.wait_for_event("connected");
    server.wait_for_data_or_file(2000);
    server.signal("TERM");
    server.wait_for_event("shutting down");
    // Still sending, inside the grace period: these lines must be recorded too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut sent = Vec::new();
    for client in clients {
        sent.push(within(client).await.expect("client task"));
    }
    sent
}

/// Checks that every line each client sent is there once, whole, in order; returns the total.
fn check_no_loss(lines: &[String], sent: &[usize]) -> usize {
    let mut next: HashMap<usize, usize> = HashMap::new();
    for line in lines {
        let body = line.split_once(' ').map_or(line.as_str(), |(_, body)| body);
        let mut words = body.split(' ');
        let client: usize = words
            .next()
            .and_then(|w| w.strip_prefix("client-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a mangled record: {line:?}"));
        let number: usize = words
            .next()
            .and_then(|w| w.strip_prefix("line-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a mangled record: {line:?}"));
        assert!(body.ends_with("padding to make the line longer"), "a cut record: {line:?}");
        let expected = next.entry(client).or_default();
        assert_eq!(number, *expected, "client {client}: lines out of order or repeated");
        *expected += 1;
    }
    for (client, &count) in sent.iter().enumerate() {
        assert_eq!(
            next.get(&client).copied().unwrap_or(0),
            count,
            "client {client}: every line it sent is recorded"
        );
    }
    let total: usize = sent.iter().sum();
    eprintln!(
        "{} clients sent {total} lines across a SIGTERM; {} recorded, each once, in order",
        sent.len(),
        lines.len()
    );
    lines.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_line_is_lost_when_shutdown_lands_mid_stream() {
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--grace", "10s"]);
    let sent = stream_through_shutdown(&mut server).await;
    let stopped = server.finish();
    assert!(stopped.status.success(), "exit status {:?}", stopped.status);
    let total = check_no_loss(&stopped.stdout, &sent);
    let summary = stopped.stderr.iter().find(|l| l.contains("served")).expect("summary line");
    assert!(summary.contains(&format!("served {CLIENTS} connections")), "{summary}");
    assert!(summary.contains(&format!("and {total} lines")), "{summary}");
    assert!(total > 2000, "the signal landed mid-stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_line_is_lost_with_an_output_file_either() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("received.log");
    let path_text = path.to_str().expect("UTF-8 path").to_string();
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--grace", "10s", "--output", &path_text]);
    server.output_file = Some(path.clone());
    let sent = stream_through_shutdown(&mut server).await;
    let stopped = server.finish();
    assert!(stopped.status.success(), "exit status {:?}", stopped.status);
    let written = std::fs::read_to_string(&path).expect("the output file");
    let lines: Vec<String> = written.lines().map(str::to_string).collect();
    let total = check_no_loss(&lines, &sent);
    let summary = stopped.stderr.iter().find(|l| l.contains("served")).expect("summary line");
    assert!(summary.contains(&format!("served {CLIENTS} connections")), "{summary}");
    assert!(summary.contains(&format!("and {total} lines")), "{summary}");
}

#[tokio::test]
async fn clients_are_told_and_late_ones_refused() {
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--grace", "20s"]);
    let mut staying = within(TcpStream::connect(server.addr)).await.expect("connects");
    server.wait_for_event("connected");
    server.signal("INT");
    let mut notice = vec![0; 64];
    let n = within(staying.read(&mut notice)).await.expect("the notice arrives");
    assert_eq!(&notice[..n], b"server shutting down; closing in 20s\n");
    let refused = within(TcpStream::connect(server.addr)).await;
    assert_eq!(refused.expect_err("the listener is closed").kind(), std::io::ErrorKind::ConnectionRefused);
    staying.write_all(b"a last word within the grace period\n").await.expect("still served");
    drop(staying);
    let stopped = server.finish();
    assert!(stopped.status.success());
    assert_eq!(stopped.stdout.len(), 1);
    assert!(stopped.stdout[0].ends_with(" a last word within the grace period"));
}

#[tokio::test]
async fn a_second_signal_stops_at_once_with_130() {
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--grace", "60s"]);
    let _idle = within(TcpStream::connect(server.addr)).await.expect("connects");
    server.wait_for_event("connected");
    server.signal("INT");
    server.wait_for_event("shutting down");
    server.signal("INT");
    let stopped = server.finish();
    assert_eq!(stopped.status.code(), Some(130));
}

#[tokio::test]
async fn the_grace_period_ends_with_the_rest_cut_off_and_flushed() {
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--grace", "300ms"]);
    let mut stubborn = within(TcpStream::connect(server.addr)).await.expect("connects");
    stubborn.write_all(b"never finishes this line").await.expect("sends");
    server.wait_for_event("connected");
    server.signal("TERM");
    let stopped = server.finish();
    assert!(stopped.status.success());
    assert_eq!(stopped.stdout.len(), 1);
    assert!(stopped.stdout[0].ends_with(" never finishes this line"));
    let summary = stopped.stderr.iter().find(|l| l.contains("served")).expect("summary");
    assert!(summary.contains("1 connection still open at the end of the grace period"), "{summary}");
}

#[test]
fn a_closed_stdout_ends_the_server_quietly() {
    let mut server = ServeProcess::start(&["127.0.0.1", "0"]);
    let port = server.addr.port().to_string();
    let out = common::run_hubcat(&["connect", "127.0.0.1", &port], b"first\n");
    assert!(out.status.success());
    server.wait_for_data(1);
    server.close_stdout(); // like `hubcat serve | head -1`
    // Keep sending until the server notices that nobody reads its output and stops.
    let more: Vec<u8> = (0..20_000).flat_map(|i| format!("line {i}\n").into_bytes()).collect();
    for _ in 0..200 {
        if server.child.try_wait().expect("try_wait").is_some() {
            break;
        }
        let _ = common::run_hubcat(&["connect", "127.0.0.1", &port], &more);
    }
    let stopped = server.finish();
    assert_eq!(stopped.status.code(), Some(0));
    assert!(!stopped.stderr.iter().any(|l| l.contains("error")), "{:?}", stopped.stderr);
}

#[test]
fn a_full_disk_is_one_line_and_exit_1() {
    let server = ServeProcess::start(&["127.0.0.1", "0", "--output", "/dev/full"]);
    let port = server.addr.port().to_string();
    let _ = common::run_hubcat(&["connect", "127.0.0.1", &port], b"nowhere to go\n");
    let stopped = server.finish();
    assert_eq!(stopped.status.code(), Some(1));
    let errors: Vec<&String> = stopped.stderr.iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{:?}", stopped.stderr);
    assert_eq!(errors[0], "error: cannot write to /dev/full: no space left on device");
}

#[test]
fn out_of_descriptors_it_refuses_with_a_message_and_recovers() {
    if Command::new("prlimit").arg("--version").stdout(Stdio::null()).status().is_err() {
        eprintln!("skipped: prlimit is not installed");
        return;
    }
    for max_conns in [None, Some("1000")] {
        let mut args = vec!["--nofile=64", common::hubcat_bin(), "serve", "127.0.0.1", "0"];
        if let Some(n) = max_conns {
            args.extend(["--max-conns", n]);
        }
        let mut server = ServeProcess::start_with("prlimit", &args);
        let mut clients = Vec::new();
        for i in 0..100 {
            let Ok(mut client) = std::net::TcpStream::connect(server.addr) else { continue };
            let _ = std::io::Write::write_all(&mut client, format!("client {i}\n").as_bytes());
            clients.push(client);
        }
        // Give the server time to hit the limit and back off a few times.
        std::thread::sleep(Duration::from_millis(500));
        drop(clients);
        // Served again once descriptors are free.
        let port = server.addr.port().to_string();
        let out = common::run_hubcat(&["connect", "127.0.0.1", &port], b"after the storm\n");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        server.wait_for_data_containing("after the storm");
        let stopped = server.stop();
        assert!(stopped.status.success(), "never exits on its own: {:?}", stopped.status);
        let warnings = stopped.stderr.iter().filter(|l| l.contains("WARN")).count();
        assert!(warnings <= 4, "warnings are rate-limited, got {warnings}: {:?}", stopped.stderr);
        assert!(stopped.stderr.iter().any(|l| l.contains("turned away") || l.contains("cannot accept")));
    }
}

/// A client that sends without ever reading fills both directions' buffers; shutdown must still
/// end within the grace period plus a second, with the summary (issue 8).
fn a_client_that_never_reads_cannot_hold_up_the_exit(mode: &str) {
    let grace = Duration::from_millis(500);
    let mut server = ServeProcess::start(&[
        "127.0.0.1",
        "0",
        "--mode",
        mode,
        "--grace",
        "500ms",
        "--shutdown-notice",
        "closing now",
    ]);
    let client = std::net::TcpStream::connect(server.addr).expect("connects");
    let writer = {
        let mut client = client.try_clone().expect("clone");
        std::thread::spawn(move || {
            let payload = vec![b'x'; 8 * 1024 * 1024];
            let _ = std::io::Write::write_all(&mut client, b"stubborn\n");
            // Blocks once the server stops reading; ends when the server closes.
            let _ = std::io::Write::write_all(&mut client, &payload);
        })
    };
    server.wait_for_event("connected");
    // Let the buffers fill both ways: the server is blocked writing to this client.
    std::thread::sleep(Duration::from_millis(500));
    let signalled = std::time::Instant::now();
    server.signal("TERM");
    let stopped = server.finish();
    let took = signalled.elapsed();
    assert!(stopped.status.success(), "exit status {:?}", stopped.status);
    assert!(took <= grace + Duration::from_secs(1), "{mode}: exit took {took:?} after SIGTERM");
    let summary = stopped.stderr.iter().find(|l| l.contains("served")).expect("summary line");
    assert!(summary.contains("1 connection still open at the end of the grace period"), "{summary}");
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
}

#[test]
fn an_echo_client_that_never_reads_cannot_hold_up_the_exit() {
    a_client_that_never_reads_cannot_hold_up_the_exit("echo");
}

#[test]
fn a_chat_client_that_never_reads_cannot_hold_up_the_exit() {
    a_client_that_never_reads_cannot_hold_up_the_exit("chat");
}

#[test]
fn an_output_that_cannot_be_synced_still_stops_cleanly() {
    // /dev/null takes writes but refuses fsync; that is no failure of the server's.
    let server = ServeProcess::start(&["127.0.0.1", "0", "-o", "/dev/null"]);
    let mut client = std::net::TcpStream::connect(server.addr).expect("connects");
    std::io::Write::write_all(&mut client, b"into the void\n").expect("sends");
    drop(client);
    let stopped = server.stop();
    assert!(stopped.status.success(), "{:?}", stopped.stderr);
}
