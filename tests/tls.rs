//! TLS on loopback with certificates made here (rcgen). `hubcat connect --tls`: verified by
//! default, name checked, unknown CA / wrong name / expired refused with one line, pinning,
//! `--tls-insecure` loud, `openssl s_server` as a peer. `hubcat serve --tls-*`: lines, echo and
//! `openssl s_client` over TLS, self-signed with a printed fingerprint, a plaintext client
//! told in one line, a stalled handshake cut by --first-byte-timeout, mutual TLS, and a
//! certificate replaced on SIGHUP while a session stays open.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{run_hubcat, within};
use hubcat::tls::{certificate_sha256, format_fingerprint};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A CA, and server certificates it signed, written as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate and its key.
struct Leaf {
    cert: CertificateDer<'static>,
    key: KeyPair,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "hubcat test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write CA");
        Pki { dir, ca }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate for `names`, signed by the CA; `expired` puts its validity in the past.
    fn leaf(&self, names: &[&str], expired: bool) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, names.first().copied().unwrap_or("server"));
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("signed").der().clone();
        Leaf { cert, key }
    }

    /// A CA-signed certificate for localhost written as `server.pem` and `server.key`.
    fn localhost_server(&self) -> (PathBuf, PathBuf) {
        self.write("server", &self.leaf(&["localhost"], false))
    }

    /// `hubcat serve 127.0.0.1 0 ARGS` with the localhost certificate.
    fn serve(&self, args: &[&str]) -> common::ServeProcess {
        let (cert, key) = self.localhost_server();
        let tls = ["--tls-cert", path(&cert), "--tls-key", path(&key)];
        common::ServeProcess::start(&[&["127.0.0.1", "0"], args, &tls].concat())
    }

    /// Writes a leaf as `NAME.pem` and `NAME.key`; returns the two paths.
    fn write(&self, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        let cert = self.dir.path().join(format!("{name}.pem"));
        let key = self.dir.path().join(format!("{name}.key"));
        let pem = pem_block("CERTIFICATE", &leaf.cert);
        std::fs::write(&cert, pem).expect("write cert");
        std::fs::write(&key, leaf.key.serialize_pem()).expect("write key");
        (cert, key)
    }
}

fn pem_block(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> =
        body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

#[allow(deprecated)] // ring's provider, as hubcat uses
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server on 127.0.0.1 that answers each client `got: ` and what it sent, then closes.
async fn tls_server(leaf: &Leaf) -> std::net::SocketAddr {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.cert.clone()], key)
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let mut got = Vec::new();
                let _ = tls.read_to_end(&mut got).await;
                let _ = tls.write_all(b"got: ").await;
                let _ = tls.write_all(&got).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// `hubcat connect --tls ARGS HOST PORT` with `hello` piped in.
