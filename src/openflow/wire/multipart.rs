//! Multipart (OpenFlow 1.3+) and statistics (1.0, plus Nicira's NXST)
//! requests and replies: DESC, FLOW, AGGREGATE, TABLE, PORT_STATS,
//! PORT_DESC and TABLE_FEATURES.

use super::flow_mod::MatchFormat;
use super::{action, match10, oxm, port_from_of11, Error, Rd, Result, Version, Wr};
use crate::flow::{Action, Match};

/// OFPMP_DESC.
pub const DESC: u16 = 0;
/// OFPMP_FLOW.
pub const FLOW: u16 = 1;
/// OFPMP_AGGREGATE.
pub const AGGREGATE: u16 = 2;
/// OFPMP_TABLE.
pub const TABLE: u16 = 3;
/// OFPMP_PORT_STATS.
pub const PORT_STATS: u16 = 4;
/// OFPMP_TABLE_FEATURES (1.3+).
pub const TABLE_FEATURES: u16 = 12;
/// OFPMP_PORT_DESC (1.3+; Open vSwitch's OFPST 1.0 extension uses 13 too).
pub const PORT_DESC: u16 = 13;
/// Vendor/experimenter statistics.
pub const EXPERIMENTER: u16 = 0xffff;
/// OFPSF_REPLY_MORE / OFPMPF_REPLY_MORE.
pub const REPLY_MORE: u16 = 1;

/// A flow or aggregate statistics filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStatsRequest {
    /// Match encoding of the request (and of the reply).
    pub format: MatchFormat,
    /// Table (255 = all).
    pub table_id: u8,
    /// Out-port filter (1.0 numbering; NONE = any).
    pub out_port: u32,
    /// Cookie filter.
    pub cookie: u64,
    /// Cookie mask (0 = any).
    pub cookie_mask: u64,
    /// Flows within this match.
    pub matches: Match,
}

/// A multipart/statistics request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartRequest {
    /// DESC.
    Desc,
    /// FLOW (OFPST_FLOW or NXST_FLOW).
    Flow(FlowStatsRequest),
    /// AGGREGATE (OFPST_AGGREGATE or NXST_AGGREGATE).
    Aggregate(FlowStatsRequest),
    /// TABLE.
    Table,
    /// PORT_STATS for one port or all (NONE / ANY).
    PortStats(u32),
    /// PORT_DESC.
    PortDesc,
    /// TABLE_FEATURES (only the query form, with an empty body, is
    /// supported).
    TableFeatures,
}

const NXST_FLOW: u32 = 0;
const NXST_AGGREGATE: u32 = 1;

impl MultipartRequest {
    /// Parses a request body (after the OpenFlow header) of version `v`;
    /// returns the request, its type and flags.
    pub fn parse(body: &[u8], v: Version) -> Result<(MultipartRequest, u16)> {
        let mut r = Rd::new(body);
        let typ = r.u16()?;
        let _flags = r.u16()?;
        if v != Version::V10 {
            r.skip(4)?;
        }
        let req = match typ {
            DESC => MultipartRequest::Desc,
            FLOW | AGGREGATE => {
                let f = if v == Version::V10 {
                    let matches = match10::decode(&mut r)?;
                    let table_id = r.u8()?;
                    r.skip(1)?;
                    let out_port = u32::from(r.u16()?);
                    FlowStatsRequest {
                        format: MatchFormat::Of10,
                        table_id,
                        out_port,
                        cookie: 0,
                        cookie_mask: 0,
                        matches,
                    }
                } else {
                    let table_id = r.u8()?;
                    r.skip(3)?;
                    let out_port = port_from_of11(r.u32()?);
                    let _out_group = r.u32()?;
                    r.skip(4)?;
                    let cookie = r.u64()?;
                    let cookie_mask = r.u64()?;
                    let d = oxm::decode_ofp_match(&mut r)?;
                    FlowStatsRequest {
                        format: MatchFormat::Oxm,
                        table_id,
                        out_port,
                        cookie,
                        cookie_mask,
                        matches: d.matches,
                    }
                };
                if typ == FLOW {
                    MultipartRequest::Flow(f)
                } else {
                    MultipartRequest::Aggregate(f)
                }
            }
            TABLE => MultipartRequest::Table,
            PORT_STATS => {
                let p = if v == Version::V10 {
                    u32::from(r.u16()?)
                } else {
                    port_from_of11(r.u32()?)
                };
                MultipartRequest::PortStats(p)
            }
            PORT_DESC => MultipartRequest::PortDesc,
            TABLE_FEATURES if v != Version::V10 => {
                if !r.is_empty() {
                    // Setting table features is not supported.
                    return Err(Error::BadMultipart(typ));
                }
                MultipartRequest::TableFeatures
            }
            EXPERIMENTER => {
                let vendor = r.u32()?;
                if vendor != super::NX_VENDOR {
                    return Err(Error::BadExperimenter(vendor));
                }
                let sub = r.u32()?;
                if v == Version::V10 {
                    r.skip(4)?;
                }
                match sub {
                    NXST_FLOW | NXST_AGGREGATE => {
                        let out_port = u32::from(r.u16()?);
                        let match_len = usize::from(r.u16()?);
                        let table_id = r.u8()?;
                        r.skip(3)?;
                        let d = oxm::decode_nxm_padded(&mut r, match_len)?;
                        let f = FlowStatsRequest {
                            format: MatchFormat::Nxm,
                            table_id,
                            out_port,
                            cookie: d.cookie,
                            cookie_mask: d.cookie_mask,
                            matches: d.matches,
                        };
                        if sub == NXST_FLOW {
                            MultipartRequest::Flow(f)
                        } else {
                            MultipartRequest::Aggregate(f)
                        }
                    }
                    s => return Err(Error::BadSubtype(s)),
                }
            }
            t => return Err(Error::BadMultipart(t)),
        };
        Ok((req, typ))
    }

