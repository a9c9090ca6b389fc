//! The OpenAPI 3.1 document, generated from the code with utoipa.
//!
//! Where it comes from:
//! - each handler carries its own `#[utoipa::path(...)]` (method, path,
//!   parameters, request body, every status it answers, the role it needs
//!   as security scopes and `x-required-role`), next to its code in
//!   `orders.rs`, `dlq.rs`, `audit.rs`, `ops.rs`, `testing.rs` and
//!   `dashboard.rs`;
//! - the schemas are derived (`ToSchema`) from the types the handlers
//!   serialize and parse: the domain and DLQ types of `order-core` (behind
//!   its `openapi` feature), the request bodies the handlers deserialize,
//!   and the problem body of `error.rs`;
//! - [`ApiDoc`] lists the operations and adds what the middleware does to
//!   every request: the `X-Correlation-Id`, `X-Request-Id` and
//!   `traceparent` headers in and out (see `trace.rs`), and 401/403
//!   for every operation that needs a role (see `auth.rs`).
//!
//! The document is built and serialized once per process ([`json`]); the
//! `/api/test` operations are in it only when those routes are mounted. The
//! tests below hold it to [`super::declared_routes`]: every route
//! documented, nothing else, each with the role it is declared with.

use std::sync::LazyLock;

use axum::body::Bytes;
use serde_json::Value;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, Required, Schema, Type};
use utoipa::{Modify, OpenApi, ToResponse};

use super::error::PROBLEM_JSON;
use super::{audit, dashboard, dlq, dlq_repair, dlq_search, ops, orders, testing};

const DESCRIPTION: &str = "Event-sourced order service: commands commit events, current state \
and outbox rows in one transaction; an outbox relay publishes them to the bus (parking what \
cannot be published in a DLQ, holding an order's later events behind it); a projector \
maintains the read model.

Every error is `application/problem+json` (RFC 9457). Unknown routes are 404 and wrong \
methods 405 (with `Allow`), both as problems. Request bodies: JSON only (`Content-Type: \
application/json`, else 415), at most ORDER_MAX_BODY_BYTES (else 413); unknown members are \
accepted and ignored unless a body says otherwise. Every response carries `X-Correlation-Id`, \
`X-Request-Id` and a W3C `traceparent` (the caller's trace continued, or a new one). \
The /api/test endpoints exist only when ORDER_TEST_ENDPOINTS is on (the default with the \
embedded bus); this document lists them only then.

Roles are ordered viewer < operator < admin; an operation's security scopes and its \
`x-required-role` name the least role it needs. Operations without security are open.

This document is generated from the service's code (utoipa): the handlers' annotations and \
the types they serialize.";

/// `page` and `size` of a paged listing (documentation only: the handlers
/// read them through `extract::Params`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageQuery {
    /// Zero-based page number (default 0).
    #[param(minimum = 0, maximum = 1000000)]
    page: Option<u32>,
    /// Page size (default 20).
    #[param(minimum = 1, maximum = 100)]
    size: Option<u32>,
}

/// [`PageQuery`] and the keyset cursor of the listings that have one.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct CursorQuery {
    /// Zero-based page number (default 0).
    #[param(minimum = 0, maximum = 1000000)]
    page: Option<u32>,
    /// Page size (default 20).
    #[param(minimum = 1, maximum = 100)]
    size: Option<u32>,
    /// Keyset pagination: the nextCursor of the previous page of this listing. The page then holds the size rows after that page's last one (page is only echoed back); rows added, changed or deleted meanwhile never make a walk skip or repeat a row that stayed in place. An opaque, URL-safe text: anything but a cursor this listing handed out answers 400.
    #[param(max_length = 200, pattern = r"^[A-Za-z0-9_-]*$")]
    after: Option<String>,
}

