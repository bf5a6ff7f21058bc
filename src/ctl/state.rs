//! The state directory: what vswitchctl and OpenFlow changed, kept on disk
//! so a restart (clean, `kill -9`, or a crash) comes back with it.
//!
//! What is saved is a typed snapshot of the switch ([`State`], JSON with a
//! format number): bridges and their settings, conntrack policy, limits and
//! timeouts, fragment reassembly settings, TLV maps, controllers and fail
//! mode, ports (type, type options, OpenFlow number, policy) and every flow
//! as an `add-flow` line. Learned and counted things (MAC table, tracked
//! connections, counters) are not: they are rebuilt by traffic.
//!
//! Writes are atomic: the snapshot goes to `state.json.tmp` in the same
//! directory, is fsynced, renamed over `state.json`, and the directory is
//! fsynced, so after a crash the file is either the old snapshot or the
//! new one, never a mix. Each bridge's flows live in a file of their own
//! (`BRIDGE.HASH.flows`, one `add-flow` line each), written the same way
//! before `state.json` refers to it and only when they changed, so a port
//! change beside 100,000 flows does not rewrite them.
//!
//! Durability: [`Saver::commit`] returns once a snapshot taken after the
//! caller's change is on disk. Concurrent commits share one write (group
//! commit): the saver thread takes one snapshot for every change made
//! before it started, so a burst of requests costs one write, not one
//! each. The control socket answers a changing request only after its
//! commit. An OpenFlow BARRIER_REPLY that follows changes waits too
//! ([`Saver::barrier_hook`]): a controller's barrier means "applied and
//! saved". What it waits for is an append to the OpenFlow journal
//! ([`JOURNAL_FILE`]): the flow-mods the session applied since its last
//! barrier, as they came on the wire, one fsynced line, so `ovs-ofctl
//! add-flows` (a barrier after every flow-mod) costs one small append per
//! flow, not a snapshot of 10,000 flows each. Every batch is stamped when
//! it is applied ([`ApplyClock`]); each snapshot records the last stamp it
//! holds (`journal_seq`, read with no apply in flight), batches stamped
//! after it are replayed in stamp order onto the saved flows when the
//! directory is loaded, and the journal is cut back to them after every
//! snapshot. So a journaled flow-mod never lands on top of a later change
//! the snapshot already holds. Changes that do not come through the control socket (OpenFlow
//! flow-mods and bundles, flow expiry) are noticed by the saver, which
//! polls each bridge's flow-table version every [`POLL`], and saved once
//! the tables stood still for one poll, or after [`MAX_DEFER`] while they
//! keep changing.
//!
//! One daemon per directory: the directory's `lock` file is locked for the
//! daemon's life, so a second vswitchd on the same directory is refused
//! instead of both overwriting each other's state.
//!
//! Thread-safety: [`Saver`] is shared by the control threads; one mutex
//! and condition variable hand requests to its thread.

use super::config::Config;
use super::hex::{hex_decode, hex_encode};
use crate::conntrack::CtPolicy;
use crate::ofproto::{BridgeConfig, PortKind, VlanMode};
use crate::openflow::backend::{ApplyClock, NotDurable, SaveHook, Unsaved};
use crate::port::geneve::TlvMapping;
use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The snapshot format this version writes and reads.
pub const FORMAT: u32 = 1;

/// The state file's name in the state directory.
pub const STATE_FILE: &str = "state.json";

/// How often the saver looks for changes that came from elsewhere than the
/// control socket (OpenFlow flow-mods, flow expiry).
pub const POLL: Duration = Duration::from_millis(100);

/// The longest a change from elsewhere than the control socket waits for
/// the tables to stand still before it is saved anyway.
pub const MAX_DEFER: Duration = Duration::from_secs(1);

/// The state directory for root.
pub const ROOT_STATE_DIR: &str = "/var/lib/vswitch";

/// Everything saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// [`FORMAT`] of the writer.
    pub format: u32,
    /// The bridges.
    pub bridges: Vec<BridgeState>,
    /// The configuration last applied (at first start or by SIGHUP), so a
    /// later reload applies only what changed in the file since.
    #[serde(default)]
    pub seed: Option<Seed>,
    /// The last OpenFlow journal entry the snapshot covers (later ones
    /// are replayed onto its flows when it is loaded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub journal_seq: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The OpenFlow journal's file in the state directory: one JSON line per
/// barrier that followed flow-mods.
pub const JOURNAL_FILE: &str = "openflow.journal";

/// One journal line: a session's flow-mods between two barriers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalEntry {
    /// The highest stamp of its batches.
    seq: u64,
    bridge: String,
    /// The session's OpenFlow wire version.
    version: u8,
    batches: Vec<JournalBatch>,
}

/// One atomic batch (a flow-mod, or a bundle's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalBatch {
    /// When it was applied ([`ApplyClock`]).
    stamp: u64,
    table_id_ext: bool,
    /// The messages, in hex.
    msgs: Vec<String>,
}

/// The journal: its append handle, the last sequence number, and the
/// lines since the last cut.
struct Journal {
    path: PathBuf,
    file: Option<std::fs::File>,
    seq: u64,
    lines: Vec<(u64, String)>,
    /// Appends made by this process.
    appends: u64,
    /// The file may hold more than `lines` (a torn tail found at open).
    stale: bool,
}

/// The entries of the journal file at `path`, in order. A line that does
/// not parse ends the journal (a torn append, never acknowledged).
fn read_journal(path: &Path) -> Result<Vec<JournalEntry>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut v = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match serde_json::from_str::<JournalEntry>(line) {
            Ok(e) => v.push(e),
            Err(e) => {
                tracing::warn!(file = %path.display(), line = i + 1, "journal ends at a line that does not parse ({e}): an append cut short, never acknowledged");
                break;
            }
        }
    }
    Ok(v)
}

