//! Contract of [`ReplayJobStore`](crate::ports::ReplayJobStore): jobs
//! round-trip, list newest first, a lease is exclusive until it lapses,
//! progress and finishing need the lease and a RUNNING job, and a cancel
//! wins over the runner.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::fixtures::at;
use crate::ports::{
    JobCancel, JobCancelled, JobCounters, JobEnd, JobLease, JobProgress, JobStatus, NewReplayJob,
    PageRequest, ReplayJobStore,
};

const SECOND: i64 = 1_000_000;

fn new_job(t: i64) -> NewReplayJob {
    NewReplayJob {
        id: Uuid::now_v7(),
        principal: "ci-key ✓".to_owned(),
        role: "admin".to_owned(),
        filter: json!({ "limit": 10, "eventType": "OrderCreated", "t": t }),
        matched: 7,
        created_at: at(t),
    }
}

async fn create(store: &Arc<dyn ReplayJobStore>, t: i64) -> Uuid {
    store.create_job(&new_job(t)).await.expect("create").id
}

fn counters(n: u64) -> JobCounters {
    JobCounters {
        matched: 7,
        processed: n,
        replayed: n.saturating_sub(1),
        failed: u64::from(n > 0),
        skipped: 0,
        published: 2 * n,
    }
}

/// `runner`'s lease on job `id`, taken at `now` until `until`.
fn lease(id: Uuid, runner: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> JobLease<'_> {
    JobLease {
        id,
        runner,
        now,
        until,
    }
}

fn progress(
    id: Uuid,
    runner: &str,
    counters: JobCounters,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> JobProgress<'_> {
    let lease = lease(id, runner, now, until);
    JobProgress { lease, counters }
}

fn cancel(id: Uuid, message: &str, now: DateTime<Utc>) -> JobCancel<'_> {
    JobCancel { id, message, now }
}

fn end<'a>(
    id: Uuid,
    runner: &'a str,
    status: JobStatus,
    counters: JobCounters,
    message: &'a str,
    now: DateTime<Utc>,
) -> JobEnd<'a> {
    JobEnd {
        id,
        runner,
        status,
        counters,
        message,
        now,
    }
}

pub async fn create_then_get_round_trips(store: Arc<dyn ReplayJobStore>) {
    let new = new_job(5);
    let created = store.create_job(&new).await.expect("create");
    assert_eq!(created.id, new.id);
    assert_eq!(created.status, JobStatus::Running);
    assert_eq!(created.principal, new.principal);
    assert_eq!(created.role, "admin");
    assert_eq!(created.filter, new.filter);
    assert_eq!(
        created.counters,
        JobCounters {
            matched: 7,
            ..JobCounters::default()
        }
    );
    assert_eq!((created.created_at, created.updated_at), (at(5), at(5)));
    assert_eq!(created.finished_at, None);
    assert_eq!((created.runner.clone(), created.lease_until), (None, None));
    assert_eq!(created.message, None);
    let got = store.get_job(new.id).await.expect("get");
    assert_eq!(got, Some(created));
    assert_eq!(store.get_job(Uuid::now_v7()).await.expect("get"), None);
}

pub async fn list_is_newest_first_with_paging(store: Arc<dyn ReplayJobStore>) {
    let empty = store
        .list_jobs(PageRequest { page: 0, size: 10 })
        .await
        .expect("list");
    assert!(empty.content.is_empty());
    assert_eq!(empty.total_elements, 0);
    let a = create(&store, 1).await;
    let b = create(&store, 2).await;
    let c = create(&store, 3).await;
    let first = store
        .list_jobs(PageRequest { page: 0, size: 2 })
        .await
        .expect("list");
    let ids: Vec<Uuid> = first.content.iter().map(|j| j.id).collect();
    assert_eq!(ids, vec![c, b]);
    assert_eq!((first.total_elements, first.total_pages), (3, 2));
    let second = store
        .list_jobs(PageRequest { page: 1, size: 2 })
        .await
        .expect("list");
    assert_eq!(
        second.content.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![a]
    );
}

pub async fn a_lease_is_exclusive_until_it_lapses(store: Arc<dyn ReplayJobStore>) {
    let id = create(&store, 0).await;
    assert_eq!(
        store
            .leasable_jobs("r1", at(SECOND))
            .await
            .expect("leasable"),
        vec![id]
    );
    let leased = store
        .lease_job(lease(id, "r1", at(SECOND), at(11 * SECOND)))
        .await
        .expect("lease")
        .expect("free job leased");
    assert_eq!(leased.runner.as_deref(), Some("r1"));
    assert_eq!(leased.lease_until, Some(at(11 * SECOND)));
    // Held: not for r2, still for r1 (a renewal).
    assert!(store
        .leasable_jobs("r2", at(2 * SECOND))
        .await
        .expect("leasable")
        .is_empty());
    assert_eq!(
        store
            .leasable_jobs("r1", at(2 * SECOND))
            .await
            .expect("leasable"),
        vec![id]
    );
    assert!(store
        .lease_job(lease(id, "r2", at(2 * SECOND), at(12 * SECOND)))
        .await
        .expect("lease")
        .is_none());
    assert!(store
        .lease_job(lease(id, "r1", at(2 * SECOND), at(12 * SECOND)))
        .await
        .expect("lease")
        .is_some());
    // Lapsed: r2 takes over, and r1 can no longer save progress.
    let taken = store
        .lease_job(lease(id, "r2", at(13 * SECOND), at(23 * SECOND)))
        .await
        .expect("lease")
        .expect("lapsed lease taken over");
    assert_eq!(taken.runner.as_deref(), Some("r2"));
    assert!(!store
        .save_job_progress(progress(
            id,
            "r1",
            counters(1),
            at(14 * SECOND),
            at(24 * SECOND)
        ))
        .await
        .expect("save"));
}

