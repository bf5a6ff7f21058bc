//! Actions: parsing `actions=...` into [`Action`]s and printing them the
//! way `ovs-ofctl` prints a flow it received over OpenFlow 1.0 + Nicira
//! extensions (its default).
//!
//! The parser canonicalizes as Open vSwitch's round trip through OpenFlow
//! 1.0 does, so that `format(parse(x))` is what `ovs-ofctl dump-flows`
//! shows and `parse(format(a)) == a`:
//!
//! * `set_field` on a field with an OpenFlow 1.0 action becomes that action
//!   (`set_field:MAC->eth_src` is `mod_dl_src:MAC`, `vlan_tci` becomes
//!   `mod_vlan_vid`+`mod_vlan_pcp` or `strip_vlan`).
//! * Other `set_field`s and all `load`s become one [`Action::SetField`] per
//!   contiguous run of at most 64 mask bits, each printed as
//!   `load:V->NXM_..[a..b]` (`tun_metadataN` stays `set_field:`).
//! * `mod_nw_ttl` and `mod_nw_ecn` become `load`s of `NXM_NX_IP_TTL` /
//!   `NXM_NX_IP_ECN`; `pop_vlan` prints as `strip_vlan`; `resubmit(in_port,T)`
//!   is `resubmit(,T)`.
//!
//! Checks that Open vSwitch makes against the flow's match are made here
//! too: `set_field`/`load`/`move` operands need their prerequisites, `ct`
//! needs an IP match, `goto_table` must go forward and come last.

use super::fields::{
    self, exact_type_proto, operand_prereq, ovs_bits, prereq_hint, prereq_ok, subfield_field,
    subfield_name, writable, Kind, Store,
};
use super::lex::{Lexer, Tok};
use super::mval::parse_field_value;
use super::ports::{fmt_port, parse_port, PortErr};
use super::value::{fmt_mac, parse_mac, parse_u128, IntErr};
use super::{hex0, PErr};
use crate::flow::action::{
    ofp_port, padded_note_len, Action, ControllerAction, CtAction, CtZone, PacketInReason,
};
use crate::flow::field::{Field, FieldSlice};
use crate::flow::matching::Match;
use crate::flow::port_names::PortNames;
use crate::packet::CtState;
use std::net::Ipv4Addr;

/// Open vSwitch actions vswitch does not implement (named in the error).
const UNSUPPORTED: &[&str] = &[
    "group",
    "enqueue",
    "output_reg",
    "bundle",
    "bundle_load",
    "push",
    "pop",
    "set_mpls_label",
    "set_mpls_tc",
    "set_mpls_ttl",
    "dec_mpls_ttl",
    "push_mpls",
    "pop_mpls",
    "dec_nsh_ttl",
    "delete_field",
    "encap",
    "decap",
    "set_queue",
    "pop_queue",
    "fin_timeout",
    "learn",
    "conjunction",
    "multipath",
    "note",
    "exit",
    "sample",
    "unroll_xlate",
    "nat",
    "output_trunc",
    "clone",
    "debug_recirc",
    "debug_slow",
    "meter",
    "clear_actions",
    "write_actions",
    "write_metadata",
    "check_pkt_larger",
];

/// What the action parser needs to know about where it is.
pub(crate) struct ActCtx<'a> {
    /// The whole line, for token text in errors.
    pub line: &'a str,
    /// Port names.
    pub names: &'a dyn PortNames,
    /// The flow's match, for prerequisite checks (None: no checks).
    pub matches: Option<&'a Match>,
    /// The flow's table, for `goto_table` (None: no check).
    pub table: Option<u8>,
}

/// Parses an action list starting at byte `off` of the line.
pub(crate) fn parse_actions(s: &str, off: usize, cx: &ActCtx<'_>) -> Result<Vec<Action>, PErr> {
    parse_list(s, off, cx, false)
}

fn parse_list(s: &str, off: usize, cx: &ActCtx<'_>, in_ct: bool) -> Result<Vec<Action>, PErr> {
    let mut out = Vec::new();
    let mut drop_tok: Option<Tok<'_>> = None;
    let mut goto: Option<Tok<'_>> = None;
    let mut lx = Lexer::new(s, off);
    while let Some(t) = lx.next_tok() {
        let t = t?;
        if let Some(g) = goto {
            return Err(PErr::new(
                t.key_off,
                t.text(cx.line),
                format!(
                    "'{}' after '{}': goto_table must be the last action",
                    t.text(cx.line),
                    g.text(cx.line)
                ),
            ));
        }
        let key = t.key.to_ascii_lowercase();
        if key == "drop" {
            no_value(&t, cx)?;
            drop_tok = Some(t);
            continue;
        }
        if key == "goto_table" {
            goto = Some(t);
        }
        parse_one(&key, &t, cx, in_ct, &mut out)?;
    }
    if let Some(d) = drop_tok {
        if !out.is_empty() {
            return Err(PErr::new(
                d.key_off,
                d.text(cx.line),
                "'drop' must not be combined with other actions",
            ));
        }
    }
    Ok(out)
}

