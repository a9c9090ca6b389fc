//! The `dlq_revisions` table: its statements and row mapping.

use super::Checked;
use super::ColumnReader;
use super::SqlValue;
use super::Statement;
use crate::ports::NewRevision;
use crate::ports::Review;
use crate::ports::Revision;
use crate::ports::RevisionState;
use crate::ports::StoreError;

/// The columns [`read_revision`] reads, in its order.
pub const COLUMNS: &str = "event_id, revision, based_on, author, reason, patch, payload, state, \
     created_at, reviewer, reviewed_at, review_note";

/// A revision from a row of [`COLUMNS`].
pub fn read_revision(r: &dyn ColumnReader) -> Result<Revision, StoreError> {
    let event_id = r.text(0)?;
    let c = Checked::new(r, COLUMNS, format!("revision of DLQ record {event_id}"));
    Ok(Revision {
        revision: c.number(1)?,
        based_on: c.number(2)?,
        author: r.text(3)?,
        reason: r.text(4)?,
        patch: c.json(5)?,
        payload: r.text(6)?,
        state: c.parsed(7, RevisionState::parse)?,
        created_at: r.time(8)?,
        reviewer: r.opt_text(9)?,
        reviewed_at: r.opt_time(10)?,
        review_note: r.opt_text(11)?,
        event_id,
    })
}

/// Inserts `rev`; a second revision of the same number breaks the unique
/// key `(event_id, revision)` (what that answers is the adapter's).
pub fn insert(rev: &NewRevision) -> Statement {
    Statement::new(
        "INSERT INTO dlq_revisions (event_id, revision, based_on, author, reason, patch, \
         payload, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            SqlValue::from(&rev.event_id),
            SqlValue::from(i64::from(rev.revision)),
            SqlValue::from(i64::from(rev.based_on)),
            SqlValue::from(&rev.author),
            SqlValue::from(&rev.reason),
            SqlValue::from(rev.patch.to_string()),
            SqlValue::from(&rev.payload),
            SqlValue::from(rev.state.as_str()),
            SqlValue::from(rev.at),
        ],
    )
}

/// The revision [`insert`] stored.
pub fn inserted(rev: &NewRevision) -> Revision {
    Revision {
        event_id: rev.event_id.clone(),
        revision: rev.revision,
        based_on: rev.based_on,
        author: rev.author.clone(),
        reason: rev.reason.clone(),
        patch: rev.patch.clone(),
        payload: rev.payload.clone(),
        state: rev.state,
        created_at: rev.at,
        reviewer: None,
        reviewed_at: None,
        review_note: None,
    }
}

/// The record's revisions, lowest number first.
pub fn list(event_id: &str) -> Statement {
    Statement::new(
        format!("SELECT {COLUMNS} FROM dlq_revisions WHERE event_id = ? ORDER BY revision"),
        [SqlValue::from(event_id)],
    )
}

/// One revision.
pub fn get(event_id: &str, revision: u32) -> Statement {
    Statement::new(
        format!("SELECT {COLUMNS} FROM dlq_revisions WHERE event_id = ? AND revision = ?"),
        [
            SqlValue::from(event_id),
            SqlValue::from(i64::from(revision)),
        ],
    )
}

/// The guarded state change of a review: affects one row, or none when the
/// revision is missing or in another state.
pub fn review(r: &Review<'_>) -> Statement {
    let mut args = vec![
        SqlValue::from(r.to.as_str()),
        SqlValue::from(r.reviewer),
        SqlValue::from(r.at),
        SqlValue::from(r.note),
        SqlValue::from(r.event_id),
        SqlValue::from(i64::from(r.revision)),
    ];
    args.extend(r.from.iter().map(|s| SqlValue::from(s.as_str())));
    Statement::new(
        format!(
            "UPDATE dlq_revisions SET state = ?, reviewer = ?, reviewed_at = ?, review_note = ? \
             WHERE event_id = ? AND revision = ? AND state IN ({})",
            super::in_list(r.from.len().max(1))
        ),
        args,
    )
}
