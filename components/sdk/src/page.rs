//! Pagination as the design's conventions define it: `?page=&pageSize=`
//! (pageSize 1–100, default 20) in, `{items, page, pageSize, total}` out.

use serde::Serialize;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// 1-based page number.
    pub page: u32,
    /// Items per page.
    pub page_size: u32,
}

impl PageRequest {
    /// Most items one page may hold.
    pub const MAX_SIZE: u32 = 100;
    /// Items per page when the client does not say.
    pub const DEFAULT_SIZE: u32 = 20;

    /// Parses the raw query values; an error names the bad parameter.
    pub fn parse(page: Option<&str>, page_size: Option<&str>) -> Result<PageRequest, String> {
        let number = |name: &str, raw: Option<&str>, default: u32, max: u32| match raw {
            None => Ok(default),
            Some(raw) => raw
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| format!("{name} must be an integer from 1 to {max}")),
        };
        Ok(PageRequest {
            page: number("page", page, 1, u32::MAX / Self::MAX_SIZE)?,
            page_size: number("pageSize", page_size, Self::DEFAULT_SIZE, Self::MAX_SIZE)?,
        })
    }

    /// SQL `LIMIT`.
    pub fn limit(&self) -> i64 {
        self.page_size.into()
    }

    /// SQL `OFFSET`.
    pub fn offset(&self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.page_size)
    }
}

/// One page of results.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub page_size: u32,
    pub total: u64,
}

impl<T> Page<T> {
    /// Wraps the items of `request`'s page out of `total`.
    pub fn new(items: Vec<T>, request: PageRequest, total: u64) -> Self {
        Page {
            items,
            page: request.page,
            page_size: request.page_size,
            total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PageRequest;

    #[test]
    fn defaults_bounds_and_offsets() {
        let p = PageRequest::parse(None, None).unwrap();
        assert_eq!((p.page, p.page_size, p.offset()), (1, 20, 0));
        let p = PageRequest::parse(Some("3"), Some("10")).unwrap();
        assert_eq!(p.offset(), 20);
        assert!(PageRequest::parse(Some("0"), None).is_err());
        assert!(
            PageRequest::parse(None, Some("101"))
                .unwrap_err()
                .contains("pageSize")
        );
    }
}
