//! Password authentication helpers: MD5 and SCRAM-SHA-256, both as server and as client.
//!
//! PostgreSQL docs, "Message Flow: Start-up" and "SASL Authentication"; mirrors PgBouncer's
//! `auth.c` and `scram.c`. Pure functions: randomness (salts, nonces) is passed in as bytes.

pub mod md5;
pub mod scram;

/// Compares two byte strings in time independent of where they differ (only the
/// lengths may leak).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
