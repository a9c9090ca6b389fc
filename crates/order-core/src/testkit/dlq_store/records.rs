//! The record-keeping half of the contract (dedup, round trip, listing,
//! stats, claims, failure classes), apart from the sequencing cases so a
//! failure points at storage basics or at ordering at a glance.

use std::sync::Arc;

use super::{claim_of, get, ids, insert, mark_failed, page, reset, resolve_unguarded};
use crate::app::dlq::sequencing::{self, Changed};
use crate::ports::{DlqStatus, DlqStore, FailureClass, ImportMark, NewDlqRecord};
use crate::testkit::fixtures::{at, consumer_dlq_record, dlq_record};

pub async fn insert_dedupes_by_event_id(dlq: Arc<dyn DlqStore>) {
    let a = dlq_record("agg-1", 1, None, at(0));
    let b = dlq_record("agg-2", 1, None, at(1));
    let c = dlq_record("agg-3", 1, None, at(2));
    assert_eq!(insert(&dlq, &[a.clone(), b.clone()]).await, 2);
    let mut b_again = b.clone();
    b_again.failure_reason = "seen twice".into();
    assert_eq!(
        insert(&dlq, &[b_again, c.clone()]).await,
        1,
        "only the new record counts"
    );
    assert_eq!(
        get(&dlq, &b.event_id).await.failure_reason,
        b.failure_reason
    );
    assert_eq!(insert(&dlq, &[a.clone(), a.clone()]).await, 0);
    assert_eq!(insert(&dlq, &[]).await, 0);
    let d = dlq_record("agg-4", 1, None, at(3));
    assert_eq!(
        insert(&dlq, &[d.clone(), d.clone()]).await,
        1,
        "a duplicate inside one call is inserted once"
    );
    assert_eq!(dlq.stats().await.expect("stats").total_count, 4);
}

pub async fn get_round_trips_every_field(dlq: Arc<dyn DlqStore>) {
    let head = dlq_record("agg-1", 7, None, at(0));
    let mut behind = dlq_record("agg-1", 8, Some(&head.event_id), at(1));
    behind.topic = "custom-topic".into();
    let mut consumer = consumer_dlq_record("agg-2", at(2));
    consumer.version = None;
    consumer.event_type = "MALFORMED".into();
    consumer.original_event = "not json at all: ünïcode ✓".into();
    consumer.consumer_group = Some("order-projector".into());
    let mut imported = consumer_dlq_record("agg-3", at(3));
    imported.original_event =
        r#"{"eventId":"e","data":{"orderId":"o","customerId":"customer-7"}}"#.into();
    imported.imported = Some(ImportMark {
        at: at(4),
        by: "ops-admin".into(),
    });
    insert(
        &dlq,
        &[
            head.clone(),
            behind.clone(),
            consumer.clone(),
            imported.clone(),
        ],
    )
    .await;

    for new in [&head, &behind, &consumer, &imported] {
        let rec = get(&dlq, &new.event_id).await;
        assert!(rec.id > 0);
        assert_eq!(rec.event_id, new.event_id);
        assert_eq!(rec.aggregate_id, new.aggregate_id);
        assert_eq!(rec.event_type, new.event_type);
        assert_eq!(rec.version, new.version);
        assert_eq!(rec.original_event, new.original_event);
        assert_eq!(rec.failure_reason, new.failure_reason);
        assert_eq!(rec.failure_time, new.failure_time, "microseconds kept");
        assert_eq!(rec.status, DlqStatus::Pending);
        assert_eq!(rec.replay_attempt_time, None);
        assert_eq!(rec.replay_result, None);
        assert_eq!(rec.replay_attempts, 0);
        assert_eq!(rec.source, new.source);
        assert_eq!(rec.blocked_by, new.blocked_by);
        assert_eq!(rec.topic, new.topic);
        assert_eq!(rec.origin, new.origin);
        assert_eq!(rec.consumer_group, new.consumer_group);
        assert_eq!(rec.imported_at, new.imported.as_ref().map(|m| m.at));
        assert_eq!(rec.imported_by, new.imported.as_ref().map(|m| m.by.clone()));
    }
    // The customer a message names is kept beside it.
    assert_eq!(
        get(&dlq, &imported.event_id).await.customer_id.as_deref(),
        Some("customer-7")
    );
    assert_eq!(get(&dlq, &consumer.event_id).await.customer_id, None);
    assert_eq!(dlq.get("no-such-event").await.expect("get"), None);
}

