//! The ovs-ofctl flow syntax, text to [`FlowSpec`]: what `add-flow`,
//! `add-flows FILE`, `mod-flows`, `del-flows` and `dump-flows` take, and the
//! `ofproto/trace` flow syntax (text to [`FlowKey`]).
//!
//! The grammar and the canonical forms follow Open vSwitch's
//! `parse_ofp_str()` (lib/ofp-flow.c), `mf_parse()` (lib/meta-flow.c) and
//! `ofpacts_parse()` (lib/ofp-actions.c); see the `flow::syntax` module for the
//! pieces. Where Open vSwitch silently accepts a line and does something
//! other than what it says, this parser refuses it with an error pointing at
//! the token, because a flow that quietly matches more than written is how
//! traffic gets dropped or leaked:
//!
//! * a field whose prerequisites are not met (`tp_dst=80` without `tcp`):
//!   Open vSwitch drops the field and installs a wider flow; here it is an
//!   error;
//! * the same field given twice (`in_port=1,in_port=2`): Open vSwitch keeps
//!   the last; here it is an error, as are contradicting fields
//!   (`tcp,nw_proto=17`);
//! * out-of-range values Open vSwitch truncates (`dl_vlan=4096`,
//!   `dl_vlan_pcp=8`, `nw_src=1.2.3.256`, `nw_tos=5`).
//!
//! Names of ports resolve through [`PortNames`] when the flow is parsed,
//! so the tables only ever hold numbers.
//!
//! For `mod-flows`, `del-flows` and `dump-flows` a flow without `table=`
//! applies to every table: the returned spec has `table ==`
//! [`ALL_TABLES`] (255, OpenFlow's `OFPTT_ALL`).

use std::fmt;

use super::action::{ofp_port, Action};
use super::field::Field;
use super::key::FlowKey;
use super::matching::{FlowSpec, Match};
use super::port_names::PortNames;
use super::syntax::actions::{parse_actions as parse_action_list, parse_subfield, ActCtx};
use super::syntax::fields::{
    self, field_prereq, match_field, prereq_hint, prereq_ok, protocol, MatchField, Prereq, Store,
};
use super::syntax::lex::{Lexer, Tok};
use super::syntax::mval::parse_field_value;
use super::syntax::ports::{parse_port, PortErr};
use super::syntax::value::{parse_u128, IntErr};
use super::syntax::PErr;

/// A flow that does not parse: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based character column of the offending token.
    pub column: usize,
    /// The offending token as written.
    pub token: String,
    /// What is wrong; names the token.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    fn from_perr(line: &str, e: PErr) -> Self {
        let off = e.off.min(line.len());
        // Offsets always fall on char boundaries (tokens start after ASCII
        // delimiters); fall back to a byte count if one ever does not.
        let column = line.get(..off).map_or(off, |p| p.chars().count()) + 1;
        ParseError {
            column,
            token: e.token,
            message: e.message,
        }
    }
}

/// A flow file that does not parse: the first bad line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileParseError {
    /// The file name, when the caller provided it ([`FileParseError::with_path`]).
    pub path: Option<String>,
    /// 1-based line number.
    pub line: usize,
    /// The error on that line.
    pub error: ParseError,
}

impl FileParseError {
    /// The same error, naming the file.
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }
}

impl fmt::Display for FileParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(
                f,
                "{}:{}:{}: {}",
                p, self.line, self.error.column, self.error.message
            ),
            None => write!(
                f,
                "line {}, column {}: {}",
                self.line, self.error.column, self.error.message
            ),
        }
    }
}

impl std::error::Error for FileParseError {}

/// Which command a flow is written for: it decides which keywords are
/// allowed and whether `actions=` is required or forbidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowCmd {
    /// `add-flow`: actions required.
    Add,
    /// `mod-flows`: actions required; matches flows non-strictly.
    Modify,
    /// `mod-flows --strict`: actions required; exact match and priority.
    ModifyStrict,
    /// `del-flows`: no actions; non-strict.
    Delete,
    /// `del-flows --strict`: no actions; exact match and priority.
    DeleteStrict,
    /// `dump-flows`: no actions; a non-strict filter.
    Dump,
}

