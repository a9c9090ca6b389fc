//! `/api/dlq`: the original service's six endpoints and field names.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use order_core::app::{BulkReplayRequest, BULK_REPLAY_MAX};
use order_core::ports::DlqStatus;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{OptionalJsonBody, Params, PathParam};
use crate::startup::AppState;

/// Event ids are at most this long; longer ones cannot exist.
const MAX_EVENT_ID_LEN: usize = 200;

fn event_id(PathParam(id): PathParam) -> Result<String, ApiError> {
    if id.len() > MAX_EVENT_ID_LEN {
        return Err(ApiError::not_found(format!(
            "no DLQ record for event {}…",
            id.chars().take(40).collect::<String>()
        )));
    }
    Ok(id)
}

pub async fn stats(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.dlq.stats().await?).into_response())
}

pub async fn pending(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    let page = params.page()?;
    Ok(Json(state.dlq.list(Some(DlqStatus::Pending), page).await?).into_response())
}

pub async fn event(State(state): State<AppState>, id: PathParam) -> Result<Response, ApiError> {
    let id = event_id(id)?;
    Ok(Json(state.dlq.get(&id).await?).into_response())
}

/// 200 with the outcome (REPLAYED or SKIPPED); 502 with the same body shape
/// when the bus refused the message (FAILED).
pub async fn replay(State(state): State<AppState>, id: PathParam) -> Result<Response, ApiError> {
    let id = event_id(id)?;
    let outcome = state.dlq.replay(&id).await?;
    let status = if outcome.success {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    Ok((status, Json(outcome)).into_response())
}

/// Body of `POST /api/dlq/replay`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BulkReplayBody {
    limit: Option<u64>,
    dry_run: Option<bool>,
    aggregate_id: Option<String>,
    event_type: Option<String>,
}

const BULK_REPLAY_DEFAULT: usize = 100;

/// Replays the matching sequence heads, oldest failure first (see
/// `DlqService::replay_bulk`). 200 with a summary, also when some failed.
pub async fn replay_bulk(
    State(state): State<AppState>,
    OptionalJsonBody(body): OptionalJsonBody,
) -> Result<Response, ApiError> {
    let body: BulkReplayBody = match body {
        None => BulkReplayBody::default(),
        // Only an object: serde would read an array positionally.
        Some(bytes) if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') => {
            return Err(ApiError::bad_request(
                "invalid bulk replay request: the body must be a JSON object",
            ))
        }
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid bulk replay request: {e}")))?,
    };
    let limit = match body.limit {
        None => BULK_REPLAY_DEFAULT,
        Some(n) if (1..=BULK_REPLAY_MAX as u64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {BULK_REPLAY_MAX}, not {n}"
            )))
        }
    };
    let req = BulkReplayRequest {
        limit,
        dry_run: body.dry_run.unwrap_or(false),
        aggregate_id: body.aggregate_id,
        event_type: body.event_type,
    };
    Ok(Json(state.dlq.replay_bulk(&req).await?).into_response())
}

pub async fn reset(State(state): State<AppState>, id: PathParam) -> Result<Response, ApiError> {
    let id = event_id(id)?;
    Ok(Json(state.dlq.reset(&id).await?).into_response())
}

pub async fn by_status(
    State(state): State<AppState>,
    PathParam(status): PathParam,
    params: Params,
) -> Result<Response, ApiError> {
    let Some(status) = DlqStatus::parse(&status).filter(|_| status == status.trim()) else {
        let valid: Vec<&str> = DlqStatus::ALL.iter().map(|s| s.as_str()).collect();
        return Err(ApiError::bad_request(format!(
            "unknown DLQ status {status:?}; valid statuses are {}",
            valid.join(", ")
        )));
    };
    let page = params.page()?;
    Ok(Json(state.dlq.list(Some(status), page).await?).into_response())
}
