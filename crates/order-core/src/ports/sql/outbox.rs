//! The outbox statements both SQL adapters run, and the one decision a
//! settle makes inside its transaction ([`SettlePlan`]): whether the relay
//! still holds its fences, and which parked events would be held behind a
//! head that is resolved by now.

use std::collections::{HashMap, HashSet};

use super::{in_list, ColumnReader, SqlValue, Statement};
use crate::ports::{
    DlqStatus, Fence, OutboxFetch, OutboxMessage, ParkedEvent, Settlement, StoreError,
};

/// The oldest `limit` rows whose bucket is in one of `buckets`, in position
/// order, as [`read_message`] reads them. `None` when `buckets` is empty.
pub fn fetch(want: OutboxFetch<'_>) -> Option<Statement> {
    let (buckets, limit) = (want.buckets, want.limit);
    if buckets.is_empty() {
        return None;
    }
    let ranges = vec!["(bucket >= ? AND bucket < ?)"; buckets.len()].join(" OR ");
    let mut args: Vec<SqlValue> = Vec::with_capacity(buckets.len() * 2 + 1);
    for r in buckets {
        args.push(SqlValue::Int(i64::from(r.start)));
        args.push(SqlValue::Int(i64::from(r.end)));
    }
    args.push(SqlValue::Int(i64::try_from(limit).unwrap_or(i64::MAX)));
    Some(Statement::new(
        format!(
            "SELECT position, bucket, payload, created_at FROM outbox WHERE {ranges} \
             ORDER BY position LIMIT ?"
        ),
        args,
    ))
}

/// A row of [`fetch`].
pub fn read_message(r: &dyn ColumnReader) -> Result<OutboxMessage, StoreError> {
    let position = r.int(0)?;
    let bucket = u32::try_from(r.int(1)?)
        .map_err(|_| StoreError::Corrupt(format!("outbox row {position}: bad bucket")))?;
    let payload = r.text(2)?;
    Ok(OutboxMessage {
        position,
        bucket,
        envelope: serde_json::from_str(&payload).map_err(|e| {
            StoreError::Corrupt(format!("outbox row {position} is not an envelope: {e}"))
        })?,
        payload,
        created_at: r.time(3)?,
    })
}

/// Rows written before buckets existed (`bucket < 0`), at most `limit`:
/// (position, aggregate id).
pub fn unbucketed(limit: usize) -> Statement {
    Statement::new(
        "SELECT position, aggregate_id FROM outbox WHERE bucket < 0 ORDER BY position LIMIT ?",
        [SqlValue::Int(i64::try_from(limit).unwrap_or(i64::MAX))],
    )
}

/// Gives one outbox row its bucket.
pub fn set_bucket(position: i64, bucket: u32) -> Statement {
    Statement::new(
        "UPDATE outbox SET bucket = ? WHERE position = ?",
        [SqlValue::Int(i64::from(bucket)), SqlValue::Int(position)],
    )
}

/// Deletes outbox rows by position.
pub fn delete(positions: &[i64]) -> Statement {
    Statement::new(
        format!(
            "DELETE FROM outbox WHERE position IN ({})",
            in_list(positions.len())
        ),
        positions.iter().map(|p| SqlValue::Int(*p)),
    )
}

/// The lease rows of `fences` (holder, epoch) as [`SettlePlan::add_fence`]
/// reads them; an adapter that locks appends its lock clause.
pub fn fence_rows(fences: &[Fence]) -> Statement {
    Statement::new(
        format!(
            "SELECT partition_id, holder, epoch FROM relay_partitions \
             WHERE partition_id IN ({}) ORDER BY partition_id",
            in_list(fences.len())
        ),
        fences.iter().map(|f| SqlValue::Int(i64::from(f.partition))),
    )
}

/// The status of each head a settlement parks events behind, as
/// [`SettlePlan::add_head`] reads them; an adapter that locks appends its
/// lock clause (the lock a replay's final mark of a head waits on).
pub fn head_rows(heads: &[&str]) -> Statement {
    Statement::new(
        format!(
            "SELECT event_id, status FROM dlq_replay_records WHERE event_id IN ({}) \
             ORDER BY event_id",
            in_list(heads.len())
        ),
        heads.iter().copied().map(SqlValue::from),
    )
}

/// What a settle writes, decided from the rows it read in its transaction.
#[derive(Debug, Default)]
pub struct SettlePlan {
    fences: HashMap<u32, (String, i64)>,
    /// Event ids the settlement parks itself (heads it creates).
    own: HashSet<String>,
    /// Heads outside the settlement, and those found unresolved.
    heads: Vec<String>,
    unresolved_heads: HashSet<String>,
}

impl SettlePlan {
    pub fn new(s: &Settlement) -> Self {
        let own: HashSet<String> = s.parked.iter().map(|p| p.record.event_id.clone()).collect();
        let mut heads: Vec<String> = s
            .parked
            .iter()
            .filter_map(|p| p.record.blocked_by.clone())
            .filter(|h| !own.contains(h))
            .collect();
        heads.sort_unstable();
        heads.dedup();
        Self {
            own,
            heads,
            ..Self::default()
        }
    }

    /// [`head_rows`] of the heads outside the settlement that its parked
    /// events name, sorted, at most `chunk` per statement.
    pub fn head_queries(&self, chunk: usize) -> Vec<Statement> {
        self.heads
            .chunks(chunk.max(1))
            .map(|part| head_rows(&part.iter().map(String::as_str).collect::<Vec<_>>()))
            .collect()
    }

    /// Adds a row of [`fence_rows`].
    pub fn add_fence(&mut self, r: &dyn ColumnReader) -> Result<(), StoreError> {
        let partition = u32::try_from(r.int(0)?)
            .map_err(|_| StoreError::Corrupt("relay partition number out of range".into()))?;
        self.fences.insert(partition, (r.text(1)?, r.int(2)?));
        Ok(())
    }

    /// Adds a row of [`head_rows`].
    pub fn add_head(&mut self, r: &dyn ColumnReader) -> Result<(), StoreError> {
        let id = r.text(0)?;
        let status = DlqStatus::parse(&r.text(1)?)
            .ok_or_else(|| StoreError::Corrupt(format!("DLQ record {id}: unknown status")))?;
        if status.is_unresolved() {
            self.unresolved_heads.insert(id);
        }
        Ok(())
    }

    /// The partitions of `s` that `s.holder` no longer holds at the fence's
    /// epoch; empty when the settle may write.
    pub fn fenced(&self, s: &Settlement) -> Vec<u32> {
        s.fences
            .iter()
            .filter(|f| {
                self.fences
                    .get(&f.partition)
                    .is_none_or(|(holder, epoch)| holder != &s.holder || *epoch != f.epoch)
            })
            .map(|f| f.partition)
            .collect()
    }

    /// Whether `p` is parked behind a head that is resolved or gone: it is
    /// left in the outbox for the next batch.
    pub fn holds_back(&self, p: &ParkedEvent) -> bool {
        p.record
            .blocked_by
            .as_ref()
            .is_some_and(|h| !self.own.contains(h) && !self.unresolved_heads.contains(h))
    }
}
