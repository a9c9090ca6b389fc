//! Connection pool, database creation, migrations and the translation of
//! driver errors into [`StoreError`], plus the small helpers every query
//! shares (timestamps, chunked multi-row statements, transaction retries).

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use order_core::ports::StoreError;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPool, MySqlPoolOptions};
use sqlx::{AssertSqlSafe, Connection, Executor, Row};

/// An append-only migration: `version` is the file's number.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const MIGRATIONS: &[Migration] =
    order_core::write_side_migrations!(Migration, "../migrations/");

/// Database used when the URL names none (the original service's).
pub const DEFAULT_DATABASE: &str = "order_write_db";

/// How [`crate::MySqlStore`] connects. Build with [`MySqlConfig::new`] and
/// the `with_*` methods.
#[derive(Clone, Debug)]
pub struct MySqlConfig {
    /// `mysql://user:password@host:port/database`; the database is created
    /// when missing ([`DEFAULT_DATABASE`] when the URL names none).
    pub url: String,
    /// Size of the connection pool (default 16).
    pub max_connections: u32,
    /// Longest wait for a connection, including connecting (default 5 s);
    /// after it the operation fails with `StoreError::Unavailable`.
    pub acquire_timeout: Duration,
    /// Longest time one store operation may take (default 30 s); a server
    /// that stops answering gives `StoreError::Unavailable` instead of a hang.
    pub operation_timeout: Duration,
    /// Always read the positions of inserted events back instead of
    /// computing them from the first id. Chosen automatically when the
    /// server may hand one multi-row INSERT non-consecutive ids
    /// (`innodb_autoinc_lock_mode = 2`, MySQL 8's default, or an
    /// `auto_increment_increment` above 1); forcing it is for tests.
    pub read_back_positions: bool,
    /// TLS to the server; `None`: as the URL says (`ssl-mode`, `ssl-ca`),
    /// else `preferred`.
    pub tls: Option<Tls>,
}

/// How the connection to the server is protected (MySQL's `--ssl-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text only.
    Disabled,
    /// TLS when the server offers it, else plain text.
    Preferred,
    /// TLS or no connection; the certificate is not checked.
    Required,
    /// TLS with a certificate signed by the trusted CA.
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyIdentity,
}

impl TlsMode {
    /// The mode named as in MySQL's `--ssl-mode` (any case, `-` or `_`).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "disabled" => Some(Self::Disabled),
            "preferred" => Some(Self::Preferred),
            "required" => Some(Self::Required),
            "verify-ca" => Some(Self::VerifyCa),
            "verify-identity" => Some(Self::VerifyIdentity),
            _ => None,
        }
    }

    fn sqlx(self) -> sqlx::mysql::MySqlSslMode {
        use sqlx::mysql::MySqlSslMode as M;
        match self {
            Self::Disabled => M::Disabled,
            Self::Preferred => M::Preferred,
            Self::Required => M::Required,
            Self::VerifyCa => M::VerifyCa,
            Self::VerifyIdentity => M::VerifyIdentity,
        }
    }
}

/// TLS settings: the mode and the CA certificates (PEM) to trust instead
/// of the built-in web roots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    pub mode: TlsMode,
    pub ca_file: Option<std::path::PathBuf>,
}

impl MySqlConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(30),
            read_back_positions: false,
            tls: None,
        }
    }

    pub fn with_tls(mut self, tls: Option<Tls>) -> Self {
        self.tls = tls;
        self
    }

    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    pub fn with_acquire_timeout(mut self, d: Duration) -> Self {
        self.acquire_timeout = d;
        self
    }

    pub fn with_operation_timeout(mut self, d: Duration) -> Self {
        self.operation_timeout = d;
        self
    }

    pub fn with_read_back_positions(mut self, on: bool) -> Self {
        self.read_back_positions = on;
        self
    }
}

/// The URL split into the server part and the database name.
struct Target {
    server_url: String,
    database: String,
}

