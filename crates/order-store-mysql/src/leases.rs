//! Relay partition leases ([`RelayLeases`]) in `relay_partitions`, with the
//! live instances in `relay_instances`. Every expiry is computed and
//! compared by the database clock (`UTC_TIMESTAMP(6)`), so the instances'
//! own clocks never meet. A claim is one conditional UPDATE that bumps the
//! epoch; renewal and release name the epoch they hold.

use std::time::Duration;

use async_trait::async_trait;
use order_core::ports::{layout_plan, Fence, Holder, PartitionState, RelayLeases, StoreError};
use sqlx::Row;

use crate::db::{db_err, fit, to_u64};
use crate::store::MySqlStore;

/// Longest instance id the tables keep.
const HOLDER_MAX: usize = 64;

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn holder(instance: &str) -> String {
    fit(instance, HOLDER_MAX).into_owned()
}

#[async_trait]
impl RelayLeases for MySqlStore {
    async fn layout(&self, count: u32) -> Result<u32, StoreError> {
        self.timed("relay layout", async {
            let mut tx = self.pool().begin().await.map_err(db_err)?;
            // Serialises two instances creating the layout at once.
            sqlx::query("SELECT name FROM relay_lease WHERE name = 'outbox' FOR UPDATE")
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            let stored: i64 = sqlx::query("SELECT COUNT(*) FROM relay_partitions")
                .fetch_one(&mut *tx)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(db_err)?;
            let (create, total) = layout_plan(stored, count);
            for p in create {
                sqlx::query("INSERT INTO relay_partitions (partition_id) VALUES (?)")
                    .bind(p)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            tx.commit().await.map_err(db_err)?;
            Ok(total)
        })
        .await
    }

    async fn repartition(&self, count: u32) -> Result<(), StoreError> {
        self.timed("relay repartition", async {
            let mut tx = self.pool().begin().await.map_err(db_err)?;
            let row = sqlx::query(
                "SELECT COALESCE(MAX(epoch), 0), \
                 COALESCE(MAX(expires_at), TIMESTAMP('2000-01-01 00:00:00')) \
                 FROM relay_partitions FOR UPDATE",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            let epoch: i64 = row.try_get(0).map_err(db_err)?;
            let until: chrono::NaiveDateTime = row.try_get(1).map_err(db_err)?;
            sqlx::query("DELETE FROM relay_partitions")
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            for p in 0..count.max(1) {
                sqlx::query(
                    "INSERT INTO relay_partitions (partition_id, epoch, expires_at) \
                     VALUES (?, ?, ?)",
                )
                .bind(p)
                .bind(epoch + 1)
                .bind(until)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            tx.commit().await.map_err(db_err)
        })
        .await
    }

    async fn heartbeat(&self, by: Holder<'_>) -> Result<u32, StoreError> {
        self.timed("relay heartbeat", async {
            sqlx::query(
                "INSERT INTO relay_instances (instance, expires_at) \
                 VALUES (?, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND) \
                 ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)",
            )
            .bind(holder(by.instance))
            .bind(micros(by.ttl))
            .execute(self.pool())
            .await
            .map_err(db_err)?;
            sqlx::query("DELETE FROM relay_instances WHERE expires_at < UTC_TIMESTAMP(6)")
                .execute(self.pool())
                .await
                .map_err(db_err)?;
            let live: i64 = sqlx::query("SELECT COUNT(*) FROM relay_instances")
                .fetch_one(self.pool())
                .await
                .and_then(|r| r.try_get(0))
                .map_err(db_err)?;
            Ok(u32::try_from(to_u64(live)?).unwrap_or(u32::MAX))
        })
        .await
    }

    async fn leave(&self, instance: &str) -> Result<(), StoreError> {
        self.timed("relay leave", async {
            sqlx::query("DELETE FROM relay_instances WHERE instance = ?")
                .bind(holder(instance))
                .execute(self.pool())
                .await
                .map(drop)
                .map_err(db_err)
        })
        .await
    }

    async fn partitions(&self) -> Result<Vec<PartitionState>, StoreError> {
        self.timed("relay partitions", async {
            let rows = sqlx::query(
                "SELECT partition_id, holder, epoch, expires_at > UTC_TIMESTAMP(6) \
                 FROM relay_partitions ORDER BY partition_id",
            )
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
            rows.iter()
                .map(|r| {
                    let live: i64 = r.try_get(3).map_err(db_err)?;
                    Ok(PartitionState {
                        partition: u32::try_from(r.try_get::<i32, _>(0).map_err(db_err)?)
                            .map_err(|_| StoreError::Corrupt("negative partition".into()))?,
                        holder: r.try_get(1).map_err(db_err)?,
                        epoch: r.try_get(2).map_err(db_err)?,
                        live: live != 0,
                    })
                })
                .collect()
        })
        .await
    }

    async fn claim(&self, seen: Fence, by: Holder<'_>) -> Result<Option<Fence>, StoreError> {
        self.timed("relay claim", async {
            // Matched rows are reported (CLIENT_FOUND_ROWS): 1 means taken.
            let taken = sqlx::query(
                "UPDATE relay_partitions SET holder = ?, epoch = epoch + 1, \
                 expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND \
                 WHERE partition_id = ? AND epoch = ? AND expires_at <= UTC_TIMESTAMP(6) \
                 AND NOT EXISTS (SELECT 1 FROM relay_lease WHERE name = 'outbox' \
                 AND holder <> '' AND expires_at > UTC_TIMESTAMP(6))",
            )
            .bind(holder(by.instance))
            .bind(micros(by.ttl))
            .bind(seen.partition)
            .bind(seen.epoch)
            .execute(self.pool())
            .await
            .map_err(db_err)?
            .rows_affected();
            Ok((taken == 1).then_some(Fence {
                partition: seen.partition,
                epoch: seen.epoch + 1,
            }))
        })
        .await
    }

    async fn renew(&self, fences: &[Fence], by: Holder<'_>) -> Result<Vec<Fence>, StoreError> {
        let sql = "UPDATE relay_partitions \
                   SET expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND \
                   WHERE partition_id = ? AND holder = ? AND epoch = ?";
        self.timed(
            "relay renew",
            self.per_fence(sql, fences, by.instance, Some(by.ttl)),
        )
        .await
    }

    async fn release(&self, fences: &[Fence], instance: &str) -> Result<(), StoreError> {
        let sql = "UPDATE relay_partitions SET holder = '', \
                   expires_at = '2000-01-01 00:00:00' \
                   WHERE partition_id = ? AND holder = ? AND epoch = ?";
        self.timed("relay release", self.per_fence(sql, fences, instance, None))
            .await
            .map(drop)
    }
}

impl MySqlStore {
    /// Runs `sql` once per fence (binding the lease in µs first when given,
    /// then partition, holder, epoch); the fences whose row it matched.
    async fn per_fence(
        &self,
        sql: &'static str,
        fences: &[Fence],
        instance: &str,
        lease: Option<Duration>,
    ) -> Result<Vec<Fence>, StoreError> {
        let mut matched = Vec::with_capacity(fences.len());
        for f in fences {
            let mut q = sqlx::query(sql);
            if let Some(lease) = lease {
                q = q.bind(micros(lease));
            }
            let n = q
                .bind(f.partition)
                .bind(holder(instance))
                .bind(f.epoch)
                .execute(self.pool())
                .await
                .map_err(db_err)?
                .rows_affected();
            if n == 1 {
                matched.push(*f);
            }
        }
        Ok(matched)
    }
}