fn err(t: &Tok<'_>, cx: &ActCtx<'_>, msg: impl Into<String>) -> PErr {
    PErr::new(t.key_off, t.text(cx.line), msg)
}

fn verr(t: &Tok<'_>, msg: impl Into<String>) -> PErr {
    PErr::new(t.value_off, t.value, msg)
}

fn no_value(t: &Tok<'_>, cx: &ActCtx<'_>) -> Result<(), PErr> {
    if t.delim.is_some() {
        return Err(err(
            t,
            cx,
            format!("'{}' takes no argument ('{}')", t.key, t.text(cx.line)),
        ));
    }
    Ok(())
}

fn need_value<'a>(t: &Tok<'a>, cx: &ActCtx<'_>) -> Result<&'a str, PErr> {
    if t.value.is_empty() {
        return Err(err(t, cx, format!("'{}' needs an argument", t.key)));
    }
    Ok(t.value)
}

/// Parses an unsigned integer no larger than `max` (`str_to_u16` & co).
fn uint(t: &Tok<'_>, s: &str, what: &str, max: u128) -> Result<u128, PErr> {
    match parse_u128(s) {
        Ok(v) if v <= max => Ok(v),
        Ok(_) | Err(IntErr::TooBig) => Err(verr(t, format!("{what} '{s}' too big (max {max})"))),
        Err(IntErr::Syntax) => Err(verr(t, format!("bad {what} '{s}'"))),
    }
}

fn port(t: &Tok<'_>, s: &str, cx: &ActCtx<'_>) -> Result<u32, PErr> {
    parse_port(s, cx.names).map_err(|e| match e {
        PortErr::OutOfRange => verr(t, format!("port '{s}' out of range")),
        PortErr::Unknown => verr(t, format!("unknown port '{s}'")),
    })
}

fn check_output_port(t: &Tok<'_>, p: u32, cx: &ActCtx<'_>) -> Result<(), PErr> {
    match p {
        ofp_port::TABLE => Err(err(t, cx, "output to TABLE is only valid in packet-out")),
        p if p < ofp_port::MAX
            || matches!(
                p,
                ofp_port::IN_PORT
                    | ofp_port::NORMAL
                    | ofp_port::FLOOD
                    | ofp_port::ALL
                    | ofp_port::LOCAL
            ) =>
        {
            Ok(())
        }
        p => Err(err(
            t,
            cx,
            format!("cannot output to port {p} ('{}')", t.text(cx.line)),
        )),
    }
}

fn check_field_prereq(
    t: &Tok<'_>,
    name: &str,
    f: Field,
    cx: &ActCtx<'_>,
    role: &str,
) -> Result<(), PErr> {
    if let Some(m) = cx.matches {
        let p = operand_prereq(name, f);
        if !prereq_ok(p, m) {
            return Err(err(
                t,
                cx,
                format!(
                    "prerequisites not met for {role} {name} in '{}': the match {}",
                    t.text(cx.line),
                    prereq_hint(p)
                ),
            ));
        }
    }
    Ok(())
}

fn check_writable(t: &Tok<'_>, f: Field, cx: &ActCtx<'_>, in_ct: bool) -> Result<(), PErr> {
    if in_ct {
        if f != Field::CtMark {
            return Err(err(
                t,
                cx,
                format!(
                    "ct exec() can only set ct_mark, not {} ('{}')",
                    f.name(),
                    t.text(cx.line)
                ),
            ));
        }
        return Ok(());
    }
    if f == Field::CtMark {
        return Err(err(
            t,
            cx,
            format!(
                "ct_mark can only be set inside ct(exec(...)) ('{}')",
                t.text(cx.line)
            ),
        ));
    }
    if !writable(f) {
        return Err(err(
            t,
            cx,
            format!("field {} is read-only ('{}')", f.name(), t.text(cx.line)),
        ));
    }
    Ok(())
}

