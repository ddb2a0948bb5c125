//! Throwaway certificate authorities and certificates for TLS tests (rcgen, ECDSA P-256),
//! written as PEM files the way operators keep them.
//! [`ClusterOptions::with_tls`](crate::ClusterOptions::with_tls) gives a cluster
//! `ssl = on` with them.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA that signs leaf certificates.
pub struct Ca {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl Ca {
    /// A new self-signed CA named `name`.
    ///
    /// # Panics
    ///
    /// If rcgen cannot make a key or sign (not expected).
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `cn` with subject alternative names `sans` (host names or IPs).
    ///
    /// # Panics
    ///
    /// On a SAN rcgen refuses.
    pub fn leaf(&self, cn: &str, sans: &[&str]) -> Leaf {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Writes `contents` to `dir/name` with mode 0600 (libpq refuses a key others can read).
///
/// # Panics
///
/// If the file cannot be written.
pub fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}
