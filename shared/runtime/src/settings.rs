use std::fmt;

/// A secret from configuration: shown as `***` in logs and `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// The connection settings every service reads (README.md, "Configuration").
/// Each has a `HERALD_*` variable and a flag that overrides it.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonSettings {
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "HERALD_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Redis URL.
    #[arg(
        long,
        env = "HERALD_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,
    /// PostgreSQL URL; the database is created and migrated on start if missing.
    #[arg(
        long,
        env = "HERALD_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/herald"
    )]
    pub database_url: String,
    /// Prefix of every exchange, queue and Redis key.
    #[arg(long, env = "HERALD_NAMESPACE", default_value = "herald")]
    pub namespace: String,
    /// The most messages a tenant's user queue holds; past it enqueues
    /// answer 503 with Retry-After. Fixed when a queue is first declared.
    #[arg(
        long,
        env = "HERALD_USER_QUEUE_MAX_LENGTH",
        default_value_t = 2_000_000
    )]
    pub user_queue_max_length: i64,
    /// Where recipients reach the producer: the base of the unsubscribe
    /// links (`List-Unsubscribe`) the workers put in every email.
    #[arg(
        long,
        env = "HERALD_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub public_url: String,
    /// The domain of the return paths: each email's envelope sender is
    /// `bounce+<token>@<this domain>` (VERP), so a bounce names its
    /// message. Point the domain's MX at the producer's bounce listener
    /// (`HERALD_BOUNCE_SMTP_ADDR`). Unset: the sender is the From address.
    #[arg(long, env = "HERALD_BOUNCE_DOMAIN")]
    pub bounce_domain: Option<String>,
}

impl CommonSettings {
    /// Settings for tests: the local services, a given namespace and database.
    pub fn local(namespace: &str, database: &str) -> Self {
        CommonSettings {
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            database_url: format!("postgres://postgres@127.0.0.1:5432/{database}"),
            namespace: namespace.into(),
            user_queue_max_length: 2_000_000,
            public_url: "http://127.0.0.1:8080".into(),
            bounce_domain: None,
        }
    }

    /// Refuses a namespace that would not make valid queue names or keys.
    pub fn validate(&self) -> anyhow::Result<()> {
        let ok = !self.namespace.is_empty()
            && self.namespace.len() <= 64
            && self
                .namespace
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        anyhow::ensure!(
            ok,
            "HERALD_NAMESPACE {:?} must be 1 to 64 characters of A-Z a-z 0-9 - _",
            self.namespace
        );
        anyhow::ensure!(
            (self.public_url.starts_with("http://") || self.public_url.starts_with("https://"))
                && !self.public_url.contains(char::is_whitespace),
            "HERALD_PUBLIC_URL {:?} must be an http(s) URL",
            self.public_url
        );
        Ok(())
    }
}
