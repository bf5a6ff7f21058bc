//! IPv6 fixed header (RFC 8200) and the walk over extension headers to the
//! upper-layer protocol.
//!
//! As for IPv4, the datagram's extent comes from the header (`payload
//! length`), never from the buffer; bytes past it are Ethernet padding.
//!
//! [`walk_ext_headers`] skips hop-by-hop, routing, destination options, AH
//! and fragment headers the way Open vSwitch's `parse_ipv6_ext_hdrs` does:
//! a non-first fragment stops the walk (its upper-layer header is in the
//! first fragment), and an unknown next header is taken as the upper layer.
//! Jumbograms (payload length 0 + jumbo option) are not supported: such a
//! packet reads as an empty payload.

use core::net::Ipv6Addr;

use super::{copy_in, rd16, rd32, rd8, rd_arr, sub, sub_mut, tail_mut, wr16, wr32, wr8, wr_arr};
use super::{Error, IpProtocol, Result};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

/// Length of a fragment extension header.
pub const FRAG_HEADER_LEN: usize = 8;

/// A view of an IPv6 fixed header and the datagram it delimits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it (reads past its end yield zero).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps received bytes (which may run past the datagram: padding).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Truncated` for a short buffer, `BadVersion` unless version 6,
    /// `LengthExceedsFrame` when the payload length runs past the buffer.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        self.check_header_len()?;
        if HEADER_LEN + usize::from(self.payload_len()) > self.buffer.as_ref().len() {
            return Err(Error::LengthExceedsFrame);
        }
        Ok(())
    }

    /// The checks of [`Packet::check_len`] that concern the fixed header
    /// alone (for a datagram quoted in an ICMPv6 error, cut short of its
    /// payload length).
    #[inline]
    pub fn check_header_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::BadVersion);
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (6).
    #[inline]
    pub fn version(&self) -> u8 {
        rd8(self.buffer.as_ref(), 0) >> 4
    }

    /// Traffic class (DSCP << 2 | ECN), the IPv6 `nw_tos`.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (rd16(self.buffer.as_ref(), 0) >> 4) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        rd32(self.buffer.as_ref(), 0) & 0x000f_ffff
    }

    /// Payload length: everything after the fixed header, extension headers
    /// included.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        rd16(self.buffer.as_ref(), 4)
    }

    /// The header after the fixed one (maybe an extension header).
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(rd8(self.buffer.as_ref(), 6))
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        rd8(self.buffer.as_ref(), 7)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(rd_arr::<16>(self.buffer.as_ref(), 8))
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(rd_arr::<16>(self.buffer.as_ref(), 24))
    }

    /// The payload as delimited by the payload length (no padding).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        sub(
            self.buffer.as_ref(),
            HEADER_LEN,
            HEADER_LEN + usize::from(self.payload_len()),
        )
    }

    /// The whole datagram, without padding.
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        sub(
            self.buffer.as_ref(),
            0,
            HEADER_LEN + usize::from(self.payload_len()),
        )
    }

    /// Bytes in the buffer past the end of the datagram (Ethernet padding).
    #[inline]
    pub fn padding_len(&self) -> usize {
        self.buffer
            .as_ref()
            .len()
            .saturating_sub(HEADER_LEN + usize::from(self.payload_len()))
    }

    /// Walks the extension headers to the upper layer (see
    /// [`walk_ext_headers`]).
    #[inline]
    pub fn upper_layer(&self) -> Result<UpperLayer> {
        walk_ext_headers(self.next_header(), self.payload())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version, traffic class and flow label together.
    #[inline]
    pub fn set_version_tc_label(&mut self, version: u8, tc: u8, label: u32) {
        let w = (u32::from(version) << 28) | (u32::from(tc) << 20) | (label & 0x000f_ffff);
        wr32(self.buffer.as_mut(), 0, w)
    }

    /// Sets the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        let (v, l) = (self.version(), self.flow_label());
        self.set_version_tc_label(v, tc, l)
    }

    /// Sets the flow label.
    #[inline]
    pub fn set_flow_label(&mut self, label: u32) {
        let (v, tc) = (self.version(), self.traffic_class());
        self.set_version_tc_label(v, tc, label)
    }

    /// Sets the payload length.
    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 4, v)
    }

    /// Sets the next header.
    #[inline]
    pub fn set_next_header(&mut self, p: IpProtocol) {
        wr8(self.buffer.as_mut(), 6, p.into())
    }

    /// Sets the hop limit.
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        wr8(self.buffer.as_mut(), 7, v)
    }

    /// Sets the source address (no header checksum in IPv6; L4 checksums
    /// need `update_checksum_for_addr` on the L4 view).
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        wr_arr(self.buffer.as_mut(), 8, a.octets())
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        wr_arr(self.buffer.as_mut(), 24, a.octets())
    }

    /// Mutable payload (as delimited by the payload length).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        sub_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }
}

