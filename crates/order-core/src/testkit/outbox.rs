//! Contract of [`Outbox`](crate::ports::Outbox): every committed event
//! waits in position order until it is settled as delivered or parked in
//! the DLQ (in the same database, in one transaction).

use super::event_store::commit_one;
use super::fixtures::{at, confirm, create, transition};
use super::StoreHandles;
use crate::app::dlq::sequencing;
use crate::app::relay::parked_record;
use crate::domain::{EventEnvelope, Transition};
use crate::ports::{
    bucket_of, Commit, CommitError, DlqSource, DlqStatus, FailureClass, Fence, Holder, Outbox,
    OutboxFetch, OutboxMessage, ParkedEvent, Settled, Settlement, ALL_BUCKETS, BUCKETS,
};
use std::time::Duration;

const HOLDER: &str = "relay-under-test";

async fn fetch(h: &StoreHandles, limit: usize) -> Vec<OutboxMessage> {
    h.outbox
        .fetch_batch(OutboxFetch {
            buckets: &[ALL_BUCKETS],
            limit,
        })
        .await
        .expect("fetch_batch")
}

pub(super) async fn fetch_all(h: &StoreHandles) -> Vec<OutboxMessage> {
    fetch(h, 100_000).await
}

/// Takes the single partition of a one-partition layout for [`HOLDER`].
pub(super) async fn hold_everything(h: &StoreHandles, holder: &str, ttl: Duration) -> Fence {
    h.leases.layout(1).await.expect("layout");
    let seen = h.leases.partitions().await.expect("partitions")[0].fence();
    h.leases
        .claim(seen, Holder::new(holder, ttl))
        .await
        .expect("claim")
        .expect("the partition is free")
}

/// Settles under a fresh claim of every bucket; panics unless written.
async fn settle(h: &StoreHandles, delivered: &[i64], parked: &[ParkedEvent]) -> Vec<i64> {
    let fence = match h.leases.partitions().await.expect("partitions").first() {
        Some(p) if p.holder == HOLDER && p.live => p.fence(),
        _ => hold_everything(h, HOLDER, Duration::from_secs(60)).await,
    };
    let outcome = h
        .outbox
        .settle(&Settlement {
            holder: HOLDER.to_owned(),
            fences: vec![fence],
            delivered: delivered.to_vec(),
            parked: parked.to_vec(),
        })
        .await
        .expect("settle");
    match outcome {
        Settled::Done { held_back } => held_back,
        Settled::Fenced(p) => panic!("settle fenced on {p:?}"),
    }
}

fn positions(msgs: &[OutboxMessage]) -> Vec<i64> {
    msgs.iter().map(|m| m.position).collect()
}

/// Commits `n` creates (one per batch); returns (position, envelope) pairs.
async fn commit_creates(h: &StoreHandles, n: i64) -> Vec<(i64, EventEnvelope)> {
    let mut out = Vec::new();
    for i in 0..n {
        let c = create(&format!("cust-{i}"), "rest-1", at(i));
        let p = commit_one(h, c.clone()).await.expect("commit");
        out.push((p[0], c.events[0].clone()));
    }
    out
}

fn parked(position: i64, env: &EventEnvelope, blocked_by: Option<String>) -> ParkedEvent {
    ParkedEvent {
        position,
        record: parked_record(
            env,
            "order-events",
            "publish failed: broker down".into(),
            Some(FailureClass::Retryable),
            blocked_by,
        ),
    }
}

pub async fn empty_outbox(h: StoreHandles) {
    assert!(fetch_all(&h).await.is_empty());
    let stats = h.outbox.stats().await.expect("stats");
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.oldest_created_at, None);
}

