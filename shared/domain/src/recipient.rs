use std::fmt;

use serde::Serialize;

use crate::{Channel, FieldError};

/// An email address, checked for the shape SMTP needs (`local@domain`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let bad =
            |why: &str| FieldError::new(field, format!("{raw:?} is not an email address: {why}"));
        if raw.len() > 254 {
            return Err(bad("longer than 254 characters"));
        }
        let (local, domain) = raw.rsplit_once('@').ok_or_else(|| bad("no '@'"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(bad("the part before '@' must have 1 to 64 characters"));
        }
        // Printable ASCII without SMTP's specials: Herald does not claim
        // SMTPUTF8, and the OpenAPI pattern says the same (herald-api).
        if local
            .chars()
            .any(|c| !c.is_ascii_graphic() || "<>()[]\\,;:\"@".contains(c))
        {
            return Err(bad(
                "the part before '@' has a character SMTP does not allow",
            ));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        if domain.is_empty() || domain.len() > 253 || !labels.iter().all(label_ok) {
            return Err(bad("the domain is not a valid host name"));
        }
        Ok(EmailAddress(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// WeWork member ids, `"u1|u2"` on the wire: 1 to 1,000 ids of 1 to 64
/// characters each. Each id costs one unit of the app's quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct WeworkUserIds(Vec<String>);

impl WeworkUserIds {
    pub const MAX: usize = 1000;

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let ids: Vec<String> = raw.split('|').map(str::to_owned).collect();
        if ids.len() > Self::MAX {
            return Err(FieldError::new(
                field,
                format!("at most {} WeWork user ids, got {}", Self::MAX, ids.len()),
            ));
        }
        for id in &ids {
            if id == "@all" {
                return Err(FieldError::new(
                    field,
                    "\"@all\" is not accepted: name the recipients so quotas can be counted",
                ));
            }
            let ok = !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c));
            if !ok {
                return Err(FieldError::new(
                    field,
                    format!("{id:?} is not a WeWork user id (1 to 64 of A-Z a-z 0-9 _ - . @, separated by '|')"),
                ));
            }
        }
        Ok(WeworkUserIds(ids))
    }

    pub fn ids(&self) -> &[String] {
        &self.0
    }

    pub fn joined(&self) -> String {
        self.0.join("|")
    }
}

/// An http(s) URL a webhook provider posts to. Whether its host may be
/// private or loopback is the provider's decision, checked when sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let rest = raw
            .strip_prefix("https://")
            .or_else(|| raw.strip_prefix("http://"))
            .ok_or_else(|| FieldError::new(field, format!("{raw:?} is not an http(s) URL")))?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty() || host.contains(char::is_whitespace) || raw.chars().count() > 2048 {
            return Err(FieldError::new(field, format!("{raw:?} has no valid host")));
        }
        Ok(WebhookUrl(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message's recipients, parsed for its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    Email(EmailAddress),
    Wework(WeworkUserIds),
    Webhook(WebhookUrl),
}

impl Recipients {
    pub fn parse(channel: Channel, field: &str, raw: &str) -> Result<Self, FieldError> {
        match channel {
            Channel::Email => EmailAddress::parse(field, raw).map(Recipients::Email),
            Channel::Wework => WeworkUserIds::parse(field, raw).map(Recipients::Wework),
            Channel::Webhook => WebhookUrl::parse(field, raw).map(Recipients::Webhook),
        }
    }

    /// Units of provider quota a send costs (a WeWork send to five is five).
    pub fn cost(&self) -> u32 {
        match self {
            Recipients::Wework(ids) => ids.ids().len() as u32,
            _ => 1,
        }
    }

    /// The list as it travels in the job envelope.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Recipients::Email(a) => vec![a.as_str().to_owned()],
            Recipients::Wework(ids) => ids.ids().to_vec(),
            Recipients::Webhook(u) => vec![u.as_str().to_owned()],
        }
    }

    /// The recipient as shown in the record (`to`).
    pub fn display(&self) -> String {
        match self {
            Recipients::Email(a) => a.as_str().to_owned(),
            Recipients::Wework(ids) => ids.joined(),
            Recipients::Webhook(u) => u.as_str().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_addresses_parse_and_broken_ones_name_the_field() {
        assert!(EmailAddress::parse("to", "alice@example.com").is_ok());
        assert!(EmailAddress::parse("to", "a.b+tag@mail.example.co").is_ok());
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "al ice@example.com",
            "a@exa_mple.com",
            "a@-x.com",
        ] {
            let err = EmailAddress::parse("to", bad).expect_err(bad);
            assert_eq!(err.field, "to");
        }
    }

    #[test]
    fn wework_ids_split_on_bars_and_cost_one_each() {
        let r = Recipients::parse(Channel::Wework, "to", "u1|u2|zhang.san").expect("valid");
        assert_eq!(r.cost(), 3);
        assert!(WeworkUserIds::parse("to", "u1||u2").is_err());
        assert!(WeworkUserIds::parse("to", "@all").is_err());
    }

    #[test]
    fn webhook_urls_need_http_or_https_and_a_host() {
        assert!(WebhookUrl::parse("to", "https://hooks.example.com/x").is_ok());
        assert!(WebhookUrl::parse("to", "ftp://x").is_err());
        assert!(WebhookUrl::parse("to", "https:///path").is_err());
    }
}
