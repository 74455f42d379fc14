//! One client connection's socket, with the deadlines hyper does not keep by itself.
//!
//! [`Deadlines`] wraps the TCP stream and fails a read or a write that waits too long, which
//! makes hyper close the connection:
//! - a connection that is between requests (no request in flight) must start its next request
//!   within the idle timeout (the header timeout for a connection that has not sent a request
//!   yet), and once it has sent the first byte of a request head, finish the head within the
//!   header timeout: half-sent headers (slowloris) and silent connections are closed;
//! - a write that makes no progress for the write timeout fails: a client that stops reading a
//!   response (or a stream) is cut, and dropping the response cancels the generation behind it.
//!
//! Reads while a request is in flight are not timed here: the body reader has its own deadline
//! and a long generation legitimately reads nothing for minutes. The request count comes from
//! [`InFlight`], a guard the service holds for each request until its response body is done.
//!
//! hyper's own `header_read_timeout` also runs (with a timer), as a backstop that starts when a
//! connection is ready for its next request.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The deadlines of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnTimeouts {
    /// From the first byte of a request head to its end (and for a new connection's first request).
    pub header: Duration,
    /// Between two requests on a kept-alive connection.
    pub idle: Duration,
    /// A write that makes no progress for this long fails.
    pub write: Duration,
}

/// Requests in flight on one connection.
#[derive(Debug, Default, Clone)]
pub struct Activity(Arc<AtomicUsize>);

impl Activity {
    /// Counts a request until the guard is dropped (with its response body).
    pub fn enter(&self) -> InFlight {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlight(self.0.clone())
    }

    fn busy(&self) -> bool {
        self.0.load(Ordering::SeqCst) > 0
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What the read side waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadPhase {
    /// A request is in flight: not timed here.
    Busy,
    /// Waiting for the first byte of the next request head (`idle` after a response, `header`
    /// on a new connection).
    Idle,
    /// Part of a request head has arrived.
    Head,
}

/// A socket whose reads between requests and whose writes have deadlines.
pub struct Deadlines<T> {
    inner: T,
    timeouts: ConnTimeouts,
    activity: Activity,
    phase: ReadPhase,
    read_deadline: Pin<Box<Sleep>>,
    /// Set while a write waits for the client to read.
    write_stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> Deadlines<T> {
    pub fn new(inner: T, timeouts: ConnTimeouts, activity: Activity) -> Self {
        Deadlines {
            inner,
            timeouts,
            activity,
            phase: ReadPhase::Idle,
            // A new connection gets the header timeout for its first request.
            read_deadline: Box::pin(tokio::time::sleep(timeouts.header)),
            write_stalled: None,
        }
    }

    fn timed_out(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, what.to_string())
    }

    /// Moves the read phase along before a read, resetting the deadline on transitions.
    fn before_read(&mut self) {
        if self.activity.busy() {
            self.phase = ReadPhase::Busy;
        } else if self.phase == ReadPhase::Busy {
            // The last response is done: the connection idles until its next request.
            self.phase = ReadPhase::Idle;
            let at = Instant::now() + self.timeouts.idle;
            self.read_deadline.as_mut().reset(at);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Deadlines<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.before_read();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase == ReadPhase::Idle && buf.filled().len() > before {
                    this.phase = ReadPhase::Head;
                    let at = Instant::now() + this.timeouts.header;
                    this.read_deadline.as_mut().reset(at);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.phase != ReadPhase::Busy && this.read_deadline.as_mut().poll(cx).is_ready()
                {
                    let what = match this.phase {
                        ReadPhase::Head => "request head not received within the header timeout",
                        _ => "connection idle past the idle timeout",
                    };
                    return Poll::Ready(Err(Self::timed_out(what)));
                }
                Poll::Pending
            }
        }
    }
}

impl<T> Deadlines<T> {
    /// Runs a write, failing it once it has made no progress for the write timeout.
    fn timed_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>>
    where
        T: Unpin,
    {
        match write(Pin::new(&mut self.inner), cx) {
            Poll::Ready(result) => {
                self.write_stalled = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.timeouts.write;
                let stalled = self
                    .write_stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if stalled.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(Self::timed_out(
                        "the client stopped reading: write timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Deadlines<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.timed_write(cx, |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.timed_write(cx, |inner, cx| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.timed_write(cx, |inner, cx| inner.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.timed_write(cx, |inner, cx| inner.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    // Real time, short deadlines: each assertion allows the deadline several times over.
    const HEADER: Duration = Duration::from_millis(100);
    const IDLE: Duration = Duration::from_millis(400);
    const WRITE: Duration = Duration::from_millis(100);
    const SLACK: Duration = Duration::from_secs(2);

    fn timeouts() -> ConnTimeouts {
        ConnTimeouts {
            header: HEADER,
            idle: IDLE,
            write: WRITE,
        }
    }

    #[tokio::test]
    async fn a_silent_new_connection_fails_at_the_header_timeout() {
        let (_client, server) = tokio::io::duplex(64);
        let mut conn = Deadlines::new(server, timeouts(), Activity::default());
        let started = Instant::now();
        let err = conn.read(&mut [0u8; 8]).await.expect_err("timeout");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= HEADER && started.elapsed() < SLACK);
    }

    #[tokio::test]
    async fn a_head_must_end_within_the_header_timeout_of_its_first_byte() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Activity::default();
        let mut conn = Deadlines::new(server, timeouts(), activity.clone());
        // One request served: the connection is idle afterwards.
        let request = activity.enter();
        client
            .write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        assert!(conn.read(&mut [0u8; 64]).await.expect("read") > 0);
        drop(request);
        // Idle for longer than the header timeout (but not the idle timeout) is fine...
        tokio::time::sleep(HEADER * 2).await;
        client.write_all(b"GET /h").await.expect("write");
        let head = conn.read(&mut [0u8; 64]).await;
        assert!(head.expect("first bytes of the next head") > 0);
        // ...but the head that started must end within the header timeout.
        let started = Instant::now();
        let err = conn.read(&mut [0u8; 64]).await.expect_err("timeout");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < IDLE, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn an_idle_kept_alive_connection_fails_at_the_idle_timeout() {
        let (mut client, server) = tokio::io::duplex(64);
        let activity = Activity::default();
        let mut conn = Deadlines::new(server, timeouts(), activity.clone());
        let request = activity.enter();
        client.write_all(b"x").await.expect("write");
        assert!(conn.read(&mut [0u8; 8]).await.expect("read") > 0);
        // In flight: reads are not timed (a long generation reads nothing).
        let waited = tokio::time::timeout(IDLE * 2, conn.read(&mut [0u8; 8])).await;
        assert!(waited.is_err(), "a busy connection's read is not timed out");
        drop(request);
        let started = Instant::now();
        let err = conn.read(&mut [0u8; 8]).await.expect_err("idle");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= IDLE && started.elapsed() < SLACK);
    }

    #[tokio::test]
    async fn a_write_the_client_does_not_read_fails_at_the_write_timeout() {
        let (_client, server) = tokio::io::duplex(16);
        let mut conn = Deadlines::new(server, timeouts(), Activity::default());
        conn.write_all(&[0u8; 16]).await.expect("fits the buffer");
        let started = Instant::now();
        let err = conn.write_all(&[0u8; 16]).await.expect_err("stalled");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= WRITE && started.elapsed() < SLACK);
    }
}
