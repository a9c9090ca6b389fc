//! What the SQL adapters (SQLite and MySQL) share, without a driver: the
//! statements both databases accept (`?` placeholders, bound in order), the
//! WHERE clauses built from the ports' filters, and the mapping of result
//! columns to the ports' types, so every column list, statement and
//! per-column check is written once.
//!
//! An adapter implements [`ColumnReader`] once for its row type and binds
//! [`SqlValue`]s with one helper. What really differs between the databases
//! (row locks, upserts, how multi-row statements are chunked, the driver's
//! "rows affected") stays in the adapter.

pub mod audit;
pub mod dlq;
pub mod dlq_revisions;
pub mod event_store;
pub mod jobs;
pub mod outbox;

use chrono::DateTime;
use chrono::Utc;

use super::error::StoreError;
use super::page::Cursor;
use super::page::CursorId;
use super::page::ListRequest;
use super::page::Page;
use super::page::PageRequest;

/// A value bound to a `?` placeholder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlValue {
    Null,
    Text(String),
    Int(i64),
    /// An instant, stored the adapter's way (SQLite: RFC 3339 text,
    /// MySQL: `DATETIME(6)` in UTC).
    Time(DateTime<Utc>),
}

impl From<&str> for SqlValue {
    fn from(s: &str) -> Self {
        SqlValue::Text(s.to_owned())
    }
}

impl From<&String> for SqlValue {
    fn from(s: &String) -> Self {
        SqlValue::Text(s.clone())
    }
}

impl From<String> for SqlValue {
    fn from(s: String) -> Self {
        SqlValue::Text(s)
    }
}

impl From<i64> for SqlValue {
    fn from(n: i64) -> Self {
        SqlValue::Int(n)
    }
}

impl From<DateTime<Utc>> for SqlValue {
    fn from(t: DateTime<Utc>) -> Self {
        SqlValue::Time(t)
    }
}

impl From<&DateTime<Utc>> for SqlValue {
    fn from(t: &DateTime<Utc>) -> Self {
        SqlValue::Time(*t)
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(SqlValue::Null, Into::into)
    }
}

/// `u64` → a signed 64-bit integer column.
pub fn int(v: u64) -> Result<SqlValue, StoreError> {
    i64::try_from(v)
        .map(SqlValue::Int)
        .map_err(|_| StoreError::Corrupt(format!("{v} does not fit an integer column")))
}

/// A signed integer column → `u64` (counts, versions).
pub fn unsigned(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v)
        .map_err(|_| StoreError::Corrupt(format!("negative value {v} where a count was stored")))
}

/// A statement and the values of its placeholders, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub args: Vec<SqlValue>,
}

impl Statement {
    pub fn new(sql: impl Into<String>, args: impl IntoIterator<Item = SqlValue>) -> Self {
        Self {
            sql: sql.into(),
            args: args.into_iter().collect(),
        }
    }

    /// The statement with `sql` appended (a database's own clause, such
    /// as `FOR UPDATE`).
    pub fn then(mut self, sql: &str) -> Self {
        self.sql.push_str(sql);
        self
    }
}

/// The columns of one result row, read by position. Each adapter
/// implements the three `opt_` methods for its driver; a NULL where a
/// value must be is a corrupt row.
pub trait ColumnReader {
    fn opt_text(&self, i: usize) -> Result<Option<String>, StoreError>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, StoreError>;
    fn opt_time(&self, i: usize) -> Result<Option<DateTime<Utc>>, StoreError>;

    fn text(&self, i: usize) -> Result<String, StoreError> {
        not_null(i, self.opt_text(i)?)
    }
    fn int(&self, i: usize) -> Result<i64, StoreError> {
        not_null(i, self.opt_int(i)?)
    }
    fn time(&self, i: usize) -> Result<DateTime<Utc>, StoreError> {
        not_null(i, self.opt_time(i)?)
    }
    /// A count or version: non-negative.
    fn count(&self, i: usize) -> Result<u64, StoreError> {
        unsigned(self.int(i)?)
    }
}

