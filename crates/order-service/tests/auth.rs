//! Authentication, roles, the replay rate limit and DLQ payload masking,
//! through the router (no socket), plus the start-up posture of the real
//! binary (a production profile without credentials refuses to start).

// Test helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use order_core::app::Role;
use order_service::config::{ApiKey, Config, JwtSettings};
use serde_json::{json, Value};
use support::router::{test_app_with, Reply};

const VIEWER_KEY: &str = "viewer-key-0123456789";
const OPERATOR_KEY: &str = "operator-key-0123456789";
const ADMIN_KEY: &str = "admin-key-0123456789abc";
const JWT_SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";

/// The problem-response check of these tests.
impl Reply {
    fn problem(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.bytes)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let p = self.json();
        assert_eq!(p["status"], status.as_u16(), "{p}");
        p
    }
}

fn with_keys(c: &mut Config) {
    c.auth.api_keys = vec![
        ApiKey::new("the-viewer", Role::Viewer, VIEWER_KEY),
        ApiKey::new("the-operator", Role::Operator, OPERATOR_KEY),
        ApiKey::new("the-admin", Role::Admin, ADMIN_KEY),
    ];
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256_token(secret: &[u8], claims: &Value) -> String {
    let head = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64(claims.to_string().as_bytes());
    let input = format!("{head}.{body}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let sig = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(sig.as_ref()))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The minimum role of a documented route (`None` = open), as README's
/// "Authentication and roles" table states it.
fn needed_role(method: &str, path: &str) -> Option<Role> {
    let open = [
        "/actuator/",
        "/health/",
        "/v3/",
        "/swagger-ui",
        "/dashboard",
        "/metrics",
    ];
    if open.iter().any(|p| path.starts_with(p)) {
        return None;
    }
    Some(match (method, path) {
        ("get", p) if p.starts_with("/api/orders") => Role::Viewer,
        (_, p) if p.starts_with("/api/orders") => Role::Operator,
        ("get", "/api/dlq/audit") => Role::Admin,
        ("get", p) if p.starts_with("/api/dlq/jobs") => Role::Operator,
        ("get", "/api/dlq/export") => Role::Operator,
        ("get", p) if p.starts_with("/api/dlq/") => Role::Viewer,
        _ => Role::Admin,
    })
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "00000000-0000-4000-8000-000000000000")
        .replace("{eventId}", "no-such-event")
        .replace("{status}", "PENDING")
        .replace("{customerId}", "cust-1")
        .replace("{jobId}", "0190f1e2-0000-7000-8000-000000000000")
        .replace("{file}", "LICENSE")
}

/// Who calls: a label, and role, header and key (`None` = no credentials).
type Caller = (&'static str, Option<(Role, &'static str, &'static str)>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers_the_role_matrix() {
    let t = test_app_with(with_keys).await;
    let doc: Value = serde_json::from_slice(&order_service::http::openapi::json(true)).unwrap();
    let callers: [Caller; 4] = [
        ("nobody", None),
        ("viewer", Some((Role::Viewer, "authorization", VIEWER_KEY))),
        (
            "operator",
            Some((Role::Operator, "x-api-key", OPERATOR_KEY)),
        ),
        ("admin", Some((Role::Admin, "authorization", ADMIN_KEY))),
    ];
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let Ok(m) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let needed = needed_role(method, path);
            for (who, cred) in &callers {
                let value = cred.map(|(_, h, k)| {
                    if h == "authorization" {
                        bearer(k)
                    } else {
                        k.to_owned()
                    }
                });
                let headers: Vec<(&str, &str)> = match (cred, &value) {
                    (Some((_, h, _)), Some(v)) => vec![(*h, v.as_str())],
                    _ => vec![],
                };
                let r = t.call(m.clone(), &concrete(path), None, &headers).await;
                let what = format!(
                    "{who} {method} {path}: {}",
                    String::from_utf8_lossy(&r.bytes)
                );
                match (needed, cred) {
                    (None, _) => assert!(
                        !matches!(r.status.as_u16(), 401 | 403),
                        "open route refused: {what}"
                    ),
                    (Some(_), None) => {
                        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
                        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
                        r.problem(StatusCode::UNAUTHORIZED);
                    }
                    (Some(need), Some((role, _, _))) if *role < need => {
                        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}");
                        r.problem(StatusCode::FORBIDDEN);
                    }
                    (Some(_), Some(_)) => assert!(
                        !matches!(r.status.as_u16(), 401 | 403 | 429),
                        "allowed caller refused: {what}"
                    ),
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 4 * 25, "only {checked} calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_works_in_either_header_and_a_wrong_key_is_401_without_saying_why() {
    let t = test_app_with(with_keys).await;
    for headers in [
        [("authorization", bearer(VIEWER_KEY))],
        [("x-api-key", VIEWER_KEY.to_owned())],
        [("authorization", format!("bearer  {VIEWER_KEY}"))],
    ] {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = t.call(Method::GET, "/api/dlq/stats", None, &h).await;
        assert_eq!(r.status, StatusCode::OK, "{headers:?}");
    }
    for (name, value) in [
        ("authorization", bearer("wrong-key-0123456789")),
        ("x-api-key", "wrong-key-0123456789".to_owned()),
        ("authorization", format!("Basic {VIEWER_KEY}")),
        ("authorization", "Bearer ".to_owned()),
        ("authorization", bearer(&VIEWER_KEY[..VIEWER_KEY.len() - 1])),
    ] {
        let r = t
            .call(Method::GET, "/api/dlq/stats", None, &[(name, &value)])
            .await;
        let p = r.problem(StatusCode::UNAUTHORIZED);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let detail = p["detail"].as_str().unwrap();
        assert!(
            detail.contains("missing or invalid credentials"),
            "{detail}"
        );
        assert!(
            !detail.contains("wrong-key") && !detail.contains("viewer"),
            "{detail}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_wrong_methods_keep_their_404_and_405() {
    let t = test_app_with(with_keys).await;
    t.call(Method::GET, "/api/nothing-here", None, &[])
        .await
        .problem(StatusCode::NOT_FOUND);
    // A wrong method: 405 (with Allow) to whoever may use the path at all,
    // 401/403 to everyone else.
    let r = t
        .call(
            Method::DELETE,
            "/api/dlq/stats",
            None,
            &[("x-api-key", VIEWER_KEY)],
        )
        .await;
    r.problem(StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.header("allow").unwrap().contains("GET"));
    t.call(Method::DELETE, "/api/dlq/stats", None, &[])
        .await
        .problem(StatusCode::UNAUTHORIZED);
    t.call(
        Method::GET,
        "/api/dlq/replay/x",
        None,
        &[("x-api-key", OPERATOR_KEY)],
    )
    .await
    .problem(StatusCode::FORBIDDEN);
    t.call(
        Method::GET,
        "/api/dlq/replay/x",
        None,
        &[("x-api-key", ADMIN_KEY)],
    )
    .await
    .problem(StatusCode::METHOD_NOT_ALLOWED);
    t.call(Method::DELETE, "/health/live", None, &[])
        .await
        .problem(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_tokens_are_checked_for_signature_time_and_role() {
    let t = test_app_with(|c| {
        with_keys(c);
        let mut jwt = JwtSettings::hs256(JWT_SECRET);
        jwt.issuer = Some("https://idp.test".into());
        jwt.audience = Some("order-service".into());
        c.auth.jwt = Some(jwt);
    })
    .await;
    let claims = |extra: Value| {
        let mut c = json!({
            "sub": "alice", "iss": "https://idp.test", "aud": ["other", "order-service"],
            "exp": now() + 300, "role": "operator"
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let call = |token: String| {
        let t = &t;
        async move {
            t.call(
                Method::PUT,
                "/api/dlq/reset/no-such-event",
                None,
                &[("authorization", &bearer(&token))],
            )
            .await
        }
    };
    let view = |token: String| {
        let t = &t;
        async move {
            t.call(
                Method::GET,
                "/api/orders/customer/c1",
                None,
                &[("authorization", &bearer(&token))],
            )
            .await
        }
    };
    // Valid operator token: reads fine, admin-only reset is 403.
    let ok = hs256_token(JWT_SECRET, &claims(json!({})));
    assert_eq!(view(ok.clone()).await.status, StatusCode::OK);
    call(ok).await.problem(StatusCode::FORBIDDEN);
    // An array of roles: the highest wins.
    let admin = hs256_token(
        JWT_SECRET,
        &claims(json!({"role": ["viewer", "admin", "bogus"]})),
    );
    assert_eq!(call(admin).await.status, StatusCode::NOT_FOUND);
    // Expired, not yet valid, wrong signature, wrong issuer/audience, no role.
    for bad in [
        hs256_token(JWT_SECRET, &claims(json!({"exp": now() - 120}))),
        hs256_token(JWT_SECRET, &claims(json!({"nbf": now() + 600}))),
        hs256_token(b"another-secret-of-at-least-32-bytes!", &claims(json!({}))),
        hs256_token(JWT_SECRET, &claims(json!({"iss": "https://evil.test"}))),
        hs256_token(JWT_SECRET, &claims(json!({"aud": "someone-else"}))),
        hs256_token(JWT_SECRET, &claims(json!({"role": "root"}))),
        hs256_token(JWT_SECRET, &json!({"sub": "alice", "role": "admin"})),
    ] {
        let r = view(bad).await;
        r.problem(StatusCode::UNAUTHORIZED);
    }
    // alg confusion: a token claiming "none" is refused.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(claims(json!({})).to_string().as_bytes())
    );
    view(none).await.problem(StatusCode::UNAUTHORIZED);
    // API keys keep working beside JWT.
    let r = t
        .call(
            Method::GET,
            "/api/orders/customer/c1",
            None,
            &[("x-api-key", VIEWER_KEY)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_over_the_rate_limit_answer_429_with_retry_after_per_principal() {
    let t = test_app_with(|c| {
        with_keys(c);
        c.auth
            .api_keys
            .push(ApiKey::new("admin-2", Role::Admin, "second-admin-key-0123"));
        c.auth.replay_rate_per_sec = 1;
        c.auth.replay_burst = 3;
    })
    .await;
    let admin = [("x-api-key", ADMIN_KEY)];
    for _ in 0..3 {
        let r = t
            .call(Method::POST, "/api/dlq/replay/nope", None, &admin)
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    let r = t
        .call(Method::PUT, "/api/dlq/reset/nope", None, &admin)
        .await;
    let p = r.problem(StatusCode::TOO_MANY_REQUESTS);
    assert!(p["detail"].as_str().unwrap().contains("retry"), "{p}");
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&secs), "{secs}");
    // Bulk replay shares the bucket; another principal has its own.
    let r = t
        .call(
            Method::POST,
            "/api/dlq/replay",
            Some(json!({"dryRun": true})),
            &admin,
        )
        .await;
    r.problem(StatusCode::TOO_MANY_REQUESTS);
    let r = t
        .call(
            Method::POST,
            "/api/dlq/replay/nope",
            None,
            &[("x-api-key", "second-admin-key-0123")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Reads are not limited.
    let r = t.call(Method::GET, "/api/dlq/stats", None, &admin).await;
    assert_eq!(r.status, StatusCode::OK);
    // The bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = t
        .call(Method::POST, "/api/dlq/replay/nope", None, &admin)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_dlq_records_without_the_original_event_and_an_operator_with_it() {
    let t = test_app_with(with_keys).await;
    let admin = [("x-api-key", ADMIN_KEY)];
    t.call(Method::POST, "/api/test/bus/down", None, &admin)
        .await;
    let out = t
        .call(Method::POST, "/api/test/publish-event", None, &admin)
        .await
        .json();
    let event_id = out["eventId"].as_str().unwrap().to_owned();
    let reads = [
        format!("/api/dlq/event/{event_id}"),
        "/api/dlq/pending".to_owned(),
        "/api/dlq/status/PENDING".to_owned(),
    ];
    for uri in &reads {
        let record = |v: Value| {
            if v["content"].is_array() {
                v["content"][0].clone()
            } else {
                v
            }
        };
        let viewer = t
            .call(Method::GET, uri, None, &[("x-api-key", VIEWER_KEY)])
            .await;
        assert_eq!(viewer.status, StatusCode::OK, "{uri}");
        let v = record(viewer.json());
        assert_eq!(v["eventId"], event_id.as_str(), "{uri}: {v}");
        assert!(v.get("originalEvent").is_none(), "{uri}: {v}");
        assert!(v["failureReason"].is_string(), "{uri}: {v}");
        for key in [OPERATOR_KEY, ADMIN_KEY] {
            let r = t.call(Method::GET, uri, None, &[("x-api-key", key)]).await;
            let v = record(r.json());
            assert!(
                v["originalEvent"].as_str().unwrap().contains(&event_id),
                "{uri}: {v}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_get_the_principal_and_metrics_can_require_a_viewer() {
    let t = test_app_with(|c| {
        with_keys(c);
        c.auth.metrics_auth = true;
    })
    .await;
    t.call(Method::GET, "/metrics", None, &[])
        .await
        .problem(StatusCode::UNAUTHORIZED);
    let r = t
        .call(Method::GET, "/metrics", None, &[("x-api-key", VIEWER_KEY)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        t.call(Method::GET, "/health/live", None, &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_embedded_profile_is_open() {
    let t = test_app_with(|_| {}).await;
    let r = t
        .call(Method::POST, "/api/dlq/replay/nope", None, &[])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = t.call(Method::GET, "/api/dlq/stats", None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn api_keys_are_read_from_the_environment_and_a_file_and_kept_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    let hashed = order_service::config::sha256(b"file-operator-key-0123");
    let hex: String = hashed.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(
        &file,
        format!("# name role key\nfile-viewer viewer file-viewer-key-0123\n\nfile-op operator sha256:{hex}\n"),
    )
    .unwrap();
    let env: std::collections::HashMap<String, String> = [
        (
            "ORDER_API_KEYS",
            "ci:operator:ci-key-0123456789:with-colon,dash:viewer:dash-key-0123456789",
        ),
        ("ORDER_API_KEYS_FILE", file.to_str().unwrap()),
        ("ORDER_ADMIN_API_KEY", "bootstrap-admin-key-0123"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let c = Config::from_env(&env).unwrap();
    let keys = &c.auth.api_keys;
    assert_eq!(keys.len(), 5);
    assert_eq!(
        keys[0],
        ApiKey::new("ci", Role::Operator, "ci-key-0123456789:with-colon")
    );
    assert_eq!(
        keys[3],
        ApiKey::new("file-op", Role::Operator, "file-operator-key-0123")
    );
    assert_eq!(
        keys[4],
        ApiKey::new("admin", Role::Admin, "bootstrap-admin-key-0123")
    );
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("ci-key-0123456789") && !shown.contains("bootstrap"),
        "{shown}"
    );

    for (var, value, expect) in [
        (
            "ORDER_API_KEYS",
            "ci:root:ci-key-0123456789",
            "unknown role",
        ),
        ("ORDER_API_KEYS", "ci:viewer:short", "at least 16"),
        ("ORDER_API_KEYS", "justakey", "name:role:key"),
        ("ORDER_JWT_HS256_SECRET", "short", "at least 32 bytes"),
        (
            "ORDER_JWT_RS256_PUBLIC_KEY",
            "-----BEGIN CERTIFICATE-----",
            "RSA public key",
        ),
    ] {
        let env = [(var.to_owned(), value.to_owned())].into_iter().collect();
        let e = Config::from_env(&env).unwrap_err().to_string();
        assert!(e.starts_with(var) && e.contains(expect), "{e}");
        assert!(!e.contains("ci-key-0123456789"), "{e}");
    }
}

/// The real binary with only `env` (plus PATH); its exit status and output.
fn run_binary(dir: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_order-service"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn a_production_profile_without_credentials_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    for env in [
        vec![(
            "ORDER_DATABASE_URL",
            "mysql://root@127.0.0.1:1/never_opened",
        )],
        vec![("ORDER_KAFKA_BROKERS", "127.0.0.1:1")],
    ] {
        let out = run_binary(dir.path(), &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(
            stderr.contains("no credentials configured")
                && stderr.contains("ORDER_AUTH_DISABLED=true"),
            "{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_profile_starts_with_auth_disabled_and_the_open_embedded_one_warns() {
    let dir = tempfile::tempdir().unwrap();
    let svc = support::Service::start(dir.path(), &[]).await;
    assert!(svc.log().contains("AUTHENTICATION OFF"), "{}", svc.log());
    drop(svc);

    // MySQL (the test server, when there is one) with authentication off on purpose.
    let Ok(mysql) = std::env::var("ORDER_TEST_MYSQL_URL") else {
        eprintln!("ORDER_TEST_MYSQL_URL unset: the MySQL half of this test is skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("{mysql}/auth_{}", uuid::Uuid::new_v4().simple());
    let bus = dir.path().join("bus.db").display().to_string();
    let rm = dir.path().join("rm.db").display().to_string();
    let svc = support::Service::start(
        dir.path(),
        &[
            ("ORDER_DATABASE_URL", &db),
            ("ORDER_BUS_PATH", &bus),
            ("ORDER_READ_MODEL_PATH", &rm),
            ("ORDER_AUTH_DISABLED", "true"),
        ],
    )
    .await;
    let r = svc.call("GET", "/api/dlq/stats", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        svc.log().contains("AUTHENTICATION DISABLED"),
        "{}",
        svc.log()
    );
}

/// Runs openssl with `args`, feeding `input`; `None` when there is no openssl.
fn openssl(args: &[&str], input: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "openssl {args:?} failed");
    Some(out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_are_verified_with_a_pem_public_key_inline_or_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let key_s = key.to_str().unwrap();
    let genkey = [
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key_s,
    ];
    if openssl(&genkey, b"").is_none() {
        eprintln!("no openssl: RS256 test skipped");
        return;
    }
    let spki = openssl(&["pkey", "-in", key_s, "-pubout"], b"").unwrap();
    let pkcs1 = openssl(&["rsa", "-in", key_s, "-RSAPublicKey_out"], b"").unwrap();
    let pub_file = dir.path().join("pub.pem");
    std::fs::write(&pub_file, &spki).unwrap();
    let sign = |claims: &Value| {
        let head = b64(br#"{"alg":"RS256","typ":"JWT"}"#);
        let input = format!("{head}.{}", b64(claims.to_string().as_bytes()));
        let sig = openssl(&["dgst", "-sha256", "-sign", key_s], input.as_bytes()).unwrap();
        format!("{input}.{}", b64(&sig))
    };
    let good = sign(&json!({"sub": "svc", "exp": now() + 60, "role": "viewer"}));
    let expired = sign(&json!({"sub": "svc", "exp": now() - 600, "role": "viewer"}));
    // The HS256 token of the same claims must not pass as RS256.
    let hs = hs256_token(
        JWT_SECRET,
        &json!({"sub": "svc", "exp": now() + 60, "role": "viewer"}),
    );
    for pem in [
        pub_file.to_str().unwrap().to_owned(),
        String::from_utf8(pkcs1.clone()).unwrap(),
    ] {
        let env = [("ORDER_JWT_RS256_PUBLIC_KEY".to_owned(), pem)]
            .into_iter()
            .collect();
        let config = Config::from_env(&env).unwrap();
        let t = test_app_with(|c| c.auth = config.auth.clone()).await;
        let get = |token: &str| {
            let h = bearer(token);
            let t = &t;
            async move {
                t.call(
                    Method::GET,
                    "/api/dlq/stats",
                    None,
                    &[("authorization", &h)],
                )
                .await
            }
        };
        assert_eq!(get(&good).await.status, StatusCode::OK);
        get(&expired).await.problem(StatusCode::UNAUTHORIZED);
        get(&hs).await.problem(StatusCode::UNAUTHORIZED);
        let r = t
            .call(
                Method::POST,
                "/api/dlq/replay",
                None,
                &[("authorization", &bearer(&good))],
            )
            .await;
        r.problem(StatusCode::FORBIDDEN);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_and_the_audit_trail_need_an_admin() {
    let t = test_app_with(with_keys).await;
    let routes = [
        (Method::POST, "/api/dlq/skip/no-such-event"),
        (Method::GET, "/api/dlq/audit"),
    ];
    for (method, uri) in routes {
        t.call(method.clone(), uri, None, &[])
            .await
            .problem(StatusCode::UNAUTHORIZED);
        for key in [VIEWER_KEY, OPERATOR_KEY] {
            t.call(method.clone(), uri, None, &[("x-api-key", key)])
                .await
                .problem(StatusCode::FORBIDDEN);
        }
        let r = t
            .call(method.clone(), uri, None, &[("x-api-key", ADMIN_KEY)])
            .await;
        assert!(
            !matches!(r.status.as_u16(), 401 | 403 | 429),
            "{method} {uri}: {}",
            r.status
        );
    }
}
