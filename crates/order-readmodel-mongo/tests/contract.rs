//! The read-model contract suite and adapter-specific checks against the
//! MongoDB wire-protocol server at `ORDER_TEST_MONGODB_URI`, each case on its
//! own database (dropped afterwards).
//!
//! Start the server with `./scripts/test.sh`, or for a manual run with
//! `eval "$(scripts/services.sh start)"` (and `scripts/services.sh stop`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Bson, Document};
use mongodb::Client;
use order_core::domain::{Order, OrderStatus};
use order_core::ports::{OrderFilter, OrderQuery, PageRequest, ReadModel, StoreError};
use order_core::testkit::fixtures::{at, dec, order_doc};
use order_readmodel_mongo::{MongoOptions, MongoReadModel, DEFAULT_COLLECTION};
use uuid::Uuid;

fn mongo_uri() -> String {
    match std::env::var("ORDER_TEST_MONGODB_URI") {
        Ok(uri) if !uri.trim().is_empty() => uri,
        _ => panic!(
            "ORDER_TEST_MONGODB_URI is not set: these tests need a MongoDB wire-protocol \
             server. Run them with `./scripts/test.sh`, or start the test services with \
             `eval \"$(scripts/services.sh start)\"` first (and `scripts/services.sh stop` after)."
        ),
    }
}

/// Drops the case's database when the case ends.
struct DropDatabase {
    client: Client,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let db = self.client.database(&self.name);
        // The contract cases run on a multi-thread runtime.
        tokio::task::block_in_place(|| {
            let _ = tokio::runtime::Handle::current()
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), db.drop()).await });
        });
    }
}

async fn fresh() -> (MongoReadModel, DropDatabase) {
    let name = format!("order_read_test_{}", Uuid::now_v7().simple());
    let rm = MongoReadModel::connect(&mongo_uri(), &name, DEFAULT_COLLECTION)
        .await
        .expect("connect to ORDER_TEST_MONGODB_URI");
    let guard = DropDatabase {
        client: rm.client().clone(),
        name,
    };
    (rm, guard)
}

async fn read_model() -> (Arc<dyn ReadModel>, DropDatabase) {
    let (rm, guard) = fresh().await;
    (Arc::new(rm), guard)
}

