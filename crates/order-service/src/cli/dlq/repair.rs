//! `order-service dlq revisions | revise | approve | reject | preview`:
//! edit before replay from a shell (README: "Repair").

use std::io::Read;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};
use serde_json::{json, Value};

use super::render::View;
use crate::cli::client::encode;

#[derive(Debug, Subcommand)]
pub enum RepairCommand {
    /// A record's revision history: each revision's author, reason, state
    /// and diff (RFC 6902).
    Revisions { event_id: String },
    /// Write a revision of a consumer-side record's message: a JSON Patch
    /// (--patch) or the whole new message (--message), and a reason.
    Revise(ReviseArgs),
    /// Approve a revision (four eyes: an admin other than its author).
    Approve(ReviewArgs),
    /// Reject a revision (an admin other than its author).
    Reject(ReviewArgs),
    /// What a replay of a record would send, in order, and the read-model
    /// document before and after; nothing is sent.
    Preview { event_id: String },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("edit").required(true).args(["patch", "message"])))]
pub struct ReviseArgs {
    pub event_id: String,
    /// A file holding RFC 6902 operations (a JSON array); `-` reads stdin
    #[arg(long, value_name = "FILE")]
    pub patch: Option<PathBuf>,
    /// A file holding the whole new message (a JSON object); `-` reads stdin
    #[arg(long, value_name = "FILE")]
    pub message: Option<PathBuf>,
    /// Why the message is edited (kept with the revision and audited)
    #[arg(long)]
    pub reason: String,
    /// The revision the edit was made from (0: the original); refused when
    /// another one was written since
    #[arg(long, value_name = "N")]
    pub based_on: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    pub event_id: String,
    /// The revision's number
    pub revision: u32,
    /// A note kept with the review
    #[arg(long)]
    pub note: Option<String>,
}

/// The request of a repair command; the body of `revise` comes from
/// [`revise_body`], which reads its file.
pub(super) fn request_of(command: &RepairCommand) -> (&'static str, String, Option<Value>, View) {
    let revisions = |id: &str| format!("/api/dlq/{}/revisions", encode(id));
    let review = |r: &ReviewArgs, verb: &str| {
        let body = r.note.as_ref().map(|n| json!({ "note": n }));
        let path = format!("{}/{}/{verb}", revisions(&r.event_id), r.revision);
        ("POST", path, body, View::Record)
    };
    match command {
        RepairCommand::Revisions { event_id } => ("GET", revisions(event_id), None, View::Record),
        RepairCommand::Revise(r) => ("POST", revisions(&r.event_id), None, View::Record),
        RepairCommand::Approve(r) => review(r, "approve"),
        RepairCommand::Reject(r) => review(r, "reject"),
        RepairCommand::Preview { event_id } => (
            "POST",
            format!("/api/dlq/replay/{}?preview=true", encode(event_id)),
            None,
            View::Record,
        ),
    }
}

/// The body of `revise`: the reason, `basedOn`, and the patch or message
/// read from its file (or stdin).
pub(super) fn revise_body(r: &ReviseArgs) -> Result<Value, String> {
    let (key, file) = match (&r.patch, &r.message) {
        (Some(f), None) => ("patch", f),
        (None, Some(f)) => ("message", f),
        _ => return Err("give exactly one of --patch and --message".to_owned()),
    };
    let text = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        s
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?
    };
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", file.display()))?;
    let mut body = json!({ "reason": r.reason, key: value });
    if let Some(n) = r.based_on {
        body["basedOn"] = json!(n);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_command_maps_to_its_request() {
        let (m, p, b, _) = request_of(&RepairCommand::Revisions {
            event_id: "e 1".into(),
        });
        assert_eq!(
            (m, p.as_str(), b),
            ("GET", "/api/dlq/e%201/revisions", None)
        );
        let review = ReviewArgs {
            event_id: "e1".into(),
            revision: 2,
            note: Some("ok".into()),
        };
        let (m, p, b, _) = request_of(&RepairCommand::Approve(review));
        assert_eq!(m, "POST");
        assert_eq!(p, "/api/dlq/e1/revisions/2/approve");
        assert_eq!(b, Some(json!({ "note": "ok" })));
        let (_, p, _, _) = request_of(&RepairCommand::Preview {
            event_id: "e1".into(),
        });
        assert_eq!(p, "/api/dlq/replay/e1?preview=true");
    }

    #[test]
    fn the_revise_body_comes_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("patch.json");
        std::fs::write(&file, r#"[{"op":"add","path":"/data/x","value":1}]"#).expect("write");
        let args = ReviseArgs {
            event_id: "e1".into(),
            patch: Some(file.clone()),
            message: None,
            reason: "fix".into(),
            based_on: Some(0),
        };
        assert_eq!(
            revise_body(&args).expect("body"),
            json!({ "reason": "fix", "patch": [{ "op": "add", "path": "/data/x", "value": 1 }], "basedOn": 0 })
        );
        std::fs::write(&file, "not json").expect("write");
        assert!(revise_body(&args)
            .expect_err("not JSON")
            .contains("not JSON"));
        let missing = ReviseArgs {
            patch: Some(dir.path().join("nope.json")),
            ..args
        };
        assert!(revise_body(&missing)
            .expect_err("no file")
            .contains("cannot read"));
    }
}
