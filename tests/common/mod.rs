//! The one harness the integration tests share. Each piece has one home:
//!
//! * here: when a test may run (root, tools; otherwise it prints why it
//!   skips, unless `VSWITCH_REQUIRE_NETNS=1` / `VSWITCH_REQUIRE_OVS=1` make
//!   it fail), bounded polling, `ip` and link queries, unique names;
//! * [`lab`]: network namespaces, veths, commands and processes inside
//!   them, all removed on drop ([`Lab`]);
//! * [`forwarder`]: a bounded forwarding loop between two ports, the port
//!   tests' stand-in for the datapath;
//! * [`daemon`]: vswitchd driven by the real vswitchctl, on a private
//!   socket or inside a host namespace ([`Daemon`]);
//! * [`vms`]: what gets plugged into a daemon in a host namespace (VMs on
//!   TAPs, veths on system ports, provider links);
//! * [`frames`]: frame builders and hex/MAC helpers;
//! * [`raw`]: raw frames on real interfaces (python3 AF_PACKET send and
//!   capture, UDP receivers) and tcpdump/tshark captures.
//!
//! Every loop here is bounded in time and everything a test creates is
//! removed by a Drop guard, even when the test fails.

#![allow(dead_code, unused_imports)]

pub mod daemon;
pub mod forwarder;
pub mod frames;
pub mod lab;
pub mod raw;
pub mod vms;

pub use daemon::Daemon;
pub use forwarder::Forwarder;
pub use lab::Lab;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// 10 MiB, the size of the TCP transfers of the end-to-end tests.
pub const MIB10: usize = 10 * 1024 * 1024;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A number unique within this test process (names of namespaces, links).
pub fn next_seq() -> u32 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

fn euid() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn env_is_1(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

/// `None`: go on. `Some(why)`: skip with a message, or fail when `strict`
/// (the environment variable that makes the test required) is `1`.
fn may_run(test: &str, why: Option<String>, strict: &str) -> bool {
    match why {
        None => true,
        Some(w) if env_is_1(strict) => panic!("{test}: {w} and {strict}=1"),
        Some(w) => {
            eprintln!("skipping {test}: {w} (set {strict}=1 to fail instead)");
            false
        }
    }
}

/// True when the test may run. Prints why it skips otherwise; panics when
/// `VSWITCH_REQUIRE_NETNS=1` and the test cannot run.
pub fn require_root(test: &str) -> bool {
    let why = if euid() != Some(0) {
        Some("needs root".to_string())
    } else if !Path::new("/dev/net/tun").exists() {
        Some("needs /dev/net/tun".to_string())
    } else if !have_tool("ip") {
        Some("needs iproute2 (`ip`)".to_string())
    } else {
        None
    };
    may_run(test, why, "VSWITCH_REQUIRE_NETNS")
}

/// True when every tool in `tools` is on PATH; otherwise prints which one
/// is missing and skips, or fails under `VSWITCH_REQUIRE_NETNS=1`.
pub fn require_tools(test: &str, tools: &[&str]) -> bool {
    let why = tools
        .iter()
        .find(|t| !have_tool(t))
        .map(|t| format!("needs {t}"));
    may_run(test, why, "VSWITCH_REQUIRE_NETNS")
}

/// True when Open vSwitch (ovs-vswitchd, ovsdb-server) is installed;
/// otherwise skips, or fails under `VSWITCH_REQUIRE_OVS=1`.
pub fn require_ovs(test: &str) -> bool {
    let why = ["ovs-vswitchd", "ovsdb-server"]
        .iter()
        .find(|t| !have_tool(t))
        .map(|t| format!("needs {t} (apt-get install openvswitch-switch)"));
    may_run(test, why, "VSWITCH_REQUIRE_OVS")
}

/// True when `tool` is on PATH.
pub fn have_tool(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A path in the repository.
pub fn repo_path(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// A unique interface name: `prefix` (at most 3 bytes) + pid + `x` + n.
pub fn unique_ifname(prefix: &str) -> String {
    let name = format!("{prefix}{}x{}", std::process::id(), next_seq());
    assert!(name.len() <= 15, "interface name too long: {name}");
    name
}

/// Runs `ip ARGS`; panics with stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// True when interface `name` exists in our netns.
pub fn link_exists(name: &str) -> bool {
    ip_quiet(&["link", "show", "dev", name])
}

/// True when interface `name` exists in namespace `ns`.
pub fn link_exists_in(ns: &str, name: &str) -> bool {
    ip_quiet(&["-n", ns, "link", "show", "dev", name])
}

fn ip_quiet(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The names of the interfaces in namespace `ns` (veth peers without
/// their `@peer` suffix).
pub fn links_in(ns: &str) -> BTreeSet<String> {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show"])
        .output()
        .expect("ip link show");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    wait_for(timeout, || cond().then_some(())).is_some()
}

/// Throughput in MiB/s (for the report; never asserted).
pub fn mib_per_s(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / t.as_secs_f64().max(1e-9)
}