fn connect(host: &str, addr: std::net::SocketAddr, args: &[&str]) -> std::process::Output {
    let port = addr.port().to_string();
    let mut all = vec!["connect", "--tls"];
    all.extend_from_slice(args);
    all.extend([host, port.as_str()]);
    run_hubcat(&all, b"hello\n")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The one `error:` line of a refused connection.
fn one_error_line(out: &std::process::Output) -> String {
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    errors[0].to_string()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_signed_by_the_given_ca_is_verified_by_name_and_address() {
    let pki = Pki::new();
    let addr = tls_server(&pki.leaf(&["localhost", "127.0.0.1"], false)).await;
    let ca = pki.ca_path();
    for host in ["localhost", "127.0.0.1"] {
        let out = within(tokio::task::spawn_blocking({
            let ca = ca.clone();
            move || connect(host, addr, &["--tls-ca", path(&ca)])
        }))
        .await
        .expect("client");
        assert!(out.status.success(), "{host}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "got: hello\n");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificates_are_refused_in_one_line() {
    let pki = Pki::new();
    let wrong_name = tls_server(&pki.leaf(&["other.example"], false)).await;
    let expired = tls_server(&pki.leaf(&["localhost"], true)).await;
    let ca = pki.ca_path();
    let cases = [
        // No --tls-ca: the system's roots do not know this CA.
        (wrong_name, vec![], "signed by a CA this machine does not trust (pass --tls-ca FILE"),
        (wrong_name, vec!["--tls-ca", path(&ca)], "not accepted: certificate not valid for name"),
        (expired, vec!["--tls-ca", path(&ca)], "not accepted: certificate expired"),
    ];
    for (addr, args, expected) in cases {
        let args: Vec<String> = args.into_iter().map(String::from).collect();
        let out = within(tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            connect("localhost", addr, &args)
        }))
        .await
        .expect("client");
        let line = one_error_line(&out);
        assert!(line.contains(expected), "{line}");
        assert!(out.stdout.is_empty(), "nothing is sent or shown without a verified server");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_fingerprint_replaces_the_ca_and_a_wrong_one_is_refused() {
    let pki = Pki::new();
    let leaf = pki.leaf(&["self-signed.invalid"], false);
    let pin = format_fingerprint(&certificate_sha256(&leaf.cert));
    let addr = tls_server(&leaf).await;
    let out = within(tokio::task::spawn_blocking({
        let pin = pin.clone();
        move || connect("127.0.0.1", addr, &["--tls-fingerprint", &pin])
    }))
    .await
    .expect("client");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "got: hello\n");

    let wrong = format_fingerprint(&[0xab; 32]);
    let out = within(tokio::task::spawn_blocking(move || {
        connect("127.0.0.1", addr, &["--tls-fingerprint", &wrong])
    }))
    .await
    .expect("client");
    let line = one_error_line(&out);
    assert!(line.contains(&format!("has SHA-256 fingerprint {pin}, not the pinned AB:AB")), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_is_loud_and_plaintext_ports_are_named() {
    let pki = Pki::new();
    let addr = tls_server(&pki.leaf(&["other.example"], true)).await;
    let out = within(tokio::task::spawn_blocking(move || connect("localhost", addr, &["--tls-insecure"])))
        .await
        .expect("client");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "got: hello\n");
    assert!(text(&out.stderr).contains("warning: --tls-insecure: the server's certificate is not checked"));

    // A TLS client on a hubcat plaintext port: the server closes at once, records nothing,
    // and says why; the client says what is wrong, both in one line.
    let mut server = common::ServeProcess::start(&["127.0.0.1", "0"]);
    let plain = server.addr;
    let out = within(tokio::task::spawn_blocking(move || connect("127.0.0.1", plain, &["--tls-insecure"])))
        .await
        .expect("client");
    let line = one_error_line(&out);
    assert!(line.contains("closed the connection during the handshake (is it a plaintext port?)"), "{line}");
    server.wait_for_event("closed: a TLS client on a plaintext port");
    let stopped = server.stop();
    assert!(stopped.stdout.is_empty(), "the hello is not recorded as data: {:?}", stopped.stdout);

    // A plaintext server that never answers: the handshake gives up after --timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    let out = within(tokio::task::spawn_blocking(move || {
        connect("127.0.0.1", addr, &["--tls-insecure", "--timeout", "1s"])
    }))
    .await
    .expect("client");
    let line = one_error_line(&out);
    assert!(line.contains("no answer within 1s (is it a plaintext port?)"), "{line}");
    drop(silent);
}

#[test]
fn the_options_that_exclude_each_other_are_usage_errors() {
    let out = run_hubcat(&["connect", "--tls-insecure", "127.0.0.1", "1"], b"");
    assert_eq!(out.status.code(), Some(2), "--tls-insecure needs --tls");
    let out = run_hubcat(&["connect", "--tls", "--tls-insecure", "--tls-ca", "x.pem", "127.0.0.1", "1"], b"");
    assert_eq!(out.status.code(), Some(2));
    let out = run_hubcat(&["connect", "--tls", "--tls-fingerprint", "AB:CD", "127.0.0.1", "1"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not a SHA-256 fingerprint"));
}

/// Interoperability: `openssl s_server` with a CA-signed certificate; hubcat verifies it.
#[test]
fn hubcat_connect_verifies_openssl_s_server() {
    if Command::new("openssl").arg("version").stdout(Stdio::null()).status().is_err() {
        eprintln!("skipped: openssl is not installed");
        return;
    }
    let pki = Pki::new();
    let (cert, key) = pki.localhost_server();
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-cert", path(&cert), "-key", path(&key)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl starts");
    // Wait until it listens.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let deadline = std::time::Instant::now() + common::LIMIT;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // s_server serves one client at a time; the probe above was the first.
    std::thread::sleep(Duration::from_millis(200));
    let ca = pki.ca_path();
    let out = connect("localhost", addr, &["--tls-ca", path(&ca)]);
    let _ = server.kill();
    let mut received = String::new();
    if let Some(mut stdout) = server.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut received);
    }
    let _ = server.wait();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(received.contains("hello"), "openssl s_server got {received:?}");
}

