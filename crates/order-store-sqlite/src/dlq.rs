//! DLQ records (`dlq_replay_records`) in the write-side database, so the
//! relay parks an event and deletes its outbox row in one transaction.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::ports::{
    DlqRecord, DlqSource, DlqStats, DlqStatus, DlqStore, NewDlqRecord, Page, PageRequest, Skipped,
    StoreError, Transitioned,
};
use rusqlite::{params, Connection, Row, TransactionBehavior};

use crate::db::{corrupt, db_err, parse_opt_ts, parse_ts, to_i64, to_u64, ts};
use crate::store::SqliteStore;

const COLUMNS: &str = "id, event_id, aggregate_id, event_type, version, original_event, \
     failure_reason, failure_time, status, replay_attempt_time, replay_result, replay_attempts, \
     source, blocked_by, topic, origin";

/// Largest number of bound parameters used in one `IN (…)` list.
const IN_CHUNK: usize = 500;

/// Inserts a record unless its event id is already there. Returns whether
/// it was new.
pub(crate) fn insert_dlq_record(conn: &Connection, r: &NewDlqRecord) -> Result<bool, StoreError> {
    let version = r.version.map(to_i64).transpose()?;
    let n = conn
        .prepare_cached(
            "INSERT INTO dlq_replay_records (event_id, aggregate_id, event_type, version, \
             original_event, failure_reason, failure_time, status, replay_attempts, source, \
             blocked_by, topic, origin) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'PENDING', 0, ?8, ?9, ?10, ?11) \
             ON CONFLICT (event_id) DO UPDATE SET status = 'PENDING', \
               failure_reason = excluded.failure_reason, failure_time = excluded.failure_time, \
               origin = excluded.origin \
             WHERE dlq_replay_records.status = 'REPLAYED' AND excluded.source = 'CONSUMER' \
               AND excluded.origin IS NOT NULL \
               AND dlq_replay_records.origin IS NOT excluded.origin",
        )
        .map_err(db_err)?
        .execute(params![
            r.event_id,
            r.aggregate_id,
            r.event_type,
            version,
            r.original_event,
            r.failure_reason,
            ts(&r.failure_time),
            r.source.as_str(),
            r.blocked_by,
            r.topic,
            r.origin,
        ])
        .map_err(db_err)?;
    Ok(n == 1)
}

fn decode(row: &Row<'_>) -> Result<DlqRecord, StoreError> {
    let id: i64 = row.get(0).map_err(db_err)?;
    let status: String = row.get(8).map_err(db_err)?;
    let source: String = row.get(12).map_err(db_err)?;
    let failure_time: String = row.get(7).map_err(db_err)?;
    let attempts: i64 = row.get(11).map_err(db_err)?;
    Ok(DlqRecord {
        id,
        event_id: row.get(1).map_err(db_err)?,
        aggregate_id: row.get(2).map_err(db_err)?,
        event_type: row.get(3).map_err(db_err)?,
        version: row
            .get::<_, Option<i64>>(4)
            .map_err(db_err)?
            .map(to_u64)
            .transpose()?,
        original_event: row.get(5).map_err(db_err)?,
        failure_reason: row.get(6).map_err(db_err)?,
        failure_time: parse_ts(&failure_time)?,
        status: DlqStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("DLQ record {id}: unknown status {status:?}")))?,
        replay_attempt_time: parse_opt_ts(row.get(9).map_err(db_err)?)?,
        replay_result: row.get(10).map_err(db_err)?,
        replay_attempts: u32::try_from(attempts)
            .map_err(|_| corrupt(format!("DLQ record {id}: bad replay_attempts {attempts}")))?,
        source: DlqSource::parse(&source)
            .ok_or_else(|| corrupt(format!("DLQ record {id}: unknown source {source:?}")))?,
        blocked_by: row.get(13).map_err(db_err)?,
        topic: row.get(14).map_err(db_err)?,
        origin: row.get(15).map_err(db_err)?,
    })
}

fn query_records<P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
) -> Result<Vec<DlqRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = stmt.query(params).map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db_err)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

fn get_record(conn: &Connection, event_id: &str) -> Result<Option<DlqRecord>, StoreError> {
    Ok(query_records(
        conn,
        &format!("SELECT {COLUMNS} FROM dlq_replay_records WHERE event_id = ?1"),
        [event_id],
    )?
    .pop())
}

