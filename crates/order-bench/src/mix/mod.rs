//! `--mix`: the load scenario with a mixed workload instead of creates
//! only. Each connection task creates its own orders and walks them
//! through the lifecycle (confirm, prepare, ready, deliver; some cancelled)
//! while reading orders by id and customer lists, in the shares of
//! `--mix-*` ([`plan`]); results per request kind ([`stats`]).
//!
//! The service's CPU is one figure per process, so the cost of each kind is
//! measured in phases of their own after the mix, in the same run:
//!
//! 1. the mix (warm-up, measured window, then the pipeline's catch-up);
//! 2. creates only (`--phase-seconds`);
//! 3. transitions only, on the orders created so far (`--phase-seconds`);
//! 4. reads by id only, on the orders created so far (`--read-seconds`).
//!
//! Every phase waits for the outbox and the projector to catch up before
//! the next starts, so its CPU (sampled at its start, at the end of its
//! load and after the catch-up) is its own. Phases 2–4 have no warm-up:
//! everything they send is counted against the CPU they used.

pub mod driver;
pub mod plan;
pub mod report;
pub mod stats;

use std::time::Duration;

use crate::cpu::{Meter, PhaseCpu};
use crate::load::LoadConfig;
use crate::report::ServerSide;
use crate::service::{self, Drain, Target};
use crate::{progress, Result};
use plan::{Fallback, Kind, OrderBook, Weights};
use stats::PhaseStats;

/// `--mix` and its shares (flattened into [`crate::Options`]).
#[derive(Debug, Clone, clap::Args)]
pub struct MixOptions {
    /// Load scenario: a mixed workload (creates, lifecycle transitions,
    /// reads) instead of creates only, then short single-kind phases.
    #[arg(long)]
    pub mix: bool,
    /// Mix: percent of creates.
    #[arg(long, default_value_t = Weights::DEFAULT.creates, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub mix_creates: u32,
    /// Mix: percent of forward transitions (confirm, prepare, ready, deliver).
    #[arg(long, default_value_t = Weights::DEFAULT.transitions, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub mix_transitions: u32,
    /// Mix: percent of cancels (of PENDING orders).
    #[arg(long, default_value_t = Weights::DEFAULT.cancels, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub mix_cancels: u32,
    /// Mix: percent of reads by id (GET /api/orders/{id}).
    #[arg(long, default_value_t = Weights::DEFAULT.gets, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub mix_reads: u32,
    /// Mix: percent of customer lists (GET /api/orders/customer/{id} and
    /// GET /api/orders?customerId=…, alternately).
    #[arg(long, default_value_t = Weights::DEFAULT.lists, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub mix_lists: u32,
    /// Mix: seconds of the creates-only and of the transitions-only phase
    /// after the mix; 0 skips both.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub phase_seconds: u64,
    /// Mix: seconds of the reads-by-id-only phase at the end; 0 skips it.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub read_seconds: u64,
}

impl MixOptions {
    pub fn weights(&self) -> Weights {
        Weights {
            creates: self.mix_creates,
            transitions: self.mix_transitions,
            cancels: self.mix_cancels,
            gets: self.mix_reads,
            lists: self.mix_lists,
        }
    }
}

/// One phase: what the clients saw, the CPU it took, how its catch-up went.
#[derive(Debug, Clone, Default)]
pub struct PhaseReport {
    pub name: &'static str,
    pub stats: PhaseStats,
    pub cpu: PhaseCpu,
    pub drain: Drain,
}

impl PhaseReport {
    /// Service CPU µs per successful command: during the load, and with the
    /// catch-up (the headline).
    pub fn service_us_per_command(&self) -> (Option<f64>, Option<f64>) {
        self.service_us_per(self.stats.commands())
    }

    /// Service CPU µs per answered request of any kind.
    pub fn service_us_per_request(&self) -> (Option<f64>, Option<f64>) {
        self.service_us_per(self.stats.answered())
    }

    fn service_us_per(&self, n: u64) -> (Option<f64>, Option<f64>) {
        let s = self.cpu.service();
        (
            crate::cpu::us_per(s.and_then(|s| s.load), n),
            crate::cpu::us_per(s.and_then(|s| s.total), n),
        )
    }
}

/// The whole `--mix` run.
#[derive(Debug, Clone, Default)]
pub struct MixRun {
    pub weights: Option<Weights>,
    pub mix: PhaseReport,
    pub creates: Option<PhaseReport>,
    pub transitions: Option<PhaseReport>,
    pub reads: Option<PhaseReport>,
}

impl MixRun {
    /// Service CPU per create over CPU per transition, from the single-kind
    /// phases (catch-up included).
    pub fn transition_to_create_cpu(&self) -> Option<f64> {
        let c = self.creates.as_ref()?.service_us_per_request().1?;
        let t = self.transitions.as_ref()?.service_us_per_request().1?;
        (c > 0.0).then(|| t / c)
    }
}

