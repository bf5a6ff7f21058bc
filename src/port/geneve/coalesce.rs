//! Receive coalescing: consecutive decapsulated TCP segments of one flow
//! become one TSO super-frame again ([`Gso::TcpV4`] or [`Gso::TcpV6`]),
//! what the kernel's GRO does for a NIC. A sender's super-frame crosses the
//! tunnel as up to 45 Geneve datagrams; handed to the receiving VM's
//! vnet_hdr TAP one by one, each costs a write and a trip through the VM's
//! TCP stack, and the receiving host's CPU, not the link, bounds the
//! stream. Handed over as one frame, they cost one.
//!
//! Rules (as Linux's `tcp4_gro_receive` / `tcp6_gro_receive`, for the plain
//! case only): Ethernet without VLAN tag; IPv4 without options or
//! fragmentation, or IPv6 with TCP as the next header of the fixed header
//! (a segment with extension headers never merges); the same tunnel
//! metadata; every header byte equal to the first segment's except the IP
//! length (IPv4 total length, IPv6 payload length), the IPv4 ID and header
//! checksum, and the TCP sequence number, flags and checksum (so IPv6
//! traffic class, flow label and hop limit must be equal: Linux flushes on
//! any of them); the sequence number continuing the super-frame; flags
//! ACK, or ACK|PSH on the segment that ends it; every segment but the last
//! as long as the first, the last no longer; at most 65535 bytes in the IP
//! length field (the whole IPv4 datagram, the IPv6 payload). Each
//! segment's checksums (TCP over its family's pseudo-header, and the IPv4
//! header's) are verified before its payload is taken: the super-frame
//! carries a partial checksum afterwards, which the receiving kernel
//! trusts, so a corrupted segment must not be hidden in it. One that
//! fails, or breaks any rule, ends the super-frame and travels as it came.
//! An IPv4 segment never continues an IPv6 super-frame, nor the other way.
//!
//! One parse (`parse`) gives a segment's family and layout; the rules
//! above are the same code for both families, with the family deciding
//! only the offsets, which bytes may differ, and how the finished frame's
//! IP length and pseudo-header sum are written.
//!
//! Everything is a function of the bytes: malformed input never merges
//! and never panics. No allocation once a pool buffer has grown to a
//! super-frame's size.

use crate::packet::gso::Headers;
use crate::packet::{CsumStatus, Gso, PacketBuf};
use crate::wire::checksum;

const ETH: usize = 14;
const TCP: u8 = 6;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;
/// Largest value of the IP length field (IPv4 total length, IPv6 payload
/// length) a super-frame may reach.
const MAX_IP_LEN: usize = 65535;

/// The IP version of a segment: where its TCP header is, which header
/// bytes may differ between segments, how its length is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// IPv4 without options.
    V4,
    /// IPv6 without extension headers.
    V6,
}

/// IPv4 bytes that may differ: total length and ID, header checksum.
const V4_SKIP: [(usize, usize); 2] = [(ETH + 2, ETH + 6), (ETH + 10, ETH + 12)];
/// IPv6 bytes that may differ: the payload length only.
const V6_SKIP: [(usize, usize); 1] = [(ETH + 4, ETH + 6)];

impl Family {
    /// Offset of the TCP header.
    const fn l4(self) -> usize {
        match self {
            Family::V4 => ETH + 20,
            Family::V6 => ETH + 40,
        }
    }

    /// Offset from which the IP length field counts (IPv4 counts its
    /// header, IPv6 only what follows the fixed header).
    const fn len_from(self) -> usize {
        match self {
            Family::V4 => ETH,
            Family::V6 => ETH + 40,
        }
    }

    /// Offset of the IP length field.
    const fn len_at(self) -> usize {
        match self {
            Family::V4 => ETH + 2,
            Family::V6 => ETH + 4,
        }
    }

