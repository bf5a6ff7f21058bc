//! Executing datapath actions on packet bytes: header rewrites with
//! incremental checksum updates (RFC 1624), VLAN push/pop.
//!
//! Offsets come from key extraction (`meta.l3_ofs`, `meta.l4_ofs`) and
//! move with VLAN pushes and pops. A write whose header is absent (a port
//! rewrite on a later fragment, a field past a truncated header) is skipped,
//! never a panic. Also the arguments a `ct` action hands the connection
//! tracker.

use crate::conntrack::CtParams;
use crate::flow::{Field, FlowKey};
use crate::ofproto::DpAction;
use crate::packet::{CsumStatus, PacketBuf};
use crate::wire::checksum;

/// The arguments of a `ct` datapath action (`None`: another action).
#[inline]
pub fn ct_params(a: &DpAction) -> Option<CtParams> {
    match a {
        DpAction::Ct {
            zone,
            commit,
            force,
            mark,
        } => Some(CtParams {
            zone: *zone,
            commit: *commit,
            force: *force,
            set_mark: *mark,
        }),
        _ => None,
    }
}

fn rd16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]))
}

fn wr16(d: &mut [u8], at: usize, v: u16) -> Option<()> {
    d.get_mut(at..at + 2)?.copy_from_slice(&v.to_be_bytes());
    Some(())
}

