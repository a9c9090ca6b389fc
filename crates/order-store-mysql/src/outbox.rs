//! The outbox side of [`MySqlStore`](crate::MySqlStore), apart from the
//! event store because the relay, not the command path, drives it and it
//! answers to the relay lease rather than to commits.

use async_trait::async_trait;
use order_core::ports::{Outbox, OutboxMessage, OutboxStats, ParkedEvent, StoreError};
use sqlx::mysql::MySqlConnection;
use sqlx::{AssertSqlSafe, Row};

use crate::db::{
    self, chunks, corrupt, db_err, in_list, is_duplicate, is_retryable, retry_pause, to_u64, utc,
    TX_RETRIES,
};
use crate::dlq::insert_dlq_records;
use crate::store::MySqlStore;

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
