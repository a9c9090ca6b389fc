//! The one-shot commands that open the adapters without serving:
//! `migrate` and `rebuild-read-model`. They share the adapter choice with
//! the server so an operator migrates exactly what the service will open.

use std::sync::Arc;
use std::time::Duration;

use order_core::app::{Metrics, Projector, RebuildReport};
use order_core::ports::EventBus;

use super::backends::{open_backends, open_bus, open_embedded_bus};
use super::workers::projector_config;
use super::StartupError;
use crate::config::Config;

/// `order-service migrate`: creates or upgrades the schemas of the
/// configured database, read model and bus, then returns a summary.
pub async fn migrate(config: &Config) -> Result<String, StartupError> {
    let _backends = open_backends(config).await?;
    let bus = match &config.kafka {
        Some(_) => {
            open_bus(config).await?;
            "Kafka topics ensured".to_owned()
        }
        None => {
            open_embedded_bus(config)?;
            format!("bus {}", config.bus_path.display())
        }
    };
    let read_model = match &config.mongo {
        Some(m) => format!("MongoDB {}.{}", m.database, m.collection),
        None => config.read_model_path.display().to_string(),
    };
    Ok(format!(
        "migrations applied: database {:?}, read model {read_model}, {bus}",
        config.database
    ))
}

/// `order-service rebuild-read-model`: rebuilds the read model from the
/// event store without starting the server or the workers.
pub async fn rebuild_read_model(config: &Config) -> Result<RebuildReport, StartupError> {
    let backends = open_backends(config).await?;
    let projector = Projector::new(
        backends.read_model,
        backends.event_store,
        Arc::new(OfflineBus),
        projector_config(config, Duration::ZERO),
        Arc::new(Metrics::default()),
    );
    projector
        .rebuild()
        .await
        .map_err(|e| StartupError::Other(format!("rebuild failed: {e}")))
}

/// `order-service relay-partitions [--set N]`: the relay partition layout
/// of the configured database, after changing it to `set` partitions.
pub async fn relay_partitions(config: &Config, set: Option<u32>) -> Result<String, StartupError> {
    let backends = open_backends(config).await?;
    let leases = backends.leases;
    let failed = |e: order_core::ports::StoreError| StartupError::Other(e.to_string());
    leases
        .layout(config.relay_partition_count())
        .await
        .map_err(failed)?;
    if let Some(n) = set {
        leases.repartition(n).await.map_err(failed)?;
    }
    let mut out = String::from("partition  buckets      epoch  holder (lease)\n");
    let rows = leases.partitions().await.map_err(failed)?;
    let count = u32::try_from(rows.len()).unwrap_or(u32::MAX);
    for p in &rows {
        let b = order_core::ports::partition_buckets(p.partition, count);
        let holder = match (p.holder.as_str(), p.live) {
            ("", true) => "(none; claimable once the old leases ran out)".to_owned(),
            ("", false) => "(free)".to_owned(),
            (h, true) => h.to_owned(),
            (h, false) => format!("{h} (lapsed)"),
        };
        out.push_str(&format!(
            "{:>9}  {:>4}..{:<5}  {:>5}  {holder}\n",
            p.partition, b.start, b.end, p.epoch
        ));
    }
    Ok(out)
}

/// A bus for offline tools: a rebuild reads the event store only.
struct OfflineBus;

#[async_trait::async_trait]
impl EventBus for OfflineBus {
    async fn publish(
        &self,
        messages: &[order_core::ports::BusMessage],
    ) -> Vec<Result<(), order_core::ports::PublishError>> {
        messages
            .iter()
            .map(|_| {
                Err(order_core::ports::PublishError::Permanent(
                    "no bus in offline mode".into(),
                ))
            })
            .collect()
    }

    async fn check(&self, _: Duration) -> Result<String, order_core::ports::BusError> {
        Err(order_core::ports::BusError::Unavailable(
            "no bus in offline mode".into(),
        ))
    }

    async fn find_published(
        &self,
        _: &[order_core::ports::BusMessage],
    ) -> Result<std::collections::HashSet<String>, order_core::ports::BusError> {
        Err(order_core::ports::BusError::Unavailable(
            "no bus in offline mode".into(),
        ))
    }

    async fn subscribe(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Box<dyn order_core::ports::Subscription>, order_core::ports::BusError> {
        Err(order_core::ports::BusError::Unavailable(
            "no bus in offline mode".into(),
        ))
    }
}
