//! End-to-end support: a vswitchd running inside a "host" network
//! namespace the test created, driven by the real vswitchctl binary, and
//! "VMs" (namespaces) plugged into it through `type=tap` ports.
//!
//! Why a host namespace rather than the test's own: the TAPs vswitchd
//! creates, the veths a `type=system` port attaches to and everything the
//! daemon leaves behind live in a namespace the [`Lab`] deletes, so a test
//! never touches the machine's own interfaces, port names (`vm1`, `vm2`)
//! can be the ones the example flow files use, and "SIGTERM removes what
//! vswitchd created and nothing else" is checked against a namespace whose
//! whole content the test knows. The control socket is a file, so
//! vswitchctl reaches the daemon from any namespace.
//!
//! `ip netns exec` execs the daemon in place, so the child's pid is the
//! daemon's and SIGTERM reaches it directly.

#![allow(dead_code)]

use crate::common::{wait_until, Lab};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A path in the repository.
pub fn repo_path(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// vswitchd inside namespace `ns`, on a private socket; SIGTERM on drop.
pub struct NsDaemon {
    child: Option<Child>,
    /// Holds the socket, the config and the log.
    pub dir: tempfile::TempDir,
    /// The control socket.
    pub sock: PathBuf,
    /// The host namespace it runs in.
    pub ns: String,
}

impl NsDaemon {
    /// Starts vswitchd in `ns` with `config` (TOML) or the embedded
    /// default (bridge br0, `priority=0,actions=NORMAL`).
    pub fn start(ns: &str, config: Option<&str>) -> NsDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("vswitchd.sock");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_vswitchd"), "--ctl"])
            .arg(&sock);
        if let Some(c) = config {
            let p = dir.path().join("vswitchd.toml");
            std::fs::write(&p, c).expect("write config");
            cmd.arg("--config").arg(&p);
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        cmd.stdout(Stdio::null()).stderr(Stdio::from(
            std::fs::File::create(dir.path().join("vswitchd.log")).expect("log file"),
        ));
        let child = cmd.spawn().expect("spawn vswitchd");
        let mut d = NsDaemon {
            child: Some(child),
            dir,
            sock,
            ns: ns.to_string(),
        };
        let up = wait_until(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&d.sock).is_ok() || !d.alive()
        });
        assert!(
            up && d.alive(),
            "vswitchd did not come up in {ns}; log:\n{}",
            d.log()
        );
        d
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// True while the daemon process runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vswitchd.log")).unwrap_or_default()
    }

    /// Runs vswitchctl with `args`.
    pub fn ctl_output(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .arg("--ctl")
            .arg(&self.sock)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run vswitchctl")
    }

    /// Runs vswitchctl and returns stdout; panics with stderr on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let o = self.ctl_output(args);
        assert!(
            o.status.success(),
            "vswitchctl {args:?} failed: {}\nlog:\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs vswitchctl --json and parses the output.
    pub fn ctl_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ctl(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad json from {args:?}: {e}: {out}"))
    }

    /// Drop counters of `br0` that are non-zero, by reason.
    pub fn drops(&self) -> BTreeMap<String, u64> {
        let j = self.ctl_json(&["dump-drops", "br0"]);
        j["drops"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_u64().filter(|n| *n > 0).map(|n| (k.clone(), n)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `dump-ports br0 --json` entry of `port`.
    pub fn port(&self, port: &str) -> Value {
        let j = self.ctl_json(&["dump-ports", "br0", port]);
        j["ports"][0].clone()
    }

    /// A counter (`rx_packets`, `tx_bytes`, ...) of `port`.
    pub fn port_counter(&self, port: &str, name: &str) -> u64 {
        self.port(port)[name].as_u64().unwrap_or(0)
    }

    /// The link state `show --json` reports for `port` ("up"/"down").
    pub fn show_link(&self, port: &str) -> String {
        let j = self.ctl_json(&["show", "br0"]);
        j["bridges"][0]["ports"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["port"] == port))
            .and_then(|p| p["link"].as_str())
            .unwrap_or("missing")
            .to_string()
    }

    /// Replaces br0's flows with the file `flows/NAME`.
    pub fn load_flows(&self, file: &str) {
        self.ctl(&["del-flows", "br0"]);
        let p = repo_path(file);
        self.ctl(&["add-flows", "br0", &p.display().to_string()]);
    }

    /// `(n_packets, flow text)` of every flow of br0.
    pub fn flow_counters(&self) -> Vec<(u64, String)> {
        let j = self.ctl_json(&["dump-flows", "br0"]);
        j["flows"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| {
                        (
                            f["n_packets"].as_u64().unwrap_or(0),
                            format!(
                                "table={},priority={},{} actions={}",
                                f["table"],
                                f["priority"],
                                f["match"].as_str().unwrap_or(""),
                                f["actions"].as_str().unwrap_or("")
                            ),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for exit; true on a clean exit.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    /// CPU time (user + system) the daemon used so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start at ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // utime and stime are fields 14 and 15; `rest` starts at field 3.
        n(11) + n(12)
    }
}

impl Drop for NsDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True when `tool` is on PATH; otherwise skips (prints why) or, under
/// `VSWITCH_REQUIRE_NETNS=1`, fails.
pub fn require_tool(test: &str, tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    let required = std::env::var("VSWITCH_REQUIRE_NETNS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: needs {tool} and VSWITCH_REQUIRE_NETNS=1"
    );
    eprintln!("skipping {test}: needs {tool}");
    false
}

/// Turns IPv6 off in `ns` (for interfaces created in or moved into it
/// later too), so router solicitations and DAD do not add frames the test
/// did not send to the counters it checks.
pub fn no_ipv6(lab: &Lab, ns: &str) {
    lab.sh_ok(
        ns,
        5,
        "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
    );
}

/// A host namespace running vswitchd and two VM namespaces on its TAP
/// ports `vm1` and `vm2` (addresses `10.N.0.1/24` and `10.N.0.2/24`,
/// MACs 52:54:00:00:00:01 and :02 as compute-host.flows expects).
pub struct TwoVms {
    /// The daemon's namespace.
    pub host: String,
    /// VM namespaces.
    pub vm1: String,
    pub vm2: String,
    /// VM addresses.
    pub ip1: String,
    pub ip2: String,
}

/// The MAC of `vmN` in [`TwoVms`].
pub fn vm_mac(n: u8) -> String {
    format!("52:54:00:00:00:{n:02x}")
}

/// Creates the host namespace (returned) without a daemon.
pub fn host_ns(lab: &mut Lab) -> String {
    let h = lab.netns();
    no_ipv6(lab, &h);
    h
}

/// Adds `type=tap` port `port` to br0, moves its kernel side into a new VM
/// namespace and configures it there; returns the VM namespace.
pub fn plug_vm(lab: &mut Lab, d: &NsDaemon, port: &str, mac: &str, cidr: &str) -> String {
    let vm = lab.netns();
    no_ipv6(lab, &vm);
    d.ctl(&["add-port", "br0", port, "type=tap"]);
    move_tap(lab, d, port, &vm, mac, cidr);
    vm
}

/// Moves TAP `port` from the daemon's namespace into `vm` and configures it.
pub fn move_tap(lab: &Lab, d: &NsDaemon, port: &str, vm: &str, mac: &str, cidr: &str) {
    crate::common::ip(&["-n", &d.ns, "link", "set", "dev", port, "netns", vm]);
    crate::common::ip(&["-n", vm, "link", "set", "dev", port, "address", mac]);
    lab.configure(vm, port, cidr);
}

/// Host + daemon + two VMs on subnet `10.{subnet}.0.0/24`.
pub fn two_vms(lab: &mut Lab, subnet: u8) -> (TwoVms, NsDaemon) {
    let host = host_ns(lab);
    let d = NsDaemon::start(&host, None);
    let ip1 = format!("10.{subnet}.0.1");
    let ip2 = format!("10.{subnet}.0.2");
    let vm1 = plug_vm(lab, &d, "vm1", &vm_mac(1), &format!("{ip1}/24"));
    let vm2 = plug_vm(lab, &d, "vm2", &vm_mac(2), &format!("{ip2}/24"));
    (
        TwoVms {
            host,
            vm1,
            vm2,
            ip1,
            ip2,
        },
        d,
    )
}

/// The drops that appeared between two [`NsDaemon::drops`] snapshots.
pub fn new_drops(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, n)| {
            let d = n - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// Throughput in MiB/s (for the report; never asserted).
pub fn mib_per_s(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / t.as_secs_f64().max(1e-9)
}

/// True when interface `name` exists in namespace `ns`.
pub fn link_exists_in(ns: &str, name: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
