//! Contract of [`EventStore`](crate::ports::EventStore): atomic commits with
//! optimistic concurrency, exact round trips, streams and global positions.

use std::collections::HashSet;

use uuid::Uuid;

use super::fixtures::{
    at, cancel, confirm, create, create_with_id, dec, sample_total, transition, with_key,
};
use super::StoreHandles;
use crate::domain::{fold, now, EventEnvelope, Order, OrderStatus, RecordedEvent, Transition};
use crate::ports::{Commit, CommitError, StreamBound};

/// Commits one commit in its own batch.
pub async fn commit_one(h: &StoreHandles, c: Commit) -> Result<Vec<i64>, CommitError> {
    let mut results = h
        .events
        .commit_batch(vec![c])
        .await
        .expect("the batch transaction itself must not fail");
    assert_eq!(results.len(), 1, "one result per commit");
    results.remove(0)
}

/// Commits and returns the order's new state, panicking on failure.
pub async fn committed(h: &StoreHandles, c: Commit) -> Order {
    let state = c.state.clone();
    commit_one(h, c).await.expect("commit must succeed");
    state
}

async fn all_events(h: &StoreHandles) -> Vec<RecordedEvent> {
    h.events.read_all(0, 100_000).await.expect("read_all")
}

async fn outbox_event_ids(h: &StoreHandles) -> HashSet<Uuid> {
    super::outbox::fetch_all(h)
        .await
        .into_iter()
        .map(|m| m.envelope.event_id)
        .collect()
}

async fn stream(h: &StoreHandles, id: Uuid, bound: StreamBound) -> Vec<RecordedEvent> {
    h.events
        .load_stream(&id.to_string(), bound)
        .await
        .expect("load_stream")
}

/// Asserts that none of `commit`'s events left a row anywhere.
async fn assert_no_trace(h: &StoreHandles, commit: &Commit) {
    let stored = all_events(h).await;
    let outbox = super::outbox::fetch_all(h).await;
    // Matching by id AND aggregate/version: a duplicate-event-id case reuses
    // an id that legitimately exists on another aggregate.
    let same = |a: &EventEnvelope, b: &EventEnvelope| {
        a == b
            || (a.event_id == b.event_id
                && a.aggregate_id == b.aggregate_id
                && a.version == b.version)
    };
    for e in &commit.events {
        assert!(
            !stored.iter().any(|r| same(&r.envelope, e)),
            "event {} of a rejected commit was stored",
            e.event_id
        );
        assert!(
            !outbox.iter().any(|m| same(&m.envelope, e)),
            "event {} of a rejected commit left an outbox row",
            e.event_id
        );
    }
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.envelope.version).collect()
}

pub async fn empty_store_has_nothing(h: StoreHandles) {
    assert_eq!(h.events.head_position().await.expect("head"), 0);
    assert!(all_events(&h).await.is_empty());
    let id = Uuid::now_v7();
    assert_eq!(h.events.load_order(id).await.expect("load_order"), None);
    assert!(stream(&h, id, StreamBound::All).await.is_empty());
    assert_eq!(
        h.events
            .find_idempotency("no-such-key")
            .await
            .expect("find"),
        None
    );
}

pub async fn empty_batch_is_ok(h: StoreHandles) {
    let r = h
        .events
        .commit_batch(Vec::new())
        .await
        .expect("empty batch");
    assert!(r.is_empty());
    assert_eq!(h.events.head_position().await.expect("head"), 0);
}

pub async fn commit_then_load_round_trips_exactly(h: StoreHandles) {
    let c = create("cust-1", "rest-1", at(0));
    let positions = commit_one(&h, c.clone()).await.expect("commit");
    assert_eq!(positions.len(), 1, "one position per event");
    assert!(positions[0] > 0, "positions start above 0");

    let loaded = h
        .events
        .load_order(c.state.id)
        .await
        .expect("load_order")
        .expect("order exists");
    assert_eq!(loaded, c.state, "current state round trip");
    assert_eq!(loaded.total_amount, sample_total());
    assert_eq!(loaded.items[0].price, dec("12.50"));
    assert_eq!(loaded.items[1].price, dec("0.10"));
    assert_eq!(loaded.items[1].name, "Mint (ünïcode ✓)");
    assert_eq!(loaded.created_at, at(0), "microseconds kept");
    let names: Vec<&str> = loaded.items.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["Pizza Margherita", "Mint (ünïcode ✓)", "Soda"],
        "item order kept"
    );

    let events = stream(&h, c.state.id, StreamBound::All).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].position, positions[0]);
    assert_eq!(events[0].envelope, c.events[0], "envelope round trip");
    assert_eq!(
        events[0].envelope.data["items"][0]["price"],
        serde_json::json!("12.50"),
        "decimal text kept in event data"
    );
    assert_eq!(
        fold(events.iter().map(|e| &e.envelope)).expect("fold"),
        Some(c.state.clone())
    );
    assert_eq!(all_events(&h).await, events, "read_all sees the same event");

    // A wall-clock timestamp (microsecond precision) round trips too.
    let c2 = create("cust-2", "rest-1", now());
    commit_one(&h, c2.clone()).await.expect("commit");
    assert_eq!(
        h.events.load_order(c2.state.id).await.expect("load"),
        Some(c2.state.clone())
    );
    assert_eq!(
        stream(&h, c2.state.id, StreamBound::All).await[0].envelope,
        c2.events[0]
    );
}

