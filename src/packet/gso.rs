//! Software segmentation and checksum completion, for ports without offload.
//!
//! A TAP opened with vnet_hdr hands us (and accepts) TCP "super-packets" of
//! up to 64 KiB standing for many MSS-sized segments ([`Gso`]), and packets
//! whose L4 checksum holds only the pseudo-header sum
//! ([`CsumStatus::Partial`]). A port that cannot take those as they are (a
//! TAP without vnet_hdr, a tunnel) first cuts super-packets into real
//! segments ([`segment`], [`Segmenter`]) and completes partial checksums
//! ([`complete_checksum`]), as the kernel's `tcp_gso_segment` and
//! `skb_checksum_help` do.
//!
//! Segment rules (as Linux): every segment gets the full headers; IPv4 total
//! length and header checksum are recomputed and the IP ID increments per
//! segment; the IPv6 payload length is recomputed; the TCP sequence number
//! advances by the bytes before the segment; FIN and PSH stay only on the
//! last segment and CWR only on the first; each TCP checksum is computed in
//! full. Sums run over the IP datagram as its header delimits it, never over
//! Ethernet padding.
//!
//! Everything here is a function of the bytes: malformed input is a
//! [`GsoError`], never a panic.

use super::{Batch, CsumStatus, Gso, PacketBuf, PacketPool};
use crate::wire::checksum;
use core::net::{Ipv4Addr, Ipv6Addr};

/// Why a packet cannot be segmented or have its checksum completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GsoError {
    /// The headers end before they should.
    #[error("headers truncated")]
    Truncated,
    /// Not an IPv4/IPv6 TCP packet (after at most two VLAN tags).
    #[error("not a TCP packet")]
    NotTcp,
    /// A header field is impossible (IHL < 5, TCP data offset < 5, an IP
    /// length past the frame, a fragment).
    #[error("malformed headers")]
    Malformed,
    /// The GSO type says IPv4 and the packet is IPv6, or the other way.
    #[error("GSO type does not match the IP version")]
    GsoTypeMismatch,
    /// `gso_size` is zero.
    #[error("GSO size is zero")]
    ZeroMss,
    /// The partial checksum's start/offset point past the datagram.
    #[error("checksum offsets out of range")]
    BadCsumOffsets,
    /// The output batch has fewer free slots than the segments.
    #[error("{need} segments do not fit the batch")]
    NoRoom {
        /// Segments the packet makes.
        need: usize,
    },
    /// A segment does not fit the output buffer.
    #[error("output buffer too small")]
    BufferTooSmall,
}

const TCP: u8 = 6;
const UDP: u8 = 17;

/// Where the headers of an IP packet are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// Offset of the IP header (after all VLAN tags).
    pub l3_ofs: usize,
    /// Offset of the L4 header.
    pub l4_ofs: usize,
    /// IP protocol / final next header.
    pub proto: u8,
    /// True for IPv4.
    pub ipv4: bool,
    /// End of the IP datagram as its header says (excludes Ethernet
    /// padding); the frame length for a GSO packet whose length field is 0.
    pub ip_end: usize,
}

fn be16(b: &[u8], at: usize) -> Result<u16, GsoError> {
    match b.get(at..at + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(GsoError::Truncated),
    }
}

