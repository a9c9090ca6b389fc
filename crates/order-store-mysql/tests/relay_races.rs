//! The three races several relay instances on one database can run into,
//! made deterministic: two relays (instances A and B) over one MariaDB
//! database and one bus (the embedded bus, a real log in a SQLite file),
//! with a hook that holds one step of A until B has done its part.
//!
//! 1. A batch the bus acknowledged whose settle then fails is not sent
//!    again blindly: the next batch asks the bus first.
//! 2. A relay whose lease was taken over mid-batch (stopped, too slow)
//!    settles nothing and parks nothing; the new holder asks the bus before
//!    it sends the rows the old one may have published.
//! 3. A replay of a head on B between A's look-up of that head and A's
//!    park behind it: A's event is not held behind a resolved head; it is
//!    published after the head, in version order.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::TestDb;
use order_core::app::relay::{OutboxRelay, PartitionConfig, Partitions, RelayConfig, RelayPorts};
use order_core::app::{Auditor, DlqService, Metrics, Principal, RetryPolicy};
use order_core::domain::EventEnvelope;
use order_core::ports::{
    BusError, BusMessage, Delivery, DlqStore, EventBus, EventStore, Outbox, OutboxFetch,
    OutboxMessage, OutboxStats, PublishError, ReplayClaims, SequenceMember, Settled, Settlement,
    StoreError, Subscription,
};
use order_core::testkit::fixtures::{at, confirm, create, transition};
use order_store_mysql::MySqlStore;
use order_store_sqlite::EmbeddedBus;
use tokio::sync::Notify;

const TOPIC: &str = "order-events";

/// A step of instance A that waits until the test lets it go on.
#[derive(Default)]
struct Hook {
    armed: AtomicBool,
    reached: Notify,
    release: Notify,
}

impl Hook {
    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Called by the hooked step: when armed (once), says so and waits.
    async fn pass(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            self.release.notified().await;
        }
    }
}

/// The bus as A sees it: the publish reaches the log, then the hook holds
/// the acknowledgement (a broker that appended but answered late).
struct HookedBus {
    inner: Arc<EmbeddedBus>,
    after_append: Arc<Hook>,
    /// Publishes refused (permanently) before the next one goes through.
    refuse: AtomicUsize,
}

#[async_trait]
impl EventBus for HookedBus {
    async fn publish(&self, messages: &[BusMessage]) -> Vec<Result<(), PublishError>> {
        let refused = self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            let no = || Err(PublishError::Permanent("refused by the test".into()));
            return messages.iter().map(|_| no()).collect();
        }
        let results = self.inner.publish(messages).await;
        self.after_append.pass().await;
        results
    }
    async fn check(&self, timeout: Duration) -> Result<String, BusError> {
        self.inner.check(timeout).await
    }
    async fn find_published(&self, messages: &[BusMessage]) -> Result<HashSet<String>, BusError> {
        self.inner.find_published(messages).await
    }
    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.subscribe(group, topic).await
    }
}

/// A's outbox: its next settle fails once after the database wrote nothing
/// (a connection lost at commit, as A sees it) when `fail_settle` is set.
struct FlakyOutbox {
    inner: Arc<MySqlStore>,
    fail_settle: AtomicBool,
}

#[async_trait]
impl Outbox for FlakyOutbox {
    async fn fetch_batch(&self, want: OutboxFetch<'_>) -> Result<Vec<OutboxMessage>, StoreError> {
        self.inner.fetch_batch(want).await
    }
    async fn settle(&self, s: &Settlement) -> Result<Settled, StoreError> {
        if self.fail_settle.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Unavailable("connection lost at commit".into()));
        }
        self.inner.settle(s).await
    }
    async fn stats(&self) -> Result<OutboxStats, StoreError> {
        Outbox::stats(self.inner.as_ref()).await
    }
}

/// A's DLQ store: the hook holds A right after it looked up the heads of
/// its batch's orders.
struct HookedDlq {
    inner: Arc<MySqlStore>,
    after_heads: Arc<Hook>,
}

