//! Contract of [`ReadModel`](crate::ports::ReadModel): exact documents,
//! version-guarded upserts, filtered newest-first queries.

use std::sync::Arc;

use uuid::Uuid;

use super::fixtures::{at, dec, order_doc};
use crate::domain::{Order, OrderStatus};
use crate::ports::{OrderFilter, OrderQuery, PageRequest, ReadModel};

async fn upsert(rm: &Arc<dyn ReadModel>, orders: &[Order]) -> usize {
    rm.upsert_many(orders).await.expect("upsert_many").count()
}

fn page(page: u32, size: u32) -> PageRequest {
    PageRequest { page, size }
}

fn query(filter: OrderFilter, page: PageRequest) -> OrderQuery {
    OrderQuery { filter, page }
}

fn ids(orders: &[Order]) -> Vec<Uuid> {
    orders.iter().map(|o| o.id).collect()
}

pub async fn upsert_then_get_round_trips_exactly(rm: Arc<dyn ReadModel>) {
    let pending = order_doc("cust-1", "rest-1", OrderStatus::Pending, at(0), 1);
    let confirmed = order_doc("cust-1", "rest-1", OrderStatus::Confirmed, at(1), 2);
    let cancelled = order_doc("cust-2", "rest-2", OrderStatus::Cancelled, at(2), 2);
    assert_eq!(
        upsert(
            &rm,
            &[pending.clone(), confirmed.clone(), cancelled.clone()]
        )
        .await,
        3
    );
    for o in [&pending, &confirmed, &cancelled] {
        let got = rm.get(o.id).await.expect("get").expect("document");
        assert_eq!(&got, o, "document round trip");
        assert_eq!(got.items[0].price, dec("12.50"));
        assert_eq!(got.created_at, o.created_at, "microseconds kept");
        assert_eq!(got.updated_at, o.updated_at);
    }
    assert_eq!(rm.get(Uuid::now_v7()).await.expect("get"), None);
}

pub async fn upsert_is_version_guarded(rm: Arc<dyn ReadModel>) {
    let v2 = order_doc("cust-1", "rest-1", OrderStatus::Confirmed, at(0), 2);
    assert_eq!(upsert(&rm, std::slice::from_ref(&v2)).await, 1);

    let mut v1 = v2.clone();
    v1.version = 1;
    v1.status = OrderStatus::Pending;
    v1.payment_id = None;
    assert_eq!(
        upsert(&rm, &[v1]).await,
        0,
        "a lower version never overwrites"
    );
    let mut same = v2.clone();
    same.status = OrderStatus::Cancelled;
    assert_eq!(
        upsert(&rm, &[same]).await,
        0,
        "an equal version never overwrites"
    );
    assert_eq!(rm.get(v2.id).await.expect("get"), Some(v2.clone()));

    let mut v3 = v2.clone();
    v3.version = 3;
    v3.status = OrderStatus::Preparing;
    v3.updated_at = at(99);
    assert_eq!(upsert(&rm, std::slice::from_ref(&v3)).await, 1);
    assert_eq!(rm.get(v2.id).await.expect("get"), Some(v3));
    assert_eq!(rm.count().await.expect("count"), 1);
}

pub async fn upsert_many_counts_written(rm: Arc<dyn ReadModel>) {
    let a = order_doc("cust-1", "rest-1", OrderStatus::Confirmed, at(0), 2);
    let b = order_doc("cust-1", "rest-1", OrderStatus::Pending, at(1), 1);
    upsert(&rm, &[a.clone(), b.clone()]).await;

    let mut a_stale = a.clone();
    a_stale.version = 1;
    let mut b_newer = b.clone();
    b_newer.version = 2;
    b_newer.status = OrderStatus::Cancelled;
    let c = order_doc("cust-2", "rest-1", OrderStatus::Pending, at(2), 1);
    assert_eq!(
        upsert(&rm, &[a_stale, b_newer.clone(), c.clone(), a.clone()]).await,
        2,
        "only the newer b and the new c are written"
    );
    assert_eq!(rm.get(a.id).await.expect("get"), Some(a));
    assert_eq!(rm.get(b.id).await.expect("get"), Some(b_newer));
    assert_eq!(rm.get(c.id).await.expect("get"), Some(c));
    assert_eq!(upsert(&rm, &[]).await, 0);
}

