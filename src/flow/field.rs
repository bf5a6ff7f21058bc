//! The match fields, with their ovs-ofctl names, NXM names, widths and how
//! they are stored in a [`FlowKey`].
//!
//! Values travel as `u128` (wide enough for an IPv6 address); the text
//! syntax decides how a value is spelled (MAC, dotted quad, flags, ...) from
//! [`Field::kind`].

use super::key::{FlowKey, FlowMask};

/// How a field's value is written in the text syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Decimal or 0x-hex integer.
    Int,
    /// Ethernet address `aa:bb:cc:dd:ee:ff`.
    Mac,
    /// IPv4 address, optionally `/prefix` or `/mask`.
    Ipv4,
    /// IPv6 address, optionally `/prefix`.
    Ipv6,
    /// An OpenFlow port: number or name (`in_port=p1`, `LOCAL`).
    Port,
    /// `ct_state` flags: `+trk+est-rel`.
    CtState,
    /// `tcp_flags` flags: `+syn-ack`, or an integer.
    TcpFlags,
    /// `nw_frag`: `no`, `yes`, `first`, `later`, `not_later`.
    Frag,
}

/// A match field (and, for the settable ones, a `set_field` / `move`
/// destination).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `in_port`.
    InPort,
    /// `dl_src` (`eth_src`).
    DlSrc,
    /// `dl_dst` (`eth_dst`).
    DlDst,
    /// `dl_type` (`eth_type`).
    DlType,
    /// `vlan_tci`: the whole outer TCI including the presence bit.
    VlanTci,
    /// `dl_vlan`: the 12-bit VID of the outer tag.
    DlVlan,
    /// `dl_vlan_pcp`: the 3-bit priority of the outer tag.
    DlVlanPcp,
    /// `nw_src` (`ip_src`).
    NwSrc,
    /// `nw_dst` (`ip_dst`).
    NwDst,
    /// `nw_proto` (`ip_proto`).
    NwProto,
    /// `nw_tos`: the TOS byte with the ECN bits zero.
    NwTos,
    /// `ip_dscp`: the 6-bit DSCP.
    IpDscp,
    /// `nw_ecn` (`ip_ecn`): the 2 ECN bits.
    NwEcn,
    /// `nw_ttl`.
    NwTtl,
    /// `nw_frag`.
    NwFrag,
    /// `tp_src` (`tcp_src`, `udp_src`).
    TpSrc,
    /// `tp_dst` (`tcp_dst`, `udp_dst`).
    TpDst,
    /// `tcp_flags`.
    TcpFlags,
    /// `icmp_type` (and `icmpv6_type`).
    IcmpType,
    /// `icmp_code` (and `icmpv6_code`).
    IcmpCode,
    /// `arp_op`.
    ArpOp,
    /// `arp_spa`.
    ArpSpa,
    /// `arp_tpa`.
    ArpTpa,
    /// `arp_sha`.
    ArpSha,
    /// `arp_tha`.
    ArpTha,
    /// `ipv6_src`.
    Ipv6Src,
    /// `ipv6_dst`.
    Ipv6Dst,
    /// `ipv6_label`.
    Ipv6Label,
    /// `tun_id` (`tunnel_id`).
    TunId,
    /// `tun_src`.
    TunSrc,
    /// `tun_dst`.
    TunDst,
    /// `tun_metadataN`, N in 0..8.
    TunMetadata(u8),
    /// `metadata`.
    Metadata,
    /// `regN`, N in 0..8.
    Reg(u8),
    /// `ct_state`.
    CtState,
    /// `ct_zone`.
    CtZone,
    /// `ct_mark`.
    CtMark,
}

