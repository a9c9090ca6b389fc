//! The outbox side of [`SqliteStore`](crate::SqliteStore), apart from the
//! event store because the relay, not the command path, drives it: it
//! reads and deletes what commits wrote, and parks events in the DLQ.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use order_core::ports::{Outbox, OutboxMessage, OutboxStats, ParkedEvent, StoreError};
use rusqlite::TransactionBehavior;

use crate::db::{corrupt, db_err, parse_ts, to_u64};
use crate::dlq::insert_dlq_record;
use crate::store::{limit, SqliteStore};

#[async_trait]
impl Outbox for SqliteStore {
    async fn fetch_batch(&self, limit_n: usize) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows = self
            .db
            .read_async(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT position, payload, created_at FROM outbox \
                         ORDER BY position LIMIT ?1",
                    )
                    .map_err(db_err)?;
                let mut rows = stmt.query([limit(limit_n)]).map_err(db_err)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(db_err)? {
                    let position: i64 = r.get(0).map_err(db_err)?;
                    let payload: String = r.get(1).map_err(db_err)?;
                    let created_at: String = r.get(2).map_err(db_err)?;
                    out.push(OutboxMessage {
                        position,
                        envelope: serde_json::from_str(&payload).map_err(|e| {
                            corrupt(format!("outbox row {position} is not an envelope: {e}"))
                        })?,
                        created_at: parse_ts(&created_at)?,
                    });
                }
                Ok(out)
            })
            .await?;
        if !rows.is_empty() {
            // The previous process may have crashed between publishing and settling.
            let (pending, last) = &*self.first_batch;
            last.store(pending.swap(false, Ordering::SeqCst), Ordering::SeqCst);
        }
        Ok(rows)
    }

    fn last_batch_maybe_sent(&self) -> bool {
        self.first_batch.1.load(Ordering::SeqCst)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(delivered = delivered.len(), parked = parked.len()))]
    async fn settle(&self, delivered: &[i64], parked: &[ParkedEvent]) -> Result<(), StoreError> {
        if delivered.is_empty() && parked.is_empty() {
            return Ok(());
        }
        let delivered = delivered.to_vec();
        let parked = parked.to_vec();
        self.db
            .write_async(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                {
                    let mut delete = tx
                        .prepare_cached("DELETE FROM outbox WHERE position = ?1")
                        .map_err(db_err)?;
                    for p in &delivered {
                        delete.execute([p]).map_err(db_err)?;
                    }
                    for p in &parked {
                        insert_dlq_record(&tx, &p.record)?;
                        delete.execute([p.position]).map_err(db_err)?;
                    }
                }
                tx.commit().map_err(db_err)
            })
            .await
    }

    async fn stats(&self) -> Result<OutboxStats, StoreError> {
        self.db
            .read_async(|conn| {
                let (pending, oldest): (i64, Option<String>) = conn
                    .prepare_cached("SELECT COUNT(*), MIN(created_at) FROM outbox")
                    .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
                    .map_err(db_err)?;
                Ok(OutboxStats {
                    pending: to_u64(pending)?,
                    oldest_created_at: oldest.as_deref().map(parse_ts).transpose()?,
                })
            })
            .await
    }
}
