//! `hubcat connect --proxy` through real proxies on loopback: dante for SOCKS5 (no auth,
//! username/password, a blocking rule, a name only the proxy resolves) and tinyproxy for HTTP
//! CONNECT (no auth, Basic auth, a port it refuses); TLS through the tunnel; and the one-line
//! errors for a proxy that is not running or does not answer.

#[path = "../common/mod.rs"]
mod common;
mod daemons;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitStatus;
use std::sync::mpsc;
use std::thread;

use common::{LIMIT, run_hubcat};
use daemons::{DanteSetup, PROXY_ONLY_NAME, Proxy, SOCKS_PASSWORD, SOCKS_USER, echo_server, free_port};

const LINE: &str = "hello through the proxy";

/// What a finished `hubcat connect` left.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `hubcat connect ARGS`, sends one line, waits for the echo server's copy of it, then
/// closes the input, as a person would (tinyproxy ends a tunnel on the client's half-close, so
/// closing the input before the echo is back could lose it).
fn converse(args: &[&str]) -> Finished {
    let mut all = vec!["connect"];
    all.extend_from_slice(args);
    let mut child = common::hubcat(&all).spawn().expect("hubcat starts");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(format!("{LINE}\n").as_bytes()).expect("input");
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout is piped");
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // The echo, or the end of stdout when hubcat failed.
    let first = lines.recv_timeout(LIMIT);
    drop(stdin);
    let status = common::wait_with_limit(&mut child);
    let stdout: Vec<String> = first.into_iter().chain(lines.iter()).collect();
    Finished { status, stdout: stdout.join("\n"), stderr: stderr.join().expect("stderr reader") }
}

/// `converse` must have carried the line there and back.
fn assert_echoed(out: &Finished, proxy: &Proxy) {
    assert!(out.status.success(), "{}\nproxy log:\n{}", out.stderr, proxy.logs());
    assert_eq!(out.stdout, LINE);
}

/// The single `error:` line of a failed connect, which must exit 1.
fn error_line(args: &[&str]) -> String {
    let mut all = vec!["connect"];
    all.extend_from_slice(args);
    let out = run_hubcat(&all, b"");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    errors[0].to_string()
}

#[test]
fn socks5_without_auth_carries_a_session_both_ways() {
    let proxy = Proxy::dante(DanteSetup::default());
    let echo = echo_server().to_string();
    let url = format!("socks5://127.0.0.1:{}", proxy.port);
    assert_echoed(&converse(&["--proxy", &url, "127.0.0.1", &echo]), &proxy);
    // A target the proxy cannot reach: what the proxy said, with its reply code.
    let closed = free_port();
    let line = error_line(&["--proxy", &url, "127.0.0.1", &closed.to_string()]);
    assert_eq!(
        line,
        format!(
            "error: socks5 proxy 127.0.0.1:{} could not connect to 127.0.0.1:{closed}: \
             connection refused (reply 5)",
            proxy.port
        )
    );
    // A target refused behind the proxy is retried like a refused direct dial.
    let out =
        run_hubcat(&["connect", "--retry", "1", "--proxy", &url, "127.0.0.1", &closed.to_string()], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("connection refused (reply 5); retrying in 250ms (retry 1 of 1)"), "{stderr}");
}

#[test]
fn socks5h_sends_the_name_and_socks5_resolves_it_here() {
    let proxy = Proxy::dante(DanteSetup { proxy_only_name: true, ..DanteSetup::default() });
    let echo = echo_server().to_string();
    let socks5h = format!("socks5h://127.0.0.1:{}", proxy.port);
    assert_echoed(&converse(&["--proxy", &socks5h, "localhost", &echo]), &proxy);
    // Only the proxy knows this name, so it works only if the name itself is sent.
    assert_echoed(&converse(&["--proxy", &socks5h, PROXY_ONLY_NAME, &echo]), &proxy);
    let socks5 = format!("socks5://127.0.0.1:{}", proxy.port);
    let line = error_line(&["--proxy", &socks5, PROXY_ONLY_NAME, &echo]);
    assert!(line.starts_with(&format!("error: cannot resolve \"{PROXY_ONLY_NAME}\"")), "{line}");
}

