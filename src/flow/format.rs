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

use super::FlowSpec;
use std::time::Duration;

/// Counters for a dump-flows line.
#[derive(Debug, Clone, Default)]
pub struct FlowStats {
    /// Duration.
    pub duration: Duration,
    /// Packets.
    pub n_packets: u64,
    /// Bytes.
    pub n_bytes: u64,
    /// Idle age.
    pub idle_age: Duration,
    /// Hard age.
    pub hard_age: Option<Duration>,
}

/// A dump-flows line.
pub fn format_flow_stats(
    spec: &FlowSpec,
    _stats: &FlowStats,
    names: Option<&dyn PortNames>,
) -> String {
    format_actions(&spec.actions, names)
}

/// A flow line.
pub fn format_flow(spec: &FlowSpec, names: Option<&dyn PortNames>) -> String {
    format_actions(&spec.actions, names)
}
