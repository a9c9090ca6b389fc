//! DLQ records (`dlq_replay_records`) in the write-side database, so the
//! relay parks an event and deletes its outbox row in one transaction.
//! Semantics follow the SQLite adapter statement for statement.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use order_core::ports::{
    DlqRecord, DlqSource, DlqStats, DlqStatus, DlqStore, NewDlqRecord, Page, PageRequest, Skipped,
    StoreError, Transitioned,
};
use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{AssertSqlSafe, Row};

use crate::db::{
    chunks, corrupt, db_err, fit, in_list, is_duplicate, is_retryable, naive, placeholders,
    retry_pause, to_u64, utc, TX_RETRIES,
};
use crate::store::MySqlStore;

const COLUMNS: &str = "id, event_id, aggregate_id, event_type, version, original_event, \
     failure_reason, failure_time, status, replay_attempt_time, replay_result, replay_attempts, \
     source, blocked_by, topic, origin";

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
        failure_time: r.failure_time,
        source: r.source,
        blocked_by: r.blocked_by.as_deref().map(cut),
        topic: cut(&r.topic),
        origin: r.origin.as_deref().map(cut),
    }
}

/// What is known about a record while a batch is inserted.
struct Existing {
    status: String,
    origin: Option<String>,
}

/// Inserts records (inside the caller's transaction) unless their event id
/// is already there; a consumer-side failure of a REPLAYED record read
/// from another origin reopens it as PENDING with the new reason, time and
/// origin. Returns how many were new or reopened.
///
/// Existing rows are locked (`FOR UPDATE`) before deciding. A concurrent
/// insert of the same new event id surfaces as a duplicate-key error; the
/// caller runs the whole transaction again.
pub(crate) async fn insert_dlq_records(
    conn: &mut MySqlConnection,
    records: &[NewDlqRecord],
) -> Result<usize, sqlx::Error> {
    if records.is_empty() {
        return Ok(0);
    }
    let records: Vec<NewDlqRecord> = records.iter().map(fitted).collect();
    let mut ids: Vec<&str> = records.iter().map(|r| r.event_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();

    let mut known: HashMap<String, Existing> = HashMap::new();
    for range in chunks(ids.len()) {
        let part = &ids[range];
        let sql = format!(
            "SELECT event_id, status, origin FROM dlq_replay_records \
             WHERE event_id IN ({}) FOR UPDATE",
            in_list(part.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in part {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            known.insert(
                row.try_get(0)?,
                Existing {
                    status: row.try_get(1)?,
                    origin: row.try_get(2)?,
                },
            );
        }
    }

    let mut new: Vec<&NewDlqRecord> = Vec::new();
    let mut changed = 0;
    for r in &records {
        match known.get_mut(&r.event_id) {
            Some(existing) => {
                let reopen = existing.status == DlqStatus::Replayed.as_str()
                    && r.source == DlqSource::Consumer
                    && r.origin.is_some()
                    && existing.origin != r.origin;
                if reopen {
                    sqlx::query(
                        "UPDATE dlq_replay_records SET status = 'PENDING', failure_reason = ?, \
                         failure_time = ?, origin = ? WHERE event_id = ?",
                    )
                    .bind(&r.failure_reason)
                    .bind(naive(&r.failure_time))
                    .bind(&r.origin)
                    .bind(&r.event_id)
                    .execute(&mut *conn)
                    .await?;
                    existing.status = DlqStatus::Pending.as_str().to_owned();
                    existing.origin.clone_from(&r.origin);
                    changed += 1;
                }
            }
            None => {
                known.insert(
                    r.event_id.clone(),
                    Existing {
                        status: DlqStatus::Pending.as_str().to_owned(),
                        origin: r.origin.clone(),
                    },
                );
                new.push(r);
                changed += 1;
            }
        }
    }

    for range in chunks(new.len()) {
        let part = &new[range];
        let sql = format!(
            "INSERT INTO dlq_replay_records (event_id, aggregate_id, event_type, version, \
             original_event, failure_reason, failure_time, status, replay_attempts, source, \
             blocked_by, topic, origin) VALUES {}",
            placeholders(part.len(), 13)
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
    Ok(changed)
}

fn decode(row: &MySqlRow) -> Result<DlqRecord, StoreError> {
    let id: i64 = row.try_get(0).map_err(db_err)?;
    let status: String = row.try_get(8).map_err(db_err)?;
    let source: String = row.try_get(12).map_err(db_err)?;
    let attempts: i64 = row.try_get(11).map_err(db_err)?;
    let attempt_time: Option<NaiveDateTime> = row.try_get(9).map_err(db_err)?;
    Ok(DlqRecord {
        id,
        event_id: row.try_get(1).map_err(db_err)?,
        aggregate_id: row.try_get(2).map_err(db_err)?,
        event_type: row.try_get(3).map_err(db_err)?,
        version: row
            .try_get::<Option<i64>, _>(4)
            .map_err(db_err)?
            .map(to_u64)
            .transpose()?,
        original_event: row.try_get(5).map_err(db_err)?,
        failure_reason: row.try_get(6).map_err(db_err)?,
        failure_time: utc(row.try_get(7).map_err(db_err)?),
        status: DlqStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("DLQ record {id}: unknown status {status:?}")))?,
        replay_attempt_time: attempt_time.map(utc),
        replay_result: row.try_get(10).map_err(db_err)?,
        replay_attempts: u32::try_from(attempts)
            .map_err(|_| corrupt(format!("DLQ record {id}: bad replay_attempts {attempts}")))?,
        source: DlqSource::parse(&source)
            .ok_or_else(|| corrupt(format!("DLQ record {id}: unknown source {source:?}")))?,
        blocked_by: row.try_get(13).map_err(db_err)?,
        topic: row.try_get(14).map_err(db_err)?,
        origin: row.try_get(15).map_err(db_err)?,
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
        "SELECT {COLUMNS} FROM dlq_replay_records WHERE event_id = ?"
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
    async fn insert(&self, records: &[NewDlqRecord]) -> Result<usize, StoreError> {
        if records.is_empty() {
            return Ok(0);
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
                        "SELECT {COLUMNS} FROM dlq_replay_records WHERE status = ? \
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
                        "SELECT {COLUMNS} FROM dlq_replay_records \
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
    async fn unresolved_heads(
        &self,
        aggregate_ids: &[String],
    ) -> Result<HashMap<String, String>, StoreError> {
        if aggregate_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut ids: Vec<&str> = aggregate_ids.iter().map(String::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        self.timed("unresolved DLQ heads", async {
            let mut heads = HashMap::new();
            for range in chunks(ids.len()) {
                let part = &ids[range];
                // Highest version first: with several heads, the lowest
                // version is inserted last and wins.
                let sql = format!(
                    "SELECT aggregate_id, event_id FROM dlq_replay_records \
                     WHERE aggregate_id IN ({}) AND source = 'PUBLISH' \
                     AND status IN ('PENDING', 'FAILED') \
                     ORDER BY version DESC, id DESC",
                    in_list(part.len())
                );
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for id in part {
                    q = q.bind(*id);
                }
                for row in q.fetch_all(self.pool()).await.map_err(db_err)? {
                    heads.insert(
                        row.try_get(0).map_err(db_err)?,
                        row.try_get(1).map_err(db_err)?,
                    );
                }
            }
            Ok(heads)
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn blocked_behind(&self, head_event_id: &str) -> Result<Vec<DlqRecord>, StoreError> {
        self.timed("blocked DLQ records", async {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM dlq_replay_records WHERE blocked_by = ? \
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
        let at = naive(&at);
        self.timed("mark DLQ records replayed", async {
            retry_tx!(self, |tx| {
                for range in chunks(event_ids.len()) {
                    let part = &event_ids[range];
                    let sql = format!(
                        "UPDATE dlq_replay_records SET status = 'REPLAYED', \
                         replay_attempts = replay_attempts + 1, replay_attempt_time = ?, \
                         replay_result = ? \
                         WHERE event_id IN ({}) AND status IN ('PENDING', 'FAILED')",
                        in_list(part.len())
                    );
                    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(at).bind(result);
                    for id in part {
                        q = q.bind(id);
                    }
                    q.execute(&mut *tx).await?;
                }
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
        let at = naive(&at);
        self.timed("mark DLQ record failed", async {
            retry_tx!(self, |tx| {
                sqlx::query(
                    "UPDATE dlq_replay_records SET status = 'FAILED', \
                     replay_attempts = replay_attempts + 1, replay_attempt_time = ?, \
                     replay_result = ?, blocked_by = NULL WHERE event_id = ?",
                )
                .bind(at)
                .bind(result)
                .bind(event_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE dlq_replay_records SET blocked_by = ? \
                     WHERE blocked_by = ? AND event_id <> ?",
                )
                .bind(event_id)
                .bind(previous_head)
                .bind(event_id)
                .execute(&mut *tx)
                .await?;
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

    #[tracing::instrument(level = "debug", skip(self, result, at))]
    async fn transition(
        &self,
        event_id: &str,
        from: DlqStatus,
        to: DlqStatus,
        result: &str,
        at: DateTime<Utc>,
    ) -> Result<Transitioned, StoreError> {
        let at = naive(&at);
        self.timed("DLQ status change", async {
            let (changed, rec) = retry_tx!(self, |tx| {
                // Matched rows (CLIENT_FOUND_ROWS), as SQLite counts them.
                let changed = sqlx::query(
                    "UPDATE dlq_replay_records SET status = ?, replay_result = ?, \
                     replay_attempt_time = ? WHERE event_id = ? AND status = ?",
                )
                .bind(to.as_str())
                .bind(result)
                .bind(at)
                .bind(event_id)
                .bind(from.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let row = sqlx::query(AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM dlq_replay_records WHERE event_id = ?"
                )))
                .bind(event_id)
                .fetch_optional(&mut *tx)
                .await?;
                (changed, row)
            })?;
            Ok(match (rec.as_ref().map(decode).transpose()?, changed) {
                (None, _) => Transitioned::NotFound,
                (Some(r), 0) => Transitioned::WrongStatus(r),
                (Some(r), _) => Transitioned::Done(r),
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
        let at = naive(&at);
        let select = format!("SELECT {COLUMNS} FROM dlq_replay_records WHERE event_id = ?");
        self.timed("skip a DLQ record", async {
            // (outcome before any change, record after, new head)
            let (kind, row, new_head) = retry_tx!(self, |tx| {
                let locked = sqlx::query(
                    "SELECT status, CAST(replay_claimed_by IS NOT NULL \
                     AND replay_claimed_until >= ? AS SIGNED) \
                     FROM dlq_replay_records WHERE event_id = ? FOR UPDATE",
                )
                .bind(at)
                .bind(event_id)
                .fetch_optional(&mut *tx)
                .await?;
                let kind = match &locked {
                    None => SkipKind::NotFound,
                    Some(r) => {
                        let status: String = r.try_get(0)?;
                        let claimed: Option<i64> = r.try_get(1)?;
                        if status != DlqStatus::Pending.as_str()
                            && status != DlqStatus::Failed.as_str()
                        {
                            SkipKind::WrongStatus
                        } else if claimed.unwrap_or(0) != 0 {
                            SkipKind::Claimed
                        } else {
                            SkipKind::Done
                        }
                    }
                };
                let mut new_head: Option<String> = None;
                if kind == SkipKind::Done {
                    sqlx::query(
                        "UPDATE dlq_replay_records SET status = 'SKIPPED', replay_result = ?, \
                         replay_attempt_time = ? WHERE event_id = ?",
                    )
                    .bind(reason)
                    .bind(at)
                    .bind(event_id)
                    .execute(&mut *tx)
                    .await?;
                    new_head = sqlx::query_scalar(
                        "SELECT event_id FROM dlq_replay_records WHERE blocked_by = ? \
                         AND status IN ('PENDING', 'FAILED') ORDER BY version, id LIMIT 1 \
                         FOR UPDATE",
                    )
                    .bind(event_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(head) = &new_head {
                        sqlx::query(
                            "UPDATE dlq_replay_records SET blocked_by = NULL WHERE event_id = ?",
                        )
                        .bind(head)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query(
                            "UPDATE dlq_replay_records SET blocked_by = ? \
                             WHERE blocked_by = ? AND event_id <> ?",
                        )
                        .bind(head)
                        .bind(event_id)
                        .bind(head)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                let row = sqlx::query(AssertSqlSafe(select.clone()))
                    .bind(event_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                (kind, row, new_head)
            })?;
            let rec = row.as_ref().map(decode).transpose()?;
            Ok(match (kind, rec) {
                (SkipKind::NotFound, _) | (_, None) => Skipped::NotFound,
                (SkipKind::WrongStatus, Some(r)) => Skipped::WrongStatus(r),
                (SkipKind::Claimed, Some(r)) => Skipped::Claimed(r),
                (SkipKind::Done, Some(record)) => Skipped::Done { record, new_head },
            })
        })
        .await
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SkipKind {
    NotFound,
    WrongStatus,
    Claimed,
    Done,
}