impl Field {
    /// Every field, in the order ovs-ofctl prints matches.
    pub fn all() -> impl Iterator<Item = Field> {
        const FIXED: [Field; 33] = [
            Field::InPort,
            Field::DlSrc,
            Field::DlDst,
            Field::DlType,
            Field::VlanTci,
            Field::DlVlan,
            Field::DlVlanPcp,
            Field::NwSrc,
            Field::NwDst,
            Field::NwProto,
            Field::NwTos,
            Field::IpDscp,
            Field::NwEcn,
            Field::NwTtl,
            Field::NwFrag,
            Field::TpSrc,
            Field::TpDst,
            Field::TcpFlags,
            Field::IcmpType,
            Field::IcmpCode,
            Field::ArpOp,
            Field::ArpSpa,
            Field::ArpTpa,
            Field::ArpSha,
            Field::ArpTha,
            Field::Ipv6Src,
            Field::Ipv6Dst,
            Field::Ipv6Label,
            Field::TunId,
            Field::TunSrc,
            Field::TunDst,
            Field::Metadata,
            Field::CtState,
        ];
        FIXED
            .into_iter()
            .chain((0..8).map(Field::TunMetadata))
            .chain((0..8).map(Field::Reg))
            .chain([Field::CtZone, Field::CtMark])
    }

    /// The ovs-ofctl name (`dl_src`, `reg3`, `tun_metadata0`).
    pub fn name(self) -> &'static str {
        const REGS: [&str; 8] = [
            "reg0", "reg1", "reg2", "reg3", "reg4", "reg5", "reg6", "reg7",
        ];
        const TUNMD: [&str; 8] = [
            "tun_metadata0",
            "tun_metadata1",
            "tun_metadata2",
            "tun_metadata3",
            "tun_metadata4",
            "tun_metadata5",
            "tun_metadata6",
            "tun_metadata7",
        ];
        match self {
            Field::InPort => "in_port",
            Field::DlSrc => "dl_src",
            Field::DlDst => "dl_dst",
            Field::DlType => "dl_type",
            Field::VlanTci => "vlan_tci",
            Field::DlVlan => "dl_vlan",
            Field::DlVlanPcp => "dl_vlan_pcp",
            Field::NwSrc => "nw_src",
            Field::NwDst => "nw_dst",
            Field::NwProto => "nw_proto",
            Field::NwTos => "nw_tos",
            Field::IpDscp => "ip_dscp",
            Field::NwEcn => "nw_ecn",
            Field::NwTtl => "nw_ttl",
            Field::NwFrag => "nw_frag",
            Field::TpSrc => "tp_src",
            Field::TpDst => "tp_dst",
            Field::TcpFlags => "tcp_flags",
            Field::IcmpType => "icmp_type",
            Field::IcmpCode => "icmp_code",
            Field::ArpOp => "arp_op",
            Field::ArpSpa => "arp_spa",
            Field::ArpTpa => "arp_tpa",
            Field::ArpSha => "arp_sha",
            Field::ArpTha => "arp_tha",
            Field::Ipv6Src => "ipv6_src",
            Field::Ipv6Dst => "ipv6_dst",
            Field::Ipv6Label => "ipv6_label",
            Field::TunId => "tun_id",
            Field::TunSrc => "tun_src",
            Field::TunDst => "tun_dst",
            Field::TunMetadata(n) => TUNMD[usize::from(n & 7)],
            Field::Metadata => "metadata",
            Field::Reg(n) => REGS[usize::from(n & 7)],
            Field::CtState => "ct_state",
            Field::CtZone => "ct_zone",
            Field::CtMark => "ct_mark",
        }
    }

    /// Width of the field in bits.
    pub fn bits(self) -> u32 {
        match self {
            Field::InPort => 32,
            Field::DlSrc | Field::DlDst | Field::ArpSha | Field::ArpTha => 48,
            Field::DlType | Field::VlanTci | Field::TpSrc | Field::TpDst | Field::CtZone => 16,
            Field::DlVlan | Field::TcpFlags => 12,
            Field::DlVlanPcp => 3,
            Field::NwSrc | Field::NwDst | Field::ArpSpa | Field::ArpTpa | Field::TunSrc => 32,
            Field::TunDst | Field::Reg(_) | Field::CtMark => 32,
            Field::NwProto | Field::NwTos | Field::NwTtl | Field::CtState => 8,
            Field::IcmpType | Field::IcmpCode => 8,
            // Stored in nw_proto as Open vSwitch does; opcodes above 255
            // do not exist in practice.
            Field::ArpOp => 8,
            Field::IpDscp => 6,
            Field::NwEcn | Field::NwFrag => 2,
            Field::Ipv6Src | Field::Ipv6Dst => 128,
            Field::Ipv6Label => 20,
            Field::TunId | Field::Metadata | Field::TunMetadata(_) => 64,
        }
    }

    /// How the value is spelled.
    pub fn kind(self) -> FieldKind {
        match self {
            Field::InPort => FieldKind::Port,
            Field::DlSrc | Field::DlDst | Field::ArpSha | Field::ArpTha => FieldKind::Mac,
            Field::NwSrc | Field::NwDst | Field::ArpSpa | Field::ArpTpa => FieldKind::Ipv4,
            Field::TunSrc | Field::TunDst => FieldKind::Ipv4,
            Field::Ipv6Src | Field::Ipv6Dst => FieldKind::Ipv6,
            Field::CtState => FieldKind::CtState,
            Field::TcpFlags => FieldKind::TcpFlags,
            Field::NwFrag => FieldKind::Frag,
            _ => FieldKind::Int,
        }
    }

    /// The full-width mask of the field as stored.
    pub fn full_mask(self) -> u128 {
        let b = self.bits();
        if b >= 128 {
            u128::MAX
        } else {
            (1u128 << b) - 1
        }
    }

    /// Reads the field from a key (works on a mask too, see [`Field::get_mask`]).
    pub fn get(self, k: &FlowKey) -> u128 {
        get_words(self, &k.w)
    }

    /// Writes the field into a key. Bits beyond the field width are ignored.
    pub fn set(self, k: &mut FlowKey, v: u128) {
        set_words(self, &mut k.w, v)
    }

    /// Reads the field's bits from a mask.
    pub fn get_mask(self, m: &FlowMask) -> u128 {
        get_words(self, &m.w)
    }

    /// Writes the field's bits into a mask.
    pub fn set_mask(self, m: &mut FlowMask, v: u128) {
        set_words(self, &mut m.w, v)
    }
}

