//! The `dlq_replay_records` table: its statements, row mapping, and the
//! check of a [`SequenceChange`]'s guards on the rows it names.

use std::collections::HashMap;
use std::ops::Range;

use chrono::DateTime;
use chrono::Utc;

use super::in_list;
use super::int;
use super::literals;
use super::unsigned;
use super::Checked;
use super::ColumnReader;
use super::IndexHint;
use super::PageQuery;
use super::SortKey;
use super::SqlValue;
use super::Statement;
use super::Walk;
use super::Where;
use crate::ports::Cursor;
use crate::ports::CursorId;
use crate::ports::DlqRecord;
use crate::ports::DlqSearch;
use crate::ports::DlqSource;
use crate::ports::DlqStats;
use crate::ports::DlqStatus;
use crate::ports::FailureClass;
use crate::ports::Guard;
use crate::ports::HeadQuery;
use crate::ports::ListRequest;
use crate::ports::NewDlqRecord;
use crate::ports::ReplayClaims;
use crate::ports::SequenceChange;
use crate::ports::SequenceMember;
use crate::ports::Step;
use crate::ports::StoreError;

/// The columns [`read_record`] reads, in its order.
pub const COLUMNS: &str = "id, event_id, aggregate_id, event_type, version, original_event, \
     failure_reason, failure_class, failure_time, status, replay_attempt_time, replay_result, \
     replay_failure_class, replay_attempts, source, blocked_by, topic, origin, consumer_group, \
     customer_id, imported_at, imported_by";

/// `'PENDING', 'FAILED'`: the statuses still waiting for an operator.
fn unresolved() -> String {
    let statuses = DlqStatus::ALL.into_iter().filter(|s| s.is_unresolved());
    literals(statuses.map(DlqStatus::as_str))
}

/// `(status IN (…)) = 1`: a status condition no index can serve, for
/// statements that name their rows by event id or head. Written plainly,
/// SQLite (without table statistics) reads `status IN` through
/// `idx_dlq_status_failure_time` — every PENDING record, a million after an
/// outage — rather than the few rows the ids name.
fn status_among(statuses: &str) -> String {
    format!("(status IN ({statuses})) = 1")
}

/// A record from a row of [`COLUMNS`].
pub fn read_record(r: &dyn ColumnReader) -> Result<DlqRecord, StoreError> {
    let id = r.int(0)?;
    let c = Checked::new(r, COLUMNS, format!("DLQ record {id}"));
    Ok(DlqRecord {
        id,
        event_id: r.text(1)?,
        aggregate_id: r.text(2)?,
        event_type: r.text(3)?,
        version: c.opt_number(4)?,
        original_event: r.text(5)?,
        failure_reason: r.text(6)?,
        failure_class: c.opt_parsed(7, FailureClass::parse)?,
        failure_time: r.time(8)?,
        status: c.parsed(9, DlqStatus::parse)?,
        replay_attempt_time: r.opt_time(10)?,
        replay_result: r.opt_text(11)?,
        replay_failure_class: c.opt_parsed(12, FailureClass::parse)?,
        replay_attempts: c.number(13)?,
        source: c.parsed(14, DlqSource::parse)?,
        blocked_by: r.opt_text(15)?,
        topic: r.text(16)?,
        origin: r.opt_text(17)?,
        consumer_group: r.opt_text(18)?,
        customer_id: r.opt_text(19)?,
        imported_at: r.opt_time(20)?,
        imported_by: r.opt_text(21)?,
    })
}