/// The document: every operation of [`super::declared_routes`].
#[derive(OpenApi)]
#[openapi(
    info(title = "order-service", description = DESCRIPTION),
    servers((url = "/", description = "The service that serves this document")),
    paths(
        orders::search,
        orders::create,
        orders::get,
        orders::events,
        orders::by_customer,
        orders::confirm,
        orders::cancel,
        orders::prepare,
        orders::ready,
        orders::deliver,
        dlq::stats,
        dlq::pending,
        dlq::event,
        dlq::by_status,
        dlq::replay_bulk,
        dlq::jobs,
        dlq::job,
        dlq::cancel_job,
        dlq::replay,
        dlq::reset,
        dlq::skip,
        dlq_repair::history,
        dlq_repair::revise,
        dlq_repair::approve,
        dlq_repair::reject,
        dlq_search::search,
        dlq_search::export,
        dlq_search::import,
        audit::list,
        ops::rebuild_read_model,
        ops::health,
        ops::live,
        ops::ready,
        ops::actuator_liveness,
        ops::actuator_readiness,
        ops::metrics,
        ops::api_docs,
        ops::swagger_ui,
        ops::swagger_ui_dir,
        ops::swagger_redirect,
        ops::swagger_asset,
        dashboard::page,
        dashboard::page_dir,
        dashboard::script,
        dashboard::stylesheet,
        testing::publish_event,
        testing::kafka_status,
        testing::bus_down,
        testing::bus_up,
    ),
    components(responses(
        BadRequest,
        NotFound,
        Conflict,
        PreconditionFailed,
        PayloadTooLarge,
        UnsupportedMediaType,
        Unprocessable,
        Unavailable,
        Unauthorized,
        Forbidden,
        TooManyRequests,
    )),
    modifiers(&Conventions),
    tags(
        (name = "orders", description = "Commands and queries of orders"),
        (name = "dlq", description = "The dead-letter queue: inspect, replay, reset, skip, bulk replay jobs, audit log"),
        (name = "test", description = "Demo and test helpers (ORDER_TEST_ENDPOINTS)"),
        (name = "admin", description = "Administration"),
        (name = "ops", description = "Health, metrics, this document, the Swagger UI and the dashboard"),
    )
)]
pub struct ApiDoc;

/// Prefix of the paths that exist only with `ORDER_TEST_ENDPOINTS`.
const TEST_PREFIX: &str = "/api/test/";

/// The document for a service with or without the test endpoints.
pub fn document(test_endpoints: bool) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if !test_endpoints {
        doc.paths
            .paths
            .retain(|path, _| !path.starts_with(TEST_PREFIX));
    }
    doc
}

/// The document as served: JSON, built once per process and configuration.
pub fn json(test_endpoints: bool) -> Bytes {
    static WITH_TEST: LazyLock<Bytes> = LazyLock::new(|| render(true));
    static WITHOUT_TEST: LazyLock<Bytes> = LazyLock::new(|| render(false));
    if test_endpoints {
        WITH_TEST.clone()
    } else {
        WITHOUT_TEST.clone()
    }
}

fn render(test_endpoints: bool) -> Bytes {
    let mut value = match serde_json::to_value(document(test_endpoints)) {
        Ok(v) => v,
        // Serializing plain maps and strings cannot fail.
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    for_each_response(&mut value, |r| {
        mark_required(r);
        camel_case_links(r);
    });
    Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
}

/// Response headers the service always sends with the response that
/// documents them. utoipa's `Header` has no `required`, so it is set on the
/// serialized document.
const ALWAYS_SENT: [&str; 7] = [
    "Location",
    "ETag",
    "Retry-After",
    "WWW-Authenticate",
    "X-Correlation-Id",
    "X-Request-Id",
    "traceparent",
];

/// Applies `f` to every response of the document, shared ones included.
fn for_each_response(doc: &mut Value, mut f: impl FnMut(&mut Value)) {
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in item.values_mut() {
                if let Some(rs) = op.get_mut("responses").and_then(Value::as_object_mut) {
                    rs.values_mut().for_each(&mut f);
                }
            }
        }
    }
    if let Some(rs) = doc
        .pointer_mut("/components/responses")
        .and_then(Value::as_object_mut)
    {
        rs.values_mut().for_each(f);
    }
}

/// utoipa 5.5 serializes a link's fields in snake case (`operation_id`);
/// OpenAPI names them `operationId`, `operationRef`, `requestBody`.
fn camel_case_links(response: &mut Value) {
    let Some(links) = response.get_mut("links").and_then(Value::as_object_mut) else {
        return;
    };
    for link in links.values_mut().filter_map(Value::as_object_mut) {
        for (from, to) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(v) = link.remove(from) {
                link.insert(to.to_owned(), v);
            }
        }
    }
}