fn count(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row(params, |r| r.get(0)))
        .map_err(db_err)?;
    to_u64(n)
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

#[async_trait]
impl DlqStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(records = records.len()))]
    async fn insert(&self, records: &[NewDlqRecord]) -> Result<usize, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let records = records.to_vec();
        self.db
            .write_async(move |conn| {
                write_tx(conn, |tx| {
                    let mut new = 0;
                    for r in &records {
                        if insert_dlq_record(tx, r)? {
                            new += 1;
                        }
                    }
                    Ok(new)
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get(&self, event_id: &str) -> Result<Option<DlqRecord>, StoreError> {
        let event_id = event_id.to_owned();
        self.db
            .read_async(move |conn| get_record(conn, &event_id))
            .await
    }

    async fn list(
        &self,
        status: Option<DlqStatus>,
        page: PageRequest,
    ) -> Result<Page<DlqRecord>, StoreError> {
        let size = i64::from(page.size.max(1));
        let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
        self.db
            .read_async(move |conn| {
                // One snapshot for the page and its total.
                let tx = conn.unchecked_transaction().map_err(db_err)?;
                let (content, total) = match status {
                    Some(s) => (
                        query_records(
                            &tx,
                            &format!(
                                "SELECT {COLUMNS} FROM dlq_replay_records WHERE status = ?1 \
                                 ORDER BY failure_time DESC, id DESC LIMIT ?2 OFFSET ?3"
                            ),
                            params![s.as_str(), size, offset],
                        )?,
                        count(
                            &tx,
                            "SELECT COUNT(*) FROM dlq_replay_records WHERE status = ?1",
                            [s.as_str()],
                        )?,
                    ),
                    None => (
                        query_records(
                            &tx,
                            &format!(
                                "SELECT {COLUMNS} FROM dlq_replay_records \
                                 ORDER BY failure_time DESC, id DESC LIMIT ?1 OFFSET ?2"
                            ),
                            params![size, offset],
                        )?,
                        count(&tx, "SELECT COUNT(*) FROM dlq_replay_records", [])?,
                    ),
                };
                tx.finish().map_err(db_err)?;
                Ok(Page::new(content, page, total))
            })
            .await
    }

    async fn stats(&self) -> Result<DlqStats, StoreError> {
        self.db
            .read_async(|conn| {
                let tx = conn.unchecked_transaction().map_err(db_err)?;
                let mut stats = DlqStats::default();
                {
                    let mut stmt = tx
                        .prepare_cached(
                            "SELECT status, COUNT(*) FROM dlq_replay_records GROUP BY status",
                        )
                        .map_err(db_err)?;
                    let mut rows = stmt.query([]).map_err(db_err)?;
                    while let Some(r) = rows.next().map_err(db_err)? {
                        let status: String = r.get(0).map_err(db_err)?;
                        let n = to_u64(r.get(1).map_err(db_err)?)?;
                        match DlqStatus::parse(&status) {
                            Some(DlqStatus::Pending) => stats.pending_count = n,
                            Some(DlqStatus::Replayed) => stats.replayed_count = n,
                            Some(DlqStatus::Failed) => stats.failed_count = n,
                            Some(DlqStatus::Skipped) => stats.skipped_count = n,
                            None => return Err(corrupt(format!("unknown DLQ status {status:?}"))),
                        }
                        stats.total_count += n;
                    }
                }
                stats.blocked_count = count(
                    &tx,
                    "SELECT COUNT(*) FROM dlq_replay_records \
                     WHERE status = 'PENDING' AND blocked_by IS NOT NULL",
                    [],
                )?;
                let oldest: Option<String> = tx
                    .prepare_cached(
                        "SELECT MIN(failure_time) FROM dlq_replay_records \
                         WHERE status IN ('PENDING', 'FAILED')",
                    )
                    .and_then(|mut s| s.query_row([], |r| r.get(0)))
                    .map_err(db_err)?;
                stats.oldest_pending_failure_time = parse_opt_ts(oldest)?;
                tx.finish().map_err(db_err)?;
                Ok(stats)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(aggregates = aggregate_ids.len()))]
    async fn unresolved_heads(
        &self,
        aggregate_ids: &[String],
    ) -> Result<HashMap<String, String>, StoreError> {
        if aggregate_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids = aggregate_ids.to_vec();
        self.db
            .read_async(move |conn| {
                let mut heads = HashMap::new();
                for chunk in ids.chunks(IN_CHUNK) {
                    let marks = vec!["?"; chunk.len()].join(", ");
                    // Highest version first: with several heads, the lowest version is
                    // inserted last and wins.
                    let sql = format!(
                        "SELECT aggregate_id, event_id FROM dlq_replay_records \
                         WHERE aggregate_id IN ({marks}) AND source = 'PUBLISH' \
                         AND status IN ('PENDING', 'FAILED') \
                         ORDER BY version DESC, id DESC"
                    );
                    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
                    let mut rows = stmt
                        .query(rusqlite::params_from_iter(chunk.iter()))
                        .map_err(db_err)?;
                    while let Some(r) = rows.next().map_err(db_err)? {
                        heads.insert(r.get(0).map_err(db_err)?, r.get(1).map_err(db_err)?);
                    }
                }
                Ok(heads)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn blocked_behind(&self, head_event_id: &str) -> Result<Vec<DlqRecord>, StoreError> {
        let head = head_event_id.to_owned();
        self.db
            .read_async(move |conn| {
                query_records(
                    conn,
                    &format!(
                        "SELECT {COLUMNS} FROM dlq_replay_records WHERE blocked_by = ?1 \
                         AND status IN ('PENDING', 'FAILED') ORDER BY version, id"
                    ),
                    [&head],
                )
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(records = event_ids.len()))]
    async fn mark_replayed(
        &self,
        event_ids: &[String],
        at: DateTime<Utc>,
        result: &str,
    ) -> Result<(), StoreError> {
        if event_ids.is_empty() {
            return Ok(());
        }
        let ids = event_ids.to_vec();
        let result = result.to_owned();
        let at = ts(&at);
        self.db
            .write_async(move |conn| {
                write_tx(conn, |tx| {
                    let mut stmt = tx
                        .prepare_cached(
                            "UPDATE dlq_replay_records SET status = 'REPLAYED', \
                             replay_attempts = replay_attempts + 1, replay_attempt_time = ?2, \
                             replay_result = ?3 \
                             WHERE event_id = ?1 AND status IN ('PENDING', 'FAILED')",
                        )
                        .map_err(db_err)?;
                    for id in &ids {
                        stmt.execute(params![id, at, result]).map_err(db_err)?;
                    }
                    Ok(())
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, at, result))]
    async fn mark_failed(
        &self,
        event_id: &str,
        previous_head: &str,
        at: DateTime<Utc>,
        result: &str,
    ) -> Result<(), StoreError> {
        let (event_id, previous_head) = (event_id.to_owned(), previous_head.to_owned());
        let result = result.to_owned();
        let at = ts(&at);
        self.db
            .write_async(move |conn| {
                write_tx(conn, |tx| {
                    tx.prepare_cached(
                        "UPDATE dlq_replay_records SET status = 'FAILED', \
                         replay_attempts = replay_attempts + 1, replay_attempt_time = ?2, \
                         replay_result = ?3, blocked_by = NULL WHERE event_id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![event_id, at, result]))
                    .map_err(db_err)?;
                    tx.prepare_cached(
                        "UPDATE dlq_replay_records SET blocked_by = ?1 \
                         WHERE blocked_by = ?2 AND event_id <> ?1",
                    )
                    .and_then(|mut s| s.execute(params![event_id, previous_head]))
                    .map_err(db_err)?;
                    Ok(())
                })
            })
            .await
    }

    async fn claim_replay(
        &self,
        event_id: &str,
        claimant: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let (event_id, claimant) = (event_id.to_owned(), claimant.to_owned());
        let (now, until) = (ts(&now), ts(&until));
        self.db
            .write_async(move |conn| {
                conn.prepare_cached(
                    "UPDATE dlq_replay_records SET replay_claimed_by = ?2, \
                     replay_claimed_until = ?4 WHERE event_id = ?1 \
                     AND status IN ('PENDING', 'FAILED') AND (replay_claimed_by IS NULL \
                     OR replay_claimed_by = ?2 OR replay_claimed_until < ?3)",
                )
                .and_then(|mut s| s.execute(params![event_id, claimant, now, until]))
                .map(|n| n == 1)
                .map_err(db_err)
            })
            .await
    }

    async fn release_replay(&self, event_id: &str, claimant: &str) -> Result<(), StoreError> {
        let (event_id, claimant) = (event_id.to_owned(), claimant.to_owned());
        self.db
            .write_async(move |conn| {
                conn.prepare_cached(
                    "UPDATE dlq_replay_records SET replay_claimed_by = NULL, \
                     replay_claimed_until = NULL WHERE event_id = ?1 AND replay_claimed_by = ?2",
                )
                .and_then(|mut s| s.execute(params![event_id, claimant]))
                .map(drop)
                .map_err(db_err)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, result, at))]
    async fn transition(
        &self,
        event_id: &str,
        from: DlqStatus,
        to: DlqStatus,
        result: &str,
        at: DateTime<Utc>,
    ) -> Result<Transitioned, StoreError> {
        let event_id = event_id.to_owned();
        let result = result.to_owned();
        let at = ts(&at);
        self.db
            .write_async(move |conn| {
                write_tx(conn, |tx| {
                    let changed = tx
                        .prepare_cached(
                            "UPDATE dlq_replay_records SET status = ?3, replay_result = ?4, \
                             replay_attempt_time = ?5 WHERE event_id = ?1 AND status = ?2",
                        )
                        .and_then(|mut s| {
                            s.execute(params![event_id, from.as_str(), to.as_str(), result, at])
                        })
                        .map_err(db_err)?;
                    let rec = get_record(tx, &event_id)?;
                    Ok(match (rec, changed) {
                        (None, _) => Transitioned::NotFound,
                        (Some(r), 0) => Transitioned::WrongStatus(r),
                        (Some(r), _) => Transitioned::Done(r),
                    })
                })
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self, reason, at))]
    async fn skip(
        &self,
        event_id: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Skipped, StoreError> {
        let event_id = event_id.to_owned();
        let reason = reason.to_owned();
        let at = ts(&at);
        self.db
            .write_async(move |conn| {
                write_tx(conn, |tx| {
                    let Some(rec) = get_record(tx, &event_id)? else {
                        return Ok(Skipped::NotFound);
                    };
                    if !rec.status.is_unresolved() {
                        return Ok(Skipped::WrongStatus(rec));
                    }
                    let claimed = count(
                        tx,
                        "SELECT COUNT(*) FROM dlq_replay_records WHERE event_id = ?1 \
                         AND replay_claimed_by IS NOT NULL AND replay_claimed_until >= ?2",
                        params![event_id, at],
                    )?;
                    if claimed > 0 {
                        return Ok(Skipped::Claimed(rec));
                    }
                    tx.prepare_cached(
                        "UPDATE dlq_replay_records SET status = 'SKIPPED', replay_result = ?2, \
                         replay_attempt_time = ?3 WHERE event_id = ?1",
                    )
                    .and_then(|mut s| s.execute(params![event_id, reason, at]))
                    .map_err(db_err)?;
                    let new_head: Option<String> = tx
                        .prepare_cached(
                            "SELECT event_id FROM dlq_replay_records WHERE blocked_by = ?1 \
                             AND status IN ('PENDING', 'FAILED') ORDER BY version, id LIMIT 1",
                        )
                        .and_then(|mut s| {
                            s.query_map([&event_id], |r| r.get(0))?.next().transpose()
                        })
                        .map_err(db_err)?;
                    if let Some(head) = &new_head {
                        tx.prepare_cached(
                            "UPDATE dlq_replay_records SET blocked_by = NULL WHERE event_id = ?1",
                        )
                        .and_then(|mut s| s.execute([head]))
                        .map_err(db_err)?;
                        tx.prepare_cached(
                            "UPDATE dlq_replay_records SET blocked_by = ?1 \
                             WHERE blocked_by = ?2 AND event_id <> ?1",
                        )
                        .and_then(|mut s| s.execute(params![head, event_id]))
                        .map_err(db_err)?;
                    }
                    let record = get_record(tx, &event_id)?
                        .ok_or_else(|| corrupt(format!("DLQ record {event_id} vanished")))?;
                    Ok(Skipped::Done { record, new_head })
                })
            })
            .await
    }
}
