//! The small fixed messages: FEATURES_REPLY, GET_CONFIG_REPLY/SET_CONFIG,
//! ROLE_REQUEST/REPLY and the switch description (multipart DESC).

use super::port::PortDesc;
use super::{Rd, Result, Version, Wr};

/// OFPC_* capabilities we report: flow, table and port statistics.
pub const CAPABILITIES: u32 = 1 | 2 | 4;

/// FEATURES_REPLY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    /// Datapath id.
    pub datapath_id: u64,
    /// Number of tables.
    pub n_tables: u8,
    /// Ports (only sent in OpenFlow 1.0; later versions use PORT_DESC).
    pub ports: Vec<PortDesc>,
}

impl Features {
    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>, v: Version) {
        out.u64(self.datapath_id);
        out.u32(0); // n_buffers: no buffering
        out.u8(self.n_tables);
        out.zeros(3);
        out.u32(CAPABILITIES);
        if v == Version::V10 {
            // OFPAT10 bitmap: output..set_tp_dst (0..=10, no enqueue).
            out.u32(0x7ff);
            for p in &self.ports {
                p.emit(out, v);
            }
        } else {
            out.u32(0);
        }
    }
}

/// SET_CONFIG / GET_CONFIG_REPLY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchConfig {
    /// OFPC_FRAG_* flags.
    pub flags: u16,
    /// Bytes of a packet sent to the controller on a table miss.
    pub miss_send_len: u16,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        SwitchConfig {
            flags: 0,
            miss_send_len: 128,
        }
    }
}

impl SwitchConfig {
    /// Parses the body.
    pub fn parse(body: &[u8]) -> Result<SwitchConfig> {
        let mut r = Rd::new(body);
        Ok(SwitchConfig {
            flags: r.u16()?,
            miss_send_len: r.u16()?,
        })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.u16(self.flags);
        out.u16(self.miss_send_len);
    }
}

/// ROLE_REQUEST / ROLE_REPLY (OpenFlow 1.2+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    /// OFPCR_ROLE_* (0 no change, 1 equal, 2 master, 3 slave).
    pub role: u32,
    /// Master election generation id.
    pub generation_id: u64,
}

impl Role {
    /// Parses the body.
    pub fn parse(body: &[u8]) -> Result<Role> {
        let mut r = Rd::new(body);
        let role = r.u32()?;
        r.skip(4)?;
        Ok(Role {
            role,
            generation_id: r.u64()?,
        })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.u32(self.role);
        out.zeros(4);
        out.u64(self.generation_id);
    }
}

/// The switch description (multipart DESC reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desc {
    /// Manufacturer.
    pub mfr: String,
    /// Hardware.
    pub hw: String,
    /// Software.
    pub sw: String,
    /// Serial number.
    pub serial: String,
    /// Datapath (bridge) description.
    pub dp: String,
}

impl Desc {
    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.name(&self.mfr, 256);
        out.name(&self.hw, 256);
        out.name(&self.sw, 256);
        out.name(&self.serial, 32);
        out.name(&self.dp, 256);
    }
}
