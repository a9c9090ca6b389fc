//! One SQLite database file: a single writer connection behind a mutex, a
//! small pool of read connections (WAL lets them read while the writer
//! writes), migrations, and the translation of driver errors into
//! [`StoreError`]. Everything blocking runs on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use order_core::ports::StoreError;
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

/// How long a connection waits for a lock held by another connection
/// (another process on the same file) before reporting `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reads running at once through [`Db::read_async`]; the others wait for a
/// turn. Every one of them finds an idle connection: opening one costs more
/// than most reads (measured: GET by id at 131 µs of CPU with 4 kept open
/// and 64 clients, as each read beyond the fourth opened a connection).
const MAX_READERS: usize = 8;
/// Idle read connections kept open: the async readers' and a few for
/// [`Db::read_point`] on the runtime's worker threads.
const MAX_IDLE_READERS: usize = MAX_READERS + 4;
const STATEMENT_CACHE: usize = 64;

/// An append-only migration: `version` is the file's number.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) struct Db {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Turns of [`Db::read_async`] (see [`MAX_READERS`]).
    read_turns: Arc<tokio::sync::Semaphore>,
    checkpointer: Checkpointer,
}

/// Copies WAL frames into the database file on its own thread and
/// connection, so the writer's commits never pay for it. PASSIVE
/// checkpoints neither wait for nor block readers and the writer. The
/// thread stops when the [`Db`] is dropped (its channel disconnects).
struct Checkpointer {
    written: Arc<AtomicU64>,
    _stop: mpsc::Sender<()>,
}

const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = open_connection(path)?;
        let written = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = mpsc::channel::<()>();
        let seen_by_thread = written.clone();
        let name = format!("sqlite-checkpoint-{}", path.display());
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let mut done = 0;
                while let Err(mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(CHECKPOINT_EVERY)
                {
                    let now = seen_by_thread.load(Ordering::Relaxed);
                    if now == done {
                        continue;
                    }
                    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        Ok(()) => done = now,
                        Err(e) => tracing::debug!(error = %e, "background checkpoint failed"),
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start checkpointer: {e}")))?;
        Ok(Self {
            written,
            _stop: stop,
        })
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Opens (creating the parent directories and the file) and migrates.
    pub fn open(path: &Path, migrations: &[Migration]) -> Result<Arc<Self>, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let mut writer = open_connection(path)?;
        // WAL: readers never block the writer; NORMAL: a commit survives a
        // process crash (not necessarily a power loss) without an fsync each.
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(db_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable(format!(
                "{} cannot use WAL mode (got {mode})",
                path.display()
            )));
        }
        // A modest page cache: SQLite scans the whole page-cache hash table
        // at the end of every write transaction (pcache1TruncateUnsafe), so
        // a 64 MiB cache cost ~25% of the service's throughput (perf). The
        // OS page cache keeps the rest of the file warm. Checkpoints run on a background thread (see
        // `Checkpointer`); the writer's own auto-checkpoint is only a
        // fallback that bounds the WAL if the background one falls behind.
        writer
            .execute_batch(
                "PRAGMA synchronous = NORMAL;
                 PRAGMA cache_size = -4096;
                 PRAGMA wal_autocheckpoint = 16384;
                 PRAGMA journal_size_limit = 67108864;",
            )
            .map_err(db_err)?;
        migrate(&mut writer, migrations)?;
        let checkpointer = Checkpointer::start(path)?;
        Ok(Arc::new(Self {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            read_turns: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
            checkpointer,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the writer connection. Blocking.
    pub fn write<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if !conn.is_autocommit() {
            // A panic in an earlier closure left its transaction open.
            conn.execute_batch("ROLLBACK").map_err(db_err)?;
        }
        let r = f(&mut conn);
        self.checkpointer.written.fetch_add(1, Ordering::Relaxed);
        r
    }

    /// Runs `f` on a read connection. Blocking.
    pub fn read<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let pooled = self.idle_readers().pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = open_connection(&self.path)?;
                c.execute_batch("PRAGMA query_only = ON;").map_err(db_err)?;
                c
            }
        };
        let result = f(&conn);
        if conn.is_autocommit() {
            let mut idle = self.idle_readers();
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }

    fn idle_readers(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.readers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`Db::write`] on the blocking pool.
    pub async fn write_async<R, F>(self: &Arc<Self>, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.write(f))
            .await
            .map_err(join_err)?
    }

    /// [`Db::read`] on the calling thread, for a read by primary key (tens of
    /// microseconds from the page cache). Handing such a read to the
    /// blocking pool and back costs more than the read: two thread wake-ups
    /// (measured: GET by id at 76 µs of CPU, half of it in futex calls).
    /// Readers never wait for the writer in WAL mode.
    pub fn read_point<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.read(f)
    }

    /// [`Db::read`] on the blocking pool.
    pub async fn read_async<R, F>(self: &Arc<Self>, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let turn = self
            .read_turns
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Unavailable(format!("read pool closed: {e}")))?;
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let r = db.read(f);
            drop(turn);
            r
        })
        .await
        .map_err(join_err)?
    }
}

fn join_err(e: tokio::task::JoinError) -> StoreError {
    StoreError::Unavailable(format!("database task failed: {e}"))
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;")
        .map_err(db_err)?;
    Ok(conn)
}

