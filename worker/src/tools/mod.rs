//! Tools a worker runs for the Tools API and for server-side tool loops.
//!
//! Each tool is a [`Tool`]; the [`ToolRunner`] owns them, advertises them, and runs calls with a
//! timeout and an output size cap. The runner is the one place those limits are enforced; tools
//! add only limits of their own kind (bytes downloaded, a command's shorter timeout).
//!
//! The tools: `web_search` and `web_fetch` (built in), `[[command]]` programs and the tools of
//! `[[mcp]]` servers, all described by the file [`config`] reads. Each tool module owns the type
//! of its own configuration section; `config` only assembles the file from them, so imports run
//! one way: `config` → each tool → `runner`.

mod command;
pub mod config;
mod html_depth;
mod http;
mod input;
mod mcp;
mod process_env;
mod runner;
#[cfg(test)]
mod test_http;
mod web_fetch;
mod web_search;

pub use runner::ToolRunner;
