//! The names the text syntax knows for fields, how each name is stored in a
//! [`Match`], the NXM/OXM names used by `load`, `move` and `ct(zone=...)`,
//! and the prerequisites Open vSwitch attaches to them (`meta-flow.h`).
//!
//! Several names share storage, as in Open vSwitch's `struct flow`:
//! `arp_spa` is `nw_src`, `arp_op` is `nw_proto`, `icmp_type` is the whole
//! 16-bit `tp_src`, `dl_vlan` and `dl_vlan_pcp` are views of `vlan_tci`
//! that also require the tag-present (CFI) bit, `nw_tos`/`ip_dscp` are the
//! DSCP bits of the TOS byte.

use crate::flow::field::Field;
use crate::flow::matching::Match;

/// How a match value is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Integer, `bits` wide.
    Int,
    /// Ethernet address.
    Mac,
    /// IPv4 address.
    Ipv4,
    /// IPv6 address.
    Ipv6,
    /// OpenFlow port number or name.
    Port,
    /// `ct_state` flags.
    CtState,
    /// `tcp_flags` flags.
    TcpFlags,
    /// `nw_frag` names.
    Frag,
}

/// Where a match name stores its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    /// The field itself, value and mask as given.
    Plain(Field),
    /// `nw_tos`: the TOS byte, ECN bits excluded from the mask.
    NwTos,
    /// `ip_dscp`: shifted left 2 into the TOS byte.
    IpDscp,
    /// `dl_vlan`: VID plus the CFI bit in `vlan_tci` (0xffff = no tag).
    DlVlan,
    /// `dl_vlan_pcp`: PCP plus the CFI bit in `vlan_tci`.
    DlVlanPcp,
    /// `icmp_type` / `icmp_code`: the whole 16-bit `tp_src` / `tp_dst`.
    Icmp(Field),
}

/// What a field needs the match to say first (Open vSwitch's
/// prerequisites, as its match normalization applies them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prereq {
    /// Always allowed.
    None,
    /// `ip` or `ipv6`.
    Ip,
    /// `ip` or `ipv6` or `arp` (`nw_proto` is the ARP opcode for ARP).
    IpOrArp,
    /// `ip` only.
    Ipv4,
    /// `ip`, or `arp`/`rarp` (`nw_src` is `arp_spa` for ARP).
    Ipv4OrArp,
    /// `ipv6`.
    Ipv6,
    /// `arp` or `rarp`.
    Arp,
    /// TCP, UDP or SCTP over IPv4 or IPv6.
    L4,
    /// TCP over IPv4 or IPv6.
    Tcp,
    /// UDP over IPv4 or IPv6.
    Udp,
    /// SCTP over IPv4 or IPv6.
    Sctp,
    /// ICMP over IPv4 or ICMPv6 over IPv6.
    Icmp,
    /// ICMP over IPv4.
    Icmp4,
    /// ICMPv6.
    Icmp6,
}

/// A name usable as `name=value` in a match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatchField {
    /// The canonical ovs-ofctl name (aliases resolve to it).
    pub name: &'static str,
    /// How the value is spelled.
    pub kind: Kind,
    /// Width of the value in bits (for `Int`).
    pub bits: u32,
    /// Whether `/mask` is accepted.
    pub maskable: bool,
    /// Storage.
    pub store: Store,
    /// Prerequisites.
    pub prereq: Prereq,
}

const fn mf(
    name: &'static str,
    kind: Kind,
    bits: u32,
    maskable: bool,
    store: Store,
    prereq: Prereq,
) -> MatchField {
    MatchField {
        name,
        kind,
        bits,
        maskable,
        store,
        prereq,
    }
}

use Kind as K;
use Prereq as P;
use Store as S;

