//! Receive coalescing: consecutive decapsulated TCP segments of one flow
//! become one TSO super-frame again ([`Gso::TcpV4`]), what the kernel's GRO
//! does for a NIC. A sender's super-frame crosses the tunnel as up to 45
//! Geneve datagrams; handed to the receiving VM's vnet_hdr TAP one by one,
//! each costs a write and a trip through the VM's TCP stack, and the
//! receiving host's CPU, not the link, bounds the stream. Handed over as
//! one frame, they cost one.
//!
//! Rules (as Linux's `tcp_gro_receive`, for the plain case only): Ethernet
//! without VLAN tag, IPv4 without options or fragmentation, TCP; the same
//! tunnel metadata; every header byte equal to the first segment's except
//! the IP length, ID and checksum and the TCP sequence number, flags and
//! checksum; the sequence number continuing the super-frame; flags ACK, or
//! ACK|PSH on the segment that ends it; every segment but the last as long
//! as the first, the last no longer; at most 64 KiB of IP datagram. Each
//! segment's TCP checksum is verified before its payload is taken (the
//! super-frame carries a partial checksum afterwards: the receiving kernel
//! trusts it, so a corrupted segment must not be hidden in it); one that
//! fails, or breaks any rule, ends the super-frame and travels as it came.
//!
//! Everything is a function of the bytes: malformed input never merges
//! and never panics. No allocation once a pool buffer has grown to a
//! super-frame's size.

use crate::packet::{CsumStatus, Gso, PacketBuf};
use crate::wire::checksum;
use std::net::Ipv4Addr;

const ETH: usize = 14;
const L4: usize = ETH + 20;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
/// Largest IPv4 datagram a super-frame may become.
const MAX_IP_LEN: usize = 65535;

/// A plain IPv4/TCP segment's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    /// Offset of the payload (after the TCP header and options).
    payload: usize,
    /// Payload bytes.
    len: usize,
    seq: u32,
    flags: u8,
}

fn parse(f: &[u8]) -> Option<Seg> {
    if f.get(12..14)? != [0x08, 0x00] || *f.get(ETH)? != 0x45 || *f.get(ETH + 9)? != 6 {
        return None;
    }
    let tot = usize::from(u16::from_be_bytes([*f.get(ETH + 2)?, *f.get(ETH + 3)?]));
    // Fragments never merge; DF is allowed, as is its absence.
    if u16::from_be_bytes([*f.get(ETH + 6)?, *f.get(ETH + 7)?]) & 0x3fff != 0 {
        return None;
    }
    // A segment carrying data is never padded: the IP length is the frame.
    if ETH + tot != f.len() {
        return None;
    }
    let doff = usize::from(*f.get(L4 + 12)? >> 4) * 4;
    if doff < 20 || L4 + doff > f.len() {
        return None;
    }
    let seq = u32::from_be_bytes(f.get(L4 + 4..L4 + 8)?.try_into().ok()?);
    let payload = L4 + doff;
    Some(Seg {
        payload,
        len: f.len() - payload,
        seq,
        flags: *f.get(L4 + 13)?,
    })
}

fn tcp_valid(f: &[u8]) -> bool {
    let (Some(s), Some(d), Some(tcp)) = (
        f.get(ETH + 12..ETH + 16),
        f.get(ETH + 16..ETH + 20),
        f.get(L4..),
    ) else {
        return false;
    };
    let (Ok(s), Ok(d)) = (<[u8; 4]>::try_from(s), <[u8; 4]>::try_from(d)) else {
        return false;
    };
    let pseudo =
        checksum::pseudo_header_v4(Ipv4Addr::from(s), Ipv4Addr::from(d), 6, tcp.len() as u32);
    checksum::l4_checksum(pseudo, tcp) == 0
}

