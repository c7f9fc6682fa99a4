//! TLS for database connections, with libpq's `sslmode` meanings, through rustls (ring
//! provider) and tokio-postgres-rustls.
//!
//! | sslmode | TLS | server certificate |
//! |---|---|---|
//! | disable | never | — |
//! | allow, prefer | if the server offers it | not checked (as libpq without a root file) |
//! | require | always | not checked; but if a root file exists (sslrootcert, or ~/.postgresql/root.crt) it is checked as verify-ca, as libpq does |
//! | verify-ca | always | chain checked against the roots, host name not |
//! | verify-full | always | chain and host name checked |
//!
//! `sslrootcert=system` uses the operating system's trust store. A client certificate is
//! sent when `sslcert` (default `~/.postgresql/postgresql.crt`) exists, with its key from
//! `sslkey` (default `~/.postgresql/postgresql.key`), which must not be readable by group
//! or others (root-owned 0640 is allowed), as libpq requires. `allow` is treated as
//! `prefer` (TLS is tried first): tokio-postgres has no plaintext-first mode.
//!
//! Called by [`super::Target::connect`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::Error;

/// libpq's sslmode values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// libpq: plaintext first, then TLS; here: same as Prefer.
    Allow,
    /// TLS when the server offers it (libpq's default).
    Prefer,
    /// TLS or fail.
    Require,
    /// TLS with the chain checked.
    VerifyCa,
    /// TLS with chain and host name checked.
    VerifyFull,
}

impl std::str::FromStr for SslMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::BadConnstr(format!(
                    "invalid sslmode value: {other:?}"
                )));
            }
        })
    }
}

impl SslMode {
    /// The nearest mode tokio-postgres knows (it only decides whether TLS is attempted
    /// and required; certificate checks are ours).
    pub fn to_pg(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as P;
        match self {
            SslMode::Disable => P::Disable,
            SslMode::Allow | SslMode::Prefer => P::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => P::Require,
        }
    }
}

/// The TLS-related connection parameters after defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// sslmode.
    pub mode: SslMode,
    /// sslrootcert as given (a path, or `system`); None: the default path.
    pub rootcert: Option<String>,
    /// sslcert; None: the default path.
    pub cert: Option<PathBuf>,
    /// sslkey; None: the default path.
    pub key: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: SslMode::Prefer,
            rootcert: None,
            cert: None,
            key: None,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `~/.postgresql/<name>`, libpq's default location of TLS files.
fn default_file(name: &str) -> Option<PathBuf> {
    crate::config::expand_tilde("~/.postgresql")
        .ok()
        .map(|d| d.join(name))
}

/// Builds the rustls client config for these settings; None for `disable`.
pub fn client_config(s: &TlsSettings) -> Result<Option<ClientConfig>, Error> {
    if s.mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = provider();
    let root_path = match &s.rootcert {
        Some(r) => Some(r.clone()),
        None => default_file("root.crt").map(|p| p.display().to_string()),
    };
    let root_exists = root_path
        .as_deref()
        .is_some_and(|p| p == "system" || Path::new(p).exists());
    // What is actually checked, after libpq's rule that a present root file upgrades
    // require to verify-ca.
    let check = match s.mode {
        SslMode::VerifyFull => Check::Full,
        SslMode::VerifyCa => Check::Chain,
        SslMode::Require if root_exists => Check::Chain,
        _ => Check::Nothing,
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(format!("TLS setup: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Nothing => Arc::new(NoCheck(provider.clone())),
        Check::Chain | Check::Full => {
            let Some(path) = root_path.filter(|_| root_exists) else {
                let shown = s
                    .rootcert
                    .clone()
                    .or_else(|| default_file("root.crt").map(|p| p.display().to_string()))
                    .unwrap_or_else(|| "~/.postgresql/root.crt".into());
                return Err(Error::Tls(format!(
                    "root certificate file \"{shown}\" does not exist; either provide the \
                     file, use the system's trusted roots with sslrootcert=system, or change \
                     sslmode to disable server certificate verification"
                )));
            };
            let roots = Arc::new(load_roots(&path)?);
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| Error::Tls(format!("TLS setup: {e}")))?;
            if check == Check::Full {
                inner
            } else {
                Arc::new(ChainOnly(inner))
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let cert_path = s.cert.clone().or_else(|| default_file("postgresql.crt"));
    let config = match cert_path.filter(|p| p.exists()) {
        Some(cert_path) => {
            let key_path = s
                .key
                .clone()
                .or_else(|| default_file("postgresql.key"))
                .ok_or_else(|| Error::Tls("no sslkey for the client certificate".into()))?;
            let certs = load_certs(&cert_path)?;
            let key = load_key(&key_path)?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                Error::Tls(format!("client certificate {}: {e}", cert_path.display()))
            })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Some(config))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    Full,
}

fn load_roots(path: &str) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    if path == "system" {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = store.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(Error::Tls(
                "sslrootcert=system: no usable certificates in the system store".into(),
            ));
        }
        return Ok(store);
    }
    let certs = load_certs(Path::new(path))?;
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(Error::Tls(format!(
            "root certificate file \"{path}\" holds no usable certificate"
        )));
    }
    Ok(store)
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| {
            Error::Tls(format!(
                "cannot read certificate file {}: {e}",
                path.display()
            ))
        })?
        .collect();
    let certs =
        certs.map_err(|e| Error::Tls(format!("bad certificate file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "certificate file {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Loads the client key, refusing one that others can read (libpq's rule: 0600 or less,
/// or owned by root with 0640 or less).
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::Tls(format!(
            "cannot read private key file {}: {e}",
            path.display()
        ))
    })?;
    let mode = meta.mode() & 0o777;
    let ok = if meta.uid() == 0 {
        mode & 0o137 == 0
    } else {
        mode & 0o077 == 0
    };
    if !ok {
        return Err(Error::Tls(format!(
            "private key file {} has group or world access; file must have permissions \
             u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) \
             or less if owned by root",
            path.display()
        )));
    }
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| Error::Tls(format!("bad private key file {}: {e}", path.display())))
}

/// Accepts any server certificate (sslmode prefer/require without a root file), but still
/// checks the handshake signatures, so the session is bound to the presented key.
#[derive(Debug)]
struct NoCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
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

/// verify-ca: the full WebPKI check, except that a certificate valid for another name is
/// accepted.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_libpq_modes() {
        for m in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            assert!(m.parse::<SslMode>().is_ok(), "{m}");
        }
        assert!("verify".parse::<SslMode>().is_err());
    }

    #[test]
    fn verify_full_without_root_file_fails_like_libpq() {
        let s = TlsSettings {
            mode: SslMode::VerifyFull,
            rootcert: Some("/nonexistent/root.crt".into()),
            ..TlsSettings::default()
        };
        let err = client_config(&s).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn disable_needs_no_config_and_require_needs_no_root() {
        let mut s = TlsSettings {
            mode: SslMode::Disable,
            ..TlsSettings::default()
        };
        assert!(client_config(&s).unwrap().is_none());
        s.mode = SslMode::Require;
        s.rootcert = Some("/nonexistent/root.crt".into());
        // An explicit but missing root file leaves require unverified, as in libpq.
        assert!(client_config(&s).unwrap().is_some());
    }

    #[test]
    fn group_readable_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.key");
        std::fs::write(&key, "not a key").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_key(&key).unwrap_err().to_string();
        assert!(err.contains("group or world access"), "{err}");
    }
}
