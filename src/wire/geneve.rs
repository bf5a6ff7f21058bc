//! Geneve (RFC 8926): the tunnel header between hosts, carried in UDP to
//! port 6081.
//!
//! Header: version (2 bits, must be 0), option length (6 bits, in 4-byte
//! words), O (control/OAM packet), C (critical options present), protocol
//! type (an ethertype; 0x6558 for an Ethernet payload), 24-bit VNI. Options
//! follow as TLVs: class (16 bits), type (8 bits, 0x80 = critical: a
//! receiver that does not understand it must drop the packet), length (5
//! bits, in 4-byte words, excluding the 4-byte option header).
//!
//! The view wraps the UDP payload. [`OptionIter`] reports a malformed
//! option list as an error item instead of stopping silently, so the
//! tunnel port can count it. [`Repr`] emits options from a list
//! ([`Options::List`]) or copies an already-encoded block
//! ([`Options::Raw`], what [`Repr::parse`] yields).

use super::{copy_in, rd16, rd32, rd8, sub, tail, tail_mut, wr16, wr32, wr8, EtherType};
use super::{Error, Result};

/// The IANA-assigned UDP destination port.
pub const UDP_PORT: u16 = 6081;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 8;
/// Length of an option header.
pub const OPTION_HEADER_LEN: usize = 4;
/// Largest options block (6-bit length in 4-byte words).
pub const MAX_OPTIONS_LEN: usize = 63 * 4;
/// Largest option data (5-bit length in 4-byte words).
pub const MAX_OPTION_DATA_LEN: usize = 31 * 4;
/// The critical bit of an option type.
pub const OPT_TYPE_CRITICAL: u8 = 0x80;

/// A view of a Geneve header, its options and payload.
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

    /// Wraps a UDP payload: `Truncated` under 8 bytes, `BadVersion` unless
    /// version 0, `LengthExceedsFrame` when the options run past the buffer.
    /// Options themselves are checked by [`OptionIter`] / [`Repr::parse`].
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
        if self.version() != 0 {
            return Err(Error::BadVersion);
        }
        if self.header_len() > len {
            return Err(Error::LengthExceedsFrame);
        }
        Ok(())
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version (0).
    #[inline]
    pub fn version(&self) -> u8 {
        rd8(self.buffer.as_ref(), 0) >> 6
    }

    /// Options length in bytes.
    #[inline]
    pub fn options_len(&self) -> usize {
        usize::from(rd8(self.buffer.as_ref(), 0) & 0x3f) * 4
    }

    /// Header length (fixed part + options).
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }

    /// O bit: a control (OAM) packet.
    #[inline]
    pub fn oam(&self) -> bool {
        rd8(self.buffer.as_ref(), 1) & 0x80 != 0
    }

    /// C bit: critical options are present.
    #[inline]
    pub fn critical(&self) -> bool {
        rd8(self.buffer.as_ref(), 1) & 0x40 != 0
    }

    /// Protocol type of the payload.
    #[inline]
    pub fn protocol(&self) -> EtherType {
        EtherType::from(rd16(self.buffer.as_ref(), 2))
    }

    /// Virtual network identifier (24 bits).
    #[inline]
    pub fn vni(&self) -> u32 {
        rd32(self.buffer.as_ref(), 4) >> 8
    }

    /// Raw options block.
    #[inline]
    pub fn options(&self) -> &[u8] {
        sub(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// Iterates over the options.
    #[inline]
    pub fn option_iter(&self) -> OptionIter<'_> {
        OptionIter::new(self.options())
    }

    /// The encapsulated packet.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        tail(self.buffer.as_ref(), self.header_len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version (0) and options length (bytes, a multiple of 4).
    #[inline]
    pub fn set_options_len(&mut self, len: usize) {
        wr8(self.buffer.as_mut(), 0, ((len / 4) & 0x3f) as u8)
    }

    /// Sets the O and C bits (reserved bits cleared).
    #[inline]
    pub fn set_flags(&mut self, oam: bool, critical: bool) {
        wr8(
            self.buffer.as_mut(),
            1,
            (u8::from(oam) << 7) | (u8::from(critical) << 6),
        )
    }

    /// Sets the protocol type.
    #[inline]
    pub fn set_protocol(&mut self, t: EtherType) {
        wr16(self.buffer.as_mut(), 2, t.into())
    }

    /// Sets the VNI (the reserved byte after it is cleared).
    #[inline]
    pub fn set_vni(&mut self, vni: u32) {
        wr32(self.buffer.as_mut(), 4, (vni & 0x00ff_ffff) << 8)
    }

    /// Mutable options block.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        super::sub_mut(self.buffer.as_mut(), HEADER_LEN, hl)
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        tail_mut(self.buffer.as_mut(), hl)
    }
}