/// Where the upper-layer header of an IPv6 datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer {
    /// The upper-layer protocol; [`IpProtocol::Ipv6Frag`] for a non-first
    /// fragment (as Open vSwitch reports `nw_proto` for those).
    pub protocol: IpProtocol,
    /// Offset of the upper-layer header from the start of the IPv6 payload.
    pub offset: usize,
    /// A fragment header was seen (OVS `FLOW_NW_FRAG_ANY`).
    pub fragment: bool,
    /// ... and its offset was non-zero: no upper-layer header here
    /// (`FLOW_NW_FRAG_LATER`).
    pub later_fragment: bool,
}

/// Walks extension headers starting with `first` at the front of `payload`
/// (the IPv6 payload, delimited by the payload length). `Truncated` when an
/// extension header does not fit.
///
/// A fragment header with offset 0 and M=0 (an "atomic fragment", RFC 6946)
/// is not a fragment.
#[inline]
pub fn walk_ext_headers(first: IpProtocol, payload: &[u8]) -> Result<UpperLayer> {
    let mut proto = first;
    let mut off = 0usize;
    let mut fragment = false;
    // Each pass consumes at least 8 bytes, so the walk is bounded by the
    // payload length.
    loop {
        let len = match proto {
            IpProtocol::HopByHop | IpProtocol::Ipv6Route | IpProtocol::Ipv6Opts => {
                let h = sub(payload, off, off + 2);
                if h.len() < 2 {
                    return Err(Error::Truncated);
                }
                (usize::from(rd8(h, 1)) + 1) * 8
            }
            IpProtocol::Ah => {
                let h = sub(payload, off, off + 2);
                if h.len() < 2 {
                    return Err(Error::Truncated);
                }
                (usize::from(rd8(h, 1)) + 2) * 4
            }
            IpProtocol::Ipv6Frag => {
                let h = sub(payload, off, off + FRAG_HEADER_LEN);
                if h.len() < FRAG_HEADER_LEN {
                    return Err(Error::Truncated);
                }
                let offlg = rd16(h, 2);
                let next = IpProtocol::from(rd8(h, 0));
                off += FRAG_HEADER_LEN;
                if offlg != 0 {
                    fragment = true;
                    if offlg & 0xfff8 != 0 {
                        return Ok(UpperLayer {
                            protocol: IpProtocol::Ipv6Frag,
                            offset: off,
                            fragment: true,
                            later_fragment: true,
                        });
                    }
                }
                proto = next;
                continue;
            }
            _ => {
                return Ok(UpperLayer {
                    protocol: proto,
                    offset: off,
                    fragment,
                    later_fragment: false,
                })
            }
        };
        if off + len > payload.len() {
            return Err(Error::Truncated);
        }
        proto = IpProtocol::from(rd8(payload, off));
        off += len;
    }
}

/// A view of a hop-by-hop, routing or destination options header (they
/// share the next-header / length layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ExtHeader<T> {
    /// Wraps a buffer without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> ExtHeader<T> {
        ExtHeader { buffer }
    }

    /// Wraps a buffer holding the whole extension header.
    pub fn new_checked(buffer: T) -> Result<ExtHeader<T>> {
        let h = ExtHeader::new_unchecked(buffer);
        let len = h.buffer.as_ref().len();
        if len < 8 || h.header_len() > len {
            return Err(Error::Truncated);
        }
        Ok(h)
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(rd8(self.buffer.as_ref(), 0))
    }

    /// Whole header length in bytes ((Hdr Ext Len + 1) * 8).
    #[inline]
    pub fn header_len(&self) -> usize {
        (usize::from(rd8(self.buffer.as_ref(), 1)) + 1) * 8
    }

    /// The options / routing data after the first two bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        sub(self.buffer.as_ref(), 2, self.header_len())
    }
}