fn not_null<T>(i: usize, v: Option<T>) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::Corrupt(format!("column {i} is NULL")))
}

/// The columns of one row of a port's table, checked: a value the port
/// never stores is reported as corrupt, naming the row and the column.
pub(crate) struct Checked<'a> {
    r: &'a dyn ColumnReader,
    /// The `SELECT` list the row was read with.
    columns: &'static str,
    row: String,
}

impl<'a> Checked<'a> {
    pub(crate) fn new(r: &'a dyn ColumnReader, columns: &'static str, row: String) -> Self {
        Self { r, columns, row }
    }

    fn bad(&self, i: usize, what: impl std::fmt::Display) -> StoreError {
        let column = self.columns.split(',').nth(i).map_or("?", str::trim);
        StoreError::Corrupt(format!("{}: {column} {what}", self.row))
    }

    /// A text column holding one of an enum's names.
    pub(crate) fn parsed<T>(
        &self,
        i: usize,
        parse: fn(&str) -> Option<T>,
    ) -> Result<T, StoreError> {
        let v = self.r.text(i)?;
        parse(&v).ok_or_else(|| self.bad(i, format_args!("unknown value {v:?}")))
    }

    pub(crate) fn opt_parsed<T>(
        &self,
        i: usize,
        parse: fn(&str) -> Option<T>,
    ) -> Result<Option<T>, StoreError> {
        match self.r.opt_text(i)? {
            Some(v) => parse(&v)
                .map(Some)
                .ok_or_else(|| self.bad(i, format_args!("unknown value {v:?}"))),
            None => Ok(None),
        }
    }

    /// An integer column holding a count or version of type `T`.
    pub(crate) fn number<T: TryFrom<i64>>(&self, i: usize) -> Result<T, StoreError> {
        let n = self.r.int(i)?;
        T::try_from(n).map_err(|_| self.bad(i, format_args!("out of range: {n}")))
    }

    pub(crate) fn opt_number<T: TryFrom<i64>>(&self, i: usize) -> Result<Option<T>, StoreError> {
        match self.r.opt_int(i)? {
            Some(n) => T::try_from(n)
                .map(Some)
                .map_err(|_| self.bad(i, format_args!("out of range: {n}"))),
            None => Ok(None),
        }
    }

    /// A text column holding a JSON document.
    pub(crate) fn json(&self, i: usize) -> Result<serde_json::Value, StoreError> {
        serde_json::from_str(&self.r.text(i)?)
            .map_err(|e| self.bad(i, format_args!("unreadable: {e}")))
    }
}

/// `?, ?, ?`: `n` placeholders.
pub fn in_list(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `'PENDING', 'FAILED'`: constants of the ports' own enums, written into
/// the SQL (they are never user input).
pub(crate) fn literals<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    values
        .into_iter()
        .map(|v| format!("'{v}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<CursorId> for SqlValue {
    fn from(id: CursorId) -> Self {
        match id {
            CursorId::Int(n) => SqlValue::Int(n),
            CursorId::Uuid(u) => SqlValue::Text(u.to_string()),
        }
    }
}

/// Conditions joined with `AND`, each with its bound values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Where {
    clauses: Vec<String>,
    args: Vec<SqlValue>,
}

impl Where {
    /// Adds `clause` (one `?`) with its value, when there is one.
    pub fn and(mut self, clause: &'static str, value: Option<impl Into<SqlValue>>) -> Self {
        if let Some(v) = value {
            self.clauses.push(clause.to_owned());
            self.args.push(v.into());
        }
        self
    }

    /// Adds the rows strictly past `after` in `key`'s order walked `walk`,
    /// when there is a cursor. Written as `t <= ? AND (t < ? OR (t = ? AND
    /// id < ?))` (newest first; mirrored oldest first) rather than `(t, id)
    /// < (?, ?)`: MySQL/MariaDB and SQLite all turn the first term into an
    /// index range (the rest filters within it), which a row-value
    /// comparison or a bare OR does not get everywhere.
    fn beyond(mut self, key: SortKey, after: Option<Cursor>, walk: Walk) -> Self {
        if let Some(c) = after {
            let SortKey { time: t, id } = key;
            let (to, past) = match walk {
                Walk::NewestFirst => ("<=", "<"),
                Walk::OldestFirst => (">=", ">"),
            };
            self.clauses.push(format!(
                "{t} {to} ? AND ({t} {past} ? OR ({t} = ? AND {id} {past} ?))"
            ));
            self.args.extend([
                SqlValue::from(c.at),
                SqlValue::from(c.at),
                SqlValue::from(c.at),
                SqlValue::from(c.id),
            ]);
        }
        self
    }

    /// ` WHERE a AND b`, or nothing.
    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// Which way a keyset walk goes along its [`SortKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    NewestFirst,
    OldestFirst,
}

/// How a listing sorts: newest first by `time`, ties broken by the unique
/// `id` (so every row has its own place and a [`Cursor`] names one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortKey {
    pub time: &'static str,
    pub id: &'static str,
}