/// One Geneve option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GeneveOption<'a> {
    /// Option class (namespace, IANA registry).
    pub class: u16,
    /// Type within the class; bit 0x80 is the critical bit.
    pub opt_type: u8,
    /// Option data (a multiple of 4 bytes on the wire, at most 124).
    pub data: &'a [u8],
}

impl GeneveOption<'_> {
    /// True when a receiver that does not know this option must drop.
    #[inline]
    pub fn is_critical(&self) -> bool {
        self.opt_type & OPT_TYPE_CRITICAL != 0
    }

    /// Encoded length: header + data rounded up to 4.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        OPTION_HEADER_LEN + self.data.len().div_ceil(4) * 4
    }

    /// Writes the option (data zero-padded to a multiple of 4) at the front
    /// of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let n = self.buffer_len();
        wr16(buf, 0, self.class);
        wr8(buf, 2, self.opt_type);
        wr8(buf, 3, (((n - OPTION_HEADER_LEN) / 4) & 0x1f) as u8);
        let body = super::sub_mut(buf, OPTION_HEADER_LEN, n);
        body.fill(0);
        copy_in(body, self.data);
    }
}

/// Iterator over an options block. Yields `Err(Truncated)` when fewer than
/// 4 bytes remain for an option header and `Err(LengthExceedsFrame)` when
/// an option's length runs past the block, then stops.
#[derive(Debug, Clone)]
pub struct OptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionIter<'a> {
    /// Iterates over a raw options block.
    pub fn new(options: &'a [u8]) -> OptionIter<'a> {
        OptionIter { rest: options }
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<GeneveOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let b = self.rest;
        if b.len() < OPTION_HEADER_LEN {
            self.rest = &[];
            return Some(Err(Error::Truncated));
        }
        let n = OPTION_HEADER_LEN + usize::from(rd8(b, 3) & 0x1f) * 4;
        if n > b.len() {
            self.rest = &[];
            return Some(Err(Error::LengthExceedsFrame));
        }
        self.rest = tail(b, n);
        Some(Ok(GeneveOption {
            class: rd16(b, 0),
            opt_type: rd8(b, 2),
            data: sub(b, OPTION_HEADER_LEN, n),
        }))
    }
}

/// The options of a [`Repr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Options<'a> {
    /// An encoded, validated options block (what [`Repr::parse`] gives).
    Raw(&'a [u8]),
    /// Options to encode.
    List(&'a [GeneveOption<'a>]),
}

impl Options<'_> {
    /// Encoded length.
    pub fn buffer_len(&self) -> usize {
        match self {
            Options::Raw(b) => b.len(),
            Options::List(l) => l.iter().map(GeneveOption::buffer_len).sum(),
        }
    }

    /// True when some option has the critical bit.
    pub fn any_critical(&self) -> bool {
        match self {
            Options::Raw(b) => OptionIter::new(b).flatten().any(|o| o.is_critical()),
            Options::List(l) => l.iter().any(GeneveOption::is_critical),
        }
    }
}

/// A parsed Geneve header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    /// O bit.
    pub oam: bool,
    /// C bit. [`Repr::emit`] sets it also when an option is critical, as
    /// RFC 8926 requires.
    pub critical: bool,
    /// Payload protocol.
    pub protocol: EtherType,
    /// VNI (24 bits).
    pub vni: u32,
    /// Options.
    pub options: Options<'a>,
}