impl FlowCmd {
    fn name(self) -> &'static str {
        match self {
            FlowCmd::Add => "add-flow",
            FlowCmd::Modify => "mod-flows",
            FlowCmd::ModifyStrict => "mod-flows --strict",
            FlowCmd::Delete => "del-flows",
            FlowCmd::DeleteStrict => "del-flows --strict",
            FlowCmd::Dump => "dump-flows",
        }
    }
    fn has_actions(self) -> bool {
        matches!(self, FlowCmd::Add | FlowCmd::Modify | FlowCmd::ModifyStrict)
    }
    fn has_priority(self) -> bool {
        !matches!(self, FlowCmd::Delete | FlowCmd::Dump)
    }
    fn has_out_port(self) -> bool {
        matches!(
            self,
            FlowCmd::Delete | FlowCmd::DeleteStrict | FlowCmd::Dump
        )
    }
}

/// `table` of a mod/del/dump spec that applies to every table.
pub const ALL_TABLES: u8 = 255;

/// Parses one flow for `cmd`.
pub fn parse_flow(text: &str, cmd: FlowCmd, names: &dyn PortNames) -> Result<FlowSpec, ParseError> {
    parse_flow_inner(text, cmd, names).map_err(|e| ParseError::from_perr(text, e))
}

/// Parses a list of actions on its own (no match, so no prerequisite
/// checks), e.g. for `vswitchctl` tools that take an action string.
pub fn parse_actions(text: &str, names: &dyn PortNames) -> Result<Vec<Action>, ParseError> {
    let cx = ActCtx {
        line: text,
        names,
        matches: None,
        table: None,
    };
    parse_action_list(text, 0, &cx).map_err(|e| ParseError::from_perr(text, e))
}

/// Parses an `add-flows` file: one flow per line, `#` comments, blank lines,
/// and an optional leading `add`, `modify`, `modify_strict`, `delete` or
/// `delete_strict` keyword per line (as `ovs-ofctl --bundle add-flows`).
/// Returns every flow or the first error; never a partial list.
pub fn parse_flow_file(
    text: &str,
    names: &dyn PortNames,
) -> Result<Vec<(FlowCmd, FlowSpec)>, FileParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = match raw.find('#') {
            Some(c) => raw.get(..c).unwrap_or(raw),
            None => raw,
        };
        if line.trim().is_empty() {
            continue;
        }
        let file_err = |e: PErr| FileParseError {
            path: None,
            line: i + 1,
            error: ParseError::from_perr(raw, e),
        };
        let lead = line.len() - line.trim_start().len();
        let rest = line.get(lead..).unwrap_or("");
        let first_end = rest
            .find([',', ' ', '\t', '\r'])
            .map_or(line.len(), |n| lead + n);
        let (cmd, start) = match line.get(lead..first_end).unwrap_or("") {
            "add" => (FlowCmd::Add, first_end),
            "modify" => (FlowCmd::Modify, first_end),
            "modify_strict" => (FlowCmd::ModifyStrict, first_end),
            "delete" => (FlowCmd::Delete, first_end),
            "delete_strict" => (FlowCmd::DeleteStrict, first_end),
            _ => (FlowCmd::Add, 0),
        };
        // Parse the rest in place so columns count from the line start.
        let spec = parse_flow_at(line, start, cmd, names).map_err(file_err)?;
        out.push((cmd, spec));
    }
    Ok(out)
}

/// Parses the `ofproto/trace` flow syntax into a packet key: `field=value`
/// pairs with exact values, shorthands (`tcp`) setting `dl_type` and
/// `nw_proto`, each field's prerequisites given before it, no field twice.
/// `in_port` defaults to `NONE` (0xffff) as in Open vSwitch.
pub fn parse_trace_flow(text: &str, names: &dyn PortNames) -> Result<FlowKey, ParseError> {
    parse_trace_inner(text, names).map_err(|e| ParseError::from_perr(text, e))
}

// ---------------------------------------------------------------------------

/// One field=value the match was built from, for duplicate, conflict and
/// prerequisite checks.
struct Entry {
    name: &'static str,
    field: Field,
    value: u128,
    mask: u128,
    off: usize,
    token: String,
    explicit: bool,
    prereq: Prereq,
}

#[derive(Default)]
struct MatchBuilder {
    m: Match,
    entries: Vec<Entry>,
    /// Trace flows: a field may be given once, even with the same value
    /// (Open vSwitch's parse_ofp_exact_flow()).
    exact: bool,
}

