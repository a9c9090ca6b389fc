//! A fresh database per test case on the server named by
//! `ORDER_TEST_MYSQL_URL`, dropped again when the guard goes.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use order_store_mysql::{MySqlConfig, MySqlStore};
use sqlx::{AssertSqlSafe, Connection, Executor};

pub const URL_VAR: &str = "ORDER_TEST_MYSQL_URL";

/// The server URL (no database), e.g. `mysql://root@127.0.0.1:3306`.
pub fn server_url() -> String {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url.trim().trim_end_matches('/').to_owned(),
        _ => panic!(
            "{URL_VAR} is not set: these tests need a MySQL/MariaDB server. Run them with \
             `./scripts/test.sh`, or start the services first with \
             `eval \"$(scripts/services.sh start)\"` (MariaDB on 127.0.0.1:3306: \
             {URL_VAR}=mysql://root@127.0.0.1:3306)"
        ),
    }
}

/// A database that exists for one test case. Dropping the guard drops the
/// database (on a helper thread with its own runtime, since Drop cannot
/// await).
pub struct TestDb {
    pub name: String,
    pub url: String,
    server: String,
}

impl TestDb {
    pub fn new() -> Self {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let server = server_url();
        let name = format!(
            "order_test_{}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let url = format!("{server}/{name}");
        Self { name, url, server }
    }

    pub async fn store(&self) -> MySqlStore {
        MySqlStore::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }

    pub async fn store_with(&self, f: impl FnOnce(MySqlConfig) -> MySqlConfig) -> MySqlStore {
        MySqlStore::connect_with(f(MySqlConfig::new(&self.url)))
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }

    /// A plain connection to this test's database.
    pub async fn raw(&self) -> sqlx::MySqlConnection {
        sqlx::MySqlConnection::connect(&self.url)
            .await
            .expect("raw connection")
    }
}

impl Default for TestDb {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let server = format!("{}/", self.server);
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.name);
        let dropper = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let drop_it = async {
                    let mut conn = sqlx::MySqlConnection::connect(&server).await?;
                    conn.execute("SET SESSION lock_wait_timeout = 10").await?;
                    conn.execute(AssertSqlSafe(sql)).await?;
                    conn.close().await
                };
                match tokio::time::timeout(Duration::from_secs(20), drop_it).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => eprintln!("could not drop test database: {e}"),
                    Err(_) => eprintln!("dropping the test database timed out"),
                }
            });
        });
        let _ = dropper.join();
    }
}