fn parse_one(
    key: &str,
    t: &Tok<'_>,
    cx: &ActCtx<'_>,
    in_ct: bool,
    out: &mut Vec<Action>,
) -> Result<(), PErr> {
    if in_ct && !matches!(key, "set_field" | "load") {
        return Err(err(
            t,
            cx,
            format!(
                "ct exec() only allows set_field/load of ct_mark, not '{}'",
                t.text(cx.line)
            ),
        ));
    }
    match key {
        "output" => {
            let v = need_value(t, cx)?;
            if v.contains('[') || v.contains("max_len") {
                return Err(err(
                    t,
                    cx,
                    format!(
                        "unsupported action: '{}' (output to a field or with max_len)",
                        t.text(cx.line)
                    ),
                ));
            }
            let p = port(t, v, cx)?;
            out.push(output(t, p, cx)?);
        }
        "controller" => out.push(parse_controller(t, cx)?),
        "note" => out.push(parse_note(t)?),
        "resubmit" => out.push(parse_resubmit(t, cx)?),
        "goto_table" => {
            let v = need_value(t, cx)?;
            let table = uint(t, v, "table", 254)? as u8;
            if let Some(cur) = cx.table {
                if table <= cur {
                    return Err(verr(
                        t,
                        format!("goto_table:{table} must go to a later table than this flow's table {cur}"),
                    ));
                }
            }
            out.push(Action::GotoTable(table));
        }
        "mod_dl_src" | "mod_dl_dst" => {
            let v = need_value(t, cx)?;
            let mac =
                parse_mac(v).ok_or_else(|| verr(t, format!("bad MAC address '{v}' for {key}")))?;
            out.push(if key == "mod_dl_src" {
                Action::ModDlSrc(mac)
            } else {
                Action::ModDlDst(mac)
            });
        }
        "mod_nw_src" | "mod_nw_dst" => {
            let v = need_value(t, cx)?;
            let ip = v
                .parse::<Ipv4Addr>()
                .map_err(|_| verr(t, format!("bad IPv4 address '{v}' for {key}")))?;
            out.push(if key == "mod_nw_src" {
                Action::ModNwSrc(ip.into())
            } else {
                Action::ModNwDst(ip.into())
            });
        }
        "mod_nw_tos" => {
            let v = need_value(t, cx)?;
            let tos = uint(t, v, "TOS", 255)? as u8;
            if tos & 3 != 0 {
                return Err(verr(
                    t,
                    format!("TOS '{v}' has ECN bits set (must be a multiple of 4)"),
                ));
            }
            out.push(Action::ModNwTos(tos));
        }
        "mod_nw_ecn" => {
            let v = need_value(t, cx)?;
            let ecn = uint(t, v, "ECN", 3)?;
            out.push(set_field(Field::NwEcn, ecn, 3));
        }
        "mod_nw_ttl" | "set_nw_ttl" => {
            let v = need_value(t, cx)?;
            let ttl = uint(t, v, "TTL", 255)?;
            out.push(set_field(Field::NwTtl, ttl, 0xff));
        }
        "mod_tp_src" | "mod_tp_dst" => {
            let v = need_value(t, cx)?;
            let p = uint(t, v, "port", 0xffff)? as u16;
            out.push(if key == "mod_tp_src" {
                Action::ModTpSrc(p)
            } else {
                Action::ModTpDst(p)
            });
        }
        "push_vlan" => {
            let v = need_value(t, cx)?;
            let e = uint(t, v, "ethertype", 0xffff)? as u16;
            if e != 0x8100 && e != 0x88a8 {
                return Err(verr(
                    t,
                    format!("'{v}' is not a VLAN ethertype (0x8100 or 0x88a8)"),
                ));
            }
            out.push(Action::PushVlan(e));
        }
        "pop_vlan" | "strip_vlan" => {
            no_value(t, cx)?;
            out.push(Action::PopVlan);
        }
        "mod_vlan_vid" | "set_vlan_vid" => {
            let v = need_value(t, cx)?;
            out.push(Action::ModVlanVid(uint(t, v, "VLAN VID", 0xfff)? as u16));
        }
        "mod_vlan_pcp" | "set_vlan_pcp" => {
            let v = need_value(t, cx)?;
            out.push(Action::ModVlanPcp(uint(t, v, "VLAN PCP", 7)? as u8));
        }
        "set_field" => parse_set_field(t, cx, in_ct, out)?,
        "load" => parse_load(t, cx, in_ct, out)?,
        "move" => {
            let v = need_value(t, cx)?;
            let (src_s, dst_s) = v
                .split_once("->")
                .ok_or_else(|| verr(t, format!("missing '->' in '{v}'")))?;
            let src = parse_subfield(t, src_s)?;
            let dst = parse_subfield(t, dst_s)?;
            let (src_name, dst_name) = (subfield_base(src_s), subfield_base(dst_s));
            if src.n_bits != dst.n_bits {
                return Err(verr(
                    t,
                    format!(
                        "'{v}': source is {} bits wide but destination is {} bits wide",
                        src.n_bits, dst.n_bits
                    ),
                ));
            }
            check_field_prereq(t, src_name, src.field, cx, "move source")?;
            check_writable(t, dst.field, cx, false)?;
            check_field_prereq(t, dst_name, dst.field, cx, "move destination")?;
            out.push(Action::Move { src, dst });
        }
        "dec_ttl" => {
            if t.delim.is_some() {
                return Err(err(
                    t,
                    cx,
                    format!(
                        "unsupported action: '{}' (dec_ttl with controller ids)",
                        t.text(cx.line)
                    ),
                ));
            }
            out.push(Action::DecTtl);
        }
        "set_tunnel" | "set_tunnel64" => {
            let v = need_value(t, cx)?;
            out.push(Action::SetTunnel(
                uint(t, v, "tunnel id", u128::from(u64::MAX))? as u64,
            ));
        }
        "ct" => out.push(parse_ct(t, cx)?),
        "ct_clear" => {
            no_value(t, cx)?;
            out.push(Action::CtClear);
        }
        "apply_actions" => return Err(err(t, cx, "apply_actions is the default instruction")),
        k if UNSUPPORTED.contains(&k) => {
            return Err(err(
                t,
                cx,
                format!(
                    "unsupported action '{}' (vswitch does not implement it)",
                    t.key
                ),
            ))
        }
        _ => {
            // A bare port: number, reserved name or port name.
            if t.delim.is_some() {
                return Err(err(t, cx, format!("unknown action '{}'", t.key)));
            }
            match parse_port(t.key, cx.names) {
                Ok(p) => out.push(output(t, p, cx)?),
                Err(PortErr::OutOfRange) => {
                    return Err(err(t, cx, format!("port '{}' out of range", t.key)))
                }
                Err(PortErr::Unknown) => {
                    return Err(err(
                        t,
                        cx,
                        format!(
                            "unknown action '{}' (not an action, port number or port name)",
                            t.key
                        ),
                    ))
                }
            }
        }
    }
    Ok(())
}