/// (names, field), the first name is canonical.
const MATCH_FIELDS: &[(&[&str], MatchField)] = &[
    (
        &["in_port"],
        mf(
            "in_port",
            K::Port,
            16,
            false,
            S::Plain(Field::InPort),
            P::None,
        ),
    ),
    (
        &["dl_src", "eth_src"],
        mf("dl_src", K::Mac, 48, true, S::Plain(Field::DlSrc), P::None),
    ),
    (
        &["dl_dst", "eth_dst"],
        mf("dl_dst", K::Mac, 48, true, S::Plain(Field::DlDst), P::None),
    ),
    (
        &["dl_type", "eth_type"],
        mf(
            "dl_type",
            K::Int,
            16,
            false,
            S::Plain(Field::DlType),
            P::None,
        ),
    ),
    (
        &["vlan_tci"],
        mf(
            "vlan_tci",
            K::Int,
            16,
            true,
            S::Plain(Field::VlanTci),
            P::None,
        ),
    ),
    (
        &["dl_vlan"],
        mf("dl_vlan", K::Int, 16, false, S::DlVlan, P::None),
    ),
    (
        &["dl_vlan_pcp"],
        mf("dl_vlan_pcp", K::Int, 3, false, S::DlVlanPcp, P::None),
    ),
    (
        &["nw_src", "ip_src"],
        mf(
            "nw_src",
            K::Ipv4,
            32,
            true,
            S::Plain(Field::NwSrc),
            P::Ipv4OrArp,
        ),
    ),
    (
        &["nw_dst", "ip_dst"],
        mf(
            "nw_dst",
            K::Ipv4,
            32,
            true,
            S::Plain(Field::NwDst),
            P::Ipv4OrArp,
        ),
    ),
    (
        &["nw_proto", "ip_proto"],
        mf(
            "nw_proto",
            K::Int,
            8,
            false,
            S::Plain(Field::NwProto),
            P::IpOrArp,
        ),
    ),
    (&["nw_tos"], mf("nw_tos", K::Int, 8, false, S::NwTos, P::Ip)),
    (
        &["ip_dscp"],
        mf("ip_dscp", K::Int, 6, false, S::IpDscp, P::Ip),
    ),
    (
        &["nw_ecn", "ip_ecn"],
        mf("nw_ecn", K::Int, 2, false, S::Plain(Field::NwEcn), P::Ip),
    ),
    (
        &["nw_ttl"],
        mf("nw_ttl", K::Int, 8, false, S::Plain(Field::NwTtl), P::Ip),
    ),
    (
        &["nw_frag", "ip_frag"],
        mf("nw_frag", K::Frag, 2, true, S::Plain(Field::NwFrag), P::Ip),
    ),
    (
        &["tp_src", "tcp_src", "udp_src", "sctp_src"],
        mf("tp_src", K::Int, 16, true, S::Plain(Field::TpSrc), P::L4),
    ),
    (
        &["tp_dst", "tcp_dst", "udp_dst", "sctp_dst"],
        mf("tp_dst", K::Int, 16, true, S::Plain(Field::TpDst), P::L4),
    ),
    (
        &["tcp_flags"],
        mf(
            "tcp_flags",
            K::TcpFlags,
            12,
            true,
            S::Plain(Field::TcpFlags),
            P::Tcp,
        ),
    ),
    (
        &["icmp_type", "icmpv6_type"],
        mf(
            "icmp_type",
            K::Int,
            8,
            false,
            S::Icmp(Field::TpSrc),
            P::Icmp,
        ),
    ),
    (
        &["icmp_code", "icmpv6_code"],
        mf(
            "icmp_code",
            K::Int,
            8,
            false,
            S::Icmp(Field::TpDst),
            P::Icmp,
        ),
    ),
    (
        &["arp_op"],
        mf("arp_op", K::Int, 8, false, S::Plain(Field::NwProto), P::Arp),
    ),
    (
        &["arp_spa"],
        mf("arp_spa", K::Ipv4, 32, true, S::Plain(Field::NwSrc), P::Arp),
    ),
    (
        &["arp_tpa"],
        mf("arp_tpa", K::Ipv4, 32, true, S::Plain(Field::NwDst), P::Arp),
    ),
    (
        &["arp_sha"],
        mf("arp_sha", K::Mac, 48, true, S::Plain(Field::ArpSha), P::Arp),
    ),
    (
        &["arp_tha"],
        mf("arp_tha", K::Mac, 48, true, S::Plain(Field::ArpTha), P::Arp),
    ),
    (
        &["ipv6_src"],
        mf(
            "ipv6_src",
            K::Ipv6,
            128,
            true,
            S::Plain(Field::Ipv6Src),
            P::Ipv6,
        ),
    ),
    (
        &["ipv6_dst"],
        mf(
            "ipv6_dst",
            K::Ipv6,
            128,
            true,
            S::Plain(Field::Ipv6Dst),
            P::Ipv6,
        ),
    ),
    (
        &["ipv6_label"],
        mf(
            "ipv6_label",
            K::Int,
            20,
            true,
            S::Plain(Field::Ipv6Label),
            P::Ipv6,
        ),
    ),
    (
        &["tun_id", "tunnel_id"],
        mf("tun_id", K::Int, 64, true, S::Plain(Field::TunId), P::None),
    ),
    (
        &["tun_src"],
        mf(
            "tun_src",
            K::Ipv4,
            32,
            true,
            S::Plain(Field::TunSrc),
            P::None,
        ),
    ),
    (
        &["tun_dst"],
        mf(
            "tun_dst",
            K::Ipv4,
            32,
            true,
            S::Plain(Field::TunDst),
            P::None,
        ),
    ),
    (
        &["metadata"],
        mf(
            "metadata",
            K::Int,
            64,
            true,
            S::Plain(Field::Metadata),
            P::None,
        ),
    ),
    (
        &["ct_state"],
        mf(
            "ct_state",
            K::CtState,
            8,
            true,
            S::Plain(Field::CtState),
            P::None,
        ),
    ),
    (
        &["ct_zone"],
        mf(
            "ct_zone",
            K::Int,
            16,
            false,
            S::Plain(Field::CtZone),
            P::None,
        ),
    ),
    (
        &["ct_mark"],
        mf(
            "ct_mark",
            K::Int,
            32,
            true,
            S::Plain(Field::CtMark),
            P::None,
        ),
    ),
];

