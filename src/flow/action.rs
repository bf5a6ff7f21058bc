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
    /// Send the packet to the bridge's controllers as a PACKET_IN
    /// (`controller`, `output:CONTROLLER`, `controller(max_len=..,
    /// reason=..,userdata=..)`).
    Controller(Box<ControllerAction>),
    /// `note:HEX`: bytes a controller keeps in a flow; does nothing to the
    /// packet. Held padded as on the wire (Open vSwitch prints the padding).
    Note(Vec<u8>),
}

/// Why a packet went to the controller, as PACKET_IN says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PacketInReason {
    /// No flow matched (a table-miss flow sends it).
    NoMatch,
    /// A `controller` action (the default).
    #[default]
    Action,
    /// A TTL became invalid (`dec_ttl`).
    InvalidTtl,
    /// Sent from an action set.
    ActionSet,
    /// Sent from a group.
    Group,
    /// Sent from a packet-out's actions.
    PacketOut,
}

impl PacketInReason {
    /// Every reason, in wire order (OpenFlow 1.3+ numbering).
    pub const ALL: [PacketInReason; 6] = [
        PacketInReason::NoMatch,
        PacketInReason::Action,
        PacketInReason::InvalidTtl,
        PacketInReason::ActionSet,
        PacketInReason::Group,
        PacketInReason::PacketOut,
    ];

    /// The name in `controller(reason=...)`.
    pub fn name(self) -> &'static str {
        match self {
            PacketInReason::NoMatch => "no_match",
            PacketInReason::Action => "action",
            PacketInReason::InvalidTtl => "invalid_ttl",
            PacketInReason::ActionSet => "action_set",
            PacketInReason::Group => "group",
            PacketInReason::PacketOut => "packet_out",
        }
    }

    /// The reason named `s`.
    pub fn parse(s: &str) -> Option<PacketInReason> {
        PacketInReason::ALL.into_iter().find(|r| r.name() == s)
    }

    /// The OpenFlow 1.3+ wire value.
    pub fn wire(self) -> u8 {
        self as u8
    }
}

/// What a `controller` action sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ControllerAction {
    /// Bytes of the packet sent (65535: all of it).
    pub max_len: u16,
    /// The reason PACKET_IN carries.
    pub reason: PacketInReason,
    /// Which controller connection ids get it (0: the default).
    pub controller_id: u16,
    /// Opaque bytes for the controller (NXT_PACKET_IN2 userdata).
    pub userdata: Vec<u8>,
}

impl Default for ControllerAction {
    fn default() -> Self {
        ControllerAction {
            max_len: u16::MAX,
            reason: PacketInReason::Action,
            controller_id: 0,
            userdata: Vec::new(),
        }
    }
}

/// The length of a `note` on the wire: Open vSwitch pads the note so the
/// whole Nicira action (10 bytes of header) is a multiple of 8.
pub fn padded_note_len(n: usize) -> usize {
    (10 + n).div_ceil(8) * 8 - 10
}
