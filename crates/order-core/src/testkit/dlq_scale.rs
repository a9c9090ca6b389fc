//! The DLQ at a million records (issue #11): what the adapters' ignored
//! scale tests share. The adapter seeds the rows with one fast SQL
//! statement of its own ([`SEEDED`] rows shaped as [`seed_select`] says),
//! shows the plans of the statements below, then times the store's own
//! calls with [`time_listings`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

use super::fixtures::at;
use crate::ports::sql::{dlq, IndexHint, SqlValue, Statement};
use crate::ports::{Cursor, CursorId, DlqStatus, DlqStore, ListRequest, PageRequest};

/// Records the scale tests seed.
pub const SEEDED: i64 = 1_000_000;

/// The budget of one stats call or listing page at [`SEEDED`] records.
pub const BUDGET: Duration = Duration::from_millis(50);

/// The failure time of seeded row `i` (1-based): two rows a second, so
/// listings meet ties.
pub fn seeded_time(i: i64) -> DateTime<Utc> {
    at(0) + TimeDelta::seconds(i / 2)
}

/// What seeded row `i` is: 6 in 10 PENDING heads, 1 PENDING held behind
/// the row before it, 1 each REPLAYED, FAILED, SKIPPED.
pub fn seeded_status(i: i64) -> (DlqStatus, bool) {
    match i % 10 {
        6 => (DlqStatus::Replayed, false),
        7 => (DlqStatus::Failed, false),
        8 => (DlqStatus::Skipped, false),
        9 => (DlqStatus::Pending, true),
        _ => (DlqStatus::Pending, false),
    }
}

/// The statements whose plans the scale tests show: the listing pages
/// (first, after a cursor deep in the table; unfiltered and by status),
/// the stats, and last a deep page by number (its outer query sorts the
/// page's 21 rows, the only sort allowed), read as the adapter's `hint`
/// says.
pub fn planned(hint: IndexHint) -> Vec<(&'static str, Statement)> {
    let first = ListRequest::from(PageRequest { page: 0, size: 20 });
    let offset = ListRequest::from(PageRequest {
        page: 5_000,
        size: 20,
    });
    let deep = ListRequest {
        page: PageRequest { page: 0, size: 20 },
        after: Some(deep_cursor()),
    };
    vec![
        ("list, first page", dlq::list(None, &first, hint).rows),
        ("list after a cursor", dlq::list(None, &deep, hint).rows),
        (
            "list PENDING after a cursor",
            dlq::list(Some(DlqStatus::Pending), &deep, hint).rows,
        ),
        (
            "list FAILED after a cursor",
            dlq::list(Some(DlqStatus::Failed), &deep, hint).rows,
        ),
        (
            "listing total",
            dlq::list(Some(DlqStatus::Failed), &deep, hint).count,
        ),
        ("stats", dlq::stats()),
        (
            "list PENDING by number, page 5000",
            dlq::list(Some(DlqStatus::Pending), &offset, hint).rows,
        ),
    ]
}

/// A cursor half-way through the seeded rows.
fn deep_cursor() -> Cursor {
    let i = SEEDED / 2;
    Cursor {
        at: seeded_time(i),
        id: CursorId::Int(i),
    }
}

/// `stmt` with its values written in, for `EXPLAIN` (`time` writes an
/// instant the adapter's way).
pub fn inline(stmt: &Statement, time: fn(&DateTime<Utc>) -> String) -> String {
    let mut args = stmt.args.iter();
    let mut out = String::new();
    for (i, part) in stmt.sql.split('?').enumerate() {
        if i > 0 {
            out.push_str(&match args.next() {
                Some(SqlValue::Null) | None => "NULL".to_owned(),
                Some(SqlValue::Int(n)) => n.to_string(),
                Some(SqlValue::Text(s)) => format!("'{}'", s.replace('\'', "''")),
                Some(SqlValue::Time(t)) => format!("'{}'", time(t)),
            });
        }
        out.push_str(part);
    }
    out
}

/// The slowest of five runs of `f`.
async fn slowest<F, Fut, T>(mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        f().await;
        worst = worst.max(started.elapsed());
    }
    worst
}

/// Times the store's stats and listing pages on the seeded rows, prints
/// them, checks the counts against the seeding and returns the slowest
/// (a page by number past 100,000 rows excepted: its cost grows with the
/// offset).
pub async fn time_listings(dlq: Arc<dyn DlqStore>, adapter: &str) -> Duration {
    let stats = dlq.stats().await.expect("stats");
    assert_eq!(stats.total_count, SEEDED as u64);
    assert_eq!(stats.pending_count, SEEDED as u64 * 7 / 10);
    assert_eq!(stats.blocked_count, SEEDED as u64 / 10);
    assert_eq!(stats.oldest_pending_failure_time, Some(seeded_time(1)));
    let page = |status: Option<DlqStatus>, req: ListRequest| {
        let dlq = dlq.clone();
        async move { dlq.list_page(status, req).await.expect("page") }
    };
    let first = ListRequest::from(PageRequest { page: 0, size: 20 });
    let offset = ListRequest::from(PageRequest {
        page: 5_000,
        size: 20,
    });
    let deep = ListRequest {
        after: Some(deep_cursor()),
        ..first
    };
    let walked = page(Some(DlqStatus::Failed), deep).await;
    assert_eq!(walked.content.len(), 20);
    assert_eq!(walked.total_elements, SEEDED as u64 / 10);
    let timings = [
        ("stats", slowest(|| dlq.stats()).await),
        ("list, first page", slowest(|| page(None, first)).await),
        (
            "list PENDING, first page",
            slowest(|| page(Some(DlqStatus::Pending), first)).await,
        ),
        (
            "list after a cursor half-way",
            slowest(|| page(None, deep)).await,
        ),
        (
            "list PENDING after a cursor half-way",
            slowest(|| page(Some(DlqStatus::Pending), deep)).await,
        ),
        (
            "list FAILED after a cursor half-way",
            slowest(|| page(Some(DlqStatus::Failed), deep)).await,
        ),
        (
            "list by number, page 5000 (OFFSET 100000)",
            slowest(|| page(None, offset)).await,
        ),
    ];
    for (what, took) in &timings {
        println!("{adapter}, {SEEDED} records: {what}: {took:.1?} (slowest of 5)");
    }
    // Not a listing, but read at every scrape of /metrics: shown, not budgeted.
    let holds = slowest(|| dlq.orphaned_holds()).await;
    println!("{adapter}, {SEEDED} records: orphaned_holds (a /metrics gauge): {holds:.1?}");
    timings[..timings.len() - 1]
        .iter()
        .map(|(_, took)| *took)
        .max()
        .unwrap_or_default()
}
