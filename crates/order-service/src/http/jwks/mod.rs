//! Signing keys fetched from an identity provider's JWKS URL
//! (`ORDER_JWT_JWKS_URL`) and kept in memory.
//!
//! * The set is a snapshot behind a lock held only to clone an `Arc`, so a
//!   request verifies its token without waiting for anything.
//! * A background task fetches it at start-up and every
//!   `ORDER_JWT_JWKS_REFRESH_SECS`; after a failure it tries again sooner
//!   (from `ORDER_JWT_JWKS_MIN_REFRESH_SECS`, doubling). A failed fetch
//!   keeps the keys held before: an identity provider's outage does not
//!   log everyone out.
//! * A token naming a key id the set lacks (the provider rotated its keys)
//!   fetches the set again and is checked once more. Such fetches happen at
//!   most once per `ORDER_JWT_JWKS_MIN_REFRESH_SECS`, and concurrent ones
//!   are one fetch (the others wait for it), so a storm of made-up key ids
//!   costs the provider one request.
//! * The service starts without the keys if the provider does not answer:
//!   tokens are refused (401) until a fetch succeeds, API keys work all
//!   along, and readiness is not affected (taking every instance out of
//!   service because the provider is away would turn its outage into ours).
//!
//! [`keys`] reads a set and checks signatures; [`fetch`] is the HTTP(S) GET.

mod fetch;
pub mod keys;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use self::fetch::Fetcher;
pub use self::keys::{Alg, KeyCheck, KeySet};
use crate::config::JwksSettings;

/// The key set of one JWKS URL, and how it is kept fresh.
pub struct Jwks {
    settings: JwksSettings,
    fetcher: Fetcher,
    keys: RwLock<Arc<KeySet>>,
    /// Held while fetching: concurrent refreshes wait for the one running.
    fetching: Arc<tokio::sync::Mutex<FetchState>>,
    fetched_ok: AtomicU64,
    fetch_failed: AtomicU64,
}

#[derive(Default)]
struct FetchState {
    /// When the last fetch started or, once done, ended (successful or not).
    last: Option<Instant>,
    /// Failed fetches since the last successful one.
    failures: u32,
}

impl Jwks {
    pub fn new(settings: &JwksSettings) -> Result<Self, String> {
        Ok(Self {
            fetcher: Fetcher::new(&settings.url, settings.ca_file.as_deref())?,
            settings: settings.clone(),
            keys: RwLock::default(),
            fetching: Arc::default(),
            fetched_ok: AtomicU64::new(0),
            fetch_failed: AtomicU64::new(0),
        })
    }

    /// The keys as last fetched (empty before the first success).
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Fetches the set again unless a fetch started or ended less than
    /// `min_refresh` ago; a caller arriving while a fetch runs waits for
    /// that one instead of starting its own.
    pub async fn refresh(self: &Arc<Self>) {
        let mut state = self.fetching.clone().lock_owned().await;
        if state
            .last
            .is_some_and(|t| t.elapsed() < self.settings.min_refresh)
        {
            return;
        }
        state.last = Some(Instant::now());
        // A task of its own, holding the lock: a request whose client goes
        // away does not cancel the fetch that the requests queued behind it
        // wait for.
        let jwks = self.clone();
        let fetch = tokio::spawn(async move {
            match jwks.fetch().await {
                Ok(()) => state.failures = 0,
                Err(e) => {
                    state.failures = state.failures.saturating_add(1);
                    let held = jwks.keys().len();
                    tracing::warn!(
                        url = %jwks.settings.url,
                        error = %e,
                        keys_held = held,
                        "JWKS fetch failed; {}",
                        if held == 0 {
                            "bearer tokens are refused until a fetch succeeds"
                        } else {
                            "the keys fetched before stay in use"
                        }
                    );
                }
            }
            state.last = Some(Instant::now());
        });
        let _ = fetch.await;
    }

    async fn fetch(&self) -> Result<(), String> {
        let outcome = async {
            let body = self.fetcher.get().await?;
            KeySet::parse(&body)
        }
        .await;
        let (set, skipped) = match outcome {
            Ok(parsed) => parsed,
            Err(e) => {
                self.fetch_failed.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        self.fetched_ok.fetch_add(1, Ordering::Relaxed);
        if !skipped.is_empty() {
            tracing::debug!(?skipped, "JWKS keys not used");
        }
        let old = self.keys();
        if *old != set {
            tracing::info!(
                url = %self.settings.url,
                kids = ?set.kids(),
                before = ?old.kids(),
                skipped = skipped.len(),
                "JWKS keys loaded"
            );
            if set.is_empty() {
                tracing::warn!(url = %self.settings.url, "the JWKS has no usable signing key");
            }
        }
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
        Ok(())
    }

    /// How long the background task waits before its next fetch.
    async fn next_delay(&self) -> Duration {
        let failures = self.fetching.lock().await.failures;
        if failures == 0 {
            return self.settings.refresh;
        }
        let backoff = self
            .settings
            .min_refresh
            .saturating_mul(1 << (failures - 1).min(16));
        backoff.min(self.settings.refresh)
    }

    /// Fetches now and then periodically, for as long as the set is in use
    /// (the task holds it only while fetching).
    pub fn spawn_refresher(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut delay = Duration::ZERO;
            loop {
                tokio::time::sleep(delay).await;
                let Some(jwks) = weak.upgrade() else {
                    return;
                };
                jwks.refresh().await;
                delay = jwks.next_delay().await;
            }
        });
    }

    /// `orders_jwks_fetches_total{outcome}` in Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP orders_jwks_fetches_total Fetches of the JWKS (ORDER_JWT_JWKS_URL) by outcome.\n\
             # TYPE orders_jwks_fetches_total counter\n\
             orders_jwks_fetches_total{{outcome=\"ok\"}} {}\n\
             orders_jwks_fetches_total{{outcome=\"error\"}} {}",
            self.fetched_ok.load(Ordering::Relaxed),
            self.fetch_failed.load(Ordering::Relaxed),
        );
    }
}
