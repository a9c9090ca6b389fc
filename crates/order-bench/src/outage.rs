//! `--scenario outage`: a DLQ the size of a long outage, drained by one bulk
//! replay job while unaffected traffic keeps coming.
//!
//! 1. `--parked` events (default 1,000,000; `--events-per-order` each) are
//!    parked in a fresh database while no service runs, through the DLQ's
//!    own write path, as the relay parks them in an outage
//!    (`order_core::testkit::outage::park`): each order's first event heads
//!    its sequence, the later ones are held behind it.
//! 2. The release service starts on that database (embedded: SQLite and the
//!    embedded bus; production: MariaDB, Kafka, MongoDB) and one job is
//!    created: `POST /api/dlq/replay {"limit":100000000}`.
//! 3. While it drains: `--traffic` creates per second of new orders (their
//!    latencies), `GET /api/dlq/stats` and the first page of
//!    `GET /api/dlq/pending` timed every `--outage-poll-ms`, the service's resident
//!    memory sampled from `/proc/<pid>/status`, and its CPU.
//! 4. Figures: time to the first published head, the drain rate
//!    (events/s over the job), peak RSS, the latencies above, and the check
//!    that the job published every parked event and nothing is left parked.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use order_core::testkit::outage::{park, Outage};
use order_store_mysql::MySqlStore;
use order_store_sqlite::SqliteStore;
use serde_json::Value;

use crate::cpu;
use crate::load::{order_body, percentile};
use crate::profile::{self, Backends, Profile, RunNames};
use crate::service::{self, Service, Target};
use crate::{progress, Context, Error, Result, TempDir};

/// The outage scenario's options (flattened into [`crate::Options`]).
#[derive(Debug, Clone, clap::Args)]
pub struct OutageOptions {
    /// Outage: events parked before the service starts.
    #[arg(long, default_value_t = 1_000_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub parked: u64,
    /// Outage: events per order (whole lifecycles: the first heads its
    /// sequence; at most 5).
    #[arg(long, default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=5))]
    pub events_per_order: u64,
    /// Outage: new orders created per second during the drain (unaffected
    /// traffic; their latencies are reported).
    #[arg(long, default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub traffic: u32,
    /// Outage: the job's rate, heads per second (ORDER_DLQ_JOB_RATE).
    #[arg(long, default_value_t = 100_000.0)]
    pub job_rate: f64,
    /// Outage: how often stats, a listing page, the job and RSS are read, ms.
    #[arg(long, default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub outage_poll_ms: u64,
}

/// What one outage run measured.
#[derive(Debug, Clone, Default)]
pub struct OutageRun {
    pub profile: String,
    pub parked: u64,
    pub heads: u64,
    pub seed_secs: f64,
    pub first_head_after: Option<f64>,
    pub drained_after: Option<f64>,
    pub published: u64,
    pub job_status: String,
    pub pending_at_end: Option<u64>,
    pub rss_start_mib: f64,
    pub rss_peak_mib: f64,
    pub service_cpu_secs: Option<f64>,
    /// Milliseconds, sorted.
    pub stats_ms: Vec<f64>,
    pub page_ms: Vec<f64>,
    /// Creates during the drain: latencies (ms, sorted) and failures.
    pub create_ms: Vec<f64>,
    pub create_failures: u64,
}

/// Everything the run needs to start the service.
pub struct Setup<'a> {
    pub profile: Profile,
    pub backends: Option<&'a Backends>,
    pub service_bin: &'a Path,
    pub ready_timeout: Duration,
    pub limit: Duration,
}

