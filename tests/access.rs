//! `--allow`/`--deny`: refused clients are closed before any greeting and counted; deny wins
//! over allow; IPv4 and IPv6; the rule files are re-read on SIGHUP while clients stay connected.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{ServeProcess, TestServer, run_hubcat, within};
use hubcat::ServerSettings;
use hubcat::access::{Access, AccessRules};

/// A client connected from `source` (127.0.0.2 is a second loopback address on Linux).
fn connect_from(source: &str, server: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::for_address(server), socket2::Type::STREAM, None)
        .expect("socket");
    let source = SocketAddr::new(source.parse().expect("source address"), 0);
    socket.bind(&source.into()).expect("bind the source address");
    socket.connect(&server.into()).expect("the kernel accepts the connection");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(common::LIMIT)).expect("timeout");
    stream
}

/// Everything the server sends until it closes.
fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = stream.read_to_end(&mut got);
    got
}

fn rules(allow: &[&str], deny: &[&str]) -> Access {
    let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Access::new(AccessRules::load(&owned(allow), &owned(deny), &[], &[]).expect("valid rules"))
}

#[test]
fn a_denied_address_is_closed_before_the_greeting_and_counted() {
    let server = ServeProcess::start(&["127.0.0.1", "0", "--greeting", "hello", "--deny", "127.0.0.2/32"]);
    let mut refused = connect_from("127.0.0.2", server.addr);
    let _ = refused.write_all(b"let me in\n");
    assert_eq!(read_all(&mut refused), b"", "no greeting, no data for a denied client");
    let mut served = connect_from("127.0.0.1", server.addr);
    served.write_all(b"served\n").expect("sends");
    served.shutdown(std::net::Shutdown::Write).expect("half-close");
    assert_eq!(read_all(&mut served), b"hello\n");
    let stopped = server.stop();
    assert!(stopped.status.success());
    assert_eq!(stopped.stdout.len(), 1, "only the allowed client's line: {:?}", stopped.stdout);
    assert!(stopped.stdout[0].starts_with("127.0.0.1:") && stopped.stdout[0].ends_with(" served"));
    let summary = stopped.stderr.iter().find(|l| l.contains("served 1")).expect("summary");
    assert!(summary.contains("1 client refused by --allow/--deny"), "{summary}");
    assert!(stopped.stderr.iter().any(|l| l.contains("127.0.0.2 refused: not allowed by --allow/--deny")));
}

#[tokio::test]
async fn deny_wins_over_allow_and_an_allow_list_closes_the_rest() {
    let access = rules(&["127.0.0.0/8"], &["127.0.0.3"]);
    let server =
        TestServer::start(ServerSettings { access, greeting: Some(b"hi\n".to_vec()), ..Default::default() })
            .await;
    let addr = server.addr;
    let outcome = |source: &'static str| {
        tokio::task::spawn_blocking(move || {
            let mut client = connect_from(source, addr);
            client.shutdown(std::net::Shutdown::Write).expect("half-close");
            read_all(&mut client)
        })
    };
    assert_eq!(within(outcome("127.0.0.1")).await.expect("client"), b"hi\n", "allowed");
    assert_eq!(within(outcome("127.0.0.3")).await.expect("client"), b"", "deny wins over allow");
    drop(server.stop().await);

    // An IPv4 allow list refuses IPv6 clients; a deny rule for ::1 refuses ::1.
    for (access, served) in
        [(rules(&["127.0.0.1"], &[]), false), (rules(&[], &["::1/128"]), false), (rules(&["::1"], &[]), true)]
    {
        let settings = ServerSettings { access, greeting: Some(b"hi\n".to_vec()), ..Default::default() };
        let Some(server) = TestServer::start_on("[::1]:0", settings).await else {
            eprintln!("skipped: no IPv6 loopback here");
            return;
        };
        let addr = server.addr;
        let got = within(outcome_v6(addr)).await.expect("client");
        assert_eq!(got == b"hi\n", served, "{got:?}");
        let (summary, _) = server.stop().await;
        assert_eq!(summary.denied, u64::from(!served));
    }
}