#[test]
fn socks5_username_and_password_are_checked() {
    let proxy = Proxy::dante(DanteSetup { username_auth: true, ..DanteSetup::default() });
    let echo = echo_server().to_string();
    let good = format!("socks5h://{SOCKS_USER}:{SOCKS_PASSWORD}@127.0.0.1:{}", proxy.port);
    assert_echoed(&converse(&["--proxy", &good, "127.0.0.1", &echo]), &proxy);
    let wrong = format!("socks5://{SOCKS_USER}:wrong@127.0.0.1:{}", proxy.port);
    let line = error_line(&["--proxy", &wrong, "127.0.0.1", &echo]);
    assert_eq!(
        line,
        format!(
            "error: socks5 proxy 127.0.0.1:{} rejected the username and password (status 1); \
             check USER:PASS in the --proxy URL",
            proxy.port
        )
    );
    assert!(!line.contains("wrong"), "the password is never shown");
    let none = format!("socks5://127.0.0.1:{}", proxy.port);
    let line = error_line(&["--proxy", &none, "127.0.0.1", &echo]);
    assert!(
        line.ends_with(
            "accepts none of the authentication methods offered (put USER:PASS@ in the --proxy URL)"
        ),
        "{line}"
    );
}

#[test]
fn a_socks5_rule_that_blocks_the_target_is_named_with_its_reply_code() {
    let blocked = free_port();
    let proxy = Proxy::dante(DanteSetup { blocked_port: Some(blocked), ..DanteSetup::default() });
    let url = format!("socks5://127.0.0.1:{}", proxy.port);
    let line = error_line(&["--proxy", &url, "127.0.0.1", &blocked.to_string()]);
    assert_eq!(
        line,
        format!(
            "error: socks5 proxy 127.0.0.1:{} refused the connection to 127.0.0.1:{blocked}: \
             connection not allowed by ruleset (reply 2)",
            proxy.port
        )
    );
}

#[test]
fn http_connect_carries_a_session_and_a_refused_port_is_one_line() {
    let echo = echo_server();
    let proxy = Proxy::tinyproxy(&[echo], None);
    let url = format!("http://127.0.0.1:{}", proxy.port);
    assert_echoed(&converse(&["--proxy", &url, "127.0.0.1", &echo.to_string()]), &proxy);
    assert_echoed(&converse(&["--proxy", &url, "localhost", &echo.to_string()]), &proxy);
    let other = free_port();
    let line = error_line(&["--proxy", &url, "127.0.0.1", &other.to_string()]);
    assert_eq!(
        line,
        format!(
            "error: http proxy 127.0.0.1:{} answered CONNECT 127.0.0.1:{other} with 403 Access violation",
            proxy.port
        )
    );
}

#[test]
fn http_basic_auth_is_sent_and_a_wrong_password_is_named() {
    let echo = echo_server();
    let proxy = Proxy::tinyproxy(&[echo], Some(("hubcat", "pa55-word")));
    let target = ["127.0.0.1", &echo.to_string()].map(String::from);
    // Percent-decoded: %35 is `5`.
    let good = format!("http://hubcat:pa%355-word@127.0.0.1:{}", proxy.port);
    assert_echoed(&converse(&["--proxy", &good, &target[0], &target[1]]), &proxy);
    let answered =
        format!("error: http proxy 127.0.0.1:{} answered CONNECT 127.0.0.1:{echo} with", proxy.port);
    // tinyproxy says 401 to wrong credentials, 407 to none.
    let wrong = format!("http://hubcat:nope@127.0.0.1:{}", proxy.port);
    let line = error_line(&["--proxy", &wrong, &target[0], &target[1]]);
    assert_eq!(line, format!("{answered} 401 Unauthorized (check USER:PASS in the --proxy URL)"));
    let none = format!("http://127.0.0.1:{}", proxy.port);
    let line = error_line(&["--proxy", &none, &target[0], &target[1]]);
    assert_eq!(
        line,
        format!("{answered} 407 Proxy Authentication Required (put USER:PASS@ in the --proxy URL)")
    );
}

