//! Whole messages: [`Message`] is the typed form of every message the
//! switch accepts (and of the simple ones it sends), keyed by version and
//! type (OpenFlow 1.0 and 1.1+ number types differently) and, for
//! experimenter messages, by vendor and subtype.

use super::bundle::{BundleAdd, BundleCtrl};
use super::features::{Role, SwitchConfig};
use super::flow_mod::FlowModMsg;
use super::hello::Hello;
use super::multipart::MultipartRequest;
use super::packet::PacketOut;
use super::tlv::{self, TlvTableMod};
use super::{header, Error, ErrorMsg, Header, Rd, Result, Version, Wr, NX_VENDOR, ONF_VENDOR};

/// Nicira message subtypes.
mod nxt {
    pub const ROLE_REQUEST: u32 = 10;
    pub const SET_FLOW_FORMAT: u32 = 12;
    pub const FLOW_MOD: u32 = 13;
    pub const FLOW_MOD_TABLE_ID: u32 = 15;
    pub const SET_PACKET_IN_FORMAT: u32 = 16;
    pub const FLOW_AGE: u32 = 18;
    pub const SET_ASYNC_CONFIG: u32 = 19;
    pub const SET_CONTROLLER_ID: u32 = 20;
}

/// ONF experimenter types (OpenFlow 1.3 bundles).
const ONFT_BUNDLE_CONTROL: u32 = 2300;
const ONFT_BUNDLE_ADD: u32 = 2301;

/// `NXT_SET_FLOW_FORMAT` values.
pub const NXFF_OPENFLOW10: u32 = 0;
/// NXM flow format.
pub const NXFF_NXM: u32 = 2;

/// Session state decoding depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ctx {
    /// `NXT_FLOW_MOD_TABLE_ID` enabled: 1.0 flow-mod commands carry a table.
    pub table_id_ext: bool,
}

/// A message the switch understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// HELLO.
    Hello(Hello),
    /// ERROR.
    Error(ErrorMsg),
    /// ECHO_REQUEST with its payload.
    EchoRequest(Vec<u8>),
    /// ECHO_REPLY with its payload.
    EchoReply(Vec<u8>),
    /// FEATURES_REQUEST.
    FeaturesRequest,
    /// GET_CONFIG_REQUEST.
    GetConfigRequest,
    /// SET_CONFIG.
    SetConfig(SwitchConfig),
    /// PACKET_OUT.
    PacketOut(PacketOut),
    /// FLOW_MOD (OpenFlow or Nicira).
    FlowMod(FlowModMsg),
    /// GROUP_MOD (refused: no group table yet).
    GroupMod,
    /// METER_MOD (refused: no meters yet).
    MeterMod,
    /// PORT_MOD (refused).
    PortMod,
    /// TABLE_MOD (accepted, nothing to configure).
    TableMod,
    /// A multipart or statistics request.
    MultipartRequest(MultipartRequest),
    /// BARRIER_REQUEST.
    BarrierRequest,
    /// BARRIER_REPLY.
    BarrierReply,
    /// ROLE_REQUEST.
    RoleRequest(Role),
    /// GET_ASYNC_REQUEST.
    GetAsyncRequest,
    /// SET_ASYNC (accepted; every event is sent).
    SetAsync,
    /// BUNDLE_CONTROL (1.4+, or the ONF extension in 1.3).
    BundleControl(BundleCtrl),
    /// BUNDLE_ADD_MESSAGE.
    BundleAdd(BundleAdd),
    /// `NXT_SET_FLOW_FORMAT`.
    SetFlowFormat(u32),
    /// `NXT_FLOW_MOD_TABLE_ID`.
    FlowModTableId(bool),
    /// `NXT_SET_PACKET_IN_FORMAT`.
    SetPacketInFormat(u32),
    /// Nicira messages accepted and ignored (`NXT_FLOW_AGE`,
    /// `NXT_SET_CONTROLLER_ID`, `NXT_SET_ASYNC_CONFIG`).
    NxIgnored(u32),
    /// Nicira role request (`NXT_ROLE_REQUEST`).
    NxRoleRequest(u32),
    /// `NXT_TLV_TABLE_MOD`.
    TlvTableMod(TlvTableMod),
    /// `NXT_TLV_TABLE_REQUEST`.
    TlvTableRequest,
    /// `NXT_CT_FLUSH_ZONE` with the zone.
    CtFlushZone(u16),
}

