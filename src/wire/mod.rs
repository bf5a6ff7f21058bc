//! Wire formats: one header, one file.
//!
//! Each header has a zero-copy view `Packet<T: AsRef<[u8]>>` whose
//! `new_checked` validates received bytes, and a plain `Repr` struct with
//! `parse` / `emit` / `buffer_len`, in the manner of smoltcp's `wire` module.
//! Unknown protocol numbers are values (`EtherType::Unknown(n)`), not errors.
//!
//! The one rule this module exists to enforce: the length of an IP datagram
//! comes from the IP header, never from the frame. Trailing Ethernet padding
//! (a bare 54-byte TCP ACK is padded to 60 bytes) is recorded and excluded
//! from every checksum and from the TCP segment length.
//!
//! Views never panic: every getter reads through the bounds-checked helpers
//! below, so a view made with `new_unchecked` over too few bytes reads zeros
//! and writes nothing instead of panicking. `new_checked` is still the way to
//! accept received bytes: it is what turns a short or inconsistent header
//! into an [`Error`] the datapath counts.
//!
//! * [`ethernet`], [`vlan`] (802.1Q / 802.1ad tags), [`arp`]
//! * [`ipv4`], [`ipv6`] (fixed header and extension-header walk), [`ip`]
//!   (protocol numbers, pseudo-header addresses, L4 checksum helpers over an
//!   IP datagram)
//! * [`tcp`] (with options), [`udp`], [`icmpv4`], [`icmpv6`]
//! * [`geneve`] (RFC 8926, with option TLVs)
//! * [`checksum`]: RFC 1071 sums and RFC 1624 incremental updates
//!
//! This module depends on nothing else in the crate.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod geneve;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vlan;

pub use ethernet::{EtherType, MacAddr};
pub use ip::{AddrPair, IpProtocol, L4Checksum};

use core::fmt;

/// Why a sequence of bytes is not a valid header. Small and `Copy`: the
/// datapath turns each variant into a counted drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Error {
    /// The buffer ends before the fixed part of a header.
    Truncated,
    /// A length field points past the end of the buffer (IP total length
    /// larger than the frame, TCP data offset past the segment, ...).
    LengthExceedsFrame,
    /// A length field is smaller than the fixed header it describes
    /// (IPv4 IHL < 5, TCP data offset < 5, UDP length < 8).
    LengthTooShort,
    /// The version field is not the one this header requires (IPv4 != 4,
    /// IPv6 != 6, Geneve != 0).
    BadVersion,
    /// A VLAN tag with nothing behind it (no room for its TCI and the
    /// inner ethertype).
    BadVlan,
    /// A header field holds a value the protocol forbids.
    Malformed,
    /// A checksum does not verify.
    Checksum,
    /// A third VLAN tag: we parse at most two (802.1ad outer + 802.1Q
    /// inner), as Open vSwitch's default `vlan-limit`.
    TooManyVlans,
}

impl Error {
    /// Every variant, in declaration order (drop counters index by this).
    pub const ALL: [Error; 8] = [
        Error::Truncated,
        Error::LengthExceedsFrame,
        Error::LengthTooShort,
        Error::BadVersion,
        Error::BadVlan,
        Error::Malformed,
        Error::Checksum,
        Error::TooManyVlans,
    ];

    /// Stable snake_case name used in counters and `dump-drops`.
    pub fn name(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::LengthExceedsFrame => "length_exceeds_frame",
            Error::LengthTooShort => "length_too_short",
            Error::BadVersion => "bad_version",
            Error::BadVlan => "bad_vlan",
            Error::Malformed => "malformed",
            Error::Checksum => "checksum",
            Error::TooManyVlans => "too_many_vlans",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Error {}

/// Result type of the wire layer.
pub type Result<T> = core::result::Result<T, Error>;

// Bounds-checked big-endian accessors shared by every view. Reads past the
// end of the buffer yield zero and writes past it are dropped; the views'
// `new_checked` is what guarantees the bytes are there in the first place.

#[inline(always)]
pub(crate) fn rd8(b: &[u8], off: usize) -> u8 {
    match b.get(off) {
        Some(v) => *v,
        None => 0,
    }
}

#[inline(always)]
pub(crate) fn rd_arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    match b.get(off..).and_then(|s| s.first_chunk::<N>()) {
        Some(a) => *a,
        None => [0; N],
    }
}

#[inline(always)]
pub(crate) fn rd16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes(rd_arr::<2>(b, off))
}

#[inline(always)]
pub(crate) fn rd32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(rd_arr::<4>(b, off))
}

#[inline(always)]
pub(crate) fn wr8(b: &mut [u8], off: usize, v: u8) {
    if let Some(x) = b.get_mut(off) {
        *x = v;
    }
}

#[inline(always)]
pub(crate) fn wr_arr<const N: usize>(b: &mut [u8], off: usize, v: [u8; N]) {
    if let Some(a) = b.get_mut(off..).and_then(|s| s.first_chunk_mut::<N>()) {
        *a = v;
    }
}

#[inline(always)]
pub(crate) fn wr16(b: &mut [u8], off: usize, v: u16) {
    wr_arr(b, off, v.to_be_bytes())
}

#[inline(always)]
pub(crate) fn wr32(b: &mut [u8], off: usize, v: u32) {
    wr_arr(b, off, v.to_be_bytes())
}

/// `&b[from..to]`, or an empty slice when that range is not in `b`.
#[inline(always)]
pub(crate) fn sub(b: &[u8], from: usize, to: usize) -> &[u8] {
    match b.get(from..to) {
        Some(s) => s,
        None => &[],
    }
}

/// `&mut b[from..to]`, or an empty slice when that range is not in `b`.
#[inline(always)]
pub(crate) fn sub_mut(b: &mut [u8], from: usize, to: usize) -> &mut [u8] {
    match b.get_mut(from..to) {
        Some(s) => s,
        None => &mut [],
    }
}

/// `&b[from..]`, or an empty slice.
#[inline(always)]
pub(crate) fn tail(b: &[u8], from: usize) -> &[u8] {
    match b.get(from..) {
        Some(s) => s,
        None => &[],
    }
}

/// `&mut b[from..]`, or an empty slice.
#[inline(always)]
pub(crate) fn tail_mut(b: &mut [u8], from: usize) -> &mut [u8] {
    match b.get_mut(from..) {
        Some(s) => s,
        None => &mut [],
    }
}

/// Copies `src` to the front of `dst` (as much as fits).
#[inline]
pub(crate) fn copy_in(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    if let (Some(d), Some(s)) = (dst.get_mut(..n), src.get(..n)) {
        d.copy_from_slice(s);
    }
}

/// Declares a protocol-number enum whose unknown values are kept as
/// `Unknown(n)` (smoltcp's `enum_with_unknown!`), with lossless `From`
/// conversions both ways.
macro_rules! enum_with_unknown {
    (
        $(#[$enum_attr:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$variant_attr:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$enum_attr])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$variant_attr])* $variant, )+
            /// A value this crate has no name for.
            Unknown($ty),
        }

        impl ::core::convert::From<$ty> for $name {
            #[inline]
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl ::core::convert::From<$name> for $ty {
            #[inline]
            fn from(value: $name) -> Self {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}
pub(crate) use enum_with_unknown;
