//! Actions (OpenFlow 1.0 and 1.1+ numbering, Nicira extensions) and the
//! OpenFlow 1.1+ instructions that carry them, to and from `flow::Action`.
//!
//! Decoding canonicalizes the way the text parser does (see
//! `flow::syntax::actions`): a whole-field `set_field` or `load` of a field
//! that has a dedicated action becomes that action (`mod_dl_src`, ...), so
//! a flow installed over OpenFlow reads back the same from `vswitchctl` and
//! `ovs-ofctl`. Encoding picks what Open vSwitch sends for each version:
//! OpenFlow 1.0 has no `set_field`, so other fields travel as NXAST_REG_LOAD;
//! 1.2-1.4 use OFPAT_SET_FIELD for whole fields and NXAST_REG_LOAD for
//! slices; 1.5 has masked `set_field`. `goto_table` is an instruction from
//! 1.1 and NXAST_RESUBMIT_TABLE in 1.0, as Open vSwitch encodes it.
//!
//! `controller` travels as Open vSwitch sends it: an output to CONTROLLER
//! with `max_len` when only that is set, NXAST_CONTROLLER with a reason or
//! id, NXAST_CONTROLLER2 (properties) with userdata; `note` as NXAST_NOTE.
//!
//! Not expressible in `flow::Action` (so refused with the matching error):
//! groups, queues, meters, write-actions, MPLS, `learn`, the `pause` and
//! `meter_id` of `controller`, and anything else this switch does not run.

use super::oxm::{field_from_header, field_header, slice_header};
use super::{port_from_of11, port_to_of11, round8, Error, Rd, Result, Version, Wr, NX_VENDOR};
use crate::flow::{
    ofp_port, Action, ControllerAction, CtAction, CtZone, Field, FieldSlice, PacketInReason,
};

// Nicira action subtypes.
const NXAST_RESUBMIT: u16 = 1;
const NXAST_SET_TUNNEL: u16 = 2;
const NXAST_REG_MOVE: u16 = 6;
const NXAST_NOTE: u16 = 8;
const NXAST_CONTROLLER: u16 = 20;
const NXAST_CONTROLLER2: u16 = 37;
// NXAST_CONTROLLER2 property types.
const NXAC2PT_MAX_LEN: u16 = 0;
const NXAC2PT_CONTROLLER_ID: u16 = 1;
const NXAC2PT_REASON: u16 = 2;
const NXAC2PT_USERDATA: u16 = 3;
const NXAST_REG_LOAD: u16 = 7;
const NXAST_SET_TUNNEL64: u16 = 9;
const NXAST_RESUBMIT_TABLE: u16 = 14;
const NXAST_DEC_TTL: u16 = 18;
const NXAST_REG_LOAD2: u16 = 33;
const NXAST_CT: u16 = 35;
const NXAST_CT_CLEAR: u16 = 43;

const NX_CT_F_COMMIT: u16 = 1;
const NX_CT_F_FORCE: u16 = 2;

/// Deepest `ct(exec(...))` nesting accepted (exec cannot nest a ct, but a
/// hostile message may try; this bounds the recursion).
const MAX_NEST: usize = 2;

