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
//! This module depends on nothing else in the crate.

pub mod checksum;

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
    /// A VLAN tag with nothing behind it, or more tags than we accept.
    BadVlan,
    /// A header field holds a value the protocol forbids.
    Malformed,
    /// A checksum does not verify.
    Checksum,
}

impl Error {
    /// Every variant, in declaration order (drop counters index by this).
    pub const ALL: [Error; 7] = [
        Error::Truncated,
        Error::LengthExceedsFrame,
        Error::LengthTooShort,
        Error::BadVersion,
        Error::BadVlan,
        Error::Malformed,
        Error::Checksum,
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
