//! The roles and database every cluster gets, with the `pg_hba.conf` that gives each role
//! its authentication method (PostgreSQL docs: 21.1 "The pg_hba.conf File").

/// The bootstrap superuser (`initdb -U postgres`); trusted over the socket and TCP.
pub const SUPERUSER: &str = "postgres";
/// A role whose `rolpassword` is an md5 hash, authenticated with `md5` over TCP.
pub const MD5_USER: &str = "md5user";
/// [`MD5_USER`]'s password.
pub const MD5_PASSWORD: &str = "md5pass";
/// A role with a SCRAM-SHA-256 secret, authenticated with `scram-sha-256` over TCP.
pub const SCRAM_USER: &str = "scramuser";
/// [`SCRAM_USER`]'s password.
pub const SCRAM_PASSWORD: &str = "scrampass";
/// A role authenticated with cleartext `password` over TCP (its secret is SCRAM).
pub const PLAIN_USER: &str = "plainuser";
/// [`PLAIN_USER`]'s password.
pub const PLAIN_PASSWORD: &str = "plainpass";
/// A role without a password, trusted over TCP.
pub const TRUST_USER: &str = "trustuser";
/// A database owned by [`MD5_USER`] that every role may connect to and create objects in.
pub const APP_DB: &str = "appdb";

/// `pg_hba.conf`: first match wins, so the catch-all line comes last.
pub(crate) fn pg_hba_conf() -> String {
    let lines = [
        "# written by pg-harness".to_owned(),
        "local all all trust".to_owned(),
        format!("host all {SUPERUSER} 127.0.0.1/32 trust"),
        format!("host all {MD5_USER} 127.0.0.1/32 md5"),
        format!("host all {SCRAM_USER} 127.0.0.1/32 scram-sha-256"),
        format!("host all {PLAIN_USER} 127.0.0.1/32 password"),
        format!("host all {TRUST_USER} 127.0.0.1/32 trust"),
        "host all all 127.0.0.1/32 scram-sha-256".to_owned(),
    ];
    lines.join("\n") + "\n"
}

/// SQL run in the `postgres` database right after start, one autocommit statement at a time.
///
/// `md5` in pg_hba also accepts a SCRAM secret (through SCRAM), so [`MD5_USER`] must be
/// created while `password_encryption` is `md5` to get a real md5 hash. Since PostgreSQL 15
/// `PUBLIC` may not create in schema `public`; granting it back in `template1` gives every
/// database created later (and [`APP_DB`]) the pre-15 behaviour.
pub(crate) fn bootstrap_sql() -> String {
    format!(
        "SET password_encryption = 'md5';\n\
         CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASSWORD}';\n\
         SET password_encryption = 'scram-sha-256';\n\
         CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASSWORD}';\n\
         CREATE ROLE {PLAIN_USER} LOGIN PASSWORD '{PLAIN_PASSWORD}';\n\
         CREATE ROLE {TRUST_USER} LOGIN;\n\
         GRANT ALL ON SCHEMA public TO PUBLIC;\n\
         \\connect template1\n\
         GRANT ALL ON SCHEMA public TO PUBLIC;\n\
         CREATE DATABASE {APP_DB} OWNER {MD5_USER};\n\
         GRANT CONNECT, TEMPORARY ON DATABASE {APP_DB} TO PUBLIC;\n"
    )
}

/// `name` as a double-quoted SQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `value` as a single-quoted SQL literal (standard_conforming_strings is on).
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