pub async fn list_is_newest_first_with_paging(dlq: Arc<dyn DlqStore>) {
    // Inserted out of time order: listing is by failure time, not insertion.
    let recs: Vec<NewDlqRecord> = [3, 0, 4, 1, 2]
        .into_iter()
        .map(|t| dlq_record(&format!("agg-{t}"), 1, None, at(t * 1_000)))
        .collect();
    insert(&dlq, &recs).await;
    let by_time = |t: i64| {
        recs.iter()
            .find(|r| r.failure_time == at(t * 1_000))
            .map(|r| r.event_id.as_str())
            .expect("record")
    };

    let p0 = dlq.list(None, page(0, 2)).await.expect("list");
    assert_eq!(ids(&p0.content), [by_time(4), by_time(3)]);
    assert_eq!(p0.total_elements, 5);
    assert_eq!(p0.total_pages, 3);
    assert_eq!((p0.page, p0.size), (0, 2));
    let p1 = dlq.list(None, page(1, 2)).await.expect("list");
    assert_eq!(ids(&p1.content), [by_time(2), by_time(1)]);
    let p2 = dlq.list(None, page(2, 2)).await.expect("list");
    assert_eq!(ids(&p2.content), [by_time(0)]);
    let p9 = dlq.list(None, page(9, 2)).await.expect("list");
    assert!(p9.content.is_empty());
    assert_eq!(p9.total_elements, 5);
    let all = dlq.list(None, page(0, 100)).await.expect("list");
    assert_eq!(all.content.len(), 5);
    assert_eq!(all.total_pages, 1);
    assert_eq!(all.content[0], get(&dlq, by_time(4)).await);
}

pub async fn list_filters_by_status(dlq: Arc<dyn DlqStore>) {
    let recs: Vec<NewDlqRecord> = (0..5)
        .map(|t| dlq_record(&format!("agg-{t}"), 1, None, at(t)))
        .collect();
    insert(&dlq, &recs).await;
    sequencing::mark_replayed(
        dlq.as_ref(),
        &[recs[1].event_id.clone(), recs[3].event_id.clone()],
        at(100),
        "ok",
    )
    .await
    .expect("mark_replayed");
    mark_failed(
        &dlq,
        &recs[4].event_id,
        &recs[4].event_id,
        at(100),
        "still down",
    )
    .await
    .expect("mark_failed");

    let replayed = dlq
        .list(Some(DlqStatus::Replayed), page(0, 10))
        .await
        .expect("list");
    assert_eq!(
        ids(&replayed.content),
        [&recs[3].event_id, &recs[1].event_id]
    );
    assert_eq!(replayed.total_elements, 2);
    let pending = dlq
        .list(Some(DlqStatus::Pending), page(0, 1))
        .await
        .expect("list");
    assert_eq!(ids(&pending.content), [&recs[2].event_id]);
    assert_eq!(pending.total_elements, 2);
    assert_eq!(pending.total_pages, 2);
    let failed = dlq
        .list(Some(DlqStatus::Failed), page(0, 10))
        .await
        .expect("list");
    assert_eq!(ids(&failed.content), [&recs[4].event_id]);
    let skipped = dlq
        .list(Some(DlqStatus::Skipped), page(0, 10))
        .await
        .expect("list");
    assert!(skipped.content.is_empty());
    assert_eq!(skipped.total_elements, 0);
    assert_eq!(skipped.total_pages, 0);
}

