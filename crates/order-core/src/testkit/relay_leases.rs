//! Contract of [`RelayLeases`](crate::ports::RelayLeases): partition leases
//! with fencing epochs, judged by the database clock.

use std::time::Duration;

use super::StoreHandles;
use crate::ports::{Fence, Holder, PartitionState};

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(80);
/// Longer than [`SHORT`], with room for a slow database.
const PAST_SHORT: Duration = Duration::from_millis(200);

async fn states(h: &StoreHandles) -> Vec<PartitionState> {
    h.leases.partitions().await.expect("partitions")
}

async fn claim(h: &StoreHandles, p: u32, who: &str, ttl: Duration) -> Option<Fence> {
    let seen = states(h).await[p as usize].fence();
    h.leases
        .claim(seen, Holder::new(who, ttl))
        .await
        .expect("claim")
}

pub async fn the_layout_is_created_once_and_then_wins(h: StoreHandles) {
    assert_eq!(h.leases.layout(4).await.expect("layout"), 4);
    assert_eq!(
        h.leases.layout(8).await.expect("layout"),
        4,
        "stored layout wins"
    );
    let s = states(&h).await;
    assert_eq!(
        s.iter().map(|p| p.partition).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert!(s.iter().all(|p| p.is_free() && p.holder.is_empty()));
}

pub async fn a_partition_is_claimed_once_per_epoch(h: StoreHandles) {
    h.leases.layout(2).await.expect("layout");
    let seen = states(&h).await[1].fence();
    let a = h
        .leases
        .claim(seen, Holder::new("a", LONG))
        .await
        .expect("claim");
    let b = h
        .leases
        .claim(seen, Holder::new("b", LONG))
        .await
        .expect("claim");
    let a = a.expect("the first claim wins");
    assert_eq!(b, None, "the same epoch is claimed once");
    assert_eq!(a.partition, 1);
    assert!(a.epoch > seen.epoch);
    let now = states(&h).await[1].clone();
    assert_eq!(
        (now.holder.as_str(), now.epoch, now.live),
        ("a", a.epoch, true)
    );
    assert_eq!(
        claim(&h, 1, "b", LONG).await,
        None,
        "a live lease is not taken"
    );
}

pub async fn renewal_keeps_only_what_is_still_held(h: StoreHandles) {
    h.leases.layout(2).await.expect("layout");
    let f0 = claim(&h, 0, "a", LONG).await.expect("claim");
    let f1 = claim(&h, 1, "a", LONG).await.expect("claim");
    let kept = h
        .leases
        .renew(&[f0, f1], Holder::new("a", LONG))
        .await
        .expect("renew");
    assert_eq!(sorted(kept), [f0, f1]);
    assert!(h
        .leases
        .renew(&[f0], Holder::new("b", LONG))
        .await
        .expect("renew")
        .is_empty());
    h.leases.release(&[f1], "a").await.expect("release");
    assert_eq!(
        h.leases
            .renew(&[f0, f1], Holder::new("a", LONG))
            .await
            .expect("renew"),
        [f0]
    );
    let b = claim(&h, 1, "b", LONG)
        .await
        .expect("a released partition is free at once");
    assert!(b.epoch > f1.epoch);
    // A stale epoch of the same holder is not renewed either.
    let stale = Fence {
        epoch: f0.epoch - 1,
        ..f0
    };
    assert!(h
        .leases
        .renew(&[stale], Holder::new("a", LONG))
        .await
        .expect("renew")
        .is_empty());
}

pub async fn a_lapsed_lease_is_renewed_until_someone_takes_it(h: StoreHandles) {
    h.leases.layout(1).await.expect("layout");
    let f = claim(&h, 0, "a", SHORT).await.expect("claim");
    tokio::time::sleep(PAST_SHORT).await;
    assert!(!states(&h).await[0].live, "ran out by the database clock");
    assert_eq!(
        h.leases
            .renew(&[f], Holder::new("a", SHORT))
            .await
            .expect("renew"),
        [f]
    );
    tokio::time::sleep(PAST_SHORT).await;
    let b = claim(&h, 0, "b", LONG)
        .await
        .expect("taken over after it lapsed");
    assert_eq!(b.epoch, f.epoch + 1);
    assert!(h
        .leases
        .renew(&[f], Holder::new("a", LONG))
        .await
        .expect("renew")
        .is_empty());
    h.leases
        .release(&[f], "a")
        .await
        .expect("release of a lost lease");
    assert_eq!(
        states(&h).await[0].holder,
        "b",
        "releasing a lost lease changes nothing"
    );
}

pub async fn heartbeats_count_the_live_instances(h: StoreHandles) {
    assert_eq!(
        h.leases
            .heartbeat(Holder::new("a", LONG))
            .await
            .expect("heartbeat"),
        1
    );
    assert_eq!(
        h.leases
            .heartbeat(Holder::new("b", LONG))
            .await
            .expect("heartbeat"),
        2
    );
    assert_eq!(
        h.leases
            .heartbeat(Holder::new("c", SHORT))
            .await
            .expect("heartbeat"),
        3
    );
    assert_eq!(
        h.leases
            .heartbeat(Holder::new("a", LONG))
            .await
            .expect("heartbeat"),
        3,
        "renewal"
    );
    tokio::time::sleep(PAST_SHORT).await;
    assert_eq!(
        h.leases
            .heartbeat(Holder::new("a", LONG))
            .await
            .expect("heartbeat"),
        2,
        "c ran out"
    );
    h.leases.leave("b").await.expect("leave");
    assert_eq!(
        h.leases
            .heartbeat(Holder::new("a", LONG))
            .await
            .expect("heartbeat"),
        1
    );
}

pub async fn repartitioning_waits_for_the_old_leases(h: StoreHandles) {
    h.leases.layout(2).await.expect("layout");
    let old = claim(&h, 0, "a", Duration::from_millis(400))
        .await
        .expect("claim");
    h.leases.repartition(4).await.expect("repartition");
    let s = states(&h).await;
    assert_eq!(s.len(), 4);
    assert!(s.iter().all(|p| p.holder.is_empty() && p.epoch > old.epoch));
    assert!(
        s.iter().all(|p| !p.is_free()),
        "not free while an old lease lives"
    );
    assert_eq!(claim(&h, 3, "b", LONG).await, None);
    assert!(h
        .leases
        .renew(&[old], Holder::new("a", LONG))
        .await
        .expect("renew")
        .is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        claim(&h, 3, "b", LONG).await.is_some(),
        "free once the old lease ran out"
    );
    assert_eq!(h.leases.layout(2).await.expect("layout"), 4);
}

fn sorted(mut v: Vec<Fence>) -> Vec<Fence> {
    v.sort();
    v
}

/// Replay claims and job leases are computed from the database's clock:
/// it answers, and (on the test machine) agrees with ours within a minute.
pub async fn the_database_clock_answers(h: StoreHandles) {
    let db = h.dlq.clock().await.expect("clock");
    let skew = (db - crate::domain::now()).num_seconds().abs();
    assert!(skew < 60, "database clock {db} is {skew} s off");
}
