//! TCP header (RFC 9293) with its options: MSS, window scale (RFC 7323),
//! SACK-permitted and SACK blocks (RFC 2018), timestamps (RFC 7323).
//!
//! A view wraps exactly one segment as the IP header delimits it (see
//! [`super::ipv4::Packet::payload`]): the segment length, and so the
//! payload length, is the buffer length. Never wrap a slice that runs to the
//! end of the frame: Ethernet padding would become payload and break the
//! checksum, which is the bug this crate exists not to have.
//!
//! [`Repr::emit`] writes options in the order and padding Linux uses
//! (`tcp_options_write`), so a Linux-built segment round-trips byte for byte.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::{checksum, copy_in, rd16, rd32, rd8, sub, tail, tail_mut, wr16, wr32, wr8};
use super::{AddrPair, Error, IpProtocol, Result};

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Largest header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

/// FIN flag.
pub const FIN: u16 = 0x001;
/// SYN flag.
pub const SYN: u16 = 0x002;
/// RST flag.
pub const RST: u16 = 0x004;
/// PSH flag.
pub const PSH: u16 = 0x008;
/// ACK flag.
pub const ACK: u16 = 0x010;
/// URG flag.
pub const URG: u16 = 0x020;
/// ECE flag.
pub const ECE: u16 = 0x040;
/// CWR flag.
pub const CWR: u16 = 0x080;
/// NS flag (RFC 3540, historic).
pub const NS: u16 = 0x100;

/// A view of a TCP segment.
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

    /// Wraps a segment: `Truncated` when shorter than 20 bytes,
    /// `LengthTooShort` when the data offset is below 5, `LengthExceedsFrame`
    /// when the header runs past the segment.
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
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::LengthTooShort);
        }
        if hl > len {
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

    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        rd32(self.buffer.as_ref(), 4)
    }

    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        rd32(self.buffer.as_ref(), 8)
    }

    /// Header length in bytes (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(rd8(self.buffer.as_ref(), 12) >> 4) * 4
    }

    /// The 12 flag bits (reserved bits, NS, CWR ... FIN), as Open vSwitch's
    /// `tcp_flags`.
    #[inline]
    pub fn flags(&self) -> u16 {
        rd16(self.buffer.as_ref(), 12) & 0x0fff
    }

    /// FIN.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & FIN != 0
    }

    /// SYN.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & SYN != 0
    }

    /// RST.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & RST != 0
    }

    /// PSH.
    #[inline]
    pub fn psh(&self) -> bool {
        self.flags() & PSH != 0
    }

    /// ACK.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & ACK != 0
    }

    /// URG.
    #[inline]
    pub fn urg(&self) -> bool {
        self.flags() & URG != 0
    }

    /// Window field (unscaled).
    #[inline]
    pub fn window_len(&self) -> u16 {
        rd16(self.buffer.as_ref(), 14)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        rd16(self.buffer.as_ref(), 16)
    }

    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        rd16(self.buffer.as_ref(), 18)
    }

    /// Raw option bytes.
    #[inline]
    pub fn options(&self) -> &[u8] {
        sub(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// Iterates over the options.
    #[inline]
    pub fn option_iter(&self) -> OptionIter<'_> {
        OptionIter::new(self.options())
    }

    /// The payload: everything after the header up to the end of the
    /// segment.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        tail(self.buffer.as_ref(), self.header_len())
    }

    /// Segment length (header + payload) as the pseudo-header counts it.
    #[inline]
    pub fn segment_len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// Sequence space the segment occupies: payload + SYN + FIN.
    #[inline]
    pub fn seq_len(&self) -> usize {
        self.payload().len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// True when the checksum verifies for these pseudo-header addresses.
    #[inline]
    pub fn verify_checksum(&self, addrs: &AddrPair) -> bool {
        let b = self.buffer.as_ref();
        let ph = addrs.pseudo_sum(IpProtocol::Tcp, b.len());
        checksum::l4_checksum(ph, b) == 0
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

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        wr32(self.buffer.as_mut(), 4, v)
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        wr32(self.buffer.as_mut(), 8, v)
    }

    /// Sets data offset (from a header length in bytes) and the 12 flag bits.
    #[inline]
    pub fn set_header_len_and_flags(&mut self, header_len: usize, flags: u16) {
        let off = ((header_len / 4) & 0xf) as u16;
        wr16(self.buffer.as_mut(), 12, (off << 12) | (flags & 0x0fff))
    }

    /// Sets the window.
    #[inline]
    pub fn set_window_len(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 14, v)
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 16, v)
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 18, v)
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        tail_mut(self.buffer.as_mut(), hl)
    }

    /// Mutable option bytes.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        super::sub_mut(self.buffer.as_mut(), HEADER_LEN, hl)
    }

    /// Computes and stores the checksum over the whole segment.
    #[inline]
    pub fn fill_checksum(&mut self, addrs: &AddrPair) {
        self.set_checksum(0);
        let b = self.buffer.as_ref();
        let ph = addrs.pseudo_sum(IpProtocol::Tcp, b.len());
        let c = checksum::l4_checksum(ph, b);
        self.set_checksum(c);
    }

    /// Sets the source port and patches the checksum (RFC 1624).
    #[inline]
    pub fn rewrite_src_port(&mut self, port: u16) {
        let c = checksum::update16(self.checksum(), self.src_port(), port);
        self.set_src_port(port);
        self.set_checksum(c);
    }

    /// Sets the destination port and patches the checksum.
    #[inline]
    pub fn rewrite_dst_port(&mut self, port: u16) {
        let c = checksum::update16(self.checksum(), self.dst_port(), port);
        self.set_dst_port(port);
        self.set_checksum(c);
    }

    /// Patches the checksum after an IPv4 address in the pseudo-header
    /// changed from `old` to `new`.
    #[inline]
    pub fn update_checksum_for_addr_v4(&mut self, old: Ipv4Addr, new: Ipv4Addr) {
        let c = checksum::update32(self.checksum(), old.to_bits(), new.to_bits());
        self.set_checksum(c);
    }

    /// Patches the checksum after an IPv6 address in the pseudo-header
    /// changed.
    #[inline]
    pub fn update_checksum_for_addr_v6(&mut self, old: Ipv6Addr, new: Ipv6Addr) {
        let c = checksum::update_bytes(self.checksum(), &old.octets(), &new.octets());
        self.set_checksum(c);
    }
}

