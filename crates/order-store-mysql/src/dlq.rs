//! DLQ records (`dlq_replay_records`) in the write-side database, so the
//! relay parks an event and deletes its outbox row in one transaction. SQL
//! and row mapping only: the sequencing rules are decided in the core
//! (`order_core::app::dlq::sequencing`) and arrive here as guarded steps,
//! written under row locks so instances sharing the database serialise.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use order_core::ports::{
    DlqRecord, DlqRow, DlqStats, DlqStatus, DlqStore, Guard, NewDlqRecord, Page, PageRequest,
    SequenceChange, SequenceMember, Step, StoreError, DLQ_COLUMNS,
};
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{AssertSqlSafe, Row};

use crate::db::{
    chunks, db_err, fit, in_list, is_duplicate, is_retryable, naive, placeholders, retry_pause,
    to_u64, utc, TX_RETRIES,
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
    }
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

    let mut seen: HashSet<String> = HashSet::new();
    for range in chunks(ids.len()) {
        let part = &ids[range];
        let sql = format!(
            "SELECT event_id FROM dlq_replay_records WHERE event_id IN ({}) FOR UPDATE",
            in_list(part.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in part {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            seen.insert(row.try_get(0)?);
        }
    }

    let mut new: Vec<&NewDlqRecord> = Vec::new();
    let mut known = Vec::new();
    for r in &records {
        if seen.insert(r.event_id.clone()) {
            new.push(r);
        } else {
            known.push(r.event_id.clone());
        }
    }

    for range in chunks(new.len()) {
        let part = &new[range];
        let sql = format!(
            "INSERT INTO dlq_replay_records (event_id, aggregate_id, event_type, version, \
             original_event, failure_reason, failure_class, failure_time, status, \
             replay_attempts, source, blocked_by, topic, origin) VALUES {}",
            placeholders(part.len(), 14)
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for r in part {
            q = q
                .bind(&r.event_id)
                .bind(&r.aggregate_id)
                .bind(&r.event_type)
                .bind(r.version.map(|v| i64::try_from(v).unwrap_or(i64::MAX)))
                .bind(&r.original_event)
                .bind(&r.failure_reason)
                .bind(r.failure_class.map(|c| c.as_str()))
                .bind(naive(&r.failure_time))
                .bind(DlqStatus::Pending.as_str())
                .bind(0i64)
                .bind(r.source.as_str())
                .bind(&r.blocked_by)
                .bind(&r.topic)
                .bind(&r.origin);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(known)
}

fn decode(row: &MySqlRow) -> Result<DlqRecord, StoreError> {
    let attempt_time: Option<NaiveDateTime> = row.try_get(10).map_err(db_err)?;
    DlqRecord::try_from(DlqRow {
        id: row.try_get(0).map_err(db_err)?,
        event_id: row.try_get(1).map_err(db_err)?,
        aggregate_id: row.try_get(2).map_err(db_err)?,
        event_type: row.try_get(3).map_err(db_err)?,
        version: row.try_get(4).map_err(db_err)?,
        original_event: row.try_get(5).map_err(db_err)?,
        failure_reason: row.try_get(6).map_err(db_err)?,
        failure_class: row.try_get(7).map_err(db_err)?,
        failure_time: utc(row.try_get(8).map_err(db_err)?),
        status: row.try_get(9).map_err(db_err)?,
        replay_attempt_time: attempt_time.map(utc),
        replay_result: row.try_get(11).map_err(db_err)?,
        replay_failure_class: row.try_get(12).map_err(db_err)?,
        replay_attempts: row.try_get(13).map_err(db_err)?,
        source: row.try_get(14).map_err(db_err)?,
        blocked_by: row.try_get(15).map_err(db_err)?,
        topic: row.try_get(16).map_err(db_err)?,
        origin: row.try_get(17).map_err(db_err)?,
    })
}

fn decode_all(rows: &[MySqlRow]) -> Result<Vec<DlqRecord>, StoreError> {
    rows.iter().map(decode).collect()
}

async fn get_record(
    conn: &mut MySqlConnection,
    event_id: &str,
) -> Result<Option<DlqRecord>, StoreError> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {DLQ_COLUMNS} FROM dlq_replay_records WHERE event_id = ?"
    )))
    .bind(event_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    row.as_ref().map(decode).transpose()
}

async fn count(
    store: &MySqlStore,
    sql: &'static str,
    status: Option<&str>,
) -> Result<u64, StoreError> {
    let mut q = sqlx::query_scalar::<_, i64>(sql);
    if let Some(s) = status {
        q = q.bind(s);
    }
    to_u64(q.fetch_one(store.pool()).await.map_err(db_err)?)
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
        self.timed("get DLQ record", async {
            let mut conn = self.pool().acquire().await.map_err(db_err)?;
            get_record(&mut conn, event_id).await
        })
        .await
    }

    async fn list(
        &self,
        status: Option<DlqStatus>,
        page: PageRequest,
    ) -> Result<Page<DlqRecord>, StoreError> {
        let size = i64::from(page.size.max(1));
        let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
        self.timed("list DLQ records", async {
            let (rows, total) = match status {
                Some(s) => (
                    sqlx::query(AssertSqlSafe(format!(
                        "SELECT {DLQ_COLUMNS} FROM dlq_replay_records WHERE status = ? \
                         ORDER BY failure_time DESC, id DESC LIMIT ? OFFSET ?"
                    )))
                    .bind(s.as_str())
                    .bind(size)
                    .bind(offset)
                    .fetch_all(self.pool())
                    .await
                    .map_err(db_err)?,
                    count(
                        self,
                        "SELECT COUNT(*) FROM dlq_replay_records WHERE status = ?",
                        Some(s.as_str()),
                    )
                    .await?,
                ),
                None => (
                    sqlx::query(AssertSqlSafe(format!(
                        "SELECT {DLQ_COLUMNS} FROM dlq_replay_records \
                         ORDER BY failure_time DESC, id DESC LIMIT ? OFFSET ?"
                    )))
                    .bind(size)
                    .bind(offset)
                    .fetch_all(self.pool())
                    .await
                    .map_err(db_err)?,
                    count(self, "SELECT COUNT(*) FROM dlq_replay_records", None).await?,
                ),
            };
            Ok(Page::new(decode_all(&rows)?, page, total))
        })
        .await
    }

    async fn stats(&self) -> Result<DlqStats, StoreError> {
        self.timed("DLQ stats", async {
            // One statement, one snapshot.
            let row = sqlx::query(
                "SELECT \
                   COUNT(CASE WHEN status = 'PENDING' THEN 1 END), \
                   COUNT(CASE WHEN status = 'REPLAYED' THEN 1 END), \
                   COUNT(CASE WHEN status = 'FAILED' THEN 1 END), \
                   COUNT(CASE WHEN status = 'SKIPPED' THEN 1 END), \
                   COUNT(*), \
                   COUNT(CASE WHEN status = 'PENDING' AND blocked_by IS NOT NULL THEN 1 END), \
                   MIN(CASE WHEN status IN ('PENDING', 'FAILED') THEN failure_time END) \
                 FROM dlq_replay_records",
            )
            .fetch_one(self.pool())
            .await
            .map_err(db_err)?;
            let n = |i: usize| -> Result<u64, StoreError> {
                to_u64(row.try_get::<i64, _>(i).map_err(db_err)?)
            };
            let oldest: Option<NaiveDateTime> = row.try_get(6).map_err(db_err)?;
            Ok(DlqStats {
                pending_count: n(0)?,
                replayed_count: n(1)?,
                failed_count: n(2)?,
                skipped_count: n(3)?,
                total_count: n(4)?,
                blocked_count: n(5)?,
                oldest_pending_failure_time: oldest.map(utc),
            })
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
        let mut ids: Vec<&str> = aggregate_ids.iter().map(String::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        self.timed("unresolved DLQ records", async {
            let mut out = Vec::new();
            for range in chunks(ids.len()) {
                let part = &ids[range];
                let sql = format!(
                    "SELECT aggregate_id, event_id, version, id FROM dlq_replay_records \
                     WHERE aggregate_id IN ({}) AND source = 'PUBLISH' \
                     AND status IN ('PENDING', 'FAILED')",
                    in_list(part.len())
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for id in part {
                    q = q.bind(*id);
                }
                for row in q.fetch_all(self.pool()).await.map_err(db_err)? {
                    out.push(SequenceMember {
                        aggregate_id: row.try_get(0).map_err(db_err)?,
                        event_id: row.try_get(1).map_err(db_err)?,
                        version: row
                            .try_get::<Option<i64>, _>(2)
                            .map_err(db_err)?
                            .map(to_u64)
                            .transpose()?,
                        id: row.try_get(3).map_err(db_err)?,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn blocked_behind(&self, head_event_id: &str) -> Result<Vec<DlqRecord>, StoreError> {
        self.timed("blocked DLQ records", async {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {DLQ_COLUMNS} FROM dlq_replay_records WHERE blocked_by = ? \
                 AND status IN ('PENDING', 'FAILED') ORDER BY version, id"
            )))
            .bind(head_event_id)
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
            decode_all(&rows)
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
        let (now, until) = (naive(&now), naive(&until));
        self.timed("claim a DLQ record for replay", async {
            let done = sqlx::query(
                "UPDATE dlq_replay_records SET replay_claimed_by = ?, replay_claimed_until = ? \
                 WHERE event_id = ? AND status IN ('PENDING', 'FAILED') \
                 AND (replay_claimed_by IS NULL OR replay_claimed_by = ? \
                 OR replay_claimed_until < ?)",
            )
            .bind(claimant)
            .bind(until)
            .bind(event_id)
            .bind(claimant)
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    async fn release_replay(&self, event_id: &str, claimant: &str) -> Result<(), StoreError> {
        self.timed("release a DLQ replay claim", async {
            sqlx::query(
                "UPDATE dlq_replay_records SET replay_claimed_by = NULL, \
                 replay_claimed_until = NULL WHERE event_id = ? AND replay_claimed_by = ?",
            )
            .bind(event_id)
            .bind(claimant)
            .execute(self.pool())
            .await
            .map_err(db_err)?;
            Ok(())
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

fn status_list(statuses: &[DlqStatus]) -> String {
    statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every record a change names, locked in event-id order (so two changes
/// never lock the same rows in opposite orders), then its guards checked
/// and its steps written.
async fn apply_change(
    conn: &mut MySqlConnection,
    change: &SequenceChange,
) -> Result<bool, sqlx::Error> {
    let mut named: Vec<&str> = Vec::new();
    for g in &change.guards {
        named.push(match g {
            Guard::Status { event_id, .. }
            | Guard::Unclaimed { event_id }
            | Guard::HeldBehind { event_id, .. }
            | Guard::Origin { event_id, .. } => event_id,
        });
    }
    for s in &change.steps {
        match s {
            Step::SetStatus { event_ids, .. } => named.extend(event_ids.iter().map(String::as_str)),
            Step::MakeHead { event_id } | Step::Reopen { event_id, .. } => named.push(event_id),
            Step::MoveHeld { from, to } => named.extend([from.as_str(), to.as_str()]),
        }
    }
    named.sort_unstable();
    named.dedup();
    let at = naive(&change.at);
    let mut rows = std::collections::HashMap::new();
    for range in chunks(named.len()) {
        let part = &named[range];
        let sql = format!(
            "SELECT event_id, status, blocked_by, origin, replay_claimed_by, \
             replay_claimed_until FROM dlq_replay_records WHERE event_id IN ({}) \
             ORDER BY event_id FOR UPDATE",
            in_list(part.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in part {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let id: String = row.try_get(0)?;
            let claimed_by: Option<String> = row.try_get(4)?;
            let until: Option<NaiveDateTime> = row.try_get(5)?;
            let claimed = claimed_by.is_some() && until.is_some_and(|u| u >= at);
            let status: String = row.try_get(1)?;
            let blocked_by: Option<String> = row.try_get(2)?;
            let origin: Option<String> = row.try_get(3)?;
            rows.insert(id, (status, blocked_by, origin, claimed));
        }
    }
    for g in &change.guards {
        let holds = match g {
            Guard::Status { event_id, any_of } => rows
                .get(event_id)
                .is_some_and(|r| any_of.iter().any(|s| s.as_str() == r.0)),
            Guard::Unclaimed { event_id } => rows.get(event_id).is_some_and(|r| !r.3),
            Guard::HeldBehind { event_id, head } => {
                rows.get(event_id).is_some_and(|r| &r.1 == head)
            }
            Guard::Origin { event_id, origin } => {
                rows.get(event_id).is_some_and(|r| &r.2 == origin)
            }
        };
        if !holds {
            return Ok(false);
        }
    }
    for step in &change.steps {
        write_step(conn, step, at).await?;
    }
    Ok(true)
}

async fn write_step(
    conn: &mut MySqlConnection,
    step: &Step,
    at: NaiveDateTime,
) -> Result<(), sqlx::Error> {
    match step {
        Step::SetStatus {
            event_ids,
            from,
            to,
            result,
            failure_class,
            count_attempt,
        } => {
            for range in chunks(event_ids.len()) {
                let part = &event_ids[range];
                let sql = format!(
                    "UPDATE dlq_replay_records SET status = ?, replay_result = ?, \
                     replay_attempt_time = ?, replay_failure_class = ?, \
                     replay_attempts = replay_attempts + ? \
                     WHERE event_id IN ({}) AND status IN ({})",
                    in_list(part.len()),
                    status_list(from)
                );
                let mut q = sqlx::query(AssertSqlSafe(sql))
                    .bind(to.as_str())
                    .bind(result)
                    .bind(at)
                    .bind(failure_class.map(|c| c.as_str()))
                    .bind(i64::from(*count_attempt));
                for id in part {
                    q = q.bind(id);
                }
                q.execute(&mut *conn).await?;
            }
        }
        Step::MakeHead { event_id } => {
            sqlx::query("UPDATE dlq_replay_records SET blocked_by = NULL WHERE event_id = ?")
                .bind(event_id)
                .execute(&mut *conn)
                .await?;
        }
        Step::MoveHeld { from, to } => {
            sqlx::query(
                "UPDATE dlq_replay_records SET blocked_by = ? \
                 WHERE blocked_by = ? AND event_id <> ?",
            )
            .bind(to)
            .bind(from)
            .bind(to)
            .execute(&mut *conn)
            .await?;
        }
        Step::Reopen {
            event_id,
            reason,
            failure_time,
            origin,
        } => {
            sqlx::query(
                "UPDATE dlq_replay_records SET status = 'PENDING', failure_reason = ?, \
                 failure_time = ?, origin = ?, replay_failure_class = NULL WHERE event_id = ?",
            )
            .bind(reason)
            .bind(naive(failure_time))
            .bind(origin)
            .bind(event_id)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
