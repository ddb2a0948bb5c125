//! The files in `deploy/`, run the way the image and the manifests run them:
//! `deploy/docker/entrypoint.sh` is given the environment of each image users run today
//! (edoburu/pgbouncer, bitnami/pgbouncer, pgbouncer/pgbouncer) in a scratch directory, its
//! generated `pgbouncer.ini` and `userlist.txt` are read back, and the real binary checks
//! them with `--check-config` through the entrypoint's own `exec`, so the environment the
//! binary sees is the one the entrypoint leaves. One test starts the pooler through the
//! entrypoint with `deploy/docker/pgbouncer.env` (the docker-compose settings) in front of
//! a real PostgreSQL, and runs the demo Django app through it. The health-check script
//! and the Kubernetes ConfigMap's `pgbouncer.ini` are checked too.
//!
//! The YAML, schema, promtool and systemd checks are in `xtask/deploy-check.sh`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use pg_harness::{require_postgres, PgCluster, SCRAM_PASSWORD, SCRAM_USER};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pgbrs-deploy-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn read(&self, name: &str) -> String {
        let path = self.path(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn display(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_pgbouncer-rs"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `sh entrypoint.sh ARGS` with exactly `env` (plus PATH with the built binary first and
/// the entrypoint's own settings pointing into `dir`): nothing of the test runner's
/// environment, such as PGBOUNCER_RS_FAST, reaches the pooler.
fn entrypoint_cmd(dir: &Scratch, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg(repo_file("deploy/docker/entrypoint.sh"))
        .args(args)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin_dir().display()))
        .env("ENTRYPOINT_CONFIG_DIR", &dir.0)
        .env(
            "ENTRYPOINT_MOUNTED_CONFIGS",
            format!("{0}/pgbouncer.ini {0}/mounted/pgbouncer.ini", dir.display()),
        )
        .env("ENTRYPOINT_BITNAMI_DIR", dir.path("bitnami"))
        .current_dir(&dir.0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Dry run: writes the files and prints `exec: ...` and `env: ...` lines.
fn dry_run(dir: &Scratch, env: &[(&str, &str)], args: &[&str]) -> DryRun {
    let mut cmd = entrypoint_cmd(dir, env, args);
    cmd.env("ENTRYPOINT_DRY_RUN", "1");
    let out = run(cmd);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "entrypoint failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let exec = stdout
        .lines()
        .find_map(|l| l.strip_prefix("exec: "))
        .unwrap_or_else(|| panic!("no exec line in:\n{stdout}"))
        .to_string();
    let env = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("env: "))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    DryRun { exec, env, stderr }
}

struct DryRun {
    /// The command line after `exec: `.
    exec: String,
    /// The PGBOUNCER_* and DATABASES_* variables the pooler would get.
    env: BTreeMap<String, String>,
    stderr: String,
}

/// The entrypoint for real, with `--check-config` as its argument: it execs the binary,
/// which loads the generated files and the environment left to it.
fn check_config_through_entrypoint(dir: &Scratch, env: &[(&str, &str)]) {
    let out = run(entrypoint_cmd(dir, env, &["--check-config"]));
    assert!(
        out.status.success() && text(&out.stdout).contains("configuration OK"),
        "--check-config through the entrypoint failed\nstdout:\n{}\nstderr:\n{}\nini:\n{}",
        text(&out.stdout),
        text(&out.stderr),
        std::fs::read_to_string(dir.path("pgbouncer.ini")).unwrap_or_default()
    );
}

/// The `[section]` lines of an ini, as `key = value` strings, in file order.
fn section(ini: &str, name: &str) -> Vec<String> {
    let header = format!("[{name}]");
    ini.lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with(';'))
        .map(|l| l.trim().to_string())
        .collect()
}

fn assert_has(lines: &[String], want: &str) {
    assert!(
        lines.iter().any(|l| l == want),
        "{want:?} not among:\n{}",
        lines.join("\n")
    );
}

