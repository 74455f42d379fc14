//! `auxot-worker`: the command line over the `auxot_worker` library. It reads the flags and the
//! join token, binds the sockets, starts the worker, and on SIGTERM or Ctrl-C drains it; a
//! second signal stops at once.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use auxot_common::signal::stop_signal;
use auxot_worker::cli::{Cli, Command, JoinArgs};
use clap::Parser as _;
use tracing::{info, warn};

fn main() -> ExitCode {
    auxot_common::logging::init();
    let Command::Join(args) = Cli::parse().command;
    // Before the async runtime starts any thread: it may set the environment.
    args.prepare_engine_environment();
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(join(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("auxot-worker: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the worker until it is stopped.
async fn join(args: JoinArgs) -> anyhow::Result<()> {
    let token = args.join_token()?;
    let listeners = args.bind()?;
    let drain_timeout = args.drain_timeout();
    let worker = auxot_worker::start(args.into_config(token), listeners).await?;

    let loaded = tokio::select! {
        ready = worker.ready() => Some(ready),
        _ = stop_signal() => None,
    };
    match loaded {
        Some(Ok(())) => stop_signal().await,
        Some(Err(err)) => {
            worker.shutdown(std::time::Duration::ZERO).await;
            return Err(err);
        }
        None => info!("stopped while loading"),
    }
    tokio::select! {
        _ = worker.shutdown(drain_timeout) => {}
        // A second signal means "stop now".
        _ = stop_signal() => warn!("stopped again: leaving without draining"),
    }
    Ok(())
}
