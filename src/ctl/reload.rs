//! Restarts and reloads: the saved state restored at start, and the
//! configuration file re-read on SIGHUP and applied as a difference.
//!
//! The rule between the two: the configuration file seeds a first start
//! (no state file yet). From then on the running switch (and its saved
//! state) is the truth, and the file is remembered as it was last applied
//! (the [`Seed`] in the state). A reload (SIGHUP, or a start with saved
//! state) compares the file with that record and applies only what
//! changed in the file: added and removed bridges and ports, changed port
//! settings and types, changed bridge and conntrack settings, controllers,
//! and flows added to or removed from `flows` / `flow_files`. Anything the
//! file did not change stays as it is, including what vswitchctl changed
//! at run time and every port untouched by the change (a TAP stays, with
//! its counters).
//!
//! A file that does not read (TOML, unknown keys, bad options, a flow file
//! that cannot be read) is logged and changes nothing. A change the switch
//! refuses (a port that cannot be attached) is logged; the others apply.

use super::api::{Api, FlowsCache, PortSettings, PortSpec};
use super::config::{BridgeConfig, Config};
use super::openflow::{FailMode, Target};
use super::seed::ConfigError;
use super::state::{self, PortState, Saver, Seed, State, StateDir, StateError};
use super::{flowtext, options};
use crate::conntrack::TimeoutKind;
use crate::ofproto::{FlowModCmd, PortInfo, PortKind};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A configuration file that cannot be reloaded; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse, a flow file is missing, or an option is
    /// bad.
    #[error("{path}: {source}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: ConfigError,
    },
}

/// Saved ports that could not be attached at start, by bridge: they stay
/// in the saved state (one missing device must not erase a port's
/// configuration) until the port is added again or its bridge goes.
pub type Unrestored = Vec<(String, PortState)>;

/// A saved bridge that could not be restored (the daemon refuses to start
/// rather than run without it).
#[derive(Debug, thiserror::Error)]
#[error("state file {path}: bridge {bridge}: {error} (move the file aside to start from the configuration)")]
pub struct RestoreFailed {
    /// The file.
    pub path: PathBuf,
    /// The bridge.
    pub bridge: String,
    /// Why.
    #[source]
    pub error: Box<super::api::RestoreError>,
}

/// Restores every saved bridge; a port that cannot be attached is logged
/// and skipped (and returned), anything else refused is an error naming
/// the file.
pub fn restore(api: &Api, st: &State, file: &Path) -> Result<Unrestored, RestoreFailed> {
    let now = Instant::now();
    let mut kept = Vec::new();
    for b in &st.bridges {
        let failed = api.restore_bridge(b, now).map_err(|error| RestoreFailed {
            path: file.to_path_buf(),
            bridge: b.name.clone(),
            error: Box::new(error),
        })?;
        kept.extend(failed.into_iter().map(|f| (b.name.clone(), f.port)));
    }
    Ok(kept)
}

/// Adds the unrestored ports still unclaimed to a snapshot's bridges, and
/// forgets those whose bridge is gone or whose name or ofport is taken.
fn keep_unrestored(bridges: &mut [state::BridgeState], kept: &mut Unrestored) {
    kept.retain(|(br, p)| {
        let Some(b) = bridges.iter_mut().find(|b| &b.name == br) else {
            return false;
        };
        if b.ports
            .iter()
            .any(|q| q.name == p.name || q.ofport == p.ofport)
        {
            return false;
        }
        b.ports.push(p.clone());
        b.ports.sort_by_key(|q| q.ofport);
        true
    });
}