/// Header bytes that must be equal for two segments to merge: all up to
/// the payload except these ranges (IP length and ID, IP checksum, TCP
/// sequence number, TCP flags, TCP checksum).
fn same_headers(a: &[u8], b: &[u8], hl: usize) -> bool {
    let (Some(a), Some(b)) = (a.get(..hl), b.get(..hl)) else {
        return false;
    };
    let skip = [
        (ETH + 2, ETH + 6),
        (ETH + 10, ETH + 12),
        (L4 + 4, L4 + 8),
        (L4 + 13, L4 + 14),
        (L4 + 16, L4 + 18),
    ];
    let mut at = 0;
    for (s, e) in skip {
        if a.get(at..s) != b.get(at..s) {
            return false;
        }
        at = e;
    }
    a.get(at..) == b.get(at..)
}

/// The super-frame being built at the tail of a receive batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    /// Header bytes (Ethernet, IP, TCP with options).
    hl: usize,
    /// Payload bytes of the first segment: the super-frame's MSS.
    mss: usize,
    /// Sequence number the next segment must carry.
    next_seq: u32,
    /// Segments merged so far (1: only the first).
    segs: usize,
}

impl Open {
    /// Starts a super-frame at `head` when it can be one (a plain IPv4/TCP
    /// segment with data, ACK only, a valid checksum). Checks nothing that
    /// would be wasted on a frame that never gets a second segment except
    /// what makes it a candidate; its checksum is verified on the first
    /// merge.
    pub fn start(head: &PacketBuf) -> Option<Open> {
        if head.meta.gso != Gso::None {
            return None;
        }
        let s = parse(head.data())?;
        if s.flags != ACK || s.len == 0 {
            return None;
        }
        Some(Open {
            hl: s.payload,
            mss: s.len,
            next_seq: s.seq.wrapping_add(s.len as u32),
            segs: 1,
        })
    }

    /// Appends `seg`'s payload to `head` when `seg` continues it. Returns
    /// whether it did (then `seg`'s buffer is free to recycle); `false`
    /// leaves both as they were, except that a first merge that finds the
    /// head's own checksum wrong closes the super-frame for good
    /// (`self.segs` is then 0: [`Open::finish`] leaves the head alone).
    pub fn append(&mut self, head: &mut PacketBuf, seg: &PacketBuf) -> bool {
        if self.segs == 0 || head.meta.tunnel != seg.meta.tunnel || seg.meta.gso != Gso::None {
            return false;
        }
        let f = seg.data();
        let Some(s) = parse(f) else {
            return false;
        };
        if s.payload != self.hl
            || s.seq != self.next_seq
            || (s.flags != ACK && s.flags != ACK | PSH)
            || s.len == 0
            || s.len > self.mss
            || head.len() - ETH + s.len > MAX_IP_LEN
            || !same_headers(head.data(), f, self.hl)
        {
            return false;
        }
        if self.segs == 1 && !tcp_valid(head.data()) {
            self.segs = 0;
            return false;
        }
        if !tcp_valid(f) {
            return false;
        }
        let Some(payload) = f.get(s.payload..) else {
            return false;
        };
        let at = head.len();
        if head.tailroom() < s.len {
            // Once per buffer: grown to the largest super-frame at once,
            // and kept by the pool afterwards.
            head.extend_zeroed(ETH + MAX_IP_LEN - at);
            head.truncate(at);
        }
        // The bytes are overwritten right away: no need to zero them.
        head.set_len(at + s.len);
        if let Some(dst) = head.data_mut().get_mut(at..) {
            dst.copy_from_slice(payload);
        }
        if s.flags & PSH != 0 {
            if let Some(fl) = head.data_mut().get_mut(L4 + 13) {
                *fl |= PSH;
            }
        }
        self.next_seq = s.seq.wrapping_add(s.len as u32);
        self.segs += 1;
        true
    }

    /// Whether another segment may still follow (none after PSH or a short
    /// one).
    pub fn is_open(&self, head: &PacketBuf) -> bool {
        let flags = head.data().get(L4 + 13).copied().unwrap_or(PSH);
        let last_full = head
            .len()
            .saturating_sub(self.hl)
            .is_multiple_of(self.mss.max(1));
        self.segs > 0 && flags & PSH == 0 && last_full
    }

