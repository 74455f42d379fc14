//! Logging set-up shared by the binaries: `AUXOT_LOG` filters (default `info`), logs go to
//! stderr, as text (colours only when stderr is a terminal, not in files or the journal) or as
//! one JSON object per line (`--log-format json`, for log collectors).
//!
//! Requests run inside a `request` span carrying their `request_id`, so every line a request
//! causes names it: in text as the `request{request_id=...}:` prefix, in JSON as the `span`
//! object (and in `spans`, outermost first).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_env("AUXOT_LOG").unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}
