//! TLS on both sides, with rustls (no OpenSSL): the `client_tls_*` settings make the
//! pooler a TLS server for its clients, the `server_tls_*` settings a TLS client of
//! PostgreSQL. This module turns those settings into rustls configurations once per
//! (re)load ([`TlsSetup::new`]), runs handshakes ([`TlsStream::accept`],
//! [`TlsStream::connect`]) and describes
//! a finished one as PgBouncer does (`TLSv1.3/TLS_AES_256_GCM_SHA384/ECDH=X25519`).
//! The encrypted socket itself is [`stream::TlsStream`].

mod legacy;
mod names;
pub mod stream;

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion};

use crate::config::Settings;
pub use stream::TlsStream;

/// The ALPN protocol name PostgreSQL 17 defines (required for direct TLS).
pub const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// `client_tls_sslmode` / `server_tls_sslmode`, in increasing strictness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the peer wants it (for PgBouncer, the same as prefer).
    Allow,
    /// TLS when the peer offers it.
    Prefer,
    /// TLS or nothing; no certificate check.
    Require,
    /// TLS with a certificate signed by a trusted CA.
    VerifyCa,
    /// As verify-ca, and (towards servers) the host name must match the certificate.
    VerifyFull,
}

impl SslMode {
    /// Parses a mode name (case-insensitive); unknown names are `None`.
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Why a TLS configuration could not be built. The text is what the log shows after
/// `TLS setup failed: `.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

fn err(s: impl Into<String>) -> TlsError {
    TlsError(s.into())
}

/// The TLS side facing clients (we are the TLS server).
#[derive(Debug, Clone)]
pub struct ClientSide {
    /// client_tls_sslmode.
    pub mode: SslMode,
    /// The server configuration; `None` when the mode is disable.
    pub config: Option<Arc<rustls::ServerConfig>>,
    /// `tls-server-end-point` channel-binding data for SCRAM-SHA-256-PLUS: the hash of
    /// our certificate (RFC 5929). `None` when the certificate's signature has no
    /// defined hash (Ed25519, RSA-PSS), and then -PLUS is not offered.
    pub end_point: Option<Arc<[u8]>>,
}

/// The TLS side facing PostgreSQL (we are the TLS client).
#[derive(Debug, Clone)]
pub struct ServerSide {
    /// server_tls_sslmode.
    pub mode: SslMode,
    /// The client configuration; `None` when the mode is disable.
    pub config: Option<Arc<rustls::ClientConfig>>,
    /// Open TLS with the first byte (PostgreSQL 17 `sslnegotiation=direct`) instead of
    /// an SSLRequest (`server_tls_sslnegotiation = direct`).
    pub direct: bool,
    /// Everything that makes a server connection's TLS what it is: when it changes on
    /// RELOAD, servers are re-opened with the new settings.
    pub fingerprint: String,
    /// Why TLS cannot work although the mode asks for it (for example only TLS 1.0 was
    /// allowed): every handshake fails with this, never a plaintext fallback.
    pub unusable: Option<String>,
}

/// Both sides, built once per (re)load.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    /// Towards clients.
    pub client: ClientSide,
    /// Towards servers.
    pub server: ServerSide,
}

/// Warnings worth logging once per load (a setting that has no effect with rustls).
pub type Warnings = Vec<String>;

impl TlsSetup {
    /// Builds both sides from the settings: reads keys, certificates and CA files.
    pub fn new(s: &Settings) -> Result<(TlsSetup, Warnings), TlsError> {
        let mut warnings = Vec::new();
        let client = client_side(s, &mut warnings)?;
        let server = server_side(s, &mut warnings)?;
        Ok((TlsSetup { client, server }, warnings))
    }

    /// No TLS at all (a placeholder before settings exist).
    pub fn disabled() -> TlsSetup {
        TlsSetup {
            client: ClientSide {
                mode: SslMode::Disable,
                config: None,
                end_point: None,
            },
            server: ServerSide {
                mode: SslMode::Disable,
                config: None,
                direct: false,
                fingerprint: String::new(),
                unusable: None,
            },
        }
    }
}

fn mode_of(s: &Settings, key: &str) -> Result<SslMode, TlsError> {
    let v = s.raw(key);
    SslMode::parse(v).ok_or_else(|| err(format!("invalid {key}: {v}")))
}

/// The rustls provider for one side: ring, with the cipher suites and key-exchange
/// groups the settings allow.
fn provider(
    s: &Settings,
    pfx: &str,
    warnings: &mut Warnings,
) -> Result<
    (
        Arc<CryptoProvider>,
        Vec<&'static SupportedProtocolVersion>,
        bool,
    ),
    TlsError,
