//! `serve --web`: the console's JSON API, /metrics (checked by a Prometheus parser), lines and
//! disconnects sent from it, its access rules, and that a browser that never reads does not
//! hold up the clients. The page itself is tested in a browser (tests/web_browser.rs).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{LIMIT, ServeProcess, run_hubcat};

/// The console's address, from the server's `web console on http://ADDR/` line.
fn console_addr(server: &mut ServeProcess) -> SocketAddr {
    let line = match server.stderr_seen.iter().find(|l| l.contains("web console on")) {
        Some(line) => line.clone(),
        None => server.wait_for_event("web console on"),
    };
    let rest = line.split("http://").nth(1).expect("a URL");
    rest.split('/').next().expect("host:port").parse().expect("an address")
}

/// One HTTP/1.1 request; returns the status and the body.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("console reachable");
    stream.set_read_timeout(Some(LIMIT)).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|h| h.starts_with("Host:")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for header in headers {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes()).expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, &[], "")
}

fn post_json(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    request(addr, "POST", path, &["Content-Type: application/json"], body)
}

fn client(server: &ServeProcess) -> (TcpStream, BufReader<TcpStream>) {
    let stream = TcpStream::connect(server.addr).expect("connects");
    stream.set_read_timeout(Some(LIMIT)).expect("timeout");
    let reader = BufReader::new(stream.try_clone().expect("clone"));
    (stream, reader)
}

fn metric(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no {name} {label:?}"));
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => panic!("{name} is not a number"),
    }
}

#[test]
fn metrics_parse_and_count_what_happened() {
    let mut server = ServeProcess::start(&[
        "127.0.0.1",
        "0",
        "--web",
        "127.0.0.1:0",
        "--deny",
        "127.0.0.2",
        "--mode",
        "echo",
    ]);
    let web = console_addr(&mut server);
    let (mut stream, mut reader) = client(&server);
    stream.write_all(b"one\ntwo\nthree\n").expect("sends");
    let mut echoed = String::new();
    for _ in 0..3 {
        reader.read_line(&mut echoed).expect("echo");
    }
    // Counted before the records are handed to the output.
    server.wait_for_data(3);
    // A client the access rules refuse.
    let denied = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    denied.bind(&"127.0.0.2:0".parse::<SocketAddr>().expect("addr").into()).expect("bind 127.0.0.2");
    denied.connect(&server.addr.into()).expect("the kernel accepts; hubcat then closes");
    server.wait_for_event("not allowed");

    let (status, text) = get(web, "/metrics");
    assert_eq!(status, 200);
    let scrape =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text");
    assert_eq!(metric(&scrape, "hubcat_connections_open", None), 1.0);
    assert_eq!(metric(&scrape, "hubcat_connections_total", None), 1.0);
    assert_eq!(metric(&scrape, "hubcat_received_lines_total", None), 3.0);
    assert_eq!(metric(&scrape, "hubcat_received_bytes_total", None), 14.0);
    assert_eq!(metric(&scrape, "hubcat_sent_bytes_total", None), 14.0, "the echo");
    assert_eq!(metric(&scrape, "hubcat_sent_lines_total", None), 3.0);
    assert_eq!(metric(&scrape, "hubcat_connections_refused_total", Some(("reason", "acl"))), 1.0);
    assert_eq!(metric(&scrape, "hubcat_connections_refused_total", Some(("reason", "cap"))), 0.0);
    for family in
        ["hubcat_accept_errors_total", "hubcat_output_queue_bytes", "hubcat_slow_client_drops_total"]
    {
        assert!(scrape.docs.contains_key(family), "{family} has HELP");
    }
    drop(stream);
    assert!(server.stop().status.success());
}

