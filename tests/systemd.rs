//! systemd: socket activation (with `systemd-socket-activate`, from Debian's systemd package)
//! and the notices of a `Type=notify` service, with the real binary.

mod common;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use common::{LIMIT, forward_lines, free_port, hubcat_bin, wait_with_limit};

fn wait_for(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        let line = lines.recv_timeout(LIMIT).unwrap_or_else(|_| panic!("no `{needle}`"));
        if line.contains(needle) {
            return line;
        }
    }
}

#[test]
fn serves_the_socket_systemd_passes() {
    let port = free_port();
    let mut activator = Command::new("systemd-socket-activate")
        // HOST and PORT given here are not used: the passed socket is.
        .args(["-l", &format!("127.0.0.1:{port}"), hubcat_bin(), "serve", "127.0.0.1", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate runs (apt-get install systemd)");
    let events = forward_lines(activator.stderr.take().expect("piped"));
    let data = forward_lines(activator.stdout.take().expect("piped"));
    wait_for(&events, "Listening on");
    // The first client starts the server, which takes over the socket.
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    client.write_all(b"activated\n").expect("sends");
    wait_for(&events, "serving the 1 sockets systemd passed");
    wait_for(&events, &format!("listening on 127.0.0.1:{port}"));
    assert!(data.recv_timeout(LIMIT).expect("the line").ends_with(" activated"));
    drop(client);
    let mut second = std::net::TcpStream::connect(("127.0.0.1", port)).expect("still served");
    second.write_all(b"again\n").expect("sends");
    assert!(data.recv_timeout(LIMIT).expect("the line").ends_with(" again"));
    drop(second);
    let status = Command::new("kill").args(["-TERM", &activator.id().to_string()]).status().expect("kill");
    assert!(status.success());
    assert!(wait_with_limit(&mut activator).success());
}

#[test]
fn tells_systemd_when_it_is_ready_and_when_it_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let notices = UnixDatagram::bind(&path).expect("a notify socket");
    notices.set_read_timeout(Some(LIMIT)).expect("timeout");
    let mut server = Command::new(hubcat_bin())
        .args(["serve", "127.0.0.1", "0"])
        .env("NOTIFY_SOCKET", &path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let events = forward_lines(server.stderr.take().expect("piped"));
    let mut notice = [0u8; 256];
    let n = notices.recv(&mut notice).expect("a notice");
    assert_eq!(&notice[..n], b"READY=1\n");
    wait_for(&events, "listening on");
    let status = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let n = notices.recv(&mut notice).expect("a notice");
    assert_eq!(&notice[..n], b"STOPPING=1\n");
    assert!(wait_with_limit(&mut server).success());
}

#[test]
fn a_udp_server_says_it_is_ready_too_and_accept_yes_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let notices = UnixDatagram::bind(&path).expect("a notify socket");
    notices.set_read_timeout(Some(LIMIT)).expect("timeout");
    let mut server = Command::new(hubcat_bin())
        .args(["serve", "127.0.0.1", "0", "--udp"])
        .env("NOTIFY_SOCKET", &path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let mut notice = [0u8; 256];
    let n = notices.recv(&mut notice).expect("a notice");
    assert_eq!(&notice[..n], b"READY=1\n");
    let status = Command::new("kill").args(["-TERM", &server.id().to_string()]).status().expect("kill");
    assert!(status.success());
    assert!(wait_with_limit(&mut server).success());

    // Accept=yes hands over a connection, not a listener.
    let port = free_port();
    let mut activator = Command::new("systemd-socket-activate")
        .args(["-a", "-l", &format!("127.0.0.1:{port}"), hubcat_bin(), "serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate runs");
    let events = forward_lines(activator.stderr.take().expect("piped"));
    wait_for(&events, "Listening on");
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    wait_for(&events, "use Accept=no");
    let _ = Command::new("kill").args(["-TERM", &activator.id().to_string()]).status();
    let _ = wait_with_limit(&mut activator);
}
