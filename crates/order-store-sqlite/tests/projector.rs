//! The projector against the SQLite event store and read model: one
//! read-model round trip per batch in the steady state, exact duplicate
//! counts on re-delivery, and correct documents when its cache is old.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use order_core::app::{Metrics, Projector, ProjectorConfig};
use order_core::domain::{fold, EventEnvelope, Order};
use order_core::ports::{
    EventStore, OrderQuery, Page, ReadModel, StoreError, StreamBound, Upserted,
};
use order_core::testkit::fixtures::{lifecycle, MAX_EVENTS_PER_ORDER};
use order_store_sqlite::{EmbeddedBus, SqliteReadModel, SqliteStore};
use tempfile::TempDir;
use uuid::Uuid;

/// The real SQLite read model, with a count of the calls that reach it
/// (and, when set, writes that fail from a given one on).
struct Counted {
    inner: SqliteReadModel,
    reads: AtomicUsize,
    writes: AtomicUsize,
    /// Writes numbered from this one on (1-based) fail; 0: none.
    failing_from: AtomicUsize,
}

impl Counted {
    /// The `nth` write from now on, and every one after it, fails.
    fn fail_writes_from(&self, nth: usize) {
        let done = self.writes.load(Ordering::Relaxed);
        self.failing_from.store(done + nth, Ordering::Relaxed);
    }

    fn stop_failing(&self) {
        self.failing_from.store(0, Ordering::Relaxed);
    }

    fn round_trips(&self) -> (usize, usize) {
        (
            self.reads.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }
}

#[async_trait]
impl ReadModel for Counted {
    async fn get_many(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Order>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get_many(ids).await
    }
    async fn upsert_many(&self, orders: &[Order]) -> Result<Upserted, StoreError> {
        let nth = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        let from = self.failing_from.load(Ordering::Relaxed);
        if from != 0 && nth >= from {
            return Err(StoreError::Unavailable("read model down (test)".into()));
        }
        self.inner.upsert_many(orders).await
    }
    async fn get(&self, id: Uuid) -> Result<Option<Order>, StoreError> {
        self.inner.get(id).await
    }
    async fn query(&self, query: &OrderQuery) -> Result<Page<Order>, StoreError> {
        self.inner.query(query).await
    }
    async fn clear(&self) -> Result<(), StoreError> {
        self.inner.clear().await
    }
    async fn count(&self) -> Result<u64, StoreError> {
        self.inner.count().await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

struct World {
    store: Arc<SqliteStore>,
    read_model: Arc<Counted>,
    bus: Arc<EmbeddedBus>,
    _dir: TempDir,
}

impl World {
    /// `orders` whole lifecycles (five events each) in the event store.
    async fn with_orders(orders: u64) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open(dir.path().join("orders.db")).expect("store"));
        let commits = (0..orders)
            .map(|i| lifecycle(i, MAX_EVENTS_PER_ORDER))
            .collect();
        for r in store.commit_batch(commits).await.expect("commit") {
            r.expect("each commit");
        }
        World {
            store,
            read_model: Arc::new(Counted {
                inner: SqliteReadModel::open(dir.path().join("read.db")).expect("read model"),
                reads: AtomicUsize::new(0),
                writes: AtomicUsize::new(0),
                failing_from: AtomicUsize::new(0),
            }),
            bus: Arc::new(EmbeddedBus::open(dir.path().join("bus.db")).expect("bus")),
            _dir: dir,
        }
    }

    fn projector(&self) -> Projector {
        Projector::new(
            self.read_model.clone(),
            self.store.clone(),
            self.bus.clone(),
            ProjectorConfig {
                group: "projector-test".into(),
                topic: "order-events".into(),
                dlq_topic: "order-events-dlq".into(),
                redelivery_topic: None,
                batch_size: 100,
                linger: Duration::ZERO,
                // Small pages: a rebuild reads the next page while it
                // projects this one, and an order's events span pages.
                rebuild_page: 64,
            },
            Arc::new(Metrics::default()),
        )
    }

