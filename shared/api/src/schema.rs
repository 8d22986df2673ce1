//! The rules of a send that one struct's derived schema cannot say: which
//! recipients each channel takes, that a body or a template is required
//! (and a subject for email), and that no text holds a NUL character.
//! [`refine`] adds them to the generated OpenAPI document, so that
//! `/openapi.json` describes exactly what the producer accepts; the
//! schemathesis run of the test suite holds the two together.

use serde_json::{json, Value};

/// Text without NUL characters (every string the API stores or sends).
pub const TEXT: &str = "^[^\\x00]*$";

/// Rust's `char::is_whitespace` and `char::is_control`, as regex classes.
const WHITESPACE: &str =
    "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// An email address as `EmailAddress::parse` takes it: a local part of 1 to
/// 64 printable ASCII characters without SMTP's specials, and a host name of
/// dot-separated labels.
pub fn email_address() -> Value {
    let label = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    json!({
        "type": "string",
        "maxLength": 254,
        "pattern": format!(
            "^[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~.-]{{1,64}}@{label}(?:\\.{label})*$"
        ),
    })
}

/// WeWork member ids `u1|u2` as `WeworkUserIds::parse` takes them: 1 to
/// 1,000 ids of 1 to 64 of `A-Z a-z 0-9 _ - . @`, never `@all`.
pub fn wework_user_ids() -> Value {
    let c = "[A-Za-z0-9_.@-]";
    // An id that is not "@all": not starting with '@', or '@' followed by
    // anything but exactly "all".
    let id = format!(
        "(?:[A-Za-z0-9_.-]{c}{{0,63}}|@(?:{c}{{0,2}}|{c}{{4,63}}|[A-Za-z0-9_.@-&&[^a]]{c}{{2}}|a[^l|]{c}|al[^l|]))"
    )
    .replace("[A-Za-z0-9_.@-&&[^a]]", "[A-Zb-z0-9_.@-]")
    .replace("a[^l|]", "a[A-Za-km-z0-9_.@-]")
    .replace("al[^l|]", "al[A-Za-km-z0-9_.@-]");
    json!({
        "type": "string",
        "pattern": format!("^{id}(?:\\|{id}){{0,999}}$"),
    })
}

/// An http(s) URL as `WebhookUrl::parse` takes it: a host without
/// whitespace, at most 2,048 characters.
pub fn webhook_url() -> Value {
    json!({
        "type": "string",
        "maxLength": 2048,
        "pattern": format!("^https?://[^/?#\\x00{WHITESPACE}]+(?:[/?#][^\\x00]*)?$"),
    })
}

/// The content rules of a message: a template, or a text or HTML body,
/// never both.
fn content() -> Value {
    let string = json!({"type": "string"});
    json!({
        "oneOf": [
            {
                "required": ["template_id"],
                "properties": {"template_id": string, "text": {"type": "null"}, "html": {"type": "null"}},
            },
            {
                "properties": {"template_id": {"type": "null"}},
                "anyOf": [
                    {"required": ["text"], "properties": {"text": string}},
                    {"required": ["html"], "properties": {"html": string}},
                ],
            },
        ]
    })
}

/// The per-channel rules of `SendMessage`.
fn send_message_rules() -> Value {
    let string = json!({"type": "string"});
    let absent = json!({"type": "null"});
    let email = json!({
        "properties": {
            "channel": {"const": "email"},
            "to": email_address(),
            "from": {"anyOf": [email_address(), absent]},
        },
        // A template may supply the subject; a body needs one.
        "oneOf": [
            {
                "required": ["template_id"],
                "properties": {"template_id": string, "text": absent, "html": absent},
            },
            {
                "required": ["subject"],
                "properties": {"template_id": absent, "subject": string},
                "anyOf": [
                    {"required": ["text"], "properties": {"text": string}},
                    {"required": ["html"], "properties": {"html": string}},
                ],
            },
        ],
    });
    let other = |channel: &str, to: Value| {
        let absent = json!({"type": "null"});
        json!({
            "properties": {
                "channel": {"const": channel},
                "to": to,
                "from": absent,
                "subject": absent,
            },
            "allOf": [content()],
        })
    };
    json!([
        email,
        other("wework", wework_user_ids()),
        other("webhook", webhook_url()),
    ])
}

