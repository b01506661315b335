//! `serve --exec` (a command per connection, tcpserver style) and `serve --send-only`, with the
//! real binary on loopback.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::{LIMIT, ServeProcess};

fn connect(server: &ServeProcess) -> TcpStream {
    let stream = TcpStream::connect(server.addr).expect("connects");
    stream.set_read_timeout(Some(LIMIT)).expect("timeout");
    stream
}

/// Sends `input`, closes the sending side, and reads until the server closes.
fn exchange(server: &ServeProcess, input: &[u8]) -> (TcpStream, String) {
    let mut stream = connect(server);
    stream.write_all(input).expect("sends");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("the server closes after the command exits");
    (stream, reply)
}

/// Waits until `done` holds, polling; fails after [`LIMIT`].
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_command_sees_tcpserver_variables_and_talks_to_the_client() {
    let mut server = ServeProcess::start(&[
        "127.0.0.1",
        "0",
        "--exec",
        r#"echo "$TCPREMOTEIP $TCPREMOTEPORT $TCPLOCALIP $TCPLOCALPORT $PROTO $HUBCAT_CONN_ID"; echo to-log >&2; cat"#,
    ]);
    let (stream, reply) = exchange(&server, b"hello\nworld\n");
    let me = stream.local_addr().expect("local");
    let expected =
        format!("{} {} 127.0.0.1 {} TCP 1\nhello\nworld\n", me.ip(), me.port(), server.addr.port());
    assert_eq!(reply, expected);
    // The transcript still records what the client sent.
    server.wait_for_data(2);
    assert_eq!(server.data_seen, [format!("{me} hello"), format!("{me} world")]);
    let line = server.wait_for_event("stderr: to-log");
    assert!(line.contains(&format!("#1 {me} stderr: to-log")), "{line}");
    let left = server.wait_for_event("left:");
    assert!(left.contains("the command exited (status 0)"), "{left}");
    assert!(server.stop().status.success());
}

#[test]
fn a_tcpserver_script_runs_unchanged_without_a_shell_and_json_records_its_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("greet.sh");
    std::fs::write(&script, "#!/bin/sh\nread name\necho \"hello $name from $TCPREMOTEIP\"\n")
        .expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let script = script.display().to_string();
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--exec-argv", &script, "--format", "json"]);
    let (_, reply) = exchange(&server, b"ivo\n");
    assert_eq!(reply, "hello ivo from 127.0.0.1\n");
    server.wait_for_data_containing("disconnect");
    let records: Vec<serde_json::Value> =
        server.data_seen.iter().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let events: Vec<&str> = records.iter().map(|r| r["event"].as_str().expect("event")).collect();
    assert_eq!(events, ["connect", "data", "sent", "disconnect"], "{records:?}");
    assert_eq!(records[1]["text"], "ivo");
    assert_eq!(records[2]["text"], "hello ivo from 127.0.0.1\n", "what the command answered, as sent");
    assert!(server.stop().status.success());
}

#[test]
fn a_client_that_leaves_gets_its_command_a_hangup_then_a_kill_after_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marks = dir.path().display().to_string();
    // One command that leaves on SIGHUP, one that ignores it (and its own child with it).
    let command = format!(
        r#"echo $$ > {marks}/pid.$HUBCAT_CONN_ID
        if [ "$HUBCAT_CONN_ID" = 1 ]; then trap 'echo hup > {marks}/hup; exit 0' HUP; else trap '' HUP; fi
        echo started; while :; do sleep 0.05; done"#
    );
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--grace", "300ms", "--exec", &command]);
    for id in ["1", "2"] {
        let mut client = connect(&server);
        let mut started = [0u8; 8];
        client.read_exact(&mut started).expect("the command started");
        let pid: u32 = std::fs::read_to_string(dir.path().join(format!("pid.{id}")))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        // Leave abruptly (RST), as a crashed client does.
        socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).expect("linger");
        drop(client);
        server.wait_for_event(&format!("#{id} "));
        eventually(&format!("command {id} (pid {pid}) is gone and reaped"), || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
    }
    assert_eq!(std::fs::read_to_string(dir.path().join("hup")).expect("command 1 got SIGHUP"), "hup\n");
    assert!(server.stop().status.success());
}

