//! The write side on one MySQL/MariaDB database: the store handle, its
//! connection setup and the event store's reads. The write path
//! ([`crate::commit`]) and the outbox ([`crate::outbox`]) live in their own
//! modules so each can be read without scrolling past the other; the relay
//! partition leases are in [`crate::leases`], DLQ records in [`crate::dlq`].

use std::sync::Arc;

use async_trait::async_trait;
use order_core::domain::{Order, RecordedEvent};
use order_core::ports::sql::event_store;
use order_core::ports::{
    Commit, EventStore, IdempotencyRecord, StoreError, StreamBound, EVENT_COLUMNS,
};
use sqlx::mysql::{MySqlPool, MySqlRow};
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use crate::commit::Results;
use crate::db::{self, consecutive_ids, corrupt, db_err, naive, read_row, timed, utc, MySqlConfig};

/// Event store, current state, outbox and DLQ records on one MySQL/MariaDB
/// database. Cheap to clone; clones share the pool.
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
}

impl std::fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlStore")
            .field("database", &self.inner.database)
            .finish()
    }
}

impl MySqlStore {
    /// Connects with the default configuration (pool of 16), creating the
    /// database if missing and applying migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(MySqlConfig::new(url)).await
    }

    /// Connects with an explicit configuration.
    pub async fn connect_with(cfg: MySqlConfig) -> Result<Self, StoreError> {
        let (pool, database) = db::open_pool(&cfg).await?;
        let consecutive_ids = !cfg.read_back_positions && consecutive_ids(&pool).await?;
        crate::outbox::assign_buckets(&pool).await?;
        let inner = Arc::new(Inner {
            pool,
            database,
            cfg,
            consecutive_ids,
        });
        let store = Self { inner };
        let tls = store.tls_cipher().await?;
        tracing::info!(
            database = %store.inner.database,
            consecutive_ids,
            tls = tls.as_deref().unwrap_or("off"),
            "connected to MySQL"
        );
        Ok(store)
    }

    /// The TLS cipher of a pooled session (`None`: plain text).
    pub async fn tls_cipher(&self) -> Result<Option<String>, StoreError> {
        let row: Option<(String, String)> = sqlx::query_as("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(db_err)?;
        Ok(row.map(|(_, v)| v).filter(|v| !v.is_empty()))
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

    /// The database's clock (`UTC_TIMESTAMP(6)`): what replay claims and
    /// job leases are computed from.
    pub(crate) async fn db_clock(&self) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        self.timed("database clock", async {
            let t: chrono::NaiveDateTime = sqlx::query_scalar("SELECT UTC_TIMESTAMP(6)")
                .fetch_one(self.pool())
                .await
                .map_err(db_err)?;
            Ok(utc(t))
        })
        .await
    }

    /// Closes the pool.
    pub async fn close(&self) {
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

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

fn decode_events(rows: &[MySqlRow]) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter()
        .map(|row| read_row(row, event_store::read_event))
        .collect()
}

/// The order and its items from one JOIN (one statement, one snapshot).
fn decode_order(id: Uuid, rows: &[MySqlRow]) -> Result<Option<Order>, StoreError> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut order = read_row(first, |r| event_store::read_order(r, id))?;
    for row in rows {
        order
            .items
            .extend(read_row(row, |r| event_store::read_item(r, 9))?);
    }
    Order::try_from(order).map(Some)
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