/// Field names Open vSwitch knows that vswitch does not implement: named
/// in the error so the operator knows the name is right but unsupported.
const UNSUPPORTED_FIELDS: &[&str] = &[
    "dp_hash",
    "recirc_id",
    "packet_type",
    "conj_id",
    "tun_ipv6_src",
    "tun_ipv6_dst",
    "tun_flags",
    "tun_ttl",
    "tun_tos",
    "tun_gbp_id",
    "tun_gbp_flags",
    "tun_erspan_idx",
    "tun_erspan_ver",
    "tun_erspan_dir",
    "tun_erspan_hwid",
    "tun_gtpu_flags",
    "tun_gtpu_msgtype",
    "in_port_oxm",
    "actset_output",
    "skb_priority",
    "pkt_mark",
    "ct_label",
    "ct_nw_proto",
    "ct_nw_src",
    "ct_nw_dst",
    "ct_ipv6_src",
    "ct_ipv6_dst",
    "ct_tp_src",
    "ct_tp_dst",
    "vlan_vid",
    "vlan_pcp",
    "mpls_label",
    "mpls_tc",
    "mpls_bos",
    "mpls_ttl",
    "nd_target",
    "nd_sll",
    "nd_tll",
    "nd_reserved",
    "nd_options_type",
    "nsh_flags",
    "nsh_mdtype",
    "nsh_np",
    "nsh_spi",
    "nsh_si",
    "nsh_ttl",
    "nsh_c1",
    "nsh_c2",
    "nsh_c3",
    "nsh_c4",
    "eth",
    "rarp_op",
];

/// The match field called `name` (an ovs-ofctl name or alias).
pub(crate) fn match_field(name: &str) -> Option<MatchField> {
    if let Some(n) = numbered(name, "reg") {
        return Some(MatchField {
            name: Field::Reg(n).name(),
            kind: Kind::Int,
            bits: 32,
            maskable: true,
            store: Store::Plain(Field::Reg(n)),
            prereq: Prereq::None,
        });
    }
    if let Some(n) = numbered(name, "tun_metadata") {
        return Some(MatchField {
            name: Field::TunMetadata(n).name(),
            kind: Kind::Int,
            bits: 64,
            maskable: true,
            store: Store::Plain(Field::TunMetadata(n)),
            prereq: Prereq::None,
        });
    }
    MATCH_FIELDS
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, f)| *f)
}

