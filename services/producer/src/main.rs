use clap::Parser;
use herald_producer::{App, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let _telemetry = herald_telemetry::init("herald-producer")?;
    herald_runtime::supervise("herald-producer", settings, App::build, |app, shutdown| {
        app.run(async move { shutdown.wait().await })
    })
    .await
}
