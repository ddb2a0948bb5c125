//! PgBouncer's (OpenSSL's) names for TLS versions, cipher suites and curves, mapped to
//! what rustls offers, and the one-line description of a connection's TLS.

use rustls::{CipherSuite, NamedGroup, SupportedProtocolVersion};

/// Every suite this build has, by OpenSSL name, with its rustls id, in our default
/// order of preference.
const SUITES: &[(&str, CipherSuite, bool)] = &[
    (
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
        true,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        true,
    ),
    (
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
        true,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        false,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        false,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        false,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        false,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        false,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        false,
    ),
];

/// The OpenSSL name of a suite ("?" for one this table does not know).
pub(super) fn suite_name(s: CipherSuite) -> &'static str {
    SUITES
        .iter()
        .find(|(_, id, _)| *id == s)
        .map(|(n, _, _)| *n)
        .unwrap_or("?")
}

/// Parses `*_tls_protocols`: `all`, `secure` (= `default` = TLS 1.2 and 1.3), `legacy`
/// (= all), or a list of `tlsv1.0` … `tlsv1.3`, separated by `,`, `:` or spaces, each
/// optionally prefixed with `!` or `-` to remove it. Returns the versions this build can
/// speak and the names it had to leave out (TLS 1.0 and 1.1 do not exist in rustls).
pub(super) fn protocols(
    spec: &str,
) -> Result<(Vec<&'static SupportedProtocolVersion>, Vec<String>), String> {
    // Bits: 1.0, 1.1, 1.2, 1.3.
    let mut set = 0u8;
    let spec = spec.trim();
    let spec = if spec.is_empty() { "secure" } else { spec };
    for token in spec
        .split([',', ':', ' ', '\t'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let lower = token.to_ascii_lowercase();
        let (remove, name) = match lower.strip_prefix(['!', '-']) {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let bits = match name {
            "all" | "legacy" => 0b1111,
            "secure" | "default" => 0b1100,
            "tlsv1" | "tlsv1.0" => 0b0001,
            "tlsv1.1" => 0b0010,
            "tlsv1.2" => 0b0100,
            "tlsv1.3" => 0b1000,
            _ => return Err(format!("unknown protocol {token:?}")),
        };
        if remove {
            set &= !bits;
        } else {
            set |= bits;
        }
    }
    let mut versions = Vec::new();
    if set & 0b0100 != 0 {
        versions.push(&rustls::version::TLS12);
    }
    if set & 0b1000 != 0 {
        versions.push(&rustls::version::TLS13);
    }
    let mut dropped = Vec::new();
    if set & 0b0001 != 0 {
        dropped.push("TLSv1.0".to_string());
    }
    if set & 0b0010 != 0 {
        dropped.push("TLSv1.1".to_string());
    }
    Ok((versions, dropped))
}

/// OpenSSL cipher-string words that select every suite this build has (all of them are
/// ECDHE with an AEAD, which every one of these classes includes).
const EVERYTHING: &[&str] = &[
    "default",
    "secure",
    "fast",
    "normal",
    "compat",
    "legacy",
    "all",
    "high",
    "complementofdefault",
    "eecdh",
    "ecdhe",
    "kecdhe",
    "aead",
];

/// OpenSSL words for things this build never offers: they select nothing (and removing
/// them removes nothing).
const NOTHING: &[&str] = &[
    "medium",
    "low",
    "export",
    "anull",
    "enull",
    "null",
    "rc4",
    "md5",
    "des",
    "3des",
    "dss",
    "adss",
    "psk",
    "srp",
    "krsa",
    "dhe",
    "edh",
    "kedh",
    "kdhe",
    "camellia",
    "seed",
    "idea",
    "aria",
    "ccm",
    "ccm8",
    "sha1",
    "sha",
    "adh",
    "aecdh",
    "cbc",
    "aes128-sha",
    "aes256-sha",
    "complementofall",
];

/// Parses `*_tls_ciphers` (the TLS 1.2 suites, an OpenSSL cipher string): PgBouncer's
/// keywords, exact suite names, and the class words OpenSSL strings usually contain
/// (`HIGH`, `ECDHE`, `AESGCM`, `CHACHA20`, `!aNULL`, …), with `!`/`-` removing. An exact
/// name or word this build does not know is an error, as is a list that selects nothing.
pub(super) fn tls12_suites(spec: &str) -> Result<Vec<&'static str>, String> {
    let all12: Vec<&'static str> = SUITES.iter().filter(|s| !s.2).map(|s| s.0).collect();
    let spec = spec.trim();
    if spec.is_empty() {
        return Ok(all12);
    }
    let mut chosen: Vec<&'static str> = Vec::new();
    let mut removed: Vec<&'static str> = Vec::new();
    for token in spec
        .split([',', ':', ' ', '\t'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let (remove, name) = match token.strip_prefix(['!', '-']) {
            Some(rest) => (true, rest),
            None => (false, token.strip_prefix('+').unwrap_or(token)),
        };
        if name.starts_with('@') {
            continue; // @STRENGTH, @SECLEVEL=n: ordering and levels, no selection
        }
        let mut picked = all12.clone();
        for part in name.split('+').filter(|p| !p.is_empty()) {
            let part_set = select(part, &all12)?;
            picked.retain(|p| part_set.contains(p));
        }
        for p in picked {
            if remove {
                chosen.retain(|c| *c != p);
                removed.push(p);
            } else if !chosen.contains(&p) && !removed.contains(&p) {
                chosen.push(p);
            }
        }
    }
    if chosen.is_empty() {
        return Err(format!(
            "selects no cipher suite this build has (it has {})",
            all12.join(":")
        ));
    }
    Ok(chosen)
}

/// The suites one word of a cipher string selects.
fn select(word: &str, all12: &[&'static str]) -> Result<Vec<&'static str>, String> {
    let lower = word.to_ascii_lowercase();
    if EVERYTHING.contains(&lower.as_str()) {
        return Ok(all12.to_vec());
    }
    if NOTHING.contains(&lower.as_str()) {
        return Ok(Vec::new());
    }
    if let Some(exact) = all12.iter().find(|n| n.eq_ignore_ascii_case(word)) {
        return Ok(vec![*exact]);
    }
    if !is_known_class(&lower) {
        return Err(format!("unknown cipher {word:?}"));
    }
    Ok(all12
        .iter()
        .copied()
        .filter(|n| class_matches(&lower, n))
        .collect())
}

fn is_known_class(w: &str) -> bool {
    matches!(
        w,
        "ecdsa"
            | "aecdsa"
            | "rsa"
            | "arsa"
            | "aesgcm"
            | "aes"
            | "aes128"
            | "aes256"
            | "chacha20"
            | "sha256"
            | "sha384"
            | "tlsv1.2"
    )
}

fn class_matches(w: &str, openssl_name: &str) -> bool {
    let n = openssl_name;
    match w {
        "ecdsa" | "aecdsa" => n.contains("-ECDSA-"),
        "rsa" | "arsa" => n.contains("-RSA-"),
        "aesgcm" => n.contains("-GCM-"),
        "aes" => n.contains("-AES"),
        "aes128" => n.contains("-AES128-"),
        "aes256" => n.contains("-AES256-"),
        "chacha20" => n.contains("CHACHA20"),
        "sha256" => n.ends_with("SHA256") || n.contains("CHACHA20"),
        "sha384" => n.ends_with("SHA384"),
        "tlsv1.2" => true,
        _ => false,
    }
}

/// Every TLS 1.3 suite this build has.
pub(super) fn all_tls13() -> Vec<&'static str> {
    SUITES.iter().filter(|s| s.2).map(|s| s.0).collect()
}

/// Parses `*_tls13_ciphers`: TLS 1.3 suite names separated by `:` (OpenSSL's
/// `SSL_CTX_set_ciphersuites` syntax). Any unknown name fails, as OpenSSL does.
pub(super) fn tls13_suites(spec: &str) -> Result<Vec<&'static str>, String> {
    let all = all_tls13();
    let mut chosen = Vec::new();
    for token in spec
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        match all.iter().find(|n| n.eq_ignore_ascii_case(token)) {
            Some(n) => chosen.push(*n),
            None => return Err(format!("unknown TLS 1.3 cipher suite {token:?}")),
        }
    }
    if chosen.is_empty() {
        return Err("no TLS 1.3 cipher suite named".into());
    }
    Ok(chosen)
}

/// Parses `client_tls_ecdhcurve`: `auto` (or empty) keeps rustls's groups; otherwise a
/// list of curve names (OpenSSL's and the IANA ones). `none` is refused: every key
/// exchange this build offers is an elliptic-curve one.
pub(super) fn groups(spec: &str) -> Result<Option<Vec<NamedGroup>>, String> {
    let spec = spec.trim();
    if spec.is_empty() || spec.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    if spec.eq_ignore_ascii_case("none") {
        return Err("none is not possible: every key exchange rustls offers is ECDHE".into());
    }
    let mut out = Vec::new();
    for token in spec
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let g = match token.to_ascii_lowercase().as_str() {
            "x25519" => NamedGroup::X25519,
            "prime256v1" | "secp256r1" | "p-256" => NamedGroup::secp256r1,
            "secp384r1" | "p-384" => NamedGroup::secp384r1,
            _ => return Err(format!("unknown or unsupported curve {token:?}")),
        };
        out.push(g);
    }
    Ok(Some(out))
}