impl Journal {
    fn open(dir: &StateDir) -> Result<Journal, StateError> {
        let path = dir.dir.join(JOURNAL_FILE);
        let entries = read_journal(&path)?;
        let seq = entries.iter().map(|e| e.seq).max().unwrap_or(0);
        let lines = entries
            .into_iter()
            .filter_map(|e| Some((e.seq, serde_json::to_string(&e).ok()?)))
            .collect();
        Ok(Journal {
            path,
            file: None,
            seq,
            lines,
            appends: 0,
            stale: std::fs::metadata(dir.dir.join(JOURNAL_FILE)).is_ok_and(|m| m.len() > 0),
        })
    }

    /// Appends `u`'s flow-mods for `bridge`; returns once they are on
    /// disk.
    fn append(&mut self, dir: &Path, bridge: &str, u: &Unsaved) -> Result<(), StateError> {
        let jpath = self.path.clone();
        let werr = |source| StateError::Write {
            path: jpath.clone(),
            source,
        };
        let entry = JournalEntry {
            seq: u.flow_mods.iter().map(|b| b.stamp).max().unwrap_or(0),
            bridge: bridge.to_string(),
            version: u.version.wire(),
            batches: u
                .flow_mods
                .iter()
                .map(|b| JournalBatch {
                    stamp: b.stamp,
                    table_id_ext: b.table_id_ext,
                    msgs: b.msgs.iter().map(|m| hex_encode(m)).collect(),
                })
                .collect(),
        };
        let line = serde_json::to_string(&entry).map_err(StateError::Encode)?;
        if self.stale {
            // A failed append may have left part of a line: never append
            // after it (a load stops at the first bad line).
            self.rewrite(dir)?;
        }
        if self.file.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(werr)?;
            // A new file is durable only once its directory is.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(werr)?;
            self.file = Some(f);
        }
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| werr(std::io::Error::other("journal not open")))?;
        let mut bytes = line.clone().into_bytes();
        bytes.push(b'\n');
        let r = f.write_all(&bytes).and_then(|()| f.sync_data());
        if let Err(e) = r {
            // Whatever part was written is cut at the next load, or by
            // the next cut; start a fresh handle.
            self.file = None;
            self.stale = true;
            return Err(werr(e));
        }
        self.seq = self.seq.max(entry.seq);
        self.appends += 1;
        self.lines.push((entry.seq, line));
        Ok(())
    }

    /// Drops the entries a snapshot covers (`upto` and before): the file
    /// is rewritten, atomically, with the rest.
    fn cut(&mut self, upto: u64, dir: &StateDir) -> Result<(), StateError> {
        let before = self.lines.len();
        self.lines.retain(|(s, _)| *s > upto);
        // Nothing to drop: no rewrite (a snapshot with no OpenFlow
        // activity costs no journal write).
        if self.lines.len() == before && !self.stale {
            return Ok(());
        }
        self.rewrite(&dir.dir)
    }

    /// Writes the file anew, atomically, with `lines`.
    fn rewrite(&mut self, dir: &Path) -> Result<(), StateError> {
        let mut text = String::new();
        for (_, l) in &self.lines {
            text.push_str(l);
            text.push('\n');
        }
        self.file = None;
        write_atomic(dir, JOURNAL_FILE, text.as_bytes())?;
        self.stale = false;
        Ok(())
    }
}

/// Writes `bytes` as file `name` of `dir`, atomically and durably
/// (temporary file, fsync, rename, fsync of the directory).
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StateError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let werr = |source| StateError::Write {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::File::create(&tmp).map_err(werr)?;
    f.write_all(bytes).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(werr)?;
    // The rename is durable only once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(werr)?;
    Ok(())
}

/// Replays the journal entries after `st.journal_seq` onto the saved
/// flows of their bridges (through a scratch table, as the switch applied
/// them), so `st` holds every flow-mod a barrier acknowledged.
fn replay_journal(st: &mut State, entries: Vec<JournalEntry>) {
    use crate::flow::parse::{parse_flow, FlowCmd};
    use crate::ofproto::{FlowFilter, FlowMod, FlowModCmd, Ofproto};
    use crate::openflow::wire::message::{Ctx, Message};
    use crate::openflow::wire::Version;
    let now = Instant::now();
    let entries: Vec<JournalEntry> = entries
        .into_iter()
        .filter(|e| e.seq > st.journal_seq)
        .collect();
    if entries.is_empty() {
        return;
    }
    let journal_seq = st.journal_seq;
    // A bridge added after the last snapshot (by the database, or by a
    // command whose save was still to come) has acknowledged flow-mods
    // all the same: it comes back as a fresh bridge has it, with them.
    for e in &entries {
        if !st.bridges.iter().any(|b| b.name == e.bridge) {
            tracing::info!(bridge = %e.bridge, "OpenFlow journal of a bridge added after the last snapshot");
            st.bridges.push(BridgeState::fresh(&e.bridge));
        }
    }
    for b in &mut st.bridges {
        let mine: Vec<&JournalEntry> = entries.iter().filter(|e| e.bridge == b.name).collect();
        if mine.is_empty() {
            continue;
        }
        let of = Ofproto::new(&b.name, now);
        let mut saved = Vec::with_capacity(b.flows.len());
        for f in &b.flows {
            match parse_flow(f, FlowCmd::Add, &crate::flow::NoPortNames) {
                Ok(spec) => saved.push(FlowMod {
                    cmd: FlowModCmd::Add,
                    spec,
                    table: None,
                }),
                Err(e) => {
                    tracing::error!(bridge = %b.name, "saved flow '{f}' does not parse ({e}); journal not replayed");
                    saved.clear();
                    break;
                }
            }
        }
        if saved.len() != b.flows.len() || of.flow_mods(&saved, now).is_err() {
            continue;
        }
        // In the order they were applied, whichever session's barrier
        // came first.
        let mut batches: Vec<(&JournalBatch, u8)> = mine
            .iter()
            .flat_map(|e| e.batches.iter().map(move |b| (b, e.version)))
            .filter(|(b, _)| b.stamp > journal_seq)
            .collect();
        batches.sort_by_key(|(b, _)| b.stamp);
        let mut n = 0;
        for (batch, version) in batches {
            let Some(v) = Version::from_wire(version) else {
                tracing::warn!(bridge = %b.name, stamp = batch.stamp, "journal batch of an unknown OpenFlow version; skipped");
                continue;
            };
            let ctx = Ctx {
                table_id_ext: batch.table_id_ext,
            };
            let mods: Option<Vec<FlowMod>> = batch
                .msgs
                .iter()
                .map(|h| {
                    let raw = hex_decode(h).ok()?;
                    match Message::decode(&raw, v, ctx).ok()? {
                        (_, Message::FlowMod(fm)) => fm.to_ofproto(v).ok(),
                        _ => None,
                    }
                })
                .collect();
            match mods.map(|m| of.flow_mods(&m, now)) {
                Some(Ok(_)) => n += 1,
                _ => {
                    tracing::warn!(bridge = %b.name, stamp = batch.stamp, "journal batch that no longer applies; skipped")
                }
            }
        }
        b.flows = of
            .dump_flows(&FlowFilter::default(), now)
            .iter()
            .map(|f| crate::flow::format::format_flow(&f.spec, None))
            .collect();
        tracing::info!(bridge = %b.name, batches = n, "OpenFlow journal replayed onto the saved flows");
    }
}