/// Open descriptors of process `pid`.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("procfs").count()
}

/// Children of `pid` that are zombies (exited, not reaped).
fn zombies(pid: u32) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir("/proc").expect("procfs").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid ...: the comm may hold spaces, so read after the last `)`.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str()) {
            count += 1;
        }
    }
    count
}

#[test]
fn a_thousand_connections_leave_no_zombies_and_no_descriptors_behind() {
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--exec-argv", "cat"]);
    let pid = server.child.id();
    // One exchange first, so everything made once (the reaper's signal handler) is counted.
    assert_eq!(exchange(&server, b"warm up\n").1, "warm up\n");
    eventually("the first command is reaped", || zombies(pid) == 0);
    let before = descriptors(pid);
    for i in 0..1000 {
        let line = format!("line {i}\n");
        assert_eq!(exchange(&server, line.as_bytes()).1, line);
    }
    eventually("every command is reaped", || zombies(pid) == 0);
    eventually("the server's descriptors return to where they started", || descriptors(pid) <= before);
    server.close_stdout();
    let stopped = server.stop();
    assert!(stopped.status.success());
    assert!(stopped.stderr.iter().any(|l| l.contains("served 1001 connections")), "{:?}", stopped.stderr);
}

#[test]
fn a_command_that_cannot_run_is_refused_at_start_or_closes_its_client_with_one_line() {
    for args in [&["--exec-argv", "/nonexistent/command"][..], &["--exec", " "]] {
        let out = common::run_hubcat(&[&["serve", "127.0.0.1", "0"], args].concat(), b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Runnable as far as a look can tell, but its interpreter is missing.
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("broken");
    std::fs::write(&script, "#!/nonexistent/interpreter\n").expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let script = script.display().to_string();
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--exec-argv", &script]);
    let (_, reply) = exchange(&server, b"anyone?\n");
    assert_eq!(reply, "");
    let line = server.wait_for_event("left:");
    assert!(line.contains(&format!("cannot run {script}")), "{line}");
    assert!(server.stop().status.success());
}

#[test]
fn all_the_output_arrives_even_when_the_client_sent_more_than_the_command_read() {
    // The command reads one line, answers 2 MB and exits with 300 KB of the client's unread.
    let mut server =
        ServeProcess::start(&["127.0.0.1", "0", "--exec", "head -1 >/dev/null; head -c 2000000 /dev/zero"]);
    let mut stream = connect(&server);
    let input = [b"GET\n".to_vec(), vec![b'x'; 300_000]].concat();
    let writer = {
        let mut stream = stream.try_clone().expect("clone");
        std::thread::spawn(move || {
            let _ = stream.write_all(&input);
        })
    };
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).expect("a clean close, no reset");
    assert_eq!(reply.len(), 2_000_000, "all of the command's output");
    let _ = writer.join();
    let left = server.wait_for_event("left:");
    assert!(left.contains("the command exited (status 0)"), "{left}");
    assert!(server.stop().status.success());
}

#[test]
fn idle_commands_hold_no_room_in_the_output_queue() {
    // More idle sessions than the output queue has slots (1,024): JSON records of the
    // commands' output must not reserve a slot while a command is silent.
    let server = ServeProcess::start(&[
        "127.0.0.1",
        "0",
        "--exec-argv",
        "cat",
        "--format",
        "json",
        "--max-conns",
        "1100",
        "--grace",
        "300ms",
    ]);
    let idle: Vec<TcpStream> = (0..1050).map(|_| connect(&server)).collect();
    let (_, reply) = exchange(&server, b"still served\n");
    assert_eq!(reply, "still served\n");
    let started = Instant::now();
    drop(idle);
    let stopped = server.stop();
    assert!(stopped.status.success());
    assert!(started.elapsed() < LIMIT);
}

#[test]
fn by_default_exec_mode_runs_at_most_100_commands() {
    let server = ServeProcess::start(&["127.0.0.1", "0", "--exec-argv", "cat"]);
    let held: Vec<TcpStream> = (0..100).map(|_| connect(&server)).collect();
    let mut extra = connect(&server);
    let mut reply = String::new();
    extra.read_to_string(&mut reply).expect("told and closed");
    assert!(reply.starts_with("server busy"), "{reply}");
    drop(held);
    assert!(server.stop().status.success());
}

#[test]
fn what_a_command_left_running_goes_with_it_and_with_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marks = dir.path().display().to_string();
    // The command exits at once but leaves a background job holding its output; then one
    // that ignores SIGHUP is cut off by a stopping server.
    let command = format!(
        r#"if [ "$HUBCAT_CONN_ID" = 1 ]; then sleep 31 & echo $! > {marks}/bg; echo hi; else trap '' HUP; echo $$ > {marks}/fg; echo up; sleep 32; fi"#
    );
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--grace", "10s", "--exec", &command]);
    for (id, file) in [("1", "bg"), ("2", "fg")] {
        let mut client = connect(&server);
        let mut first = [0u8; 3];
        client.read_exact(&mut first).expect("the command runs");
        let pid: u32 =
            std::fs::read_to_string(dir.path().join(file)).expect("pid").trim().parse().expect("pid");
        socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).expect("linger");
        drop(client);
        server.wait_for_event(&format!("#{id} "));
        if id == "1" {
            eventually("the background job of a finished command is gone", || {
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
            });
        } else {
            // Its grace period (10s) has not passed when the server is stopped.
            let stopped = server.stop();
            assert!(stopped.status.success());
            eventually("a command ignoring SIGHUP does not outlive the server", || {
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
            });
            return;
        }
    }
}