/// Inserts `records` as PENDING with no replay attempts, in one multi-row
/// statement (what happens to an event id already stored is the
/// adapter's).
pub fn insert(records: &[&NewDlqRecord]) -> Result<Statement, StoreError> {
    let mut args = Vec::with_capacity(records.len() * 16);
    for r in records {
        args.extend([
            SqlValue::from(&r.event_id),
            SqlValue::from(&r.aggregate_id),
            SqlValue::from(&r.event_type),
            r.version.map(int).transpose()?.into(),
            SqlValue::from(&r.original_event),
            SqlValue::from(&r.failure_reason),
            SqlValue::from(r.failure_class.map(FailureClass::as_str)),
            SqlValue::from(r.failure_time),
            SqlValue::from(r.source.as_str()),
            SqlValue::from(r.blocked_by.as_ref()),
            SqlValue::from(&r.topic),
            SqlValue::from(r.origin.as_ref()),
            SqlValue::from(r.consumer_group.as_ref()),
            SqlValue::from(crate::ports::customer_of(&r.original_event)),
            SqlValue::from(r.imported.as_ref().map(|m| m.at)),
            SqlValue::from(r.imported.as_ref().map(|m| &m.by)),
        ]);
    }
    let row = "(?, ?, ?, ?, ?, ?, ?, ?, 'PENDING', 0, ?, ?, ?, ?, ?, ?, ?, ?)";
    Ok(Statement::new(
        format!(
            "INSERT INTO dlq_replay_records (event_id, aggregate_id, event_type, version, \
             original_event, failure_reason, failure_class, failure_time, status, \
             replay_attempts, source, blocked_by, topic, origin, consumer_group, customer_id, \
             imported_at, imported_by) VALUES {}",
            vec![row; records.len()].join(", ")
        ),
        args,
    ))
}

pub fn get(event_id: &str) -> Statement {
    Statement::new(
        format!("SELECT {COLUMNS} FROM dlq_replay_records WHERE event_id = ?"),
        [SqlValue::from(event_id)],
    )
}

/// How record listings sort: newest failure first, then highest id. The
/// indexes `(status, failure_time)` and `(failure_time)` hold it (both
/// InnoDB and SQLite end every index with the row id).
pub const SORT: SortKey = SortKey {
    time: "failure_time",
    id: "id",
};

/// Records, optionally of one status: a page by number or after a cursor
/// (read through the index of that order, as `hint` writes it), counted by
/// [`count`].
pub fn list(status: Option<DlqStatus>, req: &ListRequest, hint: IndexHint) -> PageQuery {
    let index = match status {
        Some(_) => "idx_dlq_status_failure_time",
        None => "idx_dlq_failure_time",
    };
    let status = status.map(DlqStatus::as_str);
    PageQuery::in_index(
        COLUMNS,
        "dlq_replay_records",
        (index, hint),
        Where::default().and("status = ?", status),
        SORT,
        req,
    )
    .counted_by(count(status))
}

/// The character that escapes `%`, `_` and itself in a LIKE pattern
/// (not `\`: MySQL reads a backslash in a string literal as an escape,
/// SQLite does not).
const LIKE_ESCAPE: char = '!';

/// `%text%` with `text` lowercased and its LIKE wildcards made literal.
pub fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_') || c == LIKE_ESCAPE {
            p.push(LIKE_ESCAPE);
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The records a [`DlqSearch`] matches, newest failure first, through the
/// index of its narrowest filter (`hint` writes it). The text is matched
/// as `LOWER(failure_reason) LIKE '%text%'`, row by row along that index;
/// such a search is not counted (its count statement answers 0), any
/// other gets an exact `COUNT(*)` of its filter.
pub fn search(q: &DlqSearch, hint: IndexHint) -> PageQuery {
    let f = &q.filter;
    let index = if f.aggregate_id.is_some() || !f.orders.is_empty() {
        "idx_dlq_aggregate"
    } else if f.customer_id.is_some() {
        "idx_dlq_customer"
    } else if f.event_type.is_some() {
        "idx_dlq_event_type"
    } else if f.status.is_some() {
        "idx_dlq_status_failure_time"
    } else {
        "idx_dlq_failure_time"
    };
    let mut filter = Where::default()
        .and("aggregate_id = ?", f.aggregate_id.as_ref())
        .and("customer_id = ?", f.customer_id.as_ref())
        .and("event_type = ?", f.event_type.as_ref())
        .and("status = ?", f.status.map(DlqStatus::as_str))
        .and("source = ?", f.source.map(DlqSource::as_str))
        .and("failure_time >= ?", f.from)
        .and("failure_time < ?", f.to);
    if !f.orders.is_empty() {
        filter
            .clauses
            .push(format!("aggregate_id IN ({})", in_list(f.orders.len())));
        filter.args.extend(f.orders.iter().map(SqlValue::from));
    }
    let pattern = f.text.as_deref().map(contains_pattern);
    let counted = pattern.is_none();
    if let Some(p) = pattern {
        filter.clauses.push(format!(
            "LOWER(failure_reason) LIKE ? ESCAPE '{LIKE_ESCAPE}'"
        ));
        filter.args.push(SqlValue::Text(p));
    }
    let query = PageQuery::in_index(
        COLUMNS,
        "dlq_replay_records",
        (index, hint),
        filter,
        SORT,
        &q.page,
    );
    if counted {
        query
    } else {
        query.counted_by(Statement::new("SELECT 0", []))
    }
}