/// The configuration file as last applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// The file as parsed.
    pub config: Config,
    /// Each bridge's flows from `flows` and the contents of `flow_files`,
    /// as lines, in order (a flow file may change without the
    /// configuration changing).
    pub flows: BTreeMap<String, Vec<String>>,
}

/// One bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeState {
    /// Name.
    pub name: String,
    /// `set-bridge` settings.
    pub config: BridgeConfig,
    /// Conntrack policy, limits and timeouts.
    pub ct: CtPolicy,
    /// Fragment reassembly settings.
    pub ipf: IpfState,
    /// Geneve TLV map.
    pub tlv: Vec<TlvMapping>,
    /// `standalone` or `secure`.
    pub fail_mode: String,
    /// Controller targets.
    pub controllers: Vec<String>,
    /// Ports, by OpenFlow number.
    pub ports: Vec<PortState>,
    /// Flows as `add-flow` lines with port numbers, table by table. In
    /// the file they live in their own file ([`BridgeState::flows_file`]),
    /// so a change elsewhere does not rewrite them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flows: Vec<String>,
    /// In `state.json`: the file in the state directory holding the flows,
    /// one per line (`BRIDGE.HASH.flows`, loadable with `vswitchctl
    /// add-flows`). Never set in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flows_file: Option<String>,
}

impl BridgeState {
    /// Bridge `name` as `add-br` makes it: default settings, conntrack
    /// policy and reassembly, no TLV map, controllers, ports or flows.
    pub fn fresh(name: &str) -> BridgeState {
        let ct = crate::conntrack::ConnTracker::default();
        BridgeState {
            name: name.to_string(),
            config: BridgeConfig::default(),
            ct: ct.policy(),
            ipf: IpfState::from(&ct.ipf_status()),
            tlv: Vec::new(),
            fail_mode: super::openflow::FailMode::default().name().to_string(),
            controllers: Vec::new(),
            ports: Vec::new(),
            flows: Vec::new(),
            flows_file: None,
        }
    }
}

/// Fragment reassembly settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpfState {
    /// IPv4 reassembly on.
    pub enabled_v4: bool,
    /// IPv6 reassembly on.
    pub enabled_v6: bool,
    /// Smallest IPv4 fragment other than the last.
    pub min_frag_size_v4: u32,
    /// Smallest IPv6 fragment other than the last.
    pub min_frag_size_v6: u32,
    /// Global fragment budget.
    pub max_frags: u32,
}

impl From<&crate::conntrack::IpfStatus> for IpfState {
    fn from(s: &crate::conntrack::IpfStatus) -> IpfState {
        IpfState {
            enabled_v4: s.enabled_v4,
            enabled_v6: s.enabled_v6,
            min_frag_size_v4: s.min_frag_size_v4,
            min_frag_size_v6: s.min_frag_size_v6,
            max_frags: s.max_frags,
        }
    }
}

/// One port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortState {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: PortKind,
    /// OpenFlow number.
    pub ofport: u32,
    /// Options of its type (`remote_ip`, `vnet_hdr`, ...).
    pub type_options: Vec<(String, String)>,
    /// MTU the operator set, if any.
    pub mtu: Option<u32>,
    /// Policy.
    pub policy: Option<PortPolicy>,
}

/// A port's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortPolicy {
    /// Access / native VLAN.
    pub tag: Option<u16>,
    /// Trunked VLANs.
    pub trunks: Vec<u16>,
    /// VLAN mode, when set explicitly.
    pub vlan_mode: Option<VlanMode>,
    /// Included in flooding.
    pub flood: bool,
    /// Forwarding.
    pub enabled: bool,
    /// BPDU guard.
    pub bpdu_guard: bool,
    /// MAC learning limit.
    pub mac_limit: u32,
}

/// The state directory or its file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No state directory given and none can be chosen.
    #[error("no state directory: not root and neither XDG_STATE_HOME nor HOME is set (use --state-dir DIR, or --no-state)")]
    NoDefault,
    /// The directory cannot be created or opened.
    #[error("state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another vswitchd holds the directory.
    #[error(
        "state directory {path} is in use by another vswitchd (stop it, or use --state-dir DIR)"
    )]
    InUse {
        /// The directory.
        path: PathBuf,
    },
    /// The state file exists but cannot be read.
    #[error("state file {path}: {source} (move it aside to start from the configuration)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not a snapshot this version understands.
    #[error("state file {path} is corrupt: {source} (move it aside, e.g. `mv {path} {path}.bad`, to start from the configuration)")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The state file names a flows file outside the state directory.
    #[error("state file {path} names {name:?} as a flows file: only BRIDGE.HASH.flows in the state directory is allowed (move the file aside to start from the configuration)")]
    FlowsFile {
        /// The state file.
        path: PathBuf,
        /// The name it gives.
        name: String,
    },
    /// The state file was written by a version with another format.
    #[error("state file {path} has format {found}; this vswitchd reads format {FORMAT} (move it aside to start from the configuration)")]
    Format {
        /// The file.
        path: PathBuf,
        /// The file's format number.
        found: u32,
    },
    /// Writing the snapshot failed.
    #[error("saving state to {path}: {source}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The snapshot could not be encoded.
    #[error("encoding the state: {0}")]
    Encode(#[source] serde_json::Error),
    /// The saver is gone (the daemon is stopping).
    #[error("the state saver has stopped; the change is applied but not saved")]
    Stopped,
    /// The save that would have included the change failed.
    #[error("the change is applied but could not be saved: {0}")]
    NotSaved(String),
}