pub async fn optional_fields_round_trip(h: StoreHandles) {
    let a = committed(&h, create("cust-1", "rest-1", at(0))).await;
    let mut confirm_a = transition(&a, &[confirm("pay-123")], at(10));
    confirm_a.events[0].causation_id = Some("cmd-42".into());
    confirm_a.events[0].correlation_id = None;
    let a2 = committed(&h, confirm_a.clone()).await;
    assert_eq!(a2.payment_id.as_deref(), Some("pay-123"));
    assert_eq!(h.events.load_order(a.id).await.expect("load"), Some(a2));
    let events = stream(&h, a.id, StreamBound::All).await;
    assert_eq!(events[1].envelope, confirm_a.events[0]);
    assert_eq!(events[1].envelope.causation_id.as_deref(), Some("cmd-42"));
    assert_eq!(events[1].envelope.correlation_id, None);
    assert!(events[0].envelope.correlation_id.is_some());

    let b = committed(&h, create("cust-1", "rest-1", at(1))).await;
    let b2 = committed(&h, transition(&b, &[cancel(Some("too slow"))], at(11))).await;
    let c = committed(&h, create("cust-1", "rest-1", at(2))).await;
    let c2 = committed(&h, transition(&c, &[cancel(None)], at(12))).await;
    let loaded_b = h.events.load_order(b.id).await.expect("load").expect("b");
    let loaded_c = h.events.load_order(c.id).await.expect("load").expect("c");
    assert_eq!(loaded_b, b2);
    assert_eq!(loaded_b.cancellation_reason.as_deref(), Some("too slow"));
    assert_eq!(loaded_b.payment_id, None);
    assert_eq!(loaded_c, c2);
    assert_eq!(loaded_c.cancellation_reason, None);
    assert_eq!(loaded_c.status, OrderStatus::Cancelled);
}

pub async fn transition_commit_updates_current_state(h: StoreHandles) {
    let v1 = committed(&h, create("cust-1", "rest-1", at(0))).await;
    let commit = transition(&v1, &[confirm("pay-1")], at(5));
    assert_eq!(commit.expected_version, 1);
    assert_eq!(commit.events[0].version, 2);
    let v2 = committed(&h, commit).await;
    let loaded = h
        .events
        .load_order(v1.id)
        .await
        .expect("load")
        .expect("order");
    assert_eq!(loaded, v2);
    assert_eq!(loaded.status, OrderStatus::Confirmed);
    assert_eq!(loaded.version, 2);
    assert_eq!(loaded.updated_at, at(5));
    assert_eq!(loaded.created_at, at(0));

    let v3 = committed(&h, transition(&v2, &[Transition::Prepare], at(6))).await;
    assert_eq!(h.events.load_order(v1.id).await.expect("load"), Some(v3));
    assert_eq!(
        versions(&stream(&h, v1.id, StreamBound::All).await),
        [1, 2, 3]
    );
}

pub async fn multi_event_commit_gets_increasing_positions(h: StoreHandles) {
    let v1 = create("cust-1", "rest-1", at(0));
    let first = commit_one(&h, v1.clone()).await.expect("create");
    let commit = transition(
        &v1.state,
        &[confirm("pay-1"), Transition::Prepare, Transition::MarkReady],
        at(10),
    );
    let positions = commit_one(&h, commit.clone()).await.expect("commit");
    assert_eq!(positions.len(), 3, "one position per event");
    assert!(positions[0] > first[0]);
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let loaded = h.events.load_order(v1.state.id).await.expect("load");
    assert_eq!(loaded, Some(commit.state.clone()));
    assert_eq!(commit.state.status, OrderStatus::Ready);
    let events = stream(&h, v1.state.id, StreamBound::All).await;
    assert_eq!(versions(&events), [1, 2, 3, 4]);
    let stored: Vec<i64> = events[1..].iter().map(|e| e.position).collect();
    assert_eq!(stored, positions);
}

