//! The fixed 40-byte OpenFlow 1.0 `ofp_match` with its wildcard bits, to and
//! from `flow::Match`. It can express only the classic 12-tuple; flows
//! using more travel as NXM (`NXT_FLOW_MOD`, `NXST_FLOW`), which is what
//! `ovs-ofctl` switches to for them.

use super::{Rd, Result, Wr};
use crate::flow::{Field, Match};

/// Size of `ofp_match` in OpenFlow 1.0.
pub const LEN: usize = 40;

const W_IN_PORT: u32 = 1 << 0;
const W_DL_VLAN: u32 = 1 << 1;
const W_DL_SRC: u32 = 1 << 2;
const W_DL_DST: u32 = 1 << 3;
const W_DL_TYPE: u32 = 1 << 4;
const W_NW_PROTO: u32 = 1 << 5;
const W_TP_SRC: u32 = 1 << 6;
const W_TP_DST: u32 = 1 << 7;
const W_NW_SRC_SHIFT: u32 = 8;
const W_NW_DST_SHIFT: u32 = 14;
const W_DL_VLAN_PCP: u32 = 1 << 20;
const W_NW_TOS: u32 = 1 << 21;
const W_ALL: u32 = (1 << 22) - 1;
const VLAN_NONE: u16 = 0xffff;

fn prefix_mask(wild_bits: u32) -> Option<u128> {
    if wild_bits >= 32 {
        None
    } else {
        Some(u128::from(u32::MAX << wild_bits))
    }
}

/// Decodes an `ofp_match`. Fields whose prerequisites the match lacks are
/// ignored, as Open vSwitch does for OpenFlow 1.0.
pub fn decode(r: &mut Rd) -> Result<Match> {
    let w = r.u32()?;
    let in_port = r.u16()?;
    let dl_src = r.mac()?;
    let dl_dst = r.mac()?;
    let dl_vlan = r.u16()?;
    let pcp = r.u8()?;
    r.skip(1)?;
    let dl_type = r.u16()?;
    let tos = r.u8()?;
    let proto = r.u8()?;
    r.skip(2)?;
    let nw_src = r.u32()?;
    let nw_dst = r.u32()?;
    let tp_src = r.u16()?;
    let tp_dst = r.u16()?;
    let mac = |m: [u8; 6]| m.iter().fold(0u128, |a, &x| (a << 8) | u128::from(x));
    let mut m = Match::default();
    if w & W_IN_PORT == 0 {
        m.set_exact(Field::InPort, u128::from(in_port));
    }
    if w & W_DL_SRC == 0 {
        m.set_exact(Field::DlSrc, mac(dl_src));
    }
    if w & W_DL_DST == 0 {
        m.set_exact(Field::DlDst, mac(dl_dst));
    }
    if w & W_DL_VLAN == 0 {
        if dl_vlan == VLAN_NONE {
            m.set(Field::VlanTci, 0, 0xffff);
        } else {
            m.set(Field::VlanTci, 0x1000 | u128::from(dl_vlan & 0xfff), 0x1fff);
        }
    }
    if w & W_DL_VLAN_PCP == 0 && !(w & W_DL_VLAN == 0 && dl_vlan == VLAN_NONE) {
        m.set(Field::VlanTci, 0x1000 | (u128::from(pcp & 7) << 13), 0xf000);
    }
    if w & W_DL_TYPE == 0 {
        m.set_exact(Field::DlType, u128::from(dl_type));
    }
    let ip = w & W_DL_TYPE == 0 && dl_type == 0x0800;
    let arp = w & W_DL_TYPE == 0 && dl_type == 0x0806;
    if ip || arp {
        if w & W_NW_PROTO == 0 {
            m.set_exact(Field::NwProto, u128::from(proto));
        }
        if let Some(mask) = prefix_mask((w >> W_NW_SRC_SHIFT) & 0x3f) {
            m.set(Field::NwSrc, u128::from(nw_src), mask);
        }
        if let Some(mask) = prefix_mask((w >> W_NW_DST_SHIFT) & 0x3f) {
            m.set(Field::NwDst, u128::from(nw_dst), mask);
        }
    }
    if ip && w & W_NW_TOS == 0 {
        m.set(Field::NwTos, u128::from(tos & 0xfc), 0xfc);
    }
    let l4 = ip && w & W_NW_PROTO == 0 && matches!(proto, 1 | 6 | 17 | 132);
    if l4 {
        let narrow = if proto == 1 { 0xff } else { 0xffff };
        if w & W_TP_SRC == 0 {
            m.set(Field::TpSrc, u128::from(tp_src) & narrow, narrow);
        }
        if w & W_TP_DST == 0 {
            m.set(Field::TpDst, u128::from(tp_dst) & narrow, narrow);
        }
    }
    Ok(m)
}

