//! Skip cases on their own: skipping is the one change that hands a
//! sequence to the next held record, and its cases are long enough to bury
//! the other sequencing cases.

use std::sync::Arc;

use super::{claim_of, get, ids, insert, mark_failed, sequence, skip};
use crate::app::dlq::sequencing::{self, Changed, SkipDone};
use crate::ports::{DlqStatus, DlqStore};
use crate::testkit::fixtures::{at, dlq_record};

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
        .claim_replay(claim_of(&rec.event_id, "instance-a", 1, 100))
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
