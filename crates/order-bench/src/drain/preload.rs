//! Filling the outbox: whole order lifecycles (created, confirmed,
//! preparing, ready, delivered) built with the contract suites' fixtures and
//! written through `MySqlStore::commit_batch`, many orders per transaction,
//! exactly as the service's group commit writes them: event rows, the
//! current state and one outbox row per event.

use std::time::Instant;

use order_core::ports::{Commit, EventStore};
use order_store_mysql::MySqlStore;

use crate::{Context, Error, Result};

pub use order_core::testkit::fixtures::{lifecycle, MAX_EVENTS_PER_ORDER};

/// How many orders carry how many events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub events: u64,
    pub orders: u64,
}

impl Plan {
    /// `events` over at least `orders` orders; more orders when `events`
    /// needs them (an order holds at most [`MAX_EVENTS_PER_ORDER`]), fewer
    /// when there are fewer events than orders (every order has its create).
    pub fn new(events: u64, orders: u64) -> Plan {
        let orders = orders
            .max(events.div_ceil(MAX_EVENTS_PER_ORDER))
            .min(events);
        Plan { events, orders }
    }

    /// Events of order `i` (0-based): the events spread as evenly as possible.
    pub fn events_of(&self, i: u64) -> u64 {
        if self.orders == 0 {
            return 0;
        }
        self.events / self.orders + u64::from(i < self.events % self.orders)
    }
}

/// What a preload wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Committed {
    pub orders: u64,
    pub events: u64,
    pub seconds: f64,
}

/// Commits `plan` in transactions of `batch` orders; order numbers start at
/// `first` (distinct payment ids across calls). Any rejected commit fails
/// the preload.
pub async fn commit(store: &MySqlStore, plan: Plan, first: u64, batch: usize) -> Result<Committed> {
    let started = Instant::now();
    let mut done = Committed::default();
    let batch = batch.max(1) as u64;
    while done.orders < plan.orders {
        let end = (done.orders + batch).min(plan.orders);
        let commits: Vec<Commit> = (done.orders..end)
            .map(|i| lifecycle(first + i, plan.events_of(i)))
            .collect();
        let events: u64 = commits.iter().map(|c| c.events.len() as u64).sum();
        let results = store
            .commit_batch(commits)
            .await
            .context("committing a preload batch")?;
        if let Some(e) = results.iter().find_map(|r| r.as_ref().err()) {
            return Err(Error::msg(format!("a preloaded commit was rejected: {e}")));
        }
        done.orders = end;
        done.events += events;
    }
    done.seconds = started.elapsed().as_secs_f64();
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_uses_more_orders_when_the_events_need_them() {
        let p = Plan::new(200_000, 20_000);
        assert_eq!(p.orders, 40_000);
        assert!((0..p.orders).all(|i| p.events_of(i) == 5));
        let p = Plan::new(100_000, 50_000);
        assert_eq!((p.orders, p.events_of(0)), (50_000, 2));
        assert_eq!(Plan::new(3, 10).orders, 3);
    }

    #[test]
    fn the_events_of_a_plan_add_up_and_stay_within_a_lifecycle() {
        for (events, orders) in [(1003, 300), (7, 2), (1, 1), (999, 1000)] {
            let p = Plan::new(events, orders);
            let per: Vec<u64> = (0..p.orders).map(|i| p.events_of(i)).collect();
            assert_eq!(per.iter().sum::<u64>(), events, "{p:?}");
            assert!(per.iter().all(|n| (1..=MAX_EVENTS_PER_ORDER).contains(n)));
        }
    }
}
