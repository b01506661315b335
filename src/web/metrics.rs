//! `/metrics` in the Prometheus text format (version 0.0.4).

use std::fmt::Write as _;

use crate::server::Metrics;

/// Renders `metrics`, each family with its HELP and TYPE.
pub(super) fn render(metrics: &Metrics) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(Option<(&str, &str)>, u64)]| {
        let _ = writeln!(out, "# HELP hubcat_{name} {help}");
        let _ = writeln!(out, "# TYPE hubcat_{name} {kind}");
        for (label, value) in samples {
            match label {
                Some((key, label)) => {
                    let _ = writeln!(out, "hubcat_{name}{{{key}=\"{label}\"}} {value}");
                }
                None => {
                    let _ = writeln!(out, "hubcat_{name} {value}");
                }
            }
        }
    };
    let labelled = |key: &'static str,
                    pairs: &[(&'static str, u64)]|
     -> Vec<(Option<(&'static str, &'static str)>, u64)> {
        pairs.iter().map(|&(label, value)| (Some((key, label)), value)).collect()
    };
    family("connections_open", "gauge", "Connections open now.", &[(None, metrics.open)]);
    family("connections_total", "counter", "Connections accepted since start.", &[(None, metrics.accepted)]);
    family(
        "connections_refused_total",
        "counter",
        "Clients turned away, by reason: cap (--max-conns), per_ip, descriptors, acl (--allow/--deny), rate, proxy, timeout (said nothing within --first-byte-timeout).",
        &labelled("reason", &metrics.refused),
    );
    family(
        "connections_timed_out_total",
        "counter",
        "Connections closed by a timeout, by kind.",
        &labelled("kind", &metrics.timed_out),
    );
    family(
        "accept_errors_total",
        "counter",
        "Transient accept errors (retried), by kind.",
        &labelled("kind", &metrics.accept_errors),
    );
    family("received_bytes_total", "counter", "Bytes received from clients.", &[(None, metrics.bytes_in)]);
    family("received_lines_total", "counter", "Lines received from clients.", &[(None, metrics.lines_in)]);
    family("sent_bytes_total", "counter", "Bytes sent to clients.", &[(None, metrics.bytes_out)]);
    family("sent_lines_total", "counter", "Lines sent to clients.", &[(None, metrics.lines_out)]);
    family(
        "output_queue_bytes",
        "gauge",
        "Bytes of records waiting for the output writer.",
        &[(None, metrics.output_queue_bytes)],
    );
    family(
        "relay_queue_bytes",
        "gauge",
        "Bytes waiting in chat and broker clients' queues.",
        &[(None, metrics.relay_queue_bytes)],
    );
    family(
        "slow_client_drops_total",
        "counter",
        "Relay messages dropped for slow clients (--slow-client drop).",
        &[(None, metrics.slow_dropped)],
    );
    family(
        "slow_client_disconnects_total",
        "counter",
        "Relay clients disconnected for being too slow.",
        &[(None, metrics.slow_disconnected)],
    );
    let _ = writeln!(out, "# HELP hubcat_info The server's mode.");
    let _ = writeln!(out, "# TYPE hubcat_info gauge");
    let _ =
        writeln!(out, "hubcat_info{{mode=\"{}\",version=\"{}\"}} 1", metrics.mode, env!("CARGO_PKG_VERSION"));
    out
}