pub async fn positions_increase_within_and_across_batches(h: StoreHandles) {
    let batch: Vec<Commit> = (0..5)
        .map(|i| create(&format!("cust-{i}"), "rest-1", at(i)))
        .collect();
    let r = h.events.commit_batch(batch).await.expect("batch");
    let first: Vec<i64> = r
        .into_iter()
        .map(|p| p.expect("commit")[0])
        .collect::<Vec<_>>();
    assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
    let batch: Vec<Commit> = (0..3)
        .map(|i| create(&format!("cust-{i}"), "rest-2", at(10 + i)))
        .collect();
    let second: Vec<i64> = h
        .events
        .commit_batch(batch)
        .await
        .expect("batch")
        .into_iter()
        .map(|p| p.expect("commit")[0])
        .collect();
    assert!(second.windows(2).all(|w| w[0] < w[1]), "{second:?}");
    assert!(second[0] > first[4], "{first:?} then {second:?}");
    assert_eq!(h.events.head_position().await.expect("head"), second[2]);
}

pub async fn concurrent_commits_on_same_version_exactly_one_wins(h: StoreHandles) {
    let v1 = committed(&h, create("cust-1", "rest-1", at(0))).await;
    let a = transition(&v1, &[confirm("pay-a")], at(10));
    let b = transition(&v1, &[cancel(Some("b"))], at(11));
    let (ra, rb) = tokio::join!(commit_one(&h, a.clone()), commit_one(&h, b.clone()));
    let (winner, loser, loser_result) = match (&ra, &rb) {
        (Ok(_), Err(_)) => (&a, &b, rb.clone()),
        (Err(_), Ok(_)) => (&b, &a, ra.clone()),
        _ => panic!("exactly one commit must win: {ra:?} / {rb:?}"),
    };
    assert_eq!(loser_result, Err(CommitError::VersionConflict));
    assert_eq!(
        h.events.load_order(v1.id).await.expect("load"),
        Some(winner.state.clone()),
        "current state is the winner's"
    );
    let events = stream(&h, v1.id, StreamBound::All).await;
    assert_eq!(versions(&events), [1, 2]);
    assert_eq!(events[1].envelope, winner.events[0]);
    assert_no_trace(&h, loser).await;
    assert_eq!(all_events(&h).await.len(), 2);
    assert!(outbox_event_ids(&h)
        .await
        .contains(&winner.events[0].event_id));
}

pub async fn conflict_inside_one_batch_leaves_no_trace(h: StoreHandles) {
    let v1 = committed(&h, create("cust-1", "rest-1", at(0))).await;
    let a = transition(&v1, &[confirm("pay-a")], at(10));
    let b = transition(&v1, &[cancel(None)], at(11));
    let r = h
        .events
        .commit_batch(vec![a.clone(), b.clone()])
        .await
        .expect("batch");
    assert_eq!(r.len(), 2);
    assert!(r[0].is_ok(), "{:?}", r[0]);
    assert_eq!(r[1], Err(CommitError::VersionConflict));
    assert_eq!(
        h.events.load_order(v1.id).await.expect("load"),
        Some(a.state.clone())
    );
    assert_no_trace(&h, &b).await;
    assert_eq!(all_events(&h).await.len(), 2);
    assert_eq!(outbox_event_ids(&h).await.len(), 2);
}

pub async fn batch_with_one_conflict_writes_the_others(h: StoreHandles) {
    let x1 = committed(&h, create("cust-x", "rest-1", at(0))).await;
    let x2 = committed(&h, transition(&x1, &[confirm("pay-x")], at(1))).await;
    let a = create("cust-a", "rest-1", at(2));
    let stale = transition(&x1, &[cancel(Some("stale"))], at(3));
    let c = create("cust-c", "rest-1", at(4));
    let r = h
        .events
        .commit_batch(vec![a.clone(), stale.clone(), c.clone()])
        .await
        .expect("batch");
    assert_eq!(r.len(), 3, "one result per commit");
    let pa = r[0].clone().expect("first commit succeeds");
    assert_eq!(r[1], Err(CommitError::VersionConflict));
    let pc = r[2].clone().expect("third commit succeeds");
    assert!(pa[0] < pc[0], "positions follow batch order");
    assert_eq!(
        h.events.load_order(a.state.id).await.expect("load"),
        Some(a.state.clone())
    );
    assert_eq!(
        h.events.load_order(c.state.id).await.expect("load"),
        Some(c.state.clone())
    );
    assert_eq!(h.events.load_order(x1.id).await.expect("load"), Some(x2));
    assert_no_trace(&h, &stale).await;
    let outbox = outbox_event_ids(&h).await;
    assert!(outbox.contains(&a.events[0].event_id));
    assert!(outbox.contains(&c.events[0].event_id));
    assert_eq!(outbox.len(), 4);
}

