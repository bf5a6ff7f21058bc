//! UDP header (RFC 768).
//!
//! A view wraps the IP payload as the IP header delimits it. The UDP length
//! field must lie between 8 and that payload's length; the datagram is what
//! the UDP length says (bytes after it inside the IP payload are ignored, as
//! Linux trims them).
//!
//! Checksum 0 over IPv4 means "none": incremental updates keep it 0, and a
//! computed checksum of 0 is sent as 0xffff. Over IPv6 a checksum is
//! mandatory (RFC 8200 section 8.1).

use core::net::{Ipv4Addr, Ipv6Addr};

use super::{checksum, copy_in, rd16, sub, sub_mut, wr16};
use super::{AddrPair, Error, IpProtocol, Result};

/// Length of the header.
pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram.
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

    /// Wraps an IP payload: `Truncated` under 8 bytes, `LengthTooShort` for
    /// a length field below 8, `LengthExceedsFrame` for one past the buffer.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The checks [`Packet::new_checked`] does.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let l = usize::from(self.len());
        if l < HEADER_LEN {
            return Err(Error::LengthTooShort);
        }
        if l > len {
            return Err(Error::LengthExceedsFrame);
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        rd16(self.buffer.as_ref(), 0)
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        rd16(self.buffer.as_ref(), 2)
    }

    /// Length field (header + payload).
    #[inline]
    pub fn len(&self) -> u16 {
        rd16(self.buffer.as_ref(), 4)
    }

    /// True when the length field says there is no payload.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        rd16(self.buffer.as_ref(), 6)
    }

    /// Payload as the length field delimits it.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        sub(self.buffer.as_ref(), HEADER_LEN, usize::from(self.len()))
    }

    /// The datagram (header + payload) as the length field delimits it.
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        sub(self.buffer.as_ref(), 0, usize::from(self.len()))
    }

    /// True when the checksum verifies. A zero checksum is "absent" over
    /// IPv4 (true here) and invalid over IPv6 (false).
    #[inline]
    pub fn verify_checksum(&self, addrs: &AddrPair) -> bool {
        if self.checksum() == 0 {
            return addrs.is_v4();
        }
        let d = self.datagram();
        let ph = addrs.pseudo_sum(IpProtocol::Udp, d.len());
        checksum::l4_checksum(ph, d) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port (checksum untouched).
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 0, v)
    }

    /// Sets the destination port (checksum untouched).
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 2, v)
    }

    /// Sets the length field.
    #[inline]
    pub fn set_len(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 4, v)
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 6, v)
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let l = usize::from(self.len());
        sub_mut(self.buffer.as_mut(), HEADER_LEN, l)
    }

    /// Computes and stores the checksum (0 is sent as 0xffff).
    #[inline]
    pub fn fill_checksum(&mut self, addrs: &AddrPair) {
        self.set_checksum(0);
        let d = self.datagram();
        let ph = addrs.pseudo_sum(IpProtocol::Udp, d.len());
        let c = match checksum::l4_checksum(ph, d) {
            0 => 0xffff,
            c => c,
        };
        self.set_checksum(c);
    }

    /// Applies an RFC 1624 update to the checksum unless it is 0 over IPv4
    /// ("no checksum" stays "no checksum"); a result of 0 becomes 0xffff.
    #[inline]
    fn patch_checksum(&mut self, f: impl FnOnce(u16) -> u16, v4: bool) {
        let c = self.checksum();
        if c == 0 && v4 {
            return;
        }
        let n = match f(c) {
            0 => 0xffff,
            n => n,
        };
        self.set_checksum(n);
    }

    /// Sets the source port and patches the checksum. `v4` says whether the
    /// datagram rides on IPv4 (where checksum 0 means none).
    #[inline]
    pub fn rewrite_src_port(&mut self, port: u16, v4: bool) {
        let old = self.src_port();
        self.set_src_port(port);
        self.patch_checksum(|c| checksum::update16(c, old, port), v4);
    }

    /// Sets the destination port and patches the checksum.
    #[inline]
    pub fn rewrite_dst_port(&mut self, port: u16, v4: bool) {
        let old = self.dst_port();
        self.set_dst_port(port);
        self.patch_checksum(|c| checksum::update16(c, old, port), v4);
    }

    /// Patches the checksum after an IPv4 pseudo-header address changed
    /// (a zero checksum stays zero).
    #[inline]
    pub fn update_checksum_for_addr_v4(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        self.patch_checksum(
            |c| checksum::update32(c, old.to_bits(), new.to_bits()),
            true,
        );
    }

    /// Patches the checksum after an IPv6 pseudo-header address changed.
    #[inline]
    pub fn update_checksum_for_addr_v6(&mut self, old: Ipv6Addr, new: Ipv6Addr) {
        self.patch_checksum(
            |c| checksum::update_bytes(c, &old.octets(), &new.octets()),
            false,
        );
    }
}

