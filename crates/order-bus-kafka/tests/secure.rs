//! Kafka over TLS, and SASL, against a real broker: the test starts its
//! own Tansu behind a TLS listener with a certificate signed by a CA it
//! makes (see `order_core::testkit::pki::SecureTansu`). The bus publishes
//! and consumes through TLS; a certificate the client does not trust and a
//! SASL login the broker refuses (SCRAM-SHA-512 for a user it does not
//! know: to the client the same failed exchange as a wrong password) are
//! reported at once by the start-up probe instead of being retried
//! silently. A successful SASL login cannot be shown with Tansu 0.6 (it
//! offers no PLAIN, and its SCRAM users can only be created by a client
//! already logged in).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use order_bus_kafka::{Access, KafkaBus, KafkaConfig};
use order_core::ports::EventBus;
use order_core::testkit::fixtures::{message, poll_n, unique_name};
use order_core::testkit::pki::SecureTansu;

/// A bus configuration for `tansu` with `properties` (TLS trusting CA `ca`).
fn config(tansu: &SecureTansu, ca: &str, properties: &[(&str, &str)]) -> KafkaConfig {
    let mut cfg = common::test_config(&tansu.brokers);
    cfg.admin_timeout = Duration::from_secs(10);
    let mut extra = BTreeMap::new();
    extra.insert(
        "ssl.ca.location".to_owned(),
        tansu.pki.ca(ca).to_string_lossy().into_owned(),
    );
    for (k, v) in properties {
        extra.insert((*k).to_owned(), (*v).to_owned());
    }
    cfg.extra = extra;
    cfg
}

fn start(authentication: bool) -> (SecureTansu, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    (SecureTansu::start(dir.path(), authentication), dir)
}

const TLS: &[(&str, &str)] = &[("security.protocol", "ssl")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_publishes_and_consumes_over_tls() {
    let (tansu, _dir) = start(false);
    let bus = KafkaBus::connect(config(&tansu, "good", TLS))
        .await
        .expect("connect");
    let access = bus.probe_access(Duration::from_secs(20)).await;
    assert_eq!(access, Access::Granted, "{}", tansu.log());
    bus.ensure_topics()
        .await
        .expect("create the topics over TLS");

    let topic = bus.config().events_topic.clone();
    let batch = vec![message(&topic, "a", 0), message(&topic, "a", 1)];
    for r in bus.publish(&batch).await {
        r.expect("publish over TLS");
    }
    let mut sub = bus
        .subscribe(&unique_name("secure-group"), &topic)
        .await
        .expect("subscribe over TLS");
    let got = poll_n(&mut sub, 2).await;
    let payloads: Vec<&[u8]> = got.iter().map(|d| d.payload.as_slice()).collect();
    assert_eq!(
        payloads,
        vec![batch[0].payload.as_slice(), batch[1].payload.as_slice()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_reported_at_once_not_retried() {
    let (tansu, _dir) = start(true);
    let bus = KafkaBus::connect(config(
        &tansu,
        "good",
        &[
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "nobody"),
            ("sasl.password", "wrong-password"),
        ],
    ))
    .await
    .expect("connect (the clients are created without contacting the broker)");
    let started = Instant::now();
    let access = bus.probe_access(Duration::from_secs(20)).await;
    let took = started.elapsed();
    match &access {
        Access::Refused(why) => assert!(
            why.to_ascii_lowercase().contains("auth"),
            "the reason names the authentication: {why}"
        ),
        other => panic!("expected Refused, got {other:?}"),
    }
    assert!(
        took < Duration::from_secs(10),
        "refused after {took:?}: reported, not waited out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_an_untrusted_ca_is_refused() {
    let (tansu, _dir) = start(false);
    let bus = KafkaBus::connect(config(&tansu, "other", TLS))
        .await
        .expect("connect");
    match bus.probe_access(Duration::from_secs(20)).await {
        Access::Refused(why) => assert!(
            why.to_ascii_lowercase().contains("ssl") || why.contains("certificate"),
            "the reason names TLS: {why}"
        ),
        other => panic!("expected Refused, got {other:?}"),
    }
}
