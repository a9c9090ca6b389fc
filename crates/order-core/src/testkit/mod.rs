//! Contract test suites, run against every adapter (feature `testkit`).
//!
//! One module per port. Each case is a `pub async fn` that takes the port
//! handles of a FRESH, EMPTY store (its own database, schema or topic names)
//! and panics with a readable message when the adapter breaks the contract
//! documented in [`crate::ports`]. Nothing here knows about a particular
//! backend, so the same cases run against SQLite, MySQL/MariaDB, MongoDB and
//! Kafka.
//!
//! An adapter crate runs a whole suite with one macro per port, given an
//! async factory that returns either the handles or `(handles, guard)`, where
//! the guard (a temp dir, a dropped-at-end schema...) lives until the case
//! ends:
//!
//! ```ignore
//! async fn store() -> (StoreHandles, tempfile::TempDir) { /* fresh database */ }
//! async fn dlq() -> (Arc<dyn DlqStore>, tempfile::TempDir) { /* ... */ }
//!
//! order_core::event_store_contract!(store);
//! order_core::outbox_contract!(store);
//! order_core::dlq_store_contract!(dlq);
//! order_core::audit_log_contract!(audit);
//! order_core::replay_job_store_contract!(jobs);
//! order_core::read_model_contract!(read_model);
//! order_core::event_bus_contract!(bus);
//! ```
//!
//! Each macro expands into a module (`event_store`, `outbox`, `dlq_store`,
//! `read_model`, `event_bus`) with one `#[tokio::test]` per case, so the
//! calling crate needs `tokio` with the `macros` and `rt-multi-thread`
//! features as a dev-dependency.
//!
//! Bus cases use unique topic and group names (see
//! [`fixtures::unique_name`]), and expect a new consumer group to start at
//! the beginning of a topic (Kafka: `auto.offset.reset=earliest`); the bus
//! factory must create topics on demand or allow auto-creation.

use std::sync::Arc;

use crate::ports::{
    AuditLog, DlqRevisionStore, DlqStore, EventBus, EventStore, Outbox, ReadModel, RelayLeases,
    ReplayJobStore,
};

pub mod audit;
pub mod dlq_revisions;
pub mod dlq_scale;
pub mod dlq_store;
pub mod event_bus;
pub mod event_store;
pub mod fixtures;
pub mod legacy;
pub mod outage;
pub mod outbox;
pub mod paging;
pub mod pki;
pub mod read_model;
pub mod relay_leases;
pub mod replay_jobs;

/// The write side of one database: event store, outbox and DLQ records must
/// share it, because a commit writes outbox rows and `settle` writes DLQ
/// records in the same transaction as its deletes.
#[derive(Clone)]
pub struct StoreHandles {
    pub events: Arc<dyn EventStore>,
    pub outbox: Arc<dyn Outbox>,
    pub dlq: Arc<dyn DlqStore>,
    pub leases: Arc<dyn RelayLeases>,
}

impl StoreHandles {
    /// Every handle on one store.
    pub fn of<S>(store: Arc<S>) -> Self
    where
        S: EventStore + Outbox + DlqStore + RelayLeases + 'static,
    {
        Self {
            events: store.clone(),
            outbox: store.clone(),
            dlq: store.clone(),
            leases: store,
        }
    }
}

/// What a suite factory returns: the handles themselves, or the handles with
/// a guard that is dropped only after the case has finished.
pub trait Fixture<H> {
    fn handles(&self) -> H;
}

impl Fixture<StoreHandles> for StoreHandles {
    fn handles(&self) -> StoreHandles {
        self.clone()
    }
}

impl Fixture<Arc<dyn DlqStore>> for Arc<dyn DlqStore> {
    fn handles(&self) -> Arc<dyn DlqStore> {
        self.clone()
    }
}

impl Fixture<Arc<dyn DlqRevisionStore>> for Arc<dyn DlqRevisionStore> {
    fn handles(&self) -> Arc<dyn DlqRevisionStore> {
        self.clone()
    }
}

impl Fixture<Arc<dyn AuditLog>> for Arc<dyn AuditLog> {
    fn handles(&self) -> Arc<dyn AuditLog> {
        self.clone()
    }
}

impl Fixture<Arc<dyn ReplayJobStore>> for Arc<dyn ReplayJobStore> {
    fn handles(&self) -> Arc<dyn ReplayJobStore> {
        self.clone()
    }
}

impl Fixture<Arc<dyn ReadModel>> for Arc<dyn ReadModel> {
    fn handles(&self) -> Arc<dyn ReadModel> {
        self.clone()
    }
}

