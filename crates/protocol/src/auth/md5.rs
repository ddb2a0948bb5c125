//! MD5 password authentication: `md5` secrets and the salted response.
//!
//! PostgreSQL docs, "Password Authentication" and AuthenticationMD5Password in "Message
//! Formats"; mirrors PgBouncer `auth.c: check_client_passwd` and `server.c: login_md5_psw`.

use md5::{Digest, Md5};

use super::constant_time_eq;

/// `md5` and hex(md5(parts)), on the stack: a stored secret or a response.
fn md5_form(parts: &[&[u8]]) -> [u8; 35] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    let digest = h.finalize();
    let mut out = *b"md5________________________________";
    for (i, b) in digest.iter().enumerate() {
        out[3 + 2 * i] = DIGITS[usize::from(b >> 4)];
        out[4 + 2 * i] = DIGITS[usize::from(b & 0xf)];
    }
    out
}

fn text(form: [u8; 35]) -> String {
    // Only ASCII letters and digits.
    form.iter().map(|&b| char::from(b)).collect()
}

/// The stored form of a password: `"md5" + hex(md5(password ++ user))`.
pub fn hash_password(user: &str, password: &[u8]) -> String {
    text(md5_form(&[password, user.as_bytes()]))
}

/// Whether the `md5...` secret `secret` is the stored form of `password` for `user`
/// (compared in constant time).
pub fn is_hash_of(secret: &str, user: &str, password: &[u8]) -> bool {
    constant_time_eq(&md5_form(&[password, user.as_bytes()]), secret.as_bytes())
}

/// Whether `secret` is an `md5...` secret (35 characters, `md5` and 32 hex digits).
pub fn is_md5_secret(secret: &[u8]) -> bool {
    secret.len() == 35
        && secret.starts_with(b"md5")
        && secret[3..].iter().all(u8::is_ascii_hexdigit)
}

/// [`client_response`] as bytes, without allocating.
fn response_form(secret: &[u8], user: &str, salt: [u8; 4]) -> [u8; 35] {
    if is_md5_secret(secret) {
        md5_form(&[&secret[3..], &salt])
    } else {
        let stored = md5_form(&[secret, user.as_bytes()]);
        md5_form(&[&stored[3..], &salt])
    }
}

/// The PasswordMessage content answering AuthenticationMD5Password with `salt`:
/// `"md5" + hex(md5(hex_part ++ salt))` where `hex_part` comes from the `md5...` secret or
/// is computed from the plain password.
pub fn client_response(secret: impl AsRef<[u8]>, user: &str, salt: [u8; 4]) -> String {
    text(response_form(secret.as_ref(), user, salt))
}

/// Checks a client's MD5 response against a stored plain or `md5...` secret.
///
/// A SCRAM secret cannot verify an MD5 response: false.
pub fn verify(stored_secret: impl AsRef<[u8]>, user: &str, salt: [u8; 4], response: &[u8]) -> bool {
    let stored = stored_secret.as_ref();
    if stored.starts_with(b"SCRAM-SHA-256$") {
        return false;
    }
    constant_time_eq(&response_form(stored, user, salt), response)
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
    fn is_hash_of_matches_only_the_stored_form_of_that_password() {
        let stored = hash_password("bob", b"pw");
        assert!(is_hash_of(&stored, "bob", b"pw"));
        assert!(!is_hash_of(&stored, "bob", b"pw2"));
        assert!(!is_hash_of(&stored, "bobby", b"pw"));
        assert!(!is_hash_of(&stored[..34], "bob", b"pw"));
        assert!(is_hash_of(&hash_password("bob", b""), "bob", b""));
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
