use anyhow::Context;
use clap::Parser;
use herald_producer::{App, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let _telemetry = herald_telemetry::init("herald-producer")?;
    let app = App::build(settings)
        .await
        .context("Failed to start the producer")?;
    app.run(herald_runtime::shutdown_signal()).await
}