/// Seeds, starts the service, drains and measures.
pub async fn run(setup: &Setup<'_>, opts: &OutageOptions) -> Result<OutageRun> {
    let outage = Outage {
        orders: opts.parked.div_ceil(opts.events_per_order) as usize,
        events_per_order: opts.events_per_order,
    };
    let dir = TempDir::new("order-bench-outage")?;
    let names = RunNames::fresh();
    let started = Instant::now();
    progress(format!(
        "parking {} events over {} orders ({})",
        outage.orders as u64 * outage.events_per_order,
        outage.orders,
        setup.profile.name()
    ));
    let mut env: Vec<(&str, String)> = match (setup.profile, setup.backends) {
        (Profile::Production, Some(b)) => {
            let store = MySqlStore::connect(&b.mysql_database_url(&names.mysql_database))
                .await
                .context("creating the database")?;
            park(&store, outage, &names.topic_events).await;
            store.close().await;
            profile::service_env(b, &names)
        }
        (Profile::Production, None) => {
            return Err(Error::msg("the production profile needs its backends"))
        }
        (Profile::Mysql, _) => {
            return Err(Error::msg(
                "the outage scenario runs on the embedded or the production profile",
            ))
        }
        (Profile::Embedded, _) => {
            let db = dir.path().join("orders.db");
            let store = SqliteStore::open(&db).context("opening the SQLite store")?;
            park(&store, outage, "order-events").await;
            drop(store);
            vec![("ORDER_DATABASE_URL", format!("sqlite://{}", db.display()))]
        }
    };
    let seed_secs = started.elapsed().as_secs_f64();
    progress(format!("parked in {seed_secs:.1} s; starting the service"));
    env.push(("ORDER_DLQ_JOB_RATE", opts.job_rate.to_string()));
    let outcome = drain(setup, opts, outage, &env, seed_secs).await;
    if let (Profile::Production, Some(b)) = (setup.profile, setup.backends) {
        crate::drop_database_best_effort(b, &names.mysql_database).await;
    }
    outcome
}

async fn drain(
    setup: &Setup<'_>,
    opts: &OutageOptions,
    outage: Outage,
    env: &[(&str, String)],
    seed_secs: f64,
) -> Result<OutageRun> {
    let mut svc = Service::spawn(setup.service_bin, Some(env))?;
    svc.wait_ready(setup.ready_timeout).await?;
    let pid = svc
        .pid()
        .ok_or_else(|| Error::msg("the service has no process id"))?;
    let target = svc.target().clone();
    let ticks = cpu::ticks_per_sec();
    let cpu_before = cpu::cpu_secs(pid, ticks);
    let mut run = OutageRun {
        profile: setup.profile.name().to_owned(),
        parked: outage.orders as u64 * outage.events_per_order,
        heads: outage.orders as u64,
        seed_secs,
        rss_start_mib: rss_mib(pid).unwrap_or(0.0),
        ..OutageRun::default()
    };
    run.rss_peak_mib = run.rss_start_mib;

    let creates = Arc::new(Mutex::new(Creates::default()));
    let traffic = tokio::spawn(traffic(target.clone(), opts.traffic, creates.clone()));
    let (status, body) = service::request(
        &target,
        "POST",
        "/api/dlq/replay",
        Some(r#"{"limit":100000000}"#),
        Duration::from_secs(60),
    )
    .await?;
    if status != 202 {
        return Err(Error::msg(format!(
            "starting the job: HTTP {status}: {body}"
        )));
    }
    let job: Value = serde_json::from_str(&body).context("reading the job")?;
    let id = job["id"].as_str().unwrap_or_default().to_owned();
    let job_started = Instant::now();
    progress(format!("job {id} started; draining"));
    let poll = Duration::from_millis(opts.outage_poll_ms);
    let mut next_note = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(died) = svc.died()? {
            return Err(Error::msg(died));
        }
        let now = job_started.elapsed().as_secs_f64();
        run.stats_ms.push(timed(&target, "/api/dlq/stats").await?);
        run.page_ms
            .push(timed(&target, "/api/dlq/pending?size=20").await?);
        if let Some(rss) = rss_mib(pid) {
            run.rss_peak_mib = run.rss_peak_mib.max(rss);
        }
        let (_, body) = service::get(&target, &format!("/api/dlq/jobs/{id}"), poll * 20).await?;
        let job: Value = serde_json::from_str(&body).context("reading the job")?;
        let processed = job["processed"].as_u64().unwrap_or(0);
        if run.first_head_after.is_none() && processed > 0 {
            run.first_head_after = Some(now);
        }
        run.published = job["published"].as_u64().unwrap_or(0);
        run.job_status = job["status"].as_str().unwrap_or("?").to_owned();
        if run.job_status != "RUNNING" {
            run.drained_after = Some(now);
            break;
        }
        if job_started.elapsed() >= setup.limit {
            break;
        }
        if Instant::now() >= next_note {
            next_note += Duration::from_secs(10);
            progress(format!(
                "  {now:.0} s: {processed} heads, {} events published, RSS {:.0} MiB",
                run.published, run.rss_peak_mib
            ));
        }
        tokio::time::sleep(poll).await;
    }
    run.service_cpu_secs = cpu::cpu_secs(pid, ticks)
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    traffic.abort();
    let _ = traffic.await;
    {
        let mut seen = creates.lock().unwrap_or_else(PoisonError::into_inner);
        run.create_ms = std::mem::take(&mut seen.latencies);
        run.create_failures = seen.failures;
    }
    let (_, stats) = service::get(&target, "/api/dlq/stats", Duration::from_secs(10)).await?;
    let stats: Value = serde_json::from_str(&stats).context("reading the stats")?;
    run.pending_at_end = stats["pendingCount"].as_u64();
    for v in [&mut run.stats_ms, &mut run.page_ms, &mut run.create_ms] {
        v.sort_by(f64::total_cmp);
    }
    svc.stop()?;
    Ok(run)
}

