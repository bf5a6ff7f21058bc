//! Key extraction: frame bytes to a [`FlowKey`] plus the header offsets the
//! datapath's actions need (`l3_ofs`, `l4_ofs`, `l2_pad_len` in
//! [`PacketMeta`]).
//!
//! This runs once per packet on every worker, before the exact-match cache,
//! so it allocates nothing, takes no lock and reads each header once through
//! fixed-size array views (one bounds check per header). It fills the key
//! the way Open vSwitch's `miniflow_extract` (lib/flow.c) does:
//!
//! * metadata (`in_port`, `recirc_id`, tunnel fields, `ct_*`) is copied
//!   from [`PacketMeta`];
//! * up to two VLAN tags: `vlan_tci` (outer) and `vlan_tci1` (inner), each
//!   with the CFI bit 0x1000 set to mean "present" (so the DEI bit itself is
//!   not kept, as in OVS), and `vlan_tpid` bits for 802.1ad TPIDs;
//! * `dl_type` after the tags; an 802.3 length (< 0x600) gives `0x05ff`
//!   unless an LLC/SNAP header with OUI 000000 names the ethertype;
//! * IPv4/IPv6 addresses, `ipv6_label`, `nw_proto`, `nw_tos`, `nw_ttl`,
//!   `nw_frag`; IPv6 extension headers are walked to the upper layer, and
//!   an IPv6 non-first fragment reports `nw_proto` 44 as OVS does;
//! * TCP/UDP/SCTP ports and `tcp_flags`; ICMP/ICMPv6/IGMP type in `tp_src`
//!   and code in `tp_dst`; for IPv6 neighbor discovery the link-layer
//!   options go to `arp_sha`/`arp_tha` (OVS `nd_sll`/`nd_tll`);
//! * ARP/RARP (Ethernet/IPv4 only): opcode in `nw_proto` (if it fits 8
//!   bits), SPA/TPA in `nw_src`/`nw_dst`, SHA/THA in `arp_sha`/`arp_tha`.
//!
//! Where OVS silently stops parsing, we return a [`wire::Error`] so the
//! datapath counts a drop with a reason: truncated Ethernet, a VLAN tag with
//! nothing behind it, a third tag, a bad IP header or length, a truncated
//! L4 header of a non-fragment or first fragment. A non-first fragment has
//! no L4 header: that is not an error, and `l4_ofs` stays 0.
//!
//! The IP header's length field delimits the datagram; what follows in the
//! frame is Ethernet padding, reported in `l2_pad_len` and never parsed.
//! On `Err` the key and offsets are partially filled and must not be used
//! for forwarding.

use super::FlowKey;
use crate::packet::PacketMeta;
use crate::wire::{self, icmpv6, rd_arr, sub, tail, IpProtocol};

/// `dl_type` of a frame without an ethertype (802.3 length field and no
/// SNAP), Open vSwitch's `FLOW_DL_TYPE_NONE`.
pub const DL_TYPE_NONE: u16 = 0x05ff;

/// Most VLAN tags extracted (OVS default `vlan-limit`).
pub const MAX_VLANS: usize = 2;

const ETH_TYPE_IP: u16 = 0x0800;
const ETH_TYPE_ARP: u16 = 0x0806;
const ETH_TYPE_RARP: u16 = 0x8035;
const ETH_TYPE_IPV6: u16 = 0x86dd;
const ETH_TYPE_VLAN_8021Q: u16 = 0x8100;
const ETH_TYPE_VLAN_8021AD: u16 = 0x88a8;
const ETH_TYPE_MIN: u16 = 0x0600;

#[inline(always)]
fn be16(a: [u8; 2]) -> u16 {
    u16::from_be_bytes(a)
}