pub async fn progress_and_finish_need_the_lease(store: Arc<dyn ReplayJobStore>) {
    let id = create(&store, 0).await;
    assert!(!store
        .save_job_progress(progress(id, "r1", counters(1), at(SECOND), at(11 * SECOND)))
        .await
        .expect("save without lease"));
    store
        .lease_job(lease(id, "r1", at(SECOND), at(11 * SECOND)))
        .await
        .expect("lease")
        .expect("leased");
    assert!(store
        .save_job_progress(progress(
            id,
            "r1",
            counters(3),
            at(2 * SECOND),
            at(12 * SECOND)
        ))
        .await
        .expect("save"));
    let j = store.get_job(id).await.expect("get").expect("job");
    assert_eq!(j.counters, counters(3));
    assert_eq!(j.updated_at, at(2 * SECOND));
    assert_eq!(j.lease_until, Some(at(12 * SECOND)));
    assert_eq!(j.status, JobStatus::Running);

    assert!(!store
        .finish_job(end(
            id,
            "r2",
            JobStatus::Completed,
            counters(4),
            "done",
            at(3 * SECOND)
        ))
        .await
        .expect("finish by another runner"));
    assert!(store
        .finish_job(end(
            id,
            "r1",
            JobStatus::Stopped,
            counters(4),
            "too many failures",
            at(3 * SECOND)
        ))
        .await
        .expect("finish"));
    let j = store.get_job(id).await.expect("get").expect("job");
    assert_eq!(j.status, JobStatus::Stopped);
    assert_eq!(j.counters, counters(4));
    assert_eq!(j.message.as_deref(), Some("too many failures"));
    assert_eq!(j.finished_at, Some(at(3 * SECOND)));
    assert_eq!((j.runner, j.lease_until), (None, None));
    // Final: neither saved, finished again, nor leased.
    assert!(!store
        .save_job_progress(progress(
            id,
            "r1",
            counters(5),
            at(4 * SECOND),
            at(14 * SECOND)
        ))
        .await
        .expect("save"));
    assert!(!store
        .finish_job(end(
            id,
            "r1",
            JobStatus::Completed,
            counters(5),
            "x",
            at(4 * SECOND)
        ))
        .await
        .expect("finish"));
    assert!(store
        .lease_job(lease(id, "r1", at(4 * SECOND), at(14 * SECOND)))
        .await
        .expect("lease")
        .is_none());
    assert!(store
        .leasable_jobs("r1", at(4 * SECOND))
        .await
        .expect("leasable")
        .is_empty());
}

pub async fn cancel_wins_over_the_runner(store: Arc<dyn ReplayJobStore>) {
    assert_eq!(
        store
            .cancel_job(cancel(Uuid::now_v7(), "cancelled", at(0)))
            .await
            .expect("cancel"),
        JobCancelled::NotFound
    );
    let id = create(&store, 0).await;
    store
        .lease_job(lease(id, "r1", at(SECOND), at(11 * SECOND)))
        .await
        .expect("lease")
        .expect("leased");
    let cancelled = match store
        .cancel_job(cancel(id, "cancelled by ops", at(2 * SECOND)))
        .await
        .expect("cancel")
    {
        JobCancelled::Done(j) => j,
        other => panic!("a RUNNING job must be cancelled, got {other:?}"),
    };
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!(cancelled.message.as_deref(), Some("cancelled by ops"));
    assert_eq!(cancelled.finished_at, Some(at(2 * SECOND)));
    assert!(!store
        .save_job_progress(progress(
            id,
            "r1",
            counters(1),
            at(3 * SECOND),
            at(13 * SECOND)
        ))
        .await
        .expect("save"));
    assert!(!store
        .finish_job(end(
            id,
            "r1",
            JobStatus::Completed,
            counters(1),
            "done",
            at(3 * SECOND)
        ))
        .await
        .expect("finish"));
    match store
        .cancel_job(cancel(id, "again", at(4 * SECOND)))
        .await
        .expect("cancel")
    {
        JobCancelled::AlreadyFinished(j) => {
            assert_eq!(j.status, JobStatus::Cancelled);
            assert_eq!(j.message.as_deref(), Some("cancelled by ops"));
        }
        other => panic!("a final job is not cancelled again, got {other:?}"),
    }
}

pub async fn keyset_pages_cover_every_job_once_in_order(store: Arc<dyn ReplayJobStore>) {
    // Three jobs share each instant: the id breaks the tie.
    for t in 0..11 {
        create(&store, (t / 3) * SECOND).await;
    }
    let expected = store
        .list_jobs(PageRequest { page: 0, size: 100 })
        .await
        .expect("list")
        .content;
    assert!(super::paging::in_listing_order(&expected));
    let ids = |jobs: &[crate::ports::ReplayJob]| jobs.iter().map(|j| j.id).collect::<Vec<_>>();
    for size in [1, 2, 4, 11] {
        let walked = super::paging::walk(size, 11, 20, |req| {
            let store = store.clone();
            async move { store.list_jobs_page(req).await.expect("page") }
        })
        .await;
        assert_eq!(ids(&walked), ids(&expected), "size {size}");
    }
}
