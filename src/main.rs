//! The `kalshi-riskd` binary: parse the command line, set up logging, hand over to the library.

use std::process::ExitCode;

use clap::Parser as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

fn main() -> ExitCode {
    let cli = kalshi_riskd::cli::Cli::parse();
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    kalshi_riskd::kalshi::install_crypto_provider();
    kalshi_riskd::cli::run(cli)
}
