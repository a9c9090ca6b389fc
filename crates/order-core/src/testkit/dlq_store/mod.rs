//! Contract of [`DlqStore`](crate::ports::DlqStore): deduplicated records,
//! listing and stats, sequence heads and the conditional status changes the
//! replay flow relies on.
//!
//! A directory because the cases outgrew one file. They live in submodules
//! by topic and are re-exported here, since `dlq_store_contract!` names each
//! case as `$crate::testkit::dlq_store::<case>`; this file keeps the helpers
//! they share.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::fixtures::{at, dlq_record};
use crate::app::dlq::sequencing::{self, Changed, SkipDone};
use crate::ports::{
    DlqRecord, DlqStatus, DlqStore, FailureClass, NewDlqRecord, PageRequest, ReplayClaim,
    SequenceChange, Step, StoreError,
};

mod heads;
mod listing;
mod ordering;
mod records;
mod search;
mod skipping;

pub use heads::*;
pub use listing::*;
pub use ordering::*;
pub use records::*;
pub use search::*;
pub use skipping::*;

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

/// `claimant`'s replay claim on `event_id`, taken at `now` until `until`
/// (offsets for [`at`]).
fn claim_of<'a>(event_id: &'a str, claimant: &'a str, now: i64, until: i64) -> ReplayClaim<'a> {
    ReplayClaim {
        event_id,
        claimant,
        now: at(now),
        until: at(until),
    }
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

async fn skip(dlq: &Arc<dyn DlqStore>, event_id: &str, reason: &str, t: i64) -> Changed<SkipDone> {
    sequencing::skip(dlq.as_ref(), event_id, reason, at(t))
        .await
        .expect("skip")
}

/// Marks `event_id` REPLAYED at `t` with no guard at all, as only a broken
/// rule would: whatever is held behind it is orphaned.
async fn resolve_unguarded(dlq: &Arc<dyn DlqStore>, event_id: &str, t: i64) {
    let change = SequenceChange {
        at: at(t),
        guards: vec![],
        steps: vec![Step::SetStatus {
            event_ids: vec![event_id.to_owned()],
            from: sequencing::UNRESOLVED.to_vec(),
            to: DlqStatus::Replayed,
            result: "resolved without a guard".into(),
            failure_class: None,
            count_attempt: false,
        }],
    };
    assert!(dlq.apply(&change).await.expect("apply"));
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
    assert_eq!(
        dlq.orphaned_holds().await.expect("orphaned_holds"),
        0,
        "{when}: the store's own count agrees"
    );
}
