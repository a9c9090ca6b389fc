//! The event bus settings: Kafka brokers (present only when
//! `ORDER_KAFKA_BROKERS` is set; otherwise the embedded bus runs), and the
//! topic and consumer-group names both buses use. The checks that two names
//! must differ live here because a clash would silently mix two streams.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::layers::{Parser, Properties};
use super::ConfigError;

/// Kafka settings; present when `ORDER_KAFKA_BROKERS` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSettings {
    pub brokers: String,
    /// Partitions of the events topic when the service creates it.
    pub partitions: i32,
    /// Partitions of the DLQ topic when the service creates it.
    pub dlq_partitions: i32,
    /// Replication factor of the topics the service creates; `None`: the
    /// broker's `default.replication.factor`.
    pub replication_factor: Option<i32>,
    /// `min.insync.replicas` of the topics the service creates; `None`: the
    /// broker's default.
    pub min_insync_replicas: Option<u32>,
    /// The producer's `compression.type`.
    pub compression: String,
    /// How long one publish attempt may take before it counts as failed.
    pub publish_timeout: Duration,
    /// librdkafka `max.poll.interval.ms` of the consumers.
    pub max_poll_interval: Duration,
    /// librdkafka properties for every client (producer, consumers, admin),
    /// applied last: the security settings and the pass-through ones.
    pub properties: KafkaProperties,
}

/// librdkafka properties by name. `Debug` masks the values of secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(pub BTreeMap<String, String>);

