//! The ovs-ofctl flow syntax, [`FlowSpec`] to text: exactly what
//! `ovs-ofctl dump-flows` prints (OpenFlow 1.0 + Nicira extensions, its
//! default), so operators' scripts that read dump output keep working.
//!
//! * [`format_match`] follows Open vSwitch's `match_format()`
//!   (lib/match.c): field order, the `tcp,`/`udp6,`... shorthands printed
//!   first after the conntrack fields, `dl_vlan` vs `vlan_tci`, CIDR vs
//!   dotted masks, `nw_src` vs `arp_spa` by `dl_type`, `icmp_type` vs
//!   `tp_src` by protocol.
//! * [`format_actions`] follows the `format_*()` functions of
//!   lib/ofp-actions.c for flows read back over OpenFlow 1.0
//!   (`set_field:5->reg0` shows as `load:0x5->NXM_NX_REG0[]`).
//! * [`format_flow_stats`] follows `ofputil_flow_stats_format()`
//!   (lib/ofp-flow.c) and [`format_flow`] is the same line without
//!   statistics, as `ovs-ofctl --no-stats dump-flows` prints it, which
//!   `add-flow` (here and in Open vSwitch) reads back.

use std::fmt::Write as _;
use std::time::Duration;

use super::action::Action;
use super::field::Field;
use super::matching::{FlowFlags, FlowSpec, Match, DEFAULT_PRIORITY};
use super::port_names::PortNames;
use super::syntax::actions::fmt_actions;
use super::syntax::fields::{ETH_ARP, ETH_IP, ETH_IPV6, ETH_RARP};
use super::syntax::hex0;
use super::syntax::mval::{ct_flag_names, TCP_FLAG_NAMES};
use super::syntax::ports::fmt_port;
use super::syntax::value::{fmt_ipv4_masked, fmt_ipv6_masked, fmt_mac};

/// Counters and ages of an installed flow, as `dump-flows` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowStats {
    /// Time since the flow was added.
    pub duration: Duration,
    /// Packets that hit the flow.
    pub n_packets: u64,
    /// Bytes that hit the flow.
    pub n_bytes: u64,
    /// Time since the flow last matched a packet (or was added).
    pub idle_age: Duration,
    /// Time since the flow was last added or modified; printed only when it
    /// differs from `duration` (after a `mod-flows`).
    pub hard_age: Option<Duration>,
}

/// The match as `dump-flows` prints it, with `priority=N,` first when N is
/// not the default 32768. Empty for a catch-all at the default priority.
pub fn format_match(m: &Match, priority: u16, names: Option<&dyn PortNames>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if priority != DEFAULT_PRIORITY {
        parts.push(format!("priority={priority}"));
    }
    match_parts(m, names, &mut parts);
    parts.join(",")
}

/// The actions as `dump-flows` prints them (`drop` when empty).
pub fn format_actions(actions: &[Action], names: Option<&dyn PortNames>) -> String {
    let mut s = String::new();
    fmt_actions(&mut s, actions, names, None);
    s
}

/// A flow as `ovs-ofctl --no-stats dump-flows` prints it (without the
/// leading space): an `add-flow` line that parses back to the same spec.
/// `cookie=V/M` and `out_port=P` are added when set (mod/del specs).
pub fn format_flow(spec: &FlowSpec, names: Option<&dyn PortNames>) -> String {
    let mut s = String::new();
    if spec.cookie != 0 || spec.cookie_mask != 0 {
        let _ = write!(s, "cookie={:#x}", spec.cookie);
        if spec.cookie_mask != 0 {
            let _ = write!(s, "/{:#x}", spec.cookie_mask);
        }
        s.push_str(", ");
    }
    if spec.table != 0 {
        let _ = write!(s, "table={}, ", spec.table);
    }
    timeouts_flags(&mut s, spec);
    if let Some(p) = spec.out_port {
        let _ = write!(s, "out_port={}, ", fmt_port(p, names));
    }
    match_and_actions(&mut s, spec, names);
    s
}