fn rd32(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Where the L4 checksum of this packet lives and how to update it.
#[derive(Clone, Copy)]
enum L4Csum {
    None,
    /// Offset of the checksum field; `zero_means_none` for UDP over IPv4.
    At {
        ofs: usize,
        zero_means_none: bool,
        pseudo: bool,
    },
}

fn l4_csum(pkt: &PacketBuf, key: &FlowKey) -> L4Csum {
    let l4 = usize::from(pkt.meta.l4_ofs);
    if l4 == 0 || key.nw_frag() & FlowKey::FRAG_LATER != 0 {
        return L4Csum::None;
    }
    match key.nw_proto() {
        6 => L4Csum::At {
            ofs: l4 + 16,
            zero_means_none: false,
            pseudo: true,
        },
        17 => L4Csum::At {
            ofs: l4 + 6,
            zero_means_none: key.is_ipv4(),
            pseudo: true,
        },
        1 if key.is_ipv4() => L4Csum::At {
            ofs: l4 + 2,
            zero_means_none: false,
            pseudo: false,
        },
        58 if key.is_ipv6() => L4Csum::At {
            ofs: l4 + 2,
            zero_means_none: false,
            pseudo: true,
        },
        _ => L4Csum::None,
    }
}

/// Updates the L4 checksum after covered bytes changed from `old` to `new`.
/// `in_pseudo` says the bytes are part of the pseudo-header (addresses):
/// with a partial (offloaded) checksum the field holds the pseudo-header
/// sum, which must follow address changes but not payload changes.
fn fix_l4(pkt: &mut PacketBuf, c: L4Csum, old: &[u8], new: &[u8], in_pseudo: bool) {
    let L4Csum::At {
        ofs,
        zero_means_none,
        pseudo,
    } = c
    else {
        return;
    };
    if in_pseudo && !pseudo {
        return;
    }
    let partial = matches!(pkt.meta.csum, CsumStatus::Partial { .. });
    let d = pkt.data_mut();
    let Some(cur) = rd16(d, ofs) else { return };
    if partial {
        if in_pseudo {
            // The field holds the folded, uncomplemented pseudo-header sum.
            let _ = wr16(d, ofs, !checksum::update_bytes(!cur, old, new));
        }
        return;
    }
    if zero_means_none && cur == 0 {
        return;
    }
    let mut v = checksum::update_bytes(cur, old, new);
    if zero_means_none && v == 0 {
        v = 0xffff;
    }
    let _ = wr16(d, ofs, v);
}

/// Writes `value` under `mask` into `field` of the packet. Returns false
/// when the field is not present in this packet.
pub fn set_field(
    pkt: &mut PacketBuf,
    key: &FlowKey,
    field: Field,
    value: u128,
    mask: u128,
) -> bool {
    let l3 = usize::from(pkt.meta.l3_ofs);
    let l4 = usize::from(pkt.meta.l4_ofs);
    let merge32 = |old: u32| (old & !(mask as u32)) | (value as u32 & mask as u32);
    match field {
        Field::DlDst | Field::DlSrc => {
            let at = if field == Field::DlDst { 0 } else { 6 };
            let d = pkt.data_mut();
            let Some(b) = d.get_mut(at..at + 6) else {
                return false;
            };
            let mut old = [0u8; 8];
            old[2..].copy_from_slice(b);
            let old = u64::from_be_bytes(old);
            let new = (old & !(mask as u64)) | (value as u64 & mask as u64);
            b.copy_from_slice(&new.to_be_bytes()[2..]);
            true
        }
        Field::NwSrc | Field::NwDst if key.is_ipv4() => {
            let at = l3 + if field == Field::NwSrc { 12 } else { 16 };
            let c = l4_csum(pkt, key);
            let d = pkt.data_mut();
            let Some(old) = rd32(d, at) else { return false };
            let new = merge32(old);
            let Some(hc) = rd16(d, l3 + 10) else {
                return false;
            };
            d[at..at + 4].copy_from_slice(&new.to_be_bytes());
            let _ = wr16(d, l3 + 10, checksum::update32(hc, old, new));
            fix_l4(pkt, c, &old.to_be_bytes(), &new.to_be_bytes(), true);
            true
        }
        Field::NwTos if key.is_ipv4() => {
            let d = pkt.data_mut();
            let Some(w) = rd16(d, l3) else { return false };
            let tos = (w & 0xff) as u8;
            let new_tos = (tos & !(mask as u8)) | (value as u8 & mask as u8);
            let nw = (w & 0xff00) | u16::from(new_tos);
            let Some(hc) = rd16(d, l3 + 10) else {
                return false;
            };
            let _ = wr16(d, l3, nw);
            let _ = wr16(d, l3 + 10, checksum::update16(hc, w, nw));
            true
        }
        Field::NwTos if key.is_ipv6() => {
            let d = pkt.data_mut();
            let Some(w) = rd16(d, l3) else { return false };
            let tc = ((w >> 4) & 0xff) as u8;
            let new_tc = (tc & !(mask as u8)) | (value as u8 & mask as u8);
            let _ = wr16(d, l3, (w & 0xf00f) | (u16::from(new_tc) << 4));
            true
        }
        Field::NwTtl if key.is_ipv4() => {
            let d = pkt.data_mut();
            let Some(w) = rd16(d, l3 + 8) else {
                return false;
            };
            let ttl = (w >> 8) as u8;
            let new_ttl = (ttl & !(mask as u8)) | (value as u8 & mask as u8);
            let nw = (u16::from(new_ttl) << 8) | (w & 0xff);
            let Some(hc) = rd16(d, l3 + 10) else {
                return false;
            };
            let _ = wr16(d, l3 + 8, nw);
            let _ = wr16(d, l3 + 10, checksum::update16(hc, w, nw));
            true
        }
        Field::NwTtl if key.is_ipv6() => {
            let d = pkt.data_mut();
            let Some(b) = d.get_mut(l3 + 7) else {
                return false;
            };
            *b = (*b & !(mask as u8)) | (value as u8 & mask as u8);
            true
        }
        Field::Ipv6Src | Field::Ipv6Dst if key.is_ipv6() => {
            let at = l3 + if field == Field::Ipv6Src { 8 } else { 24 };
            let c = l4_csum(pkt, key);
            let d = pkt.data_mut();
            let Some(b) = d.get_mut(at..at + 16) else {
                return false;
            };
            let mut o = [0u8; 16];
            o.copy_from_slice(b);
            let old = u128::from_be_bytes(o);
            let new = (old & !mask) | (value & mask);
            b.copy_from_slice(&new.to_be_bytes());
            fix_l4(pkt, c, &old.to_be_bytes(), &new.to_be_bytes(), true);
            true
        }
        Field::Ipv6Label if key.is_ipv6() => {
            let d = pkt.data_mut();
            let Some(w) = rd32(d, l3) else { return false };
            let m = (mask as u32) & 0xfffff;
            let nw = (w & !m) | (value as u32 & m);
            d[l3..l3 + 4].copy_from_slice(&nw.to_be_bytes());
            true
        }
        Field::TpSrc | Field::TpDst => {
            if l4 == 0 || key.nw_frag() & FlowKey::FRAG_LATER != 0 {
                return false;
            }
            let c = l4_csum(pkt, key);
            let icmp = matches!(key.nw_proto(), 1 | 58);
            let d = pkt.data_mut();
            if icmp {
                // tp_src/tp_dst hold the ICMP type/code: one 16-bit word.
                let Some(w) = rd16(d, l4) else { return false };
                let (shift, bits) = if field == Field::TpSrc {
                    (8, 0xff00u16)
                } else {
                    (0, 0x00ff)
                };
                let nw = (w & !(bits & ((mask as u16) << shift)))
                    | (((value as u16) << shift) & bits & ((mask as u16) << shift));
                let _ = wr16(d, l4, nw);
                fix_l4(pkt, c, &w.to_be_bytes(), &nw.to_be_bytes(), false);
                return true;
            }
            if !matches!(key.nw_proto(), 6 | 17 | 132) {
                return false;
            }
            let at = l4 + if field == Field::TpSrc { 0 } else { 2 };
            let Some(old) = rd16(d, at) else { return false };
            let new = (old & !(mask as u16)) | (value as u16 & mask as u16);
            let _ = wr16(d, at, new);
            fix_l4(pkt, c, &old.to_be_bytes(), &new.to_be_bytes(), false);
            true
        }
        Field::ArpOp | Field::ArpSpa | Field::ArpTpa | Field::ArpSha | Field::ArpTha => {
            let (at, len) = match field {
                Field::ArpOp => (l3 + 6, 2),
                Field::ArpSha => (l3 + 8, 6),
                Field::ArpSpa => (l3 + 14, 4),
                Field::ArpTha => (l3 + 18, 6),
                _ => (l3 + 24, 4),
            };
            let d = pkt.data_mut();
            let Some(b) = d.get_mut(at..at + len) else {
                return false;
            };
            let mut o = [0u8; 16];
            o[16 - len..].copy_from_slice(b);
            let old = u128::from_be_bytes(o);
            let new = (old & !mask) | (value & mask);
            b.copy_from_slice(&new.to_be_bytes()[16 - len..]);
            true
        }
        Field::TunId => {
            let t = &mut pkt.meta.tunnel;
            t.tun_id = (t.tun_id & !(mask as u64)) | (value as u64 & mask as u64);
            t.flags |= crate::packet::TunnelMeta::F_KEY;
            true
        }
        Field::TunSrc => {
            let t = &mut pkt.meta.tunnel;
            t.ip_src = merge32(t.ip_src);
            true
        }
        Field::TunDst => {
            let t = &mut pkt.meta.tunnel;
            t.ip_dst = merge32(t.ip_dst);
            true
        }
        Field::TunMetadata(n) => {
            let n = usize::from(n & 7);
            let t = &mut pkt.meta.tunnel;
            t.metadata[n] = (t.metadata[n] & !(mask as u64)) | (value as u64 & mask as u64);
            t.metadata_present |= 1 << n;
            true
        }
        _ => false,
    }
}

fn shift_offsets(pkt: &mut PacketBuf, grow: bool) {
    let m = &mut pkt.meta;
    if grow {
        m.l3_ofs = m.l3_ofs.saturating_add(4);
        if m.l4_ofs != 0 {
            m.l4_ofs = m.l4_ofs.saturating_add(4);
        }
    } else {
        m.l3_ofs = m.l3_ofs.saturating_sub(4);
        if m.l4_ofs != 0 {
            m.l4_ofs = m.l4_ofs.saturating_sub(4);
        }
    }
}

/// Pushes a VLAN tag after the MAC addresses (moves 12 bytes, not the
/// payload).
pub fn push_vlan(pkt: &mut PacketBuf, tpid: u16, tci: u16) -> bool {
    if pkt.len() < 14 {
        return false;
    }
    let tag = pkt.insert_at(12, 4);
    tag[..2].copy_from_slice(&tpid.to_be_bytes());
    tag[2..].copy_from_slice(&(tci & !FlowKey::VLAN_CFI).to_be_bytes());
    shift_offsets(pkt, true);
    true
}

/// Removes the outer VLAN tag; false when the frame is untagged.
pub fn pop_vlan(pkt: &mut PacketBuf) -> bool {
    match rd16(pkt.data(), 12) {
        Some(0x8100 | 0x88a8) if pkt.len() >= 18 => {
            pkt.remove_at(12, 4);
            shift_offsets(pkt, false);
            true
        }
        _ => false,
    }
}

/// Rewrites bits of the outer tag's TCI; false when the frame is untagged.
pub fn set_vlan_tci(pkt: &mut PacketBuf, tci: u16, mask: u16) -> bool {
    let d = pkt.data_mut();
    match rd16(d, 12) {
        Some(0x8100 | 0x88a8) => {
            let Some(old) = rd16(d, 14) else { return false };
            let _ = wr16(d, 14, (old & !mask) | (tci & mask));
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::extract::extract;

    // Ethernet + IPv4 + TCP SYN, 54 bytes, built by hand:
    // 10.0.0.1:40000 -> 10.0.0.2:80, seq 1, window 65535, checksums valid.
    fn tcp_frame() -> Vec<u8> {
        let mut f = vec![
            0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, // eth
            0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // ip
            0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0,
            0, // tcp
        ];
        let ipc = checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&ipc.to_be_bytes());
        let ps = checksum::pseudo_header_v4([10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 6, 20);
        let c = checksum::l4_checksum(ps, &f[34..54]);
        f[50..52].copy_from_slice(&c.to_be_bytes());
        f
    }

    fn verify(f: &[u8]) {
        assert_eq!(checksum::checksum(&f[14..34]), 0, "IP checksum");
        let src: [u8; 4] = f[26..30].try_into().unwrap();
        let dst: [u8; 4] = f[30..34].try_into().unwrap();
        let ps = checksum::pseudo_header_v4(src.into(), dst.into(), 6, 20);
        assert_eq!(checksum::l4_checksum(ps, &f[34..54]), 0, "TCP checksum");
    }

    #[test]
    fn rewrites_keep_checksums_valid() {
        let mut p = PacketBuf::from_slice(&tcp_frame());
        let mut k = FlowKey::default();
        {
            let (d, m) = p.split();
            extract(d, m, &mut k)
        }
        .unwrap();
        verify(p.data());
        assert!(set_field(
            &mut p,
            &k,
            Field::NwSrc,
            0xc0a8_0101,
            0xffff_ffff
        ));
        assert!(set_field(&mut p, &k, Field::TpDst, 8080, 0xffff));
        assert!(set_field(&mut p, &k, Field::NwTtl, 63, 0xff));
        assert!(set_field(&mut p, &k, Field::NwTos, 0xb8, 0xfc));
        assert!(set_field(
            &mut p,
            &k,
            Field::DlSrc,
            0x0200_0000_0063,
            0xffff_ffff_ffff
        ));
        verify(p.data());
        assert_eq!(&p.data()[26..30], &[192, 168, 1, 1]);
        assert_eq!(&p.data()[36..38], &8080u16.to_be_bytes());
        assert_eq!(p.data()[22], 63);
        assert_eq!(&p.data()[6..12], &[2, 0, 0, 0, 0, 0x63]);
    }

    #[test]
    fn vlan_push_pop_round_trip_moves_offsets() {
        let orig = tcp_frame();
        let mut p = PacketBuf::from_slice(&orig);
        let mut k = FlowKey::default();
        {
            let (d, m) = p.split();
            extract(d, m, &mut k)
        }
        .unwrap();
        assert!(push_vlan(&mut p, 0x8100, 100));
        assert_eq!(&p.data()[12..16], &[0x81, 0x00, 0x00, 100]);
        assert_eq!(p.meta.l3_ofs, 18);
        assert!(set_vlan_tci(&mut p, 200 | (3 << 13), 0xefff));
        assert_eq!(&p.data()[14..16], &(200u16 | (3 << 13)).to_be_bytes());
        // A rewrite after the push still lands in the right place.
        assert!(set_field(&mut p, &k, Field::TpDst, 81, 0xffff));
        assert!(pop_vlan(&mut p));
        assert!(!pop_vlan(&mut p), "untagged now");
        assert_eq!(p.meta.l3_ofs, 14);
        assert_eq!(p.len(), orig.len());
        verify(p.data());
    }
}
