//! IPv4 header (RFC 791).
//!
//! The datagram's extent is `total_length`, never the buffer: a view over a
//! padded Ethernet payload reports the padding through
//! [`Packet::padding_len`] and leaves it out of [`Packet::payload`], so no
//! checksum and no TCP segment length can ever include it.
//!
//! The `rewrite_*` setters change one field and patch the header checksum
//! incrementally (RFC 1624) instead of recomputing it, as the datapath's
//! set-field actions need. Plain `set_*` setters leave the checksum alone.

use core::net::Ipv4Addr;

use super::checksum;
use super::{copy_in, rd16, rd32, rd8, sub, sub_mut, wr16, wr32, wr8, IpProtocol};
use super::{Error, Result};

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// The Don't Fragment flag in the flags/offset word.
pub const FLAG_DF: u16 = 0x4000;
/// The More Fragments flag in the flags/offset word.
pub const FLAG_MF: u16 = 0x2000;
/// The fragment offset (in 8-byte units) in the flags/offset word.
pub const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 header and the datagram it delimits.
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

    /// Wraps received bytes (which may run past the datagram: padding),
    /// checking the version and that the header and total length fit.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The checks [`Packet::new_checked`] does, in the order a receiver
    /// meets the fields: a short buffer is `Truncated`, a version other than
    /// 4 is `BadVersion`, IHL < 5 or total length < header length is
    /// `LengthTooShort`, total length past the buffer is `LengthExceedsFrame`.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        self.check_header_len()?;
        let tl = usize::from(self.total_len());
        if tl < self.header_len() {
            return Err(Error::LengthTooShort);
        }
        if tl > self.buffer.as_ref().len() {
            return Err(Error::LengthExceedsFrame);
        }
        Ok(())
    }

    /// The checks of [`Packet::check_len`] that concern the header alone,
    /// all a datagram quoted in an ICMP error can be held to: the quote
    /// stops a few bytes into the payload, short of the total length.
    #[inline]
    pub fn check_header_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::BadVersion);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::LengthTooShort);
        }
        if hl > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (4 for IPv4).
    #[inline]
    pub fn version(&self) -> u8 {
        rd8(self.buffer.as_ref(), 0) >> 4
    }

    /// Header length in bytes (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(rd8(self.buffer.as_ref(), 0) & 0x0f) * 4
    }

    /// The TOS byte (DSCP << 2 | ECN).
    #[inline]
    pub fn tos(&self) -> u8 {
        rd8(self.buffer.as_ref(), 1)
    }

    /// DSCP (6 bits).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    /// ECN (2 bits).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.tos() & 3
    }

    /// Total length: header plus payload, the datagram's true extent.
    #[inline]
    pub fn total_len(&self) -> u16 {
        rd16(self.buffer.as_ref(), 2)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        rd16(self.buffer.as_ref(), 4)
    }

    /// The raw flags + fragment offset word.
    #[inline]
    pub fn frag_word(&self) -> u16 {
        rd16(self.buffer.as_ref(), 6)
    }

    /// Don't Fragment.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.frag_word() & FLAG_DF != 0
    }

    /// More Fragments.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.frag_word() & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.frag_word() & FRAG_OFFSET_MASK) << 3
    }

    /// True for any fragment (MF set or offset non-zero).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.frag_word() & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    /// True for a fragment other than the first: it carries no L4 header.
    #[inline]
    pub fn is_later_fragment(&self) -> bool {
        self.frag_word() & FRAG_OFFSET_MASK != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        rd8(self.buffer.as_ref(), 8)
    }

    /// Protocol of the payload.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(rd8(self.buffer.as_ref(), 9))
    }

    /// Header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        rd16(self.buffer.as_ref(), 10)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(rd32(self.buffer.as_ref(), 12))
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(rd32(self.buffer.as_ref(), 16))
    }

    /// The header, options included.
    #[inline]
    pub fn header(&self) -> &[u8] {
        sub(self.buffer.as_ref(), 0, self.header_len())
    }

    /// Options (between the fixed header and the payload).
    #[inline]
    pub fn options(&self) -> &[u8] {
        sub(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// The payload as delimited by total length: no Ethernet padding.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        sub(
            self.buffer.as_ref(),
            self.header_len(),
            usize::from(self.total_len()),
        )
    }

    /// The whole datagram (header + payload), without padding.
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        sub(self.buffer.as_ref(), 0, usize::from(self.total_len()))
    }

    /// Bytes in the buffer past the end of the datagram (Ethernet padding).
    #[inline]
    pub fn padding_len(&self) -> usize {
        self.buffer
            .as_ref()
            .len()
            .saturating_sub(usize::from(self.total_len()))
    }

    /// True when the header checksum verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version and header length (bytes, a multiple of 4).
    #[inline]
    pub fn set_version_and_header_len(&mut self, version: u8, header_len: usize) {
        let ihl = ((header_len / 4) & 0x0f) as u8;
        wr8(self.buffer.as_mut(), 0, (version << 4) | ihl)
    }

    /// Sets the TOS byte (checksum untouched).
    #[inline]
    pub fn set_tos(&mut self, tos: u8) {
        wr8(self.buffer.as_mut(), 1, tos)
    }

    /// Sets total length (checksum untouched).
    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 2, v)
    }

    /// Sets identification (checksum untouched).
    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 4, v)
    }

    /// Sets the flags + fragment offset word (checksum untouched).
    #[inline]
    pub fn set_frag_word(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 6, v)
    }

    /// Sets the TTL (checksum untouched).
    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        wr8(self.buffer.as_mut(), 8, v)
    }

    /// Sets the protocol (checksum untouched).
    #[inline]
    pub fn set_next_header(&mut self, p: IpProtocol) {
        wr8(self.buffer.as_mut(), 9, p.into())
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 10, v)
    }

    /// Sets the source address (checksum untouched).
    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        wr32(self.buffer.as_mut(), 12, a.to_bits())
    }

    /// Sets the destination address (checksum untouched).
    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        wr32(self.buffer.as_mut(), 16, a.to_bits())
    }

    /// Recomputes the header checksum from scratch.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// Sets the source address and patches the header checksum (RFC 1624).
    /// The L4 checksum also covers the address: see
    /// `tcp::Packet::update_checksum_for_addr` / the UDP equivalent.
    #[inline]
    pub fn rewrite_src_addr(&mut self, a: Ipv4Addr) {
        let old = self.src_addr().to_bits();
        self.set_src_addr(a);
        let c = checksum::update32(self.checksum(), old, a.to_bits());
        self.set_checksum(c);
    }

    /// Sets the destination address and patches the header checksum.
    #[inline]
    pub fn rewrite_dst_addr(&mut self, a: Ipv4Addr) {
        let old = self.dst_addr().to_bits();
        self.set_dst_addr(a);
        let c = checksum::update32(self.checksum(), old, a.to_bits());
        self.set_checksum(c);
    }

    /// Sets the TTL and patches the header checksum.
    #[inline]
    pub fn rewrite_ttl(&mut self, ttl: u8) {
        // TTL shares a 16-bit word with the protocol.
        let old = rd16(self.buffer.as_ref(), 8);
        self.set_ttl(ttl);
        let new = rd16(self.buffer.as_ref(), 8);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Sets the TOS byte and patches the header checksum.
    #[inline]
    pub fn rewrite_tos(&mut self, tos: u8) {
        // TOS shares a 16-bit word with version/IHL.
        let old = rd16(self.buffer.as_ref(), 0);
        self.set_tos(tos);
        let new = rd16(self.buffer.as_ref(), 0);
        let c = checksum::update16(self.checksum(), old, new);
        self.set_checksum(c);
    }

    /// Mutable payload (as delimited by total length).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (h, t) = (self.header_len(), usize::from(self.total_len()));
        sub_mut(self.buffer.as_mut(), h, t)
    }
}

