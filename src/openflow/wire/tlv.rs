//! Nicira messages for state beside the flow tables: the Geneve TLV map
//! (`NXT_TLV_TABLE_MOD`, `NXT_TLV_TABLE_REQUEST`/`REPLY`: which option
//! becomes which `tun_metadataN`) and `NXT_CT_FLUSH_ZONE`.

use super::{Error, Rd, Result, Wr};
use crate::port::geneve::TlvMapping;

/// `NXT_TLV_TABLE_MOD` subtype.
pub const NXT_TLV_TABLE_MOD: u32 = 24;
/// `NXT_TLV_TABLE_REQUEST` subtype.
pub const NXT_TLV_TABLE_REQUEST: u32 = 25;
/// `NXT_TLV_TABLE_REPLY` subtype.
pub const NXT_TLV_TABLE_REPLY: u32 = 26;
/// `NXT_CT_FLUSH_ZONE` subtype.
pub const NXT_CT_FLUSH_ZONE: u32 = 29;

/// Bytes of one `nx_tlv_map`.
const MAP_LEN: usize = 8;

/// What a TLV table mod does (`NXTTMC_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlvCommand {
    /// Map the listed options (all or nothing).
    Add,
    /// Unmap the listed fields.
    Delete,
    /// Unmap everything.
    Clear,
}

impl TlvCommand {
    /// The wire value.
    pub fn wire(self) -> u16 {
        match self {
            TlvCommand::Add => 0,
            TlvCommand::Delete => 1,
            TlvCommand::Clear => 2,
        }
    }

    /// The command of wire value `v`, if there is one.
    pub fn from_wire(v: u16) -> Option<TlvCommand> {
        match v {
            0 => Some(TlvCommand::Add),
            1 => Some(TlvCommand::Delete),
            2 => Some(TlvCommand::Clear),
            _ => None,
        }
    }
}

/// `NXT_TLV_TABLE_MOD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlvTableMod {
    /// The command (`NXTTMC_*`, kept raw: an unknown one is refused with
    /// NXTTMFC_BAD_COMMAND by the session, see [`TlvCommand::from_wire`]).
    pub command: u16,
    /// The mappings it names.
    pub mappings: Vec<TlvMapping>,
}

fn parse_maps(r: &mut Rd) -> Result<Vec<TlvMapping>> {
    if !r.len().is_multiple_of(MAP_LEN) {
        return Err(Error::BadLen);
    }
    let mut v = Vec::with_capacity(r.len() / MAP_LEN);
    while !r.is_empty() {
        let class = r.u16()?;
        let opt_type = r.u8()?;
        let len = r.u8()?;
        let index = r.u16()?;
        r.skip(2)?;
        v.push(TlvMapping {
            class,
            opt_type,
            len,
            // Out of range indexes stay out of range (the backend refuses
            // them with NXTTMFC_BAD_FIELD_IDX).
            index: u8::try_from(index).unwrap_or(u8::MAX),
        });
    }
    Ok(v)
}

fn emit_maps(out: &mut Vec<u8>, maps: &[TlvMapping]) {
    for m in maps {
        out.u16(m.class);
        out.u8(m.opt_type);
        out.u8(m.len);
        out.u16(u16::from(m.index));
        out.zeros(2);
    }
}

impl TlvTableMod {
    /// Parses the body after the Nicira subtype.
    pub fn parse(body: &[u8]) -> Result<TlvTableMod> {
        let mut r = Rd::new(body);
        let command = r.u16()?;
        r.skip(6)?;
        Ok(TlvTableMod {
            command,
            mappings: parse_maps(&mut r)?,
        })
    }

    /// Appends the body after the Nicira subtype.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.u16(self.command);
        out.zeros(6);
        emit_maps(out, &self.mappings);
    }
}

/// `NXT_TLV_TABLE_REPLY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlvTableReply {
    /// Option bytes all mappings may take together.
    pub max_option_space: u32,
    /// Number of `tun_metadataN` fields.
    pub max_fields: u16,
    /// The mappings.
    pub mappings: Vec<TlvMapping>,
}

impl TlvTableReply {
    /// Appends the body after the Nicira subtype.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.u32(self.max_option_space);
        out.u16(self.max_fields);
        out.zeros(10);
        emit_maps(out, &self.mappings);
    }

    /// Parses the body after the Nicira subtype.
    pub fn parse(body: &[u8]) -> Result<TlvTableReply> {
        let mut r = Rd::new(body);
        let max_option_space = r.u32()?;
        let max_fields = r.u16()?;
        r.skip(10)?;
        Ok(TlvTableReply {
            max_option_space,
            max_fields,
            mappings: parse_maps(&mut r)?,
        })
    }
}

/// Parses `NXT_CT_FLUSH_ZONE`'s body (`nx_zone_id`: 6 zero bytes, zone).
pub fn parse_ct_flush_zone(body: &[u8]) -> Result<u16> {
    let mut r = Rd::new(body);
    r.skip(6)?;
    let zone = r.u16()?;
    if !r.is_empty() {
        return Err(Error::BadLen);
    }
    Ok(zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_messages_round_trip_and_bad_input_is_refused() {
        let m = TlvTableMod {
            command: TlvCommand::Add.wire(),
            mappings: vec![TlvMapping {
                class: 0xffff,
                opt_type: 0x80,
                len: 4,
                index: 3,
            }],
        };
        let mut b = Vec::new();
        m.emit(&mut b);
        assert_eq!(b.len(), 16);
        assert_eq!(TlvTableMod::parse(&b).unwrap(), m);
        // A truncated map; an unknown command is kept for the session to
        // refuse.
        assert!(TlvTableMod::parse(&b[..12]).is_err());
        b[1] = 9;
        assert_eq!(TlvTableMod::parse(&b).unwrap().command, 9);
        assert_eq!(TlvCommand::from_wire(9), None);
        let r = TlvTableReply {
            max_option_space: 64,
            max_fields: 8,
            mappings: m.mappings.clone(),
        };
        let mut b = Vec::new();
        r.emit(&mut b);
        assert_eq!(TlvTableReply::parse(&b).unwrap(), r);
        assert_eq!(parse_ct_flush_zone(&[0, 0, 0, 0, 0, 0, 0, 7]), Ok(7));
        assert!(parse_ct_flush_zone(&[0, 0, 7]).is_err());
    }
}