/// Splits `mysql://auth@host:port/db?params` into the server URL (no
/// database) and the database name, which must be a plain identifier.
fn parse_target(url: &str) -> Result<Target, StoreError> {
    let bad = |why: &str| StoreError::Unavailable(format!("bad database URL: {why}"));
    let scheme_end = url
        .find("://")
        .ok_or_else(|| bad("expected mysql://host/database"))?;
    let (scheme, rest) = url.split_at(scheme_end + 3);
    if !scheme.eq_ignore_ascii_case("mysql://") && !scheme.eq_ignore_ascii_case("mariadb://") {
        return Err(bad("the scheme must be mysql://"));
    }
    let (before_query, query) = match rest.find('?') {
        Some(q) => (&rest[..q], &rest[q..]),
        None => (rest, ""),
    };
    let (authority, path) = match before_query.find('/') {
        Some(p) => (&before_query[..p], &before_query[p + 1..]),
        None => (before_query, ""),
    };
    let database = if path.is_empty() {
        DEFAULT_DATABASE.to_owned()
    } else {
        path.to_owned()
    };
    if database.len() > 64
        || !database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
    {
        return Err(bad("the database name must be 1-64 of [A-Za-z0-9_$]"));
    }
    Ok(Target {
        server_url: format!("mysql://{authority}/{query}"),
        database,
    })
}

fn options(url: &str, tls: Option<&Tls>) -> Result<MySqlConnectOptions, StoreError> {
    let opts = MySqlConnectOptions::from_str(url)
        .map(|o| o.statement_cache_capacity(256))
        .map_err(|e| StoreError::Unavailable(format!("bad database URL: {e}")))?;
    Ok(match tls {
        None => opts,
        Some(t) => {
            let opts = opts.ssl_mode(t.mode.sqlx());
            match &t.ca_file {
                Some(ca) => opts.ssl_ca(ca),
                None => opts,
            }
        }
    })
}

/// Creates the pool on the configured database, creating the database when
/// it does not exist yet, and applies pending migrations. Everything is
/// bounded by `acquire_timeout`, so an unreachable server is reported, not
/// waited for.
pub(crate) async fn open_pool(cfg: &MySqlConfig) -> Result<(MySqlPool, String), StoreError> {
    let target = parse_target(&cfg.url)?;
    let deadline = cfg.acquire_timeout + Duration::from_secs(1);
    let connect = async {
        // One direct connection first: an unreachable server fails at once
        // with the real cause (the pool would retry until its timeout), and
        // a missing database is created.
        match probe(cfg, &target).await {
            Err(e) if error_number(&e) == Some(ER_BAD_DB_ERROR) => {
                create_database(cfg, &target).await?
            }
            other => other?,
        }
        build_pool(cfg, &target).await
    };
    let pool = tokio::time::timeout(deadline, connect)
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!(
                "no answer from the database server within {deadline:?}"
            ))
        })?
        .map_err(db_err)?;
    tokio::time::timeout(Duration::from_secs(120), migrate(&pool, &target.database))
        .await
        .map_err(|_| StoreError::Unavailable("migrations did not finish within 120 s".into()))??;
    Ok((pool, target.database))
}

async fn build_pool(cfg: &MySqlConfig, target: &Target) -> Result<MySqlPool, sqlx::Error> {
    let opts = options(&target.server_url, cfg.tls.as_ref())
        .map_err(|e| sqlx::Error::Configuration(e.to_string().into()))?
        .database(&target.database);
    MySqlPoolOptions::new()
        .max_connections(cfg.max_connections)
        .min_connections(0)
        .acquire_timeout(cfg.acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // READ COMMITTED: no gap locks for the version-guarded
                // updates and item deletes, so concurrent commits of other
                // orders never wait on each other; every statement still
                // reads one consistent snapshot.
                conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await?;
                Ok(())
            })
        })
        .connect_with(opts)
        .await
}

async fn probe(cfg: &MySqlConfig, target: &Target) -> Result<(), sqlx::Error> {
    let opts = options(&target.server_url, cfg.tls.as_ref())
        .map_err(|e| sqlx::Error::Configuration(e.to_string().into()))?
        .database(&target.database);
    sqlx::mysql::MySqlConnection::connect_with(&opts)
        .await?
        .close()
        .await
}

async fn create_database(cfg: &MySqlConfig, target: &Target) -> Result<(), sqlx::Error> {
    let opts = options(&target.server_url, cfg.tls.as_ref())
        .map_err(|e| sqlx::Error::Configuration(e.to_string().into()))?;
    let mut conn = sqlx::mysql::MySqlConnection::connect_with(&opts).await?;
    // The name was checked to be a plain identifier in `parse_target`.
    let sql = format!(
        "CREATE DATABASE IF NOT EXISTS `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        target.database
    );
    conn.execute(AssertSqlSafe(sql)).await?;
    tracing::info!(database = %target.database, "created database");
    conn.close().await
}

