//! `herald-loadtest`: Herald's load generator and demo driver.

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = herald_loadtest::cli::Cli::parse();
    match herald_loadtest::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald-loadtest: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
