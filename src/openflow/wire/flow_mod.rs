//! FLOW_MOD in its three forms: OpenFlow 1.0 (`ofp_match`), Nicira
//! `NXT_FLOW_MOD` (NXM match, 1.0 sessions in NXM flow format) and
//! OpenFlow 1.1+ (OXM match and instructions); and what one becomes for
//! `ofproto`.

use super::{action, match10, oxm, port_from_of11, port_to_of11, Error, Rd, Result, Version, Wr};
use crate::flow::{ofp_port, Action, FlowFlags, FlowSpec, Match};
use crate::ofproto::{FlowMod, FlowModCmd};

/// How the match of a flow message is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchFormat {
    /// OpenFlow 1.0 `ofp_match`.
    Of10,
    /// Nicira NXM (1.0 sessions after `NXT_SET_FLOW_FORMAT`).
    Nxm,
    /// OpenFlow 1.1+ `ofp_match` with OXM.
    Oxm,
}

/// OFPFF_SEND_FLOW_REM.
pub const FF_SEND_FLOW_REM: u16 = 1;
/// OFPFF_CHECK_OVERLAP.
pub const FF_CHECK_OVERLAP: u16 = 2;
/// OFPFF_RESET_COUNTS (1.3+; OFPFF_EMERG in 1.0).
pub const FF_RESET_COUNTS: u16 = 4;
/// OFPFF_NO_PKT_COUNTS (1.3+).
pub const FF_NO_PKT_COUNTS: u16 = 8;
/// OFPFF_NO_BYT_COUNTS (1.3+).
pub const FF_NO_BYT_COUNTS: u16 = 16;

/// A FLOW_MOD as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowModMsg {
    /// Match encoding it came in (or goes out) with.
    pub format: MatchFormat,
    /// OFPFC_* command (0 add, 1 modify, 2 modify strict, 3 delete, 4
    /// delete strict).
    pub command: u8,
    /// Table (255 = all, for modify/delete).
    pub table_id: u8,
    /// Cookie (new cookie for add; filter for modify/delete).
    pub cookie: u64,
    /// Cookie mask for modify/delete (0 = any).
    pub cookie_mask: u64,
    /// Idle timeout, seconds.
    pub idle_timeout: u16,
    /// Hard timeout, seconds.
    pub hard_timeout: u16,
    /// Priority.
    pub priority: u16,
    /// Buffered packet to apply to (0xffffffff = none).
    pub buffer_id: u32,
    /// Out-port filter for delete (OpenFlow 1.0 numbering; 0xffff = any).
    pub out_port: u32,
    /// Out-group filter (1.1+; 0xffffffff = any).
    pub out_group: u32,
    /// OFPFF_* flags.
    pub flags: u16,
    /// Importance (1.4+).
    pub importance: u16,
    /// The match.
    pub matches: Match,
    /// The actions (instructions flattened, see [`action`]).
    pub actions: Vec<Action>,
}

/// Bytes of the fixed part of an OpenFlow 1.1+ FLOW_MOD after the header.
const OF11_FIXED: usize = 40;

impl FlowModMsg {
    /// Decodes an OpenFlow 1.0 FLOW_MOD body (after the header). With
    /// `table_id_ext` (NXT_FLOW_MOD_TABLE_ID) the command's high byte is
    /// the table, as for `NXT_FLOW_MOD`.
    pub fn parse10(body: &[u8], table_id_ext: bool) -> Result<FlowModMsg> {
        let mut r = Rd::new(body);
        let matches = match10::decode(&mut r)?;
        let cookie = r.u64()?;
        let command = r.u16()?;
        let idle_timeout = r.u16()?;
        let hard_timeout = r.u16()?;
        let priority = r.u16()?;
        let buffer_id = r.u32()?;
        let out_port = u32::from(r.u16()?);
        let flags = r.u16()?;
        let (command, table_id) = if table_id_ext {
            (command & 0xff, (command >> 8) as u8)
        } else {
            (command, 255)
        };
        if command > 4 {
            return Err(Error::BadCommand(command));
        }
        let actions = action::decode_actions(r.rest(), Version::V10)?;
        Ok(FlowModMsg {
            format: MatchFormat::Of10,
            command: command as u8,
            table_id,
            cookie,
            cookie_mask: 0,
            idle_timeout,
            hard_timeout,
            priority,
            buffer_id,
            out_port,
            out_group: u32::MAX,
            flags,
            importance: 0,
            matches,
            actions,
        })
    }

