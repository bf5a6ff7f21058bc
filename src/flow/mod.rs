//! Flows: the packet key, matches and masks, actions, and the ovs-ofctl
//! compatible text syntax for all of them.
//!
//! * [`key`]: [`FlowKey`] / [`FlowMask`], the packed key the fast path
//!   hashes, masks and compares.
//! * [`extract`]: parsing a frame into a [`FlowKey`] and header offsets.
//! * [`field`]: the named match fields and where they live in the key.
//! * [`matching`]: [`Match`] and [`FlowSpec`].
//! * [`action`]: the [`Action`] enum.
//! * [`parse`] / [`format`]: the text syntax, compatible with ovs-ofctl.

pub mod action;
pub mod extract;
pub mod field;
pub mod format;
pub mod key;
pub mod matching;
pub mod parse;

pub use action::{ofp_port, Action, CtAction, CtZone};
pub use field::{Field, FieldKind, FieldSlice};
pub use key::{FlowKey, FlowMask};
pub use matching::{FlowFlags, FlowSpec, Match, DEFAULT_PRIORITY};
pub use parse::{NoPortNames, PortNames};
