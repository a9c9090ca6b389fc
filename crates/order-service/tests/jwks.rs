//! Bearer tokens checked with the keys of a JWKS URL, served by a real HTTP
//! server in the test (a stand-in identity provider that counts its
//! fetches and can rotate its keys): RS256, PS256 and ES256 tokens, key
//! rotation, a storm of unknown key ids, `alg` confusion, and start-up while
//! the provider is away, and a provider over HTTPS behind a private CA. RSA
//! keys and the test CA come from the `openssl` CLI (ring cannot generate
//! RSA keys); P-256 keys from ring.

// Test helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use order_core::app::Role;
use order_service::config::{ApiKey, JwksSettings, JwtSettings};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use serde_json::{json, Value};
use support::router::{test_app_with, Reply, TestApp};

const API_KEY: &str = "viewer-key-0123456789";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": now() + 300, "role": "viewer"})
}

/// A signing key of the stand-in identity provider.
enum Signer {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
}

impl Signer {
    /// A fresh 2048-bit RSA key from `openssl genpkey` (its DER output is
    /// PKCS#1 `RSAPrivateKey`).
    fn rsa() -> Self {
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-outform",
                "DER",
            ])
            .stderr(Stdio::null())
            .output()
            .expect("the openssl CLI generates the test's RSA keys");
        assert!(out.status.success(), "openssl genpkey failed");
        Signer::Rsa(RsaKeyPair::from_der(&out.stdout).unwrap())
    }

    fn p256() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        Signer::P256(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .unwrap(),
        )
    }

    /// The public JWK; `alg` as given (`None`: left out).
    fn jwk(&self, kid: &str, alg: Option<&str>) -> Value {
        let mut jwk = match self {
            Signer::Rsa(pair) => {
                let c: RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
                json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Signer::P256(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])})
            }
        };
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        if let Some(alg) = alg {
            jwk["alg"] = json!(alg);
        }
        jwk
    }

    /// A token with header `alg` and `kid`, signed by this key with the
    /// scheme `scheme` names (which may differ from `alg`, to lie).
    fn token_as(&self, scheme: &str, alg: &str, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match (self, scheme) {
            (Signer::Rsa(pair), "RS256" | "PS256") => {
                let padding: &'static dyn ring::signature::RsaEncoding = if scheme == "RS256" {
                    &RSA_PKCS1_SHA256
                } else {
                    &RSA_PSS_SHA256
                };
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(padding, &rng, input.as_bytes(), &mut sig)
                    .unwrap();
                sig
            }
            (Signer::P256(pair), "ES256") => {
                pair.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec()
            }
            _ => panic!("{scheme} is not a scheme of this key"),
        };
        format!("{input}.{}", b64(&sig))
    }

    /// A token signed as its header says.
    fn token(&self, alg: &str, kid: Option<&str>, claims: &Value) -> String {
        self.token_as(alg, alg, kid, claims)
    }
}

/// The stand-in identity provider: serves `keys` at `/certs` while `up`,
/// 503 otherwise, each answer after `delay`, counting the requests.
struct Idp {
    keys: Mutex<Value>,
    fetches: AtomicUsize,
    up: AtomicBool,
    delay: Duration,
    url: String,
}

