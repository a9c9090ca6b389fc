//! [`KafkaBus`] itself: the clients it holds, how it is created, and its
//! [`EventBus`] implementation, which hands each operation to the module
//! that does it (`producer`, `admin`, `consumer`, `published`).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use order_core::ports::{BusError, BusMessage, EventBus, PublishError, Subscription};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, Producer};

use crate::access::{self, Access};
use crate::{consumer, published, unavailable, KafkaConfig};

/// The Kafka event bus. Cheap to share behind an `Arc`.
pub struct KafkaBus {
    pub(crate) cfg: KafkaConfig,
    /// Replaced when librdkafka reports a fatal (idempotence) error, after
    /// which the old instance can no longer produce.
    pub(crate) producer: Mutex<FutureProducer>,
    pub(crate) admin: AdminClient<DefaultClientContext>,
    /// Topics known to exist (created or found by this bus).
    pub(crate) known_topics: Mutex<HashSet<String>>,
    /// `min.insync.replicas` of created topics, as the admin request takes it.
    pub(crate) min_insync_replicas: Option<String>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("brokers", &self.cfg.brokers)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// Creates the producer and the admin client. Does not wait for the
    /// broker (a broker that is down must not stop the service from
    /// starting: the relay keeps events in the outbox meanwhile); only an
    /// invalid configuration fails.
    pub async fn connect(cfg: KafkaConfig) -> Result<KafkaBus, BusError> {
        let producer: FutureProducer = cfg
            .producer_config()
            .create()
            .map_err(|e| unavailable("cannot create producer", e))?;
        let admin: AdminClient<DefaultClientContext> = cfg
            .admin_config()
            .create()
            .map_err(|e| unavailable("cannot create admin client", e))?;
        let min_insync_replicas = cfg.min_insync_replicas.map(|n| n.to_string());
        Ok(KafkaBus {
            cfg,
            producer: Mutex::new(producer),
            admin,
            known_topics: Mutex::new(HashSet::new()),
            min_insync_replicas,
        })
    }

    pub fn config(&self) -> &KafkaConfig {
        &self.cfg
    }

    /// Whether the cluster lets this configuration in (see [`Access`]):
    /// asks for metadata for up to `timeout`, returning early on an answer
    /// or on a refused login or TLS handshake.
    pub async fn probe_access(&self, timeout: Duration) -> Access {
        let cfg = self.cfg.clone();
        match tokio::task::spawn_blocking(move || access::probe(&cfg, timeout)).await {
            Ok(a) => a,
            Err(join) => Access::NoAnswer(format!("the probe was aborted: {join}")),
        }
    }
}

#[async_trait]
impl EventBus for KafkaBus {
    #[tracing::instrument(level = "debug", skip_all, fields(messages = messages.len()))]
    async fn publish(&self, messages: &[BusMessage]) -> Vec<Result<(), PublishError>> {
        self.publish_all(messages).await
    }

    async fn check(&self, timeout: Duration) -> Result<String, BusError> {
        let producer = self.producer();
        let brokers = self.cfg.brokers.clone();
        let lookup = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, timeout).map(|md| {
                format!(
                    "kafka at {brokers}: {} broker(s), {} topic(s) (answered by {})",
                    md.brokers().len(),
                    md.topics().len(),
                    md.orig_broker_name()
                )
            })
        });
        // The blocking call honours `timeout`; the margin only guards
        // against it not doing so.
        match tokio::time::timeout(timeout + Duration::from_secs(1), lookup).await {
            Ok(Ok(Ok(desc))) => Ok(desc),
            Ok(Ok(Err(e))) => Err(unavailable(
                &format!("metadata request to {} failed", self.cfg.brokers),
                e,
            )),
            Ok(Err(join)) => Err(unavailable("metadata request aborted", join)),
            Err(_) => Err(BusError::Unavailable(format!(
                "kafka: {} did not answer a metadata request within {timeout:?}",
                self.cfg.brokers
            ))),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(messages = messages.len()))]
    async fn find_published(&self, messages: &[BusMessage]) -> Result<HashSet<String>, BusError> {
        let cfg = self.cfg.clone();
        let messages = messages.to_vec();
        let limit = cfg.find_published_budget + cfg.publish_timeout * 4 + Duration::from_secs(1);
        let scan = tokio::task::spawn_blocking(move || published::find_published(&cfg, &messages));
        match tokio::time::timeout(limit, scan).await {
            Ok(Ok(r)) => r,
            Ok(Err(join)) => Err(unavailable("looking for published messages aborted", join)),
            Err(_) => Err(BusError::Unavailable(format!(
                "kafka: {} did not answer while looking for published messages",
                self.cfg.brokers
            ))),
        }
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>, BusError> {
        self.ensure_known(&[topic], self.cfg.admin_timeout).await?;
        let sub = consumer::KafkaSubscription::new(&self.cfg, group, topic)?;
        Ok(Box::new(sub))
    }
}
