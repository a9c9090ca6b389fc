//! The embedded bus: a durable message log in its own SQLite file, for
//! running the whole pipeline without Kafka. A publish is acknowledged
//! once its transaction committed (WAL, `synchronous=NORMAL`: it survives a
//! process crash). Consumer groups keep their committed offset in a table;
//! delivery is at least once, like Kafka. There is one partition (0) per
//! topic; a message's offset is its row id, increasing within a topic.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use order_core::domain::now;
use order_core::ports::{
    BusError, BusMessage, Delivery, EventBus, PublishError, StoreError, Subscription,
};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::Notify;

use crate::db::{corrupt, db_err, parse_ts, ts, Db, Migration};

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "initial",
    sql: include_str!("../migrations/bus/0001_initial.sql"),
}];

/// A waiting poll re-reads the log at least this often, so a message
/// published by another process on the same file is seen too.
const CROSS_PROCESS_RECHECK: Duration = Duration::from_millis(250);

/// The embedded, durable event bus.
#[derive(Clone, Debug)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Arc<Db>,
    published: Notify,
}

impl EmbeddedBus {
    /// Opens (creating directories and file) and migrates the bus log at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Ok(Self {
            inner: Arc::new(Inner {
                db: Db::open(path.as_ref(), MIGRATIONS)?,
                published: Notify::new(),
            }),
        })
    }

    /// Creates or upgrades the schema at `path` and closes it again.
    pub fn migrate(path: impl AsRef<Path>) -> Result<(), StoreError> {
        Self::open(path).map(drop)
    }

    pub fn path(&self) -> &Path {
        self.inner.db.path()
    }
}

fn unavailable(e: StoreError) -> BusError {
    BusError::Unavailable(e.to_string())
}

