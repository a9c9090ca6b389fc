//! The event bus settings: Kafka brokers (present only when
//! `ORDER_KAFKA_BROKERS` is set; otherwise the embedded bus runs), and the
//! topic and consumer-group names both buses use. The checks that two names
//! must differ live here because a clash would silently mix two streams.

use std::time::Duration;

use super::layers::Parser;
use super::ConfigError;

/// Kafka settings; present when `ORDER_KAFKA_BROKERS` is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSettings {
    pub brokers: String,
    /// Partitions of the events topic when the service creates it.
    pub partitions: i32,
    /// Partitions of the DLQ topic when the service creates it.
    pub dlq_partitions: i32,
    /// How long one publish attempt may take before it counts as failed.
    pub publish_timeout: Duration,
    /// librdkafka `max.poll.interval.ms` of the consumers.
    pub max_poll_interval: Duration,
}

/// Topic and consumer-group names, checked against each other.
pub(super) struct Names {
    pub(super) topic_events: String,
    pub(super) topic_dlq: String,
    pub(super) projector_group: String,
    pub(super) dlq_recorder_group: String,
}

pub(super) fn parse_kafka(p: &Parser<'_>) -> Result<Option<KafkaSettings>, ConfigError> {
    Ok(match p.get("kafka_brokers") {
        None => None,
        Some(raw) => {
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
            Some(KafkaSettings {
                brokers,
                partitions: p.int("kafka_partitions", 1, 10_000)? as i32,
                dlq_partitions: p.int("kafka_dlq_partitions", 1, 10_000)? as i32,
                publish_timeout: Duration::from_millis(p.int(
                    "publish_timeout_ms",
                    100,
                    600_000,
                )?),
                max_poll_interval: Duration::from_millis(p.int(
                    "kafka_max_poll_interval_ms",
                    1_000,
                    86_400_000,
                )?),
            })
        }
    })
}

pub(super) fn parse_names(p: &Parser<'_>) -> Result<Names, ConfigError> {
    let topic_events = p.topic("topic_events")?;
    let topic_dlq = p.topic("topic_dlq")?;
    if topic_events == topic_dlq {
        return Err(ConfigError::new(format!(
            "ORDER_TOPIC_EVENTS and ORDER_TOPIC_DLQ must differ (both are {topic_events:?})"
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