> {
    let t = s.typed();
    let mut p = rustls::crypto::ring::default_provider();
    let (versions, dropped) = names::protocols(s.raw(&format!("{pfx}_protocols")))
        .map_err(|e| err(format!("invalid {pfx}_protocols: {e}")))?;
    if !dropped.is_empty() {
        warnings.push(format!(
            "{pfx}_protocols: {} not supported (this build speaks TLS 1.2 and 1.3 only)",
            dropped.join(", ")
        ));
    }
    let tls12 = names::tls12_suites(s.raw(&format!("{pfx}_ciphers")))
        .map_err(|e| err(format!("invalid {pfx}_ciphers: {e}")))?;
    let tls13 = match s.values.get(format!("{pfx}13_ciphers").as_str()) {
        Some(Some(v)) if !v.is_empty() => names::tls13_suites(v).map_err(|_| {
            err(format!(
                "invalid {pfx}13_ciphers: {v}: failed to set the TLSv1.3 cipher suites"
            ))
        })?,
        _ => names::all_tls13(),
    };
    p.cipher_suites.retain(|cs| {
        let name = names::suite_name(cs.suite());
        tls12.contains(&name) || tls13.contains(&name)
    });
    // Our preference order (the client side follows it: `ignore_client_order`): the
    // order the settings list suites in, and by default AES-128-GCM first. Every suite
    // here is strong; AES-256-GCM's SHA-384 transcript and key schedule cost a good
    // share of a handshake's CPU with ring, where SHA-256 has hardware support.
    p.cipher_suites.sort_by_key(|cs| {
        let name = names::suite_name(cs.suite());
        tls13
            .iter()
            .chain(tls12.iter())
            .position(|n| *n == name)
            .unwrap_or(usize::MAX)
    });
    if pfx == "client_tls" {
        let curves = t.client_tls_ecdhcurve.as_str();
        let groups = names::groups(curves)
            .map_err(|e| err(format!("invalid client_tls_ecdhcurve: {curves}: {e}")))?;
        if let Some(groups) = groups {
            p.kx_groups.retain(|g| groups.contains(&g.name()));
        }
        let dh = t.client_tls_dheparams.trim().to_ascii_lowercase();
        if !matches!(dh.as_str(), "" | "auto" | "none" | "legacy") {
            return Err(err(format!(
                "invalid client_tls_dheparams: {dh}: use none, auto or legacy"
            )));
        }
    }
    let usable: Vec<_> = versions
        .iter()
        .copied()
        .filter(|v| {
            p.cipher_suites
                .iter()
                .any(|cs| cs.version().version == v.version)
        })
        .collect();
    let none_usable = usable.is_empty();
    Ok((Arc::new(p), usable, none_usable))
}

fn read_certs(key: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("invalid {key}: {path}: {}", pem_error(&e))))?
        .collect();
    let certs = certs.map_err(|e| err(format!("invalid {key}: {path}: {}", pem_error(&e))))?;
    if certs.is_empty() {
        return Err(err(format!("invalid {key}: {path}: no certificate in it")));
    }
    Ok(certs)
}

fn read_key(key: &str, path: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| err(format!("invalid {key}: {path}: {}", pem_error(&e))))
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item found".into(),
        other => format!("{other:?}"),
    }
}

/// A CA file: the trust anchors, and the certificates themselves (for version 1 chains,
/// see `legacy.rs`).
fn read_roots(
    key: &str,
    path: &str,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsError> {
    let mut roots = RootCertStore::empty();
    let certs = read_certs(key, path)?;
    for c in &certs {
        roots
            .add(c.clone())
            .map_err(|e| err(format!("invalid {key}: {path}: {e}")))?;
    }
    Ok((roots, certs))
}

/// A certificate chain with its key, checked to belong together. Not rustls's own
/// loader: that parses the certificate with webpki, which refuses X.509 version 1.
fn certified_key(
    provider: &CryptoProvider,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pfx: &str,
) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| err(format!("invalid {pfx}_key_file: {e}")))?;
    if let (Some(public), Some(in_cert)) = (signing.public_key(), legacy::public_key_of(&certs[0]))
    {
        if public.as_ref() != in_cert.as_slice() {
            return Err(err(format!(
                "{pfx}_key_file does not belong to {pfx}_cert_file (the keys differ)"
            )));
        }
    }
    Ok(Arc::new(rustls::sign::CertifiedKey::new(certs, signing)))
}

