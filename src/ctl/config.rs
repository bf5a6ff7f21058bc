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
//!
//! This module is the file's data only (the state directory keeps the
//! last one applied); [`super::seed`] applies it to the switch.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
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
