//! Bodies become contract types in one pass (serde), and every failure is
//! one of the API's two refusals: the body is not JSON (400
//! `invalid_json`), or a field is wrong (422 `invalid_field`, naming it with
//! its dotted path, `messages[3].to` inside a batch).

use herald_domain::FieldError;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_path_to_error::Segment;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all (400 `invalid_json`).
    #[error("the body is not valid JSON: {0}")]
    Syntax(String),
    /// JSON of the wrong shape (422 `invalid_field`).
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// Parses `bytes` as a `T`, naming the field at fault.
pub fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => match de.end() {
            Ok(()) => Ok(value),
            Err(trailing) => Err(ParseError::Syntax(trailing.to_string())),
        },
        Err(error) => {
            let path = error.path().clone();
            let inner = error.into_inner();
            // A shape error stops the parse where it is: the rest of the body
            // may still be broken JSON, and that is the first thing to say.
            if !inner.is_data() || serde_json::from_slice::<IgnoredAny>(bytes).is_err() {
                return Err(ParseError::Syntax(inner.to_string()));
            }
            Err(ParseError::Field(field_error(&path, &inner)))
        }
    }
}

/// Parses `bytes` as a `T` that is a JSON object: serde would also take an
/// array for a struct (`[null, null]` as its fields in order), which the
/// API's schema does not allow.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ParseError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        if let Err(e) = serde_json::from_slice::<IgnoredAny>(bytes) {
            return Err(ParseError::Syntax(e.to_string()));
        }
        return Err(ParseError::Field(FieldError::new(
            "",
            "the body must be a JSON object",
        )));
    }
    parse_body(bytes)
}

/// A serde data error as the API says it: the field's dotted path and a
/// sentence without serde's line and column.
fn field_error(path: &serde_path_to_error::Path, error: &serde_json::Error) -> FieldError {
    let mut field = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => field.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !field.is_empty() {
                    field.push('.');
                }
                field.push_str(key);
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    let text = error.to_string();
    let message = match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let join = |parent: &str, name: &str| {
        if parent.is_empty() {
            name.to_owned()
        } else if parent == name || parent.ends_with(&format!(".{name}")) {
            parent.to_owned()
        } else {
            format!("{parent}.{name}")
        }
    };
    if let Some(name) = quoted_after(message, "unknown field `") {
        return FieldError::new(join(&field, name), "is not a field of this request");
    }
    if let Some(name) = quoted_after(message, "missing field `") {
        return FieldError::new(join(&field, name), "is required");
    }
    FieldError::new(field, message)
}

/// The name in serde's "unknown field `x`, …" and "missing field `x`".
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

/// Splits a batch item's path (`messages[3].to`) into its index and the
/// field inside the item (`to`).
pub fn split_item(field: &str, list: &str) -> Option<(usize, String)> {
    let rest = field.strip_prefix(list)?.strip_prefix('[')?;
    let (index, inner) = rest.split_once(']')?;
    let index = index.parse().ok()?;
    Some((index, inner.trim_start_matches('.').to_owned()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
        #[serde(default)]
        tags: BTreeMap<String, String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        #[serde(default)]
        items: Vec<Inner>,
    }

    fn field(body: &str) -> String {
        match parse_body::<Outer>(body.as_bytes()) {
            Err(ParseError::Field(e)) => e.field,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn each_shape_error_names_its_dotted_path() {
        assert_eq!(field(r#"{"name": 5}"#), "name");
        assert_eq!(field(r#"{}"#), "name");
        assert_eq!(field(r#"{"name": "x", "colour": 1}"#), "colour");
        assert_eq!(
            field(r#"{"name": "x", "items": [{"n": 1}, {"n": -1}]}"#),
            "items[1].n"
        );
        assert_eq!(field(r#"{"name": "x", "items": [{}]}"#), "items[0].n");
        assert_eq!(
            field(r#"{"name": "x", "items": [{"n": 1, "x": 2}]}"#),
            "items[0].x"
        );
        assert_eq!(
            field(r#"{"name": "x", "items": [{"n": 1, "tags": {"k": 1}}]}"#),
            "items[0].tags.k"
        );
    }

    #[test]
    fn messages_are_sentences_without_serde_positions() {
        let Err(ParseError::Field(e)) = parse_body::<Outer>(br#"{"name": "x", "colour": 1}"#)
        else {
            panic!("refused")
        };
        assert_eq!(e.message, "is not a field of this request");
        let Err(ParseError::Field(e)) = parse_body::<Outer>(br#"{"name": 5}"#) else {
            panic!("refused")
        };
        assert!(!e.message.contains("line"), "{}", e.message);
    }

    #[test]
    fn broken_json_is_a_syntax_error_even_after_a_shape_error() {
        for body in [
            "{not json",
            r#"{"name": 5, "#,
            r#"{"name": "x"} trailing"#,
            "",
        ] {
            assert!(
                matches!(
                    parse_body::<Outer>(body.as_bytes()),
                    Err(ParseError::Syntax(_))
                ),
                "{body}"
            );
        }
    }

    #[test]
    fn an_object_body_refuses_an_array_that_serde_would_take() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Pair {
            a: Option<u32>,
            b: Option<u32>,
        }
        assert!(
            parse_body::<Pair>(b"[null, null]").is_ok(),
            "serde's seq form"
        );
        assert!(matches!(
            parse_object::<Pair>(b" [null, null]"),
            Err(ParseError::Field(_))
        ));
        assert!(matches!(
            parse_object::<Pair>(b"[null"),
            Err(ParseError::Syntax(_))
        ));
        assert!(parse_object::<Pair>(br#" {"a": 1}"#).is_ok());
    }

    #[test]
    fn a_batch_path_splits_into_index_and_field() {
        assert_eq!(
            split_item("messages[3].to", "messages"),
            Some((3, "to".into()))
        );
        assert_eq!(
            split_item("messages[12]", "messages"),
            Some((12, String::new()))
        );
        assert_eq!(split_item("messages", "messages"), None);
    }
}