pub async fn committed_events_are_fetched_in_position_order(h: StoreHandles) {
    let batch: Vec<Commit> = (0..3)
        .map(|i| create(&format!("cust-{i}"), "rest-1", at(i)))
        .collect();
    let results = h.events.commit_batch(batch.clone()).await.expect("batch");
    let mut expected: Vec<(i64, EventEnvelope)> = results
        .into_iter()
        .zip(&batch)
        .map(|(r, c)| (r.expect("commit")[0], c.events[0].clone()))
        .collect();
    let t = transition(
        &batch[1].state,
        &[confirm("pay-1"), Transition::Prepare],
        at(10),
    );
    let p = commit_one(&h, t.clone()).await.expect("commit");
    expected.extend(p.into_iter().zip(t.events.iter().cloned()));

    let msgs = fetch_all(&h).await;
    let got: Vec<(i64, EventEnvelope)> = msgs
        .iter()
        .map(|m| (m.position, m.envelope.clone()))
        .collect();
    assert_eq!(
        got, expected,
        "one row per event, in position order, envelope intact"
    );
}

pub async fn fetch_batch_respects_limit(h: StoreHandles) {
    let committed = commit_creates(&h, 5).await;
    let first = fetch(&h, 2).await;
    assert_eq!(positions(&first), [committed[0].0, committed[1].0]);
    let again = fetch(&h, 2).await;
    assert_eq!(first, again, "fetching does not consume rows");
    assert_eq!(fetch_all(&h).await.len(), 5);
}

/// Asserts that `order`'s one outbox row is found in the order's bucket and
/// carries it (the adapters' back-fill tests of rows older than buckets).
pub async fn assert_the_row_is_in_its_bucket(outbox: &dyn Outbox, order: &str) {
    let bucket = bucket_of(order);
    let rows = outbox
        .fetch_batch(OutboxFetch {
            buckets: std::slice::from_ref(&(bucket..bucket + 1)),
            limit: 10,
        })
        .await
        .expect("fetch");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].bucket, bucket);
}

/// A relay fetches only the buckets of the partitions it holds.
pub async fn fetch_batch_takes_only_the_given_buckets(h: StoreHandles) {
    let committed = commit_creates(&h, 6).await;
    let first = &committed[0].1;
    let bucket = bucket_of(&first.aggregate_id);
    let got = h
        .outbox
        .fetch_batch(OutboxFetch {
            buckets: std::slice::from_ref(&(bucket..bucket + 1)),
            limit: 100,
        })
        .await
        .expect("fetch");
    assert!(!got.is_empty());
    assert!(got.iter().all(|m| m.bucket == bucket));
    assert!(got.iter().any(|m| m.envelope == *first));
    let all = fetch_all(&h).await;
    for m in &all {
        assert_eq!(
            m.bucket,
            bucket_of(&m.envelope.aggregate_id),
            "bucket stored at insert"
        );
    }
    let others: Vec<_> = all.iter().filter(|m| m.bucket != bucket).collect();
    let rest = h
        .outbox
        .fetch_batch(OutboxFetch {
            buckets: &[0..bucket, bucket + 1..BUCKETS],
            limit: 100,
        })
        .await
        .expect("fetch");
    assert_eq!(rest.len(), others.len(), "two ranges at once");
    assert!(h
        .outbox
        .fetch_batch(OutboxFetch {
            buckets: &[],
            limit: 100,
        })
        .await
        .expect("fetch")
        .is_empty());
}

