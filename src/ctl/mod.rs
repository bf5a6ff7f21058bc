//! Control: the typed switch API and its front ends.
//!
//! * [`api`]: bridges, ports, flows, conntrack, trace, capture: every
//!   operation with typed arguments, replies and errors.
//! * [`options`]: the operator's `key=value` text read into the API's
//!   typed settings (shared by the vswitchctl protocol and the file).
//! * [`flowtext`]: flows in ovs-ofctl syntax read into typed flow-mods.
//! * [`openflow`]: the OpenFlow front end: each bridge as a
//!   [`crate::openflow::backend::Backend`], served on `DIR/BR.mgmt`.
//! * [`proto`]: the vswitchctl protocol, one JSON document per line.
//! * [`handler`]: that protocol's front end onto the API.
//! * [`server`]: the daemon's unix socket (tokio), timers and signals.
//! * [`client`]: the blocking client `vswitchctl` and the tests use.
//! * [`config`]: the TOML configuration and its embedded default, applied
//!   through the API.
//! * [`ovsdb`]: the OVSDB front end: bridges and ports from a real
//!   `ovsdb-server`, their state written back (`vswitchd --ovsdb`).
//! * [`reload`]: saved state restored at start; the configuration file
//!   re-read on SIGHUP and applied as a difference.
//! * [`state`]: the state directory: snapshots saved after every change
//!   and restored at start.

pub mod api;
pub mod client;
pub mod config;
pub mod flowtext;
pub mod handler;
pub mod handover;
pub mod hex;
pub mod openflow;
pub mod options;
pub mod ovsdb;
pub mod proto;
pub mod reload;
pub mod seed;
pub mod server;
pub mod state;

use std::path::PathBuf;

/// Errors of the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The daemon is not running (or not at this socket).
    #[error("cannot reach vswitchd at {path}: {source} (is vswitchd running? start it with `vswitchd`, or point at its socket with --ctl / VSWITCH_CTL)")]
    NotRunning {
        /// Socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The connection failed mid-request.
    #[error("talking to vswitchd at {path}: {source}")]
    Io {
        /// Socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The daemon sent something we cannot read.
    #[error("vswitchd sent an unreadable reply: {0}")]
    Protocol(String),
    /// Setting up the daemon failed.
    #[error("{0}")]
    Setup(String),
}

/// Environment variable naming the control socket.
pub const CTL_ENV: &str = "VSWITCH_CTL";

/// The default control socket: `/run/vswitch/vswitchd.sock` for root;
/// otherwise under `$XDG_RUNTIME_DIR`, else `/tmp/vswitch-UID`, so a
/// newcomer without root can still run the daemon and the client agrees on
/// where it is. `VSWITCH_CTL` overrides all of these.
pub fn default_socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os(CTL_ENV) {
        return PathBuf::from(p);
    }
    let uid = current_uid();
    if uid == 0 {
        return PathBuf::from("/run/vswitch/vswitchd.sock");
    }
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(x).join("vswitch/vswitchd.sock");
    }
    PathBuf::from(format!("/tmp/vswitch-{uid}/vswitchd.sock"))
}

/// The effective user id.
pub fn current_uid() -> u32 {
    // The owner of /proc/self is the effective user: no unsafe call needed.
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX)
}
