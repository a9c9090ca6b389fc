//! Search, NDJSON export and import as their own `impl DlqService` block.
//!
//! - **Search** reads the store's [`DlqStore::search`]. A customer search
//!   also finds the events of the customer's orders that do not name the
//!   customer themselves (only `OrderCreated` carries `customerId`): the
//!   customer's orders are resolved first — the newest
//!   [`CUSTOMER_ORDERS_MAX`] from the read model and the orders of the
//!   DLQ's own records naming the customer (an order whose creation is
//!   parked is not in the read model) — and the search runs over those
//!   orders' records.
//! - **Export** writes the records of a search as NDJSON, one record per
//!   line with its `originalEvent`, page by page ([`ExportCursor`]), at
//!   most [`EXPORT_MAX_LINES`].
//! - **Import** reads such a file into this environment's DLQ, for
//!   reproduction: each line becomes a new PENDING record marked as
//!   imported, heading its own sequence; event ids already stored are
//!   skipped; a malformed line refuses the whole file before anything is
//!   written.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::service::DlqService;
use crate::app::error::AppError;
use crate::app::principal::Principal;
use crate::domain::now;
use crate::ports::{
    AuditAction, Cursor, DlqFilter, DlqRecord, DlqSearch, DlqSource, FailureClass, ImportMark,
    Keyed, ListRequest, NewDlqRecord, OrderFilter, OrderQuery, Page, PageRequest,
};

/// Most orders of one customer a customer search covers (the newest ones
/// in the read model, plus those of DLQ records naming the customer).
pub const CUSTOMER_ORDERS_MAX: u32 = 500;
/// Most records one export writes.
pub const EXPORT_MAX_LINES: usize = 100_000;
/// Records an export reads per page.
pub const EXPORT_PAGE: u32 = 500;
/// Most lines one import reads (an export's cap: a whole export imports).
pub const IMPORT_MAX_LINES: usize = EXPORT_MAX_LINES;
/// Largest import file, in bytes.
pub const IMPORT_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Records an import inserts per statement batch.
const IMPORT_BATCH: usize = 500;
/// Longest identifier of an imported record (the stores' column width).
const ID_MAX: usize = 255;

/// An export in progress: its resolved filter, where the next page starts
/// and how many lines were written.
#[derive(Clone, Debug)]
pub struct ExportCursor {
    filter: Option<DlqFilter>,
    after: Option<Cursor>,
    limit: usize,
    written: usize,
    done: bool,
}

impl ExportCursor {
    /// Lines written so far.
    pub fn written(&self) -> usize {
        self.written
    }
}

/// Answer of an import.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ImportOutcome {
    /// Non-empty lines read.
    pub lines: usize,
    /// Records added (PENDING, marked imported).
    pub imported: usize,
    /// Event ids that were already stored (or repeated in the file): left
    /// unchanged.
    pub skipped: Vec<String>,
}

/// One line of an export, as an import reads it: a [`DlqRecord`] as the
/// API serializes it (members not listed here, such as `id` or `status`,
/// are ignored: they describe the record in the environment it came from).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportedRecord {
    event_id: String,
    aggregate_id: String,
    event_type: String,
    #[serde(default)]
    version: Option<u64>,
    original_event: String,
    failure_reason: String,
    #[serde(default)]
    failure_class: Option<FailureClass>,
    failure_time: DateTime<Utc>,
    source: DlqSource,
    topic: String,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    consumer_group: Option<String>,
}

impl ExportedRecord {
    /// The record to insert, or what is wrong with the line.
    fn into_new(self, mark: &ImportMark) -> Result<NewDlqRecord, String> {
        for (name, v) in [
            ("eventId", Some(&self.event_id)),
            ("aggregateId", Some(&self.aggregate_id)),
            ("eventType", Some(&self.event_type)),
            ("topic", Some(&self.topic)),
            ("origin", self.origin.as_ref()),
            ("consumerGroup", self.consumer_group.as_ref()),
        ] {
            if let Some(v) = v {
                if v.trim().is_empty() || v.chars().count() > ID_MAX {
                    return Err(format!("{name} must be 1 to {ID_MAX} characters"));
                }
            }
        }
        if self.version.is_some_and(|v| i64::try_from(v).is_err()) {
            return Err("version is out of range".into());
        }
        Ok(NewDlqRecord {
            event_id: self.event_id,
            aggregate_id: self.aggregate_id,
            event_type: self.event_type,
            version: self.version,
            original_event: self.original_event,
            failure_reason: self.failure_reason,
            failure_class: self.failure_class,
            failure_time: self.failure_time,
            source: self.source,
            // Imported records head their own sequence: the head they
            // waited behind may not have come along.
            blocked_by: None,
            topic: self.topic,
            origin: self.origin,
            consumer_group: self.consumer_group,
            imported: Some(mark.clone()),
        })
    }
}

