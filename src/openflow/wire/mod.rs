//! The OpenFlow codec: bytes to typed messages and back, one file per
//! message family, for OpenFlow 1.0, 1.3, 1.4 and 1.5 plus the Nicira (NX)
//! and ONF extensions that `ovs-ofctl` and controllers use.
//!
//! Every message starts with the 8-byte [`header`]; [`message::Message`] is
//! the typed form of a whole message, decoded with
//! [`message::Message::decode`] and written with
//! [`message::Message::encode`]. Matches travel as `flow::Match`
//! ([`oxm`] for OXM/NXM, [`match10`] for the fixed OpenFlow 1.0 structure)
//! and actions as `flow::Action` lists ([`action`]), so a decoded flow-mod is
//! directly what `ofproto` installs.
//!
//! Decoding never panics: every read goes through [`Rd`], whose reads are
//! bounds-checked and return [`Error::BadLen`] past the end. Every
//! [`Error`] maps to the OpenFlow ERROR type and code the peer receives
//! ([`Error::ofp_code`]).

pub mod action;
pub mod bundle;
pub mod error;
pub mod features;
pub mod flow_mod;
pub mod flow_removed;
pub mod header;
pub mod hello;
pub mod match10;
pub mod message;
pub mod multipart;
pub mod oxm;
pub mod packet;
pub mod port;
pub mod tlv;

pub use error::{ErrorMsg, OfpError};
pub use header::Header;
pub use message::Message;

/// An OpenFlow protocol version this codec speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// OpenFlow 1.0 (wire version 0x01).
    V10,
    /// OpenFlow 1.3 (0x04).
    V13,
    /// OpenFlow 1.4 (0x05).
    V14,
    /// OpenFlow 1.5 (0x06).
    V15,
}

impl Version {
    /// Every supported version, oldest first.
    pub const ALL: [Version; 4] = [Version::V10, Version::V13, Version::V14, Version::V15];

    /// The wire number.
    pub fn wire(self) -> u8 {
        match self {
            Version::V10 => 1,
            Version::V13 => 4,
            Version::V14 => 5,
            Version::V15 => 6,
        }
    }

    /// The version for a wire number, if supported.
    pub fn from_wire(v: u8) -> Option<Version> {
        Some(match v {
            1 => Version::V10,
            4 => Version::V13,
            5 => Version::V14,
            6 => Version::V15,
            _ => return None,
        })
    }
}

/// Nicira's experimenter id (NX messages, actions and stats).
pub const NX_VENDOR: u32 = 0x0000_2320;
/// The Open Networking Foundation's experimenter id (1.3 bundles).
pub const ONF_VENDOR: u32 = 0x4f4e_4600;

