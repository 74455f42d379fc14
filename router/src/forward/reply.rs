//! Reading a worker's replies: the one place that turns stream outcomes (a frame, a clean end,
//! a broken stream, silence) into something the forwarder decides on.

use auxot_common::wire::WireReply;
use tokio::time::Instant;

use super::transport::ReplyStream;

/// What came next on a reply stream.
#[derive(Debug)]
pub enum Reply {
    Frame(WireReply),
    /// The worker finished its side of the stream.
    Finished,
    /// The stream broke or carried something unreadable: the worker is gone or misbehaving.
    Broken(String),
    /// Nothing arrived before the deadline.
    TimedOut,
}

/// The next reply, waiting no later than `deadline`.
pub async fn next_reply(stream: &mut dyn ReplyStream, deadline: Instant) -> Reply {
    match tokio::time::timeout_at(deadline, stream.next()).await {
        Err(_) => Reply::TimedOut,
        Ok(Ok(Some(frame))) => Reply::Frame(frame),
        Ok(Ok(None)) => Reply::Finished,
        Ok(Err(err)) => Reply::Broken(err.to_string()),
    }
}
