//! How request frames reach a worker and replies come back.
//!
//! The forwarder speaks to workers only through [`WorkerTransport`], so its retries, read-ahead
//! and admission are unit-tested against a scripted transport with no sockets; production uses
//! [`QuicTransport`], one QUIC stream per request over a pooled connection per worker.

use async_trait::async_trait;
use auxot_common::mesh::node::WorkerAdvert;
use auxot_common::mesh::quic::{ConnectionPool, Peer};
use auxot_common::wire::{read_frame, FrameError, WireReply, CODE_CANCELLED};
use quinn::{RecvStream, SendStream, VarInt};

/// The replies of one request.
#[async_trait]
pub trait ReplyStream: Send {
    /// The next reply; `Ok(None)` once the worker finished its side.
    async fn next(&mut self) -> Result<Option<WireReply>, FrameError>;
    /// Tells the worker to stop working on the request (the caller went away).
    fn cancel(&mut self);
}

/// Opens request streams to workers.
#[async_trait]
pub trait WorkerTransport: Send + Sync + 'static {
    /// Opens a stream to `worker` and writes `frame` (an encoded request). An error means the
    /// worker could not be reached.
    async fn send(
        &self,
        worker: &WorkerAdvert,
        frame: &[u8],
    ) -> Result<Box<dyn ReplyStream>, String>;
}

/// Requests over QUIC, one stream each.
pub struct QuicTransport {
    pool: ConnectionPool,
}

impl QuicTransport {
    pub fn new(pool: ConnectionPool) -> Self {
        QuicTransport { pool }
    }
}

struct QuicReplies {
    /// Kept open until the reply is read: dropping it would finish the request side early.
    send: SendStream,
    recv: RecvStream,
}

#[async_trait]
impl ReplyStream for QuicReplies {
    async fn next(&mut self) -> Result<Option<WireReply>, FrameError> {
        read_frame(&mut self.recv).await
    }

    fn cancel(&mut self) {
        let _ = self.recv.stop(VarInt::from_u32(CODE_CANCELLED));
        let _ = self.send.reset(VarInt::from_u32(CODE_CANCELLED));
    }
}

#[async_trait]
impl WorkerTransport for QuicTransport {
    async fn send(
        &self,
        worker: &WorkerAdvert,
        frame: &[u8],
    ) -> Result<Box<dyn ReplyStream>, String> {
        let peer = Peer {
            node: &worker.node_id,
            generation: worker.generation,
            addr: worker.quic_addr,
        };
        let (mut send, recv) = self.pool.open(peer).await.map_err(|e| e.to_string())?;
        send.write_all(frame)
            .await
            .map_err(|e| format!("sending the request: {e}"))?;
        Ok(Box::new(QuicReplies { send, recv }))
    }
}
