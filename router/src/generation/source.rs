//! A stream of canonical events, whatever produces it: one worker's generation or a tool loop
//! of several. The API layer streams and collects any [`EventSource`].

use std::future::Future;

use auxot_common::chat::ChatEvent;

use crate::forward::stream::ChatStream;

pub trait EventSource: Send + 'static {
    /// The model serving the request.
    fn model(&self) -> &str;
    /// The next event; `None` after the last.
    fn next(&mut self) -> impl Future<Output = Option<ChatEvent>> + Send;
}

impl EventSource for ChatStream {
    fn model(&self) -> &str {
        &self.model
    }

    fn next(&mut self) -> impl Future<Output = Option<ChatEvent>> + Send {
        ChatStream::next(self)
    }
}