/// Relative flow files are read from the configuration file's directory.
fn base_dir(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The record of `cfg` as applied: the file and each bridge's flow lines
/// (`flows`, then the lines of each of `flow_files`, comments and blank
/// lines left out).
pub fn seed_of(cfg: &Config, base: &Path) -> Result<Seed, ConfigError> {
    let mut flows = BTreeMap::new();
    for b in &cfg.bridges {
        let mut lines: Vec<String> = b.flows.clone();
        for file in &b.flow_files {
            let path = if file.is_absolute() {
                file.clone()
            } else {
                base.join(file)
            };
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::FlowFile {
                bridge: b.name.clone(),
                path: path.clone(),
                source,
            })?;
            lines.extend(
                text.lines()
                    .map(|l| l.split('#').next().unwrap_or("").trim())
                    .filter(|l| !l.is_empty())
                    .map(str::to_string),
            );
        }
        flows.insert(b.name.clone(), lines);
    }
    Ok(Seed {
        config: cfg.clone(),
        flows,
    })
}

/// Reads the file at `path` and checks every option in it, changing
/// nothing.
fn read_checked(path: &Path) -> Result<Seed, ReloadError> {
    let cerr = |source| ReloadError::Config {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(|source| ReloadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let cfg = Config::parse(&text).map_err(|e| cerr(e.into()))?;
    for b in &cfg.bridges {
        let bad = |item: String| {
            move |e: options::OptionError| {
                cerr(ConfigError::Apply {
                    bridge: b.name.clone(),
                    item,
                    error: Box::new(e.into()),
                })
            }
        };
        options::bridge_settings(&b.setting_tokens()).map_err(bad(String::new()))?;
        for p in &b.ports {
            options::port_spec(&p.name, &p.option_strings())
                .map_err(bad(format!("port {}: ", p.name)))?;
        }
        for t in &b.ct_limits {
            options::ct_limit(t).map_err(bad("ct_limits: ".into()))?;
        }
    }
    seed_of(&cfg, &base_dir(path)).map_err(cerr)
}

/// Re-reads the configuration file at `path` and applies what changed
/// since `old` was applied. Returns the new record, or `old` unchanged
/// when the file is bad (logged). Without a record of the last applied
/// file, the file is taken as applied and nothing changes.
pub fn apply_file(api: &Api, old: Option<&Seed>, path: &Path) -> Option<Seed> {
    let new = match read_checked(path) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("configuration not reloaded, nothing changed: {e}");
            return old.cloned();
        }
    };
    let Some(old) = old else {
        tracing::info!(file = %path.display(), "no record of the configuration last applied: taking this one as applied");
        return Some(new);
    };
    let n = apply_diff(api, old, &new, &base_dir(path));
    if n == 0 {
        tracing::info!(file = %path.display(), "configuration reloaded: nothing changed");
    } else {
        tracing::info!(file = %path.display(), changes = n, "configuration reloaded");
    }
    Some(new)
}

/// Logs a change and counts it.
fn changed(n: &mut usize, bridge: &str, what: std::fmt::Arguments<'_>) {
    *n += 1;
    tracing::info!(bridge = %bridge, "reload: {what}");
}

/// Applies the difference between two applied configurations; returns how
/// many changes were made.
pub fn apply_diff(api: &Api, old: &Seed, new: &Seed, base: &Path) -> usize {
    let mut n = 0;
    let olds: BTreeMap<&str, &BridgeConfig> = old
        .config
        .bridges
        .iter()
        .map(|b| (b.name.as_str(), b))
        .collect();
    let news: BTreeMap<&str, &BridgeConfig> = new
        .config
        .bridges
        .iter()
        .map(|b| (b.name.as_str(), b))
        .collect();
    for name in olds.keys().filter(|k| !news.contains_key(*k)) {
        match api.del_br(name) {
            Ok(()) => changed(&mut n, name, format_args!("bridge removed")),
            Err(e) => tracing::error!(bridge = %name, "reload: removing the bridge: {e}"),
        }
    }
    for (name, b) in &news {
        match olds.get(name) {
            None => {
                let one = Config {
                    ctl: Default::default(),
                    bridges: vec![(*b).clone()],
                };
                match super::seed::apply(api, &one, base) {
                    Ok(()) => changed(&mut n, name, format_args!("bridge added")),
                    Err(e) => tracing::error!(bridge = %name, "reload: adding the bridge: {e}"),
                }
            }
            Some(o) => {
                let empty = Vec::new();
                let of = old.flows.get(*name).unwrap_or(&empty);
                let nf = new.flows.get(*name).unwrap_or(&empty);
                n += bridge_diff(api, o, b, of, nf);
            }
        }
    }
    n
}

