//! Ports for test nodes, handed out so that two nodes never get the same one.
//!
//! Binding port 0 and releasing it races: the kernel hands the same ephemeral range out as the
//! source port of every outgoing connection, so a port released by the harness could be taken by
//! a client socket before the node bound it ("Address already in use", seen in full runs). Ports
//! here come from below the kernel's ephemeral range, where only explicit binds land: each is
//! handed out once per process, starts at an offset drawn from the process id (two test
//! processes at once start far apart), and is checked free for both TCP and UDP.

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// Ports handed out lie in `[low, high)`, below the ephemeral range (read once).
fn range() -> (u32, u32) {
    static RANGE: OnceLock<(u32, u32)> = OnceLock::new();
    *RANGE.get_or_init(|| {
        let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse::<u32>().ok())
            .filter(|low| *low > 2048)
            .unwrap_or(32768);
        (ephemeral_low / 2, ephemeral_low)
    })
}

/// A port on loopback nobody in this process was given before, free for TCP and UDP.
pub fn reserve() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let (low, high) = range();
    let span = high - low;
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span {
        let port = (low + NEXT.fetch_add(1, Ordering::SeqCst) % span) as u16;
        let tcp = TcpListener::bind(("127.0.0.1", port));
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice_and_lie_below_the_ephemeral_range() {
        let (low, high) = range();
        let ports: Vec<u16> = (0..200).map(|_| reserve()).collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports.iter().all(|p| (low..high).contains(&u32::from(*p))));
    }
}
