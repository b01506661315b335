//! `hubcat connect --tls`: the server is verified by default, against the system's roots or
//! `--tls-ca`, name included; `--tls-fingerprint` pins one certificate instead (for a
//! self-signed server); `--tls-insecure` checks nothing and says so. (ncat's client verifies
//! nothing unless asked.)

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::tls::{certificate_sha256, format_fingerprint, provider};

/// How the server's certificate is checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Verify {
    /// Against the system's root certificates, name included.
    #[default]
    SystemRoots,
    /// Against the CA certificates in this PEM file, name included.
    Ca(PathBuf),
    /// The server's certificate must have this SHA-256 (32 bytes); the name is not checked.
    Fingerprint([u8; 32]),
    /// Nothing is checked.
    Insecure,
}

/// Why a TLS session could not start; one line each.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be used.
    #[error("cannot use {path} as --tls-ca: {reason}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No system root certificates were found.
    #[error("no system root certificates found (install ca-certificates, or pass --tls-ca FILE)")]
    NoRoots,
    /// The name to check is not a DNS name or an IP address.
    #[error("{0:?} cannot be checked against a certificate (give a DNS name or an IP address)")]
    Name(String),
    /// The handshake failed: a bad certificate, or the other side does not speak TLS.
    #[error("TLS handshake with {peer} failed: {reason}")]
    Handshake {
        /// The server.
        peer: String,
        /// Why, in words.
        reason: String,
    },
}

/// The client settings for `verify`.
pub fn client_config(verify: &Verify) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Handshake { peer: String::new(), reason: e.to_string() })?;
    let config = match verify {
        Verify::SystemRoots => {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::NoRoots);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verify::Ca(path) => {
            let fail = |reason: String| TlsError::Ca { path: path.clone(), reason };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| fail(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| fail(e.to_string()))?;
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(fail("no certificate in it (PEM `BEGIN CERTIFICATE` blocks expected)".into()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verify::Fingerprint(_) | Verify::Insecure => {
            let pin = match verify {
                Verify::Fingerprint(expected) => Some(*expected),
                _ => None,
            };
            let verifier = WithoutCa { pin, algorithms: provider.signature_verification_algorithms };
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
        }
    };
    Ok(config)
}

/// Runs the handshake over `stream`, checking the certificate for `host` as `verify` says;
/// a server that does not answer within `limit` (a plaintext one waiting for a line) fails it.
pub async fn handshake(
    stream: TcpStream,
    host: &str,
    verify: &Verify,
    limit: Duration,
) -> Result<TlsStream<TcpStream>, TlsError> {
    let config = client_config(verify)?;
    let name = ServerName::try_from(crate::addr::strip_brackets(host).to_string())
        .map_err(|_| TlsError::Name(host.to_string()))?;
    let peer = stream.peer_addr().map_or_else(|_| host.to_string(), |a| a.to_string());
    let connecting = TlsConnector::from(Arc::new(config)).connect(name, stream);
    match tokio::time::timeout(limit, connecting).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(err)) => Err(TlsError::Handshake { peer, reason: handshake_reason(&err) }),
        Err(_) => Err(TlsError::Handshake {
            peer,
            reason: format!(
                "no answer within {} (is it a plaintext port?)",
                humantime::format_duration(limit)
            ),
        }),
    }
}

/// A handshake failure in words, with what to do for the usual ones.
fn handshake_reason(err: &io::Error) -> String {
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) => {
            "the server's certificate is signed by a CA this machine does not trust \
             (pass --tls-ca FILE, or pin it with --tls-fingerprint)"
                .into()
        }
        Some(rustls::Error::InvalidCertificate(cert)) => {
            format!("the server's certificate is not accepted: {cert}")
        }
        Some(rustls::Error::InvalidMessage(_)) | Some(rustls::Error::InappropriateMessage { .. }) => {
            "the server does not speak TLS here (is it a plaintext port?)".into()
        }
        Some(other) => other.to_string(),
        None if err.kind() == io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the handshake (is it a plaintext port?)".into()
        }
        None => crate::error::reason(err),
    }
}

/// A verifier that does not ask a CA: with a pin, it accepts exactly the pinned certificate,
/// whatever its name or issuer; without one (`--tls-insecure`), any. Handshake signatures are
/// still checked, so only the holder of the certificate's key can use it.
#[derive(Debug)]
struct WithoutCa {
    pin: Option<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for WithoutCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(expected) = self.pin else { return Ok(ServerCertVerified::assertion()) };
        let got = certificate_sha256(end_entity);
        if got == expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate has SHA-256 fingerprint {}, not the pinned {}",
                format_fingerprint(&got),
                format_fingerprint(&expected)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