/// A map of strings without NUL characters, of at most `max` entries.
fn text_map(max: Option<u64>) -> Value {
    let mut map = json!({
        "type": ["object", "null"],
        "additionalProperties": {"type": "string", "pattern": TEXT},
        "propertyNames": {"pattern": TEXT},
    });
    if let Some(max) = max {
        map["maxProperties"] = json!(max);
    }
    map
}

/// Adds the rules above to the document's `SendMessage` schema.
pub fn refine(doc: &mut Value) {
    let Some(schema) = doc.pointer_mut("/components/schemas/SendMessage") else {
        return;
    };
    schema["oneOf"] = send_message_rules();
    if let Some(props) = schema["properties"].as_object_mut() {
        props.insert("variables".into(), text_map(None));
        props.insert(
            "metadata".into(),
            text_map(Some(crate::messages::MAX_METADATA as u64)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(schema: &Value, s: &str) -> bool {
        let pattern = schema["pattern"].as_str().expect("a pattern");
        let max = schema["maxLength"].as_u64().unwrap_or(u64::MAX);
        regex::RegexBuilder::new(pattern)
            .size_limit(1 << 30)
            .build()
            .expect("compiles")
            .is_match(s)
            && (s.chars().count() as u64) <= max
    }

    #[test]
    fn the_email_pattern_takes_exactly_what_the_parser_takes() {
        let schema = email_address();
        for s in [
            "a@b",
            "alice@example.com",
            "a.b+c@x-y.example",
            "!#$%&'*+/=?^_`{|}~.-@a",
            "",
            "a",
            "@b",
            "a@",
            "a b@c",
            "a@-b",
            "a@b-",
            "a@b..c",
            "ü@b",
            "a@ü",
            "a\"b@c",
            "a@b@c",
            &format!("{}@b", "x".repeat(64)),
            &format!("{}@b", "x".repeat(65)),
            &format!("a@{}", "b".repeat(63)),
            &format!("a@{}", "b".repeat(64)),
        ] {
            assert_eq!(
                matches(&schema, s),
                herald_domain::EmailAddress::parse("to", s).is_ok(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn the_wework_pattern_takes_exactly_what_the_parser_takes() {
        let schema = wework_user_ids();
        for s in [
            "u1",
            "u1|u2",
            "@all",
            "u1|@all",
            "@al",
            "@alll",
            "@alm",
            "@bll",
            "@",
            "a.b-c_d@e",
            "",
            "u1|",
            "|u1",
            "u 1",
            "ü",
            &"x".repeat(64),
            &"x".repeat(65),
        ] {
            assert_eq!(
                matches(&schema, s),
                herald_domain::WeworkUserIds::parse("to", s).is_ok(),
                "{s:?}"
            );
        }
        let many = vec!["u"; 1000].join("|");
        assert!(matches(&schema, &many));
        assert!(!matches(&schema, &format!("{many}|u")));
    }

    #[test]
    fn the_webhook_pattern_takes_exactly_what_the_parser_takes() {
        let schema = webhook_url();
        for s in [
            "https://example.com",
            "http://a/b?c#d",
            "https://a:8080/x y",
            "https://",
            "https:///x",
            "ftp://a",
            "https://a b/",
            "https://a\u{3000}b",
            "HTTPS://a",
            &format!("https://a/{}", "x".repeat(2040)),
        ] {
            assert_eq!(
                matches(&schema, s),
                herald_domain::WebhookUrl::parse("to", s).is_ok(),
                "{s:?}"
            );
        }
    }
}
