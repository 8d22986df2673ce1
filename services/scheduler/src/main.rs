use clap::Parser;
use herald_scheduler::{App, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::parse();
    let _telemetry = herald_telemetry::init("herald-scheduler")?;
    herald_runtime::supervise("herald-scheduler", settings, App::build, |app, shutdown| {
        app.run(async move { shutdown.wait().await })
    })
    .await
}
