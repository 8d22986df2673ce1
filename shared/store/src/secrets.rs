//! Keys Herald makes for itself (`herald_secrets`): the first service to
//! ask makes one, every other reads the same.

use crate::{Result, Store};

impl Store {
    /// The 32-byte key named `name`, made (from `fresh`) if there is none.
    pub async fn shared_secret(&self, name: &str, fresh: [u8; 32]) -> Result<Vec<u8>> {
        sqlx::query("INSERT INTO herald_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(fresh.as_slice())
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM herald_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
