//! The query side: the projector folds bus messages into the read model
//! (idempotently: an event at or below a document's version changes
//! nothing), rebuilds the read model from the event store, and sends what it
//! cannot process to the DLQ topic with failure headers. The DLQ recorder
//! ([`super::dlq::DlqRecorder`]) reads that topic with the same consume loop.

mod cache;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{watch, Mutex};
use uuid::Uuid;

use self::cache::DocCache;
use super::dlq::TEST_AGGREGATE_TYPE;
use super::error::AppError;
use super::metrics::Metrics;
use super::relay::{POSITION_HEADER, TRACEPARENT_HEADER};
use crate::domain::{
    fold, fold_one, now, span_id_of, trace_id_of, EventEnvelope, Order, AGGREGATE_TYPE,
};
use crate::ports::{
    BusMessage, Delivery, EventBus, EventStore, ReadModel, StoreError, StreamBound, Subscription,
    Upserted,
};

#[derive(Clone, Debug)]
pub struct ProjectorConfig {
    pub group: String,
    pub topic: String,
    pub dlq_topic: String,
    /// Where targeted redeliveries arrive: messages whose
    /// `orders_redeliver_to` header names [`Self::group`] are processed
    /// like any other; those for other groups are passed over.
    pub redelivery_topic: Option<String>,
    pub batch_size: usize,
    /// When a poll returns less than half a batch, how long to wait for more
    /// before processing: fewer, larger read-model transactions under load,
    /// at the price of this much projection lag.
    pub linger: Duration,
    /// Events read from the event store at once in a rebuild (see
    /// [`DEFAULT_REBUILD_PAGE`]).
    pub rebuild_page: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionReport {
    pub applied: usize,
    pub duplicates: usize,
    /// Events of other aggregate types (e.g. synthetic test events).
    pub ignored: usize,
    /// Orders whose missing versions were filled from the event store.
    pub repaired: usize,
    /// Messages that cannot be processed, with the reason (index into input).
    #[serde(skip)]
    pub poison: Vec<(usize, String)>,
}

/// What a read-model rebuild did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RebuildReport {
    pub events: u64,
    pub orders: u64,
    pub millis: u64,
    pub events_per_second: u64,
}

pub struct Projector {
    read_model: Arc<dyn ReadModel>,
    events: Arc<dyn EventStore>,
    /// The raw bus (not behind the fault switch): dead letters must get out.
    bus: Arc<dyn EventBus>,
    cfg: ProjectorConfig,
    metrics: Arc<Metrics>,
    /// Held while a batch is applied; a rebuild takes it to pause projection.
    lock: Mutex<()>,
    /// Never held across an await.
    cache: std::sync::Mutex<DocCache>,
}

/// Documents the projector keeps (about 1 KiB each): a few seconds of
/// commands at full speed, so transitions of recent orders read nothing.
const DOC_CACHE_CAPACITY: usize = 65_536;

