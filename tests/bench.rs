//! Every `hubcat bench` scenario at a tiny size against a real server, so the tool cannot rot.
//! Behaviour only: figures are checked for presence and sanity, never for speed.

mod common;

use common::run_hubcat;
use serde_json::Value;

fn bench(args: &[&str]) -> Value {
    let out = run_hubcat(&[&["bench"], args, &["--json", "--time-limit", "30s"]].concat(), b"");
    assert!(out.status.success(), "bench {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("bench --json prints one JSON object")
}

fn metric(report: &Value, name: &str) -> f64 {
    report["metrics"][name]["value"].as_f64().unwrap_or_else(|| panic!("no {name} in {report}"))
}

fn server(extra: &str) -> String {
    format!("{} serve 127.0.0.1 {{port}} {extra}", common::hubcat_bin())
}

#[test]
fn ingest_counts_every_line_printed() {
    let report =
        bench(&["ingest", "--clients", "3", "--lines", "50", "--line-bytes", "40", "--spawn", &server("")]);
    assert_eq!(report["scenario"], "ingest");
    assert!(metric(&report, "throughput") > 0.0);
    assert!(metric(&report, "server_cpu") >= 0.0);
}

#[test]
fn hold_measures_memory_and_a_new_client() {
    let report = bench(&["hold", "--conns", "20", "--settle", "10ms", "--spawn", &server("")]);
    assert_eq!(metric(&report, "held"), 20.0);
    assert_eq!(metric(&report, "lines_printed"), 20.0);
    assert_eq!(metric(&report, "server_alive"), 1.0);
    assert!(metric(&report, "new_client_served_in") >= 0.0);
    assert!(metric(&report, "server_pss") > 0.0);
}

#[test]
fn churn_loses_no_line() {
    let report = bench(&["churn", "--conns", "40", "--concurrency", "4", "--spawn", &server("")]);
    assert_eq!(metric(&report, "connections"), 40.0);
    assert_eq!(metric(&report, "failed"), 0.0);
    assert_eq!(metric(&report, "lines_lost"), 0.0);
}

#[test]
fn echo_measures_round_trips_against_echo_mode() {
    let report = bench(&["echo", "--clients", "2", "--duration", "200ms", "--spawn", &server("--mode echo")]);
    assert!(metric(&report, "round_trips") > 0.0);
    assert!(metric(&report, "p99") >= metric(&report, "p50"));
}

#[test]
fn bench_refuses_to_load_another_machine() {
    let out = run_hubcat(&["bench", "churn", "--target", "192.0.2.1:80"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only loads servers on this machine"));
}

#[test]
fn fanout_delivers_every_message_to_every_other_client() {
    let report = bench(&[
        "fanout",
        "--clients",
        "4",
        "--senders",
        "2",
        "--messages",
        "20",
        "--rate",
        "0",
        "--spawn",
        &server("--mode chat"),
    ]);
    assert_eq!(metric(&report, "expected"), 120.0);
    assert_eq!(metric(&report, "delivered"), 120.0);
    assert_eq!(metric(&report, "lost"), 0.0);
    assert!(metric(&report, "p99") >= metric(&report, "p50"));
}

#[test]
fn tls_clients_for_ingest_hold_and_churn() {
    let tls = server("--tls-self-signed");
    let report = bench(&["ingest", "--tls", "--clients", "3", "--lines", "500", "--spawn", &tls]);
    assert!(metric(&report, "throughput") > 0.0);
    let report = bench(&["churn", "--tls", "--conns", "30", "--concurrency", "3", "--spawn", &tls]);
    assert_eq!(metric(&report, "failed"), 0.0);
    assert_eq!(metric(&report, "lines_lost"), 0.0);
    let report = bench(&["hold", "--tls", "--conns", "10", "--settle", "10ms", "--spawn", &tls]);
    assert_eq!(metric(&report, "lines_printed"), 10.0);
    let out = run_hubcat(&["bench", "echo", "--tls", "--spawn", &tls], b"");
    assert_eq!(out.status.code(), Some(1), "--tls is refused where it does not apply");
}
