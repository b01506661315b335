//! `serve --proxy-protocol` behind a real HAProxy (Debian's `haproxy`, started here on
//! loopback with `send-proxy` and `send-proxy-v2`): the client's own address replaces the
//! balancer's in records and in the access rules; anyone but the balancer is refused.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{LIMIT, ServeProcess, free_port};

/// HAProxy with two frontends in front of `backend`: v1 on the first port, v2 on the second.
struct Haproxy {
    child: Child,
    v1: u16,
    v2: u16,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start(backend: SocketAddr) -> Haproxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let (v1, v2) = (free_port(), free_port());
        let config = format!(
            "global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
             frontend v1\n  bind 127.0.0.1:{v1}\n  default_backend b1\nbackend b1\n  server s1 {backend} send-proxy\n\
             frontend v2\n  bind 127.0.0.1:{v2}\n  default_backend b2\nbackend b2\n  server s2 {backend} send-proxy-v2\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("config");
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy runs (apt-get install haproxy)");
        let proxy = Haproxy { child, v1, v2, _dir: dir };
        let deadline = Instant::now() + LIMIT;
        while TcpStream::connect(("127.0.0.1", v2)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not start listening");
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client from `source` (any 127.0.0.0/8 address) to `port`.
fn client_from(source: &str, port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&format!("{source}:0").parse::<SocketAddr>().expect("addr").into()).expect("bind the source");
    socket.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into()).expect("connects");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(LIMIT)).expect("timeout");
    stream
}

#[test]
fn haproxy_v1_and_v2_give_the_client_address_to_records_and_rules() {
    let mut server = ServeProcess::start(&[
        "127.0.0.1",
        "0",
        "--proxy-protocol",
        "--proxy-from",
        "127.0.0.1",
        "--deny",
        "127.0.0.2",
        "--format",
        "json",
    ]);
    let haproxy = Haproxy::start(server.addr);
    let mut via_v1 = client_from("127.0.0.3", haproxy.v1);
    via_v1.write_all(b"through v1\n").expect("sends");
    let mut via_v2 = client_from("127.0.0.4", haproxy.v2);
    via_v2.write_all(b"through v2\n").expect("sends");
    server.wait_for_data_containing("through v1");
    server.wait_for_data_containing("through v2");
    let record = |text: &str| -> serde_json::Value {
        let line = server.data_seen.iter().find(|l| l.contains(text)).expect("a record");
        serde_json::from_str(line).expect("JSON")
    };
    assert_eq!(record("through v1")["peer"], via_v1.local_addr().expect("addr").to_string());
    assert_eq!(record("through v2")["peer"], via_v2.local_addr().expect("addr").to_string());

    // Denied by its own address, though the balancer's is allowed.
    let mut denied = client_from("127.0.0.2", haproxy.v2);
    let _ = denied.write_all(b"let me in\n");
    let mut rest = Vec::new();
    let _ = denied.read_to_end(&mut rest);
    server.wait_for_data_containing("not allowed by --allow/--deny");
    // Straight to the server: from an address that is not the balancer, or with no header.
    let mut direct = client_from("127.0.0.5", server.addr.port());
    let _ = direct.read_to_end(&mut rest);
    let mut headerless = client_from("127.0.0.1", server.addr.port());
    headerless.write_all(b"hello, no header here\n").expect("sends");
    let _ = headerless.read_to_end(&mut rest);
    drop((via_v1, via_v2));
    let stopped = server.stop();
    assert!(stopped.status.success());
    let refused =
        stopped.stdout.iter().filter(|l| l.contains("not from --proxy-from with a PROXY header")).count();
    assert_eq!(refused, 2, "{:?}", stopped.stdout);
    assert!(!stopped.stdout.iter().any(|l| l.contains("let me in") || l.contains("no header here")));
}

#[test]
fn a_dual_stack_listener_believes_an_ipv4_balancer_and_health_checks_leave_no_trace() {
    let mut server = ServeProcess::start(&[
        "::",
        "0",
        "--proxy-protocol",
        "--proxy-from",
        "127.0.0.1",
        "--format",
        "json",
    ]);
    let port = server.addr.port();
    let mut balancer = TcpStream::connect(("127.0.0.1", port)).expect("IPv4 to a dual-stack listener");
    balancer.write_all(b"PROXY TCP4 192.0.2.9 127.0.0.1 5555 80\r\nfrom behind\n").expect("sends");
    server.wait_for_data_containing("from behind");
    let line = server.data_seen.iter().find(|l| l.contains("from behind")).expect("a record");
    assert!(line.contains("\"peer\":\"192.0.2.9:5555\""), "{line}");
    drop(balancer);
    // A v2 LOCAL header is HAProxy checking that the server is up: not a client.
    let mut check = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    check.write_all(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00").expect("sends");
    let mut rest = Vec::new();
    check.set_read_timeout(Some(LIMIT)).expect("timeout");
    let _ = check.read_to_end(&mut rest);
    let stopped = server.stop();
    assert!(stopped.status.success());
    let connects = stopped.stdout.iter().filter(|l| l.contains("\"event\":\"connect\"")).count();
    assert_eq!(connects, 1, "the health check is not a connection: {:?}", stopped.stdout);
}

#[test]
fn connections_waiting_for_their_header_count_against_the_cap() {
    let server = ServeProcess::start(&[
        "127.0.0.1",
        "0",
        "--proxy-protocol",
        "--proxy-from",
        "127.0.0.1",
        "--max-conns",
        "5",
    ]);
    // Trusted, but they never send a header: each holds a descriptor while it is awaited.
    let silent: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(server.addr).expect("connects")).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(server.addr).expect("connects");
    extra.set_read_timeout(Some(LIMIT)).expect("timeout");
    let mut reply = String::new();
    let _ = extra.read_to_string(&mut reply);
    assert!(reply.starts_with("server busy"), "{reply:?}");
    drop(silent);
    assert!(server.stop().status.success());
}