    /// IP header bytes that may differ between segments, in order.
    const fn ip_skip(self) -> &'static [(usize, usize)] {
        match self {
            Family::V4 => &V4_SKIP,
            Family::V6 => &V6_SKIP,
        }
    }

    /// The super-frame type for an MSS.
    fn gso(self, size: u16) -> Gso {
        match self {
            Family::V4 => Gso::TcpV4 { size },
            Family::V6 => Gso::TcpV6 { size },
        }
    }

    /// The (unfolded) pseudo-header sum of `f` for `tcp_len` bytes of TCP,
    /// from its addresses as the segmenter reads them.
    fn pseudo(self, f: &[u8], tcp_len: usize) -> Option<u32> {
        let h = Headers {
            l3_ofs: ETH,
            l4_ofs: self.l4(),
            proto: TCP,
            ipv4: self == Family::V4,
            ip_end: f.len(),
        };
        h.pseudo_header(f, TCP, u32::try_from(tcp_len).ok()?).ok()
    }
}

/// A plain IPv4/TCP or IPv6/TCP segment's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    family: Family,
    /// Offset of the payload (after the TCP header and options).
    payload: usize,
    /// Payload bytes.
    len: usize,
    seq: u32,
    flags: u8,
}

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(at)?, *f.get(at + 1)?]))
}

/// The family and layout of `f` when it is a segment coalescing may take.
fn parse(f: &[u8]) -> Option<Seg> {
    let family = match be16(f, 12)? {
        0x0800 => {
            if *f.get(ETH)? != 0x45 || *f.get(ETH + 9)? != TCP {
                return None;
            }
            // Fragments never merge; DF is allowed, as is its absence.
            if be16(f, ETH + 6)? & 0x3fff != 0 {
                return None;
            }
            Family::V4
        }
        0x86dd => {
            // Extension headers (hop-by-hop, routing, fragment...) never
            // merge: TCP must follow the fixed header.
            if *f.get(ETH)? >> 4 != 6 || *f.get(ETH + 6)? != TCP {
                return None;
            }
            Family::V6
        }
        _ => return None,
    };
    // A segment carrying data is never padded: the IP length is the frame.
    // (An IPv6 jumbogram's 0 never matches: the frame holds a TCP header.)
    let ip_len = usize::from(be16(f, family.len_at())?);
    if family.len_from() + ip_len != f.len() {
        return None;
    }
    let l4 = family.l4();
    let doff = usize::from(*f.get(l4 + 12)? >> 4) * 4;
    if doff < 20 || l4 + doff > f.len() {
        return None;
    }
    let seq = u32::from_be_bytes(f.get(l4 + 4..l4 + 8)?.try_into().ok()?);
    let payload = l4 + doff;
    Some(Seg {
        family,
        payload,
        len: f.len() - payload,
        seq,
        flags: *f.get(l4 + 13)?,
    })
}

/// Whether the checksums of `f` (a frame `parse` took as `family`)
/// verify: the TCP checksum, and for IPv4 the header checksum too (Linux's
/// GRO checks it before merging: the segment's header is dropped in the
/// merge, so a corrupted one would be hidden).
fn sums_valid(f: &[u8], family: Family) -> bool {
    if family == Family::V4
        && f.get(ETH..family.l4())
            .is_none_or(|ip| checksum::checksum(ip) != 0)
    {
        return false;
    }
    let Some(tcp) = f.get(family.l4()..) else {
        return false;
    };
    family
        .pseudo(f, tcp.len())
        .is_some_and(|p| checksum::l4_checksum(p, tcp) == 0)
}

