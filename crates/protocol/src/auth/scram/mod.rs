//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL does it: stored secrets, the server side
//! (we authenticate a client) and the client side (we log in to a server), without channel
//! binding.
//!
//! PostgreSQL docs, "SASL Authentication"; mirrors PostgreSQL `auth-scram.c` and PgBouncer
//! `scram.c`. Every parser is bounded ([`MAX_MESSAGE_LEN`], [`MAX_NONCE_LEN`],
//! [`MAX_ITERATIONS`]) and returns a [`ScramError`] instead of panicking.

mod client;
mod server;

use std::borrow::Cow;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use thiserror::Error;

pub use client::{ScramClient, ScramCredentials};
pub use server::{ScramOutcome, ScramServer};

/// Name of the mechanism.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
/// Longest SCRAM message accepted from a peer.
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Longest nonce accepted from a peer.
pub const MAX_NONCE_LEN: usize = 512;
/// Highest iteration count the client accepts from a server.
pub const MAX_ITERATIONS: u32 = 10_000_000;

/// Why a SCRAM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ScramError {
    /// A message longer than [`MAX_MESSAGE_LEN`].
    #[error("scram message of {len} bytes is too long")]
    MessageTooLong {
        /// Its length.
        len: usize,
    },
    /// A message that is not UTF-8.
    #[error("scram message is not valid utf-8")]
    InvalidUtf8,
    /// The gs2 header is neither `n,,` nor `y,,` nor `p=...`.
    #[error("malformed gs2 header")]
    InvalidGs2Header,
    /// The client asked for channel binding (`p=`), which we do not offer.
    #[error("channel binding is not supported")]
    ChannelBindingNotSupported,
    /// The client said it supports channel binding but thinks we do not (`y`), although
    /// we offered SCRAM-SHA-256-PLUS: someone removed it on the way (a downgrade).
    #[error("client thinks the server does not support channel binding")]
    ChannelBindingDowngrade,
    /// The gs2 header does not fit the mechanism (`p=` without -PLUS, or -PLUS without
    /// `p=`), or names a channel-binding type other than `tls-server-end-point`.
    #[error("channel binding does not match the selected mechanism")]
    ChannelBindingMechanismMismatch,
    /// The client sent an authorization identity.
    #[error("authorization identity is not supported")]
    AuthzidNotSupported,
    /// A mandatory extension (`m=`) or trailing extension attributes.
    #[error("scram extensions are not supported")]
    ExtensionsNotSupported,
    /// An expected attribute is missing.
    #[error("missing scram attribute {attr}")]
    MissingAttribute {
        /// The attribute letter.
        attr: char,
    },
    /// An attribute with an unusable value.
    #[error("invalid value of scram attribute {attr}")]
    InvalidAttribute {
        /// The attribute letter.
        attr: char,
    },
    /// A nonce longer than [`MAX_NONCE_LEN`].
    #[error("nonce of {len} characters is too long")]
    NonceTooLong {
        /// Its length.
        len: usize,
    },
    /// An empty nonce or one with non-printable characters or commas.
    #[error("invalid nonce")]
    InvalidNonce,
    /// The nonce does not continue (client side) or repeat (server side) ours.
    #[error("nonce mismatch")]
    NonceMismatch,
    /// An iteration count of 0 or above [`MAX_ITERATIONS`].
    #[error("iteration count {iterations} is out of range")]
    IterationsOutOfRange {
        /// The count announced.
        iterations: u32,
    },
    /// The channel-binding attribute does not match the gs2 header sent first.
    #[error("channel binding data mismatch")]
    InvalidChannelBinding,
    /// The client proof is wrong (wrong password): PgBouncer says `SASL authentication failed`.
    #[error("invalid client proof")]
    InvalidProof,
    /// The server signature is wrong: the server does not know the password.
    #[error("invalid server signature")]
    InvalidServerSignature,
    /// The server-final-message was an error (`e=...`).
    #[error("server error: {message}")]
    ServerError {
        /// The error value, e.g. `invalid-proof`.
        message: String,
    },
    /// A message arrived in the wrong state of the exchange.
    #[error("unexpected scram message")]
    UnexpectedMessage,
}

/// A stored SCRAM-SHA-256 secret, as in `pg_authid.rolpassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramSecret {
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// Salt.
    pub salt: Vec<u8>,
    /// `H(ClientKey)`.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl fmt::Debug for ScramSecret {
    // Keys are credentials: keep them out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSecret")
            .field("iterations", &self.iterations)
            .field("salt", &STANDARD.encode(&self.salt))
            .finish_non_exhaustive()
    }
}

