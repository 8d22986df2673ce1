//! The simulator's certificates: a throwaway CA generated at start, a leaf
//! for `localhost` and `127.0.0.1` signed by it, and the TLS acceptor that
//! serves the leaf. Clients trust the CA through the written `ca.pem`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The file name of the CA certificate inside the certificate directory.
pub const CA_FILE_NAME: &str = "ca.pem";

/// A freshly generated CA and the server identity it signed.
pub struct Certificates {
    /// The CA certificate, PEM; what clients add as their root.
    pub ca_pem: String,
    pub acceptor: TlsAcceptor,
}

/// Generates a CA and a leaf for `localhost` / `127.0.0.1`, and a rustls
/// acceptor using the ring provider explicitly (no process-wide default).
pub fn generate() -> anyhow::Result<Certificates> {
    let ca_key = KeyPair::generate().context("Failed to generate the CA key")?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())
        .context("Failed to prepare the CA certificate")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Herald simulator CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params
        .self_signed(&ca_key)
        .context("Failed to sign the CA certificate")?;

    let leaf_key = KeyPair::generate().context("Failed to generate the server key")?;
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .context("Failed to prepare the server certificate")?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca, &ca_key)
        .context("Failed to sign the server certificate")?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("Failed to choose TLS versions")?
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
        .context("Failed to load the server certificate")?;

    Ok(Certificates {
        ca_pem: ca.pem(),
        acceptor: TlsAcceptor::from(Arc::new(config)),
    })
}

/// Where the CA certificate lives; a directory the simulator created itself
/// is removed when this is dropped.
#[derive(Debug)]
pub struct CertDir {
    dir: PathBuf,
    ca_file: PathBuf,
    owned: bool,
}

impl CertDir {
    /// Writes `ca.pem` into `dir`, or into a fresh temporary directory.
    pub fn write(dir: Option<&Path>, ca_pem: &str) -> anyhow::Result<CertDir> {
        let (dir, owned) = match dir {
            Some(dir) => (dir.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!("herald-sim-{}", uuid::Uuid::new_v4().simple())),
                true,
            ),
        };
        std::fs::create_dir_all(&dir).with_context(|| {
            format!(
                "Failed to create the certificate directory {}",
                dir.display()
            )
        })?;
        let ca_file = dir.join(CA_FILE_NAME);
        std::fs::write(&ca_file, ca_pem)
            .with_context(|| format!("Failed to write {}", ca_file.display()))?;
        Ok(CertDir {
            dir,
            ca_file,
            owned,
        })
    }

    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_ca_parses_as_one_certificate() {
        let certificates = generate().expect("certificates");
        let dir = CertDir::write(None, &certificates.ca_pem).expect("written");
        let pem = std::fs::read(dir.ca_file()).expect("readable");
        let parsed: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<Result<_, _>>()
            .expect("valid PEM");
        assert_eq!(parsed.len(), 1);
        let path = dir.ca_file().to_path_buf();
        drop(dir);
        assert!(
            !path.exists(),
            "a temporary certificate directory is removed"
        );
    }

    #[test]
    fn the_ca_is_a_trust_anchor_for_the_served_name() {
        let certificates = generate().expect("certificates");
        let ca = rustls_pemfile::certs(&mut certificates.ca_pem.as_bytes())
            .next()
            .expect("one certificate")
            .expect("valid PEM");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).expect("usable as a root");
        assert_eq!(roots.len(), 1);
    }
}