fn mark_required(response: &mut Value) {
    let Some(headers) = response.get_mut("headers").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, h) in headers.iter_mut() {
        if let Some(h) = h
            .as_object_mut()
            .filter(|_| ALWAYS_SENT.contains(&name.as_str()))
        {
            h.insert("required".into(), Value::Bool(true));
        }
    }
}

// ---------------------------------------------------------------------------
// What the middleware adds to every operation
// ---------------------------------------------------------------------------

const CORRELATION_DESCRIPTION: &str = "The request's correlation id (echoed, or generated when \
the request had none or an invalid one).";
const REQUEST_ID_DESCRIPTION: &str = "The request's id (echoed, or a generated UUID).";
const TRACEPARENT_DESCRIPTION: &str = "The service's W3C trace context for this request: the \
caller's trace id (a new one when the request had no valid `traceparent`) and this service's \
span id. The events the request appends carry it.";

/// The security schemes, and the middleware's part of every operation:
/// `X-Correlation-Id` (`request_context`) and 401/403 where a role is
/// needed (`auth::authorize`).
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (ORDER_API_KEYS, ORDER_API_KEYS_FILE, ORDER_ADMIN_API_KEY) \
                         or a JWT (HS256/RS256 with a configured key, or RS256/PS256/ES256 with \
                         the keys of ORDER_JWT_JWKS_URL; role in ORDER_JWT_ROLE_CLAIM). Roles: \
                         viewer < operator < admin.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apiKeyHeader",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The same API keys, in their own header.",
            ))),
        );
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                absent_is_not_null(op);
                add_correlation_id(op);
                let secured = op
                    .security
                    .as_ref()
                    .is_some_and(|s| s.iter().any(|r| !is_empty_requirement(r)));
                if secured {
                    let rs = &mut op.responses.responses;
                    rs.entry("401".into())
                        .or_insert_with(|| Ref::from_response_name("Unauthorized").into());
                    rs.entry("403".into())
                        .or_insert_with(|| Ref::from_response_name("Forbidden").into());
                }
            }
        }
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// utoipa renders an optional header as `string | null` and an optional
/// body as `null | T`; over HTTP an optional header or body is absent,
/// never null (a JSON `null` body is refused as not an object).
fn absent_is_not_null(op: &mut Operation) {
    for p in op.parameters.iter_mut().flatten() {
        if let Some(RefOr::T(Schema::Object(o))) = p.schema.as_mut() {
            drop_null(&mut o.schema_type);
        }
    }
    let Some(body) = op.request_body.as_mut() else {
        return;
    };
    for content in body.content.values_mut() {
        let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
            continue;
        };
        let mut rest = one_of.items.iter().filter(|s| !is_null(s));
        if let (Some(only), None) = (rest.next(), rest.next()) {
            let only = only.clone();
            content.schema = Some(only);
            body.required = Some(Required::False);
        }
    }
}

fn is_null(s: &RefOr<Schema>) -> bool {
    matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null))
}

fn drop_null(t: &mut SchemaType) {
    if let SchemaType::Array(types) = t {
        let rest: Vec<Type> = types
            .iter()
            .filter(|t| **t != Type::Null)
            .cloned()
            .collect();
        if let [only] = rest.as_slice() {
            *t = SchemaType::Type(only.clone());
        }
    }
}

fn is_empty_requirement(r: &utoipa::openapi::security::SecurityRequirement) -> bool {
    serde_json::to_value(r).is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
}

fn add_correlation_id(op: &mut Operation) {
    let param = ParameterBuilder::new()
        .name("X-Correlation-Id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Correlation id carried into the events (1 to 128 visible ASCII characters; \
             otherwise one is generated). Echoed in the response.",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build();
    let header_param = |name: &str, description: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build()
    };
    let params = op.parameters.get_or_insert_with(Vec::new);
    params.insert(0, param);
    params.insert(
        1,
        header_param(
            "X-Request-Id",
            "The request's id, echoed in the response (one is generated when absent); the \
             correlation id too when X-Correlation-Id is absent.",
        ),
    );
    params.insert(
        2,
        header_param(
            "traceparent",
            "W3C trace context (version 00) to continue; an absent or invalid one starts a \
             new trace.",
        ),
    );
    for r in op.responses.responses.values_mut() {
        if let RefOr::T(r) = r {
            with_correlation_header(r);
        }
    }
}