    /// Decodes an `NXT_FLOW_MOD` body (after the 16-byte vendor header).
    /// With `table_id_ext` (NXT_FLOW_MOD_TABLE_ID), the command's high byte
    /// is the table.
    pub fn parse_nx(body: &[u8], table_id_ext: bool) -> Result<FlowModMsg> {
        let mut r = Rd::new(body);
        let cookie = r.u64()?;
        let cmd = r.u16()?;
        let idle_timeout = r.u16()?;
        let hard_timeout = r.u16()?;
        let priority = r.u16()?;
        let buffer_id = r.u32()?;
        let out_port = u32::from(r.u16()?);
        let flags = r.u16()?;
        let match_len = usize::from(r.u16()?);
        r.skip(6)?;
        let d = oxm::decode_nxm_padded(&mut r, match_len)?;
        let (command, table_id) = if table_id_ext {
            ((cmd & 0xff) as u8, (cmd >> 8) as u8)
        } else {
            if cmd > 0xff {
                return Err(Error::BadCommand(cmd));
            }
            (cmd as u8, 255)
        };
        if command > 4 {
            return Err(Error::BadCommand(u16::from(command)));
        }
        let actions = action::decode_actions(r.rest(), Version::V10)?;
        Ok(FlowModMsg {
            format: MatchFormat::Nxm,
            command,
            table_id,
            cookie: if command == 0 { cookie } else { d.cookie },
            cookie_mask: if command == 0 { 0 } else { d.cookie_mask },
            idle_timeout,
            hard_timeout,
            priority,
            buffer_id,
            out_port,
            out_group: u32::MAX,
            flags,
            importance: 0,
            matches: d.matches,
            actions,
        })
    }

    /// Decodes an OpenFlow 1.1+ FLOW_MOD body.
    pub fn parse11(body: &[u8], v: Version) -> Result<FlowModMsg> {
        if body.len() < OF11_FIXED {
            return Err(Error::BadLen);
        }
        let mut r = Rd::new(body);
        let cookie = r.u64()?;
        let cookie_mask = r.u64()?;
        let table_id = r.u8()?;
        let command = r.u8()?;
        let idle_timeout = r.u16()?;
        let hard_timeout = r.u16()?;
        let priority = r.u16()?;
        let buffer_id = r.u32()?;
        let out_port = port_from_of11(r.u32()?);
        let out_group = r.u32()?;
        let flags = r.u16()?;
        let importance = r.u16()?;
        if command > 4 {
            return Err(Error::BadCommand(u16::from(command)));
        }
        let d = oxm::decode_ofp_match(&mut r)?;
        let actions = action::decode_instructions(r.rest(), v)?;
        Ok(FlowModMsg {
            format: MatchFormat::Oxm,
            command,
            table_id,
            cookie,
            cookie_mask,
            idle_timeout,
            hard_timeout,
            priority,
            buffer_id,
            out_port,
            out_group,
            flags,
            importance: if v >= Version::V14 { importance } else { 0 },
            matches: d.matches,
            actions,
        })
    }

