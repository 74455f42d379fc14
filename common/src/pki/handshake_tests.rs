//! Real TLS 1.3 handshakes between the configurations of [`super::config`]: in memory with
//! rustls connections pumping bytes, and once over QUIC on loopback to show quinn takes them.

use std::sync::Arc;
use std::time::Duration;

use rustls::{CertificateError, ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, ServerName};

use super::ca::CertificateAuthority;
use super::cert::PeerCert;
use super::config::{
    enrollment_client_config, enrollment_server_config, mesh_client_config, mesh_server_config,
};
use super::node_key::NodeKey;
use super::role::Role;
use super::verify::{never_revoked, RevocationCheck};

const ALPN: &[&[u8]] = &[b"auxot-test"];
const HOUR: Duration = Duration::from_secs(3600);

/// A node with its key and the chain the CA issued it.
struct Node {
    key: NodeKey,
    chain: Vec<CertificateDer<'static>>,
}

fn node(ca: &CertificateAuthority, id: &str, role: Role) -> Node {
    let key = NodeKey::generate().expect("key");
    let csr = key.csr_der(id).expect("csr");
    let chain = ca.issue(&csr, id, role, HOUR).expect("issue").chain;
    Node { key, chain }
}

/// A cluster whose routers hold an intermediate, as with an offline root.
fn cluster() -> (CertificateAuthority, CertificateAuthority) {
    let root = CertificateAuthority::generate_root("test").expect("root");
    let inter = CertificateAuthority::generate_intermediate(&root).expect("intermediate");
    (root, inter)
}

/// A worker's server: accepts routers only.
fn worker_server(root: &CertificateAuthority, me: &Node, revoked: RevocationCheck) -> ServerConfig {
    mesh_server_config(
        &me.key,
        me.chain.clone(),
        root.root_der().clone(),
        &[Role::Router],
        revoked,
        ALPN,
    )
    .expect("server config")
}

/// A router's client: accepts workers and tools workers.
fn router_client(root: &CertificateAuthority, me: &Node, revoked: RevocationCheck) -> ClientConfig {
    mesh_client_config(
        &me.key,
        me.chain.clone(),
        root.root_der().clone(),
        &[Role::Worker, Role::Tools],
        revoked,
        ALPN,
    )
    .expect("client config")
}

/// Which side refused the handshake, and why.
#[derive(Debug)]
enum Refused {
    ByClient(rustls::Error),
    ByServer(rustls::Error),
}

/// Runs a handshake to completion, pumping bytes between the two in memory.
fn pump(
    client: ClientConfig,
    server: ServerConfig,
    name: &str,
) -> Result<ServerConnection, Refused> {
    let name = ServerName::try_from(name.to_string()).expect("server name");
    let mut c = ClientConnection::new(Arc::new(client), name).expect("client");
    let mut s = ServerConnection::new(Arc::new(server)).expect("server");
    for _ in 0..10 {
        let mut to_server = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut to_server).expect("write");
        }
        let mut rd = &to_server[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).expect("read");
            s.process_new_packets().map_err(Refused::ByServer)?;
        }
        let mut to_client = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut to_client).expect("write");
        }
        let mut rd = &to_client[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("read");
            c.process_new_packets().map_err(Refused::ByClient)?;
        }
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() {
            return Ok(s);
        }
    }
    panic!("handshake did not finish");
}

/// A mesh handshake; on success, the identity the server saw in the client's certificate.
fn handshake(client: ClientConfig, server: ServerConfig, name: &str) -> Result<PeerCert, Refused> {
    let s = pump(client, server, name)?;
    let certs = s.peer_certificates().expect("client certificate");
    Ok(PeerCert::parse(&certs[0]).expect("client identity"))
}

#[test]
fn a_router_reaches_the_worker_it_dials() {
    let (root, ca) = cluster();
    let (router, worker) = (node(&ca, "r1", Role::Router), node(&ca, "w1", Role::Worker));
    let seen = handshake(
        router_client(&root, &router, never_revoked()),
        worker_server(&root, &worker, never_revoked()),
        "w1",
    )
    .expect("handshake");
    assert_eq!((seen.node_id.as_str(), seen.role), ("r1", Role::Router));
}

#[test]
fn a_worker_cannot_call_another_worker() {
    let (root, ca) = cluster();
    let (intruder, worker) = (node(&ca, "w2", Role::Worker), node(&ca, "w1", Role::Worker));
    let refused = handshake(
        router_client(&root, &intruder, never_revoked()),
        worker_server(&root, &worker, never_revoked()),
        "w1",
    );
    assert!(
        matches!(
            refused,
            Err(Refused::ByServer(rustls::Error::InvalidCertificate(
                CertificateError::Other(_)
            )))
        ),
        "{refused:?}"
    );
}

#[test]
fn a_router_refuses_a_server_that_is_not_the_node_it_dialled() {
    let (root, ca) = cluster();
    let (router, impostor) = (node(&ca, "r1", Role::Router), node(&ca, "w2", Role::Worker));
    let refused = handshake(
        router_client(&root, &router, never_revoked()),
        worker_server(&root, &impostor, never_revoked()),
        "w1",
    );
    assert!(
        matches!(
            refused,
            Err(Refused::ByClient(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )))
        ),
        "{refused:?}"
    );
}

#[test]
fn a_router_refuses_a_server_in_the_router_role() {
    let (root, ca) = cluster();
    let (router, other) = (node(&ca, "r1", Role::Router), node(&ca, "r2", Role::Router));
    let refused = handshake(
        router_client(&root, &router, never_revoked()),
        worker_server(&root, &other, never_revoked()),
        "r2",
    );
    assert!(matches!(refused, Err(Refused::ByClient(_))), "{refused:?}");
}

