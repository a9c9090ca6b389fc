//! `--scenario drain`: how fast 1, 2, … instances empty a preloaded outbox,
//! and how long the relay stalls when one of them is killed.
//!
//! For each instance count N, on a fresh MySQL database, events topic and
//! consumer groups:
//!
//! 1. the outbox is preloaded through `MySqlStore::commit_batch` while no
//!    service runs ([`preload`]), so nothing is relayed yet;
//! 2. N service processes start at once (own port, own log file) on the same
//!    database, broker and topics;
//! 3. the drain is timed from their start until `orders_outbox_pending`
//!    reads 0 (checked against the database), with each instance's
//!    `orders_events_published_total` and `orders_relay_partitions_held`
//!    and the CPU seconds of every instance and of the backends ([`cpu`]);
//! 4. with N ≥ 2, more events are committed while the instances run, the
//!    instance holding the most partitions is killed with SIGKILL, and the
//!    survivors are timed until they hold every partition again and until
//!    the outbox is empty.

pub mod preload;
pub mod report;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use order_core::ports::{Outbox, RelayLeases};
use order_store_mysql::MySqlStore;

use crate::cpu;
use crate::profile::{self, Backends, RunNames};
use crate::prom::Scrape;
use crate::service::{self, Service, OUTBOX_PENDING};
use crate::{progress, Context, Error, Result};

pub const PARTITIONS_HELD: &str = "orders_relay_partitions_held";
pub const EVENTS_PUBLISHED: &str = "orders_events_published_total";
pub const EVENTS_PARKED: &str = "orders_events_parked_total";
pub const RELAY_FENCED: &str = "orders_relay_fenced_total";

/// Backend processes whose CPU is measured beside the instances' (MariaDB,
/// the Tansu broker, the nx-27017 MongoDB server the projectors write to).
pub const WATCHED: [&str; 3] = ["mariadbd", "tansu", "nx-27017"];

/// The drain scenario's options (flattened into [`crate::Options`]).
#[derive(Debug, Clone, clap::Args)]
pub struct DrainOptions {
    /// Drain: instance counts to measure, each on a fresh database and topic.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub instances: Vec<u32>,
    /// Drain: events preloaded into the outbox before the instances start.
    #[arg(long, default_value_t = 200_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub events: u64,
    /// Drain: orders the preloaded events belong to (at least; an order holds
    /// at most 5 events, so more are used when --events needs them).
    #[arg(long, default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub orders: u64,
    /// Drain: events committed while N ≥ 2 instances run, right before the
    /// one holding the most partitions is killed; 0 skips the failover.
    #[arg(long, default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    pub failover_events: u64,
    /// Drain: orders per preload transaction (`commit_batch`).
    #[arg(long, default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub preload_batch: u32,
    /// Drain: extra environment of every instance, KEY=VALUE (repeatable),
    /// e.g. ORDER_RELAY_LEASE_MS=3000 or ORDER_RELAY_PARTITIONS=32.
    #[arg(long = "service-env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub service_env: Vec<(String, String)>,
    /// Drain: how often /metrics is read while waiting, milliseconds.
    #[arg(long, default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub poll_ms: u64,
}

fn parse_env(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

/// What every run shares.
#[derive(Debug, Clone)]
pub struct Setup {
    pub backends: Backends,
    pub service_bin: PathBuf,
    pub ready_timeout: Duration,
    /// Longest wait for one drain, and for one failover.
    pub limit: Duration,
}

/// One instance at the end of the drain (None: not readable).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstanceFigures {
    pub url: String,
    pub published: Option<f64>,
    pub parked: Option<f64>,
    pub partitions_held: Option<f64>,
    pub fenced: Option<f64>,
    /// CPU seconds since its start.
    pub cpu_secs: Option<f64>,
}

/// A backend's CPU seconds over the drain (None: process not found).
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessCpu {
    pub name: String,
    pub cpu_secs: Option<f64>,
}