/// How an adapter insists that a statement reads a table through one
/// index, written after the table's name: MySQL/MariaDB ` FORCE INDEX (i)`,
/// SQLite ` INDEXED BY i`. The DLQ and audit listings name their index: at
/// a million rows MariaDB otherwise answers a page by status (or by
/// principal, action) after a cursor half-way down with a `ref` on that
/// column alone, walking down from the newest row to the cursor (350,000
/// rows read for 21).
pub type IndexHint = fn(index: &str) -> String;

/// One page of a table's matching rows (one row more than the page, to
/// know whether another page follows) and the count of all of them.
/// Adapters run both on one snapshot where the database allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageQuery {
    pub rows: Statement,
    pub count: Statement,
    pub page: PageRequest,
}

impl PageQuery {
    /// The page `req` asks for: after its cursor, else by number (OFFSET);
    /// counted with `COUNT(*)` over `filter` (see [`Self::counted_by`]).
    pub fn new(columns: &str, table: &str, filter: Where, key: SortKey, req: &ListRequest) -> Self {
        Self::reading(columns, table, table, filter, key, req)
    }

    /// [`Self::new`] with the page's rows read through `index` (the
    /// adapter's `hint` says how).
    pub fn in_index(
        columns: &str,
        table: &str,
        (index, hint): (&str, IndexHint),
        filter: Where,
        key: SortKey,
        req: &ListRequest,
    ) -> Self {
        let source = format!("{table}{}", hint(index));
        Self::reading(columns, table, &source, filter, key, req)
    }

    /// The page's rows come from `source`: `table`, perhaps with an index
    /// hint (a deep page by number then joins back to `table` itself, by
    /// primary key).
    fn reading(
        columns: &str,
        table: &str,
        source: &str,
        filter: Where,
        key: SortKey,
        req: &ListRequest,
    ) -> Self {
        let page = req.page;
        let count = Statement::new(
            format!("SELECT COUNT(*) FROM {table}{}", filter.sql()),
            filter.args.clone(),
        );
        let rows = filter.beyond(key, req.after, Walk::NewestFirst);
        let size = i64::from(page.size.max(1));
        let offset = match req.after {
            Some(_) => 0,
            None => i64::try_from(page.offset()).unwrap_or(i64::MAX),
        };
        let mut args = rows.args.clone();
        args.extend([SqlValue::Int(size + 1), SqlValue::Int(offset)]);
        let SortKey { time, id } = key;
        let order = format!("ORDER BY {time} DESC, {id} DESC");
        let cond = rows.sql();
        let sql = if offset > 0 {
            // A deep page by number: the offset is walked in the index
            // alone (InnoDB and SQLite end every index with the row id),
            // and only the page's rows are read whole.
            format!(
                "SELECT {columns} FROM {table} JOIN (SELECT {id} FROM {source}{cond} {order} \
                 LIMIT ? OFFSET ?) k USING ({id}) {order}"
            )
        } else {
            format!("SELECT {columns} FROM {source}{cond} {order} LIMIT ? OFFSET ?")
        };
        Self {
            rows: Statement::new(sql, args),
            count,
            page,
        }
    }