impl ScramSecret {
    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 values).
    pub fn parse(s: &str) -> Option<ScramSecret> {
        if s.len() > MAX_MESSAGE_LEN {
            return None;
        }
        let rest = s.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iterations, salt) = iter_salt.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        let iterations: u32 = iterations.parse().ok().filter(|&i| i > 0)?;
        let salt = STANDARD.decode(salt).ok().filter(|s| !s.is_empty())?;
        Some(ScramSecret {
            iterations,
            salt,
            stored_key: decode_key(stored_key)?,
            server_key: decode_key(server_key)?,
        })
    }

    /// Computes the secret for `password` (SASLprepped like PostgreSQL does, raw bytes when
    /// that fails) with the given salt and iteration count.
    pub fn from_password(password: &[u8], salt: &[u8], iterations: u32) -> ScramSecret {
        let salted = salted_password(password, salt, iterations);
        let client_key = hmac(&salted, &[b"Client Key"]);
        ScramSecret {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac(&salted, &[b"Server Key"]),
        }
    }
}

impl ScramSecret {
    /// A stand-in secret for a user that has none (unknown, or no usable password), so
    /// that the exchange runs to its end and fails there, as for a wrong password
    /// (PostgreSQL's `scram_mock_salt`). The salt is derived from `key` (random, once per
    /// process) and the user name: the same user gets the same salt every time, so an
    /// observer cannot tell unknown users from known ones by a salt that changes. No
    /// PBKDF2 runs: the keys are never checked against a password.
    pub fn mock(key: &[u8; 32], user: &str, iterations: u32) -> ScramSecret {
        let salt = hmac(key, &[b"mock salt", user.as_bytes()]);
        ScramSecret {
            iterations: iterations.max(1),
            salt: salt[..16].to_vec(),
            stored_key: hmac(key, &[b"mock stored key", user.as_bytes()]),
            server_key: hmac(key, &[b"mock server key", user.as_bytes()]),
        }
    }
}

impl fmt::Display for ScramSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

fn decode_key(s: &str) -> Option<[u8; 32]> {
    STANDARD.decode(s).ok()?.try_into().ok()
}

pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub(crate) fn xor(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut out = *a;
    for (o, b) in out.iter_mut().zip(b) {
        *o ^= b;
    }
    out
}

/// `Hi(Normalize(password), salt, i)` of RFC 5802 (PBKDF2-HMAC-SHA-256, one block).
pub(crate) fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let password = saslprep(password);
    let mut prev = hmac(&password, &[salt, &[0, 0, 0, 1]]);
    let mut out = prev;
    for _ in 1..iterations {
        prev = hmac(&password, &[&prev]);
        for (o, p) in out.iter_mut().zip(&prev) {
            *o ^= p;
        }
    }
    out
}

/// PostgreSQL `pg_saslprep`: passwords that are not UTF-8 or that SASLprep rejects are used
/// as they are.
fn saslprep(password: &[u8]) -> Cow<'_, [u8]> {
    match std::str::from_utf8(password) {
        Ok(s) => match stringprep::saslprep(s) {
            Ok(Cow::Owned(p)) => Cow::Owned(p.into_bytes()),
            Ok(Cow::Borrowed(p)) => Cow::Borrowed(p.as_bytes()),
            Err(_) => Cow::Borrowed(password),
        },
        Err(_) => Cow::Borrowed(password),
    }
}

/// Checks the length and encoding of a peer's message.
pub(crate) fn bounded_str(msg: &[u8]) -> Result<&str, ScramError> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(ScramError::MessageTooLong { len: msg.len() });
    }
    std::str::from_utf8(msg).map_err(|_| ScramError::InvalidUtf8)
}

/// The value of `part` if it is attribute `name` (`name=value`).
pub(crate) fn attr(part: Option<&str>, name: char) -> Result<&str, ScramError> {
    let missing = ScramError::MissingAttribute { attr: name };
    let part = part.ok_or(missing.clone())?;
    part.strip_prefix(name)
        .and_then(|p| p.strip_prefix('='))
        .ok_or(missing)
}

/// Printable ASCII except `,`, 1 to [`MAX_NONCE_LEN`] characters.
pub(crate) fn check_nonce(nonce: &str) -> Result<(), ScramError> {
    if nonce.len() > MAX_NONCE_LEN {
        return Err(ScramError::NonceTooLong { len: nonce.len() });
    }
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(ScramError::InvalidNonce);
    }
    Ok(())
}

/// Fails on a mandatory extension (`m=`) before the expected first attribute.
pub(crate) fn reject_mext(part: Option<&str>) -> Result<(), ScramError> {
    match part {
        Some(p) if p.starts_with("m=") => Err(ScramError::ExtensionsNotSupported),
        _ => Ok(()),
    }
}

pub(crate) fn b64_key(value: &str, name: char) -> Result<[u8; 32], ScramError> {
    STANDARD
        .decode(value)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(ScramError::InvalidAttribute { attr: name })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
