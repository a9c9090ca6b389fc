//! Listings at scale: keyset pages (`after` a cursor) and the totals and
//! stats the store keeps as records change instead of counting rows.

use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Arc;

use super::super::fixtures::{at, dlq_record};
use super::super::paging::{after, in_listing_order, walk};
use super::{ids, insert, page};
use crate::ports::{DlqRecord, DlqStats, DlqStatus, DlqStore, NewDlqRecord, SequenceChange, Step};

async fn all(dlq: &Arc<dyn DlqStore>, status: Option<DlqStatus>) -> Vec<DlqRecord> {
    let p = dlq.list(status, page(0, 1000)).await.expect("list");
    assert!(!p.more, "the test's records fit one page");
    p.content
}

async fn apply(dlq: &Arc<dyn DlqStore>, t: i64, step: Step) {
    let change = SequenceChange {
        at: at(t),
        guards: vec![],
        steps: vec![step],
    };
    dlq.apply(&change).await.expect("apply");
}

fn set_status(event_id: &str, to: DlqStatus) -> Step {
    Step::SetStatus {
        event_ids: vec![event_id.to_owned()],
        from: DlqStatus::ALL.to_vec(),
        to,
        result: format!("set to {}", to.as_str()),
        failure_class: None,
        count_attempt: true,
    }
}

/// Records at 7 instants (so several share one), every third FAILED.
async fn seeded(dlq: &Arc<dyn DlqStore>, n: i64) -> Vec<NewDlqRecord> {
    let records: Vec<NewDlqRecord> = (0..n)
        .map(|i| dlq_record(&format!("agg-{i}"), 1, None, at((i % 7) * 1_000)))
        .collect();
    assert_eq!(insert(dlq, &records).await, records.len());
    for r in records.iter().step_by(3) {
        apply(dlq, 1, set_status(&r.event_id, DlqStatus::Failed)).await;
    }
    records
}

pub async fn keyset_pages_cover_every_record_once_in_order(dlq: Arc<dyn DlqStore>) {
    seeded(&dlq, 23).await;
    for status in [None, Some(DlqStatus::Pending), Some(DlqStatus::Failed)] {
        let expected = all(&dlq, status).await;
        assert!(in_listing_order(&expected), "newest failure first, then id");
        let total = expected.len() as u64;
        for size in [1, 4, 5, 23, 100] {
            let walked = walk(size, total, 30, |req| {
                let dlq = dlq.clone();
                async move { dlq.list_page(status, req).await.expect("page") }
            })
            .await;
            assert_eq!(ids(&walked), ids(&expected), "{status:?}, size {size}");
        }
    }
    // Pages by number say whether another follows, too.
    let first = dlq.list(None, page(0, 5)).await.expect("page");
    assert!(first.more && first.next().is_some());
    let last = dlq.list(None, page(4, 5)).await.expect("page");
    assert_eq!((last.content.len(), last.next()), (3, None));
    // A cursor past the oldest record: an empty last page.
    let oldest = all(&dlq, None).await.pop().expect("a record");
    let p = dlq
        .list_page(None, after(Some(crate::ports::Keyed::cursor(&oldest)), 5))
        .await
        .expect("page");
    assert!(p.content.is_empty() && p.next().is_none());
    assert_eq!(p.total_elements, 23);
}

pub async fn a_keyset_walk_neither_skips_nor_repeats_records_that_stay(dlq: Arc<dyn DlqStore>) {
    let records = seeded(&dlq, 20).await;
    let mut stayed: HashSet<String> = records.iter().map(|r| r.event_id.clone()).collect();
    let mut seen: Vec<DlqRecord> = Vec::new();
    let mut cursor = None;
    for round in 0i64.. {
        let p = dlq.list_page(None, after(cursor, 4)).await.expect("page");
        seen.extend(p.content.iter().cloned());
        cursor = p.next();
        if cursor.is_none() {
            break;
        }
        assert!(round < 20, "the walk ends");
        // Between pages: newer and older records arrive, records change
        // status (their place stays), and resolved ones are purged.
        let newer = dlq_record(&format!("new-{round}"), 1, None, at(10_000 + round));
        let older = dlq_record(&format!("old-{round}"), 1, None, at(-1_000 - round));
        insert(&dlq, &[newer, older]).await;
        let seen_ids: HashSet<&str> = seen.iter().map(|r| r.event_id.as_str()).collect();
        let unseen: Vec<&NewDlqRecord> = records
            .iter()
            .filter(|r| !seen_ids.contains(r.event_id.as_str()) && stayed.contains(&r.event_id))
            .collect();
        if let Some(r) = seen.first() {
            apply(&dlq, 2, set_status(&r.event_id, DlqStatus::Skipped)).await;
        }
        if let [changed, gone, ..] = unseen[..] {
            apply(&dlq, 2, set_status(&changed.event_id, DlqStatus::Failed)).await;
            apply(&dlq, 2, set_status(&gone.event_id, DlqStatus::Replayed)).await;
            // Only `gone` (and the first seen one, skipped) were resolved.
            dlq.purge_resolved(at(3), 100).await.expect("purge");
            stayed.remove(&gone.event_id);
            if let Some(r) = seen.first() {
                stayed.remove(&r.event_id);
            }
        }
    }
    assert!(
        in_listing_order(&seen),
        "the walk keeps the listing's order"
    );
    let mut counted: HashMap<&str, usize> = HashMap::new();
    for r in &seen {
        *counted.entry(r.event_id.as_str()).or_default() += 1;
    }
    assert!(counted.values().all(|n| *n == 1), "no record twice");
    for id in &stayed {
        assert_eq!(
            counted.get(id.as_str()),
            Some(&1),
            "{id} stayed: listed once"
        );
    }
    assert!(stayed.len() >= 10, "most records stayed: {}", stayed.len());
}

