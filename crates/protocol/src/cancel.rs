//! The cancel key layout of PgBouncer's peering (`peer_id`, `[peers]`): processes that
//! share a port (so_reuseport) hand each other the cancel requests that reach the wrong
//! one, so the key says which peer issued it, and carries a hop limit.
//!
//! The key is BackendKeyData's (process id, secret), 8 bytes in network order:
//!
//! * byte 0: its sign bit is clear (the process id stays positive);
//! * bytes 1 and 2: the peer id, byte 1 the low byte;
//! * byte 7, its two low bits: the TTL, 3 when issued, one less at each forward.
//!
//! Everything else is random.

/// The TTL of a freshly issued key.
pub const INITIAL_TTL: u8 = 3;

/// A key of peer `peer_id` from random `pid` and `secret`: the peer id in bytes 1-2, the
/// sign bit of byte 0 clear, the TTL bits at [`INITIAL_TTL`].
pub fn issue(pid: i32, secret: i32, peer_id: u16) -> (i32, i32) {
    let mut p = pid.to_be_bytes();
    p[0] &= 0x7f;
    p[1] = peer_id as u8;
    p[2] = (peer_id >> 8) as u8;
    (i32::from_be_bytes(p), with_ttl(secret, INITIAL_TTL))
}

/// The peer that issued a key.
pub fn peer_of(pid: i32) -> u16 {
    let p = pid.to_be_bytes();
    u16::from(p[1]) | (u16::from(p[2]) << 8)
}

/// The hops a key may still be forwarded.
pub fn ttl(secret: i32) -> u8 {
    (secret.to_be_bytes()[3]) & 0x03
}

/// `secret` with its TTL bits set to `ttl` (0..=3).
pub fn with_ttl(secret: i32, ttl: u8) -> i32 {
    let mut s = secret.to_be_bytes();
    s[3] = (s[3] & !0x03) | (ttl & 0x03);
    i32::from_be_bytes(s)
}

/// The key as it was issued, whatever hops it made: what the issuing peer looks up.
pub fn as_issued(secret: i32) -> i32 {
    with_ttl(secret, INITIAL_TTL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_id_and_ttl_sit_where_pgbouncer_puts_them() {
        let (pid, secret) = issue(-1, 0, 0x0201);
        let p = pid.to_be_bytes();
        assert_eq!(p, [0x7f, 0x01, 0x02, 0xff]);
        assert!(pid > 0);
        assert_eq!(peer_of(pid), 0x0201);
        assert_eq!(ttl(secret), 3);
        assert_eq!(secret.to_be_bytes()[3] & 0xfc, 0);
    }

    #[test]
    fn a_forward_lowers_the_ttl_and_keeps_the_rest() {
        let (_, secret) = issue(5, 0x1234_5678, 9);
        let hop = with_ttl(secret, ttl(secret) - 1);
        assert_eq!(ttl(hop), 2);
        assert_eq!(hop & !0x03, secret & !0x03);
        assert_eq!(as_issued(hop), secret);
    }
}