/// The exact `ovs-ofctl dump-flows` line of a flow, including its leading
/// space: ` cookie=0x0, duration=72.132s, table=0, n_packets=0, n_bytes=0,
/// idle_age=72, priority=10,in_port=1 actions=resubmit(,1)`.
pub fn format_flow_stats(
    spec: &FlowSpec,
    stats: &FlowStats,
    names: Option<&dyn PortNames>,
) -> String {
    let mut s = String::from(" ");
    let _ = write!(s, "cookie={:#x}, duration=", spec.cookie);
    fmt_duration(&mut s, stats.duration);
    let _ = write!(
        s,
        "s, table={}, n_packets={}, n_bytes={}, ",
        spec.table, stats.n_packets, stats.n_bytes
    );
    timeouts_flags(&mut s, spec);
    let _ = write!(s, "idle_age={}, ", stats.idle_age.as_secs());
    if let Some(h) = stats.hard_age {
        if h.as_secs() != stats.duration.as_secs() {
            let _ = write!(s, "hard_age={}, ", h.as_secs());
        }
    }
    match_and_actions(&mut s, spec, names);
    s
}

/// `ofp_print_duration()`: whole seconds, then 3 decimals when the rest is
/// whole milliseconds, else as many as needed.
fn fmt_duration(s: &mut String, d: Duration) {
    let _ = write!(s, "{}", d.as_secs());
    let ns = d.subsec_nanos();
    if ns > 0 {
        if ns.is_multiple_of(1_000_000) {
            let _ = write!(s, ".{:03}", ns / 1_000_000);
        } else {
            let frac = format!("{ns:09}");
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
    }
}

fn timeouts_flags(s: &mut String, spec: &FlowSpec) {
    if spec.idle_timeout != 0 {
        let _ = write!(s, "idle_timeout={}, ", spec.idle_timeout);
    }
    if spec.hard_timeout != 0 {
        let _ = write!(s, "hard_timeout={}, ", spec.hard_timeout);
    }
    let FlowFlags {
        send_flow_rem,
        check_overlap,
        reset_counts,
        no_packet_counts,
        no_byte_counts,
    } = spec.flags;
    for (on, name) in [
        (send_flow_rem, "send_flow_rem "),
        (check_overlap, "check_overlap "),
        (reset_counts, "reset_counts "),
        (no_packet_counts, "no_packet_counts "),
        (no_byte_counts, "no_byte_counts "),
    ] {
        if on {
            s.push_str(name);
        }
    }
    if spec.importance != 0 {
        let _ = write!(s, "importance={}, ", spec.importance);
    }
}

fn match_and_actions(s: &mut String, spec: &FlowSpec, names: Option<&dyn PortNames>) {
    let m = format_match(&spec.matches, spec.priority, names);
    if !m.is_empty() {
        s.push_str(&m);
        s.push(' ');
    }
    s.push_str("actions=");
    fmt_actions(s, &spec.actions, names, Some(&spec.matches));
}

/// `format_uint32_masked()` / `format_be64_masked()`: `%#x[/%#x]`.
fn hex_masked(name: &str, v: u128, m: u128, full: u128) -> String {
    if m == full {
        format!("{name}={}", hex0(v))
    } else {
        format!("{name}={}/{}", hex0(v), hex0(m))
    }
}

/// `format_be16_masked()`: decimal when exact, else `0x%x/0x%x`.
fn dec16_masked(name: &str, v: u128, m: u128) -> String {
    if m == 0xffff {
        format!("{name}={v}")
    } else {
        format!("{name}={v:#x}/{m:#x}")
    }
}

fn flags_masked(out: &mut String, table: &[(u32, &str)], v: u32, m: u32, max: u32, sep: char) {
    if m == max {
        if v == 0 {
            out.push('0');
            return;
        }
        let mut bad = 0u32;
        let mut first = true;
        for bit in (0..32).map(|i| 1u32 << i).filter(|b| v & b != 0) {
            match table.iter().find(|(b, _)| *b == bit) {
                Some((_, n)) => {
                    if !first {
                        out.push(sep);
                    }
                    out.push_str(n);
                    first = false;
                }
                None => bad |= bit,
            }
        }
        if bad != 0 {
            if !first {
                out.push(sep);
            }
            let _ = write!(out, "{bad:#x}");
        }
        return;
    }
    if m == 0 {
        out.push_str("0/0");
        return;
    }
    for bit in (0..32).map(|i| 1u32 << i).filter(|b| m & b != 0) {
        out.push(if v & bit != 0 { '+' } else { '-' });
        match table.iter().find(|(b, _)| *b == bit) {
            Some((_, n)) => out.push_str(n),
            None => out.push_str("[Unknown]"),
        }
    }
}

/// The fields of `m` in `match_format()` order.
fn match_parts(m: &Match, names: Option<&dyn PortNames>, parts: &mut Vec<String>) {
    let get = |f: Field| m.get(f);

    let (st, stm) = get(Field::CtState);
    if stm != 0 {
        let mut s = String::from("ct_state=");
        let table: Vec<(u32, &str)> = ct_flag_names().collect();
        flags_masked(&mut s, &table, st as u32, stm as u32, 0xff, '|');
        parts.push(s);
    }
    let (z, zm) = get(Field::CtZone);
    if zm != 0 {
        parts.push(dec16_masked("ct_zone", z, zm));
    }
    let (mk, mkm) = get(Field::CtMark);
    if mkm != 0 {
        parts.push(hex_masked("ct_mark", mk, mkm, 0xffff_ffff));
    }

    let (t, tm) = get(Field::DlType);
    let (p, pm) = get(Field::NwProto);
    let dl_type = t as u16;
    let mut skip_type = false;
    let mut skip_proto = false;
    if tm != 0 {
        skip_type = true;
        let short = match dl_type {
            ETH_IP | ETH_IPV6 => {
                let v6 = dl_type == ETH_IPV6;
                let named = if pm != 0 {
                    match (p, v6) {
                        (1, false) => Some("icmp"),
                        (58, true) => Some("icmp6"),
                        (6, false) => Some("tcp"),
                        (6, true) => Some("tcp6"),
                        (17, false) => Some("udp"),
                        (17, true) => Some("udp6"),
                        (132, false) => Some("sctp"),
                        (132, true) => Some("sctp6"),
                        _ => None,
                    }
                } else {
                    None
                };
                skip_proto = named.is_some();
                Some(named.unwrap_or(if v6 { "ipv6" } else { "ip" }))
            }
            ETH_ARP => Some("arp"),
            ETH_RARP => Some("rarp"),
            0x8847 => Some("mpls"),
            0x8848 => Some("mplsm"),
            _ => None,
        };
        match short {
            Some(s) => parts.push(s.to_string()),
            None => skip_type = false,
        }
    }

    for n in 0..8 {
        let (v, vm) = get(Field::Reg(n));
        if vm != 0 {
            parts.push(hex_masked(Field::Reg(n).name(), v, vm, 0xffff_ffff));
        }
    }
    let (v, vm) = get(Field::TunId);
    if vm != 0 {
        parts.push(hex_masked("tun_id", v, vm, u128::from(u64::MAX)));
    }
    for (f, name) in [(Field::TunSrc, "tun_src"), (Field::TunDst, "tun_dst")] {
        let (v, vm) = get(f);
        if vm != 0 {
            parts.push(format!("{name}={}", fmt_ipv4_masked(v as u32, vm as u32)));
        }
    }
    for n in 0..8 {
        let (v, vm) = get(Field::TunMetadata(n));
        if vm != 0 {
            parts.push(hex_masked(
                Field::TunMetadata(n).name(),
                v,
                vm,
                u128::from(u64::MAX),
            ));
        }
    }
    let (v, vm) = get(Field::Metadata);
    if vm != 0 {
        parts.push(hex_masked("metadata", v, vm, u128::from(u64::MAX)));
    }
    let (v, vm) = get(Field::InPort);
    if vm != 0 {
        parts.push(format!("in_port={}", fmt_port(v as u32, names)));
    }

    let (tci, tcim) = get(Field::VlanTci);
    if tcim != 0 {
        let vid_m = tcim & 0x0fff;
        let pcp_m = tcim & 0xe000;
        let cfi = tcim & 0x1000 != 0;
        if cfi
            && tci & 0x1000 != 0
            && (vid_m == 0 || vid_m == 0x0fff)
            && (pcp_m == 0 || pcp_m == 0xe000)
            && (vid_m != 0 || pcp_m != 0)
        {
            if vid_m != 0 {
                parts.push(format!("dl_vlan={}", tci & 0x0fff));
            }
            if pcp_m != 0 {
                parts.push(format!("dl_vlan_pcp={}", (tci >> 13) & 7));
            }
        } else if tcim == 0xffff {
            parts.push(format!("vlan_tci={tci:#06x}"));
        } else {
            parts.push(format!("vlan_tci={tci:#06x}/{tcim:#06x}"));
        }
    }

    for (f, name) in [(Field::DlSrc, "dl_src"), (Field::DlDst, "dl_dst")] {
        let (v, vm) = get(f);
        if vm != 0 {
            parts.push(eth_masked(name, v, vm));
        }
    }
    if !skip_type && tm != 0 {
        parts.push(format!("dl_type={dl_type:#06x}"));
    }

    let is_arp = dl_type == ETH_ARP || dl_type == ETH_RARP;
    if dl_type == ETH_IPV6 {
        for (f, name) in [(Field::Ipv6Src, "ipv6_src"), (Field::Ipv6Dst, "ipv6_dst")] {
            let (v, vm) = get(f);
            if vm != 0 {
                parts.push(format!("{name}={}", fmt_ipv6_masked(v, vm)));
            }
        }
        let (v, vm) = get(Field::Ipv6Label);
        if vm != 0 {
            if vm == 0xfffff {
                parts.push(format!("ipv6_label={v:#07x}"));
            } else {
                parts.push(format!("ipv6_label={v:#07x}/{vm:#07x}"));
            }
        }
    } else {
        let (sn, dn) = if is_arp {
            ("arp_spa", "arp_tpa")
        } else {
            ("nw_src", "nw_dst")
        };
        for (f, name) in [(Field::NwSrc, sn), (Field::NwDst, dn)] {
            let (v, vm) = get(f);
            if vm != 0 {
                parts.push(format!("{name}={}", fmt_ipv4_masked(v as u32, vm as u32)));
            }
        }
    }
    if !skip_proto && pm != 0 {
        parts.push(format!(
            "{}={p}",
            if is_arp { "arp_op" } else { "nw_proto" }
        ));
    }
    if is_arp {
        for (f, name) in [(Field::ArpSha, "arp_sha"), (Field::ArpTha, "arp_tha")] {
            let (v, vm) = get(f);
            if vm != 0 {
                parts.push(eth_masked(name, v, vm));
            }
        }
    }
    let (tos, tosm) = get(Field::NwTos);
    if tosm & 0xfc != 0 {
        parts.push(format!("nw_tos={}", tos & 0xfc));
    }
    if tosm & 0x03 != 0 {
        parts.push(format!("nw_ecn={}", tos & 0x03));
    }
    let (v, vm) = get(Field::NwTtl);
    if vm != 0 {
        parts.push(format!("nw_ttl={v}"));
    }
    let (fr, frm) = get(Field::NwFrag);
    if let Some(name) = frag_name(fr as u8, frm as u8) {
        parts.push(format!("nw_frag={name}"));
    }
    let icmp = (dl_type == ETH_IP && p == 1) || (dl_type == ETH_IPV6 && p == 58);
    let (sn, dn) = if icmp {
        ("icmp_type", "icmp_code")
    } else {
        ("tp_src", "tp_dst")
    };
    for (f, name) in [(Field::TpSrc, sn), (Field::TpDst, dn)] {
        let (v, vm) = get(f);
        if vm != 0 {
            parts.push(dec16_masked(name, v, vm));
        }
    }
    let (fl, flm) = get(Field::TcpFlags);
    if (dl_type == ETH_IP || dl_type == ETH_IPV6) && p == 6 && flm != 0 {
        let mut s = String::from("tcp_flags=");
        flags_masked(&mut s, &TCP_FLAG_NAMES, fl as u32, flm as u32, 0x0fff, '|');
        parts.push(s);
    }
}

fn eth_masked(name: &str, v: u128, m: u128) -> String {
    if m == 0xffff_ffff_ffff {
        format!("{name}={}", fmt_mac(v))
    } else {
        format!("{name}={}/{}", fmt_mac(v), fmt_mac(m))
    }
}

/// The `nw_frag=` word for a value and mask (`match_format()` cases).
fn frag_name(v: u8, m: u8) -> Option<&'static str> {
    let v = v & m;
    match m & 3 {
        3 => Some(match v {
            0 => "no",
            1 => "first",
            3 => "later",
            _ => "<error>",
        }),
        1 => Some(if v & 1 != 0 { "yes" } else { "no" }),
        2 => Some(if v & 2 != 0 { "later" } else { "not_later" }),
        _ => None,
    }
}
