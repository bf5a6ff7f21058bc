//! Key extraction (placeholder until the wire work lands: Ethernet, one
//! VLAN tag, IPv4, TCP/UDP only).

use super::FlowKey;
use crate::packet::PacketMeta;
use crate::wire::Error;

/// Fills `key` and the header offsets in `meta` from `frame`.
pub fn extract(frame: &[u8], meta: &mut PacketMeta, key: &mut FlowKey) -> Result<(), Error> {
    *key = FlowKey::default();
    key.set_in_port(meta.in_port);
    key.set_recirc_id(meta.recirc_id);
    key.set_ct_state(meta.ct_state.0);
    key.set_ct_zone(meta.ct_zone);
    key.set_ct_mark(meta.ct_mark);
    let b = |i: usize| frame.get(i).copied().ok_or(Error::Truncated);
    let be16 = |i: usize| -> Result<u16, Error> { Ok(u16::from_be_bytes([b(i)?, b(i + 1)?])) };
    if frame.len() < 14 {
        return Err(Error::Truncated);
    }
    let mut m = [0u8; 6];
    m.copy_from_slice(&frame[0..6]);
    key.set_dl_dst(m);
    m.copy_from_slice(&frame[6..12]);
    key.set_dl_src(m);
    let mut ofs = 12;
    let mut et = be16(ofs)?;
    if et == 0x8100 {
        key.set_vlan_tci(be16(ofs + 2).map_err(|_| Error::BadVlan)? | 0x1000);
        ofs += 4;
        et = be16(ofs).map_err(|_| Error::BadVlan)?;
    }
    ofs += 2;
    key.set_dl_type(et);
    meta.l3_ofs = ofs as u16;
    meta.l4_ofs = 0;
    meta.l2_pad_len = 0;
    if et == 0x0800 {
        let ihl = usize::from(b(ofs)? & 0xf) * 4;
        let tot = usize::from(be16(ofs + 2)?);
        if ihl < 20 {
            return Err(Error::LengthTooShort);
        }
        if ofs + tot > frame.len() {
            return Err(Error::LengthExceedsFrame);
        }
        meta.l2_pad_len = (frame.len() - ofs - tot) as u16;
        key.set_nw_tos(b(ofs + 1)?);
        key.set_nw_ttl(b(ofs + 8)?);
        key.set_nw_proto(b(ofs + 9)?);
        key.set_nw_src(u32::from_be_bytes([
            b(ofs + 12)?,
            b(ofs + 13)?,
            b(ofs + 14)?,
            b(ofs + 15)?,
        ]));
        key.set_nw_dst(u32::from_be_bytes([
            b(ofs + 16)?,
            b(ofs + 17)?,
            b(ofs + 18)?,
            b(ofs + 19)?,
        ]));
        let l4 = ofs + ihl;
        meta.l4_ofs = l4 as u16;
        match key.nw_proto() {
            6 | 17 => {
                key.set_tp_src(be16(l4)?);
                key.set_tp_dst(be16(l4 + 2)?);
                if key.nw_proto() == 6 {
                    key.set_tcp_flags(be16(l4 + 12)? & 0x0fff);
                }
            }
            1 => {
                key.set_tp_src(u16::from(b(l4)?));
                key.set_tp_dst(u16::from(b(l4 + 1)?));
            }
            _ => {}
        }
    }
    Ok(())
}