/// One bridge's changes.
fn bridge_diff(
    api: &Api,
    o: &BridgeConfig,
    b: &BridgeConfig,
    old_flows: &[String],
    new_flows: &[String],
) -> usize {
    let mut n = 0;
    let name = b.name.as_str();
    let log_err = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(bridge = %name, "reload: {what}: {e}");
    };
    // Bridge settings; a setting removed from the file goes back to its
    // default.
    let (ot, nt) = (o.setting_tokens(), b.setting_tokens());
    if ot != nt {
        match (options::bridge_settings(&ot), options::bridge_settings(&nt)) {
            (Ok(os), Ok(mut ns)) => {
                if ns.forward_bpdu.is_none() && os.forward_bpdu.is_some() {
                    ns.forward_bpdu = Some(false);
                }
                if ns.mac_aging_secs.is_none() && os.mac_aging_secs.is_some() {
                    ns.mac_aging_secs =
                        Some(crate::ofproto::BridgeConfig::default().mac_aging_secs);
                }
                if ns.mac_table_size.is_none() && os.mac_table_size.is_some() {
                    ns.mac_table_size =
                        Some(crate::ofproto::BridgeConfig::default().mac_table_size);
                }
                match api.set_bridge(name, &ns) {
                    Ok(_) => changed(&mut n, name, format_args!("settings {nt:?}")),
                    Err(e) => log_err("settings", &e),
                }
            }
            (_, Err(e)) | (Err(e), _) => log_err("settings", &e),
        }
    }
    if o.ct_timeouts != b.ct_timeouts {
        let mut toks: Vec<String> = b
            .ct_timeouts
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for k in o
            .ct_timeouts
            .keys()
            .filter(|k| !b.ct_timeouts.contains_key(*k))
        {
            if let Some(kind) = TimeoutKind::ALL.iter().find(|t| t.name() == k) {
                toks.push(format!("{k}={}", kind.default_secs()));
            }
        }
        match options::ct_timeouts(None, &toks).map_err(super::api::Error::from) {
            Ok(t) => match api.ct_set_timeouts(name, &t) {
                Ok(()) => changed(&mut n, name, format_args!("ct_timeouts {toks:?}")),
                Err(e) => log_err("ct_timeouts", &e),
            },
            Err(e) => log_err("ct_timeouts", &e),
        }
    }
    if o.ct_limits != b.ct_limits {
        let mut limits: Vec<_> = o
            .ct_limits
            .iter()
            .filter(|t| !b.ct_limits.contains(t))
            .filter_map(|t| options::ct_limit(t).ok())
            .map(|mut l| {
                // Removed: the zone inherits the default again, the
                // default becomes unlimited.
                l.limit = None;
                l
            })
            .collect();
        limits.extend(b.ct_limits.iter().filter_map(|t| options::ct_limit(t).ok()));
        match api.ct_set_limits(name, &limits) {
            Ok(()) => changed(&mut n, name, format_args!("ct_limits {:?}", b.ct_limits)),
            Err(e) => log_err("ct_limits", &e),
        }
    }
    if o.fail_mode != b.fail_mode {
        let mode = b
            .fail_mode
            .as_deref()
            .and_then(FailMode::parse)
            .unwrap_or_default();
        match api.set_fail_mode(name, mode) {
            Ok(()) => changed(&mut n, name, format_args!("fail_mode {}", mode.name())),
            Err(e) => log_err("fail_mode", &e),
        }
    }
    if o.controller != b.controller {
        let targets: Result<Vec<Target>, _> = b.controller.iter().map(|t| t.parse()).collect();
        match targets {
            Ok(t) => match api.set_controller(name, &t) {
                Ok(()) => changed(&mut n, name, format_args!("controllers {:?}", b.controller)),
                Err(e) => log_err("controllers", &e),
            },
            Err(e) => log_err("controllers", &e),
        }
    }
    n += ports_diff(api, o, b);
    n += flows_diff(api, name, old_flows, new_flows);
    n
}

