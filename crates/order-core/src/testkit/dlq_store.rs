//! Contract of [`DlqStore`](crate::ports::DlqStore): deduplicated records,
//! listing and stats, sequence heads and the conditional status changes the
//! replay flow relies on.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::fixtures::{at, consumer_dlq_record, dlq_record};
use crate::app::dlq::sequencing::{self, Changed, SkipDone};
use crate::ports::{
    DlqRecord, DlqSource, DlqStatus, DlqStore, FailureClass, Guard, NewDlqRecord, PageRequest,
    SequenceChange, Step, StoreError,
};

async fn get(dlq: &Arc<dyn DlqStore>, event_id: &str) -> DlqRecord {
    dlq.get(event_id)
        .await
        .expect("get")
        .unwrap_or_else(|| panic!("no DLQ record {event_id}"))
}

async fn insert(dlq: &Arc<dyn DlqStore>, records: &[NewDlqRecord]) -> usize {
    sequencing::record(dlq.as_ref(), records)
        .await
        .expect("insert")
}

async fn mark_failed(
    dlq: &Arc<dyn DlqStore>,
    event_id: &str,
    previous_head: &str,
    t: DateTime<Utc>,
    result: &str,
) -> Result<bool, StoreError> {
    let change =
        sequencing::failed_change(event_id, previous_head, t, result, FailureClass::Retryable);
    dlq.apply(&change).await
}

async fn reset(
    dlq: &Arc<dyn DlqStore>,
    event_id: &str,
    result: &str,
    t: DateTime<Utc>,
) -> Result<Changed<DlqRecord>, StoreError> {
    sequencing::reset(dlq.as_ref(), event_id, result, t).await
}

fn page(page: u32, size: u32) -> PageRequest {
    PageRequest { page, size }
}

fn ids(records: &[DlqRecord]) -> Vec<&str> {
    records.iter().map(|r| r.event_id.as_str()).collect()
}

/// A head at version 1 and three records (versions 2..4) blocked behind it.
async fn sequence(dlq: &Arc<dyn DlqStore>, aggregate: &str) -> Vec<NewDlqRecord> {
    let head = dlq_record(aggregate, 1, None, at(0));
    let mut recs = vec![head.clone()];
    for v in 2..=4 {
        recs.push(dlq_record(aggregate, v, Some(&head.event_id), at(v as i64)));
    }
    assert_eq!(insert(dlq, &recs).await, 4);
    recs
}

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
    insert(&dlq, &[head.clone(), behind.clone(), consumer.clone()]).await;

    for new in [&head, &behind, &consumer] {
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
    }
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

