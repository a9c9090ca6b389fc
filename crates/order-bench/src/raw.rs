//! The raw SQLite ceiling: what one create-order command writes (one event,
//! the order row, two item rows, one outbox row), inserted straight through
//! rusqlite with cached prepared statements, no HTTP and no service code.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, Transaction};
use uuid::Uuid;

use crate::{Context, Result, TempDir};

/// Mirrors the shape of the service's tables for a create.
pub const SCHEMA: &str = "
CREATE TABLE event_store (
    position       INTEGER PRIMARY KEY,
    event_id       TEXT    NOT NULL UNIQUE,
    aggregate_id   TEXT    NOT NULL,
    aggregate_type TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    event_data     TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    occurred_on    TEXT    NOT NULL,
    correlation_id TEXT,
    UNIQUE (aggregate_id, version)
);
CREATE TABLE orders (
    id            TEXT    PRIMARY KEY,
    customer_id   TEXT    NOT NULL,
    restaurant_id TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    total_amount  TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE TABLE order_items (
    order_id     TEXT    NOT NULL,
    line_no      INTEGER NOT NULL,
    menu_item_id TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    price        TEXT    NOT NULL,
    quantity     INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
CREATE TABLE outbox (
    id           INTEGER PRIMARY KEY,
    event_id     TEXT    NOT NULL,
    aggregate_id TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0
);
";

const INSERT_EVENT: &str = "INSERT INTO event_store (event_id, aggregate_id, aggregate_type, \
    event_type, event_data, version, schema_version, occurred_on, correlation_id) \
    VALUES (?1, ?2, 'Order', 'OrderCreated', ?3, 1, 2, ?4, ?5)";
const INSERT_ORDER: &str = "INSERT INTO orders (id, customer_id, restaurant_id, status, \
    total_amount, version, created_at, updated_at) VALUES (?1, ?2, ?3, 'PENDING', '27.99', 1, ?4, ?4)";
const INSERT_ITEM: &str = "INSERT INTO order_items (order_id, line_no, menu_item_id, name, \
    price, quantity) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const INSERT_OUTBOX: &str = "INSERT INTO outbox (event_id, aggregate_id, event_type, payload, \
    created_at) VALUES (?1, ?2, 'OrderCreated', ?3, ?4)";

/// One raw measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResult {
    /// Commands per transaction.
    pub batch: usize,
    pub commands: u64,
    pub seconds: f64,
    /// Bytes of one event's data JSON and of one outbox payload.
    pub event_data_bytes: usize,
    pub payload_bytes: usize,
}

impl RawResult {
    pub fn per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.commands as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Opens `path` the way the service's SQLite store is meant to: WAL,
/// synchronous=NORMAL.
pub fn open(path: &Path) -> Result<Connection> {
    let conn =
        Connection::open(path).with_context(|| format!("opening SQLite {}", path.display()))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .context("setting journal_mode=WAL")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(crate::Error::msg(format!(
            "SQLite refused WAL mode (got {mode})"
        )));
    }
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;")
        .context("setting SQLite pragmas")?;
    conn.execute_batch(SCHEMA).context("creating the schema")?;
    Ok(conn)
}

/// Inserts commands in transactions of `batch` for `length` into a fresh file.
pub fn measure(length: Duration, batch: usize) -> Result<RawResult> {
    let dir = TempDir::new("order-bench-raw")?;
    let mut conn = open(&dir.path().join("raw.db"))?;
    let batch = batch.max(1);
    let started = Instant::now();
    let mut n: u64 = 0;
    let mut sizes = (0, 0);
    while started.elapsed() < length {
        let tx = conn.transaction().context("beginning a transaction")?;
        for _ in 0..batch {
            sizes = write_command(&tx, n)?;
            n += 1;
        }
        tx.commit().context("committing")?;
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(conn);
    Ok(RawResult {
        batch,
        commands: n,
        seconds,
        event_data_bytes: sizes.0,
        payload_bytes: sizes.1,
    })
}

/// The event data JSON of a create, as the service's envelope carries it.
pub fn event_data(order_id: &str, n: u64) -> String {
    format!(
        concat!(
            r#"{{"orderId":"{}","customerId":"cust-{}","restaurantId":"rest-{}","items":["#,
            r#"{{"menuItemId":"m1","name":"Margherita","price":"12.50","quantity":2}},"#,
            r#"{{"menuItemId":"m2","name":"Cola","price":"2.99","quantity":1}}],"#,
            r#""totalAmount":"27.99"}}"#
        ),
        order_id,
        n % 1000,
        n % 50
    )
}

/// The full envelope JSON (the outbox payload / published message value).
pub fn envelope(event_id: &str, order_id: &str, at: &str, corr: &str, data: &str) -> String {
    format!(
        concat!(
            r#"{{"eventId":"{}","eventType":"OrderCreated","aggregateId":"{}","#,
            r#""aggregateType":"Order","version":1,"schemaVersion":2,"occurredOn":"{}","#,
            r#""correlationId":"{}","causationId":null,"data":{}}}"#
        ),
        event_id, order_id, at, corr, data
    )
}

/// Writes one create-order command; returns (event data bytes, payload bytes).
fn write_command(tx: &Transaction<'_>, n: u64) -> Result<(usize, usize)> {
    let order_id = Uuid::now_v7().to_string();
    let event_id = Uuid::now_v7().to_string();
    let corr = Uuid::new_v4().to_string();
    let at = rfc3339_micros(SystemTime::now());
    let data = event_data(&order_id, n);
    let payload = envelope(&event_id, &order_id, &at, &corr, &data);
    let customer = format!("cust-{}", n % 1000);
    let restaurant = format!("rest-{}", n % 50);

    tx.prepare_cached(INSERT_EVENT)
        .and_then(|mut s| s.execute(params![event_id, order_id, data, at, corr]))
        .context("inserting the event")?;
    tx.prepare_cached(INSERT_ORDER)
        .and_then(|mut s| s.execute(params![order_id, customer, restaurant, at]))
        .context("inserting the order")?;
    {
        let mut items = tx
            .prepare_cached(INSERT_ITEM)
            .context("preparing the item insert")?;
        items
            .execute(params![order_id, 1, "m1", "Margherita", "12.50", 2])
            .context("inserting item 1")?;
        items
            .execute(params![order_id, 2, "m2", "Cola", "2.99", 1])
            .context("inserting item 2")?;
    }
    tx.prepare_cached(INSERT_OUTBOX)
        .and_then(|mut s| s.execute(params![event_id, order_id, payload, at]))
        .context("inserting the outbox row")?;
    Ok((data.len(), payload.len()))
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC).
pub fn rfc3339_micros(t: SystemTime) -> String {
    let micros = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let t = UNIX_EPOCH + Duration::from_micros(1_709_210_096_123_456);
        assert_eq!(rfc3339_micros(t), "2024-02-29T12:34:56.123456Z");
        assert_eq!(rfc3339_micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn the_outbox_payload_is_a_valid_envelope_around_the_event_data() {
        let oid = Uuid::now_v7().to_string();
        let data = event_data(&oid, 7);
        let env = envelope("e", &oid, "2024-01-01T00:00:00.000000Z", "c", &data);
        let v: serde_json::Value = serde_json::from_str(&env).unwrap_or_default();
        assert_eq!(v["data"]["orderId"], oid.as_str());
        assert_eq!(v["data"]["totalAmount"], "27.99");
        assert_eq!(v["eventType"], "OrderCreated");
    }

    #[test]
    fn a_short_raw_run_writes_every_row_of_each_command() {
        let r = measure(Duration::from_millis(50), 8);
        let r = r.map_err(|e| e.to_string());
        assert!(
            r.as_ref()
                .is_ok_and(|r| r.commands > 0 && r.commands % 8 == 0),
            "{r:?}"
        );
    }

    #[test]
    fn the_raw_schema_rejects_a_second_event_at_the_same_version() {
        let dir = TempDir::new("order-bench-test");
        let dir = dir.map_err(|e| e.to_string());
        let Ok(dir) = dir else { panic!("{dir:?}") };
        let Ok(mut conn) = open(&dir.path().join("t.db")) else {
            panic!("open")
        };
        let Ok(tx) = conn.transaction() else {
            panic!("tx")
        };
        assert!(write_command(&tx, 1).is_ok());
        let dup = tx.execute(
            "INSERT INTO event_store (event_id, aggregate_id, aggregate_type, event_type, \
             event_data, version, schema_version, occurred_on) \
             SELECT 'other', aggregate_id, aggregate_type, event_type, event_data, version, \
             schema_version, occurred_on FROM event_store",
            [],
        );
        assert!(dup.is_err());
        let counts: Vec<i64> = ["event_store", "orders", "order_items", "outbox"]
            .iter()
            .map(|t| {
                tx.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                    .unwrap_or(-1)
            })
            .collect();
        assert_eq!(counts, [1, 1, 2, 1]);
    }
}
