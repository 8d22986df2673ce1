use anyhow::Context;
use clap::Parser;
use herald_runtime::Stop;
use herald_scheduler::{App, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let _telemetry = herald_telemetry::init("herald-scheduler")?;
    herald_runtime::supervise("herald-scheduler", |shutdown| {
        let settings = settings.clone();
        async move {
            // A SIGTERM while connecting (RabbitMQ away) ends it at once.
            let app = tokio::select! {
                app = App::build(settings) => app
                    .context("Failed to start the scheduler")
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