#[async_trait]
impl EventBus for EmbeddedBus {
    #[tracing::instrument(level = "debug", skip_all, fields(messages = messages.len()))]
    async fn publish(&self, messages: &[BusMessage]) -> Vec<Result<(), PublishError>> {
        if messages.is_empty() {
            return Vec::new();
        }
        let count = messages.len();
        let rows = messages
            .iter()
            .map(|m| {
                serde_json::to_string(&m.headers)
                    .map(|h| (m.clone(), h))
                    .map_err(|e| corrupt(format!("headers cannot be encoded: {e}")))
            })
            .collect::<Result<Vec<_>, StoreError>>();
        let outcome = match rows {
            Ok(rows) => {
                self.inner
                    .db
                    .write_async(move |conn| {
                        let tx = conn
                            .transaction_with_behavior(TransactionBehavior::Immediate)
                            .map_err(db_err)?;
                        {
                            let at = ts(&now());
                            let mut stmt = tx
                                .prepare_cached(
                                    "INSERT INTO bus_messages (topic, key, payload, headers, \
                                     published_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                                )
                                .map_err(db_err)?;
                            for (m, headers) in &rows {
                                stmt.execute(params![m.topic, m.key, m.payload, headers, at])
                                    .map_err(db_err)?;
                            }
                        }
                        tx.commit().map_err(db_err)
                    })
                    .await
            }
            Err(e) => Err(e),
        };
        // All or nothing: one transaction, so a failure never leaves a later
        // message of a key delivered after an earlier one failed.
        match outcome {
            Ok(()) => {
                self.inner.published.notify_waiters();
                vec![Ok(()); count]
            }
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, "embedded bus publish failed");
                vec![Err(PublishError::Retryable(e)); count]
            }
            Err(StoreError::Corrupt(e)) => {
                tracing::warn!(error = %e, "embedded bus publish failed");
                vec![Err(PublishError::Permanent(e)); count]
            }
        }
    }

    async fn check(&self, timeout: Duration) -> Result<String, BusError> {
        let ping = self.inner.db.read_async(|conn| {
            conn.prepare_cached("SELECT COUNT(*) FROM bus_offsets")
                .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                .map(drop)
                .map_err(db_err)
        });
        match tokio::time::timeout(timeout, ping).await {
            Ok(Ok(())) => Ok(format!("embedded bus at {}", self.path().display())),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(BusError::Unavailable(format!(
                "embedded bus at {} did not answer within {timeout:?}",
                self.path().display()
            ))),
        }
    }

    async fn find_published(&self, messages: &[BusMessage]) -> Result<HashSet<String>, BusError> {
        // Per topic: the ids asked for and the earliest publish time to look
        // back to ("" = the beginning). A message without an id cannot be
        // recognised and counts as not found.
        let mut wanted: HashMap<String, (HashSet<String>, String)> = HashMap::new();
        // The latest publish time to look at: the latest `latest_send` when
        // every message has one ("" = up to the end).
        let until = messages
            .iter()
            .map(|m| m.latest_send().map(|t| ts(&t)))
            .collect::<Option<Vec<String>>>()
            .and_then(|times| times.into_iter().max())
            .unwrap_or_default();
        for m in messages {
            let Some(id) = m.event_id() else { continue };
            let since = m.earliest_send().map(|t| ts(&t)).unwrap_or_default();
            let entry = wanted
                .entry(m.topic.clone())
                .or_insert_with(|| (HashSet::new(), since.clone()));
            entry.0.insert(id.to_owned());
            entry.1 = entry.1.clone().min(since);
        }
        self.inner
            .db
            .read_async(move |conn| {
                // Newest first along the (topic, offset) index, stopping at
                // the first message older than the window.
                let last = if until.is_empty() {
                    Some(i64::MAX)
                } else {
                    last_offset_until(conn, &until)?
                };
                let Some(last) = last else {
                    // Nothing was published by then.
                    return Ok(HashSet::new());
                };
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT headers, published_at FROM bus_messages WHERE topic = ?1 \
                         AND \"offset\" <= ?2 ORDER BY \"offset\" DESC",
                    )
                    .map_err(db_err)?;
                let mut found = HashSet::new();
                for (topic, (ids, since)) in wanted {
                    let mut rows = stmt.query(params![topic, last]).map_err(db_err)?;
                    let mut hits = 0;
                    while let Some(r) = rows.next().map_err(db_err)? {
                        let published_at: String = r.get(1).map_err(db_err)?;
                        if published_at < since || hits == ids.len() {
                            break;
                        }
                        let headers: String = r.get(0).map_err(db_err)?;
                        let headers: Vec<(String, String)> = serde_json::from_str(&headers)
                            .map_err(|e| corrupt(format!("bus headers unreadable: {e}")))?;
                        for (k, v) in headers {
                            if (k == "ce_id" || k == "eventId") && ids.contains(&v) {
                                hits += usize::from(found.insert(v));
                            }
                        }
                    }
                }
                Ok(found)
            })
            .await
            .map_err(unavailable)
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn subscribe(&self, group: &str, topic: &str) -> Result<Box<dyn Subscription>, BusError> {
        let (g, t) = (group.to_owned(), topic.to_owned());
        let committed = self
            .inner
            .db
            .read_async(move |conn| {
                conn.prepare_cached(
                    "SELECT \"offset\" FROM bus_offsets WHERE group_id = ?1 AND topic = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![g, t], |r| r.get::<_, i64>(0))
                        .optional()
                })
                .map_err(db_err)
            })
            .await
            .map_err(unavailable)?;
        Ok(Box::new(EmbeddedSubscription {
            inner: self.inner.clone(),
            group: group.to_owned(),
            topic: topic.to_owned(),
            position: committed.unwrap_or(0),
        }))
    }
}

/// A consumer-group member. `position` is the last offset returned (or
/// committed when it joined); polls continue after it.
struct EmbeddedSubscription {
    inner: Arc<Inner>,
    group: String,
    topic: String,
    position: i64,
}

