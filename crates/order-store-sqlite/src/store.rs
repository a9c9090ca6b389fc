//! The write side on one SQLite file: event store and current state (this
//! module), DLQ records ([`crate::dlq`]) and the outbox ([`crate::outbox`]),
//! which has its own module because the relay drives it, not the commands.
//!
//! `commit_batch` is the hot path: one `BEGIN IMMEDIATE … COMMIT` per batch
//! on the single writer connection, one SAVEPOINT per commit so a
//! conflicting commit is rolled back alone, cached statements throughout.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use order_core::domain::{now, Order, RecordedEvent};
use order_core::ports::sql::event_store::{self, ORDER_COLUMNS};
use order_core::ports::{
    bucket_of, Commit, CommitError, EventStore, IdempotencyRecord, StoreError, StreamBound,
    EVENT_COLUMNS,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use uuid::Uuid;

use crate::db::{corrupt, db_err, is_constraint, parse_ts, read_row, to_i64, ts, Db, Migration};

pub(crate) const MIGRATIONS: &[Migration] =
    order_core::write_side_migrations!(Migration, "../migrations/store/");

/// Event store, current state, outbox and DLQ records in one SQLite file
/// (WAL mode). Cheap to clone; clones share the connections.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub(crate) db: Arc<Db>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the parent directories and the
    /// file, and applies pending migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let db = Db::open(path.as_ref(), MIGRATIONS)?;
        db.write(crate::outbox::assign_buckets)?;
        db.write(crate::leases::void_dead_leases)?;
        Ok(Self { db })
    }

    /// Creates or upgrades the schema at `path` and closes it again.
    pub fn migrate(path: impl AsRef<Path>) -> Result<(), StoreError> {
        Self::open(path).map(drop)
    }

    pub fn path(&self) -> &Path {
        self.db.path()
    }
}

/// Why one commit of a batch failed: on its own (rolled back to its
/// savepoint) or for the whole batch (the transaction is abandoned).
enum Fail {
    Commit(CommitError),
    Batch(StoreError),
}

/// A constraint violation means `on_constraint`; anything else aborts the batch.
fn classify(e: rusqlite::Error, on_constraint: CommitError) -> Fail {
    if is_constraint(&e) {
        Fail::Commit(on_constraint)
    } else {
        Fail::Batch(db_err(e))
    }
}

fn batch(e: rusqlite::Error) -> Fail {
    Fail::Batch(db_err(e))
}

fn malformed(reason: String) -> Fail {
    Fail::Commit(CommitError::Store(StoreError::Corrupt(reason)))
}

/// Rejects a commit whose parts do not fit together before anything is
/// written; such a commit is a bug in the caller.
fn check_commit(c: &Commit) -> Result<(), Fail> {
    let Some(last) = c.events.last() else {
        return Err(malformed("commit without events".into()));
    };
    let id = c.state.id.to_string();
    for (i, e) in c.events.iter().enumerate() {
        if e.aggregate_id != id || e.version != c.expected_version + 1 + i as u64 {
            return Err(malformed(format!(
                "event {} (aggregate {}, version {}) does not follow version {} of order {id}",
                e.event_id, e.aggregate_id, e.version, c.expected_version
            )));
        }
    }
    if c.state.version != last.version {
        return Err(malformed(format!(
            "state version {} is not the last event's version {}",
            c.state.version, last.version
        )));
    }
    Ok(())
}