fn client_side(s: &Settings, warnings: &mut Warnings) -> Result<ClientSide, TlsError> {
    let t = s.typed();
    let mode = mode_of(s, "client_tls_sslmode")?;
    if mode == SslMode::Disable {
        return Ok(ClientSide {
            mode,
            config: None,
            end_point: None,
        });
    }
    let (key_file, cert_file) = (
        t.client_tls_key_file.as_str(),
        t.client_tls_cert_file.as_str(),
    );
    if key_file.is_empty() || cert_file.is_empty() {
        return Err(err(
            "To allow TLS connections from clients, client_tls_key_file and \
             client_tls_cert_file must be set.",
        ));
    }
    let (provider, versions, none_usable) = provider(s, "client_tls", warnings)?;
    if none_usable {
        return Err(err(
            "client_tls_protocols and the cipher settings leave no TLS version this build \
             can speak (TLS 1.2, TLS 1.3)",
        ));
    }
    let certs = read_certs("client_tls_cert_file", cert_file)?;
    let key = read_key("client_tls_key_file", key_file)?;
    let end_point = server_end_point(&certs[0]);
    let ca = t.client_tls_ca_file.as_str();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| err(e.to_string()))?;
    let builder = if ca.is_empty() {
        if mode >= SslMode::VerifyCa {
            return Err(err(format!(
                "client_tls_sslmode = {} needs client_tls_ca_file to check client certificates",
                t.client_tls_sslmode.as_str()
            )));
        }
        builder.with_no_client_auth()
    } else {
        let (roots, roots_der) = read_roots("client_tls_ca_file", ca)?;
        let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        // verify-ca and verify-full require a client certificate; the other modes ask
        // for one (cert authentication uses it) but let clients without one in.
        let v = if mode >= SslMode::VerifyCa {
            v
        } else {
            v.allow_unauthenticated()
        };
        builder.with_client_cert_verifier(Arc::new(ClientVerifier {
            inner: v.build().map_err(|e| err(e.to_string()))?,
            roots: roots_der,
            provider: provider.clone(),
        }))
    };
    let certified = certified_key(&provider, certs, key, "client_tls")?;
    let mut config =
        builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    config.ignore_client_order = true;
    // libpq does not resume sessions (a new SSL context per connection), so tickets
    // after every handshake would be work for nobody; session-id resumption (the
    // in-memory cache rustls keeps by default) serves clients that do resume.
    config.send_tls13_tickets = 0;
    Ok(ClientSide {
        mode,
        config: Some(Arc::new(config)),
        end_point,
    })
}

fn server_side(s: &Settings, warnings: &mut Warnings) -> Result<ServerSide, TlsError> {
    let t = s.typed();
    let mode = mode_of(s, "server_tls_sslmode")?;
    let negotiation = t.server_tls_sslnegotiation.trim().to_string();
    let direct = match negotiation.as_str() {
        "" | "postgres" => false,
        "direct" => true,
        other => {
            return Err(err(format!(
                "invalid server_tls_sslnegotiation: {other}: use postgres or direct"
            )))
        }
    };
    let keys = [
        "server_tls_sslmode",
        "server_tls_sslnegotiation",
        "server_tls_ca_file",
        "server_tls_cert_file",
        "server_tls_key_file",
        "server_tls_protocols",
        "server_tls_ciphers",
        "server_tls13_ciphers",
    ];
    let mut fingerprint = String::new();
    for k in keys {
        fingerprint.push_str(&format!("{k}={:?};", s.values.get(k)));
    }
    if mode == SslMode::Disable {
        return Ok(ServerSide {
            mode,
            config: None,
            direct,
            fingerprint,
            unusable: None,
        });
    }
    let (provider, versions, none_usable) = provider(s, "server_tls", warnings)?;
    let mut unusable = None;
    let versions = if none_usable {
        // Loads (a PgBouncer config may say tlsv1.0), but never falls back: a server
        // that answers 'S' gets a failed handshake.
        let why = format!(
            "server_tls_protocols = {} leaves no TLS version this build can speak \
             (TLS 1.2, TLS 1.3)",
            t.server_tls_protocols.as_str()
        );
        warnings.push(why.clone());
        unusable = Some(why);
        vec![&rustls::version::TLS13]
    } else {
        versions
    };
    let ca = t.server_tls_ca_file.as_str();
    let mut files = String::new();
    let roots = if ca.is_empty() {
        if mode >= SslMode::VerifyCa {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _) = roots.add_parsable_certificates(found.certs.clone());
            if added == 0 {
                return Err(err(format!(
                    "server_tls_sslmode = {} needs server_tls_ca_file (no system CA \
                     certificates found)",
                    t.server_tls_sslmode.as_str()
                )));
            }
            Some((roots, found.certs))
        } else {
            None
        }
    } else {
        files.push_str(&file_digest(ca));
        Some(read_roots("server_tls_ca_file", ca)?)
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (SslMode::VerifyCa | SslMode::VerifyFull, Some((roots, roots_der))) => {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| err(e.to_string()))?;
            Arc::new(Verifier {
                inner: Some(inner),
                roots: roots_der,
                check_name: mode == SslMode::VerifyFull,
                provider: provider.clone(),
            })
        }
        _ => Arc::new(Verifier {
            inner: None,
            roots: Vec::new(),
            check_name: false,
            provider: provider.clone(),
        }),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let (key_file, cert_file) = (
        t.server_tls_key_file.as_str(),
        t.server_tls_cert_file.as_str(),
    );
    let mut config = match (key_file.is_empty(), cert_file.is_empty()) {
        (true, true) => builder.with_no_client_auth(),
        (false, false) => {
            files.push_str(&file_digest(key_file));
            files.push_str(&file_digest(cert_file));
            let certs = read_certs("server_tls_cert_file", cert_file)?;
            let key = read_key("server_tls_key_file", key_file)?;
            let certified = certified_key(&provider, certs, key, "server_tls")?;
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                certified,
            )))
        }
        _ => {
            return Err(err(
                "server_tls_key_file and server_tls_cert_file go together: set both or neither",
            ))
        }
    };
    config.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
    fingerprint.push_str(&files);
    Ok(ServerSide {
        mode,
        config: Some(Arc::new(config)),
        direct,
        fingerprint,
        unusable,
    })
}