fn full(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

fn mac(v: u128) -> [u8; 6] {
    let b = v.to_be_bytes();
    [b[10], b[11], b[12], b[13], b[14], b[15]]
}

fn mac_u128(m: [u8; 6]) -> u128 {
    m.iter().fold(0u128, |a, &x| (a << 8) | u128::from(x))
}

fn valid_out_port(p: u32) -> bool {
    (1..ofp_port::MAX).contains(&p)
        || matches!(
            p,
            ofp_port::IN_PORT
                | ofp_port::TABLE
                | ofp_port::NORMAL
                | ofp_port::FLOOD
                | ofp_port::ALL
                | ofp_port::CONTROLLER
                | ofp_port::LOCAL
        )
}

/// An output action; to CONTROLLER it is a `controller` action with that
/// `max_len`, as the text syntax makes it.
fn output_action(p: u32, max_len: u16) -> Result<Action> {
    if !valid_out_port(p) {
        return Err(Error::BadOutPort(p));
    }
    if p == ofp_port::CONTROLLER {
        return Ok(Action::Controller(Box::new(ControllerAction {
            max_len,
            ..Default::default()
        })));
    }
    Ok(Action::Output(p))
}

fn reason_from_wire(r: u8) -> Result<PacketInReason> {
    PacketInReason::ALL
        .into_iter()
        .find(|x| x.wire() == r)
        .ok_or(Error::BadArgument)
}

/// NXAST_CONTROLLER2's properties.
fn decode_controller2(a: &mut Rd) -> Result<ControllerAction> {
    a.skip(6)?;
    let mut c = ControllerAction::default();
    while !a.is_empty() {
        let typ = a.u16()?;
        let plen = usize::from(a.u16()?);
        if plen < 4 {
            return Err(Error::BadActionLen);
        }
        let body = a.bytes(plen - 4).map_err(|_| Error::BadActionLen)?;
        let mut b = Rd::new(body);
        match typ {
            NXAC2PT_MAX_LEN => c.max_len = b.u16()?,
            NXAC2PT_CONTROLLER_ID => c.controller_id = b.u16()?,
            NXAC2PT_REASON => c.reason = reason_from_wire(b.u8()?)?,
            NXAC2PT_USERDATA => c.userdata = body.to_vec(),
            // pause, meter_id and anything newer: not run here.
            _ => return Err(Error::BadArgument),
        }
        // Properties are padded to 8 bytes.
        let pad = round8(plen) - plen;
        if pad > 0 && a.len() >= pad {
            a.skip(pad)?;
        }
    }
    Ok(c)
}

/// Turns a decoded write of `value`/`mask` into `field` into actions, as
/// the text parser canonicalizes `set_field`.
fn set_to_actions(field: Field, value: u128, mask: u128, out: &mut Vec<Action>) -> Result<()> {
    if mask == 0 {
        return Err(Error::BadArgument);
    }
    let whole = mask == field.full_mask();
    let v = value & mask;
    match (field, whole) {
        (Field::DlSrc, true) => out.push(Action::ModDlSrc(mac(v))),
        (Field::DlDst, true) => out.push(Action::ModDlDst(mac(v))),
        (Field::NwSrc, true) => out.push(Action::ModNwSrc(v as u32)),
        (Field::NwDst, true) => out.push(Action::ModNwDst(v as u32)),
        (Field::TpSrc, true) => out.push(Action::ModTpSrc(v as u16)),
        (Field::TpDst, true) => out.push(Action::ModTpDst(v as u16)),
        (Field::VlanTci, true) => {
            if v & 0x1000 != 0 {
                out.push(Action::ModVlanVid((v & 0xfff) as u16));
                out.push(Action::ModVlanPcp(((v >> 13) & 7) as u8));
            } else {
                out.push(Action::PopVlan);
            }
        }
        (Field::NwTos, _) => {
            if v & 3 != 0 {
                return Err(Error::BadArgument);
            }
            out.push(Action::ModNwTos(v as u8));
        }
        (Field::IpDscp, _) => out.push(Action::ModNwTos((v << 2) as u8)),
        (Field::DlVlan, _) => out.push(Action::ModVlanVid((v & 0xfff) as u16)),
        (Field::DlVlanPcp, _) => out.push(Action::ModVlanPcp(v as u8)),
        (Field::CtState | Field::CtZone | Field::NwFrag | Field::TcpFlags, _) => {
            return Err(Error::BadSetField)
        }
        _ => out.push(Action::SetField {
            field,
            value: v,
            mask,
        }),
    }
    Ok(())
}

/// The stored form of a wire value of field `f` read through header `h`.
fn wire_to_stored(f: Field, h: u32, v: u128) -> u128 {
    let class = (h >> 16) as u16;
    match f {
        Field::InPort if class == super::oxm::OXM => u128::from(port_from_of11(v as u32)),
        Field::DlVlan => v & 0xfff,
        _ => v,
    }
}

fn slice_from(h: u32, ofs: u32, n_bits: u32) -> Result<FieldSlice> {
    let (field, wire_bits) = field_from_header(h)?;
    if n_bits == 0 || ofs + n_bits > wire_bits.min(field.bits().max(wire_bits)) {
        return Err(Error::BadArgument);
    }
    if ofs + n_bits > field.bits() {
        return Err(Error::BadArgument);
    }
    Ok(FieldSlice { field, ofs, n_bits })
}

/// Decodes an OXM TLV holding a value (and mask, when allowed) for
/// SET_FIELD / NXAST_REG_LOAD2; returns the field, value and mask.
fn decode_set_tlv(r: &mut Rd, allow_mask: bool) -> Result<(Field, u128, u128)> {
    let h = r.u32()?;
    let has_mask = h & 0x100 != 0;
    let len = (h & 0xff) as usize;
    if has_mask && !allow_mask {
        return Err(Error::BadArgument);
    }
    let vlen = if has_mask { len / 2 } else { len };
    if vlen == 0 || vlen > 16 || (has_mask && !len.is_multiple_of(2)) {
        return Err(Error::BadActionLen);
    }
    let body = r.bytes(len)?;
    let be = |b: &[u8]| b.iter().fold(0u128, |a, &x| (a << 8) | u128::from(x));
    let (field, _) = field_from_header(h & !0x1ff | (vlen as u32))?;
    let v = be(&body[..vlen]);
    let m = if has_mask {
        be(&body[vlen..])
    } else {
        full(vlen as u32 * 8)
    };
    let v = wire_to_stored(field, h, v);
    let m = if field == Field::InPort || field == Field::DlVlan {
        field.full_mask()
    } else {
        m & field.full_mask()
    };
    Ok((field, v, m))
}

/// Decodes an action list (the whole of `b`).
pub fn decode_actions(b: &[u8], v: Version) -> Result<Vec<Action>> {
    let mut out = Vec::new();
    decode_into(b, v, 0, &mut out)?;
    Ok(out)
}

fn decode_into(b: &[u8], v: Version, depth: usize, out: &mut Vec<Action>) -> Result<()> {
    let mut r = Rd::new(b);
    while !r.is_empty() {
        if r.len() < 8 {
            return Err(Error::BadActionLen);
        }
        let typ = r.u16()?;
        let len = usize::from(r.u16()?);
        if len < 8 || len % 8 != 0 {
            return Err(Error::BadActionLen);
        }
        let mut a = r.sub(len - 4).map_err(|_| Error::BadActionLen)?;
        if v == Version::V10 {
            decode10(typ, len, &mut a, v, depth, out)?;
        } else {
            decode11(typ, len, &mut a, v, depth, out)?;
        }
    }
    Ok(())
}

fn expect_len(len: usize, want: usize) -> Result<()> {
    if len == want {
        Ok(())
    } else {
        Err(Error::BadActionLen)
    }
}

fn decode10(
    typ: u16,
    len: usize,
    a: &mut Rd,
    v: Version,
    depth: usize,
    out: &mut Vec<Action>,
) -> Result<()> {
    match typ {
        0 => {
            expect_len(len, 8)?;
            let p = u32::from(a.u16()?);
            let max_len = a.u16()?;
            out.push(output_action(p, max_len)?);
        }
        1 => {
            expect_len(len, 8)?;
            let vid = a.u16()?;
            if vid > 0xfff {
                return Err(Error::BadArgument);
            }
            out.push(Action::ModVlanVid(vid));
        }
        2 => {
            expect_len(len, 8)?;
            let pcp = a.u8()?;
            if pcp > 7 {
                return Err(Error::BadArgument);
            }
            out.push(Action::ModVlanPcp(pcp));
        }
        3 => {
            expect_len(len, 8)?;
            out.push(Action::PopVlan);
        }
        4 | 5 => {
            expect_len(len, 16)?;
            let m = a.mac()?;
            out.push(if typ == 4 {
                Action::ModDlSrc(m)
            } else {
                Action::ModDlDst(m)
            });
        }
        6 | 7 => {
            expect_len(len, 8)?;
            let ip = a.u32()?;
            out.push(if typ == 6 {
                Action::ModNwSrc(ip)
            } else {
                Action::ModNwDst(ip)
            });
        }
        8 => {
            expect_len(len, 8)?;
            let tos = a.u8()?;
            if tos & 3 != 0 {
                return Err(Error::BadArgument);
            }
            out.push(Action::ModNwTos(tos));
        }
        9 | 10 => {
            expect_len(len, 8)?;
            let p = a.u16()?;
            out.push(if typ == 9 {
                Action::ModTpSrc(p)
            } else {
                Action::ModTpDst(p)
            });
        }
        0xffff => decode_vendor(len, a, v, depth, out)?,
        t => return Err(Error::BadAction(t)),
    }
    Ok(())
}

fn decode11(
    typ: u16,
    len: usize,
    a: &mut Rd,
    v: Version,
    depth: usize,
    out: &mut Vec<Action>,
) -> Result<()> {
    match typ {
        0 => {
            expect_len(len, 16)?;
            let p = port_from_of11(a.u32()?);
            let max_len = a.u16()?;
            out.push(output_action(p, max_len)?);
        }
        17 => {
            expect_len(len, 8)?;
            out.push(Action::PushVlan(a.u16()?));
        }
        18 => {
            expect_len(len, 8)?;
            out.push(Action::PopVlan);
        }
        23 => {
            expect_len(len, 8)?;
            out.push(Action::ModNwTtl(a.u8()?));
        }
        24 => {
            expect_len(len, 8)?;
            out.push(Action::DecTtl);
        }
        25 => {
            let (f, val, m) = decode_set_tlv(a, v >= Version::V15)?;
            set_to_actions(f, val, m, out)?;
        }
        28 if v >= Version::V15 => {
            // OFPAT_COPY_FIELD: the 1.5 spelling of reg_move.
            expect_len(len, 24)?;
            let n_bits = u32::from(a.u16()?);
            let src_ofs = u32::from(a.u16()?);
            let dst_ofs = u32::from(a.u16()?);
            a.skip(2)?;
            let src = slice_from(a.u32()?, src_ofs, n_bits)?;
            let dst = slice_from(a.u32()?, dst_ofs, n_bits)?;
            check_move_dst(dst.field)?;
            out.push(Action::Move { src, dst });
        }
        0xffff => decode_vendor(len, a, v, depth, out)?,
        t => return Err(Error::BadAction(t)),
    }
    Ok(())
}

fn decode_vendor(
    len: usize,
    a: &mut Rd,
    v: Version,
    depth: usize,
    out: &mut Vec<Action>,
) -> Result<()> {
    let vendor = a.u32()?;
    if vendor == super::ONF_VENDOR {
        // ONF's OpenFlow 1.3 copy-field extension (type 3200): the 1.5
        // COPY_FIELD, which some 1.3 controllers send for move.
        let exp_type = a.u16()?;
        if exp_type != 3200 {
            return Err(Error::BadNxAction(exp_type));
        }
        if len != 32 {
            return Err(Error::BadActionLen);
        }
        a.skip(2)?;
        let n_bits = u32::from(a.u16()?);
        let src_ofs = u32::from(a.u16()?);
        let dst_ofs = u32::from(a.u16()?);
        a.skip(2)?;
        let src = slice_from(a.u32()?, src_ofs, n_bits)?;
        let dst = slice_from(a.u32()?, dst_ofs, n_bits)?;
        check_move_dst(dst.field)?;
        out.push(Action::Move { src, dst });
        return Ok(());
    }
    if vendor != NX_VENDOR {
        return Err(Error::BadActionExperimenter(vendor));
    }
    if len < 16 {
        return Err(Error::BadActionLen);
    }
    let sub = a.u16()?;
    match sub {
        NXAST_RESUBMIT | NXAST_RESUBMIT_TABLE => {
            expect_len(len, 16)?;
            let p = u32::from(a.u16()?);
            let t = a.u8()?;
            let in_port = (p != ofp_port::IN_PORT).then_some(p);
            let table = (sub == NXAST_RESUBMIT_TABLE && t != 255).then_some(t);
            if sub == NXAST_RESUBMIT_TABLE && a.bytes(3)?.iter().any(|&x| x != 0) {
                return Err(Error::BadArgument);
            }
            out.push(Action::Resubmit { in_port, table });
        }
        NXAST_SET_TUNNEL => {
            expect_len(len, 16)?;
            a.skip(2)?;
            out.push(Action::SetTunnel(u64::from(a.u32()?)));
        }
        NXAST_SET_TUNNEL64 => {
            expect_len(len, 24)?;
            a.skip(6)?;
            out.push(Action::SetTunnel(a.u64()?));
        }
        NXAST_REG_MOVE => {
            expect_len(len, 24)?;
            let n_bits = u32::from(a.u16()?);
            let src_ofs = u32::from(a.u16()?);
            let dst_ofs = u32::from(a.u16()?);
            let src = slice_from(a.u32()?, src_ofs, n_bits)?;
            let dst = slice_from(a.u32()?, dst_ofs, n_bits)?;
            check_move_dst(dst.field)?;
            out.push(Action::Move { src, dst });
        }
        NXAST_REG_LOAD => {
            expect_len(len, 24)?;
            let ofs_nbits = a.u16()?;
            let h = a.u32()?;
            let value = a.u64()?;
            let ofs = u32::from(ofs_nbits >> 6);
            let n_bits = u32::from(ofs_nbits & 0x3f) + 1;
            let s = slice_from(h, ofs, n_bits)?;
            if n_bits < 64 && value >> n_bits != 0 {
                return Err(Error::BadArgument);
            }
            set_to_actions(s.field, u128::from(value) << ofs, s.mask(), out)?;
        }
        NXAST_REG_LOAD2 => {
            let (f, val, m) = decode_set_tlv(a, true)?;
            set_to_actions(f, val, m, out)?;
        }
        NXAST_DEC_TTL => {
            expect_len(len, 16)?;
            out.push(Action::DecTtl);
        }
        NXAST_CT_CLEAR => {
            expect_len(len, 16)?;
            out.push(Action::CtClear);
        }
        NXAST_NOTE => out.push(Action::Note(a.rest().to_vec())),
        NXAST_CONTROLLER => {
            expect_len(len, 16)?;
            let max_len = a.u16()?;
            let controller_id = a.u16()?;
            let reason = reason_from_wire(a.u8()?)?;
            out.push(Action::Controller(Box::new(ControllerAction {
                max_len,
                reason,
                controller_id,
                userdata: Vec::new(),
            })));
        }
        NXAST_CONTROLLER2 => out.push(Action::Controller(Box::new(decode_controller2(a)?))),
        NXAST_CT => {
            if len < 24 || depth >= MAX_NEST {
                return Err(Error::BadActionLen);
            }
            let flags = a.u16()?;
            let zone_src = a.u32()?;
            let zone_v = a.u16()?;
            let table = a.u8()?;
            a.skip(3)?;
            let alg = a.u16()?;
            if alg != 0 || flags & !(NX_CT_F_COMMIT | NX_CT_F_FORCE) != 0 {
                return Err(Error::BadArgument);
            }
            let zone = if zone_src == 0 {
                CtZone::Imm(zone_v)
            } else {
                let ofs = u32::from(zone_v >> 6);
                let n_bits = u32::from(zone_v & 0x3f) + 1;
                CtZone::Field(slice_from(zone_src, ofs, n_bits)?)
            };
            let mut exec = Vec::new();
            decode_into(a.rest(), v, depth + 1, &mut exec)?;
            out.push(Action::Ct(Box::new(CtAction {
                commit: flags & NX_CT_F_COMMIT != 0,
                force: flags & NX_CT_F_FORCE != 0,
                zone,
                table: (table != 255).then_some(table),
                exec,
            })));
        }
        s => return Err(Error::BadNxAction(s)),
    }
    Ok(())
}

fn check_move_dst(f: Field) -> Result<()> {
    if matches!(
        f,
        Field::CtState | Field::CtZone | Field::CtMark | Field::NwFrag | Field::TcpFlags
    ) {
        return Err(Error::BadSetField);
    }
    Ok(())
}

// ---- encoding ----

fn nx_start(out: &mut Vec<u8>, sub: u16) -> usize {
    let start = out.len();
    out.u16(0xffff);
    out.u16(0);
    out.u32(NX_VENDOR);
    out.u16(sub);
    start
}

fn finish(out: &mut Vec<u8>, start: usize) {
    out.pad8(start);
    let len = out.len() - start;
    out.set_u16(start + 2, len as u16);
}

fn ofs_nbits(ofs: u32, n_bits: u32) -> u16 {
    ((ofs << 6) | (n_bits.saturating_sub(1) & 0x3f)) as u16
}

/// Wire value of stored `v` for a SET_FIELD TLV of `f` (header `h`).
fn stored_to_wire(f: Field, h: u32, v: u128) -> u128 {
    let class = (h >> 16) as u16;
    match f {
        Field::InPort if class == super::oxm::OXM => u128::from(port_to_of11(v as u32)),
        Field::DlVlan => (v & 0xfff) | 0x1000,
        _ => v,
    }
}

fn put_tlv(out: &mut Vec<u8>, h: u32, v: u128, m: Option<u128>) {
    let len = (h & 0xff) as usize;
    let h = if m.is_some() {
        (h | 0x100) & !0xff | (2 * len) as u32
    } else {
        h
    };
    out.u32(h);
    out.extend_from_slice(&v.to_be_bytes()[16 - len..]);
    if let Some(m) = m {
        out.extend_from_slice(&m.to_be_bytes()[16 - len..]);
    }
}

/// OFPAT_SET_FIELD (1.2+) of `f` with an optional mask (1.5+).
fn put_set_field(out: &mut Vec<u8>, f: Field, v: u128, m: Option<u128>) {
    let h = field_header(f, true);
    let h = if f == Field::DlVlan {
        // OXM_OF_VLAN_VID: the 13-bit form with OFPVID_PRESENT.
        (u32::from(super::oxm::OXM) << 16) | (6 << 9) | 2
    } else {
        h
    };
    let start = out.len();
    out.u16(25);
    out.u16(0);
    put_tlv(out, h, stored_to_wire(f, h, v), m);
    finish(out, start);
}

fn put_reg_load(out: &mut Vec<u8>, f: Field, value: u128, mask: u128) {
    let ofs = mask.trailing_zeros();
    let n_bits = 128 - mask.leading_zeros() - ofs;
    let contiguous = mask >> ofs == full(n_bits);
    if contiguous && n_bits <= 64 {
        let start = nx_start(out, NXAST_REG_LOAD);
        out.u16(ofs_nbits(ofs, n_bits));
        out.u32(slice_header(f, ofs + n_bits, false));
        out.u64(((value & mask) >> ofs) as u64);
        finish(out, start);
    } else {
        let start = nx_start(out, NXAST_REG_LOAD2);
        let h = slice_header(f, 128 - mask.leading_zeros(), false);
        put_tlv(out, h, value & mask, Some(mask));
        finish(out, start);
    }
}

/// A write of a whole field or part of it, for `v`.
fn put_write(out: &mut Vec<u8>, v: Version, f: Field, value: u128, mask: u128) {
    let whole = mask == f.full_mask();
    if v >= Version::V15 {
        put_set_field(out, f, value, (!whole).then_some(mask));
    } else if v >= Version::V13 && whole {
        put_set_field(out, f, value, None);
    } else {
        put_reg_load(out, f, value, mask);
    }
}

fn put_simple(out: &mut Vec<u8>, typ: u16, body: &[u8]) {
    let start = out.len();
    out.u16(typ);
    out.u16(0);
    out.extend_from_slice(body);
    finish(out, start);
}

/// Appends `acts` as an action list for `v` (a trailing `goto_table` too,
/// which only OpenFlow 1.0 expresses as an action; callers of 1.1+ use
/// [`encode_instructions`]).
pub fn encode_actions(out: &mut Vec<u8>, acts: &[Action], v: Version) {
    for a in acts {
        encode_one(out, a, v);
    }
}

/// `controller` as Open vSwitch encodes it.
fn put_controller(out: &mut Vec<u8>, c: &ControllerAction, v: Version) {
    if c.userdata.is_empty() {
        if c.reason == PacketInReason::Action && c.controller_id == 0 {
            let mut b = Vec::new();
            if v == Version::V10 {
                b.u16(ofp_port::CONTROLLER as u16);
                b.u16(c.max_len);
            } else {
                b.u32(port_to_of11(ofp_port::CONTROLLER));
                b.u16(c.max_len);
                b.zeros(6);
            }
            put_simple(out, 0, &b);
        } else {
            let s = nx_start(out, NXAST_CONTROLLER);
            out.u16(c.max_len);
            out.u16(c.controller_id);
            out.u8(c.reason.wire());
            finish(out, s);
        }
        return;
    }
    let s = nx_start(out, NXAST_CONTROLLER2);
    out.zeros(6);
    let prop = |out: &mut Vec<u8>, typ: u16, body: &[u8]| {
        let start = out.len();
        out.u16(typ);
        out.u16((4 + body.len()) as u16);
        out.extend_from_slice(body);
        out.pad8(start);
    };
    if c.max_len != u16::MAX {
        prop(out, NXAC2PT_MAX_LEN, &c.max_len.to_be_bytes());
    }
    if c.controller_id != 0 {
        prop(out, NXAC2PT_CONTROLLER_ID, &c.controller_id.to_be_bytes());
    }
    if c.reason != PacketInReason::Action {
        prop(out, NXAC2PT_REASON, &[c.reason.wire()]);
    }
    prop(out, NXAC2PT_USERDATA, &c.userdata);
    finish(out, s);
}

fn encode_one(out: &mut Vec<u8>, a: &Action, v: Version) {
    let v10 = v == Version::V10;
    match a {
        Action::Controller(c) => put_controller(out, c, v),
        Action::Note(b) => {
            let s = nx_start(out, NXAST_NOTE);
            out.extend_from_slice(b);
            finish(out, s);
        }
        Action::Output(p) => {
            if v10 {
                let max_len: u16 = if *p == ofp_port::CONTROLLER {
                    0xffff
                } else {
                    0
                };
                let mut b = Vec::new();
                b.u16(*p as u16);
                b.u16(max_len);
                put_simple(out, 0, &b);
            } else {
                let max_len: u16 = if *p == ofp_port::CONTROLLER {
                    0xffff
                } else {
                    0
                };
                let mut b = Vec::new();
                b.u32(port_to_of11(*p));
                b.u16(max_len);
                b.zeros(6);
                put_simple(out, 0, &b);
            }
        }
        Action::Resubmit { in_port, table } => {
            let p = in_port.unwrap_or(ofp_port::IN_PORT) as u16;
            match table {
                None if in_port.is_some() => {
                    let s = nx_start(out, NXAST_RESUBMIT);
                    out.u16(p);
                    finish(out, s);
                }
                _ => {
                    let s = nx_start(out, NXAST_RESUBMIT_TABLE);
                    out.u16(p);
                    out.u8(table.unwrap_or(255));
                    finish(out, s);
                }
            }
        }
        Action::GotoTable(t) => {
            // Only reached for 1.0 (1.1+ make it an instruction).
            let s = nx_start(out, NXAST_RESUBMIT_TABLE);
            out.u16(ofp_port::IN_PORT as u16);
            out.u8(*t);
            finish(out, s);
        }
        Action::ModDlSrc(m) | Action::ModDlDst(m) => {
            if v10 {
                let mut b = m.to_vec();
                b.zeros(6);
                put_simple(
                    out,
                    if matches!(a, Action::ModDlSrc(_)) {
                        4
                    } else {
                        5
                    },
                    &b,
                );
            } else {
                let f = if matches!(a, Action::ModDlSrc(_)) {
                    Field::DlSrc
                } else {
                    Field::DlDst
                };
                put_set_field(out, f, mac_u128(*m), None);
            }
        }
        Action::ModNwSrc(ip) | Action::ModNwDst(ip) => {
            let src = matches!(a, Action::ModNwSrc(_));
            if v10 {
                put_simple(out, if src { 6 } else { 7 }, &ip.to_be_bytes());
            } else {
                let f = if src { Field::NwSrc } else { Field::NwDst };
                put_set_field(out, f, u128::from(*ip), None);
            }
        }
        Action::ModNwTos(tos) => {
            if v10 {
                put_simple(out, 8, &[*tos & 0xfc, 0, 0, 0]);
            } else {
                put_set_field(out, Field::IpDscp, u128::from(*tos >> 2), None);
            }
        }
        Action::ModNwTtl(ttl) => {
            if v10 {
                put_reg_load(out, Field::NwTtl, u128::from(*ttl), 0xff);
            } else {
                put_simple(out, 23, &[*ttl, 0, 0, 0]);
            }
        }
        Action::ModTpSrc(p) | Action::ModTpDst(p) => {
            let src = matches!(a, Action::ModTpSrc(_));
            if v10 {
                let mut b = p.to_be_bytes().to_vec();
                b.zeros(2);
                put_simple(out, if src { 9 } else { 10 }, &b);
            } else {
                let f = if src { Field::TpSrc } else { Field::TpDst };
                put_set_field(out, f, u128::from(*p), None);
            }
        }
        Action::PushVlan(tpid) => {
            // OpenFlow 1.0 has no push_vlan: there the tag is pushed as a
            // side effect of the mod_vlan_vid that follows, and Open vSwitch
            // encodes nothing for it; so do we.
            if !v10 {
                let mut b = tpid.to_be_bytes().to_vec();
                b.zeros(2);
                put_simple(out, 17, &b);
            }
        }
        Action::PopVlan => {
            put_simple(out, if v10 { 3 } else { 18 }, &[0; 4]);
        }
        Action::ModVlanVid(vid) => {
            if v10 {
                let mut b = vid.to_be_bytes().to_vec();
                b.zeros(2);
                put_simple(out, 1, &b);
            } else {
                put_set_field(out, Field::DlVlan, u128::from(*vid), None);
            }
        }
        Action::ModVlanPcp(pcp) => {
            if v10 {
                put_simple(out, 2, &[*pcp, 0, 0, 0]);
            } else {
                put_set_field(out, Field::DlVlanPcp, u128::from(*pcp), None);
            }
        }
        Action::SetField { field, value, mask } => put_write(out, v, *field, *value, *mask),
        Action::Move { src, dst } if v >= Version::V15 => {
            let start = out.len();
            out.u16(28);
            out.u16(0);
            out.u16(src.n_bits as u16);
            out.u16(src.ofs as u16);
            out.u16(dst.ofs as u16);
            out.zeros(2);
            out.u32(slice_header(src.field, src.ofs + src.n_bits, true));
            out.u32(slice_header(dst.field, dst.ofs + dst.n_bits, true));
            finish(out, start);
        }
        Action::Move { src, dst } => {
            let s = nx_start(out, NXAST_REG_MOVE);
            out.u16(src.n_bits as u16);
            out.u16(src.ofs as u16);
            out.u16(dst.ofs as u16);
            out.u32(slice_header(src.field, src.ofs + src.n_bits, false));
            out.u32(slice_header(dst.field, dst.ofs + dst.n_bits, false));
            finish(out, s);
        }
        Action::DecTtl => {
            if v10 {
                let s = nx_start(out, NXAST_DEC_TTL);
                finish(out, s);
            } else {
                put_simple(out, 24, &[0; 4]);
            }
        }
        Action::SetTunnel(id) => {
            if *id <= u64::from(u32::MAX) {
                let s = nx_start(out, NXAST_SET_TUNNEL);
                out.zeros(2);
                out.u32(*id as u32);
                finish(out, s);
            } else {
                let s = nx_start(out, NXAST_SET_TUNNEL64);
                out.zeros(6);
                out.u64(*id);
                finish(out, s);
            }
        }
        Action::Ct(ct) => {
            let s = nx_start(out, NXAST_CT);
            let mut flags = 0;
            if ct.commit {
                flags |= NX_CT_F_COMMIT;
            }
            if ct.force {
                flags |= NX_CT_F_FORCE;
            }
            out.u16(flags);
            match ct.zone {
                CtZone::Imm(z) => {
                    out.u32(0);
                    out.u16(z);
                }
                CtZone::Field(sl) => {
                    out.u32(slice_header(sl.field, sl.ofs + sl.n_bits, false));
                    out.u16(ofs_nbits(sl.ofs, sl.n_bits));
                }
            }
            out.u8(ct.table.unwrap_or(255));
            out.zeros(3);
            out.u16(0);
            encode_actions(out, &ct.exec, v);
            finish(out, s);
        }
        Action::CtClear => {
            let s = nx_start(out, NXAST_CT_CLEAR);
            finish(out, s);
        }
    }
}

// ---- instructions (1.1+) ----

const OFPIT_GOTO_TABLE: u16 = 1;
const OFPIT_WRITE_METADATA: u16 = 2;
const OFPIT_APPLY_ACTIONS: u16 = 4;

/// Decodes OpenFlow 1.1+ instructions into one action list: apply-actions,
/// then write-metadata (as a `set_field` of `metadata`), then goto-table.
pub fn decode_instructions(b: &[u8], v: Version) -> Result<Vec<Action>> {
    let mut r = Rd::new(b);
    let mut apply = None;
    let mut meta = None;
    let mut goto = None;
    while !r.is_empty() {
        let typ = r.u16()?;
        let len = usize::from(r.u16()?);
        if len < 8 || len % 8 != 0 {
            return Err(Error::BadInstructionLen);
        }
        let mut i = r.sub(len - 4).map_err(|_| Error::BadInstructionLen)?;
        match typ {
            OFPIT_APPLY_ACTIONS if apply.is_none() => {
                i.skip(4)?;
                apply = Some(decode_actions(i.rest(), v)?);
            }
            OFPIT_GOTO_TABLE if goto.is_none() => {
                if len != 8 {
                    return Err(Error::BadInstructionLen);
                }
                let t = i.u8()?;
                if t == 255 {
                    return Err(Error::BadTableId(t));
                }
                goto = Some(t);
            }
            OFPIT_WRITE_METADATA if meta.is_none() => {
                if len != 24 {
                    return Err(Error::BadInstructionLen);
                }
                i.skip(4)?;
                let val = i.u64()?;
                let mask = i.u64()?;
                if mask == 0 {
                    return Err(Error::BadArgument);
                }
                meta = Some((val, mask));
            }
            t => return Err(Error::BadInstruction(t)),
        }
    }
    let mut out = apply.unwrap_or_default();
    if let Some((val, mask)) = meta {
        out.push(Action::SetField {
            field: Field::Metadata,
            value: u128::from(val & mask),
            mask: u128::from(mask),
        });
    }
    if let Some(t) = goto {
        out.push(Action::GotoTable(t));
    }
    Ok(out)
}

/// Appends `acts` as OpenFlow 1.1+ instructions: everything but a trailing
/// `goto_table` in one apply-actions, then goto-table.
pub fn encode_instructions(out: &mut Vec<u8>, acts: &[Action], v: Version) {
    let (body, goto) = match acts.split_last() {
        Some((Action::GotoTable(t), rest)) => (rest, Some(*t)),
        _ => (acts, None),
    };
    if !body.is_empty() {
        let start = out.len();
        out.u16(OFPIT_APPLY_ACTIONS);
        out.u16(0);
        out.zeros(4);
        for a in body {
            if let Action::GotoTable(t) = a {
                // Not last (validation refuses this); keep it visible as
                // the equivalent resubmit.
                encode_one(
                    out,
                    &Action::Resubmit {
                        in_port: None,
                        table: Some(*t),
                    },
                    v,
                );
            } else {
                encode_one(out, a, v);
            }
        }
        let len = out.len() - start;
        out.set_u16(start + 2, len as u16);
    }
    if let Some(t) = goto {
        out.u16(OFPIT_GOTO_TABLE);
        out.u16(8);
        out.u8(t);
        out.zeros(3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(acts: Vec<Action>) {
        for v in Version::ALL {
            if v == Version::V10 && acts.iter().any(|a| matches!(a, Action::PushVlan(_))) {
                continue;
            }
            let mut b = Vec::new();
            if v == Version::V10 {
                encode_actions(&mut b, &acts, v);
                assert_eq!(decode_actions(&b, v).unwrap(), acts, "{v:?}");
            } else {
                encode_instructions(&mut b, &acts, v);
                assert_eq!(decode_instructions(&b, v).unwrap(), acts, "{v:?}");
            }
        }
    }

    #[test]
    fn pipeline_actions_round_trip_in_every_version() {
        rt(vec![
            Action::SetField {
                field: Field::Metadata,
                value: 100,
                mask: u128::from(u64::MAX),
            },
            Action::SetField {
                field: Field::Reg(0),
                value: 1,
                mask: 0xffff_ffff,
            },
            Action::Resubmit {
                in_port: None,
                table: Some(1),
            },
        ]);
        rt(vec![Action::Ct(Box::new(CtAction {
            commit: true,
            force: false,
            zone: CtZone::Imm(5),
            table: Some(1),
            exec: vec![Action::SetField {
                field: Field::CtMark,
                value: 1,
                mask: 0xffff_ffff,
            }],
        }))]);
        rt(vec![
            Action::PushVlan(0x8100),
            Action::ModVlanVid(10),
            Action::Output(3),
            Action::PopVlan,
            Action::Output(ofp_port::NORMAL),
            Action::DecTtl,
            Action::SetTunnel(100),
            Action::Move {
                src: FieldSlice::whole(Field::TunId),
                dst: FieldSlice::whole(Field::Metadata),
            },
        ]);
    }

    #[test]
    fn in_port_slices_past_16_bits_take_the_32_bit_header() {
        // NXM_OF_IN_PORT is 16 bits wide; a slice reaching past it is
        // written with OXM's 32-bit in_port, so it decodes again.
        let wide = FieldSlice {
            field: Field::InPort,
            ofs: 0,
            n_bits: 23,
        };
        rt(vec![
            Action::Ct(Box::new(CtAction {
                commit: true,
                force: false,
                zone: CtZone::Field(wide),
                table: Some(2),
                exec: vec![],
            })),
            Action::Move {
                src: wide,
                dst: FieldSlice {
                    field: Field::Reg(0),
                    ofs: 0,
                    n_bits: 23,
                },
            },
        ]);
        assert_eq!(
            slice_header(Field::InPort, 16, false),
            field_header(Field::InPort, false),
            "up to bit 15: NXM_OF_IN_PORT"
        );
        assert_eq!(
            slice_header(Field::InPort, 23, false),
            0x8000_0004,
            "OXM_OF_IN_PORT"
        );
    }

    #[test]
    fn a_field_header_of_another_length_is_refused() {
        // NXAST_REG_MOVE of 23 bits from NXM_OF_IN_PORT whose header claims
        // 187 bytes: the slice is checked against the field's own width.
        let mut b = vec![0xff, 0xff, 0, 24, 0, 0, 0x23, 0x20, 0, 6];
        b.extend_from_slice(&[0, 23, 0, 0, 0, 0]);
        b.extend_from_slice(&0x0000_00bbu32.to_be_bytes());
        b.extend_from_slice(&field_header(Field::Reg(0), false).to_be_bytes());
        assert_eq!(decode_actions(&b, Version::V13), Err(Error::BadLen));
        // The same with the right length: 23 bits do not fit 16.
        b[16..20].copy_from_slice(&field_header(Field::InPort, false).to_be_bytes());
        assert_eq!(decode_actions(&b, Version::V13), Err(Error::BadArgument));
    }

    #[test]
    fn onf_copy_field_is_a_move() {
        let mut b = vec![0xff, 0xff, 0, 32, 0x4f, 0x4e, 0x46, 0x00, 0x0c, 0x80, 0, 0];
        b.extend_from_slice(&[0, 32, 0, 0, 0, 0, 0, 0]);
        b.extend_from_slice(&field_header(Field::Reg(1), false).to_be_bytes());
        b.extend_from_slice(&field_header(Field::Reg(2), false).to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        assert_eq!(
            decode_actions(&b, Version::V13).unwrap(),
            [Action::Move {
                src: FieldSlice::whole(Field::Reg(1)),
                dst: FieldSlice::whole(Field::Reg(2)),
            }]
        );
    }

    #[test]
    fn bad_actions_get_typed_errors() {
        // Output to port 0.
        let b = [0, 0, 0, 8, 0, 0, 0, 0];
        assert_eq!(decode_actions(&b, Version::V10), Err(Error::BadOutPort(0)));
        // Enqueue: unsupported.
        let b = [0, 11, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode_actions(&b, Version::V10), Err(Error::BadAction(11)));
        // Length past the end.
        let b = [0, 0, 0, 16, 0, 1, 0, 0];
        assert_eq!(decode_actions(&b, Version::V10), Err(Error::BadActionLen));
        // NXAST_LEARN (16): not run here.
        let b = [0xff, 0xff, 0, 16, 0, 0, 0x23, 0x20, 0, 16, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            decode_actions(&b, Version::V13),
            Err(Error::BadNxAction(16))
        );
        // NXAST_CONTROLLER2 with `pause` (4): refused, not half-run.
        let b = [
            0xff, 0xff, 0, 24, 0, 0, 0x23, 0x20, 0, 37, 0, 0, 0, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0, 0,
        ];
        assert_eq!(decode_actions(&b, Version::V13), Err(Error::BadArgument));
    }

    #[test]
    fn controller_and_note_round_trip_in_every_version() {
        let acts = vec![
            Action::Controller(Box::default()),
            Action::Controller(Box::new(ControllerAction {
                max_len: 128,
                reason: PacketInReason::NoMatch,
                controller_id: 3,
                userdata: Vec::new(),
            })),
            Action::Controller(Box::new(ControllerAction {
                max_len: 100,
                reason: PacketInReason::InvalidTtl,
                controller_id: 0,
                userdata: vec![1, 2, 3, 4, 5, 6, 7, 8, 9],
            })),
            Action::Note(vec![1, 2, 0, 0, 0, 0]),
        ];
        for v in [Version::V10, Version::V13, Version::V14, Version::V15] {
            let mut b = Vec::new();
            encode_actions(&mut b, &acts, v);
            assert!(b.len().is_multiple_of(8));
            assert_eq!(decode_actions(&b, v).unwrap(), acts, "{v:?}");
        }
    }
}
