//! `serve --reuse-port`: several processes on one port, the kernel spreading clients among
//! them, and one output file they share without tearing records.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::{ServeProcess, run_hubcat};

#[test]
fn two_servers_share_a_port_and_an_output_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("all.log");
    let output = output.display().to_string();
    let first = ServeProcess::start(&["127.0.0.1", "0", "--reuse-port", "-o", &output]);
    let port = first.addr.port().to_string();
    let second = ServeProcess::start(&["127.0.0.1", &port, "--reuse-port", "-o", &output]);
    let without = run_hubcat(&["serve", "127.0.0.1", &port], b"");
    assert_eq!(without.status.code(), Some(1), "a server without --reuse-port cannot join");

    let line = format!("{}\n", "y".repeat(3000));
    for _ in 0..64 {
        let mut client = TcpStream::connect(first.addr).expect("connects");
        for _ in 0..20 {
            client.write_all(line.as_bytes()).expect("sends");
        }
    }
    let (a, b) = (first.stop(), second.stop());
    assert!(a.status.success() && b.status.success());
    let served = |stderr: &[String]| -> u64 {
        let summary = stderr.iter().find(|l| l.contains("served ")).expect("a summary");
        summary
            .split("served ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let (by_first, by_second) = (served(&a.stderr), served(&b.stderr));
    assert_eq!(by_first + by_second, 64);
    assert!(by_first > 0 && by_second > 0, "the kernel spreads clients: {by_first} and {by_second}");
    let written = std::fs::read_to_string(dir.path().join("all.log")).expect("the shared file");
    let records: Vec<&str> = written.lines().collect();
    assert_eq!(records.len(), 64 * 20);
    for record in records {
        let (peer, data) = record.split_once(' ').expect("peer and data");
        assert!(peer.starts_with("127.0.0.1:"), "a whole record: {peer}");
        assert_eq!(data.len(), 3000, "a whole record");
    }
}
