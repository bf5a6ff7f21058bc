//! Port descriptions (`ofp10_phy_port`, `ofp11_port`, `ofp14_port` with its
//! Ethernet property), port statistics and PORT_STATUS.

use super::{port_to_of11, Version, Wr};

/// What a controller learns about a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortDesc {
    /// OpenFlow port number (1.0 numbering; LOCAL is 0xfffe).
    pub port_no: u32,
    /// Hardware address.
    pub hw_addr: [u8; 6],
    /// Name.
    pub name: String,
    /// OFPPC_* config bits (OFPPC_PORT_DOWN = 1).
    pub config: u32,
    /// OFPPS_* state bits (OFPPS_LINK_DOWN = 1; 1.3+ OFPPS_LIVE = 4).
    pub state: u32,
    /// Current speed in kbps (0 = unknown).
    pub curr_speed: u32,
}

impl PortDesc {
    /// Appends the description in `v`'s layout.
    pub fn emit(&self, out: &mut Vec<u8>, v: Version) {
        match v {
            Version::V10 => {
                out.u16(self.port_no as u16);
                out.extend_from_slice(&self.hw_addr);
                out.name(&self.name, 16);
                out.u32(self.config);
                // 1.0 has no LIVE bit.
                out.u32(self.state & 1);
                out.zeros(16);
            }
            Version::V13 => {
                out.u32(port_to_of11(self.port_no));
                out.zeros(4);
                out.extend_from_slice(&self.hw_addr);
                out.zeros(2);
                out.name(&self.name, 16);
                out.u32(self.config);
                out.u32(self.state);
                out.zeros(16);
                out.u32(self.curr_speed);
                out.u32(self.curr_speed);
            }
            Version::V14 | Version::V15 => {
                out.u32(port_to_of11(self.port_no));
                out.u16(72);
                out.zeros(2);
                out.extend_from_slice(&self.hw_addr);
                out.zeros(2);
                out.name(&self.name, 16);
                out.u32(self.config);
                out.u32(self.state);
                // OFPPDPT_ETHERNET.
                out.u16(0);
                out.u16(32);
                out.zeros(4);
                out.zeros(16);
                out.u32(self.curr_speed);
                out.u32(self.curr_speed);
            }
        }
    }
}

/// Counters of one port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Port number (1.0 numbering).
    pub port_no: u32,
    /// Received packets.
    pub rx_packets: u64,
    /// Sent packets.
    pub tx_packets: u64,
    /// Received bytes.
    pub rx_bytes: u64,
    /// Sent bytes.
    pub tx_bytes: u64,
    /// Received and dropped.
    pub rx_dropped: u64,
    /// Dropped on transmit.
    pub tx_dropped: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Seconds the port has existed.
    pub duration_sec: u32,
}

impl PortStats {
    /// Appends the entry in `v`'s layout (counters a port does not keep are
    /// all-ones, "unavailable").
    pub fn emit(&self, out: &mut Vec<u8>, v: Version) {
        let base = |out: &mut Vec<u8>| {
            out.u64(self.rx_packets);
            out.u64(self.tx_packets);
            out.u64(self.rx_bytes);
            out.u64(self.tx_bytes);
            out.u64(self.rx_dropped);
            out.u64(self.tx_dropped);
            out.u64(self.rx_errors);
            out.u64(self.tx_errors);
        };
        match v {
            Version::V10 => {
                out.u16(self.port_no as u16);
                out.zeros(6);
                base(out);
                // frame, over, crc errors; collisions.
                for _ in 0..4 {
                    out.u64(u64::MAX);
                }
            }
            Version::V13 => {
                out.u32(port_to_of11(self.port_no));
                out.zeros(4);
                base(out);
                for _ in 0..4 {
                    out.u64(u64::MAX);
                }
                out.u32(self.duration_sec);
                out.u32(0);
            }
            Version::V14 | Version::V15 => {
                out.u16(80 + 40);
                out.zeros(2);
                out.u32(port_to_of11(self.port_no));
                out.u32(self.duration_sec);
                out.u32(0);
                base(out);
                // OFPPSPT_ETHERNET: frame, over, crc errors, collisions.
                out.u16(0);
                out.u16(40);
                out.zeros(4);
                for _ in 0..4 {
                    out.u64(u64::MAX);
                }
            }
        }
    }
}

/// Why a PORT_STATUS is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortReason {
    /// OFPPR_ADD.
    Add,
    /// OFPPR_DELETE.
    Delete,
    /// OFPPR_MODIFY.
    Modify,
}

/// Appends a PORT_STATUS body.
pub fn emit_port_status(out: &mut Vec<u8>, reason: PortReason, desc: &PortDesc, v: Version) {
    out.u8(match reason {
        PortReason::Add => 0,
        PortReason::Delete => 1,
        PortReason::Modify => 2,
    });
    out.zeros(7);
    desc.emit(out, v);
}