fn prefix_wild(mask: u128) -> Option<u32> {
    let m = mask as u32;
    if m == 0 {
        return Some(32);
    }
    let z = m.trailing_zeros();
    (m >> z == u32::MAX >> z).then_some(z)
}

/// Appends `m` as an `ofp_match`, with the fields it cannot express left
/// wildcarded (callers pick NXM for such matches).
pub fn encode(out: &mut Vec<u8>, m: &Match) {
    let mut w = W_ALL;
    let g = |f: Field| m.get(f);
    let (in_port, ipm) = g(Field::InPort);
    if ipm != 0 {
        w &= !W_IN_PORT;
    }
    let (src, srcm) = g(Field::DlSrc);
    if srcm != 0 {
        w &= !W_DL_SRC;
    }
    let (dst, dstm) = g(Field::DlDst);
    if dstm != 0 {
        w &= !W_DL_DST;
    }
    let (tci, tcim) = g(Field::VlanTci);
    let mut dl_vlan = 0u16;
    let mut pcp = 0u8;
    if tcim == 0xffff && tci == 0 {
        w &= !W_DL_VLAN;
        dl_vlan = VLAN_NONE;
    } else {
        if tcim & 0x0fff == 0x0fff {
            w &= !W_DL_VLAN;
            dl_vlan = (tci & 0xfff) as u16;
        }
        if tcim & 0xe000 == 0xe000 {
            w &= !W_DL_VLAN_PCP;
            pcp = ((tci >> 13) & 7) as u8;
        }
    }
    let (dl_type, dlm) = g(Field::DlType);
    if dlm != 0 {
        w &= !W_DL_TYPE;
    }
    let (tos, tosm) = g(Field::NwTos);
    if tosm & 0xfc != 0 {
        w &= !W_NW_TOS;
    }
    let (proto, protom) = g(Field::NwProto);
    if protom != 0 {
        w &= !W_NW_PROTO;
    }
    let (nw_src, nsm) = g(Field::NwSrc);
    let (nw_dst, ndm) = g(Field::NwDst);
    w = (w & !(0x3f << W_NW_SRC_SHIFT)) | (prefix_wild(nsm).unwrap_or(32) << W_NW_SRC_SHIFT);
    w = (w & !(0x3f << W_NW_DST_SHIFT)) | (prefix_wild(ndm).unwrap_or(32) << W_NW_DST_SHIFT);
    let (tp_src, tsm) = g(Field::TpSrc);
    if tsm != 0 {
        w &= !W_TP_SRC;
    }
    let (tp_dst, tdm) = g(Field::TpDst);
    if tdm != 0 {
        w &= !W_TP_DST;
    }
    out.u32(w);
    out.u16(in_port as u16);
    out.extend_from_slice(&src.to_be_bytes()[10..]);
    out.extend_from_slice(&dst.to_be_bytes()[10..]);
    out.u16(dl_vlan);
    out.u8(pcp);
    out.u8(0);
    out.u16(dl_type as u16);
    out.u8((tos & 0xfc) as u8);
    out.u8(proto as u8);
    out.zeros(2);
    out.u32(nw_src as u32);
    out.u32(nw_dst as u32);
    out.u16(tp_src as u16);
    out.u16(tp_dst as u16);
}

/// True when `m` fits an `ofp_match` without losing anything.
pub fn expressible(m: &Match) -> bool {
    let mut b = Vec::new();
    encode(&mut b, m);
    decode(&mut Rd::new(&b)).is_ok_and(|d| d == *m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_matches_round_trip_and_others_are_flagged() {
        let mut m = Match::default();
        m.set_exact(Field::InPort, 1);
        m.set_exact(Field::DlType, 0x0800);
        m.set_exact(Field::NwProto, 6);
        m.set(Field::NwDst, 0x0a00_0000, 0xffff_ff00);
        m.set_exact(Field::TpDst, 22);
        assert!(expressible(&m));
        let mut b = Vec::new();
        encode(&mut b, &m);
        assert_eq!(b.len(), LEN);
        m.set_exact(Field::Reg(0), 1);
        assert!(!expressible(&m));
    }
}
