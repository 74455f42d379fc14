//! Addresses and names a node advertises to the rest of the cluster.
//!
//! A node binds to `0.0.0.0` by default, which is not an address anyone can reach it at, so it
//! must advertise a concrete one: the address its default route leaves from, found without
//! sending a packet, or loopback on a machine with no route at all.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};

/// The IP address to advertise for a socket bound to `bind`.
///
/// `explicit` (a host name or IP from `--advertise-host`) wins; otherwise a specific bind address
/// is used as is, and an unspecified one is replaced by the default-route address.
pub fn advertise_ip(bind: IpAddr, explicit: Option<&str>) -> std::io::Result<IpAddr> {
    if let Some(host) = explicit {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(ip);
        }
        return (host, 0)
            .to_socket_addrs()?
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| {
                std::io::Error::other(format!("advertise host `{host}` resolves to no address"))
            });
    }
    if !bind.is_unspecified() {
        return Ok(bind);
    }
    Ok(default_route_ip().unwrap_or_else(|| {
        tracing::warn!("no default route: advertising 127.0.0.1, which only this machine can reach; set --advertise-host");
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }))
}

/// The local address of the default route. `connect` on UDP only selects a route; nothing is
/// sent.
fn default_route_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// `ip:port` for advertising.
pub fn advertise_addr(
    bind: SocketAddr,
    explicit_host: Option<&str>,
    port: u16,
) -> std::io::Result<SocketAddr> {
    Ok(SocketAddr::new(
        advertise_ip(bind.ip(), explicit_host)?,
        port,
    ))
}

/// Checks that `addr` can be bound (resolving port 0 to a free port) and returns the address to
/// bind and the address to advertise for it.
pub fn bind_and_advertise(
    addr: SocketAddr,
    explicit_host: Option<&str>,
) -> std::io::Result<(SocketAddr, SocketAddr)> {
    let bound = UdpSocket::bind(addr)
        .and_then(|s| s.local_addr())
        .map_err(|e| std::io::Error::new(e.kind(), format!("binding {addr}/udp: {e}")))?;
    let advertised = advertise_addr(bound, explicit_host, bound.port())?;
    Ok((bound, advertised))
}

/// The machine's host name, or `node` when it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string())
}

/// Turns any string into a valid node id: lowercase letters, digits and `-`, at most 63 bytes.
pub fn sanitize_node_id(raw: &str) -> String {
    let mut id: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    while id.contains("--") {
        id = id.replace("--", "-");
    }
    let id = id.trim_matches('-');
    let mut id: String = id.chars().take(63).collect();
    while id.ends_with('-') {
        id.pop();
    }
    if id.is_empty() {
        "node".to_string()
    } else {
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_sanitized() {
        assert_eq!(
            sanitize_node_id("Worker-GPU_1.example.com-7948"),
            "worker-gpu-1-example-com-7948"
        );
        assert_eq!(sanitize_node_id("__"), "node");
        assert!(crate::pki::is_valid_node_id(&sanitize_node_id(
            &"x".repeat(100)
        )));
    }

    #[test]
    fn explicit_and_specific_addresses_win() {
        let any: IpAddr = Ipv4Addr::UNSPECIFIED.into();
        assert_eq!(
            advertise_ip(any, Some("10.1.2.3")).expect("ip"),
            "10.1.2.3".parse::<IpAddr>().expect("ip")
        );
        let specific: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(advertise_ip(specific, None).expect("ip"), specific);
        assert!(!advertise_ip(any, None).expect("ip").is_unspecified());
    }
}
