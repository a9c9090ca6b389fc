//! DLQ records (`dlq_replay_records`) in the write-side database, so the
//! relay parks an event and deletes its outbox row in one transaction. The
//! statements, row mapping and guard checks are `order_core::ports::sql::dlq`;
//! the sequencing rules are decided in the core
//! (`order_core::app::dlq::sequencing`) and arrive here as guarded steps,
//! written under row locks so instances sharing the database serialise.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::ports::sql::dlq::{self, GuardedRows};
use order_core::ports::{
    DlqRecord, DlqSearch, DlqStats, DlqStatus, DlqStore, HeadQuery, ListRequest, NewDlqRecord,
    Page, ReplayClaims, SequenceChange, SequenceMember, StoreError,
};
use sqlx::mysql::MySqlConnection;

use crate::db::{
    chunks, corrupt, db_err, execute, fetch, fetch_optional, fetch_page, fit, in_tx, index_hint,
    is_duplicate, is_retryable, query, read_row, retry_pause, TX_RETRIES,
};
use crate::store::MySqlStore;

/// Widths of the VARCHAR columns; longer values (only a malformed message
/// from the DLQ topic can carry them) are cut to fit rather than stall the
/// recorder.
const ID_WIDTH: usize = 255;

/// A record cut to the column widths.
fn fitted(r: &NewDlqRecord) -> NewDlqRecord {
    let cut = |s: &str| fit(s, ID_WIDTH).into_owned();
    NewDlqRecord {
        event_id: cut(&r.event_id),
        aggregate_id: cut(&r.aggregate_id),
        event_type: cut(&r.event_type),
        version: r.version,
        original_event: r.original_event.clone(),
        failure_reason: r.failure_reason.clone(),
        failure_class: r.failure_class,
        failure_time: r.failure_time,
        source: r.source,
        blocked_by: r.blocked_by.as_deref().map(cut),
        topic: cut(&r.topic),
        origin: r.origin.as_deref().map(cut),
        consumer_group: r.consumer_group.as_deref().map(cut),
        imported: r.imported.as_ref().map(|m| order_core::ports::ImportMark {
            at: m.at,
            by: cut(&m.by),
        }),
    }
}

/// Locks the records of these event ids (`FOR UPDATE`, in event-id order,
/// so two transactions never lock the same rows in opposite orders) and
/// reads them.
async fn lock_records(
    conn: &mut MySqlConnection,
    event_ids: &[&str],
) -> Result<GuardedRows, sqlx::Error> {
    let mut rows = GuardedRows::default();
    for range in chunks(event_ids.len()) {
        let lock = dlq::guarded_rows(&event_ids[range]).then(" FOR UPDATE");
        for row in query(&lock)?.fetch_all(&mut *conn).await? {
            read_row(&row, |r| rows.add(r)).map_err(in_tx)?;
        }
    }
    Ok(rows)
}

/// Inserts the records (inside the caller's transaction) whose event id is
/// not stored yet. Returns one event id per record that was not inserted
/// (already stored, or a duplicate inside `records`).
///
/// Existing rows are locked (`FOR UPDATE`) before deciding. A concurrent
/// insert of the same new event id surfaces as a duplicate-key error; the
/// caller runs the whole transaction again.
pub(crate) async fn insert_dlq_records(
    conn: &mut MySqlConnection,
    records: &[NewDlqRecord],
) -> Result<Vec<String>, sqlx::Error> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let records: Vec<NewDlqRecord> = records.iter().map(fitted).collect();
    let mut ids: Vec<&str> = records.iter().map(|r| r.event_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let stored = lock_records(conn, &ids).await?;

    let mut new: Vec<&NewDlqRecord> = Vec::new();
    let mut taken: HashSet<&str> = HashSet::new();
    let mut known = Vec::new();
    for r in &records {
        if !stored.contains(&r.event_id) && taken.insert(&r.event_id) {
            new.push(r);
        } else {
            known.push(r.event_id.clone());
        }
    }
    for range in chunks(new.len()) {
        let insert = dlq::insert(&new[range]).map_err(in_tx)?;
        query(&insert)?.execute(&mut *conn).await?;
    }
    Ok(known)
}

/// The rows a change names locked, then its guards checked and its steps
/// written.
async fn apply_change(
    conn: &mut MySqlConnection,
    change: &SequenceChange,
) -> Result<bool, sqlx::Error> {
    let mut rows = lock_records(conn, &dlq::named(change)).await?;
    let heads = dlq::emptiness_checked(change);
    if !heads.is_empty() {
        // A locking read: sees what a relay parked behind a head and
        // committed after this transaction began.
        let held = dlq::unresolved_behind(&heads).then(" FOR UPDATE");
        for row in query(&held)?.fetch_all(&mut *conn).await? {
            read_row(&row, |r| rows.add_held(r)).map_err(in_tx)?;
        }
    }
    if !rows.hold(change) {
        return Ok(false);
    }
    for step in &change.steps {
        for stmt in dlq::step_statements(step, change.at, chunks) {
            query(&stmt)?.execute(&mut *conn).await?;
        }
    }
    Ok(true)
}

/// Runs `$body` (which uses the transaction `$tx`) in a transaction, again
/// when it loses a deadlock or a duplicate-key race.
macro_rules! retry_tx {
    ($store:expr, |$tx:ident| $body:block) => {{
        let mut attempt = 0;
        loop {
            let result: Result<_, sqlx::Error> = async {
                let mut $tx = $store.pool().begin().await?;
                let value = $body;
                $tx.commit().await?;
                Ok(value)
            }
            .await;
            match result {
                Err(e) if (is_retryable(&e) || is_duplicate(&e)) && attempt < TX_RETRIES => {
                    attempt += 1;
                    retry_pause(attempt).await;
                }
                other => break other.map_err(db_err),
            }
        }
    }};
}