fn group_name(g: NamedGroup) -> &'static str {
    match g {
        NamedGroup::X25519 => "X25519",
        NamedGroup::secp256r1 => "prime256v1",
        NamedGroup::secp384r1 => "secp384r1",
        _ => "?",
    }
}

/// A connection's TLS as PgBouncer prints it in `login attempt` lines and the `tls`
/// column: `TLSv1.3/TLS_AES_256_GCM_SHA384/ECDH=X25519`.
pub fn describe(c: &rustls::CommonState) -> String {
    let proto = match c.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "-",
    };
    let cipher = c
        .negotiated_cipher_suite()
        .map(|s| suite_name(s.suite()))
        .unwrap_or("-");
    match c.negotiated_key_exchange_group() {
        Some(g) => format!("{proto}/{cipher}/ECDH={}", group_name(g.name())),
        None => format!("{proto}/{cipher}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lists_keep_what_rustls_speaks_and_name_the_rest() {
        let (v, dropped) = protocols("all").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(dropped, ["TLSv1.0", "TLSv1.1"]);
        let (v, dropped) = protocols("secure").unwrap();
        assert_eq!((v.len(), dropped.len()), (2, 0));
        let (v, _) = protocols("tlsv1.3").unwrap();
        assert_eq!(v[0].version, rustls::ProtocolVersion::TLSv1_3);
        let (v, dropped) = protocols("tlsv1.0").unwrap();
        assert!(v.is_empty());
        assert_eq!(dropped, ["TLSv1.0"]);
        let (v, _) = protocols("all,!tlsv1.2").unwrap();
        assert_eq!(v.len(), 1);
        assert!(protocols("sslv3").is_err());
    }

    #[test]
    fn cipher_strings_select_suites_or_fail_clearly() {
        assert_eq!(tls12_suites("default").unwrap().len(), 6);
        assert_eq!(tls12_suites("HIGH:!aNULL:!MD5").unwrap().len(), 6);
        assert_eq!(
            tls12_suites("ECDHE-RSA-AES256-GCM-SHA384").unwrap(),
            ["ECDHE-RSA-AES256-GCM-SHA384"]
        );
        assert_eq!(tls12_suites("ECDHE+AESGCM:!ECDSA").unwrap().len(), 2);
        assert_eq!(tls12_suites("AESGCM:!ECDSA").unwrap().len(), 2);
        assert!(tls12_suites("RC4-SHA").is_err());
        assert!(tls12_suites("MEDIUM").is_err(), "selects nothing");
        assert_eq!(
            tls13_suites("TLS_CHACHA20_POLY1305_SHA256").unwrap(),
            ["TLS_CHACHA20_POLY1305_SHA256"]
        );
        assert!(tls13_suites("unknown").is_err());
        assert!(tls13_suites("TLS_AES_128_CCM_SHA256").is_err());
    }

    #[test]
    fn curves_parse_by_either_name() {
        assert_eq!(groups("auto").unwrap(), None);
        assert_eq!(
            groups("prime256v1:X25519").unwrap().unwrap(),
            [NamedGroup::secp256r1, NamedGroup::X25519]
        );
        assert!(groups("none").is_err());
        assert!(groups("brainpoolP256r1").is_err());
    }
}
