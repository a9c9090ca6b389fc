//! The head index: "the next N heads, oldest failure first, matching a
//! filter" as one query that follows every change to a sequence; the batch
//! forms of claims and of reading what is held.

use std::collections::HashSet;
use std::sync::Arc;

use super::{get, ids, insert, mark_failed, skip};
use crate::app::dlq::sequencing;
use crate::ports::{
    DlqRecord, DlqSource, DlqStatus, DlqStore, HeadCursor, HeadQuery, NewDlqRecord, ReplayClaims,
};
use crate::testkit::fixtures::{at, dlq_record};

fn query(limit: usize) -> HeadQuery<'static> {
    HeadQuery {
        limit,
        ..HeadQuery::default()
    }
}

async fn heads(dlq: &Arc<dyn DlqStore>, q: &HeadQuery<'_>) -> Vec<DlqRecord> {
    dlq.heads(q).await.expect("heads")
}

/// Every head matching `q`, page by page (`size` at a time) along the
/// cursor.
async fn walk(dlq: &Arc<dyn DlqStore>, q: HeadQuery<'_>, size: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = heads(
            dlq,
            &HeadQuery {
                after,
                limit: size,
                ..q
            },
        )
        .await;
        let Some(last) = page.last() else {
            return out;
        };
        after = Some(HeadCursor::of(last));
        out.extend(page.into_iter().map(|r| r.event_id));
    }
}

/// A publish-side sequence of `len` events of `aggregate`, its head failed
/// at `t`, the others a little later.
async fn parked(dlq: &Arc<dyn DlqStore>, aggregate: &str, len: u64, t: i64) -> Vec<NewDlqRecord> {
    let head = dlq_record(aggregate, 1, None, at(t));
    let mut recs = vec![head.clone()];
    for v in 2..=len {
        recs.push(dlq_record(
            aggregate,
            v,
            Some(&head.event_id),
            at(t + v as i64),
        ));
    }
    assert_eq!(insert(dlq, &recs).await, recs.len());
    recs
}

fn consumer_record(aggregate: &str, t: i64) -> NewDlqRecord {
    NewDlqRecord {
        source: DlqSource::Consumer,
        failure_class: None,
        origin: Some(format!("order-events/0/{t}")),
        event_type: "OrderCreated".into(),
        ..dlq_record(aggregate, 1, None, at(t))
    }
}

pub async fn heads_are_unresolved_records_not_held_oldest_failure_first(dlq: Arc<dyn DlqStore>) {
    let a = parked(&dlq, "order-a", 3, 300).await;
    let b = parked(&dlq, "order-b", 2, 100).await;
    let c = consumer_record("order-c", 200);
    assert_eq!(insert(&dlq, std::slice::from_ref(&c)).await, 1);
    let resolved = parked(&dlq, "order-d", 1, 50).await;
    sequencing::mark_replayed(dlq.as_ref(), &[resolved[0].event_id.clone()], at(60), "ok")
        .await
        .expect("mark");

    let all = heads(&dlq, &query(10)).await;
    assert_eq!(
        ids(&all),
        [&b[0].event_id, &c.event_id, &a[0].event_id],
        "held and resolved records are not heads; oldest failure first"
    );
    assert_eq!(all[0], get(&dlq, &b[0].event_id).await, "whole records");
    assert_eq!(dlq.count_heads(&query(0)).await.expect("count"), 3);

    let publish = HeadQuery {
        source: Some(DlqSource::Publish),
        ..query(10)
    };
    assert_eq!(
        ids(&heads(&dlq, &publish).await),
        [&b[0].event_id, &a[0].event_id]
    );
    let of_a = HeadQuery {
        aggregate_id: Some("order-a"),
        ..query(10)
    };
    assert_eq!(ids(&heads(&dlq, &of_a).await), [&a[0].event_id]);
    let created = HeadQuery {
        event_type: Some("OrderCreated"),
        ..query(10)
    };
    assert_eq!(ids(&heads(&dlq, &created).await), [&c.event_id]);
    let window = HeadQuery {
        from: Some(at(200)),
        to: Some(at(300)),
        ..query(10)
    };
    assert_eq!(
        ids(&heads(&dlq, &window).await),
        [&c.event_id],
        "from inclusive, to exclusive"
    );
    assert_eq!(dlq.count_heads(&window).await.expect("count"), 1);
    assert_eq!(ids(&heads(&dlq, &query(2)).await).len(), 2, "limit");

    mark_failed(
        &dlq,
        &b[0].event_id,
        &b[0].event_id,
        at(400),
        "replay failed",
    )
    .await
    .expect("fail");
    let failed = HeadQuery {
        status: Some(DlqStatus::Failed),
        ..query(10)
    };
    assert_eq!(
        ids(&heads(&dlq, &failed).await),
        [&b[0].event_id],
        "a FAILED head keeps its place (its first failure time)"
    );
}

