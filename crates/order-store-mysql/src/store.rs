//! The write side on one MySQL/MariaDB database: event store, current
//! state and outbox (this module), the relay lease ([`crate::lease`]) and
//! DLQ records ([`crate::dlq`]).
//!
//! `commit_batch` is the hot path: ONE transaction per batch. It first
//! tries the whole batch with a few multi-row INSERTs (a handful of round
//! trips for hundreds of commits); when any commit conflicts, that attempt
//! is rolled back and the batch is written again commit by commit, each
//! under its own SAVEPOINT, so only the conflicting commits fail.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use order_core::domain::{now, EventEnvelope, Order, OrderItem, OrderStatus, RecordedEvent};
use order_core::ports::{
    Commit, CommitError, EventStore, IdempotencyRecord, Outbox, OutboxMessage, OutboxStats,
    ParkedEvent, StoreError, StreamBound,
};
use rust_decimal::Decimal;
use sqlx::mysql::{MySqlConnection, MySqlPool, MySqlRow};
use sqlx::{AssertSqlSafe, Executor, Row};
use uuid::Uuid;

use crate::db::{
    self, chunks, consecutive_ids, corrupt, db_err, in_list, is_data_error, is_duplicate,
    is_retryable, naive, placeholders, retry_pause, timed, to_i64, to_u64, utc, MySqlConfig,
    TX_RETRIES,
};
use crate::dlq::insert_dlq_records;
use crate::lease::Lease;

/// Event store, current state, outbox and DLQ records on one MySQL/MariaDB
/// database. Cheap to clone; clones share the pool and the relay lease.
#[derive(Clone)]
pub struct MySqlStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub pool: MySqlPool,
    pub database: String,
    pub cfg: MySqlConfig,
    /// Positions of a multi-row INSERT are `first .. first + n`.
    pub consecutive_ids: bool,
    pub lease: Lease,
}

impl std::fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlStore")
            .field("database", &self.inner.database)
            .field("instance_id", &self.inner.lease.holder())
            .finish()
    }
}

impl MySqlStore {
    /// Connects with the default configuration (pool of 16, 10 s relay
    /// lease), creating the database if missing and applying migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(MySqlConfig::new(url)).await
    }

    /// Connects with an explicit configuration.
    pub async fn connect_with(cfg: MySqlConfig) -> Result<Self, StoreError> {
        let (pool, database) = db::open_pool(&cfg).await?;
        let consecutive_ids = !cfg.read_back_positions && consecutive_ids(&pool).await?;
        let lease = Lease::new(cfg.lease_duration);
        lease.ensure_row(&pool).await?;
        let inner = Arc::new(Inner {
            pool,
            database,
            cfg,
            consecutive_ids,
            lease,
        });
        Lease::start_heartbeat(Arc::downgrade(&inner));
        tracing::info!(
            database = %inner.database,
            instance = %inner.lease.holder(),
            consecutive_ids,
            "connected to MySQL"
        );
        Ok(Self { inner })
    }

    /// Creates the database if missing and applies pending migrations.
    pub async fn migrate(url: &str) -> Result<(), StoreError> {
        let (pool, _) = db::open_pool(&MySqlConfig::new(url)).await?;
        pool.close().await;
        Ok(())
    }

    /// Name of the database this store works on.
    pub fn database(&self) -> &str {
        &self.inner.database
    }

    /// The random id this instance holds the relay lease under.
    pub fn instance_id(&self) -> &str {
        self.inner.lease.holder()
    }

    /// Whether this instance held the relay lease at its last outbox fetch
    /// or renewal (and that lease has not run out since).
    pub fn holds_relay_lease(&self) -> bool {
        self.inner.lease.held()
    }

    /// Gives the relay lease up at once (when shutting down), so another
    /// instance need not wait for it to expire.
    pub async fn release_relay_lease(&self) -> Result<(), StoreError> {
        self.inner.lease.release(&self.inner.pool).await
    }

    /// Releases the relay lease and closes the pool.
    pub async fn close(&self) {
        if let Err(e) = self.release_relay_lease().await {
            tracing::warn!(error = %e, "could not release the relay lease");
        }
        self.inner.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &MySqlPool {
        &self.inner.pool
    }

    pub(crate) async fn timed<T>(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        timed(self.inner.cfg.operation_timeout, what, fut).await
    }
}