fn parse_resubmit(t: &Tok<'_>, cx: &ActCtx<'_>) -> Result<Action, PErr> {
    let v = t.value;
    let (port_s, table_s) = if t.delim == Some('(') {
        let mut parts = v.split(',');
        let p = parts.next().unwrap_or("");
        let tb = parts.next().unwrap_or("");
        if let Some(extra) = parts.next() {
            return Err(verr(
                t,
                if extra == "ct" {
                    format!("unsupported resubmit option 'ct' in '{v}'")
                } else {
                    format!("unknown resubmit parameter '{extra}'")
                },
            ));
        }
        (p, tb)
    } else {
        (v, "")
    };
    let in_port = if port_s.is_empty() {
        None
    } else {
        match port(t, port_s, cx)? {
            ofp_port::IN_PORT => None,
            p => Some(p),
        }
    };
    let table = if table_s.is_empty() {
        None
    } else {
        match uint(t, table_s, "table", 255)? as u8 {
            255 => None,
            tb => Some(tb),
        }
    };
    if in_port.is_none() && table.is_none() {
        return Err(err(
            t,
            cx,
            format!("'{}': resubmit needs a port or a table", t.text(cx.line)),
        ));
    }
    Ok(Action::Resubmit { in_port, table })
}

fn set_field(field: Field, value: u128, mask: u128) -> Action {
    Action::SetField { field, value, mask }
}

/// Splits a masked write into the `load` segments Open vSwitch prints:
/// contiguous runs of mask bits, at most 64 bits each.
fn segments(field: Field, value: u128, mask: u128) -> Vec<Action> {
    let width = ovs_bits(field).min(128);
    let mut out = Vec::new();
    let mut pos = 0u32;
    while pos < width {
        if (mask >> pos) & 1 == 0 {
            pos += 1;
            continue;
        }
        let start = pos;
        while pos < width && pos - start < 64 && (mask >> pos) & 1 == 1 {
            pos += 1;
        }
        let n = pos - start;
        let m = (if n >= 128 {
            u128::MAX
        } else {
            (1u128 << n) - 1
        }) << start;
        out.push(set_field(field, value & m, m));
    }
    out
}