/// A parsed IPv4 header. Options are not represented: [`Repr::emit`] writes
/// a 20-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol.
    pub next_header: IpProtocol,
    /// Payload length (total length minus header length).
    pub payload_len: usize,
    /// TTL.
    pub ttl: u8,
    /// TOS byte.
    pub tos: u8,
    /// Identification.
    pub ident: u16,
    /// Don't Fragment.
    pub dont_frag: bool,
    /// More Fragments.
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8).
    pub frag_offset: u16,
}

impl Repr {
    /// Parses a checked view. The header checksum is not verified here
    /// (see [`Packet::verify_checksum`]): whether to check is the caller's
    /// policy.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
            ttl: p.ttl(),
            tos: p.tos(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
            more_frags: p.more_frags(),
            frag_offset: p.frag_offset(),
        })
    }

    /// Bytes of header [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with a correct checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_version_and_header_len(4, HEADER_LEN);
        p.set_tos(self.tos);
        let total = (HEADER_LEN + self.payload_len).min(usize::from(u16::MAX));
        p.set_total_len(total as u16);
        p.set_ident(self.ident);
        let mut fw = (self.frag_offset >> 3) & FRAG_OFFSET_MASK;
        if self.dont_frag {
            fw |= FLAG_DF;
        }
        if self.more_frags {
            fw |= FLAG_MF;
        }
        p.set_frag_word(fw);
        p.set_ttl(self.ttl);
        p.set_next_header(self.next_header);
        p.set_src_addr(self.src_addr);
        p.set_dst_addr(self.dst_addr);
        p.fill_checksum();
    }

    /// Writes the header followed by `payload` (whose length should be
    /// `payload_len`).
    pub fn emit_with_payload(&self, buf: &mut [u8], payload: &[u8]) {
        self.emit(&mut Packet::new_unchecked(&mut *buf));
        copy_in(super::tail_mut(buf, HEADER_LEN), payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 20-byte header of a UDP datagram 192.168.0.1 -> 192.168.0.199, total
    // length 0x73, DF, TTL 64: the worked example of the Wikipedia "IPv4
    // header checksum" article (checksum b861), padded with 0x73 - 20 bytes.
    fn example() -> Vec<u8> {
        let mut v = vec![
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        v.resize(0x73, 0xaa);
        v
    }

    #[test]
    fn parse_emit_round_trip() {
        let b = example();
        let p = Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.payload_len, 0x73 - 20);
        assert!(r.dont_frag);
        assert_eq!(r.next_header, IpProtocol::Udp);
        let mut out = vec![0u8; 0x73];
        r.emit_with_payload(&mut out, p.payload());
        assert_eq!(out, b);
    }

    #[test]
    fn padding_is_not_payload() {
        let mut b = example();
        b.extend_from_slice(&[0xde, 0xad, 0xbe]);
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.padding_len(), 3);
        assert_eq!(p.payload().len(), 0x73 - 20);
        assert_eq!(p.datagram().len(), 0x73);
    }

    #[test]
    fn length_errors() {
        let b = example();
        assert_eq!(Packet::new_checked(&b[..19]).unwrap_err(), Error::Truncated);
        assert_eq!(
            Packet::new_checked(&b[..0x72]).unwrap_err(),
            Error::LengthExceedsFrame
        );
        let mut c = b.clone();
        c[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&c[..]).unwrap_err(),
            Error::LengthTooShort
        );
        c[0] = 0x65;
        assert_eq!(Packet::new_checked(&c[..]).unwrap_err(), Error::BadVersion);
        c[0] = 0x4f; // 60-byte header in a 0x73-byte datagram: fine
        assert!(Packet::new_checked(&c[..]).is_ok());
        c[2] = 0;
        c[3] = 40; // total length below the 60-byte header
        assert_eq!(
            Packet::new_checked(&c[..]).unwrap_err(),
            Error::LengthTooShort
        );
    }

    #[test]
    fn rewrites_keep_checksum_valid() {
        let mut b = example();
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.rewrite_src_addr(Ipv4Addr::new(10, 1, 2, 3));
        assert!(p.verify_checksum());
        p.rewrite_dst_addr(Ipv4Addr::new(172, 16, 255, 254));
        assert!(p.verify_checksum());
        p.rewrite_ttl(1);
        assert!(p.verify_checksum());
        p.rewrite_tos(0xb8);
        assert!(p.verify_checksum());
        let inc = p.checksum();
        p.fill_checksum();
        assert_eq!(p.checksum(), inc);
        assert_eq!(p.ttl(), 1);
        assert_eq!(p.tos(), 0xb8);
    }
}
