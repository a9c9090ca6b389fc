//! The append-only audit log of operator actions.

use super::error::StoreError;
use super::page::Cursor;
use super::page::CursorId;
use super::page::Keyed;
use super::page::ListRequest;
use super::page::Page;
use async_trait::async_trait;
use chrono::DateTime;
use chrono::Utc;
use serde::Deserialize;
use serde::Serialize;

// ---------------------------------------------------------------------------
// Audit log
// ---------------------------------------------------------------------------

/// What an audited operator action was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuditAction {
    DlqReplay,
    /// Also a dry run (`parameters.dryRun`).
    DlqBulkReplay,
    DlqReset,
    DlqSkip,
    TestPublishEvent,
    TestBusDown,
    TestBusUp,
    ReadModelRebuild,
    /// A bulk replay job was created (`target`: the job id).
    DlqReplayJobCreate,
    /// A bulk replay job was cancelled (`target`: the job id).
    DlqReplayJobCancel,
    /// A revision of a DLQ record's message was written (`target`: the
    /// event id; `parameters`: revision, reason, diff).
    DlqRevisionCreate,
    /// A second admin approved a revision.
    DlqRevisionApprove,
    /// A second admin rejected a revision.
    DlqRevisionReject,
    /// DLQ records were exported as NDJSON.
    DlqExport,
    /// DLQ records were imported from another environment's export.
    DlqImport,
}

impl AuditAction {
    pub const ALL: [AuditAction; 15] = [
        AuditAction::DlqReplay,
        AuditAction::DlqBulkReplay,
        AuditAction::DlqReset,
        AuditAction::DlqSkip,
        AuditAction::TestPublishEvent,
        AuditAction::TestBusDown,
        AuditAction::TestBusUp,
        AuditAction::ReadModelRebuild,
        AuditAction::DlqReplayJobCreate,
        AuditAction::DlqReplayJobCancel,
        AuditAction::DlqRevisionCreate,
        AuditAction::DlqRevisionApprove,
        AuditAction::DlqRevisionReject,
        AuditAction::DlqExport,
        AuditAction::DlqImport,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::DlqReplay => "DLQ_REPLAY",
            AuditAction::DlqBulkReplay => "DLQ_BULK_REPLAY",
            AuditAction::DlqReset => "DLQ_RESET",
            AuditAction::DlqSkip => "DLQ_SKIP",
            AuditAction::TestPublishEvent => "TEST_PUBLISH_EVENT",
            AuditAction::TestBusDown => "TEST_BUS_DOWN",
            AuditAction::TestBusUp => "TEST_BUS_UP",
            AuditAction::ReadModelRebuild => "READ_MODEL_REBUILD",
            AuditAction::DlqReplayJobCreate => "DLQ_REPLAY_JOB_CREATE",
            AuditAction::DlqReplayJobCancel => "DLQ_REPLAY_JOB_CANCEL",
            AuditAction::DlqRevisionCreate => "DLQ_REVISION_CREATE",
            AuditAction::DlqRevisionApprove => "DLQ_REVISION_APPROVE",
            AuditAction::DlqRevisionReject => "DLQ_REVISION_REJECT",
            AuditAction::DlqExport => "DLQ_EXPORT",
            AuditAction::DlqImport => "DLQ_IMPORT",
        }
    }
    /// Case-insensitive parse.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// Longest principal name, target and result an audit log must store
/// (the app layer cuts longer ones).
pub const AUDIT_TEXT_MAX: usize = 255;

/// An audit entry to append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct NewAuditEntry {
    pub principal: String,
    /// The principal's role (`viewer`, `operator`, `admin`).
    pub role: String,
    pub action: AuditAction,
    /// The event id acted on, when the action has one.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub target: Option<String>,
    /// The request's parameters, as a JSON object.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub parameters: serde_json::Value,
    /// REPLAYED, FAILED, SKIPPED, OK, or the HTTP status of a refusal (404, 409, 503…).
    pub result: String,
    pub at: DateTime<Utc>,
}

/// A stored audit entry: the appended entry and the id the log gave it. It
/// serializes flat, `id` first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    #[serde(flatten)]
    pub entry: NewAuditEntry,
}

/// Listings sort newest first.
impl Keyed for AuditEntry {
    fn cursor(&self) -> Cursor {
        Cursor {
            at: self.entry.at,
            id: CursorId::Int(self.id),
        }
    }
}

/// Which entries [`AuditLog::list`] returns; every field narrows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub principal: Option<String>,
    pub action: Option<AuditAction>,
    pub target: Option<String>,
    /// Entries at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Entries strictly before this instant.
    pub to: Option<DateTime<Utc>>,
}

/// [`AuditLog::list`]: a page of the entries `filter` matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    /// A page by number, or the page after a cursor.
    pub page: ListRequest,
}

/// Who did what to the DLQ (and the test/admin switches). Append-only: the
/// port has no way to change or remove an entry.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Stores one entry and returns it with its id (ids increase).
    async fn append(&self, entry: &NewAuditEntry) -> Result<AuditEntry, StoreError>;

    /// Matching entries, newest first (`at` desc, then id desc).
    async fn list(&self, query: &AuditQuery) -> Result<Page<AuditEntry>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_stored_entry_serializes_flat_in_field_order() {
        let at = Utc.timestamp_opt(1_700_000_000, 123_456_000).single();
        let entry = AuditEntry {
            id: 7,
            entry: NewAuditEntry {
                principal: "ci-key".to_owned(),
                role: "admin".to_owned(),
                action: AuditAction::DlqReplayJobCancel,
                target: None,
                parameters: serde_json::json!({ "dryRun": true }),
                result: "OK".to_owned(),
                at: at.expect("a valid instant"),
            },
        };
        let json = serde_json::to_string(&entry).expect("serializes");
        assert_eq!(
            json,
            r#"{"id":7,"principal":"ci-key","role":"admin","action":"DLQ_REPLAY_JOB_CANCEL","target":null,"parameters":{"dryRun":true},"result":"OK","at":"2023-11-14T22:13:20.123456Z"}"#
        );
    }
}
