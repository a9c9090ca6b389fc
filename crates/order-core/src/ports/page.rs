//! Page requests and pages shared by the listing ports.
//!
//! A listing is sorted newest first by `(time, id)` and walked either by
//! page number (`OFFSET`, the original API) or by keyset: `after` is the
//! sort key of the last row of the previous page, and the next page starts
//! strictly below it, so rows inserted, changed or deleted meanwhile never
//! make the walk skip or repeat a row that stayed where it was.

use chrono::DateTime;
use chrono::Utc;
use serde::Serialize;
use uuid::Uuid;

/// A page request: `page` is zero-based, `size` at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub size: u32,
}

impl PageRequest {
    pub fn offset(&self) -> u64 {
        u64::from(self.page) * u64::from(self.size)
    }
}

/// The id part of a [`Cursor`]: the listing's unique tie-breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CursorId {
    /// An auto-increment id (DLQ records, audit entries).
    Int(i64),
    /// A job id.
    Uuid(Uuid),
}

/// The sort key of one row of a listing: its time and its id. A page asked
/// for `after` a cursor holds the rows strictly below it in the listing's
/// order (`time < t OR (time = t AND id < i)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: CursorId,
}

/// A row of a keyset listing: where it sorts.
pub trait Keyed {
    fn cursor(&self) -> Cursor;
}

/// A page of a listing: by number (`after` is `None`), or the `page.size`
/// rows after a cursor (then `page.page` is only echoed back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListRequest {
    pub page: PageRequest,
    pub after: Option<Cursor>,
}

impl From<PageRequest> for ListRequest {
    fn from(page: PageRequest) -> Self {
        Self { page, after: None }
    }
}

/// A page of a listing: `page` is zero-based.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub content: Vec<T>,
    pub page: u32,
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub size: u32,
    pub total_elements: u64,
    pub total_pages: u64,
    /// Whether rows follow this page's last one (a keyset listing knows it
    /// from one row read beyond the page; the HTTP layer makes it the
    /// `nextCursor`).
    #[serde(skip)]
    pub more: bool,
}

impl<T> Page<T> {
    pub fn new(content: Vec<T>, req: PageRequest, total: u64) -> Self {
        let size = u64::from(req.size.max(1));
        let more = req.offset() + (content.len() as u64) < total;
        Self {
            content,
            page: req.page,
            size: req.size,
            total_elements: total,
            total_pages: total.div_ceil(size),
            more,
        }
    }
}

impl<T: Keyed> Page<T> {
    /// Where the next page starts: the last row's sort key, or `None` on
    /// the last page.
    pub fn next(&self) -> Option<Cursor> {
        self.content.last().filter(|_| self.more).map(T::cursor)
    }
}
