//! `auxot-worker`: serves a model and/or tools to an auxot cluster.
#![forbid(unsafe_code)]

mod cli;
mod device;
mod engine;
mod run;
mod server;
mod tools;

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    auxot_common::logging::init();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Join(args) => run::join(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("auxot-worker: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
