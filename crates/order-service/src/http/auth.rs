//! Authentication and authorisation of the HTTP API.
//!
//! Credentials: an API key (`Authorization: Bearer <key>` or `X-API-Key`),
//! held only as SHA-256 digests and compared in constant time, or a JWT
//! bearer token (HS256 or RS256 with a configured key, RS256/PS256/ES256
//! with the keys of a JWKS URL, see [`super::jwks`]; `exp`, `nbf`, optional
//! `iss`/`aud`). The
//! [`authorize`] middleware finds the route's minimum role in the
//! [`AccessTable`] built with the routes (see `routes.rs`),
//! answers 401 (no or invalid credentials, `WWW-Authenticate: Bearer`) or
//! 403 (role too low), rate-limits the replay endpoints per principal (429,
//! `Retry-After`), and puts the [`Principal`] into the request extensions.
//!
//! The middleware runs as a route layer, i.e. after routing: an unknown path
//! still answers 404 to anyone (it says nothing the public OpenAPI document
//! does not). A method the path does not serve needs the least role any
//! method of that path needs, then answers 405 (see
//! [`AccessTable::access_for`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use order_core::app::{Principal, Role};
use serde_json::Value;

use super::error::{problem_response, Problem};
use super::jwks::{Jwks, KeyCheck, KeySet};
pub use super::routes::Access;
use super::routes::AccessTable;
use crate::config::{sha256, ApiKey, AuthPosture, AuthSettings, JwtKey, JwtSettings};

/// Allowed leeway for `exp` and `nbf` (clock skew between issuer and us).
const JWT_LEEWAY_SECS: i64 = 30;
/// Most principals whose replay buckets are kept before full ones are dropped.
const MAX_BUCKETS: usize = 10_000;

/// The authenticator built from the configuration, plus the rate limiter.
pub struct Auth {
    posture: AuthPosture,
    keys: Vec<ApiKey>,
    jwt: Option<JwtSettings>,
    /// The key set of `ORDER_JWT_JWKS_URL`, when configured.
    jwks: Option<Arc<Jwks>>,
    metrics_auth: bool,
    limiter: RateLimiter,
}

impl Auth {
    /// The authenticator; a configured JWKS is not fetched until
    /// [`Jwks::spawn_refresher`] runs (see [`Auth::jwks`]).
    pub fn new(settings: &AuthSettings, posture: AuthPosture) -> Result<Self, String> {
        let jwks = match settings.jwt.as_ref().and_then(|j| j.jwks.as_ref()) {
            Some(s) => Some(Arc::new(Jwks::new(s)?)),
            None => None,
        };
        Ok(Self {
            posture,
            keys: settings.api_keys.clone(),
            jwt: settings.jwt.clone(),
            jwks,
            metrics_auth: settings.metrics_auth,
            limiter: RateLimiter::new(settings.replay_rate_per_sec, settings.replay_burst),
        })
    }

    pub fn jwks(&self) -> Option<&Arc<Jwks>> {
        self.jwks.as_ref()
    }

    pub fn enforced(&self) -> bool {
        self.posture == AuthPosture::Enforced
    }

