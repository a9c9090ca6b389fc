//! Contract of [`EventBus`](crate::ports::EventBus): acknowledged publishes,
//! per-key order, consumer groups with at-least-once delivery and committed
//! offsets. Every case uses its own topics and groups.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fixtures::{message, poll_n, unique_name};
use crate::ports::{BusMessage, Delivery, EventBus, PARKED_AT};

async fn publish_ok(bus: &Arc<dyn EventBus>, msgs: &[BusMessage]) {
    let results = bus.publish(msgs).await;
    assert_eq!(results.len(), msgs.len(), "one result per message");
    for (i, r) in results.iter().enumerate() {
        assert!(r.is_ok(), "message {i} not acknowledged: {r:?}");
    }
}

fn payloads(ds: &[Delivery]) -> Vec<String> {
    ds.iter()
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect()
}

fn payloads_of(ms: &[BusMessage]) -> Vec<String> {
    ms.iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

pub async fn check_succeeds(bus: Arc<dyn EventBus>) {
    let desc = bus.check(Duration::from_secs(10)).await.expect("check");
    assert!(!desc.is_empty(), "check describes the bus");
}

pub async fn publish_then_subscribe_receives_in_order(bus: Arc<dyn EventBus>) {
    let topic = unique_name("orders");
    let msgs: Vec<BusMessage> = (0..5).map(|i| message(&topic, "order-1", i)).collect();
    publish_ok(&bus, &msgs).await;

    let mut sub = bus
        .subscribe(&unique_name("group"), &topic)
        .await
        .expect("subscribe");
    let got = poll_n(&mut sub, 5).await;
    assert_eq!(payloads(&got), payloads_of(&msgs), "all messages, in order");
    for (d, m) in got.iter().zip(&msgs) {
        assert_eq!(d.topic, topic);
        assert_eq!(d.key.as_deref(), Some("order-1"));
        assert_eq!(d.payload, m.payload);
        for (k, v) in &m.headers {
            assert_eq!(d.header(k), Some(v.as_str()), "header {k} kept");
        }
    }
    assert!(
        got.windows(2).all(|w| w[0].offset < w[1].offset),
        "offsets increase"
    );
    let more = sub
        .poll(10, Duration::from_millis(300))
        .await
        .expect("poll");
    assert!(more.is_empty(), "nothing is returned twice: {more:?}");
}

pub async fn per_key_order_across_publish_calls(bus: Arc<dyn EventBus>) {
    let topic = unique_name("orders");
    let keys = ["order-a", "order-b", "order-c"];
    let mut sent: Vec<BusMessage> = Vec::new();
    for round in 0..4 {
        let batch: Vec<BusMessage> = keys.iter().map(|k| message(&topic, k, round)).collect();
        publish_ok(&bus, &batch).await;
        sent.extend(batch);
    }
    let mut sub = bus
        .subscribe(&unique_name("group"), &topic)
        .await
        .expect("subscribe");
    let got = poll_n(&mut sub, sent.len()).await;
    assert_eq!(got.len(), sent.len());
    for k in keys {
        let expected: Vec<String> = payloads_of(
            &sent
                .iter()
                .filter(|m| m.key == k)
                .cloned()
                .collect::<Vec<_>>(),
        );
        let received: Vec<String> = payloads(
            &got.iter()
                .filter(|d| d.key.as_deref() == Some(k))
                .cloned()
                .collect::<Vec<_>>(),
        );
        assert_eq!(received, expected, "order of key {k}");
    }
}

pub async fn uncommitted_messages_are_delivered_again(bus: Arc<dyn EventBus>) {
    let topic = unique_name("orders");
    let group = unique_name("group");
    let msgs: Vec<BusMessage> = (0..3).map(|i| message(&topic, "k", i)).collect();
    publish_ok(&bus, &msgs).await;
    {
        let mut sub = bus.subscribe(&group, &topic).await.expect("subscribe");
        let got = poll_n(&mut sub, 3).await;
        assert_eq!(got.len(), 3);
        // Dropped without committing (a crash before processing finished).
    }
    let mut again = bus.subscribe(&group, &topic).await.expect("subscribe");
    let got = poll_n(&mut again, 3).await;
    assert_eq!(
        payloads(&got),
        payloads_of(&msgs),
        "delivered again, at least once"
    );
}

pub async fn new_subscription_starts_after_committed_offset(bus: Arc<dyn EventBus>) {
    let topic = unique_name("orders");
    let group = unique_name("group");
    let msgs: Vec<BusMessage> = (0..5).map(|i| message(&topic, "k", i)).collect();
    publish_ok(&bus, &msgs).await;
    {
        let mut sub = bus.subscribe(&group, &topic).await.expect("subscribe");
        let got = poll_n(&mut sub, 5).await;
        assert_eq!(got.len(), 5);
        sub.commit(&got[2]).await.expect("commit");
    }
    let mut next = bus.subscribe(&group, &topic).await.expect("subscribe");
    let got = poll_n(&mut next, 2).await;
    assert_eq!(
        payloads(&got),
        payloads_of(&msgs[3..]),
        "resumes right after the committed message"
    );
    next.commit(&got[1]).await.expect("commit");
    drop(next);

    // Messages published later reach the group, and only those.
    let later = vec![message(&topic, "k", 5)];
    publish_ok(&bus, &later).await;
    let mut last = bus.subscribe(&group, &topic).await.expect("subscribe");
    let got = poll_n(&mut last, 1).await;
    assert_eq!(payloads(&got), payloads_of(&later));
    let more = last
        .poll(10, Duration::from_millis(300))
        .await
        .expect("poll");
    assert!(more.is_empty(), "{more:?}");
}

pub async fn groups_are_independent(bus: Arc<dyn EventBus>) {
    let topic = unique_name("orders");
    let msgs: Vec<BusMessage> = (0..3).map(|i| message(&topic, "k", i)).collect();
    publish_ok(&bus, &msgs).await;
    let (ga, gb) = (unique_name("group-a"), unique_name("group-b"));
    {
        let mut a = bus.subscribe(&ga, &topic).await.expect("subscribe");
        let got = poll_n(&mut a, 3).await;
        assert_eq!(got.len(), 3);
        a.commit(&got[2]).await.expect("commit");
    }
    let mut b = bus.subscribe(&gb, &topic).await.expect("subscribe");
    let got = poll_n(&mut b, 3).await;
    assert_eq!(
        payloads(&got),
        payloads_of(&msgs),
        "another group's commit does not move this group"
    );
}

pub async fn topics_are_independent(bus: Arc<dyn EventBus>) {
    let (t1, t2) = (unique_name("orders"), unique_name("orders-dlq"));
    let m1: Vec<BusMessage> = (0..2).map(|i| message(&t1, "k", i)).collect();
    let m2: Vec<BusMessage> = (0..3).map(|i| message(&t2, "k", 10 + i)).collect();
    // One call may mix topics.
    let mixed = vec![m1[0].clone(), m2[0].clone(), m2[1].clone(), m1[1].clone()];
    publish_ok(&bus, &mixed).await;
    publish_ok(&bus, &m2[2..]).await;
    let group = unique_name("group");
    let mut s1 = bus.subscribe(&group, &t1).await.expect("subscribe");
    let got1 = poll_n(&mut s1, 2).await;
    assert_eq!(payloads(&got1), payloads_of(&m1));
    assert!(got1.iter().all(|d| d.topic == t1));
    let more = s1.poll(10, Duration::from_millis(300)).await.expect("poll");
    assert!(more.is_empty(), "no message of another topic: {more:?}");
    let mut s2 = bus.subscribe(&group, &t2).await.expect("subscribe");
    let got2 = poll_n(&mut s2, 3).await;
    assert_eq!(payloads(&got2), payloads_of(&m2));
    assert!(got2.iter().all(|d| d.topic == t2));
}

pub async fn poll_without_messages_returns_empty_after_wait(bus: Arc<dyn EventBus>) {
    let topic = unique_name("orders");
    // A published message on another topic must not wake this one early.
    publish_ok(&bus, &[message(&unique_name("other"), "k", 0)]).await;
    let mut sub = bus
        .subscribe(&unique_name("group"), &topic)
        .await
        .expect("subscribe");
    let wait = Duration::from_millis(400);
    let started = Instant::now();
    let got = sub.poll(10, wait).await.expect("poll");
    let took = started.elapsed();
    assert!(got.is_empty(), "{got:?}");
    assert!(took >= wait / 2, "returned after {took:?}, before the wait");
    assert!(
        took < wait + Duration::from_secs(10),
        "returned after {took:?}, long after the wait"
    );
}

pub async fn poll_wakes_on_publish(bus: Arc<dyn EventBus>) {
    let topic = unique_name("orders");
    let mut sub = bus
        .subscribe(&unique_name("group"), &topic)
        .await
        .expect("subscribe");
    // Let a real consumer join before the message exists.
    let _ = sub
        .poll(10, Duration::from_millis(200))
        .await
        .expect("poll");
    let publisher = bus.clone();
    let t = topic.clone();
    let handle = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        publisher.publish(&[message(&t, "k", 0)]).await
    });
    let wait = Duration::from_secs(20);
    let started = Instant::now();
    let mut got = Vec::new();
    while got.is_empty() && started.elapsed() < wait {
        got = sub.poll(10, wait).await.expect("poll");
    }
    let took = started.elapsed();
    let published = handle.await.expect("publisher task");
    assert!(published.iter().all(Result::is_ok), "{published:?}");
    assert_eq!(got.len(), 1);
    // Generous for a real broker, whose first group join alone can take
    // seconds; a poll that sat out its whole `wait` would take 20 s.
    assert!(
        took < Duration::from_secs(10),
        "a waiting poll returns soon after a publish, took {took:?}"
    );
}