/// A port's spec as the file gives it.
fn spec_of(p: &super::config::PortConfig) -> Option<PortSpec> {
    options::port_spec(&p.name, &p.option_strings()).ok()
}

/// The settings that take `old` to `new`: a setting removed from the file
/// goes back to its default.
fn settings_change(old: &PortSettings, new: &PortSettings) -> PortSettings {
    let d = PortInfo::new(0, "", PortKind::Dummy);
    let mut s = new.clone();
    if s.tag.is_none() && old.tag.is_some() {
        s.tag = Some(None);
    }
    if s.trunks.is_none() && old.trunks.is_some() {
        s.trunks = Some(Vec::new());
    }
    if s.vlan_mode.is_none() && old.vlan_mode.is_some() {
        s.vlan_mode = Some(None);
    }
    if s.bpdu_guard.is_none() && old.bpdu_guard.is_some() {
        s.bpdu_guard = Some(d.bpdu_guard);
    }
    if s.mac_limit.is_none() && old.mac_limit.is_some() {
        s.mac_limit = Some(d.mac_limit);
    }
    if s.flood.is_none() && old.flood.is_some() {
        s.flood = Some(d.flood);
    }
    if s.enable.is_none() && old.enable.is_some() {
        s.enable = Some(d.enabled);
    }
    s
}

fn ports_diff(api: &Api, o: &BridgeConfig, b: &BridgeConfig) -> usize {
    let mut n = 0;
    let name = b.name.as_str();
    let olds: BTreeMap<&str, PortSpec> = o
        .ports
        .iter()
        .filter_map(|p| Some((p.name.as_str(), spec_of(p)?)))
        .collect();
    let news: BTreeMap<&str, PortSpec> = b
        .ports
        .iter()
        .filter_map(|p| Some((p.name.as_str(), spec_of(p)?)))
        .collect();
    let add = |n: &mut usize, spec: &PortSpec, what: &str| match api.add_configured_port(name, spec)
    {
        Ok(a) => changed(
            n,
            name,
            format_args!("port {} {what} (ofport {})", spec.name, a.ofport),
        ),
        Err(e) => tracing::error!(bridge = %name, port = %spec.name, "reload: port not added: {e}"),
    };
    for (p, _) in olds.iter().filter(|(p, _)| !news.contains_key(*p)) {
        match api.del_port(name, p) {
            Ok(()) => changed(&mut n, name, format_args!("port {p} removed")),
            Err(e) => tracing::error!(bridge = %name, port = %p, "reload: removing the port: {e}"),
        }
    }
    for (p, spec) in &news {
        match olds.get(p) {
            None => add(&mut n, spec, "added"),
            Some(old) if old == spec => {}
            Some(old)
                if old.kind != spec.kind
                    || old.type_options != spec.type_options
                    || old.ofport != spec.ofport =>
            {
                // A new type or device options: a new port object.
                if let Err(e) = api.del_port(name, p) {
                    tracing::error!(bridge = %name, port = %p, "reload: replacing the port: {e}");
                }
                add(&mut n, spec, "replaced");
            }
            Some(old) => {
                let s = settings_change(&old.settings, &spec.settings);
                match api.set_port(name, p, &s) {
                    Ok(_) => changed(&mut n, name, format_args!("port {p} settings changed")),
                    Err(e) => {
                        tracing::error!(bridge = %name, port = %p, "reload: port settings: {e}")
                    }
                }
            }
        }
    }
    n
}