#[test]
fn the_api_lists_connections_and_sends_lines_and_disconnects() {
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--web", "127.0.0.1:0"]);
    let web = console_addr(&mut server);
    let (mut first, mut first_reader) = client(&server);
    let (mut second, mut second_reader) = client(&server);
    first.write_all(b"hello\n").expect("sends");
    server.wait_for_data(1);
    second.write_all(b"hi\n").expect("sends");
    server.wait_for_data(2);

    let (status, body) = get(web, "/api/connections");
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(list["total"], 2);
    let rows = list["connections"].as_array().expect("rows");
    // Newest first.
    assert_eq!(rows[1]["peer"], first.local_addr().expect("addr").to_string());
    assert_eq!(rows[1]["bytes_in"], 6);
    assert_eq!(rows[0]["bytes_in"], 3);
    let first_id = rows[1]["id"].as_u64().expect("id");

    let (status, body) = post_json(web, "/api/send", &format!(r#"{{"to":{first_id},"text":"just you"}}"#));
    assert_eq!((status, body.as_str()), (200, r#"{"sent_to":1}"#));
    let mut line = String::new();
    first_reader.read_line(&mut line).expect("the line from the console");
    assert_eq!(line, "just you\n");
    let (status, body) = post_json(web, "/api/send", r#"{"to":null,"text":"everyone"}"#);
    assert_eq!((status, body.as_str()), (200, r#"{"sent_to":2}"#));
    for reader in [&mut first_reader, &mut second_reader] {
        line.clear();
        reader.read_line(&mut line).expect("the line to all");
        assert_eq!(line, "everyone\n");
    }
    assert_eq!(post_json(web, "/api/send", r#"{"to":999,"text":"x"}"#).0, 404);
    assert_eq!(post_json(web, "/api/send", r#"{"to":null,"text":"two\nlines"}"#).0, 400);
    // Not JSON: what a form on another site could send. Refused.
    let form =
        request(web, "POST", "/api/send", &["Content-Type: application/x-www-form-urlencoded"], "text=x");
    assert_eq!(form.0, 415);

    assert_eq!(post_json(web, &format!("/api/disconnect/{first_id}"), "{}").0, 204);
    let mut rest = Vec::new();
    first_reader.read_to_end(&mut rest).expect("closed by the server");
    let left = server.wait_for_event("left:");
    assert!(left.contains("disconnected from the web console"), "{left}");
    assert_eq!(post_json(web, &format!("/api/disconnect/{first_id}"), "{}").0, 404);
    drop(second);
    assert!(server.stop().status.success());
}

#[test]
fn a_token_guards_everything_and_the_network_needs_one() {
    const TOKEN: &str = "s3cret-0123456789abcdef";
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--web", "127.0.0.1:0", "--web-token", TOKEN]);
    let web = console_addr(&mut server);
    assert_eq!(get(web, "/api/connections").0, 401);
    assert_eq!(get(web, "/metrics?token=wrong").0, 401);
    assert_eq!(get(web, "/metrics?token=").0, 401);
    assert_eq!(get(web, &format!("/metrics?token={TOKEN}")).0, 200);
    assert_eq!(request(web, "GET", "/", &[&format!("Authorization: bearer {TOKEN}")], "").0, 200);
    assert!(server.stop().status.success());

    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--web", "127.0.0.1:0"]);
    let web = console_addr(&mut server);
    // A page of another site whose name resolves to 127.0.0.1 (DNS rebinding) is refused.
    let rebound = request(web, "GET", "/api/connections", &["Host: attacker.example"], "");
    assert_eq!(rebound.0, 403);
    assert!(server.stop().status.success());

    let out = run_hubcat(&["serve", "127.0.0.1", "0", "--web", "0.0.0.0:0"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("give --web-token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An empty or short token (an unset variable, say) would keep nobody out.
    for token in ["", "   ", "short"] {
        let out = run_hubcat(&["serve", "127.0.0.1", "0", "--web", "0.0.0.0:0", "--web-token", token], b"");
        assert_eq!(out.status.code(), Some(1), "{token:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16 characters"));
    }
}

#[test]
fn a_browser_that_never_reads_does_not_hold_up_clients() {
    let mut server = ServeProcess::start(&[
        "127.0.0.1",
        "0",
        "--web",
        "127.0.0.1:0",
        "--format",
        "raw",
        "-o",
        "/dev/null",
    ]);
    let web = console_addr(&mut server);
    // Follows the feed, then never reads again.
    let mut browser = TcpStream::connect(web).expect("console");
    browser.write_all(format!("GET /events HTTP/1.1\r\nHost: {web}\r\n\r\n").as_bytes()).expect("request");
    let mut first = [0u8; 64];
    browser.read_exact(&mut first).expect("the feed starts");
    let (mut stream, _) = client(&server);
    let line = [b'x'; 1023];
    for _ in 0..100_000 {
        stream.write_all(&line).expect("100 MB go through");
        stream.write_all(b"\n").expect("newline");
    }
    drop(stream);
    let left = server.wait_for_event("left:");
    assert!(left.contains("sent 102400000 bytes in 100000 lines"), "{left}");
    std::thread::sleep(Duration::from_millis(300));
    drop(browser);
    let stopped = server.stop();
    assert!(stopped.status.success(), "{:?}", stopped.stderr);
}

#[test]
fn a_flood_is_sampled_newest_first_with_the_skipped_lines_counted() {
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--web", "127.0.0.1:0"]);
    let web = console_addr(&mut server);
    let mut browser = TcpStream::connect(web).expect("console");
    browser.set_read_timeout(Some(LIMIT)).expect("timeout");
    browser.write_all(format!("GET /events HTTP/1.1\r\nHost: {web}\r\n\r\n").as_bytes()).expect("request");
    let mut feed = BufReader::new(browser);
    let mut line = String::new();
    while !line.starts_with("event: connections") {
        line.clear();
        feed.read_line(&mut line).expect("the feed starts");
    }
    let (mut stream, _) = client(&server);
    let flood: String = (0..5000).map(|i| format!("flood {i}\n")).collect();
    stream.write_all(flood.as_bytes()).expect("sends");
    let (mut skipped, mut shown) = (0u64, 0usize);
    loop {
        line.clear();
        assert!(feed.read_line(&mut line).expect("feed") > 0, "the feed ended");
        let Some(data) = line.strip_prefix("data: {\"lines\"") else { continue };
        let event: serde_json::Value = serde_json::from_str(&format!("{{\"lines\"{data}")).expect("JSON");
        skipped += event["skipped"].as_u64().expect("skipped");
        let lines = event["lines"].as_array().expect("lines");
        shown += lines.len();
        if lines.last().and_then(|l| l.as_str()).is_some_and(|l| l.ends_with(" flood 4999")) {
            break;
        }
    }
    assert_eq!(skipped + shown as u64, 5000, "every line is shown or counted as skipped");
    assert!(skipped > 0, "a flood is sampled");
    drop(stream);
    assert!(server.stop().status.success());
}

#[test]
fn console_text_for_a_client_that_does_not_read_is_bounded() {
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--web", "127.0.0.1:0", "--mode", "echo"]);
    let web = console_addr(&mut server);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    socket.connect(&server.addr.into()).expect("connects");
    let stream: TcpStream = socket.into();
    server.wait_for_event("connected");
    let list: serde_json::Value = serde_json::from_str(&get(web, "/api/connections").1).expect("JSON");
    let id = list["connections"][0]["id"].as_u64().expect("id");
    let line = "z".repeat(4000);
    let body = format!(r#"{{"to":{id},"text":"{line}"}}"#);
    let busy = (0..5000).map(|_| post_json(web, "/api/send", &body).0).find(|&status| status != 200);
    assert_eq!(busy, Some(429), "a client that takes nothing is refused more, not buffered without end");
    let (_, text) = get(web, "/metrics");
    assert!(text.contains("hubcat_sent_lines_total"), "lines out are counted");
    drop(stream);
    assert!(server.stop().status.success());
}