/// The statements of one migration file: separated by `;` at the end of a
/// line, `--` comment lines dropped. A compound statement (a line `BEGIN`
/// opens it, as in a trigger's body) ends only at the line `END;`.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut compound = false;
    for line in sql.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("--") || trimmed.is_empty() {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        compound |= trimmed.eq_ignore_ascii_case("BEGIN");
        let end = if compound {
            trimmed.eq_ignore_ascii_case("END;")
        } else {
            trimmed.ends_with(';')
        };
        if end {
            compound = false;
            let stmt = current.trim().trim_end_matches(';').trim().to_owned();
            if !stmt.is_empty() {
                out.push(stmt);
            }
            current.clear();
        }
    }
    let rest = current.trim();
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

/// Applies pending migrations under a named lock, so instances starting
/// together on one database apply each migration once.
async fn migrate(pool: &MySqlPool, database: &str) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.map_err(db_err)?;
    let lock = format!("order-store-migrations:{database}");
    let got: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 60)")
        .bind(&lock)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    if got != Some(1) {
        return Err(StoreError::Unavailable(
            "another instance is migrating the database (lock wait timed out)".into(),
        ));
    }
    let result = apply_migrations(&mut conn).await;
    let released = sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(&lock)
        .execute(&mut *conn)
        .await;
    result?;
    released.map(drop).map_err(db_err)
}

async fn apply_migrations(conn: &mut sqlx::mysql::MySqlConnection) -> Result<(), StoreError> {
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT       NOT NULL PRIMARY KEY,
             name       VARCHAR(255) NOT NULL,
             applied_at DATETIME(6)  NOT NULL
         ) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
    )
    .await
    .map_err(db_err)?;
    let current: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)?;
    let known = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    if current > known {
        return Err(StoreError::Corrupt(format!(
            "database schema version {current} is newer than this build knows ({known})"
        )));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        for stmt in statements(m.sql) {
            conn.execute(AssertSqlSafe(stmt)).await.map_err(|e| {
                StoreError::Corrupt(format!("migration {:04}_{} failed: {e}", m.version, m.name))
            })?;
        }
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, UTC_TIMESTAMP(6))",
        )
        .bind(m.version)
        .bind(m.name)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(())
}

/// Whether InnoDB hands out consecutive ids to one multi-row INSERT
/// ("simple inserts" under lock mode 0 or 1, step 1), so positions can be
/// computed from the first id instead of read back.
pub(crate) async fn consecutive_ids(pool: &MySqlPool) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "SELECT CAST(@@innodb_autoinc_lock_mode AS SIGNED), \
         CAST(@@auto_increment_increment AS SIGNED)",
    )
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    let mode: i64 = row.try_get(0).map_err(db_err)?;
    let step: i64 = row.try_get(1).map_err(db_err)?;
    Ok(mode <= 1 && step == 1)
}

// ---------------------------------------------------------------------------
// Error translation
// ---------------------------------------------------------------------------

const ER_BAD_DB_ERROR: u16 = 1049;
const ER_DUP_ENTRY: u16 = 1062;
const ER_DUP_KEY: u16 = 1022;
const ER_DUP_UNIQUE: u16 = 1169;
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
const ER_LOCK_DEADLOCK: u16 = 1213;

/// The server's error number, for a database error.
pub(crate) fn error_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(MySqlDatabaseError::number),
        _ => None,
    }
}

/// A UNIQUE / PRIMARY KEY violation.
pub(crate) fn is_duplicate(e: &sqlx::Error) -> bool {
    matches!(
        error_number(e),
        Some(ER_DUP_ENTRY | ER_DUP_KEY | ER_DUP_UNIQUE)
    )
}

/// The transaction lost a lock race and was (or must be) rolled back as a
/// whole; running it again may succeed.
pub(crate) fn is_retryable(e: &sqlx::Error) -> bool {
    matches!(
        error_number(e),
        Some(ER_LOCK_DEADLOCK | ER_LOCK_WAIT_TIMEOUT)
    )
}

/// A value the column cannot hold (too long, out of range, bad text or
/// date): the statement failed, the transaction goes on.
pub(crate) fn is_data_error(e: &sqlx::Error) -> bool {
    matches!(
        error_number(e),
        Some(1048 | 1264 | 1265 | 1292 | 1366 | 1406 | 3819 | 4025)
    )
}