#[inline(always)]
fn mac_u64(m: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

/// Fills `key` (entirely: every field not found in the frame or `meta` is
/// zero) and `meta.l3_ofs` / `l4_ofs` / `l2_pad_len` from `frame`.
#[inline]
pub fn extract(frame: &[u8], meta: &mut PacketMeta, key: &mut FlowKey) -> Result<(), wire::Error> {
    // The hash, when computed, is dead code here.
    extract_impl(frame, meta, key).map(|_| ())
}

/// [`extract`], and the key's [`FlowKey::hash64`] when it came almost for
/// free: in the common case without a tunnel, from the words still in
/// registers (`None`: the caller hashes the key itself).
#[inline]
pub fn extract_hashed(
    frame: &[u8],
    meta: &mut PacketMeta,
    key: &mut FlowKey,
) -> Result<Option<u64>, wire::Error> {
    extract_impl(frame, meta, key)
}

#[inline(always)]
fn extract_impl(
    frame: &[u8],
    meta: &mut PacketMeta,
    key: &mut FlowKey,
) -> Result<Option<u64>, wire::Error> {
    *key = FlowKey::default();
    if let Some(c) = common_case(frame) {
        // Words 0..7: the headers and what `copy_metadata` writes there
        // (`in_port`, `recirc_id`, `ct_*`; the tunnel's fields live in
        // later words).
        let w = [
            u64::from(meta.in_port) << 32 | u64::from(meta.recirc_id),
            c.w1,
            c.w2,
            c.w3,
            c.w4,
            c.ports | u64::from(meta.ct_zone) << 16 | u64::from(meta.ct_state.0) << 8,
            u64::from(meta.ct_mark) << 32,
        ];
        key.w[..7].copy_from_slice(&w);
        meta.l3_ofs = 14;
        meta.l4_ofs = 14 + 20;
        meta.l2_pad_len = c.l2_pad_len;
        // With a tunnel the key is wider than the words in registers:
        // the caller hashes it.
        if copy_tunnel(&meta.tunnel, key) {
            return Ok(None);
        }
        return Ok(Some(super::key::hash_dp_narrow(&w)));
    }
    extract_into(frame, meta, key).map(|()| None)
}

/// The general path alone (tests hold the common case to it).
#[cfg(test)]
fn extract_general(
    frame: &[u8],
    meta: &mut PacketMeta,
    key: &mut FlowKey,
) -> Result<(), wire::Error> {
    *key = FlowKey::default();
    extract_into(frame, meta, key)
}

/// What [`extract`] reads from the most common frame: untagged Ethernet,
/// IPv4 without options, not a fragment, a whole UDP or TCP header, every
/// length consistent.
struct CommonCase {
    /// Words 1 to 4 of the key, from the headers.
    w1: u64,
    w2: u64,
    w3: u64,
    w4: u64,
    /// `tp_src` and `tp_dst` as they sit in word 5.
    ports: u64,
    l2_pad_len: u16,
}

/// Recognises the common case with one length check and a few compares,
/// and computes whole key words instead of setting fields one by one.
/// `None` means "not sure": the general path then decides everything,
/// errors included, so this is only ever a shortcut to the same result.
#[inline(always)]
fn common_case(frame: &[u8]) -> Option<CommonCase> {
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    // Ethernet, IPv4 header, UDP header: the shortest frame taken here.
    let f: &[u8; 42] = frame.first_chunk()?;
    // Ethertype IPv4 (so no VLAN tag, no LLC), version 4, IHL 5.
    if f[12..15] != [0x08, 0x00, 0x45] {
        return None;
    }
    let l3_len = frame.len() - 14;
    let tot = usize::from(be16([f[16], f[17]]));
    if tot < 20 || tot > l3_len || be16([f[20], f[21]]) & 0x3fff != 0 {
        return None;
    }
    let l4_len = tot - 20;
    let proto = f[23];
    let flags = match proto {
        UDP => {
            let len = usize::from(be16([f[38], f[39]]));
            if l4_len < 8 || len < 8 || len > l4_len {
                return None;
            }
            0
        }
        TCP => {
            if l4_len < 20 {
                return None;
            }
            // In the frame: the IP length is within it.
            let t: &[u8; 20] = frame.get(34..)?.first_chunk()?;
            let hl = usize::from(t[12] >> 4) * 4;
            if hl < 20 || hl > l4_len {
                return None;
            }
            be16([t[12], t[13]]) & 0x0fff
        }
        _ => return None,
    };
    Some(CommonCase {
        w1: (u64::from_be_bytes(rd_arr::<8>(f, 0)) >> 16) << 16 | u64::from(ETH_TYPE_IP),
        w2: (u64::from_be_bytes(rd_arr::<8>(f, 4)) & 0xffff_ffff_ffff) << 16,
        // nw_proto, nw_tos, nw_ttl; vlan_tci1 and nw_frag 0.
        w3: u64::from(proto) << 40
            | u64::from(f[15]) << 32
            | u64::from(f[22]) << 24
            | u64::from(flags),
        w4: u64::from_be_bytes(rd_arr::<8>(f, 26)),
        ports: u64::from(u32::from_be_bytes(rd_arr::<4>(f, 34))) << 32,
        l2_pad_len: (l3_len - tot) as u16,
    })
}

// Out of line: kept apart, the common case needs none of the registers
// the general path saves and restores.
#[inline(never)]
fn extract_into(frame: &[u8], meta: &mut PacketMeta, key: &mut FlowKey) -> Result<(), wire::Error> {
    // Metadata first: with the offsets reset first, the wide load that
    // gathers `ct_zone` overlapped those fresh 2-byte stores and could not
    // be forwarded from them (about 1 ns a packet, measured).
    copy_metadata(meta, key);
    meta.l3_ofs = 0;
    meta.l4_ofs = 0;
    meta.l2_pad_len = 0;

    // Ethernet.
    let eth: &[u8; 14] = frame.first_chunk().ok_or(wire::Error::Truncated)?;
    // Two 8-byte loads instead of twelve byte loads.
    key.set_dl_dst_u64(u64::from_be_bytes(rd_arr::<8>(eth, 0)) >> 16);
    key.set_dl_src_u64(u64::from_be_bytes(rd_arr::<8>(eth, 4)) & 0xffff_ffff_ffff);
    let mut ty = be16([eth[12], eth[13]]);
    // Offset of the current type field.
    let mut ofs = 12usize;

    // VLAN tags.
    let mut n_vlans = 0usize;
    let mut tpid_bits = 0u8;
    while ty == ETH_TYPE_VLAN_8021Q || ty == ETH_TYPE_VLAN_8021AD {
        if n_vlans == MAX_VLANS {
            return Err(wire::Error::TooManyVlans);
        }
        // TCI and the next type field must both be there.
        let tag: &[u8; 4] = tail(frame, ofs + 2)
            .first_chunk()
            .ok_or(wire::Error::BadVlan)?;
        let tci = be16([tag[0], tag[1]]) | FlowKey::VLAN_CFI;
        let ad = ty == ETH_TYPE_VLAN_8021AD;
        if n_vlans == 0 {
            key.set_vlan_tci(tci);
            if ad {
                tpid_bits |= FlowKey::TPID_OUTER_AD;
            }
        } else {
            key.set_vlan_tci1(tci);
            if ad {
                tpid_bits |= FlowKey::TPID_INNER_AD;
            }
        }
        n_vlans += 1;
        ofs += 4;
        ty = be16([tag[2], tag[3]]);
    }
    key.set_vlan_tpid(tpid_bits);
    ofs += 2;

    if ty < ETH_TYPE_MIN {
        ty = DL_TYPE_NONE;
        // LLC/SNAP with the Ethernet OUI carries a real ethertype.
        if let Some(llc) = tail(frame, ofs).first_chunk::<8>() {
            let snap_type = be16([llc[6], llc[7]]);
            if llc[..6] == [0xaa, 0xaa, 0x03, 0, 0, 0] && snap_type >= ETH_TYPE_MIN {
                ty = snap_type;
                ofs += 8;
            }
        }
    }
    key.set_dl_type(ty);
    meta.l3_ofs = ofs as u16;
    let l3 = tail(frame, ofs);

    match ty {
        ETH_TYPE_IP => extract_ipv4(l3, ofs, meta, key),
        ETH_TYPE_IPV6 => extract_ipv6(l3, ofs, meta, key),
        ETH_TYPE_ARP | ETH_TYPE_RARP => extract_arp(l3, key),
        _ => Ok(()),
    }
}

#[inline(always)]
fn copy_metadata(meta: &PacketMeta, key: &mut FlowKey) {
    key.set_in_port(meta.in_port);
    key.set_recirc_id(meta.recirc_id);
    copy_tunnel(&meta.tunnel, key);
    copy_ct(meta, key);
}

/// Copies the tunnel's fields into `key`, if the packet came from one;
/// returns whether it did. Most packets did not: the copy is skipped (the
/// key is already zero there), as OVS pushes tunnel fields only when the
/// tunnel destination is set.
#[inline(always)]
fn copy_tunnel(t: &crate::packet::TunnelMeta, key: &mut FlowKey) -> bool {
    if !t.is_set() && t.tun_id == 0 {
        return false;
    }
    key.set_tun_id(t.tun_id);
    key.set_tun_src(t.ip_src);
    key.set_tun_dst(t.ip_dst);
    key.set_tun_flags(t.flags);
    key.set_tun_tos(t.ip_tos);
    key.set_tun_ttl(t.ip_ttl);
    key.set_tun_metadata_present(t.metadata_present);
    if t.metadata_present != 0 {
        for (i, v) in t.metadata.iter().enumerate() {
            if t.metadata_present & (1 << i) != 0 {
                key.set_tun_metadata(i, *v);
            }
        }
    }
    true
}

/// Refreshes the metadata fields of `key` (`in_port`, `recirc_id`,
/// tunnel, `ct_*`) from `meta`, the rest staying as they are. For a key
/// [`extract`]ed earlier from the same, unchanged frame bytes with the same
/// tunnel metadata, this gives what a whole extraction would: the datapath
/// uses it for a recirculated packet no action rewrote (after `ct`, only
/// `recirc_id` and the `ct_*` fields moved), instead of parsing the headers
/// again.
#[inline]
pub fn refresh_metadata(meta: &PacketMeta, key: &mut FlowKey) {
    copy_metadata(meta, key);
}

#[inline(always)]
fn copy_ct(meta: &PacketMeta, key: &mut FlowKey) {
    key.set_ct_state(meta.ct_state.0);
    key.set_ct_zone(meta.ct_zone);
    key.set_ct_mark(meta.ct_mark);
}

#[inline(always)]
fn extract_ipv4(
    l3: &[u8],
    l3_ofs: usize,
    meta: &mut PacketMeta,
    key: &mut FlowKey,
) -> Result<(), wire::Error> {
    // Same checks, same order, as `wire::ipv4::Packet::check_len`.
    let h: &[u8; 20] = l3.first_chunk().ok_or(wire::Error::Truncated)?;
    if h[0] >> 4 != 4 {
        return Err(wire::Error::BadVersion);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl < 20 {
        return Err(wire::Error::LengthTooShort);
    }
    if ihl > l3.len() {
        return Err(wire::Error::Truncated);
    }
    let tot = usize::from(be16([h[2], h[3]]));
    if tot < ihl {
        return Err(wire::Error::LengthTooShort);
    }
    if tot > l3.len() {
        return Err(wire::Error::LengthExceedsFrame);
    }
    meta.l2_pad_len = (l3.len() - tot) as u16;

    key.set_nw_src(u32::from_be_bytes([h[12], h[13], h[14], h[15]]));
    key.set_nw_dst(u32::from_be_bytes([h[16], h[17], h[18], h[19]]));
    key.set_nw_tos(h[1]);
    key.set_nw_ttl(h[8]);
    let proto = h[9];
    key.set_nw_proto(proto);
    let frag = be16([h[6], h[7]]);
    let mut nw_frag = 0;
    if frag & 0x3fff != 0 {
        nw_frag = FlowKey::FRAG_ANY;
        if frag & 0x1fff != 0 {
            nw_frag |= FlowKey::FRAG_LATER;
        }
    }
    key.set_nw_frag(nw_frag);
    if nw_frag & FlowKey::FRAG_LATER != 0 {
        return Ok(());
    }
    meta.l4_ofs = (l3_ofs + ihl) as u16;
    extract_l4(sub(l3, ihl, tot), proto, nw_frag != 0, key)
}

#[inline(always)]
fn extract_ipv6(
    l3: &[u8],
    l3_ofs: usize,
    meta: &mut PacketMeta,
    key: &mut FlowKey,
) -> Result<(), wire::Error> {
    let h: &[u8; 40] = l3.first_chunk().ok_or(wire::Error::Truncated)?;
    if h[0] >> 4 != 6 {
        return Err(wire::Error::BadVersion);
    }
    let end = 40 + usize::from(be16([h[4], h[5]]));
    if end > l3.len() {
        return Err(wire::Error::LengthExceedsFrame);
    }
    meta.l2_pad_len = (l3.len() - end) as u16;

    key.set_ipv6_src(u128::from_be_bytes(rd_arr::<16>(h, 8)));
    key.set_ipv6_dst(u128::from_be_bytes(rd_arr::<16>(h, 24)));
    let tc_flow = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    key.set_ipv6_label(tc_flow & 0x000f_ffff);
    key.set_nw_tos((tc_flow >> 20) as u8);
    key.set_nw_ttl(h[7]);

    let payload = sub(l3, 40, end);
    let next = h[6];
    // Most packets have no extension header: skip the walk for them.
    let up = match IpProtocol::from(next) {
        IpProtocol::HopByHop
        | IpProtocol::Ipv6Route
        | IpProtocol::Ipv6Opts
        | IpProtocol::Ah
        | IpProtocol::Ipv6Frag => wire::ipv6::walk_ext_headers(IpProtocol::from(next), payload)?,
        p => wire::ipv6::UpperLayer {
            protocol: p,
            offset: 0,
            fragment: false,
            later_fragment: false,
        },
    };
    let proto = u8::from(up.protocol);
    key.set_nw_proto(proto);
    let mut nw_frag = 0;
    if up.fragment {
        nw_frag = FlowKey::FRAG_ANY;
        if up.later_fragment {
            nw_frag |= FlowKey::FRAG_LATER;
        }
    }
    key.set_nw_frag(nw_frag);
    if up.later_fragment {
        return Ok(());
    }
    meta.l4_ofs = (l3_ofs + 40 + up.offset) as u16;
    extract_l4(tail(payload, up.offset), proto, up.fragment, key)
}

/// `l4` is the upper-layer bytes as the IP length delimits them; `fragment`
/// says it is a first fragment (lengths inside the L4 header then describe
/// the reassembled datagram, so they are not checked against `l4`).
#[inline(always)]
fn extract_l4(l4: &[u8], proto: u8, fragment: bool, key: &mut FlowKey) -> Result<(), wire::Error> {
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const SCTP: u8 = 132;
    const ICMP: u8 = 1;
    const IGMP: u8 = 2;
    const ICMPV6: u8 = 58;
    match proto {
        TCP => {
            let t: &[u8; 20] = l4.first_chunk().ok_or(wire::Error::Truncated)?;
            let hl = usize::from(t[12] >> 4) * 4;
            if hl < 20 {
                return Err(wire::Error::LengthTooShort);
            }
            if !fragment && hl > l4.len() {
                return Err(wire::Error::LengthExceedsFrame);
            }
            key.set_tp_src(be16([t[0], t[1]]));
            key.set_tp_dst(be16([t[2], t[3]]));
            key.set_tcp_flags(be16([t[12], t[13]]) & 0x0fff);
        }
        UDP => {
            let u: &[u8; 8] = l4.first_chunk().ok_or(wire::Error::Truncated)?;
            let len = usize::from(be16([u[4], u[5]]));
            if !fragment {
                if len < 8 {
                    return Err(wire::Error::LengthTooShort);
                }
                if len > l4.len() {
                    return Err(wire::Error::LengthExceedsFrame);
                }
            }
            key.set_tp_src(be16([u[0], u[1]]));
            key.set_tp_dst(be16([u[2], u[3]]));
        }
        SCTP => {
            let s: &[u8; 12] = l4.first_chunk().ok_or(wire::Error::Truncated)?;
            key.set_tp_src(be16([s[0], s[1]]));
            key.set_tp_dst(be16([s[2], s[3]]));
        }
        ICMP | IGMP => {
            let i: &[u8; 8] = l4.first_chunk().ok_or(wire::Error::Truncated)?;
            key.set_tp_src(u16::from(i[0]));
            key.set_tp_dst(u16::from(i[1]));
        }
        ICMPV6 => {
            let i: &[u8; 8] = l4.first_chunk().ok_or(wire::Error::Truncated)?;
            key.set_tp_src(u16::from(i[0]));
            key.set_tp_dst(u16::from(i[1]));
            // Neighbor discovery: 135/136 with code 0.
            if (i[0] == 135 || i[0] == 136) && i[1] == 0 {
                if let Some(nd) = icmpv6::Packet::new_unchecked(l4).nd() {
                    if let Some(sll) = nd.sll {
                        key.set_arp_sha_u64(mac_u64(sll));
                    }
                    if let Some(tll) = nd.tll {
                        key.set_arp_tha_u64(mac_u64(tll));
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[inline(always)]
fn extract_arp(l3: &[u8], key: &mut FlowKey) -> Result<(), wire::Error> {
    let arp = wire::arp::Packet::new_checked(l3)?;
    if !arp.is_eth_ipv4() {
        return Ok(());
    }
    let a: &[u8; 28] = l3.first_chunk().ok_or(wire::Error::Truncated)?;
    let op = be16([a[6], a[7]]);
    if op <= 0xff {
        key.set_nw_proto(op as u8);
    }
    key.set_arp_sha_u64(mac_u64(rd_arr::<6>(a, 8)));
    key.set_nw_src(u32::from_be_bytes([a[14], a[15], a[16], a[17]]));
    key.set_arp_tha_u64(mac_u64(rd_arr::<6>(a, 18)));
    key.set_nw_dst(u32::from_be_bytes([a[24], a[25], a[26], a[27]]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 54-byte TCP ACK (Ethernet + IPv4 + TCP, no options, no payload)
    /// padded to the 60-byte minimum with non-zero bytes, hand-assembled;
    /// the integration tests cross-check it against smoltcp and etherparse.
    fn padded_ack() -> Vec<u8> {
        let mut f = vec![
            0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, // Ethernet
            0x45, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0, 0, 10, 0, 0, 1, 10, 0,
            0, 2, // IPv4, total length 40
            0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x10, 0xff, 0xff, 0, 0, 0,
            0, // TCP ACK
        ];
        f.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x55, 0xaa]);
        f
    }

    #[test]
    fn padded_ack_offsets() {
        let f = padded_ack();
        let mut m = PacketMeta {
            in_port: 3,
            ..Default::default()
        };
        let mut k = FlowKey::default();
        extract(&f, &mut m, &mut k).unwrap();
        assert_eq!((m.l3_ofs, m.l4_ofs, m.l2_pad_len), (14, 34, 6));
        assert_eq!(k.in_port(), 3);
        assert_eq!(k.dl_type(), 0x0800);
        assert_eq!((k.nw_src(), k.nw_dst()), (0x0a00_0001, 0x0a00_0002));
        assert_eq!((k.tp_src(), k.tp_dst(), k.tcp_flags()), (40000, 80, 0x010));
        assert_eq!((k.nw_proto(), k.nw_ttl(), k.nw_frag()), (6, 64, 0));
    }

    #[test]
    fn metadata_is_copied() {
        use crate::packet::{CtState, TunnelMeta};
        let f = padded_ack();
        let mut tunnel = TunnelMeta {
            tun_id: 5001,
            ip_src: 0xc000_0201,
            ip_dst: 0xc000_0202,
            ip_tos: 0x10,
            ip_ttl: 63,
            flags: TunnelMeta::F_KEY | TunnelMeta::F_CSUM,
            metadata_present: 0b101,
            ..Default::default()
        };
        tunnel.metadata[0] = 0xaa;
        tunnel.metadata[1] = 0xbb; // not present: must not leak into the key
        tunnel.metadata[2] = 0xcc;
        let mut m = PacketMeta {
            in_port: 7,
            recirc_id: 9,
            tunnel,
            ct_state: CtState(CtState::TRK | CtState::EST),
            ct_zone: 12,
            ct_mark: 0x42,
            ..Default::default()
        };
        let mut k = FlowKey::default();
        k.set_reg(3, 99); // stale state from a previous packet
        extract(&f, &mut m, &mut k).unwrap();
        assert_eq!((k.in_port(), k.recirc_id()), (7, 9));
        assert_eq!(
            (k.tun_id(), k.tun_src(), k.tun_dst()),
            (5001, 0xc000_0201, 0xc000_0202)
        );
        assert_eq!((k.tun_tos(), k.tun_ttl()), (0x10, 63));
        assert_eq!(k.tun_flags(), TunnelMeta::F_KEY | TunnelMeta::F_CSUM);
        assert_eq!(k.tun_metadata_present(), 0b101);
        assert_eq!(
            (k.tun_metadata(0), k.tun_metadata(1), k.tun_metadata(2)),
            (0xaa, 0, 0xcc)
        );
        assert_eq!((k.ct_state(), k.ct_zone(), k.ct_mark()), (0x22, 12, 0x42));
        assert_eq!(k.reg(3), 0);
        // Without a tunnel the ct fields still come through.
        m.tunnel = TunnelMeta::default();
        extract(&f, &mut m, &mut k).unwrap();
        assert_eq!((k.tun_id(), k.tun_metadata(0)), (0, 0));
        assert_eq!(k.ct_zone(), 12);
    }

    #[test]
    fn vlan_tags_and_errors() {
        let f = padded_ack();
        // Insert 802.1ad (VID 10) + 802.1Q (PCP 3, VID 20).
        let mut q = f[..12].to_vec();
        q.extend_from_slice(&[0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x60, 0x14]);
        q.extend_from_slice(&f[12..]);
        let mut m = PacketMeta::default();
        let mut k = FlowKey::default();
        extract(&q, &mut m, &mut k).unwrap();
        assert_eq!(k.vlan_tci(), 0x100a);
        assert_eq!(k.vlan_tci1(), 0x7014);
        assert_eq!(k.vlan_tpid(), FlowKey::TPID_OUTER_AD);
        assert_eq!(m.l3_ofs, 22);
        assert_eq!(k.dl_type(), 0x0800);
        // Third tag.
        let mut t = q[..20].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 0x1e]);
        t.extend_from_slice(&q[20..]);
        assert_eq!(extract(&t, &mut m, &mut k), Err(wire::Error::TooManyVlans));
        // Tag with nothing behind it.
        assert_eq!(extract(&q[..17], &mut m, &mut k), Err(wire::Error::BadVlan));
        assert_eq!(
            extract(&q[..13], &mut m, &mut k),
            Err(wire::Error::Truncated)
        );
    }

    #[test]
    fn later_fragment_has_no_l4() {
        let mut f = padded_ack();
        f[20] = 0x00;
        f[21] = 0x02; // offset 16 bytes
        f.truncate(14 + 20 + 4); // only 4 bytes of fragment data
        f[16] = 0;
        f[17] = 24;
        let mut m = PacketMeta::default();
        let mut k = FlowKey::default();
        extract(&f, &mut m, &mut k).unwrap();
        assert_eq!(k.nw_frag(), FlowKey::FRAG_ANY | FlowKey::FRAG_LATER);
        assert_eq!((m.l4_ofs, k.tp_src()), (0, 0));
        // The same 4 bytes as a first fragment: truncated TCP header.
        f[20] = 0x20;
        f[21] = 0x00;
        assert_eq!(extract(&f, &mut m, &mut k), Err(wire::Error::Truncated));
    }

    /// A small deterministic generator (xorshift), for the differential
    /// test below.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn common_case_gives_what_the_general_path_gives() {
        // Valid UDP and TCP frames, then the same frames with the bytes
        // the shortcut looks at (and their neighbours) mutated and cut:
        // key, offsets and result always as the general path has them.
        let mut udp = padded_ack();
        udp[23] = 17;
        udp[16..18].copy_from_slice(&28u16.to_be_bytes());
        udp[38..40].copy_from_slice(&8u16.to_be_bytes());
        let mut bases = vec![padded_ack(), udp];
        let mut tcp_opts = padded_ack()[..54].to_vec();
        tcp_opts.extend_from_slice(&[1, 1, 1, 0, 0xaa, 0xbb]);
        tcp_opts[16..18].copy_from_slice(&44u16.to_be_bytes());
        tcp_opts[46] = 0x60;
        bases.push(tcp_opts);
        let hot = [
            12, 13, 14, 15, 16, 17, 20, 21, 22, 23, 34, 35, 36, 37, 38, 39, 46, 47,
        ];
        let mut st = 0x9e37_79b9_7f4a_7c15u64;
        let mut taken = 0;
        let mut hashed = 0;
        for i in 0..60_000 {
            let mut f = bases[i % bases.len()].clone();
            let n = rng(&mut st) % 4;
            for _ in 0..n {
                let r = rng(&mut st);
                let at = if r.is_multiple_of(4) {
                    (r >> 8) as usize % f.len()
                } else {
                    hot[(r >> 8) as usize % hot.len()]
                };
                if let Some(b) = f.get_mut(at) {
                    *b = match (r >> 32) % 3 {
                        0 => (r >> 40) as u8,
                        1 => b.wrapping_add(1),
                        _ => b.wrapping_sub(1),
                    };
                }
            }
            if rng(&mut st).is_multiple_of(5) {
                let cut = rng(&mut st) as usize % (f.len() + 1);
                f.truncate(cut);
            }
            // Every metadata field the key carries non-zero, so a word
            // the shortcut assembles in the wrong place shows.
            let mut m1 = PacketMeta {
                in_port: 5,
                recirc_id: 0x0102_0304,
                ct_zone: 3,
                ct_mark: 0x77,
                ct_state: crate::packet::CtState(0x21),
                ..Default::default()
            };
            if i % 7 == 0 {
                m1.tunnel.tun_id = 42;
                m1.tunnel.metadata_present = 1;
                m1.tunnel.metadata[0] = 9;
            }
            let mut m2 = m1.clone();
            let (mut k1, mut k2) = (FlowKey::default(), FlowKey::default());
            k1.set_reg(2, 1);
            let mut m3 = m1.clone();
            let mut k3 = k1;
            let r1 = extract(&f, &mut m1, &mut k1);
            let r2 = extract_general(&f, &mut m2, &mut k2);
            let r3 = extract_hashed(&f, &mut m3, &mut k3);
            assert_eq!(r1, r2, "{f:02x?}");
            assert_eq!(r3.map(|_| ()), r2, "{f:02x?}");
            if r1.is_ok() {
                assert_eq!(k1, k2, "{f:02x?}");
                assert_eq!(k3, k2, "{f:02x?}");
                assert_eq!(
                    (m1.l3_ofs, m1.l4_ofs, m1.l2_pad_len),
                    (m2.l3_ofs, m2.l4_ofs, m2.l2_pad_len),
                    "{f:02x?}"
                );
                assert_eq!(
                    (m3.l3_ofs, m3.l4_ofs, m3.l2_pad_len),
                    (m2.l3_ofs, m2.l4_ofs, m2.l2_pad_len),
                    "{f:02x?}"
                );
                if let Ok(Some(h)) = r3 {
                    assert_eq!(h, k2.hash64(), "{f:02x?}");
                    hashed += 1;
                }
            }
            taken += usize::from(common_case(&f).is_some());
        }
        // Both paths were exercised.
        assert!(taken > 5_000 && taken < 55_000, "{taken}");
        assert!(hashed > 5_000 && hashed < taken, "{hashed}");
    }

    #[test]
    fn llc_frames() {
        // 802.3 frame with LLC (STP BPDU: DSAP 0x42): dl_type 0x05ff.
        let mut f = vec![0x01, 0x80, 0xc2, 0, 0, 0, 0x02, 0, 0, 0, 0, 1, 0x00, 0x26];
        f.extend_from_slice(&[0x42, 0x42, 0x03, 0, 0, 0, 0, 0]);
        f.resize(60, 0);
        let mut m = PacketMeta::default();
        let mut k = FlowKey::default();
        extract(&f, &mut m, &mut k).unwrap();
        assert_eq!(k.dl_type(), DL_TYPE_NONE);
        assert_eq!(m.l3_ofs, 14);
        // SNAP with OUI 0 and type ARP.
        f[14..22].copy_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x06]);
        extract(&f, &mut m, &mut k).unwrap();
        assert_eq!(k.dl_type(), 0x0806);
        assert_eq!(m.l3_ofs, 22);
    }
}
