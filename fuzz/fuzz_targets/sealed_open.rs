//! Any bytes as a gossip datagram: the opener refuses what it cannot authenticate without
//! panicking. The first byte picks a mode: open the bytes as they are, or seal them, damage one
//! byte of the datagram (chosen by the input), and check the damage is refused while the intact
//! datagram opens to the same bytes, once.
#![no_main]

use auxot_common::mesh::sealed::Sealer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sealer = Sealer::from_key(&[7u8; 32]);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let _ = sealer.open(rest);
        return;
    }
    let Some((&at, plain)) = rest.split_first() else {
        return;
    };
    let Ok(datagram) = sealer.seal(plain) else {
        return;
    };
    let mut damaged = datagram.clone();
    let i = usize::from(at) % damaged.len();
    damaged[i] ^= 0x5a;
    assert_eq!(sealer.open(&damaged), None, "a damaged datagram opened");
    assert_eq!(sealer.open(&datagram).as_deref(), Some(plain));
    assert_eq!(sealer.open(&datagram), None, "a replay opened");
});