impl<'a> Repr<'a> {
    /// Parses a view, validating the whole options block.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>> {
        p.check_len()?;
        let buf: &'a T = p.buffer;
        let opts = sub(buf.as_ref(), HEADER_LEN, p.header_len());
        for o in OptionIter::new(opts) {
            o?;
        }
        Ok(Repr {
            oam: p.oam(),
            critical: p.critical(),
            protocol: p.protocol(),
            vni: p.vni(),
            options: Options::Raw(opts),
        })
    }

    /// `Malformed` when the options cannot be encoded (an option's data
    /// over 124 bytes, the block over 252, or a raw block not a multiple of
    /// 4); `emit` assumes this passed.
    pub fn check(&self) -> Result<()> {
        if let Options::List(l) = self.options {
            if l.iter().any(|o| o.data.len() > MAX_OPTION_DATA_LEN) {
                return Err(Error::Malformed);
            }
        }
        let n = self.options.buffer_len();
        if n > MAX_OPTIONS_LEN || !n.is_multiple_of(4) {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    /// Header + options length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options.buffer_len()
    }

    /// Writes header and options (the payload follows at `buffer_len()`).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let n = self.options.buffer_len();
        p.set_options_len(n);
        p.set_flags(self.oam, self.critical || self.options.any_critical());
        p.set_protocol(self.protocol);
        p.set_vni(self.vni);
        let o = p.options_mut();
        match self.options {
            Options::Raw(b) => copy_in(o, b),
            Options::List(l) => {
                let mut off = 0;
                for opt in l {
                    opt.emit(super::tail_mut(o, off));
                    off += opt.buffer_len();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Geneve header, VNI 0x123456, Ethernet payload, one critical option
    // (class 0x0102, type 0x80, 4 data bytes) and one non-critical option
    // (class 0xffff, type 0x01, 8 bytes): hand-assembled from RFC 8926
    // section 3.4/3.5 (the pcap test in tests/wire_vectors.rs has tshark
    // decode the same encoding).
    const HDR: [u8; 28] = [
        0x05, 0x40, 0x65, 0x58, 0x12, 0x34, 0x56, 0x00, // ver 0, optlen 5 words, C
        0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef, // option 1
        0xff, 0xff, 0x01, 0x02, 1, 2, 3, 4, 5, 6, 7, 8, // option 2
    ];

    #[test]
    fn parse_options_and_round_trip() {
        let p = Packet::new_checked(&HDR[..]).unwrap();
        assert_eq!(p.vni(), 0x123456);
        assert_eq!(p.protocol(), EtherType::TransEtherBridging);
        assert!(p.critical() && !p.oam());
        let opts: Vec<_> = p.option_iter().collect::<Result<_>>().unwrap();
        assert_eq!(opts.len(), 2);
        assert!(opts[0].is_critical());
        assert_eq!(opts[0].data, &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!((opts[1].class, opts[1].opt_type), (0xffff, 0x01));
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.buffer_len(), 28);
        let mut out = [0u8; 28];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, HDR);
        // The same header from a list of options.
        let list = [opts[0], opts[1]];
        let r2 = Repr {
            critical: false,
            options: Options::List(&list),
            ..r
        };
        assert!(r2.check().is_ok());
        let mut out2 = [0u8; 28];
        r2.emit(&mut Packet::new_unchecked(&mut out2[..]));
        assert_eq!(out2, HDR);
    }

    #[test]
    fn errors() {
        assert_eq!(
            Packet::new_checked(&HDR[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&HDR[..27]).unwrap_err(),
            Error::LengthExceedsFrame
        );
        let mut b = HDR;
        b[0] |= 0x40; // version 1
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::BadVersion);
        // Second option claims 3 words of data, past the 20-byte block.
        let mut b = HDR;
        b[19] = 0x03;
        let p = Packet::new_checked(&b[..]).unwrap();
        let items: Vec<_> = p.option_iter().collect();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1], Err(Error::LengthExceedsFrame));
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::LengthExceedsFrame);
        let too_big = [0u8; 128];
        let bad = [GeneveOption {
            class: 1,
            opt_type: 1,
            data: &too_big,
        }];
        let r = Repr {
            oam: false,
            critical: false,
            protocol: EtherType::TransEtherBridging,
            vni: 1,
            options: Options::List(&bad),
        };
        assert_eq!(r.check(), Err(Error::Malformed));
    }

    #[test]
    fn truncated_option_header() {
        // A 4-byte-aligned block can only leave < 4 bytes through a raw
        // iterator over an odd slice; the iterator says Truncated.
        let items: Vec<_> = OptionIter::new(&[0x01, 0x02]).collect();
        assert_eq!(items, vec![Err(Error::Truncated)]);
    }
}
