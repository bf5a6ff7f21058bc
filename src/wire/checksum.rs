//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Everything here works on explicit byte ranges: callers pass the IP
//! datagram as delimited by the IP header's length field, so Ethernet
//! padding can never leak into a sum.

use core::net::{Ipv4Addr, Ipv6Addr};

/// One's complement sum of `data` as big-endian 16-bit words, folded to 32
/// bits but not complemented. An odd trailing byte is padded with zero, as
/// RFC 1071 specifies.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    // An IPv4 header without options and a TCP header without options
    // (a pure ACK, nearly every packet conntrack checks) are 20 bytes.
    if let Ok(h) = <&[u8; 20]>::try_from(data) {
        return sum20(h);
    }
    sum_any(data)
}

/// [`sum`] of exactly 20 bytes: five 32-bit words, no loop.
#[inline(always)]
fn sum20(h: &[u8; 20]) -> u32 {
    let w = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    fold64(w(0) + w(4) + w(8) + w(12) + w(16))
}

/// A 64-bit sum of 32-bit words folded to 32 bits (once more when the
/// first fold carries).
#[inline(always)]
fn fold64(acc: u64) -> u32 {
    let s = (acc & 0xffff_ffff) + (acc >> 32);
    ((s & 0xffff_ffff) + (s >> 32)) as u32
}

fn sum_any(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        // Summing 32-bit halves of a u64 keeps the carries; folded below.
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    // At most 7 bytes left: one 4-byte word (like the halves above), one
    // 16-bit word, one odd byte. A 20-byte header ends in 4 bytes: one
    // step, not a loop of two.
    let mut rest = chunks.remainder();
    if let Some((w, r)) = rest.split_first_chunk::<4>() {
        acc += u64::from(u32::from_be_bytes(*w));
        rest = r;
    }
    if let Some((w, r)) = rest.split_first_chunk::<2>() {
        acc += u64::from(u16::from_be_bytes(*w));
        rest = r;
    }
    if let [b] = rest {
        acc += u64::from(*b) << 8;
    }
    while acc >> 32 != 0 {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Folds a 32-bit partial sum into 16 bits (not complemented).
pub fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Combines several partial sums.
pub fn combine(parts: &[u32]) -> u32 {
    let mut acc: u64 = 0;
    for p in parts {
        acc += u64::from(*p);
    }
    while acc >> 32 != 0 {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// The checksum field value for `data` (complement of the folded sum).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Partial sum of the IPv4 pseudo-header for an upper-layer protocol.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4_len: u32) -> u32 {
    // Summed as 32-bit words: each carries its two 16-bit halves (2^16 is
    // 1 in one's complement arithmetic), folded like any partial sum.
    fold64(
        u64::from(src.to_bits()) + u64::from(dst.to_bits()) + u64::from(proto) + u64::from(l4_len),
    )
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 section 8.1).
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, l4_len: u32) -> u32 {
    combine(&[
        sum(&src.octets()),
        sum(&dst.octets()),
        l4_len >> 16,
        l4_len & 0xffff,
        u32::from(next_header),
    ])
}

/// The checksum of an upper-layer segment with the given pseudo-header sum.
/// `segment` must be exactly the L4 header plus payload as delimited by the
/// IP length, with its checksum field either zeroed (to compute) or intact
/// (to verify: the result is then 0).
pub fn l4_checksum(pseudo: u32, segment: &[u8]) -> u16 {
    !fold(combine(&[pseudo, sum(segment)]))
}

/// RFC 1624 eqn. 3: the new checksum after a 16-bit word of the covered data
/// changes from `old` to `new`. `HC' = ~(~HC + ~m + m')`.
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// As [`update16`] for a 32-bit quantity (an IPv4 address, a TCP seq).
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update16(check, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// As [`update16`] for an arbitrary run of bytes of even length at an even
/// offset of the covered data (a MAC address, an IPv6 address).
pub fn update_bytes(check: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    let s = combine(&[u32::from(!check), u32::from(!fold(sum(old))), sum(new)]);
    !fold(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 numerical example: 00 01 f2 03 f4 f5 f6 f7
        // sums to 0xddf2 (folded, not complemented).
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
    }

    /// Every length, every tail shape (4-, 2- and 1-byte steps after the
    /// 8-byte words) folds to what a plain RFC 1071 word loop gives.
    #[test]
    fn sum_matches_a_word_by_word_loop() {
        let reference = |d: &[u8]| -> u16 {
            let mut acc: u32 = 0;
            for c in d.chunks(2) {
                let w = u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]);
                acc += u32::from(w);
                acc = (acc & 0xffff) + (acc >> 16);
            }
            acc as u16
        };
        for fill in [0x00u8, 0xff, 0x5a] {
            let data: Vec<u8> = (0u8..48)
                .map(|i| {
                    if fill == 0x5a {
                        i.wrapping_mul(151) ^ fill
                    } else {
                        fill
                    }
                })
                .collect();
            for len in 0..=data.len() {
                let d = &data[..len];
                assert_eq!(fold(sum(d)), reference(d), "fill {fill:#x}, len {len}");
            }
        }
    }

    /// The pseudo-header summed as 32-bit words folds to what its seven
    /// 16-bit fields summed one by one give, carries included.
    #[test]
    fn ipv4_pseudo_header_matches_its_16_bit_fields() {
        let mut st = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            st
        };
        let edge = [0u32, 1, 0xffff, 0x1_0000, 0xffff_ffff, 0xfffe_ffff];
        for i in 0..5000 {
            let r = next();
            let (s, d, len) = if i < edge.len() * edge.len() {
                let e = (edge[i % edge.len()], edge[i / edge.len()]);
                (e.0, e.1, e.0 ^ e.1)
            } else {
                (r as u32, (r >> 32) as u32, next() as u32)
            };
            let proto = (r >> 24) as u8;
            let fields = [
                s >> 16,
                s & 0xffff,
                d >> 16,
                d & 0xffff,
                u32::from(proto),
                len >> 16,
                len & 0xffff,
            ];
            assert_eq!(
                fold(pseudo_header_v4(
                    Ipv4Addr::from(s),
                    Ipv4Addr::from(d),
                    proto,
                    len
                )),
                fold(combine(&fields)),
                "{s:#x} {d:#x} {proto} {len}"
            );
        }
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(&[0xab])), 0xab00);
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    #[test]
    fn ipv4_header_vector() {
        // A classic IPv4 header (Wikipedia "IPv4 header checksum" example):
        // 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10] = 0xb8;
        h[11] = 0x61;
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn incremental_matches_full() {
        let mut data: Vec<u8> = (0u8..64).map(|i| i.wrapping_mul(37)).collect();
        let c0 = checksum(&data);
        let old = u32::from_be_bytes([data[12], data[13], data[14], data[15]]);
        let new = 0x0a00_0001u32;
        data[12..16].copy_from_slice(&new.to_be_bytes());
        assert_eq!(update32(c0, old, new), checksum(&data));

        let old_mac = [data[0], data[1], data[2], data[3], data[4], data[5]];
        let new_mac = [0xde, 0xad, 0xbe, 0xef, 0x00, 0x01];
        data[0..6].copy_from_slice(&new_mac);
        let c1 = checksum(&data);
        let mut d2 = data.clone();
        d2[0..6].copy_from_slice(&old_mac);
        assert_eq!(update_bytes(checksum(&d2), &old_mac, &new_mac), c1);
    }
}
