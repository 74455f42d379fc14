//! The auxot router: the public API of an auxot cluster.
//!
//! A router authenticates API calls, translates them from their dialect (OpenAI or Anthropic)
//! into one canonical request, picks a worker that serves the model and forwards the request
//! over QUIC, then renders the worker's events back in the caller's dialect. It is a library
//! with a thin binary (`main.rs`) so tests can start routers in-process with [`start`].
//!
//! Layers, each importing only the ones below it:
//! - [`api`]: HTTP routes, authentication, bodies, responses, SSE;
//! - [`dialect`]: everything OpenAI- or Anthropic-specific, behind one trait;
//! - [`generation`]: preparing a request, the server-side tool loop, collecting a completion;
//! - [`forward`]: candidates, admission, the transport to workers, retries;
//! - [`registry`] and [`routing`]: the workers gossip reports, and which one gets a request.
//!
//! Beside the request path: [`server`] (a router's life), [`membership`] (gossip state checked
//! against the cluster's certificates), [`enroll`] (issuing workers' certificates), [`records`]
//! (join tokens and revocations replicated between routers), [`client`] (the CLI's admin calls).
//! [`error`], [`limits`], [`keys`], [`store`], [`files`], [`ids`] and [`metrics`] are leaves used from several layers.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)
)]

pub mod api;
pub mod cli;
pub mod client;
pub mod dialect;
pub mod enroll;
pub mod error;
pub mod files;
pub mod forward;
pub mod generation;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod membership;
pub mod metrics;
pub mod records;
pub mod registry;
pub mod routing;
pub mod server;
pub mod store;

pub use server::{start, Listeners, RouterHandle};