    /// Appends the body for `v` in `self.format` (the NX form includes the
    /// vendor header fields after the OpenFlow header).
    pub fn emit(&self, out: &mut Vec<u8>, v: Version) {
        match self.format {
            MatchFormat::Of10 => {
                match10::encode(out, &self.matches);
                out.u64(self.cookie);
                let table = if self.table_id == 255 {
                    0
                } else {
                    self.table_id
                };
                out.u16((u16::from(table) << 8) | u16::from(self.command));
                out.u16(self.idle_timeout);
                out.u16(self.hard_timeout);
                out.u16(self.priority);
                out.u32(self.buffer_id);
                out.u16(self.out_port as u16);
                out.u16(self.flags);
                action::encode_actions(out, &self.actions, Version::V10);
            }
            MatchFormat::Nxm => {
                out.u32(super::NX_VENDOR);
                out.u32(13);
                out.u64(if self.command == 0 { self.cookie } else { 0 });
                out.u16((u16::from(self.table_id) << 8) | u16::from(self.command));
                out.u16(self.idle_timeout);
                out.u16(self.hard_timeout);
                out.u16(self.priority);
                out.u32(self.buffer_id);
                out.u16(self.out_port as u16);
                out.u16(self.flags);
                let at = out.len();
                out.u16(0);
                out.zeros(6);
                let (c, cm) = if self.command == 0 {
                    (0, 0)
                } else {
                    (self.cookie, self.cookie_mask)
                };
                let ml = oxm::encode_nxm_padded(out, &self.matches, c, cm);
                out.set_u16(at, ml);
                action::encode_actions(out, &self.actions, Version::V10);
            }
            MatchFormat::Oxm => {
                out.u64(self.cookie);
                out.u64(self.cookie_mask);
                out.u8(self.table_id);
                out.u8(self.command);
                out.u16(self.idle_timeout);
                out.u16(self.hard_timeout);
                out.u16(self.priority);
                out.u32(self.buffer_id);
                out.u32(port_to_of11(self.out_port));
                out.u32(self.out_group);
                out.u16(self.flags);
                out.u16(if v >= Version::V14 {
                    self.importance
                } else {
                    0
                });
                oxm::encode_ofp_match(out, &self.matches, 0, 0);
                action::encode_instructions(out, &self.actions, v);
            }
        }
    }

    /// What the flow-mod asks `ofproto` to do in a session of version `v`.
    pub fn to_ofproto(&self, v: Version) -> Result<FlowMod> {
        let cmd = match self.command {
            0 => FlowModCmd::Add,
            1 => FlowModCmd::Modify { strict: false },
            2 => FlowModCmd::Modify { strict: true },
            3 => FlowModCmd::Delete { strict: false },
            4 => FlowModCmd::Delete { strict: true },
            c => return Err(Error::BadCommand(u16::from(c))),
        };
        let add = self.command == 0;
        // 1.0 without NXT_FLOW_MOD_TABLE_ID: add goes to table 0, the
        // others concern every table.
        let table = if self.table_id == 255 {
            if add {
                if v == Version::V10 {
                    Some(0)
                } else {
                    return Err(Error::BadTableId(255));
                }
            } else {
                None
            }
        } else {
            Some(self.table_id)
        };
        let any_port = if v == Version::V10 {
            0xffff
        } else {
            ofp_port::NONE
        };
        let out_port =
            (self.out_port != any_port && self.out_port != ofp_port::NONE).then_some(self.out_port);
        let reset_bit = v != Version::V10 && self.flags & FF_RESET_COUNTS != 0;
        let spec = FlowSpec {
            table: table.unwrap_or(0),
            priority: self.priority,
            cookie: self.cookie,
            cookie_mask: if add { 0 } else { self.cookie_mask },
            idle_timeout: self.idle_timeout,
            hard_timeout: self.hard_timeout,
            importance: self.importance,
            flags: FlowFlags {
                send_flow_rem: self.flags & FF_SEND_FLOW_REM != 0,
                check_overlap: self.flags & FF_CHECK_OVERLAP != 0,
                reset_counts: reset_bit,
                no_packet_counts: v != Version::V10 && self.flags & FF_NO_PKT_COUNTS != 0,
                no_byte_counts: v != Version::V10 && self.flags & FF_NO_BYT_COUNTS != 0,
            },
            matches: self.matches,
            actions: self.actions.clone(),
            out_port,
        };
        Ok(FlowMod { cmd, spec, table })
    }
}
