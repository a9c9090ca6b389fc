//! The raw MySQL/MariaDB ceiling: transactions of one `event_store` insert
//! plus one `orders` insert (the column shapes of the service's migration),
//! from many concurrent connections, straight through sqlx: no HTTP, no
//! service code, no outbox. The batched variant writes `batch` commands per
//! transaction with multi-row inserts, as the service's group commit does.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{AssertSqlSafe, Connection, Executor};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::raw::{event_data, rfc3339_micros};
use crate::{Context, Error, Result};

/// The two tables as in crates/order-store-mysql/migrations/0001_initial.sql.
pub const SCHEMA: [&str; 2] = [
    "CREATE TABLE event_store (
    id             BIGINT       NOT NULL AUTO_INCREMENT,
    event_id       VARCHAR(36)  NOT NULL,
    aggregate_id   VARCHAR(64)  NOT NULL,
    aggregate_type VARCHAR(100) NOT NULL,
    event_type     VARCHAR(100) NOT NULL,
    event_data     MEDIUMTEXT   NOT NULL,
    version        INT          NOT NULL,
    schema_version INT          NOT NULL DEFAULT 1,
    occurred_on    DATETIME(6)  NOT NULL,
    correlation_id VARCHAR(255) NULL,
    causation_id   VARCHAR(255) NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_event_store_event_id (event_id),
    UNIQUE KEY uk_event_store_aggregate_version (aggregate_id, version)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
    "CREATE TABLE orders (
    id                  VARCHAR(64)  NOT NULL,
    customer_id         VARCHAR(255) NOT NULL,
    restaurant_id       VARCHAR(255) NOT NULL,
    total_amount        VARCHAR(40)  NOT NULL,
    status              VARCHAR(20)  NOT NULL,
    payment_id          VARCHAR(255) NULL,
    cancellation_reason TEXT         NULL,
    created_at          DATETIME(6)  NOT NULL,
    updated_at          DATETIME(6)  NOT NULL,
    version             INT          NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
];

const EVENT_COLUMNS: &str = "INSERT INTO event_store (event_id, aggregate_id, aggregate_type, \
    event_type, event_data, version, schema_version, occurred_on, correlation_id) VALUES ";
const EVENT_ROW: &str = "(?, ?, 'Order', 'OrderCreated', ?, 1, 2, ?, ?)";
const ORDER_COLUMNS: &str = "INSERT INTO orders (id, customer_id, restaurant_id, total_amount, \
    status, created_at, updated_at, version) VALUES ";
const ORDER_ROW: &str = "(?, ?, ?, '27.99', 'PENDING', ?, ?, 1)";

/// Longest a connect, a statement or one transaction may take.
const STEP_LIMIT: Duration = Duration::from_secs(10);

/// `INSERT … VALUES (row), (row), …` with `rows` rows.
pub fn multi_row_insert(columns: &str, row: &str, rows: usize) -> String {
    let mut sql = String::with_capacity(columns.len() + rows * (row.len() + 2));
    sql.push_str(columns);
    for i in 0..rows.max(1) {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql
}

/// A `DATETIME(6)` literal (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC).
pub fn datetime6(t: SystemTime) -> String {
    rfc3339_micros(t).replacen('T', " ", 1).replace('Z', "")
}

/// One raw MySQL measurement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MysqlRaw {
    pub clients: usize,
    /// Commands per transaction.
    pub batch: usize,
    pub transactions: u64,
    pub commands: u64,
    pub seconds: f64,
    pub errors: u64,
    pub error_samples: Vec<String>,
}

impl MysqlRaw {
    pub fn commands_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.commands as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn transactions_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.transactions as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn merge(&mut self, other: MysqlRaw) {
        self.transactions += other.transactions;
        self.commands += other.commands;
        self.errors += other.errors;
        for e in other.error_samples {
            note_error(&mut self.error_samples, e);
        }
    }
}

fn note_error(samples: &mut Vec<String>, e: String) {
    if samples.len() < 3 && !samples.contains(&e) {
        samples.push(e);
    }
}

/// One variant to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub clients: usize,
    pub batch: usize,
}

fn options(url: &str) -> Result<MySqlConnectOptions> {
    MySqlConnectOptions::from_str(url)
        .map(|o| o.statement_cache_capacity(64))
        .with_context(|| format!("bad MySQL URL {url:?}"))
}

