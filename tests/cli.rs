//! The real `hubcat` binary as a user runs it: the textbook session, errors and exit codes, signals.

mod common;

use std::net::TcpListener;

use assert_cmd::Command;
use common::{ServeProcess, run_hubcat};
use predicates::prelude::*;

#[test]
fn the_textbook_session_replayed_with_the_real_binary() {
    let server = ServeProcess::start(&["127.0.0.1", "0", "--greeting", "Let's GO!"]);
    let port = server.addr.port().to_string();
    let talk = [
        ("IVO", "Hi Server, what's up?\n"),
        ("CHRIS", "Are you a busy server?\n"),
        ("MARC", "Don't forget our appointment tomorrow!\n"),
    ];
    let clients: Vec<_> = talk
        .iter()
        .map(|&(name, line)| {
            let port = port.clone();
            let input = format!("{line}Q\nthis is never sent\n");
            std::thread::spawn(move || {
                run_hubcat(&["connect", "127.0.0.1", &port, "--name", name], input.as_bytes())
            })
        })
        .collect();
    for client in clients {
        let out = client.join().expect("client thread");
        assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "Let's GO!\n", "each client shows the greeting");
    }
    let stopped = server.stop();
    assert!(stopped.status.success(), "server exit: {:?}", stopped.status);
    let stdout = stopped.stdout;
    for (name, line) in talk {
        let said = format!(" {name} says: {}", line.trim_end());
        assert_eq!(stdout.iter().filter(|l| l.ends_with(&said)).count(), 1, "{said} once in:\n{stdout:?}");
    }
    assert!(!stdout.iter().any(|l| l.contains("never sent")), "nothing after Q is sent");
    assert_eq!(stdout.len(), 3);
    // Every line carries its own client's address, which stderr announced as it connected.
    for line in &stdout {
        let peer = line.split(' ').next().expect("a peer prefix");
        let connected = format!("{peer} connected");
        assert!(stopped.stderr.iter().any(|e| e.ends_with(&connected)), "{peer} in {:?}", stopped.stderr);
    }
    let summary = stopped.stderr.last().expect("a summary line");
    assert!(summary.contains("served 3 connections") && summary.contains("3 lines"), "{summary}");
}

#[test]
fn sigint_flushes_and_summarises_then_exits_zero() {
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--grace", "100ms"]);
    let port = server.addr.port().to_string();
    // This client stays connected: shutdown must still flush its unterminated line.
    let mut child = common::hubcat(&["connect", "127.0.0.1", &port]).spawn().expect("client starts");
    let mut stdin = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, b"complete line\nhalf a line").expect("client input");
    // One write, so once the complete line is out, the half line is held by the server.
    server.wait_for_data(1);
    let stopped = server.stop();
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    assert!(stopped.status.success(), "exit status {:?}", stopped.status);
    assert_eq!(texts(&stopped.stdout), ["complete line", "half a line"]);
    let summary = stopped.stderr.iter().find(|l| l.contains("served")).expect("summary line");
    assert!(summary.contains("served 1 connection; received 25 bytes and 2 lines"), "{summary}");
}

#[test]
fn a_port_in_use_is_one_clear_line_and_exit_1() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("bound").port().to_string();
    Command::new(common::hubcat_bin()).args(["serve", "127.0.0.1", &port]).assert().code(1).stderr(
        predicate::eq(format!(
            "error: cannot listen on 127.0.0.1:{port}: address already in use \
             (another program is listening there; pick another port, or run every server with --reuse-port)\n"
        )),
    );
}

#[test]
fn an_unknown_host_is_reported() {
    Command::new(common::hubcat_bin())
        .args(["serve", "no-such-host.invalid", "0"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with("error: cannot resolve \"no-such-host.invalid\""));
}

#[test]
fn usage_errors_exit_2() {
    Command::new(common::hubcat_bin()).args(["serve", "--read-size", "0"]).assert().code(2);
    Command::new(common::hubcat_bin()).args(["connect"]).assert().code(2);
    Command::new(common::hubcat_bin()).args(["serve", "--udp", "--greeting", "hi"]).assert().code(2);
}

#[test]
fn ipv6_serve_and_connect() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: ::1 is not available here");
        return;
    }
    let server = ServeProcess::start(&["::1", "0"]);
    assert!(server.addr.is_ipv6());
    let port = server.addr.port().to_string();
    let out = run_hubcat(&["connect", "::1", &port], b"hello over v6\n");
    assert!(out.status.success());
    let stopped = server.stop();
    assert_eq!(stopped.stdout.len(), 1);
    assert!(stopped.stdout[0].starts_with("[::1]:") && stopped.stdout[0].ends_with(" hello over v6"));
}

#[test]
fn a_lone_port_or_host_port_is_understood() {
    let server = ServeProcess::start(&["127.0.0.1:0"]);
    assert_eq!(server.addr.ip().to_string(), "127.0.0.1");
    let target = server.addr.to_string();
    let out = run_hubcat(&["connect", &target], b"via host:port\n");
    assert!(out.status.success());
    assert_eq!(texts(&server.stop().stdout), ["via host:port"]);
}

#[test]
fn udp_datagrams_are_printed_with_their_sender() {
    let mut server = ServeProcess::start(&["--udp", "127.0.0.1", "0"]);
    let port = server.addr.port().to_string();
    let out =
        run_hubcat(&["connect", "--udp", "--wait", "100ms", "127.0.0.1", &port], b"first datagram\nsecond\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    server.wait_for_data(2);
    let stopped = server.stop();
    assert_eq!(texts(&stopped.stdout), ["first datagram", "second"]);
    assert!(stopped.stdout.iter().all(|l| l.starts_with("127.0.0.1:")));
    assert!(stopped.stderr.iter().any(|l| l.contains("received 2 datagrams")), "{:?}", stopped.stderr);
}

/// The data of `lines` without the peer prefix.
fn texts(lines: &[String]) -> Vec<&str> {
    lines.iter().map(|l| l.split_once(' ').map_or(l.as_str(), |(_, text)| text)).collect()
}

#[test]
fn udp_echo_sends_datagrams_back() {
    let mut server = ServeProcess::start(&["--udp", "--mode", "echo", "127.0.0.1", "0"]);
    let port = server.addr.port().to_string();
    let out = run_hubcat(&["connect", "--udp", "--wait", "300ms", "127.0.0.1", &port], b"ping\npong\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ping\npong\n");
    server.wait_for_data(2);
    server.stop();
    Command::new(common::hubcat_bin()).args(["serve", "--udp", "--mode", "chat"]).assert().code(2);
}