impl Fixture<Arc<dyn EventBus>> for Arc<dyn EventBus> {
    fn handles(&self) -> Arc<dyn EventBus> {
        self.clone()
    }
}

impl<H: Clone, G> Fixture<H> for (H, G) {
    fn handles(&self) -> H {
        self.0.clone()
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_suite {
    ($suite:ident, $factory:expr, [$($case:ident),+ $(,)?]) => {
        mod $suite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let fixture = ($factory)().await;
                    $crate::testkit::$suite::$case(
                        $crate::testkit::Fixture::handles(&fixture),
                    )
                    .await;
                    drop(fixture);
                }
            )+
        }
    };
}

/// Runs the [`event_store`] suite. The factory returns [`StoreHandles`]
/// (or `(StoreHandles, guard)`) of a fresh database.
#[macro_export]
macro_rules! event_store_contract {
    ($factory:expr) => {
        $crate::__contract_suite!(
            event_store,
            $factory,
            [
                empty_store_has_nothing,
                empty_batch_is_ok,
                commit_then_load_round_trips_exactly,
                optional_fields_round_trip,
                transition_commit_updates_current_state,
                multi_event_commit_gets_increasing_positions,
                positions_increase_within_and_across_batches,
                concurrent_commits_on_same_version_exactly_one_wins,
                conflict_inside_one_batch_leaves_no_trace,
                batch_with_one_conflict_writes_the_others,
                transition_of_missing_order_conflicts,
                create_of_existing_order_conflicts,
                idempotency_key_taken_writes_nothing,
                duplicate_event_id_is_rejected_and_writes_nothing,
                load_stream_bounded_by_version_and_instant,
                read_all_pages_in_position_order,
                head_position_tracks_last_commit,
                ping_succeeds,
            ]
        );
    };
}

/// Runs the [`outbox`] suite. The factory returns [`StoreHandles`] (or
/// `(StoreHandles, guard)`) of a fresh database.
#[macro_export]
macro_rules! outbox_contract {
    ($factory:expr) => {
        $crate::__contract_suite!(
            outbox,
            $factory,
            [
                empty_outbox,
                committed_events_are_fetched_in_position_order,
                fetch_batch_respects_limit,
                fetch_batch_takes_only_the_given_buckets,
                settle_under_a_lost_lease_writes_nothing,
                an_event_parked_behind_a_resolved_head_stays_in_the_outbox,
                conflicting_commit_adds_no_outbox_row,
                settle_removes_delivered_rows,
                settle_parks_events_in_the_dlq,
                settle_keeps_an_existing_dlq_record,
                settle_with_nothing_is_ok,
                stats_count_pending_and_oldest,
            ]
        );
    };
}

/// Runs the [`relay_leases`] suite. The factory returns [`StoreHandles`]
/// (or `(StoreHandles, guard)`) of a fresh database.
#[macro_export]
macro_rules! relay_leases_contract {
    ($factory:expr) => {
        $crate::__contract_suite!(
            relay_leases,
            $factory,
            [
                the_layout_is_created_once_and_then_wins,
                a_partition_is_claimed_once_per_epoch,
                renewal_keeps_only_what_is_still_held,
                a_lapsed_lease_is_renewed_until_someone_takes_it,
                heartbeats_count_the_live_instances,
                repartitioning_waits_for_the_old_leases,
                the_database_clock_answers,
            ]
        );
    };
}

/// Runs the [`dlq_store`] suite. The factory returns `Arc<dyn DlqStore>`
/// (or `(Arc<dyn DlqStore>, guard)`) of a fresh database.
#[macro_export]
macro_rules! dlq_store_contract {
    ($factory:expr) => {
        $crate::__contract_suite!(
            dlq_store,
            $factory,
            [
                insert_dedupes_by_event_id,
                get_round_trips_every_field,
                list_is_newest_first_with_paging,
                list_filters_by_status,
                stats_count_per_status,
                unresolved_heads_are_the_earliest_unresolved_publish_records,
                blocked_behind_in_version_order,
                mark_replayed_changes_only_unresolved,
                mark_failed_makes_a_new_head,
                transition_is_conditional,
                a_new_consumer_failure_reopens_a_replayed_record,
                a_replay_claim_is_exclusive_until_released_or_expired,
                skip_is_conditional_and_keeps_attempts,
                skipping_a_head_makes_the_next_held_record_the_head,
                skipping_a_held_record_leaves_the_sequence,
                a_claimed_record_is_not_skipped,
                a_held_record_never_points_at_a_resolved_head,
                a_change_whose_guard_fails_writes_nothing,
                failure_classes_are_stored,
                purge_deletes_only_records_resolved_before_the_cut_off,
                only_a_consumer_side_failure_reopens,
                heads_are_unresolved_records_not_held_oldest_failure_first,
                the_head_index_follows_every_change_to_a_sequence,
                a_head_walk_is_stable_while_sequences_change,
                claims_and_held_records_come_in_batches,
                keyset_pages_cover_every_record_once_in_order,
                a_keyset_walk_neither_skips_nor_repeats_records_that_stay,
                counters_equal_a_real_count_after_random_changes,
                counters_stay_exact_under_concurrent_writers,
                search_filters_each_narrow,
                search_text_is_case_insensitive_with_literal_wildcards,
                search_time_range_includes_from_and_excludes_to,
                search_keyset_pages_cover_every_match_once_in_order,
            ]
        );
    };
}

