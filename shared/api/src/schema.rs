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
                "properties": {"template_id": {"type": "null"}, "template_version": {"type": "null"}},
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
        // A template supplies the subject; a body needs one.
        "oneOf": [
            {
                "required": ["template_id"],
                "properties": {"template_id": string, "subject": absent, "text": absent, "html": absent},
            },
            {
                "required": ["subject"],
                "properties": {"template_id": absent, "template_version": absent, "subject": string},
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

/// A string without NUL characters, or null.
fn opt_text() -> Value {
    json!({"type": ["string", "null"], "pattern": TEXT})
}

/// An optional non-negative integer (`Option<u64>` and kin).
fn opt_count(max: u64) -> Value {
    json!({"type": ["integer", "null"], "minimum": 0, "maximum": max})
}

/// Each provider kind's `config`, as `ProviderConfig::parse` takes it.
pub fn provider_configs() -> [(&'static str, &'static str, Value); 3] {
    let text = json!({"type": "string", "pattern": TEXT});
    let required_text = json!({"type": "string", "minLength": 1, "pattern": TEXT});
    let smtp = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["host", "port"],
        "properties": {
            "host": required_text,
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "tls": {"enum": ["none", "starttls", "tls"]},
            "ca_file": opt_text(),
            "accept_invalid_certs": {"type": "boolean"},
            "username": opt_text(),
            "password": opt_text(),
            "from": {"anyOf": [email_address(), {"type": "null"}]},
            "pool_size": {"type": ["integer", "null"], "minimum": 1, "maximum": 256},
            "message_id_domain": opt_text(),
            "timeout_secs": opt_count(u64::MAX),
            "callback_secret": opt_text(),
        },
        // A username needs its password, and the other way round.
        "anyOf": [
            {
                "required": ["username", "password"],
                "properties": {"username": text, "password": text},
            },
            {"properties": {"username": {"type": "null"}, "password": {"type": "null"}}},
        ],
    });
    let wework = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["corp_id", "corp_secret", "agent_id"],
        "properties": {
            "base_url": {"type": "string", "pattern": "^https?://[^\\x00]*$"},
            "corp_id": required_text,
            "corp_secret": required_text,
            "agent_id": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX},
            "token": opt_text(),
            "encoding_aes_key": {"type": ["string", "null"], "minLength": 43, "maxLength": 43, "pattern": TEXT},
            "duplicate_check_interval": opt_count(u64::from(u32::MAX)),
            "timeout_ms": opt_count(u64::MAX),
            "callback_secret": opt_text(),
        },
    });
    let webhook = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["signing_secret"],
        "properties": {
            "signing_secret": {"type": "string", "minLength": 16, "pattern": TEXT},
            "timeout_ms": opt_count(u64::MAX),
            "allow_private_addresses": {"type": "boolean"},
            "callback_secret": opt_text(),
        },
    });
    [
        ("smtp", "email", smtp),
        ("wework", "wework", wework),
        ("webhook", "webhook", webhook),
    ]
}

/// The per-channel parts of `NewTemplate` (herald_templates' shape check):
/// email a one-line subject and a text and/or HTML body; WeWork exactly one
/// of text, markdown or a text card; a webhook a text and/or HTML body.
fn new_template_rules() -> Value {
    let string = json!({"type": "string", "pattern": TEXT});
    let absent = json!({"type": "null"});
    let card = json!({"type": "object"});
    let body = json!([
        {"required": ["text"], "properties": {"text": string}},
        {"required": ["html"], "properties": {"html": string}},
    ]);
    json!([
        {
            "required": ["subject"],
            "properties": {
                "channel": {"const": "email"},
                "subject": {"type": "string", "pattern": "^[^\\x00\\r\\n]*$"},
                "markdown": absent,
                "textcard": absent,
            },
            "anyOf": body,
        },
        {
            "properties": {"channel": {"const": "wework"}, "subject": absent, "html": absent},
            "oneOf": [
                {"required": ["text"], "properties": {"text": string, "markdown": absent, "textcard": absent}},
                {"required": ["markdown"], "properties": {"markdown": string, "text": absent, "textcard": absent}},
                {"required": ["textcard"], "properties": {"textcard": card, "text": absent, "markdown": absent}},
            ],
        },
        {
            "properties": {
                "channel": {"const": "webhook"},
                "subject": absent,
                "markdown": absent,
                "textcard": absent,
            },
            "anyOf": body,
        },
    ])
}

/// A request body with a `#[serde(flatten)]` part is generated as an
/// `allOf` that says nothing of unknown fields, which the parser refuses:
/// it becomes one object of all the parts' properties, closed.
fn merge_flattened(schemas: &mut Value, name: &str) {
    let Some(all) = schemas.pointer(&format!("/{name}/allOf")).cloned() else {
        return;
    };
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for part in all.as_array().into_iter().flatten() {
        let part = match part["$ref"].as_str() {
            Some(r) => r
                .strip_prefix("#/components/schemas/")
                .and_then(|n| schemas.get(n))
                .cloned()
                .unwrap_or_default(),
            None => part.clone(),
        };
        if let Some(p) = part["properties"].as_object() {
            properties.extend(p.clone());
        }
        if let Some(r) = part["required"].as_array() {
            required.extend(r.iter().cloned());
        }
    }
    let description = schemas[name]["description"].clone();
    schemas[name] = json!({
        "type": "object",
        "description": description,
        "additionalProperties": false,
        "properties": properties,
        "required": required,
    });
}

/// Adds the rules above to the document's schemas.
pub fn refine(doc: &mut Value) {
    let Some(schemas) = doc.pointer_mut("/components/schemas") else {
        return;
    };
    for name in ["NewTemplate", "TemplateVersion"] {
        merge_flattened(schemas, name);
        if let Some(t) = schemas.get_mut(name) {
            t["oneOf"] = new_template_rules();
        }
    }
    if let Some(send) = schemas.get_mut("SendMessage") {
        send["oneOf"] = send_message_rules();
        if let Some(props) = send["properties"].as_object_mut() {
            props.insert("variables".into(), text_map(None));
            props.insert(
                "metadata".into(),
                text_map(Some(crate::messages::MAX_METADATA as u64)),
            );
        }
    }
    for pointer in [
        "/NewTenant/properties/webhook_url",
        "/TenantPatch/properties/webhook_url",
    ] {
        if let Some(url) = schemas.pointer_mut(pointer) {
            *url = json!({"anyOf": [webhook_url(), {"type": "null"}]});
        }
    }
    if let Some(address) = schemas.pointer_mut("/NewSuppression/properties/address") {
        *address = email_address();
    }
    if let Some(tz) = schemas.pointer_mut("/SendWindow/properties/tz") {
        let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect();
        *tz = json!({"type": "string", "enum": zones});
    }
    if let Some(days) = schemas.pointer_mut("/SendWindow/properties/days") {
        *days = json!({"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 7}});
    }
    let configs = provider_configs();
    if let Some(new) = schemas.get_mut("NewProvider") {
        let branches: Vec<Value> = configs
            .iter()
            .map(|(kind, channel, config)| {
                json!({"properties": {
                    "kind": {"const": kind},
                    "channel": {"enum": [channel, null]},
                    "config": config,
                }})
            })
            .collect();
        new["oneOf"] = Value::Array(branches);
    }
    if let Some(config) = schemas.pointer_mut("/ProviderPatch/properties/config") {
        let any: Vec<Value> = configs.iter().map(|(_, _, c)| c.clone()).collect();
        *config = json!({"anyOf": [{"anyOf": any}, {"type": "null"}]});
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