#[test]
fn edoburu_database_url_becomes_a_database_entry_and_an_md5_userlist_line() {
    let dir = Scratch::new("edoburu-url");
    let env = [
        // Percent-encoded @ in the password, and a colon after it.
        (
            "DATABASE_URL",
            "postgres://app:p%40ss:w@db.internal:5433/appdb?sslmode=require",
        ),
        ("POOL_MODE", "transaction"),
        ("MAX_CLIENT_CONN", "1000"),
        ("SERVER_RESET_QUERY", "DISCARD ALL"),
    ];
    let dry = dry_run(&dir, &env, &[]);
    assert_eq!(
        dry.exec,
        format!("pgbouncer-rs {}/pgbouncer.ini", dir.display())
    );
    assert!(dry.env.is_empty(), "{:?}", dry.env);

    let ini = dir.read("pgbouncer.ini");
    assert_eq!(
        section(&ini, "databases"),
        ["appdb = host=db.internal port=5433 auth_user=app"]
    );
    let settings = section(&ini, "pgbouncer");
    for want in [
        // edoburu/pgbouncer's defaults: every address, port 5432, no Unix socket.
        "listen_addr = 0.0.0.0",
        "listen_port = 5432",
        "unix_socket_dir =",
        &format!("auth_file = {}/userlist.txt", dir.display()),
        "auth_type = md5",
        "admin_users = postgres",
        "ignore_startup_parameters = extra_float_digits",
        "pool_mode = transaction",
        "max_client_conn = 1000",
        "server_reset_query = DISCARD ALL",
        "server_tls_sslmode = require",
    ] {
        assert_has(&settings, want);
    }
    // md5 of password + user: printf '%s%s' 'p@ss:w' app | md5sum
    assert_eq!(
        dir.read("userlist.txt"),
        "\"app\" \"md5ee4ecbfb2a2791ef4c5ddeafd0356946\"\n"
    );
    check_config_through_entrypoint(&dir, &env);
}

#[test]
fn edoburu_db_variables_with_scram_store_passwords_and_add_admin_and_stats_users() {
    let dir = Scratch::new("edoburu-vars");
    let env = [
        ("DB_HOST", "postgres"),
        ("DB_PORT", "5432"),
        ("DB_USER", "app"),
        ("DB_PASSWORD", "s3cret \"quoted\""),
        ("DB_NAME", "app"),
        ("AUTH_TYPE", "scram-sha-256"),
        ("LISTEN_PORT", "6432"),
        ("ADMIN_USERS", "admin,ops"),
        ("ADMIN_PASSWORDS", "adminpw,opspw"),
        ("STATS_USERS", "stats"),
        ("STATS_PASSWORDS", "statspw"),
        ("POOL_SIZE", "7"),
        ("CLIENT_ENCODING", "UTF8"),
        ("TIMEZONE", "UTC"),
        ("DEFAULT_POOL_SIZE", "20"),
        ("RESERVE_POOL_SIZE", "5"),
    ];
    dry_run(&dir, &env, &[]);
    let ini = dir.read("pgbouncer.ini");
    // POOL_SIZE, CLIENT_ENCODING and TIMEZONE are per-database settings.
    assert_eq!(
        section(&ini, "databases"),
        ["app = host=postgres port=5432 auth_user=app pool_size=7 client_encoding=UTF8 timezone=UTC"]
    );
    let settings = section(&ini, "pgbouncer");
    for want in [
        "listen_port = 6432",
        "auth_type = scram-sha-256",
        "admin_users = admin,ops",
        "stats_users = stats",
        "default_pool_size = 20",
        "reserve_pool_size = 5",
    ] {
        assert_has(&settings, want);
    }
    assert!(
        !settings.iter().any(|l| l.starts_with("pool_size")),
        "{settings:?}"
    );
    // scram-sha-256 keeps the password itself (the pooler needs it to run SCRAM towards
    // PostgreSQL); a " in a field is written "".
    assert_eq!(
        dir.read("userlist.txt"),
        "\"app\" \"s3cret \"\"quoted\"\"\"\n\"admin\" \"adminpw\"\n\"ops\" \"opspw\"\n\"stats\" \"statspw\"\n"
    );
    check_config_through_entrypoint(&dir, &env);
}