    /// Makes `head` a valid super-frame after merges: IP length and
    /// checksum, [`Gso::TcpV4`] with the MSS, and a partial TCP checksum
    /// (the pseudo-header sum, what a vnet_hdr TAP's `NEEDS_CSUM`
    /// expects). A head nothing was merged into is left as it came.
    pub fn finish(&self, head: &mut PacketBuf) {
        if self.segs < 2 {
            return;
        }
        let ip_len = head.len() - ETH;
        let f = head.data_mut();
        let (Ok(ip_len16), Some(ip)) = (u16::try_from(ip_len), f.get_mut(ETH..L4)) else {
            return;
        };
        ip[2..4].copy_from_slice(&ip_len16.to_be_bytes());
        ip[10..12].fill(0);
        let c = checksum::checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let (s, d) = (
            Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        );
        let pseudo = checksum::fold(checksum::pseudo_header_v4(s, d, 6, (ip_len - 20) as u32));
        if let Some(c) = f.get_mut(L4 + 16..L4 + 18) {
            c.copy_from_slice(&pseudo.to_be_bytes());
        }
        head.meta.gso = Gso::TcpV4 {
            size: u16::try_from(self.mss).unwrap_or(u16::MAX),
        };
        head.meta.csum = CsumStatus::Partial {
            csum_start: L4 as u16,
            csum_offset: 16,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::gso::Segmenter;
    use crate::packet::PacketPool;

    /// An Ethernet/IPv4/TCP super-frame of `payload` bytes (ACK|PSH, with a
    /// timestamp option), as a vnet_hdr TAP hands it over.
    fn super_frame(payload: usize, mss: u16) -> PacketBuf {
        let tcp_hl = 32;
        let mut f = vec![0u8; L4 + tcp_hl];
        f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&((20 + tcp_hl + payload) as u16).to_be_bytes());
        f[20] = 0x40;
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&40000u16.to_be_bytes());
        f[36..38].copy_from_slice(&5201u16.to_be_bytes());
        f[38..42].copy_from_slice(&0xfffff000u32.to_be_bytes()); // seq wraps
        f[42..46].copy_from_slice(&77u32.to_be_bytes());
        f[46] = (tcp_hl as u8 / 4) << 4;
        f[47] = ACK | PSH;
        f[48..50].copy_from_slice(&512u16.to_be_bytes());
        f[54..66].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
        f.extend((0..payload).map(|i| (i * 7 % 251) as u8));
        let mut p = PacketBuf::from_slice(&f);
        p.meta.gso = Gso::TcpV4 { size: mss };
        p
    }

    fn segments(sf: &PacketBuf, pool: &mut PacketPool) -> Vec<PacketBuf> {
        let s = Segmenter::new(sf.data(), sf.meta.gso).unwrap();
        (0..s.count())
            .map(|i| {
                let mut p = s.segment_packet(sf, i, pool).unwrap();
                p.meta.csum = CsumStatus::Unknown;
                p
            })
            .collect()
    }

    /// Coalesces like the port does: returns the frames it would hand on.
    fn coalesce(segs: Vec<PacketBuf>) -> Vec<PacketBuf> {
        let mut out: Vec<PacketBuf> = Vec::new();
        let mut open: Option<Open> = None;
        for p in segs {
            if let (Some(o), Some(head)) = (open.as_mut(), out.last_mut()) {
                if o.append(head, &p) {
                    if !o.is_open(head) {
                        o.finish(head);
                        open = None;
                    }
                    continue;
                }
                o.finish(head);
            }
            open = Open::start(&p);
            out.push(p);
        }
        if let (Some(o), Some(head)) = (open, out.last_mut()) {
            o.finish(head);
        }
        out
    }