/// The storage field of a value (fields sharing bits map to one field).
fn canon(f: Field, v: u128, m: u128) -> (Field, u128, u128) {
    match f {
        Field::ArpSpa => (Field::NwSrc, v, m),
        Field::ArpTpa => (Field::NwDst, v, m),
        Field::ArpOp => (Field::NwProto, v, m),
        Field::IcmpType => (Field::TpSrc, v, m),
        Field::IcmpCode => (Field::TpDst, v, m),
        Field::NwEcn => (Field::NwTos, v, m),
        Field::IpDscp => (Field::NwTos, v << 2, m << 2),
        Field::DlVlan => (Field::VlanTci, v, m),
        Field::DlVlanPcp => (Field::VlanTci, v << 13, m << 13),
        f => (f, v, m),
    }
}

impl MatchBuilder {
    /// Adds a protocol shorthand (`tcp`, `arp`, ...) as its `dl_type` and
    /// `nw_proto`; false when `t` is not one.
    fn add_protocol(&mut self, t: &Tok<'_>, line: &str, explicit: bool) -> Result<bool, PErr> {
        let Some((dl_type, proto)) = protocol(t.key) else {
            return Ok(false);
        };
        if t.delim.is_some() {
            return Err(PErr::new(
                t.key_off,
                t.text(line),
                format!("'{}' takes no value ('{}')", t.key, t.text(line)),
            ));
        }
        let name = protocol_name(t.key);
        self.add(
            name,
            Field::DlType,
            u128::from(dl_type),
            0xffff,
            t,
            line,
            explicit,
            Prereq::None,
        )?;
        if let Some(p) = proto {
            self.add(
                name,
                Field::NwProto,
                u128::from(p),
                0xff,
                t,
                line,
                explicit,
                Prereq::None,
            )?;
        }
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        name: &'static str,
        field: Field,
        value: u128,
        mask: u128,
        t: &Tok<'_>,
        line: &str,
        explicit: bool,
        prereq: Prereq,
    ) -> Result<(), PErr> {
        let (field, value, mask) = canon(field, value, mask);
        let mask = mask & field.full_mask();
        let value = value & mask;
        for e in &self.entries {
            let mut overlap = e.mask & mask;
            if field == Field::VlanTci && e.value & value & 0x1000 != 0 {
                // dl_vlan and dl_vlan_pcp both require the tag-present bit.
                overlap &= !0x1000;
            }
            if e.field != field || overlap == 0 {
                continue;
            }
            if self.exact {
                return Err(PErr::new(
                    t.key_off,
                    t.text(line),
                    format!(
                        "'{}' sets {} again (already set by '{}')",
                        t.text(line),
                        field.name(),
                        e.token
                    ),
                ));
            }
            if explicit && e.explicit && e.name == name {
                return Err(PErr::new(
                    t.key_off,
                    t.text(line),
                    format!(
                        "duplicate field '{name}' ('{}' after '{}')",
                        t.text(line),
                        e.token
                    ),
                ));
            }
            if (e.value ^ value) & overlap != 0 {
                return Err(PErr::new(
                    t.key_off,
                    t.text(line),
                    format!("'{}' conflicts with '{}'", t.text(line), e.token),
                ));
            }
        }
        self.m.set(field, value, mask);
        self.entries.push(Entry {
            name,
            field,
            value,
            mask,
            off: t.key_off,
            token: t.text(line).to_string(),
            explicit,
            prereq,
        });
        Ok(())
    }

    fn check_prereqs(&self) -> Result<(), PErr> {
        for e in self.entries.iter().filter(|e| e.explicit) {
            if !prereq_ok(e.prereq, &self.m) {
                return Err(prereq_err(e.off, &e.token, e.name, e.prereq));
            }
        }
        Ok(())
    }
}

fn prereq_err(off: usize, token: &str, name: &str, p: Prereq) -> PErr {
    PErr::new(
        off,
        token,
        format!(
            "prerequisites not met for '{token}': {name} {}",
            prereq_hint(p)
        ),
    )
}

