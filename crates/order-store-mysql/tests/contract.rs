//! Every write-side contract suite against MySQL/MariaDB, each case on its
//! own fresh database (`order_test_…`, dropped afterwards). The server comes
//! from `ORDER_TEST_MYSQL_URL`; without it these tests fail.

mod common;

use std::sync::Arc;

use common::TestDb;
use order_core::ports::{AuditLog, DlqRevisionStore, DlqStore, ReplayJobStore};
use order_core::testkit::StoreHandles;

async fn store() -> (StoreHandles, TestDb) {
    let db = TestDb::new();
    let store = Arc::new(db.store().await);
    (StoreHandles::of(store), db)
}

async fn dlq() -> (Arc<dyn DlqStore>, TestDb) {
    let db = TestDb::new();
    let store = db.store().await;
    (Arc::new(store), db)
}

async fn audit() -> (Arc<dyn AuditLog>, TestDb) {
    let db = TestDb::new();
    let store = db.store().await;
    (Arc::new(store), db)
}

async fn revisions() -> (Arc<dyn DlqRevisionStore>, TestDb) {
    let db = TestDb::new();
    let store = db.store().await;
    (Arc::new(store), db)
}

async fn jobs() -> (Arc<dyn ReplayJobStore>, TestDb) {
    let db = TestDb::new();
    let store = db.store().await;
    (Arc::new(store), db)
}

order_core::event_store_contract!(store);
order_core::outbox_contract!(store);
order_core::relay_leases_contract!(store);
order_core::dlq_store_contract!(dlq);
order_core::audit_log_contract!(audit);
order_core::dlq_revision_store_contract!(revisions);
order_core::replay_job_store_contract!(jobs);

/// The event store and outbox suites again with positions read back from
/// the table, the path taken on servers that may hand one multi-row INSERT
/// non-consecutive ids (MySQL 8's `innodb_autoinc_lock_mode = 2`).
mod read_back_positions {
    use super::*;

    async fn store() -> (StoreHandles, TestDb) {
        let db = TestDb::new();
        let store = Arc::new(db.store_with(|c| c.with_read_back_positions(true)).await);
        (StoreHandles::of(store), db)
    }

    order_core::event_store_contract!(store);
    order_core::outbox_contract!(store);
}