/// The headers every response carries: `X-Correlation-Id`, `X-Request-Id`
/// and `traceparent`.
fn with_correlation_header(r: &mut Response) {
    for (name, description) in [
        ("X-Correlation-Id", CORRELATION_DESCRIPTION),
        ("X-Request-Id", REQUEST_ID_DESCRIPTION),
        ("traceparent", TRACEPARENT_DESCRIPTION),
    ] {
        r.headers.entry(name.into()).or_insert_with(|| {
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(description))
                .build()
        });
    }
}

// ---------------------------------------------------------------------------
// Shared problem responses (`components/responses`)
// ---------------------------------------------------------------------------

fn problem(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build(),
    )
}

fn header(description: &str, ty: Type) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(ty))
        .description(Some(description))
        .build()
}

macro_rules! problem_responses {
    ($($name:ident => $description:expr $(, $header:expr => ($hdesc:expr, $hty:expr))?;)*) => {
        $(
            #[doc = $description]
            pub struct $name;

            impl<'s> ToResponse<'s> for $name {
                fn response() -> (&'s str, RefOr<Response>) {
                    let mut r = problem($description).build();
                    $(r.headers.insert($header.into(), header($hdesc, $hty));)?
                    with_correlation_header(&mut r);
                    (stringify!($name), r.into())
                }
            }
        )*
    };
}

