//! The command line: `order-service [serve]`, `order-service migrate`,
//! `order-service rebuild-read-model`, `order-service relay-partitions`,
//! `order-service openapi`, and the operator commands
//! `order-service dlq …` ([`dlq`]), a client of a running service.

pub mod client;
pub mod dlq;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::startup;

#[derive(Debug, Parser)]
#[command(
    name = "order-service",
    version,
    about = "Event-sourced order service (configuration: ORDER_* variables, see config/default.toml)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and its background workers (the default).
    Serve,
    /// Create or upgrade the database schemas, then exit.
    Migrate,
    /// Rebuild the read model from the event store (offline), print the report.
    RebuildReadModel,
    /// Show the relay partitions (holder, epoch, lease) of the database;
    /// with `--set N`, change their number (safe while instances run: the
    /// new partitions are claimed only once every old lease ran out).
    RelayPartitions {
        /// The new number of partitions (1 to 1024).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
        set: Option<u32>,
    },
    /// Print the OpenAPI document the service serves at /v3/api-docs (with
    /// this configuration: the /api/test operations only with
    /// ORDER_TEST_ENDPOINTS on), then exit.
    Openapi,
    /// Operate the DLQ of a running service through its HTTP API.
    Dlq(Box<dlq::DlqArgs>),
}

/// Exit code for invalid configuration.
pub const EXIT_CONFIG: u8 = 2;

/// Runs the parsed command to completion.
pub async fn run(cli: Cli, config: Config) -> ExitCode {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match startup::spawn_app(config).await {
            Ok(app) => {
                app.run_until_signal().await;
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Migrate => match startup::migrate(&config).await {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::RebuildReadModel => match startup::rebuild_read_model(&config).await {
            Ok(r) => {
                println!(
                    "read model rebuilt: {} events, {} orders in {} ms ({} events/s)",
                    r.events, r.orders, r.millis, r.events_per_second
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::RelayPartitions { set } => match startup::relay_partitions(&config, set).await {
            Ok(table) => {
                print!("{table}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Openapi => {
            let doc = crate::http::openapi::json(config.test_endpoints);
            println!("{}", String::from_utf8_lossy(&doc));
            ExitCode::SUCCESS
        }
        Command::Dlq(args) => dlq::run(&args).await,
    }
}

fn fail(e: &startup::StartupError) -> ExitCode {
    tracing::error!(error = %e, "order-service failed");
    eprintln!("order-service: {e}");
    match e {
        startup::StartupError::Config(_) => ExitCode::from(EXIT_CONFIG),
        _ => ExitCode::FAILURE,
    }
}
