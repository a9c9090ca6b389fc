//! Publishing with a bounded retry policy: only the failed messages are
//! retried, a permanent error is not, and a message whose earlier attempt
//! may have landed is looked for on the bus before it is sent again.

use std::collections::HashSet;
use std::time::Duration;

use crate::app::metrics::Metrics;
use crate::ports::{BusMessage, EventBus, PublishError};

/// Bounded exponential backoff: `max_attempts` tries, waiting `backoff`,
/// `2 * backoff`, `4 * backoff`, … between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Duration::from_millis(1000),
        }
    }
}

impl RetryPolicy {
    /// Wait before attempt `attempt + 1` (attempts count from 1).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.backoff.saturating_mul(factor)
    }
}

/// How a message reached the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Sent by this call and acknowledged.
    Now,
    /// Found on the bus from an earlier attempt whose outcome was unknown;
    /// not sent again.
    Earlier,
}

/// Per message: how it reached the bus, or the last error.
pub type SendResult = Result<Sent, PublishError>;

/// Publishing under a retry policy, counted in `metrics`.
///
/// Every method returns, per message, how it reached the bus or the last
/// error. Only the failed messages are retried; by the [`EventBus`] contract
/// they are a per-key suffix, so order per key holds. A permanent error is
/// not retried, and neither is anything after it with the same key. A
/// retryable failure may still have been appended (a timed out request the
/// broker answers later), so before such a message is sent again the bus is
/// asked whether it already has it ([`EventBus::find_published`]); while it
/// cannot say, the message is not sent again: at most one copy per attempt
/// that could have landed.
#[derive(Clone, Copy)]
pub struct Publisher<'a> {
    pub bus: &'a dyn EventBus,
    pub policy: RetryPolicy,
    pub metrics: &'a Metrics,
}

impl Publisher<'_> {
    /// Sends `messages`, retrying what failed.
    pub async fn send(&self, messages: &[BusMessage]) -> Vec<SendResult> {
        self.send_while(messages, false, &|| true).await
    }

    /// [`send`](Self::send) for messages an earlier attempt may already have
    /// put on the bus (the replay of a parked publish failure): the bus is
    /// asked before the first attempt too.
    pub async fn resend(&self, messages: &[BusMessage]) -> Vec<SendResult> {
        self.send_while(messages, true, &|| true).await
    }

    /// [`send`](Self::send), or [`resend`](Self::resend) when `maybe_sent`,
    /// that sends a retry only while `may_retry()` says so: the relay stops
    /// retrying once its partition leases would not outlast another
    /// attempt; what was not delivered then keeps its last error.
    pub async fn send_while(
        &self,
        messages: &[BusMessage],
        maybe_sent: bool,
        may_retry: &(dyn Fn() -> bool + Sync),
    ) -> Vec<SendResult> {
        send(self, messages, maybe_sent, may_retry).await
    }

    /// [`send`](Self::send) for messages already looked for on the bus
    /// (`found`: the event ids [`EventBus::find_published`] found): those
    /// are not sent again, the others are sent.
    pub async fn send_unless_found(
        &self,
        messages: &[BusMessage],
        found: &HashSet<String>,
    ) -> Vec<SendResult> {
        let is_found = |m: &BusMessage| m.event_id().is_some_and(|id| found.contains(id));
        let rest: Vec<BusMessage> = messages.iter().filter(|m| !is_found(m)).cloned().collect();
        let mut sent = self.send(&rest).await.into_iter();
        messages
            .iter()
            .map(|m| {
                if is_found(m) {
                    Metrics::inc(&self.metrics.publish_found_earlier);
                    Ok(Sent::Earlier)
                } else {
                    sent.next().unwrap_or_else(|| {
                        Err(PublishError::Retryable("no result from bus".into()))
                    })
                }
            })
            .collect()
    }
}

