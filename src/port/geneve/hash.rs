//! The outer UDP source port's entropy (RFC 8926 §3.3): a hash of the
//! inner flow read at the header offsets key extraction left in the
//! metadata, so it costs a few loads and no parse.

use crate::packet::PacketData;

#[inline(always)]
fn mix(h: u64, w: u64) -> u64 {
    let x = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

#[inline(always)]
fn word(d: &[u8], at: usize, n: usize) -> u64 {
    let mut b = [0u8; 8];
    if let (Some(s), Some(dst)) = (d.get(at..at + n), b.get_mut(..n)) {
        dst.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

/// A hash of the inner flow (MACs, IP addresses and protocol, L4 ports),
/// from the header offsets key extraction left in the metadata. Equal for
/// every packet of one flow, so a flow keeps one outer source port.
pub fn flow_hash(pkt: &PacketData) -> u64 {
    let d = pkt.data();
    let mut h = mix(word(d, 0, 6), word(d, 6, 6));
    let l3 = usize::from(pkt.meta.l3_ofs);
    let l4 = usize::from(pkt.meta.l4_ofs);
    if l3 >= 14 {
        let ethertype = word(d, l3 - 2, 2);
        // (0x0800 and 0x86dd read little-endian)
        let proto = match ethertype {
            0x0008 => {
                h = mix(h, word(d, l3 + 12, 8));
                d.get(l3 + 9).copied()
            }
            0xdd86 => {
                h = mix(h, word(d, l3 + 8, 8));
                h = mix(h, word(d, l3 + 16, 8));
                h = mix(h, word(d, l3 + 24, 8));
                h = mix(h, word(d, l3 + 32, 8));
                d.get(l3 + 6).copied()
            }
            _ => None,
        };
        if let Some(p) = proto {
            h = mix(h, u64::from(p));
            if l4 > l3 && matches!(p, 6 | 17 | 132) {
                h = mix(h, word(d, l4, 4));
            }
        }
    }
    h
}
