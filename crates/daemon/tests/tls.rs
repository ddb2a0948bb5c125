//! TLS on both sides against a real PostgreSQL that accepts only TLS (`hostnossl …
//! reject`), with real libpq clients (psql), a rustls driver (tokio-postgres) and raw
//! TLS clients: every sslmode towards servers and from clients, certificate checks that
//! must fail, client certificates both ways, cert authentication, TLS 1.3 cipher
//! settings, RELOAD with a new CA and with a broken certificate, direct TLS, and a TLS
//! replication connection.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use common::wire::{self, Wire};
use common::{psql, stderr, stdout, Scratch};
use pg_harness::certs::{self, Ca};
use pg_harness::{
    PgCluster, MD5_PASSWORD, MD5_USER, PLAIN_USER, SCRAM_PASSWORD, SCRAM_USER, TRUST_USER,
};
use pgbouncer_rs::Daemon;

/// Two CAs: CA1 signs everything that should work, CA2 is "someone else".
struct Pki {
    _dir: Scratch,
    ca1: PathBuf,
    ca2: PathBuf,
    /// The pooler's certificate towards clients (CA1; localhost and 127.0.0.1).
    bouncer_cert: PathBuf,
    bouncer_key: PathBuf,
    /// The same from CA2, for the RELOAD test.
    bouncer2_cert: PathBuf,
    bouncer2_key: PathBuf,
    /// A client certificate (CA1) with CN md5user.
    client_cert: PathBuf,
    client_key: PathBuf,
    /// The pooler's client certificate towards PostgreSQL (CA1, CN trustuser).
    to_pg_cert: PathBuf,
    to_pg_key: PathBuf,
}

struct Env {
    pg: PgCluster,
    pki: Pki,
}

/// One PostgreSQL for the whole file: TLS only, its certificate from CA1 valid for
/// `localhost` only (so verify-full to 127.0.0.1 must fail), client certificates
/// checked against CA1, `trustuser` admitted by certificate only, and replication open
/// to md5user over TLS.
fn env() -> &'static Env {
    common::logs::capture();
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = Scratch::new("tls");
        let ca1 = Ca::new("Test CA 1");
        let ca2 = Ca::new("Test CA 2");
        let pg_leaf = ca1.leaf("localhost", &["localhost"]);
        let w = |name: &str, pem: &str| certs::write(&dir.0, name, pem);
        let bouncer = ca1.leaf("pgbouncer-rs", &["localhost", "127.0.0.1"]);
        let bouncer2 = ca2.leaf("pgbouncer-rs", &["localhost", "127.0.0.1"]);
        let client = ca1.leaf(MD5_USER, &[]);
        let to_pg = ca1.leaf(TRUST_USER, &[]);
        let pki = Pki {
            ca1: w("ca1.crt", &ca1.cert_pem),
            ca2: w("ca2.crt", &ca2.cert_pem),
            bouncer_cert: w("bouncer.crt", &bouncer.cert_pem),
            bouncer_key: w("bouncer.key", &bouncer.key_pem),
            bouncer2_cert: w("bouncer2.crt", &bouncer2.cert_pem),
            bouncer2_key: w("bouncer2.key", &bouncer2.key_pem),
            client_cert: w("client.crt", &client.cert_pem),
            client_key: w("client.key", &client.key_pem),
            to_pg_cert: w("topg.crt", &to_pg.cert_pem),
            to_pg_key: w("topg.key", &to_pg.key_pem),
            _dir: dir,
        };
        let options = pg_harness::ClusterOptions {
            extra_conf: vec![
                "wal_level = logical".into(),
                "max_wal_senders = 4".into(),
                "max_replication_slots = 4".into(),
            ],
            hba_first: vec![
                "hostnossl all all 127.0.0.1/32 reject".into(),
                "hostnossl replication all 127.0.0.1/32 reject".into(),
                format!("hostssl all {TRUST_USER} 127.0.0.1/32 cert"),
                format!("hostssl replication {MD5_USER} 127.0.0.1/32 md5"),
            ],
            ..Default::default()
        };
        let pg = PgCluster::start(options.with_tls(&pg_leaf, &ca1)).unwrap();
        pg.psql("postgres", &format!("alter role {MD5_USER} replication"))
            .unwrap();
        Env { pg, pki }
    })
}

/// An ini whose databases reach PostgreSQL by IP (`appdb`), by name (`bylocal`, for
/// verify-full) and as trustuser by name (`bycert`).
fn ini(e: &Env, dir: &Scratch, extra: &str) -> String {
    std::fs::write(dir.0.join("userlist.txt"), common::userlist(&e.pg)).unwrap();
    format!(
        "[databases]\nappdb = host=127.0.0.1 port={port} dbname=appdb\n\
         bylocal = host=localhost port={port} dbname=appdb\n\
         bycert = host=localhost port={port} dbname=appdb user={TRUST_USER}\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = 0\nunix_socket_dir =\n\
         auth_type = md5\nauth_file = {dir}/userlist.txt\nadmin_users = admin\n\
         server_login_retry = 0\nlog_connections = 0\nlog_disconnections = 0\n{extra}\n",
        port = e.pg.port(),
        dir = dir.0.display(),
    )
}

