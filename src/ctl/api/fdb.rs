//! The bridge's learned tables: the MAC learning table and the Geneve TLV
//! map (`ovs-appctl fdb/show`, `ovs-ofctl dump-tlv-map`).

use super::{Api, Error};
use crate::ofproto::FdbEntry;
use crate::port::geneve::{update_tlv_map, TlvMapping, MAX_TLV_LEN};
use serde::Serialize;
use std::fmt;
use std::time::Instant;

/// `fdb-show`.
#[derive(Debug, Clone, Serialize)]
pub struct FdbReply {
    /// Learned addresses.
    pub fdb: Vec<FdbEntry>,
}

impl fmt::Display for FdbReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, " port  VLAN  MAC                Age")?;
        for e in &self.fdb {
            writeln!(f, "{:>5}  {:>4}  {}  {:>3}", e.port, e.vlan, e.mac, e.age)?;
        }
        Ok(())
    }
}

/// `dump-tlv-map`.
#[derive(Debug, Clone, Serialize)]
pub struct TlvReply {
    /// Bridge.
    pub bridge: String,
    /// Option bytes the map may use in all.
    pub max_option_space: usize,
    /// `tun_metadataN` fields.
    pub max_fields: usize,
    /// Option bytes mapped.
    pub allocated_option_space: u32,
    /// The mappings.
    pub mappings: Vec<TlvMapping>,
    /// The `ovs-ofctl dump-tlv-map` text.
    #[serde(skip)]
    text: String,
}

impl fmt::Display for TlvReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NXT_TLV_TABLE_REPLY:\n{}", self.text)
    }
}

impl Api {
    /// The MAC learning table.
    pub fn fdb_show(&self, bridge: &str, now: Instant) -> Result<FdbReply, Error> {
        self.with_bridge(bridge, |b| Ok(FdbReply { fdb: b.of.fdb(now) }))
    }

    /// Forgets every learned address.
    pub fn fdb_flush(&self, bridge: &str) -> Result<(), Error> {
        self.with_bridge(bridge, |b| {
            b.of.flush_fdb();
            Ok(())
        })
    }

    /// Adds TLV mappings, all or nothing.
    pub fn add_tlv_map(&self, bridge: &str, add: &[TlvMapping]) -> Result<(), Error> {
        self.with_bridge(bridge, |b| {
            update_tlv_map(&b.tlv, |cur| cur.with_added(add)).map_err(Error::TlvMap)?;
            Ok(())
        })
    }

    /// Removes the listed TLV mappings, or all of them (`None`).
    pub fn del_tlv_map(&self, bridge: &str, del: Option<&[TlvMapping]>) -> Result<(), Error> {
        self.with_bridge(bridge, |b| {
            update_tlv_map(&b.tlv, |cur| match del {
                Some(m) => cur.with_deleted(m),
                None => Ok(Default::default()),
            })
            .map_err(Error::TlvMap)
        })
    }

    /// The TLV map.
    pub fn dump_tlv_map(&self, bridge: &str) -> Result<TlvReply, Error> {
        self.with_bridge(bridge, |b| {
            let t = b.tlv.load();
            Ok(TlvReply {
                bridge: bridge.to_string(),
                max_option_space: crate::packet::TUN_METADATA_FIELDS * usize::from(MAX_TLV_LEN),
                max_fields: crate::packet::TUN_METADATA_FIELDS,
                allocated_option_space: t.allocated_space(),
                mappings: t.mappings().copied().collect(),
                text: t.format_ovs(),
            })
        })
    }
}