/// Translates a driver error. Connection trouble, timeouts, lock
/// timeouts and a server that refuses work (shutdown, read-only, too many
/// connections) are worth a retry (`Unavailable`); anything else means the
/// data or schema is not what we wrote (`Corrupt`).
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match &e {
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::Configuration(_) => StoreError::Unavailable(e.to_string()),
        E::Database(_) => match error_number(&e) {
            Some(
                1040 | 1041 | 1042 | 1043 | 1044 | 1045 | 1049 | 1053 | 1077 | 1078 | 1079 | 1080
                | 1081 | 1152 | 1153 | 1154 | 1155 | 1156 | 1157 | 1158 | 1159 | 1160 | 1161 | 1184
                | 1203 | 1205 | 1213 | 1226 | 1290 | 1317 | 1836 | 1927 | 1969 | 3024 | 4031 | 1021
                | 1114,
            ) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Corrupt(e.to_string()),
        },
        _ => StoreError::Corrupt(e.to_string()),
    }
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Runs one store operation with the configured time limit.
pub(crate) async fn timed<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(StoreError::Unavailable(format!(
            "{what}: no answer from the database within {limit:?}"
        )))
    })
}

/// Transactions that lose a deadlock (or a duplicate-key race they are
/// written to survive) are run again this many times.
pub(crate) const TX_RETRIES: u32 = 5;

/// Short randomised pause before retrying a transaction that lost a race.
pub(crate) async fn retry_pause(attempt: u32) {
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 5;
    let ms = (1u64 << attempt.min(6)) + jitter;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

/// DATETIME(6) holds UTC wall time.
pub(crate) fn naive(t: &DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc()
}

pub(crate) fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

pub(crate) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt(format!("{v} does not fit an integer column")))
}

pub(crate) fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(format!("negative value {v} where a count was stored")))
}

pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// At most `max` characters of `s` (VARCHAR(n) counts characters).
pub(crate) fn fit(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        Some((cut, _)) => Cow::Owned(s[..cut].to_owned()),
        None => Cow::Borrowed(s),
    }
}

// ---------------------------------------------------------------------------
// Multi-row statements
// ---------------------------------------------------------------------------

/// Largest number of rows in one multi-row statement.
pub(crate) const MAX_ROWS: usize = 256;

/// Splits `0..n` into chunks whose lengths are powers of two (largest
/// first, at most [`MAX_ROWS`]), so multi-row statements come in a handful
/// of shapes that the per-connection statement cache keeps prepared.
pub(crate) fn chunks(n: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let remaining = (n - start).min(MAX_ROWS);
        let len = 1usize << (usize::BITS - 1 - remaining.leading_zeros());
        out.push(start..start + len);
        start += len;
    }
    out
}

/// `(?, ?, ?), (?, ?, ?)`: `rows` groups of `cols` placeholders.
pub(crate) fn placeholders(rows: usize, cols: usize) -> String {
    let group = format!("({})", vec!["?"; cols].join(", "));
    vec![group; rows].join(", ")
}

/// `?, ?, ?`: an `IN (…)` list of `n` placeholders.
pub(crate) fn in_list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

// ---------------------------------------------------------------------------
// Statements shared with the SQLite adapter (`order_core::ports::sql`)
// ---------------------------------------------------------------------------

use order_core::ports::sql::{ColumnReader, PageQuery, SqlValue, Statement};
use order_core::ports::Page;
use sqlx::mysql::{MySql, MySqlArguments, MySqlRow};
use sqlx::Arguments;

/// A row, read through [`ColumnReader`]: `DATETIME(6)` holds UTC.
struct Cols<'a>(&'a MySqlRow);

impl ColumnReader for Cols<'_> {
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        self.0.try_get(i).map_err(db_err)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.0.try_get(i).map_err(db_err)
    }
    fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
        let t: Option<NaiveDateTime> = self.0.try_get(i).map_err(db_err)?;
        Ok(t.map(utc))
    }
}