    /// Every event, all first versions before all second versions and so on:
    /// each batch holds events of orders an earlier batch wrote.
    async fn events_by_version(&self) -> Vec<EventEnvelope> {
        let mut events: Vec<EventEnvelope> = self
            .store
            .read_all(0, 1_000_000)
            .await
            .expect("read all")
            .into_iter()
            .map(|e| e.envelope)
            .collect();
        events.sort_by_key(|e| e.version);
        events
    }

    /// The read model holds exactly the fold of each order's events.
    async fn assert_documents_are_the_event_store(&self, orders: usize) {
        let mut ids: Vec<String> = self
            .events_by_version()
            .await
            .into_iter()
            .map(|e| e.aggregate_id)
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), orders);
        for id in ids {
            let stream = self
                .store
                .load_stream(&id, StreamBound::All)
                .await
                .expect("stream");
            let expected = fold(stream.iter().map(|e| &e.envelope))
                .expect("fold")
                .expect("order");
            let doc = self.read_model.get(expected.id).await.expect("get");
            assert_eq!(doc.as_ref(), Some(&expected), "document of {id}");
        }
    }
}

async fn project_in_batches(
    p: &Projector,
    events: &[EventEnvelope],
    size: usize,
) -> (usize, usize, usize) {
    let (mut applied, mut duplicates, mut repaired) = (0, 0, 0);
    for batch in events.chunks(size) {
        let envs: Vec<Option<EventEnvelope>> = batch.iter().cloned().map(Some).collect();
        let r = p.project(&envs).await.expect("project");
        assert!(r.poison.is_empty(), "{:?}", r.poison);
        applied += r.applied;
        duplicates += r.duplicates;
        repaired += r.repaired;
    }
    (applied, duplicates, repaired)
}

#[tokio::test]
async fn a_batch_costs_the_read_model_one_write_and_no_read() {
    let w = World::with_orders(200).await;
    let events = w.events_by_version().await;
    assert_eq!(events.len(), 1000);
    let p = w.projector();
    let (applied, duplicates, repaired) = project_in_batches(&p, &events, 100).await;
    assert_eq!((applied, duplicates, repaired), (1000, 0, 0));
    let (reads, writes) = w.read_model.round_trips();
    assert_eq!(reads, 0, "documents came from the projector's cache");
    assert_eq!(writes, 10, "one upsert per batch");
    let per_event = (reads + writes) as f64 / events.len() as f64;
    assert!(per_event <= 0.05, "{per_event} round trips per event");
    w.assert_documents_are_the_event_store(200).await;
}

#[tokio::test]
async fn a_fresh_projector_counts_a_redelivery_as_duplicates_and_changes_nothing() {
    let w = World::with_orders(100).await;
    let events = w.events_by_version().await;
    project_in_batches(&w.projector(), &events, 100).await;
    let before = w.read_model.round_trips();

    // A restart: the cache is empty and everything arrives again.
    let (applied, duplicates, repaired) = project_in_batches(&w.projector(), &events, 100).await;
    assert_eq!((applied, duplicates, repaired), (0, 500, 0));
    let after = w.read_model.round_trips();
    // Creations are not looked up: one write, which the version guard
    // refuses. Versions 2 read the documents once; from then on they are
    // cached and every event is seen to be old without a round trip.
    assert_eq!(after.0 - before.0, 1, "one read");
    assert_eq!(after.1 - before.1, 1, "one write");
    w.assert_documents_are_the_event_store(100).await;
}

/// One order's five events; projector `a` holds version 2 in its cache
/// while another projector (another instance) moved the document to 4.
async fn an_old_copy_in_a(w: &World) -> (Projector, Vec<EventEnvelope>) {
    let events = w.events_by_version().await;
    let (a, b) = (w.projector(), w.projector());
    for (p, v) in [(&a, 1), (&a, 2), (&b, 3), (&b, 4)] {
        p.project(&[Some(events[v - 1].clone())])
            .await
            .expect("project");
    }
    (a, events)
}

