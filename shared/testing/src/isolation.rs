//! One test's corner of the machine's RabbitMQ, Redis and PostgreSQL: a
//! random namespace (queues, exchanges, Redis keys) and a fresh database,
//! removed together by [`Isolation::teardown`].

use std::time::Duration;

use herald_domain::TenantId;
use herald_runtime::CommonSettings;
use herald_store::Store;

/// `{prefix}_` and twelve random lowercase hex digits: a valid
/// `HERALD_NAMESPACE`, database name suffix or tenant code.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// A test's namespace and database. Nothing exists until a service (or
/// [`Isolation::store`]) creates it; [`Isolation::teardown`] deletes
/// whatever was created.
#[derive(Debug, Clone)]
pub struct Isolation {
    /// `HERALD_NAMESPACE`: `{prefix}_{12 hex}`.
    pub namespace: String,
    /// `herald_{namespace}`.
    pub database: String,
}

impl Isolation {
    /// A fresh namespace `{prefix}_{12 hex}` and database `herald_{namespace}`.
    pub fn new(prefix: &str) -> Isolation {
        let namespace = unique(prefix);
        Isolation {
            database: format!("herald_{namespace}"),
            namespace,
        }
    }

    /// The local services' URLs with this namespace and database, as every
    /// service's `Settings::for_tests` uses them.
    pub fn settings(&self) -> CommonSettings {
        CommonSettings::local(&self.namespace, &self.database)
    }

    pub fn database_url(&self) -> String {
        self.settings().database_url
    }

    /// A store on this test's database, created and migrated if need be.
    pub async fn store(&self, max_connections: u32) -> Store {
        Store::connect(&self.database_url(), max_connections)
            .await
            .unwrap_or_else(|e| panic!("the test database {}: {e}", self.database))
    }

    /// A plain pool on this test's database (which must exist).
    pub async fn pool(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::PgPool::connect(&self.database_url()).await?)
    }

    /// The broker topology of this namespace.
    pub fn topology(&self) -> herald_broker::Topology {
        herald_broker::Topology::new(&self.namespace)
    }

    /// Deletes the namespace's queues and exchanges (every tenant's in the
    /// database included), its Redis keys, and the database. Best effort:
    /// what does not exist is skipped.
    pub async fn teardown(&self) {
        let settings = self.settings();
        let tenants: Vec<TenantId> = match self.pool().await {
            Ok(pool) => {
                let ids: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM tenants")
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_default();
                pool.close().await;
                ids.into_iter().map(TenantId).collect()
            }
            Err(_) => Vec::new(),
        };
        self.delete_queues(&tenants).await;
        self.delete_keys().await;
        let _ = Store::drop_database(&settings.database_url).await;
    }

    /// Deletes the namespace's queues and exchanges, those of `tenants`
    /// included.
    pub async fn delete_queues(&self, tenants: &[TenantId]) {
        let amqp = self.settings().amqp_url;
        if let Ok(broker) =
            herald_broker::connect(&amqp, "herald-test-teardown", Duration::from_secs(5)).await
        {
            if let Ok(ch) = broker.channel().await {
                let _ = self.topology().delete_all(&ch, tenants).await;
            }
            broker.close().await;
        }
    }

    /// Deletes every Redis key of the namespace (`{namespace}:*`).
    pub async fn delete_keys(&self) {
        let Ok(client) = redis::Client::open(self.settings().redis_url) else {
            return;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.namespace))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
        }
    }
}
