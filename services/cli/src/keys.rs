//! `herald keys create|revoke`: a tenant's API keys. The key itself is
//! printed once, by `create`; Herald stores only its hash.

use std::io::Write;

use clap::Subcommand;
use uuid::Uuid;

use crate::client::Explain;
use crate::Context;

#[derive(Debug, Subcommand)]
pub enum Keys {
    /// Create an API key for a tenant; the key is printed this once.
    Create {
        /// The tenant's id.
        #[arg(long)]
        tenant: Uuid,
    },
    /// Revoke one of a tenant's keys.
    Revoke {
        /// The tenant's id.
        #[arg(long)]
        tenant: Uuid,
        /// The key's id (as `keys create` printed it), not the key.
        key_id: Uuid,
    },
}

pub async fn run(cx: &Context, cmd: Keys, out: &mut impl Write) -> anyhow::Result<()> {
    match cmd {
        Keys::Create { tenant } => {
            let created = cx.admin.api.create_key(tenant).await.explained(&cx.admin)?;
            if !cx.json(out, &created)? {
                writeln!(out, "Created key {} for tenant {tenant}.", created.id)?;
                writeln!(
                    out,
                    "The key is shown only this once (Herald keeps its hash); store it now:"
                )?;
                writeln!(out, "{}", created.key)?;
            }
        }
        Keys::Revoke { tenant, key_id } => {
            let revoked = cx
                .admin
                .api
                .revoke_key(tenant, key_id)
                .await
                .explained(&cx.admin)?;
            if !cx.json(out, &revoked)? {
                writeln!(
                    out,
                    "Revoked key {key_id} of tenant {tenant}; this producer refuses it now, other replicas within 10 s."
                )?;
            }
        }
    }
    Ok(())
}
