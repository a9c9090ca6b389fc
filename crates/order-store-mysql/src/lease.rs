//! The relay lease: which service instance may take outbox rows.
//!
//! One `relay_lease` row (`name = 'outbox'`) holds the holder's instance
//! id (random, made at connect) and an expiry in UTC. Every outbox fetch
//! takes or renews it in one conditional UPDATE; an instance that does not
//! hold it gets an empty batch. So several instances on one database never
//! publish the same rows, nor one order's events out of order: the rows are
//! relayed by one instance at a time, and another takes over only after the
//! holder stopped renewing for a whole lease.
//!
//! A relay batch (fetch, publish with retries, settle) may outlast the
//! lease while a broker is failing. A heartbeat therefore renews the lease
//! while a fetched batch is not settled yet, for at most
//! [`MAX_HOLD_FACTOR`] leases, so a relay that died without settling does
//! not keep the outbox forever. A process that dies renews nothing, and
//! its lease simply runs out.

use std::sync::{Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use order_core::ports::StoreError;
use sqlx::mysql::MySqlPool;

use crate::db::db_err;
use crate::store::Inner;

/// The lease's name in `relay_lease`.
const OUTBOX: &str = "outbox";

/// Takes the lease when it is free or expired, renews it when it is ours
/// (binds: holder, lease in microseconds, name, holder).
const TAKE: &str = "UPDATE relay_lease SET holder = ?, \
     expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND \
     WHERE name = ? AND (holder = ? OR expires_at < UTC_TIMESTAMP(6))";

/// Renews the lease only when it is ours (the same binds as [`TAKE`]; the
/// holder it sets is the one it already has).
const RENEW: &str = "UPDATE relay_lease SET holder = ?, \
     expires_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND \
     WHERE name = ? AND holder = ?";

/// An unsettled batch keeps the lease renewed for at most this many leases.
pub(crate) const MAX_HOLD_FACTOR: u32 = 6;

#[derive(Default)]
struct State {
    /// The lease was (re)taken and no batch fetched under it yet.
    fresh: bool,
    /// The last non-empty batch was the first under a (re)taken lease.
    last_batch_fresh: bool,
    /// Until when (local clock) the lease was last known to be ours.
    held_until: Option<Instant>,
    /// When the batch that is not settled yet was fetched.
    in_flight_since: Option<Instant>,
}

pub(crate) struct Lease {
    holder: String,
    duration: Duration,
    state: Mutex<State>,
}

impl Lease {
    pub fn new(duration: Duration) -> Self {
        Self {
            holder: uuid::Uuid::new_v4().simple().to_string(),
            duration,
            state: Mutex::new(State::default()),
        }
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn micros(&self) -> i64 {
        i64::try_from(self.duration.as_micros()).unwrap_or(i64::MAX)
    }

    pub fn held(&self) -> bool {
        self.state()
            .held_until
            .is_some_and(|until| Instant::now() < until)
    }

    /// Creates the lease row when it is missing (the migration seeds it).
    pub async fn ensure_row(&self, pool: &MySqlPool) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO relay_lease (name, holder, expires_at) \
             VALUES (?, '', '2000-01-01 00:00:00') ON DUPLICATE KEY UPDATE name = name",
        )
        .bind(OUTBOX)
        .execute(pool)
        .await
        .map(drop)
        .map_err(db_err)
    }

    /// Runs [`TAKE`] or [`RENEW`]: makes this instance the holder until one
    /// lease from now where the row's guard matches. Returns when the
    /// statement was sent and whether it matched.
    async fn extend(
        &self,
        pool: &MySqlPool,
        statement: &'static str,
    ) -> Result<(Instant, bool), StoreError> {
        let started = Instant::now();
        // The connection reports matched rows (CLIENT_FOUND_ROWS), so a
        // renewal within the same microsecond still counts as held.
        let matched = sqlx::query(statement)
            .bind(&self.holder)
            .bind(self.micros())
            .bind(OUTBOX)
            .bind(&self.holder)
            .execute(pool)
            .await
            .map_err(db_err)?
            .rows_affected();
        Ok((started, matched > 0))
    }

    /// Takes the lease if it is free or expired, renews it if it is ours.
    /// Returns whether this instance holds it now.
    pub async fn acquire(&self, pool: &MySqlPool) -> Result<bool, StoreError> {
        let (started, matched) = self.extend(pool, TAKE).await?;
        let mut state = self.state();
        if matched {
            let was_held = state.held_until.is_some_and(|u| started < u);
            state.held_until = Some(started + self.duration);
            if !was_held {
                // The previous holder may have published its last batch
                // without settling it.
                state.fresh = true;
                tracing::info!(instance = %self.holder, "took the outbox relay lease");
            }
            Ok(true)
        } else {
            if state.held_until.take().is_some() {
                tracing::warn!(instance = %self.holder, "lost the outbox relay lease");
            }
            state.in_flight_since = None;
            Ok(false)
        }
    }

    /// Renews the lease only if it is still ours.
    async fn renew(&self, pool: &MySqlPool) -> Result<bool, StoreError> {
        let (started, matched) = self.extend(pool, RENEW).await?;
        let mut state = self.state();
        if matched {
            state.held_until = Some(started + self.duration);
        } else {
            state.held_until = None;
            state.in_flight_since = None;
        }
        Ok(matched)
    }

    /// Gives the lease up (expires it now) if this instance holds it.
    pub async fn release(&self, pool: &MySqlPool) -> Result<(), StoreError> {
        {
            let mut state = self.state();
            state.held_until = None;
            state.in_flight_since = None;
        }
        sqlx::query(
            "UPDATE relay_lease SET holder = '', expires_at = '2000-01-01 00:00:00' \
             WHERE name = ? AND holder = ?",
        )
        .bind(OUTBOX)
        .bind(&self.holder)
        .execute(pool)
        .await
        .map(drop)
        .map_err(db_err)
    }

    /// A fetch under the lease returned rows (`true`) or nothing.
    pub fn batch_taken(&self, rows: bool) {
        let mut state = self.state();
        if rows {
            state.last_batch_fresh = std::mem::take(&mut state.fresh);
        }
        state.in_flight_since = if rows { Some(Instant::now()) } else { None };
    }

    /// The fetched batch was settled.
    /// Whether the last non-empty batch was the first under a (re)taken lease.
    pub fn last_batch_fresh(&self) -> bool {
        self.state().last_batch_fresh
    }

    pub fn batch_settled(&self) {
        self.state().in_flight_since = None;
    }

    /// Whether the heartbeat should renew now.
    fn wants_renewal(&self) -> bool {
        let state = self.state();
        let held = state.held_until.is_some_and(|u| Instant::now() < u);
        let in_flight = state
            .in_flight_since
            .is_some_and(|since| since.elapsed() < self.duration * MAX_HOLD_FACTOR);
        held && in_flight
    }

    /// Renews the lease every third of its duration while a batch is in
    /// flight; stops when the store is dropped.
    pub fn start_heartbeat(inner: Weak<Inner>) {
        let Some(period) = inner.upgrade().map(|i| i.lease.duration / 3) else {
            return;
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                if !inner.lease.wants_renewal() {
                    continue;
                }
                match tokio::time::timeout(period, inner.lease.renew(&inner.pool)).await {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => {
                        tracing::warn!(instance = %inner.lease.holder, "lost the outbox relay lease")
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not renew the relay lease"),
                    Err(_) => tracing::warn!("renewing the relay lease timed out"),
                }
            }
        });
    }
}