async fn connect(opts: &MySqlConnectOptions) -> Result<MySqlConnection> {
    tokio::time::timeout(STEP_LIMIT, MySqlConnection::connect_with(opts))
        .await
        .map_err(|_| {
            Error::msg(format!(
                "connecting to MySQL: timed out after {STEP_LIMIT:?}"
            ))
        })?
        .context("connecting to MySQL")
}

async fn exec(conn: &mut MySqlConnection, sql: String) -> Result<()> {
    let what = sql.chars().take(60).collect::<String>();
    tokio::time::timeout(STEP_LIMIT, conn.execute(AssertSqlSafe(sql)))
        .await
        .map_err(|_| Error::msg(format!("{what}: timed out after {STEP_LIMIT:?}")))?
        .with_context(|| what)?;
    Ok(())
}

/// Drops `database` on the server (best effort is up to the caller).
pub async fn drop_database(server_url: &str, database: &str) -> Result<()> {
    let mut conn = connect(&options(server_url)?).await?;
    exec(&mut conn, format!("DROP DATABASE IF EXISTS `{database}`")).await?;
    let _ = conn.close().await;
    Ok(())
}

/// Creates `database` with the two tables, runs every variant for `length`
/// (tables emptied in between), and drops the database again (also when a
/// variant failed).
pub async fn measure(
    server_url: &str,
    database_url: &str,
    database: &str,
    length: Duration,
    variants: &[Variant],
) -> Result<Vec<MysqlRaw>> {
    let server = options(server_url)?;
    let mut admin = connect(&server).await?;
    exec(
        &mut admin,
        format!("CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
    )
    .await?;
    let outcome = measure_in(database_url, length, variants).await;
    let dropped = exec(&mut admin, format!("DROP DATABASE IF EXISTS `{database}`")).await;
    let _ = admin.close().await;
    let results = outcome?;
    dropped.context("dropping the raw database")?;
    Ok(results)
}

async fn measure_in(
    database_url: &str,
    length: Duration,
    variants: &[Variant],
) -> Result<Vec<MysqlRaw>> {
    let opts = options(database_url)?;
    let mut setup = connect(&opts).await?;
    for ddl in SCHEMA {
        exec(&mut setup, ddl.to_owned()).await?;
    }
    let mut results = Vec::new();
    for v in variants {
        exec(&mut setup, "TRUNCATE TABLE event_store".to_owned()).await?;
        exec(&mut setup, "TRUNCATE TABLE orders".to_owned()).await?;
        results.push(run_variant(&opts, *v, length).await?);
    }
    let _ = setup.close().await;
    Ok(results)
}

async fn run_variant(opts: &MySqlConnectOptions, v: Variant, length: Duration) -> Result<MysqlRaw> {
    let batch = v.batch.max(1);
    let clients = v.clients.max(1);
    let sql = Arc::new(Statements {
        events: Arc::from(multi_row_insert(EVENT_COLUMNS, EVENT_ROW, batch)),
        orders: Arc::from(multi_row_insert(ORDER_COLUMNS, ORDER_ROW, batch)),
    });
    // Connect everyone first so the window measures inserts, not handshakes.
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(connect(opts).await?);
    }
    let started = Instant::now();
    let end = started + length;
    let mut tasks = JoinSet::new();
    for (i, conn) in conns.into_iter().enumerate() {
        tasks.spawn(worker(
            conn,
            opts.clone(),
            sql.clone(),
            batch,
            i as u64,
            end,
        ));
    }
    let mut total = MysqlRaw {
        clients,
        batch,
        ..MysqlRaw::default()
    };
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("a raw MySQL task failed")?);
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

struct Statements {
    events: Arc<str>,
    orders: Arc<str>,
}

