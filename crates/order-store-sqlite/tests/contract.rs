//! Every port's contract suite against the SQLite adapters, each case on
//! fresh database files in its own temp dir.

use std::sync::Arc;

use order_core::ports::{
    AuditLog, DlqRevisionStore, DlqStore, EventBus, ReadModel, ReplayJobStore,
};
use order_core::testkit::StoreHandles;
use order_store_sqlite::{EmbeddedBus, SqliteReadModel, SqliteStore};
use tempfile::TempDir;

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

async fn store() -> (StoreHandles, TempDir) {
    let dir = temp_dir();
    let store = Arc::new(SqliteStore::open(dir.path().join("db/orders.db")).expect("open store"));
    (StoreHandles::of(store), dir)
}

async fn dlq() -> (Arc<dyn DlqStore>, TempDir) {
    let dir = temp_dir();
    let store = SqliteStore::open(dir.path().join("orders.db")).expect("open store");
    (Arc::new(store), dir)
}

async fn audit() -> (Arc<dyn AuditLog>, TempDir) {
    let dir = temp_dir();
    let store = SqliteStore::open(dir.path().join("orders.db")).expect("open store");
    (Arc::new(store), dir)
}

async fn revisions() -> (Arc<dyn DlqRevisionStore>, TempDir) {
    let dir = temp_dir();
    let store = SqliteStore::open(dir.path().join("orders.db")).expect("open store");
    (Arc::new(store), dir)
}

async fn jobs() -> (Arc<dyn ReplayJobStore>, TempDir) {
    let dir = temp_dir();
    let store = SqliteStore::open(dir.path().join("orders.db")).expect("open store");
    (Arc::new(store), dir)
}

async fn read_model() -> (Arc<dyn ReadModel>, TempDir) {
    let dir = temp_dir();
    let rm = SqliteReadModel::open(dir.path().join("read-model.db")).expect("open read model");
    (Arc::new(rm), dir)
}

async fn bus() -> (Arc<dyn EventBus>, TempDir) {
    let dir = temp_dir();
    let bus = EmbeddedBus::open(dir.path().join("bus.db")).expect("open bus");
    (Arc::new(bus), dir)
}

order_core::event_store_contract!(store);
order_core::outbox_contract!(store);
order_core::relay_leases_contract!(store);
order_core::dlq_store_contract!(dlq);
order_core::audit_log_contract!(audit);
order_core::dlq_revision_store_contract!(revisions);
order_core::replay_job_store_contract!(jobs);
order_core::read_model_contract!(read_model);
order_core::event_bus_contract!(bus);
