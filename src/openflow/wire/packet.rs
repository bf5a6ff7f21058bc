//! PACKET_OUT (a controller injects a frame through actions) and PACKET_IN
//! (the switch hands a frame to the controller).

use super::{action, oxm, port_from_of11, port_to_of11, Error, Rd, Result, Version, Wr};
use crate::flow::{Action, Field, Match};

/// PACKET_OUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketOut {
    /// Buffered packet (0xffffffff = the frame is in `data`).
    pub buffer_id: u32,
    /// Input port the frame is treated as coming from (1.0 numbering;
    /// CONTROLLER or a port).
    pub in_port: u32,
    /// Actions to apply.
    pub actions: Vec<Action>,
    /// The frame.
    pub data: Vec<u8>,
}

impl PacketOut {
    /// Parses the body for `v` (1.0 and 1.1-1.4 layouts; 1.5 carries the
    /// in_port in a match).
    pub fn parse(body: &[u8], v: Version) -> Result<PacketOut> {
        let mut r = Rd::new(body);
        let buffer_id = r.u32()?;
        let (in_port, alen) = match v {
            Version::V10 => {
                let p = u32::from(r.u16()?);
                (p, usize::from(r.u16()?))
            }
            Version::V13 | Version::V14 => {
                let p = port_from_of11(r.u32()?);
                let l = usize::from(r.u16()?);
                r.skip(6)?;
                (p, l)
            }
            Version::V15 => {
                let l = usize::from(r.u16()?);
                r.skip(2)?;
                let d = oxm::decode_ofp_match(&mut r)?;
                let (p, m) = d.matches.get(Field::InPort);
                if m == 0 {
                    return Err(Error::BadPrereq);
                }
                (p as u32, l)
            }
        };
        let acts = r.bytes(alen)?;
        let actions = action::decode_actions(acts, v)?;
        Ok(PacketOut {
            buffer_id,
            in_port,
            actions,
            data: r.rest().to_vec(),
        })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>, v: Version) {
        let mut acts = Vec::new();
        action::encode_actions(&mut acts, &self.actions, v);
        out.u32(self.buffer_id);
        match v {
            Version::V10 => {
                out.u16(self.in_port as u16);
                out.u16(acts.len() as u16);
            }
            Version::V13 | Version::V14 => {
                out.u32(port_to_of11(self.in_port));
                out.u16(acts.len() as u16);
                out.zeros(6);
            }
            Version::V15 => {
                out.u16(acts.len() as u16);
                out.zeros(2);
                let mut m = Match::default();
                m.set_exact(Field::InPort, u128::from(self.in_port));
                oxm::encode_ofp_match(out, &m, 0, 0);
            }
        }
        out.extend_from_slice(&acts);
        out.extend_from_slice(&self.data);
    }
}

/// PACKET_IN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketIn {
    /// Length of the whole frame.
    pub total_len: u16,
    /// Input port (1.0 numbering).
    pub in_port: u32,
    /// OFPR_* reason (0 no match, 1 action).
    pub reason: u8,
    /// Table the packet was in.
    pub table_id: u8,
    /// Cookie of the flow that sent it.
    pub cookie: u64,
    /// The frame (possibly truncated to max_len).
    pub data: Vec<u8>,
}

impl PacketIn {
    /// Appends the body (no buffering: buffer_id is always NONE).
    pub fn emit(&self, out: &mut Vec<u8>, v: Version) {
        out.u32(u32::MAX);
        if v == Version::V10 {
            out.u16(self.total_len);
            out.u16(self.in_port as u16);
            out.u8(self.reason);
            out.u8(0);
        } else {
            out.u16(self.total_len);
            out.u8(self.reason);
            out.u8(self.table_id);
            out.u64(self.cookie);
            let mut m = Match::default();
            m.set_exact(Field::InPort, u128::from(self.in_port));
            oxm::encode_ofp_match(out, &m, 0, 0);
            out.zeros(2);
        }
        out.extend_from_slice(&self.data);
    }
}
