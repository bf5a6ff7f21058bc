//! Decap and encap as functions of the bytes: validating a received
//! Geneve datagram into tunnel metadata (every refusal a [`PortDrop`]), and
//! pushing a Geneve header with the mapped options into a packet's
//! headroom. No sockets here, so every byte-level rule is testable alone
//! (tests/geneve_decap.rs).

use super::tlv::{TlvMap, MAX_TLV_LEN};
use crate::packet::{PacketData, TunnelMeta, TUN_METADATA_FIELDS};
use crate::port::udp::RecvInfo;
use crate::port::PortDrop;
use crate::wire::geneve::{self as wg, GeneveOption, Options, Repr};
use crate::wire::EtherType;
use std::net::{IpAddr, Ipv4Addr};

/// What a Geneve port accepts on receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecapPolicy {
    /// Only datagrams from this address (`remote_ip=IP`).
    pub remote: Option<Ipv4Addr>,
    /// Only this VNI (`key=VNI`).
    pub in_key: Option<u32>,
    /// The bound local address (`tun_dst` when IP_PKTINFO says nothing).
    pub local: Option<Ipv4Addr>,
    /// The bound UDP port (`tp_dst`).
    pub port: u16,
}

fn v4(a: Option<IpAddr>) -> Option<Ipv4Addr> {
    match a {
        Some(IpAddr::V4(a)) => Some(a),
        Some(IpAddr::V6(a)) => a.to_ipv4_mapped(),
        None => None,
    }
}

/// Validates the Geneve datagram in `pkt` (the UDP payload), strips the
/// Geneve header and fills `pkt.meta.tunnel`. On error the packet is left
/// as it was and the error is the drop reason. Never panics, whatever the
/// bytes.
pub fn decap(
    pkt: &mut PacketData,
    from: &RecvInfo,
    policy: &DecapPolicy,
    map: &TlvMap,
) -> Result<(), PortDrop> {
    let d = pkt.data();
    if d.len() < wg::HEADER_LEN {
        return Err(PortDrop::GeneveTruncated);
    }
    let g = wg::Packet::new_unchecked(d);
    // A later version may lay the rest out differently: judge nothing else.
    if g.version() != 0 {
        return Err(PortDrop::GeneveBadVersion);
    }
    let hl = g.header_len();
    if hl > d.len() {
        return Err(PortDrop::GeneveTruncated);
    }
    if g.protocol() != EtherType::TransEtherBridging {
        return Err(PortDrop::GeneveBadProtocol);
    }
    let src = from.src.and_then(|s| v4(Some(s.ip())));
    if let Some(r) = policy.remote {
        if src != Some(r) {
            return Err(PortDrop::TunnelNoMatch);
        }
    }
    let vni = g.vni();
    if policy.in_key.is_some_and(|k| k != vni) {
        return Err(PortDrop::TunnelNoMatch);
    }
    let mut present = 0u8;
    let mut values = [0u64; TUN_METADATA_FIELDS];
    for opt in g.option_iter() {
        let Ok(opt) = opt else {
            return Err(PortDrop::GeneveBadOptionLength);
        };
        match map.lookup(opt.class, opt.opt_type) {
            Some(m) if usize::from(m.len) == opt.data.len() => {
                let i = usize::from(m.index);
                if let Some(v) = values.get_mut(i) {
                    let mut b = [0u8; 8];
                    let n = opt.data.len().min(8);
                    if let (Some(dst), Some(s)) = (b.get_mut(8 - n..), opt.data.get(..n)) {
                        dst.copy_from_slice(s);
                    }
                    *v = u64::from_be_bytes(b);
                    present |= 1 << i;
                }
            }
            Some(_) => return Err(PortDrop::GeneveBadOptionLength),
            None if opt.is_critical() => return Err(PortDrop::GeneveCriticalOption),
            None => {}
        }
    }
    let mut flags = TunnelMeta::F_KEY;
    if g.oam() {
        flags |= TunnelMeta::F_OAM;
    }
    let dst = v4(from.dst).or(policy.local).map_or(0, u32::from);
    pkt.meta.tunnel = TunnelMeta {
        tun_id: u64::from(vni),
        ip_src: src.map_or(0, u32::from),
        ip_dst: dst,
        ip_tos: from.tos,
        ip_ttl: from.ttl,
        tp_src: from.src.map_or(0, |s| s.port()),
        tp_dst: policy.port,
        flags,
        metadata_present: present,
        metadata: values,
    };
    pkt.pull_front(hl);
    Ok(())
}

/// Pushes a Geneve header for `vni` in front of the frame, with one option
/// per `tun_metadataN` that is present in the packet's tunnel metadata and
/// mapped by `map` (fields without a mapping are not sent). Returns the
/// header length.
pub fn push_header(pkt: &mut PacketData, vni: u32, map: &TlvMap) -> usize {
    let t = pkt.meta.tunnel;
    let mut data = [[0u8; 8]; TUN_METADATA_FIELDS];
    let mut picked = [(0u16, 0u8, 0usize, 0usize); TUN_METADATA_FIELDS];
    let mut n = 0;
    if t.metadata_present != 0 {
        for (i, d) in data.iter_mut().enumerate() {
            if t.metadata_present & (1 << i) == 0 {
                continue;
            }
            let (Some(m), Some(v)) = (map.get(i), t.metadata.get(i)) else {
                continue;
            };
            *d = v.to_be_bytes();
            if let Some(p) = picked.get_mut(n) {
                *p = (m.class, m.opt_type, i, usize::from(m.len.min(MAX_TLV_LEN)));
                n += 1;
            }
        }
    }
    let empty = GeneveOption {
        class: 0,
        opt_type: 0,
        data: &[],
    };
    let mut list = [empty; TUN_METADATA_FIELDS];
    for (slot, &(class, opt_type, i, len)) in list.iter_mut().zip(picked.iter().take(n)) {
        *slot = GeneveOption {
            class,
            opt_type,
            data: data.get(i).and_then(|d| d.get(8 - len..)).unwrap_or(&[]),
        };
    }
    let repr = Repr {
        oam: t.flags & TunnelMeta::F_OAM != 0,
        critical: false,
        protocol: EtherType::TransEtherBridging,
        vni: vni & 0x00ff_ffff,
        options: Options::List(list.get(..n).unwrap_or(&[])),
    };
    let hl = repr.buffer_len();
    let hdr = pkt.push_front(hl);
    repr.emit(&mut wg::Packet::new_unchecked(hdr));
    hl
}