pub async fn stats_count_per_status(dlq: Arc<dyn DlqStore>) {
    let empty = dlq.stats().await.expect("stats");
    assert_eq!(empty.total_count, 0);
    assert_eq!(empty.oldest_pending_failure_time, None);

    let oldest = dlq_record("agg-0", 1, None, at(-5_000));
    let replayed = dlq_record("agg-1", 1, None, at(-9_000));
    let failed = dlq_record("agg-2", 1, None, at(-4_000));
    let skipped = dlq_record("agg-3", 1, None, at(-10_000));
    let head = dlq_record("agg-4", 1, None, at(0));
    let blocked1 = dlq_record("agg-4", 2, Some(&head.event_id), at(1));
    let blocked2 = dlq_record("agg-4", 3, Some(&head.event_id), at(2));
    insert(
        &dlq,
        &[
            oldest.clone(),
            replayed.clone(),
            failed.clone(),
            skipped.clone(),
            head,
            blocked1,
            blocked2,
        ],
    )
    .await;
    sequencing::mark_replayed(
        dlq.as_ref(),
        std::slice::from_ref(&replayed.event_id),
        at(10),
        "ok",
    )
    .await
    .expect("mark_replayed");
    mark_failed(&dlq, &failed.event_id, &failed.event_id, at(10), "down")
        .await
        .expect("mark_failed");
    let t = sequencing::skip(
        dlq.as_ref(),
        &skipped.event_id,
        "skipped by operator",
        at(10),
    )
    .await
    .expect("skip");
    assert!(matches!(t, Changed::Done(_)), "{t:?}");

    let stats = dlq.stats().await.expect("stats");
    assert_eq!(stats.pending_count, 4);
    assert_eq!(stats.replayed_count, 1);
    assert_eq!(stats.failed_count, 1);
    assert_eq!(stats.skipped_count, 1);
    assert_eq!(stats.total_count, 7);
    assert_eq!(stats.blocked_count, 2);
    assert_eq!(
        stats.oldest_pending_failure_time,
        Some(oldest.failure_time),
        "oldest unresolved, ignoring resolved records"
    );
}

pub async fn a_replay_claim_is_exclusive_until_released_or_expired(dlq: Arc<dyn DlqStore>) {
    let rec = dlq_record("agg-1", 1, None, at(0));
    insert(&dlq, std::slice::from_ref(&rec)).await;
    let id = rec.event_id.as_str();
    let claim = |who: &'static str, now: i64, until: i64| {
        let dlq = dlq.clone();
        let id = id.to_owned();
        async move {
            dlq.claim_replay(claim_of(&id, who, now, until))
                .await
                .expect("claim_replay")
        }
    };
    assert!(claim("instance-a", 1, 31).await, "a free record is claimed");
    assert!(
        !claim("instance-b", 2, 32).await,
        "a live claim excludes others"
    );
    assert!(claim("instance-a", 3, 33).await, "the holder may renew");
    assert!(
        claim("instance-b", 40, 70).await,
        "an expired claim can be taken"
    );

    dlq.release_replay(id, "instance-a").await.expect("release");
    assert!(
        !claim("instance-c", 41, 71).await,
        "releasing another's claim does nothing"
    );
    dlq.release_replay(id, "instance-b").await.expect("release");
    assert!(
        claim("instance-c", 42, 72).await,
        "a released record is free again"
    );

    // Only unresolved records can be claimed.
    sequencing::mark_replayed(
        dlq.as_ref(),
        std::slice::from_ref(&rec.event_id),
        at(50),
        "ok",
    )
    .await
    .expect("mark_replayed");
    dlq.release_replay(id, "instance-c").await.expect("release");
    assert!(
        !claim("instance-d", 80, 90).await,
        "a REPLAYED record is not claimable"
    );
    assert!(
        !dlq.claim_replay(claim_of("no-such-event", "x", 0, 1))
            .await
            .expect("claim_replay"),
        "unknown records cannot be claimed"
    );
}