fn parse_set_field(
    t: &Tok<'_>,
    cx: &ActCtx<'_>,
    in_ct: bool,
    out: &mut Vec<Action>,
) -> Result<(), PErr> {
    let v = need_value(t, cx)?;
    let (val_s, name) = v
        .rsplit_once("->")
        .ok_or_else(|| verr(t, format!("missing '->' in '{v}'")))?;
    let mf = fields::match_field(name).ok_or_else(|| {
        verr(
            t,
            fields::unsupported_field_hint(name)
                .unwrap_or_else(|| format!("unknown field '{name}' in set_field")),
        )
    })?;
    let field = subfield_field(name).unwrap_or(Field::InPort);
    check_writable(t, field, cx, in_ct)?;
    if mf.kind == Kind::Port && val_s.contains('/') {
        return Err(verr(t, format!("{name} cannot be masked in set_field")));
    }
    let (value, mask) =
        parse_field_value(&mf, val_s, cx.names).map_err(|e| verr(t, e.to_string()))?;
    if mask == 0 {
        return Err(verr(
            t,
            format!("set_field with an all-zero mask does nothing ('{v}')"),
        ));
    }
    check_field_prereq(t, name, field, cx, "set_field")?;
    let full = mask == field_full(mf.bits);
    match (mf.store, full) {
        (Store::Plain(Field::DlSrc), true) => out.push(Action::ModDlSrc(mac6(value))),
        (Store::Plain(Field::DlDst), true) => out.push(Action::ModDlDst(mac6(value))),
        (Store::Plain(Field::NwSrc), true) if mf.name == "nw_src" => {
            out.push(Action::ModNwSrc(value as u32))
        }
        (Store::Plain(Field::NwDst), true) if mf.name == "nw_dst" => {
            out.push(Action::ModNwDst(value as u32))
        }
        (Store::Plain(Field::TpSrc), true) => out.push(Action::ModTpSrc(value as u16)),
        (Store::Plain(Field::TpDst), true) => out.push(Action::ModTpDst(value as u16)),
        (Store::Plain(Field::VlanTci), true) => {
            if value & 0x1000 != 0 {
                out.push(Action::ModVlanVid((value & 0xfff) as u16));
                out.push(Action::ModVlanPcp(((value >> 13) & 7) as u8));
            } else {
                out.push(Action::PopVlan);
            }
        }
        (Store::NwTos, _) => {
            if value & 3 != 0 {
                return Err(verr(
                    t,
                    format!("'{val_s}' is not a valid nw_tos (ECN bits set)"),
                ));
            }
            out.push(Action::ModNwTos(value as u8));
        }
        (Store::IpDscp, _) => out.push(Action::ModNwTos((value << 2) as u8)),
        (Store::DlVlan, _) => {
            if value > 0xfff {
                return Err(verr(t, format!("'{val_s}' is not a valid VLAN VID")));
            }
            out.push(Action::ModVlanVid(value as u16));
        }
        (Store::DlVlanPcp, _) => out.push(Action::ModVlanPcp(value as u8)),
        (Store::Plain(Field::TunMetadata(n)), _) => {
            out.push(set_field(Field::TunMetadata(n), value, mask))
        }
        (Store::Plain(Field::InPort), _) => out.push(set_field(Field::InPort, value, 0xffff)),
        _ => out.extend(segments(field, value, mask)),
    }
    Ok(())
}

fn field_full(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

fn mac6(v: u128) -> [u8; 6] {
    crate::flow::key::mac_from_u64(v as u64)
}

fn parse_load(
    t: &Tok<'_>,
    cx: &ActCtx<'_>,
    in_ct: bool,
    out: &mut Vec<Action>,
) -> Result<(), PErr> {
    let v = need_value(t, cx)?;
    let (val_s, dst_s) = v
        .split_once("->")
        .ok_or_else(|| verr(t, format!("missing '->' in '{v}'")))?;
    let dst = parse_subfield(t, dst_s)?;
    let value = match parse_u128(val_s) {
        Ok(x) => x,
        Err(IntErr::TooBig) => {
            return Err(verr(
                t,
                format!("value '{val_s}' does not fit into {} bits", dst.n_bits),
            ))
        }
        Err(IntErr::Syntax) => return Err(verr(t, format!("bad value '{val_s}' in load"))),
    };
    if dst.n_bits < 128 && value >> dst.n_bits != 0 {
        return Err(verr(
            t,
            format!(
                "value '{val_s}' does not fit into {} bits of {dst_s}",
                dst.n_bits
            ),
        ));
    }
    check_writable(t, dst.field, cx, in_ct)?;
    check_field_prereq(t, subfield_base(dst_s), dst.field, cx, "load")?;
    let mask = dst.mask();
    let value = value << dst.ofs;
    if let Field::TunMetadata(_) = dst.field {
        out.push(set_field(dst.field, value, mask));
    } else {
        out.extend(segments(dst.field, value, mask));
    }
    Ok(())
}

/// The field name of a subfield (`NXM_NX_REG0` of `NXM_NX_REG0[0..3]`).
fn subfield_base(s: &str) -> &str {
    s.split('[').next().unwrap_or(s)
}

/// Parses `NAME[]`, `NAME[a..b]`, `NAME[a]` or `NAME`.
pub(crate) fn parse_subfield(t: &Tok<'_>, s: &str) -> Result<FieldSlice, PErr> {
    let (name, bits) = match s.find('[').and_then(|i| s.split_at_checked(i)) {
        Some((n, b)) => (n, Some(b)),
        None => (s, None),
    };
    let field = subfield_field(name).ok_or_else(|| {
        verr(
            t,
            fields::unsupported_field_hint(name)
                .unwrap_or_else(|| format!("unknown field '{name}' in '{s}'")),
        )
    })?;
    let width = ovs_bits(field);
    let (start, end) = match bits {
        None | Some("[]") => (0, width - 1),
        Some(b) => {
            let inner = b
                .strip_prefix('[')
                .and_then(|b| b.strip_suffix(']'))
                .ok_or_else(|| verr(t, format!("'{s}': expected [], [bit] or [start..end]")))?;
            let num = |x: &str| -> Result<u32, PErr> {
                x.parse::<u32>()
                    .map_err(|_| verr(t, format!("'{s}': expected [], [bit] or [start..end]")))
            };
            match inner.split_once("..") {
                Some((a, b)) => (num(a)?, num(b)?),
                None => {
                    let a = num(inner)?;
                    (a, a)
                }
            }
        }
    };
    if start > end {
        return Err(verr(
            t,
            format!("'{s}': starting bit {start} is after ending bit {end}"),
        ));
    }
    if end >= width {
        return Err(verr(
            t,
            format!(
                "'{s}': ending bit {end} is not valid because {name} is only {width} bits wide"
            ),
        ));
    }
    Ok(FieldSlice {
        field,
        ofs: start,
        n_bits: end - start + 1,
    })
}

/// Output to `p`: to CONTROLLER it is a `controller` action with the
/// defaults, as in Open vSwitch.
fn output(t: &Tok<'_>, p: u32, cx: &ActCtx<'_>) -> Result<Action, PErr> {
    if p == ofp_port::CONTROLLER {
        return Ok(Action::Controller(Box::default()));
    }
    check_output_port(t, p, cx)?;
    Ok(Action::Output(p))
}

/// `controller`, `controller:MAX_LEN`, `controller(reason=R,max_len=N,
/// id=N,userdata=XX.XX)`.
fn parse_controller(t: &Tok<'_>, cx: &ActCtx<'_>) -> Result<Action, PErr> {
    let mut c = ControllerAction::default();
    match t.delim {
        None => {}
        Some('(') => {
            let mut lx = Lexer::new(t.value, t.value_off);
            while let Some(a) = lx.next_tok() {
                let a = a?;
                match a.key {
                    "max_len" => c.max_len = uint(&a, a.value, "max_len", 0xffff)? as u16,
                    "reason" => {
                        c.reason = PacketInReason::parse(a.value)
                            .ok_or_else(|| verr(&a, format!("unknown reason \"{}\"", a.value)))?
                    }
                    "id" => c.controller_id = uint(&a, a.value, "controller id", 0xffff)? as u16,
                    "userdata" => c.userdata = parse_hex_bytes(&a, a.value, "userdata")?,
                    "pause" | "meter_id" => {
                        return Err(err(
                            &a,
                            cx,
                            format!(
                            "unsupported controller option '{}' (vswitch does not implement it)",
                            a.key
                        ),
                        ))
                    }
                    _ => return Err(verr(&a, format!("unknown controller option '{}'", a.key))),
                }
            }
        }
        Some(_) => c.max_len = uint(t, t.value, "max_len", 0xffff)? as u16,
    }
    Ok(Action::Controller(Box::new(c)))
}

/// Hex bytes, optionally separated by dots (`01.02.03` or `010203`).
fn parse_hex_bytes(t: &Tok<'_>, v: &str, what: &str) -> Result<Vec<u8>, PErr> {
    let digits: Vec<u8> = v.bytes().filter(|b| *b != b'.').collect();
    if !digits.len().is_multiple_of(2) {
        return Err(verr(t, format!("odd number of hex digits in {what} '{v}'")));
    }
    digits
        .chunks(2)
        .map(|p| {
            core::str::from_utf8(p)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| verr(t, format!("bad hex digit in {what} '{v}'")))
        })
        .collect()
}