/// Finds the IP and L4 headers of an Ethernet frame (at most two VLAN tags,
/// IPv6 extension headers skipped).
pub fn parse_headers(frame: &[u8]) -> Result<Headers, GsoError> {
    let mut ofs = 12;
    let mut ethertype = be16(frame, ofs)?;
    let mut tags = 0;
    while matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) {
        tags += 1;
        if tags > 2 {
            return Err(GsoError::NotTcp);
        }
        ofs += 4;
        ethertype = be16(frame, ofs)?;
    }
    let l3 = ofs + 2;
    match ethertype {
        0x0800 => {
            let vihl = *frame.get(l3).ok_or(GsoError::Truncated)?;
            if vihl >> 4 != 4 {
                return Err(GsoError::Malformed);
            }
            let ihl = usize::from(vihl & 0x0f) * 4;
            if ihl < 20 {
                return Err(GsoError::Malformed);
            }
            if frame.len() < l3 + ihl {
                return Err(GsoError::Truncated);
            }
            let tot = usize::from(be16(frame, l3 + 2)?);
            let frag = be16(frame, l3 + 6)?;
            if frag & 0x3fff != 0 {
                return Err(GsoError::Malformed);
            }
            let ip_end = if tot == 0 {
                frame.len()
            } else if tot < ihl || l3 + tot > frame.len() {
                return Err(GsoError::Malformed);
            } else {
                l3 + tot
            };
            Ok(Headers {
                l3_ofs: l3,
                l4_ofs: l3 + ihl,
                proto: frame[l3 + 9],
                ipv4: true,
                ip_end,
            })
        }
        0x86dd => {
            let v = *frame.get(l3).ok_or(GsoError::Truncated)?;
            if v >> 4 != 6 {
                return Err(GsoError::Malformed);
            }
            if frame.len() < l3 + 40 {
                return Err(GsoError::Truncated);
            }
            let plen = usize::from(be16(frame, l3 + 4)?);
            let ip_end = if plen == 0 {
                frame.len()
            } else if l3 + 40 + plen > frame.len() {
                return Err(GsoError::Malformed);
            } else {
                l3 + 40 + plen
            };
            let mut next = frame[l3 + 6];
            let mut l4 = l3 + 40;
            // Hop-by-hop, routing and destination options; a fragment
            // header (44) cannot be segmented.
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 => {
                        let nh = *frame.get(l4).ok_or(GsoError::Truncated)?;
                        let len =
                            (usize::from(*frame.get(l4 + 1).ok_or(GsoError::Truncated)?) + 1) * 8;
                        next = nh;
                        l4 += len;
                        if l4 > ip_end {
                            return Err(GsoError::Truncated);
                        }
                    }
                    _ => break,
                }
            }
            if matches!(next, 0 | 43 | 60 | 44) {
                return Err(GsoError::Malformed);
            }
            Ok(Headers {
                l3_ofs: l3,
                l4_ofs: l4,
                proto: next,
                ipv4: false,
                ip_end,
            })
        }
        _ => Err(GsoError::NotTcp),
    }
}

/// The source and destination addresses, `N` bytes each, at `at`.
fn addrs<const N: usize>(frame: &[u8], at: usize) -> Result<([u8; N], [u8; N]), GsoError> {
    let b = frame.get(at..at + 2 * N).ok_or(GsoError::Truncated)?;
    let (s, d) = b.split_at(N);
    match (s.try_into(), d.try_into()) {
        (Ok(s), Ok(d)) => Ok((s, d)),
        _ => Err(GsoError::Truncated),
    }
}

impl Headers {
    /// The (unfolded) pseudo-header sum of `frame`'s IP addresses for
    /// `l4_len` bytes of protocol `proto`.
    pub fn pseudo_header(&self, frame: &[u8], proto: u8, l4_len: u32) -> Result<u32, GsoError> {
        Ok(if self.ipv4 {
            let (s, d) = addrs::<4>(frame, self.l3_ofs + 12)?;
            checksum::pseudo_header_v4(Ipv4Addr::from(s), Ipv4Addr::from(d), proto, l4_len)
        } else {
            let (s, d) = addrs::<16>(frame, self.l3_ofs + 8)?;
            checksum::pseudo_header_v6(Ipv6Addr::from(s), Ipv6Addr::from(d), proto, l4_len)
        })
    }
}

/// Cuts one TCP super-packet into segments, one at a time, into caller
/// buffers: a port can write each segment straight from a scratch buffer,
/// and [`segment`] builds packet buffers with it.
#[derive(Debug, Clone, Copy)]
pub struct Segmenter {
    h: Headers,
    tcp_hdr_len: usize,
    mss: usize,
    payload_len: usize,
    count: usize,
}

