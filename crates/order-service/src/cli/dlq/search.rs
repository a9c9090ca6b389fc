//! `order-service dlq search|export|import`: find records, write a
//! selection as NDJSON to stdout, read such a file into a service's DLQ
//! (see `GET /api/dlq/search`, `GET /api/dlq/export`, `POST
//! /api/dlq/import`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use hyper::body::Bytes;

use super::render::{print_out, show, View};
use super::request::query;
use super::EXIT_UNREACHABLE;
use crate::cli::client::ServiceClient;

#[derive(Debug, Subcommand)]
pub enum SearchCommand {
    /// Records matching every filter given, newest failure first.
    Search {
        #[command(flatten)]
        filter: FilterArgs,
        /// Zero-based page number [service default: 0]
        #[arg(long)]
        page: Option<u64>,
        /// Page size [service default: 20]
        #[arg(long)]
        size: Option<u64>,
        /// The page after this cursor (the `--after` a page prints last)
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
    },
    /// Write the matching records to stdout as NDJSON (one record per line,
    /// with its originalEvent): `dlq export --status FAILED > file.ndjson`.
    Export {
        #[command(flatten)]
        filter: FilterArgs,
        /// Most records [service default and most: 100000]
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Read an export into the service's DLQ: new PENDING records marked
    /// imported; event ids already there are skipped.
    Import {
        /// The NDJSON file (`-` for stdin)
        file: PathBuf,
    },
}

/// The filters of `search` and `export`.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Text in the failure reason (case-insensitive)
    #[arg(long, short = 'q', value_name = "TEXT")]
    pub text: Option<String>,
    /// Only this event type (e.g. OrderCreated)
    #[arg(long, value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Only this order's records
    #[arg(long, value_name = "ID")]
    pub aggregate_id: Option<String>,
    /// Only the records of this customer's orders
    #[arg(long, value_name = "ID")]
    pub customer_id: Option<String>,
    /// PENDING, REPLAYED, FAILED or SKIPPED
    #[arg(long)]
    pub status: Option<String>,
    /// PUBLISH or CONSUMER
    #[arg(long)]
    pub source: Option<String>,
    /// Failed at or after this time (RFC 3339)
    #[arg(long)]
    pub from: Option<String>,
    /// Failed before this time (RFC 3339)
    #[arg(long)]
    pub to: Option<String>,
}

impl FilterArgs {
    fn pairs(&self) -> Vec<(&'static str, Option<String>)> {
        vec![
            ("q", self.text.clone()),
            ("eventType", self.event_type.clone()),
            ("aggregateId", self.aggregate_id.clone()),
            ("customerId", self.customer_id.clone()),
            ("status", self.status.clone()),
            ("source", self.source.clone()),
            ("from", self.from.clone()),
            ("to", self.to.clone()),
        ]
    }
}

/// The request of a command (an import's body is the file, read by [`run`]).
pub(super) fn request_of(command: &SearchCommand) -> (&'static str, String) {
    match command {
        SearchCommand::Search {
            filter,
            page,
            size,
            after,
        } => {
            let mut pairs = filter.pairs();
            pairs.extend([
                ("page", page.map(|p| p.to_string())),
                ("size", size.map(|s| s.to_string())),
                ("after", after.clone()),
            ]);
            ("GET", format!("/api/dlq/search{}", query(&pairs)))
        }
        SearchCommand::Export { filter, limit } => {
            let mut pairs = filter.pairs();
            pairs.push(("limit", limit.map(|l| l.to_string())));
            ("GET", format!("/api/dlq/export{}", query(&pairs)))
        }
        SearchCommand::Import { .. } => ("POST", "/api/dlq/import".into()),
    }
}

/// Runs one of these commands: a search prints a page like `dlq list`, an
/// export prints the NDJSON as it came, an import sends the file.
pub(super) async fn run(client: &ServiceClient, command: &SearchCommand, json: bool) -> ExitCode {
    let (method, path) = request_of(command);
    let body = match command {
        SearchCommand::Import { file } => match read(file) {
            Ok(bytes) => Some(("application/x-ndjson", bytes)),
            Err(e) => {
                eprintln!("order-service: cannot read {}: {e}", file.display());
                return ExitCode::from(EXIT_UNREACHABLE);
            }
        },
        _ => None,
    };
    let answer = match client.send(method, &path, body).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("order-service: {e}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    match command {
        SearchCommand::Export { .. } if answer.is_success() => {
            print_out(&answer.body);
            ExitCode::SUCCESS
        }
        SearchCommand::Search { .. } => show(&answer, json, View::Page),
        _ => show(&answer, json, View::Generic),
    }
}

fn read(file: &PathBuf) -> std::io::Result<Bytes> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        return Ok(Bytes::from(buf));
    }
    std::fs::read(file).map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_the_query_of_search_and_export() {
        let filter = || FilterArgs {
            text: Some("broker down".into()),
            event_type: None,
            aggregate_id: None,
            customer_id: Some("c-1".into()),
            status: Some("FAILED".into()),
            source: None,
            from: None,
            to: None,
        };
        let (_, path) = request_of(&SearchCommand::Search {
            filter: filter(),
            page: None,
            size: Some(5),
            after: None,
        });
        assert_eq!(
            path,
            "/api/dlq/search?q=broker%20down&customerId=c-1&status=FAILED&size=5"
        );
        let (_, path) = request_of(&SearchCommand::Export {
            filter: filter(),
            limit: Some(10),
        });
        assert_eq!(
            path,
            "/api/dlq/export?q=broker%20down&customerId=c-1&status=FAILED&limit=10"
        );
    }
}
