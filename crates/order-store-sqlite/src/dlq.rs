//! DLQ records (`dlq_replay_records`) in the write-side database, so the
//! relay parks an event and deletes its outbox row in one transaction. The
//! statements, row mapping and guard checks are
//! `order_core::ports::sql::dlq`; the sequencing rules are decided in the
//! core (`order_core::app::dlq::sequencing`) and arrive here as guarded
//! steps, written in one IMMEDIATE transaction (SQLite's single writer).

use std::ops::Range;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::ports::sql::dlq::{self, GuardedRows};
use order_core::ports::{
    DlqRecord, DlqSearch, DlqStats, DlqStatus, DlqStore, HeadQuery, ListRequest, NewDlqRecord,
    Page, ReplayClaims, SequenceChange, SequenceMember, StoreError,
};
use rusqlite::{Connection, TransactionBehavior};

use crate::db::{corrupt, db_err, execute, fetch, fetch_optional, fetch_page, index_hint};
use crate::store::SqliteStore;

/// Largest number of bound parameters used in one `IN (…)` list.
const IN_CHUNK: usize = 500;

fn in_chunks(n: usize) -> Vec<Range<usize>> {
    (0..n)
        .step_by(IN_CHUNK)
        .map(|start| start..n.min(start + IN_CHUNK))
        .collect()
}

/// Inserts a record unless its event id is already there. Returns whether
/// it was new.
pub(crate) fn insert_dlq_record(conn: &Connection, r: &NewDlqRecord) -> Result<bool, StoreError> {
    let insert = dlq::insert(&[r])?.then(" ON CONFLICT (event_id) DO NOTHING");
    Ok(execute(conn, &insert)? == 1)
}

fn write_tx<R>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let r = f(&tx)?;
    tx.commit().map_err(db_err)?;
    Ok(r)
}

/// Checks the guards on the rows as they are (inside the writer's
/// IMMEDIATE transaction, so nothing changes them meanwhile), then writes
/// the steps.
fn apply_change(conn: &Connection, change: &SequenceChange) -> Result<bool, StoreError> {
    let named = dlq::named(change);
    let mut rows = GuardedRows::default();
    for range in in_chunks(named.len()) {
        fetch(conn, &dlq::guarded_rows(&named[range]), |r| rows.add(r))?;
    }
    let heads = dlq::emptiness_checked(change);
    if !heads.is_empty() {
        fetch(conn, &dlq::unresolved_behind(&heads), |r| rows.add_held(r))?;
    }
    if !rows.hold(change) {
        return Ok(false);
    }
    for step in &change.steps {
        for stmt in dlq::step_statements(step, change.at, in_chunks) {
            execute(conn, &stmt)?;
        }
    }
    Ok(true)
}

