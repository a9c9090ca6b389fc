//! The error classification, as a pure function of librdkafka error codes.

use order_bus_kafka::{classify_code, classify_error, publish_error, ErrorClass, RDKafkaErrorCode};
use order_core::ports::PublishError;
use rdkafka::error::KafkaError;

#[test]
fn transient_codes_are_retryable() {
    use RDKafkaErrorCode as C;
    for code in [
        C::QueueFull,
        C::MessageTimedOut,
        C::RequestTimedOut,
        C::OperationTimedOut,
        C::BrokerTransportFailure,
        C::AllBrokersDown,
        C::Resolve,
        C::NetworkException,
        C::NotEnoughReplicas,
        C::NotEnoughReplicasAfterAppend,
        C::LeaderNotAvailable,
        C::NotLeaderForPartition,
        C::BrokerNotAvailable,
        C::KafkaStorageError,
        C::ThrottlingQuotaExceeded,
        C::Fatal,
        C::OutOfOrderSequenceNumber,
        C::PurgeQueue,
        C::PurgeInflight,
        // Not listed anywhere: unknown errors are retried, not parked at once.
        C::Unknown,
        C::StaleControllerEpoch,
    ] {
        assert_eq!(classify_code(code), ErrorClass::Retryable, "{code:?}");
    }
}

#[test]
fn codes_that_fail_again_are_permanent() {
    use RDKafkaErrorCode as C;
    for code in [
        C::MessageSizeTooLarge,
        C::InvalidMessageSize,
        C::MessageBatchTooLarge,
        C::InvalidRecord,
        C::InvalidTopic,
        C::UnknownTopic,
        C::UnknownTopicOrPartition,
        C::UnknownPartition,
        C::TopicAuthorizationFailed,
        C::ClusterAuthorizationFailed,
        C::SaslAuthenticationFailed,
        C::Authentication,
        C::InvalidRequiredAcks,
        C::UnsupportedVersion,
        C::PolicyViolation,
    ] {
        assert_eq!(classify_code(code), ErrorClass::Permanent, "{code:?}");
    }
}

#[test]
fn client_errors_map_to_publish_errors() {
    let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
    assert_eq!(classify_error(&too_large), ErrorClass::Permanent);
    assert!(matches!(publish_error(&too_large), PublishError::Permanent(m) if m.contains("kafka")));

    let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
    assert!(matches!(
        publish_error(&timed_out),
        PublishError::Retryable(_)
    ));

    // An error without a code (e.g. a canceled delivery) is worth a retry.
    assert_eq!(classify_error(&KafkaError::Canceled), ErrorClass::Retryable);
}
