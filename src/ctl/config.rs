//! The configuration file (TOML) and its embedded default.
//!
//! ```toml
//! [ctl]
//! socket = "/run/vswitch/vswitchd.sock"
//!
//! [[bridge]]
//! name = "br0"
//! forward_bpdu = false
//! ct_checksum = "validate"
//! ct_timeouts = { tcp_established = 3600 }
//! ct_limits = ["default=100000", "zone=5,limit=1000"]
//! flows = ["priority=0,actions=NORMAL"]
//! flow_files = ["flows/l2-learning.flows"]
//!
//! [[bridge.port]]
//! name = "vm1"
//! type = "tap"
//! tag = 100
//! ```
//!
//! Port keys other than `name` and `type` are the same `key=value` options
//! `vswitchctl add-port` takes.

use super::api::{Api, Error as ApiError};
use super::openflow::{FailMode, Target};
use super::{flowtext, options};
use crate::flow::parse::FlowCmd;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A configuration that cannot be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not valid TOML for this schema.
    #[error("{0}")]
    Parse(#[from] toml::de::Error),
    /// A flow file named by the configuration cannot be read.
    #[error("bridge {bridge}: {path}: {source}")]
    FlowFile {
        /// Bridge.
        bridge: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An item of a bridge was refused by the switch.
    #[error("bridge {bridge}: {item}{error}")]
    Apply {
        /// Bridge.
        bridge: String,
        /// What was being applied (`port vm1: `, `flow '...': `), empty for
        /// the bridge itself.
        item: String,
        /// Why.
        #[source]
        error: Box<ApiError>,
    },
}

/// The embedded default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Control socket settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtlConfig {
    /// Socket path.
    pub socket: Option<PathBuf>,
}

/// A port in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortConfig {
    /// Name.
    pub name: String,
    /// Type (`dummy`, `tap`, `system`, `internal`, `geneve`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Every other key, as `add-port` options.
    #[serde(flatten)]
    pub options: BTreeMap<String, toml::Value>,
}

