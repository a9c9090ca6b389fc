//! The outbox side of [`MySqlStore`](crate::MySqlStore), apart from the
//! event store because the relay, not the command path, drives it and it
//! answers to the relay's partition leases ([`crate::leases`]) rather than
//! to commits.

use async_trait::async_trait;
use order_core::ports::sql::outbox::{self, SettlePlan};
use order_core::ports::{
    bucket_of, Outbox, OutboxFetch, OutboxMessage, OutboxStats, Settled, Settlement, StoreError,
};
use sqlx::mysql::{MySqlConnection, MySqlPool};
use sqlx::Row;

use crate::db::{
    self, chunks, db_err, fetch, in_tx, is_duplicate, is_retryable, query, read_row, retry_pause,
    to_u64, utc, TX_RETRIES,
};
use crate::dlq::insert_dlq_records;
use crate::store::MySqlStore;

/// Gives rows written before buckets existed their bucket (run at connect).
pub(crate) async fn assign_buckets(pool: &MySqlPool) -> Result<(), StoreError> {
    loop {
        let rows = fetch(pool, &outbox::unbucketed(500), |r| {
            Ok((r.int(0)?, r.text(1)?))
        })
        .await?;
        if rows.is_empty() {
            return Ok(());
        }
        for (position, aggregate_id) in &rows {
            db::execute(
                pool,
                &outbox::set_bucket(*position, bucket_of(aggregate_id)),
            )
            .await?;
        }
    }
}

/// The settle inside its transaction: the fences and the heads named are
/// locked first (`FOR UPDATE`, in key order), then the plan decides.
async fn settle_in(conn: &mut MySqlConnection, s: &Settlement) -> Result<Settled, sqlx::Error> {
    let mut plan = SettlePlan::new(s);
    if !s.fences.is_empty() {
        let lock = outbox::fence_rows(&s.fences).then(" FOR UPDATE");
        for row in query(&lock)?.fetch_all(&mut *conn).await? {
            read_row(&row, |r| plan.add_fence(r)).map_err(in_tx)?;
        }
    }
    let fenced = plan.fenced(s);
    if !fenced.is_empty() {
        return Ok(Settled::Fenced(fenced));
    }
    for stmt in plan.head_queries(500) {
        for row in query(&stmt.then(" FOR UPDATE"))?
            .fetch_all(&mut *conn)
            .await?
        {
            read_row(&row, |r| plan.add_head(r)).map_err(in_tx)?;
        }
    }
    let mut done: Vec<i64> = s.delivered.clone();
    let mut held_back = Vec::new();
    let mut records = Vec::new();
    for p in &s.parked {
        if plan.holds_back(p) {
            held_back.push(p.position);
        } else {
            records.push(p.record.clone());
            done.push(p.position);
        }
    }
    insert_dlq_records(&mut *conn, &records).await?;
    for range in chunks(done.len()) {
        query(&outbox::delete(&done[range]))?
            .execute(&mut *conn)
            .await?;
    }
    Ok(Settled::Done { held_back })
}

#[async_trait]
impl Outbox for MySqlStore {
    async fn fetch_batch(&self, want: OutboxFetch<'_>) -> Result<Vec<OutboxMessage>, StoreError> {
        let Some(stmt) = outbox::fetch(want) else {
            return Ok(Vec::new());
        };
        self.timed(
            "fetch outbox",
            fetch(self.pool(), &stmt, outbox::read_message),
        )
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(delivered = s.delivered.len(), parked = s.parked.len()))]
    async fn settle(&self, s: &Settlement) -> Result<Settled, StoreError> {
        self.timed("settle outbox", async {
            let mut attempt = 0;
            loop {
                let result: Result<Settled, sqlx::Error> = async {
                    let mut tx = self.pool().begin().await?;
                    let settled = settle_in(&mut tx, s).await?;
                    if matches!(settled, Settled::Done { .. }) {
                        tx.commit().await?;
                    }
                    Ok(settled)
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