async fn start(e: &Env, dir: &Scratch, extra: &str) -> Daemon {
    let text = ini(e, dir, extra);
    Daemon::start(common::settings(&text, dir)).await.unwrap()
}

/// The `[pgbouncer]` lines that turn client TLS on with CA1's certificate.
fn client_tls(p: &Pki, mode: &str) -> String {
    format!(
        "client_tls_sslmode = {mode}\nclient_tls_key_file = {}\nclient_tls_cert_file = {}\n\
         client_tls_ca_file = {}\n",
        p.bouncer_key.display(),
        p.bouncer_cert.display(),
        p.ca1.display()
    )
}

fn md5_at(d: &Daemon, db: &str, extra: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={MD5_USER} password={MD5_PASSWORD} dbname={db} {extra}",
        d.addr().port()
    )
}

/// SHOW SERVERS' or SHOW CLIENTS' `tls` column, through the console (over TLS trusting
/// `ca` when given, else in clear text).
async fn tls_column(d: &Daemon, what: &str, ca: Option<&PathBuf>) -> Vec<String> {
    let conninfo = common::conninfo(d, "admin", "adminpass", "pgbouncer");
    let admin = match ca {
        Some(ca) => rustls_connect(&format!("{conninfo} sslmode=require"), ca)
            .await
            .unwrap(),
        None => common::connect(&conninfo).await.unwrap(),
    };
    let rows = admin.simple_query(&format!("SHOW {what}")).await.unwrap();
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                let i = (0..r.len()).find(|&i| r.columns()[i].name() == "tls")?;
                r.get(i).map(str::to_string)
            }
            _ => None,
        })
        .collect()
}

/// A login the pooler cannot complete because the server's certificate does not verify:
/// as in PgBouncer the client is not failed with the TLS error but waits (here until
/// `query_wait_timeout`), and the log says why, on the line of the server connection
/// (`S-…: <db>/<user>@<addr> … certificate verify failed`).
async fn waits_and_logs_verify_failure(pg: &PgCluster, conninfo: &str, server_prefix: &str) {
    let err = select_one(pg, conninfo)
        .await
        .expect_err("the login succeeded");
    assert!(err.contains("query_wait_timeout"), "{err}");
    assert!(
        common::logs::wait_for(
            &[server_prefix, "certificate verify failed"],
            std::time::Duration::from_secs(5)
        )
        .is_some(),
        "no 'certificate verify failed' line for {server_prefix}"
    );
}