    /// Appends the request body (for clients and tests).
    pub fn emit(&self, out: &mut Vec<u8>, v: Version) {
        let head = |out: &mut Vec<u8>, t: u16| {
            out.u16(t);
            out.u16(0);
            if v != Version::V10 {
                out.zeros(4);
            }
        };
        match self {
            MultipartRequest::Desc => head(out, DESC),
            MultipartRequest::Table => head(out, TABLE),
            MultipartRequest::PortDesc => head(out, PORT_DESC),
            MultipartRequest::TableFeatures => head(out, TABLE_FEATURES),
            MultipartRequest::PortStats(p) => {
                head(out, PORT_STATS);
                if v == Version::V10 {
                    out.u16(*p as u16);
                    out.zeros(6);
                } else {
                    out.u32(super::port_to_of11(*p));
                    out.zeros(4);
                }
            }
            MultipartRequest::Flow(f) | MultipartRequest::Aggregate(f) => {
                let agg = matches!(self, MultipartRequest::Aggregate(_));
                match f.format {
                    MatchFormat::Nxm => {
                        head(out, EXPERIMENTER);
                        out.u32(super::NX_VENDOR);
                        out.u32(if agg { NXST_AGGREGATE } else { NXST_FLOW });
                        if v == Version::V10 {
                            out.zeros(4);
                        }
                        out.u16(f.out_port as u16);
                        let at = out.len();
                        out.u16(0);
                        out.u8(f.table_id);
                        out.zeros(3);
                        let ml = oxm::encode_nxm_padded(out, &f.matches, f.cookie, f.cookie_mask);
                        out.set_u16(at, ml);
                    }
                    MatchFormat::Of10 => {
                        head(out, if agg { AGGREGATE } else { FLOW });
                        match10::encode(out, &f.matches);
                        out.u8(f.table_id);
                        out.u8(0);
                        out.u16(f.out_port as u16);
                    }
                    MatchFormat::Oxm => {
                        head(out, if agg { AGGREGATE } else { FLOW });
                        out.u8(f.table_id);
                        out.zeros(3);
                        out.u32(super::port_to_of11(f.out_port));
                        out.u32(u32::MAX);
                        out.zeros(4);
                        out.u64(f.cookie);
                        out.u64(f.cookie_mask);
                        oxm::encode_ofp_match(out, &f.matches, 0, 0);
                    }
                }
            }
        }
    }
}