/// OpenFlow message type numbers, which differ between 1.0 and 1.1+.
#[derive(Debug, Clone, Copy)]
struct Types {
    packet_out: u8,
    flow_mod: u8,
    group_mod: Option<u8>,
    port_mod: u8,
    table_mod: Option<u8>,
    mp_request: u8,
    mp_reply: u8,
    barrier_request: u8,
    barrier_reply: u8,
}

const T10: Types = Types {
    packet_out: 13,
    flow_mod: 14,
    group_mod: None,
    port_mod: 15,
    table_mod: None,
    mp_request: 16,
    mp_reply: 17,
    barrier_request: 18,
    barrier_reply: 19,
};
const T11: Types = Types {
    packet_out: 13,
    flow_mod: 14,
    group_mod: Some(15),
    port_mod: 16,
    table_mod: Some(17),
    mp_request: 18,
    mp_reply: 19,
    barrier_request: 20,
    barrier_reply: 21,
};

fn types(v: Version) -> Types {
    if v == Version::V10 {
        T10
    } else {
        T11
    }
}

/// OFPT_HELLO.
pub const HELLO: u8 = 0;
/// OFPT_ERROR.
pub const ERROR: u8 = 1;
/// OFPT_ECHO_REQUEST.
pub const ECHO_REQUEST: u8 = 2;
/// OFPT_ECHO_REPLY.
pub const ECHO_REPLY: u8 = 3;
/// OFPT_VENDOR / OFPT_EXPERIMENTER.
pub const EXPERIMENTER: u8 = 4;
/// OFPT_FEATURES_REQUEST.
pub const FEATURES_REQUEST: u8 = 5;
/// OFPT_FEATURES_REPLY.
pub const FEATURES_REPLY: u8 = 6;
/// OFPT_GET_CONFIG_REQUEST.
pub const GET_CONFIG_REQUEST: u8 = 7;
/// OFPT_GET_CONFIG_REPLY.
pub const GET_CONFIG_REPLY: u8 = 8;
/// OFPT_SET_CONFIG.
pub const SET_CONFIG: u8 = 9;
/// OFPT_PACKET_IN.
pub const PACKET_IN: u8 = 10;
/// OFPT_FLOW_REMOVED.
pub const FLOW_REMOVED: u8 = 11;
/// OFPT_PORT_STATUS.
pub const PORT_STATUS: u8 = 12;
/// OFPT_ROLE_REQUEST (1.2+).
pub const ROLE_REQUEST: u8 = 24;
/// OFPT_ROLE_REPLY (1.2+).
pub const ROLE_REPLY: u8 = 25;
/// OFPT_GET_ASYNC_REQUEST (1.3+).
pub const GET_ASYNC_REQUEST: u8 = 26;
/// OFPT_GET_ASYNC_REPLY (1.3+).
pub const GET_ASYNC_REPLY: u8 = 27;
/// OFPT_SET_ASYNC (1.3+).
pub const SET_ASYNC: u8 = 28;
/// OFPT_METER_MOD (1.3+).
pub const METER_MOD: u8 = 29;
/// OFPT_BUNDLE_CONTROL (1.4+).
pub const BUNDLE_CONTROL: u8 = 33;
/// OFPT_BUNDLE_ADD_MESSAGE (1.4+).
pub const BUNDLE_ADD_MESSAGE: u8 = 34;

/// Multipart request/reply and barrier type numbers for `v`.
pub fn mp_reply_type(v: Version) -> u8 {
    types(v).mp_reply
}

/// BARRIER_REPLY's type number in `v`.
pub fn barrier_reply_type(v: Version) -> u8 {
    types(v).barrier_reply
}