#[test]
fn edoburu_database_urls_give_one_entry_and_one_user_each() {
    let dir = Scratch::new("edoburu-urls");
    let env = [(
        "DATABASE_URLS",
        "postgres://foo:123@h1/foo,postgres://bar:456@h2:6000/bar",
    )];
    dry_run(&dir, &env, &[]);
    let ini = dir.read("pgbouncer.ini");
    // Each URL stands alone: the second one's port does not carry over, nor the first's.
    assert_eq!(
        section(&ini, "databases"),
        [
            "foo = host=h1 port=5432 auth_user=foo",
            "bar = host=h2 port=6000 auth_user=bar"
        ]
    );
    let users = dir.read("userlist.txt");
    assert_eq!(users.lines().count(), 2, "{users}");
    assert!(users.starts_with("\"foo\" \"md5"), "{users}");
    assert!(users.contains("\n\"bar\" \"md5"), "{users}");
    check_config_through_entrypoint(&dir, &env);
}

#[test]
fn bitnami_variables_are_translated_and_unset_before_the_pooler_starts() {
    let dir = Scratch::new("bitnami");
    let env = [
        ("POSTGRESQL_HOST", "pg.internal"),
        ("POSTGRESQL_PORT", "5433"),
        ("POSTGRESQL_USERNAME", "app"),
        ("POSTGRESQL_PASSWORD", "it's a \"secret\""),
        ("POSTGRESQL_DATABASE", "app_production"),
        ("PGBOUNCER_DATABASE", "app"),
        ("PGBOUNCER_PORT", "6543"),
        ("PGBOUNCER_SET_DATABASE_USER", "yes"),
        ("PGBOUNCER_SET_DATABASE_PASSWORD", "yes"),
        (
            "PGBOUNCER_DSN_0",
            "reports=host=replica dbname=app_production",
        ),
        ("PGBOUNCER_USERLIST", "\"reader\" \"readerpw\""),
        ("PGBOUNCER_EXTRA_FLAGS", "--verbose"),
        ("PGBOUNCER_INIT_SLEEP_TIME", "10"),
        // A real key: left for pgbouncer-rs to apply.
        ("PGBOUNCER_POOL_MODE", "transaction"),
        ("PGBOUNCER_DEFAULT_POOL_SIZE", "15"),
    ];
    let dry = dry_run(&dir, &env, &[]);
    assert_eq!(
        dry.exec,
        format!("pgbouncer-rs --verbose {}/pgbouncer.ini", dir.display())
    );
    assert_eq!(
        dry.env.keys().collect::<Vec<_>>(),
        ["PGBOUNCER_DEFAULT_POOL_SIZE", "PGBOUNCER_POOL_MODE"],
        "only real keys may reach the pooler"
    );

    let ini = dir.read("pgbouncer.ini");
    assert_eq!(
        section(&ini, "databases"),
        [
            "app = host=pg.internal port=5433 user=app password='it''s a \"secret\"' dbname=app_production",
            "reports = host=replica dbname=app_production",
        ]
    );
    let settings = section(&ini, "pgbouncer");
    for want in [
        "listen_port = 6543",
        "listen_addr = 0.0.0.0",
        "unix_socket_dir = /tmp/",
        "auth_type = scram-sha-256",
        "admin_users = app",
        "server_tls_sslmode = disable",
        "client_tls_sslmode = disable",
    ] {
        assert_has(&settings, want);
    }
    assert_eq!(
        dir.read("userlist.txt"),
        "\"app\" \"it's a \"\"secret\"\"\"\n\"reader\" \"readerpw\"\n"
    );
    check_config_through_entrypoint(&dir, &env);

    // The control: the same environment given to the binary directly is refused, which is
    // why the entrypoint unsets bitnami's names.
    let out = run_binary_check(&dir.path("pgbouncer.ini"), &env);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown parameter"),
        "{}",
        text(&out.stderr)
    );
}

fn run_binary_check(ini: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgbouncer-rs"));
    cmd.arg("--check-config").arg(ini).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd)
}

