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
            let app = App::build(settings)
                .await
                .context("Failed to start the worker")
                .map_err(Stop::Build)?;
            app.run(async move { shutdown.wait().await })
                .await
                .map_err(Stop::Run)
        }
    })
    .await
}
