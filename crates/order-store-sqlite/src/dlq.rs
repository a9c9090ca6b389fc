//! DLQ records (`dlq_replay_records`) in the write-side database, so the
//! relay parks an event and deletes its outbox row in one transaction. SQL
//! and row mapping only: the sequencing rules are decided in the core
//! (`order_core::app::dlq::sequencing`) and arrive here as guarded steps.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use order_core::ports::{
    DlqRecord, DlqRow, DlqStats, DlqStatus, DlqStore, Guard, NewDlqRecord, Page, PageRequest,
    SequenceChange, SequenceMember, Step, StoreError, DLQ_COLUMNS,
};
use rusqlite::{params, params_from_iter, Connection, Row, TransactionBehavior};

use crate::db::{corrupt, db_err, parse_opt_ts, parse_ts, to_i64, to_u64, ts};
use crate::store::SqliteStore;

/// Largest number of bound parameters used in one `IN (…)` list.
const IN_CHUNK: usize = 500;

/// Inserts a record unless its event id is already there. Returns whether
/// it was new.
pub(crate) fn insert_dlq_record(conn: &Connection, r: &NewDlqRecord) -> Result<bool, StoreError> {
    let version = r.version.map(to_i64).transpose()?;
    let n = conn
        .prepare_cached(
            "INSERT INTO dlq_replay_records (event_id, aggregate_id, event_type, version, \
             original_event, failure_reason, failure_class, failure_time, status, \
             replay_attempts, source, blocked_by, topic, origin) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'PENDING', 0, ?9, ?10, ?11, ?12) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .map_err(db_err)?
        .execute(params![
            r.event_id,
            r.aggregate_id,
            r.event_type,
            version,
            r.original_event,
            r.failure_reason,
            r.failure_class.map(|c| c.as_str()),
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
    let text_ts = |i: usize| -> Result<Option<DateTime<Utc>>, StoreError> {
        parse_opt_ts(row.get(i).map_err(db_err)?)
    };
    let failure_time: String = row.get(8).map_err(db_err)?;
    DlqRecord::try_from(DlqRow {
        id: row.get(0).map_err(db_err)?,
        event_id: row.get(1).map_err(db_err)?,
        aggregate_id: row.get(2).map_err(db_err)?,
        event_type: row.get(3).map_err(db_err)?,
        version: row.get(4).map_err(db_err)?,
        original_event: row.get(5).map_err(db_err)?,
        failure_reason: row.get(6).map_err(db_err)?,
        failure_class: row.get(7).map_err(db_err)?,
        failure_time: parse_ts(&failure_time)?,
        status: row.get(9).map_err(db_err)?,
        replay_attempt_time: text_ts(10)?,
        replay_result: row.get(11).map_err(db_err)?,
        replay_failure_class: row.get(12).map_err(db_err)?,
        replay_attempts: row.get(13).map_err(db_err)?,
        source: row.get(14).map_err(db_err)?,
        blocked_by: row.get(15).map_err(db_err)?,
        topic: row.get(16).map_err(db_err)?,
        origin: row.get(17).map_err(db_err)?,
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
        &format!("SELECT {DLQ_COLUMNS} FROM dlq_replay_records WHERE event_id = ?1"),
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

fn status_list(statuses: &[DlqStatus]) -> String {
    statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `guard` holds on the rows as they are (inside the writer's
/// IMMEDIATE transaction, so nothing changes them meanwhile).
fn holds(conn: &Connection, guard: &Guard, at: &str) -> Result<bool, StoreError> {
    let n = match guard {
        Guard::Status { event_id, any_of } => count(
            conn,
            &format!(
                "SELECT COUNT(*) FROM dlq_replay_records WHERE event_id = ?1 AND status IN ({})",
                status_list(any_of)
            ),
            [event_id],
        )?,
        Guard::Unclaimed { event_id } => count(
            conn,
            "SELECT COUNT(*) FROM dlq_replay_records WHERE event_id = ?1 \
             AND (replay_claimed_by IS NULL OR replay_claimed_until < ?2)",
            params![event_id, at],
        )?,
        Guard::HeldBehind { event_id, head } => count(
            conn,
            "SELECT COUNT(*) FROM dlq_replay_records WHERE event_id = ?1 \
             AND blocked_by IS ?2",
            params![event_id, head],
        )?,
        Guard::Origin { event_id, origin } => count(
            conn,
            "SELECT COUNT(*) FROM dlq_replay_records WHERE event_id = ?1 AND origin IS ?2",
            params![event_id, origin],
        )?,
    };
    Ok(n > 0)
}

fn write_step(conn: &Connection, step: &Step, at: &str) -> Result<(), StoreError> {
    let run = |sql: &str, p: &[&dyn rusqlite::ToSql]| {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute(p))
            .map(drop)
            .map_err(db_err)
    };
    match step {
        Step::SetStatus {
            event_ids,
            from,
            to,
            result,
            failure_class,
            count_attempt,
        } => {
            let sql = format!(
                "UPDATE dlq_replay_records SET status = ?2, replay_result = ?3, \
                 replay_attempt_time = ?4, replay_failure_class = ?5, \
                 replay_attempts = replay_attempts + ?6 \
                 WHERE event_id = ?1 AND status IN ({})",
                status_list(from)
            );
            let class = failure_class.map(|c| c.as_str());
            let add = i64::from(*count_attempt);
            for id in event_ids {
                run(&sql, &[id, &to.as_str(), result, &at, &class, &add])?;
            }
            Ok(())
        }
        Step::MakeHead { event_id } => run(
            "UPDATE dlq_replay_records SET blocked_by = NULL WHERE event_id = ?1",
            &[event_id],
        ),
        Step::MoveHeld { from, to } => run(
            "UPDATE dlq_replay_records SET blocked_by = ?2 \
             WHERE blocked_by = ?1 AND event_id <> ?2",
            &[from, to],
        ),
        Step::Reopen {
            event_id,
            reason,
            failure_time,
            origin,
        } => run(
            "UPDATE dlq_replay_records SET status = 'PENDING', failure_reason = ?2, \
             failure_time = ?3, origin = ?4, replay_failure_class = NULL WHERE event_id = ?1",
            &[event_id, reason, &ts(failure_time), origin],
        ),
    }
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
                                "SELECT {DLQ_COLUMNS} FROM dlq_replay_records WHERE status = ?1 \
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
                                "SELECT {DLQ_COLUMNS} FROM dlq_replay_records \
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
    async fn unresolved_publish_records(
        &self,
        aggregate_ids: &[String],
    ) -> Result<Vec<SequenceMember>, StoreError> {
        if aggregate_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = aggregate_ids.to_vec();
        self.db
            .read_async(move |conn| {
                let mut out = Vec::new();
                for chunk in ids.chunks(IN_CHUNK) {
                    let marks = vec!["?"; chunk.len()].join(", ");
                    let sql = format!(
                        "SELECT aggregate_id, event_id, version, id FROM dlq_replay_records \
                         WHERE aggregate_id IN ({marks}) AND source = 'PUBLISH' \
                         AND status IN ('PENDING', 'FAILED')"
                    );
                    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
                    let mut rows = stmt.query(params_from_iter(chunk.iter())).map_err(db_err)?;
                    while let Some(r) = rows.next().map_err(db_err)? {
                        out.push(SequenceMember {
                            aggregate_id: r.get(0).map_err(db_err)?,
                            event_id: r.get(1).map_err(db_err)?,
                            version: r
                                .get::<_, Option<i64>>(2)
                                .map_err(db_err)?
                                .map(to_u64)
                                .transpose()?,
                            id: r.get(3).map_err(db_err)?,
                        });
                    }
                }
                Ok(out)
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
                        "SELECT {DLQ_COLUMNS} FROM dlq_replay_records WHERE blocked_by = ?1 \
                         AND status IN ('PENDING', 'FAILED') ORDER BY version, id"
                    ),
                    [&head],
                )
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

    #[tracing::instrument(level = "debug", skip_all, fields(steps = change.steps.len()))]
    async fn apply(&self, change: &SequenceChange) -> Result<bool, StoreError> {
        let change = change.clone();
        self.db
            .write_async(move |conn| {
                write_tx(conn, |tx| {
                    let at = ts(&change.at);
                    for guard in &change.guards {
                        if !holds(tx, guard, &at)? {
                            return Ok(false);
                        }
                    }
                    for step in &change.steps {
                        write_step(tx, step, &at)?;
                    }
                    Ok(true)
                })
            })
            .await
    }
}