/// Why bytes are not a message this switch accepts. Each variant maps to the
/// OpenFlow error the peer gets ([`Error::ofp_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A length is inconsistent: the message, a structure inside it, an
    /// action or a match is shorter or longer than its fixed part or its
    /// length field says (OFPBRC_BAD_LEN).
    #[error("bad length")]
    BadLen,
    /// A message of a version this switch does not speak, or of another
    /// version than the negotiated one (OFPBRC_BAD_VERSION).
    #[error("unsupported version {0:#x}")]
    BadVersion(u8),
    /// An unknown or unsupported message type (OFPBRC_BAD_TYPE).
    #[error("unsupported message type {0}")]
    BadType(u8),
    /// An unknown or unsupported multipart/stats type (OFPBRC_BAD_STAT).
    #[error("unsupported multipart type {0}")]
    BadMultipart(u16),
    /// An experimenter/vendor id this switch does not know
    /// (OFPBRC_BAD_VENDOR).
    #[error("unknown experimenter {0:#x}")]
    BadExperimenter(u32),
    /// A known experimenter's message subtype this switch does not support
    /// (OFPBRC_BAD_SUBTYPE).
    #[error("unsupported experimenter subtype {0}")]
    BadSubtype(u32),
    /// A table id out of range (OFPBRC_BAD_TABLE_ID).
    #[error("bad table id {0}")]
    BadTableId(u8),
    /// A match type other than OXM (OFPBMC_BAD_TYPE).
    #[error("unsupported match type {0}")]
    BadMatchType(u16),
    /// A match field this switch does not support (OFPBMC_BAD_FIELD).
    #[error("unsupported match field class {class:#x} field {field}")]
    BadField {
        /// OXM class.
        class: u16,
        /// Field number within the class.
        field: u8,
    },
    /// A match field value out of its range (OFPBMC_BAD_VALUE).
    #[error("bad match field value")]
    BadValue,
    /// A mask where the field takes none, or a value outside its mask
    /// (OFPBMC_BAD_MASK).
    #[error("bad match field mask")]
    BadMask,
    /// A field whose prerequisites the match does not establish
    /// (OFPBMC_BAD_PREREQ).
    #[error("match field without its prerequisite")]
    BadPrereq,
    /// The same field twice in one match (OFPBMC_DUP_FIELD).
    #[error("duplicate match field")]
    DupField,
    /// An unknown or unsupported action type (OFPBAC_BAD_TYPE).
    #[error("unsupported action type {0}")]
    BadAction(u16),
    /// An action whose length is wrong for its type (OFPBAC_BAD_LEN).
    #[error("bad action length")]
    BadActionLen,
    /// An action of an unknown experimenter (OFPBAC_BAD_VENDOR).
    #[error("unknown action experimenter {0:#x}")]
    BadActionExperimenter(u32),
    /// A Nicira action subtype this switch does not execute
    /// (OFPBAC_BAD_VENDOR_TYPE).
    #[error("unsupported Nicira action {0}")]
    BadNxAction(u16),
    /// An output to a port that cannot be one (OFPBAC_BAD_OUT_PORT).
    #[error("bad output port {0:#x}")]
    BadOutPort(u32),
    /// An action argument out of range (OFPBAC_BAD_ARGUMENT).
    #[error("bad action argument")]
    BadArgument,
    /// A set_field / load to a field that cannot be set
    /// (OFPBAC_BAD_SET_TYPE).
    #[error("field cannot be set")]
    BadSetField,
    /// An unknown or unsupported instruction (OFPBIC_UNKNOWN_INST).
    #[error("unsupported instruction {0}")]
    BadInstruction(u16),
    /// An instruction whose length is wrong (OFPBIC_BAD_LEN).
    #[error("bad instruction length")]
    BadInstructionLen,
    /// A flow-mod command out of range (OFPFMFC_BAD_COMMAND).
    #[error("bad flow-mod command {0}")]
    BadCommand(u16),
    /// Flow-mod flags this switch does not support (OFPFMFC_BAD_FLAGS).
    #[error("unsupported flow-mod flags {0:#x}")]
    BadFlags(u16),
    /// A bundle control type out of range (OFPBFC_BAD_TYPE).
    #[error("bad bundle control type {0}")]
    BadBundleType(u16),
    /// A message that may not go into a bundle (OFPBFC_MSG_UNSUP).
    #[error("message cannot be bundled")]
    BundleMsgUnsupported,
    /// A bundled message whose xid differs from its BUNDLE_ADD_MESSAGE's
    /// (OFPBFC_MSG_BAD_XID).
    #[error("bundled message xid mismatch")]
    BundleMsgBadXid,
}

/// OpenFlow 1.0 error types.
mod t10 {
    pub const BAD_REQUEST: u16 = 1;
    pub const BAD_ACTION: u16 = 2;
    pub const FLOW_MOD_FAILED: u16 = 3;
}
/// OpenFlow 1.1+ error types.
mod t11 {
    pub const BAD_REQUEST: u16 = 1;
    pub const BAD_ACTION: u16 = 2;
    pub const BAD_INSTRUCTION: u16 = 3;
    pub const BAD_MATCH: u16 = 4;
    pub const FLOW_MOD_FAILED: u16 = 5;
}

impl Error {
    /// The OpenFlow error this maps to in `version`.
    pub fn ofp_code(&self, version: Version) -> OfpError {
        let v10 = version == Version::V10;
        let (br, ba, fm) = if v10 {
            (t10::BAD_REQUEST, t10::BAD_ACTION, t10::FLOW_MOD_FAILED)
        } else {
            (t11::BAD_REQUEST, t11::BAD_ACTION, t11::FLOW_MOD_FAILED)
        };
        // OpenFlow 1.0 has neither a BAD_MATCH nor a BAD_INSTRUCTION
        // type; a match problem there is a BAD_REQUEST/EPERM (5) and an
        // instruction (only reachable through NX actions) a BAD_ACTION.
        let bm = |code: u16| {
            if v10 {
                OfpError::std(t10::BAD_REQUEST, 5)
            } else {
                OfpError::std(t11::BAD_MATCH, code)
            }
        };
        let bi = |code: u16| {
            if v10 {
                OfpError::std(t10::BAD_ACTION, 0)
            } else {
                OfpError::std(t11::BAD_INSTRUCTION, code)
            }
        };
        match self {
            Error::BadLen => OfpError::std(br, 6),
            Error::BadVersion(_) => OfpError::std(br, 0),
            Error::BadType(_) => OfpError::std(br, 1),
            Error::BadMultipart(_) => OfpError::std(br, 2),
            Error::BadExperimenter(_) => OfpError::std(br, 3),
            Error::BadSubtype(_) => OfpError::std(br, 4),
            Error::BadTableId(_) => {
                if v10 {
                    OfpError::std(fm, 5)
                } else {
                    OfpError::std(fm, 2)
                }
            }
            Error::BadMatchType(_) => bm(0),
            Error::BadField { .. } => bm(6),
            Error::BadValue => bm(7),
            Error::BadMask => bm(8),
            Error::BadPrereq => bm(9),
            Error::DupField => bm(10),
            Error::BadAction(_) => OfpError::std(ba, 0),
            Error::BadActionLen => OfpError::std(ba, 1),
            Error::BadActionExperimenter(_) => OfpError::std(ba, 2),
            Error::BadNxAction(_) => OfpError::std(ba, 3),
            Error::BadOutPort(_) => OfpError::std(ba, 4),
            Error::BadArgument => OfpError::std(ba, 5),
            Error::BadSetField => {
                if v10 {
                    OfpError::std(ba, 5)
                } else {
                    OfpError::std(ba, 13)
                }
            }
            Error::BadInstruction(_) => bi(0),
            Error::BadInstructionLen => bi(7),
            Error::BadCommand(_) => {
                if v10 {
                    OfpError::std(fm, 4)
                } else {
                    OfpError::std(fm, 6)
                }
            }
            Error::BadFlags(_) => {
                if v10 {
                    OfpError::std(fm, 5)
                } else {
                    OfpError::std(fm, 7)
                }
            }
            Error::BadBundleType(_) => OfpError::bundle(version, 6),
            Error::BundleMsgUnsupported => OfpError::bundle(version, 10),
            Error::BundleMsgBadXid => OfpError::bundle(version, 9),
        }
    }
}