/// A relay whose lease was taken over (it stopped, or was too slow) writes
/// nothing: its settle is refused and every row stays for the new holder.
pub async fn settle_under_a_lost_lease_writes_nothing(h: StoreHandles) {
    let c = commit_creates(&h, 2).await;
    let old = hold_everything(&h, "relay-a", Duration::from_millis(50)).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    let seen = h.leases.partitions().await.expect("partitions")[0].fence();
    let new = h
        .leases
        .claim(seen, Holder::new("relay-b", Duration::from_secs(60)))
        .await
        .expect("claim")
        .expect("the lapsed lease is taken over");
    assert!(new.epoch > old.epoch);
    let stale = Settlement {
        holder: "relay-a".into(),
        fences: vec![old],
        delivered: vec![c[0].0],
        parked: vec![parked(c[1].0, &c[1].1, None)],
    };
    assert_eq!(
        h.outbox.settle(&stale).await.expect("settle"),
        Settled::Fenced(vec![old.partition])
    );
    assert_eq!(fetch_all(&h).await.len(), 2, "nothing deleted");
    assert!(h
        .dlq
        .get(&c[1].1.event_id.to_string())
        .await
        .expect("get")
        .is_none());
    // The same epoch presented by another holder is refused as well.
    let forged = Settlement {
        holder: "relay-a".into(),
        fences: vec![new],
        ..stale.clone()
    };
    assert!(matches!(
        h.outbox.settle(&forged).await.expect("settle"),
        Settled::Fenced(_)
    ));
    let current = Settlement {
        holder: "relay-b".into(),
        fences: vec![new],
        ..stale
    };
    assert_eq!(
        h.outbox.settle(&current).await.expect("settle"),
        Settled::Done { held_back: vec![] }
    );
    assert!(fetch_all(&h).await.is_empty());
}

/// An event parked behind a head that another instance resolved since the
/// relay looked would be held behind nothing: it stays in the outbox.
pub async fn an_event_parked_behind_a_resolved_head_stays_in_the_outbox(h: StoreHandles) {
    let v1 = create("cust-1", "rest-1", at(0));
    let p1 = commit_one(&h, v1.clone()).await.expect("commit");
    let head = parked(p1[0], &v1.events[0], None);
    assert!(settle(&h, &[], &[head]).await.is_empty());
    let head_id = v1.events[0].event_id.to_string();
    let t = transition(&v1.state, &[confirm("pay-1")], at(5));
    let p2 = commit_one(&h, t.clone()).await.expect("commit");
    // Another instance replays the head meanwhile.
    assert!(h
        .dlq
        .apply(&sequencing::head_replayed_change(&head_id, at(6)))
        .await
        .expect("apply"));
    let behind = parked(p2[0], &t.events[0], Some(head_id));
    assert_eq!(settle(&h, &[], &[behind]).await, [p2[0]]);
    assert_eq!(
        positions(&fetch_all(&h).await),
        [p2[0]],
        "left for the next batch"
    );
    assert!(h
        .dlq
        .get(&t.events[0].event_id.to_string())
        .await
        .expect("get")
        .is_none());
}

pub async fn conflicting_commit_adds_no_outbox_row(h: StoreHandles) {
    let c = create("cust-1", "rest-1", at(0));
    commit_one(&h, c.clone()).await.expect("commit");
    let a = transition(&c.state, &[confirm("pay-a")], at(1));
    let b = transition(
        &c.state,
        &[Transition::cancel(None).expect("cancel")],
        at(2),
    );
    let r = h
        .events
        .commit_batch(vec![a.clone(), b.clone()])
        .await
        .expect("batch");
    assert_eq!(r[1], Err(CommitError::VersionConflict));
    let ids: Vec<_> = fetch_all(&h)
        .await
        .into_iter()
        .map(|m| m.envelope.event_id)
        .collect();
    assert_eq!(ids, [c.events[0].event_id, a.events[0].event_id]);
}

pub async fn settle_removes_delivered_rows(h: StoreHandles) {
    let c = commit_creates(&h, 3).await;
    settle(&h, &[c[0].0, c[2].0], &[]).await;
    assert_eq!(positions(&fetch_all(&h).await), [c[1].0]);
    // Settling a row that is already gone changes nothing.
    settle(&h, &[c[0].0], &[]).await;
    assert_eq!(positions(&fetch_all(&h).await), [c[1].0]);
    assert_eq!(h.outbox.stats().await.expect("stats").pending, 1);
    // The events themselves stay in the event store.
    assert_eq!(h.events.read_all(0, 100).await.expect("read_all").len(), 3);
}