/// A hint when `name` is a field Open vSwitch has and vswitch does not.
pub(crate) fn unsupported_field_hint(name: &str) -> Option<String> {
    match name {
        "vlan_vid" => {
            return Some(
                "unsupported field 'vlan_vid' (OpenFlow 1.2 form: use dl_vlan to match, mod_vlan_vid to set)"
                    .into(),
            )
        }
        "vlan_pcp" => {
            return Some(
                "unsupported field 'vlan_pcp' (OpenFlow 1.2 form: use dl_vlan_pcp to match, mod_vlan_pcp to set)"
                    .into(),
            )
        }
        _ => {}
    }
    if UNSUPPORTED_FIELDS.contains(&name) {
        return Some(format!(
            "unsupported field '{name}' (vswitch does not implement it)"
        ));
    }
    for (prefix, max) in [
        ("reg", 8u32),
        ("tun_metadata", 8),
        ("xreg", 0),
        ("xxreg", 0),
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            if !rest.is_empty() && rest.bytes().all(|c| c.is_ascii_digit()) {
                return Some(if max > 0 {
                    format!(
                        "unsupported field '{name}' (vswitch has {prefix}0..{prefix}{})",
                        max - 1
                    )
                } else {
                    format!("unsupported field '{name}' (vswitch does not implement it)")
                });
            }
        }
    }
    None
}

/// `reg3` -> 3 for N in 0..8.
fn numbered(name: &str, prefix: &str) -> Option<u8> {
    let rest = name.strip_prefix(prefix)?;
    if rest.len() != 1 {
        return None;
    }
    let n = rest.as_bytes().first()?.checked_sub(b'0')?;
    (n < 8).then_some(n)
}

/// The shorthand protocols: (name, dl_type, nw_proto).
const PROTOCOLS: &[(&str, u16, Option<u8>)] = &[
    ("ip", 0x0800, None),
    ("ipv4", 0x0800, None),
    ("ip4", 0x0800, None),
    ("ipv6", 0x86dd, None),
    ("ip6", 0x86dd, None),
    ("icmp", 0x0800, Some(1)),
    ("icmp4", 0x0800, Some(1)),
    ("icmp6", 0x86dd, Some(58)),
    ("tcp", 0x0800, Some(6)),
    ("tcp4", 0x0800, Some(6)),
    ("tcp6", 0x86dd, Some(6)),
    ("udp", 0x0800, Some(17)),
    ("udp4", 0x0800, Some(17)),
    ("udp6", 0x86dd, Some(17)),
    ("sctp", 0x0800, Some(132)),
    ("sctp4", 0x0800, Some(132)),
    ("sctp6", 0x86dd, Some(132)),
    ("arp", 0x0806, None),
    ("rarp", 0x8035, None),
];

/// The shorthand `name` (`tcp`, `ipv6`...): (dl_type, nw_proto).
pub(crate) fn protocol(name: &str) -> Option<(u16, Option<u8>)> {
    PROTOCOLS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, p)| (*t, *p))
}

/// Ethertypes.
pub(crate) const ETH_IP: u16 = 0x0800;
pub(crate) const ETH_IPV6: u16 = 0x86dd;
pub(crate) const ETH_ARP: u16 = 0x0806;
pub(crate) const ETH_RARP: u16 = 0x8035;

/// The exact `dl_type` and `nw_proto` a match requires, if any.
pub(crate) fn exact_type_proto(m: &Match) -> (Option<u16>, Option<u8>) {
    let (t, tm) = m.get(Field::DlType);
    let (p, pm) = m.get(Field::NwProto);
    (
        (tm == 0xffff).then_some(t as u16),
        (pm == 0xff).then_some(p as u8),
    )
}

