//! Server side of SCRAM-SHA-256: we check a client's proof against a stored secret.
//!
//! PostgreSQL docs, "SASL Authentication"; mirrors PostgreSQL `auth-scram.c`
//! (`read_client_first_message`, `verify_client_proof`) and PgBouncer `scram.c`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{
    attr, b64_key, bounded_str, check_nonce, hmac, reject_mext, sha256, xor, ScramError,
    ScramSecret,
};
use crate::auth::constant_time_eq;

/// A SCRAM exchange with a client, after its client-first-message.
#[derive(Debug)]
pub struct ScramServer {
    secret: ScramSecret,
    /// The `c=` value the client-final-message must carry: base64 of the gs2 header,
    /// followed by the channel-binding data when the client bound the channel.
    expected_cbind: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// A successful exchange.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramOutcome {
    /// server-final-message (`v=...`), to send in AuthenticationSASLFinal.
    pub server_final: Vec<u8>,
    /// The client's ClientKey, recovered from its proof: with the secret's ServerKey it lets
    /// us log in to a server holding the same secret (SCRAM pass-through).
    pub client_key: [u8; 32],
}

impl std::fmt::Debug for ScramOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramOutcome")
            .field("server_final", &String::from_utf8_lossy(&self.server_final))
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// Reads the client-first-message (the SASLInitialResponse data) and builds the
    /// server-first-message, whose nonce is the client's followed by base64 of
    /// `server_nonce_random` (e.g. 18 random bytes drawn by the caller).
    ///
    /// Accepts gs2 headers `n,,` and `y,,` (without SCRAM-SHA-256-PLUS offered, `y` is
    /// not a downgrade); `p=...`, an authzid, or extensions are errors.
    pub fn new(
        secret: ScramSecret,
        client_first_message: &[u8],
        server_nonce_random: &[u8],
    ) -> Result<(ScramServer, Vec<u8>), ScramError> {
        Self::with_channel_binding(secret, client_first_message, server_nonce_random, None)
    }

    /// As [`ScramServer::new`] when SCRAM-SHA-256-PLUS was offered too, with
    /// `tls-server-end-point` data `binding` (the hash of our TLS certificate, RFC 5929).
    /// `Some((selected_plus, binding))`: the client chose the -PLUS mechanism
    /// (`selected_plus`) or plain SCRAM-SHA-256. As PostgreSQL: -PLUS needs a
    /// `p=tls-server-end-point` header, plain SCRAM needs `n` (a `y` means someone
    /// hid the offer from the client), and `p=` with plain SCRAM is an error.
    pub fn with_channel_binding(
        secret: ScramSecret,
        client_first_message: &[u8],
        server_nonce_random: &[u8],
        offered: Option<(bool, &[u8])>,
    ) -> Result<(ScramServer, Vec<u8>), ScramError> {
        let msg = bounded_str(client_first_message)?;
        let (cbind, rest) = msg.split_once(',').ok_or(ScramError::InvalidGs2Header)?;
        let mut bound: Option<&[u8]> = None;
        match (cbind, offered) {
            ("n", None | Some((false, _))) => {}
            ("y", None) => {}
            ("y", Some((false, _))) => return Err(ScramError::ChannelBindingDowngrade),
            ("n" | "y", Some((true, _))) => {
                return Err(ScramError::ChannelBindingMechanismMismatch)
            }
            (c, None) if c.starts_with("p=") => return Err(ScramError::ChannelBindingNotSupported),
            ("p=tls-server-end-point", Some((true, data))) => bound = Some(data),
            (c, Some(_)) if c.starts_with("p=") => {
                return Err(ScramError::ChannelBindingMechanismMismatch)
            }
            _ => return Err(ScramError::InvalidGs2Header),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::InvalidGs2Header)?;
        if !authzid.is_empty() {
            return Err(ScramError::AuthzidNotSupported);
        }
        let gs2_header = &msg[..msg.len() - bare.len()];
        let expected_cbind = match bound {
            Some(data) => STANDARD.encode([gs2_header.as_bytes(), data].concat()),
            None => STANDARD.encode(gs2_header),
        };
        let mut parts = bare.split(',');
        let first = parts.next();
        reject_mext(first)?;
        // The user name is ignored, as PostgreSQL does: it came in the startup packet.
        attr(first, 'n')?;
        let client_nonce = attr(parts.next(), 'r')?;
        check_nonce(client_nonce)?;
        if parts.next().is_some() {
            return Err(ScramError::ExtensionsNotSupported);
        }
        if server_nonce_random.is_empty() {
            return Err(ScramError::InvalidNonce);
        }
        let nonce = format!("{client_nonce}{}", STANDARD.encode(server_nonce_random));
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&secret.salt),
            secret.iterations
        );
        let reply = server_first.clone().into_bytes();
        Ok((
            ScramServer {
                secret,
                expected_cbind,
                client_first_bare: bare.to_owned(),
                server_first,
                nonce,
            },
            reply,
        ))
    }

    /// Verifies the client-final-message (the SASLResponse data): channel binding, nonce and
    /// proof. On success returns the server-final-message and the client's ClientKey.
    pub fn finish(self, client_final_message: &[u8]) -> Result<ScramOutcome, ScramError> {
        let msg = bounded_str(client_final_message)?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::MissingAttribute { attr: 'p' })?;
        let mut parts = without_proof.split(',');
        let cbind = attr(parts.next(), 'c')?;
        if !constant_time_eq(cbind.as_bytes(), self.expected_cbind.as_bytes()) {
            return Err(ScramError::InvalidChannelBinding);
        }
        if attr(parts.next(), 'r')? != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        if parts.next().is_some() {
            return Err(ScramError::ExtensionsNotSupported);
        }
        let proof = b64_key(proof, 'p').map_err(|_| ScramError::InvalidProof)?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let client_signature = hmac(&self.secret.stored_key, &[auth_message.as_bytes()]);
        let client_key = xor(&proof, &client_signature);
        if !constant_time_eq(&sha256(&client_key), &self.secret.stored_key) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = hmac(&self.secret.server_key, &[auth_message.as_bytes()]);
        Ok(ScramOutcome {
            server_final: format!("v={}", STANDARD.encode(server_signature)).into_bytes(),
            client_key,
        })
    }
}
