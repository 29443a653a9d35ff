//! The `kalshi-riskd` binary: guard SIGUSR1, parse the command line, hand over to the library.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // Before anything else, and before any thread: from here on SIGUSR1 (the kill switch)
    // cannot terminate the process; a kill sent during start-up is acted on once running.
    if let Err(e) = kalshi_riskd::daemon::register_early_signals() {
        eprintln!("kalshi-riskd: cannot register the SIGUSR1 handler: {e}");
        return ExitCode::from(1);
    }
    let cli = kalshi_riskd::cli::Cli::parse();
    kalshi_riskd::kalshi::install_crypto_provider();
    kalshi_riskd::cli::run(cli)
}
