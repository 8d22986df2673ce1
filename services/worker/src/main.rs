use anyhow::Context;
use clap::Parser;
use herald_runtime::Stop;
use herald_worker::{App, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let _telemetry = herald_telemetry::init("herald-worker")?;
    herald_runtime::supervise("herald-worker", |shutdown| {
        let settings = settings.clone();
        async move {
            // A SIGTERM while connecting (RabbitMQ away) ends it at once.
            let app = tokio::select! {
                app = App::build(settings) => app
                    .context("Failed to start the worker")
                    .map_err(Stop::Build)?,
                _ = shutdown.wait() => return Ok(()),
            };
            app.run(async move { shutdown.wait().await })
                .await
                .map_err(Stop::Run)
        }
    })
    .await
}