/// The sum of the `dlq_counters` rows (of one status): the triggers of
/// migration 0008 keep one count per status, held or not and shard
/// (`id % 8`, so concurrent writers on MySQL rarely wait for one row), in
/// the transaction of every insert, change and delete of a record.
fn count(status: Option<&str>) -> Statement {
    let filter = Where::default().and("status = ?", status);
    Statement::new(
        format!(
            "SELECT CAST(COALESCE(SUM(n), 0) AS SIGNED) FROM dlq_counters{}",
            filter.sql()
        ),
        filter.args,
    )
}

/// The figures of [`read_stats`], in one statement (one snapshot): the
/// counts from `dlq_counters`, the oldest unresolved failure from the
/// `(status, failure_time)` index (one MIN per unresolved status, each the
/// first entry of its index range).
pub fn stats() -> Statement {
    let sum = |cond: &str| {
        format!("(SELECT CAST(COALESCE(SUM(n), 0) AS SIGNED) FROM dlq_counters{cond})")
    };
    let per_status = DlqStatus::ALL.map(|s| sum(&format!(" WHERE status = '{}'", s.as_str())));
    let oldest = DlqStatus::ALL
        .into_iter()
        .filter(|s| s.is_unresolved())
        .map(|s| {
            format!(
                "(SELECT MIN(failure_time) FROM dlq_replay_records WHERE status = '{}')",
                s.as_str()
            )
        });
    let columns: Vec<String> = per_status
        .into_iter()
        .chain([sum(""), sum(" WHERE status = 'PENDING' AND held = 1")])
        .chain(oldest)
        .collect();
    Statement::new(format!("SELECT {}", columns.join(", ")), [])
}

/// The row of [`stats`]: the counts of [`DlqStatus::ALL`], the total, the
/// blocked count, then the oldest failure of each unresolved status.
pub fn read_stats(r: &dyn ColumnReader) -> Result<DlqStats, StoreError> {
    let unresolved = DlqStatus::ALL.iter().filter(|s| s.is_unresolved()).count();
    let mut oldest = None;
    for i in 6..6 + unresolved {
        oldest = match (oldest, r.opt_time(i)?) {
            (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
            (a, b) => a.or(b),
        };
    }
    Ok(DlqStats {
        pending_count: r.count(0)?,
        replayed_count: r.count(1)?,
        failed_count: r.count(2)?,
        skipped_count: r.count(3)?,
        total_count: r.count(4)?,
        blocked_count: r.count(5)?,
        oldest_pending_failure_time: oldest,
    })
}

/// Unresolved publish-side records of these aggregates, read by
/// [`read_member`].
pub fn unresolved_publish<'a>(aggregate_ids: impl IntoIterator<Item = &'a str>) -> Statement {
    let args: Vec<SqlValue> = aggregate_ids.into_iter().map(SqlValue::from).collect();
    Statement::new(
        format!(
            "SELECT aggregate_id, event_id, version, id FROM dlq_replay_records \
             WHERE aggregate_id IN ({}) AND source = 'PUBLISH' AND status IN ({})",
            in_list(args.len()),
            unresolved()
        ),
        args,
    )
}

pub fn read_member(r: &dyn ColumnReader) -> Result<SequenceMember, StoreError> {
    Ok(SequenceMember {
        aggregate_id: r.text(0)?,
        event_id: r.text(1)?,
        version: r.opt_int(2)?.map(unsigned).transpose()?,
        id: r.int(3)?,
    })
}

/// The conditions of `q` (its cursor too when `with_cursor`, never its
/// limit). A head's `head_since` is its failure time (a generated column:
/// see migration 0007), so the cursor and the time range run along the
/// `(head_since, id)` index, oldest first.
fn head_filter(q: &HeadQuery<'_>, with_cursor: bool) -> Where {
    let mut filter = Where::default();
    filter.clauses.push("head_since IS NOT NULL".to_owned());
    let after = q.after.filter(|_| with_cursor).map(|c| Cursor {
        at: c.failure_time,
        id: CursorId::Int(c.id),
    });
    filter
        .and("head_since >= ?", q.from)
        .and("head_since < ?", q.to)
        .and("aggregate_id = ?", q.aggregate_id)
        .and("event_type = ?", q.event_type)
        .and("status = ?", q.status.map(DlqStatus::as_str))
        .and("source = ?", q.source.map(DlqSource::as_str))
        .beyond(HEAD_KEY, after, Walk::OldestFirst)
}

