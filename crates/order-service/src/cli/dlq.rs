//! `order-service dlq …`: the DLQ operations of the HTTP API from a shell.
//! Every command is one request to a running service (see [`super::client`]),
//! so the service's authentication and audit log see the operator.
//!
//! Output: a human table by default, the service's JSON answer as it is with
//! `--json`. Exit codes: 0 done, 1 the service answered with an error (its
//! problem's title and detail on stderr), 2 the service cannot be reached or
//! the command line is wrong.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{json, Map, Value};

use super::client::{encode, Answer, ClientError, ServiceClient};

/// Where the service is when neither `--url` nor `ORDER_URL` says.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8084";
pub const URL_VAR: &str = "ORDER_URL";
pub const API_KEY_VAR: &str = "ORDER_API_KEY";

/// Exit code when the service answered with an error.
pub const EXIT_SERVICE_ERROR: u8 = 1;
/// Exit code when the service cannot be reached (or the URL is invalid);
/// clap uses it for usage errors too.
pub const EXIT_UNREACHABLE: u8 = 2;

/// Longest cell of a table column that holds free text (failure reasons…).
const MAX_CELL: usize = 60;

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
    },
    /// One record in full.
    Show { event_id: String },
    /// Replay one record (a sequence head publishes the events held behind
    /// it), or with --all start a replay job over every matching sequence
    /// head and follow it until it ends (--no-wait: print its id).
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
}

