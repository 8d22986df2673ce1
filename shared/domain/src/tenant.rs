//! A tenant's own identifiers: the short code operators type and the name
//! people read.

use std::fmt;

use serde::Serialize;

use crate::{check_text, FieldError};

/// A tenant's code: 1 to 64 characters of `a-z 0-9 - _`, unique, used in
/// logs and by operators.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TenantCode(String);

impl TenantCode {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            return Err(FieldError::new(
                field,
                "must be 1 to 64 characters of a-z 0-9 - _",
            ));
        }
        Ok(TenantCode(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A display name of 1 to `max` characters without NUL characters (tenants
/// and providers).
pub fn display_name(field: &str, raw: &str, max: usize) -> Result<String, FieldError> {
    check_text(field, raw)?;
    if raw.is_empty() || raw.len() > max {
        return Err(FieldError::new(
            field,
            format!("must have 1 to {max} characters"),
        ));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_code_is_short_lowercase_ascii() {
        assert!(TenantCode::parse("code", "shop-eu_1").is_ok());
        for bad in ["", "Shop", "shop eu", "ü", &"x".repeat(65)] {
            let e = TenantCode::parse("code", bad).expect_err(bad);
            assert_eq!(e.field, "code");
        }
    }

    #[test]
    fn a_display_name_has_a_bounded_length() {
        assert_eq!(display_name("name", "Shop", 200).as_deref(), Ok("Shop"));
        assert_eq!(
            display_name("name", "", 200).expect_err("empty").field,
            "name"
        );
        assert!(display_name("name", &"x".repeat(201), 200).is_err());
        assert!(display_name("name", "a\0b", 200).is_err());
    }
}
