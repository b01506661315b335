//! Unix-domain sockets with the real binary: `serve unix:/path` and `unix:@name`, clients
//! socat, OpenBSD nc and `hubcat connect`; stale files replaced, live ones kept; permissions;
//! peer credentials as the label.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use common::{ServeProcess, run_hubcat};

fn socket_path(dir: &tempfile::TempDir) -> (std::path::PathBuf, String) {
    let path = dir.path().join("hub.sock");
    let arg = format!("unix:{}", path.display());
    (path, arg)
}

/// Runs a peer tool with `input` on stdin; returns its stdout, failing when it fails.
fn run_peer(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} runs (apt-get install socat netcat-openbsd): {e}"));
    child.stdin.take().expect("piped").write_all(input).expect("input");
    let status = common::wait_with_limit(&mut child);
    let mut out = Vec::new();
    child.stdout.take().expect("piped").read_to_end(&mut out).expect("output");
    assert!(status.success(), "{program} {args:?} failed");
    out
}

#[test]
fn socat_nc_and_hubcat_connect_are_served_and_labelled_by_pid_and_uid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, arg) = socket_path(&dir);
    let mut server = ServeProcess::start(&[&arg, "--mode", "echo", "--unix-mode", "660"]);
    assert_eq!(server.listening, arg);
    let meta = std::fs::metadata(&path).expect("the socket file is there");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let echoed =
        run_peer("socat", &["-t", "2", "-", &format!("UNIX-CONNECT:{}", path.display())], b"from socat\n");
    assert_eq!(echoed, b"from socat\n");
    let path_text = path.display().to_string();
    let echoed = run_peer("nc.openbsd", &["-U", "-N", &path_text], b"from nc\n");
    assert_eq!(echoed, b"from nc\n");
    let out = run_hubcat(&["connect", &arg], b"from hubcat\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"from hubcat\n");

    server.wait_for_data(3);
    let uid = std::fs::metadata("/proc/self").expect("procfs").uid();
    for line in &server.data_seen {
        assert!(line.starts_with("unix:pid="), "{line}");
        assert!(line.contains(&format!(":uid={uid} from ")), "{line}");
    }
    let stopped = server.stop();
    assert!(stopped.status.success());
    assert!(stopped.stderr.iter().any(|l| l.contains("unix:pid=") && l.contains("connected")));
    assert!(!path.exists(), "the server removes its socket file when it stops");
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_is_never_stolen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, arg) = socket_path(&dir);
    // What a killed server leaves: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("binds"));
    // A process another test forks at that moment holds the listener until it execs.
    let deadline = std::time::Instant::now() + common::LIMIT;
    while UnixStream::connect(&path).is_ok() {
        assert!(std::time::Instant::now() < deadline, "the socket file stays live");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut server = ServeProcess::start(&[&arg]);
    assert!(
        server.stderr_seen.iter().any(|l| l.contains("replacing the stale socket")),
        "{:?}",
        server.stderr_seen
    );

    let second = run_hubcat(&["serve", &arg], b"");
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("error: cannot listen on {arg}: another server is listening there")),
        "{stderr}"
    );
    let mut client = UnixStream::connect(&path).expect("the first server still has it");
    client.write_all(b"still here\n").expect("sends");
    server.wait_for_data_containing("still here");
    drop(client);
    assert!(server.stop().status.success());

    // A server whose file was replaced by someone else's leaves that one alone when it stops.
    let server = ServeProcess::start(&[&arg]);
    std::fs::remove_file(&path).expect("unlinked under the server");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("someone else's socket"));
    assert!(server.stop().status.success());
    assert!(path.exists(), "the other socket file stays");
    std::fs::remove_file(&path).expect("cleaned");

    std::fs::write(&path, b"not a socket").expect("file");
    let refused = run_hubcat(&["serve", &arg], b"");
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a socket"));
    assert_eq!(std::fs::read(&path).expect("kept"), b"not a socket", "a regular file is never removed");
}

#[test]
fn abstract_names_work_both_ways_and_bad_addresses_are_usage_errors() {
    let name = format!("unix:@hubcat-test-{}", std::process::id());
    let mut server = ServeProcess::start(&[&name, "--mode", "echo"]);
    let out = run_hubcat(&["connect", &name], b"abstract\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"abstract\n");
    server.wait_for_data_containing("abstract");
    assert!(server.stop().status.success());

    let gone = run_hubcat(&["connect", &name], b"");
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains(&format!("error: cannot connect to {name}")));
    for args in [
        &["serve", "unix:"][..],
        &["serve", "unix:/tmp/x.sock", "9000"],
        &["serve", "unix:@x", "--unix-mode", "600"],
        &["serve", "127.0.0.1", "0", "--unix-mode", "600"],
        &["serve", "unix:/tmp/x.sock", "--unix-mode", "999"],
        &["serve", "unix:/tmp/x.sock", "--allow", "127.0.0.1"],
        &["connect", "unix:/tmp/x.sock", "--tls"],
        &["connect", "unix:/tmp/x.sock", "--proxy", "socks5://127.0.0.1:1080"],
    ] {
        let out = run_hubcat(args, b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