/// `note:XX.XX...`: kept padded as on the wire.
fn parse_note(t: &Tok<'_>) -> Result<Action, PErr> {
    let mut b = parse_hex_bytes(t, t.value, "note")?;
    b.resize(padded_note_len(b.len()), 0);
    Ok(Action::Note(b))
}

fn parse_ct(t: &Tok<'_>, cx: &ActCtx<'_>) -> Result<Action, PErr> {
    if t.delim != Some('(') && t.delim.is_some() {
        return Err(err(
            t,
            cx,
            format!("expected ct(...) in '{}'", t.text(cx.line)),
        ));
    }
    let mut ct = CtAction {
        commit: false,
        force: false,
        zone: CtZone::Imm(0),
        table: None,
        exec: Vec::new(),
    };
    let mut lx = Lexer::new(t.value, t.value_off);
    while let Some(a) = lx.next_tok() {
        let a = a?;
        match a.key {
            "commit" => ct.commit = true,
            "force" => ct.force = true,
            "table" => {
                let tb = uint(&a, a.value, "table", 255)?;
                if tb == 255 {
                    return Err(verr(&a, "ct table 255 is not a valid table"));
                }
                ct.table = Some(tb as u8);
            }
            "zone" => {
                ct.zone = match parse_u128(a.value) {
                    Ok(z) if z <= 0xffff => CtZone::Imm(z as u16),
                    Ok(_) => {
                        return Err(verr(&a, format!("zone '{}' too big (max 65535)", a.value)))
                    }
                    Err(_) => {
                        let sf = parse_subfield(&a, a.value)?;
                        if sf.n_bits != 16 {
                            return Err(verr(
                                &a,
                                format!(
                                    "zone field '{}' must be 16 bits wide, not {}",
                                    a.value, sf.n_bits
                                ),
                            ));
                        }
                        check_field_prereq(&a, subfield_base(a.value), sf.field, cx, "ct zone")?;
                        CtZone::Field(sf)
                    }
                };
            }
            "exec" => {
                ct.exec = parse_list(a.value, a.value_off, cx, true)?;
            }
            "nat" | "alg" => {
                return Err(err(
                    &a,
                    cx,
                    format!(
                        "unsupported ct option '{}' (vswitch does not implement it)",
                        a.key
                    ),
                ))
            }
            _ => {
                return Err(err(
                    &a,
                    cx,
                    format!("invalid argument to ct: '{}'", a.text(cx.line)),
                ))
            }
        }
    }
    if ct.force && !ct.commit {
        return Err(err(t, cx, "ct: 'force' requires 'commit'"));
    }
    if let Some(m) = cx.matches {
        let (ty, _) = exact_type_proto(m);
        if !matches!(ty, Some(fields::ETH_IP | fields::ETH_IPV6)) {
            return Err(err(
                t,
                cx,
                format!(
                    "'{}' needs an ip or ipv6 match (e.g. 'ip,')",
                    t.text(cx.line)
                ),
            ));
        }
        let (st, stm) = m.get(Field::CtState);
        let inv = u128::from(CtState::INV);
        if ct.commit && st & stm & inv != 0 {
            return Err(err(
                t,
                cx,
                "ct(commit) cannot be used on ct_state=+inv packets",
            ));
        }
    }
    Ok(Action::Ct(Box::new(ct)))
}

