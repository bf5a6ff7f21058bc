//! Applies a configuration file ([`Config`]) to the switch through its
//! API: the seed of a first start, and each bridge a reload (SIGHUP) adds.
//! The file's data lives in [`super::config`], which the state directory
//! also stores, so it depends on nothing of the switch; this module is the
//! translation onto [`Api`], like the other front ends.

use super::api::{Api, Error as ApiError};
use super::config::{BridgeConfig, Config};
use super::openflow::{FailMode, Target};
use super::{flowtext, options};
use crate::flow::parse::FlowCmd;
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