/// `stmt` as a query, its values bound.
pub(crate) fn query(
    stmt: &Statement,
) -> Result<sqlx::query::Query<'static, MySql, MySqlArguments>, sqlx::Error> {
    let mut args = MySqlArguments::default();
    for v in &stmt.args {
        match v {
            SqlValue::Null => args.add(None::<String>),
            SqlValue::Text(s) => args.add(s.clone()),
            SqlValue::Int(n) => args.add(*n),
            SqlValue::Time(t) => args.add(naive(t)),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(sqlx::query_with(AssertSqlSafe(stmt.sql.clone()), args))
}

/// Reads `row` with one of the shared decoders.
pub(crate) fn read_row<T>(
    row: &MySqlRow,
    read: impl FnOnce(&dyn ColumnReader) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    read(&Cols(row))
}

/// A shared builder's or decoder's error inside a transaction that speaks
/// `sqlx::Error` (it is not retried, and [`db_err`] makes it corrupt data).
pub(crate) fn in_tx(e: StoreError) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

/// Runs `stmt`; the number of rows it changed (MySQL counts a row
/// matched but left as it was as unchanged).
pub(crate) async fn execute(pool: &MySqlPool, stmt: &Statement) -> Result<u64, StoreError> {
    let done = query(stmt)
        .map_err(db_err)?
        .execute(pool)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected())
}

/// The rows of `stmt`, each read by `read`.
pub(crate) async fn fetch<T>(
    pool: &MySqlPool,
    stmt: &Statement,
    mut read: impl FnMut(&dyn ColumnReader) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let rows = query(stmt)
        .map_err(db_err)?
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    rows.iter().map(|row| read(&Cols(row))).collect()
}

/// The first row of `stmt`, if any.
pub(crate) async fn fetch_optional<T>(
    pool: &MySqlPool,
    stmt: &Statement,
    read: impl FnOnce(&dyn ColumnReader) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let row = query(stmt)
        .map_err(db_err)?
        .fetch_optional(pool)
        .await
        .map_err(db_err)?;
    row.as_ref().map(|row| read(&Cols(row))).transpose()
}

/// A page and its total.
pub(crate) async fn fetch_page<T>(
    pool: &MySqlPool,
    q: &PageQuery,
    read: impl FnMut(&dyn ColumnReader) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    let content = fetch(pool, &q.rows, read).await?;
    let total = fetch_optional(pool, &q.count, |r| r.int(0)).await?;
    q.page(content, total.unwrap_or(0))
}

/// How this adapter makes a listing read the index it names
/// (`order_core::ports::sql::IndexHint`).
pub fn index_hint(index: &str) -> String {
    format!(" FORCE INDEX ({index})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_covering_everything() {
        assert!(chunks(0).is_empty());
        assert_eq!(chunks(1).len(), 1);
        assert_eq!(chunks(1)[0], 0..1);
        assert_eq!(chunks(7), [0..4, 4..6, 6..7]);
        assert_eq!(
            chunks(600),
            [0..256, 256..512, 512..576, 576..592, 592..600]
        );
    }

    #[test]
    fn urls_split_into_server_and_database() {
        let t = parse_target("mysql://root@127.0.0.1:3306/order_write_db").expect("url");
        assert_eq!(t.server_url, "mysql://root@127.0.0.1:3306/");
        assert_eq!(t.database, "order_write_db");
        let t = parse_target("mysql://u:p@h:1?ssl-mode=disabled").expect("url");
        assert_eq!(t.server_url, "mysql://u:p@h:1/?ssl-mode=disabled");
        assert_eq!(t.database, DEFAULT_DATABASE);
        assert!(parse_target("mysql://h/bad`name").is_err());
        assert!(parse_target("postgres://h/db").is_err());
    }

    #[test]
    fn migration_files_split_into_statements() {
        let s = statements(MIGRATIONS[0].sql);
        assert!(s.len() >= 8, "{s:?}");
        assert!(s.iter().all(|x| !x.ends_with(';') && !x.starts_with("--")));
    }

    #[test]
    fn a_trigger_body_stays_one_statement() {
        let dlq_listing = MIGRATIONS
            .iter()
            .find(|m| m.name == "dlq_listing")
            .expect("migration 0008");
        let s = statements(dlq_listing.sql);
        let update = s
            .iter()
            .find(|x| x.starts_with("CREATE TRIGGER dlq_counters_update"))
            .expect("the update trigger");
        assert!(update.ends_with("END IF;\nEND"), "{update}");
        assert!(s.iter().any(|x| x.starts_with("INSERT IGNORE")), "{s:?}");
    }

    #[test]
    fn fit_cuts_at_characters() {
        assert_eq!(fit("abc", 5), "abc");
        assert_eq!(fit("äöü", 2), "äö");
    }
}
