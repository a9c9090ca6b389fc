//! Keeping a claim or a lease alive while the work it covers runs.

use std::future::Future;
use std::time::Duration;

/// Runs `work`, calling `renew` every `period` until it finishes; returns
/// what `work` returns. A replay or a job step that outlasts its claim or
/// lease (slow bus probes, a broker timing out) keeps it this way.
pub async fn while_renewing<T, R, Fut>(
    work: impl Future<Output = T>,
    period: Duration,
    mut renew: R,
) -> T
where
    R: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tokio::time::sleep(period) => renew().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn renews_every_period_until_the_work_is_done() {
        let renewals = AtomicU32::new(0);
        let out = while_renewing(
            async {
                tokio::time::sleep(Duration::from_secs(35)).await;
                7
            },
            Duration::from_secs(10),
            || async {
                renewals.fetch_add(1, Ordering::SeqCst);
            },
        )
        .await;
        assert_eq!(out, 7);
        assert_eq!(renewals.load(Ordering::SeqCst), 3);
    }
}
