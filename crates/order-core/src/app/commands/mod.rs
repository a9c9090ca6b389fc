//! The command side: decide in the domain, then commit events + state +
//! outbox rows in one transaction. Concurrent commands are group-committed:
//! a single committer task drains every waiting commit into one
//! `commit_batch` call, and each caller still gets its own result.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tracing::Instrument;
use uuid::Uuid;

use crate::app::error::AppError;
use crate::app::metrics::Metrics;
use crate::domain::{fold, now, CreateOrder, EventEnvelope, Order, OrderStatus, Transition};
use crate::ports::{Commit, CommitError, EventStore, IdempotencyRecord, StoreError, StreamBound};

type Reply = oneshot::Sender<Result<Vec<i64>, CommitError>>;

/// Hands commits to the committer task and awaits their results.
#[derive(Clone)]
pub struct GroupCommitter {
    tx: mpsc::Sender<(Commit, Reply)>,
}

impl GroupCommitter {
    /// Starts the committer task. It drains every waiting commit (up to
    /// `max_batch`) into one `commit_batch` call and keeps at most
    /// `concurrency` such transactions in flight: 1 suits SQLite's single
    /// writer; a server database takes several, which hides each commit's
    /// log flush. Concurrent batches never hold two commits of one order
    /// (a command's next event is decided only after its commit returned),
    /// so per-order version order is kept. `committed` is notified after
    /// every successful batch so the outbox relay wakes at once.
    ///
    /// `linger`: when the previous batch held at least a few commands (the
    /// service is under load) and the next one is small, it waits this long
    /// for more before committing.
    ///
    /// `timeout` is the command timeout: a commit whose caller has given up
    /// (answered 503) is left out of the batch, and a batch still running
    /// after `timeout` — every caller in it has given up by then — is
    /// abandoned, so a database that comes back does not commit commands
    /// long answered as failed. (One caught mid-commit at its deadline can
    /// still land: a timeout answer means "outcome unknown"; retry with the
    /// same `Idempotency-Key`.)
    pub fn start(
        store: Arc<dyn EventStore>,
        max_batch: usize,
        linger: Duration,
        concurrency: usize,
        timeout: Duration,
        committed: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let max_batch = max_batch.max(1);
        let (tx, mut rx) = mpsc::channel::<(Commit, Reply)>(max_batch * 4);
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        tokio::spawn(async move {
            let mut last = 0;
            while let Some(first) = rx.recv().await {
                // Waiting for a free slot is what lets the next batch grow.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let mut batch = Vec::with_capacity(max_batch);
                batch.push(first);
                drain_into(&mut batch, &mut rx, max_batch);
                // Under load (the last batch was not tiny) a small batch
                // waits `linger` for more: fewer, larger transactions cost
                // less per command. A lone command never waits.
                if !linger.is_zero() && last >= LINGER_AFTER && batch.len() < max_batch / 8 {
                    tokio::time::sleep(linger).await;
                    drain_into(&mut batch, &mut rx, max_batch);
                }
                last = batch.len();
                let (store, committed, metrics) =
                    (store.clone(), committed.clone(), metrics.clone());
                tokio::spawn(async move {
                    commit_one_batch(store.as_ref(), batch, timeout, &committed, &metrics).await;
                    drop(slot);
                });
            }
        });
        Self { tx }
    }

    pub async fn commit(&self, commit: Commit) -> Result<Vec<i64>, CommitError> {
        let (reply, rx) = oneshot::channel();
        let closed = || CommitError::Store(StoreError::Unavailable("committer stopped".into()));
        self.tx.send((commit, reply)).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

/// The batch size from which the next small batch lingers.
const LINGER_AFTER: usize = 4;

fn drain_into<T>(batch: &mut Vec<T>, rx: &mut mpsc::Receiver<T>, max_batch: usize) {
    while batch.len() < max_batch {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
}

async fn commit_one_batch(
    store: &dyn EventStore,
    batch: Vec<(Commit, Reply)>,
    timeout: Duration,
    committed: &Notify,
    metrics: &Metrics,
) {
    // A caller that timed out has answered 503: its commit must not land.
    let (commits, replies): (Vec<Commit>, Vec<Reply>) = batch
        .into_iter()
        .filter(|(_, reply)| !reply.is_closed())
        .unzip();
    if commits.is_empty() {
        return;
    }
    let sizes: Vec<u64> = commits.iter().map(|c| c.events.len() as u64).collect();
    let outcome = match tokio::time::timeout(timeout, store.commit_batch(commits)).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Unavailable(format!(
            "the database did not commit within {timeout:?}; batch abandoned"
        ))),
    };
    match outcome {
        Ok(results) => {
            Metrics::inc(&metrics.commit_batches);
            let appended: u64 = results
                .iter()
                .zip(&sizes)
                .filter(|(r, _)| r.is_ok())
                .map(|(_, n)| n)
                .sum();
            if appended > 0 {
                Metrics::add(&metrics.events_appended, appended);
                committed.notify_one();
            }
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "group commit failed");
            for reply in replies {
                let _ = reply.send(Err(CommitError::Store(e.clone())));
            }
        }
    }
}