impl Message {
    /// Decodes one whole message (`b` is exactly the message, header
    /// included) of negotiated version `v`. HELLO is accepted in any
    /// version.
    pub fn decode(b: &[u8], v: Version, ctx: Ctx) -> Result<(Header, Message)> {
        let h = Header::parse(b)?;
        if usize::from(h.length) != b.len() {
            return Err(Error::BadLen);
        }
        let body = &b[header::LEN..];
        if h.msg_type == HELLO {
            return Ok((h, Message::Hello(Hello::parse(h.version, body)?)));
        }
        if h.version != v.wire() {
            return Err(Error::BadVersion(h.version));
        }
        let t = types(v);
        let v10 = v == Version::V10;
        let m = match h.msg_type {
            ERROR => Message::Error(ErrorMsg::parse(body)?),
            ECHO_REQUEST => Message::EchoRequest(body.to_vec()),
            ECHO_REPLY => Message::EchoReply(body.to_vec()),
            FEATURES_REQUEST => Message::FeaturesRequest,
            GET_CONFIG_REQUEST => Message::GetConfigRequest,
            SET_CONFIG => Message::SetConfig(SwitchConfig::parse(body)?),
            EXPERIMENTER => decode_experimenter(body, v, ctx)?,
            x if x == t.packet_out => Message::PacketOut(PacketOut::parse(body, v)?),
            x if x == t.flow_mod => Message::FlowMod(if v10 {
                FlowModMsg::parse10(body, ctx.table_id_ext)?
            } else {
                FlowModMsg::parse11(body, v)?
            }),
            x if Some(x) == t.group_mod => Message::GroupMod,
            x if x == t.port_mod => Message::PortMod,
            x if Some(x) == t.table_mod => Message::TableMod,
            x if x == t.mp_request => {
                Message::MultipartRequest(MultipartRequest::parse(body, v)?.0)
            }
            x if x == t.barrier_request => Message::BarrierRequest,
            x if x == t.barrier_reply => Message::BarrierReply,
            ROLE_REQUEST if !v10 => Message::RoleRequest(Role::parse(body)?),
            GET_ASYNC_REQUEST if !v10 => Message::GetAsyncRequest,
            SET_ASYNC if !v10 => Message::SetAsync,
            METER_MOD if !v10 => Message::MeterMod,
            BUNDLE_CONTROL if v >= Version::V14 => Message::BundleControl(BundleCtrl::parse(body)?),
            BUNDLE_ADD_MESSAGE if v >= Version::V14 => Message::BundleAdd(BundleAdd::parse(body)?),
            x => return Err(Error::BadType(x)),
        };
        Ok((h, m))
    }

    /// Encodes the message with transaction id `xid` in version `v`.
    /// Messages only a switch receives are encoded too, so tests can play
    /// the controller.
    pub fn encode(&self, v: Version, xid: u32) -> Vec<u8> {
        let t = types(v);
        let mut out = Vec::with_capacity(64);
        Header::default().emit(&mut out);
        let typ = match self {
            Message::Hello(hl) => {
                hl.emit(&mut out);
                HELLO
            }
            Message::Error(e) => {
                e.emit(&mut out);
                ERROR
            }
            Message::EchoRequest(d) => {
                out.extend_from_slice(d);
                ECHO_REQUEST
            }
            Message::EchoReply(d) => {
                out.extend_from_slice(d);
                ECHO_REPLY
            }
            Message::FeaturesRequest => FEATURES_REQUEST,
            Message::GetConfigRequest => GET_CONFIG_REQUEST,
            Message::SetConfig(c) => {
                c.emit(&mut out);
                SET_CONFIG
            }
            Message::PacketOut(p) => {
                p.emit(&mut out, v);
                t.packet_out
            }
            Message::FlowMod(f) => {
                f.emit(&mut out, v);
                if f.format == super::flow_mod::MatchFormat::Nxm {
                    EXPERIMENTER
                } else {
                    t.flow_mod
                }
            }
            Message::GroupMod => t.group_mod.unwrap_or(15),
            Message::MeterMod => METER_MOD,
            Message::PortMod => t.port_mod,
            Message::TableMod => t.table_mod.unwrap_or(17),
            Message::MultipartRequest(r) => {
                r.emit(&mut out, v);
                t.mp_request
            }
            Message::BarrierRequest => t.barrier_request,
            Message::BarrierReply => t.barrier_reply,
            Message::RoleRequest(r) => {
                r.emit(&mut out);
                ROLE_REQUEST
            }
            Message::GetAsyncRequest => GET_ASYNC_REQUEST,
            Message::SetAsync => SET_ASYNC,
            Message::BundleControl(c) => {
                if v < Version::V14 {
                    out.u32(ONF_VENDOR);
                    out.u32(ONFT_BUNDLE_CONTROL);
                }
                c.emit(&mut out);
                if v < Version::V14 {
                    EXPERIMENTER
                } else {
                    BUNDLE_CONTROL
                }
            }
            Message::BundleAdd(a) => {
                if v < Version::V14 {
                    out.u32(ONF_VENDOR);
                    out.u32(ONFT_BUNDLE_ADD);
                }
                a.emit(&mut out);
                if v < Version::V14 {
                    EXPERIMENTER
                } else {
                    BUNDLE_ADD_MESSAGE
                }
            }
            Message::SetFlowFormat(f) => {
                nx_head(&mut out, nxt::SET_FLOW_FORMAT);
                out.u32(*f);
                EXPERIMENTER
            }
            Message::FlowModTableId(on) => {
                nx_head(&mut out, nxt::FLOW_MOD_TABLE_ID);
                out.u8(u8::from(*on));
                out.zeros(7);
                EXPERIMENTER
            }
            Message::SetPacketInFormat(f) => {
                nx_head(&mut out, nxt::SET_PACKET_IN_FORMAT);
                out.u32(*f);
                EXPERIMENTER
            }
            Message::NxIgnored(s) => {
                nx_head(&mut out, *s);
                if *s != nxt::FLOW_AGE {
                    out.zeros(8);
                }
                EXPERIMENTER
            }
            Message::NxRoleRequest(r) => {
                nx_head(&mut out, nxt::ROLE_REQUEST);
                out.u32(*r);
                EXPERIMENTER
            }
            Message::TlvTableMod(m) => {
                nx_head(&mut out, tlv::NXT_TLV_TABLE_MOD);
                m.emit(&mut out);
                EXPERIMENTER
            }
            Message::TlvTableRequest => {
                nx_head(&mut out, tlv::NXT_TLV_TABLE_REQUEST);
                EXPERIMENTER
            }
            Message::CtFlushZone(z) => {
                nx_head(&mut out, tlv::NXT_CT_FLUSH_ZONE);
                out.zeros(6);
                out.u16(*z);
                EXPERIMENTER
            }
        };
        finish(&mut out, v, typ, xid);
        out
    }
}

