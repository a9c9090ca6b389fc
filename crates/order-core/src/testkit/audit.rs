//! Contract of [`AuditLog`](crate::ports::AuditLog): entries round-trip,
//! list newest first with paging, and every filter narrows (time range
//! `from` inclusive, `to` exclusive).

use std::sync::Arc;

use serde_json::json;

use super::fixtures::at;
use crate::ports::{
    AuditAction, AuditEntry, AuditFilter, AuditLog, AuditQuery, NewAuditEntry, PageRequest,
};

fn entry(principal: &str, action: AuditAction, target: Option<&str>, t: i64) -> NewAuditEntry {
    NewAuditEntry {
        principal: principal.to_owned(),
        role: "operator".to_owned(),
        action,
        target: target.map(str::to_owned),
        parameters: json!({ "t": t }),
        result: "OK".to_owned(),
        at: at(t),
    }
}

fn page(page: u32, size: u32) -> PageRequest {
    PageRequest { page, size }
}

fn times(entries: &[AuditEntry]) -> Vec<serde_json::Value> {
    entries
        .iter()
        .map(|e| e.entry.parameters["t"].clone())
        .collect()
}

async fn append(log: &Arc<dyn AuditLog>, e: &NewAuditEntry) -> AuditEntry {
    log.append(e).await.expect("append")
}

fn query(filter: &AuditFilter, page: PageRequest) -> AuditQuery {
    let filter = filter.clone();
    AuditQuery {
        filter,
        page: page.into(),
    }
}

async fn list(log: &Arc<dyn AuditLog>, filter: &AuditFilter, p: PageRequest) -> Vec<AuditEntry> {
    log.list(&query(filter, p)).await.expect("list").content
}

pub async fn empty_log_lists_nothing(log: Arc<dyn AuditLog>) {
    let p = log
        .list(&query(&AuditFilter::default(), page(0, 20)))
        .await
        .expect("list");
    assert!(p.content.is_empty());
    assert_eq!((p.total_elements, p.total_pages), (0, 0));
}

pub async fn append_round_trips_every_field(log: Arc<dyn AuditLog>) {
    let new = NewAuditEntry {
        principal: "ci-key ✓".to_owned(),
        role: "admin".to_owned(),
        action: AuditAction::DlqSkip,
        target: Some("evt-1".to_owned()),
        parameters: json!({ "reason": "poison, ünïcode", "nested": { "n": 3, "list": [1, null] } }),
        result: "SKIPPED".to_owned(),
        at: at(42),
    };
    let stored = append(&log, &new).await;
    assert!(stored.id > 0);
    let second = append(&log, &entry("other", AuditAction::TestBusUp, None, 43)).await;
    assert!(second.id > stored.id, "ids increase");
    assert_eq!(second.entry.target, None);

    let all = list(&log, &AuditFilter::default(), page(0, 10)).await;
    assert_eq!(all.len(), 2);
    let read = all
        .iter()
        .find(|e| e.id == stored.id)
        .expect("stored entry");
    assert_eq!(read, &stored, "append returns what list reads back");
    assert_eq!(read.entry, new, "every field kept, microseconds included");
}

pub async fn list_is_newest_first_with_paging(log: Arc<dyn AuditLog>) {
    // Appended out of time order: listing is by time, then id.
    for t in [3, 0, 4, 1, 2] {
        append(&log, &entry("p", AuditAction::DlqReplay, None, t * 1_000)).await;
    }
    // Two at the same instant: the later append comes first.
    let a = append(&log, &entry("p", AuditAction::DlqReset, None, 5_000)).await;
    let b = append(&log, &entry("p", AuditAction::DlqReset, None, 5_000)).await;

    let all = AuditFilter::default();
    let p0 = log.list(&query(&all, page(0, 3))).await.expect("list");
    assert_eq!(
        p0.content.iter().map(|e| e.id).collect::<Vec<_>>()[..2],
        [b.id, a.id]
    );
    assert_eq!(times(&p0.content)[2], json!(4_000));
    assert_eq!((p0.total_elements, p0.total_pages), (7, 3));
    assert_eq!(
        times(&list(&log, &all, page(1, 3)).await),
        [json!(3_000), json!(2_000), json!(1_000)]
    );
    assert_eq!(times(&list(&log, &all, page(2, 3)).await), [json!(0)]);
    let beyond = log.list(&query(&all, page(9, 3))).await.expect("list");
    assert!(beyond.content.is_empty());
    assert_eq!(beyond.total_elements, 7);
}

