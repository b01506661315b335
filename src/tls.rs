//! TLS pieces both sides use (rustls with the ring provider, fingerprints), and the server's
//! certificate: from PEM files, or made at start (`--tls-self-signed`), replaceable while
//! serving (SIGHUP) without touching the sessions already open.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

/// Parses a SHA-256 fingerprint: 64 hex digits, with or without `:` between bytes.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    let bad = || format!("{text:?} is not a SHA-256 fingerprint (64 hex digits, `:` allowed)");
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// `AB:CD:...`, the form `openssl x509 -fingerprint -sha256` prints.
pub fn format_fingerprint(digest: &[u8]) -> String {
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, byte) in digest.iter().enumerate() {
        let _ = write!(out, "{}{byte:02X}", if i > 0 { ":" } else { "" });
    }
    out
}

/// The SHA-256 of a certificate, as pinned by `--tls-fingerprint`.
pub fn certificate_sha256(cert: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// rustls with ring: it builds with only a C compiler (aws-lc needs more), at the cost of the
/// post-quantum key exchange that rustls now marks ring's provider deprecated for.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why the server's TLS settings could not be made; one line each, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot use {path} as {what}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Which option it was given to.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The certificate and key do not go together, or another rustls refusal.
    #[error("cannot use this certificate and key: {0}")]
    Rustls(String),
    /// The self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// The server's TLS settings, shared with whoever may replace them (the binary, on SIGHUP).
/// Clones share the same settings.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<RwLock<Arc<ServerConfig>>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

/// Bytes rustls may hold for one connection, each way, before writes wait for the socket: an
/// idle client costs little, a busy one is still bounded. Room for the longest greeting and a
/// banner, which wait in rustls until the handshake is done.
pub(crate) const TLS_BUFFER_LIMIT: usize = 128 * 1024;

fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let fail = |reason: String| TlsSetupError::File { path: path.to_path_buf(), what, reason };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no certificate in it (PEM `BEGIN CERTIFICATE` blocks expected)".into()));
    }
    Ok(certs)
}

impl ServerTls {
    /// Settings from a PEM certificate chain and its private key; with `client_ca`, clients
    /// must present a certificate signed by one of the CAs in that file (mutual TLS).
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<ServerTls, TlsSetupError> {
        let chain = read_certs(cert, "--tls-cert")?;
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsSetupError::File {
            path: key.to_path_buf(),
            what: "--tls-key",
            reason: e.to_string(),
        })?;
        let client_roots = match client_ca {
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(read_certs(path, "--tls-client-ca")?);
                if added == 0 {
                    return Err(TlsSetupError::File {
                        path: path.to_path_buf(),
                        what: "--tls-client-ca",
                        reason: "no usable CA certificate in it".into(),
                    });
                }
                Some(roots)
            }
            None => None,
        };
        Self::build(chain, key_der, client_roots)
    }

    /// A new key and a self-signed certificate for `names` (DNS names or addresses); returns
    /// the settings and the certificate's SHA-256 fingerprint, for clients to pin.
    pub fn self_signed(names: &[String]) -> Result<(ServerTls, String), TlsSetupError> {
        let made = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| TlsSetupError::SelfSigned(e.to_string()))?;
        let cert = made.cert.der().clone();
        let fingerprint = format_fingerprint(&certificate_sha256(&cert));
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        Ok((Self::build(vec![cert], key, None)?, fingerprint))
    }

    fn build(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        client_roots: Option<rustls::RootCertStore>,
    ) -> Result<ServerTls, TlsSetupError> {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
        let builder = match client_roots {
            Some(roots) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_single_cert(chain, key).map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
        // No session tickets after the handshake: a client that sends and closes without ever
        // reading (`ncat --send-only`, a log shipper) would otherwise leave them unread, and its
        // kernel's reset would discard the last lines it sent before the server read them.
        config.send_tls13_tickets = 0;
        Ok(ServerTls { config: Arc::new(RwLock::new(Arc::new(config))) })
    }

    /// Takes the settings of `other` for new connections; open ones keep theirs.
    pub fn replace(&self, other: &ServerTls) {
        let new = Arc::clone(&other.config.read().unwrap_or_else(PoisonError::into_inner));
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = new;
    }

    /// The TLS state of a new connection.
    pub(crate) fn accept(&self) -> Result<rustls::ServerConnection, rustls::Error> {
        let config = Arc::clone(&self.config.read().unwrap_or_else(PoisonError::into_inner));
        let mut connection = rustls::ServerConnection::new(config)?;
        connection.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(connection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_round_trip_with_or_without_colons() {
        let digest = certificate_sha256(b"not really a certificate");
        let text = format_fingerprint(&digest);
        assert_eq!(text.len(), 32 * 3 - 1);
        assert_eq!(parse_fingerprint(&text), Ok(digest));
        assert_eq!(parse_fingerprint(&text.replace(':', "").to_lowercase()), Ok(digest));
        assert!(parse_fingerprint("AB:CD").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
        assert!(parse_fingerprint(&"é".repeat(32)).is_err());
    }

    #[test]
    fn a_self_signed_certificate_is_made_and_missing_files_are_named() {
        let (tls, fingerprint) = ServerTls::self_signed(&["localhost".into()]).expect("made");
        assert_eq!(fingerprint.len(), 95);
        assert!(tls.accept().is_ok());
        let err = ServerTls::from_files(Path::new("/nonexistent/cert.pem"), Path::new("/x.key"), None)
            .expect_err("no such file");
        assert!(err.to_string().starts_with("cannot use /nonexistent/cert.pem as --tls-cert:"), "{err}");
    }
}