impl KafkaProperties {
    /// Whether the value of property `name` is a secret (never logged).
    pub fn is_secret(name: &str) -> bool {
        ["password", "secret", ".pem", "jaas", "token"]
            .iter()
            .any(|s| name.contains(s))
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if Self::is_secret(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

/// Topic and consumer-group names, checked against each other.
pub(super) struct Names {
    pub(super) topic_events: String,
    pub(super) topic_dlq: String,
    pub(super) topic_redelivery: String,
    pub(super) projector_group: String,
    pub(super) dlq_recorder_group: String,
}

/// Compression codecs built into the Kafka client (`compression.type`).
const COMPRESSIONS: &[&str] = &["none", "gzip", "snappy", "lz4", "zstd"];
/// `security.protocol` values.
const SECURITY_PROTOCOLS: &[&str] = &["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
/// SASL mechanisms the built-in client supports (GSSAPI and OIDC token
/// retrieval are not built in).
const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// The dedicated security settings and the librdkafka properties they set.
const SECURITY_KEYS: &[(&str, &str)] = &[
    ("kafka_security_protocol", "security.protocol"),
    ("kafka_sasl_mechanism", "sasl.mechanism"),
    ("kafka_sasl_username", "sasl.username"),
    ("kafka_sasl_password", "sasl.password"),
    ("kafka_ssl_ca_location", "ssl.ca.location"),
];

fn one_of(p: &Parser<'_>, key: &str, allowed: &[&str]) -> Result<Option<String>, ConfigError> {
    let Some(raw) = p.get(key) else {
        return Ok(None);
    };
    let v = raw.value.trim();
    match allowed.iter().find(|a| a.eq_ignore_ascii_case(v)) {
        Some(a) => Ok(Some((*a).to_owned())),
        None => Err(ConfigError::new(format!(
            "{}: invalid value {:?}: expected one of {}",
            raw.source,
            raw.value,
            allowed.join(", ")
        ))),
    }
}

/// The security settings, checked against each other, as properties.
fn security(p: &Parser<'_>) -> Result<BTreeMap<String, String>, ConfigError> {
    let protocol = one_of(p, "kafka_security_protocol", SECURITY_PROTOCOLS)?;
    let mechanism = one_of(p, "kafka_sasl_mechanism", SASL_MECHANISMS)?;
    let sasl = protocol.as_deref().is_some_and(|pr| pr.starts_with("sasl"));
    if sasl && mechanism.is_none() {
        return Err(ConfigError::new(
            "ORDER_KAFKA_SECURITY_PROTOCOL is SASL: set ORDER_KAFKA_SASL_MECHANISM \
             (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
        ));
    }
    let has = |key: &str| p.get(key).is_some();
    if !sasl && (mechanism.is_some() || has("kafka_sasl_username") || has("kafka_sasl_password")) {
        return Err(ConfigError::new(
            "ORDER_KAFKA_SASL_* is set but ORDER_KAFKA_SECURITY_PROTOCOL is not sasl_ssl or \
             sasl_plaintext",
        ));
    }
    if sasl && (!has("kafka_sasl_username") || !has("kafka_sasl_password")) {
        return Err(ConfigError::new(
            "ORDER_KAFKA_SECURITY_PROTOCOL is SASL: set ORDER_KAFKA_SASL_USERNAME and \
             ORDER_KAFKA_SASL_PASSWORD",
        ));
    }
    if let Some(raw) = p.get("kafka_ssl_ca_location") {
        if !std::path::Path::new(raw.value.trim()).is_file() {
            return Err(ConfigError::new(format!(
                "{}: no such file {:?}",
                raw.source, raw.value
            )));
        }
    }
    let mut out = BTreeMap::new();
    for (key, property) in SECURITY_KEYS {
        let value = match *key {
            "kafka_security_protocol" => protocol.clone(),
            "kafka_sasl_mechanism" => mechanism.clone(),
            _ => p.get(key).map(|r| r.value.trim().to_owned()),
        };
        if let Some(v) = value {
            out.insert((*property).to_owned(), v);
        }
    }
    Ok(out)
}

pub(super) fn parse_kafka(
    p: &Parser<'_>,
    passed: &Properties,
) -> Result<Option<KafkaSettings>, ConfigError> {
    let Some(raw) = p.get("kafka_brokers") else {
        let stray = SECURITY_KEYS
            .iter()
            .filter_map(|(k, _)| p.get(k))
            .map(|r| r.source.clone())
            .chain(passed.values().map(|r| r.source.clone()))
            .next();
        return match stray {
            Some(source) => Err(ConfigError::new(format!(
                "{source} is set but ORDER_KAFKA_BROKERS is not (the embedded bus has no \
                 client settings)"
            ))),
            None => Ok(None),
        };
    };
    let brokers = raw.value.trim().to_owned();
    let valid = brokers.split(',').all(|b| {
        b.trim()
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    });
    if !valid {
        return Err(ConfigError::new(format!(
            "{}: invalid value {:?}: expected host:port[,host:port…]",
            raw.source, raw.value
        )));
    }
    let mut properties = security(p)?;
    for (name, raw) in passed {
        properties.insert(name.clone(), raw.value.clone());
    }
    // Every property is checked by the Kafka client library itself: an
    // unknown name or a bad value fails here, naming where it came from.
    if let Err((name, why)) = order_bus_kafka::check_properties(&properties) {
        let source = passed.get(&name).map_or_else(
            || {
                SECURITY_KEYS
                    .iter()
                    .find(|(_, prop)| *prop == name)
                    .map_or_else(|| name.clone(), |(k, _)| super::layers::env_name(k))
            },
            |r| r.source.clone(),
        );
        return Err(ConfigError::new(format!(
            "{source}: the Kafka client refuses `{name}`: {why}"
        )));
    }
    let replication_factor = match p.get("kafka_replication_factor") {
        None => None,
        Some(_) => Some(p.int("kafka_replication_factor", 1, 32)? as i32),
    };
    let min_insync_replicas = match p.get("kafka_min_insync_replicas") {
        None => None,
        Some(_) => Some(p.int("kafka_min_insync_replicas", 1, 32)? as u32),
    };
    if let (Some(rf), Some(min)) = (replication_factor, min_insync_replicas) {
        if i64::from(min) > i64::from(rf) {
            return Err(ConfigError::new(format!(
                "ORDER_KAFKA_MIN_INSYNC_REPLICAS ({min}) exceeds \
                 ORDER_KAFKA_REPLICATION_FACTOR ({rf}): every publish would fail"
            )));
        }
    }
    Ok(Some(KafkaSettings {
        brokers,
        partitions: p.int("kafka_partitions", 1, 10_000)? as i32,
        dlq_partitions: p.int("kafka_dlq_partitions", 1, 10_000)? as i32,
        replication_factor,
        min_insync_replicas,
        compression: one_of(p, "kafka_compression", COMPRESSIONS)?
            .unwrap_or_else(|| "none".to_owned()),
        publish_timeout: Duration::from_millis(p.int("publish_timeout_ms", 100, 600_000)?),
        max_poll_interval: Duration::from_millis(p.int(
            "kafka_max_poll_interval_ms",
            1_000,
            86_400_000,
        )?),
        properties: KafkaProperties(properties),
    }))
}

pub(super) fn parse_names(p: &Parser<'_>) -> Result<Names, ConfigError> {
    let topic_events = p.topic("topic_events")?;
    let topic_dlq = match p.get("topic_dlq") {
        Some(_) => p.topic("topic_dlq")?,
        // Named after the events topic: `<events>-dlq`, or Spring Kafka's
        // `<events>.DLT`.
        None => match one_of(p, "dlq_topic_naming", &["dlq", "spring"])?.as_deref() {
            Some("spring") => format!("{topic_events}.DLT"),
            _ => format!("{topic_events}-dlq"),
        },
    };
    if topic_dlq.len() > 249 {
        return Err(ConfigError::new(format!(
            "the DLQ topic name {topic_dlq:?} is longer than 249 characters: set ORDER_TOPIC_DLQ"
        )));
    }
    if topic_events == topic_dlq {
        return Err(ConfigError::new(format!(
            "ORDER_TOPIC_EVENTS and ORDER_TOPIC_DLQ must differ (both are {topic_events:?})"
        )));
    }
    let topic_redelivery = match p.get("topic_redelivery") {
        Some(_) => p.topic("topic_redelivery")?,
        None => format!("{topic_events}-redelivery"),
    };
    if topic_redelivery.len() > 249 {
        return Err(ConfigError::new(format!(
            "the redelivery topic name {topic_redelivery:?} is longer than 249 characters: set \
             ORDER_TOPIC_REDELIVERY"
        )));
    }
    if topic_redelivery == topic_events || topic_redelivery == topic_dlq {
        return Err(ConfigError::new(format!(
            "ORDER_TOPIC_REDELIVERY must differ from the events and DLQ topics (it is \
             {topic_redelivery:?})"
        )));
    }
    let projector_group = p.name("projector_group")?;
    let dlq_recorder_group = p.name("dlq_recorder_group")?;
    if projector_group == dlq_recorder_group {
        return Err(ConfigError::new(format!(
            "ORDER_PROJECTOR_GROUP and ORDER_DLQ_RECORDER_GROUP must differ (both are {projector_group:?})"
        )));
    }
    Ok(Names {
        topic_events,
        topic_dlq,
        topic_redelivery,
        projector_group,
        dlq_recorder_group,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{env, err};
    use super::super::Config;
    use super::*;

    #[test]
    fn kafka_brokers_select_kafka_and_turn_test_endpoints_off_by_default() {
        let c = Config::from_env(&env(&[("ORDER_KAFKA_BROKERS", "k1:9092,k2:9093")])).unwrap();
        let k = c.kafka.expect("kafka settings");
        assert_eq!(k.brokers, "k1:9092,k2:9093");
        assert_eq!(k.partitions, 3);
        assert_eq!(k.publish_timeout, Duration::from_millis(5000));
        assert!(!c.test_endpoints);
        let c = Config::from_env(&env(&[
            ("ORDER_KAFKA_BROKERS", "k1:9092"),
            ("ORDER_TEST_ENDPOINTS", "true"),
        ]))
        .unwrap();
        assert!(c.test_endpoints, "an explicit setting wins");
    }

    #[test]
    fn malformed_kafka_brokers_are_rejected() {
        for bad in ["localhost", "host:port", ":9092", "a:1,b"] {
            let e = err(&[("ORDER_KAFKA_BROKERS", bad)]);
            assert!(e.starts_with("ORDER_KAFKA_BROKERS"), "{bad}: {e}");
        }
        let e = err(&[
            ("ORDER_KAFKA_BROKERS", "k:9092"),
            ("ORDER_KAFKA_PARTITIONS", "0"),
        ]);
        assert!(e.starts_with("ORDER_KAFKA_PARTITIONS"), "{e}");
    }

    const BROKERS: (&str, &str) = ("ORDER_KAFKA_BROKERS", "k1:9092");

    #[test]
    fn client_properties_come_from_the_environment_and_the_file_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("order.toml");
        std::fs::write(
            &file,
            "[kafka_properties]\n\"socket.keepalive.enable\" = true\n\"client.rack\" = \"a\"\n",
        )
        .unwrap();
        let path = file.to_string_lossy().into_owned();
        let c = Config::from_env(&env(&[
            BROKERS,
            ("ORDER_CONFIG_FILE", &path),
            ("ORDER_KAFKA_PROPERTY_CLIENT_RACK", "b"),
            ("ORDER_KAFKA_PROPERTY_STATISTICS_INTERVAL_MS", "0"),
        ]))
        .unwrap();
        let props = c.kafka.expect("kafka").properties.0;
        assert_eq!(
            props.get("socket.keepalive.enable").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            props.get("client.rack").map(String::as_str),
            Some("b"),
            "env wins"
        );
        assert_eq!(
            props.get("statistics.interval.ms").map(String::as_str),
            Some("0")
        );

        let e = err(&[BROKERS, ("ORDER_KAFKA_PROPERTY_NO_SUCH_THING", "1")]);
        assert!(
            e.starts_with(
                "ORDER_KAFKA_PROPERTY_NO_SUCH_THING: the Kafka client refuses `no.such.thing`"
            ),
            "{e}"
        );
        let e = err(&[
            BROKERS,
            ("ORDER_KAFKA_PROPERTY_SOCKET_KEEPALIVE_ENABLE", "maybe"),
        ]);
        assert!(e.contains("socket.keepalive.enable"), "{e}");
        let e = err(&[("ORDER_KAFKA_PROPERTY_CLIENT_RACK", "b")]);
        assert!(e.contains("ORDER_KAFKA_BROKERS is not"), "{e}");
    }

    #[test]
    fn sasl_settings_must_be_complete_and_the_password_is_never_shown() {
        let c = Config::from_env(&env(&[
            BROKERS,
            ("ORDER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("ORDER_KAFKA_SASL_MECHANISM", "scram-sha-512"),
            ("ORDER_KAFKA_SASL_USERNAME", "orders"),
            ("ORDER_KAFKA_SASL_PASSWORD", "hunter2-secret"),
        ]))
        .unwrap();
        let k = c.kafka.as_ref().expect("kafka");
        let get = |n: &str| k.properties.0.get(n).map(String::as_str);
        assert_eq!(get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(get("sasl.password"), Some("hunter2-secret"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sasl.username"), "{shown}");

        for (bad, expect) in [
            (
                vec![("ORDER_KAFKA_SECURITY_PROTOCOL", "sasl_ssl")],
                "ORDER_KAFKA_SASL_MECHANISM",
            ),
            (
                vec![
                    ("ORDER_KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
                    ("ORDER_KAFKA_SASL_MECHANISM", "PLAIN"),
                ],
                "ORDER_KAFKA_SASL_USERNAME",
            ),
            (
                vec![("ORDER_KAFKA_SASL_MECHANISM", "PLAIN")],
                "is not sasl_ssl",
            ),
            (
                vec![("ORDER_KAFKA_SECURITY_PROTOCOL", "tls")],
                "ORDER_KAFKA_SECURITY_PROTOCOL",
            ),
            (
                vec![
                    ("ORDER_KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
                    ("ORDER_KAFKA_SASL_MECHANISM", "GSSAPI"),
                ],
                "ORDER_KAFKA_SASL_MECHANISM",
            ),
            (
                vec![("ORDER_KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem")],
                "no such file",
            ),
        ] {
            let mut pairs = vec![BROKERS];
            pairs.extend(bad);
            let e = err(&pairs);
            assert!(e.contains(expect), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn replication_and_compression_default_to_the_brokers_and_none() {
        let c = Config::from_env(&env(&[BROKERS])).unwrap();
        let k = c.kafka.expect("kafka");
        assert_eq!(k.replication_factor, None);
        assert_eq!(k.min_insync_replicas, None);
        assert_eq!(k.compression, "none");
        let c = Config::from_env(&env(&[
            BROKERS,
            ("ORDER_KAFKA_REPLICATION_FACTOR", "3"),
            ("ORDER_KAFKA_MIN_INSYNC_REPLICAS", "2"),
            ("ORDER_KAFKA_COMPRESSION", "ZSTD"),
        ]))
        .unwrap();
        let k = c.kafka.expect("kafka");
        assert_eq!(
            (k.replication_factor, k.min_insync_replicas),
            (Some(3), Some(2))
        );
        assert_eq!(k.compression, "zstd");
        let e = err(&[
            BROKERS,
            ("ORDER_KAFKA_REPLICATION_FACTOR", "1"),
            ("ORDER_KAFKA_MIN_INSYNC_REPLICAS", "2"),
        ]);
        assert!(e.contains("exceeds"), "{e}");
        let e = err(&[BROKERS, ("ORDER_KAFKA_COMPRESSION", "brotli")]);
        assert!(e.starts_with("ORDER_KAFKA_COMPRESSION"), "{e}");
    }

    #[test]
    fn the_dlq_topic_is_named_after_the_events_topic_in_either_style() {
        let c = Config::from_env(&env(&[("ORDER_TOPIC_EVENTS", "orders")])).unwrap();
        assert_eq!(c.topic_dlq, "orders-dlq");
        let c = Config::from_env(&env(&[
            ("ORDER_TOPIC_EVENTS", "orders"),
            ("ORDER_DLQ_TOPIC_NAMING", "spring"),
        ]))
        .unwrap();
        assert_eq!(c.topic_dlq, "orders.DLT");
        let c = Config::from_env(&env(&[
            ("ORDER_DLQ_TOPIC_NAMING", "spring"),
            ("ORDER_TOPIC_DLQ", "parked"),
        ]))
        .unwrap();
        assert_eq!(c.topic_dlq, "parked", "an explicit name wins");
        let e = err(&[("ORDER_DLQ_TOPIC_NAMING", "kafka")]);
        assert!(e.starts_with("ORDER_DLQ_TOPIC_NAMING"), "{e}");
    }

    #[test]
    fn an_invalid_topic_name_is_rejected() {
        let e = err(&[("ORDER_TOPIC_EVENTS", "order events!")]);
        assert!(e.starts_with("ORDER_TOPIC_EVENTS"), "{e}");
    }

    #[test]
    fn the_events_and_dlq_topics_must_differ() {
        let e = err(&[("ORDER_TOPIC_DLQ", "order-events")]);
        assert!(e.contains("must differ"), "{e}");
    }

    #[test]
    fn the_two_consumer_groups_must_differ() {
        let e = err(&[("ORDER_DLQ_RECORDER_GROUP", "order-projector")]);
        assert!(e.contains("must differ"), "{e}");
    }
}
