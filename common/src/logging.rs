//! Logging set-up shared by the binaries: `AUXOT_LOG` filters (default `info`), logs go to
//! stderr, with colours only when stderr is a terminal (not in files or the journal).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("AUXOT_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
