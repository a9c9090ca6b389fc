//! Turns the service's JSON answers into what an operator reads: aligned
//! tables and `field  value` lines, and a problem+json error into one line
//! on stderr. Kept apart from the commands so the output format can change
//! without touching what is sent.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use serde_json::{json, Value};

use super::EXIT_SERVICE_ERROR;
use crate::cli::client::Answer;

/// Longest cell of a table column that holds free text (failure reasons…).
const MAX_CELL: usize = 60;

/// How the answer of one command is shown as text.
#[derive(Debug, Clone, Copy)]
pub(super) enum View {
    Stats,
    Page,
    Record,
    Replay,
    BulkReplay,
    Job,
    Jobs,
    Generic,
}

/// Prints the answer and picks the exit code.
pub(super) fn show(answer: &Answer, raw_json: bool, view: View) -> ExitCode {
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
pub(super) fn print_out(s: &str) {
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

/// A `{content, page, size, totalElements, totalPages, nextCursor}` page as
/// a table, and how to ask for the next one.
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
    if let Some(cursor) = v["nextCursor"].as_str() {
        let _ = writeln!(out, "next page: --after {cursor}");
    }
    out
}

/// An object as `field  value` lines; JSON text fields are pretty-printed.
pub(super) fn render_fields(v: &Value) -> String {
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
pub(super) fn text(v: &Value) -> String {
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
    fn a_generic_page_gets_a_column_per_field() {
        let v = json!({"content": [{"principal": "ops", "action": "DLQ_REPLAY"}, {"principal": "ci", "result": "OK"}],
                        "page": 0, "size": 20, "totalElements": 2, "totalPages": 1,
                        "nextCursor": "YTE3LjE"});
        let out = render_generic(&v);
        assert!(
            out.starts_with(
                "PRINCIPAL  ACTION      RESULT\nops        DLQ_REPLAY  -\nci         -           OK\n"
            ),
            "{out}"
        );
        assert!(out.contains("entries in all: 2;"), "{out}");
        assert!(out.ends_with("next page: --after YTE3LjE\n"), "{out}");
    }
}
