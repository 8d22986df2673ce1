use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::Result;

/// A pool of connections to Herald's database.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: PgPool,
}

impl Store {
    /// Connects, creating the database if it does not exist, and migrates.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store> {
        let options = PgConnectOptions::from_str(url)?
            .log_statements(tracing::log::LevelFilter::Debug)
            .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
        create_database_if_missing(&options).await?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        crate::metrics::describe();
        Ok(Store { pool })
    }

    /// Drops the database `url` names, closing its sessions (tests and
    /// teardown of a deployment; the counterpart of [`Store::connect`]
    /// creating it).
    pub async fn drop_database(url: &str) -> Result<()> {
        let options = PgConnectOptions::from_str(url)?;
        let Some(name) = options.get_database().map(str::to_owned) else {
            return Ok(());
        };
        let mut conn = sqlx::PgConnection::connect_with(&options.database("postgres")).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote(&name)
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A listener for notifications on `channel` (e.g.
    /// [`TENANTS_CHANNEL`](crate::TENANTS_CHANNEL)), on its own connection.
    pub async fn listen(&self, channel: &str) -> Result<sqlx::postgres::PgListener> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(channel).await?;
        Ok(listener)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

async fn create_database_if_missing(options: &PgConnectOptions) -> Result<()> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let admin = options.clone().database("postgres");
    let mut conn = sqlx::PgConnection::connect_with(&admin).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        match sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {}",
            quote(&name)
        )))
        .execute(&mut conn)
        .await
        {
            Ok(_) => tracing::info!(database = %name, "Created the database."),
            // Another service created it at the same moment.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    conn.close().await?;
    Ok(())
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