impl PortConfig {
    /// The options as `key=value` strings, `type=` first.
    pub fn option_strings(&self) -> Vec<String> {
        let mut v = vec![format!("type={}", self.kind)];
        for (k, val) in &self.options {
            let s = match val {
                toml::Value::String(s) => s.clone(),
                toml::Value::Array(a) => a
                    .iter()
                    .map(|x| match x {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            v.push(format!("{k}={s}"));
        }
        v
    }
}

/// A bridge in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Name.
    pub name: String,
    /// Other `set-bridge` settings (`forward_bpdu`, `ct_checksum`, ...).
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
    /// Shortcut for the `forward_bpdu` setting.
    #[serde(default)]
    pub forward_bpdu: Option<bool>,
    /// Conntrack checksum policy: `validate` (default) or `skip`.
    #[serde(default)]
    pub ct_checksum: Option<String>,
    /// Conntrack timeouts in seconds for every zone, by OVS name
    /// (`tcp_established = 600`).
    #[serde(default)]
    pub ct_timeouts: BTreeMap<String, u32>,
    /// Conntrack limits, as `ct-set-limits` takes them
    /// (`["default=100000", "zone=5,limit=1000"]`).
    #[serde(default)]
    pub ct_limits: Vec<String>,
    /// OpenFlow controllers (`tcp:IP:PORT`, `unix:PATH`).
    #[serde(default)]
    pub controller: Vec<String>,
    /// `standalone` (default) or `secure`.
    #[serde(default)]
    pub fail_mode: Option<String>,
    /// Ports.
    #[serde(default, rename = "port")]
    pub ports: Vec<PortConfig>,
    /// Flows added at start, in order.
    #[serde(default)]
    pub flows: Vec<String>,
    /// Flow files added at start, after `flows`.
    #[serde(default)]
    pub flow_files: Vec<PathBuf>,
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Control socket.
    #[serde(default)]
    pub ctl: CtlConfig,
    /// Bridges.
    #[serde(default, rename = "bridge")]
    pub bridges: Vec<BridgeConfig>,
}

impl Config {
    /// Parses a configuration file's text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    /// The embedded default.
    pub fn embedded_default() -> Config {
        // The default is part of the binary and covered by a test, so a
        // parse failure here is a build defect, reported rather than hidden.
        Config::parse(DEFAULT_CONFIG).unwrap_or_default()
    }
}

impl BridgeConfig {
    /// The `set-bridge` settings the file gives, as `key=value` tokens.
    pub fn setting_tokens(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .settings
            .iter()
            .map(|(k, v)| match v {
                toml::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        if let Some(f) = self.forward_bpdu {
            v.push(format!("forward_bpdu={f}"));
        }
        if let Some(c) = &self.ct_checksum {
            v.push(format!("ct_checksum={c}"));
        }
        v
    }
}

/// Builds the bridges, ports and flows of `cfg` through the switch API.
/// Stops at the first refusal (the daemon refuses to start on a bad
/// configuration), except for ports: a port that cannot be attached is
/// logged and skipped. Relative flow files are read from `base_dir`.
pub fn apply(api: &Api, cfg: &Config, base_dir: &Path) -> Result<(), ConfigError> {
    for b in &cfg.bridges {
        apply_bridge(api, b, base_dir)?;
    }
    Ok(())
}

/// An API refusal while applying `item` of bridge `bridge`.
fn refused<I: Into<String>>(
    bridge: &str,
    item: I,
) -> impl FnOnce(ApiError) -> ConfigError + use<I> {
    let (bridge, item): (String, String) = (bridge.to_string(), item.into());
    move |error| ConfigError::Apply {
        bridge,
        item,
        error: Box::new(error),
    }
}

/// A bad `key=value` while applying `item` of bridge `bridge`.
fn bad(bridge: &str, item: &str) -> impl FnOnce(options::OptionError) -> ConfigError + use<> {
    let f = refused(bridge, item.to_string());
    move |e| f(e.into())
}

fn apply_bridge(api: &Api, b: &BridgeConfig, base_dir: &Path) -> Result<(), ConfigError> {
    let now = Instant::now();
    api.add_br(&b.name, now).map_err(refused(&b.name, ""))?;
    apply_settings(api, b)?;
    apply_controllers(api, b)?;
    for p in &b.ports {
        let item = format!("port {}: ", p.name);
        let spec = options::port_spec(&p.name, &p.option_strings()).map_err(bad(&b.name, &item))?;
        // One port never stops the start: a system port whose interface is
        // missing comes up when it appears; any other refusal is logged and
        // the rest of the configuration applies.
        if let Err(e) = api.add_configured_port(&b.name, &spec) {
            tracing::error!(bridge = %b.name, port = %p.name, "port not added: {e}");
        }
    }
    apply_flows(api, b, base_dir, now)
}

/// `set-bridge` settings, conntrack timeouts and limits.
fn apply_settings(api: &Api, b: &BridgeConfig) -> Result<(), ConfigError> {
    let settings = b.setting_tokens();
    if !settings.is_empty() {
        let s = options::bridge_settings(&settings).map_err(bad(&b.name, ""))?;
        api.set_bridge(&b.name, &s).map_err(refused(&b.name, ""))?;
    }
    if !b.ct_timeouts.is_empty() {
        let toks: Vec<String> = b
            .ct_timeouts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let t = options::ct_timeouts(None, &toks).map_err(bad(&b.name, "ct_timeouts: "))?;
        api.ct_set_timeouts(&b.name, &t)
            .map_err(refused(&b.name, ""))?;
    }
    if !b.ct_limits.is_empty() {
        let limits = b
            .ct_limits
            .iter()
            .map(|t| options::ct_limit(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad(&b.name, "ct_limits: "))?;
        api.ct_set_limits(&b.name, &limits)
            .map_err(refused(&b.name, ""))?;
    }
    Ok(())
}

/// `fail_mode` and `controller`.
fn apply_controllers(api: &Api, b: &BridgeConfig) -> Result<(), ConfigError> {
    if let Some(m) = &b.fail_mode {
        let mode = FailMode::parse(m).ok_or_else(|| {
            bad(&b.name, "fail_mode: ")(options::OptionError::Value {
                key: "fail_mode".into(),
                value: m.clone(),
                expected: "expected standalone or secure".into(),
            })
        })?;
        api.set_fail_mode(&b.name, mode)
            .map_err(refused(&b.name, ""))?;
    }
    if !b.controller.is_empty() {
        let targets = b
            .controller
            .iter()
            .map(|t| t.parse::<Target>().map_err(ApiError::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(refused(&b.name, "controller: "))?;
        api.set_controller(&b.name, &targets)
            .map_err(refused(&b.name, "controller: "))?;
    }
    Ok(())
}

/// `flows`, then `flow_files` (relative to `base_dir`).
fn apply_flows(
    api: &Api,
    b: &BridgeConfig,
    base_dir: &Path,
    now: Instant,
) -> Result<(), ConfigError> {
    for f in &b.flows {
        let item = format!("flow '{f}': ");
        let ports = api.ports(&b.name).map_err(refused(&b.name, item.clone()))?;
        let m = flowtext::one(f, FlowCmd::Add, &ports).map_err(refused(&b.name, item.clone()))?;
        api.flow_mods(&b.name, &[m], None, now)
            .map_err(refused(&b.name, item))?;
    }
    for file in &b.flow_files {
        let path = if file.is_absolute() {
            file.clone()
        } else {
            base_dir.join(file)
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::FlowFile {
            bridge: b.name.clone(),
            path: path.clone(),
            source,
        })?;
        let source = path.display().to_string();
        let ports = api.ports(&b.name).map_err(refused(&b.name, ""))?;
        let mods = flowtext::file(&text, &source, &ports).map_err(refused(&b.name, ""))?;
        api.flow_mods(&b.name, &mods, Some(&source), now)
            .map_err(refused(&b.name, ""))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses_and_has_br0() {
        let c = Config::parse(DEFAULT_CONFIG).unwrap();
        assert_eq!(c.bridges.len(), 1);
        assert_eq!(c.bridges[0].name, "br0");
        assert_eq!(c.bridges[0].flows, vec!["priority=0,actions=NORMAL"]);
    }

    #[test]
    fn ports_with_options() {
        let c = Config::parse(
            r#"
            [[bridge]]
            name = "br1"
            forward_bpdu = true
            [[bridge.port]]
            name = "vm1"
            type = "tap"
            tag = 100
            trunks = [10, 20]
            "#,
        )
        .unwrap();
        let p = &c.bridges[0].ports[0];
        assert_eq!(
            p.option_strings(),
            vec!["type=tap", "tag=100", "trunks=10,20"]
        );
        assert!(Config::parse("[[bridge]]\nname='x'\nbogus=1\n").is_err());
    }
}