impl Idp {
    async fn start(keys: Vec<Value>, delay: Duration) -> Arc<Idp> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idp = Arc::new(Idp {
            keys: Mutex::new(json!({ "keys": keys })),
            fetches: AtomicUsize::new(0),
            up: AtomicBool::new(true),
            delay,
            url: format!("http://{}/certs", listener.local_addr().unwrap()),
        });
        let served = idp.clone();
        let app = Router::new().route(
            "/certs",
            get(move || {
                let idp = served.clone();
                async move {
                    idp.fetches.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(idp.delay).await;
                    if !idp.up.load(Ordering::SeqCst) {
                        return (StatusCode::SERVICE_UNAVAILABLE, String::new());
                    }
                    let body = idp.keys.lock().unwrap().to_string();
                    (StatusCode::OK, body)
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        idp
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn rotate(&self, keys: Vec<Value>) {
        *self.keys.lock().unwrap() = json!({ "keys": keys });
    }
}

/// The application taking tokens from `idp` (fetched again on an unknown
/// key id at most once per `min_refresh`) and one viewer API key.
async fn app_with(idp: &Idp, min_refresh: Duration) -> TestApp {
    let url = idp.url.clone();
    test_app_with(move |c| {
        c.auth.api_keys = vec![ApiKey::new("viewer", Role::Viewer, API_KEY)];
        c.auth.jwt = Some(JwtSettings {
            jwks: Some(JwksSettings {
                min_refresh,
                ..JwksSettings::new(url.clone())
            }),
            ..JwtSettings::jwks(url)
        });
    })
    .await
}

impl TestApp {
    /// `GET /api/dlq/stats` (a viewer's) with `token` as bearer.
    async fn stats(&self, token: &str) -> Reply {
        let auth = format!("Bearer {token}");
        self.call(
            Method::GET,
            "/api/dlq/stats",
            None,
            &[("authorization", &auth)],
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_ps256_and_es256_tokens_are_accepted_with_the_key_their_kid_names() {
    let (rsa, rsa_ps, ec) = (Signer::rsa(), Signer::rsa(), Signer::p256());
    let idp = Idp::start(
        vec![
            rsa.jwk("rsa", None),
            rsa_ps.jwk("rsa-ps", Some("PS256")),
            ec.jwk("ec", Some("ES256")),
        ],
        Duration::ZERO,
    )
    .await;
    let t = app_with(&idp, Duration::from_secs(10)).await;
    for token in [
        rsa.token("RS256", Some("rsa"), &claims()),
        rsa_ps.token("PS256", Some("rsa-ps"), &claims()),
        ec.token("ES256", Some("ec"), &claims()),
        // Without a kid: any key of the token's algorithm.
        ec.token("ES256", None, &claims()),
    ] {
        assert_eq!(t.stats(&token).await.status, StatusCode::OK, "{token}");
    }
    // The claims checks are those of any token.
    let expired = json!({"sub": "alice", "exp": now() - 120, "role": "viewer"});
    let no_role = json!({"sub": "alice", "exp": now() + 300});
    for token in [
        rsa.token("RS256", Some("rsa"), &expired),
        ec.token("ES256", Some("ec"), &no_role),
        // Signed by a key the set does not hold, under a kid it does.
        Signer::p256().token("ES256", Some("ec"), &claims()),
    ] {
        let r = t.stats(&token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let detail = r.json()["detail"].as_str().unwrap().to_owned();
        assert!(
            detail.contains("missing or invalid credentials") && !detail.contains("kid"),
            "{detail}"
        );
    }
    assert_eq!(idp.fetches(), 1, "known kids need no fetch");
    let metrics = t.call(Method::GET, "/metrics", None, &[]).await;
    let text = String::from_utf8_lossy(&metrics.bytes);
    assert!(
        text.contains("orders_jwks_fetches_total{outcome=\"ok\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_with_a_rotated_key_is_accepted_after_the_set_is_fetched_again() {
    let (old, new) = (Signer::p256(), Signer::rsa());
    let idp = Idp::start(vec![old.jwk("2026-11", None)], Duration::ZERO).await;
    let min_refresh = Duration::from_secs(1);
    let t = app_with(&idp, min_refresh).await;
    let old_token = old.token("ES256", Some("2026-11"), &claims());
    assert_eq!(t.stats(&old_token).await.status, StatusCode::OK);
    assert_eq!(idp.fetches(), 1);

    // The provider rotates: the new key in, the old one out.
    idp.rotate(vec![new.jwk("2026-12", Some("RS256"))]);
    tokio::time::sleep(min_refresh).await;
    let new_token = new.token("RS256", Some("2026-12"), &claims());
    assert_eq!(
        t.stats(&new_token).await.status,
        StatusCode::OK,
        "the unknown kid fetched the set again"
    );
    assert_eq!(idp.fetches(), 2);
    // The old key is gone with that fetch; its unknown kid does not fetch
    // again so soon.
    assert_eq!(t.stats(&old_token).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.stats(&new_token).await.status, StatusCode::OK);
    assert_eq!(idp.fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_unknown_key_ids_costs_the_provider_one_fetch() {
    let ec = Signer::p256();
    // A slow provider: the storm arrives while its fetch is under way.
    let idp = Idp::start(vec![ec.jwk("ec", None)], Duration::from_millis(300)).await;
    let min_refresh = Duration::from_secs(2);
    let t = app_with(&idp, min_refresh).await;
    assert_eq!(
        t.stats(&ec.token("ES256", Some("ec"), &claims()))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(idp.fetches(), 1);
    tokio::time::sleep(min_refresh).await;

    let storm = || {
        futures_util::future::join_all((0..200).map(|_| {
            let kid = uuid::Uuid::new_v4().to_string();
            let token = ec.token("ES256", Some(&kid), &claims());
            let t = &t;
            async move { t.stats(&token).await.status }
        }))
    };
    let started = std::time::Instant::now();
    let answers = storm().await;
    assert!(answers.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    let fetched = idp.fetches() - 1;
    assert!(
        (1..=2).contains(&fetched),
        "{fetched} fetches for 200 unknown kids in {:?}",
        started.elapsed()
    );
    // Within the interval, another storm fetches nothing.
    let before = idp.fetches();
    let answers = storm().await;
    assert!(answers.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    if started.elapsed() < min_refresh {
        assert_eq!(idp.fetches(), before);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_outlives_the_caller_that_gave_up_and_starts_no_other() {
    let (old, new) = (Signer::p256(), Signer::p256());
    let idp = Idp::start(vec![old.jwk("old", None)], Duration::from_millis(300)).await;
    let min_refresh = Duration::from_secs(2);
    let t = app_with(&idp, min_refresh).await;
    let token = old.token("ES256", Some("old"), &claims());
    assert_eq!(t.stats(&token).await.status, StatusCode::OK);
    idp.rotate(vec![new.jwk("new", None)]);
    tokio::time::sleep(min_refresh).await;
    // Requests with the new kid are dropped (their clients went away)
    // while the fetch the first one started waits for the provider.
    let new_token = new.token("ES256", Some("new"), &claims());
    for i in 0..5 {
        let gave_up = tokio::time::timeout(Duration::from_millis(20), t.stats(&new_token)).await;
        assert!(i > 0 || gave_up.is_err(), "the first one waits for a fetch");
    }
    // That fetch ran to its end: the new key is there, without another.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.stats(&new_token).await.status, StatusCode::OK);
    assert_eq!(idp.fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_algorithm_is_the_keys_never_the_tokens() {
    let (rsa, ec) = (Signer::rsa(), Signer::p256());
    let idp = Idp::start(
        vec![
            // One RSA key under two kids: RS256 (implied) and PS256.
            rsa.jwk("rsa", None),
            rsa.jwk("rsa-ps", Some("PS256")),
            ec.jwk("ec", None),
        ],
        Duration::ZERO,
    )
    .await;
    let t = app_with(&idp, Duration::from_secs(10)).await;
    let Signer::Rsa(pair) = &rsa else {
        unreachable!()
    };
    let hs256 = |kid: &str, secret: &[u8]| {
        let header = json!({"alg": "HS256", "kid": kid});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        format!(
            "{input}.{}",
            b64(ring::hmac::sign(&key, input.as_bytes()).as_ref())
        )
    };
    let jwk_text = rsa.jwk("rsa", None).to_string();
    let unsigned = |header: Value| {
        format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(claims().to_string().as_bytes())
        )
    };
    for (what, token) in [
        (
            "HS256 keyed with the RSA public key (DER)",
            hs256("rsa", pair.public().as_ref()),
        ),
        (
            "HS256 keyed with the RSA public key (JWK)",
            hs256("rsa", jwk_text.as_bytes()),
        ),
        ("alg none", unsigned(json!({"alg": "none", "kid": "rsa"}))),
        ("alg none, no kid", unsigned(json!({"alg": "none"}))),
        (
            "an RS256 token for the EC key",
            rsa.token("RS256", Some("ec"), &claims()),
        ),
        (
            "a PS256 token for the RS256 key (same RSA key)",
            rsa.token("PS256", Some("rsa"), &claims()),
        ),
        (
            "an RS256 token for the PS256 key (same RSA key)",
            rsa.token("RS256", Some("rsa-ps"), &claims()),
        ),
        (
            "a PKCS#1 signature labelled PS256",
            rsa.token_as("RS256", "PS256", Some("rsa-ps"), &claims()),
        ),
        (
            "an ES256 signature labelled RS256",
            ec.token_as("ES256", "RS256", Some("ec"), &claims()),
        ),
    ] {
        let r = t.stats(&token).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
    }
    // The kids were known: refusing them needed no fetch.
    assert_eq!(idp.fetches(), 1);
    // The same keys, used as the set says, pass.
    for token in [
        rsa.token("RS256", Some("rsa"), &claims()),
        rsa.token("PS256", Some("rsa-ps"), &claims()),
    ] {
        assert_eq!(t.stats(&token).await.status, StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_provider_is_away_tokens_are_refused_and_api_keys_work() {
    let ec = Signer::p256();
    let idp = Idp::start(vec![ec.jwk("ec", None)], Duration::ZERO).await;
    idp.up.store(false, Ordering::SeqCst);
    let min_refresh = Duration::from_millis(500);
    // Starts although the provider does not answer.
    let t = app_with(&idp, min_refresh).await;
    let token = ec.token("ES256", Some("ec"), &claims());
    assert_eq!(t.stats(&token).await.status, StatusCode::UNAUTHORIZED);
    let r = t
        .call(
            Method::GET,
            "/api/dlq/stats",
            None,
            &[("x-api-key", API_KEY)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let ready = t.call(Method::GET, "/health/ready", None, &[]).await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "readiness ignores the provider"
    );

    idp.up.store(true, Ordering::SeqCst);
    tokio::time::sleep(min_refresh).await;
    assert_eq!(t.stats(&token).await.status, StatusCode::OK);
    let metrics = t.call(Method::GET, "/metrics", None, &[]).await;
    let text = String::from_utf8_lossy(&metrics.bytes);
    assert!(
        !text.contains("orders_jwks_fetches_total{outcome=\"ok\"} 0")
            && !text.contains("orders_jwks_fetches_total{outcome=\"error\"} 0"),
        "{text}"
    );

    // Keys once fetched outlive an outage.
    idp.up.store(false, Ordering::SeqCst);
    tokio::time::sleep(min_refresh).await;
    let unknown = ec.token("ES256", Some("another"), &claims());
    assert_eq!(t.stats(&unknown).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(t.stats(&token).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_the_jwks_url_from_the_environment_and_starts_while_the_provider_is_away()
{
    let ec = Signer::p256();
    let idp = Idp::start(vec![ec.jwk("ec", None)], Duration::ZERO).await;
    idp.up.store(false, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    // Ready (Service::start waits for it) although the provider is away.
    let svc = support::Service::start(
        dir.path(),
        &[
            ("ORDER_JWT_JWKS_URL", &idp.url),
            ("ORDER_JWT_JWKS_MIN_REFRESH_SECS", "1"),
        ],
    )
    .await;
    let warned = || svc.log().contains("JWKS fetch failed");
    for _ in 0..100 {
        if warned() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(warned(), "{}", svc.log());
    let auth = format!("Bearer {}", ec.token("ES256", Some("ec"), &claims()));
    let headers = [("authorization", auth.as_str())];
    let stats = || support::call(svc.addr, "GET", "/api/dlq/stats", None, &headers);
    assert_eq!(stats().await.unwrap().status, 401);

    idp.up.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stats().await.unwrap().status, 200, "{}", svc.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_hs256_secret_and_a_key_set_work_side_by_side() {
    let secret = b"a-test-secret-of-at-least-32-bytes!!";
    let ec = Signer::p256();
    let idp = Idp::start(vec![ec.jwk("ec", None)], Duration::ZERO).await;
    let url = idp.url.clone();
    let t = test_app_with(move |c| {
        let mut jwt = JwtSettings::hs256(secret);
        jwt.jwks = Some(JwksSettings::new(url));
        c.auth.jwt = Some(jwt);
    })
    .await;
    let hs256 = |kid: Option<&str>, secret: &[u8]| {
        let mut header = json!({"alg": "HS256"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let sig = ring::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", b64(sig.as_ref()))
    };
    for token in [
        hs256(None, secret),
        hs256(Some("whatever"), secret),
        ec.token("ES256", Some("ec"), &claims()),
    ] {
        assert_eq!(t.stats(&token).await.status, StatusCode::OK, "{token}");
    }
    for token in [
        hs256(None, b"another-secret-of-at-least-32-bytes!"),
        hs256(Some("ec"), b"another-secret-of-at-least-32-bytes!"),
    ] {
        assert_eq!(t.stats(&token).await.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_set_over_a_mebibyte_is_not_read_and_the_keys_held_stay() {
    let ec = Signer::p256();
    let idp = Idp::start(vec![ec.jwk("ec", None)], Duration::ZERO).await;
    let min_refresh = Duration::from_secs(1);
    let t = app_with(&idp, min_refresh).await;
    let token = ec.token("ES256", Some("ec"), &claims());
    assert_eq!(t.stats(&token).await.status, StatusCode::OK);

    let other = Signer::p256();
    let mut huge = other.jwk("other", None);
    huge["x5c"] = json!(["A".repeat(1024 * 1024)]);
    idp.rotate(vec![huge]);
    tokio::time::sleep(min_refresh).await;
    let other_token = other.token("ES256", Some("other"), &claims());
    assert_eq!(t.stats(&other_token).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(idp.fetches(), 2, "it was fetched, and refused");
    assert_eq!(t.stats(&token).await.status, StatusCode::OK);
    let metrics = t.call(Method::GET, "/metrics", None, &[]).await;
    let text = String::from_utf8_lossy(&metrics.bytes);
    assert!(
        text.contains("orders_jwks_fetches_total{outcome=\"error\"} 1"),
        "{text}"
    );
}

/// Runs the openssl CLI in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI makes the test's certificates");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private CA (`ca.pem`) and a certificate it issued for 127.0.0.1
/// (`srv.pem`, `srv.key`), in `dir`.
fn private_ca(dir: &Path) {
    let p256 = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let ca = [
        "req", "-x509", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
    ];
    openssl(
        dir,
        &[&ca[..], &p256, &["-subj", "/CN=JWKS test CA"]].concat(),
    );
    let csr = [
        "req",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=127.0.0.1",
    ];
    openssl(dir, &[&csr[..], &p256].concat());
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// Serves `body` over HTTPS with `dir`'s `srv.pem`/`srv.key` (one request
/// per connection); its URL and the count of requests answered.
async fn https_idp(dir: &Path, body: String) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{crypto::ring::default_provider, ServerConfig};
    let certs = CertificateDer::pem_file_iter(dir.join("srv.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("srv.key")).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/certs", listener.local_addr().unwrap());
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, body, count) = (acceptor.clone(), body.clone(), count.clone());
            tokio::spawn(async move {
                // A client that does not trust the certificate ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, answered)
}

/// The application taking tokens from the key set at `url`, trusting
/// `ca_file` (else the Mozilla roots) for it.
async fn https_app(url: &str, ca_file: Option<PathBuf>) -> TestApp {
    let url = url.to_owned();
    test_app_with(move |c| {
        c.auth.jwt = Some(JwtSettings {
            jwks: Some(JwksSettings {
                ca_file,
                ..JwksSettings::new(url.clone())
            }),
            ..JwtSettings::jwks(url)
        });
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_provider_is_trusted_through_the_configured_ca_and_not_without_it() {
    let dir = tempfile::tempdir().unwrap();
    private_ca(dir.path());
    let ec = Signer::p256();
    let body = json!({ "keys": [ec.jwk("ec", None)] }).to_string();
    let (url, answered) = https_idp(dir.path(), body).await;
    let token = ec.token("ES256", Some("ec"), &claims());

    // The Mozilla roots do not know the test CA: the TLS handshake fails.
    let t = https_app(&url, None).await;
    assert_eq!(t.stats(&token).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answered.load(Ordering::SeqCst), 0);
    drop(t);

    let t = https_app(&url, Some(dir.path().join("ca.pem"))).await;
    assert_eq!(t.stats(&token).await.status, StatusCode::OK);
    assert_eq!(answered.load(Ordering::SeqCst), 1);
}
