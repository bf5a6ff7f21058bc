//! TCP frames between the two endpoints the pipeline benches use:
//! A (10.0.0.1, a client port) and B (10.0.0.2, port 80), built with
//! etherparse. Included by each bench with `#[path]` (benches are
//! separate crates).

use etherparse::PacketBuilder;

/// A segment from A to B (`from_a`) or back, with MACs `(a, b)`, SYN when
/// `syn`, ACK when `ack` is not 0, zero-padded to `len` bytes.
#[allow(clippy::too_many_arguments)]
pub fn tcp(
    (a, b): ([u8; 6], [u8; 6]),
    from_a: bool,
    sport: u16,
    seq: u32,
    ack: u32,
    syn: bool,
    len: usize,
) -> Vec<u8> {
    let (sm, dm, si, di, sp, dp) = if from_a {
        (a, b, [10, 0, 0, 1], [10, 0, 0, 2], sport, 80)
    } else {
        (b, a, [10, 0, 0, 2], [10, 0, 0, 1], 80, sport)
    };
    let mut p = PacketBuilder::ethernet2(sm, dm)
        .ipv4(si, di, 64)
        .tcp(sp, dp, seq, 64240);
    if syn {
        p = p.syn();
    }
    if ack != 0 {
        p = p.ack(ack);
    }
    let mut v = Vec::new();
    p.write(&mut v, &[]).expect("frame");
    v.resize(v.len().max(len), 0);
    v
}
