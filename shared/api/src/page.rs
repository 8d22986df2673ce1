//! The envelope of every list: `{items, next_cursor}`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use herald_domain::FieldError;

/// A page of a list; pass `next_cursor` as `cursor` for the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from `limit + 1` rows read: the extra row only says that more
    /// follow, and the last kept row's id is the cursor.
    pub fn from_rows<R>(
        mut rows: Vec<R>,
        limit: usize,
        cursor: impl Fn(&R) -> String,
        show: impl Fn(R) -> T,
    ) -> Page<T> {
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(&cursor)
        } else {
            None
        };
        Page {
            items: rows.into_iter().map(show).collect(),
            next_cursor,
        }
    }
}

/// Most items one page holds, and how many when `limit` is absent.
pub const MAX_PAGE: u32 = 1000;
pub const DEFAULT_PAGE: u32 = 100;

/// `?cursor=&limit=` of a list. Both stay strings here so that a bad value
/// is refused in the API's error shape, naming the parameter.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `next_cursor` of the previous page (an id; empty is the first page).
    #[param(
        pattern = "^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    pub cursor: Option<String>,
    /// 1 to 1,000; 100 when absent.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

impl PageQuery {
    /// The cursor (an id, when given) and the page size.
    pub fn parse(&self) -> Result<(Option<uuid::Uuid>, u32), FieldError> {
        Ok((
            parse_cursor(self.cursor.as_deref())?,
            parse_limit(self.limit.as_deref())?,
        ))
    }
}

/// An id in its hyphenated form (the only one the API writes, and the one
/// its schema describes).
pub(crate) fn parse_id<T: From<uuid::Uuid>>(raw: &str) -> Option<T> {
    (raw.len() == 36)
        .then(|| raw.parse::<uuid::Uuid>().ok())
        .flatten()
        .map(T::from)
}

pub(crate) fn parse_cursor(raw: Option<&str>) -> Result<Option<uuid::Uuid>, FieldError> {
    raw.filter(|c| !c.is_empty())
        .map(|c| {
            parse_id(c)
                .ok_or_else(|| FieldError::new("cursor", "is not a cursor from a previous page"))
        })
        .transpose()
}

pub(crate) fn parse_limit(raw: Option<&str>) -> Result<u32, FieldError> {
    match raw {
        None => Ok(DEFAULT_PAGE),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| FieldError::new("limit", "must be an integer from 1 to 1000")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_keeps_limit_rows_and_names_the_last_as_cursor() {
        let page = Page::from_rows(vec![1, 2, 3], 2, |r| r.to_string(), |r| r * 10);
        assert_eq!(page.items, vec![10, 20]);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let last = Page::from_rows(vec![1, 2], 2, |r| r.to_string(), |r| r);
        assert_eq!(last.next_cursor, None);
    }

    #[test]
    fn a_bad_limit_or_cursor_names_the_parameter() {
        for limit in ["0", "1001", "ten", "-1"] {
            let q = PageQuery {
                cursor: None,
                limit: Some(limit.into()),
            };
            assert_eq!(q.parse().expect_err(limit).field, "limit");
        }
        let q = PageQuery {
            cursor: Some("nope".into()),
            limit: None,
        };
        assert_eq!(q.parse().expect_err("cursor").field, "cursor");
        assert_eq!(PageQuery::default().parse(), Ok((None, DEFAULT_PAGE)));
    }
}
