//! The switch as a typed snapshot, and back: what [`crate::ctl::state`]
//! saves after every change and restores at start.
//!
//! A snapshot holds what the operator (or a controller) set, never what the
//! switch learned or counted: bridge settings, conntrack policy, the TLV
//! map, controllers, ports with their numbers and policy, and every flow as
//! an `add-flow` line (the ovs-ofctl syntax, which `format_flow` and
//! `parse_flow` round-trip exactly). Flows are written with port numbers,
//! not names, so they mean the same before their ports are back.

use super::{Api, Error, PortSettings, PortSpec};
use crate::conntrack::{CtPolicy, IpFamily, IpfSettings};
use crate::ctl::openflow::{FailMode, Target};
use crate::ctl::state::{BridgeState, IpfState, PortPolicy, PortState};
use crate::flow::format::format_flow;
use crate::flow::parse::{parse_flow, FlowCmd};
use crate::flow::{FlowSpec, NoPortNames};
use crate::ofproto::{FlowFilter, FlowMod, FlowModCmd, Ofproto};
use crate::port::geneve::{update_tlv_map, TlvMap};
use std::sync::Arc;
use std::time::Instant;

/// A part of a saved bridge the switch refused while restoring it.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A saved flow does not parse (the file was edited by hand, or
    /// written by a version with a syntax this one lacks).
    #[error("flow '{flow}': {error}")]
    Flow {
        /// The saved line.
        flow: String,
        /// Why.
        error: crate::flow::parse::ParseError,
    },
    /// A saved controller target or fail mode does not parse.
    #[error("{what} '{value}' is not valid")]
    Value {
        /// `controller` or `fail_mode`.
        what: &'static str,
        /// The saved text.
        value: String,
    },
    /// The switch refused a part of the bridge.
    #[error("{0}")]
    Api(#[from] Error),
}

/// Each bridge's flows as last formatted, with the tables' version then.
#[derive(Debug, Default)]
pub struct FlowsCache(std::collections::BTreeMap<String, (u64, Vec<String>)>);

/// A port that could not be restored; everything else was.
#[derive(Debug)]
pub struct PortFailure {
    /// The port as saved.
    pub port: PortState,
    /// Why.
    pub error: Error,
}

impl Api {
    /// Every bridge as a snapshot, by name.
    pub fn snapshot(&self, now: Instant) -> Vec<BridgeState> {
        self.snapshot_cached(now, &mut FlowsCache::default())
    }

    /// [`Api::snapshot`], reusing the flow lines in `cache` for bridges
    /// whose tables did not change since (formatting 10,000 flows for a
    /// port change would make every save cost as much as a flow load).
    pub fn snapshot_cached(&self, now: Instant, cache: &mut FlowsCache) -> Vec<BridgeState> {
        let map = self.bridges.lock();
        cache.0.retain(|name, _| map.contains_key(name));
        // Everything but the flows under the lock; the flows (which may be
        // many) are formatted after it, so requests are not held up.
        let bridges: Vec<(BridgeState, Arc<Ofproto>)> = map
            .iter()
            .map(|(name, b)| {
                let ipf = b.ct.ipf_status();
                let mut ports: Vec<PortState> = b
                    .ports
                    .iter()
                    .map(|(pname, e)| {
                        let info = b.of.with_ports(|p| p.get(e.no).cloned());
                        PortState {
                            name: pname.clone(),
                            kind: e.kind,
                            ofport: e.no,
                            type_options: e.type_options.clone(),
                            mtu: e.mtu_request,
                            policy: info.map(|i| PortPolicy {
                                tag: i.tag,
                                trunks: i.trunks,
                                vlan_mode: i.vlan_mode,
                                flood: i.flood,
                                enabled: i.enabled,
                                bpdu_guard: i.bpdu_guard,
                                mac_limit: i.mac_limit,
                            }),
                        }
                    })
                    .collect();
                ports.sort_by_key(|p| p.ofport);
                let st = BridgeState {
                    name: name.clone(),
                    config: b.of.config(),
                    ct: b.ct.policy(),
                    ipf: IpfState::from(&ipf),
                    tlv: b.tlv.load().mappings().copied().collect(),
                    fail_mode: b.fail_mode.name().to_string(),
                    controllers: b
                        .controllers
                        .iter()
                        .flat_map(|c| c.states.iter())
                        .map(|s| s.target.to_string())
                        .collect(),
                    ports,
                    flows: Vec::new(),
                    flows_file: None,
                };
                (st, b.of.clone())
            })
            .collect();
        drop(map);
        bridges
            .into_iter()
            .map(|(mut st, of)| {
                // Read the version before the tables: a change in between
                // only makes the next save format them again.
                let version = of.flows_version();
                st.flows = match cache.0.get(&st.name) {
                    Some((v, lines)) if *v == version => lines.clone(),
                    _ => {
                        let lines: Vec<String> = of
                            .dump_flows(&FlowFilter::default(), now)
                            .iter()
                            .map(|f| format_flow(&f.spec, None))
                            .collect();
                        cache.0.insert(st.name.clone(), (version, lines.clone()));
                        lines
                    }
                };
                st
            })
            .collect()
    }