pub async fn get_many_returns_only_existing(rm: Arc<dyn ReadModel>) {
    let a = order_doc("cust-1", "rest-1", OrderStatus::Pending, at(0), 1);
    let b = order_doc("cust-1", "rest-1", OrderStatus::Ready, at(1), 4);
    upsert(&rm, &[a.clone(), b.clone()]).await;
    let missing = Uuid::now_v7();
    let got = rm.get_many(&[a.id, missing, b.id]).await.expect("get_many");
    assert_eq!(got.len(), 2);
    assert_eq!(got.get(&a.id), Some(&a));
    assert_eq!(got.get(&b.id), Some(&b));
    assert!(rm.get_many(&[]).await.expect("get_many").is_empty());
}

pub async fn query_filters_and_orders_newest_first(rm: Arc<dyn ReadModel>) {
    use OrderStatus as S;
    let docs = [
        order_doc("cust-1", "rest-1", S::Pending, at(0), 1),
        order_doc("cust-1", "rest-2", S::Confirmed, at(1_000), 2),
        order_doc("cust-2", "rest-1", S::Pending, at(2_000), 1),
        order_doc("cust-2", "rest-2", S::Cancelled, at(3_000), 2),
        order_doc("cust-1", "rest-1", S::Pending, at(4_000), 1),
    ];
    // Inserted in an order that is neither time nor id order.
    upsert(&rm, &[docs[2].clone(), docs[0].clone(), docs[4].clone()]).await;
    upsert(&rm, &[docs[3].clone(), docs[1].clone()]).await;

    let q = |customer: Option<&str>, restaurant: Option<&str>, status: Option<S>| OrderFilter {
        customer_id: customer.map(str::to_owned),
        restaurant_id: restaurant.map(str::to_owned),
        status,
    };
    let run = |f: OrderFilter| {
        let rm = rm.clone();
        async move { rm.query(&query(f, page(0, 50))).await.expect("query") }
    };

    let all = run(OrderFilter::default()).await;
    assert_eq!(
        ids(&all.content),
        [docs[4].id, docs[3].id, docs[2].id, docs[1].id, docs[0].id],
        "newest created first"
    );
    assert_eq!(all.total_elements, 5);
    assert_eq!(all.content[0], docs[4], "whole documents returned");

    let c1 = run(q(Some("cust-1"), None, None)).await;
    assert_eq!(ids(&c1.content), [docs[4].id, docs[1].id, docs[0].id]);
    assert_eq!(c1.total_elements, 3);
    let r2 = run(q(None, Some("rest-2"), None)).await;
    assert_eq!(ids(&r2.content), [docs[3].id, docs[1].id]);
    let pending = run(q(None, None, Some(S::Pending))).await;
    assert_eq!(ids(&pending.content), [docs[4].id, docs[2].id, docs[0].id]);
    let combo = run(q(Some("cust-1"), Some("rest-1"), Some(S::Pending))).await;
    assert_eq!(ids(&combo.content), [docs[4].id, docs[0].id]);
    let none = run(q(Some("cust-9"), None, None)).await;
    assert!(none.content.is_empty());
    assert_eq!(none.total_elements, 0);
    let delivered = run(q(None, None, Some(S::Delivered))).await;
    assert!(delivered.content.is_empty());
}

