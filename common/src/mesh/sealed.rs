//! Gossip datagrams sealed with the cluster's gossip key.
//!
//! chitchat gossips in plaintext and trusts whatever arrives, so a stranger on the network could
//! join or rewrite any node's state. [`SealedUdpTransport`] encrypts and authenticates every
//! datagram with ChaCha20-Poly1305 under the cluster's gossip key; a datagram that
//! does not open is dropped before chitchat sees it.
//!
//! chitchat does not expose its message codec, only sockets that speak it. So the transport keeps
//! one of chitchat's own UDP sockets on loopback as a codec: to send, it lets that socket encode
//! the message to a capture socket, seals the bytes and sends them from the public socket; to
//! receive, it opens the datagram and relays the plaintext to the codec socket from a loopback
//! relay socket dedicated to the sender, so the relay's address says who the real sender was.
//! Every step is cancel-safe: state changes only between awaits.
//!
//! A sealed datagram is `magic (4) | sealed at (8) | nonce (12) | ciphertext | tag (16)`, the
//! first two authenticated as associated data. Nonces are random. A datagram sealed more than a
//! minute from now is refused, so a captured datagram cannot be replayed later (for example to
//! make a node reflect large answers at a victim); within the minute, a [`NonceCache`] of the
//! datagrams already opened refuses the replay.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket as CodecSocket};
use chitchat::ChitchatEnvelope;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::net::UdpSocket;
use tracing::{debug, warn};

mod replay;

pub use replay::NonceCache;

const MAGIC: &[u8; 4] = b"AXG2";
/// Magic and the sealing time (milliseconds since the Unix epoch), authenticated but clear.
const HEADER_LEN: usize = MAGIC.len() + 8;
/// Oldest (or furthest in the future) a datagram may be: replays are refused after this, and
/// nodes need clocks within this of each other (NTP keeps them far closer).
pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);
const TAG_LEN: usize = 16;
const MAX_DATAGRAM: usize = 65_507;
/// Relay sockets kept before the table is reset; one per gossip peer seen recently.
const MAX_RELAYS: usize = 4096;

/// Seals and opens gossip datagrams. Clones share the key and the replay cache.
#[derive(Clone)]
pub struct Sealer {
    key: std::sync::Arc<LessSafeKey>,
    rng: SystemRandom,
    /// Datagrams opened within the age window; a second copy of one is a replay.
    seen: Arc<Mutex<NonceCache>>,
}

impl Sealer {
    /// A sealer for the cluster's gossip key (random, made by `setup`, given at enrollment).
    pub fn from_key(key_bytes: &[u8; 32]) -> Self {
        // The key has exactly the length ChaCha20-Poly1305 wants, so this cannot fail.
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key_bytes)
            .unwrap_or_else(|_| unreachable!("32-byte key"));
        Sealer {
            key: std::sync::Arc::new(LessSafeKey::new(unbound)),
            rng: SystemRandom::new(),
            seen: Arc::default(),
        }
    }

    /// Encrypts `plain` into a datagram stamped with the current time.
    pub fn seal(&self, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.seal_at(plain, unix_millis())
    }

    fn seal_at(&self, plain: &[u8], millis: u64) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no randomness for a gossip nonce"))?;
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&millis.to_be_bytes());
        let mut body = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header),
                &mut body,
            )
            .map_err(|_| anyhow::anyhow!("sealing a gossip datagram failed"))?;
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + body.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decrypts a datagram; `None` when it was not sealed with this cluster's key, was sealed
    /// more than [`MAX_AGE`] away from now (a late replay, or a node whose clock is far off), or
    /// was already opened (a replay within the window).
    pub fn open(&self, datagram: &[u8]) -> Option<Vec<u8>> {
        self.open_at(datagram, unix_millis())
    }

    fn open_at(&self, datagram: &[u8], now_millis: u64) -> Option<Vec<u8>> {
        if datagram.len() < HEADER_LEN + NONCE_LEN + TAG_LEN || !datagram.starts_with(MAGIC) {
            return None;
        }
        let (header, rest) = datagram.split_at(HEADER_LEN);
        let (nonce_bytes, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce_bytes).ok()?;
        let mut body = sealed.to_vec();
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(header), &mut body)
            .ok()?
            .len();
        let stamp: [u8; 8] = header[MAGIC.len()..].try_into().ok()?;
        let sealed_at = u64::from_be_bytes(stamp);
        if sealed_at.abs_diff(now_millis) > MAX_AGE.as_millis() as u64 {
            return None;
        }
        // Recorded only once authenticated and fresh, so strangers cannot fill the cache.
        let nonce: [u8; NONCE_LEN] = nonce_bytes.try_into().ok()?;
        let first_time = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(sealed_at, nonce, now_millis);
        if !first_time {
            return None;
        }
        body.truncate(plain_len);
        Some(body)
    }
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Gossip traffic counters, for operators (router `/health`) and benchmarks.
#[derive(Debug, Default)]
pub struct GossipStats {
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub datagrams_sent: AtomicU64,
    pub datagrams_received: AtomicU64,
    /// Datagrams that did not open with the cluster key (strangers, other clusters), were too
    /// old, or were replays.
    pub datagrams_rejected: AtomicU64,
}

