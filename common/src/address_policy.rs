//! Which IP addresses a node may connect to on a caller's behalf (SSRF protection): the worker's
//! `web_fetch` tool and the router's fetching of images given by URL.
//!
//! A caller (or a model) choosing URLs must not be able to reach a node's own services, the
//! cluster's private network or a cloud metadata endpoint (169.254.169.254). Checking the URL's
//! host name is not enough: a public name can resolve to 127.0.0.1, and DNS rebinding can answer
//! differently on the second lookup. So the fetcher resolves the name itself, checks every
//! address here, and pins the connection to the checked addresses. Addresses embedding an IPv4 address (IPv4-mapped,
//! IPv4-compatible, NAT64) are judged by the embedded address, since that is where they lead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused: the adjective used in "... addresses are not allowed".
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => refusal_v4(v4),
            None => refusal_v6(v6),
        },
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() || a == 0 {
        // 0.0.0.0/8 means "this host" and reaches local services on Linux.
        Some("unspecified")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (CGNAT, 100.64.0.0/10)")
    } else if ip.is_broadcast() {
        Some("broadcast")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if a >= 240 || (a == 192 && b == 0 && ip.octets()[2] == 0) {
        Some("reserved")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("benchmarking (198.18.0.0/15)")
    } else {
        None
    }
}

fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xffc0 == 0xfec0 {
        Some("site-local")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique local (fc00::/7)")
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address stands for, if it embeds one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let o = ip.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    // IPv4-compatible (::a.b.c.d, deprecated but still routed by some stacks); `::` and `::1`
    // are left to the IPv6 rules.
    if s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail);
    }
    // The well-known NAT64 prefix 64:ff9b::/96: a NAT64 gateway forwards to the IPv4 address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    // Local-use NAT64 (64:ff9b:1::/48, RFC 8215): the IPv4 address is in the last 32 bits.
    if s[..3] == [0x64, 0xff9b, 1] {
        return Some(tail);
    }
    // 6to4 (2002::/16) embeds the IPv4 address in bits 16..48.
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    // Teredo (2001:0::/32) carries the client's IPv4 address, inverted, in the last 32 bits.
    if s[0] == 0x2001 && s[1] == 0 {
        return Some(Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_with_their_reason() {
        let cases = [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (CGNAT, 100.64.0.0/10)"),
            ("100.127.255.255", "shared (CGNAT, 100.64.0.0/10)"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.1", "multicast"),
            ("240.0.0.1", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fec0::1", "site-local"),
            ("fc00::1", "unique local (fc00::/7)"),
            ("fd12:3456::1", "unique local (fc00::/7)"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::10.0.0.1", "private"),
            ("64:ff9b::a00:1", "private"),
            ("64:ff9b:1::7f00:1", "loopback"),
            ("2002:7f00:1::1", "loopback"),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),
            ("198.18.0.1", "benchmarking (198.18.0.0/15)"),
            ("192.0.0.8", "reserved"),
        ];
        for (ip, reason) in cases {
            let ip: IpAddr = ip.parse().expect("test address");
            assert_eq!(refusal(ip), Some(reason), "{ip}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "::ffff:93.184.216.34",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = ip.parse().expect("test address");
            assert_eq!(refusal(ip), None, "{ip}");
        }
    }
}