/// True when `m` satisfies `p`. Transport fields also need the match to
/// exclude later fragments (`nw_frag=later` packets carry no L4 header),
/// as Open vSwitch's prerequisites do.
pub(crate) fn prereq_ok(p: Prereq, m: &Match) -> bool {
    let (t, proto) = exact_type_proto(m);
    let ip = matches!(t, Some(ETH_IP | ETH_IPV6));
    let arp = matches!(t, Some(ETH_ARP | ETH_RARP));
    let (frag, frag_mask) = m.get(Field::NwFrag);
    let l4 = ip && frag & frag_mask & u128::from(crate::flow::key::FlowKey::FRAG_LATER) == 0;
    match p {
        Prereq::None => true,
        Prereq::Ip => ip,
        Prereq::IpOrArp => ip || arp,
        Prereq::Ipv4 => t == Some(ETH_IP),
        Prereq::Ipv4OrArp => t == Some(ETH_IP) || arp,
        Prereq::Ipv6 => t == Some(ETH_IPV6),
        Prereq::Arp => arp,
        Prereq::L4 => l4 && matches!(proto, Some(6 | 17 | 132)),
        Prereq::Tcp => l4 && proto == Some(6),
        Prereq::Udp => l4 && proto == Some(17),
        Prereq::Sctp => l4 && proto == Some(132),
        Prereq::Icmp4 => l4 && t == Some(ETH_IP) && proto == Some(1),
        Prereq::Icmp6 => l4 && t == Some(ETH_IPV6) && proto == Some(58),
        Prereq::Icmp => {
            l4 && ((t == Some(ETH_IP) && proto == Some(1))
                || (t == Some(ETH_IPV6) && proto == Some(58)))
        }
    }
}

/// What to write to satisfy `p`, for error messages.
pub(crate) fn prereq_hint(p: Prereq) -> &'static str {
    match p {
        Prereq::None => "",
        Prereq::Ip => "needs ip or ipv6 (e.g. 'ip,')",
        Prereq::IpOrArp => "needs ip, ipv6 or arp (e.g. 'ip,')",
        Prereq::Ipv4 => "needs ip (e.g. 'ip,')",
        Prereq::Ipv4OrArp => "needs ip or arp (e.g. 'ip,')",
        Prereq::Ipv6 => "needs ipv6 (e.g. 'ipv6,')",
        Prereq::Arp => "needs arp (e.g. 'arp,')",
        Prereq::L4 => "needs tcp, udp or sctp, and not nw_frag=later (e.g. 'tcp,')",
        Prereq::Tcp => "needs tcp or tcp6, and not nw_frag=later (e.g. 'tcp,')",
        Prereq::Udp => "needs udp or udp6, and not nw_frag=later (e.g. 'udp,')",
        Prereq::Sctp => "needs sctp or sctp6, and not nw_frag=later (e.g. 'sctp,')",
        Prereq::Icmp4 => "needs icmp, and not nw_frag=later (e.g. 'icmp,')",
        Prereq::Icmp6 => "needs icmp6, and not nw_frag=later (e.g. 'icmp6,')",
        Prereq::Icmp => "needs icmp or icmp6, and not nw_frag=later (e.g. 'icmp,')",
    }
}

/// The prerequisites of a field as a `set_field`/`load`/`move` operand.
pub(crate) fn field_prereq(f: Field) -> Prereq {
    match f {
        Field::NwSrc | Field::NwDst => Prereq::Ipv4,
        Field::NwProto
        | Field::NwTos
        | Field::IpDscp
        | Field::NwEcn
        | Field::NwTtl
        | Field::NwFrag => Prereq::Ip,
        Field::TpSrc | Field::TpDst => Prereq::L4,
        Field::TcpFlags => Prereq::Tcp,
        Field::IcmpType | Field::IcmpCode => Prereq::Icmp,
        Field::ArpOp | Field::ArpSpa | Field::ArpTpa | Field::ArpSha | Field::ArpTha => Prereq::Arp,
        Field::Ipv6Src | Field::Ipv6Dst | Field::Ipv6Label => Prereq::Ipv6,
        _ => Prereq::None,
    }
}

/// The prerequisites of an action operand written as `name`: in actions
/// Open vSwitch checks the named field's own protocol (`tcp_src` needs TCP,
/// `udp_src` UDP, `tp_src` is `tcp_src`), unlike match normalization.
pub(crate) fn operand_prereq(name: &str, f: Field) -> Prereq {
    let lower = name.to_ascii_lowercase();
    match f {
        Field::TpSrc | Field::TpDst => {
            if lower.contains("udp") {
                Prereq::Udp
            } else if lower.contains("sctp") {
                Prereq::Sctp
            } else {
                Prereq::Tcp
            }
        }
        Field::IcmpType | Field::IcmpCode => {
            if lower.contains("icmpv6") {
                Prereq::Icmp6
            } else {
                Prereq::Icmp4
            }
        }
        _ => field_prereq(f),
    }
}