/// The failover after a SIGKILL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Failover {
    /// Events committed while the instances ran, right before the kill.
    pub events: u64,
    /// Index of the killed instance and the partitions it held.
    pub victim: usize,
    pub victim_partitions: f64,
    pub partitions: u64,
    /// Seconds after the kill until the survivors held every partition.
    pub rebalanced_after: Option<f64>,
    /// Seconds after the kill until the outbox was empty.
    pub drained_after: Option<f64>,
    /// Events each instance published from just before the commit until
    /// the end (None: the killed one).
    pub published_by_instance: Vec<Option<f64>>,
    /// Their sum.
    pub published_by_survivors: f64,
    pub fenced_by_survivors: f64,
}

/// One instance count's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrainRun {
    pub instances: u32,
    pub database: String,
    pub topic: String,
    pub orders: u64,
    /// Events preloaded into the outbox.
    pub events: u64,
    pub preload_secs: f64,
    /// Seconds from the start until every instance answered ready.
    pub ready_secs: f64,
    /// Seconds from the start until the outbox was empty (None: not within the limit).
    pub drained_after: Option<f64>,
    /// Seconds the drain was watched (= `drained_after` when it drained).
    pub window_secs: f64,
    /// `orders_outbox_pending` at the end of the window.
    pub pending_at_end: Option<f64>,
    pub per_instance: Vec<InstanceFigures>,
    pub processes: Vec<ProcessCpu>,
    pub failover: Option<Failover>,
}

/// Runs every instance count of `opts.instances` in turn; each run's
/// database is dropped afterwards (best effort).
pub async fn run(setup: &Setup, opts: &DrainOptions) -> Result<Vec<DrainRun>> {
    let mut runs = Vec::new();
    for &n in &opts.instances {
        let names = RunNames::fresh();
        progress(format!(
            "drain with {n} instance{}: database {}, topic {}",
            if n == 1 { "" } else { "s" },
            names.mysql_database,
            names.topic_events
        ));
        let outcome = run_one(setup, opts, n, &names).await;
        crate::drop_database_best_effort(&setup.backends, &names.mysql_database).await;
        runs.push(outcome?);
    }
    Ok(runs)
}

async fn run_one(setup: &Setup, opts: &DrainOptions, n: u32, names: &RunNames) -> Result<DrainRun> {
    let db_url = setup.backends.mysql_database_url(&names.mysql_database);
    let store = MySqlStore::connect(&db_url)
        .await
        .with_context(|| format!("creating database {}", names.mysql_database))?;
    let outcome = measure(setup, opts, n, names, &store).await;
    store.close().await;
    outcome
}