#[async_trait]
impl DlqStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(records = records.len()))]
    async fn insert_new(&self, records: &[NewDlqRecord]) -> Result<Vec<String>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let records = records.to_vec();
        self.db
            .write_async(move |conn| {
                write_tx(conn, |tx| {
                    let mut known = Vec::new();
                    for r in &records {
                        if !insert_dlq_record(tx, r)? {
                            known.push(r.event_id.clone());
                        }
                    }
                    Ok(known)
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get(&self, event_id: &str) -> Result<Option<DlqRecord>, StoreError> {
        let q = dlq::get(event_id);
        self.db
            .read_async(move |conn| fetch_optional(conn, &q, dlq::read_record))
            .await
    }

    async fn list_page(
        &self,
        status: Option<DlqStatus>,
        req: ListRequest,
    ) -> Result<Page<DlqRecord>, StoreError> {
        let q = dlq::list(status, &req, index_hint);
        self.db
            .read_async(move |conn| fetch_page(conn, &q, dlq::read_record))
            .await
    }

    async fn search(&self, search: &DlqSearch) -> Result<Page<DlqRecord>, StoreError> {
        let q = dlq::search(search, index_hint);
        self.db
            .read_async(move |conn| fetch_page(conn, &q, dlq::read_record))
            .await
    }

    async fn stats(&self) -> Result<DlqStats, StoreError> {
        self.db
            .read_async(|conn| {
                fetch_optional(conn, &dlq::stats(), dlq::read_stats)?
                    .ok_or_else(|| corrupt("DLQ stats returned no row"))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(aggregates = aggregate_ids.len()))]
    async fn unresolved_publish_records(
        &self,
        aggregate_ids: &[String],
    ) -> Result<Vec<SequenceMember>, StoreError> {
        let queries: Vec<_> = aggregate_ids
            .chunks(IN_CHUNK)
            .map(|ids| dlq::unresolved_publish(ids.iter().map(String::as_str)))
            .collect();
        self.db
            .read_async(move |conn| {
                let mut out = Vec::new();
                for q in &queries {
                    out.extend(fetch(conn, q, dlq::read_member)?);
                }
                Ok(out)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(limit = query.limit))]
    async fn heads(&self, query: &HeadQuery<'_>) -> Result<Vec<DlqRecord>, StoreError> {
        let q = dlq::heads(query);
        self.db
            .read_async(move |conn| fetch(conn, &q, dlq::read_record))
            .await
    }

    async fn count_heads(&self, query: &HeadQuery<'_>) -> Result<u64, StoreError> {
        let q = dlq::count_heads(query);
        self.db
            .read_async(move |conn| fetch_optional(conn, &q, |r| r.count(0)))
            .await
            .map(Option::unwrap_or_default)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(heads = heads.len()))]
    async fn held_behind(&self, heads: &[String]) -> Result<Vec<DlqRecord>, StoreError> {
        let queries: Vec<_> = heads.chunks(IN_CHUNK).map(dlq::held_behind).collect();
        self.db
            .read_async(move |conn| {
                let mut out = Vec::new();
                for q in &queries {
                    out.extend(fetch(conn, q, dlq::read_record)?);
                }
                Ok(out)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(records = claims.event_ids.len()))]
    async fn claim_replays(&self, claims: ReplayClaims<'_>) -> Result<Vec<String>, StoreError> {
        let statements: Vec<_> = claims
            .event_ids
            .chunks(IN_CHUNK)
            .map(|ids| {
                let part = ReplayClaims {
                    event_ids: ids,
                    ..claims
                };
                (dlq::claim(&part), dlq::claimed(&part))
            })
            .collect();
        self.db
            .write_async(move |conn| {
                write_tx(conn, |tx| {
                    let mut held = Vec::new();
                    for (claim, claimed) in &statements {
                        execute(tx, claim)?;
                        held.extend(fetch(tx, claimed, |r| r.text(0))?);
                    }
                    Ok(held)
                })
            })
            .await
    }

    async fn release_replays(
        &self,
        event_ids: &[String],
        claimant: &str,
    ) -> Result<(), StoreError> {
        let statements: Vec<_> = event_ids
            .chunks(IN_CHUNK)
            .map(|ids| dlq::release(ids, claimant))
            .collect();
        self.db
            .write_async(move |conn| {
                write_tx(conn, |tx| {
                    for release in &statements {
                        execute(tx, release)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// SQLite runs in this process: its clock is this process's.
    async fn clock(&self) -> Result<DateTime<Utc>, StoreError> {
        Ok(order_core::domain::now())
    }

    async fn purge_resolved(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        self.db
            .write_async(move |conn| {
                write_tx(conn, |tx| {
                    let ids = fetch(tx, &dlq::purgeable(before, limit), |r| r.int(0))?;
                    let mut gone = 0;
                    for part in ids.chunks(IN_CHUNK) {
                        gone += execute(tx, &dlq::purge(part, before))?;
                    }
                    Ok(gone as u64)
                })
            })
            .await
    }

    async fn orphaned_holds(&self) -> Result<u64, StoreError> {
        self.db
            .read_async(|conn| fetch_optional(conn, &dlq::orphaned_holds(), |r| r.count(0)))
            .await
            .map(Option::unwrap_or_default)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(steps = change.steps.len()))]
    async fn apply(&self, change: &SequenceChange) -> Result<bool, StoreError> {
        let change = change.clone();
        self.db
            .write_async(move |conn| write_tx(conn, |tx| apply_change(tx, &change)))
            .await
    }
}