const EVENT_COLUMNS: &str = "id, event_id, aggregate_id, aggregate_type, event_type, event_data, \
     version, schema_version, occurred_on, correlation_id, causation_id";

// ---------------------------------------------------------------------------
// commit_batch
// ---------------------------------------------------------------------------

/// One event, serialised once for both attempts.
struct EventRow<'a> {
    env: &'a EventEnvelope,
    event_id: String,
    data: String,
    payload: String,
    version: i64,
}

/// A commit that passed the checks, ready to write.
struct Prepared<'a> {
    commit: &'a Commit,
    order_id: String,
    events: Vec<EventRow<'a>>,
}

/// Rejects a commit whose parts do not fit together before anything is
/// written; such a commit is a bug in the caller.
fn prepare(c: &Commit) -> Result<Prepared<'_>, CommitError> {
    let malformed = |reason: String| CommitError::Store(StoreError::Corrupt(reason));
    let Some(last) = c.events.last() else {
        return Err(malformed("commit without events".into()));
    };
    let order_id = c.state.id.to_string();
    let mut events = Vec::with_capacity(c.events.len());
    for (i, e) in c.events.iter().enumerate() {
        if e.aggregate_id != order_id || e.version != c.expected_version + 1 + i as u64 {
            return Err(malformed(format!(
                "event {} (aggregate {}, version {}) does not follow version {} of order {order_id}",
                e.event_id, e.aggregate_id, e.version, c.expected_version
            )));
        }
        events.push(EventRow {
            env: e,
            event_id: e.event_id.to_string(),
            data: serde_json::to_string(&e.data)
                .map_err(|err| malformed(format!("event data: {err}")))?,
            payload: serde_json::to_string(e)
                .map_err(|err| malformed(format!("event envelope: {err}")))?,
            version: to_i64(e.version).map_err(CommitError::Store)?,
        });
    }
    if c.state.version != last.version {
        return Err(malformed(format!(
            "state version {} is not the last event's version {}",
            c.state.version, last.version
        )));
    }
    to_i64(c.state.version).map_err(CommitError::Store)?;
    to_i64(c.expected_version).map_err(CommitError::Store)?;
    Ok(Prepared {
        commit: c,
        order_id,
        events,
    })
}

/// Why a write failed: a statement of one commit was rejected (the
/// transaction goes on) or the transaction itself failed.
enum Fail {
    /// Duplicate key, a version guard that matched nothing, or a value the
    /// schema cannot hold; carries the commit's error.
    Commit(CommitError),
    Batch(sqlx::Error),
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Self {
        Fail::Batch(e)
    }
}

/// A failed statement: a duplicate key means `on_duplicate`, a value the
/// schema cannot hold fails only that commit, anything else the batch.
fn classify(e: sqlx::Error, on_duplicate: CommitError) -> Fail {
    if is_duplicate(&e) {
        Fail::Commit(on_duplicate)
    } else if is_data_error(&e) {
        Fail::Commit(CommitError::Store(StoreError::Corrupt(format!(
            "value rejected by the schema: {e}"
        ))))
    } else {
        Fail::Batch(e)
    }
}

type Results = Vec<Result<Vec<i64>, CommitError>>;