async fn measure(
    setup: &Setup,
    opts: &DrainOptions,
    n: u32,
    names: &RunNames,
    store: &MySqlStore,
) -> Result<DrainRun> {
    let batch = opts.preload_batch as usize;
    let plan = preload::Plan::new(opts.events, opts.orders);
    progress(format!(
        "preloading {} events over {} orders ({} orders per transaction)",
        plan.events, plan.orders, batch
    ));
    let loaded = preload::commit(store, plan, 0, batch).await?;
    progress(format!(
        "preloaded {} events in {:.1} s ({:.0} events/s)",
        loaded.events,
        loaded.seconds,
        loaded.events as f64 / loaded.seconds.max(1e-9)
    ));

    let env: Vec<(&str, String)> = profile::service_env(&setup.backends, names)
        .into_iter()
        .chain(
            opts.service_env
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone())),
        )
        .collect();
    let ticks = cpu::ticks_per_sec();
    let watched: Vec<cpu::Watched> = WATCHED
        .iter()
        .map(|name| cpu::Watched::start(name, ticks))
        .collect();
    let started = Instant::now();
    let mut fleet = Vec::with_capacity(n as usize);
    for _ in 0..n {
        fleet.push(Service::spawn(&setup.service_bin, Some(&env))?);
    }
    for svc in &mut fleet {
        svc.wait_ready(setup.ready_timeout).await?;
    }
    let ready_secs = started.elapsed().as_secs_f64();
    progress(format!(
        "{n} instance(s) ready after {ready_secs:.2} s; waiting for the outbox to empty"
    ));
    let poll = Duration::from_millis(opts.poll_ms);
    let wait = wait_empty(store, &mut fleet, started, setup.limit, poll, None).await?;
    let window_secs = started.elapsed().as_secs_f64();
    let processes = watched
        .iter()
        .map(|w| ProcessCpu {
            name: w.name.clone(),
            cpu_secs: w.used(ticks),
        })
        .collect();
    let scrapes = scrape_all(&fleet).await;
    let per_instance = fleet
        .iter()
        .zip(&scrapes)
        .map(|(svc, s)| {
            let v = |name: &str| s.as_ref().and_then(|s| s.value(name));
            InstanceFigures {
                url: svc.target().base_url(),
                published: v(EVENTS_PUBLISHED),
                parked: v(EVENTS_PARKED),
                partitions_held: v(PARTITIONS_HELD),
                fenced: v(RELAY_FENCED),
                cpu_secs: svc.pid().and_then(|p| cpu::cpu_secs(p, ticks)),
            }
        })
        .collect();
    match wait.empty_after {
        Some(s) => progress(format!("outbox empty after {s:.2} s")),
        None => progress(format!(
            "outbox NOT empty after {window_secs:.0} s ({} pending)",
            show(wait.pending)
        )),
    }

    let failover = if n >= 2 && opts.failover_events > 0 && wait.empty_after.is_some() {
        Some(failover(setup, opts, store, &mut fleet, plan.orders, &scrapes).await?)
    } else {
        None
    };
    for svc in &mut fleet {
        svc.stop()?;
    }
    Ok(DrainRun {
        instances: n,
        database: names.mysql_database.clone(),
        topic: names.topic_events.clone(),
        orders: loaded.orders,
        events: loaded.events,
        preload_secs: loaded.seconds,
        ready_secs,
        drained_after: wait.empty_after,
        window_secs,
        pending_at_end: wait.pending,
        per_instance,
        processes,
        failover,
    })
}

fn show(v: Option<f64>) -> String {
    v.map_or_else(|| "unknown".to_owned(), |v| format!("{v}"))
}

/// Commits more events, kills the instance holding the most partitions
/// (SIGKILL) and times the survivors taking its partitions over and
/// emptying the outbox.
async fn failover(
    setup: &Setup,
    opts: &DrainOptions,
    store: &MySqlStore,
    fleet: &mut [Service],
    first_order: u64,
    at_drain: &[Option<Scrape>],
) -> Result<Failover> {
    let partitions = store
        .partitions()
        .await
        .context("reading the relay partitions")?
        .len() as u64;
    let value = |s: &Option<Scrape>, name: &str| s.as_ref().and_then(|s| s.value(name));
    let held: Vec<f64> = at_drain
        .iter()
        .map(|s| value(s, PARTITIONS_HELD).unwrap_or(0.0))
        .collect();
    let victim = held
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    let before = scrape_all(fleet).await;
    let plan = preload::Plan::new(opts.failover_events, 1);
    progress(format!(
        "failover: committing {} events, then killing instance {} ({} of {partitions} partitions)",
        plan.events,
        victim + 1,
        held.get(victim).copied().unwrap_or(0.0)
    ));
    let committed = preload::commit(store, plan, first_order, opts.preload_batch as usize).await?;
    let victim_svc = fleet
        .get_mut(victim)
        .ok_or_else(|| Error::msg("no instance to kill"))?;
    let killed = Instant::now();
    victim_svc.stop()?;
    let poll = Duration::from_millis(opts.poll_ms);
    let wait = wait_empty(store, fleet, killed, setup.limit, poll, Some(partitions)).await?;
    let secs = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"));
    progress(format!(
        "failover: every partition held again after {} s, outbox empty after {} s",
        secs(wait.all_held_after),
        secs(wait.empty_after)
    ));
    let after = scrape_all(fleet).await;
    let deltas = |name: &str| -> Vec<Option<f64>> {
        before
            .iter()
            .zip(&after)
            .map(|(b, a)| Some(value(a, name)? - value(b, name).unwrap_or(0.0)))
            .collect()
    };
    let delta = |name: &str| -> f64 { deltas(name).into_iter().flatten().sum() };
    Ok(Failover {
        published_by_instance: deltas(EVENTS_PUBLISHED),
        events: committed.events,
        victim,
        victim_partitions: held.get(victim).copied().unwrap_or(0.0),
        partitions,
        rebalanced_after: wait.all_held_after,
        drained_after: wait.empty_after,
        published_by_survivors: delta(EVENTS_PUBLISHED),
        fenced_by_survivors: delta(RELAY_FENCED),
    })
}

