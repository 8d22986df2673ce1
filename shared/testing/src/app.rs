//! A producer on port 0 in its own [`Isolation`], with the admin token and
//! a typed client, for every test crate that talks to the HTTP API.

use std::time::Duration;

use herald_api::{Client, NewTenant, Tenant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::Isolation;

/// A running producer. [`TestApp::stop`] stops it and tears its isolation
/// down; [`TestApp::shutdown`] only stops it.
pub struct TestApp {
    pub isolation: Isolation,
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// The gRPC API, `http://127.0.0.1:port`.
    pub grpc_url: String,
    /// The return path's SMTP listener (0: none configured).
    pub bounce_port: u16,
    pub admin_token: String,
    /// A typed client holding the admin token ([`Client::with_token`] for a
    /// tenant's key).
    pub admin: Client,
    /// A plain HTTP client, for tests of raw wire bytes and error bodies.
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// A producer in a fresh isolation (namespace `{prefix}_{12 hex}`).
    pub async fn spawn(prefix: &str, admin_token: &str) -> TestApp {
        TestApp::start(Isolation::new(prefix), admin_token)
            .await
            .expect("the producer builds")
    }

    /// A producer in `isolation` (which [`TestApp::stop`] tears down).
    pub async fn start(isolation: Isolation, admin_token: &str) -> anyhow::Result<TestApp> {
        TestApp::start_with(isolation, admin_token, |_| {}).await
    }

    /// [`TestApp::start`] with the test's own settings.
    pub async fn start_with(
        isolation: Isolation,
        admin_token: &str,
        tweak: impl FnOnce(&mut herald_producer::Settings),
    ) -> anyhow::Result<TestApp> {
        let mut settings = herald_producer::Settings::for_tests(
            &isolation.namespace,
            &isolation.database,
            admin_token,
        );
        tweak(&mut settings);
        let app = herald_producer::App::build(settings).await?;
        let url = format!("http://127.0.0.1:{}", app.port());
        let grpc_url = format!("http://127.0.0.1:{}", app.grpc_port());
        let bounce_port = app.bounce_port();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        Ok(TestApp {
            admin: Client::new(&url, admin_token)?,
            isolation,
            url,
            grpc_url,
            bounce_port,
            admin_token: admin_token.to_owned(),
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// A typed client with `token` (a tenant's API key).
    pub fn client(&self, token: &str) -> Client {
        self.admin.with_token(token)
    }

    /// Creates a tenant `code` and an API key for it: the tenant and the key.
    pub async fn tenant_with_key(&self, code: &str) -> anyhow::Result<(Tenant, String)> {
        let tenant = self
            .admin
            .create_tenant(&NewTenant {
                code: code.into(),
                name: code.into(),
                weight: None,
                daily_quota: None,
                rate_limit_per_sec: None,
                webhook_url: None,
                webhook_events: None,
                tracking: None,
            })
            .await
            .map_err(|e| anyhow::anyhow!("tenant {code}: {e}"))?;
        let key = self
            .admin
            .create_key(tenant.id)
            .await
            .map_err(|e| anyhow::anyhow!("a key for {code}: {e}"))?;
        Ok((tenant, key.key))
    }

    /// Stops the producer (as SIGTERM would) and returns how it ended;
    /// the isolation stays. A second call answers `Ok`.
    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match tokio::time::timeout(Duration::from_secs(40), task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => anyhow::bail!("the producer panicked: {e}"),
            Err(_) => anyhow::bail!("the producer did not stop within 40 s"),
        }
    }

    /// Stops the producer and tears the isolation down (queues, Redis keys,
    /// database), whether or not it ended cleanly.
    pub async fn stop(mut self) {
        let _ = self.shutdown().await;
        self.isolation.teardown().await;
    }
}