/// Writes one commit (inside the batch transaction and its savepoint).
fn write_commit(conn: &Connection, c: &Commit, created_at: &str) -> Result<Vec<i64>, Fail> {
    check_commit(c)?;
    if let Some(k) = &c.idempotency {
        conn.prepare_cached(
            "INSERT INTO idempotency_keys (key, fingerprint, order_id, created_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(batch)?
        .execute(params![
            k.key,
            k.fingerprint,
            k.order_id.to_string(),
            ts(&k.created_at)
        ])
        .map_err(|e| classify(e, CommitError::IdempotencyKeyTaken))?;
    }

    let mut positions = Vec::with_capacity(c.events.len());
    for env in &c.events {
        let data =
            serde_json::to_string(&env.data).map_err(|e| malformed(format!("event data: {e}")))?;
        let payload =
            serde_json::to_string(env).map_err(|e| malformed(format!("event envelope: {e}")))?;
        let event_id = env.event_id.to_string();
        // UNIQUE(aggregate_id, version): another command wrote this version
        // first. UNIQUE(event_id): the event was already stored; either way
        // this commit was decided on a state that is no longer current.
        conn.prepare_cached(
            "INSERT INTO event_store (event_id, aggregate_id, aggregate_type, event_type, \
             event_data, version, schema_version, occurred_on, correlation_id, causation_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(batch)?
        .execute(params![
            event_id,
            env.aggregate_id,
            env.aggregate_type,
            env.event_type,
            data,
            to_i64(env.version).map_err(Fail::Batch)?,
            env.schema_version,
            ts(&env.occurred_on),
            env.correlation_id,
            env.causation_id,
        ])
        .map_err(|e| classify(e, CommitError::VersionConflict))?;
        let position = conn.last_insert_rowid();
        conn.prepare_cached(
            "INSERT INTO outbox (position, event_id, aggregate_id, payload, created_at, bucket) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(batch)?
        .execute(params![
            position,
            event_id,
            env.aggregate_id,
            payload,
            created_at,
            bucket_of(&env.aggregate_id)
        ])
        .map_err(batch)?;
        positions.push(position);
    }

    write_state(conn, c)?;
    Ok(positions)
}

/// Current state: insert on a create (with the items), otherwise a
/// version-guarded update of what a transition can change. The items,
/// customer, restaurant, total and creation time are written once, by the
/// create (`Order::apply` never changes them): a transition costs one row.
fn write_state(conn: &Connection, c: &Commit) -> Result<(), Fail> {
    let o = &c.state;
    let id = o.id.to_string();
    let version = to_i64(o.version).map_err(Fail::Batch)?;
    let status = o.status.as_str();
    let updated = ts(&o.updated_at);
    if c.expected_version != 0 {
        let expected = to_i64(c.expected_version).map_err(Fail::Batch)?;
        let changed = conn
            .prepare_cached(
                "UPDATE orders SET status = ?2, payment_id = ?3, cancellation_reason = ?4, \
                 updated_at = ?5, version = ?6 WHERE id = ?1 AND version = ?7",
            )
            .map_err(batch)?
            .execute(params![
                id,
                status,
                o.payment_id,
                o.cancellation_reason,
                updated,
                version,
                expected
            ])
            .map_err(batch)?;
        if changed == 0 {
            return Err(Fail::Commit(CommitError::VersionConflict));
        }
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO orders (id, customer_id, restaurant_id, total_amount, status, \
         payment_id, cancellation_reason, created_at, updated_at, version) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .map_err(batch)?
    .execute(params![
        id,
        o.customer_id,
        o.restaurant_id,
        o.total_amount.to_string(),
        status,
        o.payment_id,
        o.cancellation_reason,
        ts(&o.created_at),
        updated,
        version,
    ])
    .map_err(|e| classify(e, CommitError::VersionConflict))?;
    let mut insert_item = conn
        .prepare_cached(
            "INSERT INTO order_items (order_id, line_no, menu_item_id, name, price, quantity) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(batch)?;
    for (line, item) in o.items.iter().enumerate() {
        insert_item
            .execute(params![
                id,
                line as i64,
                item.menu_item_id,
                item.name,
                item.price.to_string(),
                item.quantity,
            ])
            .map_err(batch)?;
    }
    Ok(())
}

fn commit_batch_blocking(
    conn: &mut Connection,
    commits: &[Commit],
) -> Result<Vec<Result<Vec<i64>, CommitError>>, StoreError> {
    let created_at = ts(&now());
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let mut results = Vec::with_capacity(commits.len());
    for c in commits {
        tx.prepare_cached("SAVEPOINT one_commit")
            .and_then(|mut s| s.execute([]))
            .map_err(db_err)?;
        match write_commit(&tx, c, &created_at) {
            Ok(positions) => {
                tx.prepare_cached("RELEASE one_commit")
                    .and_then(|mut s| s.execute([]))
                    .map_err(db_err)?;
                results.push(Ok(positions));
            }
            Err(Fail::Commit(e)) => {
                tx.prepare_cached("ROLLBACK TO one_commit")
                    .and_then(|mut s| s.execute([]))
                    .and_then(|_| tx.prepare_cached("RELEASE one_commit"))
                    .and_then(|mut s| s.execute([]))
                    .map_err(db_err)?;
                tracing::debug!(order_id = %c.state.id, error = %e, "commit rejected");
                results.push(Err(e));
            }
            // Dropping `tx` rolls the whole batch back.
            Err(Fail::Batch(e)) => return Err(e),
        }
    }
    tx.commit().map_err(db_err)?;
    Ok(results)
}

fn query_events<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = stmt.query(params).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(read_row(row, event_store::read_event)?);
    }
    Ok(out)
}

fn load_order_blocking(conn: &Connection, id: Uuid) -> Result<Option<Order>, StoreError> {
    // Two statements without a transaction around them (BEGIN and COMMIT
    // cost as much as the reads): the items are written once, in the
    // create's transaction with the row, and never change, so any snapshot
    // that has the row has its items.
    let key = id.to_string();
    let order = conn
        .prepare_cached(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"))
        .map_err(db_err)?
        .query_row([&key], |r| {
            Ok(read_row(r, |r| event_store::read_order(r, id)))
        })
        .optional()
        .map_err(db_err)?
        .transpose()?;
    let Some(mut order) = order else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT menu_item_id, name, price, quantity FROM order_items \
             WHERE order_id = ?1 ORDER BY line_no",
        )
        .map_err(db_err)?;
    let mut rows = stmt.query([&key]).map_err(db_err)?;
    while let Some(r) = rows.next().map_err(db_err)? {
        order
            .items
            .extend(read_row(r, |r| event_store::read_item(r, 0))?);
    }
    Order::try_from(order).map(Some)
}

/// A round trip on `conn` (the health checks' ping).
pub(crate) fn select_one(conn: &Connection) -> Result<(), StoreError> {
    conn.prepare_cached("SELECT 1")
        .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
        .map(drop)
        .map_err(db_err)
}

pub(crate) fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl EventStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(commits = commits.len()))]
    async fn commit_batch(
        &self,
        commits: Vec<Commit>,
    ) -> Result<Vec<Result<Vec<i64>, CommitError>>, StoreError> {
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        self.db
            .write_async(move |conn| commit_batch_blocking(conn, &commits))
            .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn load_order(&self, id: Uuid) -> Result<Option<Order>, StoreError> {
        self.db
            .read_point(move |conn| load_order_blocking(conn, id))
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn load_stream(
        &self,
        aggregate_id: &str,
        bound: StreamBound,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let aggregate_id = aggregate_id.to_owned();
        self.db
            .read_async(move |conn| match bound {
                StreamBound::All => query_events(
                    conn,
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM event_store \
                         WHERE aggregate_id = ?1 ORDER BY version"
                    ),
                    [&aggregate_id],
                ),
                StreamBound::UpToVersion(v) => query_events(
                    conn,
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM event_store \
                         WHERE aggregate_id = ?1 AND version <= ?2 ORDER BY version"
                    ),
                    params![aggregate_id, i64::try_from(v).unwrap_or(i64::MAX)],
                ),
                // Fixed-width RFC 3339 text compares like the instant it encodes.
                StreamBound::UpToInstant(t) => query_events(
                    conn,
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM event_store \
                         WHERE aggregate_id = ?1 AND occurred_on <= ?2 ORDER BY version"
                    ),
                    params![aggregate_id, ts(&t)],
                ),
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn read_all(&self, after: i64, limit_n: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.db
            .read_async(move |conn| {
                query_events(
                    conn,
                    &format!(
                        "SELECT {EVENT_COLUMNS} FROM event_store WHERE id > ?1 ORDER BY id LIMIT ?2"
                    ),
                    params![after, limit(limit_n)],
                )
            })
            .await
    }

    async fn head_position(&self) -> Result<i64, StoreError> {
        self.db
            .read_async(|conn| {
                conn.prepare_cached("SELECT COALESCE(MAX(id), 0) FROM event_store")
                    .and_then(|mut s| s.query_row([], |r| r.get(0)))
                    .map_err(db_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn find_idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let key = key.to_owned();
        self.db
            .read_async(move |conn| {
                let row: Option<(String, String, String)> = conn
                    .prepare_cached(
                        "SELECT fingerprint, order_id, created_at FROM idempotency_keys \
                         WHERE key = ?1",
                    )
                    .map_err(db_err)?
                    .query_row([&key], |r| r.try_into())
                    .optional()
                    .map_err(db_err)?;
                let Some((fingerprint, order_id, created_at)) = row else {
                    return Ok(None);
                };
                Ok(Some(IdempotencyRecord {
                    order_id: Uuid::parse_str(&order_id).map_err(|e| {
                        corrupt(format!("idempotency key {key:?}: bad order id: {e}"))
                    })?,
                    key,
                    fingerprint,
                    created_at: parse_ts(&created_at)?,
                }))
            })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.read_async(select_one).await
    }
}