/// A parsed UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses a checked view (checksum not verified).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>> {
        p.check_len()?;
        let buf: &'a T = p.buffer;
        Ok(Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            payload: sub(buf.as_ref(), HEADER_LEN, usize::from(p.len())),
        })
    }

    /// Header + payload length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes header and payload. With `addrs` the checksum is filled;
    /// without it is 0 (allowed over IPv4 only, e.g. Geneve senders that
    /// skip the outer checksum).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>, addrs: Option<&AddrPair>) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_len(self.buffer_len().min(usize::from(u16::MAX)) as u16);
        p.set_checksum(0);
        copy_in(p.payload_mut(), self.payload);
        if let Some(a) = addrs {
            p.fill_checksum(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // DNS-like query 10.0.0.1:53000 -> 10.0.0.2:53 with a 4-byte payload;
    // header hand-assembled from RFC 768, checksum filled by `fill_checksum`
    // and checked against a manual one's-complement sum below.
    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn dgram() -> [u8; 12] {
        let mut b = [0xcf, 0x08, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 1, 2, 3, 4];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.fill_checksum(&AddrPair::V4 { src: SRC, dst: DST });
        b
    }

    #[test]
    fn checksum_by_hand() {
        // Pseudo-header 0a00 0001 0a00 0002 0011 000c, header cf08 0035
        // 000c 0000, payload 0102 0304: sum = 0xe76f, complement 0x1890.
        let b = dgram();
        assert_eq!(u16::from_be_bytes([b[6], b[7]]), 0x1890);
    }

    #[test]
    fn parse_emit_round_trip_and_errors() {
        let b = dgram();
        let a = AddrPair::V4 { src: SRC, dst: DST };
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(&a));
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            (r.src_port, r.dst_port, r.payload),
            (53000, 53, &[1, 2, 3, 4][..])
        );
        let mut out = [0u8; 12];
        r.emit(&mut Packet::new_unchecked(&mut out[..]), Some(&a));
        assert_eq!(out, b);
        assert_eq!(Packet::new_checked(&b[..7]).unwrap_err(), Error::Truncated);
        assert_eq!(
            Packet::new_checked(&b[..11]).unwrap_err(),
            Error::LengthExceedsFrame
        );
        let mut c = b;
        c[5] = 7;
        assert_eq!(
            Packet::new_checked(&c[..]).unwrap_err(),
            Error::LengthTooShort
        );
    }

    #[test]
    fn zero_checksum_stays_zero_over_v4() {
        let mut b = dgram();
        b[6] = 0;
        b[7] = 0;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.update_checksum_for_addr_v4(SRC, Ipv4Addr::new(1, 2, 3, 4));
        p.rewrite_dst_port(5353, true);
        assert_eq!(p.checksum(), 0);
        // Over IPv6 the same patch applies (a zero there is invalid anyway).
        p.rewrite_dst_port(53, false);
        assert_ne!(p.checksum(), 0);
    }

    #[test]
    fn incremental_updates_verify() {
        let mut b = dgram();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        let nsrc = Ipv4Addr::new(203, 0, 113, 9);
        p.update_checksum_for_addr_v4(SRC, nsrc);
        p.rewrite_src_port(1, true);
        assert!(p.verify_checksum(&AddrPair::V4 {
            src: nsrc,
            dst: DST
        }));
    }
}
