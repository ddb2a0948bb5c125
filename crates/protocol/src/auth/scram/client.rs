//! Client side of SCRAM-SHA-256: we log in to a PostgreSQL server, with a password or with
//! keys recovered from a client's exchange (pass-through).
//!
//! PostgreSQL docs, "SASL Authentication"; mirrors libpq `fe-auth-scram.c` and PgBouncer
//! `scram.c: build_client_final_message`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{
    attr, b64_key, bounded_str, check_nonce, hmac, reject_mext, salted_password, sha256, xor,
    ScramError, MAX_ITERATIONS,
};
use crate::auth::constant_time_eq;

/// What we prove knowledge of.
#[derive(Clone, PartialEq, Eq)]
pub enum ScramCredentials {
    /// The plain password.
    Password(Vec<u8>),
    /// ClientKey and ServerKey (SCRAM pass-through): valid only if the server's salt and
    /// iteration count are those of the secret the keys belong to.
    Keys {
        /// ClientKey, e.g. from [`super::ScramOutcome::client_key`].
        client_key: [u8; 32],
        /// ServerKey of the secret.
        server_key: [u8; 32],
    },
}

impl std::fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScramCredentials::Password(_) => f.write_str("Password(..)"),
            ScramCredentials::Keys { .. } => f.write_str("Keys { .. }"),
        }
    }
}

/// A SCRAM exchange with a server.
#[derive(Debug)]
pub struct ScramClient {
    credentials: ScramCredentials,
    client_nonce: String,
    /// The `c=` value: base64 of the gs2 header (and the channel-binding data).
    cbind: String,
    state: State,
}

#[derive(Debug)]
enum State {
    AwaitingServerFirst,
    AwaitingServerFinal {
        salt: Vec<u8>,
        iterations: u32,
        server_key: [u8; 32],
        auth_message: String,
    },
}

impl ScramClient {
    /// Starts an exchange; the nonce is base64 of `client_nonce` (e.g. 18 random bytes drawn
    /// by the caller). Returns the client-first-message `n,,n=,r=<nonce>`, as libpq sends it.
    pub fn new(credentials: ScramCredentials, client_nonce: &[u8]) -> (ScramClient, Vec<u8>) {
        Self::with_channel_binding(credentials, client_nonce, None)
    }

    /// As [`ScramClient::new`], for SCRAM-SHA-256-PLUS when `binding` is the server's
    /// `tls-server-end-point` data: the gs2 header is then `p=tls-server-end-point,,`.
    pub fn with_channel_binding(
        credentials: ScramCredentials,
        client_nonce: &[u8],
        binding: Option<&[u8]>,
    ) -> (ScramClient, Vec<u8>) {
        debug_assert!(!client_nonce.is_empty(), "empty SCRAM client nonce");
        let client_nonce = STANDARD.encode(client_nonce);
        let (header, cbind) = match binding {
            Some(data) => {
                let header = "p=tls-server-end-point,,";
                (header, STANDARD.encode([header.as_bytes(), data].concat()))
            }
            // `biws` is base64 of the gs2 header `n,,`.
            None => ("n,,", "biws".to_string()),
        };
        let first = format!("{header}n=,r={client_nonce}").into_bytes();
        (
            ScramClient {
                credentials,
                client_nonce,
                cbind,
                state: State::AwaitingServerFirst,
            },
            first,
        )
    }

    /// Reads the server-first-message (AuthenticationSASLContinue data) and returns the
    /// client-final-message to send in a SASLResponse.
    pub fn handle_server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::AwaitingServerFirst) {
            return Err(ScramError::UnexpectedMessage);
        }
        let msg = bounded_str(msg)?;
        let mut parts = msg.split(',');
        let first = parts.next();
        reject_mext(first)?;
        let nonce = attr(first, 'r')?;
        check_nonce(nonce)?;
        if nonce.len() <= self.client_nonce.len() || !nonce.starts_with(&self.client_nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let salt = STANDARD
            .decode(attr(parts.next(), 's')?)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or(ScramError::InvalidAttribute { attr: 's' })?;
        let iterations: u32 = attr(parts.next(), 'i')?
            .parse()
            .map_err(|_| ScramError::InvalidAttribute { attr: 'i' })?;
        if iterations == 0 || iterations > MAX_ITERATIONS {
            return Err(ScramError::IterationsOutOfRange { iterations });
        }
        if parts.next().is_some() {
            return Err(ScramError::ExtensionsNotSupported);
        }
        let (client_key, server_key) = match &self.credentials {
            ScramCredentials::Password(password) => {
                let salted = salted_password(password, &salt, iterations);
                (
                    hmac(&salted, &[b"Client Key"]),
                    hmac(&salted, &[b"Server Key"]),
                )
            }
            ScramCredentials::Keys {
                client_key,
                server_key,
            } => (*client_key, *server_key),
        };
        let without_proof = format!("c={},r={nonce}", self.cbind);
        let auth_message = format!("n=,r={},{msg},{without_proof}", self.client_nonce);
        let signature = hmac(&sha256(&client_key), &[auth_message.as_bytes()]);
        let proof = xor(&client_key, &signature);
        self.state = State::AwaitingServerFinal {
            salt,
            iterations,
            server_key,
            auth_message,
        };
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Salt and iteration count the server announced, once its first message was handled.
    /// With [`ScramCredentials::Keys`] the caller checks they equal the secret's.
    pub fn server_params(&self) -> Option<(&[u8], u32)> {
        match &self.state {
            State::AwaitingServerFirst => None,
            State::AwaitingServerFinal {
                salt, iterations, ..
            } => Some((salt, *iterations)),
        }
    }

    /// Checks the server-final-message (AuthenticationSASLFinal data): `Ok` only if the
    /// server proved it knows the secret.
    pub fn verify_server_final(&self, msg: &[u8]) -> Result<(), ScramError> {
        let State::AwaitingServerFinal {
            server_key,
            auth_message,
            ..
        } = &self.state
        else {
            return Err(ScramError::UnexpectedMessage);
        };
        let msg = bounded_str(msg)?;
        let first = msg.split(',').next();
        if let Some(error) = first.and_then(|p| p.strip_prefix("e=")) {
            return Err(ScramError::ServerError {
                message: error.to_owned(),
            });
        }
        let verifier = b64_key(attr(first, 'v')?, 'v')?;
        let expected = hmac(server_key, &[auth_message.as_bytes()]);
        if constant_time_eq(&verifier, &expected) {
            Ok(())
        } else {
            Err(ScramError::InvalidServerSignature)
        }
    }
}
