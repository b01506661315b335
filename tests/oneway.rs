//! Line endings and one-way use: `connect --crlf`, `--send-only`, `--recv-only`, and
//! `serve --recv-only`, with the real binary on loopback.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;

use common::{ServeProcess, run_hubcat};

/// A one-shot server: optionally sends `hello`, then returns everything the client sent.
fn one_client(hello: Option<&'static [u8]>) -> (u16, thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("a client");
        if let Some(hello) = hello {
            stream.write_all(hello).expect("hello");
        }
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        got
    });
    (port, server)
}

#[test]
fn crlf_ends_named_lines_and_raw_input_with_cr_lf() {
    let (port, server) = one_client(None);
    let out =
        run_hubcat(&["connect", "--crlf", "--name", "IVO", "127.0.0.1", &port.to_string()], b"hi\nthere\r\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server.join().expect("server"), b"IVO says: hi\r\nIVO says: there\r\n");

    let (port, server) = one_client(None);
    let out =
        run_hubcat(&["connect", "--crlf", "127.0.0.1", &port.to_string()], b"GET / HTTP/1.0\nHost: x\r\n\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server.join().expect("server"), b"GET / HTTP/1.0\r\nHost: x\r\n\r\n", "no doubled \\r");
}

#[test]
fn send_only_never_shows_what_the_server_says() {
    let (port, server) = one_client(Some(b"you will not see this\n"));
    let out = run_hubcat(&["connect", "--send-only", "127.0.0.1", &port.to_string()], b"one way\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty(), "{:?}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(server.join().expect("server"), b"one way\n");
}

#[test]
fn recv_only_sends_nothing_and_shows_the_server_until_it_closes() {
    let (port, server) = one_client(Some(b"news\n"));
    let out = run_hubcat(&["connect", "--recv-only", "127.0.0.1", &port.to_string()], b"ignored input\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"news\n");
    assert_eq!(server.join().expect("server"), b"", "nothing was sent");
}

#[test]
fn serve_recv_only_closes_the_sending_side_at_once() {
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--recv-only"]);
    let mut client = std::net::TcpStream::connect(server.addr).expect("connects");
    client.set_read_timeout(Some(common::LIMIT)).expect("timeout");
    let mut got = Vec::new();
    client.read_to_end(&mut got).expect("the server's side is closed: end of stream");
    assert!(got.is_empty());
    client.write_all(b"still recorded\n").expect("sends");
    server.wait_for_data_containing("still recorded");
    drop(client);
    assert!(server.stop().status.success());
    let out = run_hubcat(&["serve", "127.0.0.1", "0", "--recv-only", "--mode", "echo"], b"");
    assert_eq!(out.status.code(), Some(2), "--recv-only is for print mode");
}
