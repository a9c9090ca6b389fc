//! Page requests and pages shared by the listing ports.

use serde::Serialize;

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

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub content: Vec<T>,
    pub page: u32,
    pub size: u32,
    pub total_elements: u64,
    pub total_pages: u64,
}

impl<T> Page<T> {
    pub fn new(content: Vec<T>, req: PageRequest, total: u64) -> Self {
        let size = u64::from(req.size.max(1));
        Self {
            content,
            page: req.page,
            size: req.size,
            total_elements: total,
            total_pages: total.div_ceil(size),
        }
    }
}