#[async_trait]
impl DlqStore for MySqlStore {
    #[tracing::instrument(level = "debug", skip_all, fields(records = records.len()))]
    async fn insert_new(&self, records: &[NewDlqRecord]) -> Result<Vec<String>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.timed("insert DLQ records", async {
            retry_tx!(self, |tx| { insert_dlq_records(&mut tx, records).await? })
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get(&self, event_id: &str) -> Result<Option<DlqRecord>, StoreError> {
        let q = dlq::get(event_id);
        self.timed(
            "get DLQ record",
            fetch_optional(self.pool(), &q, dlq::read_record),
        )
        .await
    }

    async fn list_page(
        &self,
        status: Option<DlqStatus>,
        req: ListRequest,
    ) -> Result<Page<DlqRecord>, StoreError> {
        let q = dlq::list(status, &req, index_hint);
        self.timed(
            "list DLQ records",
            fetch_page(self.pool(), &q, dlq::read_record),
        )
        .await
    }

    async fn search(&self, search: &DlqSearch) -> Result<Page<DlqRecord>, StoreError> {
        let q = dlq::search(search, index_hint);
        self.timed(
            "search DLQ records",
            fetch_page(self.pool(), &q, dlq::read_record),
        )
        .await
    }

    async fn stats(&self) -> Result<DlqStats, StoreError> {
        self.timed("DLQ stats", async {
            fetch_optional(self.pool(), &dlq::stats(), dlq::read_stats)
                .await?
                .ok_or_else(|| corrupt("DLQ stats returned no row"))
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(aggregates = aggregate_ids.len()))]
    async fn unresolved_publish_records(
        &self,
        aggregate_ids: &[String],
    ) -> Result<Vec<SequenceMember>, StoreError> {
        let mut ids: Vec<&str> = aggregate_ids.iter().map(String::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        self.timed("unresolved DLQ records", async {
            let mut out = Vec::new();
            for range in chunks(ids.len()) {
                let q = dlq::unresolved_publish(ids[range].iter().copied());
                out.extend(fetch(self.pool(), &q, dlq::read_member).await?);
            }
            Ok(out)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(limit = query.limit))]
    async fn heads(&self, query: &HeadQuery<'_>) -> Result<Vec<DlqRecord>, StoreError> {
        let q = dlq::heads(query);
        self.timed(
            "DLQ sequence heads",
            fetch(self.pool(), &q, dlq::read_record),
        )
        .await
    }

    async fn count_heads(&self, query: &HeadQuery<'_>) -> Result<u64, StoreError> {
        let q = dlq::count_heads(query);
        self.timed("count DLQ sequence heads", async {
            fetch_optional(self.pool(), &q, |r| r.count(0))
                .await
                .map(Option::unwrap_or_default)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(heads = heads.len()))]
    async fn held_behind(&self, heads: &[String]) -> Result<Vec<DlqRecord>, StoreError> {
        self.timed("held DLQ records", async {
            let mut out = Vec::new();
            for range in chunks(heads.len()) {
                let q = dlq::held_behind(&heads[range]);
                out.extend(fetch(self.pool(), &q, dlq::read_record).await?);
            }
            Ok(out)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(records = claims.event_ids.len()))]
    async fn claim_replays(&self, claims: ReplayClaims<'_>) -> Result<Vec<String>, StoreError> {
        let mut ids = claims.event_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        self.timed("claim DLQ records for replay", async {
            retry_tx!(self, |tx| {
                let mut held = Vec::new();
                for range in chunks(ids.len()) {
                    let part = ReplayClaims {
                        event_ids: &ids[range],
                        ..claims
                    };
                    query(&dlq::claim(&part))?.execute(&mut *tx).await?;
                    for row in query(&dlq::claimed(&part))?.fetch_all(&mut *tx).await? {
                        held.push(read_row(&row, |r| r.text(0)).map_err(in_tx)?);
                    }
                }
                held
            })
        })
        .await
    }

    async fn release_replays(
        &self,
        event_ids: &[String],
        claimant: &str,
    ) -> Result<(), StoreError> {
        self.timed("release DLQ replay claims", async {
            for range in chunks(event_ids.len()) {
                execute(self.pool(), &dlq::release(&event_ids[range], claimant)).await?;
            }
            Ok(())
        })
        .await
    }

    async fn clock(&self) -> Result<DateTime<Utc>, StoreError> {
        self.db_clock().await
    }

    /// The deletes run in one transaction, again when it loses a deadlock:
    /// the counting triggers lock `dlq_counters` rows that replays lock too.
    async fn purge_resolved(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        self.timed("purge resolved DLQ records", async {
            let ids = fetch(self.pool(), &dlq::purgeable(before, limit), |r| r.int(0)).await?;
            retry_tx!(self, |tx| {
                let mut gone = 0;
                for range in chunks(ids.len()) {
                    let purge = dlq::purge(&ids[range], before);
                    gone += query(&purge)?.execute(&mut *tx).await?.rows_affected();
                }
                gone
            })
        })
        .await
    }

    async fn orphaned_holds(&self) -> Result<u64, StoreError> {
        self.timed("DLQ orphaned holds", async {
            fetch_optional(self.pool(), &dlq::orphaned_holds(), |r| r.count(0))
                .await
                .map(Option::unwrap_or_default)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(steps = change.steps.len()))]
    async fn apply(&self, change: &SequenceChange) -> Result<bool, StoreError> {
        self.timed("DLQ sequence change", async {
            retry_tx!(self, |tx| { apply_change(&mut tx, change).await? })
        })
        .await
    }
}
