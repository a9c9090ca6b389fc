//! Relay partition leases ([`RelayLeases`]) in the SQLite file. The embedded
//! profile runs one process on one partition; the rules are the same as on
//! MySQL, so the relay code is the same. Every time is the database clock.

use std::time::Duration;

use async_trait::async_trait;
use order_core::ports::{layout_plan, Fence, Holder, PartitionState, RelayLeases, StoreError};
use rusqlite::{params, TransactionBehavior};

use crate::db::{db_err, to_u64};
use crate::store::SqliteStore;

/// The database clock in unix milliseconds.
pub(crate) const NOW_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn partition_id(p: u32) -> i64 {
    i64::from(p)
}

/// A SQLite file is served by one process at a time (the service holds a
/// lock beside it), so leases found when it is opened belong to a process
/// that is gone: they end now, and the epochs stay (a late write of that
/// process would still be fenced).
pub(crate) fn void_dead_leases(conn: &mut rusqlite::Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "UPDATE relay_partitions SET holder = '', expires_ms = 0;
         DELETE FROM relay_instances;",
    )
    .map_err(db_err)
}

#[async_trait]
impl RelayLeases for SqliteStore {
    async fn layout(&self, count: u32) -> Result<u32, StoreError> {
        self.db
            .write_async(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                let stored: i64 = tx
                    .query_row("SELECT COUNT(*) FROM relay_partitions", [], |r| r.get(0))
                    .map_err(db_err)?;
                let (create, total) = layout_plan(stored, count);
                for p in create {
                    tx.execute(
                        "INSERT INTO relay_partitions (partition_id) VALUES (?1)",
                        [partition_id(p)],
                    )
                    .map_err(db_err)?;
                }
                tx.commit().map_err(db_err)?;
                Ok(total)
            })
            .await
    }

    async fn repartition(&self, count: u32) -> Result<(), StoreError> {
        self.db
            .write_async(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                let (epoch, until): (i64, i64) = tx
                    .query_row(
                        "SELECT COALESCE(MAX(epoch), 0), COALESCE(MAX(expires_ms), 0) \
                         FROM relay_partitions",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .map_err(db_err)?;
                tx.execute("DELETE FROM relay_partitions", [])
                    .map_err(db_err)?;
                for p in 0..count.max(1) {
                    tx.execute(
                        "INSERT INTO relay_partitions (partition_id, epoch, expires_ms) \
                         VALUES (?1, ?2, ?3)",
                        params![partition_id(p), epoch + 1, until],
                    )
                    .map_err(db_err)?;
                }
                tx.commit().map_err(db_err)
            })
            .await
    }

    async fn heartbeat(&self, by: Holder<'_>) -> Result<u32, StoreError> {
        let (instance, ttl) = (by.instance.to_owned(), by.ttl);
        self.db
            .write_async(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                tx.execute(
                    &format!(
                        "INSERT INTO relay_instances (instance, expires_ms) VALUES (?1, {NOW_MS} + ?2) \
                         ON CONFLICT (instance) DO UPDATE SET expires_ms = excluded.expires_ms"
                    ),
                    params![instance, ms(ttl)],
                )
                .map_err(db_err)?;
                tx.execute(
                    &format!("DELETE FROM relay_instances WHERE expires_ms < {NOW_MS}"),
                    [],
                )
                .map_err(db_err)?;
                let live: i64 = tx
                    .query_row("SELECT COUNT(*) FROM relay_instances", [], |r| r.get(0))
                    .map_err(db_err)?;
                tx.commit().map_err(db_err)?;
                Ok(u32::try_from(to_u64(live)?).unwrap_or(u32::MAX))
            })
            .await
    }

    async fn leave(&self, instance: &str) -> Result<(), StoreError> {
        let instance = instance.to_owned();
        self.db
            .write_async(move |conn| {
                conn.execute(
                    "DELETE FROM relay_instances WHERE instance = ?1",
                    [instance],
                )
                .map(drop)
                .map_err(db_err)
            })
            .await
    }

    async fn partitions(&self) -> Result<Vec<PartitionState>, StoreError> {
        self.db
            .read_async(|conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "SELECT partition_id, holder, epoch, expires_ms > {NOW_MS} \
                         FROM relay_partitions ORDER BY partition_id"
                    ))
                    .map_err(db_err)?;
                let rows = stmt
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, bool>(3)?,
                        ))
                    })
                    .map_err(db_err)?;
                let mut out = Vec::new();
                for row in rows {
                    let (p, holder, epoch, live) = row.map_err(db_err)?;
                    out.push(PartitionState {
                        partition: u32::try_from(p).unwrap_or(u32::MAX),
                        holder,
                        epoch,
                        live,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn claim(&self, seen: Fence, by: Holder<'_>) -> Result<Option<Fence>, StoreError> {
        let (instance, ttl) = (by.instance.to_owned(), by.ttl);
        self.db
            .write_async(move |conn| {
                let changed = conn
                    .execute(
                        &format!(
                            "UPDATE relay_partitions SET holder = ?1, epoch = epoch + 1, \
                             expires_ms = {NOW_MS} + ?2 \
                             WHERE partition_id = ?3 AND epoch = ?4 AND expires_ms <= {NOW_MS}"
                        ),
                        params![instance, ms(ttl), partition_id(seen.partition), seen.epoch],
                    )
                    .map_err(db_err)?;
                Ok((changed == 1).then_some(Fence {
                    partition: seen.partition,
                    epoch: seen.epoch + 1,
                }))
            })
            .await
    }

    async fn renew(&self, fences: &[Fence], by: Holder<'_>) -> Result<Vec<Fence>, StoreError> {
        let sql = format!(
            "UPDATE relay_partitions SET expires_ms = {NOW_MS} + ?4 \
             WHERE partition_id = ?1 AND holder = ?2 AND epoch = ?3"
        );
        self.per_fence(sql, fences, by.instance, Some(ms(by.ttl)))
            .await
    }

    async fn release(&self, fences: &[Fence], instance: &str) -> Result<(), StoreError> {
        let sql = "UPDATE relay_partitions SET holder = '', expires_ms = 0 \
                   WHERE partition_id = ?1 AND holder = ?2 AND epoch = ?3";
        self.per_fence(sql.to_owned(), fences, instance, None)
            .await
            .map(drop)
    }
}

impl SqliteStore {
    /// Runs `sql` once per fence (`?1` partition, `?2` holder, `?3` epoch,
    /// `?4` the lease in ms when given) in one transaction; the fences whose
    /// row it changed.
    async fn per_fence(
        &self,
        sql: String,
        fences: &[Fence],
        instance: &str,
        lease_ms: Option<i64>,
    ) -> Result<Vec<Fence>, StoreError> {
        let fences = fences.to_vec();
        let instance = instance.to_owned();
        self.db
            .write_async(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                let mut changed = Vec::new();
                {
                    let mut stmt = tx.prepare_cached(&sql).map_err(db_err)?;
                    for f in &fences {
                        let p = partition_id(f.partition);
                        let n = match lease_ms {
                            Some(ms) => stmt.execute(params![p, instance, f.epoch, ms]),
                            None => stmt.execute(params![p, instance, f.epoch]),
                        }
                        .map_err(db_err)?;
                        if n == 1 {
                            changed.push(*f);
                        }
                    }
                }
                tx.commit().map_err(db_err)?;
                Ok(changed)
            })
            .await
    }
}