/// Decoding result.
pub type Result<T> = core::result::Result<T, Error>;

/// A bounds-checked big-endian reader over a byte slice: every read past
/// the end is [`Error::BadLen`], never a panic.
#[derive(Debug, Clone)]
pub struct Rd<'a> {
    b: &'a [u8],
}

impl<'a> Rd<'a> {
    /// Reads `b` from its start.
    pub fn new(b: &'a [u8]) -> Self {
        Rd { b }
    }

    /// Bytes left.
    pub fn len(&self) -> usize {
        self.b.len()
    }

    /// True when nothing is left.
    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    /// The unread bytes.
    pub fn rest(&self) -> &'a [u8] {
        self.b
    }

    /// Takes the next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.b.len() {
            return Err(Error::BadLen);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    /// Takes the next `n` bytes as a reader.
    pub fn sub(&mut self, n: usize) -> Result<Rd<'a>> {
        self.bytes(n).map(Rd::new)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<()> {
        self.bytes(n).map(|_| ())
    }

    /// Next byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    /// Next big-endian u16.
    pub fn u16(&mut self) -> Result<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Next big-endian u32.
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Next big-endian u64.
    pub fn u64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Next 6 bytes (a MAC address).
    pub fn mac(&mut self) -> Result<[u8; 6]> {
        let b = self.bytes(6)?;
        let mut a = [0u8; 6];
        a.copy_from_slice(b);
        Ok(a)
    }

    /// A NUL-padded fixed-size string field.
    pub fn name(&mut self, n: usize) -> Result<String> {
        let b = self.bytes(n)?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        Ok(String::from_utf8_lossy(&b[..end]).into_owned())
    }
}

/// Big-endian writers on a byte vector.
pub trait Wr {
    /// Appends a byte.
    fn u8(&mut self, v: u8);
    /// Appends a big-endian u16.
    fn u16(&mut self, v: u16);
    /// Appends a big-endian u32.
    fn u32(&mut self, v: u32);
    /// Appends a big-endian u64.
    fn u64(&mut self, v: u64);
    /// Appends `n` zero bytes.
    fn zeros(&mut self, n: usize);
    /// Appends a NUL-padded fixed-size string (truncated to leave a NUL).
    fn name(&mut self, s: &str, n: usize);
    /// Overwrites a big-endian u16 at `at` (a length written afterwards).
    fn set_u16(&mut self, at: usize, v: u16);
    /// Pads with zeros to a multiple of 8 bytes counted from `start`.
    fn pad8(&mut self, start: usize);
}

impl Wr for Vec<u8> {
    fn u8(&mut self, v: u8) {
        self.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
    fn name(&mut self, s: &str, n: usize) {
        let b = s.as_bytes();
        let k = b.len().min(n.saturating_sub(1));
        self.extend_from_slice(&b[..k]);
        self.zeros(n - k);
    }
    fn set_u16(&mut self, at: usize, v: u16) {
        if let Some(s) = self.get_mut(at..at + 2) {
            s.copy_from_slice(&v.to_be_bytes());
        }
    }
    fn pad8(&mut self, start: usize) {
        let l = self.len().saturating_sub(start);
        self.zeros((8 - l % 8) % 8);
    }
}

/// Length of `n` rounded up to a multiple of 8.
pub fn round8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// OpenFlow 1.1+ port numbers are 32 bits; the special ports sit at the top
/// (0xfffffff8..). The tables use OpenFlow 1.0 numbers (0xfff8..): these
/// convert between the two.
pub fn port_from_of11(p: u32) -> u32 {
    if p >= 0xffff_ff00 {
        p - 0xffff_0000
    } else {
        p
    }
}

/// See [`port_from_of11`].
pub fn port_to_of11(p: u32) -> u32 {
    if (0xff00..=0xffff).contains(&p) {
        p + 0xffff_0000
    } else {
        p
    }
}
