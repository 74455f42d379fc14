//! `auxot-router`: the public API of an auxot cluster.
#![forbid(unsafe_code)]
#![allow(dead_code)]

mod auth;
mod forward;
mod keys;
mod registry;
mod routing;
mod store;

fn main() {}
