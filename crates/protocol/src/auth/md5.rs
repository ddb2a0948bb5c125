//! MD5 password authentication: `md5` secrets and the salted response.
//!
//! PostgreSQL docs, "Password Authentication" and AuthenticationMD5Password in "Message
//! Formats"; mirrors PgBouncer `auth.c: check_client_passwd` and `server.c: login_md5_psw`.

use md5::{Digest, Md5};

use super::{constant_time_eq, hex};

fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    hex(&h.finalize())
}

/// The stored form of a password: `"md5" + hex(md5(password ++ user))`.
pub fn hash_password(user: &str, password: &[u8]) -> String {
    format!("md5{}", md5_hex(&[password, user.as_bytes()]))
}

/// Whether `secret` is an `md5...` secret (35 characters, `md5` and 32 hex digits).
pub fn is_md5_secret(secret: &[u8]) -> bool {
    secret.len() == 35
        && secret.starts_with(b"md5")
        && secret[3..].iter().all(u8::is_ascii_hexdigit)
}

/// The PasswordMessage content answering AuthenticationMD5Password with `salt`:
/// `"md5" + hex(md5(hex_part ++ salt))` where `hex_part` comes from the `md5...` secret or
/// is computed from the plain password.
pub fn client_response(secret: impl AsRef<[u8]>, user: &str, salt: [u8; 4]) -> String {
    let secret = secret.as_ref();
    let stored;
    let hashed: &[u8] = if is_md5_secret(secret) {
        secret
    } else {
        stored = hash_password(user, secret);
        stored.as_bytes()
    };
    format!("md5{}", md5_hex(&[&hashed[3..], &salt]))
}

/// Checks a client's MD5 response against a stored plain or `md5...` secret.
///
/// A SCRAM secret cannot verify an MD5 response: false.
pub fn verify(stored_secret: impl AsRef<[u8]>, user: &str, salt: [u8; 4], response: &[u8]) -> bool {
    let stored = stored_secret.as_ref();
    if stored.starts_with(b"SCRAM-SHA-256$") {
        return false;
    }
    constant_time_eq(client_response(stored, user, salt).as_bytes(), response)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_postgres() {
        // Value from postgres-protocol's own test of PostgreSQL's format.
        assert_eq!(
            hash_password("foo", b"secret"),
            "md54ab2c5d00339c4b2a4e921d2dc4edec7"
        );
    }

    #[test]
    fn response_from_plain_and_from_hash_agree_with_postgres_protocol() {
        let salt = [1, 2, 3, 4];
        let expected = postgres_protocol::authentication::md5_hash(b"bob", b"pw", salt);
        assert_eq!(client_response("pw", "bob", salt), expected);
        assert_eq!(
            client_response(hash_password("bob", b"pw"), "bob", salt),
            expected
        );
    }

    #[test]
    fn verify_accepts_right_and_rejects_wrong_responses() {
        let salt = [9, 8, 7, 6];
        let response = client_response("pw", "bob", salt);
        assert!(verify("pw", "bob", salt, response.as_bytes()));
        assert!(verify(
            hash_password("bob", b"pw"),
            "bob",
            salt,
            response.as_bytes()
        ));
        assert!(!verify("other", "bob", salt, response.as_bytes()));
        assert!(!verify("pw", "bob", [0; 4], response.as_bytes()));
        assert!(!verify(
            "SCRAM-SHA-256$4096:AA==$AA==:AA==",
            "bob",
            salt,
            b"x"
        ));
    }
}