/// The records of an NDJSON file, or a 400 naming the first bad line.
fn parse_import(body: &[u8], mark: &ImportMark) -> Result<Vec<NewDlqRecord>, AppError> {
    if body.len() > IMPORT_MAX_BYTES {
        return Err(AppError::BadRequest(format!(
            "an import file may hold at most {IMPORT_MAX_BYTES} bytes"
        )));
    }
    let mut records = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let n = i + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if records.len() == IMPORT_MAX_LINES {
            return Err(AppError::BadRequest(format!(
                "an import file may hold at most {IMPORT_MAX_LINES} records; line {n} is one more"
            )));
        }
        let bad =
            |why: String| AppError::BadRequest(format!("line {n}: {why}; nothing was imported"));
        let exported: ExportedRecord = serde_json::from_slice(line)
            .map_err(|e| bad(format!("not an exported DLQ record: {e}")))?;
        records.push(exported.into_new(mark).map_err(bad)?);
    }
    Ok(records)
}

impl DlqService {
    /// The records `filter` matches, newest failure first, a page at a
    /// time (see [`DlqStore::search`](crate::ports::DlqStore::search): a
    /// search with text has no total).
    pub async fn search(
        &self,
        filter: DlqFilter,
        page: ListRequest,
    ) -> Result<Page<DlqRecord>, AppError> {
        match self.resolved(filter).await? {
            Some(filter) => Ok(self.dlq.search(&DlqSearch { filter, page }).await?),
            None => Ok(Page::new(Vec::new(), page.page, 0)),
        }
    }

    /// `filter` with its customer turned into the customer's orders;
    /// `None` when the customer has none (nothing can match).
    async fn resolved(&self, mut filter: DlqFilter) -> Result<Option<DlqFilter>, AppError> {
        let Some(customer) = filter.customer_id.take() else {
            return Ok(Some(filter));
        };
        let mut orders: BTreeSet<String> = BTreeSet::new();
        // Without a read model (no `with_repair`) only records naming the
        // customer, and the other records of their orders, are found.
        if let Some(rm) = self.repair.as_ref().map(|r| &r.read_model) {
            let query = OrderQuery {
                filter: OrderFilter {
                    customer_id: Some(customer.clone()),
                    ..OrderFilter::default()
                },
                page: PageRequest {
                    page: 0,
                    size: CUSTOMER_ORDERS_MAX,
                },
            };
            orders.extend(
                rm.query(&query)
                    .await?
                    .content
                    .iter()
                    .map(|o| o.id.to_string()),
            );
        }
        let naming = DlqSearch {
            filter: DlqFilter {
                customer_id: Some(customer),
                ..DlqFilter::default()
            },
            page: PageRequest {
                page: 0,
                size: CUSTOMER_ORDERS_MAX,
            }
            .into(),
        };
        let named = self.dlq.search(&naming).await?;
        orders.extend(named.content.into_iter().map(|r| r.aggregate_id));
        if orders.is_empty() {
            return Ok(None);
        }
        filter.orders = orders.into_iter().collect();
        Ok(Some(filter))
    }

    /// Starts an export of the records `filter` matches (at most `limit`,
    /// capped at [`EXPORT_MAX_LINES`]), audited as DLQ_EXPORT with the
    /// filter as parameters once the first page is read.
    pub async fn export_start(
        &self,
        who: &Principal,
        filter: DlqFilter,
        limit: usize,
    ) -> Result<(ExportCursor, String), AppError> {
        let parameters = json!({ "filter": &filter, "limit": limit });
        let first = async {
            let mut cursor = ExportCursor {
                filter: self.resolved(filter).await?,
                after: None,
                limit: limit.clamp(1, EXPORT_MAX_LINES),
                written: 0,
                done: false,
            };
            let lines = self.export_next(&mut cursor).await?.unwrap_or_default();
            Ok((cursor, lines))
        }
        .await;
        self.audit
            .record_outcome(
                who,
                AuditAction::DlqExport,
                None,
                parameters,
                &first,
                |_| "OK".to_owned(),
            )
            .await;
        first
    }