#[test]
fn a_proxy_that_is_not_running_is_named_and_retried() {
    let port = free_port();
    for (scheme, protocol) in [("socks5h", "socks5"), ("http", "http")] {
        let url = format!("{scheme}://127.0.0.1:{port}");
        let line = error_line(&["--proxy", &url, "example.org", "80"]);
        assert_eq!(
            line,
            format!(
                "error: cannot connect to 127.0.0.1:{port} ({protocol} proxy): connection refused \
                 (is the proxy running?)"
            )
        );
    }
    let url = format!("socks5://127.0.0.1:{port}");
    let out = run_hubcat(&["connect", "--retry", "1", "--proxy", &url, "127.0.0.1", "80"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("(socks5 proxy): connection refused (is the proxy running?); retrying in"),
        "{stderr}"
    );
}

#[test]
fn a_proxy_that_never_answers_is_bounded_by_the_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("bound").port();
    for scheme in ["socks5", "http"] {
        let url = format!("{scheme}://127.0.0.1:{port}");
        let line = error_line(&["--timeout", "500ms", "--proxy", &url, "127.0.0.1", "9"]);
        assert!(
            line.ends_with(&format!(
                "proxy 127.0.0.1:{port} gave no answer for 127.0.0.1:9 within 500ms (raise --timeout to wait longer)"
            )),
            "{line}"
        );
    }
    drop(silent);
}

#[test]
fn bad_proxy_urls_and_udp_are_usage_errors() {
    for url in ["127.0.0.1:1080", "https://proxy:443", "socks5://proxy", "socks5://user@proxy:1080"] {
        let out = run_hubcat(&["connect", "--proxy", url, "127.0.0.1", "80"], b"");
        assert_eq!(out.status.code(), Some(2), "{url}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("expected socks5://, socks5h:// or http://"), "{stderr}");
    }
    let out = run_hubcat(&["connect", "--udp", "--proxy", "socks5://127.0.0.1:1080", "127.0.0.1", "80"], b"");
    assert_eq!(out.status.code(), Some(2));
}

/// A CA and a server certificate for `localhost` it signed, as PEM files: (ca, cert, key).
fn localhost_pki(dir: &std::path::Path) -> [String; 3] {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    let cert = leaf.signed_by(&key, &ca).expect("signed");
    let files = [("ca.pem", ca.pem()), ("server.pem", cert.pem()), ("server.key", key.serialize_pem())];
    files.map(|(name, pem)| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write PEM");
        path.to_str().expect("UTF-8 path").to_string()
    })
}

#[test]
fn tls_runs_through_the_tunnel_and_checks_the_target_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let [ca, cert, key] = localhost_pki(dir.path());
    let server = common::ServeProcess::start(&[
        "127.0.0.1",
        "0",
        "--mode",
        "echo",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ]);
    let port = server.addr.port().to_string();
    let dante = Proxy::dante(DanteSetup::default());
    let tinyproxy = Proxy::tinyproxy(&[server.addr.port()], None);
    for (proxy, url) in [
        (&dante, format!("socks5h://127.0.0.1:{}", dante.port)),
        (&tinyproxy, format!("http://127.0.0.1:{}", tinyproxy.port)),
    ] {
        assert_echoed(&converse(&["--tls", "--tls-ca", &ca, "--proxy", &url, "localhost", &port]), proxy);
        // The certificate names localhost, not the address: checked against the target, not the proxy.
        let line = error_line(&["--tls", "--tls-ca", &ca, "--proxy", &url, "127.0.0.1", &port]);
        assert!(
            line.starts_with(&format!("error: TLS handshake with 127.0.0.1:{port} via {url} failed: ")),
            "{line}"
        );
        assert!(line.contains("not valid for name"), "{line}");
    }
    drop(server);
}