impl Segmenter {
    /// Prepares to segment `frame`, which `gso` says is a super-packet.
    /// `Gso::None` is treated as one segment of the whole payload (so the
    /// same code completes the checksum of an ordinary TCP packet).
    pub fn new(frame: &[u8], gso: Gso) -> Result<Segmenter, GsoError> {
        let h = parse_headers(frame)?;
        if h.proto != TCP {
            return Err(GsoError::NotTcp);
        }
        let mss = match gso {
            Gso::TcpV4 { size } if h.ipv4 => usize::from(size),
            Gso::TcpV6 { size } if !h.ipv4 => usize::from(size),
            Gso::None => usize::MAX,
            _ => return Err(GsoError::GsoTypeMismatch),
        };
        if mss == 0 {
            return Err(GsoError::ZeroMss);
        }
        let doff = usize::from(*frame.get(h.l4_ofs + 12).ok_or(GsoError::Truncated)? >> 4) * 4;
        if doff < 20 {
            return Err(GsoError::Malformed);
        }
        if h.l4_ofs + doff > h.ip_end {
            return Err(GsoError::Truncated);
        }
        let payload_len = h.ip_end - h.l4_ofs - doff;
        let count = if payload_len == 0 {
            1
        } else {
            payload_len.div_ceil(mss)
        };
        Ok(Segmenter {
            h,
            tcp_hdr_len: doff,
            mss,
            payload_len,
            count,
        })
    }

    /// Number of segments.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Bytes of headers copied into every segment (Ethernet, VLAN, IP, TCP):
    /// virtio_net_hdr's `hdr_len`.
    pub fn header_len(&self) -> usize {
        self.h.l4_ofs + self.tcp_hdr_len
    }

    /// The parsed header offsets.
    pub fn headers(&self) -> &Headers {
        &self.h
    }

    /// Length of segment `i` in bytes.
    pub fn segment_len(&self, i: usize) -> usize {
        self.header_len() + self.seg_payload(i).1
    }

    fn seg_payload(&self, i: usize) -> (usize, usize) {
        let start = i.saturating_mul(self.mss).min(self.payload_len);
        let len = self.mss.min(self.payload_len - start);
        (start, len)
    }

