//! The outbox side of [`SqliteStore`](crate::SqliteStore), apart from the
//! event store because the relay, not the command path, drives it: it
//! reads and deletes what commits wrote, and parks events in the DLQ, under
//! the relay's partition leases (see [`crate::leases`]).

use async_trait::async_trait;
use order_core::ports::sql::outbox::{self, SettlePlan};
use order_core::ports::{
    bucket_of, Outbox, OutboxFetch, OutboxMessage, OutboxStats, Settled, Settlement, StoreError,
};
use rusqlite::{Connection, TransactionBehavior};

use crate::db::{db_err, execute, fetch, parse_ts, to_u64};
use crate::dlq::insert_dlq_record;
use crate::store::SqliteStore;

/// Most positions in one `IN (…)` list.
const CHUNK: usize = 500;

/// Gives rows written before buckets existed their bucket (run at open).
pub(crate) fn assign_buckets(conn: &mut Connection) -> Result<(), StoreError> {
    loop {
        let rows = fetch(conn, &outbox::unbucketed(CHUNK), |r| {
            Ok((r.int(0)?, r.text(1)?))
        })?;
        if rows.is_empty() {
            return Ok(());
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err)?;
        for (position, aggregate_id) in &rows {
            execute(&tx, &outbox::set_bucket(*position, bucket_of(aggregate_id)))?;
        }
        tx.commit().map_err(db_err)?;
    }
}

fn settle_in(conn: &Connection, s: &Settlement) -> Result<Settled, StoreError> {
    let mut plan = SettlePlan::new(s);
    if !s.fences.is_empty() {
        fetch(conn, &outbox::fence_rows(&s.fences), |r| plan.add_fence(r))?;
    }
    let fenced = plan.fenced(s);
    if !fenced.is_empty() {
        return Ok(Settled::Fenced(fenced));
    }
    for stmt in plan.head_queries(CHUNK) {
        fetch(conn, &stmt, |r| plan.add_head(r))?;
    }
    let mut done: Vec<i64> = s.delivered.clone();
    let mut held_back = Vec::new();
    for p in &s.parked {
        if plan.holds_back(p) {
            held_back.push(p.position);
        } else {
            insert_dlq_record(conn, &p.record)?;
            done.push(p.position);
        }
    }
    for part in done.chunks(CHUNK) {
        execute(conn, &outbox::delete(part))?;
    }
    Ok(Settled::Done { held_back })
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn fetch_batch(&self, want: OutboxFetch<'_>) -> Result<Vec<OutboxMessage>, StoreError> {
        let Some(stmt) = outbox::fetch(want) else {
            return Ok(Vec::new());
        };
        self.db
            .read_async(move |conn| fetch(conn, &stmt, outbox::read_message))
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(delivered = s.delivered.len(), parked = s.parked.len()))]
    async fn settle(&self, s: &Settlement) -> Result<Settled, StoreError> {
        let s = s.clone();
        self.db
            .write_async(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                let settled = settle_in(&tx, &s)?;
                tx.commit().map_err(db_err)?;
                Ok(settled)
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
