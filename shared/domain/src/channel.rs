use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// How a message reaches its recipient. Each channel has its own user queue
/// per tenant and its own central queue, so a backlog on one never blocks
/// another.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Wework,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Wework, Channel::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Wework => "wework",
            Channel::Webhook => "webhook",
        }
    }

    pub fn to_proto(self) -> herald_proto::v1::Channel {
        match self {
            Channel::Email => herald_proto::v1::Channel::Email,
            Channel::Wework => herald_proto::v1::Channel::Wework,
            Channel::Webhook => herald_proto::v1::Channel::Webhook,
        }
    }

    pub fn from_proto(value: i32) -> Option<Self> {
        match herald_proto::v1::Channel::try_from(value).ok()? {
            herald_proto::v1::Channel::Email => Some(Channel::Email),
            herald_proto::v1::Channel::Wework => Some(Channel::Wework),
            herald_proto::v1::Channel::Webhook => Some(Channel::Webhook),
            herald_proto::v1::Channel::Unspecified => None,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "email" => Ok(Channel::Email),
            "wework" => Ok(Channel::Wework),
            "webhook" => Ok(Channel::Webhook),
            other => Err(FieldError::new(
                "channel",
                format!("unknown channel {other:?}; expected \"email\", \"wework\" or \"webhook\""),
            )),
        }
    }
}
