//! The event store's write path, kept apart from the reads in
//! [`crate::store`]: it is the tuned part (batching, savepoints, retries)
//! and would otherwise bury the simple reads.
//!
//! `commit_batch` is the hot path: ONE transaction per batch. It first
//! tries the whole batch with a few multi-row INSERTs (a handful of round
//! trips for hundreds of commits); when any commit conflicts, that attempt
//! is rolled back and the batch is written again commit by commit, each
//! under its own SAVEPOINT, so only the conflicting commits fail.

use std::collections::HashMap;

use order_core::domain::{now, EventEnvelope, Order, OrderItem};
use order_core::ports::{bucket_of, Commit, CommitError, IdempotencyRecord, StoreError};
use sqlx::mysql::{MySql, MySqlArguments, MySqlConnection, MySqlQueryResult};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Executor, Row};

use crate::db::{
    chunks, db_err, in_list, is_data_error, is_duplicate, is_retryable, naive, placeholders,
    retry_pause, to_i64, TX_RETRIES,
};
use crate::store::Inner;

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

pub(crate) type Results = Vec<Result<Vec<i64>, CommitError>>;

type Statement = Query<'static, MySql, MySqlArguments>;

/// Runs one multi-row `{head} VALUES (?, …), …` for `part`; `bind` adds one
/// row's `cols` values.
async fn insert_chunk<T>(
    conn: &mut MySqlConnection,
    head: &str,
    cols: usize,
    part: &[T],
    bind: &impl Fn(Statement, &T) -> Statement,
) -> Result<MySqlQueryResult, sqlx::Error> {
    let sql = format!("{head} VALUES {}", placeholders(part.len(), cols));
    part.iter()
        .fold(sqlx::query(AssertSqlSafe(sql)), bind)
        .execute(conn)
        .await
}

/// Inserts `rows` with one multi-row statement per chunk ([`insert_chunk`]);
/// a rejected statement fails the commit with `on_duplicate` ([`classify`]).
async fn insert_rows<T>(
    conn: &mut MySqlConnection,
    head: &str,
    cols: usize,
    rows: &[T],
    on_duplicate: CommitError,
    bind: impl Fn(Statement, &T) -> Statement,
) -> Result<(), Fail> {
    for range in chunks(rows.len()) {
        insert_chunk(&mut *conn, head, cols, &rows[range], &bind)
            .await
            .map_err(|e| classify(e, on_duplicate.clone()))?;
    }
    Ok(())
}

/// Binds an order's current state, `customer_id` to `version` in column order.
fn bind_state(q: Statement, o: &Order) -> Statement {
    q.bind(&o.customer_id)
        .bind(&o.restaurant_id)
        .bind(o.total_amount.to_string())
        .bind(o.status.as_str())
        .bind(&o.payment_id)
        .bind(&o.cancellation_reason)
        .bind(naive(&o.created_at))
        .bind(naive(&o.updated_at))
        .bind(o.version as i64)
}

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
            // UNIQUE(aggregate_id, version): another command wrote this
            // version first. UNIQUE(event_id): the event was already
            // stored. Either way the commit was decided on a stale state.
            let done = insert_chunk(
                conn,
                "INSERT INTO event_store (event_id, aggregate_id, aggregate_type, event_type, \
                 event_data, version, schema_version, occurred_on, correlation_id, causation_id)",
                10,
                part,
                &|q, r| {
                    q.bind(&r.event_id)
                        .bind(&r.env.aggregate_id)
                        .bind(&r.env.aggregate_type)
                        .bind(&r.env.event_type)
                        .bind(&r.data)
                        .bind(r.version)
                        .bind(i64::from(r.env.schema_version))
                        .bind(naive(&r.env.occurred_on))
                        .bind(&r.env.correlation_id)
                        .bind(&r.env.causation_id)
                },
            )
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

    /// Version-guarded update of an existing order: only what a transition
    /// can change. The items, customer, restaurant, total and creation time
    /// are written once, by the create (`Order::apply` never changes them),
    /// so a transition costs one row and no item rows.
    async fn update_order(&self, conn: &mut MySqlConnection, c: &Prepared<'_>) -> Result<(), Fail> {
        let o = &c.commit.state;
        let matched = sqlx::query(
            "UPDATE orders SET status = ?, payment_id = ?, cancellation_reason = ?, \
             updated_at = ?, version = ? WHERE id = ? AND version = ?",
        )
        .bind(o.status.as_str())
        .bind(&o.payment_id)
        .bind(&o.cancellation_reason)
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
        insert_rows(
            conn,
            "INSERT INTO idempotency_keys (`key`, fingerprint, order_id, created_at)",
            4,
            &keys,
            CommitError::IdempotencyKeyTaken,
            |q, k| {
                q.bind(&k.key)
                    .bind(&k.fingerprint)
                    .bind(k.order_id.to_string())
                    .bind(naive(&k.created_at))
            },
        )
        .await?;

        let rows: Vec<&EventRow<'_>> = commits.iter().flat_map(|c| c.events.iter()).collect();
        let positions = self.insert_events(conn, &rows).await?;
        let with_positions: Vec<(&EventRow<'_>, i64)> = rows
            .iter()
            .copied()
            .zip(positions.iter().copied())
            .collect();
        insert_rows(
            conn,
            "INSERT INTO outbox (position, event_id, aggregate_id, payload, created_at, bucket)",
            6,
            &with_positions,
            CommitError::VersionConflict,
            |q, (r, position)| {
                q.bind(*position)
                    .bind(&r.event_id)
                    .bind(&r.env.aggregate_id)
                    .bind(&r.payload)
                    .bind(created_at)
                    .bind(bucket_of(&r.env.aggregate_id))
            },
        )
        .await?;

        let creates: Vec<&Order> = commits
            .iter()
            .filter(|c| c.commit.expected_version == 0)
            .map(|c| &c.commit.state)
            .collect();
        insert_rows(
            conn,
            "INSERT INTO orders (id, customer_id, restaurant_id, total_amount, status, \
             payment_id, cancellation_reason, created_at, updated_at, version)",
            10,
            &creates,
            CommitError::VersionConflict,
            |q, o| bind_state(q.bind(o.id.to_string()), o),
        )
        .await?;
        for c in commits.iter().filter(|c| c.commit.expected_version != 0) {
            self.update_order(conn, c).await?;
        }
        let items: Vec<(&str, usize, &OrderItem)> = commits
            .iter()
            .filter(|c| c.commit.expected_version == 0)
            .flat_map(|c| {
                c.commit
                    .state
                    .items
                    .iter()
                    .enumerate()
                    .map(|(line, item)| (c.order_id.as_str(), line, item))
            })
            .collect();
        insert_rows(
            conn,
            "INSERT INTO order_items (order_id, line_no, menu_item_id, name, price, quantity)",
            6,
            &items,
            CommitError::VersionConflict,
            |q, (order_id, line, item)| {
                q.bind(*order_id)
                    .bind(*line as i64)
                    .bind(&item.menu_item_id)
                    .bind(&item.name)
                    .bind(item.price.to_string())
                    .bind(i64::from(item.quantity))
            },
        )
        .await?;

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

    pub(crate) async fn commit_batch(&self, commits: &[Commit]) -> Result<Results, StoreError> {
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