/// Maps a parsed field value onto its storage.
fn store(mf: &MatchField, v: u128, m: u128, t: &Tok<'_>) -> Result<(Field, u128, u128), PErr> {
    let bad = |msg: String| PErr::new(t.value_off, t.value, msg);
    Ok(match mf.store {
        Store::Plain(Field::InPort) => (Field::InPort, v, if m == 0 { 0 } else { 0xffff_ffff }),
        Store::Plain(f) => (f, v, m),
        Store::NwTos => {
            if v & 3 != 0 {
                return Err(bad(format!(
                    "nw_tos '{}' has ECN bits set: nw_tos matches the DSCP bits only (use a multiple of 4, or ip_dscp/nw_ecn)",
                    t.value
                )));
            }
            (Field::NwTos, v, m & 0xfc)
        }
        Store::IpDscp => (Field::IpDscp, v, m & 0x3f),
        Store::DlVlan => {
            if m == 0 {
                (Field::VlanTci, 0, 0)
            } else if v == 0xffff {
                (Field::VlanTci, 0, 0xffff)
            } else if v <= 0xfff {
                (Field::VlanTci, 0x1000 | v, 0x1fff)
            } else {
                return Err(bad(format!(
                    "dl_vlan '{}' out of range (0..4095, or 0xffff for no VLAN tag)",
                    t.value
                )));
            }
        }
        Store::DlVlanPcp => {
            if m == 0 {
                (Field::VlanTci, 0, 0)
            } else {
                (Field::VlanTci, 0x1000 | (v << 13), 0xf000)
            }
        }
        Store::Icmp(f) => (f, v, if m == 0 { 0 } else { 0xffff }),
    })
}

fn unknown_field(t: &Tok<'_>, line: &str) -> PErr {
    let msg = fields::unsupported_field_hint(t.key)
        .unwrap_or_else(|| format!("unknown field '{}'", t.key));
    PErr::new(t.key_off, t.text(line), msg)
}

fn u16_kw(t: &Tok<'_>) -> Result<u16, PErr> {
    match parse_u128(t.value) {
        Ok(v) if v <= 0xffff => Ok(v as u16),
        Ok(_) | Err(IntErr::TooBig) => Err(PErr::new(
            t.value_off,
            t.value,
            format!("{} '{}' too big (max 65535)", t.key, t.value),
        )),
        Err(IntErr::Syntax) => Err(PErr::new(
            t.value_off,
            t.value,
            format!("bad {} '{}'", t.key, t.value),
        )),
    }
}

fn u64_str(s: &str) -> Option<u64> {
    if s == "-1" {
        return Some(u64::MAX);
    }
    parse_u128(s).ok().and_then(|v| u64::try_from(v).ok())
}

/// Parses `field=value` / `field[a..b]=value` into the builder.
fn add_field(
    mb: &mut MatchBuilder,
    t: &Tok<'_>,
    line: &str,
    names: &dyn PortNames,
    exact_only: bool,
) -> Result<(), PErr> {
    if let Some(mf) = match_field(t.key) {
        if t.delim.is_none() || t.value.is_empty() {
            return Err(PErr::new(
                t.key_off,
                t.text(line),
                format!("field '{}' needs a value ('{}=VALUE')", t.key, t.key),
            ));
        }
        let (v, m) = parse_field_value(&mf, t.value, names)
            .map_err(|e| PErr::new(t.value_off, t.value, e.to_string()))?;
        if exact_only && m != full_bits(mf.bits) && mf.kind != fields::Kind::Frag {
            return Err(PErr::new(
                t.value_off,
                t.value,
                format!(
                    "a trace flow needs an exact value for {} ('{}')",
                    mf.name, t.value
                ),
            ));
        }
        let (f, v, m) = store(&mf, v, m, t)?;
        return mb.add(mf.name, f, v, m, t, line, true, mf.prereq);
    }
    if t.key.contains('[') {
        let sf = parse_subfield(t, t.key).map_err(|mut e| {
            e.off = t.key_off;
            e
        })?;
        let (vs, ms) = match t.value.split_once('/') {
            Some((v, m)) if !exact_only => (v, Some(m)),
            _ => (t.value, None),
        };
        let width_mask = full_bits(sf.n_bits);
        let int = |s: &str| match parse_u128(s) {
            Ok(v) if v <= width_mask => Ok(v),
            _ => Err(PErr::new(
                t.value_off,
                t.value,
                format!("bad value '{}' for {}-bit {}", t.value, sf.n_bits, t.key),
            )),
        };
        let v = int(vs)?;
        let m = match ms {
            Some(ms) => int(ms)?,
            None => width_mask,
        };
        let name = sf.field.name();
        return mb.add(
            name,
            sf.field,
            (v & m) << sf.ofs,
            m << sf.ofs,
            t,
            line,
            true,
            field_prereq(sf.field),
        );
    }
    Err(unknown_field(t, line))
}