pub async fn query_pages_with_totals(rm: Arc<dyn ReadModel>) {
    let docs: Vec<Order> = (0..7)
        .map(|i| order_doc("cust-1", "rest-1", OrderStatus::Pending, at(i * 10), 1))
        .collect();
    upsert(&rm, &docs).await;
    upsert(
        &rm,
        &[order_doc(
            "cust-2",
            "rest-1",
            OrderStatus::Pending,
            at(5),
            1,
        )],
    )
    .await;
    let filter = OrderFilter {
        customer_id: Some("cust-1".into()),
        ..OrderFilter::default()
    };
    let p0 = rm
        .query(&query(filter.clone(), page(0, 3)))
        .await
        .expect("query");
    assert_eq!(ids(&p0.content), [docs[6].id, docs[5].id, docs[4].id]);
    assert_eq!(p0.total_elements, 7);
    assert_eq!(p0.total_pages, 3);
    assert_eq!((p0.page, p0.size), (0, 3));
    let p1 = rm
        .query(&query(filter.clone(), page(1, 3)))
        .await
        .expect("query");
    assert_eq!(ids(&p1.content), [docs[3].id, docs[2].id, docs[1].id]);
    let p2 = rm
        .query(&query(filter.clone(), page(2, 3)))
        .await
        .expect("query");
    assert_eq!(ids(&p2.content), [docs[0].id]);
    let p3 = rm
        .query(&query(filter.clone(), page(3, 3)))
        .await
        .expect("query");
    assert!(p3.content.is_empty());
    assert_eq!(p3.total_elements, 7);
}

pub async fn clear_removes_everything(rm: Arc<dyn ReadModel>) {
    assert_eq!(rm.count().await.expect("count"), 0);
    let docs: Vec<Order> = (0..3)
        .map(|i| order_doc("cust-1", "rest-1", OrderStatus::Pending, at(i), 1))
        .collect();
    upsert(&rm, &docs).await;
    assert_eq!(rm.count().await.expect("count"), 3);
    rm.clear().await.expect("clear");
    assert_eq!(rm.count().await.expect("count"), 0);
    assert_eq!(rm.get(docs[0].id).await.expect("get"), None);
    let q = rm
        .query(&query(OrderFilter::default(), page(0, 10)))
        .await
        .expect("query");
    assert!(q.content.is_empty());
    // After a clear, the same versions are written again (a rebuild).
    assert_eq!(upsert(&rm, &docs).await, 3);
    assert_eq!(rm.count().await.expect("count"), 3);
}

pub async fn a_rebuild_starts_empty_and_its_documents_are_found_by_every_filter(
    rm: Arc<dyn ReadModel>,
) {
    use OrderStatus as S;
    let old = order_doc("cust-old", "rest-old", S::Pending, at(0), 1);
    upsert(&rm, std::slice::from_ref(&old)).await;
    rm.begin_rebuild().await.expect("begin rebuild");
    assert_eq!(rm.count().await.expect("count"), 0);
    let docs = [
        order_doc("cust-1", "rest-1", S::Pending, at(1), 1),
        order_doc("cust-1", "rest-2", S::Confirmed, at(2), 2),
        order_doc("cust-2", "rest-1", S::Pending, at(3), 1),
    ];
    assert_eq!(upsert(&rm, &docs).await, 3);
    let by_customer = |c: &str| OrderFilter {
        customer_id: Some(c.to_owned()),
        ..OrderFilter::default()
    };
    // Queries answer during the rebuild too (perhaps without indexes).
    let during = rm
        .query(&query(by_customer("cust-1"), page(0, 10)))
        .await
        .expect("query during the rebuild");
    assert_eq!(ids(&during.content), [docs[1].id, docs[0].id]);
    rm.finish_rebuild().await.expect("finish rebuild");
    rm.finish_rebuild()
        .await
        .expect("finishing twice changes nothing");

    assert_eq!(rm.get(old.id).await.expect("get"), None);
    for (filter, expected) in [
        (by_customer("cust-1"), vec![docs[1].id, docs[0].id]),
        (
            OrderFilter {
                restaurant_id: Some("rest-1".into()),
                ..OrderFilter::default()
            },
            vec![docs[2].id, docs[0].id],
        ),
        (
            OrderFilter {
                status: Some(S::Pending),
                ..OrderFilter::default()
            },
            vec![docs[2].id, docs[0].id],
        ),
        (
            OrderFilter::default(),
            vec![docs[2].id, docs[1].id, docs[0].id],
        ),
    ] {
        let got = rm.query(&query(filter, page(0, 10))).await.expect("query");
        assert_eq!(ids(&got.content), expected);
    }
    // Still version-guarded after the rebuild.
    let mut stale = docs[1].clone();
    stale.version = 1;
    assert_eq!(upsert(&rm, &[stale]).await, 0);
}

pub async fn ping_succeeds(rm: Arc<dyn ReadModel>) {
    rm.ping().await.expect("ping");
}
