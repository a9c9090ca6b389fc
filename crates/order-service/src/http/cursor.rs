//! Keyset cursors as the API hands them out: `nextCursor` of a page, sent
//! back as `after=` for the next one. Opaque and URL-safe (unpadded
//! base64url of the listing's letter, the last row's time in microseconds
//! and its id), so clients never build one; anything that does not decode
//! to a cursor of the same listing answers 400.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Datelike};
use order_core::ports::{Cursor, CursorId, Keyed, ListRequest, Page};
use serde::Serialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::Params;

/// The listing a cursor belongs to: a cursor of one is refused by another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    DlqRecords,
    Audit,
    Jobs,
}

impl Listing {
    fn letter(self) -> char {
        match self {
            Listing::DlqRecords => 'r',
            Listing::Audit => 'a',
            Listing::Jobs => 'j',
        }
    }
}

/// Longest `after=` value read (the longest cursor is about 80 characters).
const MAX_CURSOR_LEN: usize = 200;

pub fn encode(listing: Listing, c: &Cursor) -> String {
    let id = match c.id {
        CursorId::Int(n) => n.to_string(),
        CursorId::Uuid(u) => u.to_string(),
    };
    let plain = format!("{}{}.{id}", listing.letter(), c.at.timestamp_micros());
    URL_SAFE_NO_PAD.encode(plain)
}

pub fn decode(listing: Listing, text: &str) -> Option<Cursor> {
    if text.len() > MAX_CURSOR_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let plain = String::from_utf8(bytes).ok()?;
    let rest = plain.strip_prefix(listing.letter())?;
    let (micros, id) = rest.split_once('.')?;
    // Only instants every store can compare (MySQL's DATETIME: years
    // 1000 to 9999); a cursor the service handed out is always one.
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)
        .filter(|t| (1000..=9999).contains(&t.year()))?;
    let id = match listing {
        Listing::Jobs => CursorId::Uuid(Uuid::try_parse(id).ok()?),
        Listing::DlqRecords | Listing::Audit => CursorId::Int(id.parse().ok()?),
    };
    Some(Cursor { at, id })
}

impl Params {
    /// `page`/`size` as every list, and `after`: the `nextCursor` of the
    /// previous page of `listing` (then `page` only echoes back).
    pub fn list_request(&self, listing: Listing) -> Result<ListRequest, ApiError> {
        let page = self.page()?;
        let after = match self.get("after") {
            None => None,
            Some(v) => Some(decode(listing, v).ok_or_else(|| {
                ApiError::bad_request(
                    "query parameter after must be the nextCursor of a page of this listing",
                )
            })?),
        };
        Ok(ListRequest { page, after })
    }
}

/// A page as the listings answer it: the page and `nextCursor` (null on
/// the last page).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CursorPage<T> {
    #[serde(flatten)]
    page: Page<T>,
    /// Where the next page starts: send it as `after=` for the page after
    /// this one; null on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

impl<T: Keyed> CursorPage<T> {
    pub fn new(listing: Listing, page: Page<T>) -> Self {
        let next_cursor = page.next().map(|c| encode(listing, &c));
        Self { page, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_only_within_their_listing() {
        let at = DateTime::from_timestamp_micros(1_717_171_717_123_456).expect("instant");
        let c = Cursor {
            at,
            id: CursorId::Int(42),
        };
        let text = encode(Listing::DlqRecords, &c);
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(decode(Listing::DlqRecords, &text), Some(c));
        assert_eq!(decode(Listing::Audit, &text), None);
        let job = Cursor {
            at,
            id: CursorId::Uuid(Uuid::now_v7()),
        };
        assert_eq!(
            decode(Listing::Jobs, &encode(Listing::Jobs, &job)),
            Some(job)
        );
        let far = URL_SAFE_NO_PAD.encode("r253402300800000000.1"); // year 10000
        let early = URL_SAFE_NO_PAD.encode("r-30000000000000000.1"); // year 1019
        assert!(decode(Listing::DlqRecords, &early).is_some());
        for garbled in [
            "",
            "%%%",
            "cjEuMi4z",
            "not a cursor",
            &"A".repeat(500),
            &far,
        ] {
            assert_eq!(decode(Listing::DlqRecords, garbled), None, "{garbled}");
        }
    }
}