    /// A number that changes whenever any bridge's flow tables change
    /// (whoever changed them: OpenFlow, expiry), for the saver to notice
    /// changes that did not come through the vswitchctl protocol.
    pub fn flows_marker(&self) -> u64 {
        let map = self.bridges.lock();
        map.values().fold(map.len() as u64, |acc, b| {
            acc.wrapping_mul(31).wrapping_add(b.of.flows_version())
        })
    }

    /// Bridge `s`'s saved tables and settings, without its ports,
    /// controllers and fail mode: what the database does not say under
    /// `--ovsdb`. Checked before the first change.
    fn saved_tables(s: &BridgeState) -> Result<Vec<FlowMod>, RestoreError> {
        let mut mods = vec![FlowMod {
            cmd: FlowModCmd::Delete { strict: false },
            spec: FlowSpec::default(),
            table: None,
        }];
        for f in &s.flows {
            let spec =
                parse_flow(f, FlowCmd::Add, &NoPortNames).map_err(|error| RestoreError::Flow {
                    flow: f.clone(),
                    error,
                })?;
            mods.push(FlowMod {
                cmd: FlowModCmd::Add,
                table: Some(spec.table),
                spec,
            });
        }
        Ok(mods)
    }

    /// Puts bridge `s`'s saved settings, conntrack policy, fragment
    /// settings, TLV map and flows (`mods`, from [`Api::saved_tables`])
    /// on the existing bridge.
    fn apply_saved_tables(
        &self,
        s: &BridgeState,
        mods: &[FlowMod],
        now: Instant,
    ) -> Result<(), RestoreError> {
        self.with_bridge(&s.name, |b| {
            b.of.set_config(s.config.clone());
            apply_ct_policy(&b.ct, &s.ct);
            for (family, enabled, min) in [
                (IpFamily::V4, s.ipf.enabled_v4, s.ipf.min_frag_size_v4),
                (IpFamily::V6, s.ipf.enabled_v6, s.ipf.min_frag_size_v6),
            ] {
                b.ct.ipf_set(&IpfSettings {
                    family: Some(family),
                    enabled: Some(enabled),
                    max_frags: Some(s.ipf.max_frags),
                    min_frag_size: Some(min),
                })?;
            }
            update_tlv_map(&b.tlv, |_| TlvMap::default().with_added(&s.tlv))
                .map_err(Error::TlvMap)?;
            b.of.flow_mods(mods, now).map_err(|err| Error::FlowMod {
                source_name: Some("saved state".to_string()),
                err,
            })?;
            Ok(())
        })?;
        Ok(())
    }

    /// Under `--ovsdb`: the saved tables of bridges the database will
    /// create. When the database adds one of them, it forwards with its
    /// last flows at once (until a controller replaces them) instead of
    /// starting from NORMAL.
    pub fn restore_tables_on_add(&self, saved: Vec<BridgeState>) {
        let mut p = self.pending_tables.lock();
        for b in saved {
            p.insert(b.name.clone(), b);
        }
    }

