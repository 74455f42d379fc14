//! What every request handler shares.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::auth::Authenticator;
use crate::forward::Forwarder;

pub struct AppState {
    pub node_id: String,
    pub auth: Authenticator,
    pub forwarder: Forwarder,
    /// Fetches images given by URL.
    pub http_client: reqwest::Client,
    /// Set once the router starts shutting down.
    shutting_down: AtomicBool,
}

impl AppState {
    pub fn new(
        node_id: String,
        auth: Authenticator,
        forwarder: Forwarder,
        http_client: reqwest::Client,
    ) -> Self {
        AppState {
            node_id,
            auth,
            forwarder,
            http_client,
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    pub fn start_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
}
