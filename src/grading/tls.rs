//! TLS to a sandbox server, as libpq's `sslmode` and `sslrootcert` ask (tokio-postgres's own
//! URL parser knows neither `verify-ca` nor `verify-full`, so they are taken out first):
//! `disable`/`allow`/`prefer` (the default) connect in the clear; `require` encrypts without
//! checking the certificate, unless `sslrootcert` names an authority (then as `verify-ca`);
//! `verify-ca` checks that the authority signed it; `verify-full` also that it names the host.
//! The authority is `sslrootcert` (a PEM file), else the system's.
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS of a sandbox server's connections: administration's (tokio-postgres) and grading's
/// (`wire`), on one configuration.
#[derive(Clone)]
pub struct Tls {
    pub admin: MakeRustlsConnect,
    pub grading: tokio_rustls::TlsConnector,
}

use super::sandbox::SandboxError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Encrypted; any certificate.
    None,
    /// Signed by the authority.
    Authority,
    /// Signed by the authority, for this host name.
    Full,
}

/// Splits `sslmode` and `sslrootcert` off a `postgres://` URL: the URL tokio-postgres may
/// parse, and the connectors to use (None: in the clear).
pub fn split(url: &str) -> Result<(String, Option<Tls>), SandboxError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.to_string()),
            Some(("sslrootcert", v)) => root = Some(decode(v)?),
            _ => kept.push(pair),
        }
    }
    let check =
        match (mode.as_deref(), &root) {
            (None | Some("disable" | "allow" | "prefer"), _) => None,
            (Some("require"), None) => Some(Check::None),
            (Some("require" | "verify-ca"), Some(_)) | (Some("verify-ca"), None) => {
                Some(Check::Authority)
            }
            (Some("verify-full"), _) => Some(Check::Full),
            (Some(_), _) => return Err(SandboxError::Config(
                "sandbox URL: sslmode must be disable, prefer, require, verify-ca or verify-full"
                    .into(),
            )),
        };
    let url = match kept.is_empty() {
        true => base.to_string(),
        false => format!("{base}?{}", kept.join("&")),
    };
    let connector = check.map(|c| connector(c, root.as_deref())).transpose()?;
    Ok((url, connector))
}

fn decode(value: &str) -> Result<String, SandboxError> {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| SandboxError::Config("sandbox URL: sslrootcert is not UTF-8".into()))
}

fn connector(check: Check, root: Option<&str>) -> Result<Tls, SandboxError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SandboxError::Config(format!("TLS: {e}")))?;
    let config = match check {
        Check::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        Check::Authority | Check::Full => {
            let roots = Arc::new(roots(root)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| SandboxError::Config(format!("TLS: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Authority {
                    webpki,
                    names: check == Check::Full,
                }))
                .with_no_client_auth()
        }
    };
    Ok(Tls {
        grading: tokio_rustls::TlsConnector::from(Arc::new(config.clone())),
        admin: MakeRustlsConnect::new(config),
    })
}

fn roots(file: Option<&str>) -> Result<RootCertStore, SandboxError> {
    let mut roots = RootCertStore::empty();
    let certificates: Vec<CertificateDer<'static>> = match file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| SandboxError::Config(format!("sslrootcert {path}: {e}")))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(SandboxError::Config(
            "TLS to the sandbox: no certificate authority to check it against".into(),
        ));
    }
    Ok(roots)
}

/// `verify-ca` and `verify-full`: the chain, and for `verify-full` the host name too.
#[derive(Debug)]
struct Authority {
    webpki: Arc<WebPkiServerVerifier>,
    names: bool,
}

impl ServerCertVerifier for Authority {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `require` without an authority, as libpq does it: encrypted, the certificate unchecked
/// (the handshake's signatures still are).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        verify_tls12_signature(
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
        verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_parameters_are_taken_out() {
        let (url, tls) = split("postgres://u:p@h:5/db?application_name=x").unwrap();
        assert_eq!(url, "postgres://u:p@h:5/db?application_name=x");
        assert!(tls.is_none());
        let (url, tls) = split("postgres://h/db?sslmode=disable").unwrap();
        assert_eq!((url.as_str(), tls.is_none()), ("postgres://h/db", true));
        let (url, tls) = split("postgres://h/db?sslmode=require&connect_timeout=3").unwrap();
        assert_eq!(url, "postgres://h/db?connect_timeout=3");
        assert!(tls.is_some());
        assert!(split("postgres://h/db?sslmode=verify-full&sslrootcert=%2Fno%2Fsuch.pem").is_err());
        assert!(split("postgres://h/db?sslmode=sometimes").is_err());
    }
}
