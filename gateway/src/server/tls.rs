//! The HTTPS listener's certificate, swapped on reload: a renewed
//! certificate (cert-manager, ACME) takes effect on SIGHUP without dropping
//! a connection; handshakes already done keep the one they got. The
//! certificate's end of validity is kept for the metrics, so an expiry
//! that renewal missed alerts before clients refuse the handshake.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificate and key every new handshake gets.
#[derive(Debug)]
pub struct ReloadableCert {
    current: ArcSwap<CertifiedKey>,
    /// The leaf certificate's notAfter, in Unix seconds.
    not_after: AtomicI64,
}

/// The notAfter of the first (leaf) certificate of a chain, in Unix seconds.
fn not_after(leaf: &CertificateDer<'_>) -> Result<i64, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(cert.validity().not_after.timestamp())
}

/// Reads a PEM chain and key into a key the handshakes can use. Errors name
/// the file, never its contents.
fn load(cert_file: &Path, key_file: &Path) -> Result<(CertifiedKey, i64), String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("server.tls.cert_file {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls.cert_file {}: no certificate",
            cert_file.display()
        ));
    }
    let expires = not_after(&certs[0])
        .map_err(|e| format!("server.tls.cert_file {}: {e}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("server.tls.key_file {}: {e}", key_file.display()))?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let certified = CertifiedKey::from_der(certs, key, &provider).map_err(|e| {
        format!(
            "server.tls: the key {} does not go with the certificate {}: {e}",
            key_file.display(),
            cert_file.display()
        )
    })?;
    Ok((certified, expires))
}

impl ReloadableCert {
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, String> {
        let (certified, expires) = load(cert_file, key_file)?;
        Ok(Self {
            current: ArcSwap::from_pointee(certified),
            not_after: AtomicI64::new(expires),
        })
    }

    /// Reads the files again; on any error the certificate in use stays.
    pub fn reload(&self, cert_file: &Path, key_file: &Path) -> Result<(), String> {
        let (certified, expires) = load(cert_file, key_file)?;
        self.current.store(Arc::new(certified));
        self.not_after.store(expires, Ordering::Relaxed);
        Ok(())
    }

    /// When the certificate in use stops being valid, in Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Relaxed)
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