    /// Writes segment `i` of `frame` into `out`; returns its length.
    pub fn write(&self, frame: &[u8], i: usize, out: &mut [u8]) -> Result<usize, GsoError> {
        let hl = self.header_len();
        let (start, len) = self.seg_payload(i);
        let total = hl + len;
        if i >= self.count {
            return Err(GsoError::Malformed);
        }
        if out.len() < total {
            return Err(GsoError::BufferTooSmall);
        }
        let src = frame
            .get(hl + start..hl + start + len)
            .ok_or(GsoError::Truncated)?;
        out[..hl].copy_from_slice(frame.get(..hl).ok_or(GsoError::Truncated)?);
        out[hl..total].copy_from_slice(src);
        let seg = &mut out[..total];
        let (l3, l4) = (self.h.l3_ofs, self.h.l4_ofs);
        let tcp_len = self.tcp_hdr_len + len;
        if self.h.ipv4 {
            let ihl = l4 - l3;
            let tot = u16::try_from(ihl + tcp_len).map_err(|_| GsoError::Malformed)?;
            seg[l3 + 2..l3 + 4].copy_from_slice(&tot.to_be_bytes());
            let id = u16::from_be_bytes([seg[l3 + 4], seg[l3 + 5]]).wrapping_add(i as u16);
            seg[l3 + 4..l3 + 6].copy_from_slice(&id.to_be_bytes());
            seg[l3 + 10..l3 + 12].fill(0);
            let c = checksum::checksum(&seg[l3..l4]);
            seg[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        } else {
            let plen = u16::try_from(l4 - l3 - 40 + tcp_len).map_err(|_| GsoError::Malformed)?;
            seg[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        }
        let pseudo = self.h.pseudo_header(seg, TCP, tcp_len as u32)?;
        let seq = u32::from_be_bytes([seg[l4 + 4], seg[l4 + 5], seg[l4 + 6], seg[l4 + 7]])
            .wrapping_add(start as u32);
        seg[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = seg[l4 + 13];
        if i + 1 < self.count {
            flags &= !(0x01 | 0x08); // FIN, PSH: last segment only
        }
        if i > 0 {
            flags &= !0x80; // CWR: first segment only
        }
        seg[l4 + 13] = flags;
        seg[l4 + 16..l4 + 18].fill(0);
        let c = checksum::l4_checksum(pseudo, &seg[l4..]);
        seg[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
        Ok(total)
    }

    /// Segment `i` of `pkt` as a packet of its own, from `pool`, with
    /// `pkt`'s metadata (no GSO; checksums verified, they were just
    /// computed). The buffer goes back to `pool` on error.
    pub fn segment_packet(
        &self,
        pkt: &PacketBuf,
        i: usize,
        pool: &mut PacketPool,
    ) -> Result<PacketBuf, GsoError> {
        let mut p = pool.get();
        if p.tailroom() < self.segment_len(i) {
            // A segment larger than a pool buffer (a jumbo MSS): grow it once.
            p.extend_zeroed(self.segment_len(i));
        }
        match self.write(pkt.data(), i, p.rx_area()) {
            Ok(n) => p.set_len(n),
            Err(e) => {
                pool.put(p);
                return Err(e);
            }
        }
        p.meta = pkt.meta.clone();
        p.meta.gso = Gso::None;
        p.meta.csum = CsumStatus::Verified;
        Ok(p)
    }
}

/// Cuts the TCP super-packet `pkt` into MSS-sized segments appended to
/// `out`, each a full packet with correct IP and TCP headers and checksums
/// and `pkt`'s metadata (with `gso` cleared and `csum` verified). Fails
/// without touching `out` when the segments do not all fit.
pub fn segment(pkt: &PacketBuf, pool: &mut PacketPool, out: &mut Batch) -> Result<usize, GsoError> {
    let s = Segmenter::new(pkt.data(), pkt.meta.gso)?;
    if out.free() < s.count() {
        return Err(GsoError::NoRoom { need: s.count() });
    }
    for i in 0..s.count() {
        // `out` had room for every segment (checked above).
        let _ = out.push(s.segment_packet(pkt, i, pool)?);
    }
    Ok(s.count())
}

/// Fills in a partial L4 checksum ([`CsumStatus::Partial`]: the field holds
/// the pseudo-header sum, the rest is to be summed from `csum_start` to the
/// end of the IP datagram). Any other status is left alone. Afterwards the
/// status is `Verified`.
pub fn complete_checksum(pkt: &mut PacketBuf) -> Result<(), GsoError> {
    let CsumStatus::Partial {
        csum_start,
        csum_offset,
    } = pkt.meta.csum
    else {
        return Ok(());
    };
    let frame = pkt.data_mut();
    let (start, field) = (
        usize::from(csum_start),
        usize::from(csum_start) + usize::from(csum_offset),
    );
    // The IP header bounds the sum; without one (not IP), the frame does.
    let (end, proto) = match parse_headers(frame) {
        Ok(h) => (h.ip_end, Some(h.proto)),
        Err(_) => (frame.len(), None),
    };
    if start > end || field + 2 > end {
        return Err(GsoError::BadCsumOffsets);
    }
    let mut c = checksum::checksum(&frame[start..end]);
    if c == 0 && proto == Some(UDP) {
        c = 0xffff; // RFC 768: zero means "no checksum"
    }
    frame[field..field + 2].copy_from_slice(&c.to_be_bytes());
    pkt.meta.csum = CsumStatus::Verified;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Ipv4Header, Ipv6Header, SlicedPacket, TcpHeader, TransportSlice};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // Ethernet + IPv4 + TCP headers of a TSO super-packet with the layout a
    // Linux vnet_hdr TAP hands over (gso_type=TCPV4, NEEDS_CSUM
    // csum_start=34 csum_offset=16), built by hand field by field:
    //   eth  02:00:00:00:00:02 <- 02:00:00:00:00:01, type 0800
    //   ipv4 ihl=5 tos=0 tot_len=0x0c1c (3100) id=0x1234 DF ttl=64 proto=6
    //        csum=0 (recomputed per segment) 10.0.0.1 -> 10.0.0.2
    //   tcp  40000 -> 5001 seq=0x01000000 ack=0x02000000 doff=8 (12 bytes
    //        of options: NOP NOP timestamp) flags=PSH|ACK|FIN|CWR win=502
    //        csum=pseudo-header sum (filled in by the test) urg=0
    // followed by 3048 payload bytes (byte i = i % 251).
    const V4_HDRS: &str = "
        020000000002 020000000001 0800
        4500 0c1c 1234 4000 4006 0000 0a000001 0a000002
        9c40 1389 01000000 02000000 80 99 01f6 0000 0000
        0101 080a 00000001 00000002";

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    fn v4_superpacket() -> Vec<u8> {
        let mut f = hex(V4_HDRS);
        f.extend(payload(3048));
        // The pseudo-header sum the kernel leaves for CHECKSUM_PARTIAL.
        let p = checksum::pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            (f.len() - 34) as u32,
        );
        let c = checksum::fold(p);
        f[34 + 16..34 + 18].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// Checks a segment with etherparse: IPv4 header checksum and TCP
    /// checksum recomputed independently from the parsed headers.
    fn check_v4_segment(seg: &[u8]) -> (Ipv4Header, TcpHeader, Vec<u8>) {
        let sp = SlicedPacket::from_ethernet(seg).expect("etherparse parses the segment");
        let ip = match sp.net {
            Some(etherparse::NetSlice::Ipv4(ref v4)) => v4.header().to_header(),
            _ => panic!("not ipv4"),
        };
        assert_eq!(
            ip.header_checksum,
            ip.calc_header_checksum(),
            "IPv4 header checksum"
        );
        let TransportSlice::Tcp(tcp) = sp.transport.expect("tcp") else {
            panic!("not tcp")
        };
        let th = tcp.to_header();
        let pl = tcp.payload().to_vec();
        assert_eq!(
            th.checksum,
            th.calc_checksum_ipv4(&ip, &pl).unwrap(),
            "TCP checksum"
        );
        (ip, th, pl)
    }

    #[test]
    fn segments_ipv4_superpacket() {
        let f = v4_superpacket();
        let mut pkt = PacketBuf::from_slice(&f);
        pkt.meta.gso = Gso::TcpV4 { size: 1000 };
        pkt.meta.csum = CsumStatus::Partial {
            csum_start: 34,
            csum_offset: 16,
        };
        pkt.meta.in_port = 7;
        let mut pool = PacketPool::new(2048);
        let mut out = Batch::new();
        assert_eq!(segment(&pkt, &mut pool, &mut out), Ok(4));
        let mut joined = Vec::new();
        for (i, s) in out.iter().enumerate() {
            assert_eq!(s.meta.gso, Gso::None);
            assert_eq!(s.meta.csum, CsumStatus::Verified);
            assert_eq!(s.meta.in_port, 7);
            let (ip, th, pl) = check_v4_segment(s.data());
            let want_len = if i < 3 { 1000 } else { 48 };
            assert_eq!(pl.len(), want_len);
            assert_eq!(ip.total_len as usize, 20 + 32 + want_len);
            assert_eq!(ip.identification, 0x1234 + i as u16);
            assert!(ip.dont_fragment);
            assert_eq!(th.sequence_number, 0x0100_0000 + 1000 * i as u32);
            assert_eq!(th.acknowledgment_number, 0x0200_0000);
            assert!(th.ack);
            let last = i == 3;
            assert_eq!(th.fin, last, "FIN only on the last segment");
            assert_eq!(th.psh, last, "PSH only on the last segment");
            assert_eq!(th.cwr, i == 0, "CWR only on the first segment");
            assert_eq!(th.options.as_slice(), &hex("0101080a0000000100000002")[..]);
            joined.extend(pl);
        }
        assert_eq!(joined, payload(3048));
    }

    #[test]
    fn segments_vlan_tagged_ipv6() {
        // 802.1Q tag (vid 100) + IPv6 (2001:db8::1 -> 2001:db8::2, hop
        // limit 64, payload length 20+2500) + TCP 443 -> 50000, doff=5,
        // flags ACK|PSH, seq 0xfffffc00 (wraps during segmentation).
        let mut f = hex("020000000002 020000000001 8100 0064 86dd
             6000 0000 09d8 06 40
             20010db8000000000000000000000001
             20010db8000000000000000000000002
             01bb c350 fffffc00 00000001 5 0 18 ffff 0000 0000");
        f.extend(payload(2500));
        let mut pkt = PacketBuf::from_slice(&f);
        pkt.meta.gso = Gso::TcpV6 { size: 1220 };
        let mut pool = PacketPool::new(2048);
        let mut out = Batch::new();
        assert_eq!(segment(&pkt, &mut pool, &mut out), Ok(3));
        let mut seqs = Vec::new();
        let mut joined = Vec::new();
        for (i, s) in out.iter().enumerate() {
            let sp = SlicedPacket::from_ethernet(s.data()).unwrap();
            assert_eq!(sp.vlan_ids().first().map(|v| v.value()), Some(100));
            let ip: Ipv6Header = match sp.net {
                Some(etherparse::NetSlice::Ipv6(ref v6)) => v6.header().to_header(),
                _ => panic!("not ipv6"),
            };
            let TransportSlice::Tcp(tcp) = sp.transport.unwrap() else {
                panic!()
            };
            let th = tcp.to_header();
            let pl = tcp.payload().to_vec();
            assert_eq!(ip.payload_length as usize, 20 + pl.len());
            assert_eq!(
                th.checksum,
                th.calc_checksum_ipv6(&ip, &pl).unwrap(),
                "TCP checksum seg {i}"
            );
            assert_eq!(th.psh, i == 2);
            seqs.push(th.sequence_number);
            joined.extend(pl);
        }
        assert_eq!(
            seqs,
            vec![0xffff_fc00, 0xffff_fc00u32.wrapping_add(1220), 0x0000_0588]
        );
        assert_eq!(joined, payload(2500));
    }

    #[test]
    fn segment_refuses_what_does_not_fit_or_parse() {
        let f = v4_superpacket();
        let mut pkt = PacketBuf::from_slice(&f);
        pkt.meta.gso = Gso::TcpV4 { size: 100 }; // 31 segments
        let mut pool = PacketPool::new(2048);
        let mut out = Batch::new();
        for _ in 0..2 {
            let _ = out.push(pool.get());
        }
        assert_eq!(
            segment(&pkt, &mut pool, &mut out),
            Err(GsoError::NoRoom { need: 31 })
        );
        assert_eq!(out.len(), 2);
        pkt.meta.gso = Gso::TcpV6 { size: 100 };
        assert_eq!(
            segment(&pkt, &mut pool, &mut out),
            Err(GsoError::GsoTypeMismatch)
        );
        pkt.meta.gso = Gso::TcpV4 { size: 0 };
        assert_eq!(segment(&pkt, &mut pool, &mut out), Err(GsoError::ZeroMss));
        // Truncated at every length: an error, never a panic.
        for n in 0..80 {
            let mut p = PacketBuf::from_slice(&f[..n]);
            p.meta.gso = Gso::TcpV4 { size: 1000 };
            assert!(segment(&p, &mut pool, &mut out).is_err(), "len {n}");
        }
        // IPv4 total length larger than the frame.
        let mut bad = f.clone();
        bad[16] = 0xff;
        assert_eq!(
            Segmenter::new(&bad, Gso::TcpV4 { size: 1000 }).err(),
            Some(GsoError::Malformed)
        );
    }

    #[test]
    fn segmenter_writes_into_caller_buffers() {
        let f = v4_superpacket();
        let s = Segmenter::new(&f, Gso::TcpV4 { size: 1448 }).unwrap();
        assert_eq!(s.count(), 3);
        assert_eq!(s.header_len(), 66);
        let mut buf = [0u8; 1600];
        assert_eq!(
            s.write(&f, 0, &mut buf[..100]),
            Err(GsoError::BufferTooSmall)
        );
        let n = s.write(&f, 2, &mut buf).unwrap();
        assert_eq!(n, 66 + 3048 - 2 * 1448);
        check_v4_segment(&buf[..n]);
    }

    #[test]
    fn completes_partial_tcp_checksum_ignoring_padding() {
        // A bare TCP ACK (54 bytes) padded to 60 with non-zero junk, its
        // checksum field holding the pseudo-header sum (CHECKSUM_PARTIAL):
        // eth, ipv4 10.1.1.1 -> 10.1.1.2 tot_len=40 csum=0x2 4cf (computed
        // below), tcp 1234 -> 80 seq=1 ack=1 ACK win=512.
        let mut f = hex("020000000002 020000000001 0800
             4500 0028 0001 4000 4006 0000 0a010101 0a010102
             04d2 0050 00000001 00000001 5010 0200 0000 0000
             dead beef cafe");
        let ipc = checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&ipc.to_be_bytes());
        let p = checksum::pseudo_header_v4(
            Ipv4Addr::new(10, 1, 1, 1),
            Ipv4Addr::new(10, 1, 1, 2),
            6,
            20,
        );
        f[50..52].copy_from_slice(&checksum::fold(p).to_be_bytes());
        let mut pkt = PacketBuf::from_slice(&f);
        pkt.meta.csum = CsumStatus::Partial {
            csum_start: 34,
            csum_offset: 16,
        };
        complete_checksum(&mut pkt).unwrap();
        assert_eq!(pkt.meta.csum, CsumStatus::Verified);
        assert_eq!(
            &pkt.data()[54..],
            &hex("deadbeefcafe")[..],
            "padding untouched"
        );
        let (_, th, _) = check_v4_segment(&pkt.data()[..54]);
        assert_eq!(th.sequence_number, 1);
        // Not partial: untouched.
        let before = pkt.data().to_vec();
        complete_checksum(&mut pkt).unwrap();
        assert_eq!(pkt.data(), &before[..]);
    }

    #[test]
    fn completes_partial_udp_checksum() {
        // eth, ipv4 192.0.2.1 -> 192.0.2.2 tot_len=34, UDP 5000 -> 6081
        // len 14, payload "hello!"
        let mut f = hex("020000000002 020000000001 0800
             4500 0022 0000 0000 4011 0000 c0000201 c0000202
             1388 17c1 000e 0000 68656c6c6f21");
        let p = checksum::pseudo_header_v4(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            17,
            14,
        );
        f[40..42].copy_from_slice(&checksum::fold(p).to_be_bytes());
        let mut pkt = PacketBuf::from_slice(&f);
        pkt.meta.csum = CsumStatus::Partial {
            csum_start: 34,
            csum_offset: 6,
        };
        complete_checksum(&mut pkt).unwrap();
        let sp = SlicedPacket::from_ethernet(pkt.data()).unwrap();
        let ip = match sp.net {
            Some(etherparse::NetSlice::Ipv4(ref v4)) => v4.header().to_header(),
            _ => panic!(),
        };
        let TransportSlice::Udp(u) = sp.transport.unwrap() else {
            panic!()
        };
        let uh = u.to_header();
        assert_eq!(
            uh.checksum,
            uh.calc_checksum_ipv4(&ip, u.payload()).unwrap()
        );
        // Offsets past the datagram are an error.
        let mut bad = PacketBuf::from_slice(&f);
        bad.meta.csum = CsumStatus::Partial {
            csum_start: 34,
            csum_offset: 200,
        };
        assert_eq!(complete_checksum(&mut bad), Err(GsoError::BadCsumOffsets));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// A TCP super-packet built with etherparse (an independent
        /// encoder): IPv4 or IPv6, optional VLAN tag, `plen` payload bytes,
        /// TCP flags from `flags`.
        fn build(v6: bool, vlan: bool, plen: usize, flags: u8, seq: u32) -> Vec<u8> {
            let payload: Vec<u8> = (0..plen).map(|i| (i * 7 % 256) as u8).collect();
            let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
            let b = if vlan {
                b.single_vlan(etherparse::VlanId::try_new(42).unwrap())
            } else {
                b.single_vlan(etherparse::VlanId::try_new(1).unwrap())
            };
            let b = if v6 {
                b.ipv6(
                    [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                    [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                    64,
                )
            } else {
                b.ipv4([192, 0, 2, 1], [198, 51, 100, 7], 64)
            };
            let mut b = b.tcp(40000, 443, seq, 1000);
            if flags & 0x01 != 0 {
                b = b.fin();
            }
            if flags & 0x08 != 0 {
                b = b.psh();
            }
            if flags & 0x10 != 0 {
                b = b.ack(77);
            }
            if flags & 0x80 != 0 {
                b = b.cwr();
            }
            let mut out = Vec::new();
            b.write(&mut out, &payload).unwrap();
            if !vlan {
                // Drop the tag again: an untagged frame.
                out.drain(12..16);
            }
            out
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                           mss in 0u16..2000, v6 in any::<bool>(), start in 0u16..300, off in 0u16..300) {
                let mut p = PacketBuf::from_slice(&bytes);
                p.meta.gso = if v6 { Gso::TcpV6 { size: mss } } else { Gso::TcpV4 { size: mss } };
                let mut pool = PacketPool::new(2048);
                let mut out = Batch::new();
                let _ = segment(&p, &mut pool, &mut out);
                p.meta.csum = CsumStatus::Partial { csum_start: start, csum_offset: off };
                let _ = complete_checksum(&mut p);
                let _ = parse_headers(&bytes);
            }

            #[test]
            fn segments_verify_and_reassemble(v6 in any::<bool>(), vlan in any::<bool>(), plen in 0usize..6000,
                                              mss in 1u16..1500, flags in any::<u8>(), seq in any::<u32>()) {
                let f = build(v6, vlan, plen, flags & 0x99, seq);
                let gso = if v6 { Gso::TcpV6 { size: mss } } else { Gso::TcpV4 { size: mss } };
                let s = Segmenter::new(&f, gso).unwrap();
                let want = if plen == 0 { 1 } else { plen.div_ceil(usize::from(mss)) };
                prop_assert_eq!(s.count(), want);
                let mut joined = Vec::new();
                let mut buf = vec![0u8; 2000];
                for i in 0..s.count() {
                    let n = s.write(&f, i, &mut buf).unwrap();
                    let sp = SlicedPacket::from_ethernet(&buf[..n]).unwrap();
                    let Some(TransportSlice::Tcp(tcp)) = sp.transport.clone() else { panic!("tcp") };
                    let th = tcp.to_header();
                    let pl = tcp.payload().to_vec();
                    let ok = match sp.net {
                        Some(etherparse::NetSlice::Ipv4(ref v4)) => {
                            let ip = v4.header().to_header();
                            prop_assert_eq!(ip.header_checksum, ip.calc_header_checksum());
                            th.checksum == th.calc_checksum_ipv4(&ip, &pl).unwrap()
                        }
                        Some(etherparse::NetSlice::Ipv6(ref v6h)) => {
                            let ip = v6h.header().to_header();
                            th.checksum == th.calc_checksum_ipv6(&ip, &pl).unwrap()
                        }
                        _ => false,
                    };
                    prop_assert!(ok, "checksum of segment {}", i);
                    prop_assert_eq!(th.sequence_number, seq.wrapping_add((i * usize::from(mss)) as u32));
                    let last = i + 1 == s.count();
                    prop_assert_eq!(th.fin, last && flags & 0x01 != 0);
                    prop_assert_eq!(th.psh, last && flags & 0x08 != 0);
                    prop_assert_eq!(th.cwr, i == 0 && flags & 0x80 != 0);
                    joined.extend(pl);
                }
                let payload: Vec<u8> = (0..plen).map(|i| (i * 7 % 256) as u8).collect();
                prop_assert_eq!(joined, payload);
            }
        }
    }
}
