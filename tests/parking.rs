//! Idle connections parked outside the runtime (`--park-after`), with the real binary: a parked
//! client carries on where it stopped (even mid-line), its leaving is seen while parked, a
//! shutdown reaches parked clients, thousands wake at once, and nothing parks where it must not.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{LIMIT, ServeProcess};

/// Serves with parking after 100 ms and debug events (each park is logged).
fn serve(extra: &[&str]) -> ServeProcess {
    ServeProcess::start(&[&["127.0.0.1", "0", "-v", "--park-after", "100ms"], extra].concat())
}

/// Waits until connection `id` has been parked (once more).
fn wait_parked(server: &mut ServeProcess, id: u64) {
    loop {
        let line = server.wait_for_event("idle: parked");
        if line.contains(&format!("#{id} ")) {
            return;
        }
    }
}

/// Waits until `count` different connections have been parked.
fn wait_parked_count(server: &mut ServeProcess, count: usize) {
    let mut parked = HashSet::new();
    while parked.len() < count {
        let line = server.wait_for_event("idle: parked");
        let id = line.split('#').nth(1).and_then(|rest| rest.split(' ').next()).map(str::to_string);
        parked.extend(id);
    }
}

/// Connects `count` clients, client `i` sending `first(i)`.
fn connect_all(server: &ServeProcess, count: usize, first: impl Fn(usize) -> String) -> Vec<TcpStream> {
    (0..count)
        .map(|i| {
            let mut client = TcpStream::connect(server.addr).expect("connect");
            client.write_all(first(i).as_bytes()).expect("send");
            client
        })
        .collect()
}

#[test]
fn a_parked_client_carries_on_where_it_stopped_even_mid_line() {
    let mut server = serve(&["--greeting", "hello"]);
    let mut client = TcpStream::connect(server.addr).expect("connect");
    let mut greeting = String::new();
    BufReader::new(client.try_clone().expect("clone")).read_line(&mut greeting).expect("greeting");
    assert_eq!(greeting, "hello\n");
    client.write_all(b"one\n").expect("send");
    wait_parked(&mut server, 1);
    client.write_all(b"tw").expect("send");
    wait_parked(&mut server, 1);
    client.write_all(b"o\nthree\n").expect("send");
    server.wait_for_data(3);
    drop(client);
    let left = server.wait_for_event("left:");
    assert!(left.contains("closed by client; sent 14 bytes in 3 lines"), "{left}");
    let stopped = server.stop();
    assert!(stopped.status.success());
    let lines: Vec<&str> = stopped.stdout.iter().map(|l| l.rsplit(' ').next().unwrap_or_default()).collect();
    assert_eq!(lines, ["one", "two", "three"], "{:?}", stopped.stdout);
}

#[test]
fn a_client_that_resets_while_parked_is_seen_to_leave_and_frees_its_slot() {
    let mut server = serve(&["--max-conns", "1"]);
    let client = TcpStream::connect(server.addr).expect("connect");
    (&client).write_all(b"first\n").expect("send");
    wait_parked(&mut server, 1);
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).expect("linger");
    drop(client);
    let left = server.wait_for_event("left:");
    assert!(left.contains("#1 ") && left.contains("reset by client"), "{left}");
    // The only slot is free again: the next client is served, not turned away.
    let mut next = TcpStream::connect(server.addr).expect("connect");
    next.write_all(b"second\n").expect("send");
    server.wait_for_data_containing("second");
    drop(next);
    assert!(server.stop().status.success());
}

#[test]
fn a_shutdown_reaches_parked_clients_and_their_unfinished_lines_are_kept() {
    const CLIENTS: usize = 200;
    let mut server = serve(&["--shutdown-notice", "bye", "--grace", "10s"]);
    let mut clients = connect_all(&server, CLIENTS, |i| format!("line {i}\ntail {i}"));
    wait_parked_count(&mut server, CLIENTS);
    server.signal("TERM");
    for client in &mut clients {
        client.set_read_timeout(Some(LIMIT)).expect("timeout");
        let mut notice = [0; 4];
        client.read_exact(&mut notice).expect("every parked client hears the notice");
        assert_eq!(&notice, b"bye\n");
    }
    drop(clients);
    let stopped = server.finish();
    assert!(stopped.status.success());
    for i in 0..CLIENTS {
        for line in [format!("line {i}"), format!("tail {i}")] {
            assert!(stopped.stdout.iter().any(|l| l.ends_with(&line)), "`{line}` missing");
        }
    }
    let summary = stopped.stderr.iter().find(|l| l.contains("served ")).expect("a summary");
    assert!(summary.contains(&format!("{} lines", 2 * CLIENTS)), "{summary}");
}