/// Applies the pending migrations in one IMMEDIATE transaction, so two
/// processes opening a new file at once do not both apply them.
fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TEXT NOT NULL
         )",
    )
    .map_err(db_err)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if current > known {
        return Err(StoreError::Corrupt(format!(
            "database schema version {current} is newer than this build knows ({known})"
        )));
    }
    for m in migrations.iter().filter(|m| m.version > current) {
        tx.execute_batch(m.sql).map_err(|e| {
            StoreError::Corrupt(format!("migration {:04}_{} failed: {e}", m.version, m.name))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![m.version, m.name, ts(&Utc::now())],
        )
        .map_err(db_err)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    tx.commit().map_err(db_err)
}

/// Translates a driver error. Lock/IO trouble is worth a retry
/// (`Unavailable`); anything else means the data or schema is not what we
/// wrote (`Corrupt`).
pub(crate) fn db_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    match &e {
        E::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::CannotOpen
            | ErrorCode::ReadOnly
            | ErrorCode::OperationInterrupted
            | ErrorCode::OutOfMemory
            | ErrorCode::FileLockingProtocolFailed
            | ErrorCode::PermissionDenied => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Corrupt(e.to_string()),
        },
        _ => StoreError::Corrupt(e.to_string()),
    }
}

/// True for a UNIQUE / PRIMARY KEY violation.
pub(crate) fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

/// Timestamp as stored: RFC 3339 UTC, 6 fractional digits, `Z`.
pub(crate) fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad timestamp {s:?}: {e}")))
}

pub(crate) fn parse_opt_ts(s: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    s.as_deref().map(parse_ts).transpose()
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// `u64` → SQLite INTEGER.
pub(crate) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt(format!("{v} does not fit an INTEGER column")))
}

/// SQLite INTEGER → `u64`.
pub(crate) fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(format!("negative value {v} where a count was stored")))
}

// ---------------------------------------------------------------------------
// Statements shared with the MySQL adapter (`order_core::ports::sql`)
// ---------------------------------------------------------------------------

use order_core::ports::sql::{ColumnReader, PageQuery, SqlValue, Statement};
use order_core::ports::Page;
use rusqlite::types::Value;

/// A row, read through [`ColumnReader`]: timestamps are RFC 3339 text.
struct Cols<'a, 'r>(&'a rusqlite::Row<'r>);

impl ColumnReader for Cols<'_, '_> {
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError> {
        self.0.get(i).map_err(db_err)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError> {
        self.0.get(i).map_err(db_err)
    }
    fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
        parse_opt_ts(self.0.get(i).map_err(db_err)?)
    }
}

/// Reads `row` with one of the shared decoders.
pub(crate) fn read_row<T>(
    row: &rusqlite::Row<'_>,
    read: impl FnOnce(&dyn ColumnReader) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    read(&Cols(row))
}

fn bound(args: &[SqlValue]) -> impl rusqlite::Params + '_ {
    rusqlite::params_from_iter(args.iter().map(|a| match a {
        SqlValue::Null => Value::Null,
        SqlValue::Text(s) => Value::Text(s.clone()),
        SqlValue::Int(n) => Value::Integer(*n),
        SqlValue::Time(t) => Value::Text(ts(t)),
    }))
}

/// Runs `stmt` (a cached prepared statement); the number of rows changed.
pub(crate) fn execute(conn: &Connection, stmt: &Statement) -> Result<usize, StoreError> {
    conn.prepare_cached(&stmt.sql)
        .and_then(|mut s| s.execute(bound(&stmt.args)))
        .map_err(db_err)
}

/// The rows of `stmt` (a cached prepared statement), each read by `read`.
pub(crate) fn fetch<T>(
    conn: &Connection,
    stmt: &Statement,
    read: impl FnMut(&dyn ColumnReader) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut prepared = conn.prepare_cached(&stmt.sql).map_err(db_err)?;
    read_all(&mut prepared, &stmt.args, read)
}

fn read_all<T>(
    prepared: &mut rusqlite::Statement<'_>,
    args: &[SqlValue],
    mut read: impl FnMut(&dyn ColumnReader) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut rows = prepared.query(bound(args)).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(read(&Cols(row))?);
    }
    Ok(out)
}

/// The first row of `stmt`, if any.
pub(crate) fn fetch_optional<T>(
    conn: &Connection,
    stmt: &Statement,
    read: impl FnMut(&dyn ColumnReader) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    Ok(fetch(conn, stmt, read)?.into_iter().next())
}

/// A page and its total, on one snapshot. Not cached: a filter's
/// statements come in many shapes and would push the command path's
/// statements out of the cache.
pub(crate) fn fetch_page<T>(
    conn: &Connection,
    q: &PageQuery,
    read: impl FnMut(&dyn ColumnReader) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    let tx = conn.unchecked_transaction().map_err(db_err)?;
    let content = read_all(
        &mut tx.prepare(&q.rows.sql).map_err(db_err)?,
        &q.rows.args,
        read,
    )?;
    let total: i64 = tx
        .prepare(&q.count.sql)
        .and_then(|mut s| s.query_row(bound(&q.count.args), |r| r.get(0)))
        .map_err(db_err)?;
    tx.finish().map_err(db_err)?;
    q.page(content, total)
}

/// How this adapter makes a listing read the index it names
/// (`order_core::ports::sql::IndexHint`).
pub fn index_hint(index: &str) -> String {
    format!(" INDEXED BY {index}")
}