pub async fn failure_classes_are_stored(dlq: Arc<dyn DlqStore>) {
    let permanent = NewDlqRecord {
        failure_class: Some(FailureClass::Permanent),
        ..dlq_record("agg-1", 1, None, at(0))
    };
    let held = NewDlqRecord {
        failure_class: None,
        ..dlq_record("agg-1", 2, Some(&permanent.event_id), at(0))
    };
    insert(&dlq, &[permanent.clone(), held.clone()]).await;
    assert_eq!(
        get(&dlq, &permanent.event_id).await.failure_class,
        Some(FailureClass::Permanent)
    );
    assert_eq!(get(&dlq, &held.event_id).await.failure_class, None);

    let change = sequencing::failed_change(
        &held.event_id,
        &permanent.event_id,
        at(3),
        "replay failed",
        FailureClass::Permanent,
    );
    assert!(dlq.apply(&change).await.expect("apply"));
    let failed = get(&dlq, &held.event_id).await;
    assert_eq!(failed.status, DlqStatus::Failed);
    assert_eq!(failed.replay_failure_class, Some(FailureClass::Permanent));
    assert_eq!(failed.failure_class, None, "the park's class is kept");

    let Changed::Done(reset) = reset(&dlq, &held.event_id, "reset", at(4))
        .await
        .expect("reset")
    else {
        panic!("a FAILED record can be reset");
    };
    assert_eq!(reset.replay_failure_class, None, "PENDING again");
}

/// Retention: only records resolved before the cut-off go, at most `limit`
/// per call, never an unresolved one nor one something is held behind.
pub async fn purge_deletes_only_records_resolved_before_the_cut_off(dlq: Arc<dyn DlqStore>) {
    let old = dlq_record("agg-1", 1, None, at(0));
    let recent = dlq_record("agg-2", 1, None, at(0));
    let pending = dlq_record("agg-3", 1, None, at(0));
    let skipped = dlq_record("agg-4", 1, None, at(0));
    insert(
        &dlq,
        &[
            old.clone(),
            recent.clone(),
            pending.clone(),
            skipped.clone(),
        ],
    )
    .await;
    let replay = |id: &str, t: i64| {
        let dlq = dlq.clone();
        let id = id.to_owned();
        async move {
            sequencing::mark_replayed(dlq.as_ref(), &[id], at(t), "replayed")
                .await
                .expect("mark_replayed")
        }
    };
    replay(&old.event_id, 10).await;
    replay(&recent.event_id, 100).await;
    sequencing::skip(dlq.as_ref(), &skipped.event_id, "dup", at(20))
        .await
        .expect("skip");
    // A resolved head something unresolved is still held behind (only a
    // broken invariant leaves one): kept.
    let head = dlq_record("agg-5", 1, None, at(0));
    let held = dlq_record("agg-5", 2, Some(&head.event_id), at(1));
    insert(&dlq, &[head.clone(), held.clone()]).await;
    resolve_unguarded(&dlq, &head.event_id, 5).await;

    assert_eq!(
        dlq.purge_resolved(at(50), 1).await.expect("purge"),
        1,
        "the limit"
    );
    assert_eq!(dlq.purge_resolved(at(50), 10).await.expect("purge"), 1);
    assert_eq!(dlq.purge_resolved(at(50), 10).await.expect("purge"), 0);
    let left: Vec<String> = dlq
        .list(None, page(0, 100))
        .await
        .expect("list")
        .content
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    for gone in [&old.event_id, &skipped.event_id] {
        assert!(!left.contains(gone), "{gone} resolved before the cut-off");
    }
    for kept in [
        &recent.event_id,
        &pending.event_id,
        &head.event_id,
        &held.event_id,
    ] {
        assert!(left.contains(kept), "{kept} is kept");
    }
}