impl Inner {
    /// Inserts event rows (several commits' worth), returning their
    /// positions in the same order.
    async fn insert_events(
        &self,
        conn: &mut MySqlConnection,
        rows: &[&EventRow<'_>],
    ) -> Result<Vec<i64>, Fail> {
        let mut positions = Vec::with_capacity(rows.len());
        for range in chunks(rows.len()) {
            let part = &rows[range];
            let sql = format!(
                "INSERT INTO event_store (event_id, aggregate_id, aggregate_type, event_type, \
                 event_data, version, schema_version, occurred_on, correlation_id, causation_id) \
                 VALUES {}",
                placeholders(part.len(), 10)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for r in part {
                q = q
                    .bind(&r.event_id)
                    .bind(&r.env.aggregate_id)
                    .bind(&r.env.aggregate_type)
                    .bind(&r.env.event_type)
                    .bind(&r.data)
                    .bind(r.version)
                    .bind(i64::from(r.env.schema_version))
                    .bind(naive(&r.env.occurred_on))
                    .bind(&r.env.correlation_id)
                    .bind(&r.env.causation_id);
            }
            // UNIQUE(aggregate_id, version): another command wrote this
            // version first. UNIQUE(event_id): the event was already
            // stored. Either way the commit was decided on a stale state.
            let done = q
                .execute(&mut *conn)
                .await
                .map_err(|e| classify(e, CommitError::VersionConflict))?;
            if self.consecutive_ids {
                let first = i64::try_from(done.last_insert_id())
                    .map_err(|_| Fail::Batch(sqlx::Error::Protocol("bad insert id".into())))?;
                positions.extend((0..part.len() as i64).map(|i| first + i));
            } else {
                let sql = format!(
                    "SELECT event_id, id FROM event_store WHERE event_id IN ({})",
                    in_list(part.len())
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for r in part {
                    q = q.bind(&r.event_id);
                }
                let found: HashMap<String, i64> = q
                    .fetch_all(&mut *conn)
                    .await?
                    .iter()
                    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                    .collect::<Result<_, sqlx::Error>>()?;
                for r in part {
                    let p = found
                        .get(&r.event_id)
                        .copied()
                        .ok_or_else(|| Fail::Batch(sqlx::Error::RowNotFound))?;
                    positions.push(p);
                }
            }
        }
        Ok(positions)
    }

    async fn insert_outbox(
        &self,
        conn: &mut MySqlConnection,
        rows: &[(&EventRow<'_>, i64)],
        created_at: chrono::NaiveDateTime,
    ) -> Result<(), Fail> {
        for range in chunks(rows.len()) {
            let part = &rows[range];
            let sql = format!(
                "INSERT INTO outbox (position, event_id, aggregate_id, payload, created_at) VALUES {}",
                placeholders(part.len(), 5)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (r, position) in part {
                q = q
                    .bind(*position)
                    .bind(&r.event_id)
                    .bind(&r.env.aggregate_id)
                    .bind(&r.payload)
                    .bind(created_at);
            }
            q.execute(&mut *conn)
                .await
                .map_err(|e| classify(e, CommitError::VersionConflict))?;
        }
        Ok(())
    }

    async fn insert_keys(
        &self,
        conn: &mut MySqlConnection,
        keys: &[&IdempotencyRecord],
    ) -> Result<(), Fail> {
        for range in chunks(keys.len()) {
            let part = &keys[range];
            let sql = format!(
                "INSERT INTO idempotency_keys (`key`, fingerprint, order_id, created_at) VALUES {}",
                placeholders(part.len(), 4)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for k in part {
                q = q
                    .bind(&k.key)
                    .bind(&k.fingerprint)
                    .bind(k.order_id.to_string())
                    .bind(naive(&k.created_at));
            }
            q.execute(&mut *conn)
                .await
                .map_err(|e| classify(e, CommitError::IdempotencyKeyTaken))?;
        }
        Ok(())
    }

    /// Inserts the current state of created orders.
    async fn insert_orders(
        &self,
        conn: &mut MySqlConnection,
        orders: &[&Order],
    ) -> Result<(), Fail> {
        for range in chunks(orders.len()) {
            let part = &orders[range];
            let sql = format!(
                "INSERT INTO orders (id, customer_id, restaurant_id, total_amount, status, \
                 payment_id, cancellation_reason, created_at, updated_at, version) VALUES {}",
                placeholders(part.len(), 10)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for o in part {
                q = q
                    .bind(o.id.to_string())
                    .bind(&o.customer_id)
                    .bind(&o.restaurant_id)
                    .bind(o.total_amount.to_string())
                    .bind(o.status.as_str())
                    .bind(&o.payment_id)
                    .bind(&o.cancellation_reason)
                    .bind(naive(&o.created_at))
                    .bind(naive(&o.updated_at))
                    .bind(o.version as i64);
            }
            q.execute(&mut *conn)
                .await
                .map_err(|e| classify(e, CommitError::VersionConflict))?;
        }
        Ok(())
    }

    /// Version-guarded update of an existing order; its items are deleted
    /// (and written again with the others).
    async fn update_order(&self, conn: &mut MySqlConnection, c: &Prepared<'_>) -> Result<(), Fail> {
        let o = &c.commit.state;
        let matched = sqlx::query(
            "UPDATE orders SET customer_id = ?, restaurant_id = ?, total_amount = ?, status = ?, \
             payment_id = ?, cancellation_reason = ?, created_at = ?, updated_at = ?, version = ? \
             WHERE id = ? AND version = ?",
        )
        .bind(&o.customer_id)
        .bind(&o.restaurant_id)
        .bind(o.total_amount.to_string())
        .bind(o.status.as_str())
        .bind(&o.payment_id)
        .bind(&o.cancellation_reason)
        .bind(naive(&o.created_at))
        .bind(naive(&o.updated_at))
        .bind(o.version as i64)
        .bind(&c.order_id)
        .bind(c.commit.expected_version as i64)
        .execute(&mut *conn)
        .await
        .map_err(|e| classify(e, CommitError::VersionConflict))?
        .rows_affected();
        // The connection reports matched rows (CLIENT_FOUND_ROWS).
        if matched == 0 {
            return Err(Fail::Commit(CommitError::VersionConflict));
        }
        sqlx::query("DELETE FROM order_items WHERE order_id = ?")
            .bind(&c.order_id)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn insert_items(
        &self,
        conn: &mut MySqlConnection,
        items: &[(&str, usize, &OrderItem)],
    ) -> Result<(), Fail> {
        for range in chunks(items.len()) {
            let part = &items[range];
            let sql = format!(
                "INSERT INTO order_items (order_id, line_no, menu_item_id, name, price, quantity) \
                 VALUES {}",
                placeholders(part.len(), 6)
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (order_id, line, item) in part {
                q = q
                    .bind(*order_id)
                    .bind(*line as i64)
                    .bind(&item.menu_item_id)
                    .bind(&item.name)
                    .bind(item.price.to_string())
                    .bind(i64::from(item.quantity));
            }
            q.execute(&mut *conn)
                .await
                .map_err(|e| classify(e, CommitError::VersionConflict))?;
        }
        Ok(())
    }

    /// Writes `commits` with multi-row statements. Any commit-level failure
    /// aborts the attempt (the caller rolls back and goes commit by commit).
    async fn write_together(
        &self,
        conn: &mut MySqlConnection,
        commits: &[&Prepared<'_>],
        created_at: chrono::NaiveDateTime,
    ) -> Result<Vec<Vec<i64>>, Fail> {
        let keys: Vec<&IdempotencyRecord> = commits
            .iter()
            .filter_map(|c| c.commit.idempotency.as_ref())
            .collect();
        self.insert_keys(conn, &keys).await?;

        let rows: Vec<&EventRow<'_>> = commits.iter().flat_map(|c| c.events.iter()).collect();
        let positions = self.insert_events(conn, &rows).await?;
        let with_positions: Vec<(&EventRow<'_>, i64)> = rows
            .iter()
            .copied()
            .zip(positions.iter().copied())
            .collect();
        self.insert_outbox(conn, &with_positions, created_at)
            .await?;

        let creates: Vec<&Order> = commits
            .iter()
            .filter(|c| c.commit.expected_version == 0)
            .map(|c| &c.commit.state)
            .collect();
        self.insert_orders(conn, &creates).await?;
        for c in commits.iter().filter(|c| c.commit.expected_version != 0) {
            self.update_order(conn, c).await?;
        }
        let items: Vec<(&str, usize, &OrderItem)> = commits
            .iter()
            .flat_map(|c| {
                c.commit
                    .state
                    .items
                    .iter()
                    .enumerate()
                    .map(|(line, item)| (c.order_id.as_str(), line, item))
            })
            .collect();
        self.insert_items(conn, &items).await?;

        let mut out = Vec::with_capacity(commits.len());
        let mut next = positions.into_iter();
        for c in commits {
            out.push(next.by_ref().take(c.events.len()).collect());
        }
        Ok(out)
    }

    /// Tries the whole batch at once; `Ok(None)` when a commit was rejected
    /// (the transaction is rolled back and nothing was written).
    async fn commit_fast(
        &self,
        prepared: &[Result<Prepared<'_>, CommitError>],
    ) -> Result<Option<Results>, sqlx::Error> {
        let valid: Vec<&Prepared<'_>> = prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
        let created_at = naive(&now());
        let mut tx = self.pool.begin().await?;
        let written = match self.write_together(&mut tx, &valid, created_at).await {
            Ok(w) => w,
            Err(Fail::Commit(_)) => {
                tx.rollback().await?;
                return Ok(None);
            }
            Err(Fail::Batch(e)) => return Err(e),
        };
        tx.commit().await?;
        let mut written = written.into_iter();
        Ok(Some(
            prepared
                .iter()
                .map(|p| match p {
                    Ok(_) => Ok(written.next().unwrap_or_default()),
                    Err(e) => Err(e.clone()),
                })
                .collect(),
        ))
    }

    /// Writes commit by commit, each under its own savepoint, so a
    /// rejected commit is rolled back alone.
    async fn commit_one_by_one(
        &self,
        prepared: &[Result<Prepared<'_>, CommitError>],
    ) -> Result<Results, sqlx::Error> {
        let created_at = naive(&now());
        let mut tx = self.pool.begin().await?;
        let mut results = Vec::with_capacity(prepared.len());
        for p in prepared {
            let c = match p {
                Ok(c) => c,
                Err(e) => {
                    results.push(Err(e.clone()));
                    continue;
                }
            };
            tx.execute("SAVEPOINT one_commit").await?;
            match self.write_together(&mut tx, &[c], created_at).await {
                Ok(mut positions) => results.push(Ok(positions.pop().unwrap_or_default())),
                Err(Fail::Commit(e)) => {
                    tx.execute("ROLLBACK TO SAVEPOINT one_commit").await?;
                    tracing::debug!(order_id = %c.order_id, error = %e, "commit rejected");
                    results.push(Err(e));
                }
                // Dropping `tx` rolls the whole batch back.
                Err(Fail::Batch(e)) => return Err(e),
            }
        }
        tx.commit().await?;
        Ok(results)
    }

    async fn commit_batch(&self, commits: &[Commit]) -> Result<Results, StoreError> {
        let prepared: Vec<Result<Prepared<'_>, CommitError>> =
            commits.iter().map(prepare).collect();
        let valid = prepared.iter().filter(|p| p.is_ok()).count();
        let mut fast = valid > 1;
        let mut attempt = 0;
        loop {
            let result = if fast {
                self.commit_fast(&prepared).await
            } else {
                self.commit_one_by_one(&prepared).await.map(Some)
            };
            match result {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => fast = false,
                Err(e) if is_retryable(&e) && attempt < TX_RETRIES => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "commit batch lost a lock race; retrying");
                    retry_pause(attempt).await;
                }
                Err(e) => return Err(db_err(e)),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

fn decode_event(row: &MySqlRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get(0).map_err(db_err)?;
    let event_id: String = row.try_get(1).map_err(db_err)?;
    let data: String = row.try_get(5).map_err(db_err)?;
    let schema_version: i64 = row.try_get(7).map_err(db_err)?;
    let envelope = EventEnvelope {
        event_id: Uuid::parse_str(&event_id)
            .map_err(|e| corrupt(format!("event {position}: bad event id {event_id:?}: {e}")))?,
        aggregate_id: row.try_get(2).map_err(db_err)?,
        aggregate_type: row.try_get(3).map_err(db_err)?,
        event_type: row.try_get(4).map_err(db_err)?,
        version: to_u64(row.try_get(6).map_err(db_err)?)?,
        schema_version: u32::try_from(schema_version).map_err(|_| {
            corrupt(format!(
                "event {position}: bad schema version {schema_version}"
            ))
        })?,
        occurred_on: utc(row.try_get(8).map_err(db_err)?),
        correlation_id: row.try_get(9).map_err(db_err)?,
        causation_id: row.try_get(10).map_err(db_err)?,
        data: serde_json::from_str(&data)
            .map_err(|e| corrupt(format!("event {position}: event_data is not JSON: {e}")))?,
    };
    Ok(RecordedEvent { position, envelope })
}

fn decode_events(rows: &[MySqlRow]) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter().map(decode_event).collect()
}

fn decimal(s: &str, what: &str) -> Result<Decimal, StoreError> {
    Decimal::from_str(s).map_err(|e| corrupt(format!("{what} {s:?} is not a decimal: {e}")))
}

/// The order and its items from one JOIN (one statement, one snapshot).
fn decode_order(id: Uuid, rows: &[MySqlRow]) -> Result<Option<Order>, StoreError> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut items = Vec::new();
    for r in rows {
        let Some(menu_item_id) = r.try_get::<Option<String>, _>(9).map_err(db_err)? else {
            continue;
        };
        let price: String = r.try_get(11).map_err(db_err)?;
        let quantity: i64 = r.try_get(12).map_err(db_err)?;
        items.push(OrderItem {
            menu_item_id,
            name: r.try_get(10).map_err(db_err)?,
            price: decimal(&price, "item price")?,
            quantity: u32::try_from(quantity)
                .map_err(|_| corrupt(format!("order {id}: bad quantity {quantity}")))?,
        });
    }
    let total: String = first.try_get(2).map_err(db_err)?;
    let status: String = first.try_get(3).map_err(db_err)?;
    Ok(Some(Order {
        id,
        customer_id: first.try_get(0).map_err(db_err)?,
        restaurant_id: first.try_get(1).map_err(db_err)?,
        items,
        total_amount: decimal(&total, "total amount")?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("order {id}: unknown status {status:?}")))?,
        payment_id: first.try_get(4).map_err(db_err)?,
        cancellation_reason: first.try_get(5).map_err(db_err)?,
        created_at: utc(first.try_get(6).map_err(db_err)?),
        updated_at: utc(first.try_get(7).map_err(db_err)?),
        version: to_u64(first.try_get(8).map_err(db_err)?)?,
    }))
}

#[async_trait]
impl EventStore for MySqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(commits = commits.len()))]
    async fn commit_batch(&self, commits: Vec<Commit>) -> Result<Results, StoreError> {
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        self.timed("commit", self.inner.commit_batch(&commits))
            .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn load_order(&self, id: Uuid) -> Result<Option<Order>, StoreError> {
        self.timed("load order", async {
            let rows = sqlx::query(
                "SELECT o.customer_id, o.restaurant_id, o.total_amount, o.status, o.payment_id, \
                 o.cancellation_reason, o.created_at, o.updated_at, o.version, \
                 i.menu_item_id, i.name, i.price, i.quantity \
                 FROM orders o LEFT JOIN order_items i ON i.order_id = o.id \
                 WHERE o.id = ? ORDER BY i.line_no",
            )
            .bind(id.to_string())
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
            decode_order(id, &rows)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn load_stream(
        &self,
        aggregate_id: &str,
        bound: StreamBound,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.timed("load stream", async {
            let q = match bound {
                StreamBound::All => sqlx::query(AssertSqlSafe(format!(
                    "SELECT {EVENT_COLUMNS} FROM event_store WHERE aggregate_id = ? ORDER BY version"
                )))
                .bind(aggregate_id),
                StreamBound::UpToVersion(v) => sqlx::query(AssertSqlSafe(format!(
                    "SELECT {EVENT_COLUMNS} FROM event_store \
                     WHERE aggregate_id = ? AND version <= ? ORDER BY version"
                )))
                .bind(aggregate_id)
                .bind(i64::try_from(v).unwrap_or(i64::MAX)),
                StreamBound::UpToInstant(t) => sqlx::query(AssertSqlSafe(format!(
                    "SELECT {EVENT_COLUMNS} FROM event_store \
                     WHERE aggregate_id = ? AND occurred_on <= ? ORDER BY version"
                )))
                .bind(aggregate_id)
                .bind(naive(&t)),
            };
            let rows = q.fetch_all(self.pool()).await.map_err(db_err)?;
            decode_events(&rows)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn read_all(&self, after: i64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        self.timed("read events", async {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {EVENT_COLUMNS} FROM event_store WHERE id > ? ORDER BY id LIMIT ?"
            )))
            .bind(after)
            .bind(db::limit(limit))
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
            decode_events(&rows)
        })
        .await
    }

    async fn head_position(&self) -> Result<i64, StoreError> {
        self.timed("head position", async {
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM event_store")
                .fetch_one(self.pool())
                .await
                .map_err(db_err)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn find_idempotency(&self, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.timed("find idempotency key", async {
            let row = sqlx::query(
                "SELECT fingerprint, order_id, created_at FROM idempotency_keys WHERE `key` = ?",
            )
            .bind(key)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
            let Some(row) = row else {
                return Ok(None);
            };
            let order_id: String = row.try_get(1).map_err(db_err)?;
            Ok(Some(IdempotencyRecord {
                key: key.to_owned(),
                fingerprint: row.try_get(0).map_err(db_err)?,
                order_id: Uuid::parse_str(&order_id)
                    .map_err(|e| corrupt(format!("idempotency key {key:?}: bad order id: {e}")))?,
                created_at: utc(row.try_get(2).map_err(db_err)?),
            }))
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", async {
            sqlx::query("SELECT 1")
                .execute(self.pool())
                .await
                .map(drop)
                .map_err(db_err)
        })
        .await
    }
}

// ---------------------------------------------------------------------------
// Outbox
// ---------------------------------------------------------------------------

/// Deletes outbox rows by position.
async fn delete_outbox(conn: &mut MySqlConnection, positions: &[i64]) -> Result<(), sqlx::Error> {
    for range in chunks(positions.len()) {
        let part = &positions[range];
        let sql = format!(
            "DELETE FROM outbox WHERE position IN ({})",
            in_list(part.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for p in part {
            q = q.bind(*p);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

#[async_trait]
impl Outbox for MySqlStore {
    /// Only the instance holding the relay lease gets rows; every other
    /// instance gets an empty batch until the lease runs out.
    async fn fetch_batch(&self, limit: usize) -> Result<Vec<OutboxMessage>, StoreError> {
        self.timed("fetch outbox", async {
            if !self.inner.lease.acquire(self.pool()).await? {
                return Ok(Vec::new());
            }
            let rows = sqlx::query(
                "SELECT position, payload, created_at FROM outbox ORDER BY position LIMIT ?",
            )
            .bind(db::limit(limit))
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let position: i64 = r.try_get(0).map_err(db_err)?;
                let payload: String = r.try_get(1).map_err(db_err)?;
                out.push(OutboxMessage {
                    position,
                    envelope: serde_json::from_str(&payload).map_err(|e| {
                        corrupt(format!("outbox row {position} is not an envelope: {e}"))
                    })?,
                    created_at: utc(r.try_get(2).map_err(db_err)?),
                });
            }
            self.inner.lease.batch_taken(!out.is_empty());
            Ok(out)
        })
        .await
    }

    fn last_batch_maybe_sent(&self) -> bool {
        self.inner.lease.last_batch_fresh()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(delivered = delivered.len(), parked = parked.len()))]
    async fn settle(&self, delivered: &[i64], parked: &[ParkedEvent]) -> Result<(), StoreError> {
        self.inner.lease.batch_settled();
        if delivered.is_empty() && parked.is_empty() {
            return Ok(());
        }
        let mut positions: Vec<i64> = delivered.to_vec();
        positions.extend(parked.iter().map(|p| p.position));
        let records: Vec<_> = parked.iter().map(|p| p.record.clone()).collect();
        self.timed("settle outbox", async {
            let mut attempt = 0;
            loop {
                let result: Result<(), sqlx::Error> = async {
                    let mut tx = self.pool().begin().await?;
                    insert_dlq_records(&mut tx, &records).await?;
                    delete_outbox(&mut tx, &positions).await?;
                    tx.commit().await
                }
                .await;
                match result {
                    Err(e) if (is_retryable(&e) || is_duplicate(&e)) && attempt < TX_RETRIES => {
                        attempt += 1;
                        retry_pause(attempt).await;
                    }
                    other => return other.map_err(db_err),
                }
            }
        })
        .await
    }

    async fn stats(&self) -> Result<OutboxStats, StoreError> {
        self.timed("outbox stats", async {
            let row = sqlx::query("SELECT COUNT(*), MIN(created_at) FROM outbox")
                .fetch_one(self.pool())
                .await
                .map_err(db_err)?;
            let pending: i64 = row.try_get(0).map_err(db_err)?;
            let oldest: Option<chrono::NaiveDateTime> = row.try_get(1).map_err(db_err)?;
            Ok(OutboxStats {
                pending: to_u64(pending)?,
                oldest_created_at: oldest.map(utc),
            })
        })
        .await
    }
}
