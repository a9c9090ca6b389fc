//! Search: every filter narrows, the text is a case-insensitive substring
//! with `%` and `_` taken literally, the time range is `[from, to)`, and
//! keyset pages cover every match once, newest failure first.

use std::sync::Arc;

use super::super::fixtures::{at, consumer_dlq_record, dlq_record};
use super::super::paging::{after, in_listing_order, walk};
use super::{ids, insert, page};
use crate::ports::{
    DlqFilter, DlqRecord, DlqSearch, DlqSource, DlqStatus, DlqStore, NewDlqRecord, SequenceChange,
    Step,
};

/// A record of `order` whose message names `customer`, failed at `t` for
/// `reason`.
fn of_customer(order: &str, customer: &str, reason: &str, t: i64) -> NewDlqRecord {
    let mut r = dlq_record(order, 1, None, at(t));
    r.event_type = "OrderCreated".into();
    r.original_event = format!(
        r#"{{"eventId":"{}","aggregateId":"{order}","data":{{"customerId":"{customer}"}}}}"#,
        r.event_id
    );
    r.failure_reason = reason.to_owned();
    r
}

/// Twelve records of four orders, two customers, both sources, three
/// statuses and assorted reasons, failing at distinct instants.
async fn seeded(dlq: &Arc<dyn DlqStore>) -> Vec<DlqRecord> {
    let mut recs = vec![
        of_customer("o-1", "c-1", "Broker DOWN: timeout", 0),
        of_customer("o-2", "c-2", "message too large", 10),
        of_customer("o-3", "c-1", "100% of quota used", 20),
    ];
    for (i, reason) in ["broker down", "a_b literal", "axb not literal"]
        .into_iter()
        .enumerate()
    {
        let mut r = dlq_record("o-1", 2 + i as u64, None, at(30 + i as i64 * 10));
        r.failure_reason = reason.to_owned();
        recs.push(r);
    }
    for i in 0..3 {
        let mut r = consumer_dlq_record("o-4", at(60 + i * 10));
        r.event_type = "OrderPrepared".into();
        recs.push(r);
    }
    for i in 0..3 {
        recs.push(dlq_record("o-2", 2 + i as u64, None, at(90 + i * 10)));
    }
    assert_eq!(insert(dlq, &recs).await, recs.len());
    for (r, to) in [
        (&recs[1], DlqStatus::Failed),
        (&recs[7], DlqStatus::Skipped),
    ] {
        let change = SequenceChange {
            at: at(1_000),
            guards: vec![],
            steps: vec![Step::SetStatus {
                event_ids: vec![r.event_id.clone()],
                from: DlqStatus::ALL.to_vec(),
                to,
                result: "set".into(),
                failure_class: None,
                count_attempt: false,
            }],
        };
        assert!(dlq.apply(&change).await.expect("apply"));
    }
    let all = dlq.list(None, page(0, 100)).await.expect("list").content;
    assert_eq!(all.len(), recs.len());
    all
}

async fn found(dlq: &Arc<dyn DlqStore>, filter: DlqFilter) -> Vec<DlqRecord> {
    let p = dlq
        .search(&DlqSearch {
            filter,
            page: page(0, 100).into(),
        })
        .await
        .expect("search");
    assert!(!p.more, "the test's matches fit one page");
    assert!(in_listing_order(&p.content), "newest failure first");
    p.content
}

fn expected(all: &[DlqRecord], keep: impl Fn(&DlqRecord) -> bool) -> Vec<&str> {
    all.iter()
        .filter(|r| keep(r))
        .map(|r| r.event_id.as_str())
        .collect()
}

pub async fn search_filters_each_narrow(dlq: Arc<dyn DlqStore>) {
    let all = seeded(&dlq).await;
    assert_eq!(ids(&found(&dlq, DlqFilter::default()).await), ids(&all));
    let cases: Vec<(DlqFilter, Vec<&str>)> = vec![
        (
            DlqFilter {
                event_type: Some("OrderPrepared".into()),
                ..DlqFilter::default()
            },
            expected(&all, |r| r.event_type == "OrderPrepared"),
        ),
        (
            DlqFilter {
                aggregate_id: Some("o-1".into()),
                ..DlqFilter::default()
            },
            expected(&all, |r| r.aggregate_id == "o-1"),
        ),
        (
            DlqFilter {
                customer_id: Some("c-1".into()),
                ..DlqFilter::default()
            },
            expected(&all, |r| r.customer_id.as_deref() == Some("c-1")),
        ),
        (
            DlqFilter {
                orders: vec!["o-2".into(), "o-4".into()],
                ..DlqFilter::default()
            },
            expected(&all, |r| r.aggregate_id == "o-2" || r.aggregate_id == "o-4"),
        ),
        (
            DlqFilter {
                status: Some(DlqStatus::Failed),
                ..DlqFilter::default()
            },
            expected(&all, |r| r.status == DlqStatus::Failed),
        ),
        (
            DlqFilter {
                source: Some(DlqSource::Consumer),
                ..DlqFilter::default()
            },
            expected(&all, |r| r.source == DlqSource::Consumer),
        ),
        (
            DlqFilter {
                aggregate_id: Some("o-4".into()),
                status: Some(DlqStatus::Skipped),
                event_type: Some("OrderPrepared".into()),
                ..DlqFilter::default()
            },
            expected(&all, |r| {
                r.aggregate_id == "o-4" && r.status == DlqStatus::Skipped
            }),
        ),
        (
            DlqFilter {
                customer_id: Some("nobody".into()),
                ..DlqFilter::default()
            },
            vec![],
        ),
    ];
    for (filter, want) in cases {
        let got = found(&dlq, filter.clone()).await;
        assert!(
            got.len() < all.len(),
            "{filter:?} narrows the search (seed data)"
        );
        assert_eq!(ids(&got), want, "{filter:?}");
    }
}

