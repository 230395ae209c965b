//! The `herald` binary: parse the command line, set up logging, run the
//! command, and turn the outcome into an exit code (0 ok, 1 failure,
//! 2 usage error).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = herald::cli::Cli::parse();
    // A daemon's log is its record: jobs' starts and ends show by default.
    let daemon = matches!(cli.command, herald::cli::Command::Daemon { .. });
    let default_filter = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) if daemon => "herald=info,warn",
        (false, 0) => "herald=warn,warn",
        (false, 1) => "herald=info,warn",
        (false, 2) => "herald=debug,info",
        _ => "trace",
    };
    let filter = std::env::var("HERALD_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.log_format {
        herald::cli::LogFormat::Json => logs.json().init(),
        herald::cli::LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(herald::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