    #[test]
    fn segments_become_the_super_frame_again() {
        let mut pool = PacketPool::new(2048);
        let sf = super_frame(10 * 1448 + 100, 1448);
        let segs = segments(&sf, &mut pool);
        assert_eq!(segs.len(), 11);
        let mut out = coalesce(segs);
        assert_eq!(out.len(), 1, "one super-frame");
        let mut got = out.remove(0);
        assert_eq!(got.meta.gso, Gso::TcpV4 { size: 1448 });
        assert_eq!(
            got.meta.csum,
            CsumStatus::Partial {
                csum_start: 34,
                csum_offset: 16
            }
        );
        // The same bytes as the original, once the checksums are completed
        // on both (and the IP ID, which segmentation advanced, is the
        // first segment's: the original's).
        let mut want = sf.clone();
        want.meta.gso = Gso::None;
        want.meta.csum = CsumStatus::Partial {
            csum_start: 34,
            csum_offset: 16,
        };
        let pseudo = checksum::fold(checksum::pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            (want.len() - L4) as u32,
        ));
        want.data_mut()[50..52].copy_from_slice(&pseudo.to_be_bytes());
        let ipc = checksum::checksum(&{
            let mut h = want.data()[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        want.data_mut()[24..26].copy_from_slice(&ipc.to_be_bytes());
        crate::packet::gso::complete_checksum(&mut want).unwrap();
        got.meta.gso = Gso::None;
        crate::packet::gso::complete_checksum(&mut got).unwrap();
        assert_eq!(got.data(), want.data());
        assert!(tcp_valid(got.data()), "the completed checksum verifies");
        // And it re-segments into segments with valid checksums.
        got.meta.gso = Gso::TcpV4 { size: 1448 };
        let again = segments(&got, &mut pool);
        assert_eq!(again.len(), 11);
        assert!(again.iter().all(|s| tcp_valid(s.data())));
    }

    #[test]
    fn a_bad_checksum_or_a_gap_ends_the_super_frame() {
        let mut pool = PacketPool::new(2048);
        let sf = super_frame(6 * 1000, 1000);
        // Segment 3 corrupted in flight: 0..=2 merge, 3 alone, 4..=5 merge.
        let mut segs = segments(&sf, &mut pool);
        let n = segs[3].len();
        segs[3].data_mut()[n - 1] ^= 0xff;
        let out = coalesce(segs);
        let lens: Vec<(usize, Gso)> = out.iter().map(|p| (p.len() - 66, p.meta.gso)).collect();
        assert_eq!(
            lens,
            vec![
                (3000, Gso::TcpV4 { size: 1000 }),
                (1000, Gso::None),
                (2000, Gso::TcpV4 { size: 1000 })
            ]
        );
        assert!(
            !tcp_valid(out[1].data()),
            "the bad segment travels as it came"
        );
        // A lost segment: the sequence number does not continue.
        let mut segs = segments(&sf, &mut pool);
        segs.remove(2);
        let out = coalesce(segs);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len() - 66, 2000);
        assert_eq!(out[1].len() - 66, 3000);
        // Another tunnel (VNI) never merges.
        let mut segs = segments(&sf, &mut pool);
        segs[1].meta.tunnel.tun_id = 9;
        assert_eq!(coalesce(segs).len(), 3);
        // Different headers (the window) never merge.
        let mut segs = segments(&sf, &mut pool);
        segs[1].data_mut()[48] ^= 1;
        assert_eq!(coalesce(segs).len(), 3);
    }

    #[test]
    fn garbage_never_merges_or_panics() {
        let mut pool = PacketPool::new(2048);
        let sf = super_frame(3000, 1000);
        let segs = segments(&sf, &mut pool);
        for cut in 0..segs[1].len() {
            let mut head = segs[0].clone();
            let mut o = Open::start(&head).unwrap();
            let short = PacketBuf::from_slice(&segs[1].data()[..cut]);
            assert!(!o.append(&mut head, &short), "cut at {cut}");
        }
        assert!(Open::start(&PacketBuf::from_slice(&[0u8; 20])).is_none());
    }
}