fn full_bits(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

fn parse_flow_inner(line: &str, cmd: FlowCmd, names: &dyn PortNames) -> Result<FlowSpec, PErr> {
    parse_flow_at(line, 0, cmd, names)
}

fn parse_flow_at(
    line: &str,
    start: usize,
    cmd: FlowCmd,
    names: &dyn PortNames,
) -> Result<FlowSpec, PErr> {
    let mut spec = FlowSpec {
        table: if cmd == FlowCmd::Add { 0 } else { ALL_TABLES },
        ..FlowSpec::default()
    };
    let mut mb = MatchBuilder::default();
    let mut actions: Option<(&str, usize)> = None;
    let mut cookie_seen = false;
    let mut lx = Lexer::for_flow(line.get(start..).unwrap_or(""), start);
    let not_here = |t: &Tok<'_>| {
        PErr::new(
            t.key_off,
            t.text(line),
            format!("'{}' is not allowed in {}", t.key, cmd.name()),
        )
    };
    let need_value = |t: &Tok<'_>| {
        if t.value.is_empty() {
            Err(PErr::new(
                t.key_off,
                t.text(line),
                format!("'{}' needs a value", t.key),
            ))
        } else {
            Ok(())
        }
    };
    while let Some(t) = lx.next_tok() {
        let t = t?;
        if t.key == "actions" || t.key == "action" {
            if !cmd.has_actions() {
                return Err(PErr::new(
                    t.key_off,
                    t.text(line),
                    format!("actions are not allowed in {}", cmd.name()),
                ));
            }
            if t.delim != Some('=') {
                return Err(PErr::new(
                    t.key_off,
                    t.text(line),
                    format!("expected 'actions=' but found '{}'", t.text(line)),
                ));
            }
            actions = Some((t.value, t.value_off));
            lx.finish();
            break;
        }
        if mb.add_protocol(&t, line, false)? {
            continue;
        }
        match t.key {
            "send_flow_rem" | "check_overlap" | "reset_counts" | "no_packet_counts"
            | "no_byte_counts" => {
                if !cmd.has_actions() {
                    return Err(not_here(&t));
                }
                if t.delim.is_some() {
                    return Err(PErr::new(
                        t.key_off,
                        t.text(line),
                        format!("'{}' is a flag and takes no value", t.key),
                    ));
                }
                let f = &mut spec.flags;
                match t.key {
                    "send_flow_rem" => f.send_flow_rem = true,
                    "check_overlap" => f.check_overlap = true,
                    "reset_counts" => f.reset_counts = true,
                    "no_packet_counts" => f.no_packet_counts = true,
                    _ => f.no_byte_counts = true,
                }
            }
            "no_readonly_table" | "allow_hidden_fields" => {}
            "duration" | "n_packets" | "n_bytes" | "idle_age" | "hard_age" => {
                // dump-flows output fed back in: statistics are ignored.
            }
            "table" => {
                need_value(&t)?;
                let v = match parse_u128(t.value) {
                    Ok(v) if v <= 255 => v as u8,
                    _ => {
                        return Err(PErr::new(
                            t.value_off,
                            t.value,
                            format!("bad table '{}' (0..254)", t.value),
                        ))
                    }
                };
                if v == ALL_TABLES && cmd == FlowCmd::Add {
                    return Err(PErr::new(
                        t.value_off,
                        t.value,
                        "table 255 means all tables and cannot be used in add-flow (0..254)",
                    ));
                }
                spec.table = v;
            }
            "priority" => {
                if !cmd.has_priority() {
                    return Err(PErr::new(
                        t.key_off,
                        t.text(line),
                        format!("'priority' is not allowed in {} (use --strict)", cmd.name()),
                    ));
                }
                need_value(&t)?;
                spec.priority = u16_kw(&t)?;
            }
            "idle_timeout" | "hard_timeout" => {
                if !cmd.has_actions() {
                    return Err(not_here(&t));
                }
                need_value(&t)?;
                let v = u16_kw(&t)?;
                if t.key == "idle_timeout" {
                    spec.idle_timeout = v;
                } else {
                    spec.hard_timeout = v;
                }
            }
            "importance" => {
                if cmd != FlowCmd::Add {
                    return Err(not_here(&t));
                }
                need_value(&t)?;
                spec.importance = u16_kw(&t)?;
            }
            "out_port" => {
                if !cmd.has_out_port() {
                    return Err(not_here(&t));
                }
                need_value(&t)?;
                let p = parse_port(t.value, names).map_err(|e| {
                    PErr::new(
                        t.value_off,
                        t.value,
                        match e {
                            PortErr::OutOfRange => format!("port '{}' out of range", t.value),
                            PortErr::Unknown => format!("unknown port '{}'", t.value),
                        },
                    )
                })?;
                spec.out_port = (p != ofp_port::NONE).then_some(p);
            }
            "out_group" => {
                return Err(PErr::new(
                    t.key_off,
                    t.text(line),
                    "unsupported keyword 'out_group' (vswitch has no groups)",
                ))
            }
            "cookie" => {
                need_value(&t)?;
                if cookie_seen {
                    // A FlowSpec has one cookie: it cannot both select
                    // flows by cookie and give them a new one.
                    return Err(PErr::new(
                        t.key_off,
                        t.text(line),
                        format!("cookie given more than once ('{}')", t.text(line)),
                    ));
                }
                cookie_seen = true;
                let bad = || PErr::new(t.value_off, t.value, format!("bad cookie '{}'", t.value));
                match t.value.split_once('/') {
                    Some((v, m)) => {
                        if cmd == FlowCmd::Add {
                            return Err(PErr::new(
                                t.value_off,
                                t.value,
                                format!("add-flow cannot use a cookie mask ('{}')", t.value),
                            ));
                        }
                        let v = u64_str(v).ok_or_else(bad)?;
                        let m = u64_str(m).ok_or_else(bad)?;
                        spec.cookie = v & m;
                        spec.cookie_mask = m;
                    }
                    None => {
                        if !cmd.has_actions() {
                            return Err(PErr::new(
                                t.value_off,
                                t.value,
                                format!(
                                    "cannot set a cookie in {} (to match on a cookie, give a mask, e.g. cookie={}/-1)",
                                    cmd.name(),
                                    t.value
                                ),
                            ));
                        }
                        spec.cookie = u64_str(t.value).ok_or_else(bad)?;
                        spec.cookie_mask = 0;
                    }
                }
            }
            _ => add_field(&mut mb, &t, line, names, false)?,
        }
    }
    mb.check_prereqs()?;
    spec.matches = mb.m;
    if cmd.has_actions() {
        let (s, off) = actions.ok_or_else(|| {
            PErr::new(
                line.len(),
                "",
                format!(
                    "missing 'actions=' ({} needs actions; write actions=drop to drop)",
                    cmd.name()
                ),
            )
        })?;
        let cx = ActCtx {
            line,
            names,
            matches: Some(&spec.matches),
            table: (spec.table != ALL_TABLES).then_some(spec.table),
        };
        spec.actions = parse_action_list(s, off, &cx)?;
    }
    Ok(spec)
}