async fn select_one(pg: &PgCluster, conninfo: &str) -> Result<(), String> {
    let o = psql(pg, conninfo, "select 1").await;
    if o.status.success() && stdout(&o) == "1" {
        Ok(())
    } else {
        Err(stderr(&o))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_sslmode_against_a_postgres_that_accepts_only_tls() {
    if !pg_harness::require_postgres() {
        return;
    }
    let e = env();
    let p = &e.pki;
    // disable: PostgreSQL's own refusal reaches the client.
    let dir = Scratch::new("tls-srv");
    let d = start(e, &dir, "server_tls_sslmode = disable").await;
    let err = select_one(&e.pg, &md5_at(&d, "appdb", ""))
        .await
        .unwrap_err();
    assert!(err.contains("no encryption"), "{err}");
    d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;

    // prefer (the default) and require: TLS, no certificate check; SHOW SERVERS says so.
    for mode in ["prefer", "allow", "require"] {
        let dir = Scratch::new("tls-srv");
        let d = start(e, &dir, &format!("server_tls_sslmode = {mode}")).await;
        select_one(&e.pg, &md5_at(&d, "appdb", "")).await.unwrap();
        let tls = tls_column(&d, "SERVERS", None).await;
        assert!(
            tls.iter().any(|t| t.starts_with("TLSv1.3/TLS_")),
            "{mode}: {tls:?}"
        );
        d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
            .await;
    }

    // verify-ca: the right CA is enough, whatever the host name.
    let dir = Scratch::new("tls-srv");
    let ca = |f: &PathBuf| format!("server_tls_ca_file = {}\n", f.display());
    let d = start(
        e,
        &dir,
        &format!("server_tls_sslmode = verify-ca\n{}", ca(&p.ca1)),
    )
    .await;
    select_one(&e.pg, &md5_at(&d, "appdb", "")).await.unwrap();
    d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;

    // verify-full: the name in [databases] must be in the certificate.
    let dir = Scratch::new("tls-srv");
    let d = start(
        e,
        &dir,
        &format!(
            "server_tls_sslmode = verify-full\nquery_wait_timeout = 2\n{}",
            ca(&p.ca1)
        ),
    )
    .await;
    select_one(&e.pg, &md5_at(&d, "bylocal", "")).await.unwrap();
    let at_pg = |db: &str| format!("{db}/{MD5_USER}@127.0.0.1:{}", e.pg.port());
    waits_and_logs_verify_failure(&e.pg, &md5_at(&d, "appdb", ""), &at_pg("appdb")).await;
    d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;

    // A CA that did not sign the server's certificate: refused, never clear text.
    for mode in ["verify-ca", "verify-full"] {
        let dir = Scratch::new("tls-srv");
        let d = start(
            e,
            &dir,
            &format!(
                "server_tls_sslmode = {mode}\nquery_wait_timeout = 2\n{}",
                ca(&p.ca2)
            ),
        )
        .await;
        waits_and_logs_verify_failure(&e.pg, &md5_at(&d, "bylocal", ""), &at_pg("bylocal")).await;
        d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
            .await;
    }

    // A client certificate towards PostgreSQL (its hba says `cert` for trustuser).
    let dir = Scratch::new("tls-srv");
    let d = start(e, &dir, "server_tls_sslmode = require").await;
    let err = select_one(&e.pg, &md5_at(&d, "bycert", ""))
        .await
        .unwrap_err();
    assert!(err.contains("certificate"), "without a certificate: {err}");
    d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;
    let dir = Scratch::new("tls-srv");
    let d = start(
        e,
        &dir,
        &format!(
            "server_tls_sslmode = verify-full\n{}server_tls_cert_file = {}\n\
             server_tls_key_file = {}\n",
            ca(&p.ca1),
            p.to_pg_cert.display(),
            p.to_pg_key.display()
        ),
    )
    .await;
    select_one(&e.pg, &md5_at(&d, "bycert", "")).await.unwrap();
    d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libpq_clients_get_tls_in_every_sslmode_and_clear_text_is_refused_when_required() {
    if !pg_harness::require_postgres() {
        return;
    }
    let e = env();
    let p = &e.pki;
    let dir = Scratch::new("tls-cli");
    let d = start(e, &dir, &client_tls(p, "require")).await;
    let root = |f: &PathBuf| format!("sslrootcert={}", f.display());
    for mode in ["require", "prefer", "allow"] {
        select_one(&e.pg, &md5_at(&d, "appdb", &format!("sslmode={mode}")))
            .await
            .unwrap();
    }
    let verify_full = |ca: &PathBuf| {
        format!(
            "host=localhost port={} user={MD5_USER} password={MD5_PASSWORD} dbname=appdb \
             sslmode=verify-full {}",
            d.addr().port(),
            root(ca)
        )
    };
    select_one(&e.pg, &verify_full(&p.ca1)).await.unwrap();
    select_one(
        &e.pg,
        &md5_at(&d, "appdb", &format!("sslmode=verify-ca {}", root(&p.ca1))),
    )
    .await
    .unwrap();
    let err = select_one(&e.pg, &verify_full(&p.ca2)).await.unwrap_err();
    assert!(err.contains("certificate verify failed"), "{err}");
    let err = select_one(&e.pg, &md5_at(&d, "appdb", "sslmode=disable"))
        .await
        .unwrap_err();
    assert!(err.contains("SSL required"), "{err}");
    // SCRAM over TLS binds the channel to our certificate (SCRAM-SHA-256-PLUS; libpq
    // refuses anything else with channel_binding=require), and works without binding;
    // the console over TLS shows its own connection's TLS.
    for binding in ["require", "disable", "prefer"] {
        let scram = format!(
            "host=127.0.0.1 port={} user={SCRAM_USER} password={SCRAM_PASSWORD} dbname=appdb \
             sslmode=require channel_binding={binding}",
            d.addr().port()
        );
        select_one(&e.pg, &scram).await.unwrap();
    }
    let wrong = format!(
        "host=127.0.0.1 port={} user={SCRAM_USER} password=wrong dbname=appdb \
         sslmode=require channel_binding=require",
        d.addr().port()
    );
    let err = select_one(&e.pg, &wrong).await.unwrap_err();
    assert!(err.contains("SASL authentication failed"), "{err}");
    let o = psql(
        &e.pg,
        &format!(
            "host=127.0.0.1 port={} user=admin password=adminpass dbname=pgbouncer sslmode=require",
            d.addr().port()
        ),
        "SHOW CLIENTS",
    )
    .await;
    assert!(stdout(&o).contains("TLSv1.3/TLS_"), "{}", stdout(&o));

    // Bytes after the SSLRequest, before the handshake, are refused (they could have
    // been injected by someone in the middle).
    let mut raw = tokio::net::TcpStream::connect(d.addr()).await.unwrap();
    let mut out = bytes::BytesMut::new();
    pgbouncer_protocol::StartupPacket::SslRequest.encode(&mut out);
    pgbouncer_protocol::StartupMessage::new(vec![("user".into(), MD5_USER.into())])
        .encode(&mut out);
    use tokio::io::AsyncWriteExt;
    raw.write_all(&out).await.unwrap();
    let mut w = Wire::<tokio::net::TcpStream>::from_stream(raw);
    let msgs = w.until_closed().await;
    let errs = wire::errors(&msgs);
    assert_eq!(
        errs.first().map(|e| e.2.as_str()),
        Some("received unencrypted data after SSL request"),
        "{msgs:?}"
    );
    d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_needs_a_client_certificate_and_cert_auth_takes_the_user_from_it() {
    if !pg_harness::require_postgres() {
        return;
    }
    let e = env();
    let p = &e.pki;
    let dir = Scratch::new("tls-cert");
    let d = start(
        e,
        &dir,
        &format!("{}auth_type = cert\n", client_tls(p, "verify-full")),
    )
    .await;
    let base = |user: &str| {
        format!(
            "host=localhost port={} user={user} dbname=appdb sslmode=verify-full sslrootcert={}",
            d.addr().port(),
            p.ca1.display()
        )
    };
    let with_cert = |user: &str| {
        format!(
            "{} sslcert={} sslkey={}",
            base(user),
            p.client_cert.display(),
            p.client_key.display()
        )
    };
    select_one(&e.pg, &with_cert(MD5_USER)).await.unwrap();
    // No certificate: the handshake itself fails (verify-full requires one).
    let err = select_one(&e.pg, &base(MD5_USER)).await.unwrap_err();
    assert!(!err.is_empty());
    // A valid certificate for another user.
    let err = select_one(&e.pg, &with_cert(SCRAM_USER)).await.unwrap_err();
    assert!(err.contains("certificate authentication failed"), "{err}");
    d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;
}

/// A rustls client configuration trusting `ca` (for tokio-postgres and raw clients).
fn rustls_client(ca: &PathBuf, alpn: bool) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    if alpn {
        config.alpn_protocols = vec![b"postgresql".to_vec()];
    }
    Arc::new(config)
}

async fn rustls_connect(
    conninfo: &str,
    ca: &PathBuf,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new((*rustls_client(ca, false)).clone());
    let (client, conn) = tokio_postgres::connect(conninfo, tls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_ciphers_apply_and_reload_swaps_certificates_without_dropping_sessions() {
    if !pg_harness::require_postgres() {
        return;
    }
    let e = env();
    let p = &e.pki;
    let dir = Scratch::new("tls-reload");
    let extra = format!(
        "{}client_tls_protocols = tlsv1.3\nclient_tls13_ciphers = TLS_CHACHA20_POLY1305_SHA256\n",
        client_tls(p, "require")
    );
    let text = ini(e, &dir, &extra);
    let d = Daemon::start(common::settings(&text, &dir)).await.unwrap();
    let conninfo = format!(
        "host=localhost port={} user={MD5_USER} password={MD5_PASSWORD} dbname=appdb sslmode=require",
        d.addr().port()
    );
    let kept = rustls_connect(&conninfo, &p.ca1).await.unwrap();
    kept.simple_query("select 1").await.unwrap();
    let tls = tls_column(&d, "CLIENTS", Some(&p.ca1)).await;
    assert!(
        tls.iter()
            .any(|t| t.starts_with("TLSv1.3/TLS_CHACHA20_POLY1305_SHA256")),
        "{tls:?}"
    );
    // An unknown suite: the SET is taken, the TLS in force stays, a NOTICE says so.
    let admin = format!(
        "host=127.0.0.1 port={} user=admin password=adminpass dbname=pgbouncer sslmode=require",
        d.addr().port()
    );
    let o = psql(&e.pg, &admin, "SET client_tls13_ciphers = 'unknown'").await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("TLS settings could not be applied, still using old configuration"),
        "{}",
        stderr(&o)
    );
    select_one(
        &e.pg,
        &format!("{conninfo} sslrootcert={}", p.ca1.display()),
    )
    .await
    .unwrap();

    // RELOAD with CA2's certificate: new clients see it; the open session goes on.
    let swapped = text
        .replace(
            &p.bouncer_cert.display().to_string(),
            &p.bouncer2_cert.display().to_string(),
        )
        .replace(
            &p.bouncer_key.display().to_string(),
            &p.bouncer2_key.display().to_string(),
        );
    std::fs::write(dir.0.join("pgbouncer.ini"), &swapped).unwrap();
    let o = psql(&e.pg, &admin, "RELOAD").await;
    assert!(o.status.success(), "{}", stderr(&o));
    let verify = |ca: &PathBuf| {
        format!(
            "host=localhost port={} user={MD5_USER} password={MD5_PASSWORD} dbname=appdb \
             sslmode=verify-full sslrootcert={}",
            d.addr().port(),
            ca.display()
        )
    };
    let err = select_one(&e.pg, &verify(&p.ca1)).await.unwrap_err();
    assert!(err.contains("certificate verify failed"), "{err}");
    select_one(&e.pg, &verify(&p.ca2)).await.unwrap();
    kept.simple_query("select 2").await.unwrap();

    // A certificate file that is gone: RELOAD fails and the old TLS keeps working.
    let broken = swapped.replace(
        &p.bouncer2_cert.display().to_string(),
        &dir.0.join("missing.crt").display().to_string(),
    );
    std::fs::write(dir.0.join("pgbouncer.ini"), &broken).unwrap();
    let o = psql(&e.pg, &admin, "RELOAD").await;
    assert!(stderr(&o).contains("RELOAD failed"), "{}", stderr(&o));
    select_one(&e.pg, &verify(&p.ca2)).await.unwrap();
    kept.simple_query("select 3").await.unwrap();
    d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_from_a_client_and_towards_a_tls_only_server() {
    if !pg_harness::require_postgres() {
        return;
    }
    let e = env();
    let p = &e.pki;
    // Front: TLS required from clients (it is the "TLS-only server" for the second).
    let dir = Scratch::new("tls-direct");
    let front = start(e, &dir, &client_tls(p, "require")).await;

    // A client that opens with the TLS handshake (PostgreSQL 17's sslnegotiation=direct).
    let connector = tokio_rustls::TlsConnector::from(rustls_client(&p.ca1, true));
    let tcp = tokio::net::TcpStream::connect(front.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name.clone(), tcp).await.unwrap();
    let mut w = Wire::login(tls, MD5_USER, MD5_PASSWORD, "appdb", &[])
        .await
        .unwrap();
    assert_eq!(
        wire::first_value(&w.simple("select 41 + 1").await).as_deref(),
        Some("42")
    );

    // Without ALPN the connection is let in, as PgBouncer does (asyncpg's direct_tls
    // sends none); with another protocol offered, the handshake is refused.
    let connector = tokio_rustls::TlsConnector::from(rustls_client(&p.ca1, false));
    let tcp = tokio::net::TcpStream::connect(front.addr()).await.unwrap();
    let tls = connector.connect(name.clone(), tcp).await.unwrap();
    Wire::login(tls, MD5_USER, MD5_PASSWORD, "appdb", &[])
        .await
        .unwrap();
    let mut other = (*rustls_client(&p.ca1, false)).clone();
    other.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(other));
    let tcp = tokio::net::TcpStream::connect(front.addr()).await.unwrap();
    assert!(connector.connect(name, tcp).await.is_err());

    // A second pooler reaching the first with direct TLS and verify-full.
    let dir2 = Scratch::new("tls-direct2");
    std::fs::write(dir2.0.join("userlist.txt"), common::userlist(&e.pg)).unwrap();
    let text = format!(
        "[databases]\nappdb = host=localhost port={} dbname=appdb\n\
         [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = 0\nunix_socket_dir =\n\
         auth_type = md5\nauth_file = {}/userlist.txt\nserver_login_retry = 0\n\
         server_tls_sslmode = verify-full\nserver_tls_ca_file = {}\n\
         server_tls_sslnegotiation = direct\n",
        front.addr().port(),
        dir2.0.display(),
        p.ca1.display()
    );
    let back = Daemon::start(common::settings(&text, &dir2)).await.unwrap();
    select_one(&e.pg, &md5_at(&back, "appdb", ""))
        .await
        .unwrap();
    let tls = tls_column(&front, "CLIENTS", Some(&p.ca1)).await;
    assert!(
        tls.iter().filter(|t| t.starts_with("TLSv1.3/")).count() >= 2,
        "{tls:?}"
    );
    back.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;
    front
        .shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_connection_runs_over_tls_on_both_sides() {
    if !pg_harness::require_postgres() {
        return;
    }
    let e = env();
    let p = &e.pki;
    let dir = Scratch::new("tls-repl");
    let d = start(
        e,
        &dir,
        &format!(
            "{}server_tls_sslmode = verify-full\nserver_tls_ca_file = {}\n",
            client_tls(p, "require"),
            p.ca1.display()
        ),
    )
    .await;
    for replication in ["database", "true"] {
        let conninfo = format!(
            "host=localhost port={} user={MD5_USER} password={MD5_PASSWORD} dbname=bylocal \
             replication={replication} sslmode=verify-full sslrootcert={}",
            d.addr().port(),
            p.ca1.display()
        );
        let o = psql(&e.pg, &conninfo, "IDENTIFY_SYSTEM").await;
        assert!(o.status.success(), "{replication}: {}", stderr(&o));
        assert!(stdout(&o).contains('|'), "{}", stdout(&o));
    }
    d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;
}

/// The remote pids of SHOW SERVERS, through the console in clear text.
async fn server_pids(d: &Daemon) -> Vec<String> {
    let admin = common::connect(&common::conninfo(d, "admin", "adminpass", "pgbouncer"))
        .await
        .unwrap();
    let rows = admin.simple_query("SHOW SERVERS").await.unwrap();
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                let i = (0..r.len()).find(|&i| r.columns()[i].name() == "remote_pid")?;
                r.get(i).map(str::to_string)
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_are_reopened_when_their_tls_settings_change_and_kept_otherwise() {
    if !pg_harness::require_postgres() {
        return;
    }
    let e = env();
    let dir = Scratch::new("tls-reconnect");
    let d = start(e, &dir, "server_tls_sslmode = require").await;
    select_one(&e.pg, &md5_at(&d, "appdb", "")).await.unwrap();
    let before = server_pids(&d).await;
    assert_eq!(before.len(), 1, "{before:?}");
    let admin = common::conninfo(&d, "admin", "adminpass", "pgbouncer");
    // RELOAD with nothing changed keeps the server.
    let o = psql(&e.pg, &admin, "RELOAD").await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(server_pids(&d).await, before);
    // A new TLS setting closes it; the next client gets a server opened with it.
    let o = psql(&e.pg, &admin, "SET server_tls_protocols = 'tlsv1.2'").await;
    assert!(o.status.success(), "{}", stderr(&o));
    let mut gone = false;
    for _ in 0..100 {
        if server_pids(&d).await.is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "the idle server was not closed");
    select_one(&e.pg, &md5_at(&d, "appdb", "")).await.unwrap();
    let after = server_pids(&d).await;
    assert_eq!(after.len(), 1);
    assert_ne!(after, before);
    let tls = tls_column(&d, "SERVERS", None).await;
    assert!(tls[0].starts_with("TLSv1.2/ECDHE-ECDSA-"), "{tls:?}");
    d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hba_hostssl_hostnossl_and_cert_with_an_ident_map() {
    if !pg_harness::require_postgres() {
        return;
    }
    let e = env();
    let p = &e.pki;
    let dir = Scratch::new("tls-hba");
    let hba = dir.0.join("hba.conf");
    std::fs::write(
        &hba,
        format!(
            "hostssl all {MD5_USER} 127.0.0.1/32 md5\n\
             hostnossl all {MD5_USER} 127.0.0.1/32 reject\n\
             hostssl all {PLAIN_USER} 127.0.0.1/32 cert map=certs\n"
        ),
    )
    .unwrap();
    let ident = dir.0.join("ident.conf");
    std::fs::write(&ident, format!("certs {MD5_USER} {PLAIN_USER}\n")).unwrap();
    let d = start(
        e,
        &dir,
        &format!(
            "{}auth_type = hba\nauth_hba_file = {}\nauth_ident_file = {}\n",
            client_tls(p, "prefer"),
            hba.display(),
            ident.display()
        ),
    )
    .await;
    select_one(&e.pg, &md5_at(&d, "appdb", "sslmode=require"))
        .await
        .unwrap();
    let err = select_one(&e.pg, &md5_at(&d, "appdb", "sslmode=disable"))
        .await
        .unwrap_err();
    assert!(err.contains("FATAL"), "{err}");
    // md5user's certificate, mapped to plainuser by the ident map.
    let as_scram = |cert: bool| {
        let mut c = format!(
            "host=127.0.0.1 port={} user={PLAIN_USER} dbname=appdb sslmode=require",
            d.addr().port()
        );
        if cert {
            c.push_str(&format!(
                " sslcert={} sslkey={}",
                p.client_cert.display(),
                p.client_key.display()
            ));
        }
        c
    };
    select_one(&e.pg, &as_scram(true)).await.unwrap();
    let err = select_one(&e.pg, &as_scram(false)).await.unwrap_err();
    assert!(err.contains("certificate authentication failed"), "{err}");
    d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_copy_and_pgbench_stream_through_tls_on_both_sides() {
    if !pg_harness::require_postgres() {
        return;
    }
    let e = env();
    let p = &e.pki;
    let dir = Scratch::new("tls-big");
    let d = start(
        e,
        &dir,
        &format!(
            "{}server_tls_sslmode = verify-full\nserver_tls_ca_file = {}\npool_mode = transaction\n",
            client_tls(p, "require"),
            p.ca1.display()
        ),
    )
    .await;
    let conninfo = format!(
        "host=localhost port={} user={MD5_USER} password={MD5_PASSWORD} dbname=bylocal sslmode=require",
        d.addr().port()
    );
    let c = rustls_connect(&conninfo, &p.ca1).await.unwrap();
    // A 4 MiB query text and a 4 MiB result, each many TLS records long.
    let big = "x".repeat(4 << 20);
    let rows = c
        .simple_query(&format!("select length('{big}'), repeat('y', 4194304)"))
        .await
        .unwrap();
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .unwrap();
    assert_eq!(row.get(0), Some("4194304"));
    assert_eq!(row.get(1).map(str::len), Some(4 << 20));
    // Extended protocol with a large parameter, then COPY out of 200 000 rows.
    let param = "z".repeat(1 << 20);
    let r = c
        .query_one("select length($1::text)", &[&param])
        .await
        .unwrap();
    assert_eq!(r.get::<_, i32>(0), 1 << 20);
    let rows = c
        .simple_query(
            "select count(*) from (select g, md5(g::text) from generate_series(1, 200000) g) s",
        )
        .await
        .unwrap();
    assert!(rows.iter().any(|m| matches!(m,
        tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("200000"))));
    // COPY out through libpq: about 8 MB in many records.
    let o = psql(
        &e.pg,
        &conninfo,
        "copy (select g, md5(g::text) from generate_series(1, 200000) g) to stdout",
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout.iter().filter(|&&b| b == b'\n').count(), 200_000);

    // pgbench over TLS to the pooler (libpq), the pooler over TLS to PostgreSQL.
    let init = common::run(&e.pg, "pgbench", &["-i", "-q", "-s", "1", &conninfo]).await;
    assert!(init.status.success(), "{}", stderr(&init));
    let bench = common::run(
        &e.pg,
        "pgbench",
        &[
            "-c", "4", "-j", "2", "-t", "200", "-M", "extended", &conninfo,
        ],
    )
    .await;
    let text = stdout(&bench);
    assert!(bench.status.success(), "{text}\n{}", stderr(&bench));
    assert!(text.contains("number of failed transactions: 0"), "{text}");
    d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;
}

/// psycopg 3 and psycopg2 (libpq) in every sslmode, with and without a client
/// certificate; asyncpg (Python's own ssl module, not libpq) with a verifying context
/// and with direct TLS.
const PSYCOPG_SSLMODES: &str = r#"
import os, psycopg, psycopg2
dsn, ca, cert, key = os.environ["DSN"], os.environ["CA"], os.environ["CERT"], os.environ["KEY"]
for mod in (psycopg, psycopg2):
    for mode in ("allow", "prefer", "require", "verify-ca", "verify-full"):
        c = mod.connect(f"{dsn} sslmode={mode} sslrootcert={ca}")
        cur = c.cursor(); cur.execute("select 1"); assert cur.fetchone()[0] == 1
        c.close()
    c = mod.connect(f"{dsn} sslmode=verify-full sslrootcert={ca} sslcert={cert} sslkey={key}")
    c.close()
    try:
        mod.connect(f"{dsn} sslmode=disable")
        raise SystemExit("clear text was accepted")
    except mod.OperationalError as e:
        assert "SSL required" in str(e), e
print("ok")
"#;

const ASYNCPG_TLS: &str = r#"
import asyncio, os, ssl, asyncpg
async def main():
    ctx = ssl.create_default_context(cafile=os.environ["CA"])
    for direct in (False, True):
        c = await asyncpg.connect(os.environ["URL"], ssl=ctx, direct_tls=direct)
        assert await c.fetchval("select 40 + 2") == 42
        await c.close()
    wrong = ssl.create_default_context(cafile=os.environ["WRONG_CA"])
    try:
        await asyncpg.connect(os.environ["URL"], ssl=wrong)
        raise SystemExit("a certificate from the wrong CA was accepted")
    except ssl.SSLCertVerificationError:
        pass
    print("ok")
asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_in_every_sslmode_and_asyncpg_with_its_own_tls_and_direct_tls() {
    if !pg_harness::require_postgres() {
        return;
    }
    let e = env();
    let p = &e.pki;
    let dir = Scratch::new("tls-drivers");
    let d = start(e, &dir, &client_tls(p, "require")).await;
    let dsn = format!(
        "host=localhost port={} user={MD5_USER} password={MD5_PASSWORD} dbname=appdb",
        d.addr().port()
    );
    let path = |f: &PathBuf| f.display().to_string();
    let env = [
        ("DSN", dsn),
        ("CA", path(&p.ca1)),
        ("WRONG_CA", path(&p.ca2)),
        ("CERT", path(&p.client_cert)),
        ("KEY", path(&p.client_key)),
        (
            "URL",
            format!(
                "postgresql://{MD5_USER}:{MD5_PASSWORD}@localhost:{}/appdb",
                d.addr().port()
            ),
        ),
    ];
    if let Some(out) = common::python_with("psycopg", PSYCOPG_SSLMODES, &env).await {
        assert_eq!(out.trim(), "ok");
    }
    if let Some(out) = common::python_with("asyncpg", ASYNCPG_TLS, &env).await {
        assert_eq!(out.trim(), "ok");
    }
    d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;
}

/// Runs the openssl command in `dir`; `None` when it is not installed (outside CI).
fn openssl(dir: &std::path::Path, args: &[&str]) -> Option<()> {
    match std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(o) if o.status.success() => Some(()),
        Ok(o) => panic!("openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => {
            assert!(
                std::env::var("CI").is_err(),
                "CI is set but openssl is missing"
            );
            eprintln!("SKIPPED: no openssl command");
            None
        }
    }
}

/// A CA (v3, `req -x509`) and X.509 version 1 certificates signed by it, made the way
/// PostgreSQL's documentation and PgBouncer's test scripts make them (`openssl x509
/// -req` without extensions): no subject alternative names, the name in the CN.
fn v1_pki(dir: &std::path::Path, ca: &str, leaves: &[&str]) -> Option<()> {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            &format!("{ca}.key"),
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{ca}.key"),
            "-sha256",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca}"),
            "-out",
            &format!("{ca}.crt"),
        ],
    )?;
    for cn in leaves {
        openssl(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &format!("{cn}.key"),
            ],
        )?;
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &format!("{cn}.key"),
                "-subj",
                &format!("/CN={cn}"),
                "-out",
                &format!("{cn}.csr"),
            ],
        )?;
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{cn}.csr"),
                "-CA",
                &format!("{ca}.crt"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-sha256",
                "-out",
                &format!("{cn}.crt"),
            ],
        )?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.join(format!("{cn}.key")),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_version_1_certificates_work_as_with_openssl() {
    if !pg_harness::require_postgres() {
        return;
    }
    let e = env();
    let dir = Scratch::new("tls-v1");
    let d = &dir.0;
    if v1_pki(d, "v1ca", &["localhost", MD5_USER]).is_none() {
        return;
    }
    let other = Scratch::new("tls-v1-other");
    v1_pki(&other.0, "otherca", &[]).unwrap();
    let f = |name: &str| d.join(name).display().to_string();
    let front_tls = |mode: &str| {
        format!(
            "client_tls_sslmode = {mode}\nclient_tls_key_file = {}\nclient_tls_cert_file = {}\n\
             client_tls_ca_file = {}\n",
            f("localhost.key"),
            f("localhost.crt"),
            f("v1ca.crt")
        )
    };
    // Our own certificate is version 1; so is the client's, for cert authentication.
    let front_dir = Scratch::new("tls-v1-front");
    let front = start(
        e,
        &front_dir,
        &format!("{}auth_type = cert\n", front_tls("verify-full")),
    )
    .await;
    let libpq = format!(
        "host=localhost port={} user={MD5_USER} dbname=appdb sslmode=verify-full sslrootcert={} \
         sslcert={} sslkey={}",
        front.addr().port(),
        f("v1ca.crt"),
        f(&format!("{MD5_USER}.crt")),
        f(&format!("{MD5_USER}.key"))
    );
    select_one(&e.pg, &libpq).await.unwrap();
    front
        .shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;

    // As a client of a server with a version 1 certificate: no check, the CA, the CA and
    // the name (in the CN), the name wrong, the CA wrong.
    let front_dir = Scratch::new("tls-v1-front");
    let front = start(e, &front_dir, &front_tls("require")).await;
    for (mode, ca, host, ok) in [
        ("require", "", "127.0.0.1", true),
        ("verify-ca", "v1ca.crt", "127.0.0.1", true),
        ("verify-full", "v1ca.crt", "localhost", true),
        ("verify-full", "v1ca.crt", "127.0.0.1", false),
        ("verify-ca", "other", "localhost", false),
    ] {
        let ca_file = match ca {
            "" => String::new(),
            "other" => format!(
                "server_tls_ca_file = {}\n",
                other.0.join("otherca.crt").display()
            ),
            name => format!("server_tls_ca_file = {}\n", f(name)),
        };
        let back_dir = Scratch::new("tls-v1-back");
        std::fs::write(back_dir.0.join("userlist.txt"), common::userlist(&e.pg)).unwrap();
        let text = format!(
            "[databases]\nappdb = host={host} port={} dbname=appdb\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = 0\nunix_socket_dir =\n\
             auth_type = md5\nauth_file = {}/userlist.txt\nserver_login_retry = 0\n\
             query_wait_timeout = 2\nserver_tls_sslmode = {mode}\n{ca_file}",
            front.addr().port(),
            back_dir.0.display(),
        );
        let back = Daemon::start(common::settings(&text, &back_dir))
            .await
            .unwrap();
        let conninfo = md5_at(&back, "appdb", "");
        if ok {
            select_one(&e.pg, &conninfo)
                .await
                .unwrap_or_else(|err| panic!("{mode} {ca} {host}: {err}"));
        } else {
            let prefix = format!("appdb/{MD5_USER}@127.0.0.1:{}", front.addr().port());
            waits_and_logs_verify_failure(&e.pg, &conninfo, &prefix).await;
        }
        back.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
            .await;
    }
    front
        .shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_ciphers_curves_and_server_tls13_ciphers_are_what_gets_negotiated() {
    if !pg_harness::require_postgres() {
        return;
    }
    let e = env();
    let p = &e.pki;
    let dir = Scratch::new("tls-ciphers");
    let d = start(
        e,
        &dir,
        &format!(
            "{}client_tls_protocols = tlsv1.2\nclient_tls_ciphers = ECDHE-ECDSA-CHACHA20-POLY1305\n\
             client_tls_ecdhcurve = secp384r1\nserver_tls_sslmode = require\n\
             server_tls13_ciphers = TLS_AES_256_GCM_SHA384\n",
            client_tls(p, "require")
        ),
    )
    .await;
    select_one(&e.pg, &md5_at(&d, "appdb", "sslmode=require"))
        .await
        .unwrap();
    let o = psql(
        &e.pg,
        &format!(
            "host=127.0.0.1 port={} user=admin password=adminpass dbname=pgbouncer sslmode=require",
            d.addr().port()
        ),
        "SHOW CLIENTS",
    )
    .await;
    assert!(
        stdout(&o).contains("TLSv1.2/ECDHE-ECDSA-CHACHA20-POLY1305/ECDH=secp384r1"),
        "{}",
        stdout(&o)
    );
    let servers = tls_column(&d, "SERVERS", Some(&p.ca1)).await;
    assert!(
        servers
            .iter()
            .any(|t| t.starts_with("TLSv1.3/TLS_AES_256_GCM_SHA384")),
        "{servers:?}"
    );
    d.shutdown(pgbouncer_rs::daemon::ShutdownMode::Immediate)
        .await;
}