#[tokio::test]
async fn an_old_cached_document_never_overwrites_a_newer_one() {
    let w = World::with_orders(1).await;
    let (a, events) = an_old_copy_in_a(&w).await;
    let v = |n: usize| vec![Some(events[n - 1].clone())];

    // A re-delivered version 3 folds onto a's old copy; the guard keeps 4.
    let r = a.project(&v(3)).await.expect("redelivered v3");
    assert_eq!((r.applied, r.duplicates), (0, 1));
    let doc = w
        .read_model
        .get(events[0].aggregate_id.parse().expect("uuid"))
        .await;
    assert_eq!(doc.expect("get").map(|d| d.version), Some(4));

    // Version 5 on a: read again (the refused copy left the cache), applied.
    let r = a.project(&v(5)).await.expect("v5");
    assert_eq!((r.applied, r.duplicates, r.repaired), (1, 0, 0));
    w.assert_documents_are_the_event_store(1).await;
}

#[tokio::test]
async fn a_gap_behind_an_old_cached_document_is_repaired_from_the_event_store() {
    let w = World::with_orders(1).await;
    let (a, events) = an_old_copy_in_a(&w).await;
    let r = a
        .project(&[Some(events[4].clone())])
        .await
        .expect("v5 after a gap");
    assert_eq!((r.applied, r.repaired), (1, 1));
    w.assert_documents_are_the_event_store(1).await;
}

#[tokio::test]
async fn a_rebuild_forgets_the_cache_and_writes_every_order_again() {
    let w = World::with_orders(300).await;
    let events = w.events_by_version().await;
    let p = w.projector();
    project_in_batches(&p, &events, 100).await;
    let report = p.rebuild().await.expect("rebuild");
    assert_eq!((report.events, report.orders), (1500, 300));
    w.assert_documents_are_the_event_store(300).await;
}

#[tokio::test]
async fn a_rebuild_whose_write_fails_keeps_no_unwritten_document_in_the_cache() {
    let w = World::with_orders(300).await;
    let p = w.projector();
    // Pages of 64 events: the third page's write fails while the fourth
    // is already folded, its documents cached ahead of their write.
    w.read_model.fail_writes_from(3);
    let e = p.rebuild().await;
    assert!(e.is_err(), "{e:?}");
    w.read_model.stop_failing();
    // Every event delivered again: a document the failed rebuild folded
    // but never wrote must not pass for written (its events would count
    // as duplicates and the order would stay missing).
    let events = w.events_by_version().await;
    project_in_batches(&p, &events, 100).await;
    w.assert_documents_are_the_event_store(300).await;
}

fn read_model_indexes(path: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).expect("open the file");
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' \
             AND tbl_name = 'order_views' AND name LIKE 'idx_%' ORDER BY name",
        )
        .expect("prepare");
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("query")
        .collect::<Result<Vec<_>, _>>()
        .expect("names");
    names
}

#[tokio::test]
async fn a_rebuild_drops_the_indexes_and_a_rebuild_killed_midway_gets_them_back_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("read.db");
    let all = [
        "idx_order_views_created",
        "idx_order_views_customer",
        "idx_order_views_restaurant",
        "idx_order_views_status",
    ];
    {
        let rm = SqliteReadModel::open(&path).expect("open");
        assert_eq!(read_model_indexes(&path), all);
        rm.begin_rebuild().await.expect("begin");
        assert!(
            read_model_indexes(&path).is_empty(),
            "bulk writes without indexes"
        );
        rm.finish_rebuild().await.expect("finish");
        assert_eq!(read_model_indexes(&path), all);
        rm.begin_rebuild().await.expect("begin again");
        // The process dies here, before finish_rebuild.
    }
    let _reopened = SqliteReadModel::open(&path).expect("open again");
    assert_eq!(read_model_indexes(&path), all);
}
