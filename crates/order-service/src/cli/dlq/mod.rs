//! `order-service dlq …`: the DLQ operations of the HTTP API from a shell.
//! Every command is one request to a running service (see [`super::client`]),
//! so the service's authentication and audit log see the operator.
//!
//! Output: a human table by default, the service's JSON answer as it is with
//! `--json`. Exit codes: 0 done, 1 the service answered with an error (its
//! problem's title and detail on stderr), 2 the service cannot be reached or
//! the command line is wrong.

mod render;
mod repair;
mod request;
mod search;

use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};
use serde_json::Value;

use self::render::{print_out, render_fields, show, text, View};
use self::request::request_of;
use super::client::{encode, ClientError, ServiceClient};

/// Where the service is when neither `--url` nor `ORDER_URL` says.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8084";
pub const URL_VAR: &str = "ORDER_URL";
pub const API_KEY_VAR: &str = "ORDER_API_KEY";

/// Exit code when the service answered with an error.
pub const EXIT_SERVICE_ERROR: u8 = 1;
/// Exit code when the service cannot be reached (or the URL is invalid);
/// clap uses it for usage errors too.
pub const EXIT_UNREACHABLE: u8 = 2;

#[derive(Debug, Args)]
pub struct DlqArgs {
    /// Base URL of the running service [env: ORDER_URL] [default: http://127.0.0.1:8084]
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// API key, sent as `Authorization: Bearer <key>` [env: ORDER_API_KEY]
    /// (prefer the variable: arguments are visible to other local users)
    #[arg(long, global = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Print the service's JSON answer as it is instead of a table
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for each answer
    #[arg(long, global = true, value_name = "SECS", default_value_t = 300)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Record counts by status, blocked records, oldest pending failure.
    Stats,
    /// One page of records of a status, newest failure first.
    List {
        /// PENDING, REPLAYED, FAILED or SKIPPED
        #[arg(long, default_value = "PENDING")]
        status: String,
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
    /// One record in full.
    Show { event_id: String },
    /// Replay one record (a sequence head publishes the events held behind
    /// it), or with --all start a replay job over every matching sequence
    /// head and follow it until it ends (--no-wait: print its id);
    /// --preview shows what it would do instead.
    Replay(ReplayArgs),
    /// Bulk replay jobs, newest first, or one job.
    Jobs {
        /// A job id: show this job
        id: Option<String>,
        /// Zero-based page number [service default: 0]
        #[arg(long, conflicts_with = "id")]
        page: Option<u64>,
        /// Page size [service default: 20]
        #[arg(long, conflicts_with = "id")]
        size: Option<u64>,
        /// The page after this cursor (the `--after` a page prints last)
        #[arg(long, value_name = "CURSOR", conflicts_with = "id")]
        after: Option<String>,
    },
    /// Cancel a running replay job (it stops before its next head).
    CancelJob { id: String },
    /// Move a FAILED record back to PENDING.
    Reset { event_id: String },
    /// Resolve a record without publishing it (SKIPPED), with a reason.
    Skip {
        event_id: String,
        /// Why it is skipped (kept in the audit log)
        #[arg(long)]
        reason: String,
    },
    /// The audit log of DLQ actions, newest first.
    Audit(AuditArgs),
    #[command(flatten)]
    Repair(repair::RepairCommand),
    #[command(flatten)]
    Search(search::SearchCommand),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["event_id", "all"])))]