#[test]
fn revoked_nodes_are_refused_on_both_sides() {
    let (root, ca) = cluster();
    let (router, worker) = (node(&ca, "r1", Role::Router), node(&ca, "w1", Role::Worker));
    let revoked = |id: &'static str| -> RevocationCheck { Arc::new(move |n| n == id) };
    let refused = handshake(
        router_client(&root, &router, never_revoked()),
        worker_server(&root, &worker, revoked("r1")),
        "w1",
    );
    assert!(
        matches!(
            refused,
            Err(Refused::ByServer(rustls::Error::InvalidCertificate(
                CertificateError::Revoked
            )))
        ),
        "{refused:?}"
    );
    let refused = handshake(
        router_client(&root, &router, revoked("w1")),
        worker_server(&root, &worker, never_revoked()),
        "w1",
    );
    assert!(
        matches!(
            refused,
            Err(Refused::ByClient(rustls::Error::InvalidCertificate(
                CertificateError::Revoked
            )))
        ),
        "{refused:?}"
    );
}

#[test]
fn a_router_of_another_cluster_is_refused() {
    let (root, ca) = cluster();
    let (_, stranger_ca) = cluster();
    let (stranger, worker) = (
        node(&stranger_ca, "r1", Role::Router),
        node(&ca, "w1", Role::Worker),
    );
    // The stranger knows our root (it is public) but its certificate is not from our CA.
    let refused = handshake(
        router_client(&root, &stranger, never_revoked()),
        worker_server(&root, &worker, never_revoked()),
        "w1",
    );
    assert!(
        matches!(
            refused,
            Err(Refused::ByServer(rustls::Error::InvalidCertificate(_)))
        ),
        "{refused:?}"
    );
}

fn enrollment_server(root: &CertificateAuthority, me: &Node) -> ServerConfig {
    let mut chain = me.chain.clone();
    chain.push(root.root_der().clone());
    enrollment_server_config(&me.key, chain, ALPN).expect("enrollment server")
}

/// An enrollment handshake: the worker has no certificate and dials a router by address.
fn enroll(client: ClientConfig, server: ServerConfig) -> Result<(), Refused> {
    let s = pump(client, server, "router")?;
    assert!(s.peer_certificates().is_none());
    Ok(())
}

#[test]
fn an_enrolling_worker_trusts_only_a_router_under_the_pinned_root() {
    let (root, ca) = cluster();
    let router = node(&ca, "r1", Role::Router);
    let pinned = enrollment_client_config(root.root_fingerprint(), ALPN).expect("client");
    enroll(pinned.clone(), enrollment_server(&root, &router)).expect("right root");

    let (other_root, other_ca) = cluster();
    let wrong = enrollment_client_config(other_root.root_fingerprint(), ALPN).expect("client");
    let refused = enroll(wrong, enrollment_server(&root, &router));
    assert!(
        matches!(
            refused,
            Err(Refused::ByClient(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            )))
        ),
        "{refused:?}"
    );

    // An impostor that sends our root along with its own chain still does not verify.
    let impostor = node(&other_ca, "r1", Role::Router);
    let mut chain = impostor.chain.clone();
    chain.push(root.root_der().clone());
    let server = enrollment_server_config(&impostor.key, chain, ALPN).expect("server");
    assert!(matches!(
        enroll(pinned.clone(), server),
        Err(Refused::ByClient(_))
    ));

    // A worker of the cluster is not a router.
    let worker = node(&ca, "w1", Role::Worker);
    assert!(matches!(
        enroll(pinned.clone(), enrollment_server(&root, &worker)),
        Err(Refused::ByClient(_))
    ));

    // Without the root in the chain there is nothing to pin.
    let server = enrollment_server_config(&router.key, router.chain.clone(), ALPN).expect("server");
    assert!(matches!(enroll(pinned, server), Err(Refused::ByClient(_))));
}

#[tokio::test]
async fn quinn_accepts_these_configurations() {
    use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

    let (root, ca) = cluster();
    let (router, worker) = (node(&ca, "r1", Role::Router), node(&ca, "w1", Role::Worker));
    let server = QuicServerConfig::try_from(worker_server(&root, &worker, never_revoked()))
        .expect("quic server");
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(server)),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .expect("bind server");
    let addr = server.local_addr().expect("addr");
    // Accepts every connection; echoes one stream on each and reports who the client was.
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let acceptor = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = acceptor.accept().await {
            let seen = seen_tx.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let certs = conn
                    .peer_identity()
                    .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
                    .expect("client certificates");
                let _ = seen.send(PeerCert::parse(&certs[0]).expect("client identity"));
                let (mut send, mut recv) = conn.accept_bi().await.expect("stream");
                let got = recv.read_to_end(64).await.expect("read");
                send.write_all(&got).await.expect("echo");
                send.finish().expect("finish");
                conn.closed().await;
            });
        }
    });

    let client = QuicClientConfig::try_from(router_client(&root, &router, never_revoked()))
        .expect("quic client");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("bind client");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(client)));
    let conn = endpoint
        .connect(addr, "w1")
        .expect("connect")
        .await
        .expect("handshake");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(b"ping").await.expect("write");
    send.finish().expect("finish");
    assert_eq!(recv.read_to_end(64).await.expect("read"), b"ping");
    conn.close(0u32.into(), b"done");
    let peer = seen_rx.recv().await.expect("server saw the client");
    assert_eq!((peer.node_id.as_str(), peer.role), ("r1", Role::Router));

    // The same worker refuses a dial under a name that is not its own.
    let refused = endpoint.connect(addr, "w9").expect("connect").await;
    assert!(refused.is_err());
}