    /// The next page of an export as NDJSON lines; `None` once it is done.
    pub async fn export_next(&self, cursor: &mut ExportCursor) -> Result<Option<String>, AppError> {
        let Some(filter) = cursor.filter.clone().filter(|_| !cursor.done) else {
            return Ok(None);
        };
        let left = cursor.limit - cursor.written;
        let size = u32::try_from(left).unwrap_or(EXPORT_PAGE).min(EXPORT_PAGE);
        let page = self
            .dlq
            .search(&DlqSearch {
                filter,
                page: ListRequest {
                    page: PageRequest { page: 0, size },
                    after: cursor.after,
                },
            })
            .await?;
        let mut out = String::new();
        for r in &page.content {
            let line = serde_json::to_string(r).map_err(|e| AppError::Internal(e.to_string()))?;
            out.push_str(&line);
            out.push('\n');
        }
        cursor.written += page.content.len();
        cursor.after = page.content.last().map(Keyed::cursor);
        cursor.done = !page.more || cursor.written >= cursor.limit;
        Ok(Some(out))
    }

    /// Imports an NDJSON export (see the module docs). Audited as
    /// DLQ_IMPORT with the counts, refusals included.
    pub async fn import(&self, who: &Principal, body: &[u8]) -> Result<ImportOutcome, AppError> {
        let outcome = self.run_import(who, body).await;
        let parameters = match &outcome {
            Ok(o) => {
                json!({ "lines": o.lines, "imported": o.imported, "skipped": o.skipped.len() })
            }
            Err(_) => json!({ "bytes": body.len() }),
        };
        self.audit
            .record_outcome(
                who,
                AuditAction::DlqImport,
                None,
                parameters,
                &outcome,
                |o| format!("OK: {} imported, {} skipped", o.imported, o.skipped.len()),
            )
            .await;
        outcome
    }

    async fn run_import(&self, who: &Principal, body: &[u8]) -> Result<ImportOutcome, AppError> {
        let mark = ImportMark {
            at: now(),
            by: who.name.clone(),
        };
        let records = parse_import(body, &mark)?;
        let mut out = ImportOutcome {
            lines: records.len(),
            ..ImportOutcome::default()
        };
        for batch in records.chunks(IMPORT_BATCH) {
            // insert_new, not sequencing::record: an import never reopens
            // a record this environment already has.
            let known = self.dlq.insert_new(batch).await?;
            out.imported += batch.len() - known.len();
            out.skipped.extend(known);
        }
        tracing::info!(
            lines = out.lines,
            imported = out.imported,
            skipped = out.skipped.len(),
            "DLQ import"
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark() -> ImportMark {
        ImportMark {
            at: DateTime::UNIX_EPOCH,
            by: "admin".into(),
        }
    }

    const LINE: &str = r#"{"id":7,"eventId":"e-1","aggregateId":"o-1","eventType":"OrderCreated","version":1,"originalEvent":"{}","failureReason":"down","failureClass":"RETRYABLE","failureTime":"2024-05-01T12:00:00Z","status":"FAILED","source":"PUBLISH","blockedBy":"e-0","topic":"order-events","origin":null}"#;

    #[test]
    fn an_exported_line_becomes_a_pending_head_marked_imported() {
        let body = format!("{LINE}\n\n");
        let records = parse_import(body.as_bytes(), &mark()).expect("parsed");
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(
            (r.event_id.as_str(), r.blocked_by.as_deref()),
            ("e-1", None)
        );
        assert_eq!(r.imported, Some(mark()));
        assert_eq!(r.failure_class, Some(FailureClass::Retryable));
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        for (body, what) in [
            (format!("{LINE}\nnot json\n"), "line 2"),
            (
                format!("\n{}", LINE.replace("\"e-1\"", "\"\"")),
                "line 2: eventId",
            ),
            (LINE.replace("PUBLISH", "ELSEWHERE"), "line 1"),
            (LINE.replace("\"originalEvent\":\"{}\",", ""), "line 1"),
        ] {
            match parse_import(body.as_bytes(), &mark()) {
                Err(AppError::BadRequest(m)) => assert!(m.starts_with(what), "{m}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