/// A tokio-rustls connector trusting `ca` (and presenting `identity`, for mutual TLS).
fn connector(ca: &Path, identity: Option<&Leaf>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in <CertificateDer as rustls::pki_types::pem::PemObject>::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("a certificate")).expect("a usable CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.cert.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.serialize_der())),
            )
            .expect("client identity"),
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn localhost() -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::try_from("localhost").expect("name")
}

/// A tokio-rustls client of `addr` trusting `ca` (and presenting `identity`).
async fn tls_client(
    addr: std::net::SocketAddr,
    ca: &Path,
    identity: Option<&Leaf>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    connector(ca, identity).connect(localhost(), stream).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_tls_prints_lines_echoes_and_answers_openssl() {
    let pki = Pki::new();
    let (cert, key) = pki.write("server", &pki.leaf(&["localhost", "127.0.0.1"], false));
    let ca = pki.ca_path();
    let mut server =
        common::ServeProcess::start(&["127.0.0.1", "0", "--tls-cert", path(&cert), "--tls-key", path(&key)]);
    let addr = server.addr;
    let out = within(tokio::task::spawn_blocking({
        let ca = ca.clone();
        move || connect("localhost", addr, &["--tls-ca", path(&ca), "--name", "IVO"])
    }))
    .await
    .expect("client");
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.wait_for_data_containing("IVO says: hello");

    if Command::new("openssl").arg("version").stdout(Stdio::null()).status().is_ok() {
        let mut client = Command::new("openssl")
            .args(["s_client", "-quiet", "-verify_return_error", "-CAfile", path(&ca), "-connect"])
            .arg(addr.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl starts");
        std::io::Write::write_all(&mut client.stdin.take().expect("stdin"), b"from openssl s_client\n")
            .expect("sends");
        server.wait_for_data_containing("from openssl s_client");
        let _ = client.kill();
        let _ = client.wait();
    }
    let stopped = server.stop();
    assert!(stopped.status.success());
    for line in &stopped.stdout {
        assert!(line.starts_with("127.0.0.1:"), "labelled with the peer like any other client: {line}");
    }

    let server = common::ServeProcess::start(&[
        "127.0.0.1",
        "0",
        "--mode",
        "echo",
        "--tls-cert",
        path(&cert),
        "--tls-key",
        path(&key),
    ]);
    let tls = within(tls_client(server.addr, &ca, None)).await.expect("handshake");
    let (mut reader, mut writer) = tokio::io::split(tls);
    let payload: Vec<u8> = (0..2 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sending = {
        let payload = payload.clone();
        tokio::spawn(async move {
            writer.write_all(&payload).await.expect("sends");
            writer.shutdown().await.expect("close_notify");
            writer
        })
    };
    let mut echoed = Vec::new();
    within(reader.read_to_end(&mut echoed)).await.expect("echoed to the end");
    let _writer = sending.await.expect("sender");
    assert!(echoed == payload, "every byte back over TLS ({} of {})", echoed.len(), payload.len());
    assert!(server.stop().status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_server_prints_the_fingerprint_clients_pin() {
    let mut server = common::ServeProcess::start(&["127.0.0.1", "0", "--tls-self-signed"]);
    // Printed before `listening on`, which the helper has already read past.
    let line = server.stderr_seen.iter().find(|l| l.contains("SHA-256 fingerprint is ")).cloned();
    let line = line.unwrap_or_else(|| server.wait_for_event("SHA-256 fingerprint is "));
    let pin = line.split("fingerprint is ").nth(1).expect("a fingerprint").trim().to_string();
    let addr = server.addr;
    let out =
        within(tokio::task::spawn_blocking(move || connect("127.0.0.1", addr, &["--tls-fingerprint", &pin])))
            .await
            .expect("client");
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.wait_for_data_containing("hello");
    // Verified by default: without the pin, a self-signed server is refused.
    let out =
        within(tokio::task::spawn_blocking(move || connect("127.0.0.1", addr, &[]))).await.expect("client");
    assert!(one_error_line(&out).contains("does not trust"));
    assert!(server.stop().status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_clients_and_stalled_handshakes_cost_one_line_each() {
    let mut server = common::ServeProcess::start(&[
        "127.0.0.1",
        "0",
        "--tls-self-signed",
        "--first-byte-timeout",
        "300ms",
    ]);
    let addr = server.addr;
    let out = within(tokio::task::spawn_blocking(move || {
        run_hubcat(&["connect", "127.0.0.1", &addr.port().to_string()], b"plain\n")
    }))
    .await
    .expect("client");
    assert_eq!(text(&out.stdout), "error: this port speaks TLS; connect with TLS (hubcat connect --tls)\n");
    server.wait_for_event("left: not TLS: it sent plaintext to a TLS port");
    // A client that opens a connection and never starts the handshake.
    let _silent = std::net::TcpStream::connect(addr).expect("connects");
    server.wait_for_event("sent nothing within 300ms (first-byte timeout)");
    let stopped = server.stop();
    assert!(stopped.status.success());
    assert!(stopped.stdout.is_empty(), "nothing a non-TLS client sent is recorded: {:?}", stopped.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_given_ca() {
    let pki = Pki::new();
    let ca = pki.ca_path();
    let mut server = pki.serve(&["--format", "json", "--tls-client-ca", path(&ca)]);
    let client_leaf = pki.leaf(&["client.example"], false);
    let mut tls = within(tls_client(server.addr, &ca, Some(&client_leaf))).await.expect("handshake");
    tls.write_all(b"with a certificate\n").await.expect("sends");
    server.wait_for_data_containing("with a certificate");
    server.wait_for_event("TLS: TLSv1_3, client certificate CN=client.example");
    let record = server.data_seen.iter().find(|l| l.contains("\"event\":\"tls\"")).expect("a tls record");
    let record: serde_json::Value = serde_json::from_str(record).expect("JSON");
    assert_eq!(record["subject"], "CN=client.example");
    // Without one, the server refuses (TLS 1.3 reports it on the first read).
    if let Ok(mut anonymous) = within(tls_client(server.addr, &ca, None)).await {
        let _ = anonymous.write_all(b"anonymous\n").await;
        let mut rest = Vec::new();
        let _ = within(anonymous.read_to_end(&mut rest)).await;
        assert!(rest.is_empty());
    }
    server.wait_for_event("TLS failed: peer sent no certificates");
    drop(tls);
    let stopped = server.stop();
    assert!(!stopped.stdout.iter().any(|l| l.contains("anonymous")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_on_sighup_serves_new_clients_while_a_session_stays() {
    let pki = Pki::new();
    let first = pki.leaf(&["localhost"], false);
    let (cert, key) = pki.write("server", &first);
    let ca = pki.ca_path();
    let mut server =
        common::ServeProcess::start(&["127.0.0.1", "0", "--tls-cert", path(&cert), "--tls-key", path(&key)]);
    let mut staying = within(tls_client(server.addr, &ca, None)).await.expect("handshake");
    staying.write_all(b"before\n").await.expect("sends");
    server.wait_for_data_containing("before");

    let second = pki.leaf(&["localhost"], false);
    pki.write("server", &second);
    server.signal("HUP");
    server.wait_for_event("TLS certificate reloaded");
    let addr = server.addr;
    let new_pin = format_fingerprint(&certificate_sha256(&second.cert));
    let old_pin = format_fingerprint(&certificate_sha256(&first.cert));
    let out = within(tokio::task::spawn_blocking(move || {
        connect("127.0.0.1", addr, &["--tls-fingerprint", &new_pin])
    }))
    .await
    .expect("client");
    assert!(out.status.success(), "new clients get the new certificate: {}", text(&out.stderr));
    let out = within(tokio::task::spawn_blocking(move || {
        connect("127.0.0.1", addr, &["--tls-fingerprint", &old_pin])
    }))
    .await
    .expect("client");
    assert!(one_error_line(&out).contains("not the pinned"));
    staying.write_all(b"after\n").await.expect("the open session is untouched");
    server.wait_for_data_containing("after");
    drop(staying);
    assert!(server.stop().status.success());
}

fn have(program: &str) -> bool {
    Command::new(program).arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Interoperability: `ncat --ssl` as a client of `hubcat serve`, `socat OPENSSL-LISTEN` as a
/// server for `hubcat connect --tls`.
#[test]
fn ncat_and_socat_speak_tls_with_hubcat() {
    let pki = Pki::new();
    let (cert, key) = pki.localhost_server();
    if have("ncat") {
        let mut server = common::ServeProcess::start(&[
            "127.0.0.1",
            "0",
            "--tls-cert",
            path(&cert),
            "--tls-key",
            path(&key),
        ]);
        let mut ncat = Command::new("ncat")
            .args(["--ssl", "--send-only", "127.0.0.1"])
            .arg(server.addr.port().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ncat starts");
        std::io::Write::write_all(&mut ncat.stdin.take().expect("stdin"), b"from ncat --ssl\n")
            .expect("sends");
        server.wait_for_data_containing("from ncat --ssl");
        let _ = common::wait_with_limit(&mut ncat);
        assert!(server.stop().status.success());
    } else {
        eprintln!("skipped ncat: not installed");
    }
    if have("socat") {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let listen = format!(
            "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,verify=0,cert={},key={}",
            path(&cert),
            path(&key)
        );
        let server = Command::new("socat")
            .args(["-u", &listen, "STDOUT"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat starts");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = std::time::Instant::now() + common::LIMIT;
        let ca = pki.ca_path();
        // socat listens a moment after it starts; a refused dial is retried.
        let out = loop {
            let out = connect("localhost", addr, &["--tls-ca", path(&ca), "--retry", "5"]);
            if out.status.success() || std::time::Instant::now() > deadline {
                break out;
            }
        };
        let mut server = server;
        if !out.status.success() {
            let _ = server.kill();
        }
        let output = server.wait_with_output().expect("socat ends with the connection");
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&output.stdout), "hello\n");
    } else {
        eprintln!("skipped socat: not installed");
    }
}

/// A TLS client that sends and closes without ever reading loses nothing: the server sends no
/// session tickets it would leave unread (and its kernel would answer the close with a reset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_loses_none_of_its_lines() {
    let pki = Pki::new();
    let ca = pki.ca_path();
    let mut server = pki.serve(&[]);
    let lines = 100_000;
    let mut tls = within(tls_client(server.addr, &ca, None)).await.expect("handshake");
    let payload: Vec<u8> = (0..lines).flat_map(|i| format!("line {i:06}\n").into_bytes()).collect();
    within(tls.write_all(&payload)).await.expect("sends");
    within(tls.shutdown()).await.expect("close_notify");
    drop(tls);
    server.wait_for_data(lines);
    assert!(server.data_seen.last().is_some_and(|l| l.ends_with(&format!("line {:06}", lines - 1))));
    assert!(server.stop().status.success());
}

/// The relay modes over TLS: a chat line and broker bytes reach the other TLS client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_and_broker_relay_between_tls_clients() {
    let pki = Pki::new();
    let ca = pki.ca_path();
    for mode in ["chat", "broker"] {
        let server = pki.serve(&["--mode", mode]);
        let mut a = within(tls_client(server.addr, &ca, None)).await.expect("handshake");
        let mut b = within(tls_client(server.addr, &ca, None)).await.expect("handshake");
        let mut heard = Vec::new();
        if mode == "chat" {
            a.write_all(b"alice\n").await.expect("nick");
            // Alice is welcomed before Bob joins, so she hears him join: both are in the room.
            for (wanted, joining) in [("* welcome, alice", Some(&mut b)), ("* bob joined\n", None)] {
                while !String::from_utf8_lossy(&heard).contains(wanted) {
                    let mut buf = [0; 1024];
                    let n = within(a.read(&mut buf)).await.expect("reads");
                    assert!(n > 0, "closed");
                    heard.extend_from_slice(&buf[..n]);
                }
                if let Some(b) = joining {
                    b.write_all(b"bob\n").await.expect("nick");
                }
            }
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        b.write_all(b"over tls\n").await.expect("sends");
        let expected = if mode == "chat" { "<bob> over tls\n" } else { "over tls\n" };
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains(expected) {
            let mut buf = [0; 1024];
            let n = within(a.read(&mut buf)).await.expect("reads");
            assert!(n > 0, "{mode}: closed before the message");
            got.extend_from_slice(&buf[..n]);
        }
        drop((a, b));
        assert!(server.stop().status.success());
    }
}

/// A client still before its handshake when shutdown starts gets the notice at once, not at
/// the end of the grace period (the echo write waited on a handshake only reading finishes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_after_the_shutdown_notice_still_completes() {
    let pki = Pki::new();
    let ca = pki.ca_path();
    let mut server = pki.serve(&["--mode", "echo", "--grace", "20s"]);
    let stream = tokio::net::TcpStream::connect(server.addr).await.expect("connects");
    server.wait_for_event("connected");
    server.signal("TERM");
    server.wait_for_event("shutting down");
    let started = std::time::Instant::now();
    let handshake = connector(&ca, None).connect(localhost(), stream);
    let mut tls = tokio::time::timeout(Duration::from_secs(5), handshake)
        .await
        .expect("the handshake is not held up by the pending notice")
        .expect("handshake");
    let mut notice = vec![0; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut notice))
        .await
        .expect("the notice comes")
        .expect("reads");
    assert!(String::from_utf8_lossy(&notice[..n]).starts_with("server shutting down"));
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(tls);
    let _ = server.finish();
}
