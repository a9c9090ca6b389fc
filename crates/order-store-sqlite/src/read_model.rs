//! The query side on its own SQLite file, so projection writes never wait
//! for the command writer: one row per order with the whole order as JSON
//! and the columns it is filtered and sorted by.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use order_core::domain::Order;
use order_core::ports::{
    OrderField, OrderFilter, OrderQuery, Page, ReadModel, StoreError, Upserted,
};
use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior};
use uuid::Uuid;

use crate::db::{corrupt, db_err, to_i64, to_u64, ts, Db, Migration};
use crate::store::select_one;

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "initial",
    sql: include_str!("../migrations/read_model/0001_initial.sql"),
}];

const IN_CHUNK: usize = 500;

/// The secondary indexes of `order_views` (as the first migration made
/// them): dropped for a rebuild, made again after it, and at every open in
/// case a rebuild was interrupted. One index built from sorted rows costs a
/// fraction of inserting into it row by row.
const INDEXES: &str = "
    CREATE INDEX IF NOT EXISTS idx_order_views_created ON order_views (created_at DESC, id DESC);
    CREATE INDEX IF NOT EXISTS idx_order_views_customer ON order_views (customer_id, created_at DESC, id DESC);
    CREATE INDEX IF NOT EXISTS idx_order_views_restaurant ON order_views (restaurant_id, created_at DESC, id DESC);
    CREATE INDEX IF NOT EXISTS idx_order_views_status ON order_views (status, created_at DESC, id DESC);";

const DROP_INDEXES: &str = "
    DROP INDEX IF EXISTS idx_order_views_created;
    DROP INDEX IF EXISTS idx_order_views_customer;
    DROP INDEX IF EXISTS idx_order_views_restaurant;
    DROP INDEX IF EXISTS idx_order_views_status;";

/// The read model in its own SQLite file (WAL mode).
#[derive(Clone, Debug)]
pub struct SqliteReadModel {
    db: Arc<Db>,
}

impl SqliteReadModel {
    /// Opens (creating directories and file) and migrates the read model at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let db = Db::open(path.as_ref(), MIGRATIONS)?;
        db.write(|conn| conn.execute_batch(INDEXES).map_err(db_err))?;
        Ok(Self { db })
    }

    /// Creates or upgrades the schema at `path` and closes it again.
    pub fn migrate(path: impl AsRef<Path>) -> Result<(), StoreError> {
        Self::open(path).map(drop)
    }

    pub fn path(&self) -> &Path {
        self.db.path()
    }
}

fn decode_doc(doc: &str) -> Result<Order, StoreError> {
    serde_json::from_str(doc).map_err(|e| corrupt(format!("order document is unreadable: {e}")))
}

/// The `order_views` column a filter condition is on.
fn column(field: OrderField) -> &'static str {
    match field {
        OrderField::CustomerId => "customer_id",
        OrderField::RestaurantId => "restaurant_id",
        OrderField::Status => "status",
    }
}

/// `WHERE …` for `filter` (empty when it has no condition) and its
/// arguments, numbered from `?1`.
fn where_clause(filter: &OrderFilter) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut args = Vec::new();
    for (field, value) in filter.conditions() {
        args.push(Value::Text(value.to_owned()));
        clauses.push(format!("{} = ?{}", column(field), args.len()));
    }
    if clauses.is_empty() {
        (String::new(), args)
    } else {
        (format!("WHERE {}", clauses.join(" AND ")), args)
    }
}

fn query_docs(conn: &Connection, sql: &str, params: &[Value]) -> Result<Vec<Order>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(db_err)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(db_err)? {
        let doc: String = r.get(0).map_err(db_err)?;
        out.push(decode_doc(&doc)?);
    }
    Ok(out)
}