    /// The same page, its total read by `count` (one row, one integer)
    /// instead of a `COUNT(*)`.
    pub fn counted_by(self, count: Statement) -> Self {
        Self { count, ..self }
    }

    /// The page of `content` (the rows read: one more than the page when
    /// another page follows), `total` rows matching in all.
    pub fn page<T>(&self, mut content: Vec<T>, total: i64) -> Result<Page<T>, StoreError> {
        let size = self.page.size.max(1) as usize;
        let more = content.len() > size;
        content.truncate(size);
        let mut page = Page::new(content, self.page, unsigned(total)?);
        page.more = more;
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_clauses_join_what_is_given() {
        let w = Where::default()
            .and("a = ?", Some("x"))
            .and("b = ?", None::<&str>)
            .and("c < ?", Some(3i64));
        assert_eq!(w.sql(), " WHERE a = ? AND c < ?");
        assert_eq!(w.args, [SqlValue::from("x"), SqlValue::Int(3)]);
        assert_eq!(Where::default().sql(), "");
    }

    const KEY: SortKey = SortKey {
        time: "at",
        id: "id",
    };

    fn query(req: &ListRequest) -> PageQuery {
        PageQuery::new(
            "id",
            "t",
            Where::default().and("a = ?", Some("x")),
            KEY,
            req,
        )
    }

    #[test]
    fn page_queries_bind_the_filter_then_limit_and_offset() {
        let req = ListRequest::from(PageRequest { page: 2, size: 10 });
        let q = query(&req);
        assert_eq!(
            q.rows.sql,
            "SELECT id FROM t JOIN (SELECT id FROM t WHERE a = ? ORDER BY at DESC, id DESC \
             LIMIT ? OFFSET ?) k USING (id) ORDER BY at DESC, id DESC"
        );
        assert_eq!(
            q.rows.args,
            [SqlValue::from("x"), SqlValue::Int(11), SqlValue::Int(20)]
        );
        assert_eq!(q.count.sql, "SELECT COUNT(*) FROM t WHERE a = ?");
        assert_eq!(q.count.args, [SqlValue::from("x")]);
    }

    #[test]
    fn a_cursor_starts_the_page_below_it_without_an_offset() {
        let after = Cursor {
            at: DateTime::UNIX_EPOCH,
            id: CursorId::Int(7),
        };
        let req = ListRequest {
            page: PageRequest { page: 3, size: 5 },
            after: Some(after),
        };
        let q = query(&req);
        assert_eq!(
            q.rows.sql,
            "SELECT id FROM t WHERE a = ? AND at <= ? AND (at < ? OR (at = ? AND id < ?)) \
             ORDER BY at DESC, id DESC LIMIT ? OFFSET ?"
        );
        let t = SqlValue::Time(DateTime::UNIX_EPOCH);
        assert_eq!(
            q.rows.args,
            [
                SqlValue::from("x"),
                t.clone(),
                t.clone(),
                t,
                SqlValue::Int(7),
                SqlValue::Int(6),
                SqlValue::Int(0)
            ]
        );
        assert_eq!(q.count.sql, "SELECT COUNT(*) FROM t WHERE a = ?");
    }

    #[test]
    fn a_page_read_with_one_row_more_knows_another_follows() {
        let req = ListRequest::from(PageRequest { page: 0, size: 2 });
        let q = PageQuery::new("id", "t", Where::default(), KEY, &req);
        let p = q.page(vec![1, 2, 3], 3).expect("page");
        assert_eq!((p.content, p.more), (vec![1, 2], true));
        let p = q.page(vec![1, 2], 2).expect("page");
        assert!(!p.more);
    }
}
