use clap::Parser;
use herald_worker::{App, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let _telemetry = herald_telemetry::init("herald-worker")?;
    herald_runtime::supervise("herald-worker", settings, App::build, |app, shutdown| {
        app.run(async move { shutdown.wait().await })
    })
    .await
}