/// Runs the [`audit`] suite. The factory returns `Arc<dyn AuditLog>` (or
/// `(Arc<dyn AuditLog>, guard)`) of a fresh, empty store.
#[macro_export]
macro_rules! audit_log_contract {
    ($factory:expr) => {
        $crate::__contract_suite!(
            audit,
            $factory,
            [
                empty_log_lists_nothing,
                append_round_trips_every_field,
                list_is_newest_first_with_paging,
                list_filters_by_principal_action_and_target,
                list_filters_by_time_range,
                keyset_pages_cover_every_entry_once_in_order,
            ]
        );
    };
}

/// Runs the [`dlq_revisions`] suite. The factory returns
/// `Arc<dyn DlqRevisionStore>` (or `(Arc<dyn DlqRevisionStore>, guard)`) of
/// a fresh, empty store.
#[macro_export]
macro_rules! dlq_revision_store_contract {
    ($factory:expr) => {
        $crate::__contract_suite!(
            dlq_revisions,
            $factory,
            [
                add_then_list_round_trips_in_number_order,
                a_taken_number_is_refused_and_changes_nothing,
                racing_editors_get_one_revision_each_number,
                a_review_moves_only_a_revision_in_a_named_state,
            ]
        );
    };
}

/// Runs the [`replay_jobs`] suite. The factory returns
/// `Arc<dyn ReplayJobStore>` (or `(Arc<dyn ReplayJobStore>, guard)`) of a
/// fresh, empty store.
#[macro_export]
macro_rules! replay_job_store_contract {
    ($factory:expr) => {
        $crate::__contract_suite!(
            replay_jobs,
            $factory,
            [
                create_then_get_round_trips,
                list_is_newest_first_with_paging,
                keyset_pages_cover_every_job_once_in_order,
                a_lease_is_exclusive_until_it_lapses,
                progress_and_finish_need_the_lease,
                cancel_wins_over_the_runner,
            ]
        );
    };
}

/// Runs the [`read_model`] suite. The factory returns `Arc<dyn ReadModel>`
/// (or `(Arc<dyn ReadModel>, guard)`) of a fresh store.
#[macro_export]
macro_rules! read_model_contract {
    ($factory:expr) => {
        $crate::__contract_suite!(
            read_model,
            $factory,
            [
                upsert_then_get_round_trips_exactly,
                upsert_is_version_guarded,
                upsert_many_counts_written,
                get_many_returns_only_existing,
                query_filters_and_orders_newest_first,
                query_pages_with_totals,
                clear_removes_everything,
                a_rebuild_starts_empty_and_its_documents_are_found_by_every_filter,
                ping_succeeds,
            ]
        );
    };
}

/// Runs the [`event_bus`] suite. The factory returns `Arc<dyn EventBus>`
/// (or `(Arc<dyn EventBus>, guard)`).
#[macro_export]
macro_rules! event_bus_contract {
    ($factory:expr) => {
        $crate::__contract_suite!(
            event_bus,
            $factory,
            [
                check_succeeds,
                publish_then_subscribe_receives_in_order,
                per_key_order_across_publish_calls,
                uncommitted_messages_are_delivered_again,
                new_subscription_starts_after_committed_offset,
                groups_are_independent,
                topics_are_independent,
                poll_without_messages_returns_empty_after_wait,
                poll_wakes_on_publish,
                find_published_names_what_is_on_the_topic,
                find_published_reads_no_further_than_the_parked_time,
                lag_counts_what_is_not_consumed,
            ]
        );
    };
}