/// The order of the head index.
const HEAD_KEY: SortKey = SortKey {
    time: "head_since",
    id: "id",
};

/// The heads [`HeadQuery`] asks for, oldest failure first (then id).
pub fn heads(q: &HeadQuery<'_>) -> Statement {
    let filter = head_filter(q, true);
    let mut args = filter.args.clone();
    args.push(SqlValue::Int(i64::try_from(q.limit).unwrap_or(i64::MAX)));
    Statement::new(
        format!(
            "SELECT {COLUMNS} FROM dlq_replay_records{} ORDER BY head_since, id LIMIT ?",
            filter.sql()
        ),
        args,
    )
}

/// How many heads match `q` (cursor and limit ignored).
pub fn count_heads(q: &HeadQuery<'_>) -> Statement {
    let filter = head_filter(q, false);
    Statement::new(
        format!("SELECT COUNT(*) FROM dlq_replay_records{}", filter.sql()),
        filter.args,
    )
}

/// Unresolved records held behind any of `heads`, by head, then version,
/// then id.
pub fn held_behind(heads: &[String]) -> Statement {
    Statement::new(
        format!(
            "SELECT {COLUMNS} FROM dlq_replay_records WHERE blocked_by IN ({}) \
             AND {} ORDER BY blocked_by, version, id",
            in_list(heads.len()),
            status_among(&unresolved())
        ),
        heads.iter().map(SqlValue::from),
    )
}

/// Claims unresolved records for `claimant` until `until` where the claim
/// is free, expired before `now`, or already `claimant`'s; then
/// [`claimed`] reads which are the claimant's.
pub fn claim(c: &ReplayClaims<'_>) -> Statement {
    let mut args = vec![SqlValue::from(c.claimant), SqlValue::from(c.until)];
    args.extend(c.event_ids.iter().map(SqlValue::from));
    args.extend([SqlValue::from(c.claimant), SqlValue::from(c.now)]);
    Statement::new(
        format!(
            "UPDATE dlq_replay_records SET replay_claimed_by = ?, replay_claimed_until = ? \
             WHERE event_id IN ({}) AND {} AND (replay_claimed_by IS NULL \
             OR replay_claimed_by = ? OR replay_claimed_until < ?)",
            in_list(c.event_ids.len()),
            status_among(&unresolved())
        ),
        args,
    )
}

/// Which of the records of a [`claim`] the claimant holds until its end.
pub fn claimed(c: &ReplayClaims<'_>) -> Statement {
    let mut args: Vec<SqlValue> = c.event_ids.iter().map(SqlValue::from).collect();
    args.extend([SqlValue::from(c.claimant), SqlValue::from(c.until)]);
    Statement::new(
        format!(
            "SELECT event_id FROM dlq_replay_records WHERE event_id IN ({}) \
             AND replay_claimed_by = ? AND replay_claimed_until = ?",
            in_list(c.event_ids.len())
        ),
        args,
    )
}

/// Gives back `claimant`'s claims (another's are left alone).
pub fn release(event_ids: &[String], claimant: &str) -> Statement {
    let mut args: Vec<SqlValue> = event_ids.iter().map(SqlValue::from).collect();
    args.push(SqlValue::from(claimant));
    Statement::new(
        format!(
            "UPDATE dlq_replay_records SET replay_claimed_by = NULL, \
             replay_claimed_until = NULL WHERE event_id IN ({}) AND replay_claimed_by = ?",
            in_list(event_ids.len())
        ),
        args,
    )
}

// ---------------------------------------------------------------------------
// Sequence changes
// ---------------------------------------------------------------------------

