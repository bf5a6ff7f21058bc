//! Flows: the packet key, matches and masks, actions, and the ovs-ofctl
//! compatible text syntax for all of them.
//!
//! * [`key`]: [`FlowKey`] / [`FlowMask`], the packed key the fast path
//!   hashes, masks and compares.
//! * [`extract`]: parsing a frame into a [`FlowKey`] and header offsets.
//! * [`field`]: the named match fields and where they live in the key.
//! * [`matching`]: [`Match`] and [`FlowSpec`].
//! * [`action`]: the [`Action`] enum.
//! * [`parse`] / [`format`](mod@format): the text syntax, compatible with ovs-ofctl
//!   (building blocks in the private `syntax` module).
//! * [`port_names`]: [`PortNames`], how the syntax sees the switch's port
//!   names; parse, format and syntax all depend on it, never on each other.

pub mod action;
pub mod extract;
pub mod field;
pub mod format;
pub mod key;
pub mod matching;
pub mod parse;
pub mod port_names;
mod syntax;

pub use action::{ofp_port, Action, ControllerAction, CtAction, CtZone, PacketInReason};
pub use field::{Field, FieldKind, FieldSlice};
pub use format::{format_actions, format_flow, format_flow_stats, format_match, FlowStats};
pub use key::{FlowKey, FlowMask};
pub use matching::{FlowFlags, FlowSpec, Match, DEFAULT_PRIORITY};
pub use parse::{
    parse_actions, parse_flow, parse_flow_file, parse_trace_flow, FileParseError, FlowCmd,
    ParseError, ALL_TABLES,
};
pub use port_names::{NoPortNames, PortMap, PortNames};