order_core::read_model_contract!(read_model);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_document_keeps_all_items_and_exact_decimals() {
    let (rm, _guard) = fresh().await;
    let order = order_doc("cust-1", "rest-1", OrderStatus::Confirmed, at(7), 2);
    assert_eq!(order.items.len(), 3);
    assert_eq!(
        rm.upsert_many(std::slice::from_ref(&order))
            .await
            .map(|u| u.count()),
        Ok(1)
    );

    let raw: Document = rm
        .database()
        .collection::<Document>(DEFAULT_COLLECTION)
        .find_one(doc! { "_id": order.id.to_string() })
        .await
        .expect("find_one")
        .expect("stored document");
    assert_eq!(raw.get_str("_id"), Ok(order.id.to_string().as_str()));
    let items = raw.get_array("items").expect("items array");
    assert_eq!(items.len(), 3, "every item is stored");
    let first = items[0].as_document().expect("item document");
    assert_eq!(first.get_str("menuItemId"), Ok("pizza-margherita"));
    assert_eq!(first.get_str("price"), Ok("12.50"), "price as exact text");
    let mint = items[1].as_document().expect("item document");
    assert_eq!(mint.get_str("name"), Ok("Mint (ünïcode ✓)"));
    assert_eq!(mint.get_str("price"), Ok("0.10"));
    assert_eq!(raw.get_str("totalAmount"), Ok("32.30"));
    assert_eq!(raw.get_str("status"), Ok("CONFIRMED"));
    assert_eq!(raw.get_str("createdAt"), Ok("2024-05-01T10:00:00.123463Z"));
    assert!(matches!(
        raw.get("version"),
        Some(Bson::Int64(2) | Bson::Int32(2))
    ));

    let back = rm.get(order.id).await.expect("get").expect("order");
    assert_eq!(back, order);
    assert_eq!(back.items[0].price, dec("12.50"));
    assert_eq!(back.items[0].price.to_string(), "12.50", "scale kept");
    assert_eq!(back.total_amount.to_string(), "32.30");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_document_is_corrupt() {
    let (rm, _guard) = fresh().await;
    let id = Uuid::now_v7();
    rm.database()
        .collection::<Document>(DEFAULT_COLLECTION)
        .insert_one(doc! { "_id": id.to_string(), "customerId": "c", "version": 1_i64 })
        .await
        .expect("insert");
    assert!(matches!(rm.get(id).await, Err(StoreError::Corrupt(_))));

    let id2 = Uuid::now_v7();
    let mut order: Order = order_doc("c", "r", OrderStatus::Pending, at(0), 1);
    order.id = id2;
    rm.upsert_many(&[order]).await.expect("upsert");
    rm.database()
        .collection::<Document>(DEFAULT_COLLECTION)
        .update_one(
            doc! { "_id": id2.to_string() },
            doc! { "$set": { "totalAmount": "12,5" } },
        )
        .await
        .expect("tamper");
    assert!(matches!(rm.get(id2).await, Err(StoreError::Corrupt(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_unavailable_within_the_timeout() {
    // A loopback port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let options = MongoOptions {
        server_selection_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        ..MongoOptions::default()
    };
    let started = Instant::now();
    let r = MongoReadModel::connect_with(
        &format!("mongodb://127.0.0.1:{port}"),
        "order_read_db",
        "orders",
        options,
    )
    .await;
    let took = started.elapsed();
    match r {
        Err(StoreError::Unavailable(msg)) => {
            assert!(!msg.is_empty());
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(3),
        "failed after {took:?}, configured 500 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_list_that_does_not_resolve_says_so() {
    // `.invalid` never resolves (RFC 6761): the SRV look-up fails, and the
    // error names the record instead of calling the URI invalid.
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        MongoReadModel::connect_with(
            "mongodb+srv://orders.cluster.invalid/?tls=true",
            "order_read_db",
            "orders",
            MongoOptions::default(),
        ),
    )
    .await
    .expect("the look-up fails within 30 s");
    match r {
        Err(StoreError::Unavailable(msg)) => {
            assert!(msg.contains("_mongodb._tcp"), "{msg}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_model_works_over_tls_and_refuses_an_untrusted_certificate() {
    use order_core::testkit::pki::{TestPki, TlsProxy};
    // The stand-in speaks no TLS: a TLS front with a certificate from the
    // test's own CA forwards to it.
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = TestPki::create(dir.path());
    let target = mongo_uri()
        .trim_start_matches("mongodb://")
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let proxy = TlsProxy::start(&pki, 0, &target, &dir.path().join("socat.log"));
    let uri = |ca: &str| {
        format!(
            "mongodb://127.0.0.1:{}/?tls=true&tlsCAFile={}",
            proxy.port,
            pki.ca(ca).display()
        )
    };
    let name = format!("order_read_test_{}", Uuid::now_v7().simple());
    let rm = MongoReadModel::connect(&uri("good"), &name, DEFAULT_COLLECTION)
        .await
        .unwrap_or_else(|e| panic!("connect over TLS: {e}; {}", proxy.log()));
    let _guard = DropDatabase {
        client: rm.client().clone(),
        name: name.clone(),
    };
    let order = order_doc("cust-tls", "rest-tls", OrderStatus::Pending, at(0), 1);
    rm.upsert_many(std::slice::from_ref(&order))
        .await
        .expect("write over TLS");
    assert_eq!(
        rm.get(order.id).await.expect("read over TLS"),
        Some(order),
        "the document round-trips through TLS"
    );

    let refused = MongoReadModel::connect_with(
        &uri("other"),
        &name,
        DEFAULT_COLLECTION,
        MongoOptions {
            server_selection_timeout: Duration::from_millis(1500),
            connect_timeout: Duration::from_millis(1500),
            ..MongoOptions::default()
        },
    )
    .await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "a certificate from another CA is refused: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_options_in_the_uri_are_taken_and_a_missing_ca_file_is_reported() {
    let r = MongoReadModel::connect_with(
        "mongodb://127.0.0.1:1/?tls=true&tlsCAFile=/nonexistent/ca.pem",
        "order_read_db",
        "orders",
        MongoOptions {
            server_selection_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_millis(500),
            ..MongoOptions::default()
        },
    )
    .await;
    match r {
        Err(StoreError::Unavailable(msg)) => {
            assert!(
                msg.contains("ca.pem") || msg.to_lowercase().contains("tls"),
                "{msg}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// `cargo test -p order-readmodel-mongo --release -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn bench_upsert_throughput() {
    const TOTAL: usize = 20_000;
    const BATCH: usize = 500;
    let (rm, _guard) = fresh().await;
    let orders: Vec<Order> = (0..TOTAL)
        .map(|i| {
            order_doc(
                &format!("cust-{}", i % 97),
                &format!("rest-{}", i % 13),
                OrderStatus::Pending,
                at(i as i64),
                1,
            )
        })
        .collect();
    let started = Instant::now();
    let mut written = 0;
    for batch in orders.chunks(BATCH) {
        written += rm.upsert_many(batch).await.expect("upsert_many").count();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(written, TOTAL);
    println!(
        "upserted {TOTAL} orders in batches of {BATCH}: {secs:.2} s, {:.0} docs/s",
        TOTAL as f64 / secs
    );
    // The same batches again are all stale: nothing written.
    let started = Instant::now();
    let mut rewritten = 0;
    for batch in orders.chunks(BATCH) {
        rewritten += rm.upsert_many(batch).await.expect("upsert_many").count();
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(rewritten, 0);
    println!(
        "re-upserted (all stale) {TOTAL} orders: {secs:.2} s, {:.0} docs/s",
        TOTAL as f64 / secs
    );
    assert_eq!(rm.count().await.expect("count"), TOTAL as u64);

    let started = Instant::now();
    let filter = OrderFilter {
        customer_id: Some("cust-5".into()),
        ..OrderFilter::default()
    };
    let page = rm
        .query(&OrderQuery {
            filter,
            page: PageRequest { page: 2, size: 20 },
        })
        .await
        .expect("query");
    assert_eq!(page.content.len(), 20);
    println!(
        "query customer page 2 of {}: {:?}",
        page.total_pages,
        started.elapsed()
    );
    let started = Instant::now();
    let all = rm
        .query(&OrderQuery {
            filter: OrderFilter::default(),
            page: PageRequest { page: 0, size: 20 },
        })
        .await
        .expect("query");
    assert_eq!(all.total_elements, TOTAL as u64);
    println!("query all page 0: {:?}", started.elapsed());
    let ids: Vec<Uuid> = orders.iter().take(BATCH).map(|o| o.id).collect();
    let started = Instant::now();
    assert_eq!(rm.get_many(&ids).await.expect("get_many").len(), BATCH);
    println!("get_many {BATCH}: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_upserts_of_a_new_order_keep_the_highest_version() {
    let (rm, _guard) = fresh().await;
    let rm = Arc::new(rm);
    for round in 0..5 {
        let base = order_doc("cust-1", "rest-1", OrderStatus::Pending, at(round), 1);
        let tasks: Vec<_> = (1..=8u64)
            .rev()
            .map(|v| {
                let rm = rm.clone();
                let mut o = base.clone();
                o.version = v;
                tokio::spawn(async move { rm.upsert_many(&[o]).await })
            })
            .collect();
        let mut written = 0;
        for t in tasks {
            written += t.await.expect("join").expect("upsert_many").count();
        }
        assert!(written >= 1);
        let stored = rm.get(base.id).await.expect("get").expect("document");
        assert_eq!(stored.version, 8, "the highest version wins");
    }
}