/// One TCP option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// End of option list (kind 0).
    EndOfList,
    /// No-operation (kind 1).
    NoOperation,
    /// Maximum segment size (kind 2).
    MaxSegmentSize(u16),
    /// Window scale shift (kind 3).
    WindowScale(u8),
    /// SACK permitted (kind 4).
    SackPermitted,
    /// SACK blocks (kind 5), up to four on the wire; we keep three (the most
    /// that fit alongside timestamps).
    SackRange([Option<(u32, u32)>; 3]),
    /// Timestamps (kind 8).
    Timestamp {
        /// TSval.
        tsval: u32,
        /// TSecr.
        tsecr: u32,
    },
    /// Any other kind.
    Unknown {
        /// Kind.
        kind: u8,
        /// Bytes after kind and length.
        data: &'a [u8],
    },
}

/// Iterator over TCP options. Yields `Err` once on a malformed option
/// (length byte missing: `Truncated`; length < 2 or wrong for its kind:
/// `Malformed`; running past the options: `LengthExceedsFrame`) and then
/// stops; stops after `EndOfList`.
#[derive(Debug, Clone)]
pub struct OptionIter<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> OptionIter<'a> {
    /// Iterates over raw option bytes.
    pub fn new(options: &'a [u8]) -> OptionIter<'a> {
        OptionIter {
            rest: options,
            done: false,
        }
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let kind = *self.rest.first()?;
        match kind {
            0 => {
                self.done = true;
                return Some(Ok(TcpOption::EndOfList));
            }
            1 => {
                self.rest = tail(self.rest, 1);
                return Some(Ok(TcpOption::NoOperation));
            }
            _ => {}
        }
        let r = parse_option(self.rest);
        match r {
            Ok((opt, len)) => {
                self.rest = tail(self.rest, len);
                Some(Ok(opt))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn parse_option(b: &[u8]) -> Result<(TcpOption<'_>, usize)> {
    let kind = rd8(b, 0);
    if b.len() < 2 {
        return Err(Error::Truncated);
    }
    let len = usize::from(rd8(b, 1));
    if len < 2 {
        return Err(Error::Malformed);
    }
    if len > b.len() {
        return Err(Error::LengthExceedsFrame);
    }
    let data = sub(b, 2, len);
    let opt = match (kind, len) {
        (2, 4) => TcpOption::MaxSegmentSize(rd16(data, 0)),
        (3, 3) => TcpOption::WindowScale(rd8(data, 0)),
        (4, 2) => TcpOption::SackPermitted,
        (5, _) if len >= 10 && (len - 2) % 8 == 0 => {
            let mut r = [None; 3];
            for (i, slot) in r.iter_mut().enumerate() {
                if (i + 1) * 8 <= data.len() {
                    *slot = Some((rd32(data, i * 8), rd32(data, i * 8 + 4)));
                }
            }
            TcpOption::SackRange(r)
        }
        (8, 10) => TcpOption::Timestamp {
            tsval: rd32(data, 0),
            tsecr: rd32(data, 4),
        },
        (2 | 3 | 4 | 5 | 8, _) => return Err(Error::Malformed),
        _ => TcpOption::Unknown { kind, data },
    };
    Ok((opt, len))
}

/// A parsed TCP segment. Unknown options are dropped by [`Repr::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number (meaningful with [`ACK`]).
    pub ack_number: u32,
    /// The 12 flag bits ([`SYN`] | [`ACK`] ...).
    pub flags: u16,
    /// Window (unscaled).
    pub window_len: u16,
    /// Urgent pointer.
    pub urgent_at: u16,
    /// MSS option.
    pub max_seg_size: Option<u16>,
    /// Window scale option.
    pub window_scale: Option<u8>,
    /// SACK-permitted option.
    pub sack_permitted: bool,
    /// SACK blocks.
    pub sack_ranges: [Option<(u32, u32)>; 3],
    /// Timestamps option (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses a checked view (the checksum is not verified: see
    /// [`Packet::verify_checksum`]). `Err` on a malformed option.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>> {
        p.check_len()?;
        let buf: &'a T = p.buffer;
        let b: &'a [u8] = buf.as_ref();
        let hl = p.header_len();
        let mut r = Repr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq_number: p.seq_number(),
            ack_number: p.ack_number(),
            flags: p.flags(),
            window_len: p.window_len(),
            urgent_at: p.urgent_at(),
            max_seg_size: None,
            window_scale: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: tail(b, hl),
        };
        for opt in OptionIter::new(sub(b, HEADER_LEN, hl)) {
            match opt? {
                TcpOption::MaxSegmentSize(v) => r.max_seg_size = Some(v),
                TcpOption::WindowScale(v) => r.window_scale = Some(v),
                TcpOption::SackPermitted => r.sack_permitted = true,
                TcpOption::SackRange(s) => r.sack_ranges = s,
                TcpOption::Timestamp { tsval, tsecr } => r.timestamp = Some((tsval, tsecr)),
                TcpOption::EndOfList | TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
            }
        }
        Ok(r)
    }

    fn n_sack(&self) -> usize {
        self.sack_ranges.iter().filter(|s| s.is_some()).count()
    }

    /// Option bytes [`Repr::emit`] writes (a multiple of 4).
    pub fn options_len(&self) -> usize {
        let mut n = 0;
        if self.max_seg_size.is_some() {
            n += 4;
        }
        if self.timestamp.is_some() {
            n += 12;
        } else if self.sack_permitted {
            n += 4;
        }
        if self.window_scale.is_some() {
            n += 4;
        }
        let s = self.n_sack();
        if s > 0 {
            n += 4 + 8 * s;
        }
        n
    }

    /// Header length [`Repr::emit`] writes.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// Header + payload length.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes header, options (Linux layout) and payload into a view over
    /// exactly `buffer_len()` bytes. With `addrs`, fills the checksum;
    /// without, leaves it 0 (for an offload or a later
    /// [`Packet::fill_checksum`]).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>, addrs: Option<&AddrPair>) {
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq_number(self.seq_number);
        p.set_ack_number(self.ack_number);
        p.set_header_len_and_flags(self.header_len(), self.flags);
        p.set_window_len(self.window_len);
        p.set_checksum(0);
        p.set_urgent_at(self.urgent_at);
        {
            let o = p.options_mut();
            let mut i = 0;
            if let Some(mss) = self.max_seg_size {
                wr8(o, i, 2);
                wr8(o, i + 1, 4);
                wr16(o, i + 2, mss);
                i += 4;
            }
            if let Some((tsval, tsecr)) = self.timestamp {
                if self.sack_permitted {
                    wr8(o, i, 4);
                    wr8(o, i + 1, 2);
                } else {
                    wr8(o, i, 1);
                    wr8(o, i + 1, 1);
                }
                wr8(o, i + 2, 8);
                wr8(o, i + 3, 10);
                wr32(o, i + 4, tsval);
                wr32(o, i + 8, tsecr);
                i += 12;
            } else if self.sack_permitted {
                wr32(o, i, 0x0101_0402);
                i += 4;
            }
            if let Some(ws) = self.window_scale {
                wr8(o, i, 1);
                wr8(o, i + 1, 3);
                wr8(o, i + 2, 3);
                wr8(o, i + 3, ws);
                i += 4;
            }
            let s = self.n_sack();
            if s > 0 {
                wr8(o, i, 1);
                wr8(o, i + 1, 1);
                wr8(o, i + 2, 5);
                wr8(o, i + 3, (2 + 8 * s) as u8);
                i += 4;
                for (l, r) in self.sack_ranges.iter().flatten() {
                    wr32(o, i, *l);
                    wr32(o, i + 4, *r);
                    i += 8;
                }
            }
        }
        copy_in(p.payload_mut(), self.payload);
        if let Some(a) = addrs {
            p.fill_checksum(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A Linux SYN (MSS 1460, SACK-permitted, timestamps, window scale 7):
    // the option layout `tcp_options_write` produces, hand-assembled.
    const SYN_SEG: [u8; 40] = [
        0xa4, 0x10, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa,
        0xf0, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01,
        0x02, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    #[test]
    fn syn_options_round_trip() {
        let p = Packet::new_checked(&SYN_SEG[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.max_seg_size, Some(1460));
        assert!(r.sack_permitted);
        assert_eq!(r.timestamp, Some((0x0001_0203, 0)));
        assert_eq!(r.window_scale, Some(7));
        assert_eq!(r.flags, SYN);
        assert_eq!(r.buffer_len(), 40);
        let mut out = [0u8; 40];
        r.emit(&mut Packet::new_unchecked(&mut out[..]), None);
        assert_eq!(out, SYN_SEG);
    }

    #[test]
    fn option_errors() {
        fn opts(b: &[u8]) -> Vec<Result<TcpOption<'_>>> {
            OptionIter::new(b).collect()
        }
        assert_eq!(opts(&[2]), vec![Err(Error::Truncated)]);
        assert_eq!(opts(&[2, 1, 0, 0]), vec![Err(Error::Malformed)]);
        assert_eq!(opts(&[2, 6, 0, 0]), vec![Err(Error::LengthExceedsFrame)]);
        assert_eq!(opts(&[2, 3, 0, 0]), vec![Err(Error::Malformed)]);
        assert_eq!(
            opts(&[1, 0, 2, 4]),
            vec![Ok(TcpOption::NoOperation), Ok(TcpOption::EndOfList)]
        );
        assert_eq!(
            opts(&[254, 4, 0xab, 0xcd]),
            vec![Ok(TcpOption::Unknown {
                kind: 254,
                data: &[0xab, 0xcd]
            })]
        );
    }

    #[test]
    fn header_length_errors() {
        let mut b = SYN_SEG;
        assert_eq!(Packet::new_checked(&b[..19]).unwrap_err(), Error::Truncated);
        assert_eq!(
            Packet::new_checked(&b[..39]).unwrap_err(),
            Error::LengthExceedsFrame
        );
        b[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&b[..]).unwrap_err(),
            Error::LengthTooShort
        );
    }

    #[test]
    fn port_and_addr_rewrites_keep_checksum() {
        let addrs = AddrPair::V4 {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
        };
        let mut b = SYN_SEG;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(&addrs);
        assert!(p.verify_checksum(&addrs));
        p.rewrite_src_port(12345);
        p.rewrite_dst_port(8080);
        assert!(p.verify_checksum(&addrs));
        let new_src = Ipv4Addr::new(192, 0, 2, 77);
        p.update_checksum_for_addr_v4(Ipv4Addr::new(10, 0, 0, 1), new_src);
        let addrs2 = AddrPair::V4 {
            src: new_src,
            dst: Ipv4Addr::new(10, 0, 0, 2),
        };
        assert!(p.verify_checksum(&addrs2));
        assert!(!p.verify_checksum(&addrs));
        let a6 = "2001:db8::1".parse::<Ipv6Addr>().unwrap();
        let b6 = "2001:db8::2".parse::<Ipv6Addr>().unwrap();
        let c6 = "fd00::99".parse::<Ipv6Addr>().unwrap();
        p.fill_checksum(&AddrPair::V6 { src: a6, dst: b6 });
        p.update_checksum_for_addr_v6(b6, c6);
        assert!(p.verify_checksum(&AddrPair::V6 { src: a6, dst: c6 }));
    }
}