#[test]
fn on_a_dual_stack_listener_ipv4_clients_get_plain_ipv4_variables() {
    let mut server = ServeProcess::start(&["::", "0", "--exec", "echo $TCPREMOTEIP $TCPLOCALIP"]);
    let port = server.addr.port();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("IPv4 client");
    stream.set_read_timeout(Some(LIMIT)).expect("timeout");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("reply");
    assert_eq!(reply, "127.0.0.1 127.0.0.1\n");
    server.wait_for_event("left:");
    assert!(server.stop().status.success());
}

#[test]
fn send_only_ignores_the_client_and_closes_when_there_is_nothing_more_to_send() {
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--send-only", "--greeting", "today is fine"]);
    let mut client = connect(&server);
    client.write_all(b"not recorded\n").expect("sends");
    let mut reply = String::new();
    client.read_to_string(&mut reply).expect("closed after the greeting");
    assert_eq!(reply, "today is fine\n");
    let left = server.wait_for_event("left:");
    assert!(left.contains("greeting sent (--send-only)"), "{left}");
    let stopped = server.stop();
    assert!(stopped.stdout.is_empty(), "nothing recorded: {:?}", stopped.stdout);

    let server = ServeProcess::start(&["127.0.0.1", "0", "--send-only", "--exec", "echo news; cat"]);
    let mut client = connect(&server);
    client.write_all(b"not for the command\n").expect("sends");
    let mut reply = String::new();
    client.read_to_string(&mut reply).expect("closed when the command is done");
    assert_eq!(reply, "news\n", "the command's stdin is empty");
    let stopped = server.stop();
    assert!(stopped.stdout.is_empty(), "nothing recorded: {:?}", stopped.stdout);
    for args in [
        &["--send-only", "--mode", "echo"][..],
        &["--exec", "cat", "--mode", "chat"],
        &["--exec", "cat", "--udp"],
    ] {
        let out = common::run_hubcat(&[&["serve", "127.0.0.1", "0"], args].concat(), b"");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn shutdown_kills_commands_still_running_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let command =
        format!("echo $$ > {}; trap '' HUP; echo up; while :; do sleep 0.05; done", pid_file.display());
    let server = ServeProcess::start(&["127.0.0.1", "0", "--grace", "200ms", "--exec", &command]);
    let mut client = connect(&server);
    let mut up = [0u8; 3];
    client.read_exact(&mut up).expect("the command runs");
    let pid: u32 = std::fs::read_to_string(&pid_file).expect("pid").trim().parse().expect("pid");
    let started = Instant::now();
    server.signal("TERM");
    let stopped = server.finish();
    assert!(stopped.status.success());
    assert!(started.elapsed() < Duration::from_secs(3), "exit within the grace period and a moment");
    eventually("the command is gone", || !std::path::Path::new(&format!("/proc/{pid}")).exists());
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no shutdown notice in the middle of the command's output: {rest:?}");
}
