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
    gs2_header: String,
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
    /// Accepts gs2 headers `n,,` and `y,,` (we never offer SCRAM-SHA-256-PLUS, so `y` is not
    /// a downgrade); `p=...`, an authzid, or extensions are errors.
    pub fn new(
        secret: ScramSecret,
        client_first_message: &[u8],
        server_nonce_random: &[u8],
    ) -> Result<(ScramServer, Vec<u8>), ScramError> {
        let msg = bounded_str(client_first_message)?;
        let (cbind, rest) = msg.split_once(',').ok_or(ScramError::InvalidGs2Header)?;
        match cbind {
            "n" | "y" => {}
            c if c.starts_with("p=") => return Err(ScramError::ChannelBindingNotSupported),
            _ => return Err(ScramError::InvalidGs2Header),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::InvalidGs2Header)?;
        if !authzid.is_empty() {
            return Err(ScramError::AuthzidNotSupported);
        }
        let gs2_header = msg[..msg.len() - bare.len()].to_owned();
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
                gs2_header,
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
        if cbind != STANDARD.encode(&self.gs2_header) {
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
