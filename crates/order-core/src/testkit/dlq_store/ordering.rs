//! The sequencing half of the contract: heads, records held behind them,
//! guarded status changes and the invariant that nothing is held behind a
//! resolved head. Apart from the record basics because these are the cases
//! that protect per-order ordering.

use std::sync::Arc;

use super::{
    assert_no_orphaned_holds, claim_of, get, ids, insert, mark_failed, page, reset,
    resolve_unguarded, sequence, skip,
};
use crate::app::dlq::sequencing::{self, Changed};
use crate::ports::{DlqSource, DlqStatus, DlqStore, Guard, NewDlqRecord, SequenceChange, Step};
use crate::testkit::fixtures::{at, consumer_dlq_record, dlq_record};

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
    // A head resolved with nothing to guard it leaves its held records
    // orphaned; the store counts them (the gauge operators alert on).
    let other = sequence(&dlq, "agg-2").await;
    let held = dlq
        .blocked_behind(&other[0].event_id)
        .await
        .expect("blocked_behind");
    assert!(!held.is_empty());
    resolve_unguarded(&dlq, &other[0].event_id, 12).await;
    assert_eq!(
        dlq.orphaned_holds().await.expect("orphaned_holds"),
        held.len() as u64
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
        Guard::NothingHeldBehind {
            head: head.event_id.clone(),
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
        .claim_replay(claim_of(&head.event_id, "instance-a", 1, 100))
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
            Guard::NothingHeldBehind {
                head: b2.event_id.clone(),
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