/// One flow in a FLOW reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowStats {
    /// Table.
    pub table_id: u8,
    /// Seconds since added.
    pub duration_sec: u32,
    /// Nanoseconds beyond `duration_sec`.
    pub duration_nsec: u32,
    /// Priority.
    pub priority: u16,
    /// Idle timeout.
    pub idle_timeout: u16,
    /// Hard timeout.
    pub hard_timeout: u16,
    /// OFPFF_* flags (1.3+).
    pub flags: u16,
    /// Importance (1.4+).
    pub importance: u16,
    /// Seconds since last used (NXST only).
    pub idle_age: u32,
    /// Seconds since last modified (NXST only).
    pub hard_age: u32,
    /// Cookie.
    pub cookie: u64,
    /// Packets.
    pub packet_count: u64,
    /// Bytes.
    pub byte_count: u64,
    /// Match.
    pub matches: Match,
    /// Actions.
    pub actions: Vec<Action>,
}

fn age(a: u32) -> u16 {
    // NXST ages are "seconds plus one", saturating at 65535.
    (u64::from(a) + 1).min(65535) as u16
}

impl FlowStats {
    /// Appends one entry in `format` for version `v`.
    pub fn emit(&self, out: &mut Vec<u8>, format: MatchFormat, v: Version) {
        let start = out.len();
        out.u16(0);
        out.u8(self.table_id);
        out.u8(0);
        match format {
            MatchFormat::Of10 => {
                match10::encode(out, &self.matches);
                out.u32(self.duration_sec);
                out.u32(self.duration_nsec);
                out.u16(self.priority);
                out.u16(self.idle_timeout);
                out.u16(self.hard_timeout);
                out.zeros(6);
                out.u64(self.cookie);
                out.u64(self.packet_count);
                out.u64(self.byte_count);
                action::encode_actions(out, &self.actions, Version::V10);
            }
            MatchFormat::Nxm => {
                out.u32(self.duration_sec);
                out.u32(self.duration_nsec);
                out.u16(self.priority);
                out.u16(self.idle_timeout);
                out.u16(self.hard_timeout);
                let at = out.len();
                out.u16(0);
                out.u16(age(self.idle_age));
                out.u16(age(self.hard_age));
                out.u64(self.cookie);
                out.u64(self.packet_count);
                out.u64(self.byte_count);
                let ml = oxm::encode_nxm_padded(out, &self.matches, 0, 0);
                out.set_u16(at, ml);
                action::encode_actions(out, &self.actions, Version::V10);
            }
            MatchFormat::Oxm if v >= Version::V15 => {
                // ofp15_flow_desc: the header above was length, pad2; the
                // table id moves two bytes further.
                out.truncate(start + 2);
                out.zeros(2);
                out.u8(self.table_id);
                out.u8(0);
                out.u16(self.priority);
                out.u16(self.idle_timeout);
                out.u16(self.hard_timeout);
                out.u16(self.flags);
                out.u16(self.importance);
                out.u64(self.cookie);
                oxm::encode_ofp_match(out, &self.matches, 0, 0);
                emit_oxs(
                    out,
                    &[
                        (
                            OXS_DURATION,
                            (u64::from(self.duration_sec) << 32) | u64::from(self.duration_nsec),
                            8,
                        ),
                        (OXS_IDLE_TIME, u64::from(self.idle_age) << 32, 8),
                        (OXS_PACKET_COUNT, self.packet_count, 8),
                        (OXS_BYTE_COUNT, self.byte_count, 8),
                    ],
                );
                action::encode_instructions(out, &self.actions, v);
            }
            MatchFormat::Oxm => {
                out.u32(self.duration_sec);
                out.u32(self.duration_nsec);
                out.u16(self.priority);
                out.u16(self.idle_timeout);
                out.u16(self.hard_timeout);
                out.u16(self.flags);
                if v >= Version::V14 {
                    out.u16(self.importance);
                    out.zeros(2);
                } else {
                    out.zeros(4);
                }
                out.u64(self.cookie);
                out.u64(self.packet_count);
                out.u64(self.byte_count);
                oxm::encode_ofp_match(out, &self.matches, 0, 0);
                action::encode_instructions(out, &self.actions, v);
            }
        }
        let len = out.len() - start;
        out.set_u16(start, len as u16);
    }
}

/// AGGREGATE reply body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregateStats {
    /// Packets.
    pub packet_count: u64,
    /// Bytes.
    pub byte_count: u64,
    /// Flows.
    pub flow_count: u32,
}

// OXS (OpenFlow 1.5 statistics) fields of the basic class 0x8002.
const OXS_DURATION: u8 = 0;
const OXS_IDLE_TIME: u8 = 1;
const OXS_FLOW_COUNT: u8 = 3;
const OXS_PACKET_COUNT: u8 = 4;
const OXS_BYTE_COUNT: u8 = 5;

