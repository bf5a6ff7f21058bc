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

/// `NXT_PACKET_IN2`'s Nicira subtype.
pub const NXT_PACKET_IN2: u32 = 30;

/// `NXT_PACKET_IN2` property types (`NXPINT_*`).
mod nxpint {
    pub const PACKET: u16 = 0;
    pub const FULL_LEN: u16 = 1;
    pub const TABLE_ID: u16 = 3;
    pub const COOKIE: u16 = 4;
    pub const REASON: u16 = 5;
    pub const METADATA: u16 = 6;
    pub const USERDATA: u16 = 7;
}

/// The pipeline fields a packet-in reports besides `in_port` when they
/// are not zero (Open vSwitch's packet metadata: tunnel, `metadata`,
/// registers, conntrack state).
pub fn metadata_fields() -> impl Iterator<Item = Field> {
    [Field::TunId, Field::TunSrc, Field::TunDst]
        .into_iter()
        .chain((0..8).map(Field::TunMetadata))
        .chain([Field::Metadata])
        .chain((0..8).map(Field::Reg))
        .chain([Field::CtState, Field::CtZone, Field::CtMark])
}

/// The packet-in match of a packet whose pipeline key is `key`: `in_port`
/// and every non-zero metadata field, exact.
pub fn metadata_of(key: &crate::flow::FlowKey) -> Match {
    let mut m = Match::default();
    m.set_exact(Field::InPort, Field::InPort.get(key));
    for f in metadata_fields() {
        let v = f.get(key);
        if v != 0 {
            m.set_exact(f, v);
        }
    }
    m
}

/// PACKET_IN (standard) or `NXT_PACKET_IN2`, as the session asked.
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
    /// The pipeline's metadata at the `controller` action (non-zero
    /// registers, `metadata`, tunnel and conntrack fields); `in_port` is
    /// added from [`PacketIn::in_port`].
    pub metadata: Match,
    /// The `controller` action's userdata (only `NXT_PACKET_IN2` carries
    /// it).
    pub userdata: Vec<u8>,
    /// The frame (possibly truncated to max_len).
    pub data: Vec<u8>,
}

impl PacketIn {
    /// The match a packet-in carries: the metadata with `in_port`.
    fn full_match(&self) -> Match {
        let mut m = self.metadata;
        m.set_exact(Field::InPort, u128::from(self.in_port));
        m
    }

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
            oxm::encode_ofp_match(out, &self.full_match(), 0, 0);
            out.zeros(2);
        }
        out.extend_from_slice(&self.data);
    }

    /// Appends the body of an `NXT_PACKET_IN2` (vendor and subtype
    /// included): one property per item, each padded to 8 bytes. The
    /// metadata is NXM in OpenFlow 1.0 and OXM-first after, as the
    /// version's flow matches are.
    pub fn emit_nx2(&self, out: &mut Vec<u8>, v: Version) {
        out.u32(super::NX_VENDOR);
        out.u32(NXT_PACKET_IN2);
        prop(out, nxpint::PACKET, &self.data);
        prop(
            out,
            nxpint::FULL_LEN,
            &u32::from(self.total_len).to_be_bytes(),
        );
        prop(out, nxpint::TABLE_ID, &[self.table_id]);
        // 64-bit properties are aligned: 4 zero bytes after the header.
        let mut c = vec![0u8; 4];
        c.extend_from_slice(&self.cookie.to_be_bytes());
        prop(out, nxpint::COOKIE, &c);
        prop(out, nxpint::REASON, &[self.reason]);
        let mut m = Vec::new();
        oxm::encode(&mut m, &self.full_match(), v != Version::V10, 0, 0);
        prop(out, nxpint::METADATA, &m);
        if !self.userdata.is_empty() {
            prop(out, nxpint::USERDATA, &self.userdata);
        }
    }
}

/// Appends an OpenFlow property (type, length without padding, value)
/// padded to 8 bytes.
fn prop(out: &mut Vec<u8>, typ: u16, value: &[u8]) {
    let len = 4 + value.len();
    out.u16(typ);
    out.u16(len.min(usize::from(u16::MAX)) as u16);
    out.extend_from_slice(value);
    out.zeros(super::round8(len) - len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowKey;

    #[test]
    fn metadata_is_in_port_and_the_non_zero_pipeline_fields() {
        let mut k = FlowKey::default();
        Field::InPort.set(&mut k, 4);
        Field::Reg(2).set(&mut k, 9);
        Field::CtZone.set(&mut k, 3);
        Field::TunId.set(&mut k, 0x55);
        // A packet field is not metadata.
        Field::NwTtl.set(&mut k, 64);
        let m = metadata_of(&k);
        let exact = |f: Field, v: u128| {
            let (got, mask) = m.get(f);
            assert_eq!(got, v, "{f:?}");
            assert_eq!(
                mask,
                Field::get_mask(f, &crate::flow::FlowMask::exact()),
                "{f:?}"
            );
        };
        exact(Field::InPort, 4);
        exact(Field::Reg(2), 9);
        exact(Field::CtZone, 3);
        exact(Field::TunId, 0x55);
        assert_eq!(m.get(Field::NwTtl).1, 0);
        assert_eq!(m.get(Field::Reg(0)).1, 0, "zero fields are left out");
    }
}