pub async fn unresolved_heads_are_the_earliest_unresolved_publish_records(dlq: Arc<dyn DlqStore>) {
    let a = sequence(&dlq, "agg-a").await;
    let consumer = consumer_dlq_record("agg-b", at(0));
    let replayed = dlq_record("agg-c", 1, None, at(0));
    let failed = dlq_record("agg-d", 1, None, at(0));
    let not_asked = dlq_record("agg-e", 1, None, at(0));
    insert(
        &dlq,
        &[consumer, replayed.clone(), failed.clone(), not_asked],
    )
    .await;
    sequencing::mark_replayed(
        dlq.as_ref(),
        std::slice::from_ref(&replayed.event_id),
        at(1),
        "ok",
    )
    .await
    .expect("mark_replayed");
    mark_failed(&dlq, &failed.event_id, &failed.event_id, at(1), "down")
        .await
        .expect("mark_failed");

    let asked: Vec<String> = ["agg-a", "agg-b", "agg-c", "agg-d", "agg-z"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let heads = sequencing::unresolved_heads(dlq.as_ref(), &asked)
        .await
        .expect("heads");
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert_eq!(heads.get("agg-a"), Some(&a[0].event_id));
    assert_eq!(
        heads.get("agg-d"),
        Some(&failed.event_id),
        "FAILED heads still hold"
    );
    assert!(sequencing::unresolved_heads(dlq.as_ref(), &[])
        .await
        .expect("heads")
        .is_empty());

    // The head was replayed but a record behind it is still unresolved (a
    // replay elsewhere missed it): that record now holds the order back.
    sequencing::mark_replayed(
        dlq.as_ref(),
        std::slice::from_ref(&a[0].event_id),
        at(2),
        "ok",
    )
    .await
    .expect("mark_replayed");
    let heads = sequencing::unresolved_heads(dlq.as_ref(), &["agg-a".to_owned()])
        .await
        .expect("heads");
    assert_eq!(
        heads.get("agg-a"),
        Some(&a[1].event_id),
        "lowest unresolved version"
    );
}

pub async fn blocked_behind_in_version_order(dlq: Arc<dyn DlqStore>) {
    let head = dlq_record("agg-1", 1, None, at(0));
    // Inserted out of version order.
    let v4 = dlq_record("agg-1", 4, Some(&head.event_id), at(1));
    let v2 = dlq_record("agg-1", 2, Some(&head.event_id), at(2));
    let v3 = dlq_record("agg-1", 3, Some(&head.event_id), at(3));
    let v5_done = dlq_record("agg-1", 5, Some(&head.event_id), at(4));
    let elsewhere_head = dlq_record("agg-2", 1, None, at(0));
    let elsewhere = dlq_record("agg-2", 2, Some(&elsewhere_head.event_id), at(0));
    insert(
        &dlq,
        &[
            head.clone(),
            v4.clone(),
            v2.clone(),
            v3.clone(),
            v5_done.clone(),
            elsewhere_head,
            elsewhere,
        ],
    )
    .await;
    sequencing::mark_replayed(
        dlq.as_ref(),
        std::slice::from_ref(&v5_done.event_id),
        at(9),
        "ok",
    )
    .await
    .expect("mark_replayed");
    let behind = dlq
        .blocked_behind(&head.event_id)
        .await
        .expect("blocked_behind");
    assert_eq!(
        ids(&behind),
        [&v2.event_id, &v3.event_id, &v4.event_id],
        "unresolved records behind the head, in version order"
    );
    assert_eq!(behind[0], get(&dlq, &v2.event_id).await);
    assert!(dlq
        .blocked_behind(&v2.event_id)
        .await
        .expect("b")
        .is_empty());
    assert!(dlq.blocked_behind("unknown").await.expect("b").is_empty());
}

pub async fn mark_replayed_changes_only_unresolved(dlq: Arc<dyn DlqStore>) {
    let pending = dlq_record("agg-1", 1, None, at(0));
    let failed = dlq_record("agg-2", 1, None, at(0));
    let skipped = dlq_record("agg-3", 1, None, at(0));
    insert(&dlq, &[pending.clone(), failed.clone(), skipped.clone()]).await;
    mark_failed(&dlq, &failed.event_id, &failed.event_id, at(1), "down")
        .await
        .expect("mark_failed");
    sequencing::skip(dlq.as_ref(), &skipped.event_id, "skip", at(1))
        .await
        .expect("skip");

    let all = vec![
        pending.event_id.clone(),
        failed.event_id.clone(),
        skipped.event_id.clone(),
        "unknown-event".to_owned(),
    ];
    sequencing::mark_replayed(dlq.as_ref(), &all, at(2), "replayed by operator")
        .await
        .expect("mark_replayed");
    let p = get(&dlq, &pending.event_id).await;
    assert_eq!(p.status, DlqStatus::Replayed);
    assert_eq!(p.replay_attempts, 1);
    assert_eq!(p.replay_attempt_time, Some(at(2)));
    assert_eq!(p.replay_result.as_deref(), Some("replayed by operator"));
    let f = get(&dlq, &failed.event_id).await;
    assert_eq!(f.status, DlqStatus::Replayed);
    assert_eq!(f.replay_attempts, 2, "the failed attempt counted too");
    let s = get(&dlq, &skipped.event_id).await;
    assert_eq!(
        s.status,
        DlqStatus::Skipped,
        "resolved records do not change"
    );
    assert_eq!(s.replay_attempts, 0);

    // Replaying again changes nothing.
    sequencing::mark_replayed(dlq.as_ref(), &all, at(3), "again")
        .await
        .expect("mark_replayed");
    let p2 = get(&dlq, &pending.event_id).await;
    assert_eq!(p2, p);
    sequencing::mark_replayed(dlq.as_ref(), &[], at(3), "nothing")
        .await
        .expect("empty");
}

pub async fn mark_failed_makes_a_new_head(dlq: Arc<dyn DlqStore>) {
    let seq = sequence(&dlq, "agg-1").await;
    let (head, b2, b3, b4) = (&seq[0], &seq[1], &seq[2], &seq[3]);
    // The replay flow: head and v2 go out, v3 fails.
    sequencing::mark_replayed(
        dlq.as_ref(),
        &[head.event_id.clone(), b2.event_id.clone()],
        at(10),
        "replayed",
    )
    .await
    .expect("mark_replayed");
    mark_failed(
        &dlq,
        &b3.event_id,
        &head.event_id,
        at(11),
        "replay failed: down",
    )
    .await
    .expect("mark_failed");

    let f = get(&dlq, &b3.event_id).await;
    assert_eq!(f.status, DlqStatus::Failed);
    assert_eq!(f.blocked_by, None, "the failed record heads its sequence");
    assert_eq!(f.replay_attempts, 1);
    assert_eq!(f.replay_attempt_time, Some(at(11)));
    assert_eq!(f.replay_result.as_deref(), Some("replay failed: down"));
    let w = get(&dlq, &b4.event_id).await;
    assert_eq!(
        w.blocked_by.as_deref(),
        Some(b3.event_id.as_str()),
        "re-pointed"
    );
    assert_eq!(w.status, DlqStatus::Pending);

    let heads = sequencing::unresolved_heads(dlq.as_ref(), &["agg-1".to_owned()])
        .await
        .expect("heads");
    assert_eq!(heads.get("agg-1"), Some(&b3.event_id));
    assert_eq!(
        ids(&dlq.blocked_behind(&b3.event_id).await.expect("behind")),
        [&b4.event_id]
    );
    assert!(dlq
        .blocked_behind(&head.event_id)
        .await
        .expect("behind")
        .is_empty());

    // A head that fails its own replay stays the head (previous_head == itself).
    mark_failed(&dlq, &b3.event_id, &b3.event_id, at(12), "again")
        .await
        .expect("mark_failed");
    let f = get(&dlq, &b3.event_id).await;
    assert_eq!(f.replay_attempts, 2);
    assert_eq!(f.blocked_by, None);
    assert_eq!(
        get(&dlq, &b4.event_id).await.blocked_by.as_deref(),
        Some(b3.event_id.as_str())
    );
}

pub async fn transition_is_conditional(dlq: Arc<dyn DlqStore>) {
    let failed = dlq_record("agg-1", 1, None, at(0));
    let pending = dlq_record("agg-2", 1, None, at(0));
    insert(&dlq, &[failed.clone(), pending.clone()]).await;
    mark_failed(&dlq, &failed.event_id, &failed.event_id, at(1), "down")
        .await
        .expect("mark_failed");

    let done = reset(
        &dlq,
        &failed.event_id,
        "reset to PENDING by operator",
        at(2),
    )
    .await
    .expect("transition");
    let Changed::Done(rec) = done else {
        panic!("expected Done, got {done:?}");
    };
    assert_eq!(rec.status, DlqStatus::Pending);
    assert_eq!(
        rec.replay_result.as_deref(),
        Some("reset to PENDING by operator")
    );
    assert_eq!(rec.replay_attempts, 1, "a reset is not a replay attempt");
    assert_eq!(
        rec,
        get(&dlq, &failed.event_id).await,
        "Done returns the stored record"
    );

    let before = get(&dlq, &pending.event_id).await;
    let wrong = reset(&dlq, &pending.event_id, "reset", at(3))
        .await
        .expect("transition");
    assert_eq!(wrong, Changed::WrongStatus(before.clone()));
    assert_eq!(get(&dlq, &pending.event_id).await, before, "unchanged");

    let missing = reset(&dlq, "no-such-event", "r", at(3))
        .await
        .expect("transition");
    assert_eq!(missing, Changed::NotFound);
    assert_eq!(before.source, DlqSource::Publish);
}

pub async fn a_new_consumer_failure_reopens_a_replayed_record(dlq: Arc<dyn DlqStore>) {
    let first = consumer_dlq_record("agg-1", at(0));
    assert_eq!(insert(&dlq, std::slice::from_ref(&first)).await, 1);
    sequencing::mark_replayed(
        dlq.as_ref(),
        std::slice::from_ref(&first.event_id),
        at(1),
        "replayed",
    )
    .await
    .expect("mark_replayed");

    // The same DLQ-topic message delivered again: nothing changes.
    assert_eq!(insert(&dlq, std::slice::from_ref(&first)).await, 0);
    assert_eq!(get(&dlq, &first.event_id).await.status, DlqStatus::Replayed);

    // The replayed event failed again downstream (read from a new offset).
    let again = NewDlqRecord {
        origin: Some("order-events/0/99".to_owned()),
        failure_reason: "still failing".to_owned(),
        failure_time: at(2),
        ..first.clone()
    };
    assert_eq!(insert(&dlq, std::slice::from_ref(&again)).await, 1);
    let rec = get(&dlq, &first.event_id).await;
    assert_eq!(rec.status, DlqStatus::Pending);
    assert_eq!(rec.failure_reason, "still failing");
    assert_eq!(rec.failure_time, at(2));
    assert_eq!(rec.origin.as_deref(), Some("order-events/0/99"));
    assert_eq!(rec.replay_attempts, 1, "the history of attempts is kept");

    // An unresolved record is never rewritten by a new failure.
    let newer = NewDlqRecord {
        origin: Some("order-events/0/120".to_owned()),
        failure_reason: "third".to_owned(),
        ..again.clone()
    };
    assert_eq!(insert(&dlq, &[newer]).await, 0);
    assert_eq!(
        get(&dlq, &first.event_id).await.failure_reason,
        "still failing"
    );

    // Publish-side records are never reopened by an insert.
    let parked = dlq_record("agg-2", 1, None, at(0));
    insert(&dlq, std::slice::from_ref(&parked)).await;
    sequencing::mark_replayed(
        dlq.as_ref(),
        std::slice::from_ref(&parked.event_id),
        at(1),
        "replayed",
    )
    .await
    .expect("mark_replayed");
    let reparked = NewDlqRecord {
        failure_reason: "parked again".to_owned(),
        ..parked.clone()
    };
    assert_eq!(insert(&dlq, &[reparked]).await, 0);
    assert_eq!(
        get(&dlq, &parked.event_id).await.status,
        DlqStatus::Replayed
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
            dlq.claim_replay(&id, who, at(now), at(until))
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
        !dlq.claim_replay("no-such-event", "x", at(0), at(1))
            .await
            .expect("claim_replay"),
        "unknown records cannot be claimed"
    );
}

async fn skip(dlq: &Arc<dyn DlqStore>, event_id: &str, reason: &str, t: i64) -> Changed<SkipDone> {
    sequencing::skip(dlq.as_ref(), event_id, reason, at(t))
        .await
        .expect("skip")
}

pub async fn skip_is_conditional_and_keeps_attempts(dlq: Arc<dyn DlqStore>) {
    let pending = dlq_record("agg-1", 1, None, at(0));
    let failed = dlq_record("agg-2", 1, None, at(0));
    let replayed = dlq_record("agg-3", 1, None, at(0));
    insert(&dlq, &[pending.clone(), failed.clone(), replayed.clone()]).await;
    mark_failed(&dlq, &failed.event_id, &failed.event_id, at(1), "down")
        .await
        .expect("mark_failed");
    sequencing::mark_replayed(
        dlq.as_ref(),
        std::slice::from_ref(&replayed.event_id),
        at(1),
        "ok",
    )
    .await
    .expect("mark_replayed");

    let Changed::Done(SkipDone { record, new_head }) =
        skip(&dlq, &pending.event_id, "poison", 5).await
    else {
        panic!("a PENDING record can be skipped");
    };
    assert_eq!(record.status, DlqStatus::Skipped);
    assert_eq!(record.replay_result.as_deref(), Some("poison"));
    assert_eq!(record.replay_attempt_time, Some(at(5)));
    assert_eq!(record.replay_attempts, 0, "a skip is not a replay attempt");
    assert_eq!(new_head, None, "nothing waited behind it");
    assert_eq!(record, get(&dlq, &pending.event_id).await);

    let Changed::Done(SkipDone { record, .. }) = skip(&dlq, &failed.event_id, "gave up", 6).await
    else {
        panic!("a FAILED record can be skipped");
    };
    assert_eq!(record.status, DlqStatus::Skipped);
    assert_eq!(record.replay_attempts, 1, "earlier attempts are kept");

    let before = get(&dlq, &replayed.event_id).await;
    assert_eq!(
        skip(&dlq, &replayed.event_id, "x", 7).await,
        Changed::WrongStatus(before.clone())
    );
    assert_eq!(get(&dlq, &replayed.event_id).await, before, "unchanged");
    let skipped = get(&dlq, &pending.event_id).await;
    assert_eq!(
        skip(&dlq, &pending.event_id, "again", 8).await,
        Changed::WrongStatus(skipped.clone()),
        "a SKIPPED record is not skipped twice"
    );
    assert_eq!(
        get(&dlq, &pending.event_id).await.replay_result.as_deref(),
        Some("poison")
    );
    assert_eq!(skip(&dlq, "no-such-event", "x", 9).await, Changed::NotFound);

    let stats = dlq.stats().await.expect("stats");
    assert_eq!(stats.skipped_count, 2);
    assert_eq!(stats.pending_count, 0);
}

pub async fn skipping_a_head_makes_the_next_held_record_the_head(dlq: Arc<dyn DlqStore>) {
    let seq = sequence(&dlq, "agg-1").await;
    let (head, b2, b3, b4) = (&seq[0], &seq[1], &seq[2], &seq[3]);
    let other = sequence(&dlq, "agg-2").await;

    let done = skip(&dlq, &head.event_id, "bad event", 10).await;
    let Changed::Done(SkipDone { new_head, .. }) = done else {
        panic!("expected Done, got {done:?}");
    };
    assert_eq!(
        new_head.as_deref(),
        Some(b2.event_id.as_str()),
        "lowest version"
    );
    let h = get(&dlq, &b2.event_id).await;
    assert_eq!(h.blocked_by, None, "the new head is not blocked");
    assert_eq!(h.status, DlqStatus::Pending);
    for b in [b3, b4] {
        assert_eq!(
            get(&dlq, &b.event_id).await.blocked_by.as_deref(),
            Some(b2.event_id.as_str()),
            "re-pointed to the new head"
        );
    }
    assert_eq!(
        ids(&dlq.blocked_behind(&b2.event_id).await.expect("behind")),
        [&b3.event_id, &b4.event_id]
    );
    assert!(dlq
        .blocked_behind(&head.event_id)
        .await
        .expect("behind")
        .is_empty());
    let heads =
        sequencing::unresolved_heads(dlq.as_ref(), &["agg-1".to_owned(), "agg-2".to_owned()])
            .await
            .expect("heads");
    assert_eq!(heads.get("agg-1"), Some(&b2.event_id));
    assert_eq!(
        heads.get("agg-2"),
        Some(&other[0].event_id),
        "other orders untouched"
    );
    assert_eq!(
        get(&dlq, &other[1].event_id).await.blocked_by.as_deref(),
        Some(other[0].event_id.as_str())
    );
    let stats = dlq.stats().await.expect("stats");
    assert_eq!(stats.skipped_count, 1);
    assert_eq!(stats.blocked_count, 2 + 3);

    // Skipping the new head in turn hands over to the next one.
    let Changed::Done(SkipDone { new_head, .. }) = skip(&dlq, &b2.event_id, "also bad", 11).await
    else {
        panic!("expected Done");
    };
    assert_eq!(new_head.as_deref(), Some(b3.event_id.as_str()));
    assert_eq!(
        get(&dlq, &b4.event_id).await.blocked_by.as_deref(),
        Some(b3.event_id.as_str())
    );
    // The last one: nothing left behind it.
    skip(&dlq, &b3.event_id, "bad", 12).await;
    let Changed::Done(SkipDone { new_head, .. }) = skip(&dlq, &b4.event_id, "bad", 13).await else {
        panic!("expected Done");
    };
    assert_eq!(new_head, None);
    assert!(
        sequencing::unresolved_heads(dlq.as_ref(), &["agg-1".to_owned()])
            .await
            .expect("heads")
            .is_empty()
    );
}

pub async fn skipping_a_held_record_leaves_the_sequence(dlq: Arc<dyn DlqStore>) {
    let seq = sequence(&dlq, "agg-1").await;
    let (head, b2, b3, b4) = (&seq[0], &seq[1], &seq[2], &seq[3]);
    let Changed::Done(SkipDone { record, new_head }) =
        skip(&dlq, &b3.event_id, "not wanted", 10).await
    else {
        panic!("a held record can be skipped");
    };
    assert_eq!(record.status, DlqStatus::Skipped);
    assert_eq!(new_head, None, "it headed nothing");
    assert_eq!(
        ids(&dlq.blocked_behind(&head.event_id).await.expect("behind")),
        [&b2.event_id, &b4.event_id],
        "the rest still wait behind the head"
    );
    assert_eq!(
        sequencing::unresolved_heads(dlq.as_ref(), &["agg-1".to_owned()])
            .await
            .expect("heads")
            .get("agg-1"),
        Some(&head.event_id)
    );
    assert_eq!(get(&dlq, &head.event_id).await.status, DlqStatus::Pending);
}

pub async fn a_claimed_record_is_not_skipped(dlq: Arc<dyn DlqStore>) {
    let rec = dlq_record("agg-1", 1, None, at(0));
    insert(&dlq, std::slice::from_ref(&rec)).await;
    assert!(dlq
        .claim_replay(&rec.event_id, "instance-a", at(1), at(100))
        .await
        .expect("claim"));
    let before = get(&dlq, &rec.event_id).await;
    assert_eq!(
        skip(&dlq, &rec.event_id, "x", 50).await,
        Changed::Claimed(before.clone()),
        "a replay in progress keeps it"
    );
    assert_eq!(get(&dlq, &rec.event_id).await, before);
    // Once the claim has lapsed the record can be skipped.
    let done = skip(&dlq, &rec.event_id, "x", 101).await;
    assert!(matches!(done, Changed::Done(_)), "{done:?}");
}

/// Every unresolved record marked as held points at an unresolved head.
async fn assert_no_orphaned_holds(dlq: &Arc<dyn DlqStore>, when: &str) {
    let all = dlq.list(None, page(0, 1000)).await.expect("list").content;
    for r in all.iter().filter(|r| r.status.is_unresolved()) {
        if let Some(head) = &r.blocked_by {
            let h = all
                .iter()
                .find(|h| &h.event_id == head)
                .unwrap_or_else(|| panic!("{when}: {} held behind unknown {head}", r.event_id));
            assert!(
                h.status.is_unresolved(),
                "{when}: {} is held behind {head}, which is {}",
                r.event_id,
                h.status.as_str()
            );
        }
    }
}

pub async fn a_held_record_never_points_at_a_resolved_head(dlq: Arc<dyn DlqStore>) {
    let seq = sequence(&dlq, "agg-1").await;
    assert_no_orphaned_holds(&dlq, "after parking").await;
    skip(&dlq, &seq[0].event_id, "bad", 10).await;
    assert_no_orphaned_holds(&dlq, "after skipping the head").await;
    // The replay of the new head failed at the third record: it heads the rest.
    sequencing::mark_replayed(
        dlq.as_ref(),
        std::slice::from_ref(&seq[2].event_id),
        at(11),
        "ok",
    )
    .await
    .expect("mark_replayed");
    mark_failed(&dlq, &seq[3].event_id, &seq[1].event_id, at(11), "down")
        .await
        .expect("mark_failed");
    sequencing::mark_replayed(
        dlq.as_ref(),
        std::slice::from_ref(&seq[1].event_id),
        at(11),
        "ok",
    )
    .await
    .expect("mark_replayed");
    assert_no_orphaned_holds(&dlq, "after a partly failed replay").await;
    let last = get(&dlq, &seq[3].event_id).await;
    assert_eq!(last.status, DlqStatus::Failed);
    assert_eq!(
        last.blocked_by, None,
        "the failed record heads what is left"
    );
}

pub async fn a_change_whose_guard_fails_writes_nothing(dlq: Arc<dyn DlqStore>) {
    let seq = sequence(&dlq, "agg-1").await;
    let (head, b2) = (&seq[0], &seq[1]);
    let before = dlq.list(None, page(0, 100)).await.expect("list").content;
    let steps = vec![
        Step::SetStatus {
            event_ids: vec![head.event_id.clone()],
            from: sequencing::UNRESOLVED.to_vec(),
            to: DlqStatus::Skipped,
            result: "x".into(),
            failure_class: None,
            count_attempt: false,
        },
        Step::MakeHead {
            event_id: b2.event_id.clone(),
        },
        Step::MoveHeld {
            from: head.event_id.clone(),
            to: b2.event_id.clone(),
        },
    ];
    let failing = [
        Guard::Status {
            event_id: head.event_id.clone(),
            any_of: vec![DlqStatus::Failed],
        },
        Guard::Status {
            event_id: "no-such-event".into(),
            any_of: sequencing::UNRESOLVED.to_vec(),
        },
        Guard::HeldBehind {
            event_id: b2.event_id.clone(),
            head: None,
        },
        Guard::HeldBehind {
            event_id: head.event_id.clone(),
            head: Some(b2.event_id.clone()),
        },
        Guard::Origin {
            event_id: head.event_id.clone(),
            origin: Some("order-events/0/1".into()),
        },
    ];
    for guard in failing {
        let change = SequenceChange {
            at: at(5),
            guards: vec![guard.clone()],
            steps: steps.clone(),
        };
        assert!(
            !dlq.apply(&change).await.expect("apply"),
            "{guard:?} does not hold"
        );
        assert_eq!(
            dlq.list(None, page(0, 100)).await.expect("list").content,
            before,
            "nothing written when {guard:?} fails"
        );
    }
    assert!(dlq
        .claim_replay(&head.event_id, "instance-a", at(1), at(100))
        .await
        .expect("claim"));
    let claimed = SequenceChange {
        at: at(50),
        guards: vec![Guard::Unclaimed {
            event_id: head.event_id.clone(),
        }],
        steps: steps.clone(),
    };
    assert!(!dlq.apply(&claimed).await.expect("apply"), "a live claim");
    let holding = SequenceChange {
        at: at(5),
        guards: vec![
            Guard::Status {
                event_id: head.event_id.clone(),
                any_of: sequencing::UNRESOLVED.to_vec(),
            },
            Guard::HeldBehind {
                event_id: b2.event_id.clone(),
                head: Some(head.event_id.clone()),
            },
            Guard::HeldBehind {
                event_id: head.event_id.clone(),
                head: None,
            },
            Guard::Origin {
                event_id: head.event_id.clone(),
                origin: None,
            },
        ],
        steps,
    };
    assert!(
        dlq.apply(&holding).await.expect("apply"),
        "every guard holds"
    );
    assert_eq!(get(&dlq, &head.event_id).await.status, DlqStatus::Skipped);
    assert_eq!(get(&dlq, &b2.event_id).await.blocked_by, None);
    assert_eq!(
        get(&dlq, &seq[3].event_id).await.blocked_by.as_deref(),
        Some(b2.event_id.as_str())
    );
    assert_no_orphaned_holds(&dlq, "after the change").await;
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

pub async fn only_a_consumer_side_failure_reopens(dlq: Arc<dyn DlqStore>) {
    let published = NewDlqRecord {
        origin: Some("order-events/0/1".to_owned()),
        ..dlq_record("agg-1", 1, None, at(0))
    };
    insert(&dlq, std::slice::from_ref(&published)).await;
    sequencing::mark_replayed(
        dlq.as_ref(),
        std::slice::from_ref(&published.event_id),
        at(1),
        "replayed",
    )
    .await
    .expect("mark_replayed");
    let again = NewDlqRecord {
        origin: Some("order-events/0/2".to_owned()),
        failure_time: at(2),
        ..published.clone()
    };
    assert_eq!(insert(&dlq, &[again]).await, 0);
    assert_eq!(
        get(&dlq, &published.event_id).await.status,
        DlqStatus::Replayed,
        "a publish-side record stays resolved"
    );
}