/// Appends an `ofp_oxs_stat` block: (field, value, value length) TLVs,
/// padded to 8 bytes.
fn emit_oxs(out: &mut Vec<u8>, stats: &[(u8, u64, usize)]) {
    let start = out.len();
    out.u16(0);
    out.u16(0);
    for &(field, value, len) in stats {
        out.u32((0x8002u32 << 16) | (u32::from(field) << 9) | len as u32);
        out.extend_from_slice(&value.to_be_bytes()[8 - len..]);
    }
    let len = out.len() - start;
    out.set_u16(start + 2, len as u16);
    out.pad8(start);
}

impl AggregateStats {
    /// Appends the body for `v` (1.5 carries OXS statistics).
    pub fn emit_for(&self, out: &mut Vec<u8>, v: Version) {
        if v >= Version::V15 {
            emit_oxs(
                out,
                &[
                    (OXS_PACKET_COUNT, self.packet_count, 8),
                    (OXS_BYTE_COUNT, self.byte_count, 8),
                    (OXS_FLOW_COUNT, u64::from(self.flow_count), 4),
                ],
            );
        } else {
            self.emit(out);
        }
    }

    /// Appends the body (1.0-1.4 layout).
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.u64(self.packet_count);
        out.u64(self.byte_count);
        out.u32(self.flow_count);
        out.zeros(4);
    }
}

/// One table in a TABLE reply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Table.
    pub table_id: u8,
    /// Flows in it.
    pub active_count: u32,
    /// Lookups (unknown = 0).
    pub lookup_count: u64,
    /// Hits (unknown = 0).
    pub matched_count: u64,
}

/// Largest number of flows a table can hold that we report.
pub const MAX_ENTRIES: u32 = 1_000_000;

impl TableStats {
    /// Appends one entry.
    pub fn emit(&self, out: &mut Vec<u8>, v: Version) {
        out.u8(self.table_id);
        out.zeros(3);
        if v == Version::V10 {
            out.name("", 32);
            // Wildcards: every OpenFlow 1.0 field.
            out.u32((1 << 22) - 1);
            out.u32(MAX_ENTRIES);
        }
        out.u32(self.active_count);
        out.u64(self.lookup_count);
        out.u64(self.matched_count);
    }
}

/// Table feature properties a reply must carry (instructions, next
/// tables, write/apply actions, match, wildcards, write/apply set-field);
/// Open vSwitch's decoder refuses an entry without them.
const REQUIRED_PROPS: [u16; 8] = [0, 2, 4, 6, 8, 10, 12, 14];

/// Appends one TABLE_FEATURES entry (name empty, so clients fall back to
/// numbers, as for Open vSwitch's unnamed tables); the required properties
/// are present and empty: the entry names the table, it does not
/// enumerate capabilities.
pub fn emit_table_features(out: &mut Vec<u8>, table_id: u8) {
    out.u16(64 + 8 * REQUIRED_PROPS.len() as u16);
    out.u8(table_id);
    out.zeros(5);
    out.name("", 32);
    out.u64(u64::MAX);
    out.u64(u64::MAX);
    out.u32(0);
    out.u32(MAX_ENTRIES);
    for t in REQUIRED_PROPS {
        out.u16(t);
        out.u16(4);
        out.zeros(4);
    }
}

/// Appends a multipart reply header (after the OpenFlow header); for the
/// Nicira stats `nx_subtype` is the NXST type.
pub fn emit_reply_head(
    out: &mut Vec<u8>,
    typ: u16,
    more: bool,
    v: Version,
    nx_subtype: Option<u32>,
) {
    out.u16(if nx_subtype.is_some() {
        EXPERIMENTER
    } else {
        typ
    });
    out.u16(if more { REPLY_MORE } else { 0 });
    if v != Version::V10 {
        out.zeros(4);
    }
    if let Some(s) = nx_subtype {
        out.u32(super::NX_VENDOR);
        out.u32(s);
        if v == Version::V10 {
            out.zeros(4);
        }
    }
}

/// NXST subtype of a request of `format` (None for standard ones).
pub fn nx_subtype(format: MatchFormat, aggregate: bool) -> Option<u32> {
    (format == MatchFormat::Nxm).then_some(if aggregate { NXST_AGGREGATE } else { NXST_FLOW })
}