fn outcome_v6(addr: SocketAddr) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let mut client = connect_from("::1", addr);
        client.shutdown(std::net::Shutdown::Write).expect("half-close");
        read_all(&mut client)
    })
}

#[test]
fn rule_files_are_reread_on_sighup_without_dropping_sessions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let deny = dir.path().join("deny.txt");
    std::fs::write(&deny, "# scanners\n127.0.0.2\n").expect("write rules");
    let deny_arg = deny.to_str().expect("UTF-8 path");
    let mut server = ServeProcess::start(&["127.0.0.1", "0", "--deny-file", deny_arg]);
    let mut staying = connect_from("127.0.0.1", server.addr);
    staying.write_all(b"before the reload\n").expect("sends");
    server.wait_for_data_containing("before the reload");
    assert_eq!(read_all(&mut connect_from("127.0.0.2", server.addr)), b"", "denied by the file");

    // Now deny 127.0.0.1 instead: new clients from it are refused, the open session stays.
    std::fs::write(&deny, "127.0.0.1/32\n").expect("rewrite rules");
    server.signal("HUP");
    server.wait_for_event("access rules reloaded (0 allow and 1 deny rules)");
    staying.write_all(b"after the reload\n").expect("still connected");
    server.wait_for_data_containing("after the reload");
    assert_eq!(read_all(&mut connect_from("127.0.0.1", server.addr)), b"", "denied after the reload");
    let mut now_allowed = connect_from("127.0.0.2", server.addr);
    now_allowed.write_all(b"from .2\n").expect("sends");
    server.wait_for_data_containing("from .2");

    // A file that no longer parses keeps the rules in force.
    std::fs::write(&deny, "not an address\n").expect("rewrite rules");
    server.signal("HUP");
    let warning = server.wait_for_event("keeping the access rules in force");
    assert!(warning.contains("deny.txt:1"), "{warning}");
    assert_eq!(read_all(&mut connect_from("127.0.0.1", server.addr)), b"", "still denied");
    drop((staying, now_allowed));
    std::thread::sleep(Duration::from_millis(50));
    assert!(server.stop().status.success());
}

#[test]
fn a_bad_rule_is_a_usage_error_in_one_line() {
    let out = run_hubcat(&["serve", "127.0.0.1", "0", "--allow", "10.0.0.0/40"], b"");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow: \"10.0.0.0/40\" is not an address or CIDR block"), "{stderr}");
}

#[test]
fn a_connection_flood_from_one_address_is_turned_away_and_others_are_served() {
    let server =
        ServeProcess::start(&["127.0.0.1", "0", "--greeting", "hi", "--max-conn-rate-per-ip", "3/s"]);
    let answers: Vec<Vec<u8>> = (0..10)
        .map(|_| {
            let mut client = connect_from("127.0.0.2", server.addr);
            client.shutdown(std::net::Shutdown::Write).expect("half-close");
            read_all(&mut client)
        })
        .collect();
    let served = answers.iter().filter(|a| a.as_slice() == b"hi\n").count();
    let busy = answers.iter().filter(|a| a.starts_with(b"server busy")).count();
    assert!((3..=4).contains(&served), "a burst of 3 (and maybe one refilled): {answers:?}");
    assert_eq!(served + busy, 10, "the rest are told why");
    let mut other = connect_from("127.0.0.1", server.addr);
    other.shutdown(std::net::Shutdown::Write).expect("half-close");
    assert_eq!(read_all(&mut other), b"hi\n", "another address has its own budget");
    let stopped = server.stop();
    assert!(stopped.stderr.iter().any(|l| l.contains("127.0.0.2 is over --max-conn-rate-per-ip")));
}
