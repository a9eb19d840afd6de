//! Storage: one [`Db`] over either SQLite (the default, a file under the data dir) or
//! PostgreSQL (by URL), with embedded migrations for each.
//!
//! Queries are plain `sqlx::query` with `$N` binds, which both engines accept, and the
//! [`on_db!`](crate::on_db) macro runs the same code against whichever pool is open, so every
//! statement is written once and the test suite runs it on both engines. Column types are the
//! ones both map the same way: `BIGINT` (i64), `DOUBLE PRECISION` (f64), `TEXT`; aggregates are
//! cast back to them because PostgreSQL widens `SUM(bigint)` to `numeric`.
//!
//! A PostgreSQL server that is not on this host is reached only over TLS that checks the
//! server's certificate (`sslmode=verify-ca` or `verify-full`, with `sslrootcert=` naming the
//! CA): the connection carries the database password and every agent's credentials, and
//! `sslmode=prefer` or `require` lets anyone on the path read or change it.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// An open database: the console's only state.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Run `$body` with `$pool` bound to the open pool, whichever engine it is.
#[macro_export]
macro_rules! on_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// A write transaction on either engine: `pool.begin_write()` inside [`on_db!`].
///
/// On SQLite a plain `BEGIN` is deferred: it takes the write lock at its first write, and when
/// another connection has committed since the transaction's first read, that write fails at
/// once with "database is locked" (`SQLITE_BUSY_SNAPSHOT`, 517) instead of waiting out the busy
/// timeout: an operator's `POST /api/v1/operators` failed so beside the guest drill's
/// check-ins. `BEGIN IMMEDIATE` takes the lock at the start, where the busy timeout applies.
/// PostgreSQL's `BEGIN` is unchanged. The agents' hot paths (check-ins, findings uploads) keep
/// `begin()`: they write at once, and an agent retries a failed call.
pub trait BeginWrite {
    type Engine: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, Self::Engine>, sqlx::Error>,
    > + Send;
}

impl BeginWrite for SqlitePool {
    type Engine = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error>,
    > + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for PgPool {
    type Engine = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<
        Output = Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error>,
    > + Send {
        self.begin()
    }
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL must start with sqlite: or postgres://, got {0:?}")]
    Url(String),
    #[error(
        "refusing {url}: the PostgreSQL server {host} is not on this host, and sslmode is {mode}; \
         the connection would carry the database password and agent credentials unchecked. \
         Add sslmode=verify-full&sslrootcert=PATH-TO-CA.pem to the URL"
    )]
    UncheckedTls {
        url: String,
        host: String,
        mode: &'static str,
    },
    #[error("opening {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    #[error("migrating {url}: {source}")]
    Migrate {
        url: String,
        source: sqlx::migrate::MigrateError,
    },
}

impl Db {
    /// Open (creating a SQLite file if needed) and migrate. `url` is `sqlite:PATH` or
    /// `postgres://…`.
    pub async fn open(url: &str) -> Result<Db, DbError> {
        let open_err = |source| DbError::Open {
            url: redact(url),
            source,
        };
        let db = if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
                .map_err(open_err)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .pragma("cache_size", "-65536")
                // Reads straight from the page cache: each pool connection's own cache is
                // invalidated by the others' commits, and re-reading through read(2) copies.
                .pragma("mmap_size", "268435456");
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(opts)
                .await
                .map_err(open_err)?;
            Db::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).map_err(open_err)?;
            check_postgres_tls(&opts, url)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(open_err)?;
            Db::Postgres(pool)
        } else {
            return Err(DbError::Url(redact(url)));
        };
        db.migrate().await.map_err(|source| DbError::Migrate {
            url: redact(url),
            source,
        })?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Db::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await,
            Db::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
        }
    }

    /// Which engine: `"sqlite"` or `"postgres"`.
    pub fn engine(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        on_db!(self, |pool| pool.close().await)
    }
}

/// Refuse a PostgreSQL server off this host unless TLS checks its certificate. A Unix
/// socket or a loopback address never leaves the host, so any mode is fine there.
fn check_postgres_tls(opts: &PgConnectOptions, url: &str) -> Result<(), DbError> {
    if opts.get_socket().is_some() || is_local_host(opts.get_host()) {
        return Ok(());
    }
    let mode = match opts.get_ssl_mode() {
        PgSslMode::VerifyCa | PgSslMode::VerifyFull => return Ok(()),
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer (the default)",
        PgSslMode::Require => "require (encrypted, but the server is not checked)",
    };
    Err(DbError::UncheckedTls {
        url: redact(url),
        host: opts.get_host().to_owned(),
        mode,
    })
}

/// A host name that cannot leave this machine: `localhost`, a loopback address, or a socket
/// directory (PostgreSQL takes a path as the host).
fn is_local_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.starts_with('/')
        || bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write transaction that reads first, while another connection writes and commits:
    /// with a deferred `BEGIN` its write fails at once ("database is locked", 517); with
    /// `begin_write` the other waits for it.
    #[tokio::test]
    async fn a_write_transaction_that_read_first_is_not_refused_by_another_writer() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite:{}", dir.path().join("c.db").display()))
            .await
            .unwrap();
        let Db::Sqlite(pool) = db else {
            panic!("sqlite")
        };
        sqlx::query("CREATE TABLE scratch (x INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        let mut tx = pool.begin_write().await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM scratch")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        let other_pool = pool.clone();
        let other = tokio::spawn(async move {
            let mut tx = other_pool.begin_write().await?;
            sqlx::query("INSERT INTO scratch VALUES (2)")
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        sqlx::query("INSERT INTO scratch VALUES ($1)")
            .bind(n + 1)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        other.await.unwrap().unwrap();
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM scratch")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 2);
    }

    #[test]
    fn a_remote_postgres_needs_tls_that_checks_the_server() {
        let check = |url: &str| {
            let opts = PgConnectOptions::from_str(url).map_err(|e| e.to_string())?;
            check_postgres_tls(&opts, url).map_err(|e| e.to_string())
        };
        for local in [
            "postgres://u@127.0.0.1/db",
            "postgres://u@localhost:5433/db",
            "postgres://u@[::1]/db",
            "postgres:///db?host=/var/run/postgresql",
        ] {
            assert_eq!(check(local), Ok(()), "{local}");
        }
        for checked in [
            "postgres://u@db.internal/db?sslmode=verify-full&sslrootcert=/etc/ca.pem",
            "postgres://u@10.0.0.5/db?sslmode=verify-ca",
        ] {
            assert_eq!(check(checked), Ok(()), "{checked}");
        }
        for unchecked in [
            "postgres://u:secret@db.internal/db",
            "postgres://u@10.0.0.5/db?sslmode=require",
            "postgres://u@10.0.0.5/db?sslmode=disable",
        ] {
            let err = check(unchecked).expect_err(unchecked);
            assert!(err.contains("sslmode=verify-full"), "{err}");
            assert!(!err.contains("secret"), "the password leaked into {err}");
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(redact("sqlite:/x/y.db"), "sqlite:/x/y.db");
    }
}
