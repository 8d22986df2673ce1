use clap::Parser;
use herald_sim::config::{SimArgs, SimCommand};
use herald_sim::Sim;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = SimArgs::parse();
    if let Some(SimCommand::Stats { url }) = &args.command {
        println!("{}", herald_sim::control::fetch_stats(url).await?);
        return Ok(());
    }
    let _telemetry = herald_telemetry::init("herald-sim")?;
    let sim = Sim::build(args.config()).await?;
    tracing::info!(
        http_port = sim.http_port(),
        smtp_port = sim.smtp_port(),
        smtps_port = sim.smtps_port(),
        ca_file = %sim.ca_file().display(),
        "The simulator is listening."
    );
    sim.run(herald_runtime::shutdown_signal()).await
}