async fn worker(
    conn: MySqlConnection,
    opts: MySqlConnectOptions,
    sql: Arc<Statements>,
    batch: usize,
    index: u64,
    end: Instant,
) -> MysqlRaw {
    let mut st = MysqlRaw::default();
    let mut conn = Some(conn);
    let mut n = index * 1_000_000_000;
    while Instant::now() < end {
        let Some(c) = conn.as_mut() else {
            match connect(&opts).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    st.errors += 1;
                    note_error(&mut st.error_samples, e.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        };
        let outcome = tokio::time::timeout(STEP_LIMIT, transaction(c, &sql, batch, n)).await;
        n += batch as u64;
        match outcome {
            Ok(Ok(())) => {
                st.transactions += 1;
                st.commands += batch as u64;
            }
            Ok(Err(e)) => {
                st.errors += 1;
                note_error(&mut st.error_samples, e.to_string());
                conn = None;
            }
            Err(_) => {
                st.errors += 1;
                note_error(
                    &mut st.error_samples,
                    format!("transaction timed out after {STEP_LIMIT:?}"),
                );
                conn = None;
            }
        }
    }
    if let Some(c) = conn {
        let _ = c.close().await;
    }
    st
}

/// One transaction of `batch` commands (event + order row each).
async fn transaction(
    conn: &mut MySqlConnection,
    sql: &Statements,
    batch: usize,
    first: u64,
) -> std::result::Result<(), sqlx::Error> {
    struct Row {
        order_id: String,
        event_id: String,
        corr: String,
        data: String,
        at: String,
        n: u64,
    }
    let rows: Vec<Row> = (first..first + batch as u64)
        .map(|n| {
            let order_id = Uuid::now_v7().to_string();
            Row {
                data: event_data(&order_id, n),
                order_id,
                event_id: Uuid::now_v7().to_string(),
                corr: Uuid::new_v4().to_string(),
                at: datetime6(SystemTime::now()),
                n,
            }
        })
        .collect();
    let mut tx = conn.begin().await?;
    let mut events = sqlx::query(AssertSqlSafe(sql.events.clone()));
    for r in &rows {
        events = events
            .bind(&r.event_id)
            .bind(&r.order_id)
            .bind(&r.data)
            .bind(&r.at)
            .bind(&r.corr);
    }
    events.execute(&mut *tx).await?;
    let mut orders = sqlx::query(AssertSqlSafe(sql.orders.clone()));
    for r in &rows {
        orders = orders
            .bind(&r.order_id)
            .bind(format!("cust-{}", r.n % 1000))
            .bind(format!("rest-{}", r.n % 50))
            .bind(&r.at)
            .bind(&r.at);
    }
    orders.execute(&mut *tx).await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_multi_row_insert_has_one_placeholder_group_per_row() {
        let one = multi_row_insert(EVENT_COLUMNS, EVENT_ROW, 1);
        assert_eq!(one, format!("{EVENT_COLUMNS}{EVENT_ROW}"));
        let three = multi_row_insert(ORDER_COLUMNS, ORDER_ROW, 3);
        assert_eq!(three.matches('?').count(), 15);
        assert!(three.ends_with("1), (?, ?, ?, '27.99', 'PENDING', ?, ?, 1)"));
        assert_eq!(multi_row_insert("X ", "(?)", 0), "X (?)");
    }

    #[test]
    fn the_placeholders_match_the_binds_per_row() {
        // transaction() binds 5 values per event row and 5 per order row.
        assert_eq!(EVENT_ROW.matches('?').count(), 5);
        assert_eq!(ORDER_ROW.matches('?').count(), 5);
    }

    #[test]
    fn datetime6_is_a_mysql_datetime_literal_with_microseconds() {
        let t = UNIX_EPOCH + Duration::from_micros(1_709_210_096_123_456);
        assert_eq!(datetime6(t), "2024-02-29 12:34:56.123456");
    }

    #[test]
    fn rates_are_per_measured_second_and_zero_without_time() {
        let r = MysqlRaw {
            transactions: 100,
            commands: 6400,
            seconds: 2.0,
            ..MysqlRaw::default()
        };
        assert_eq!(r.transactions_per_sec(), 50.0);
        assert_eq!(r.commands_per_sec(), 3200.0);
        assert_eq!(MysqlRaw::default().commands_per_sec(), 0.0);
    }

    #[test]
    fn the_schema_keeps_the_migrations_columns_and_keys() {
        assert!(SCHEMA[0]
            .contains("UNIQUE KEY uk_event_store_aggregate_version (aggregate_id, version)"));
        assert!(SCHEMA[0].contains("occurred_on    DATETIME(6)"));
        assert!(SCHEMA[1].contains("total_amount        VARCHAR(40)"));
    }
}