#[test]
fn bitnami_secrets_are_read_from_name_file_variables() {
    let dir = Scratch::new("bitnami-files");
    let password = dir.path("password");
    std::fs::write(&password, "from-a-file\n").unwrap();
    let password = password.display().to_string();
    let env = [
        ("POSTGRESQL_HOST", "pg"),
        ("POSTGRESQL_PASSWORD_FILE", password.as_str()),
    ];
    let dry = dry_run(&dir, &env, &[]);
    assert!(dry.env.is_empty(), "{:?}", dry.env);
    assert_eq!(dir.read("userlist.txt"), "\"postgres\" \"from-a-file\"\n");
    // bitnami's defaults: database "postgres" on host:5432, listening on 6432.
    assert_eq!(
        section(&dir.read("pgbouncer.ini"), "databases"),
        ["postgres = host=pg port=5432 dbname=postgres"]
    );
    assert_has(
        &section(&dir.read("pgbouncer.ini"), "pgbouncer"),
        "listen_port = 6432",
    );
    check_config_through_entrypoint(&dir, &env);

    let missing = [
        ("POSTGRESQL_HOST", "pg"),
        ("POSTGRESQL_PASSWORD_FILE", "/nonexistent/password"),
    ];
    let out = run(entrypoint_cmd(&dir, &missing, &[]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("POSTGRESQL_PASSWORD_FILE: cannot read /nonexistent/password"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_pgbouncer_image_style_passes_through_with_that_images_defaults() {
    let dir = Scratch::new("native");
    let env = [
        ("DATABASES_HOST", "db.internal"),
        ("DATABASES_PORT", "5432"),
        ("DATABASES_USER", "app"),
        ("DATABASES_PASSWORD", "apppw"),
        ("DATABASES_DBNAME", "app"),
        ("PGBOUNCER_LISTEN_PORT", "6500"),
        ("PGBOUNCER_POOL_MODE", "transaction"),
        // An edoburu name, which that image ignores: the entrypoint says so.
        ("MAX_CLIENT_CONN", "1000"),
    ];
    let dry = dry_run(&dir, &env, &[]);
    assert_eq!(
        dry.exec,
        format!("pgbouncer-rs {}/pgbouncer.ini", dir.display())
    );
    // DATABASES_* and PGBOUNCER_* go to pgbouncer-rs, which reads them itself.
    assert_eq!(
        dry.env.keys().collect::<Vec<_>>(),
        [
            "DATABASES_DBNAME",
            "DATABASES_HOST",
            "DATABASES_PASSWORD",
            "DATABASES_PORT",
            "DATABASES_USER",
            "PGBOUNCER_LISTEN_PORT",
            "PGBOUNCER_POOL_MODE"
        ]
    );
    assert_eq!(dry.env["DATABASES_PASSWORD"], "(hidden)");
    assert!(
        dry.stderr.contains("ignored: MAX_CLIENT_CONN"),
        "{}",
        dry.stderr
    );
    let ini = dir.read("pgbouncer.ini");
    assert!(section(&ini, "databases").is_empty(), "{ini}");
    assert_eq!(
        section(&ini, "pgbouncer"),
        [
            "listen_addr = 0.0.0.0",
            "auth_type = any",
            "admin_users = postgres",
            "ignore_startup_parameters = extra_float_digits"
        ]
    );
    check_config_through_entrypoint(&dir, &env);
}

/// KEY=value lines of a docker --env-file (comments and blank lines skipped).
fn env_file(rel: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_file(rel)).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn the_documented_container_env_file_works_through_the_entrypoint() {
    let dir = Scratch::new("container-env");
    let vars = env_file("docs/deployments/container.env");
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dry = dry_run(&dir, &env, &[]);
    // Everything in it is for pgbouncer-rs itself, and reaches it unchanged.
    assert_eq!(dry.env.len(), vars.len(), "{:?}", dry.env);
    assert_eq!(dry.env["PGBOUNCER_AUTH_TYPE"], "any");
    check_config_through_entrypoint(&dir, &env);
}

#[test]
fn databases_variables_beyond_the_basic_five_are_written_into_the_ini() {
    let dir = Scratch::new("native-extended");
    let env = [
        ("DATABASES_HOST", "db.internal"),
        ("DATABASES_USER", "app"),
        ("DATABASES_CLIENT_SIDE_DBNAME", "app"),
        ("DATABASES_POOL_SIZE", "5"),
        ("DATABASES_POOL_MODE", "session"),
        ("PGBOUNCER_AUTH_TYPE", "any"),
    ];
    let dry = dry_run(&dir, &env, &[]);
    // The entry is in the file, so pgbouncer-rs must not add its own "*" entry.
    assert_eq!(dry.env.keys().collect::<Vec<_>>(), ["PGBOUNCER_AUTH_TYPE"]);
    assert_eq!(
        section(&dir.read("pgbouncer.ini"), "databases"),
        ["app = host=db.internal port=5432 user=app pool_size=5 pool_mode=session"]
    );
    check_config_through_entrypoint(&dir, &env);
}

#[test]
fn a_mounted_or_given_config_file_is_used_unchanged() {
    let dir = Scratch::new("mounted");
    std::fs::create_dir_all(dir.path("mounted")).unwrap();
    let users = dir.path("mounted/userlist.txt");
    std::fs::write(&users, "\"u\" \"p\"\n").unwrap();
    let mine = format!(
        "[databases]\nx = host=h\n[pgbouncer]\nauth_file = {}\nlisten_port = 7000\n",
        users.display()
    );
    std::fs::write(dir.path("mounted/pgbouncer.ini"), &mine).unwrap();
    let env = [("DB_HOST", "ignored"), ("PGBOUNCER_PORT", "6543")];

    let dry = dry_run(&dir, &env, &[]);
    assert_eq!(
        dry.exec,
        format!("pgbouncer-rs {}/mounted/pgbouncer.ini", dir.display())
    );
    assert!(
        dry.env.is_empty(),
        "PGBOUNCER_PORT must be unset: {:?}",
        dry.env
    );
    assert!(dry.stderr.contains("unchanged"), "{}", dry.stderr);
    assert!(!dir.path("pgbouncer.ini").exists(), "nothing generated");
    assert_eq!(dir.read("mounted/pgbouncer.ini"), mine);
    check_config_through_entrypoint(&dir, &env);

    // As an argument, after flags, and with `pgbouncer-rs` itself as the first word.
    let given = dir.path("mounted/pgbouncer.ini").display().to_string();
    let dry = dry_run(&dir, &env, &["pgbouncer-rs", "-v", &given]);
    assert_eq!(dry.exec, format!("pgbouncer-rs -v {given}"));
}

#[test]
fn a_file_generated_by_an_earlier_start_is_written_again() {
    let dir = Scratch::new("regenerate");
    dry_run(&dir, &[("DB_HOST", "db"), ("POOL_MODE", "session")], &[]);
    assert_has(
        &section(&dir.read("pgbouncer.ini"), "pgbouncer"),
        "pool_mode = session",
    );
    // A container restart with a changed environment: the old generated file must not
    // be mistaken for a mounted one.
    dry_run(
        &dir,
        &[("DB_HOST", "db"), ("POOL_MODE", "transaction")],
        &[],
    );
    assert_has(
        &section(&dir.read("pgbouncer.ini"), "pgbouncer"),
        "pool_mode = transaction",
    );
}

#[test]
fn the_entrypoint_refuses_no_configuration_and_mixed_styles_with_a_hint() {
    let dir = Scratch::new("refuse");
    let out = run(entrypoint_cmd(&dir, &[], &[]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nothing to configure"),
        "{}",
        text(&out.stderr)
    );

    let mixed = [
        ("DB_HOST", "a"),
        ("POSTGRESQL_HOST", "b"),
        ("POSTGRESQL_PASSWORD", "x"),
    ];
    let out = run(entrypoint_cmd(&dir, &mixed, &[]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("keep one set"),
        "{}",
        text(&out.stderr)
    );

    let no_password = [("POSTGRESQL_HOST", "b")];
    let out = run(entrypoint_cmd(&dir, &no_password, &[]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("POSTGRESQL_PASSWORD must be set"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn another_command_given_to_the_image_runs_instead_of_the_pooler() {
    let dir = Scratch::new("command");
    let out = run(entrypoint_cmd(&dir, &[], &["echo", "hello from sh"]));
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "hello from sh\n");
}

#[test]
fn metrics_port_turns_on_the_metrics_endpoint_on_every_address() {
    let dir = Scratch::new("metrics");
    let env = [("DB_HOST", "db"), ("METRICS_PORT", "9127")];
    dry_run(&dir, &env, &[]);
    let settings = section(&dir.read("pgbouncer.ini"), "pgbouncer");
    assert_has(&settings, "metrics_listen_addr = 0.0.0.0");
    assert_has(&settings, "metrics_listen_port = 9127");
    check_config_through_entrypoint(&dir, &env);
}

/// The ConfigMap's pgbouncer.ini and the Secret's userlist.txt, as the pod mounts them,
/// pass `--check-config` (with auth_file pointed at the scratch copy).
#[test]
fn the_kubernetes_configmap_ini_and_secret_userlist_pass_check_config() {
    let dir = Scratch::new("k8s");
    let read = |rel: &str| std::fs::read_to_string(repo_file(rel)).unwrap();
    let ini = literal_block(&read("deploy/kubernetes/configmap.yaml"), "pgbouncer.ini");
    let users = literal_block(&read("deploy/kubernetes/secret.yaml"), "userlist.txt");
    let mounted = "auth_file = /etc/pgbouncer-rs/userlist.txt";
    assert!(ini.contains(mounted), "{ini}");
    let ini = ini.replace(
        mounted,
        &format!("auth_file = {}", dir.path("userlist.txt").display()),
    );
    std::fs::write(dir.path("pgbouncer.ini"), ini).unwrap();
    std::fs::write(dir.path("userlist.txt"), users).unwrap();
    let out = run_binary_check(&dir.path("pgbouncer.ini"), &[]);
    assert!(
        out.status.success() && text(&out.stdout).contains("configuration OK"),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The body of the YAML literal block `key: |` (the first one), dedented. Enough for the
/// two files above, which xtask/deploy_check.py also parses as YAML.
fn literal_block(yaml: &str, key: &str) -> String {
    let header = format!("{key}: |");
    let mut lines = yaml.lines().skip_while(|l| l.trim() != header);
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let key_indent = indent_of(lines.next().unwrap_or_else(|| panic!("no {header}")));
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || indent_of(l) > key_indent)
        .collect();
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent_of(l))
        .min()
        .unwrap();
    let mut out = String::new();
    for line in body {
        out.push_str(line.get(indent..).unwrap_or(""));
        out.push('\n');
    }
    out
}

/// A one-shot HTTP server on 127.0.0.1 that answers `status_line`; returns its port and
/// a receiver for the request line it got.
fn one_shot_http(status_line: &'static str) -> (u16, Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        // The whole request, up to the blank line: closing with unread bytes would
        // reset the connection before the client reads the answer.
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request = String::new();
        reader.read_line(&mut request).unwrap();
        let mut header = String::new();
        while reader.read_line(&mut header).unwrap() > 0 && header.trim_end() != "" {
            header.clear();
        }
        let _ = tx.send(request.trim_end().to_string());
        let _ = write!(stream, "{status_line}\r\nContent-Length: 0\r\n\r\n");
    });
    (port, rx)
}

fn healthcheck(port: u16, path: &str) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg(repo_file("deploy/docker/healthcheck.sh"))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("METRICS_PORT", port.to_string())
        .env("HEALTHCHECK_PATH", path);
    run(cmd)
}

/// The body of `GET path` on 127.0.0.1:port (HTTP/1.0: the server closes when done).
fn http_get(port: u16, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    body.to_string()
}

/// Every metric the alert rules use is served, and the two that PgBouncerPoolOverProvisioned
/// compares carry the same labels (its default one-to-one matching needs that).
fn check_alert_metrics(metrics: &str, db: &str) {
    let rules = std::fs::read_to_string(repo_file("deploy/prometheus/alerts.yml")).unwrap();
    let mut names: Vec<&str> = Vec::new();
    for line in rules.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find("pgbouncer_") {
            let name: &str = rest[at..]
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap();
            names.push(name);
            rest = &rest[at + name.len()..];
        }
    }
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 7, "{names:?}");
    for name in &names {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "alerts.yml uses {name}, which /metrics does not serve"
        );
    }
    let labels_of = |family: &str| -> String {
        let prefix = format!("{family}{{");
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&prefix) && l.contains(&format!("database=\"{db}\"")))
            .unwrap_or_else(|| panic!("no {family} series for {db}"));
        line[prefix.len()..line.find('}').unwrap()].to_string()
    };
    let mut idle: Vec<String> = labels_of("pgbouncer_pools_server_idle_connections")
        .split(',')
        .map(str::to_string)
        .collect();
    let mut size: Vec<String> = labels_of("pgbouncer_pool_size")
        .split(',')
        .map(str::to_string)
        .collect();
    idle.sort();
    size.sort();
    assert_eq!(idle, size, "label sets differ");
}

#[test]
fn the_image_healthcheck_passes_on_200_from_healthz_and_fails_otherwise() {
    let (port, request) = one_shot_http("HTTP/1.1 200 OK");
    let out = healthcheck(port, "/healthz");
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(request.recv().unwrap(), "GET /healthz HTTP/1.0");

    let (port, _) = one_shot_http("HTTP/1.1 503 Service Unavailable");
    let out = healthcheck(port, "/readyz");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("503"), "{}", text(&out.stdout));

    // Nobody listening: a port that was free a moment ago.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = healthcheck(closed, "/healthz");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("cannot connect"),
        "{}",
        text(&out.stdout)
    );
}