#[async_trait]
impl ReadModel for SqliteReadModel {
    #[tracing::instrument(level = "debug", skip_all, fields(orders = ids.len()))]
    async fn get_many(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Order>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<Value> = ids.iter().map(|id| Value::Text(id.to_string())).collect();
        self.db
            .read_async(move |conn| {
                let mut out = HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(IN_CHUNK) {
                    let marks = vec!["?"; chunk.len()].join(", ");
                    let sql = format!("SELECT doc FROM order_views WHERE id IN ({marks})");
                    for o in query_docs(conn, &sql, chunk)? {
                        out.insert(o.id, o);
                    }
                }
                Ok(out)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(orders = orders.len()))]
    async fn upsert_many(&self, orders: &[Order]) -> Result<Upserted, StoreError> {
        if orders.is_empty() {
            return Ok(Upserted::default());
        }
        // Only the columns, so the closure owns no copy of the orders.
        let rows = orders
            .iter()
            .map(|o| {
                let doc = serde_json::to_string(o)
                    .map_err(|e| corrupt(format!("order {} cannot be encoded: {e}", o.id)))?;
                Ok([
                    Value::Text(o.id.to_string()),
                    Value::Text(o.customer_id.clone()),
                    Value::Text(o.restaurant_id.clone()),
                    Value::Text(o.status.as_str().to_owned()),
                    Value::Text(ts(&o.created_at)),
                    Value::Integer(to_i64(o.version)?),
                    Value::Text(doc),
                ])
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.db
            .write_async(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                let mut written = Vec::with_capacity(rows.len());
                {
                    // The WHERE makes the upsert version-guarded: a stale or
                    // duplicate document changes nothing (and counts 0). An
                    // update sets only what a transition changes, so SQLite
                    // leaves the created, customer and restaurant indexes
                    // alone (it rewrites every index a SET names).
                    let mut stmt = tx
                        .prepare_cached(
                            "INSERT INTO order_views (id, customer_id, restaurant_id, status, \
                             created_at, version, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                             ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
                             version = excluded.version, doc = excluded.doc \
                             WHERE excluded.version > order_views.version",
                        )
                        .map_err(db_err)?;
                    for row in &rows {
                        let n = stmt
                            .execute(rusqlite::params_from_iter(row.iter()))
                            .map_err(db_err)?;
                        written.push(n > 0);
                    }
                }
                tx.commit().map_err(db_err)?;
                Ok(Upserted(written))
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn get(&self, id: Uuid) -> Result<Option<Order>, StoreError> {
        self.db
            .read_async(move |conn| {
                Ok(query_docs(
                    conn,
                    "SELECT doc FROM order_views WHERE id = ?1",
                    &[Value::Text(id.to_string())],
                )?
                .pop())
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip(self))]
    async fn query(&self, query: &OrderQuery) -> Result<Page<Order>, StoreError> {
        let (filter_sql, args) = where_clause(&query.filter);
        let page = query.page;
        let size = i64::from(page.size.max(1));
        let offset = i64::try_from(page.offset()).unwrap_or(i64::MAX);
        self.db
            .read_async(move |conn| {
                let tx = conn.unchecked_transaction().map_err(db_err)?;
                let total: i64 = tx
                    .prepare_cached(&format!("SELECT COUNT(*) FROM order_views {filter_sql}"))
                    .and_then(|mut s| {
                        s.query_row(rusqlite::params_from_iter(args.iter()), |r| r.get(0))
                    })
                    .map_err(db_err)?;
                let n = args.len();
                let mut page_args = args;
                page_args.push(Value::Integer(size));
                page_args.push(Value::Integer(offset));
                let content = query_docs(
                    &tx,
                    &format!(
                        "SELECT doc FROM order_views {filter_sql} \
                         ORDER BY created_at DESC, id DESC LIMIT ?{} OFFSET ?{}",
                        n + 1,
                        n + 2
                    ),
                    &page_args,
                )?;
                tx.finish().map_err(db_err)?;
                Ok(Page::new(content, page, to_u64(total)?))
            })
            .await
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.db
            .write_async(|conn| {
                conn.execute("DELETE FROM order_views", [])
                    .map(drop)
                    .map_err(db_err)
            })
            .await
    }

    async fn begin_rebuild(&self) -> Result<(), StoreError> {
        self.db
            .write_async(|conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(db_err)?;
                tx.execute_batch(DROP_INDEXES).map_err(db_err)?;
                tx.execute("DELETE FROM order_views", []).map_err(db_err)?;
                tx.commit().map_err(db_err)
            })
            .await
    }

    async fn finish_rebuild(&self) -> Result<(), StoreError> {
        self.db
            .write_async(|conn| conn.execute_batch(INDEXES).map_err(db_err))
            .await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        self.db
            .read_async(|conn| {
                let n: i64 = conn
                    .prepare_cached("SELECT COUNT(*) FROM order_views")
                    .and_then(|mut s| s.query_row([], |r| r.get(0)))
                    .map_err(db_err)?;
                to_u64(n)
            })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.read_async(select_one).await
    }
}
