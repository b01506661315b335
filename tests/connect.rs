//! `hubcat connect` as a user runs it, against small servers written in the test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::thread;

use common::{free_port, run_hubcat};

#[test]
fn a_refused_dial_is_one_clear_line_and_exit_1() {
    let port = free_port();
    let out = run_hubcat(&["connect", "127.0.0.1", &port.to_string()], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("error: cannot connect to 127.0.0.1:{port}: connection refused (is the server running?)\n")
    );
}

#[test]
fn a_piped_raw_request_prints_the_whole_reply() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("bound").port().to_string();
    let server = thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut request = Vec::new();
        conn.read_to_end(&mut request).expect("request until half-close");
        let reply = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello from the test server\n";
        conn.write_all(reply.as_bytes()).expect("reply");
        request
    });
    let out = run_hubcat(&["connect", "127.0.0.1", &port], b"GET / HTTP/1.0\r\n\r\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server.join().expect("server thread"), b"GET / HTTP/1.0\r\n\r\n", "sent verbatim");
    assert_eq!(
        out.stdout, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello from the test server\n",
        "printed verbatim when stdout is not a terminal"
    );
}

#[test]
fn named_lines_are_trimmed_and_q_quits() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("bound").port().to_string();
    let server = thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        BufReader::new(conn).lines().map_while(Result::ok).collect::<Vec<_>>()
    });
    let out =
        run_hubcat(&["connect", "127.0.0.1", &port, "--name", "IVO"], b"Hi Server\r\nsecond\nQ\nnot sent\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server.join().expect("server thread"), ["IVO says: Hi Server", "IVO says: second"]);
}

#[test]
fn a_server_that_hangs_up_mid_session_gives_exit_3() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("bound").port().to_string();
    let mut client =
        common::hubcat(&["connect", "127.0.0.1", &port, "--name", "IVO"]).spawn().expect("starts");
    let (conn, _) = listener.accept().expect("accept");
    let mut first = String::new();
    let mut stdin = client.stdin.take().expect("stdin");
    stdin.write_all(b"hello\n").expect("client input");
    BufReader::new(&conn).read_line(&mut first).expect("a line");
    assert_eq!(first, "IVO says: hello\n");
    drop(conn); // the server leaves while the user is still typing
    let status = common::wait_with_limit(&mut client);
    let mut stderr = String::new();
    client.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("stderr");
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the server closed the connection"), "{stderr}");
}

#[test]
fn retry_waits_for_a_server_that_starts_late() {
    let port = free_port();
    let mut client =
        common::hubcat(&["connect", "127.0.0.1", &port.to_string(), "--retry", "5"]).spawn().expect("starts");
    let stdin = client.stdin.take().expect("stdin");
    let mut stderr = BufReader::new(client.stderr.take().expect("stderr"));
    let mut warning = String::new();
    stderr.read_line(&mut warning).expect("a retry warning");
    assert!(warning.contains("connection refused; retrying in"), "{warning}");
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("the port is still free");
    drop(stdin); // empty request: the client half-closes at once
    let (mut conn, _) = listener.accept().expect("the retry reaches the late server");
    conn.write_all(b"late but here\n").expect("reply");
    drop(conn);
    let status = common::wait_with_limit(&mut client);
    let mut stdout = String::new();
    client.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("stdout");
    assert!(status.success());
    assert_eq!(stdout, "late but here\n");
}

#[test]
fn udp_lines_go_out_as_datagrams_and_replies_are_shown() {
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = server.local_addr().expect("bound").port().to_string();
    let echo = thread::spawn(move || {
        let mut buffer = [0; 1500];
        let mut got = Vec::new();
        for _ in 0..2 {
            let (n, from) = server.recv_from(&mut buffer).expect("datagram");
            got.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
            server.send_to(&[b"echo: ", &buffer[..n]].concat(), from).expect("reply");
        }
        got
    });
    let out = run_hubcat(&["connect", "--udp", "--wait", "300ms", "127.0.0.1", &port], b"one\ntwo\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(echo.join().expect("echo thread"), ["one", "two"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "echo: one\necho: two\n");
}

#[test]
fn a_dial_that_gets_no_answer_times_out() {
    // A listener with a full accept queue drops further SYNs, so the dial never completes.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().expect("addr").into()).expect("bind");
    socket.listen(0).expect("listen");
    let addr = socket.local_addr().expect("bound").as_socket().expect("inet");
    let mut fillers = Vec::new();
    while let Ok(filler) = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(100))
    {
        fillers.push(filler);
        assert!(fillers.len() < 64, "the accept queue never filled");
    }
    let out = run_hubcat(&["connect", "--timeout", "200ms", "127.0.0.1", &addr.port().to_string()], b"");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cannot connect to {addr}: no answer within 200ms")), "{stderr}");
}