// ---------------------------------------------------------------------------
// Formatting.

/// Appends the canonical text of `actions` (`drop` when empty). `ctx` is the
/// flow's match, used to spell shared fields (UDP vs TCP ports).
pub(crate) fn fmt_actions(
    out: &mut String,
    actions: &[Action],
    names: Option<&dyn PortNames>,
    ctx: Option<&Match>,
) {
    if actions.is_empty() {
        out.push_str("drop");
        return;
    }
    for (i, a) in actions.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        fmt_action(out, a, names, ctx);
    }
}

fn fmt_subfield(sf: &FieldSlice, ctx: Option<&Match>) -> String {
    let name = subfield_name(sf.field, ctx);
    if sf.ofs == 0 && sf.n_bits >= ovs_bits(sf.field) {
        format!("{name}[]")
    } else if sf.n_bits <= 1 {
        format!("{name}[{}]", sf.ofs)
    } else {
        format!("{name}[{}..{}]", sf.ofs, sf.ofs + sf.n_bits - 1)
    }
}

fn fmt_action(out: &mut String, a: &Action, names: Option<&dyn PortNames>, ctx: Option<&Match>) {
    use std::fmt::Write as _;
    match a {
        Action::Output(p) => {
            if *p < ofp_port::MAX {
                out.push_str("output:");
            }
            out.push_str(&fmt_port(*p, names));
            if *p == ofp_port::CONTROLLER {
                out.push_str(":65535");
            }
        }
        Action::Resubmit { in_port, table } => match (in_port, table) {
            (Some(p), None) if *p != ofp_port::IN_PORT => {
                let _ = write!(out, "resubmit:{}", fmt_port(*p, names));
            }
            _ => {
                out.push_str("resubmit(");
                if let Some(p) = in_port.filter(|p| *p != ofp_port::IN_PORT) {
                    out.push_str(&fmt_port(p, names));
                }
                out.push(',');
                if let Some(tb) = table {
                    let _ = write!(out, "{tb}");
                }
                out.push(')');
            }
        },
        Action::GotoTable(tb) => {
            let _ = write!(out, "goto_table:{tb}");
        }
        Action::ModDlSrc(m) => {
            let _ = write!(out, "mod_dl_src:{}", fmt_mac(mac_u(*m)));
        }
        Action::ModDlDst(m) => {
            let _ = write!(out, "mod_dl_dst:{}", fmt_mac(mac_u(*m)));
        }
        Action::ModNwSrc(ip) => {
            let _ = write!(out, "mod_nw_src:{}", Ipv4Addr::from(*ip));
        }
        Action::ModNwDst(ip) => {
            let _ = write!(out, "mod_nw_dst:{}", Ipv4Addr::from(*ip));
        }
        Action::ModNwTos(tos) => {
            let _ = write!(out, "mod_nw_tos:{tos}");
        }
        Action::ModNwTtl(ttl) => {
            let _ = write!(out, "load:{}->NXM_NX_IP_TTL[]", hex0(u128::from(*ttl)));
        }
        Action::ModTpSrc(p) => {
            let _ = write!(out, "mod_tp_src:{p}");
        }
        Action::ModTpDst(p) => {
            let _ = write!(out, "mod_tp_dst:{p}");
        }
        Action::PushVlan(e) => {
            let _ = write!(out, "push_vlan:{e:#x}");
        }
        Action::PopVlan => out.push_str("strip_vlan"),
        Action::ModVlanVid(v) => {
            let _ = write!(out, "mod_vlan_vid:{v}");
        }
        Action::ModVlanPcp(p) => {
            let _ = write!(out, "mod_vlan_pcp:{p}");
        }
        Action::SetField { field, value, mask } => fmt_set_field(out, *field, *value, *mask, ctx),
        Action::Move { src, dst } => {
            let _ = write!(
                out,
                "move:{}->{}",
                fmt_subfield(src, ctx),
                fmt_subfield(dst, ctx)
            );
        }
        Action::DecTtl => out.push_str("dec_ttl"),
        Action::SetTunnel(id) => {
            let wide = if *id > u64::from(u32::MAX) { "64" } else { "" };
            let _ = write!(out, "set_tunnel{wide}:{}", hex0(u128::from(*id)));
        }
        Action::Ct(ct) => {
            out.push_str("ct(");
            let mut parts: Vec<String> = Vec::new();
            if ct.commit {
                parts.push("commit".into());
            }
            if ct.force {
                parts.push("force".into());
            }
            if let Some(tb) = ct.table {
                parts.push(format!("table={tb}"));
            }
            match ct.zone {
                CtZone::Imm(0) => {}
                CtZone::Imm(z) => parts.push(format!("zone={z}")),
                CtZone::Field(sf) => parts.push(format!("zone={}", fmt_subfield(&sf, ctx))),
            }
            if !ct.exec.is_empty() {
                let mut e = String::from("exec(");
                fmt_actions(&mut e, &ct.exec, names, ctx);
                e.push(')');
                parts.push(e);
            }
            out.push_str(&parts.join(","));
            out.push(')');
        }
        Action::CtClear => out.push_str("ct_clear"),
        Action::Controller(c) => fmt_controller(out, c),
        Action::Note(b) => {
            out.push_str("note:");
            out.push_str(&fmt_hex_bytes(b));
        }
    }
}