/// The default state directory: [`ROOT_STATE_DIR`] for root, else
/// `$XDG_STATE_HOME/vswitch`, else `~/.local/state/vswitch`.
pub fn default_dir() -> Result<PathBuf, StateError> {
    if super::current_uid() == 0 {
        return Ok(PathBuf::from(ROOT_STATE_DIR));
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("vswitch"));
    }
    if let Some(h) = std::env::var_os("HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(h).join(".local/state/vswitch"));
    }
    Err(StateError::NoDefault)
}

/// An open, locked state directory.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    /// Held locked for the daemon's life (from [`StateDir::lock`] on,
    /// for one opened with [`StateDir::open_unlocked`]).
    lock: std::fs::File,
}

impl StateDir {
    /// Creates (mode 0700) and locks `dir`.
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        let mut d = StateDir::open_unlocked(dir)?;
        d.try_lock()?;
        // A temporary file left by a crash mid-write is not the state
        // (left-over flow files are removed by the first save).
        let _ = std::fs::remove_file(dir.join(format!("{STATE_FILE}.tmp")));
        Ok(d)
    }

    /// Takes the directory's lock; an upgrade's new process does once
    /// the old one has gone (it held the lock until then), waiting a
    /// little for the old one's exit to release it.
    pub fn lock(&mut self) -> Result<(), StateError> {
        let t0 = std::time::Instant::now();
        loop {
            match self.try_lock() {
                Err(StateError::InUse { .. })
                    if t0.elapsed() < std::time::Duration::from_secs(5) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }

    fn try_lock(&mut self) -> Result<(), StateError> {
        match self.lock.try_lock() {
            Ok(()) => Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => Err(StateError::InUse {
                path: self.dir.clone(),
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(StateError::Dir {
                path: self.dir.clone(),
                source,
            }),
        }
    }

    /// Creates (mode 0700) and opens `dir` without locking it, for
    /// reading the state while its daemon still runs (an upgrade); call
    /// [`StateDir::lock`] before saving anything.
    pub fn open_unlocked(dir: &Path) -> Result<StateDir, StateError> {
        use std::os::unix::fs::DirBuilderExt;
        let err = |source| StateError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(err)?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
            lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The state file.
    pub fn file(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The saved state, or `None` when there is none yet (a first start).
    /// Each bridge's flows are read from its flows file.
    pub fn load(&self) -> Result<Option<State>, StateError> {
        let path = self.file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let mut st = parse(&bytes, &path)?;
        for b in &mut st.bridges {
            if let Some(name) = b.flows_file.take() {
                let fpath = self.dir.join(&name);
                if name.contains('/') || !name.ends_with(".flows") {
                    return Err(StateError::FlowsFile { path, name });
                }
                let text = std::fs::read_to_string(&fpath).map_err(|source| StateError::Read {
                    path: fpath.clone(),
                    source,
                })?;
                b.flows = text
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string)
                    .collect();
            }
        }
        let journal = read_journal(&self.dir.join(JOURNAL_FILE))?;
        replay_journal(&mut st, journal);
        Ok(Some(st))
    }

    /// The `journal_seq` of the state file, 0 when there is none (read
    /// without its flows).
    fn saved_journal_seq(&self) -> u64 {
        #[derive(Deserialize)]
        struct Head {
            #[serde(default)]
            journal_seq: u64,
        }
        std::fs::read(self.file())
            .ok()
            .and_then(|b| serde_json::from_slice::<Head>(&b).ok())
            .map_or(0, |h| h.journal_seq)
    }

    /// Writes `bytes` as file `name` of the directory, atomically and
    /// durably (temporary file, fsync, rename, fsync of the directory).
    fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        write_atomic(&self.dir, name, bytes)
    }

    /// Writes `bytes` as the state file, atomically and durably.
    pub fn write(&self, bytes: &[u8]) -> Result<(), StateError> {
        self.write_file(STATE_FILE, bytes)
    }

    /// Saves `s`: each bridge's flows go to their own file when they
    /// changed since `w` last saw them (named by a hash of their text, and
    /// durable before anything refers to them), then `state.json`
    /// referring to them replaces the old one atomically, then flow files
    /// nothing refers to any more are removed. A crash at any point leaves
    /// the old state or the new one whole. Skips writing when nothing
    /// changed.
    pub fn save(&self, s: &State, w: &mut Written) -> Result<(), StateError> {
        let mut disk = State {
            format: s.format,
            bridges: Vec::with_capacity(s.bridges.len()),
            seed: s.seed.clone(),
            journal_seq: s.journal_seq,
        };
        let mut files = BTreeMap::new();
        for b in &s.bridges {
            // Field by field: cloning the flows only to drop them would
            // cost as much as the save of a port change itself.
            let mut d = BridgeState {
                name: b.name.clone(),
                config: b.config.clone(),
                ct: b.ct.clone(),
                ipf: b.ipf,
                tlv: b.tlv.clone(),
                fail_mode: b.fail_mode.clone(),
                controllers: b.controllers.clone(),
                ports: b.ports.clone(),
                flows: Vec::new(),
                flows_file: None,
            };
            if !b.flows.is_empty() {
                let (lines, name) = match w.flows.remove(&b.name) {
                    Some((lines, name)) if lines == b.flows => (lines, name),
                    _ => {
                        let mut text = b.flows.join("\n");
                        text.push('\n');
                        let name = format!("{}.{:016x}.flows", b.name, fnv1a(text.as_bytes()));
                        self.write_file(&name, text.as_bytes())?;
                        (b.flows.clone(), name)
                    }
                };
                d.flows_file = Some(name.clone());
                files.insert(b.name.clone(), (lines, name));
            }
            disk.bridges.push(d);
        }
        let bytes = encode(&disk)?;
        if bytes != w.state {
            self.write(&bytes)?;
            w.state = bytes;
        }
        w.flows = files;
        // Only now are the old flow files unreferenced.
        let keep: std::collections::BTreeSet<&str> =
            w.flows.values().map(|(_, n)| n.as_str()).collect();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let n = e.file_name();
                let n = n.to_string_lossy();
                if (n.ends_with(".flows") || n.ends_with(".flows.tmp")) && !keep.contains(&*n) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }
}

/// What a [`StateDir`] last wrote: the state file's bytes and each
/// bridge's flows with the file holding them.
#[derive(Debug, Default)]
pub struct Written {
    state: Vec<u8>,
    flows: BTreeMap<String, (Vec<String>, String)>,
}

/// FNV-1a, 64 bits: names a flows file by its content, the same in every
/// run, so unchanged flows keep their file across restarts.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Reads a state file's bytes (`path` names it in errors).
pub fn parse(bytes: &[u8], path: &Path) -> Result<State, StateError> {
    // The format number is read first, so a newer file says so instead of
    // failing on a field this version does not know.
    #[derive(Deserialize)]
    struct Head {
        format: u32,
    }
    let head: Head = serde_json::from_slice(bytes).map_err(|source| StateError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    if head.format != FORMAT {
        return Err(StateError::Format {
            path: path.to_path_buf(),
            found: head.format,
        });
    }
    serde_json::from_slice(bytes).map_err(|source| StateError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Encodes a state as the file's bytes.
pub fn encode(s: &State) -> Result<Vec<u8>, StateError> {
    let mut v = serde_json::to_vec_pretty(s).map_err(StateError::Encode)?;
    v.push(b'\n');
    Ok(v)
}

/// Whether a control request changes what is saved (its reply then waits
/// for the save).
pub fn changes_state(req: &super::proto::Request) -> bool {
    use super::proto::Request as R;
    matches!(
        req,
        R::AddBr { .. }
            | R::DelBr { .. }
            | R::SetBridge { .. }
            | R::AddPort { .. }
            | R::DelPort { .. }
            | R::SetPort { .. }
            | R::AddFlow { .. }
            | R::AddFlows { .. }
            | R::ModFlows { .. }
            | R::DelFlows { .. }
            | R::SetCt { .. }
            | R::CtSetLimits { .. }
            | R::CtSetTimeout { .. }
            | R::IpfSet { .. }
            | R::AddTlvMap { .. }
            | R::DelTlvMap { .. }
            | R::SetController { .. }
            | R::SetFailMode { .. }
    )
}

/// What the saver thread and the committers share.
#[derive(Default)]
struct Progress {
    /// Commits asked for (a counter).
    requested: u64,
    /// Commits covered by the last save.
    saved: u64,
    /// The last failed save: the commit count it covered and why.
    failed: Option<(u64, String)>,
    /// Set to end the thread (after a last save).
    stopping: bool,
    /// False once the thread ended.
    alive: bool,
    /// Saves made for commits (each covering every commit asked before it
    /// started).
    saves: u64,
    /// Snapshots written, for commits or not.
    snapshots: u64,
}

struct Shared {
    m: Mutex<Progress>,
    cv: Condvar,
}

/// Takes a snapshot of the switch.
pub type Snapshot = Box<dyn Fn() -> State + Send + Sync>;
/// A number that changes when the switch changes outside the control
/// socket.
pub type Marker = Box<dyn Fn() -> u64 + Send + Sync>;

/// The saver: one thread writing snapshots, group-committing the changes
/// that wait for it.
pub struct Saver {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    file: PathBuf,
    journal: Arc<Mutex<Journal>>,
    clock: Arc<ApplyClock>,
    dir_path: PathBuf,
}

impl Saver {
    /// Writes a first snapshot now, then starts the thread.
    pub fn start(dir: StateDir, snapshot: Snapshot, marker: Marker) -> Result<Saver, StateError> {
        let mut last_marker = marker();
        let mut seen_marker = last_marker;
        let mut dirty_since: Option<Instant> = None;
        let mut written = Written::default();
        // The loaded state already holds the journal's entries (replayed):
        // the first snapshot covers them all.
        let mut journal = Journal::open(&dir)?;
        // Stamps go on from the last one given before (in the journal or
        // covered by the state file), so the replay filter stays right.
        let clock = Arc::new(ApplyClock::starting_after(
            journal.seq.max(dir.saved_journal_seq()),
        ));
        let mut first = snapshot();
        first.journal_seq = clock.now();
        dir.save(&first, &mut written)?;
        journal.cut(first.journal_seq, &dir)?;
        let journal = Arc::new(Mutex::new(journal));
        let jr = journal.clone();
        let ck = clock.clone();
        let dir_path = dir.dir.clone();
        let file = dir.file();
        let shared = Arc::new(Shared {
            m: Mutex::new(Progress {
                alive: true,
                ..Progress::default()
            }),
            cv: Condvar::new(),
        });
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("vswitchd-state".into())
            .spawn(move || {
                loop {
                    let (target, stopping) = {
                        let mut p = sh.m.lock();
                        if p.requested == p.saved && !p.stopping {
                            sh.cv.wait_for(&mut p, POLL);
                        }
                        (p.requested, p.stopping)
                    };
                    let asked = target != sh.m.lock().saved;
                    // Read before the snapshot: a change after this read
                    // shows up in the next round.
                    let m = marker();
                    // Changes from elsewhere are saved once the tables
                    // stood still for a poll, or after MAX_DEFER while
                    // they keep changing (100,000 single OpenFlow
                    // flow-mods must not each cost a snapshot).
                    let settled = m != last_marker
                        && (m == seen_marker
                            || dirty_since.is_some_and(|t: Instant| t.elapsed() >= MAX_DEFER));
                    if m != last_marker && m != seen_marker {
                        seen_marker = m;
                        dirty_since.get_or_insert_with(Instant::now);
                    }
                    if asked || stopping || settled {
                        last_marker = m;
                        seen_marker = m;
                        dirty_since = None;
                        // Every entry appended so far was applied before
                        // this read, so the snapshot covers it.
                        let upto = ck.now();
                        let mut st = snapshot();
                        st.journal_seq = upto;
                        let r = dir.save(&st, &mut written).and_then(|()| jr.lock().cut(upto, &dir));
                        let mut p = sh.m.lock();
                        p.snapshots += 1;
                        if asked {
                            p.saves += 1;
                        }
                        if let Err(e) = r {
                            tracing::error!("{e}");
                            p.failed = Some((target, e.to_string()));
                        }
                        p.saved = target;
                        sh.cv.notify_all();
                    }
                    if stopping {
                        break;
                    }
                }
                let journaled = jr.lock().appends;
                let mut p = sh.m.lock();
                p.alive = false;
                tracing::info!(
                    changes = p.requested,
                    saves = p.saves,
                    snapshots = p.snapshots,
                    journaled,
                    "state: acknowledged changes and the saves that covered them; snapshots written; OpenFlow barriers journaled"
                );
                sh.cv.notify_all();
            })
            .map_err(|source| StateError::Dir {
                path: file.clone(),
                source,
            })?;
        Ok(Saver {
            shared,
            thread: Mutex::new(Some(thread)),
            file,
            journal,
            clock,
            dir_path,
        })
    }

    /// The state file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Returns once a snapshot taken after the caller's change is on disk.
    pub fn commit(&self) -> Result<(), StateError> {
        let mut p = self.shared.m.lock();
        p.requested += 1;
        let mine = p.requested;
        self.shared.cv.notify_all();
        while p.saved < mine {
            if !p.alive {
                return Err(StateError::Stopped);
            }
            self.shared.cv.wait(&mut p);
        }
        match &p.failed {
            Some((n, why)) if *n >= mine => Err(StateError::NotSaved(why.clone())),
            _ => Ok(()),
        }
    }

    /// What an OpenFlow barrier waits for: a [`Saver::commit`]. The saver
    /// is held weakly (its snapshot holds the switch, which holds the
    /// hook); once it is gone a barrier is told its changes are not saved.
    pub fn barrier_hook(self: &Arc<Self>) -> SaveHook {
        let weak = Arc::downgrade(self);
        SaveHook {
            clock: self.clock.clone(),
            save: Arc::new(
                move |bridge: &str, changes: &Unsaved| match weak.upgrade() {
                    Some(s) => s
                        .save_openflow(bridge, changes)
                        .map_err(|e| NotDurable(e.to_string())),
                    None => Err(NotDurable(StateError::Stopped.to_string())),
                },
            ),
        }
    }

    /// Makes a session's changes before a barrier durable: its flow-mods
    /// by a journal append, anything else by a commit.
    pub fn save_openflow(&self, bridge: &str, changes: &Unsaved) -> Result<(), StateError> {
        if changes.other {
            return self.commit();
        }
        if changes.flow_mods.is_empty() {
            return Ok(());
        }
        self.journal.lock().append(&self.dir_path, bridge, changes)
    }

    /// Changes committed so far, and the saves that covered them (fewer
    /// when commits came together).
    pub fn counts(&self) -> (u64, u64) {
        let p = self.shared.m.lock();
        (p.requested, p.saves)
    }

    /// Saves what is not saved yet and ends the thread.
    pub fn stop(&self) {
        self.shared.m.lock().stopping = true;
        self.shared.cv.notify_all();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn empty() -> State {
        State {
            format: FORMAT,
            bridges: Vec::new(),
            seed: None,
            journal_seq: 0,
        }
    }

    #[test]
    fn corrupt_truncated_and_newer_files_are_refused_with_the_file_named() {
        let p = Path::new("/var/lib/vswitch/state.json");
        let good = encode(&empty()).unwrap();
        assert_eq!(parse(&good, p).unwrap(), empty());
        let half = &good[..good.len() / 2];
        let e = parse(half, p).unwrap_err().to_string();
        assert!(e.contains("/var/lib/vswitch/state.json is corrupt"), "{e}");
        assert!(e.contains("line") && e.contains("move it aside"), "{e}");
        let e = parse(b"", p).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
        let e = parse(br#"{"format": 2, "bridges": [], "new_thing": 1}"#, p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has format 2"), "{e}");
        let e = parse(br#"{"format": 1, "bridges": [], "bogus": 1}"#, p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn writes_replace_the_file_whole_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let d = StateDir::open(dir.path()).unwrap();
        assert!(d.load().unwrap().is_none(), "no file: a first start");
        d.write(&encode(&empty()).unwrap()).unwrap();
        assert_eq!(d.load().unwrap(), Some(empty()));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        // One daemon per directory.
        assert!(matches!(
            StateDir::open(dir.path()),
            Err(StateError::InUse { .. })
        ));
        drop(d);
        // A temporary left by a crash mid-write is removed, never read.
        std::fs::write(dir.path().join("state.json.tmp"), b"{").unwrap();
        let d = StateDir::open(dir.path()).unwrap();
        assert!(!dir.path().join("state.json.tmp").exists());
        assert_eq!(d.load().unwrap(), Some(empty()));
    }

    fn bridge(name: &str, flows: &[&str]) -> BridgeState {
        BridgeState {
            name: name.into(),
            config: BridgeConfig::default(),
            ct: crate::conntrack::ConnTracker::default().policy(),
            ipf: IpfState {
                enabled_v4: true,
                enabled_v6: true,
                min_frag_size_v4: 0,
                min_frag_size_v6: 0,
                max_frags: 0,
            },
            tlv: Vec::new(),
            fail_mode: "standalone".into(),
            controllers: Vec::new(),
            ports: Vec::new(),
            flows: flows.iter().map(|f| f.to_string()).collect(),
            flows_file: None,
        }
    }

    fn flow_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".flows"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn flows_live_in_their_own_file_rewritten_only_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let d = StateDir::open(dir.path()).unwrap();
        let mut w = Written::default();
        let mut st = empty();
        st.bridges.push(bridge(
            "br0",
            &["priority=1,actions=drop", "actions=NORMAL"],
        ));
        st.bridges.push(bridge("br1", &[]));
        d.save(&st, &mut w).unwrap();
        let first = flow_files(dir.path());
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(first[0].starts_with("br0.") && first[0].ends_with(".flows"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(&first[0])).unwrap(),
            "priority=1,actions=drop\nactions=NORMAL\n"
        );
        assert_eq!(d.load().unwrap(), Some(st.clone()));
        // A change beside the flows keeps their file.
        let mtime = |n: &str| {
            std::fs::metadata(dir.path().join(n))
                .unwrap()
                .modified()
                .unwrap()
        };
        let before = mtime(&first[0]);
        st.bridges[0].fail_mode = "secure".into();
        d.save(&st, &mut w).unwrap();
        assert_eq!(flow_files(dir.path()), first);
        assert_eq!(mtime(&first[0]), before);
        // New flows: a new file, and the old one goes once unreferenced.
        st.bridges[0].flows.pop();
        d.save(&st, &mut w).unwrap();
        let second = flow_files(dir.path());
        assert_eq!(second.len(), 1);
        assert_ne!(second, first);
        assert_eq!(d.load().unwrap(), Some(st.clone()));
        // A missing flows file is an error naming it.
        std::fs::remove_file(dir.path().join(&second[0])).unwrap();
        let e = d.load().unwrap_err().to_string();
        assert!(e.contains(&second[0]), "{e}");
        // A state file naming a file elsewhere is refused.
        let text = std::fs::read_to_string(d.file())
            .unwrap()
            .replace(&second[0], "../../etc/passwd");
        std::fs::write(d.file(), text).unwrap();
        let e = d.load().unwrap_err().to_string();
        assert!(e.contains("only BRIDGE.HASH.flows"), "{e}");
    }

    /// Group commit: changes committed while a save runs are all covered
    /// by the next single save.
    #[test]
    fn commits_made_during_a_save_share_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let d = StateDir::open(dir.path()).unwrap();
        // The snapshot waits for a go after the first (start-up) one, so
        // the test decides who arrives while a save runs.
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let go_rx = parking_lot::Mutex::new(go_rx);
        let calls = Arc::new(AtomicU64::new(0));
        let c2 = calls.clone();
        let snap: Snapshot = Box::new(move || {
            if c2.fetch_add(1, Ordering::SeqCst) > 0 {
                let _ = go_rx.lock().recv();
            }
            empty()
        });
        let saver = Arc::new(Saver::start(d, snap, Box::new(|| 0)).unwrap());
        let commit = |s: &Arc<Saver>| {
            let s = s.clone();
            std::thread::spawn(move || s.commit().unwrap())
        };
        let first = commit(&saver);
        // The first save is running (blocked in its snapshot) ...
        while calls.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now();
        }
        // ... while seven more changes are committed.
        let rest: Vec<_> = (0..7).map(|_| commit(&saver)).collect();
        while saver.counts().0 < 8 {
            std::thread::yield_now();
        }
        go_tx.send(()).unwrap();
        first.join().unwrap();
        go_tx.send(()).unwrap();
        for t in rest {
            t.join().unwrap();
        }
        assert_eq!(saver.counts(), (8, 2), "eight changes, two saves");
        drop(go_tx);
        saver.stop();
    }

    /// The durability contract: once `commit` returns, the file holds a
    /// snapshot taken after the caller's change, from every thread.
    #[test]
    fn a_commit_returns_only_once_its_change_is_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let d = StateDir::open(dir.path()).unwrap();
        let file = d.file();
        // The "switch" is a counter; its snapshot is a bridge named by it.
        let value = Arc::new(AtomicU64::new(0));
        let v2 = value.clone();
        let snap: Snapshot = Box::new(move || {
            let mut s = empty();
            s.bridges
                .push(bridge(&v2.load(Ordering::SeqCst).to_string(), &[]));
            s
        });
        let saver = Arc::new(Saver::start(d, snap, Box::new(|| 0)).unwrap());
        let on_disk = |f: &Path| -> u64 {
            let s = parse(&std::fs::read(f).unwrap(), f).unwrap();
            s.bridges[0].name.parse().unwrap()
        };
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (saver, value, file) = (saver.clone(), value.clone(), file.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let mine = value.fetch_add(1, Ordering::SeqCst) + 1;
                        saver.commit().unwrap();
                        assert!(on_disk(&file) >= mine, "acknowledged before saved");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(on_disk(&file), 400);
        saver.stop();
        assert!(matches!(saver.commit(), Err(StateError::Stopped)));
    }

    /// A FLOW_MOD (OpenFlow 1.3) adding `in_port=PORT,actions=output:2`
    /// at priority `prio`, or deleting what matches `in_port=PORT` (any
    /// priority) with `delete`.
    fn flow_mod(port: u32, prio: u16, delete: bool) -> Vec<u8> {
        use crate::flow::{Action, Field, Match};
        use crate::openflow::wire::flow_mod::{FlowModMsg, MatchFormat};
        use crate::openflow::wire::message::Message;
        use crate::openflow::wire::Version;
        let mut m = Match::default();
        m.set_exact(Field::InPort, u128::from(port));
        let fm = FlowModMsg {
            format: MatchFormat::Oxm,
            command: if delete { 3 } else { 0 },
            table_id: if delete { 255 } else { 0 },
            cookie: 0,
            cookie_mask: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            priority: prio,
            buffer_id: u32::MAX,
            out_port: crate::flow::ofp_port::NONE,
            out_group: u32::MAX,
            flags: 0,
            importance: 0,
            matches: m,
            actions: if delete {
                vec![]
            } else {
                vec![Action::Output(2)]
            },
        };
        Message::FlowMod(fm).encode(Version::V13, 1)
    }

    /// `msgs` as a session applied them, one batch each, stamped by
    /// `hook`'s clock.
    fn unsaved(hook: &SaveHook, msgs: Vec<Vec<u8>>) -> Unsaved {
        Unsaved {
            version: crate::openflow::wire::Version::V13,
            flow_mods: msgs
                .into_iter()
                .map(|m| crate::openflow::backend::AppliedMods {
                    stamp: hook.stamped(|| ()).1,
                    table_id_ext: false,
                    msgs: vec![m],
                })
                .collect(),
            other: false,
        }
    }

    /// Flow-mods a barrier journaled survive a crash before the next
    /// snapshot (replayed onto the saved flows at load, deletes included),
    /// and a snapshot that covers them cuts the journal.
    #[test]
    fn journaled_flow_mods_are_replayed_until_a_snapshot_covers_them() {
        let dir = tempfile::tempdir().unwrap();
        let d = StateDir::open(dir.path()).unwrap();
        // The "switch": br0's flows as the snapshot sees them; the marker
        // moves when the test says the tables changed.
        let flows = Arc::new(Mutex::new(vec![
            "priority=5,in_port=9,actions=drop".to_string(),
            "priority=5,in_port=8,actions=drop".to_string(),
        ]));
        let marker = Arc::new(AtomicU64::new(0));
        let (f2, m2) = (flows.clone(), marker.clone());
        let snap: Snapshot = Box::new(move || {
            let mut s = empty();
            let lines: Vec<String> = f2.lock().clone();
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            s.bridges.push(bridge("br0", &refs));
            s
        });
        let saver =
            Arc::new(Saver::start(d, snap, Box::new(move || m2.load(Ordering::SeqCst))).unwrap());
        let hook = saver.barrier_hook();
        // Sessions' barriers in another order than their flow-mods were
        // applied: a delete of in_port=1 (stamp 1, journaled last), the
        // add of in_port=1 and 3 (2, 3), a delete of a saved flow (4).
        // The replay follows the stamps: in_port=1 stays.
        let early = unsaved(&hook, vec![flow_mod(1, 0, true)]);
        let late = unsaved(&hook, vec![flow_mod(1, 10, false), flow_mod(3, 20, false)]);
        (hook.save)("br0", &late).unwrap();
        (hook.save)("br0", &unsaved(&hook, vec![flow_mod(8, 0, true)])).unwrap();
        (hook.save)("br0", &early).unwrap();
        let journal = std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap();
        assert_eq!(journal.lines().count(), 3);
        // A torn last line (an append cut short) is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap()
            .write_all(b"{\"seq\":9,\"bri")
            .unwrap();
        // "Crash" now: what a restart loads.
        let loaded = StateDir::open_unlocked(dir.path())
            .unwrap()
            .load()
            .unwrap()
            .unwrap();
        let mut got = loaded.bridges[0].flows.clone();
        got.sort();
        assert_eq!(
            got,
            vec![
                "priority=10,in_port=1 actions=output:2".to_string(),
                "priority=20,in_port=3 actions=output:2".to_string(),
                "priority=5,in_port=9 actions=drop".to_string(),
            ]
        );
        // The switch's tables now hold them and a snapshot is taken: it
        // covers the journal, which is cut.
        *flows.lock() = loaded.bridges[0].flows.clone();
        marker.fetch_add(1, Ordering::SeqCst);
        let end = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).is_ok_and(|j| j.is_empty()) {
            assert!(
                Instant::now() < end,
                "the journal is cut after the snapshot"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let again = StateDir::open_unlocked(dir.path())
            .unwrap()
            .load()
            .unwrap()
            .unwrap();
        assert_eq!(again.journal_seq, 4);
        assert_eq!(again.bridges[0].flows, loaded.bridges[0].flows);
        // Later stamps carry on.
        (hook.save)("br0", &unsaved(&hook, vec![flow_mod(4, 10, false)])).unwrap();
        let j = std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap();
        assert!(j.starts_with("{\"seq\":5,"), "{j}");
        saver.stop();
        // A restart's stamps go on after the state file's.
        let d = StateDir::open(dir.path()).unwrap();
        let s2 = Arc::new(Saver::start(d, Box::new(empty), Box::new(|| 0)).unwrap());
        assert!(s2.barrier_hook().stamped(|| ()).1 > 5);
        s2.stop();
    }

    /// A bridge added after the last snapshot (the database added it, and
    /// a controller's flow-mods and barrier came before the next save)
    /// keeps its journaled flows across a crash: it comes back fresh,
    /// with them, and the bridges the snapshot has are left as they are.
    #[test]
    fn journaled_flows_of_a_bridge_the_snapshot_lacks_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let d = StateDir::open(dir.path()).unwrap();
        let snap: Snapshot = Box::new(|| {
            let mut s = empty();
            s.bridges
                .push(bridge("br0", &["priority=5,in_port=9,actions=drop"]));
            s
        });
        let saver = Arc::new(Saver::start(d, snap, Box::new(|| 0)).unwrap());
        let hook = saver.barrier_hook();
        (hook.save)("br1", &unsaved(&hook, vec![flow_mod(1, 10, false)])).unwrap();
        (hook.save)("br1", &unsaved(&hook, vec![flow_mod(3, 20, false)])).unwrap();
        // "Crash" now: what a restart loads.
        let loaded = StateDir::open_unlocked(dir.path())
            .unwrap()
            .load()
            .unwrap()
            .unwrap();
        let names: Vec<&str> = loaded.bridges.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["br0", "br1"]);
        assert_eq!(
            loaded.bridges[0].flows,
            ["priority=5,in_port=9,actions=drop"],
            "untouched"
        );
        let br1 = &loaded.bridges[1];
        let mut got = br1.flows.clone();
        got.sort();
        assert_eq!(
            got,
            [
                "priority=10,in_port=1 actions=output:2",
                "priority=20,in_port=3 actions=output:2"
            ]
        );
        assert_eq!(
            BridgeState {
                flows: Vec::new(),
                ..br1.clone()
            },
            BridgeState::fresh("br1")
        );
        saver.stop();
    }
}