pub async fn transition_of_missing_order_conflicts(h: StoreHandles) {
    let never_stored = create("cust-1", "rest-1", at(0)).state;
    let t = transition(&never_stored, &[confirm("pay-1")], at(1));
    assert_eq!(
        commit_one(&h, t.clone()).await,
        Err(CommitError::VersionConflict)
    );
    assert_eq!(
        h.events.load_order(never_stored.id).await.expect("load"),
        None
    );
    assert!(stream(&h, never_stored.id, StreamBound::All)
        .await
        .is_empty());
    assert_eq!(h.events.head_position().await.expect("head"), 0);
    assert!(outbox_event_ids(&h).await.is_empty());
}

pub async fn create_of_existing_order_conflicts(h: StoreHandles) {
    let first = committed(&h, create("cust-1", "rest-1", at(0))).await;
    let again = create_with_id(first.id, "cust-2", "rest-2", at(1));
    assert_eq!(
        commit_one(&h, again.clone()).await,
        Err(CommitError::VersionConflict)
    );
    assert_eq!(
        h.events.load_order(first.id).await.expect("load"),
        Some(first)
    );
    assert_no_trace(&h, &again).await;
    assert_eq!(all_events(&h).await.len(), 1);
}

pub async fn idempotency_key_taken_writes_nothing(h: StoreHandles) {
    let a = with_key(create("cust-a", "rest-1", at(0)), "key-1", "fp-a");
    let pa = commit_one(&h, a.clone())
        .await
        .expect("first use of the key");
    assert_eq!(
        h.events.find_idempotency("key-1").await.expect("find"),
        a.idempotency.clone(),
        "idempotency record round trip"
    );

    let b = with_key(create("cust-b", "rest-1", at(1)), "key-1", "fp-b");
    assert_eq!(
        commit_one(&h, b.clone()).await,
        Err(CommitError::IdempotencyKeyTaken)
    );
    assert_eq!(h.events.load_order(b.state.id).await.expect("load"), None);
    assert!(stream(&h, b.state.id, StreamBound::All).await.is_empty());
    assert_no_trace(&h, &b).await;
    assert_eq!(h.events.head_position().await.expect("head"), pa[0]);
    assert_eq!(
        h.events.find_idempotency("key-1").await.expect("find"),
        a.idempotency.clone(),
        "the first record is kept"
    );

    // Two requests with one key in the same batch: the first wins.
    let c = with_key(create("cust-c", "rest-1", at(2)), "key-2", "fp-c");
    let d = with_key(create("cust-d", "rest-1", at(3)), "key-2", "fp-d");
    let r = h
        .events
        .commit_batch(vec![c.clone(), d.clone()])
        .await
        .expect("batch");
    assert!(r[0].is_ok(), "{:?}", r[0]);
    assert_eq!(r[1], Err(CommitError::IdempotencyKeyTaken));
    assert_eq!(h.events.load_order(d.state.id).await.expect("load"), None);
    assert_no_trace(&h, &d).await;
    let rec = h
        .events
        .find_idempotency("key-2")
        .await
        .expect("find")
        .expect("record");
    assert_eq!(rec.order_id, c.state.id);
    assert_eq!(rec.fingerprint, "fp-c");
    assert_eq!(
        h.events.find_idempotency("key-3").await.expect("find"),
        None
    );
}

pub async fn duplicate_event_id_is_rejected_and_writes_nothing(h: StoreHandles) {
    let a = create("cust-a", "rest-1", at(0));
    commit_one(&h, a.clone()).await.expect("commit");
    let mut b = create("cust-b", "rest-1", at(1));
    b.events[0].event_id = a.events[0].event_id;
    let r = commit_one(&h, b.clone()).await;
    assert!(r.is_err(), "a reused event id must be rejected: {r:?}");
    assert_eq!(h.events.load_order(b.state.id).await.expect("load"), None);
    assert!(stream(&h, b.state.id, StreamBound::All).await.is_empty());
    assert_no_trace(&h, &b).await;
    assert_eq!(all_events(&h).await.len(), 1);
    assert_eq!(outbox_event_ids(&h).await.len(), 1);
}