/// A parsed hop-by-hop / routing / destination options header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtHeaderRepr<'a> {
    /// Next header.
    pub next_header: IpProtocol,
    /// Bytes after the first two (length + 2 must be a multiple of 8).
    pub data: &'a [u8],
}

impl<'a> ExtHeaderRepr<'a> {
    /// Parses a checked view.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(h: &ExtHeader<&'a T>) -> Result<ExtHeaderRepr<'a>> {
        let buf: &'a T = h.buffer;
        let b: &'a [u8] = buf.as_ref();
        let len = b.len();
        if len < 8 || h.header_len() > len {
            return Err(Error::Truncated);
        }
        Ok(ExtHeaderRepr {
            next_header: h.next_header(),
            data: sub(b, 2, h.header_len()),
        })
    }

    /// Bytes [`ExtHeaderRepr::emit`] writes (rounded up to 8).
    pub fn buffer_len(&self) -> usize {
        (self.data.len() + 2).div_ceil(8) * 8
    }

    /// Writes the header; the data is zero-padded (Pad1/PadN of zeros is a
    /// run of Pad1 options).
    pub fn emit(&self, buf: &mut [u8]) {
        let n = self.buffer_len();
        wr8(buf, 0, self.next_header.into());
        wr8(buf, 1, (n / 8).saturating_sub(1) as u8);
        let body = sub_mut(buf, 2, n);
        body.fill(0);
        copy_in(body, self.data);
    }
}

/// A view of a fragment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FragHeader<T> {
    /// Wraps a buffer without checking it.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> FragHeader<T> {
        FragHeader { buffer }
    }

    /// Wraps a buffer holding at least 8 bytes.
    pub fn new_checked(buffer: T) -> Result<FragHeader<T>> {
        if buffer.as_ref().len() < FRAG_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(FragHeader { buffer })
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(rd8(self.buffer.as_ref(), 0))
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        rd16(self.buffer.as_ref(), 2) & 0xfff8
    }

    /// More fragments.
    #[inline]
    pub fn more_frags(&self) -> bool {
        rd16(self.buffer.as_ref(), 2) & 1 != 0
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u32 {
        rd32(self.buffer.as_ref(), 4)
    }
}

/// A parsed fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragRepr {
    /// Next header.
    pub next_header: IpProtocol,
    /// Offset in bytes (multiple of 8).
    pub frag_offset: u16,
    /// More fragments.
    pub more_frags: bool,
    /// Identification.
    pub ident: u32,
}

impl FragRepr {
    /// Parses a view.
    pub fn parse<T: AsRef<[u8]>>(h: &FragHeader<T>) -> Result<FragRepr> {
        if h.buffer.as_ref().len() < FRAG_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(FragRepr {
            next_header: h.next_header(),
            frag_offset: h.frag_offset(),
            more_frags: h.more_frags(),
            ident: h.ident(),
        })
    }

    /// Always 8.
    pub const fn buffer_len(&self) -> usize {
        FRAG_HEADER_LEN
    }

    /// Writes the header.
    pub fn emit(&self, buf: &mut [u8]) {
        wr8(buf, 0, self.next_header.into());
        wr8(buf, 1, 0);
        wr16(
            buf,
            2,
            (self.frag_offset & 0xfff8) | u16::from(self.more_frags),
        );
        wr32(buf, 4, self.ident);
    }
}