/// Flows the file no longer has are deleted (strictly: same match and
/// priority), flows it gained are added, in one atomic batch.
fn flows_diff(api: &Api, name: &str, old: &[String], new: &[String]) -> usize {
    let (os, ns): (BTreeSet<&String>, BTreeSet<&String>) =
        (old.iter().collect(), new.iter().collect());
    let removed: Vec<&str> = old
        .iter()
        .filter(|l| !ns.contains(l))
        .map(String::as_str)
        .collect();
    let added: Vec<&str> = new
        .iter()
        .filter(|l| !os.contains(l))
        .map(String::as_str)
        .collect();
    if removed.is_empty() && added.is_empty() {
        return 0;
    }
    let ports = match api.ports(name) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(bridge = %name, "reload: flows: {e}");
            return 0;
        }
    };
    let parse = |lines: &[&str]| flowtext::file(&lines.join("\n"), "configuration", &ports);
    let mods = parse(&removed).and_then(|del| {
        let mut mods: Vec<_> = del
            .into_iter()
            .filter(|m| m.cmd == FlowModCmd::Add)
            .map(|mut m| {
                m.cmd = FlowModCmd::Delete { strict: true };
                m.table = Some(m.spec.table);
                m
            })
            .collect();
        mods.extend(parse(&added)?);
        Ok(mods)
    });
    match mods.and_then(|m| api.flow_mods(name, &m, Some("configuration"), Instant::now())) {
        Ok(r) => {
            tracing::info!(bridge = %name, "reload: flows: {} added, {} removed", added.len(), removed.len());
            let _ = r;
            1
        }
        Err(e) => {
            tracing::error!(bridge = %name, "reload: flows not changed: {e}");
            0
        }
    }
}

/// The daemon's reload and save machinery: the record of the applied
/// configuration, the saver, and the SIGHUP hook.
pub struct Persist {
    api: Arc<Api>,
    config: Option<PathBuf>,
    seed: Arc<Mutex<Option<Seed>>>,
    unrestored: Arc<Mutex<Unrestored>>,
    saver: Mutex<Option<Arc<Saver>>>,
    /// One reload at a time.
    reloading: Mutex<()>,
}

impl Persist {
    /// Reloads from `config` (when given) on SIGHUP; `seed` is the
    /// configuration as last applied.
    pub fn new(
        api: Arc<Api>,
        config: Option<PathBuf>,
        seed: Option<Seed>,
        unrestored: Unrestored,
    ) -> Arc<Persist> {
        Arc::new(Persist {
            api,
            config,
            seed: Arc::new(Mutex::new(seed)),
            unrestored: Arc::new(Mutex::new(unrestored)),
            saver: Mutex::new(None),
            reloading: Mutex::new(()),
        })
    }

    /// Starts saving into `dir` (a first snapshot is written now).
    pub fn start_saver(&self, dir: StateDir) -> Result<Arc<Saver>, StateError> {
        let (api, seed) = (self.api.clone(), self.seed.clone());
        let api2 = self.api.clone();
        let cache = Mutex::new(FlowsCache::default());
        let kept = self.unrestored.clone();
        let saver = Arc::new(Saver::start(
            dir,
            Box::new(move || {
                let mut bridges = api.snapshot_cached(Instant::now(), &mut cache.lock());
                keep_unrestored(&mut bridges, &mut kept.lock());
                State {
                    format: state::FORMAT,
                    bridges,
                    seed: seed.lock().clone(),
                    journal_seq: 0,
                }
            }),
            Box::new(move || api2.flows_marker()),
        )?);
        *self.saver.lock() = Some(saver.clone());
        // OpenFlow barriers wait for the save too.
        self.api.set_save_hook(Some(saver.barrier_hook()));
        Ok(saver)
    }

    /// Re-reads the configuration file and applies what changed; saves.
    pub fn reload(&self) {
        let _one = self.reloading.lock();
        let Some(path) = &self.config else {
            tracing::info!(
                "SIGHUP: no configuration file to re-read (started with the embedded default)"
            );
            return;
        };
        let old = self.seed.lock().clone();
        let new = apply_file(&self.api, old.as_ref(), path);
        *self.seed.lock() = new;
        let saver = self.saver.lock().clone();
        if let Some(s) = saver {
            if let Err(e) = s.commit() {
                tracing::error!("after reload: {e}");
            }
        }
    }

