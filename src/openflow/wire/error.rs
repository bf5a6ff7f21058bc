//! ERROR messages: a type and code (or, for the ONF bundle extension of
//! OpenFlow 1.3, an experimenter error), followed by the start of the
//! message that caused it.

use super::{Rd, Result, Version, Wr, ONF_VENDOR};

/// Bytes of the offending message an ERROR echoes (the spec asks for at
/// least 64).
pub const ECHO_LEN: usize = 64;

/// OpenFlow 1.0's error type for vendor (Nicira) errors.
const NXET_VENDOR: u16 = 0xb0c2;

/// An OpenFlow error code as it goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OfpError {
    /// A standard `type`/`code` pair.
    Std {
        /// Error type (OFPET_*).
        typ: u16,
        /// Error code within the type.
        code: u16,
    },
    /// A Nicira error in OpenFlow 1.0 (type NXET_VENDOR 0xb0c2, code 0,
    /// then the Nicira vendor id and this type and code).
    NxVendor {
        /// Nicira error type.
        typ: u16,
        /// Nicira error code.
        code: u16,
    },
    /// An experimenter error (type 0xffff).
    Experimenter {
        /// Experimenter-defined type.
        exp_type: u16,
        /// Experimenter id.
        experimenter: u32,
    },
}

impl OfpError {
    /// A standard error.
    pub const fn std(typ: u16, code: u16) -> OfpError {
        OfpError::Std { typ, code }
    }

    /// OFPET_HELLO_FAILED / OFPHFC_INCOMPATIBLE.
    pub const HELLO_INCOMPATIBLE: OfpError = OfpError::std(0, 0);

    /// A bundle error (OFPBFC_* `code`): standard type 17 from OpenFlow
    /// 1.4, the ONF experimenter error 2300 + code in 1.3.
    pub fn bundle(version: Version, code: u16) -> OfpError {
        if version >= Version::V14 {
            OfpError::std(17, code)
        } else {
            OfpError::Experimenter {
                exp_type: 2300 + code,
                experimenter: ONF_VENDOR,
            }
        }
    }

    /// OFPBFC_MSG_FAILED: a bundled message failed, so the commit did.
    pub fn bundle_msg_failed(version: Version) -> OfpError {
        OfpError::bundle(version, 13)
    }

    /// The error for a flow-mod that `ofproto` refused (its actions are
    /// inconsistent with the match or the tables): OFPBAC_BAD_ARGUMENT is
    /// what Open vSwitch answers for most of these, and the same code in
    /// every version.
    pub fn flow_mod_refused() -> OfpError {
        OfpError::std(2, 5)
    }

    /// A Nicira TLV table mod error (`NXTTMFC_*`), as each version
    /// carries it: `code10` in OpenFlow 1.0's vendor error of type 1,
    /// `code12` as a Nicira experimenter error from 1.2.
    pub fn nx(version: Version, code10: u16, code12: u16) -> OfpError {
        if version == Version::V10 {
            OfpError::NxVendor {
                typ: 1,
                code: code10,
            }
        } else {
            OfpError::Experimenter {
                exp_type: code12,
                experimenter: super::NX_VENDOR,
            }
        }
    }

    /// An unsupported message type (OFPBRC_BAD_TYPE).
    pub fn bad_type() -> OfpError {
        OfpError::std(1, 1)
    }
}

/// An ERROR message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMsg {
    /// The error.
    pub error: OfpError,
    /// The start of the offending message (or, for HELLO_FAILED, text).
    pub data: Vec<u8>,
}

impl ErrorMsg {
    /// An error about `offending` (its first [`ECHO_LEN`] bytes are kept).
    pub fn about(error: OfpError, offending: &[u8]) -> ErrorMsg {
        ErrorMsg {
            error,
            data: offending[..offending.len().min(ECHO_LEN)].to_vec(),
        }
    }

    /// Parses an ERROR body.
    pub fn parse(body: &[u8]) -> Result<ErrorMsg> {
        let mut r = Rd::new(body);
        let typ = r.u16()?;
        let code = r.u16()?;
        let error = if typ == 0xffff {
            OfpError::Experimenter {
                exp_type: code,
                experimenter: r.u32()?,
            }
        } else if typ == NXET_VENDOR && code == 0 && r.len() >= 8 {
            r.skip(4)?;
            OfpError::NxVendor {
                typ: r.u16()?,
                code: r.u16()?,
            }
        } else {
            OfpError::Std { typ, code }
        };
        Ok(ErrorMsg {
            error,
            data: r.rest().to_vec(),
        })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self.error {
            OfpError::Std { typ, code } => {
                out.u16(typ);
                out.u16(code);
            }
            OfpError::NxVendor { typ, code } => {
                out.u16(NXET_VENDOR);
                out.u16(0);
                out.u32(super::NX_VENDOR);
                out.u16(typ);
                out.u16(code);
            }
            OfpError::Experimenter {
                exp_type,
                experimenter,
            } => {
                out.u16(0xffff);
                out.u16(exp_type);
                out.u32(experimenter);
            }
        }
        out.extend_from_slice(&self.data);
    }
}