/// Metadata a command carries into its events.
#[derive(Clone, Debug, Default)]
pub struct CommandContext {
    pub correlation_id: Option<String>,
    /// The W3C `traceparent` the events carry to the bus (`ce_traceparent`).
    pub traceparent: Option<String>,
}

/// An `Idempotency-Key` with the fingerprint of the request it came with.
#[derive(Clone, Debug)]
pub struct IdempotencyKey {
    pub key: String,
    pub fingerprint: String,
}

#[derive(Clone, Debug)]
pub struct CreateOutcome {
    pub order: Order,
    /// True when an earlier request with the same key created the order.
    pub replayed: bool,
}

/// How often a transition re-reads and re-decides after losing a race.
const MAX_CONFLICT_RETRIES: usize = 5;

pub struct CommandService {
    store: Arc<dyn EventStore>,
    committer: GroupCommitter,
    metrics: Arc<Metrics>,
    timeout: Duration,
}

impl CommandService {
    /// `timeout` bounds one command end to end (a hung database answers 503).
    pub fn new(
        store: Arc<dyn EventStore>,
        committer: GroupCommitter,
        metrics: Arc<Metrics>,
        timeout: Duration,
    ) -> Self {
        Self {
            store,
            committer,
            metrics,
            timeout,
        }
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, AppError>>,
    ) -> Result<T, AppError> {
        let r = match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(AppError::Unavailable(StoreError::Unavailable(
                "command timed out".into(),
            ))),
        };
        match &r {
            Ok(_) => Metrics::inc(&self.metrics.commands_accepted),
            Err(AppError::Unavailable(_) | AppError::Internal(_)) => {
                Metrics::inc(&self.metrics.commands_failed)
            }
            Err(_) => Metrics::inc(&self.metrics.commands_rejected),
        }
        r
    }

    pub async fn create(
        &self,
        cmd: CreateOrder,
        idem: Option<IdempotencyKey>,
        ctx: CommandContext,
    ) -> Result<CreateOutcome, AppError> {
        let id = Uuid::now_v7();
        let span = tracing::info_span!("create_order", order_id = %id);
        self.bounded(self.create_inner(id, cmd, idem, ctx).instrument(span))
            .await
    }

    async fn create_inner(
        &self,
        id: Uuid,
        cmd: CreateOrder,
        idem: Option<IdempotencyKey>,
        ctx: CommandContext,
    ) -> Result<CreateOutcome, AppError> {
        if let Some(k) = &idem {
            if let Some(done) = self.idempotent_replay(k).await? {
                return Ok(done);
            }
        }
        let at = now();
        let event = cmd.decide();
        let mut envelope = EventEnvelope::new(id, &event, 1, at, ctx.correlation_id);
        envelope.traceparent = ctx.traceparent;
        let state = Order::apply(None, id, &event, 1, at)
            .ok_or_else(|| AppError::Internal("create did not produce a state".into()))?;
        let commit = Commit {
            expected_version: 0,
            events: vec![envelope],
            state: state.clone(),
            idempotency: idem.as_ref().map(|k| IdempotencyRecord {
                key: k.key.clone(),
                fingerprint: k.fingerprint.clone(),
                order_id: id,
                created_at: at,
            }),
        };
        match self.committer.commit(commit).await {
            Ok(_) => Ok(CreateOutcome {
                order: state,
                replayed: false,
            }),
            Err(CommitError::IdempotencyKeyTaken) => match &idem {
                // A concurrent request with the same key won: answer with its result.
                Some(k) => self
                    .idempotent_replay(k)
                    .await?
                    .ok_or(AppError::IdempotencyMismatch),
                None => Err(AppError::Internal(
                    "idempotency conflict without a key".into(),
                )),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// The first result of a create made with this key: the order as it was
    /// created (version 1), rebuilt from its first event.
    async fn idempotent_replay(
        &self,
        k: &IdempotencyKey,
    ) -> Result<Option<CreateOutcome>, AppError> {
        let Some(rec) = self.store.find_idempotency(&k.key).await? else {
            return Ok(None);
        };
        if rec.fingerprint != k.fingerprint {
            return Err(AppError::IdempotencyMismatch);
        }
        let events = self
            .store
            .load_stream(&rec.order_id.to_string(), StreamBound::UpToVersion(1))
            .await?;
        let order = fold(events.iter().map(|e| &e.envelope))?
            .ok_or_else(|| AppError::Internal("idempotency key without its order".into()))?;
        Ok(Some(CreateOutcome {
            order,
            replayed: true,
        }))
    }

    /// Applies a transition. `if_match` (from `If-Match`) turns a stale
    /// version into 412 instead of a silent re-decide.
    pub async fn transition(
        &self,
        id: Uuid,
        transition: Transition,
        if_match: Option<u64>,
        ctx: CommandContext,
    ) -> Result<Order, AppError> {
        let span =
            tracing::info_span!("transition_order", order_id = %id, action = transition.action());
        let attempt = async {
            for _ in 0..MAX_CONFLICT_RETRIES {
                let current = self
                    .store
                    .load_order(id)
                    .await?
                    .ok_or_else(|| AppError::NotFound(format!("order {id} not found")))?;
                if let Some(expected) = if_match {
                    if expected != current.version {
                        return Err(AppError::PreconditionFailed {
                            expected,
                            current: current.version,
                        });
                    }
                }
                let event = current.decide(&transition)?;
                let at = now();
                let version = current.version + 1;
                let mut envelope =
                    EventEnvelope::new(id, &event, version, at, ctx.correlation_id.clone());
                envelope.traceparent.clone_from(&ctx.traceparent);
                let state = Order::apply(Some(&current), id, &event, version, at)
                    .ok_or_else(|| AppError::Internal("transition did not apply".into()))?;
                let commit = Commit {
                    expected_version: current.version,
                    events: vec![envelope],
                    state: state.clone(),
                    idempotency: None,
                };
                match self.committer.commit(commit).await {
                    Ok(_) => return Ok(state),
                    Err(CommitError::VersionConflict) => {
                        if let Some(expected) = if_match {
                            let current = self
                                .store
                                .load_order(id)
                                .await?
                                .map_or(expected, |o| o.version);
                            return Err(AppError::PreconditionFailed { expected, current });
                        }
                        // Lost a race: re-read and decide again on the new state.
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(AppError::VersionConflict)
        };
        self.bounded(attempt.instrument(span)).await
    }
}

/// Reads answered from the event store (current state and time travel).
pub struct OrderQueries {
    store: Arc<dyn EventStore>,
}

/// Which state of an order to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    Current,
    Version(u64),
    Instant(chrono::DateTime<chrono::Utc>),
}

impl OrderQueries {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store }
    }

    pub async fn get(&self, id: Uuid, as_of: AsOf) -> Result<Order, AppError> {
        let not_found = || AppError::NotFound(format!("order {id} not found"));
        let bound = match as_of {
            AsOf::Current => {
                return self.store.load_order(id).await?.ok_or_else(not_found);
            }
            AsOf::Version(v) => StreamBound::UpToVersion(v),
            AsOf::Instant(t) => StreamBound::UpToInstant(t),
        };
        let events = self.store.load_stream(&id.to_string(), bound).await?;
        if events.is_empty() {
            // Distinguish "no such order" from "did not exist yet".
            return match self.store.load_order(id).await? {
                None => Err(not_found()),
                Some(_) => Err(AppError::NotFound(format!(
                    "order {id} did not exist at the requested point"
                ))),
            };
        }
        if let AsOf::Version(v) = as_of {
            if events.last().map(|e| e.envelope.version) != Some(v) {
                return Err(AppError::NotFound(format!("order {id} has no version {v}")));
            }
        }
        fold(events.iter().map(|e| &e.envelope))?.ok_or_else(not_found)
    }

    pub async fn history(&self, id: Uuid) -> Result<Vec<EventEnvelope>, AppError> {
        let events = self
            .store
            .load_stream(&id.to_string(), StreamBound::All)
            .await?;
        if events.is_empty() {
            return Err(AppError::NotFound(format!("order {id} not found")));
        }
        Ok(events.into_iter().map(|e| e.envelope).collect())
    }
}

/// Statuses for error messages.
pub fn valid_order_statuses() -> String {
    OrderStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
