//! Classification of Kafka errors into "try again later" and "will fail
//! again" ([`PublishError::Retryable`] / [`PublishError::Permanent`]).
//!
//! The default is *retryable*: a permanent error wrongly classified as
//! retryable only costs the relay its retry budget before the event is
//! parked, whereas a transient error wrongly classified as permanent parks
//! an event that would have gone through a second later.

use order_core::ports::PublishError;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// How a failed publish should be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (broker unreachable, timeouts, queue full, leader
    /// election, not enough in-sync replicas, …): another attempt may succeed.
    Retryable,
    /// The same message will fail again (too large, invalid or unknown
    /// topic, not authorized, …): park it at once.
    Permanent,
}

/// Classifies a librdkafka error code (local `-1xx` codes and broker codes).
pub fn classify_code(code: RDKafkaErrorCode) -> ErrorClass {
    use RDKafkaErrorCode as C;
    match code {
        // The message itself is unacceptable.
        C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::MessageBatchTooLarge
        | C::InvalidRecord
        | C::InvalidTimestamp
        | C::BadMessage
        | C::BadCompression
        | C::UnsupportedCompressionType
        | C::UnsupportedForMessageFormat
        | C::KeySerialization
        | C::ValueSerialization
        | C::InvalidArgument
        | C::InvalidType
        | C::PolicyViolation
        // The destination does not exist or cannot exist (auto-creation off).
        | C::InvalidTopic
        | C::UnknownTopic
        | C::UnknownTopicOrPartition
        | C::UnknownPartition
        | C::UnknownTopicId
        | C::TopicDeletionDisabled
        // Not allowed, and retrying will not change that.
        | C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::Authentication
        | C::SecurityDisabled
        // Misconfiguration of the client or request.
        | C::InvalidRequiredAcks
        | C::InvalidRequest
        | C::InvalidConfig
        | C::UnsupportedVersion
        | C::UnsupportedFeature
        | C::NotImplemented
        | C::NotConfigured => ErrorClass::Permanent,

        // Explicitly transient; listed for documentation, the default below
        // treats everything else the same way.
        C::QueueFull
        | C::MessageTimedOut
        | C::RequestTimedOut
        | C::OperationTimedOut
        | C::TimedOutQueue
        | C::BrokerTransportFailure
        | C::AllBrokersDown
        | C::Resolve
        | C::NetworkException
        | C::BrokerNotAvailable
        | C::LeaderNotAvailable
        | C::NotLeaderForPartition
        | C::PreferredLeaderNotAvailable
        | C::ReplicaNotAvailable
        | C::NotEnoughReplicas
        | C::NotEnoughReplicasAfterAppend
        | C::ISRInsufficient
        | C::KafkaStorageError
        | C::FencedLeaderEpoch
        | C::UnknownLeaderEpoch
        | C::ThrottlingQuotaExceeded
        | C::Retry
        | C::PurgeQueue
        | C::PurgeInflight
        // Idempotence state lost: the bus rebuilds its producer (a new
        // producer id) and the next attempt starts a fresh sequence.
        | C::Fatal
        | C::OutOfOrderSequenceNumber
        | C::UnknownProducerId
        | C::InvalidProducerEpoch
        | C::ProducerFenced => ErrorClass::Retryable,

        _ => ErrorClass::Retryable,
    }
}

/// Classifies a client error (an enqueue failure or a delivery report).
pub fn classify_error(err: &KafkaError) -> ErrorClass {
    match err {
        KafkaError::ClientConfig(..) | KafkaError::Nul(_) => ErrorClass::Permanent,
        other => other
            .rdkafka_error_code()
            .map_or(ErrorClass::Retryable, classify_code),
    }
}

/// The [`PublishError`] for a failed publish of one message.
pub fn publish_error(err: &KafkaError) -> PublishError {
    to_publish_error(classify_error(err), format!("kafka: {err}"))
}

pub(crate) fn to_publish_error(class: ErrorClass, reason: String) -> PublishError {
    match class {
        ErrorClass::Retryable => PublishError::Retryable(reason),
        ErrorClass::Permanent => PublishError::Permanent(reason),
    }
}
