//! X.509 version 1 certificates: what `openssl ca` or `openssl x509 -req` make without an
//! extensions file (PostgreSQL's own documentation makes them that way, and so do
//! PgBouncer's test scripts). OpenSSL and libpq accept them; webpki, which rustls uses,
//! refuses every version 1 certificate. So that such deployments keep working, this file
//! checks them itself, and only them: a certificate webpki refuses for any other reason
//! stays refused.
//!
//! What is checked is what webpki would check for a chain without extensions: the
//! validity period of every certificate, each signature against its issuer's key, an
//! anchor from the configured CA file, at most one intermediate (which must be a CA), and
//! for server names the subject alternative names if any, else the common name (libpq's
//! rule).

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// Whether `e` is webpki refusing a certificate for its version.
pub(super) fn is_unsupported_version(e: &Error) -> bool {
    match e {
        Error::InvalidCertificate(CertificateError::Other(other)) => other
            .0
            .downcast_ref::<webpki::Error>()
            .is_some_and(|w| matches!(w, webpki::Error::UnsupportedCertVersion)),
        _ => false,
    }
}

fn bad(e: CertificateError) -> Error {
    Error::InvalidCertificate(e)
}

fn parse<'a>(der: &'a [u8]) -> Result<X509Certificate<'a>, Error> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|_| bad(CertificateError::BadEncoding))
}

fn valid_at(c: &X509Certificate<'_>, now: UnixTime) -> Result<(), Error> {
    let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let t = x509_parser::time::ASN1Time::from_timestamp(secs)
        .map_err(|_| bad(CertificateError::BadEncoding))?;
    if c.validity().not_before > t {
        return Err(bad(CertificateError::NotValidYet));
    }
    if c.validity().not_after < t {
        return Err(bad(CertificateError::Expired));
    }
    Ok(())
}

/// Finds `child`'s issuer among `candidates` (subject equal to its issuer, and whose key
/// verifies its signature).
fn issued_by<'a>(
    child: &X509Certificate<'_>,
    candidates: &'a [X509Certificate<'a>],
) -> Option<&'a X509Certificate<'a>> {
    candidates.iter().find(|c| {
        c.subject().as_raw() == child.issuer().as_raw()
            && child.verify_signature(Some(c.public_key())).is_ok()
    })
}

/// Checks a version 1 end-entity certificate's chain to one of `roots`.
pub(super) fn verify_chain(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &[CertificateDer<'static>],
    now: UnixTime,
) -> Result<(), Error> {
    let ee = parse(end_entity)?;
    valid_at(&ee, now)?;
    let roots: Vec<X509Certificate<'_>> = roots.iter().filter_map(|r| parse(r).ok()).collect();
    if let Some(root) = issued_by(&ee, &roots) {
        return valid_at(root, now);
    }
    let intermediates: Vec<X509Certificate<'_>> =
        intermediates.iter().filter_map(|r| parse(r).ok()).collect();
    let Some(mid) = issued_by(&ee, &intermediates) else {
        return Err(bad(CertificateError::UnknownIssuer));
    };
    let is_ca = mid
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|b| b.value.ca);
    if !is_ca {
        return Err(bad(CertificateError::UnknownIssuer));
    }
    valid_at(mid, now)?;
    match issued_by(mid, &roots) {
        Some(root) => valid_at(root, now),
        None => Err(bad(CertificateError::UnknownIssuer)),
    }
}

/// Checks that `end_entity` names `server`: a DNS or IP subject alternative name if it has
/// any, else its common name (case-insensitive), as libpq does.
pub(super) fn verify_name(
    end_entity: &CertificateDer<'_>,
    server: &ServerName<'_>,
) -> Result<(), Error> {
    let ee = parse(end_entity)?;
    let wanted = match server {
        ServerName::DnsName(d) => d.as_ref().to_ascii_lowercase(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => return Err(bad(CertificateError::NotValidForName)),
    };
    let sans: Vec<String> = ee
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => {
                            Some(std::net::IpAddr::from(<[u8; 4]>::try_from(*b).ok()?).to_string())
                        }
                        16 => {
                            Some(std::net::IpAddr::from(<[u8; 16]>::try_from(*b).ok()?).to_string())
                        }
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let ok = if sans.is_empty() {
        ee.subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .any(|cn| cn.eq_ignore_ascii_case(&wanted))
    } else {
        sans.contains(&wanted)
    };
    if ok {
        Ok(())
    } else {
        Err(bad(CertificateError::NotValidForName))
    }
}

/// Verifies a handshake signature with the certificate's key, whatever the certificate's
/// version (rustls's own functions go through webpki, which refuses version 1).
pub(super) fn verify_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algs: &WebPkiSupportedAlgorithms,
    tls13: bool,
) -> Result<HandshakeSignatureValid, Error> {
    let standard = if tls13 {
        rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
    } else {
        rustls::crypto::verify_tls12_signature(message, cert, dss, algs)
    };
    match standard {
        Err(e) if is_unsupported_version(&e) => {}
        other => return other,
    }
    let parsed = parse(cert)?;
    let spki = SubjectPublicKeyInfoDer::from(parsed.tbs_certificate.subject_pki.raw);
    if tls13 {
        return rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, algs);
    }
    let key = webpki::RawPublicKeyEntity::try_from(&spki)
        .map_err(|_| bad(CertificateError::BadEncoding))?;
    let candidates = algs
        .mapping
        .iter()
        .filter(|(scheme, _)| *scheme == dss.scheme)
        .flat_map(|(_, list)| list.iter());
    for alg in candidates {
        if key.verify_signature(*alg, message, dss.signature()).is_ok() {
            return Ok(HandshakeSignatureValid::assertion());
        }
    }
    Err(bad(CertificateError::BadSignature))
}

/// The SubjectPublicKeyInfo of a certificate (any version), to check that a key file
/// matches its certificate.
pub(super) fn public_key_of(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    parse(cert)
        .ok()
        .map(|c| c.tbs_certificate.subject_pki.raw.to_vec())
}