pub async fn search_text_is_case_insensitive_with_literal_wildcards(dlq: Arc<dyn DlqStore>) {
    let all = seeded(&dlq).await;
    let text = |t: &str| DlqFilter {
        text: Some(t.to_owned()),
        ..DlqFilter::default()
    };
    let reason_has = |needle: &'static str| {
        expected(&all, move |r| {
            r.failure_reason.to_lowercase().contains(needle)
        })
    };
    let down = found(&dlq, text("bRoKeR dOwN")).await;
    assert_eq!(ids(&down), reason_has("broker down"));
    assert!(
        down.iter()
            .any(|r| r.failure_reason == "Broker DOWN: timeout")
            && down.iter().any(|r| r.failure_reason == "broker down"),
        "both cases of the reason"
    );
    let underscore = found(&dlq, text("a_b")).await;
    assert_eq!(ids(&underscore), reason_has("a_b"), "_ is not a wildcard");
    assert_eq!(underscore.len(), 1);
    let percent = found(&dlq, text("100%")).await;
    assert_eq!(ids(&percent), reason_has("100%"), "% is not a wildcard");
    assert_eq!(percent.len(), 1);
    assert!(
        found(&dlq, text("%")).await.len() == 1,
        "a lone % is literal"
    );
    let narrowed = found(
        &dlq,
        DlqFilter {
            aggregate_id: Some("o-1".into()),
            ..text("DOWN")
        },
    )
    .await;
    assert_eq!(
        ids(&narrowed),
        expected(&all, |r| {
            r.aggregate_id == "o-1" && r.failure_reason.to_lowercase().contains("down")
        })
    );
}

pub async fn search_time_range_includes_from_and_excludes_to(dlq: Arc<dyn DlqStore>) {
    let all = seeded(&dlq).await;
    let got = found(
        &dlq,
        DlqFilter {
            from: Some(at(20)),
            to: Some(at(60)),
            ..DlqFilter::default()
        },
    )
    .await;
    assert_eq!(
        ids(&got),
        expected(&all, |r| r.failure_time >= at(20)
            && r.failure_time < at(60))
    );
    assert_eq!(got.len(), 4, "20, 30, 40 and 50; not 60");
    let from_only = found(
        &dlq,
        DlqFilter {
            from: Some(at(110)),
            ..DlqFilter::default()
        },
    )
    .await;
    assert_eq!(from_only.len(), 1);
    let empty = found(
        &dlq,
        DlqFilter {
            from: Some(at(50)),
            to: Some(at(50)),
            ..DlqFilter::default()
        },
    )
    .await;
    assert!(empty.is_empty());
}

pub async fn search_keyset_pages_cover_every_match_once_in_order(dlq: Arc<dyn DlqStore>) {
    let all = seeded(&dlq).await;
    // Records sharing a failure time, so ties are broken by id.
    let twins: Vec<NewDlqRecord> = (0..5)
        .map(|i| dlq_record(&format!("t-{i}"), 1, None, at(45)))
        .collect();
    assert_eq!(insert(&dlq, &twins).await, 5);
    let filters = [
        (DlqFilter::default(), all.len() as u64 + 5),
        (
            DlqFilter {
                event_type: Some("OrderConfirmed".into()),
                ..DlqFilter::default()
            },
            0,
        ),
        (
            DlqFilter {
                text: Some("BROKER".into()),
                ..DlqFilter::default()
            },
            0,
        ),
    ];
    for (filter, total) in filters {
        let everything = found(&dlq, filter.clone()).await;
        let total = if filter.text.is_some() {
            // A text search is not counted.
            0
        } else if total == 0 {
            everything.len() as u64
        } else {
            total
        };
        let first = dlq
            .search(&DlqSearch {
                filter: filter.clone(),
                page: page(0, 1).into(),
            })
            .await
            .expect("search");
        assert_eq!(first.total_elements, total, "{filter:?}");
        for size in [1, 2, 3, 50] {
            let walked = walk(size, total, 40, |req| {
                let dlq = dlq.clone();
                let filter = filter.clone();
                async move {
                    dlq.search(&DlqSearch { filter, page: req })
                        .await
                        .expect("page")
                }
            })
            .await;
            assert_eq!(ids(&walked), ids(&everything), "{filter:?}, size {size}");
        }
    }
    // Pages by number and past the last record.
    let last = all.last().expect("a record");
    let p = dlq
        .search(&DlqSearch {
            filter: DlqFilter::default(),
            page: after(Some(crate::ports::Keyed::cursor(last)), 5),
        })
        .await
        .expect("page");
    assert!(p.content.is_empty() && p.next().is_none());
}