pub struct ReplayArgs {
    /// The record's event id
    pub event_id: Option<String>,
    /// Replay every unresolved sequence head that matches, oldest failure first
    #[arg(long)]
    pub all: bool,
    /// Most heads to replay [service default: 100]
    #[arg(long, conflicts_with = "event_id")]
    pub limit: Option<u64>,
    /// Only list the heads that would be replayed
    #[arg(long, conflicts_with = "event_id")]
    pub dry_run: bool,
    /// Only this order's records
    #[arg(long, conflicts_with = "event_id", value_name = "ID")]
    pub aggregate_id: Option<String>,
    /// Only heads of this event type
    #[arg(long, conflicts_with = "event_id", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Only PENDING or only FAILED heads [default: both]
    #[arg(long, conflicts_with = "event_id")]
    pub status: Option<String>,
    /// Only heads that failed at or after this time (RFC 3339)
    #[arg(long, conflicts_with = "event_id")]
    pub from: Option<String>,
    /// Only heads that failed before this time (RFC 3339)
    #[arg(long, conflicts_with = "event_id")]
    pub to: Option<String>,
    /// Start the job and print its id instead of following it
    #[arg(long, conflicts_with_all = ["event_id", "dry_run"])]
    pub no_wait: bool,
    /// Show what the replay would send, in order, and the read-model
    /// document before and after; send nothing (with --all: each matching
    /// head, at most 100)
    #[arg(long, conflicts_with_all = ["dry_run", "no_wait"])]
    pub preview: bool,
    /// Milliseconds between looks at a followed job
    #[arg(long, value_name = "MS", default_value_t = 1000, hide = true)]
    pub poll_ms: u64,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Who acted (the API key's principal)
    #[arg(long)]
    pub principal: Option<String>,
    /// What they did (e.g. DLQ_REPLAY, DLQ_BULK_REPLAY, DLQ_RESET, DLQ_SKIP)
    #[arg(long)]
    pub action: Option<String>,
    /// What they acted on (an event id)
    #[arg(long)]
    pub target: Option<String>,
    /// From this time on (RFC 3339)
    #[arg(long)]
    pub from: Option<String>,
    /// Up to this time (RFC 3339)
    #[arg(long)]
    pub to: Option<String>,
    /// Zero-based page number
    #[arg(long)]
    pub page: Option<u64>,
    /// Page size
    #[arg(long)]
    pub size: Option<u64>,
    /// The page after this cursor (the page's `nextCursor`)
    #[arg(long, value_name = "CURSOR")]
    pub after: Option<String>,
}
/// Runs the command on a current-thread runtime of its own: the CLI needs
/// neither the service's configuration nor its telemetry.
pub fn run_blocking(args: &DlqArgs) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => {
            eprintln!("order-service: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one DLQ command against the service and prints its answer.
pub async fn run(args: &DlqArgs) -> ExitCode {
    let url = args
        .url
        .clone()
        .or_else(|| env_var(URL_VAR))
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let api_key = args.api_key.clone().or_else(|| env_var(API_KEY_VAR));
    let client = match ServiceClient::new(&url, api_key, Duration::from_secs(args.timeout.max(1))) {
        Ok(c) => c,
        Err(e) => return cannot_reach(&e),
    };
    if let DlqCommand::Search(c) = &args.command {
        return search::run(&client, c, args.json).await;
    }
    let (method, path, mut body, view) = request_of(&args.command);
    if let DlqCommand::Repair(repair::RepairCommand::Revise(r)) = &args.command {
        match repair::revise_body(r) {
            Ok(b) => body = Some(b),
            Err(e) => {
                eprintln!("order-service: {e}");
                return ExitCode::from(EXIT_UNREACHABLE);
            }
        }
    }
    let answer = match client.request(method, &path, body.as_ref()).await {
        Ok(answer) => answer,
        Err(e) => return cannot_reach(&e),
    };
    // A bulk replay that is not a dry run answers 202 with a job.
    if let (DlqCommand::Replay(r), 202) = (&args.command, answer.status) {
        let job = answer.json().unwrap_or(Value::Null);
        if r.no_wait {
            if args.json {
                print_out(&format!("{}\n", answer.body.trim_end()));
            } else {
                print_out(&format!(
                    "replay job {} started: {} sequence head(s) matched; follow it with \
                     `order-service dlq jobs {}`\n",
                    text(&job["id"]),
                    text(&job["matched"]),
                    text(&job["id"])
                ));
            }
            return ExitCode::SUCCESS;
        }
        return follow_job(
            &client,
            job,
            args.json,
            Duration::from_millis(r.poll_ms.max(10)),
        )
        .await;
    }
    show(&answer, args.json, view)
}

/// Polls a job until it ends, printing a progress line whenever its
/// counters change. Exit 0 when it COMPLETED, 1 when it ended otherwise.
async fn follow_job(
    client: &ServiceClient,
    mut job: Value,
    raw_json: bool,
    poll: Duration,
) -> ExitCode {
    let id = text(&job["id"]);
    if !raw_json {
        print_out(&format!(
            "replay job {id} started: {} sequence head(s) matched (Ctrl-C stops watching, \
             not the job; `order-service dlq cancel-job {id}` cancels it)\n",
            text(&job["matched"])
        ));
    }
    let mut last = String::new();
    loop {
        let line = progress_line(&job);
        if !raw_json && line != last {
            print_out(&format!("{line}\n"));
            last = line;
        }
        if job["status"] != "RUNNING" {
            break;
        }
        tokio::time::sleep(poll).await;
        let path = format!("/api/dlq/jobs/{}", encode(&id));
        match client.request("GET", &path, None).await {
            Ok(a) if a.is_success() => match a.json() {
                Some(v) => job = v,
                None => return show(&a, raw_json, View::Job),
            },
            Ok(a) => return show(&a, raw_json, View::Job),
            Err(e) => return cannot_reach(&e),
        }
    }
    if raw_json {
        print_out(&format!("{job}\n"));
    } else {
        print_out(&render_fields(&job));
    }
    if job["status"] == "COMPLETED" {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "order-service: replay job {id} ended {}: {}",
            text(&job["status"]),
            text(&job["message"])
        );
        ExitCode::from(EXIT_SERVICE_ERROR)
    }
}

fn progress_line(job: &Value) -> String {
    format!(
        "{}: {} of {} head(s) processed: {} replayed, {} failed, {} skipped; {} message(s) published",
        text(&job["status"]),
        text(&job["processed"]),
        text(&job["matched"]),
        text(&job["replayed"]),
        text(&job["failed"]),
        text(&job["skipped"]),
        text(&job["published"])
    )
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn cannot_reach(e: &ClientError) -> ExitCode {
    eprintln!("order-service: {e}");
    ExitCode::from(EXIT_UNREACHABLE)
}