/// Milliseconds one `GET path` took (it must answer 200).
async fn timed(target: &Target, path: &str) -> Result<f64> {
    let t = Instant::now();
    let (status, body) = service::get(target, path, Duration::from_secs(30)).await?;
    if status != 200 {
        return Err(Error::msg(format!("GET {path}: HTTP {status}: {body}")));
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// What the unaffected traffic saw: create latencies (ms) and failures.
#[derive(Debug, Default)]
struct Creates {
    latencies: Vec<f64>,
    failures: u64,
}

/// Creates `per_sec` orders a second into `seen` until aborted.
async fn traffic(target: Target, per_sec: u32, seen: Arc<Mutex<Creates>>) {
    if per_sec == 0 {
        return;
    }
    let pace = Duration::from_secs_f64(1.0 / f64::from(per_sec));
    let mut next = tokio::time::Instant::now();
    for n in 0u64.. {
        tokio::time::sleep_until(next).await;
        next += pace;
        let body = order_body(n);
        let t = Instant::now();
        let res = service::request(
            &target,
            "POST",
            "/api/orders",
            Some(&body),
            Duration::from_secs(10),
        )
        .await;
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        match res {
            Ok((201, _)) => seen.latencies.push(t.elapsed().as_secs_f64() * 1000.0),
            _ => seen.failures += 1,
        }
    }
}

/// Resident memory of `pid`, MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

/// The human report of a run.
pub fn human(r: &OutageRun) -> String {
    let ms = |v: &[f64], q: f64| -> String {
        let sorted: Vec<u64> = v.iter().map(|x| (x * 1000.0) as u64).collect();
        percentile(&sorted, q).map_or_else(
            || "n/a".to_owned(),
            |us| format!("{:.1}", us as f64 / 1000.0),
        )
    };
    let secs = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |s| format!("{s:.1}"));
    let rate = r
        .drained_after
        .map(|s| r.published as f64 / s.max(1e-9))
        .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}"));
    let cpu_per_event = r.service_cpu_secs.filter(|_| r.published > 0).map_or_else(
        || "n/a".to_owned(),
        |c| format!("{:.1}", c * 1e6 / r.published as f64),
    );
    format!(
        "outage drain ({profile}): {parked} parked events over {heads} orders (seeded in {seed:.1} s)\n\
         \x20 job {status}: {published} events published; first head after {first} s, \
         drained after {drained} s = {rate} events/s; {pending} left pending\n\
         \x20 service RSS {rss0:.0} MiB at start, {rss1:.0} MiB peak; CPU {cpu} µs per event\n\
         \x20 GET /api/dlq/stats during the drain: p50 {s50} ms, p99 {s99} ms, max {smax} ms ({sn} calls)\n\
         \x20 GET /api/dlq/pending?size=20: p50 {p50} ms, p99 {p99} ms, max {pmax} ms\n\
         \x20 POST /api/orders meanwhile: {cn} created, p50 {c50} ms, p99 {c99} ms, {cf} failed\n",
        profile = r.profile,
        parked = r.parked,
        heads = r.heads,
        seed = r.seed_secs,
        status = r.job_status,
        published = r.published,
        first = secs(r.first_head_after),
        drained = secs(r.drained_after),
        pending = r.pending_at_end.map_or_else(|| "?".to_owned(), |p| p.to_string()),
        rss0 = r.rss_start_mib,
        rss1 = r.rss_peak_mib,
        cpu = cpu_per_event,
        s50 = ms(&r.stats_ms, 0.5),
        s99 = ms(&r.stats_ms, 0.99),
        smax = ms(&r.stats_ms, 1.0),
        sn = r.stats_ms.len(),
        p50 = ms(&r.page_ms, 0.5),
        p99 = ms(&r.page_ms, 0.99),
        pmax = ms(&r.page_ms, 1.0),
        cn = r.create_ms.len(),
        c50 = ms(&r.create_ms, 0.5),
        c99 = ms(&r.create_ms, 0.99),
        cf = r.create_failures,
    )
}
