//! OpenFlow actions as the tables hold them.
//!
//! Port numbers are resolved when a flow is parsed (names become numbers),
//! so translation never looks a name up. Special ports use Open vSwitch's
//! OpenFlow 1.0 numbers.

use super::field::{Field, FieldSlice};

/// OpenFlow port numbers with a special meaning (OpenFlow 1.0 values, as
/// ovs-ofctl prints them).
pub mod ofp_port {
    /// Largest number a real port can have.
    pub const MAX: u32 = 0xff00;
    /// `IN_PORT`: send back out of the input port.
    pub const IN_PORT: u32 = 0xfff8;
    /// `TABLE`: only valid in packet-out.
    pub const TABLE: u32 = 0xfff9;
    /// `NORMAL`: the L2 learning switch.
    pub const NORMAL: u32 = 0xfffa;
    /// `FLOOD`: all ports but the input port (and flood-disabled ones).
    pub const FLOOD: u32 = 0xfffb;
    /// `ALL`: all ports but the input port.
    pub const ALL: u32 = 0xfffc;
    /// `CONTROLLER`.
    pub const CONTROLLER: u32 = 0xfffd;
    /// `LOCAL`: the bridge's own internal port.
    pub const LOCAL: u32 = 0xfffe;
    /// `NONE`: no port (wildcard in some requests).
    pub const NONE: u32 = 0xffff;
}

/// Where a `ct(zone=...)` takes its zone from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtZone {
    /// A fixed zone, `zone=5`.
    Imm(u16),
    /// Bits of a field, `zone=NXM_NX_REG0[0..15]`.
    Field(FieldSlice),
}

/// The `ct(...)` action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CtAction {
    /// `commit`: create/update the connection entry.
    pub commit: bool,
    /// `force`: with commit, end an existing connection in the other
    /// direction and start a new one.
    pub force: bool,
    /// The conntrack zone.
    pub zone: CtZone,
    /// `table=N`: recirculate and continue in table N with ct fields set.
    pub table: Option<u8>,
    /// `exec(...)`: actions applied to the connection (only
    /// `set_field:...->ct_mark` is meaningful).
    pub exec: Vec<Action>,
}

/// One OpenFlow action.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// `output:PORT`, or a bare port number, or `LOCAL`, `IN_PORT`, `NORMAL`,
    /// `FLOOD`, `ALL` (see [`ofp_port`]). `normal`, `flood`, `in_port`,
    /// `local` and `all` parse to this variant.
    Output(u32),
    /// `resubmit(PORT,TABLE)` / `resubmit:PORT`: look the packet up again,
    /// in `table` (current table when `None`), with `in_port` replaced when
    /// `in_port` is `Some`.
    Resubmit {
        /// Replacement input port.
        in_port: Option<u32>,
        /// Table to look up.
        table: Option<u8>,
    },
    /// `goto_table:N` (an instruction in OpenFlow 1.1+, accepted everywhere
    /// as ovs-ofctl does).
    GotoTable(u8),
    /// `mod_dl_src:MAC`.
    ModDlSrc([u8; 6]),
    /// `mod_dl_dst:MAC`.
    ModDlDst([u8; 6]),
    /// `mod_nw_src:IP`.
    ModNwSrc(u32),
    /// `mod_nw_dst:IP`.
    ModNwDst(u32),
    /// `mod_nw_tos:TOS`.
    ModNwTos(u8),
    /// `mod_nw_ttl:TTL`.
    ModNwTtl(u8),
    /// `mod_tp_src:PORT`.
    ModTpSrc(u16),
    /// `mod_tp_dst:PORT`.
    ModTpDst(u16),
    /// `push_vlan:ETHERTYPE` (0x8100 or 0x88a8).
    PushVlan(u16),
    /// `pop_vlan` / `strip_vlan`.
    PopVlan,
    /// `mod_vlan_vid:VID`.
    ModVlanVid(u16),
    /// `mod_vlan_pcp:PCP`.
    ModVlanPcp(u8),
    /// `set_field:VALUE[/MASK]->FIELD` and `load:VALUE->FIELD[a..b]` (the
    /// slice form stores the value shifted into place with `mask` covering
    /// the slice).
    SetField {
        /// Destination field.
        field: Field,
        /// Value, already shifted into the field's bit positions.
        value: u128,
        /// Which bits of the field are written.
        mask: u128,
    },
    /// `move:SRC[a..b]->DST[c..d]`.
    Move {
        /// Source bits.
        src: FieldSlice,
        /// Destination bits (same width as `src`).
        dst: FieldSlice,
    },
    /// `dec_ttl`.
    DecTtl,
    /// `set_tunnel:ID` / `set_tunnel64:ID`.
    SetTunnel(u64),
    /// `ct(...)`.
    Ct(Box<CtAction>),
    /// `ct_clear`.
    CtClear,
}