/// `find_published` names exactly the asked messages that are on their
/// topic, by event id, with or without a send time to start from.
pub async fn find_published_names_what_is_on_the_topic(bus: Arc<dyn EventBus>) {
    let topic = unique_name("orders");
    let other = unique_name("orders");
    let stamped = |mut m: BusMessage| {
        m.headers
            .push(("ce_id".to_owned(), format!("id-{}", unique_name("e"))));
        m.headers
            .push(("ce_time".to_owned(), crate::domain::now().to_rfc3339()));
        m
    };
    let sent_a = stamped(message(&topic, "order-1", 0));
    let sent_b = message(&topic, "order-2", 0);
    let elsewhere = stamped(message(&other, "order-3", 0));
    let never = stamped(message(&topic, "order-1", 1));
    publish_ok(&bus, &[sent_a.clone(), sent_b.clone()]).await;
    publish_ok(&bus, std::slice::from_ref(&elsewhere)).await;

    // Asked on the wrong topic, `elsewhere` is not there.
    let mut misplaced = elsewhere.clone();
    misplaced.topic = topic.clone();
    let asked = [sent_a.clone(), sent_b.clone(), never.clone(), misplaced];
    let found = bus.find_published(&asked).await.expect("find_published");
    let id = |m: &BusMessage| m.event_id().expect("id").to_owned();
    let expected: std::collections::HashSet<String> = [id(&sent_a), id(&sent_b)].into();
    assert_eq!(found, expected, "the published ones, by ce_id or eventId");
    assert!(bus
        .find_published(&[])
        .await
        .expect("nothing asked")
        .is_empty());
}

