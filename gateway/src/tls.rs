//! The HTTPS listener's certificate, swapped on reload: a renewed
//! certificate (cert-manager, ACME) takes effect on SIGHUP without dropping
//! a connection; handshakes already done keep the one they got.

use std::path::Path;
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
}

/// Reads a PEM chain and key into a key the handshakes can use. Errors name
/// the file, never its contents.
fn load(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("server.tls.cert_file {}: {e}", cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls.cert_file {}: no certificate",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("server.tls.key_file {}: {e}", key_file.display()))?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    CertifiedKey::from_der(certs, key, &provider).map_err(|e| {
        format!(
            "server.tls: the key {} does not go with the certificate {}: {e}",
            key_file.display(),
            cert_file.display()
        )
    })
}

impl ReloadableCert {
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self, String> {
        Ok(Self {
            current: ArcSwap::from_pointee(load(cert_file, key_file)?),
        })
    }

    /// Reads the files again; on any error the certificate in use stays.
    pub fn reload(&self, cert_file: &Path, key_file: &Path) -> Result<(), String> {
        self.current.store(Arc::new(load(cert_file, key_file)?));
        Ok(())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