impl GossipStats {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "bytes_sent": self.bytes_sent.load(Ordering::Relaxed),
            "bytes_received": self.bytes_received.load(Ordering::Relaxed),
            "datagrams_sent": self.datagrams_sent.load(Ordering::Relaxed),
            "datagrams_received": self.datagrams_received.load(Ordering::Relaxed),
            "datagrams_rejected": self.datagrams_rejected.load(Ordering::Relaxed),
        })
    }
}

/// A chitchat transport whose datagrams are sealed with the cluster's gossip key.
pub struct SealedUdpTransport {
    sealer: Sealer,
    stats: Arc<GossipStats>,
    /// A socket bound by the caller, used instead of binding the listen address (tests bind
    /// port 0 and hand the socket over, so no port is released and re-bound).
    bound: std::sync::Mutex<Option<std::net::UdpSocket>>,
}

impl SealedUdpTransport {
    pub fn new(key: &[u8; 32]) -> Self {
        SealedUdpTransport {
            sealer: Sealer::from_key(key),
            stats: Arc::default(),
            bound: std::sync::Mutex::new(None),
        }
    }

    /// Gossips on `socket` (already bound) instead of binding the listen address.
    pub fn with_socket(self, socket: std::net::UdpSocket) -> Self {
        *self.bound.lock().unwrap_or_else(|p| p.into_inner()) = Some(socket);
        self
    }

    /// Counters of the sockets this transport opens.
    pub fn stats(&self) -> Arc<GossipStats> {
        self.stats.clone()
    }
}

/// A non-blocking loopback socket.
fn std_loopback_socket() -> anyhow::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding a loopback gossip relay")?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn loopback_socket() -> anyhow::Result<UdpSocket> {
    Ok(UdpSocket::from_std(std_loopback_socket()?)?)
}

#[async_trait]
impl Transport for SealedUdpTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let bound = self.bound.lock().unwrap_or_else(|p| p.into_inner()).take();
        let public = match bound {
            Some(socket) => {
                socket.set_nonblocking(true)?;
                UdpSocket::from_std(socket)?
            }
            None => UdpSocket::bind(listen_addr)
                .await
                .with_context(|| format!("failed to bind {listen_addr}/UDP for gossip"))?,
        };
        let codec = CodecSocket::open((Ipv4Addr::LOCALHOST, 0).into()).await?;
        let codec_addr = codec.local_addr()?;
        let capture = loopback_socket()?;
        let capture_addr = capture.local_addr()?;
        Ok(Box::new(SealedSocket {
            sealer: self.sealer.clone(),
            stats: self.stats.clone(),
            public,
            codec,
            codec_addr,
            capture,
            capture_addr,
            relays: HashMap::new(),
            senders: HashMap::new(),
            buf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
        }))
    }
}

struct SealedSocket {
    sealer: Sealer,
    stats: Arc<GossipStats>,
    /// The socket other nodes talk to.
    public: UdpSocket,
    /// chitchat's own socket, used only to encode and decode messages.
    codec: CodecSocket,
    codec_addr: SocketAddr,
    /// Receives what `codec` encodes for sending.
    capture: UdpSocket,
    capture_addr: SocketAddr,
    /// Relay socket per remote sender. They only send, synchronously: a fresh tokio socket's
    /// `try_send_to` reports "would block" until its readiness is known, which would drop each
    /// new peer's first datagram.
    relays: HashMap<SocketAddr, std::net::UdpSocket>,
    /// Relay address to remote sender.
    senders: HashMap<SocketAddr, SocketAddr>,
    buf: Box<[u8]>,
}

