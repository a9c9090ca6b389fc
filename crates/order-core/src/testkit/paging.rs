//! Keyset walks over a listing, shared by the DLQ, audit and job suites.

use std::future::Future;

use crate::ports::{Cursor, Keyed, ListRequest, Page, PageRequest};

/// The request for the `size` rows after `after` (the first page without).
pub fn after(after: Option<Cursor>, size: u32) -> ListRequest {
    ListRequest {
        page: PageRequest { page: 0, size },
        after,
    }
}

/// Every row of a listing, read `size` at a time, each page after the
/// previous one's last row, until a page says none follows (checked to
/// come within `max_pages`). Each page's total must be `total`.
pub async fn walk<T, F, Fut>(size: u32, total: u64, max_pages: usize, mut page: F) -> Vec<T>
where
    T: Keyed,
    F: FnMut(ListRequest) -> Fut,
    Fut: Future<Output = Page<T>>,
{
    let mut rows = Vec::new();
    let mut cursor = None;
    for _ in 0..max_pages {
        let p = page(after(cursor, size)).await;
        assert!(
            p.content.len() <= size as usize,
            "a page holds at most size rows"
        );
        assert_eq!(p.total_elements, total, "every page counts all rows");
        cursor = p.next();
        let last = cursor.is_none();
        if !last {
            assert_eq!(
                p.content.len(),
                size as usize,
                "only the last page is short"
            );
        }
        rows.extend(p.content);
        if last {
            return rows;
        }
    }
    panic!("the walk did not end within {max_pages} pages");
}

/// Whether `rows` are in listing order: newest first, then highest id.
pub fn in_listing_order<T: Keyed>(rows: &[T]) -> bool {
    rows.windows(2).all(|w| {
        let (a, b) = (w[0].cursor(), w[1].cursor());
        (a.at, a.id) > (b.at, b.id)
    })
}