problem_responses! {
    BadRequest => "Malformed request: an invalid path or query parameter or header, or a body that is not a JSON object.";
    NotFound => "No such resource.";
    Conflict => "Illegal state transition or concurrent modification; nothing was written.";
    PreconditionFailed => "If-Match names a version that is no longer current.";
    PayloadTooLarge => "Body larger than ORDER_MAX_BODY_BYTES.";
    UnsupportedMediaType => "A request body whose Content-Type is not JSON.";
    Unprocessable => "Validation failed (`errors` lists the fields), or an Idempotency-Key reused with a different body.";
    Unavailable => "A backend did not answer (or the command timed out); retry later.";
    Unauthorized => "No credentials, or invalid ones (authentication is on).",
        "WWW-Authenticate" => ("Always `Bearer`.", Type::String);
    Forbidden => "Authenticated, but the role is too low for this endpoint.";
    TooManyRequests => "Over the replay rate limit of this principal (ORDER_REPLAY_RATE_PER_SEC, ORDER_REPLAY_BURST).",
        "Retry-After" => ("Seconds until a replay request is accepted again.", Type::Integer);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use order_core::app::Role;

    use super::*;
    use crate::http::declared_routes;
    use crate::http::routes::Access;

    fn served(test_endpoints: bool) -> Value {
        serde_json::from_slice(&json(test_endpoints)).expect("the document is JSON")
    }

    /// Every `$ref` of `v`.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    out.push(r);
                }
                o.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_document_lists_every_declared_route_with_its_role_and_nothing_else() {
        for test_endpoints in [true, false] {
            let doc = served(test_endpoints);
            assert!(doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")));
            let (_, table) = declared_routes(test_endpoints).finish();
            let declared: BTreeSet<(String, String)> = table
                .entries()
                .map(|(p, m, _)| (p.to_owned(), m.as_str().to_ascii_lowercase()))
                .collect();
            let paths = doc["paths"].as_object().expect("paths");
            let documented: BTreeSet<(String, String)> = paths
                .iter()
                .flat_map(|(p, item)| {
                    let item = item.as_object().expect("a path item");
                    item.keys().map(move |m| (p.clone(), m.clone()))
                })
                .collect();
            assert_eq!(
                documented.difference(&declared).collect::<Vec<_>>(),
                Vec::<&(String, String)>::new(),
                "documented but not routed (test endpoints {test_endpoints})"
            );
            assert_eq!(
                declared.difference(&documented).collect::<Vec<_>>(),
                Vec::<&(String, String)>::new(),
                "routed but not documented (test endpoints {test_endpoints})"
            );

            for (path, method, access) in table.entries() {
                let m = method.as_str().to_ascii_lowercase();
                let op = &paths[path][m.as_str()];
                let what = format!("{m} {path}");
                let responses = op["responses"].as_object().expect("responses");
                let role = |r: Role| json!([{ "bearerAuth": [r.as_str()] }, { "apiKeyHeader": [r.as_str()] }]);
                match access {
                    Access::Open => {
                        assert!(op.get("security").is_none(), "{what}: open, no security");
                        assert!(op.get("x-required-role").is_none(), "{what}");
                        assert!(!responses.contains_key("401"), "{what}");
                    }
                    Access::Metrics => {
                        let mut optional = vec![json!({})];
                        optional.extend(role(Role::Viewer).as_array().cloned().unwrap_or_default());
                        assert_eq!(op["security"], Value::Array(optional), "{what}");
                        assert!(op.get("x-required-role").is_none(), "{what}");
                    }
                    Access::Role(r) | Access::Limited(r) => {
                        assert_eq!(op["security"], role(r), "{what}");
                        assert_eq!(op["x-required-role"], r.as_str(), "{what}");
                        assert!(responses.contains_key("401"), "{what}");
                        assert!(responses.contains_key("403"), "{what}");
                        assert_eq!(
                            responses.contains_key("429"),
                            matches!(access, Access::Limited(_)),
                            "{what}: 429 exactly where the replay rate limit applies"
                        );
                    }
                }
                let params = op["parameters"].as_array().expect("parameters");
                assert!(
                    params.iter().any(|p| p["name"] == "X-Correlation-Id"),
                    "{what}"
                );
                for (status, r) in responses {
                    let r = match r.get("$ref").and_then(Value::as_str) {
                        Some(name) => {
                            &doc["components"]["responses"]
                                [name.trim_start_matches("#/components/responses/")]
                        }
                        None => r,
                    };
                    for header in ["X-Correlation-Id", "X-Request-Id", "traceparent"] {
                        assert_eq!(
                            r["headers"][header]["required"], true,
                            "{what} {status} {header}"
                        );
                    }
                }
            }

            let mut all = Vec::new();
            refs(&doc, &mut all);
            for r in all {
                let target = r.trim_start_matches('#');
                assert!(doc.pointer(target).is_some(), "dangling {r}");
            }
        }
    }

    #[test]
    fn operation_ids_are_unique_and_problems_are_problem_json() {
        let doc = served(true);
        let mut ids = BTreeSet::new();
        for item in doc["paths"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
        {
            for op in item.as_object().into_iter().flat_map(|o| o.values()) {
                let id = op["operationId"].as_str().expect("an operationId");
                assert!(ids.insert(id.to_owned()), "{id} twice");
                for (status, r) in op["responses"].as_object().expect("responses") {
                    if status.starts_with('4') && r.get("$ref").is_none() {
                        assert!(r["content"].get(PROBLEM_JSON).is_some(), "{id} {status}");
                    }
                }
            }
        }
    }

    #[test]
    fn links_name_existing_operations_in_camel_case() {
        let doc = served(true);
        let ops: Vec<&Value> = doc["paths"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
            .flat_map(|item| item.as_object().into_iter().flat_map(|o| o.values()))
            .collect();
        let ids: BTreeSet<&str> = ops
            .iter()
            .filter_map(|o| o["operationId"].as_str())
            .collect();
        let mut links = 0;
        for op in &ops {
            for r in op["responses"]
                .as_object()
                .into_iter()
                .flat_map(|r| r.values())
            {
                for link in r["links"].as_object().into_iter().flat_map(|l| l.values()) {
                    let target = link["operationId"].as_str().expect("operationId");
                    assert!(ids.contains(target), "a link to {target}");
                    assert!(link.get("operation_id").is_none());
                    links += 1;
                }
            }
        }
        assert!(links > 0);
    }

    #[test]
    fn the_document_is_built_once() {
        assert_eq!(json(true).as_ptr(), json(true).as_ptr());
    }
}