/// (word, shift, bits) of the fields stored in a single word. Fields that
/// are views of part of another field (dl_vlan in vlan_tci, ip_dscp in
/// nw_tos) appear with their own shift.
fn place(f: Field) -> Option<(usize, u32, u32)> {
    Some(match f {
        Field::InPort => (0, 32, 32),
        Field::DlDst => (1, 16, 48),
        Field::DlType => (1, 0, 16),
        Field::DlSrc => (2, 16, 48),
        Field::VlanTci => (2, 0, 16),
        Field::DlVlan => (2, 0, 12),
        Field::DlVlanPcp => (2, 13, 3),
        Field::NwProto => (3, 40, 8),
        Field::ArpOp => (3, 40, 8),
        Field::NwTos => (3, 32, 8),
        Field::IpDscp => (3, 34, 6),
        Field::NwEcn => (3, 32, 2),
        Field::NwTtl => (3, 24, 8),
        Field::NwFrag => (3, 16, 2),
        Field::TcpFlags => (3, 0, 12),
        Field::NwSrc | Field::ArpSpa => (4, 32, 32),
        Field::NwDst | Field::ArpTpa => (4, 0, 32),
        Field::TpSrc => (5, 48, 16),
        Field::IcmpType => (5, 48, 8),
        Field::TpDst => (5, 32, 16),
        Field::IcmpCode => (5, 32, 8),
        Field::CtZone => (5, 16, 16),
        Field::CtState => (5, 8, 8),
        Field::CtMark => (6, 32, 32),
        Field::Ipv6Label => (6, 0, 20),
        Field::ArpSha => (11, 16, 48),
        Field::ArpTha => (12, 16, 48),
        Field::TunId => (13, 0, 64),
        Field::TunSrc => (14, 32, 32),
        Field::TunDst => (14, 0, 32),
        Field::Metadata => (super::key::META_WORD, 0, 64),
        Field::Reg(n) => (
            super::key::REG_WORD + usize::from(n & 7) / 2,
            if n % 2 == 0 { 32 } else { 0 },
            32,
        ),
        Field::TunMetadata(n) => (super::key::TUN_MD_WORD + usize::from(n & 7), 0, 64),
        Field::Ipv6Src | Field::Ipv6Dst => return None,
    })
}

