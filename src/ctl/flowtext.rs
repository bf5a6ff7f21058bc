//! Flows as the operator writes them (ovs-ofctl syntax, one flow or a
//! file), turned into the switch API's typed flow-mods and filters.
//!
//! Parsing needs the bridge's port names (`in_port=vm1`), so it takes the
//! [`Ports`] the API reports; the vswitchctl protocol and the
//! configuration file both come through here.

use super::api::Error;
use crate::flow::parse::{parse_flow, parse_flow_file, FlowCmd, ALL_TABLES};
use crate::flow::FlowSpec;
use crate::ofproto::{FlowFilter, FlowMod, FlowModCmd, Ports};

/// Maps a parsed line to a flow-mod. Modify/delete/dump without an
/// explicit `table=` concern every table, as in ovs-ofctl.
pub fn to_flow_mod(cmd: FlowCmd, spec: FlowSpec) -> FlowMod {
    let (c, all_tables) = match cmd {
        FlowCmd::Add => (FlowModCmd::Add, false),
        FlowCmd::Modify => (FlowModCmd::Modify { strict: false }, true),
        FlowCmd::ModifyStrict => (FlowModCmd::Modify { strict: true }, true),
        FlowCmd::Delete | FlowCmd::Dump => (FlowModCmd::Delete { strict: false }, true),
        FlowCmd::DeleteStrict => (FlowModCmd::Delete { strict: true }, true),
    };
    let table = if all_tables && spec.table == ALL_TABLES {
        None
    } else {
        Some(spec.table)
    };
    FlowMod {
        cmd: c,
        spec,
        table,
    }
}

/// One flow line for `cmd`.
pub fn one(text: &str, cmd: FlowCmd, ports: &Ports) -> Result<FlowMod, Error> {
    Ok(to_flow_mod(cmd, parse_flow(text, cmd, ports)?))
}

/// A flow file (`add-flows`): every line, each an add unless it says
/// otherwise. `source` names the file in errors.
pub fn file(text: &str, source: &str, ports: &Ports) -> Result<Vec<FlowMod>, Error> {
    let lines = parse_flow_file(text, ports).map_err(|e| e.with_path(source))?;
    Ok(lines.into_iter().map(|(c, s)| to_flow_mod(c, s)).collect())
}

/// The filter of `dump-flows [MATCH]`.
pub fn filter(text: Option<&str>, ports: &Ports) -> Result<FlowFilter, Error> {
    let m = one(text.unwrap_or_default(), FlowCmd::Dump, ports)?;
    Ok(FlowFilter::from_mod(&m.spec, m.table, false))
}