pub async fn load_stream_bounded_by_version_and_instant(h: StoreHandles) {
    let second = 1_000_000;
    let v1 = committed(&h, create("cust-1", "rest-1", at(0))).await;
    let v2 = committed(&h, transition(&v1, &[confirm("pay-1")], at(second))).await;
    let v3 = committed(&h, transition(&v2, &[Transition::Prepare], at(2 * second))).await;
    // Another order interleaved must not show up.
    committed(&h, create("cust-2", "rest-1", at(second + 1))).await;

    let id = v1.id;
    assert_eq!(versions(&stream(&h, id, StreamBound::All).await), [1, 2, 3]);
    assert_eq!(
        versions(&stream(&h, id, StreamBound::UpToVersion(2)).await),
        [1, 2]
    );
    assert!(stream(&h, id, StreamBound::UpToVersion(0)).await.is_empty());
    assert_eq!(
        versions(&stream(&h, id, StreamBound::UpToVersion(99)).await),
        [1, 2, 3]
    );
    assert_eq!(
        versions(&stream(&h, id, StreamBound::UpToInstant(at(second))).await),
        [1, 2],
        "an event exactly at the instant is included"
    );
    assert_eq!(
        versions(&stream(&h, id, StreamBound::UpToInstant(at(second - 1))).await),
        [1],
        "microsecond precision"
    );
    assert!(stream(&h, id, StreamBound::UpToInstant(at(-1)))
        .await
        .is_empty());
    let as_of_v2 = stream(&h, id, StreamBound::UpToVersion(2)).await;
    assert_eq!(
        fold(as_of_v2.iter().map(|e| &e.envelope)).expect("fold"),
        Some(v2)
    );
    let all = stream(&h, id, StreamBound::All).await;
    assert_eq!(
        fold(all.iter().map(|e| &e.envelope)).expect("fold"),
        Some(v3)
    );
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
}

pub async fn read_all_pages_in_position_order(h: StoreHandles) {
    let mut expected: Vec<(i64, EventEnvelope)> = Vec::new();
    let mut first: Option<Order> = None;
    for i in 0..5 {
        let c = create(&format!("cust-{i}"), "rest-1", at(i));
        let p = commit_one(&h, c.clone()).await.expect("commit");
        expected.push((p[0], c.events[0].clone()));
        first.get_or_insert(c.state);
    }
    let first = first.expect("one order");
    let t = transition(&first, &[confirm("pay")], at(100));
    let p = commit_one(&h, t.clone()).await.expect("commit");
    expected.push((p[0], t.events[0].clone()));

    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = h.events.read_all(after, 2).await.expect("read_all");
        assert!(page.len() <= 2, "limit respected");
        let Some(last) = page.last() else { break };
        after = last.position;
        seen.extend(page);
    }
    let seen: Vec<(i64, EventEnvelope)> =
        seen.into_iter().map(|e| (e.position, e.envelope)).collect();
    assert_eq!(seen, expected, "every event once, in position order");
    let head = h.events.head_position().await.expect("head");
    assert!(h
        .events
        .read_all(head, 10)
        .await
        .expect("read_all")
        .is_empty());
    let tail = h
        .events
        .read_all(expected[3].0, 10)
        .await
        .expect("read_all");
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[0].position, expected[4].0);
}

pub async fn head_position_tracks_last_commit(h: StoreHandles) {
    assert_eq!(h.events.head_position().await.expect("head"), 0);
    let c = create("cust-1", "rest-1", at(0));
    let p = commit_one(&h, c.clone()).await.expect("commit");
    assert_eq!(h.events.head_position().await.expect("head"), p[0]);
    let t = transition(&c.state, &[confirm("p"), Transition::Prepare], at(1));
    let p = commit_one(&h, t).await.expect("commit");
    assert_eq!(h.events.head_position().await.expect("head"), p[1]);
    let stale = transition(&c.state, &[cancel(None)], at(2));
    assert!(commit_one(&h, stale).await.is_err());
    assert_eq!(
        h.events.head_position().await.expect("head"),
        p[1],
        "a failed commit does not move the head"
    );
}

pub async fn ping_succeeds(h: StoreHandles) {
    h.events.ping().await.expect("ping");
}