impl Projector {
    pub fn new(
        read_model: Arc<dyn ReadModel>,
        events: Arc<dyn EventStore>,
        bus: Arc<dyn EventBus>,
        cfg: ProjectorConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            read_model,
            events,
            bus,
            cfg,
            metrics,
            lock: Mutex::new(()),
            cache: std::sync::Mutex::new(DocCache::new(DOC_CACHE_CAPACITY)),
        }
    }

    pub fn config(&self) -> &ProjectorConfig {
        &self.cfg
    }

    /// Applies envelopes to the read model. Returns which inputs are poison;
    /// fails only when the read model or event store is unavailable (the
    /// caller retries the same batch: applying twice changes nothing).
    ///
    /// One read-model round trip per batch in the steady state: the
    /// documents come from the cache of what this projector wrote, an order
    /// whose first event here is its creation needs no read, and only the
    /// rest are read, all in one `get_many`; the results go back in one
    /// version-guarded `upsert_many`.
    pub async fn project(
        &self,
        envs: &[Option<EventEnvelope>],
    ) -> Result<ProjectionReport, StoreError> {
        let folded = self.fold_batch(envs).await?;
        self.write_folded(folded).await
    }

    /// The first half of [`Self::project`]: the documents the batch leads
    /// to, not yet written.
    async fn fold_batch(&self, envs: &[Option<EventEnvelope>]) -> Result<Folded, StoreError> {
        let mut report = ProjectionReport::default();
        // The lowest version each order has in this batch.
        let mut first: HashMap<Uuid, u64> = HashMap::new();
        let mut parsed: Vec<Option<Uuid>> = Vec::with_capacity(envs.len());
        for (i, env) in envs.iter().enumerate() {
            let Some(env) = env else {
                parsed.push(None);
                continue;
            };
            if env.aggregate_type == TEST_AGGREGATE_TYPE || env.aggregate_type != AGGREGATE_TYPE {
                report.ignored += 1;
                parsed.push(None);
                continue;
            }
            match Uuid::parse_str(&env.aggregate_id) {
                Ok(id) => {
                    first
                        .entry(id)
                        .and_modify(|v| *v = (*v).min(env.version))
                        .or_insert(env.version);
                    parsed.push(Some(id));
                }
                Err(_) => {
                    report.poison.push((
                        i,
                        format!("aggregate id {:?} is not a UUID", env.aggregate_id),
                    ));
                    parsed.push(None);
                }
            }
        }
        let mut docs: HashMap<Uuid, Order> = HashMap::with_capacity(first.len());
        let mut misses: Vec<Uuid> = Vec::new();
        {
            let mut cache = self.cache();
            for (id, version) in &first {
                match cache.take(id) {
                    Some(doc) => {
                        docs.insert(*id, doc);
                    }
                    None if *version > 1 => misses.push(*id),
                    // Created in this batch: nothing to read. Should the
                    // document exist after all (a re-delivery), the version
                    // guard keeps it and the events count as duplicates.
                    None => {}
                }
            }
        }
        if !misses.is_empty() {
            misses.sort_unstable();
            Metrics::inc(&self.metrics.read_model_calls);
            docs.extend(self.read_model.get_many(&misses).await?);
        }
        let mut applied: HashMap<Uuid, usize> = HashMap::new();
        let applied_at = now();
        for (i, (env, id)) in envs.iter().zip(&parsed).enumerate() {
            let (Some(env), Some(id)) = (env, id) else {
                continue;
            };
            let current = docs.get(id).map_or(0, |d| d.version);
            if env.version <= current {
                report.duplicates += 1;
                continue;
            }
            let next = if env.version == current + 1 {
                fold_one(docs.get(id), env)
            } else {
                // A gap (an earlier event is still parked, or arrived on
                // another path): rebuild this order from the event store.
                report.repaired += 1;
                let stream = self
                    .events
                    .load_stream(&env.aggregate_id, StreamBound::UpToVersion(env.version))
                    .await?;
                fold(stream.iter().map(|e| &e.envelope)).and_then(|o| {
                    o.ok_or(crate::domain::FoldError::Inconsistent {
                        event_id: env.event_id,
                        version: env.version,
                    })
                })
            };
            match next {
                Ok(order) => {
                    docs.insert(*id, order);
                    *applied.entry(*id).or_default() += 1;
                    report.applied += 1;
                    let lag = (applied_at - env.occurred_on)
                        .num_microseconds()
                        .unwrap_or(0);
                    self.metrics.projection_lag.observe_secs(lag as f64 / 1e6);
                }
                Err(e) => report.poison.push((i, e.to_string())),
            }
        }
        let orders: Vec<Order> = applied.keys().filter_map(|id| docs.remove(id)).collect();
        Ok(Folded {
            report,
            orders,
            applied,
            docs,
        })
    }

    /// The second half of [`Self::project`]: writes the documents in one
    /// version-guarded `upsert_many` and keeps them in the cache.
    async fn write_folded(&self, folded: Folded) -> Result<ProjectionReport, StoreError> {
        let Folded {
            mut report,
            orders,
            applied,
            docs,
        } = folded;
        let written = if orders.is_empty() {
            Upserted::default()
        } else {
            Metrics::inc(&self.metrics.read_model_calls);
            self.read_model.upsert_many(&orders).await?
        };
        let mut cache = self.cache();
        let flags = written.0.into_iter().chain(std::iter::repeat(true));
        for (order, written) in orders.into_iter().zip(flags) {
            if written {
                cache.put(order);
            } else if let Some(n) = applied.get(&order.id) {
                // The stored document already had this version or a later
                // one: every event applied to it here was a duplicate.
                report.applied -= n;
                report.duplicates += n;
            }
        }
        // Documents read or cached but left unchanged are still current.
        for (_, doc) in docs {
            cache.put(doc);
        }
        drop(cache);
        Metrics::add(&self.metrics.events_projected, report.applied as u64);
        Metrics::add(
            &self.metrics.projection_duplicates,
            report.duplicates as u64,
        );
        Ok(report)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, DocCache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Processes one polled batch completely: projects it and dead-letters
    /// the poison messages. Only after `Ok` may the offsets be committed.
    pub async fn handle(&self, deliveries: &[Delivery]) -> Result<ProjectionReport, StoreError> {
        let _lock = self.lock.lock().await;
        let mut envs = Vec::with_capacity(deliveries.len());
        let mut undecodable = Vec::new();
        for (i, d) in deliveries.iter().enumerate() {
            match serde_json::from_slice::<EventEnvelope>(&d.payload) {
                Ok(env) => envs.push(Some(env)),
                Err(e) => {
                    envs.push(None);
                    undecodable.push((i, format!("message value is not an event envelope: {e}")));
                }
            }
        }
        let mut report = self.project(&envs).await?;
        report.poison.extend(undecodable);
        report.poison.sort_by_key(|(i, _)| *i);
        if !report.poison.is_empty() {
            let dead: Vec<BusMessage> = report
                .poison
                .iter()
                .map(|(i, reason)| dead_letter(&deliveries[*i], reason, &self.cfg))
                .collect();
            let results = self.bus.publish(&dead).await;
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                // Never move past a message that is neither processed nor dead-lettered.
                return Err(StoreError::Unavailable(format!(
                    "could not send to the DLQ topic: {e}"
                )));
            }
            for (i, reason) in &report.poison {
                let _span = message_span(&deliveries[*i], envs[*i].as_ref()).entered();
                tracing::warn!(
                    offset = deliveries[*i].offset,
                    partition = deliveries[*i].partition,
                    reason,
                    "projector sent a message to the DLQ topic"
                );
            }
            Metrics::add(&self.metrics.projection_failures, dead.len() as u64);
        }
        // One line per message at debug, in a span with the message's trace
        // id; the callsites are disabled (and cost nothing) at `info`.
        // The spans also exist when a trace exporter listens (see
        // `EXPORT_PROBE`); otherwise the hot path makes none.
        let log = tracing::enabled!(tracing::Level::DEBUG);
        if log || tracing::span_enabled!(target: EXPORT_PROBE, tracing::Level::INFO) {
            for (d, env) in deliveries.iter().zip(&envs) {
                let Some(env) = env else { continue };
                let _span = message_span(d, Some(env)).entered();
                if log {
                    tracing::debug!(
                        event_id = %env.event_id,
                        event_type = %env.event_type,
                        aggregate_id = %env.aggregate_id,
                        version = env.version,
                        "projector processed an event"
                    );
                }
            }
        }
        if let Some(p) = deliveries
            .iter()
            .filter_map(|d| {
                d.header(POSITION_HEADER)
                    .and_then(|p| p.parse::<i64>().ok())
            })
            .max()
        {
            self.metrics
                .projector_position
                .fetch_max(p, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(report)
    }

    /// Consumes the events topic until `shutdown`. A batch that fails (read
    /// model down) is retried with backoff and never committed before it
    /// succeeds.
    pub async fn run(
        self: Arc<Self>,
        mut sub: Box<dyn Subscription>,
        shutdown: watch::Receiver<bool>,
    ) {
        let batch = self.cfg.batch_size;
        consume_loop(
            &mut sub,
            shutdown,
            batch,
            self.cfg.linger,
            "projector",
            &self.metrics.projector_lag,
            |d| {
                let this = self.clone();
                async move { this.handle(&d).await.map(|_| ()) }
            },
        )
        .await;
    }

    /// Consumes the redelivery topic until `shutdown`: a DLQ replay of a
    /// record this projector dead-lettered arrives there, addressed to its
    /// group (see [`crate::app::dlq::REDELIVER_TO_HEADER`]); messages for
    /// other groups are committed without processing.
    pub async fn run_redeliveries(
        self: Arc<Self>,
        mut sub: Box<dyn Subscription>,
        shutdown: watch::Receiver<bool>,
    ) {
        let lag = AtomicU64::new(0);
        consume_loop(
            &mut sub,
            shutdown,
            self.cfg.batch_size,
            Duration::ZERO,
            "projector-redelivery",
            &lag,
            |d| {
                let this = self.clone();
                async move {
                    let mine: Vec<Delivery> = d.into_iter().filter(|d| this.is_for_me(d)).collect();
                    if mine.is_empty() {
                        return Ok(());
                    }
                    let report = this.handle(&mine).await?;
                    tracing::info!(
                        applied = report.applied,
                        duplicates = report.duplicates,
                        dead_lettered = report.poison.len(),
                        "projector processed redelivered messages"
                    );
                    Ok(())
                }
            },
        )
        .await;
    }

    /// Whether a redelivered message is addressed to this projector's group.
    pub fn is_for_me(&self, d: &Delivery) -> bool {
        d.header(super::dlq::REDELIVER_TO_HEADER) == Some(self.cfg.group.as_str())
    }

    /// Clears the read model and projects every event of the event store.
    /// Live projection pauses meanwhile; what it delivers later is a duplicate.
    pub async fn rebuild(&self) -> Result<RebuildReport, AppError> {
        let _lock = self.lock.lock().await;
        let started = Instant::now();
        self.cache().clear();
        self.read_model.begin_rebuild().await?;
        let projected = self.project_everything().await;
        if projected.is_err() {
            // The pipeline caches documents before their write: after a
            // failed write the cache may hold some the read model lacks.
            self.cache().clear();
        }
        // Also after a failure: the read model must not stay without its
        // indexes until the next start.
        let finished = self.read_model.finish_rebuild().await;
        let (events, after) = projected?;
        finished?;
        self.metrics
            .projector_position
            .fetch_max(after, std::sync::atomic::Ordering::Relaxed);
        let orders = self.read_model.count().await?;
        let millis = started.elapsed().as_millis() as u64;
        Ok(RebuildReport {
            events,
            orders,
            millis,
            events_per_second: (events * 1000).checked_div(millis).unwrap_or(events),
        })
    }

    /// Every event of the event store, in pages; how many and the last
    /// position.
    ///
    /// A pipeline over the pages: while the documents of one page are
    /// written, the next page is read and folded (the event store, the
    /// fold and the read model's writer work at once, on both cores). The
    /// fold of a page needs the documents of the page before, which are
    /// then still being written: they are put in the cache before their
    /// write starts. That is only right in a rebuild, where the read model
    /// was cleared and nothing but the rebuild writes to it (live
    /// projection waits for the lock), so every document is written as
    /// folded.
    async fn project_everything(&self) -> Result<(u64, i64), AppError> {
        let size = self.cfg.rebuild_page.max(1);
        let mut after = 0;
        let mut events = 0u64;
        let Some(mut folded) = self.read_and_fold(&mut after, &mut events, size).await? else {
            return Ok((0, 0));
        };
        loop {
            {
                let mut cache = self.cache();
                for order in &folded.orders {
                    cache.put(order.clone());
                }
            }
            let (written, next) = tokio::join!(
                self.write_folded(folded),
                self.read_and_fold(&mut after, &mut events, size)
            );
            written?;
            match next? {
                Some(f) => folded = f,
                None => return Ok((events, after)),
            }
        }
    }

    /// The page of events after `after`, folded (None when there is none);
    /// moves `after` and counts the events.
    async fn read_and_fold(
        &self,
        after: &mut i64,
        events: &mut u64,
        size: usize,
    ) -> Result<Option<Folded>, AppError> {
        let page = self.events.read_all(*after, size).await?;
        let Some(last) = page.last() else {
            return Ok(None);
        };
        *after = last.position;
        *events += page.len() as u64;
        let envs: Vec<Option<EventEnvelope>> = page.into_iter().map(|e| Some(e.envelope)).collect();
        let folded = self.fold_batch(&envs).await?;
        if let Some((i, reason)) = folded.report.poison.first() {
            return Err(AppError::Internal(format!(
                "event store holds an unprojectable event at index {i}: {reason}"
            )));
        }
        Ok(Some(folded))
    }
}

/// What [`Projector::fold_batch`] decided, for [`Projector::write_folded`].
struct Folded {
    report: ProjectionReport,
    /// The documents to write.
    orders: Vec<Order>,
    /// Events applied per order (to count them as duplicates when the
    /// stored document turns out newer).
    applied: HashMap<Uuid, usize>,
    /// Documents read or cached and left unchanged.
    docs: HashMap<Uuid, Order>,
}

/// Events per read-model batch in a rebuild: an order's events mostly land
/// in one page, so most documents are written once.
pub const DEFAULT_REBUILD_PAGE: usize = 20_000;

/// A target nothing logs to: a subscriber that exports spans (the service's
/// OTLP layer) enables it and the log filter disables it, so
/// `span_enabled!(target: EXPORT_PROBE, …)` says whether spans are wanted
/// for something other than log lines.
pub const EXPORT_PROBE: &str = "order_trace_export";

/// The span a consumed message is processed in: the trace id of its
/// `ce_traceparent` header (or of its envelope's `traceparent`), so a
/// request's trace continues in the consumers' log lines.
pub(crate) fn message_span(d: &Delivery, env: Option<&EventEnvelope>) -> tracing::Span {
    let traceparent = d
        .header(TRACEPARENT_HEADER)
        .filter(|t| trace_id_of(t).is_some())
        .or_else(|| env.and_then(|e| e.traceparent.as_deref()));
    // parent_span_id: the publishing request's span, for the OTLP export.
    tracing::info_span!(
        "message",
        trace_id = traceparent.and_then(trace_id_of).unwrap_or_default(),
        parent_span_id = traceparent.and_then(span_id_of).unwrap_or_default(),
        topic = %d.topic,
        partition = d.partition,
        offset = d.offset,
    )
}

fn dead_letter(d: &Delivery, reason: &str, cfg: &ProjectorConfig) -> BusMessage {
    use crate::ports::dlt as h;
    let mut headers = d.headers.clone();
    headers.extend([
        (h::ORIGINAL_TOPIC.to_owned(), d.topic.clone()),
        (h::ORIGINAL_PARTITION.to_owned(), d.partition.to_string()),
        (h::ORIGINAL_OFFSET.to_owned(), d.offset.to_string()),
    ]);
    if let Some(at) = d.timestamp {
        headers.extend([
            (
                h::ORIGINAL_TIMESTAMP.to_owned(),
                at.timestamp_millis().to_string(),
            ),
            (
                h::ORIGINAL_TIMESTAMP_TYPE.to_owned(),
                "CreateTime".to_owned(),
            ),
        ]);
    }
    headers.extend([
        (h::ORIGINAL_CONSUMER_GROUP.to_owned(), cfg.group.clone()),
        (
            h::EXCEPTION_FQCN.to_owned(),
            h::PROJECTION_ERROR_FQCN.to_owned(),
        ),
        (h::EXCEPTION_MESSAGE.to_owned(), reason.to_owned()),
        (
            h::EXCEPTION_STACKTRACE.to_owned(),
            h::stacktrace(h::PROJECTION_ERROR_FQCN, reason),
        ),
        (h::FAILED_AT.to_owned(), now().to_rfc3339()),
    ]);
    BusMessage {
        topic: cfg.dlq_topic.clone(),
        key: d.key.clone().unwrap_or_default(),
        payload: d.payload.clone(),
        headers,
    }
}

/// Poll → process → commit, retrying a failed batch with backoff (capped at
/// 5 s) until it succeeds or `shutdown` turns true.
/// How often a consumer measures its lag.
const LAG_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) async fn consume_loop<F, Fut>(
    sub: &mut Box<dyn Subscription>,
    mut shutdown: watch::Receiver<bool>,
    batch: usize,
    linger: Duration,
    name: &'static str,
    lag: &AtomicU64,
    process: F,
) where
    F: Fn(Vec<Delivery>) -> Fut,
    Fut: std::future::Future<Output = Result<(), StoreError>>,
{
    let mut measure_at = tokio::time::Instant::now();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if tokio::time::Instant::now() >= measure_at {
            measure_at = tokio::time::Instant::now() + LAG_INTERVAL;
            match sub.lag().await {
                Ok(n) => lag.store(n, std::sync::atomic::Ordering::Relaxed),
                Err(e) => tracing::debug!(consumer = name, error = %e, "lag not measured"),
            }
        }
        let deliveries = tokio::select! {
            r = sub.poll(batch, Duration::from_millis(200)) => r,
            _ = shutdown.changed() => return,
        };
        let mut deliveries = match deliveries {
            Ok(d) if d.is_empty() => continue,
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(consumer = name, error = %e, "poll failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if !linger.is_zero() && deliveries.len() < batch / 2 {
            tokio::time::sleep(linger).await;
            // Whatever arrived meanwhile joins this batch (no waiting now).
            if let Ok(more) = sub.poll(batch - deliveries.len(), Duration::ZERO).await {
                deliveries.extend(more);
            }
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            match process(deliveries.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(consumer = name, error = %e, "batch failed; retrying without committing");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Commit the last offset of every partition in the batch.
        let mut last_per_partition: HashMap<(String, i32), &Delivery> = HashMap::new();
        for d in &deliveries {
            last_per_partition.insert((d.topic.clone(), d.partition), d);
        }
        for d in last_per_partition.values() {
            if let Err(e) = sub.commit(d).await {
                tracing::warn!(consumer = name, error = %e, "offset commit failed; messages may be seen again");
            }
        }
    }
}