fn fmt_hex_bytes(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(".")
}

/// As Open vSwitch prints it: `CONTROLLER:N` when only `max_len` is set,
/// else `controller(...)` with the options that differ from the default.
fn fmt_controller(out: &mut String, c: &ControllerAction) {
    use std::fmt::Write as _;
    if c.reason == PacketInReason::Action && c.controller_id == 0 && c.userdata.is_empty() {
        let _ = write!(out, "CONTROLLER:{}", c.max_len);
        return;
    }
    let mut parts = Vec::new();
    if c.reason != PacketInReason::Action {
        parts.push(format!("reason={}", c.reason.name()));
    }
    if c.max_len != u16::MAX {
        parts.push(format!("max_len={}", c.max_len));
    }
    if c.controller_id != 0 {
        parts.push(format!("id={}", c.controller_id));
    }
    if !c.userdata.is_empty() {
        parts.push(format!("userdata={}", fmt_hex_bytes(&c.userdata)));
    }
    let _ = write!(out, "controller({})", parts.join(","));
}

fn mac_u(m: [u8; 6]) -> u128 {
    u128::from(crate::flow::key::mac_to_u64(m))
}

fn fmt_set_field(out: &mut String, field: Field, value: u128, mask: u128, ctx: Option<&Match>) {
    use std::fmt::Write as _;
    let full = field_full(field.bits());
    if let Field::TunMetadata(n) = field {
        let _ = write!(out, "set_field:{}", hex0(value & mask));
        if mask != full {
            let _ = write!(out, "/{}", hex0(mask));
        }
        let _ = write!(out, "->tun_metadata{}", n & 7);
        return;
    }
    if mask == full {
        // What Open vSwitch turns a whole-field set_field into for OpenFlow 1.0.
        let legacy = match field {
            Field::DlSrc => Some(Action::ModDlSrc(mac6(value))),
            Field::DlDst => Some(Action::ModDlDst(mac6(value))),
            Field::NwSrc => Some(Action::ModNwSrc(value as u32)),
            Field::NwDst => Some(Action::ModNwDst(value as u32)),
            Field::TpSrc => Some(Action::ModTpSrc(value as u16)),
            Field::TpDst => Some(Action::ModTpDst(value as u16)),
            _ => None,
        };
        if let Some(l) = legacy {
            fmt_action(out, &l, None, ctx);
            return;
        }
    }
    let width = ovs_bits(field).min(128);
    let wmask = if width >= 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    let segs = segments(field, value, mask & wmask);
    if segs.is_empty() {
        // Nothing to write; keep the text parseable and visibly empty.
        let _ = write!(out, "load:0->{}[0]", subfield_name(field, ctx));
        return;
    }
    for (i, s) in segs.iter().enumerate() {
        if let Action::SetField { value, mask, .. } = s {
            if i > 0 {
                out.push(',');
            }
            let ofs = mask.trailing_zeros();
            let n_bits = 128 - mask.leading_zeros() - ofs;
            let sf = FieldSlice { field, ofs, n_bits };
            let _ = write!(
                out,
                "load:{}->{}",
                hex0(value >> ofs),
                fmt_subfield(&sf, ctx)
            );
        }
    }
}
