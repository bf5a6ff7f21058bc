//! Frames the conntrack benches share: a 60-byte Ethernet/IPv4/TCP frame
//! with valid checksums, the flow key and packet metadata conntrack reads
//! for it. Included by each bench with `#[path]` (benches are separate
//! crates).

use std::net::Ipv4Addr;
use vswitch::flow::FlowKey;
use vswitch::packet::PacketMeta;
use vswitch::wire::checksum;

/// A 60-byte Ethernet/IPv4/TCP frame (54 bytes + 6 bytes of non-zero
/// padding) with valid checksums.
#[allow(clippy::too_many_arguments)]
pub fn tcp_frame(
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
) -> [u8; 60] {
    let mut f = [0xa5u8; 60];
    f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip.copy_from_slice(&[
        0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    ip[12..16].copy_from_slice(&src.to_be_bytes());
    ip[16..20].copy_from_slice(&dst.to_be_bytes());
    let c = checksum::checksum(ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let t = &mut f[34..54];
    t.fill(0);
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&ack.to_be_bytes());
    t[12] = 0x50;
    t[13] = flags;
    t[14..16].copy_from_slice(&65535u16.to_be_bytes());
    let ps = checksum::pseudo_header_v4(Ipv4Addr::from(src), Ipv4Addr::from(dst), 6, 20);
    let c = checksum::l4_checksum(ps, t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    f
}

pub fn key() -> FlowKey {
    let mut k = FlowKey::default();
    k.set_dl_type(0x0800);
    k
}

pub fn meta() -> PacketMeta {
    PacketMeta {
        l3_ofs: 14,
        l2_pad_len: 6,
        ..PacketMeta::default()
    }
}