/// A parsed IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// The header after the fixed one.
    pub next_header: IpProtocol,
    /// Payload length (extension headers included).
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Repr {
    /// Parses a checked view.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        })
    }

    /// Always 40.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_version_tc_label(6, self.traffic_class, self.flow_label);
        p.set_payload_len(self.payload_len.min(usize::from(u16::MAX)) as u16);
        p.set_next_header(self.next_header);
        p.set_hop_limit(self.hop_limit);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
    }

    /// Writes the fixed header followed by `payload`.
    pub fn emit_with_payload(&self, buf: &mut [u8], payload: &[u8]) {
        self.emit(&mut Packet::new_unchecked(&mut *buf));
        copy_in(tail_mut(buf, HEADER_LEN), payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixed header hand-assembled from RFC 8200 section 3: TC 0xb8, label
    // 0x12345, payload 8, next header UDP, hop limit 64, fe80::1 -> ff02::1;
    // followed by an 8-byte UDP header and two bytes of padding.
    fn example() -> Vec<u8> {
        let mut v = vec![0x6b, 0x81, 0x23, 0x45, 0x00, 0x08, 0x11, 0x40];
        v.extend_from_slice(&"fe80::1".parse::<Ipv6Addr>().unwrap().octets());
        v.extend_from_slice(&"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
        v.extend_from_slice(&[0x12, 0x34, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00]);
        v.extend_from_slice(&[0xee, 0xee]);
        v
    }

    #[test]
    fn parse_emit_round_trip() {
        let b = example();
        let p = Packet::new_checked(&b[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.traffic_class, 0xb8);
        assert_eq!(r.flow_label, 0x12345);
        assert_eq!(r.payload_len, 8);
        assert_eq!(p.padding_len(), 2);
        assert_eq!(p.payload().len(), 8);
        let mut out = vec![0u8; 48];
        r.emit_with_payload(&mut out, p.payload());
        assert_eq!(out[..], b[..48]);
    }

    #[test]
    fn errors() {
        let mut b = example();
        assert_eq!(Packet::new_checked(&b[..39]).unwrap_err(), Error::Truncated);
        assert_eq!(
            Packet::new_checked(&b[..47]).unwrap_err(),
            Error::LengthExceedsFrame
        );
        b[0] = 0x4b;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::BadVersion);
    }

    #[test]
    fn walk_hbh_dstopts_frag() {
        // hop-by-hop (8 bytes, next dst-opts), dst-opts (16 bytes, next
        // fragment), first fragment (offset 0, M=1, next TCP), TCP bytes.
        let mut pl = vec![60, 0, 1, 4, 0, 0, 0, 0];
        pl.extend_from_slice(&[44, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        pl.extend_from_slice(&[6, 0, 0x00, 0x01, 0, 0, 0, 7]);
        pl.extend_from_slice(&[0u8; 20]);
        let u = walk_ext_headers(IpProtocol::HopByHop, &pl).unwrap();
        assert_eq!(u.protocol, IpProtocol::Tcp);
        assert_eq!(u.offset, 32);
        assert!(u.fragment && !u.later_fragment);
        // Later fragment: offset 8.
        pl[26] = 0x00;
        pl[27] = 0x08;
        let u = walk_ext_headers(IpProtocol::HopByHop, &pl).unwrap();
        assert_eq!(u.protocol, IpProtocol::Ipv6Frag);
        assert!(u.later_fragment);
        // Dst-opts header claiming 24 bytes in a 20-byte payload.
        assert_eq!(
            walk_ext_headers(IpProtocol::Ipv6Opts, &[6, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::Truncated)
        );
        // Atomic fragment (offset 0, M=0) is not a fragment.
        let u = walk_ext_headers(IpProtocol::Ipv6Frag, &[17, 0, 0, 0, 0, 0, 0, 9]).unwrap();
        assert_eq!(u.protocol, IpProtocol::Udp);
        assert!(!u.fragment);
    }

    #[test]
    fn ext_reprs_round_trip() {
        let f = FragRepr {
            next_header: IpProtocol::Udp,
            frag_offset: 1448,
            more_frags: true,
            ident: 0xdead_beef,
        };
        let mut b = [0u8; 8];
        f.emit(&mut b);
        assert_eq!(b, [17, 0, 0x05, 0xa9, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(
            FragRepr::parse(&FragHeader::new_checked(&b[..]).unwrap()).unwrap(),
            f
        );
        let e = ExtHeaderRepr {
            next_header: IpProtocol::Tcp,
            data: &[1, 4, 0, 0, 0, 0],
        };
        let mut b = [0xffu8; 8];
        e.emit(&mut b);
        assert_eq!(b, [6, 0, 1, 4, 0, 0, 0, 0]);
        let v = ExtHeader::new_checked(&b[..]).unwrap();
        assert_eq!(ExtHeaderRepr::parse(&v).unwrap(), e);
    }
}