/// How the answer of one command is shown as text.
#[derive(Debug, Clone, Copy)]
enum View {
    Stats,
    Page,
    Record,
    Replay,
    BulkReplay,
    Job,
    Jobs,
    Generic,
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
    let (method, path, body, view) = request_of(&args.command);
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

/// The HTTP request that carries out `command`.
fn request_of(command: &DlqCommand) -> (&'static str, String, Option<Value>, View) {
    match command {
        DlqCommand::Stats => ("GET", "/api/dlq/stats".into(), None, View::Stats),
        DlqCommand::List { status, page, size } => {
            let base = if status.eq_ignore_ascii_case("pending") {
                "/api/dlq/pending".to_owned()
            } else {
                format!("/api/dlq/status/{}", encode(status))
            };
            let query = query(&[
                ("page", page.map(|p| p.to_string())),
                ("size", size.map(|s| s.to_string())),
            ]);
            ("GET", base + &query, None, View::Page)
        }
        DlqCommand::Show { event_id } => (
            "GET",
            format!("/api/dlq/event/{}", encode(event_id)),
            None,
            View::Record,
        ),
        DlqCommand::Replay(r) => match &r.event_id {
            Some(id) if !r.all => (
                "POST",
                format!("/api/dlq/replay/{}", encode(id)),
                None,
                View::Replay,
            ),
            _ => {
                let mut body = Map::new();
                if let Some(limit) = r.limit {
                    body.insert("limit".into(), json!(limit));
                }
                if r.dry_run {
                    body.insert("dryRun".into(), json!(true));
                }
                if let Some(a) = &r.aggregate_id {
                    body.insert("aggregateId".into(), json!(a));
                }
                if let Some(t) = &r.event_type {
                    body.insert("eventType".into(), json!(t));
                }
                if let Some(s) = &r.status {
                    body.insert("status".into(), json!(s));
                }
                if let Some(f) = &r.from {
                    body.insert("from".into(), json!(f));
                }
                if let Some(t) = &r.to {
                    body.insert("to".into(), json!(t));
                }
                (
                    "POST",
                    "/api/dlq/replay".into(),
                    Some(Value::Object(body)),
                    View::BulkReplay,
                )
            }
        },
        DlqCommand::Jobs { id: Some(id), .. } => (
            "GET",
            format!("/api/dlq/jobs/{}", encode(id)),
            None,
            View::Job,
        ),
        DlqCommand::Jobs {
            id: None,
            page,
            size,
        } => {
            let query = query(&[
                ("page", page.map(|p| p.to_string())),
                ("size", size.map(|s| s.to_string())),
            ]);
            ("GET", format!("/api/dlq/jobs{query}"), None, View::Jobs)
        }
        DlqCommand::CancelJob { id } => (
            "DELETE",
            format!("/api/dlq/jobs/{}", encode(id)),
            None,
            View::Job,
        ),
        DlqCommand::Reset { event_id } => (
            "PUT",
            format!("/api/dlq/reset/{}", encode(event_id)),
            None,
            View::Record,
        ),
        DlqCommand::Skip { event_id, reason } => (
            "POST",
            format!("/api/dlq/skip/{}", encode(event_id)),
            Some(json!({ "reason": reason })),
            View::Generic,
        ),
        DlqCommand::Audit(a) => {
            let query = query(&[
                ("principal", a.principal.clone()),
                ("action", a.action.clone()),
                ("target", a.target.clone()),
                ("from", a.from.clone()),
                ("to", a.to.clone()),
                ("page", a.page.map(|p| p.to_string())),
                ("size", a.size.map(|s| s.to_string())),
            ]);
            ("GET", format!("/api/dlq/audit{query}"), None, View::Generic)
        }
    }
}

/// `?k=v&…` of the parameters that are set, or nothing.
fn query(params: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Prints the answer and picks the exit code.
fn show(answer: &Answer, raw_json: bool, view: View) -> ExitCode {
    let value = answer.json();
    if raw_json {
        print_out(&format!("{}\n", answer.body.trim_end()));
    }
    if answer.is_success() {
        match value {
            Some(v) => {
                if !raw_json {
                    print_out(&render(&v, view));
                }
                ExitCode::SUCCESS
            }
            None => {
                eprintln!(
                    "order-service: the service answered {} with a body that is not JSON: {}",
                    answer.status,
                    excerpt(&answer.body)
                );
                ExitCode::from(EXIT_SERVICE_ERROR)
            }
        }
    } else {
        // A replay the bus refused answers 502 with the replay's outcome.
        if let (Some(v), View::Replay) = (&value, view) {
            if v.get("success").is_some() {
                if !raw_json {
                    print_out(&render(v, view));
                }
                eprintln!(
                    "order-service: the service answered {}: {}",
                    answer.status,
                    text(&v["message"])
                );
                return ExitCode::from(EXIT_SERVICE_ERROR);
            }
        }
        eprintln!(
            "order-service: {}",
            describe_error(answer.status, value.as_ref(), &answer.body)
        );
        ExitCode::from(EXIT_SERVICE_ERROR)
    }
}

/// `404 Not Found: no DLQ record for event …` from a problem+json body.
fn describe_error(status: u16, value: Option<&Value>, body: &str) -> String {
    match value {
        Some(v) if v.get("title").is_some() || v.get("detail").is_some() => {
            let title = text(&v["title"]);
            let detail = text(&v["detail"]);
            let mut s = format!("{status} {title}");
            if !detail.is_empty() && detail != "-" {
                let _ = write!(s, ": {detail}");
            }
            if let Some(errors) = v["errors"].as_array() {
                for e in errors {
                    let _ = write!(s, "\n  {}: {}", text(&e["field"]), text(&e["message"]));
                }
            }
            s
        }
        _ if body.trim().is_empty() => format!("the service answered {status}"),
        _ => format!("the service answered {status}: {}", excerpt(body)),
    }
}

fn excerpt(body: &str) -> String {
    let one_line = clean(body);
    if one_line.chars().count() > 200 {
        format!("{}…", one_line.chars().take(200).collect::<String>())
    } else {
        one_line
    }
}

/// Writes to stdout; a closed pipe (`… | head`) is not an error.
fn print_out(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes()).and_then(|()| out.flush());
}

fn render(v: &Value, view: View) -> String {
    match view {
        View::Stats => render_stats(v),
        View::Page => render_page(v, &RECORD_COLUMNS, "records"),
        View::Record => render_fields(v),
        View::Replay => render_fields(v),
        View::BulkReplay => render_bulk(v),
        View::Job => render_fields(v),
        View::Jobs => render_page(v, &JOB_COLUMNS, "jobs"),
        View::Generic => render_generic(v),
    }
}

fn render_stats(v: &Value) -> String {
    let rows = [
        ("PENDING", "pendingCount"),
        ("  blocked behind a head", "blockedCount"),
        ("REPLAYED", "replayedCount"),
        ("FAILED", "failedCount"),
        ("SKIPPED", "skippedCount"),
        ("TOTAL", "totalCount"),
    ]
    .iter()
    .map(|(label, key)| vec![(*label).to_owned(), text(&v[*key])])
    .collect();
    let mut out = table(&["STATUS", "RECORDS"], rows);
    let _ = writeln!(
        out,
        "oldest pending failure: {}",
        text(&v["oldestPendingFailureTime"])
    );
    out
}

/// A DLQ record's columns in a list: (header, field).
const JOB_COLUMNS: [(&str, &str); 8] = [
    ("JOB ID", "id"),
    ("STATUS", "status"),
    ("MATCHED", "matched"),
    ("PROCESSED", "processed"),
    ("REPLAYED", "replayed"),
    ("FAILED", "failed"),
    ("CREATED", "createdAt"),
    ("BY", "principal"),
];

const RECORD_COLUMNS: [(&str, &str); 10] = [
    ("EVENT ID", "eventId"),
    ("ORDER", "aggregateId"),
    ("TYPE", "eventType"),
    ("VER", "version"),
    ("STATUS", "status"),
    ("SOURCE", "source"),
    ("FAILED AT", "failureTime"),
    ("TRIES", "replayAttempts"),
    ("BLOCKED BY", "blockedBy"),
    ("REASON", "failureReason"),
];

/// A `{content, page, size, totalElements, totalPages}` page as a table.
fn render_page(v: &Value, columns: &[(&str, &str)], what: &str) -> String {
    let items = v["content"].as_array().cloned().unwrap_or_default();
    let mut out = if items.is_empty() {
        format!("no {what}\n")
    } else {
        let headers: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
        let rows = items
            .iter()
            .map(|item| columns.iter().map(|(_, k)| cell(&item[*k])).collect())
            .collect();
        table(&headers, rows)
    };
    if v.get("totalElements").is_some() {
        let _ = writeln!(
            out,
            "{what} in all: {}; page {} of {} (pages count from 0, {} per page)",
            text(&v["totalElements"]),
            text(&v["page"]),
            text(&v["totalPages"]),
            text(&v["size"])
        );
    }
    out
}

/// An object as `field  value` lines; JSON text fields are pretty-printed.
fn render_fields(v: &Value) -> String {
    let Some(obj) = v.as_object() else {
        return format!("{}\n", text(v));
    };
    let width = obj.keys().map(|k| k.chars().count()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, val) in obj {
        let shown = match val {
            Value::String(s) if s.trim_start().starts_with(['{', '[']) => {
                match serde_json::from_str::<Value>(s) {
                    Ok(parsed) => serde_json::to_string_pretty(&parsed)
                        .unwrap_or_else(|_| s.clone())
                        .replace('\n', &format!("\n{:width$}  ", "")),
                    Err(_) => s.clone(),
                }
            }
            other => text(other),
        };
        let _ = writeln!(out, "{k:width$}  {shown}");
    }
    out
}

fn render_bulk(v: &Value) -> String {
    let mut out = String::new();
    let dry = v["dryRun"].as_bool().unwrap_or(false);
    if dry {
        let _ = writeln!(
            out,
            "dry run: {} sequence head(s) would be replayed, nothing published",
            text(&v["matched"])
        );
    } else {
        let _ = writeln!(
            out,
            "matched {}, replayed {}, failed {}, skipped {}, refused {}; {} message(s) published",
            text(&v["matched"]),
            text(&v["replayed"]),
            text(&v["failed"]),
            text(&v["skipped"]),
            text(&v["refused"]),
            text(&v["published"])
        );
    }
    let results = v["results"].as_array().cloned().unwrap_or_default();
    if !results.is_empty() {
        let rows = results
            .iter()
            .map(|r| {
                vec![
                    cell(&r["eventId"]),
                    cell(&r["status"]),
                    cell(&r["published"]),
                    cell(&r["message"]),
                ]
            })
            .collect();
        out.push_str(&table(
            &["EVENT ID", "STATUS", "PUBLISHED", "MESSAGE"],
            rows,
        ));
    } else if let Some(ids) = v["eventIds"].as_array().filter(|ids| !ids.is_empty()) {
        let rows = ids.iter().map(|id| vec![cell(id)]).collect();
        out.push_str(&table(&["EVENT ID"], rows));
    }
    out
}

/// Answers whose shape this CLI does not know in detail (skip, audit): a
/// page or an array as a table of its fields, an object as fields.
fn render_generic(v: &Value) -> String {
    let (items, page) = match v {
        Value::Array(items) => (Some(items.clone()), None),
        Value::Object(o) => match o.get("content").and_then(Value::as_array) {
            Some(items) => (Some(items.clone()), Some(v)),
            None => (None, None),
        },
        _ => (None, None),
    };
    let Some(items) = items else {
        return render_fields(v);
    };
    let mut keys: Vec<String> = Vec::new();
    for item in &items {
        if let Some(o) = item.as_object() {
            for k in o.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    let headers: Vec<String> = keys.iter().map(|k| header_of(k)).collect();
    let columns: Vec<(&str, &str)> = headers
        .iter()
        .zip(&keys)
        .map(|(h, k)| (h.as_str(), k.as_str()))
        .collect();
    match page {
        Some(p) => render_page(p, &columns, "entries"),
        None => render_page(&json!({ "content": items }), &columns, "entries"),
    }
}

/// `eventId` → `EVENT ID`.
fn header_of(key: &str) -> String {
    let mut h = String::new();
    for c in key.chars() {
        if c.is_ascii_uppercase() && !h.is_empty() {
            h.push(' ');
        }
        h.push(c.to_ascii_uppercase());
    }
    h
}

/// A JSON value as text: strings without quotes, null as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A table cell: one line, free text cut at [`MAX_CELL`] characters.
fn cell(v: &Value) -> String {
    let s = clean(&text(v));
    if s.chars().count() > MAX_CELL {
        format!("{}…", s.chars().take(MAX_CELL - 1).collect::<String>())
    } else {
        s
    }
}

/// Control characters (line breaks in a failure reason…) become spaces.
fn clean(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Columns padded to their widest cell, two spaces apart; the last column
/// is not padded.
fn table<H: AsRef<str>>(headers: &[H], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.as_ref().chars().count()).collect();
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| h.as_ref().to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows.iter()) {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(c.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_its_columns_by_characters() {
        let t = table(
            &["ID", "NAME"],
            vec![
                vec!["1".into(), "é-x".into()],
                vec!["1234".into(), "b".into()],
            ],
        );
        assert_eq!(t, "ID    NAME\n1     é-x\n1234  b\n");
    }

    #[test]
    fn a_problem_is_described_by_its_title_and_detail() {
        let p = json!({"type": "x", "title": "Not Found", "status": 404, "detail": "no DLQ record for event e1"});
        assert_eq!(
            describe_error(404, Some(&p), ""),
            "404 Not Found: no DLQ record for event e1"
        );
        assert_eq!(
            describe_error(502, None, "<html>bad\ngateway</html>"),
            "the service answered 502: <html>bad gateway</html>"
        );
        assert_eq!(describe_error(500, None, ""), "the service answered 500");
    }

    #[test]
    fn long_or_multi_line_cells_are_cut_to_one_line() {
        let c = cell(&json!(format!("line one\nline two {}", "x".repeat(100))));
        assert!(!c.contains('\n'));
        assert_eq!(c.chars().count(), MAX_CELL);
        assert_eq!(cell(&Value::Null), "-");
    }

    #[test]
    fn bulk_replay_sends_only_the_filters_given() {
        let args = ReplayArgs {
            event_id: None,
            all: true,
            limit: Some(5),
            dry_run: true,
            aggregate_id: None,
            event_type: Some("OrderCreated".into()),
            status: Some("FAILED".into()),
            from: None,
            to: Some("2024-05-01T00:00:00Z".into()),
            no_wait: false,
            poll_ms: 1000,
        };
        let (method, path, body, _) = request_of(&DlqCommand::Replay(args));
        assert_eq!((method, path.as_str()), ("POST", "/api/dlq/replay"));
        assert_eq!(
            body,
            Some(json!({
                "limit": 5,
                "dryRun": true,
                "eventType": "OrderCreated",
                "status": "FAILED",
                "to": "2024-05-01T00:00:00Z"
            }))
        );
    }

    #[test]
    fn audit_filters_become_an_encoded_query() {
        let args = AuditArgs {
            principal: Some("ops team".into()),
            action: Some("DLQ_REPLAY".into()),
            target: None,
            from: Some("2026-01-01T00:00:00+01:00".into()),
            to: None,
            page: Some(2),
            size: None,
        };
        let (_, path, _, _) = request_of(&DlqCommand::Audit(args));
        assert_eq!(
            path,
            "/api/dlq/audit?principal=ops%20team&action=DLQ_REPLAY&from=2026-01-01T00%3A00%3A00%2B01%3A00&page=2"
        );
    }

    #[test]
    fn a_generic_page_gets_a_column_per_field() {
        let v = json!({"content": [{"principal": "ops", "action": "DLQ_REPLAY"}, {"principal": "ci", "result": "OK"}],
                        "page": 0, "size": 20, "totalElements": 2, "totalPages": 1});
        let out = render_generic(&v);
        assert!(
            out.starts_with(
                "PRINCIPAL  ACTION      RESULT\nops        DLQ_REPLAY  -\nci         -           OK\n"
            ),
            "{out}"
        );
        assert!(out.contains("entries in all: 2;"), "{out}");
    }
}