/// Canonical name of a shorthand, for conflict messages.
fn protocol_name(key: &str) -> &'static str {
    match key {
        "ip" | "ipv4" | "ip4" => "ip",
        "ipv6" | "ip6" => "ipv6",
        "icmp" | "icmp4" => "icmp",
        "icmp6" => "icmp6",
        "tcp" | "tcp4" => "tcp",
        "tcp6" => "tcp6",
        "udp" | "udp4" => "udp",
        "udp6" => "udp6",
        "sctp" | "sctp4" => "sctp",
        "sctp6" => "sctp6",
        "arp" => "arp",
        _ => "rarp",
    }
}

fn parse_trace_inner(line: &str, names: &dyn PortNames) -> Result<FlowKey, PErr> {
    let mut mb = MatchBuilder {
        exact: true,
        ..MatchBuilder::default()
    };
    let mut lx = Lexer::new(line, 0);
    let mut in_port_given = false;
    while let Some(t) = lx.next_tok() {
        let t = t?;
        if mb.add_protocol(&t, line, true)? {
            continue;
        }
        // Prerequisites must come first in a trace flow (Open vSwitch's
        // parse_ofp_exact_flow() checks each field as it goes).
        let prereq = match_field(t.key).map(|mf| mf.prereq).or_else(|| {
            t.key
                .contains('[')
                .then(|| parse_subfield(&t, t.key).ok())
                .flatten()
                .map(|sf| field_prereq(sf.field))
        });
        if let Some(p) = prereq {
            if !prereq_ok(p, &mb.m) {
                return Err(prereq_err(t.key_off, t.text(line), t.key, p));
            }
        }
        if match_field(t.key).is_some_and(|mf| mf.name == "in_port") {
            in_port_given = true;
        }
        add_field(&mut mb, &t, line, names, true)?;
    }
    let mut key = mb.m.key;
    if !in_port_given {
        key.set_in_port(ofp_port::NONE);
    }
    Ok(key)
}