/// A replayed DLQ message says when its last earlier attempt was made
/// (`orders_parked_at`): the look-up for it reads the topic up to then (plus
/// the clock margin), not what was published afterwards, so the look-ups of
/// a large drain do not grow with what the drain itself published.
pub async fn find_published_reads_no_further_than_the_parked_time(bus: Arc<dyn EventBus>) {
    let topic = unique_name("orders");
    let mut sent = message(&topic, "order-1", 0);
    sent.headers
        .push(("ce_id".to_owned(), unique_name("event")));
    publish_ok(&bus, std::slice::from_ref(&sent)).await;
    let id = sent.event_id().expect("id").to_owned();
    let parked = |ago: chrono::TimeDelta| {
        let mut m = sent.clone();
        let at = crate::domain::now() - ago;
        m.headers.push((PARKED_AT.to_owned(), at.to_rfc3339()));
        m
    };
    let found = bus
        .find_published(&[parked(chrono::TimeDelta::zero())])
        .await
        .expect("look-up");
    assert!(found.contains(&id), "sent before the parked time: found");
    let found = bus
        .find_published(&[parked(chrono::TimeDelta::hours(1))])
        .await
        .expect("look-up");
    assert!(
        found.is_empty(),
        "sent long after the parked time: not read, so not found"
    );
}

/// `lag` counts the messages after the member's position.
pub async fn lag_counts_what_is_not_consumed(bus: Arc<dyn EventBus>) {
    let topic = unique_name("orders");
    let first: Vec<BusMessage> = (0..3).map(|i| message(&topic, "order-1", i)).collect();
    publish_ok(&bus, &first).await;
    let mut sub = bus
        .subscribe(&unique_name("group"), &topic)
        .await
        .expect("subscribe");
    let got = poll_n(&mut sub, 3).await;
    assert_eq!(got.len(), 3);
    sub.commit(got.last().expect("one")).await.expect("commit");
    assert_eq!(sub.lag().await.expect("lag"), 0, "everything consumed");

    // One per call: Tansu 0.6 answers the high watermark as the last record
    // batch's base offset + 1, so only single-record batches measure exactly
    // there (Kafka counts every record).
    for i in 3..5 {
        publish_ok(&bus, &[message(&topic, "order-1", i)]).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lag = sub.lag().await.expect("lag");
        if lag == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "lag {lag}, expected 2");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rest = poll_n(&mut sub, 2).await;
    assert_eq!(rest.len(), 2);
    assert_eq!(sub.lag().await.expect("lag"), 0, "consumed again");
}