/// Every event id a change names, sorted and without repeats (so two
/// changes that lock their rows in this order never deadlock).
pub fn named(change: &SequenceChange) -> Vec<&str> {
    let mut named: Vec<&str> = Vec::new();
    for g in &change.guards {
        named.push(match g {
            Guard::Status { event_id, .. }
            | Guard::Unclaimed { event_id }
            | Guard::HeldBehind { event_id, .. }
            | Guard::Origin { event_id, .. } => event_id,
            Guard::NothingHeldBehind { head } => head,
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
    named
}

/// The statuses of a resolved record, as SQL literals.
fn resolved() -> String {
    let statuses = DlqStatus::ALL.into_iter().filter(|s| !s.is_unresolved());
    literals(statuses.map(DlqStatus::as_str))
}

/// Ids of at most `limit` records [`purge`] may delete: resolved before
/// `before`, nothing unresolved held behind them, oldest first.
pub fn purgeable(before: DateTime<Utc>, limit: usize) -> Statement {
    Statement::new(
        format!(
            "SELECT r.id FROM dlq_replay_records r WHERE r.status IN ({resolved}) \
             AND r.replay_attempt_time < ? AND NOT EXISTS (SELECT 1 FROM dlq_replay_records h \
             WHERE h.blocked_by = r.event_id AND h.status IN ({unresolved})) \
             ORDER BY r.id LIMIT ?",
            resolved = resolved(),
            unresolved = unresolved()
        ),
        [
            SqlValue::from(before),
            SqlValue::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
        ],
    )
}

/// Deletes the records `ids` of [`purgeable`] that are still resolved
/// before `before` (a consumer failure may have reopened one meanwhile).
pub fn purge(ids: &[i64], before: DateTime<Utc>) -> Statement {
    let mut args: Vec<SqlValue> = ids.iter().map(|id| SqlValue::Int(*id)).collect();
    args.push(SqlValue::from(before));
    Statement::new(
        format!(
            "DELETE FROM dlq_replay_records WHERE id IN ({}) AND status IN ({}) \
             AND replay_attempt_time < ?",
            in_list(ids.len()),
            resolved()
        ),
        args,
    )
}

/// The count of unresolved records held behind a resolved or missing head.
pub fn orphaned_holds() -> Statement {
    Statement::new(
        format!(
            "SELECT COUNT(*) FROM dlq_replay_records r \
             LEFT JOIN dlq_replay_records h ON h.event_id = r.blocked_by \
             WHERE r.blocked_by IS NOT NULL AND r.status IN ({unresolved}) \
             AND (h.event_id IS NULL OR h.status NOT IN ({unresolved}))",
            unresolved = unresolved()
        ),
        [],
    )
}

/// The heads a change's [`Guard::NothingHeldBehind`] guards name.
pub fn emptiness_checked(change: &SequenceChange) -> Vec<&str> {
    change
        .guards
        .iter()
        .filter_map(|g| match g {
            Guard::NothingHeldBehind { head } => Some(head.as_str()),
            _ => None,
        })
        .collect()
}

/// How many unresolved records are held behind each of `heads` (heads with
/// none have no row), as [`GuardedRows::add_held`] reads them. Run it after
/// the heads are locked: a relay locks a head before parking behind it.
pub fn unresolved_behind(heads: &[&str]) -> Statement {
    Statement::new(
        format!(
            "SELECT blocked_by, COUNT(*) FROM dlq_replay_records \
             WHERE blocked_by IN ({}) AND {} GROUP BY blocked_by",
            in_list(heads.len()),
            status_among(&unresolved())
        ),
        heads.iter().copied().map(SqlValue::from),
    )
}

/// The rows of these event ids as [`GuardedRows::add`] reads them, in
/// event-id order (an adapter that locks them appends its lock clause).
pub fn guarded_rows(event_ids: &[&str]) -> Statement {
    Statement::new(
        format!(
            "SELECT event_id, status, blocked_by, origin, replay_claimed_by, \
             replay_claimed_until FROM dlq_replay_records WHERE event_id IN ({}) \
             ORDER BY event_id",
            in_list(event_ids.len())
        ),
        event_ids.iter().copied().map(SqlValue::from),
    )
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct GuardedRow {
    status: String,
    blocked_by: Option<String>,
    origin: Option<String>,
    claimed_by: Option<String>,
    claimed_until: Option<DateTime<Utc>>,
}

/// The rows a change names, as they are inside the transaction that
/// writes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuardedRows {
    rows: HashMap<String, GuardedRow>,
    /// Unresolved records held behind a head, for the heads asked about.
    held: HashMap<String, u64>,
}

impl GuardedRows {
    /// Adds a row of [`guarded_rows`].
    pub fn add(&mut self, r: &dyn ColumnReader) -> Result<(), StoreError> {
        let row = GuardedRow {
            status: r.text(1)?,
            blocked_by: r.opt_text(2)?,
            origin: r.opt_text(3)?,
            claimed_by: r.opt_text(4)?,
            claimed_until: r.opt_time(5)?,
        };
        self.rows.insert(r.text(0)?, row);
        Ok(())
    }

    /// Adds a row of [`unresolved_behind`].
    pub fn add_held(&mut self, r: &dyn ColumnReader) -> Result<(), StoreError> {
        self.held.insert(r.text(0)?, r.count(1)?);
        Ok(())
    }

    /// Whether every guard of `change` holds on these rows.
    pub fn hold(&self, change: &SequenceChange) -> bool {
        change.guards.iter().all(|g| match g {
            Guard::Status { event_id, any_of } => self
                .row(event_id)
                .is_some_and(|r| any_of.iter().any(|s| s.as_str() == r.status)),
            Guard::Unclaimed { event_id } => self.row(event_id).is_some_and(|r| {
                r.claimed_by.is_none() || r.claimed_until.is_none_or(|u| u < change.at)
            }),
            Guard::HeldBehind { event_id, head } => {
                self.row(event_id).is_some_and(|r| &r.blocked_by == head)
            }
            Guard::Origin { event_id, origin } => {
                self.row(event_id).is_some_and(|r| &r.origin == origin)
            }
            Guard::NothingHeldBehind { head } => self.held.get(head).is_none_or(|n| *n == 0),
        })
    }

    /// Whether the record of `event_id` is stored.
    pub fn contains(&self, event_id: &str) -> bool {
        self.rows.contains_key(event_id)
    }

    fn row(&self, event_id: &str) -> Option<&GuardedRow> {
        self.rows.get(event_id)
    }
}

/// The statements that write `step` at `at`; `chunks` splits a list of
/// `n` event ids into the ranges of one `IN (…)` list each.
pub fn step_statements(
    step: &Step,
    at: DateTime<Utc>,
    chunks: impl Fn(usize) -> Vec<Range<usize>>,
) -> Vec<Statement> {
    match step {
        Step::SetStatus {
            event_ids,
            from,
            to,
            result,
            failure_class,
            count_attempt,
        } => chunks(event_ids.len())
            .into_iter()
            .map(|range| {
                let part = &event_ids[range];
                let mut args = vec![
                    SqlValue::from(to.as_str()),
                    SqlValue::from(result),
                    SqlValue::from(at),
                    SqlValue::from(failure_class.map(FailureClass::as_str)),
                    SqlValue::Int(i64::from(*count_attempt)),
                ];
                args.extend(part.iter().map(SqlValue::from));
                Statement::new(
                    format!(
                        "UPDATE dlq_replay_records SET status = ?, replay_result = ?, \
                         replay_attempt_time = ?, replay_failure_class = ?, \
                         replay_attempts = replay_attempts + ? \
                         WHERE event_id IN ({}) AND {}",
                        in_list(part.len()),
                        status_among(&literals(from.iter().map(|s| s.as_str())))
                    ),
                    args,
                )
            })
            .collect(),
        Step::MakeHead { event_id } => vec![Statement::new(
            "UPDATE dlq_replay_records SET blocked_by = NULL WHERE event_id = ?",
            [SqlValue::from(event_id)],
        )],
        Step::MoveHeld { from, to } => vec![Statement::new(
            "UPDATE dlq_replay_records SET blocked_by = ? WHERE blocked_by = ? AND event_id <> ?",
            [SqlValue::from(to), SqlValue::from(from), SqlValue::from(to)],
        )],
        Step::Reopen {
            event_id,
            reason,
            failure_time,
            origin,
        } => vec![Statement::new(
            "UPDATE dlq_replay_records SET status = 'PENDING', failure_reason = ?, \
             failure_time = ?, origin = ?, replay_failure_class = NULL WHERE event_id = ?",
            [
                SqlValue::from(reason),
                SqlValue::from(failure_time),
                SqlValue::from(origin.as_ref()),
                SqlValue::from(event_id),
            ],
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_pattern_is_lowercase_with_its_wildcards_literal() {
        assert_eq!(contains_pattern("Broker"), "%broker%");
        assert_eq!(contains_pattern("50%_!x"), "%50!%!_!!x%");
    }
}