impl EmbeddedSubscription {
    async fn read(&self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let topic = self.topic.clone();
        let after = self.position;
        let limit = i64::try_from(max.max(1)).unwrap_or(i64::MAX);
        self.inner
            .db
            .read_async(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT \"offset\", key, payload, headers, published_at FROM bus_messages \
                         WHERE topic = ?1 AND \"offset\" > ?2 ORDER BY \"offset\" LIMIT ?3",
                    )
                    .map_err(db_err)?;
                let mut rows = stmt.query(params![topic, after, limit]).map_err(db_err)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(db_err)? {
                    let offset: i64 = r.get(0).map_err(db_err)?;
                    let headers: String = r.get(3).map_err(db_err)?;
                    out.push(Delivery {
                        topic: topic.clone(),
                        partition: 0,
                        offset,
                        key: Some(r.get(1).map_err(db_err)?),
                        payload: r.get(2).map_err(db_err)?,
                        headers: serde_json::from_str(&headers).map_err(|e| {
                            corrupt(format!("message {offset}: unreadable headers: {e}"))
                        })?,
                        timestamp: parse_ts(&r.get::<_, String>(4).map_err(db_err)?).ok(),
                    });
                }
                Ok(out)
            })
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before reading, so a publish between the read and
            // the wait still wakes us.
            let published = self.inner.published.notified();
            tokio::pin!(published);
            published.as_mut().enable();
            let batch = self.read(max).await?;
            if let Some(last) = batch.last() {
                self.position = last.offset;
                return Ok(batch);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let recheck = (now + CROSS_PROCESS_RECHECK).min(deadline);
            tokio::select! {
                _ = &mut published => {}
                _ = tokio::time::sleep_until(recheck) => {}
            }
        }
    }

    async fn commit(&mut self, delivery: &Delivery) -> Result<(), BusError> {
        if delivery.topic != self.topic {
            return Err(BusError::Unavailable(format!(
                "cannot commit an offset of topic {} on a subscription to {}",
                delivery.topic, self.topic
            )));
        }
        let (group, topic, offset) = (self.group.clone(), self.topic.clone(), delivery.offset);
        self.inner
            .db
            .write_async(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO bus_offsets (group_id, topic, \"offset\", updated_at) \
                     VALUES (?1, ?2, ?3, ?4) ON CONFLICT (group_id, topic) DO UPDATE \
                     SET \"offset\" = MAX(\"offset\", excluded.\"offset\"), \
                     updated_at = excluded.updated_at",
                )
                .and_then(|mut s| s.execute(params![group, topic, offset, ts(&now())]))
                .map(drop)
                .map_err(db_err)
            })
            .await
            .map_err(unavailable)
    }

    async fn lag(&mut self) -> Result<u64, BusError> {
        let (topic, after) = (self.topic.clone(), self.position);
        self.inner
            .db
            .read_async(move |conn| {
                conn.prepare_cached(
                    "SELECT COUNT(*) FROM bus_messages WHERE topic = ?1 AND \"offset\" > ?2",
                )
                .and_then(|mut s| s.query_row(params![topic, after], |r| r.get::<_, i64>(0)))
                .map(|n| u64::try_from(n).unwrap_or(0))
                .map_err(db_err)
            })
            .await
            .map_err(unavailable)
    }
}

/// The last offset published at or before `until` (`None`: none was). One
/// writer appends with the time of its append, so offsets and publish
/// times grow together: a binary search over the offsets, a few index
/// probes instead of reading every message published since.
fn last_offset_until(conn: &Connection, until: &str) -> Result<Option<i64>, StoreError> {
    let (first, last): (Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT MIN(\"offset\"), MAX(\"offset\") FROM bus_messages",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err)?;
    let (Some(mut lo), Some(mut hi)) = (first, last) else {
        return Ok(None);
    };
    let mut at = conn
        .prepare_cached(
            "SELECT published_at FROM bus_messages WHERE \"offset\" >= ?1 \
             ORDER BY \"offset\" LIMIT 1",
        )
        .map_err(db_err)?;
    let mut published = |offset: i64| -> Result<String, StoreError> {
        at.query_row(params![offset], |r| r.get(0)).map_err(db_err)
    };
    if published(lo)?.as_str() > until {
        return Ok(None);
    }
    // The message at (or just after) `lo` was published by `until`.
    while lo < hi {
        let mid = lo + (hi - lo + 1) / 2;
        if published(mid)?.as_str() <= until {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(Some(lo))
}