    /// [`Persist::reload`] as the server's SIGHUP hook.
    pub fn reload_hook(self: &Arc<Self>) -> super::server::Reload {
        let me = self.clone();
        Arc::new(move || me.reload())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::api::CtLimit;
    use crate::flow::parse::FlowCmd;

    fn flow(api: &Api, br: &str, text: &str) {
        let m = flowtext::one(text, FlowCmd::Add, &api.ports(br).unwrap()).unwrap();
        api.flow_mods(br, &[m], None, Instant::now()).unwrap();
    }

    fn port(api: &Api, br: &str, name: &str, opts: &[&str]) {
        let o: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        api.add_port(br, &options::port_spec(name, &o).unwrap())
            .unwrap();
    }

    #[test]
    fn a_snapshot_restored_into_a_new_switch_is_the_same_snapshot() {
        let api = Api::new();
        let now = Instant::now();
        api.add_br("br0", now).unwrap();
        api.add_br("br1", now).unwrap();
        port(
            &api,
            "br0",
            "a",
            &["type=dummy", "ofport=9", "tag=4", "mtu=1400"],
        );
        port(&api, "br0", "b", &["type=dummy", "trunks=1,2", "no-flood"]);
        port(
            &api,
            "br1",
            "c",
            &["type=dummy", "vlan_mode=native-untagged", "tag=3"],
        );
        flow(&api, "br0", "table=2,priority=9,cookie=0x77,idle_timeout=60,send_flow_rem,udp,tp_dst=53,actions=ct(commit,zone=4),output:a");
        flow(&api, "br0", "in_port=b,actions=resubmit(,2)");
        api.set_bridge(
            "br0",
            &options::bridge_settings(&["forward_bpdu=true".into(), "ct_checksum=skip".into()])
                .unwrap(),
        )
        .unwrap();
        api.ct_set_limits(
            "br0",
            &[
                CtLimit {
                    zone: None,
                    limit: Some(50),
                },
                CtLimit {
                    zone: Some(4),
                    limit: Some(5),
                },
            ],
        )
        .unwrap();
        api.ct_set_timeouts(
            "br0",
            &options::ct_timeouts(Some(4), &["tcp_established=77".into()]).unwrap(),
        )
        .unwrap();
        let before = api.snapshot(now);
        // Through the file's encoding, as a restart reads it.
        let st = State {
            format: state::FORMAT,
            bridges: before.clone(),
            seed: None,
            journal_seq: 0,
        };
        let bytes = state::encode(&st).unwrap();
        let back = state::parse(&bytes, Path::new("x")).unwrap();
        let api2 = Api::new();
        for b in &back.bridges {
            assert!(api2.restore_bridge(b, now).unwrap().is_empty());
        }
        assert_eq!(api2.snapshot(now), before);
        let mut cache = FlowsCache::default();
        assert_eq!(api2.snapshot_cached(now, &mut cache), before);
        assert_eq!(
            api2.snapshot_cached(now, &mut cache),
            before,
            "from the cache"
        );
        api.shutdown();
        api2.shutdown();
    }

    #[test]
    fn a_saved_port_that_cannot_be_attached_is_skipped_and_kept_in_the_state() {
        let api = Api::new();
        let now = Instant::now();
        api.add_br("br0", now).unwrap();
        port(&api, "br0", "a", &["type=dummy"]);
        let mut saved = api.snapshot(now);
        let mut bad = saved[0].ports[0].clone();
        bad.name = "t1".into();
        bad.ofport = 5;
        bad.kind = PortKind::Geneve;
        bad.type_options = vec![("remote_ip".into(), "not-an-address".into())];
        saved[0].ports.push(bad.clone());
        api.shutdown();

        let api2 = Api::new();
        let st = State {
            format: state::FORMAT,
            bridges: saved.clone(),
            seed: None,
            journal_seq: 0,
        };
        let mut kept = restore(&api2, &st, Path::new("state.json")).unwrap();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(
            api2.show(None).unwrap().bridges[0].ports.len(),
            1,
            "the rest started"
        );
        let mut snap = api2.snapshot(now);
        keep_unrestored(&mut snap, &mut kept);
        assert_eq!(snap, saved, "the port stays saved");
        // Once its ofport is taken by a new port, it is forgotten.
        port(&api2, "br0", "b", &["type=dummy", "ofport=5"]);
        let mut snap = api2.snapshot(now);
        keep_unrestored(&mut snap, &mut kept);
        assert!(kept.is_empty());
        assert!(!snap[0].ports.iter().any(|p| p.name == "t1"));
        api2.shutdown();
    }

    /// The applied configuration comes back from the state file equal, so
    /// a reload after a restart sees only what changed in the file.
    #[test]
    fn the_applied_configuration_survives_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[ctl]\nsocket='/tmp/x.sock'\n[[bridge]]\nname='br0'\nforward_bpdu=true\n\
             ct_timeouts={tcp_established=60}\nct_limits=['default=5']\n\
             settings={mac_aging=30}\nflows=['actions=drop']\n\
             [[bridge.port]]\nname='a'\ntype='tap'\ntag=5\ntrunks=[1,2]\nvnet_hdr=false\n",
        )
        .unwrap();
        let seed = read_checked(&p).unwrap();
        let st = State {
            format: state::FORMAT,
            bridges: Vec::new(),
            seed: Some(seed.clone()),
            journal_seq: 0,
        };
        let back = state::parse(&state::encode(&st).unwrap(), Path::new("x")).unwrap();
        assert_eq!(back.seed, Some(seed));
    }

    #[test]
    fn a_reload_applies_only_the_difference() {
        let dir = tempfile::tempdir().unwrap();
        let parse = |text: &str| {
            let p = dir.path().join("c.toml");
            std::fs::write(&p, text).unwrap();
            read_checked(&p).unwrap()
        };
        let old = parse(
            "[[bridge]]\nname='br0'\nflows=['priority=1,actions=drop','priority=2,actions=drop']\n\
             [[bridge.port]]\nname='a'\ntype='dummy'\ntag=5\n\
             [[bridge.port]]\nname='b'\ntype='dummy'\n\
             [[bridge]]\nname='gone'\n",
        );
        let api = Api::new();
        super::super::seed::apply(&api, &old.config, dir.path()).unwrap();
        let new = parse(
            "[[bridge]]\nname='br0'\nflows=['priority=2,actions=drop','priority=3,actions=drop']\n\
             [[bridge.port]]\nname='a'\ntype='dummy'\n\
             [[bridge.port]]\nname='b'\ntype='dummy'\n",
        );
        // A bad file is refused before anything changes.
        let p = dir.path().join("bad.toml");
        std::fs::write(
            &p,
            "[[bridge]]\nname='x'\n[[bridge.port]]\nname='p'\ntype='nosuch'\n",
        )
        .unwrap();
        assert!(read_checked(&p).is_err());
        let n = apply_diff(&api, &old, &new, dir.path());
        assert_eq!(n, 3, "bridge removed, port a's tag dropped, flows");
        assert_eq!(api.bridge_names(), vec!["br0".to_string()]);
        let show = api.show(Some("br0")).unwrap();
        let a = show.bridges[0]
            .ports
            .iter()
            .find(|p| p.port == "a")
            .unwrap();
        assert_eq!(a.policy.as_ref().unwrap().tag, None);
        let flows: Vec<u16> = api
            .dump_flows("br0", &Default::default(), Instant::now())
            .unwrap()
            .iter()
            .map(|f| f.spec.priority)
            .collect();
        assert_eq!(flows, vec![3, 2, 0], "0: the new bridge's own NORMAL flow");
        assert_eq!(apply_diff(&api, &new, &new, dir.path()), 0);
        api.shutdown();
    }
}