fn nx_head(out: &mut Vec<u8>, sub: u32) {
    out.u32(NX_VENDOR);
    out.u32(sub);
}

/// Fills in the header of a message built after an 8-byte placeholder.
pub fn finish(out: &mut [u8], v: Version, typ: u8, xid: u32) {
    let len = out.len() as u16;
    if out.len() >= header::LEN {
        out[0] = v.wire();
        out[1] = typ;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        out[4..8].copy_from_slice(&xid.to_be_bytes());
    }
}

/// Starts a message: an 8-byte header placeholder to [`finish`].
pub fn start() -> Vec<u8> {
    vec![0; header::LEN]
}

fn decode_experimenter(body: &[u8], v: Version, ctx: Ctx) -> Result<Message> {
    let mut r = Rd::new(body);
    let vendor = r.u32()?;
    let sub = r.u32()?;
    match vendor {
        NX_VENDOR => Ok(match sub {
            nxt::SET_FLOW_FORMAT => {
                let f = r.u32()?;
                if f != NXFF_OPENFLOW10 && f != NXFF_NXM {
                    return Err(Error::BadArgument);
                }
                Message::SetFlowFormat(f)
            }
            nxt::FLOW_MOD => Message::FlowMod(FlowModMsg::parse_nx(r.rest(), ctx.table_id_ext)?),
            nxt::FLOW_MOD_TABLE_ID => Message::FlowModTableId(r.u8()? != 0),
            nxt::SET_PACKET_IN_FORMAT => Message::SetPacketInFormat(r.u32()?),
            nxt::ROLE_REQUEST => Message::NxRoleRequest(r.u32()?),
            tlv::NXT_TLV_TABLE_MOD => Message::TlvTableMod(TlvTableMod::parse(r.rest())?),
            tlv::NXT_TLV_TABLE_REQUEST => Message::TlvTableRequest,
            tlv::NXT_CT_FLUSH_ZONE => Message::CtFlushZone(tlv::parse_ct_flush_zone(r.rest())?),
            nxt::FLOW_AGE | nxt::SET_CONTROLLER_ID | nxt::SET_ASYNC_CONFIG => {
                Message::NxIgnored(sub)
            }
            s => return Err(Error::BadSubtype(s)),
        }),
        ONF_VENDOR if v == Version::V13 => Ok(match sub {
            ONFT_BUNDLE_CONTROL => Message::BundleControl(BundleCtrl::parse(r.rest())?),
            ONFT_BUNDLE_ADD => Message::BundleAdd(BundleAdd::parse(r.rest())?),
            s => return Err(Error::BadSubtype(s)),
        }),
        other => Err(Error::BadExperimenter(other)),
    }
}
