//! `auxot-worker`: the command line over the `auxot_worker` library. It reads the flags and the
//! join token, hides the token from other processes, binds the sockets, starts the worker, and
//! on SIGTERM or Ctrl-C drains it; a second signal stops at once.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use auxot_common::join_token::JoinToken;
use auxot_common::signal::stop_signal;
use auxot_worker::cli::{Command, JoinArgs};
use tracing::{info, warn};

fn main() -> ExitCode {
    let cli = auxot_worker::cli::parse();
    auxot_common::logging::init(cli.log_format);
    let Command::Join(args) = cli.command;
    let token = match args.join_token() {
        Ok(token) => token,
        Err(err) => return fail(&err),
    };
    // A malformed token is the caller's mistake: say so before binding ports or loading a model.
    if let Err(err) = JoinToken::parse(&token) {
        return fail(&anyhow::Error::new(err).context("invalid join token"));
    }
    protect_secrets(&token);
    // Before the async runtime starts any thread: it may set the environment.
    args.prepare_engine_environment();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err.into()),
    };
    match runtime.block_on(join(args, token)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    tracing::error!("{err:#}");
    eprintln!("auxot-worker: {err:#}");
    ExitCode::FAILURE
}

/// Keeps the join token away from other processes of the same user, tools this worker runs
/// among them: out of the environment children inherit, and (on Linux) the process is made
/// non-dumpable, which makes `/proc/<pid>/environ` and `/proc/<pid>/mem` readable by root only
/// and disables core dumps. Runs before the async runtime starts any thread.
fn protect_secrets(token: &str) {
    let from_env = std::env::var("AUXOT_TOKEN").is_ok_and(|t| t == token);
    std::env::remove_var("AUXOT_TOKEN");
    if !from_env && std::env::var_os("AUXOT_TOKEN_FILE").is_none() && !token.is_empty() {
        let on_command_line = std::env::args().any(|a| a.contains(token.trim()));
        if on_command_line {
            warn!("the join token was given on the command line, where other users can read it (ps); use --token-file or AUXOT_TOKEN");
        }
    }
    #[cfg(target_os = "linux")]
    if let Err(err) = nix::sys::prctl::set_dumpable(false) {
        warn!(%err, "could not make the process non-dumpable");
    }
}

/// Runs the worker until it is stopped.
async fn join(args: JoinArgs, token: String) -> anyhow::Result<()> {
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
