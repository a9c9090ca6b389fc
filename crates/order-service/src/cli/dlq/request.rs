//! Which HTTP request carries out each `dlq` subcommand: one place that
//! maps the command line onto the service's API (method, path, query and
//! body), so it can be tested without a service.

use serde_json::{json, Map, Value};

use super::render::View;
use super::DlqCommand;
use crate::cli::client::encode;

/// The query that asks a replay for its preview instead.
fn preview(on: bool) -> &'static str {
    if on {
        "?preview=true"
    } else {
        ""
    }
}

/// The HTTP request that carries out `command`.
pub(super) fn request_of(command: &DlqCommand) -> (&'static str, String, Option<Value>, View) {
    match command {
        DlqCommand::Stats => ("GET", "/api/dlq/stats".into(), None, View::Stats),
        DlqCommand::Repair(r) => super::repair::request_of(r),
        DlqCommand::Search(c) => {
            let (method, path) = super::search::request_of(c);
            (method, path, None, View::Page)
        }
        DlqCommand::List {
            status,
            page,
            size,
            after,
        } => {
            let base = if status.eq_ignore_ascii_case("pending") {
                "/api/dlq/pending".to_owned()
            } else {
                format!("/api/dlq/status/{}", encode(status))
            };
            let query = query(&[
                ("page", page.map(|p| p.to_string())),
                ("size", size.map(|s| s.to_string())),
                ("after", after.clone()),
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
                format!("/api/dlq/replay/{}{}", encode(id), preview(r.preview)),
                None,
                if r.preview {
                    View::Record
                } else {
                    View::Replay
                },
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
                    format!("/api/dlq/replay{}", preview(r.preview)),
                    Some(Value::Object(body)),
                    if r.preview {
                        View::Generic
                    } else {
                        View::BulkReplay
                    },
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
            after,
        } => {
            let query = query(&[
                ("page", page.map(|p| p.to_string())),
                ("size", size.map(|s| s.to_string())),
                ("after", after.clone()),
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
                ("after", a.after.clone()),
            ]);
            ("GET", format!("/api/dlq/audit{query}"), None, View::Generic)
        }
    }
}

/// `?k=v&…` of the parameters that are set, or nothing.
pub(super) fn query(params: &[(&str, Option<String>)]) -> String {
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

#[cfg(test)]
mod tests {
    use super::super::{AuditArgs, ReplayArgs};
    use super::*;

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
            preview: false,
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
    fn a_preview_asks_the_replay_endpoints_for_their_preview() {
        let args = |event_id: Option<&str>, all: bool| ReplayArgs {
            event_id: event_id.map(str::to_owned),
            all,
            limit: Some(7),
            dry_run: false,
            aggregate_id: None,
            event_type: None,
            status: None,
            from: None,
            to: None,
            no_wait: false,
            preview: true,
            poll_ms: 1000,
        };
        let (m, path, body, _) = request_of(&DlqCommand::Replay(args(Some("e1"), false)));
        assert_eq!(
            (m, path.as_str(), body),
            ("POST", "/api/dlq/replay/e1?preview=true", None)
        );
        let (_, path, body, _) = request_of(&DlqCommand::Replay(args(None, true)));
        assert_eq!(path, "/api/dlq/replay?preview=true");
        assert_eq!(body, Some(json!({ "limit": 7 })));
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
            after: Some("YTE3.MQ".into()),
        };
        let (_, path, _, _) = request_of(&DlqCommand::Audit(args));
        assert_eq!(
            path,
            "/api/dlq/audit?principal=ops%20team&action=DLQ_REPLAY&from=2026-01-01T00%3A00%3A00%2B01%3A00&page=2\
             &after=YTE3.MQ"
        );
    }
}
