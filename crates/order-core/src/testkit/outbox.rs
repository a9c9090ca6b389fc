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
    Commit, CommitError, DlqSource, DlqStatus, FailureClass, OutboxMessage, ParkedEvent,
};

async fn fetch_all(h: &StoreHandles) -> Vec<OutboxMessage> {
    h.outbox.fetch_batch(100_000).await.expect("fetch_batch")
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
    let first = h.outbox.fetch_batch(2).await.expect("fetch");
    assert_eq!(positions(&first), [committed[0].0, committed[1].0]);
    let again = h.outbox.fetch_batch(2).await.expect("fetch");
    assert_eq!(first, again, "fetching does not consume rows");
    assert_eq!(fetch_all(&h).await.len(), 5);
}

/// The first batch a fresh store hands out may have been published by a
/// predecessor that crashed before settling it; later ones may not.
pub async fn only_the_first_batch_may_have_been_sent(h: StoreHandles) {
    let empty = h.outbox.fetch_batch(10).await.expect("fetch");
    assert!(empty.is_empty());
    commit_creates(&h, 3).await;
    let first = h.outbox.fetch_batch(2).await.expect("fetch");
    assert_eq!(first.len(), 2);
    assert!(
        h.outbox.last_batch_maybe_sent(),
        "the first batch after opening"
    );
    h.outbox
        .settle(&positions(&first), &[])
        .await
        .expect("settle");
    let second = h.outbox.fetch_batch(2).await.expect("fetch");
    assert_eq!(second.len(), 1);
    assert!(!h.outbox.last_batch_maybe_sent(), "a later batch");
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
    h.outbox
        .settle(&[c[0].0, c[2].0], &[])
        .await
        .expect("settle");
    assert_eq!(positions(&fetch_all(&h).await), [c[1].0]);
    // Settling a row that is already gone changes nothing.
    h.outbox.settle(&[c[0].0], &[]).await.expect("settle again");
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
    h.outbox
        .settle(&[other[0].0], &[head.clone(), behind.clone()])
        .await
        .expect("settle");
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
    h.outbox.settle(&[], &[second]).await.expect("settle");
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
    h.outbox.settle(&[], &[]).await.expect("empty settle");
    let c = commit_creates(&h, 1).await;
    h.outbox.settle(&[], &[]).await.expect("empty settle");
    assert_eq!(positions(&fetch_all(&h).await), [c[0].0]);
}

pub async fn stats_count_pending_and_oldest(h: StoreHandles) {
    let c = commit_creates(&h, 3).await;
    let stats = h.outbox.stats().await.expect("stats");
    assert_eq!(stats.pending, 3);
    let oldest = stats.oldest_created_at.expect("oldest row time");
    let msgs = fetch_all(&h).await;
    assert_eq!(Some(oldest), msgs.iter().map(|m| m.created_at).min());
    h.outbox.settle(&[c[0].0], &[]).await.expect("settle");
    let stats = h.outbox.stats().await.expect("stats");
    assert_eq!(stats.pending, 2);
    assert!(stats.oldest_created_at.expect("oldest") >= oldest);
    h.outbox
        .settle(&[c[1].0, c[2].0], &[])
        .await
        .expect("settle");
    let stats = h.outbox.stats().await.expect("stats");
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.oldest_created_at, None);
}
