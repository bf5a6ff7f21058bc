//! The ovs-ofctl flow syntax formatter (placeholder until the syntax work lands).

use super::parse::PortNames;
use super::{Action, Match};

/// Formats a match.
pub fn format_match(m: &Match, priority: u16, _names: Option<&dyn PortNames>) -> String {
    format!("priority={priority},{:?}", m.key)
}

/// Formats actions.
pub fn format_actions(actions: &[Action], _names: Option<&dyn PortNames>) -> String {
    format!("{actions:?}")
}