pub async fn settle_parks_events_in_the_dlq(h: StoreHandles) {
    let v1 = create("cust-1", "rest-1", at(0));
    let p1 = commit_one(&h, v1.clone()).await.expect("commit");
    let other = commit_creates(&h, 1).await;
    let t = transition(&v1.state, &[confirm("pay-1")], at(5));
    let p2 = commit_one(&h, t.clone()).await.expect("commit");

    let head = parked(p1[0], &v1.events[0], None);
    let head_id = v1.events[0].event_id.to_string();
    let behind = parked(p2[0], &t.events[0], Some(head_id.clone()));
    settle(&h, &[other[0].0], &[head.clone(), behind.clone()]).await;
    assert!(
        fetch_all(&h).await.is_empty(),
        "parked and delivered rows are gone"
    );

    let rec = h
        .dlq
        .get(&head_id)
        .await
        .expect("get")
        .expect("parked record");
    assert_eq!(rec.event_id, head_id);
    assert_eq!(rec.aggregate_id, v1.state.id.to_string());
    assert_eq!(rec.event_type, "OrderCreated");
    assert_eq!(rec.version, Some(1));
    assert_eq!(rec.original_event, v1.events[0].to_json());
    assert_eq!(rec.failure_reason, head.record.failure_reason);
    assert_eq!(rec.failure_time, head.record.failure_time);
    assert_eq!(rec.status, DlqStatus::Pending);
    assert_eq!(rec.replay_attempts, 0);
    assert_eq!(rec.replay_attempt_time, None);
    assert_eq!(rec.source, DlqSource::Publish);
    assert_eq!(rec.blocked_by, None);
    assert_eq!(rec.topic, "order-events");

    let rec2 = h
        .dlq
        .get(&t.events[0].event_id.to_string())
        .await
        .expect("get")
        .expect("parked record");
    assert_eq!(rec2.blocked_by.as_deref(), Some(head_id.as_str()));
    let heads = sequencing::unresolved_heads(h.dlq.as_ref(), &[v1.state.id.to_string()])
        .await
        .expect("heads");
    assert_eq!(heads.get(&v1.state.id.to_string()), Some(&head_id));
    assert_eq!(h.dlq.stats().await.expect("stats").total_count, 2);
}

pub async fn settle_keeps_an_existing_dlq_record(h: StoreHandles) {
    let c = commit_creates(&h, 1).await;
    let (position, env) = &c[0];
    let mut first = parked(*position, env, None);
    first.record.failure_reason = "first failure".into();
    assert_eq!(
        sequencing::record(h.dlq.as_ref(), &[first.record.clone()])
            .await
            .expect("insert"),
        1
    );
    let second = parked(*position, env, None);
    settle(&h, &[], &[second]).await;
    assert!(fetch_all(&h).await.is_empty(), "the outbox row is removed");
    let rec = h
        .dlq
        .get(&env.event_id.to_string())
        .await
        .expect("get")
        .expect("record");
    assert_eq!(
        rec.failure_reason, "first failure",
        "existing record left as it is"
    );
    assert_eq!(h.dlq.stats().await.expect("stats").total_count, 1);
}

pub async fn settle_with_nothing_is_ok(h: StoreHandles) {
    settle(&h, &[], &[]).await;
    let c = commit_creates(&h, 1).await;
    settle(&h, &[], &[]).await;
    assert_eq!(positions(&fetch_all(&h).await), [c[0].0]);
}

pub async fn stats_count_pending_and_oldest(h: StoreHandles) {
    let c = commit_creates(&h, 3).await;
    let stats = h.outbox.stats().await.expect("stats");
    assert_eq!(stats.pending, 3);
    let oldest = stats.oldest_created_at.expect("oldest row time");
    let msgs = fetch_all(&h).await;
    assert_eq!(Some(oldest), msgs.iter().map(|m| m.created_at).min());
    settle(&h, &[c[0].0], &[]).await;
    let stats = h.outbox.stats().await.expect("stats");
    assert_eq!(stats.pending, 2);
    assert!(stats.oldest_created_at.expect("oldest") >= oldest);
    settle(&h, &[c[1].0, c[2].0], &[]).await;
    let stats = h.outbox.stats().await.expect("stats");
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.oldest_created_at, None);
}