#[test]
fn thousands_of_parked_clients_wake_at_once_and_lose_nothing() {
    const CLIENTS: usize = 3000;
    let mut server = serve(&[]);
    let mut clients = connect_all(&server, CLIENTS, |i| format!("first {i}\n"));
    wait_parked_count(&mut server, CLIENTS);
    // More readable at once than the lot takes from one wait.
    for (i, client) in clients.iter_mut().enumerate() {
        client.write_all(format!("second {i}\n").as_bytes()).expect("send");
    }
    server.wait_for_data(2 * CLIENTS);
    drop(clients);
    let stopped = server.stop();
    assert!(stopped.status.success());
    for i in 0..CLIENTS {
        assert!(stopped.stdout.iter().any(|l| l.ends_with(&format!(" second {i}"))), "second {i} missing");
    }
}

#[test]
fn a_unix_socket_client_is_parked_and_resumed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let arg = format!("unix:{}", dir.path().join("hub.sock").display());
    let mut server = ServeProcess::start(&[&arg, "-v", "--park-after", "100ms"]);
    let mut client = UnixStream::connect(dir.path().join("hub.sock")).expect("connect");
    client.write_all(b"before\n").expect("send");
    wait_parked(&mut server, 1);
    client.write_all(b"after\n").expect("send");
    server.wait_for_data_containing("after");
    drop(client);
    assert!(server.wait_for_event("left:").contains("closed by client"));
    assert!(server.stop().status.success());
}

/// Waits for a stderr line, seen already or to come, that `matches`.
fn wait_event_where(server: &mut ServeProcess, matches: impl Fn(&str) -> bool) -> String {
    if let Some(line) = server.stderr_seen.iter().find(|l| matches(l)) {
        return line.clone();
    }
    loop {
        let line = server.wait_for_event("");
        if matches(&line) {
            return line;
        }
    }
}

#[test]
fn timeouts_close_parked_connections_counted_from_their_last_read() {
    let mut server = serve(&["--idle-timeout", "600ms"]);
    let mut quiet = TcpStream::connect(server.addr).expect("connect");
    quiet.write_all(b"quiet\n").expect("send");
    wait_parked(&mut server, 1);
    let mut busy = TcpStream::connect(server.addr).expect("connect");
    // Parked between lines for longer than the idle timeout in all: only its last read counts.
    for i in 0..8 {
        busy.write_all(format!("busy {i}\n").as_bytes()).expect("send");
        wait_parked(&mut server, 2);
    }
    for id in [1, 2] {
        let left = wait_event_where(&mut server, |l| l.contains(&format!("#{id} ")) && l.contains("left:"));
        assert!(left.contains("closed by server: idle for 600ms (idle timeout)"), "{left}");
    }
    let stopped = server.stop();
    let busy_left =
        stopped.stderr.iter().find(|l| l.contains("#2 ") && l.contains("left:")).expect("#2 left");
    assert!(busy_left.contains("in 8 lines"), "{busy_left}");
    drop((quiet, busy));
}

#[test]
fn nothing_parks_when_parking_is_off() {
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "-v", "--park-after", "0"]);
    let mut client = TcpStream::connect(server.addr).expect("connect");
    client.write_all(b"one\n").expect("send");
    // An event that never comes has no signal to wait for: what five idle periods of 100 ms take.
    std::thread::sleep(Duration::from_millis(500));
    client.write_all(b"two\n").expect("send");
    server.wait_for_data_containing("two");
    drop(client);
    server.wait_for_event("left:");
    let stopped = server.stop();
    assert!(!stopped.stderr.iter().any(|l| l.contains("parked")), "parked with --park-after 0");
}

#[test]
fn a_park_period_too_short_to_be_cheap_is_a_usage_error() {
    let out = common::run_hubcat(&["serve", "127.0.0.1", "0", "--park-after", "10ms"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--park-after must be 0 (never) or at least 100ms")
    );
}
