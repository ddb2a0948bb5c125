//! `cargo xtask pg`: a throwaway PostgreSQL from `pg-harness` to poke at by hand; it lives
//! until stdin closes (Ctrl-D) or Ctrl-C (the harness's watchdog then cleans up).

use pg_harness::{ClusterOptions, PgCluster, APP_DB, MD5_PASSWORD, MD5_USER, SUPERUSER};

use crate::{Failure, Outcome};

/// Parses `[--max-connections N]`, starts the cluster, prints how to connect, waits.
pub(crate) fn run(args: &[&str]) -> Outcome {
    let mut opts = ClusterOptions::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match *arg {
            "--max-connections" => {
                let value = args
                    .next()
                    .ok_or_else(|| Failure::Usage("--max-connections needs a value".into()))?;
                opts.max_connections = value.parse().map_err(|_| {
                    Failure::Usage(format!("--max-connections: `{value}` is not a number"))
                })?;
            }
            other => return Err(Failure::Usage(format!("unexpected argument `{other}`"))),
        }
    }
    println!(
        "starting PostgreSQL (max_connections = {})...",
        opts.max_connections
    );
    let cluster = PgCluster::start(opts).map_err(|e| Failure::Failed(e.to_string()))?;
    println!(
        "PostgreSQL is up; binaries in {}",
        cluster.bin_dir().display()
    );
    println!("  data dir:         {}", cluster.data_dir().display());
    println!(
        "  superuser, TCP:   psql \"{}\"",
        cluster.conninfo(SUPERUSER, None, "postgres")
    );
    println!(
        "  superuser, unix:  psql \"{}\"",
        cluster.socket_conninfo(SUPERUSER, "postgres")
    );
    println!(
        "  md5user:          psql \"{}\"",
        cluster.conninfo(MD5_USER, Some(MD5_PASSWORD), APP_DB)
    );
    println!("press Ctrl-D (close stdin) or Ctrl-C to stop");
    // Blocks until EOF; a read error means stdin is gone, which also means stop.
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    println!("stopping PostgreSQL");
    cluster.stop();
    Ok(())
}
