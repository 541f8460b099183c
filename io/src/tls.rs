//! rustls client configuration for https endpoints: trust anchors, mTLS, and the explicit,
//! loudly logged option to skip verification.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;
use telegen_config::ExportSettings;

/// The system's CA bundle (Debian and most distributions), added to the bundled roots.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?
        .collect();
    let certs = certs.map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// Builds the client configuration an exporter uses for https.
pub fn client_config(s: &ExportSettings) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if s.insecure_skip_verify {
        log::warn!(
            "TLS certificate verification is DISABLED for {} (otlp.insecure_skip_verify): \
             anyone on the path can read and alter the telemetry",
            s.endpoint
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = RootCertStore::empty();
        match &s.certificate {
            // A configured CA replaces the defaults: only it is trusted.
            Some(ca) => {
                for c in certs(ca, "OTEL_EXPORTER_OTLP_CERTIFICATE")? {
                    roots
                        .add(c)
                        .map_err(|e| format!("CA certificate {}: {e}", ca.display()))?;
                }
            }
            None => {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                if let Ok(system) = certs(Path::new(SYSTEM_BUNDLE), "system CA bundle") {
                    let (added, _ignored) = roots.add_parsable_certificates(system);
                    log::debug!("TLS: {added} CA certificates from {SYSTEM_BUNDLE}");
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&s.client_certificate, &s.client_key) {
        (Some(cert), Some(key)) => {
            let chain = certs(cert, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("OTEL_EXPORTER_OTLP_CLIENT_KEY {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate and key: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A client configuration that trusts only the CA certificates in `ca` (the Kubernetes
/// service account's `ca.crt`).
pub fn ca_config(ca: &Path) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in certs(ca, "CA certificate")? {
        roots
            .add(c)
            .map_err(|e| format!("CA certificate {}: {e}", ca.display()))?;
    }
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Explains a TLS error in the terms a user can act on.
pub fn explain(e: &rustls::Error) -> String {
    use rustls::{CertificateError, Error};
    let hint = match e {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            " (the collector's certificate is not signed by a trusted CA: set \
             OTEL_EXPORTER_OTLP_CERTIFICATE to its CA)"
        }
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            " (the certificate does not name the endpoint's host)"
        }
        Error::InvalidCertificate(CertificateError::Expired)
        | Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            " (the certificate has expired)"
        }
        Error::AlertReceived(_) => {
            " (the collector refused the handshake: does it require a client certificate?)"
        }
        _ => "",
    };
    format!("{e}{hint}")
}

/// Accepts any certificate. Used only with `otlp.insecure_skip_verify = true`.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