/// Header bytes that must be equal for two segments to merge: all up to
/// the payload except the family's IP ranges (length, IPv4 ID and
/// checksum) and the TCP sequence number, flags and checksum. Both are
/// `family` frames with `hl` header bytes.
fn same_headers(a: &[u8], b: &[u8], family: Family, hl: usize) -> bool {
    let (Some(a), Some(b)) = (a.get(..hl), b.get(..hl)) else {
        return false;
    };
    let l4 = family.l4();
    let tcp_skip = [(l4 + 4, l4 + 8), (l4 + 13, l4 + 14), (l4 + 16, l4 + 18)];
    let mut at = 0;
    for &(s, e) in family.ip_skip().iter().chain(&tcp_skip) {
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
    family: Family,
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
    /// or IPv6/TCP segment with data, ACK only, a valid checksum). Checks
    /// nothing that would be wasted on a frame that never gets a second
    /// segment except what makes it a candidate; its checksum is verified
    /// on the first merge.
    pub fn start(head: &PacketBuf) -> Option<Open> {
        if head.meta.gso != Gso::None {
            return None;
        }
        let s = parse(head.data())?;
        if s.flags != ACK || s.len == 0 {
            return None;
        }
        Some(Open {
            family: s.family,
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
        let fam = self.family;
        // The largest frame the IP length field allows.
        let max_frame = fam.len_from() + MAX_IP_LEN;
        if s.family != fam
            || s.payload != self.hl
            || s.seq != self.next_seq
            || (s.flags != ACK && s.flags != ACK | PSH)
            || s.len == 0
            || s.len > self.mss
            || head.len() + s.len > max_frame
            || !same_headers(head.data(), f, fam, self.hl)
        {
            return false;
        }
        if self.segs == 1 && !sums_valid(head.data(), fam) {
            self.segs = 0;
            return false;
        }
        if !sums_valid(f, fam) {
            return false;
        }
        let Some(payload) = f.get(s.payload..) else {
            return false;
        };
        let at = head.len();
        if head.tailroom() < s.len {
            // Once per buffer: grown to the largest super-frame at once,
            // and kept by the pool afterwards.
            head.extend_zeroed(max_frame.saturating_sub(at));
            head.truncate(at);
        }
        // The bytes are overwritten right away: no need to zero them.
        head.set_len(at + s.len);
        if let Some(dst) = head.data_mut().get_mut(at..) {
            dst.copy_from_slice(payload);
        }
        if s.flags & PSH != 0 {
            if let Some(fl) = head.data_mut().get_mut(fam.l4() + 13) {
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
        let flags = head
            .data()
            .get(self.family.l4() + 13)
            .copied()
            .unwrap_or(PSH);
        let last_full = head
            .len()
            .saturating_sub(self.hl)
            .is_multiple_of(self.mss.max(1));
        self.segs > 0 && flags & PSH == 0 && last_full
    }

    /// Makes `head` a valid super-frame after merges: the IP length (and
    /// the IPv4 header checksum), [`Gso::TcpV4`] or [`Gso::TcpV6`] with the
    /// MSS, and a partial TCP checksum (the pseudo-header sum, what a
    /// vnet_hdr TAP's `NEEDS_CSUM` expects). A head nothing was merged
    /// into is left as it came.
    pub fn finish(&self, head: &mut PacketBuf) {
        if self.segs < 2 {
            return;
        }
        let fam = self.family;
        let l4 = fam.l4();
        let f = head.data_mut();
        let len = f.len();
        let (Ok(ip_len), Some(tcp_len), Ok(csum_start)) = (
            u16::try_from(len.saturating_sub(fam.len_from())),
            len.checked_sub(l4),
            u16::try_from(l4),
        ) else {
            return;
        };
        // The addresses are all the sum needs: taken before anything is
        // written, so a frame it cannot be taken from stays as it came.
        let Some(pseudo) = fam.pseudo(f, tcp_len) else {
            return;
        };
        let Some(field) = f.get_mut(fam.len_at()..fam.len_at() + 2) else {
            return;
        };
        field.copy_from_slice(&ip_len.to_be_bytes());
        if fam == Family::V4 {
            let Some(ip) = f.get_mut(ETH..l4) else {
                return;
            };
            ip[10..12].fill(0);
            let c = checksum::checksum(ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        if let Some(c) = f.get_mut(l4 + 16..l4 + 18) {
            c.copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        }
        head.meta.gso = fam.gso(u16::try_from(self.mss).unwrap_or(u16::MAX));
        head.meta.csum = CsumStatus::Partial {
            csum_start,
            csum_offset: 16,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::gso::Segmenter;
    use crate::packet::PacketPool;
    use core::net::{Ipv4Addr, Ipv6Addr};

    const FAMILIES: [Family; 2] = [Family::V4, Family::V6];
    /// TCP header with a timestamp option.
    const TCP_HL: usize = 32;

    fn hl(fam: Family) -> usize {
        fam.l4() + TCP_HL
    }

    /// An Ethernet/IP/TCP frame of `payload` bytes starting at `seq` with
    /// `flags`, a timestamp option, checksums left at 0. IPv6 with a
    /// traffic class and flow label that are not 0, so that keeping them
    /// is seen.
    fn frame(fam: Family, payload: usize, seq: u32, flags: u8) -> Vec<u8> {
        let l4 = fam.l4();
        let mut f = vec![0u8; l4 + TCP_HL];
        f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        match fam {
            Family::V4 => {
                f[12..14].copy_from_slice(&[0x08, 0x00]);
                f[14] = 0x45;
                f[16..18].copy_from_slice(&((20 + TCP_HL + payload) as u16).to_be_bytes());
                f[20] = 0x40;
                f[22] = 64;
                f[23] = 6;
                f[26..30].copy_from_slice(&[10, 0, 0, 1]);
                f[30..34].copy_from_slice(&[10, 0, 0, 2]);
            }
            Family::V6 => {
                f[12..14].copy_from_slice(&[0x86, 0xdd]);
                // Version 6, traffic class 0xb8, flow label 0x12345.
                f[14..18].copy_from_slice(&[0x6b, 0x81, 0x23, 0x45]);
                f[18..20].copy_from_slice(&((TCP_HL + payload) as u16).to_be_bytes());
                f[20] = 6;
                f[21] = 64;
                f[22..38].copy_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets());
                f[38..54].copy_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2).octets());
            }
        }
        f[l4..l4 + 2].copy_from_slice(&40000u16.to_be_bytes());
        f[l4 + 2..l4 + 4].copy_from_slice(&5201u16.to_be_bytes());
        f[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        f[l4 + 8..l4 + 12].copy_from_slice(&77u32.to_be_bytes());
        f[l4 + 12] = (TCP_HL as u8 / 4) << 4;
        f[l4 + 13] = flags;
        f[l4 + 14..l4 + 16].copy_from_slice(&512u16.to_be_bytes());
        f[l4 + 20..l4 + 32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]);
        f.extend((0..payload).map(|i| (i * 7 % 251) as u8));
        f
    }

    /// A super-frame of `payload` bytes (ACK|PSH, the sequence number
    /// wrapping inside it), as a vnet_hdr TAP hands it over.
    fn super_frame(fam: Family, payload: usize, mss: u16) -> PacketBuf {
        let mut p = PacketBuf::from_slice(&frame(fam, payload, 0xfffff000, ACK | PSH));
        p.meta.gso = fam.gso(mss);
        p
    }

    /// `sf` cut by the segmenter (every checksum computed), as they come
    /// out of the tunnel.
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

    /// Payload bytes and GSO type of each frame.
    fn shape(out: &[PacketBuf], fam: Family) -> Vec<(usize, Gso)> {
        out.iter()
            .map(|p| (p.len() - hl(fam), p.meta.gso))
            .collect()
    }

    /// The partial checksum a finished super-frame of `fam` carries.
    fn partial(fam: Family) -> CsumStatus {
        CsumStatus::Partial {
            csum_start: fam.l4() as u16,
            csum_offset: 16,
        }
    }

    /// Independent pseudo-header sum (from the wire module, not `Family`).
    fn pseudo_of(f: &[u8], fam: Family) -> u16 {
        let tcp_len = (f.len() - fam.l4()) as u32;
        checksum::fold(match fam {
            Family::V4 => {
                let a: [u8; 4] = f[26..30].try_into().unwrap();
                let b: [u8; 4] = f[30..34].try_into().unwrap();
                checksum::pseudo_header_v4(Ipv4Addr::from(a), Ipv4Addr::from(b), 6, tcp_len)
            }
            Family::V6 => {
                let a: [u8; 16] = f[22..38].try_into().unwrap();
                let b: [u8; 16] = f[38..54].try_into().unwrap();
                checksum::pseudo_header_v6(Ipv6Addr::from(a), Ipv6Addr::from(b), 6, tcp_len)
            }
        })
    }

    #[test]
    fn segments_become_the_super_frame_again() {
        let mut pool = PacketPool::new(2048);
        for fam in FAMILIES {
            let l4 = fam.l4();
            let sf = super_frame(fam, 10 * 1448 + 100, 1448);
            let segs = segments(&sf, &mut pool);
            assert_eq!(segs.len(), 11);
            let mut out = coalesce(segs);
            assert_eq!(out.len(), 1, "{fam:?}: one super-frame");
            let mut got = out.remove(0);
            assert_eq!(got.meta.gso, fam.gso(1448));
            assert_eq!(got.meta.csum, partial(fam));
            assert_eq!(
                &got.data()[l4 + 16..l4 + 18],
                &pseudo_of(got.data(), fam).to_be_bytes(),
                "{fam:?}: the pseudo-header sum, as NEEDS_CSUM expects"
            );
            // The same bytes as the original, once the checksums are
            // completed on both (and the IPv4 ID, which segmentation
            // advanced, is the first segment's: the original's).
            let mut want = sf.clone();
            want.meta.gso = Gso::None;
            want.meta.csum = partial(fam);
            let pseudo = pseudo_of(want.data(), fam);
            want.data_mut()[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
            if fam == Family::V4 {
                let ipc = checksum::checksum(&want.data()[14..34]);
                want.data_mut()[24..26].copy_from_slice(&ipc.to_be_bytes());
            }
            crate::packet::gso::complete_checksum(&mut want).unwrap();
            got.meta.gso = Gso::None;
            crate::packet::gso::complete_checksum(&mut got).unwrap();
            assert_eq!(got.data(), want.data(), "{fam:?}");
            assert!(
                sums_valid(got.data(), fam),
                "the completed checksum verifies"
            );
            // And it re-segments into segments with valid checksums.
            got.meta.gso = fam.gso(1448);
            let again = segments(&got, &mut pool);
            assert_eq!(again.len(), 11);
            assert!(again.iter().all(|s| sums_valid(s.data(), fam)));
        }
    }

    #[test]
    fn a_bad_checksum_or_a_gap_ends_the_super_frame() {
        let mut pool = PacketPool::new(2048);
        for fam in FAMILIES {
            let sf = super_frame(fam, 6 * 1000, 1000);
            // Segment 3 corrupted in flight: 0..=2 merge, 3 alone, 4..=5 merge.
            let mut segs = segments(&sf, &mut pool);
            let n = segs[3].len();
            segs[3].data_mut()[n - 1] ^= 0xff;
            let out = coalesce(segs);
            assert_eq!(
                shape(&out, fam),
                vec![
                    (3000, fam.gso(1000)),
                    (1000, Gso::None),
                    (2000, fam.gso(1000))
                ]
            );
            assert!(
                !sums_valid(out[1].data(), fam),
                "the bad segment travels as it came"
            );
            // A lost segment: the sequence number does not continue.
            let mut segs = segments(&sf, &mut pool);
            segs.remove(2);
            let out = coalesce(segs);
            assert_eq!(
                shape(&out, fam),
                vec![(2000, fam.gso(1000)), (3000, fam.gso(1000))]
            );
            // Another tunnel (VNI) never merges.
            let mut segs = segments(&sf, &mut pool);
            segs[1].meta.tunnel.tun_id = 9;
            assert_eq!(coalesce(segs).len(), 3);
            // Different headers (the window) never merge.
            let mut segs = segments(&sf, &mut pool);
            segs[1].data_mut()[fam.l4() + 14] ^= 1;
            assert_eq!(coalesce(segs).len(), 3);
            // A first segment whose own checksum is wrong never heads one.
            let mut segs = segments(&sf, &mut pool);
            let n = segs[0].len();
            segs[0].data_mut()[n - 1] ^= 0xff;
            assert_eq!(
                shape(&coalesce(segs), fam),
                vec![(1000, Gso::None), (5000, fam.gso(1000))]
            );
        }
    }

    #[test]
    fn ipv6_traffic_class_flow_label_hop_limit_and_extension_headers_never_merge() {
        let mut pool = PacketPool::new(2048);
        let sf = super_frame(Family::V6, 3000, 1000);
        // Each change from the second segment on, checksums still right
        // (none of these bytes is in the pseudo-header): the first travels
        // alone, the others merge among themselves.
        let changes: [(&str, usize, u8); 4] = [
            ("traffic class (ECN bits)", 15, 0x10),
            ("traffic class (DSCP)", 14, 0x01),
            ("flow label", 17, 0x01),
            ("hop limit", 21, 0x01),
        ];
        for (what, at, bit) in changes {
            let mut segs = segments(&sf, &mut pool);
            for s in &mut segs[1..] {
                s.data_mut()[at] ^= bit;
                assert!(sums_valid(s.data(), Family::V6), "{what}");
            }
            assert_eq!(
                shape(&coalesce(segs), Family::V6),
                vec![(1000, Gso::None), (2000, Gso::TcpV6 { size: 1000 })],
                "{what}"
            );
        }
        // A hop-by-hop options header (8 bytes of PadN) before TCP: the
        // segmenter cuts it, coalescing leaves every segment alone.
        let f = frame(Family::V6, 3000, 1, ACK | PSH);
        let mut g = f[..54].to_vec();
        g[20] = 0; // next header: hop-by-hop
        g[18..20].copy_from_slice(&((8 + TCP_HL + 3000) as u16).to_be_bytes());
        g.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        g.extend_from_slice(&f[54..]);
        let mut ext = PacketBuf::from_slice(&g);
        ext.meta.gso = Gso::TcpV6 { size: 1000 };
        let segs = segments(&ext, &mut pool);
        assert_eq!(segs.len(), 3);
        assert!(segs.iter().all(|s| Open::start(s).is_none()));
        assert!(coalesce(segs).iter().all(|p| p.meta.gso == Gso::None));
        // A jumbogram's payload length (0) is never a segment.
        let mut j = segments(&sf, &mut pool).remove(0);
        j.data_mut()[18..20].fill(0);
        assert!(Open::start(&j).is_none());
    }

    #[test]
    fn ipv4_and_ipv6_segments_never_merge_with_each_other() {
        let mut pool = PacketPool::new(2048);
        let v4 = segments(&super_frame(Family::V4, 4000, 1000), &mut pool);
        let v6 = segments(&super_frame(Family::V6, 4000, 1000), &mut pool);
        // Interleaved one by one: each travels alone.
        let mixed: Vec<PacketBuf> = v4
            .iter()
            .zip(&v6)
            .flat_map(|(a, b)| [a.clone(), b.clone()])
            .collect();
        let out = coalesce(mixed);
        assert_eq!(out.len(), 8);
        assert!(out.iter().all(|p| p.meta.gso == Gso::None));
        // Back to back: two super-frames, one of each family.
        let out = coalesce(v4.into_iter().chain(v6).collect());
        assert_eq!(
            out.iter().map(|p| p.meta.gso).collect::<Vec<_>>(),
            vec![Gso::TcpV4 { size: 1000 }, Gso::TcpV6 { size: 1000 }]
        );
        assert_eq!(out[0].len(), hl(Family::V4) + 4000);
        assert_eq!(out[1].len(), hl(Family::V6) + 4000);
    }

    #[test]
    fn a_super_frame_stops_at_the_ip_length_limit() {
        let mut pool = PacketPool::new(2048);
        // 140 contiguous 500-byte segments (two senders' super-frames that
        // have lost their PSH). The IP length field bounds what merges:
        // IPv4 counts its 20-byte header, IPv6 only what follows its fixed
        // header, so IPv6 takes one segment more.
        for (fam, first) in [(Family::V4, 130), (Family::V6, 131)] {
            let mut segs = Vec::new();
            for k in 0..2u32 {
                let mut sf = PacketBuf::from_slice(&frame(fam, 70 * 500, 1 + k * 70 * 500, ACK));
                sf.meta.gso = fam.gso(500);
                segs.extend(segments(&sf, &mut pool));
            }
            let out = coalesce(segs);
            assert_eq!(
                shape(&out, fam),
                vec![
                    (first * 500, fam.gso(500)),
                    ((140 - first) * 500, fam.gso(500))
                ],
                "{fam:?}"
            );
            let ip_len = usize::from(be16(out[0].data(), fam.len_at()).unwrap());
            assert_eq!(ip_len, out[0].len() - fam.len_from());
            assert!(ip_len <= MAX_IP_LEN && ip_len + 500 > MAX_IP_LEN);
        }
    }

    #[test]
    fn garbage_never_merges_or_panics() {
        let mut pool = PacketPool::new(2048);
        for fam in FAMILIES {
            let sf = super_frame(fam, 3000, 1000);
            let segs = segments(&sf, &mut pool);
            // Cut short at every length.
            for cut in 0..segs[1].len() {
                let mut head = segs[0].clone();
                let mut o = Open::start(&head).unwrap();
                let short = PacketBuf::from_slice(&segs[1].data()[..cut]);
                assert!(!o.append(&mut head, &short), "{fam:?}: cut at {cut}");
                o.finish(&mut head);
                assert_eq!(head.data(), segs[0].data(), "{fam:?}: head untouched");
            }
            // Any one header byte changed, whatever it is (a length, the
            // sequence number, a checksum, the flow label...): never merges.
            for at in 0..hl(fam) {
                for x in [0x01, 0x80, 0xff] {
                    let mut head = segs[0].clone();
                    let mut o = Open::start(&head).unwrap();
                    let mut bad = segs[1].clone();
                    bad.data_mut()[at] ^= x;
                    assert!(!o.append(&mut head, &bad), "{fam:?}: byte {at} ^ {x:#x}");
                }
            }
        }
        assert!(Open::start(&PacketBuf::from_slice(&[0u8; 20])).is_none());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                           v6 in any::<bool>(), at in 0usize..200, x in 1u8..=255) {
                let fam = if v6 { Family::V6 } else { Family::V4 };
                let mut pool = PacketPool::new(2048);
                let segs = segments(&super_frame(fam, 3000, 1000), &mut pool);
                // Arbitrary bytes after a real head, and as a head.
                let mut head = segs[0].clone();
                let mut o = Open::start(&head).unwrap();
                prop_assert!(!o.append(&mut head, &PacketBuf::from_slice(&bytes)));
                o.finish(&mut head);
                let mut junk = PacketBuf::from_slice(&bytes);
                if let Some(mut o) = Open::start(&junk) {
                    let _ = o.append(&mut junk, &segs[1]);
                    let _ = o.is_open(&junk);
                    o.finish(&mut junk);
                }
                // A real segment with one byte changed anywhere.
                let mut head = segs[0].clone();
                let mut o = Open::start(&head).unwrap();
                let mut bad = segs[1].clone();
                let n = bad.len();
                bad.data_mut()[at % n] ^= x;
                prop_assert!(!o.append(&mut head, &bad));
            }

            #[test]
            fn segments_always_coalesce_back(v6 in any::<bool>(), plen in 1usize..20000,
                                             mss in 200u16..1500, psh in any::<bool>()) {
                let fam = if v6 { Family::V6 } else { Family::V4 };
                let flags = if psh { ACK | PSH } else { ACK };
                let mut sf = PacketBuf::from_slice(&frame(fam, plen, 0xffff_0000, flags));
                sf.meta.gso = fam.gso(mss);
                let mut pool = PacketPool::new(2048);
                let out = coalesce(segments(&sf, &mut pool));
                prop_assert_eq!(out.len(), 1);
                let got = &out[0];
                prop_assert_eq!(&got.data()[hl(fam)..], &sf.data()[hl(fam)..]);
                let multi = plen > usize::from(mss);
                prop_assert_eq!(got.meta.gso, if multi { fam.gso(mss) } else { Gso::None });
                let ip_len = usize::from(be16(got.data(), fam.len_at()).unwrap());
                prop_assert_eq!(ip_len, got.len() - fam.len_from());
            }
        }
    }
}
