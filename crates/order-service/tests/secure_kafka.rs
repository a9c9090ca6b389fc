//! The service binary against a Kafka cluster that speaks TLS (a Tansu of
//! the test's own behind a TLS listener, see
//! `order_core::testkit::pki::SecureTansu`): configured with
//! ORDER_KAFKA_SECURITY_PROTOCOL & co., it publishes an order's events
//! (zstd-compressed) and projects them back through the broker; a SASL
//! login the broker refuses stops start-up with a message that says so
//! (and never the password) instead of hanging.

mod support;

use std::process::Child;
use std::time::{Duration, Instant};

use order_core::testkit::pki::SecureTansu;
use serde_json::Value;
use support::process::{free_port, read_log, service_command, wait_until_ready};
use support::{call, order_body};

const ADMIN_KEY: &str = "secure-kafka-admin-key-0123456789";

/// The binary on the embedded database with Kafka at `tansu`, plus `env`.
fn spawn(tansu: &SecureTansu, dir: &std::path::Path, env: &[(&str, &str)]) -> (Child, u16) {
    let port = free_port();
    let mut cmd = service_command(port, &dir.join("service.log"));
    cmd.env(
        "ORDER_DATABASE_URL",
        format!("sqlite://{}", dir.join("orders.db").display()),
    )
    .env("ORDER_KAFKA_BROKERS", &tansu.brokers)
    .env("ORDER_KAFKA_MAX_POLL_INTERVAL_MS", "6000")
    .env("ORDER_KAFKA_SSL_CA_LOCATION", tansu.pki.ca("good"))
    .env("ORDER_ADMIN_API_KEY", ADMIN_KEY)
    .env("ORDER_LOG", "info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    (cmd.spawn().expect("spawn the service"), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_publishes_and_projects_through_a_tls_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tansu = SecureTansu::start(dir.path(), false);
    let (child, port) = spawn(
        &tansu,
        dir.path(),
        &[
            ("ORDER_KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("ORDER_KAFKA_COMPRESSION", "zstd"),
            // Any librdkafka property passes through.
            ("ORDER_KAFKA_PROPERTY_SOCKET_KEEPALIVE_ENABLE", "true"),
        ],
    );
    let mut child = Some(child);
    let base = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let log = || read_log(&dir.path().join("service.log"));
    wait_until_ready(
        &mut child,
        60,
        Duration::from_millis(200),
        || async {
            call(base, "GET", "/actuator/health/readiness", None, &[])
                .await
                .is_ok_and(|r| r.status == 200)
        },
        log,
    )
    .await;

    let auth = [("X-API-Key", ADMIN_KEY)];
    let created = call(
        base,
        "POST",
        "/api/orders",
        Some(&order_body("cust-tls", "rest-tls")),
        &auth,
    )
    .await
    .expect("create");
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().expect("id").to_owned();
    // The projector reads the event back from the broker over TLS.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = call(base, "GET", &format!("/api/orders/{id}"), None, &auth).await;
        if got.as_ref().is_ok_and(|r| r.status == 200) {
            let body: Value = got.expect("reply").json();
            assert_eq!(body["customerId"], "cust-tls");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the order was not projected through the TLS cluster; log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = call(base, "GET", "/api/dlq/stats", None, &auth)
        .await
        .expect("stats");
    assert_eq!(
        stats.json()["pendingCount"],
        0,
        "nothing parked: {}",
        stats.text
    );
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tansu = SecureTansu::start(dir.path(), true);
    let started = Instant::now();
    let (mut child, _port) = spawn(
        &tansu,
        dir.path(),
        &[
            ("ORDER_KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("ORDER_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("ORDER_KAFKA_SASL_USERNAME", "nobody"),
            ("ORDER_KAFKA_SASL_PASSWORD", "wrong-password-never-logged"),
        ],
    );
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!(
                "still running after 30 s with a refused login; log:\n{}",
                read_log(&dir.path().join("service.log"))
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = read_log(&dir.path().join("service.log"));
    assert!(!status.success(), "{log}");
    assert!(log.contains("refused the connection"), "{log}");
    assert!(log.to_ascii_lowercase().contains("auth"), "{log}");
    assert!(!log.contains("wrong-password-never-logged"), "{log}");
}