impl SealedSocket {
    /// Hands an opened datagram from `from` to the codec socket, without awaiting.
    fn relay(&mut self, from: SocketAddr, plain: &[u8]) -> anyhow::Result<()> {
        if !self.relays.contains_key(&from) {
            if self.relays.len() >= MAX_RELAYS {
                self.relays.clear();
                self.senders.clear();
            }
            let relay = std_loopback_socket()?;
            self.senders.insert(relay.local_addr()?, from);
            self.relays.insert(from, relay);
        }
        if let Some(relay) = self.relays.get(&from) {
            // A full loopback buffer drops the datagram; gossip tolerates loss.
            if let Err(err) = relay.send_to(plain, self.codec_addr) {
                debug!(%err, "gossip relay dropped a datagram");
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Socket for SealedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.public.local_addr()?)
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        // Drop anything a cancelled earlier send left behind, so bytes and destination pair up.
        while self.capture.try_recv_from(&mut self.buf).is_ok() {}
        self.codec.send(self.capture_addr, envelope).await?;
        let len = loop {
            let (len, src) = self.capture.recv_from(&mut self.buf).await?;
            if src == self.codec_addr {
                break len;
            }
        };
        let sealed = self.sealer.seal(&self.buf[..len])?;
        let num_bytes_sent = self
            .public
            .send_to(&sealed, to)
            .await
            .context("failed to send gossip datagram")?;
        self.stats
            .bytes_sent
            .fetch_add(num_bytes_sent as u64, Ordering::Relaxed);
        self.stats.datagrams_sent.fetch_add(1, Ordering::Relaxed);
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        enum Next {
            Sealed(std::io::Result<(usize, SocketAddr)>),
            Decoded(anyhow::Result<RecvOutcome>),
        }
        loop {
            let next = tokio::select! {
                received = self.public.recv_from(&mut self.buf) => Next::Sealed(received),
                decoded = self.codec.recv() => Next::Decoded(decoded),
            };
            match next {
                Next::Decoded(decoded) => {
                    let outcome = decoded?;
                    // Anything not from one of our relays was written to the codec socket by
                    // something else on this host: ignore it.
                    if let Some(from) = self.senders.get(&outcome.from_addr) {
                        return Ok(RecvOutcome {
                            from_addr: *from,
                            ..outcome
                        });
                    }
                }
                Next::Sealed(Ok((len, from))) => match self.sealer.open(&self.buf[..len]) {
                    Some(plain) => {
                        self.stats
                            .bytes_received
                            .fetch_add(len as u64, Ordering::Relaxed);
                        self.stats
                            .datagrams_received
                            .fetch_add(1, Ordering::Relaxed);
                        // A failed relay (out of sockets, say) loses this datagram only; returning
                        // an error would stop chitchat's gossip loop for good.
                        if let Err(err) = self.relay(from, &plain) {
                            warn!(%err, %from, "dropped a gossip datagram");
                        }
                    }
                    None => {
                        self.stats
                            .datagrams_rejected
                            .fetch_add(1, Ordering::Relaxed);
                        debug!(%from, len, "dropped a gossip datagram not sealed for this cluster")
                    }
                },
                Next::Sealed(Err(err))
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                    ) => {}
                Next::Sealed(Err(err)) => return Err(err).context("fatal gossip receive error"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_datagrams_open_only_with_the_same_secret() {
        let a = Sealer::from_key(&[1; 32]);
        let b = Sealer::from_key(&[2; 32]);
        let sealed = a.seal(b"hello gossip").expect("seal");
        assert_eq!(a.open(&sealed).as_deref(), Some(&b"hello gossip"[..]));
        assert_eq!(b.open(&sealed), None);
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(a.open(&tampered), None);
        assert_eq!(a.open(b"AXG2short"), None);
        assert_eq!(a.open(b"plaintext chitchat"), None);
    }

    #[test]
    fn stale_datagrams_are_refused() {
        let sealer = Sealer::from_key(&[1; 32]);
        let now = unix_millis();
        // A fresh copy per check, so the age check is what refuses (not the replay cache).
        let sealed = || sealer.seal_at(b"state", now).expect("seal");
        assert!(sealer.open_at(&sealed(), now + 30_000).is_some());
        assert!(
            sealer.open_at(&sealed(), now + 61_000).is_none(),
            "a replay a minute later"
        );
        assert!(
            sealer.open_at(&sealed(), now - 61_000).is_none(),
            "a clock far behind"
        );
        let sealed = sealed();
        // The stamp is authenticated: moving it forward breaks the seal.
        let mut moved = sealed.clone();
        moved[MAGIC.len()..HEADER_LEN].copy_from_slice(&(now + 61_000).to_be_bytes());
        assert!(sealer.open_at(&moved, now + 61_000).is_none());
    }

    #[test]
    fn a_datagram_opens_once() {
        let sealer = Sealer::from_key(&[5; 32]);
        let sealed = sealer.seal(b"state").expect("seal");
        assert_eq!(sealer.open(&sealed).as_deref(), Some(&b"state"[..]));
        assert_eq!(sealer.open(&sealed), None, "the replay");
        // Clones (one per socket) share the cache.
        assert_eq!(sealer.clone().open(&sealed), None);
        let fresh = sealer.seal(b"state").expect("seal");
        assert_eq!(sealer.open(&fresh).as_deref(), Some(&b"state"[..]));
        // Changing the nonce to dodge the cache breaks the seal instead.
        let mut forged = fresh.clone();
        forged[HEADER_LEN] ^= 1;
        assert_eq!(sealer.open(&forged), None);
    }
}