#[async_trait]
impl DlqStore for HookedDlq {
    async fn insert_new(
        &self,
        records: &[order_core::ports::NewDlqRecord],
    ) -> Result<Vec<String>, StoreError> {
        self.inner.insert_new(records).await
    }
    async fn get(
        &self,
        event_id: &str,
    ) -> Result<Option<order_core::ports::DlqRecord>, StoreError> {
        self.inner.get(event_id).await
    }
    async fn list_page(
        &self,
        status: Option<order_core::ports::DlqStatus>,
        req: order_core::ports::ListRequest,
    ) -> Result<order_core::ports::Page<order_core::ports::DlqRecord>, StoreError> {
        self.inner.list_page(status, req).await
    }
    async fn search(
        &self,
        search: &order_core::ports::DlqSearch,
    ) -> Result<order_core::ports::Page<order_core::ports::DlqRecord>, StoreError> {
        self.inner.search(search).await
    }
    async fn stats(&self) -> Result<order_core::ports::DlqStats, StoreError> {
        DlqStore::stats(self.inner.as_ref()).await
    }
    async fn unresolved_publish_records(
        &self,
        aggregate_ids: &[String],
    ) -> Result<Vec<SequenceMember>, StoreError> {
        let found = self.inner.unresolved_publish_records(aggregate_ids).await;
        self.after_heads.pass().await;
        found
    }
    async fn heads(
        &self,
        query: &order_core::ports::HeadQuery<'_>,
    ) -> Result<Vec<order_core::ports::DlqRecord>, StoreError> {
        self.inner.heads(query).await
    }
    async fn count_heads(
        &self,
        query: &order_core::ports::HeadQuery<'_>,
    ) -> Result<u64, StoreError> {
        self.inner.count_heads(query).await
    }
    async fn held_behind(
        &self,
        heads: &[String],
    ) -> Result<Vec<order_core::ports::DlqRecord>, StoreError> {
        self.inner.held_behind(heads).await
    }
    async fn claim_replays(&self, claims: ReplayClaims<'_>) -> Result<Vec<String>, StoreError> {
        self.inner.claim_replays(claims).await
    }
    async fn release_replays(
        &self,
        event_ids: &[String],
        claimant: &str,
    ) -> Result<(), StoreError> {
        self.inner.release_replays(event_ids, claimant).await
    }
    async fn apply(&self, change: &order_core::ports::SequenceChange) -> Result<bool, StoreError> {
        self.inner.apply(change).await
    }
    async fn orphaned_holds(&self) -> Result<u64, StoreError> {
        self.inner.orphaned_holds().await
    }
    async fn purge_resolved(
        &self,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.inner.purge_resolved(before, limit).await
    }
    async fn clock(&self) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        DlqStore::clock(self.inner.as_ref()).await
    }
}

/// One relay instance over the shared database and bus.
struct Instance {
    relay: OutboxRelay,
    metrics: Arc<Metrics>,
}

impl Instance {
    fn new(name: &str, store: &Arc<MySqlStore>, ports: RelayPorts, lease: Duration) -> Instance {
        let metrics = Arc::new(Metrics::default());
        let partitions = Arc::new(Partitions::new(
            store.clone(),
            name.to_owned(),
            PartitionConfig { count: 4, lease },
            metrics.clone(),
        ));
        let relay = OutboxRelay {
            ports,
            partitions,
            cfg: RelayConfig {
                topic: TOPIC.into(),
                batch_size: 100,
                policy: RetryPolicy {
                    max_attempts: 2,
                    backoff: Duration::from_millis(10),
                },
                idle_poll: Duration::from_millis(50),
                linger: Duration::ZERO,
                publish_budget: Duration::from_millis(100),
            },
            metrics: metrics.clone(),
            wake: Arc::new(Notify::new()),
        };
        Instance { relay, metrics }
    }

    /// Plain ports on the shared store and bus.
    fn plain(name: &str, store: &Arc<MySqlStore>, bus: &Arc<EmbeddedBus>, lease: Duration) -> Self {
        let ports = RelayPorts {
            outbox: store.clone(),
            dlq: store.clone(),
            bus: bus.clone(),
        };
        Self::new(name, store, ports, lease)
    }
}