pub async fn list_filters_by_principal_action_and_target(log: Arc<dyn AuditLog>) {
    append(&log, &entry("alice", AuditAction::DlqReplay, Some("e1"), 1)).await;
    append(&log, &entry("alice", AuditAction::DlqSkip, Some("e2"), 2)).await;
    append(&log, &entry("bob", AuditAction::DlqReplay, Some("e2"), 3)).await;
    append(&log, &entry("bob", AuditAction::TestBusDown, None, 4)).await;

    let by =
        |principal: Option<&str>, action: Option<AuditAction>, target: Option<&str>| AuditFilter {
            principal: principal.map(str::to_owned),
            action,
            target: target.map(str::to_owned),
            ..AuditFilter::default()
        };
    let p = log
        .list(&query(&by(Some("alice"), None, None), page(0, 10)))
        .await
        .expect("list");
    assert_eq!(times(&p.content), [json!(2), json!(1)]);
    assert_eq!(p.total_elements, 2);
    assert_eq!(
        times(
            &list(
                &log,
                &by(None, Some(AuditAction::DlqReplay), None),
                page(0, 10)
            )
            .await
        ),
        [json!(3), json!(1)]
    );
    assert_eq!(
        times(&list(&log, &by(None, None, Some("e2")), page(0, 10)).await),
        [json!(3), json!(2)]
    );
    let both = log
        .list(&query(
            &by(Some("bob"), Some(AuditAction::DlqReplay), Some("e2")),
            page(0, 10),
        ))
        .await
        .expect("list");
    assert_eq!(times(&both.content), [json!(3)]);
    assert_eq!(both.total_elements, 1, "totals count only matches");
    assert!(list(&log, &by(Some("carol"), None, None), page(0, 10))
        .await
        .is_empty());
    assert!(
        list(&log, &by(Some("ALICE"), None, None), page(0, 10))
            .await
            .is_empty(),
        "principal names are exact"
    );
}

pub async fn list_filters_by_time_range(log: Arc<dyn AuditLog>) {
    for t in 0..5 {
        append(&log, &entry("p", AuditAction::DlqReplay, None, t * 10)).await;
    }
    let range = |from: Option<i64>, to: Option<i64>| AuditFilter {
        from: from.map(at),
        to: to.map(at),
        ..AuditFilter::default()
    };
    assert_eq!(
        times(&list(&log, &range(Some(10), Some(30)), page(0, 10)).await),
        [json!(20), json!(10)],
        "from inclusive, to exclusive"
    );
    assert_eq!(
        times(&list(&log, &range(Some(31), None), page(0, 10)).await),
        [json!(40)]
    );
    assert_eq!(
        times(&list(&log, &range(None, Some(1)), page(0, 10)).await),
        [json!(0)]
    );
    let p = log
        .list(&query(&range(Some(10), Some(41)), page(1, 2)))
        .await
        .expect("list");
    assert_eq!(times(&p.content), [json!(20), json!(10)]);
    assert_eq!((p.total_elements, p.total_pages), (4, 2));
    assert!(list(&log, &range(Some(30), Some(30)), page(0, 10))
        .await
        .is_empty());
}

pub async fn keyset_pages_cover_every_entry_once_in_order(log: Arc<dyn AuditLog>) {
    // Two entries at each instant (the id breaks the tie), appended out of
    // time order, two principals.
    for t in [3, 0, 4, 1, 2, 3, 0, 4, 1, 2] {
        let who = if t % 2 == 0 { "alice" } else { "bob" };
        append(&log, &entry(who, AuditAction::DlqReplay, None, t * 1_000)).await;
    }
    for (filter, total) in [
        (AuditFilter::default(), 10),
        (
            AuditFilter {
                principal: Some("alice".to_owned()),
                ..AuditFilter::default()
            },
            6,
        ),
    ] {
        let expected = list(&log, &filter, page(0, 100)).await;
        assert!(super::paging::in_listing_order(&expected));
        for size in [1, 3, 10] {
            let walked = super::paging::walk(size, total, 20, |req| {
                let log = log.clone();
                let q = AuditQuery {
                    filter: filter.clone(),
                    page: req,
                };
                async move { log.list(&q).await.expect("page") }
            })
            .await;
            assert_eq!(walked, expected, "{filter:?}, size {size}");
        }
    }
}
