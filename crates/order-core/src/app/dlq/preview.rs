//! Replay preview: what a replay of a record would do, without doing it.
//! The messages in the order they would be sent (the record, then the
//! events held behind it), each with its topic, headers and revision,
//! whether it is on the bus already (a publish-side message found there is
//! not sent again), and, for the projector, the read-model document before
//! and after applying them — computed with the projector's own fold,
//! nothing written.

use serde::Serialize;
use uuid::Uuid;

use super::revisions::sendable;
use super::service::DlqService;
use crate::app::dlq::TEST_AGGREGATE_TYPE;
use crate::app::error::AppError;
use crate::domain::{fold_one, EventEnvelope, Order, AGGREGATE_TYPE};
use crate::ports::{BusMessage, DlqRecord, DlqSource, DlqStatus, HeadQuery};

/// Most records a bulk preview covers.
pub const PREVIEW_BULK_MAX: usize = 100;

/// One message a replay would send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PreviewMessage {
    pub event_id: String,
    pub event_type: String,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub version: Option<u64>,
    pub topic: String,
    /// The message key (the order id).
    pub key: String,
    /// The revision sent instead of the original; null: the original.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub revision: Option<u32>,
    /// The headers it would carry, in order.
    pub headers: Vec<PreviewHeader>,
    /// The message value it would carry.
    pub payload: String,
    /// Whether a message with its event id is on its topic already; null
    /// when the bus could not say.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub already_on_bus: Option<bool>,
    /// Whether the replay would send it: a publish-side event found on the
    /// bus is not sent again; a consumer-side one is redelivered on purpose.
    pub will_send: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreviewHeader {
    pub name: String,
    pub value: String,
}

/// The projector's view of the replay: the order's document before and
/// after the messages, and what each message would do to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReadModelPreview {
    pub order_id: String,
    /// The document now; null when the read model has none.
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Option<Object>))]
    pub before: Option<Order>,
    /// The document after the messages; null when there would be none, or
    /// when the projector would have to rebuild the order from the event
    /// store (a version gap: see `steps`).
    #[cfg_attr(feature = "openapi", schema(required = true, value_type = Option<Object>))]
    pub after: Option<Order>,
    /// One line per message: APPLIED, DUPLICATE (at or below the
    /// document's version: no change), IGNORED (not an order event), GAP,
    /// or DEAD_LETTER with the reason the projector would give.
    pub steps: Vec<String>,
}

/// What a replay of one record would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReplayPreview {
    pub event_id: String,
    pub source: DlqSource,
    pub status: DlqStatus,
    /// Whether a replay would go ahead now.
    pub replayable: bool,
    /// Why it would not (resolved, held behind its head, a revision
    /// awaiting approval); null when it would.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub refusal: Option<String>,
    /// The consumer group a targeted redelivery is for; null: every
    /// subscriber of the topic.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub redeliver_to: Option<String>,
    pub messages: Vec<PreviewMessage>,
    /// Null when the message names no order this service's read model
    /// holds (not an envelope, another aggregate type).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub read_model: Option<ReadModelPreview>,
}

impl DlqService {
    /// What [`replay`](Self::replay) of `event_id` would do; nothing is
    /// published or written. 404 for an unknown record.
    pub async fn preview(&self, event_id: &str) -> Result<ReplayPreview, AppError> {
        let rec = self.get(event_id).await?;
        self.preview_record(rec).await
    }

    /// Previews of the heads a bulk replay with `query` would replay, at
    /// most [`PREVIEW_BULK_MAX`], oldest failure first.
    pub async fn preview_heads(
        &self,
        query: &HeadQuery<'_>,
    ) -> Result<Vec<ReplayPreview>, AppError> {
        let query = HeadQuery {
            limit: query.limit.clamp(1, PREVIEW_BULK_MAX),
            ..*query
        };
        let mut out = Vec::new();
        for head in self.dlq.heads(&query).await? {
            out.push(self.preview_record(head).await?);
        }
        Ok(out)
    }