fn get(c: &std::sync::atomic::AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

struct World {
    _db: TestDb,
    _dir: tempfile::TempDir,
    store: Arc<MySqlStore>,
    bus: Arc<EmbeddedBus>,
}

impl World {
    async fn outbox_pending(&self) -> u64 {
        Outbox::stats(self.store.as_ref())
            .await
            .expect("outbox stats")
            .pending
    }
}

async fn world() -> World {
    let db = TestDb::new();
    let store = Arc::new(db.store().await);
    let dir = tempfile::tempdir().expect("temp dir");
    let bus = Arc::new(EmbeddedBus::open(dir.path().join("bus.db")).expect("bus"));
    World {
        _db: db,
        _dir: dir,
        store,
        bus,
    }
}

/// Every message on the topic, read by a fresh group: event id and version
/// per order, in the order of the log.
async fn topic(bus: &EmbeddedBus) -> Vec<EventEnvelope> {
    let mut sub = bus
        .subscribe(&format!("reader-{}", uuid::Uuid::new_v4()), TOPIC)
        .await
        .expect("subscribe");
    let mut out = Vec::new();
    loop {
        let batch: Vec<Delivery> = sub
            .poll(1000, Duration::from_millis(200))
            .await
            .expect("poll");
        if batch.is_empty() {
            return out;
        }
        for d in batch {
            out.push(serde_json::from_slice(&d.payload).expect("an envelope"));
        }
    }
}

fn ids(events: &[EventEnvelope]) -> Vec<String> {
    events.iter().map(|e| e.event_id.to_string()).collect()
}

async fn commit_orders(store: &MySqlStore, n: i64) -> Vec<EventEnvelope> {
    let mut out = Vec::new();
    for i in 0..n {
        let c = create(&format!("cust-{i}"), "rest-1", at(i));
        store.commit_batch(vec![c.clone()]).await.expect("batch")[0]
            .clone()
            .expect("commit");
        out.extend(c.events);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_settle_failed_is_not_sent_again_blindly() {
    let w = world().await;
    let committed = commit_orders(&w.store, 5).await;
    let outbox = Arc::new(FlakyOutbox {
        inner: w.store.clone(),
        fail_settle: AtomicBool::new(false),
    });
    let ports = RelayPorts {
        outbox: outbox.clone(),
        dlq: w.store.clone(),
        bus: w.bus.clone(),
    };
    let a = Instance::new("relay-a", &w.store, ports, Duration::from_secs(30));
    a.relay.partitions.tick().await.expect("claim");
    // The first batch after a claim asks the bus anyway; settle it.
    assert_eq!(a.relay.run_once().await.expect("first").delivered, 5);
    let later = commit_orders(&w.store, 3).await;
    outbox.fail_settle.store(true, Ordering::SeqCst);
    assert!(a.relay.run_once().await.is_err(), "the settle failed");
    let found_before = get(&a.metrics.publish_found_earlier);
    // The rows are still in the outbox; the retry must not send them twice.
    let report = a.relay.run_once().await.expect("retry");
    assert_eq!(report.delivered, 3);
    assert_eq!(get(&a.metrics.publish_found_earlier) - found_before, 3);
    let on_topic = ids(&topic(&w.bus).await);
    let expected: Vec<String> = ids(&committed).into_iter().chain(ids(&later)).collect();
    assert_eq!(on_topic, expected, "every event once, in commit order");
    assert_eq!(w.outbox_pending().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_lost_its_lease_mid_batch_writes_nothing_and_its_successor_sends_nothing_twice(
) {
    let w = world().await;
    let lease = Duration::from_millis(1500);
    let hook = Arc::new(Hook::default());
    let ports = RelayPorts {
        outbox: w.store.clone(),
        dlq: w.store.clone(),
        bus: Arc::new(HookedBus {
            inner: w.bus.clone(),
            after_append: hook.clone(),
            refuse: AtomicUsize::new(0),
        }),
    };
    let a = Arc::new(Instance::new("relay-a", &w.store, ports, lease));
    let b = Instance::plain("relay-b", &w.store, &w.bus, lease);
    a.relay.partitions.tick().await.expect("A claims");
    assert_eq!(a.relay.partitions.owned().len(), 4);
    let committed = commit_orders(&w.store, 6).await;

    hook.arm();
    let a_batch = {
        let a = a.clone();
        tokio::spawn(async move { a.relay.run_once().await })
    };
    hook.reached.notified().await;
    // A's messages are on the bus, its acknowledgement held; A renews
    // nothing (it is stopped) and its leases run out. B takes over.
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    b.relay.partitions.tick().await.expect("B claims");
    assert_eq!(
        b.relay.partitions.owned().len(),
        4,
        "B holds every partition"
    );
    let b_report = b.relay.run_once().await.expect("B relays");
    assert_eq!(b_report.delivered, 6);
    assert_eq!(
        get(&b.metrics.publish_found_earlier),
        6,
        "B asked the bus and sent nothing A had sent"
    );
    // A wakes up: its settle is fenced, nothing is written or parked.
    hook.release.notify_one();
    let a_report = a_batch.await.expect("join").expect("A's batch");
    assert!(a_report.is_empty(), "{a_report:?}");
    assert_eq!(get(&a.metrics.relay_fenced), 1);
    assert!(
        a.relay.partitions.owned().is_empty(),
        "A dropped its partitions"
    );
    assert_eq!(
        ids(&topic(&w.bus).await),
        ids(&committed),
        "each event once"
    );
    let parked = DlqStore::stats(w.store.as_ref()).await.expect("stats");
    assert_eq!(parked.total_count, 0, "nothing parked");
    assert_eq!(w.outbox_pending().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_replayed_on_another_instance_between_look_up_and_park_holds_nothing_back() {
    let w = world().await;
    let hook = Arc::new(Hook::default());
    let bus = Arc::new(HookedBus {
        inner: w.bus.clone(),
        after_append: Arc::new(Hook::default()),
        refuse: AtomicUsize::new(0),
    });
    let ports = RelayPorts {
        outbox: w.store.clone(),
        dlq: Arc::new(HookedDlq {
            inner: w.store.clone(),
            after_heads: hook.clone(),
        }),
        bus: bus.clone(),
    };
    let a = Arc::new(Instance::new(
        "relay-a",
        &w.store,
        ports,
        Duration::from_secs(30),
    ));
    a.relay.partitions.tick().await.expect("A claims");

    // v1 of an order is parked (the bus refused it permanently once).
    let v1 = create("cust-1", "rest-1", at(0));
    w.store.commit_batch(vec![v1.clone()]).await.expect("batch")[0]
        .clone()
        .expect("commit");
    let head_id = v1.events[0].event_id.to_string();
    bus.refuse.store(1, Ordering::SeqCst);
    let parked = a.relay.run_once().await.expect("park v1");
    assert_eq!(parked.parked, 1);
    // v2 is committed; A looks up v1 as its head, and is held there.
    let t = transition(&v1.state, &[confirm("pay-1")], at(5));
    w.store.commit_batch(vec![t.clone()]).await.expect("batch")[0]
        .clone()
        .expect("commit");
    hook.arm();
    let a_batch = {
        let a = a.clone();
        tokio::spawn(async move { a.relay.run_once().await })
    };
    hook.reached.notified().await;
    // Instance B replays the head meanwhile: nothing is held behind it yet.
    let b = DlqService::new(
        w.store.clone(),
        w.bus.clone(),
        RetryPolicy::default(),
        TOPIC.into(),
        Arc::new(Metrics::default()),
        Auditor::new(w.store.clone()),
    );
    let outcome = b
        .replay(&Principal::anonymous(), &head_id)
        .await
        .expect("replay on B");
    assert!(outcome.success, "{outcome:?}");
    // A goes on: its park behind the replayed head is held back, not written.
    hook.release.notify_one();
    let report = a_batch.await.expect("join").expect("A's batch");
    assert_eq!((report.delivered, report.parked), (0, 0), "{report:?}");
    let v2_id = t.events[0].event_id.to_string();
    assert!(
        w.store.get(&v2_id).await.expect("get").is_none(),
        "v2 not parked"
    );
    // The next batch publishes v2 after v1.
    assert_eq!(a.relay.run_once().await.expect("next").delivered, 1);
    let versions: Vec<u64> = topic(&w.bus).await.iter().map(|e| e.version).collect();
    assert_eq!(versions, [1, 2], "v1 (replayed) then v2");
    let stats = DlqStore::stats(w.store.as_ref()).await.expect("stats");
    assert_eq!(stats.total_count, 1);
    assert_eq!(w.store.orphaned_holds().await.expect("orphans"), 0);
}