/// A small deterministic generator (the suites need no `rand`).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// The stats as counted from the rows themselves.
fn counted(rows: &[DlqRecord]) -> DlqStats {
    let of = |s: DlqStatus| rows.iter().filter(|r| r.status == s).count() as u64;
    DlqStats {
        pending_count: of(DlqStatus::Pending),
        replayed_count: of(DlqStatus::Replayed),
        failed_count: of(DlqStatus::Failed),
        skipped_count: of(DlqStatus::Skipped),
        total_count: rows.len() as u64,
        blocked_count: rows
            .iter()
            .filter(|r| r.status == DlqStatus::Pending && r.blocked_by.is_some())
            .count() as u64,
        oldest_pending_failure_time: rows
            .iter()
            .filter(|r| r.status.is_unresolved())
            .map(|r| r.failure_time)
            .min(),
    }
}

async fn assert_counts_are_real(dlq: &Arc<dyn DlqStore>, when: &str) {
    let rows = all(dlq, None).await;
    assert_eq!(dlq.stats().await.expect("stats"), counted(&rows), "{when}");
    let total = dlq
        .list(None, page(0, 1))
        .await
        .expect("list")
        .total_elements;
    assert_eq!(total, rows.len() as u64, "{when}: listing total");
    for s in DlqStatus::ALL {
        let p = dlq.list(Some(s), page(0, 1)).await.expect("list");
        let real = rows.iter().filter(|r| r.status == s).count() as u64;
        assert_eq!(p.total_elements, real, "{when}: total of {s:?}");
    }
}

pub async fn counters_equal_a_real_count_after_random_changes(dlq: Arc<dyn DlqStore>) {
    assert_counts_are_real(&dlq, "empty").await;
    let mut rng = Lcg(11);
    let mut known: Vec<String> = Vec::new();
    let pick = |rng: &mut Lcg, known: &[String]| known[rng.below(known.len())].clone();
    for op in 0..160i64 {
        let t = 10 + op;
        let choice = if known.len() < 4 { 0 } else { rng.below(7) };
        match choice {
            0 | 6 => {
                let n = 1 + rng.below(3);
                let mut batch = Vec::new();
                for _ in 0..n {
                    let head =
                        (!known.is_empty() && rng.below(2) == 0).then(|| pick(&mut rng, &known));
                    let r = dlq_record(
                        &format!("agg-{}", rng.below(6)),
                        1,
                        head.as_deref(),
                        at(rng.below(50) as i64 * 100),
                    );
                    known.push(r.event_id.clone());
                    batch.push(r);
                }
                insert(&dlq, &batch).await;
            }
            1 => {
                let to = DlqStatus::ALL[rng.below(4)];
                apply(&dlq, t, set_status(&pick(&mut rng, &known), to)).await;
            }
            2 => {
                let event_id = pick(&mut rng, &known);
                apply(&dlq, t, Step::MakeHead { event_id }).await;
            }
            3 => {
                let (from, to) = (pick(&mut rng, &known), pick(&mut rng, &known));
                apply(&dlq, t, Step::MoveHeld { from, to }).await;
            }
            4 => {
                let reopen = Step::Reopen {
                    event_id: pick(&mut rng, &known),
                    reason: "failed again".into(),
                    failure_time: at(t * 100),
                    origin: None,
                };
                apply(&dlq, t, reopen).await;
            }
            _ => {
                let limit = 1 + rng.below(3);
                dlq.purge_resolved(at(t), limit).await.expect("purge");
            }
        }
        if op % 20 == 19 {
            assert_counts_are_real(&dlq, &format!("after operation {op}")).await;
        }
    }
    let rows = all(&dlq, None).await;
    let stats = dlq.stats().await.expect("stats");
    assert!(
        stats.blocked_count > 0 && stats.replayed_count + stats.skipped_count > 0,
        "the mix reached held and resolved records: {stats:?}"
    );
    assert!(rows.len() < known.len(), "the mix purged records");
}

pub async fn counters_stay_exact_under_concurrent_writers(dlq: Arc<dyn DlqStore>) {
    // Writers that park, replay and purge at once (on MySQL they meet on
    // the counter rows: a lost deadlock is retried, never miscounted).
    let writers = (0..4).map(|w| {
        let dlq = dlq.clone();
        tokio::spawn(async move {
            for round in 0..6i64 {
                let batch: Vec<NewDlqRecord> = (0..4)
                    .map(|i| dlq_record(&format!("w{w}-{round}-{i}"), 1, None, at(round * 10 + i)))
                    .collect();
                insert(&dlq, &batch).await;
                let ids: Vec<String> = batch.iter().map(|r| r.event_id.clone()).collect();
                let step = Step::SetStatus {
                    event_ids: ids[..2].to_vec(),
                    from: DlqStatus::ALL.to_vec(),
                    to: DlqStatus::Replayed,
                    result: "replayed".into(),
                    failure_class: None,
                    count_attempt: true,
                };
                apply(&dlq, 1, step).await;
                apply(&dlq, 1, set_status(&ids[2], DlqStatus::Failed)).await;
                dlq.purge_resolved(at(2), 1).await.expect("purge");
            }
        })
    });
    for w in writers.collect::<Vec<_>>() {
        w.await.expect("writer");
    }
    assert_counts_are_real(&dlq, "after concurrent writers").await;
    let stats = dlq.stats().await.expect("stats");
    assert_eq!(stats.failed_count, 24, "{stats:?}");
}