    async fn preview_record(&self, rec: DlqRecord) -> Result<ReplayPreview, AppError> {
        let mut refusal = None;
        if !rec.status.is_unresolved() {
            refusal = Some(format!(
                "the record is {}: a replay publishes nothing",
                rec.status.as_str()
            ));
        } else if let Some(head) = &rec.blocked_by {
            refusal = Some(format!(
                "the record is held behind event {head} of the same order: replay that one, \
                 which publishes this one after it"
            ));
        }
        let history = self.history(&rec.event_id).await?;
        let revision = match rec.source {
            DlqSource::Consumer => history.current().cloned(),
            DlqSource::Publish => None,
        };
        if let Some(r) = &revision {
            if let Err(AppError::Conflict(m)) = sendable(r, self.edit_approval()) {
                refusal.get_or_insert(m);
            }
        }
        let mut records = vec![(rec.clone(), revision.clone())];
        // A held record has nothing held behind it.
        if rec.blocked_by.is_none() {
            for held in self.dlq.blocked_behind(&rec.event_id).await? {
                records.push((held, None));
            }
        }
        let messages: Vec<BusMessage> = records
            .iter()
            .map(|(r, rev)| self.message_of(r, rev.as_ref()))
            .collect();
        let found = match self.bus.find_published(&messages).await {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::warn!(error = %e, "replay preview: the bus cannot say what it has");
                None
            }
        };
        let previews: Vec<PreviewMessage> = records
            .iter()
            .zip(&messages)
            .map(|((r, rev), m)| {
                let on_bus = found
                    .as_ref()
                    .map(|f| m.event_id().is_some_and(|id| f.contains(id)));
                PreviewMessage {
                    event_id: r.event_id.clone(),
                    event_type: r.event_type.clone(),
                    version: r.version,
                    topic: m.topic.clone(),
                    key: m.key.clone(),
                    revision: rev.as_ref().map(|v| v.revision),
                    headers: m
                        .headers
                        .iter()
                        .map(|(name, value)| PreviewHeader {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                    payload: String::from_utf8_lossy(&m.payload).into_owned(),
                    already_on_bus: on_bus,
                    will_send: r.source == DlqSource::Consumer || on_bus != Some(true),
                }
            })
            .collect();
        let read_model = self.read_model_preview(&messages).await?;
        Ok(ReplayPreview {
            event_id: rec.event_id.clone(),
            source: rec.source,
            status: rec.status,
            replayable: refusal.is_none(),
            refusal,
            redeliver_to: messages
                .first()
                .and_then(|m| m.header(super::REDELIVER_TO_HEADER))
                .map(str::to_owned),
            messages: previews,
            read_model,
        })
    }

    /// The projector's fold of `messages` over the order's document.
    async fn read_model_preview(
        &self,
        messages: &[BusMessage],
    ) -> Result<Option<ReadModelPreview>, AppError> {
        let Some(repair) = &self.repair else {
            return Ok(None);
        };
        let envelopes: Vec<Option<EventEnvelope>> = messages
            .iter()
            .map(|m| serde_json::from_slice(&m.payload).ok())
            .collect();
        let Some(order) = envelopes
            .iter()
            .flatten()
            .filter(|e| e.aggregate_type == AGGREGATE_TYPE)
            .find_map(|e| Uuid::parse_str(&e.aggregate_id).ok())
        else {
            return Ok(None);
        };
        let before = repair.read_model.get(order).await?;
        let mut doc = before.clone();
        let mut steps = Vec::with_capacity(envelopes.len());
        let mut stopped = false;
        for env in &envelopes {
            if stopped {
                steps.push("NOT_REACHED: an earlier message stops the fold".to_owned());
                continue;
            }
            let Some(env) = env else {
                steps.push("DEAD_LETTER: the message value is not an event envelope".to_owned());
                continue;
            };
            if env.aggregate_type == TEST_AGGREGATE_TYPE || env.aggregate_type != AGGREGATE_TYPE {
                steps.push(format!("IGNORED: aggregate type {}", env.aggregate_type));
                continue;
            }
            let current = doc.as_ref().map_or(0, |d| d.version);
            if env.version <= current {
                steps.push(format!(
                    "DUPLICATE: version {} is at or below the document's {current}",
                    env.version
                ));
                continue;
            }
            if env.version != current + 1 {
                steps.push(format!(
                    "GAP: version {} follows {current}; the projector rebuilds the order \
                     from the event store",
                    env.version
                ));
                doc = None;
                stopped = true;
                continue;
            }
            match fold_one(doc.as_ref(), env) {
                Ok(next) => {
                    steps.push(format!(
                        "APPLIED: {} version {} (status {})",
                        env.event_type,
                        env.version,
                        next.status.as_str()
                    ));
                    doc = Some(next);
                }
                Err(e) => steps.push(format!("DEAD_LETTER: {e}")),
            }
        }
        Ok(Some(ReadModelPreview {
            order_id: order.to_string(),
            before,
            after: doc,
            steps,
        }))
    }
}