/// A cheap digest of a file's contents (length and a hash): a rotated CA or key changes
/// the fingerprint even when its path does not.
fn file_digest(path: &str) -> String {
    use std::hash::{Hash, Hasher};
    match std::fs::read(Path::new(path)) {
        Ok(bytes) => {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            format!("{path}:{}:{:x};", bytes.len(), h.finish())
        }
        Err(_) => format!("{path}:missing;"),
    }
}

/// Checks a server's certificate as the mode says: not at all (prefer, require; the
/// handshake signature is still checked, so the session key belongs to whoever holds
/// the certificate's key), against the CA (verify-ca), or also against the host name
/// from the `[databases]` entry (verify-full).
///
/// Version 1 certificates, which webpki refuses, are checked by `legacy.rs` instead, and
/// a version 3 certificate without subject alternative names may match by its common
/// name, as libpq allows.
#[derive(Debug)]
struct Verifier {
    inner: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    /// The CA certificates behind `inner` (for version 1 chains).
    roots: Vec<CertificateDer<'static>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(inner) = &self.inner else {
            return Ok(ServerCertVerified::assertion());
        };
        match inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            // (The chain was checked before the name: only the name is wrong.)
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => {
                if self.check_name {
                    legacy::verify_name(end_entity, server_name)?;
                }
                Ok(ServerCertVerified::assertion())
            }
            Err(e) if legacy::is_unsupported_version(&e) => {
                legacy::verify_chain(end_entity, intermediates, &self.roots, now)?;
                if self.check_name {
                    legacy::verify_name(end_entity, server_name)?;
                }
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A handshake signature, checked with the certificate's key (any X.509 version).
fn handshake_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    tls13: bool,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    legacy::verify_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
        tls13,
    )
}

/// Checks client certificates with webpki, and version 1 ones with `legacy.rs`.
#[derive(Debug)]
struct ClientVerifier {
    inner: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    roots: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl rustls::server::danger::ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(e) if legacy::is_unsupported_version(&e) => {
                legacy::verify_chain(end_entity, intermediates, &self.roots, now)?;
                Ok(rustls::server::danger::ClientCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The host name (or IP) a server certificate must carry under verify-full.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string())
        .map_err(|_| err(format!("cannot check a certificate for host {host:?}")))
}

/// RFC 5929 `tls-server-end-point`: the certificate hashed with its signature's hash
/// function (SHA-256 when that is MD5 or SHA-1), as PostgreSQL computes it.
fn server_end_point(cert: &CertificateDer<'_>) -> Option<Arc<[u8]>> {
    use sha2::Digest;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let oid = parsed.signature_algorithm.algorithm.to_id_string();
    let der = cert.as_ref();
    let hash: Vec<u8> = match oid.as_str() {
        // md5/sha1/sha256 with RSA, ecdsa-with-SHA1/SHA256
        "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.11"
        | "1.2.840.10045.4.1"
        | "1.2.840.10045.4.3.2" => sha2::Sha256::digest(der).to_vec(),
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => sha2::Sha384::digest(der).to_vec(),
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => sha2::Sha512::digest(der).to_vec(),
        _ => return None,
    };
    Some(hash.into())
}

/// The common name of a client certificate's subject (for `cert` authentication).
pub fn certificate_common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

pub use names::describe;
