//! The operator's fault switch: it wraps whatever bus is configured and
//! makes every publish fail on demand, so the DLQ flow can be shown (and
//! tested) without taking a broker down.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::ports::{BusError, BusMessage, EventBus, PublishError, Subscription};

/// Operator/test switch that makes every publish attempt fail on whatever bus
/// it wraps, so the DLQ flow can be shown without taking a broker down.
#[derive(Debug, Default)]
pub struct FaultSwitch {
    down: AtomicBool,
}

impl FaultSwitch {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }
}

/// Wraps a bus with a [`FaultSwitch`]. Consumption is not affected.
pub struct SwitchableBus {
    inner: Arc<dyn EventBus>,
    switch: Arc<FaultSwitch>,
}

impl SwitchableBus {
    pub fn new(inner: Arc<dyn EventBus>, switch: Arc<FaultSwitch>) -> Self {
        Self { inner, switch }
    }
}

const SWITCHED_OFF: &str = "bus switched off by operator (POST /api/test/bus/up restores it)";

#[async_trait]
impl EventBus for SwitchableBus {
    async fn publish(&self, messages: &[BusMessage]) -> Vec<Result<(), PublishError>> {
        if self.switch.is_down() {
            return messages
                .iter()
                .map(|_| Err(PublishError::Retryable(SWITCHED_OFF.into())))
                .collect();
        }
        self.inner.publish(messages).await
    }

    async fn check(&self, timeout: Duration) -> Result<String, BusError> {
        if self.switch.is_down() {
            return Err(BusError::Unavailable(SWITCHED_OFF.into()));
        }
        self.inner.check(timeout).await
    }

    async fn find_published(&self, messages: &[BusMessage]) -> Result<HashSet<String>, BusError> {
        if self.switch.is_down() {
            return Err(BusError::Unavailable(SWITCHED_OFF.into()));
        }
        self.inner.find_published(messages).await
    }

    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>, BusError> {
        self.inner.subscribe(group, topic).await
    }
}