/// What every phase shares.
pub struct Setup<'a> {
    pub target: &'a Target,
    pub meter: &'a Meter,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub request_timeout: Duration,
    /// Longest wait for the catch-up after each phase.
    pub drain_limit: Duration,
}

/// Runs the mix and the single-kind phases; also returns what `/metrics`
/// says about the mix (until its catch-up).
pub async fn run(setup: &Setup<'_>, opts: &MixOptions) -> Result<(MixRun, ServerSide)> {
    let weights = opts.weights();
    weights.validate().map_err(crate::Error::msg)?;
    let books = vec![OrderBook::default(); setup.connections];
    progress(format!(
        "mix: {} connections, {} s warm-up + {} s measured ({})",
        setup.connections,
        setup.warmup.as_secs(),
        setup.duration.as_secs(),
        report::describe_weights(&weights)
    ));
    let before = service::scrape(setup.target).await?;
    let (mix, books) = phase(
        setup,
        "mix",
        weights,
        Fallback::Create,
        setup.warmup,
        setup.duration,
        books,
        &before,
    )
    .await?;
    let server = match service::scrape(setup.target).await {
        Ok(after) => ServerSide::from_scrapes(&before, &after),
        Err(e) => {
            progress(format!("/metrics scrape after the mix failed: {e}"));
            ServerSide::default()
        }
    };
    let mut run = MixRun {
        weights: Some(weights),
        mix,
        ..MixRun::default()
    };
    let mut books = books;
    let secs = Duration::from_secs(opts.phase_seconds);
    if opts.phase_seconds > 0 {
        for (name, w, fallback) in [
            ("creates only", Weights::CREATES, Fallback::Create),
            (
                "transitions only",
                weights.transitions_only(),
                Fallback::Stop,
            ),
        ] {
            let baseline = service::scrape(setup.target).await?;
            let (p, b) = phase(
                setup,
                name,
                w,
                fallback,
                Duration::ZERO,
                secs,
                books,
                &baseline,
            )
            .await?;
            books = b;
            if name == "creates only" {
                run.creates = Some(p);
            } else {
                run.transitions = Some(p);
            }
        }
    }
    if opts.read_seconds > 0 {
        let baseline = service::scrape(setup.target).await?;
        let (p, _) = phase(
            setup,
            "reads by id only",
            Weights::GETS,
            Fallback::Stop,
            Duration::ZERO,
            Duration::from_secs(opts.read_seconds),
            books,
            &baseline,
        )
        .await?;
        run.reads = Some(p);
    }
    Ok((run, server))
}

#[allow(clippy::too_many_arguments)]
async fn phase(
    setup: &Setup<'_>,
    name: &'static str,
    weights: Weights,
    fallback: Fallback,
    warmup: Duration,
    duration: Duration,
    books: Vec<OrderBook>,
    baseline: &crate::prom::Scrape,
) -> Result<(PhaseReport, Vec<OrderBook>)> {
    let open: usize = books
        .iter()
        .map(|b| b.open_counts().iter().sum::<usize>())
        .sum();
    let all: usize = books.iter().map(|b| b.all().len()).sum();
    progress(format!(
        "phase {name}: {} s ({all} orders known, {open} not final)",
        duration.as_secs()
    ));
    let cfg = driver::PhaseConfig {
        load: LoadConfig {
            addr: setup.target.addr,
            host: setup.target.host_header(),
            connections: setup.connections,
            warmup,
            duration,
            request_timeout: setup.request_timeout,
        },
        weights,
        fallback,
        // A different sequence per phase.
        seed: name
            .bytes()
            .fold(0x5eed, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
    };
    let (ran, start) = tokio::join!(driver::run(&cfg, books), async {
        tokio::time::sleep(warmup).await;
        setup.meter.sample()
    });
    let end = setup.meter.sample();
    let (stats, books) = ran?;
    let drain = crate::catch_up(setup.target, baseline, setup.drain_limit).await;
    let after = setup.meter.sample();
    let cpu = setup.meter.phase(&start, &end, &after);
    let p = PhaseReport {
        name,
        stats,
        cpu,
        drain,
    };
    let (_, per_request) = p.service_us_per_request();
    progress(format!(
        "phase {name} done: {} requests answered ({:.0}/s), {} commands, {} other statuses, {} transport errors; service CPU {} per request",
        p.stats.answered(),
        p.stats.per_sec(p.stats.answered()),
        p.stats.commands(),
        p.stats.failed_statuses().values().sum::<u64>(),
        p.stats.transport_errors(),
        per_request.map_or_else(|| "n/a".to_owned(), |u| format!("{u:.0} µs")),
    ));
    if p.stats.kind(Kind::Create).ok == 0 && p.stats.commands() == 0 && p.stats.answered() == 0 {
        for e in &p.stats.error_samples {
            progress(format!("  e.g. {e}"));
        }
    }
    Ok((p, books))
}