/// True when `set_field`/`load`/`move` may write `f` (outside `ct`).
pub(crate) fn writable(f: Field) -> bool {
    !matches!(
        f,
        Field::DlType
            | Field::NwProto
            | Field::NwFrag
            | Field::TcpFlags
            | Field::CtState
            | Field::CtZone
    )
}

/// The width Open vSwitch gives a field in subfield syntax (`[]` means
/// this many bits). A few are wider than vswitch stores them: `in_port`
/// is the 16-bit OpenFlow 1.0 port, `arp_op` 16 bits, `ct_state` 32 bits.
pub(crate) fn ovs_bits(f: Field) -> u32 {
    match f {
        Field::InPort => 16,
        Field::ArpOp => 16,
        Field::CtState => 32,
        _ => f.bits(),
    }
}

/// NXM/OXM names accepted in subfields, first one per field is printed.
const NXM_NAMES: &[(&str, Field)] = &[
    ("NXM_OF_IN_PORT", Field::InPort),
    ("NXM_OF_ETH_SRC", Field::DlSrc),
    ("OXM_OF_ETH_SRC", Field::DlSrc),
    ("NXM_OF_ETH_DST", Field::DlDst),
    ("OXM_OF_ETH_DST", Field::DlDst),
    ("NXM_OF_ETH_TYPE", Field::DlType),
    ("OXM_OF_ETH_TYPE", Field::DlType),
    ("NXM_OF_VLAN_TCI", Field::VlanTci),
    ("NXM_OF_IP_SRC", Field::NwSrc),
    ("OXM_OF_IPV4_SRC", Field::NwSrc),
    ("NXM_OF_IP_DST", Field::NwDst),
    ("OXM_OF_IPV4_DST", Field::NwDst),
    ("NXM_OF_IP_PROTO", Field::NwProto),
    ("OXM_OF_IP_PROTO", Field::NwProto),
    ("NXM_OF_IP_TOS", Field::NwTos),
    ("OXM_OF_IP_DSCP", Field::IpDscp),
    ("NXM_NX_IP_ECN", Field::NwEcn),
    ("OXM_OF_IP_ECN", Field::NwEcn),
    ("NXM_NX_IP_TTL", Field::NwTtl),
    ("NXM_NX_IP_FRAG", Field::NwFrag),
    ("NXM_OF_TCP_SRC", Field::TpSrc),
    ("OXM_OF_TCP_SRC", Field::TpSrc),
    ("NXM_OF_UDP_SRC", Field::TpSrc),
    ("OXM_OF_UDP_SRC", Field::TpSrc),
    ("OXM_OF_SCTP_SRC", Field::TpSrc),
    ("NXM_OF_TCP_DST", Field::TpDst),
    ("OXM_OF_TCP_DST", Field::TpDst),
    ("NXM_OF_UDP_DST", Field::TpDst),
    ("OXM_OF_UDP_DST", Field::TpDst),
    ("OXM_OF_SCTP_DST", Field::TpDst),
    ("NXM_NX_TCP_FLAGS", Field::TcpFlags),
    ("NXM_OF_ICMP_TYPE", Field::IcmpType),
    ("OXM_OF_ICMPV4_TYPE", Field::IcmpType),
    ("NXM_NX_ICMPV6_TYPE", Field::IcmpType),
    ("OXM_OF_ICMPV6_TYPE", Field::IcmpType),
    ("NXM_OF_ICMP_CODE", Field::IcmpCode),
    ("OXM_OF_ICMPV4_CODE", Field::IcmpCode),
    ("NXM_NX_ICMPV6_CODE", Field::IcmpCode),
    ("OXM_OF_ICMPV6_CODE", Field::IcmpCode),
    ("NXM_OF_ARP_OP", Field::ArpOp),
    ("OXM_OF_ARP_OP", Field::ArpOp),
    ("NXM_OF_ARP_SPA", Field::ArpSpa),
    ("OXM_OF_ARP_SPA", Field::ArpSpa),
    ("NXM_OF_ARP_TPA", Field::ArpTpa),
    ("OXM_OF_ARP_TPA", Field::ArpTpa),
    ("NXM_NX_ARP_SHA", Field::ArpSha),
    ("OXM_OF_ARP_SHA", Field::ArpSha),
    ("NXM_NX_ARP_THA", Field::ArpTha),
    ("OXM_OF_ARP_THA", Field::ArpTha),
    ("NXM_NX_IPV6_SRC", Field::Ipv6Src),
    ("OXM_OF_IPV6_SRC", Field::Ipv6Src),
    ("NXM_NX_IPV6_DST", Field::Ipv6Dst),
    ("OXM_OF_IPV6_DST", Field::Ipv6Dst),
    ("NXM_NX_IPV6_LABEL", Field::Ipv6Label),
    ("OXM_OF_IPV6_FLABEL", Field::Ipv6Label),
    ("NXM_NX_TUN_ID", Field::TunId),
    ("OXM_OF_TUNNEL_ID", Field::TunId),
    ("NXM_NX_TUN_IPV4_SRC", Field::TunSrc),
    ("NXM_NX_TUN_IPV4_DST", Field::TunDst),
    ("OXM_OF_METADATA", Field::Metadata),
    ("NXM_NX_CT_STATE", Field::CtState),
    ("NXM_NX_CT_ZONE", Field::CtZone),
    ("NXM_NX_CT_MARK", Field::CtMark),
];

