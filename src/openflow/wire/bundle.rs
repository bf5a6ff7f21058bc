//! Bundles: BUNDLE_CONTROL and BUNDLE_ADD_MESSAGE (OpenFlow 1.4+, and the
//! ONF extension 2300/2301 that carries them in 1.3 for `ovs-ofctl
//! --bundle`). The body is the same in both.

use super::{Error, Rd, Result, Wr};

/// OFPBCT_* control types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrlType {
    /// OPEN_REQUEST.
    OpenRequest,
    /// OPEN_REPLY.
    OpenReply,
    /// CLOSE_REQUEST.
    CloseRequest,
    /// CLOSE_REPLY.
    CloseReply,
    /// COMMIT_REQUEST.
    CommitRequest,
    /// COMMIT_REPLY.
    CommitReply,
    /// DISCARD_REQUEST.
    DiscardRequest,
    /// DISCARD_REPLY.
    DiscardReply,
}

impl CtrlType {
    fn from_wire(t: u16) -> Result<CtrlType> {
        Ok(match t {
            0 => CtrlType::OpenRequest,
            1 => CtrlType::OpenReply,
            2 => CtrlType::CloseRequest,
            3 => CtrlType::CloseReply,
            4 => CtrlType::CommitRequest,
            5 => CtrlType::CommitReply,
            6 => CtrlType::DiscardRequest,
            7 => CtrlType::DiscardReply,
            t => return Err(Error::BadBundleType(t)),
        })
    }

    fn wire(self) -> u16 {
        self as u16
    }

    /// The reply to a request type.
    pub fn reply(self) -> CtrlType {
        match self {
            CtrlType::OpenRequest => CtrlType::OpenReply,
            CtrlType::CloseRequest => CtrlType::CloseReply,
            CtrlType::CommitRequest => CtrlType::CommitReply,
            CtrlType::DiscardRequest => CtrlType::DiscardReply,
            other => other,
        }
    }
}

/// OFPBF_ATOMIC.
pub const ATOMIC: u16 = 1;
/// OFPBF_ORDERED.
pub const ORDERED: u16 = 2;

/// BUNDLE_CONTROL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleCtrl {
    /// Bundle id.
    pub bundle_id: u32,
    /// Control type.
    pub typ: CtrlType,
    /// OFPBF_* flags.
    pub flags: u16,
}

impl BundleCtrl {
    /// Parses the body (properties are ignored).
    pub fn parse(body: &[u8]) -> Result<BundleCtrl> {
        let mut r = Rd::new(body);
        Ok(BundleCtrl {
            bundle_id: r.u32()?,
            typ: CtrlType::from_wire(r.u16()?)?,
            flags: r.u16()?,
        })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.u32(self.bundle_id);
        out.u16(self.typ.wire());
        out.u16(self.flags);
    }
}

/// BUNDLE_ADD_MESSAGE: a whole message (with its own header) for a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleAdd {
    /// Bundle id.
    pub bundle_id: u32,
    /// OFPBF_* flags.
    pub flags: u16,
    /// The inner message, header included.
    pub message: Vec<u8>,
}

impl BundleAdd {
    /// Parses the body; the inner message's own length delimits it.
    pub fn parse(body: &[u8]) -> Result<BundleAdd> {
        let mut r = Rd::new(body);
        let bundle_id = r.u32()?;
        r.skip(2)?;
        let flags = r.u16()?;
        let h = super::Header::parse(r.rest())?;
        let message = r.bytes(usize::from(h.length))?.to_vec();
        Ok(BundleAdd {
            bundle_id,
            flags,
            message,
        })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.u32(self.bundle_id);
        out.zeros(2);
        out.u16(self.flags);
        out.extend_from_slice(&self.message);
        // Properties would follow after padding to 8 bytes.
        let start = out.len() - self.message.len();
        out.pad8(start);
    }
}