/// `/metrics` of every running instance (None: stopped or unreachable).
async fn scrape_all(fleet: &[Service]) -> Vec<Option<Scrape>> {
    let mut out = Vec::with_capacity(fleet.len());
    for svc in fleet {
        out.push(match svc.pid() {
            Some(_) => service::scrape(svc.target()).await.ok(),
            None => None,
        });
    }
    out
}

/// How a wait for the outbox to empty ended.
struct Waited {
    empty_after: Option<f64>,
    all_held_after: Option<f64>,
    pending: Option<f64>,
}

/// `/metrics` of the first running instance that answers.
async fn scrape_one(fleet: &[Service]) -> Option<Scrape> {
    for svc in fleet.iter().filter(|s| s.pid().is_some()) {
        if let Ok(s) = service::scrape(svc.target()).await {
            return Some(s);
        }
    }
    None
}

/// Polls every `poll` until the outbox is empty (the gauge reads 0 and the
/// database agrees) and, with `partitions`, until the running instances'
/// `orders_relay_partitions_held` add up to it; at most `limit`; seconds
/// count from `from`. Without `partitions` only one instance is scraped per
/// poll: each scrape counts the outbox in MariaDB. An instance that exits
/// on its own fails the wait.
async fn wait_empty(
    store: &MySqlStore,
    fleet: &mut [Service],
    from: Instant,
    limit: Duration,
    poll: Duration,
    partitions: Option<u64>,
) -> Result<Waited> {
    let mut w = Waited {
        empty_after: None,
        all_held_after: None,
        pending: None,
    };
    let mut next_note = Instant::now() + Duration::from_secs(5);
    loop {
        for svc in fleet.iter_mut() {
            if let Some(died) = svc.died()? {
                return Err(Error::msg(died));
            }
        }
        let scrapes = match partitions {
            Some(_) => scrape_all(fleet).await,
            None => vec![scrape_one(fleet).await],
        };
        let now = from.elapsed().as_secs_f64();
        let held: f64 = scrapes
            .iter()
            .flatten()
            .filter_map(|s| s.value(PARTITIONS_HELD))
            .sum();
        if w.all_held_after.is_none() && partitions.is_none_or(|p| held >= p as f64) {
            w.all_held_after = Some(now);
        }
        w.pending = scrapes
            .iter()
            .flatten()
            .find_map(|s| s.value(OUTBOX_PENDING));
        // The gauge reads 0 also when the store did not answer in time.
        if w.empty_after.is_none() && w.pending == Some(0.0) {
            let stats = store.stats().await.context("counting the outbox")?;
            if stats.pending == 0 {
                w.empty_after = Some(now);
            }
        }
        if (w.empty_after.is_some() && w.all_held_after.is_some()) || from.elapsed() >= limit {
            return Ok(w);
        }
        if Instant::now() >= next_note {
            next_note += Duration::from_secs(5);
            progress(format!("  {now:.0} s: outbox pending {}", show(w.pending)));
        }
        tokio::time::sleep(poll).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_env_options_are_key_value_pairs() {
        assert_eq!(
            parse_env("ORDER_RELAY_LEASE_MS=3000"),
            Ok(("ORDER_RELAY_LEASE_MS".to_owned(), "3000".to_owned()))
        );
        assert_eq!(parse_env("A=b=c"), Ok(("A".to_owned(), "b=c".to_owned())));
        assert!(parse_env("novalue").is_err());
        assert!(parse_env("=1").is_err());
    }
}