/// The field a subfield name denotes: an NXM/OXM name (`NXM_NX_REG0`) or
/// an ovs-ofctl name (`reg0`, `eth_src`).
pub(crate) fn subfield_field(name: &str) -> Option<Field> {
    if let Some(rest) = name.strip_prefix("NXM_NX_REG") {
        return numbered(&format!("r{rest}"), "r").map(Field::Reg);
    }
    if let Some(rest) = name.strip_prefix("NXM_NX_TUN_METADATA") {
        return numbered(&format!("t{rest}"), "t").map(Field::TunMetadata);
    }
    if let Some((_, f)) = NXM_NAMES.iter().find(|(n, _)| *n == name) {
        return Some(*f);
    }
    let m = match_field(name)?;
    Some(match m.store {
        Store::Plain(f) => match m.name {
            // Shared storage: keep the name's own field for printing.
            "arp_op" => Field::ArpOp,
            "arp_spa" => Field::ArpSpa,
            "arp_tpa" => Field::ArpTpa,
            _ => f,
        },
        Store::NwTos => Field::NwTos,
        Store::IpDscp => Field::IpDscp,
        Store::DlVlan => Field::DlVlan,
        Store::DlVlanPcp => Field::DlVlanPcp,
        Store::Icmp(Field::TpSrc) => Field::IcmpType,
        Store::Icmp(_) => Field::IcmpCode,
    })
}

/// The name printed for `f` in subfield syntax. `ctx` (the flow's match)
/// picks UDP/SCTP/ICMPv6 spellings where the field is shared.
pub(crate) fn subfield_name(f: Field, ctx: Option<&Match>) -> String {
    let (t, proto) = ctx.map(exact_type_proto).unwrap_or((None, None));
    let s = match f {
        Field::Reg(n) => return format!("NXM_NX_REG{}", n & 7),
        Field::TunMetadata(n) => return format!("NXM_NX_TUN_METADATA{}", n & 7),
        Field::TpSrc => match proto {
            Some(17) => "NXM_OF_UDP_SRC",
            Some(132) => "OXM_OF_SCTP_SRC",
            _ => "NXM_OF_TCP_SRC",
        },
        Field::TpDst => match proto {
            Some(17) => "NXM_OF_UDP_DST",
            Some(132) => "OXM_OF_SCTP_DST",
            _ => "NXM_OF_TCP_DST",
        },
        Field::IcmpType if t == Some(ETH_IPV6) => "NXM_NX_ICMPV6_TYPE",
        Field::IcmpCode if t == Some(ETH_IPV6) => "NXM_NX_ICMPV6_CODE",
        Field::DlVlan => "dl_vlan",
        Field::DlVlanPcp => "dl_vlan_pcp",
        _ => match NXM_NAMES.iter().find(|(_, g)| *g == f) {
            Some((n, _)) => n,
            None => f.name(),
        },
    };
    s.to_string()
}