fn get_words(f: Field, w: &[u64; super::key::WORDS]) -> u128 {
    match f {
        Field::Ipv6Src => (u128::from(w[7]) << 64) | u128::from(w[8]),
        Field::Ipv6Dst => (u128::from(w[9]) << 64) | u128::from(w[10]),
        _ => match place(f) {
            Some((i, shift, bits)) => {
                let m = if bits == 64 {
                    !0u64
                } else {
                    (1u64 << bits) - 1
                };
                u128::from((w[i] >> shift) & m)
            }
            None => 0,
        },
    }
}

fn set_words(f: Field, w: &mut [u64; super::key::WORDS], v: u128) {
    match f {
        Field::Ipv6Src => {
            w[7] = (v >> 64) as u64;
            w[8] = v as u64;
        }
        Field::Ipv6Dst => {
            w[9] = (v >> 64) as u64;
            w[10] = v as u64;
        }
        _ => {
            if let Some((i, shift, bits)) = place(f) {
                let m = if bits == 64 {
                    !0u64
                } else {
                    (1u64 << bits) - 1
                };
                let v = (v as u64) & m;
                w[i] = (w[i] & !(m << shift)) | (v << shift);
            }
        }
    }
}

/// A bit range of a field, as in `NXM_NX_REG0[0..15]` or `reg0[]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldSlice {
    /// The field.
    pub field: Field,
    /// First bit (0 = least significant).
    pub ofs: u32,
    /// Number of bits.
    pub n_bits: u32,
}

impl FieldSlice {
    /// The whole field.
    pub fn whole(field: Field) -> Self {
        FieldSlice {
            field,
            ofs: 0,
            n_bits: field.bits(),
        }
    }

    /// Mask of the slice's bits within the field.
    pub fn mask(&self) -> u128 {
        let m = if self.n_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << self.n_bits) - 1
        };
        m << self.ofs
    }

    /// Reads the slice's bits, shifted down to bit 0.
    pub fn get(&self, k: &FlowKey) -> u128 {
        (self.field.get(k) & self.mask()) >> self.ofs
    }

    /// Writes `v` (from bit 0) into the slice's bits.
    pub fn set(&self, k: &mut FlowKey, v: u128) {
        let old = self.field.get(k);
        let m = self.mask();
        self.field.set(k, (old & !m) | ((v << self.ofs) & m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_round_trips_its_full_width() {
        for f in Field::all() {
            let mut k = FlowKey::default();
            let v = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128 & f.full_mask();
            f.set(&mut k, v);
            assert_eq!(f.get(&k), v, "{}", f.name());
        }
    }

    #[test]
    fn partial_views_agree_with_accessors() {
        let mut k = FlowKey::default();
        k.set_vlan_tci(0x1000 | (5 << 13) | 100);
        assert_eq!(Field::DlVlan.get(&k), 100);
        assert_eq!(Field::DlVlanPcp.get(&k), 5);
        k.set_nw_tos(0xb9);
        assert_eq!(Field::IpDscp.get(&k), 0xb8 >> 2);
        assert_eq!(Field::NwEcn.get(&k), 1);
        k.set_reg(3, 0xabcd);
        assert_eq!(Field::Reg(3).get(&k), 0xabcd);
        let s = FieldSlice {
            field: Field::Reg(3),
            ofs: 4,
            n_bits: 8,
        };
        assert_eq!(s.get(&k), 0xbc);
        s.set(&mut k, 0x12);
        assert_eq!(k.reg(3), 0xa12d);
    }
}
