//! The `herald` binary: parse the command line, set up logging, run the
//! command, and turn the outcome into an exit code (0 ok, 1 failure,
//! 2 usage error).

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = herald::cli::Cli::parse();
    let default_filter = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "herald=warn,warn",
        (false, 1) => "herald=info,warn",
        (false, 2) => "herald=debug,info",
        _ => "trace",
    };
    let filter = std::env::var("HERALD_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();

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