pub async fn the_head_index_follows_every_change_to_a_sequence(dlq: Arc<dyn DlqStore>) {
    let a = parked(&dlq, "order-a", 4, 100).await;
    let first = |recs: Vec<DlqRecord>| recs.first().map(|r| r.event_id.clone());
    let of_a = HeadQuery {
        aggregate_id: Some("order-a"),
        ..query(10)
    };
    assert_eq!(first(heads(&dlq, &of_a).await), Some(a[0].event_id.clone()));

    // A skipped head hands its sequence to the next held record.
    skip(&dlq, &a[0].event_id, "bad", 200).await;
    assert_eq!(
        ids(&heads(&dlq, &of_a).await),
        [&a[1].event_id],
        "the new head, and only it"
    );
    // A held record that fails its replay heads what is behind it.
    mark_failed(
        &dlq,
        &a[2].event_id,
        &a[1].event_id,
        at(300),
        "replay failed",
    )
    .await
    .expect("fail");
    assert_eq!(
        ids(&heads(&dlq, &of_a).await),
        [&a[1].event_id, &a[2].event_id]
    );
    // Replayed heads leave the index.
    for id in [&a[3].event_id, &a[2].event_id] {
        sequencing::mark_replayed(dlq.as_ref(), std::slice::from_ref(id), at(400), "ok")
            .await
            .expect("mark");
    }
    assert!(dlq
        .apply(&sequencing::head_replayed_change(&a[1].event_id, at(500)))
        .await
        .expect("apply"));
    assert!(heads(&dlq, &of_a).await.is_empty());
    assert_eq!(dlq.count_heads(&of_a).await.expect("count"), 0);
}

/// A walk along the cursor sees every head that is there throughout
/// exactly once, in order, while heads are replayed, added and taken over
/// between its pages.
pub async fn a_head_walk_is_stable_while_sequences_change(dlq: Arc<dyn DlqStore>) {
    // Ten orders, heads failed at 100, 200, … 1000; all share one failure
    // time pair so the id breaks ties.
    let mut seqs = Vec::new();
    for i in 0..10 {
        seqs.push(parked(&dlq, &format!("order-{i}"), 2, 100 * (i / 2 + 1)).await);
    }
    let expected: Vec<String> = walk(&dlq, query(0), 100).await;
    assert_eq!(expected.len(), 10);
    let mut seen = Vec::new();
    let mut after = None;
    let mut round = 0;
    loop {
        let page = heads(&dlq, &HeadQuery { after, ..query(3) }).await;
        let Some(last) = page.last() else { break };
        after = Some(HeadCursor::of(last));
        seen.extend(page.iter().map(|r| r.event_id.clone()));
        // Between pages: a seen head is replayed, a new order parks (after
        // the cursor), an unseen head's order is skipped to its next event.
        round += 1;
        let done = &page[0];
        let held: Vec<String> = ids(&dlq.blocked_behind(&done.event_id).await.expect("held"))
            .into_iter()
            .map(str::to_owned)
            .collect();
        sequencing::mark_replayed(dlq.as_ref(), &held, at(5000), "ok")
            .await
            .expect("mark held");
        assert!(dlq
            .apply(&sequencing::head_replayed_change(&done.event_id, at(5000)))
            .await
            .expect("apply"));
        if round <= 2 {
            parked(&dlq, &format!("late-{round}"), 1, 2000 + round).await;
        }
        assert!(round < 100, "the walk ends");
    }
    let late: Vec<&String> = seen.iter().filter(|id| !expected.contains(id)).collect();
    let original: Vec<&String> = seen.iter().filter(|id| expected.contains(id)).collect();
    assert_eq!(
        original,
        expected.iter().collect::<Vec<_>>(),
        "every head there throughout seen once, in order"
    );
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "nothing seen twice");
    assert!(
        !late.is_empty(),
        "heads parked after the cursor are reached"
    );
}

pub async fn claims_and_held_records_come_in_batches(dlq: Arc<dyn DlqStore>) {
    let a = parked(&dlq, "order-a", 3, 100).await;
    let b = parked(&dlq, "order-b", 2, 200).await;
    let c = parked(&dlq, "order-c", 1, 300).await;
    let heads_ids = vec![
        a[0].event_id.clone(),
        b[0].event_id.clone(),
        c[0].event_id.clone(),
    ];
    let held = dlq.held_behind(&heads_ids).await.expect("held");
    assert_eq!(
        ids(&held),
        {
            let mut expected = vec![
                (&a[0].event_id, &a[1].event_id),
                (&a[0].event_id, &a[2].event_id),
                (&b[0].event_id, &b[1].event_id),
            ];
            expected.sort();
            expected
                .into_iter()
                .map(|(_, id)| id.as_str())
                .collect::<Vec<_>>()
        },
        "by head, then version"
    );

    // B is claimed by another instance first.
    assert_eq!(
        dlq.claim_replays(ReplayClaims {
            event_ids: std::slice::from_ref(&b[0].event_id),
            claimant: "instance-b",
            now: at(0),
            until: at(1_000),
        })
        .await
        .expect("claim"),
        [b[0].event_id.clone()]
    );
    let mut mine = dlq
        .claim_replays(ReplayClaims {
            event_ids: &heads_ids,
            claimant: "instance-a",
            now: at(10),
            until: at(1_000),
        })
        .await
        .expect("claim");
    mine.sort();
    let mut expected = vec![a[0].event_id.clone(), c[0].event_id.clone()];
    expected.sort();
    assert_eq!(mine, expected, "the free ones, not another's live claim");
    dlq.release_replays(&heads_ids, "instance-a")
        .await
        .expect("release");
    let again = dlq
        .claim_replays(ReplayClaims {
            event_ids: &heads_ids,
            claimant: "instance-c",
            now: at(20),
            until: at(2_000),
        })
        .await
        .expect("claim");
    assert_eq!(
        again.len(),
        2,
        "released claims are free; B's is still held"
    );
    let after_expiry = dlq
        .claim_replays(ReplayClaims {
            event_ids: &heads_ids,
            claimant: "instance-d",
            now: at(3_000),
            until: at(4_000),
        })
        .await
        .expect("claim");
    assert_eq!(after_expiry.len(), 3, "every claim lapsed");
}