async fn send(
    p: &Publisher<'_>,
    messages: &[BusMessage],
    maybe_sent: bool,
    may_retry: &(dyn Fn() -> bool + Sync),
) -> Vec<SendResult> {
    let (bus, policy, metrics) = (p.bus, p.policy, p.metrics);
    let mut results: Vec<SendResult> = vec![Ok(Sent::Now); messages.len()];
    // Messages an earlier attempt may have delivered.
    let mut unsure = vec![maybe_sent; messages.len()];
    let mut todo: Vec<usize> = (0..messages.len()).collect();
    let mut attempt = 1;
    loop {
        // Keys whose earlier attempt cannot be verified now: not sent this round.
        let mut held: HashSet<&str> = HashSet::new();
        let probe: Vec<usize> = todo.iter().copied().filter(|&i| unsure[i]).collect();
        if !probe.is_empty() {
            let asked: Vec<BusMessage> = probe.iter().map(|&i| messages[i].clone()).collect();
            match bus.find_published(&asked).await {
                Ok(found) => {
                    for &i in &probe {
                        unsure[i] = false;
                        if messages[i].event_id().is_some_and(|id| found.contains(id)) {
                            results[i] = Ok(Sent::Earlier);
                            Metrics::inc(&metrics.publish_found_earlier);
                        }
                    }
                    todo.retain(|&i| results[i] != Ok(Sent::Earlier));
                }
                Err(e) => {
                    for &i in &probe {
                        held.insert(messages[i].key.as_str());
                        results[i] = Err(PublishError::Retryable(format!(
                            "not sent again: an earlier attempt may have delivered it \
                             and the bus cannot tell ({e})"
                        )));
                    }
                }
            }
        }

        let (send_now, mut retry): (Vec<usize>, Vec<usize>) = todo
            .iter()
            .partition(|&&i| !held.contains(messages[i].key.as_str()));
        for &i in &retry {
            if results[i].is_ok() {
                results[i] = Err(PublishError::Retryable(
                    "not sent: an earlier event of this key is unverified".into(),
                ));
            }
        }
        let batch: Vec<BusMessage> = send_now.iter().map(|&i| messages[i].clone()).collect();
        Metrics::add(&metrics.publish_attempts, batch.len() as u64);
        let outcome = if batch.is_empty() {
            Vec::new()
        } else {
            bus.publish(&batch).await
        };
        let mut dead_keys: HashSet<&str> = HashSet::new();
        for (j, &i) in send_now.iter().enumerate() {
            let r = outcome
                .get(j)
                .cloned()
                .unwrap_or_else(|| Err(PublishError::Retryable("no result from bus".into())));
            let key = messages[i].key.as_str();
            match r {
                Ok(()) if !dead_keys.contains(key) => results[i] = Ok(Sent::Now),
                Ok(()) => {
                    // A later message of a key that already failed permanently
                    // must not overtake it; it is parked behind it.
                    results[i] = Err(PublishError::Permanent(
                        "an earlier event of this key failed".into(),
                    ));
                }
                Err(e) => {
                    Metrics::inc(&metrics.publish_failures);
                    let permanent = matches!(e, PublishError::Permanent(_));
                    if permanent || dead_keys.contains(key) {
                        dead_keys.insert(key);
                    } else {
                        unsure[i] = true;
                        retry.push(i);
                    }
                    results[i] = Err(e);
                }
            }
        }
        // A retryable failure behind a permanent one of the same key must not be retried alone.
        retry.retain(|&i| !dead_keys.contains(messages[i].key.as_str()));
        retry.sort_unstable();
        if retry.is_empty() || attempt >= policy.max_attempts {
            return results;
        }
        tracing::warn!(
            attempt,
            max_attempts = policy.max_attempts,
            failed = retry.len(),
            "publish failed; retrying after backoff"
        );
        tokio::time::sleep(policy.delay_after(attempt)).await;
        if !may_retry() {
            return results;
        }
        attempt += 1;
        todo = retry;
    }
}