    /// Applies the saved tables waiting for bridge `name`, if any (called
    /// when a bridge is added).
    pub(super) fn apply_pending_tables(&self, name: &str, now: Instant) {
        let Some(s) = self.pending_tables.lock().remove(name) else {
            return;
        };
        match Self::saved_tables(&s).and_then(|m| self.apply_saved_tables(&s, &m, now)) {
            Ok(()) => tracing::info!(bridge = %name, flows = s.flows.len(), "saved flows restored"),
            Err(e) => tracing::error!(bridge = %name, "saved flows not restored: {e}"),
        }
    }

    /// Creates bridge `s.name` as saved: settings, conntrack policy, TLV
    /// map and flows first, then controllers, then the ports, so no packet
    /// is forwarded by anything but the saved flows. A port that cannot be
    /// attached is reported and skipped; everything else must apply.
    pub fn restore_bridge(
        &self,
        s: &BridgeState,
        now: Instant,
    ) -> Result<Vec<PortFailure>, RestoreError> {
        // Parse everything before the first change.
        let mods = Self::saved_tables(s)?;
        let mode = FailMode::parse(&s.fail_mode).ok_or_else(|| RestoreError::Value {
            what: "fail_mode",
            value: s.fail_mode.clone(),
        })?;
        let targets = s
            .controllers
            .iter()
            .map(|t| {
                t.parse::<Target>().map_err(|_| RestoreError::Value {
                    what: "controller",
                    value: t.clone(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        self.add_br(&s.name, now)?;
        self.apply_saved_tables(s, &mods, now)?;
        if mode != FailMode::default() {
            self.set_fail_mode(&s.name, mode)?;
        }
        if !targets.is_empty() {
            self.set_controller(&s.name, &targets)?;
        }
        let mut failed = Vec::new();
        for p in &s.ports {
            let spec = p.spec();
            if let Err(error) = self.add_configured_port(&s.name, &spec) {
                tracing::error!(bridge = %s.name, port = %p.name, "saved port not restored: {error}");
                failed.push(PortFailure {
                    port: p.clone(),
                    error,
                });
            }
        }
        Ok(failed)
    }
}

/// Sets a tracker's policy, limits and timeouts to `p`.
fn apply_ct_policy(ct: &crate::conntrack::ConnTracker, p: &CtPolicy) {
    ct.set_checksum_policy(p.checksum);
    ct.set_tcp_liberal(p.tcp_liberal);
    ct.set_tcp_seq_check(p.tcp_seq_check);
    ct.set_max_conns(p.max_conns);
    ct.set_limit(None, p.default_limit);
    for &(z, l) in &p.zone_limits {
        ct.set_limit(Some(z), Some(l));
    }
    for &(k, secs) in &p.default_timeouts {
        ct.set_timeout(None, k, secs);
    }
    for (z, set) in &p.zone_timeouts {
        for &(k, secs) in set {
            ct.set_timeout(Some(*z), k, secs);
        }
    }
}

impl PortState {
    /// The `add-port` this saved port is.
    pub fn spec(&self) -> PortSpec {
        let mut spec = PortSpec::new(&self.name, self.kind);
        spec.ofport = Some(self.ofport);
        spec.type_options = self.type_options.clone();
        let mut settings = PortSettings {
            mtu: self.mtu,
            ..PortSettings::default()
        };
        if let Some(p) = &self.policy {
            settings.tag = Some(p.tag);
            settings.trunks = Some(p.trunks.clone());
            settings.vlan_mode = Some(p.vlan_mode);
            settings.flood = Some(p.flood);
            settings.enable = Some(p.enabled);
            settings.bpdu_guard = Some(p.bpdu_guard);
            settings.mac_limit = Some(p.mac_limit);
        }
        spec.settings = settings;
        spec
    }
}