/// The pooler started through the entrypoint; killed and reaped on drop.
struct Pooler {
    child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
}

impl Pooler {
    fn spawn(mut cmd: Command) -> Pooler {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Pooler {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits (bounded) for a log line containing `needle`, or finds it among the lines
    /// already read.
    fn wait_for(&mut self, needle: &str) {
        if self.log.iter().any(|l| l.contains(needle)) {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.log.push(line);
                    if found {
                        return;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("no {needle:?} in the log:\n{}", self.log.join("\n"));
    }

    /// Sends `signal` to the entrypoint's PID, which exec made the pooler's, and waits
    /// (bounded) for the exit status.
    fn stop(mut self, signal: &str) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            // Drain the log meanwhile; this is the bounded wait for the exit.
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.log.push(line);
            }
        }
        panic!(
            "the pooler did not exit on {signal}:\n{}",
            self.log.join("\n")
        );
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn psql(pg: &PgCluster, port: u16, user: &str, password: &str, db: &str, sql: &str) -> Output {
    let mut cmd = Command::new(pg.bin_dir().join("psql"));
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .arg(format!(
            "host=127.0.0.1 port={port} user={user} dbname={db} connect_timeout=10"
        ))
        .env_clear()
        .env("PGPASSWORD", password);
    run(cmd)
}

fn django_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import django, psycopg"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let ci = std::env::var("CI")
            .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
        assert!(
            !ci,
            "CI is set but Django or psycopg is missing; .ci/install installs them"
        );
        eprintln!("SKIPPED: Django or psycopg not installed: the Django part of this test");
    }
    ok
}

/// `python3 ARGS` in the demo app's directory with the DB_* settings of the pooler.
fn django(port: u16, db: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("python3");
    cmd.args(args)
        .current_dir(repo_file("deploy/docker/django-app"))
        // No __pycache__ left in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("DJANGO_SETTINGS_MODULE", "demo.settings")
        .env("DB_HOST", "127.0.0.1")
        .env("DB_PORT", port.to_string())
        .env("DB_NAME", db)
        .env("DB_USER", SCRAM_USER)
        .env("DB_PASSWORD", SCRAM_PASSWORD)
        .env("DB_CONN_MAX_AGE", "0");
    run(cmd)
}

const DJANGO_REQUESTS: &str = r#"
import json, django
django.setup()
from django.test import Client
client = Client()
counts = [json.loads(client.get("/").content)["hits"] for _ in range(5)]
assert counts == list(range(counts[0], counts[0] + 5)), counts
assert client.get("/health/").status_code == 200
print("hits", counts)
"#;

#[test]
fn the_compose_env_file_starts_a_pooler_that_serves_psql_the_console_and_django() {
    if !require_postgres() {
        return;
    }
    let pg = PgCluster::shared().unwrap();
    let db = "django_demo";
    pg.create_database(db, SCRAM_USER).unwrap();
    let dir = Scratch::new("compose");
    let port = free_port();

    // deploy/docker/pgbouncer.env with the demo's host, database and role replaced by
    // the test cluster's; LISTEN_ADDR keeps the pooler on loopback. Everything else is
    // as docker compose passes it.
    let overrides = BTreeMap::from([
        ("DB_HOST", "127.0.0.1".to_string()),
        ("DB_PORT", pg.port().to_string()),
        ("DB_NAME", db.to_string()),
        ("DB_USER", SCRAM_USER.to_string()),
        ("DB_PASSWORD", SCRAM_PASSWORD.to_string()),
        ("LISTEN_PORT", port.to_string()),
    ]);
    let mut env: Vec<(String, String)> = env_file("deploy/docker/pgbouncer.env")
        .into_iter()
        .map(|(k, v)| {
            let v = overrides.get(k.as_str()).cloned().unwrap_or(v);
            (k, v)
        })
        .collect();
    for k in overrides.keys() {
        assert!(
            env.iter().any(|(n, _)| n == k),
            "{k} missing from pgbouncer.env"
        );
    }
    env.push(("LISTEN_ADDR".into(), "127.0.0.1".into()));
    // The image sets METRICS_PORT=9127 (Dockerfile ENV); here a free port, on loopback.
    let metrics_port = free_port();
    env.push(("METRICS_PORT".into(), metrics_port.to_string()));
    env.push(("METRICS_ADDR".into(), "127.0.0.1".into()));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    let mut pooler = Pooler::spawn(entrypoint_cmd(&dir, &env_refs, &[]));
    pooler.wait_for(&format!(
        "metrics listening on http://127.0.0.1:{metrics_port}"
    ));
    pooler.wait_for(&format!("listening on 127.0.0.1:{port}"));
    // The image's HEALTHCHECK, against the real /healthz.
    let out = healthcheck(metrics_port, "/healthz");
    assert!(out.status.success(), "healthcheck: {}", text(&out.stdout));

    // The role logs in to the pooler with SCRAM; the pooler logs in to PostgreSQL with
    // the password from the generated userlist.
    let out = psql(
        pg,
        port,
        SCRAM_USER,
        SCRAM_PASSWORD,
        db,
        "SELECT current_user",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), SCRAM_USER);
    let wrong = psql(pg, port, SCRAM_USER, "wrong", db, "SELECT 1");
    assert!(!wrong.status.success());

    // ADMIN_USERS / ADMIN_PASSWORD: the console.
    let out = psql(
        pg,
        port,
        "admin",
        "admin-password",
        "pgbouncer",
        "SHOW POOLS",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(db), "{}", text(&out.stdout));

    // /readyz once a server login has worked (the Kubernetes readiness probe).
    let out = healthcheck(metrics_port, "/readyz");
    assert!(out.status.success(), "readyz: {}", text(&out.stdout));
    check_alert_metrics(&http_get(metrics_port, "/metrics"), db);

    // The demo app, with its own settings, through the pooler in transaction mode.
    if django_available() {
        let out = django(port, db, &["manage.py", "migrate", "--noinput"]);
        assert!(out.status.success(), "migrate: {}", text(&out.stderr));
        let out = django(port, db, &["-c", DJANGO_REQUESTS]);
        assert!(
            out.status.success(),
            "requests: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        // A new database: the five requests saw hits 1 to 5, each in its transaction.
        assert_eq!(text(&out.stdout).trim(), "hits [1, 2, 3, 4, 5]");
    }

    // docker stop sends SIGINT (the image's STOPSIGNAL): safe shutdown, exit 0.
    let status = pooler.stop("-INT");
    assert!(status.success(), "{status:?}");
}