    /// The principal for a request's headers; `Err` when credentials are
    /// missing or invalid (the caller says no more than that). Waits only
    /// for a token signed with a key id the key set lacks: then the set is
    /// fetched again (rate-limited, shared by concurrent callers).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Rejection> {
        let credential = credential(headers)?;
        // Shaped like a JWT: tried as one first (an API key may contain dots).
        if let Some(jwt) = &self.jwt {
            if credential.bytes().filter(|b| *b == b'.').count() == 2 {
                let verify = || {
                    let keys = self.jwks.as_ref().map(|j| j.keys());
                    verify_jwt(
                        jwt,
                        keys.as_deref(),
                        &credential,
                        chrono::Utc::now().timestamp(),
                    )
                };
                let mut verdict = verify();
                if let (Verdict::UnknownKey, Some(jwks)) = (&verdict, &self.jwks) {
                    jwks.refresh().await;
                    verdict = verify();
                }
                if let Verdict::Valid(p) = verdict {
                    return Ok(p);
                }
            }
        }
        self.api_key(&credential).ok_or(Rejection::Invalid)
    }

    /// Compares the key's digest with every configured one, without an
    /// early exit, so timing says nothing about which key came close.
    fn api_key(&self, key: &str) -> Option<Principal> {
        let digest = sha256(key.as_bytes());
        let mut found: Option<&ApiKey> = None;
        for k in &self.keys {
            if constant_time_eq(&k.sha256, &digest) {
                found = Some(k);
            }
        }
        found.map(|k| Principal::new(k.name.clone(), k.role))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Missing,
    Invalid,
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Authorization: Bearer <credential>`, else `X-API-Key: <credential>`.
fn credential(headers: &HeaderMap) -> Result<String, Rejection> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| Rejection::Invalid)?.trim();
        let (scheme, rest) = v.split_once(' ').ok_or(Rejection::Invalid)?;
        let token = rest.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(Rejection::Invalid);
        }
        return Ok(token.to_owned());
    }
    if let Some(v) = headers.get("x-api-key") {
        let v = v.to_str().map_err(|_| Rejection::Invalid)?.trim();
        if v.is_empty() {
            return Err(Rejection::Invalid);
        }
        return Ok(v.to_owned());
    }
    Err(Rejection::Missing)
}

fn b64url(part: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .ok()
}

/// What checking a bearer token found.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Valid(Principal),
    /// Signed with a key id the fetched key set does not have (yet).
    UnknownKey,
    Invalid,
}

/// Verifies a compact JWS against the static key and the fetched key set
/// (`jwks`, when one is configured) and reads its principal. Anything wrong
/// (signature, algorithm, time window, issuer, audience, role) is
/// [`Verdict::Invalid`], without saying which.
pub fn verify_jwt(settings: &JwtSettings, jwks: Option<&KeySet>, token: &str, now: i64) -> Verdict {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Verdict::Invalid;
    };
    let header: Option<Value> = b64url(h).and_then(|h| serde_json::from_slice(&h).ok());
    let (Some(header), Some(signature)) = (header, b64url(s)) else {
        return Verdict::Invalid;
    };
    let (Some(alg), kid) = (header["alg"].as_str(), header.get("kid")) else {
        return Verdict::Invalid;
    };
    let kid = match kid.map(Value::as_str) {
        None => None,
        Some(Some(kid)) => Some(kid),
        Some(None) => return Verdict::Invalid,
    };
    let signed = &token.as_bytes()[..h.len() + 1 + c.len()];
    // The algorithm is the key's, never the token's choice.
    let mut verified = settings
        .key
        .as_ref()
        .is_some_and(|key| static_key_verifies(key, alg, signed, &signature));
    if let (false, Some(set)) = (verified, jwks) {
        match set.check(kid, alg, signed, &signature) {
            KeyCheck::Verified => verified = true,
            KeyCheck::UnknownKey => return Verdict::UnknownKey,
            KeyCheck::Refused => {}
        }
    }
    if !verified {
        return Verdict::Invalid;
    }
    match principal(settings, c, now) {
        Some(p) => Verdict::Valid(p),
        None => Verdict::Invalid,
    }
}

fn static_key_verifies(key: &JwtKey, alg: &str, signed: &[u8], signature: &[u8]) -> bool {
    match key {
        JwtKey::Hs256(secret) => {
            alg == "HS256"
                && ring::hmac::verify(
                    &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
                    signed,
                    signature,
                )
                .is_ok()
        }
        JwtKey::Rs256(der) => {
            alg == "RS256"
                && ring::signature::UnparsedPublicKey::new(
                    &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                    der,
                )
                .verify(signed, signature)
                .is_ok()
        }
    }
}

/// The principal of a token whose signature holds, if its claims pass.
fn principal(settings: &JwtSettings, c: &str, now: i64) -> Option<Principal> {
    let claims: Value = serde_json::from_slice(&b64url(c)?).ok()?;
    // NumericDate: seconds, possibly fractional.
    let seconds = |v: &Value| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64));
    let exp = seconds(claims.get("exp")?)?;
    if now > exp + JWT_LEEWAY_SECS {
        return None;
    }
    if let Some(nbf) = claims.get("nbf") {
        if now + JWT_LEEWAY_SECS < seconds(nbf)? {
            return None;
        }
    }
    if let Some(iss) = &settings.issuer {
        if claims.get("iss")?.as_str()? != iss {
            return None;
        }
    }
    if let Some(aud) = &settings.audience {
        let ok = match claims.get("aud")? {
            Value::String(a) => a == aud,
            Value::Array(all) => all.iter().any(|a| a.as_str() == Some(aud)),
            _ => false,
        };
        if !ok {
            return None;
        }
    }
    let sub = claims.get("sub")?.as_str().filter(|s| !s.is_empty())?;
    let mut claim = &claims;
    for step in settings.role_claim.split('.') {
        claim = claim.get(step)?;
    }
    let role = match claim {
        Value::String(r) => Role::parse(r),
        Value::Array(rs) => rs
            .iter()
            .filter_map(|r| r.as_str())
            .filter_map(Role::parse)
            .max(),
        _ => None,
    }?;
    Some(Principal::new(sub, role))
}

/// Token buckets of the replay endpoints, one per principal name.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate_per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `who`, or says how long until one is there.
    pub fn take(&self, who: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(who) {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(who.to_owned()).or_insert((self.burst, now));
        let refilled = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate)
            .min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / self.rate))
        }
    }
}

fn unauthorized() -> Response {
    let mut resp = problem_response(
        Problem::Http(StatusCode::UNAUTHORIZED),
        "missing or invalid credentials: send an API key (Authorization: Bearer <key> \
         or X-API-Key) or a bearer token",
        &[],
    );
    resp.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

fn forbidden(principal: &Principal, needed: Role) -> Response {
    problem_response(
        Problem::Http(StatusCode::FORBIDDEN),
        &format!(
            "role {} may not do this; it needs {}",
            principal.role.as_str(),
            needed.as_str()
        ),
        &[],
    )
}

fn too_many(retry_after: Duration) -> Response {
    let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut resp = problem_response(
        Problem::Http(StatusCode::TOO_MANY_REQUESTS),
        &format!(
            "too many replay requests; retry in {secs} s (ORDER_REPLAY_RATE_PER_SEC, \
             ORDER_REPLAY_BURST)"
        ),
        &[],
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// What the route layer reads: the authenticator, and the access each
/// declared route needs.
#[derive(Clone)]
pub struct Guard {
    auth: Arc<Auth>,
    table: Arc<AccessTable>,
}

impl Guard {
    pub fn new(auth: Arc<Auth>, table: AccessTable) -> Self {
        Self {
            auth,
            table: Arc::new(table),
        }
    }
}

/// The route layer: authenticate, authorise, rate-limit, and hand the
/// principal to the handler as `Extension<Principal>`.
pub async fn authorize(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let auth = &guard.auth;
    let pattern = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |m| m.as_str().to_owned());
    let access = match guard.table.access_for(req.method(), &pattern) {
        Access::Metrics if auth.metrics_auth => Access::Role(Role::Viewer),
        Access::Metrics => Access::Open,
        a => a,
    };
    if !auth.enforced() {
        req.extensions_mut().insert(Principal::anonymous());
        return next.run(req).await;
    }
    let (needed, limited) = match access {
        Access::Open | Access::Metrics => return next.run(req).await,
        Access::Role(r) => (r, false),
        Access::Limited(r) => (r, true),
    };
    let principal = match auth.authenticate(req.headers()).await {
        Ok(p) => p,
        Err(why) => {
            tracing::info!(?why, "request rejected: credentials missing or invalid");
            return unauthorized();
        }
    };
    if !principal.has(needed) {
        tracing::info!(principal = %principal.name, role = principal.role.as_str(), needed = needed.as_str(), "request forbidden");
        return forbidden(&principal, needed);
    }
    if limited {
        if let Err(wait) = auth.limiter.take(&principal.name, Instant::now()) {
            tracing::info!(principal = %principal.name, "replay rate limit reached");
            return too_many(wait);
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::*;

    #[test]
    fn the_declared_routes_fail_closed_and_cover_wrong_methods() {
        let (_, table) = super::super::declared_routes(true).finish();
        let access_for = |m: &Method, p: &str| table.access_for(m, p);
        assert_eq!(
            access_for(&Method::GET, "/api/orders/{id}"),
            Access::Role(Role::Viewer)
        );
        assert_eq!(
            access_for(&Method::PUT, "/api/orders/{id}/confirm"),
            Access::Role(Role::Operator)
        );
        assert_eq!(
            access_for(&Method::GET, "/api/something/new"),
            Access::Role(Role::Admin)
        );
        assert_eq!(access_for(&Method::HEAD, "/health/live"), Access::Open);
        assert_eq!(access_for(&Method::DELETE, "/health/live"), Access::Open);
        assert_eq!(
            access_for(&Method::DELETE, "/api/orders/{id}"),
            Access::Role(Role::Viewer)
        );
        assert_eq!(
            access_for(&Method::GET, "/api/dlq/replay/{eventId}"),
            Access::Role(Role::Admin)
        );
        assert_eq!(
            access_for(&Method::POST, "/api/dlq/skip/{eventId}"),
            Access::Limited(Role::Admin)
        );
    }

    #[test]
    fn a_bucket_allows_the_burst_then_refills_at_the_rate() {
        let l = RateLimiter::new(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take("a", t0).is_ok());
        }
        let wait = l.take("a", t0).unwrap_err();
        assert!(wait <= Duration::from_millis(500) && wait > Duration::ZERO);
        assert!(l.take("b", t0).is_ok(), "buckets are per principal");
        assert!(l.take("a", t0 + Duration::from_millis(500)).is_ok());
    }
}
