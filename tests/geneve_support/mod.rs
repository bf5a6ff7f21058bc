//! Two compute hosts joined by Geneve, for the end-to-end tests.
//!
//! ```text
//!  vm0 [tap 10.250.0.1]                         vm1 [tap 10.250.0.2]
//!        | kernel side of a TAP                        |
//!  host0: vswitchd (br0: port 1 tap, port 2 tun0) host1: vswitchd (same)
//!        | 10.251.0.1/24 == veth underlay (MTU 1600) == 10.251.0.2/24 |
//! ```
//!
//! Each vswitchd runs inside its host namespace (`ip netns exec HOST
//! vswitchd --ctl SOCK`, so its TAPs appear there and its Geneve socket
//! binds there); the kernel side of each TAP is then moved into the VM
//! namespace, whose kernel stack plays the guest. Every namespace, link and
//! process belongs to the test's [`Lab`] / [`HostDaemon`] and is removed
//! on drop, even when the test fails.

#![allow(dead_code)]

use crate::common::{unique_ifname, wait_until, Lab};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Underlay addresses of host0 and host1.
pub const UL_IP: [&str; 2] = ["10.251.0.1", "10.251.0.2"];
/// VM addresses.
pub const VM_IP: [&str; 2] = ["10.250.0.1", "10.250.0.2"];
/// VM MACs (fixed, so a restarted host's new TAP keeps the old MAC and the
/// other VM's neighbour entry stays right).
pub const VM_MAC: [&str; 2] = ["02:00:00:fa:00:01", "02:00:00:fa:00:02"];
/// The tunnel's VNI.
pub const VNI: u32 = 5000;

/// A vswitchd running in a network namespace, driven with vswitchctl.
pub struct HostDaemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub ns: String,
}

impl HostDaemon {
    /// Starts vswitchd (embedded default config: br0) inside `ns`.
    pub fn start(ns: &str) -> HostDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("vswitchd.sock");
        let log = std::fs::File::create(dir.path().join("vswitchd.log")).expect("log");
        // `ip netns exec` execs: the child is the daemon itself.
        let child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_vswitchd"), "--ctl"])
            .arg(&sock)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn vswitchd");
        let d = HostDaemon {
            child: Some(child),
            dir,
            sock,
            ns: ns.to_string(),
        };
        let up = wait_until(Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&d.sock).is_ok()
        });
        assert!(up, "vswitchd in {ns} did not come up; log:\n{}", d.log());
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vswitchd.log")).unwrap_or_default()
    }

    pub fn ctl_output(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .arg("--ctl")
            .arg(&self.sock)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("run vswitchctl")
    }

    /// Runs vswitchctl; panics with stderr and the daemon log on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let o = self.ctl_output(args);
        assert!(
            o.status.success(),
            "vswitchctl {args:?} in {}: {}\nlog:\n{}",
            self.ns,
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ctl(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad json from {args:?}: {e}: {out}"))
    }

    /// The non-zero drop counters of br0 (`dump-drops --json`).
    pub fn drops(&self) -> serde_json::Map<String, serde_json::Value> {
        let v = self.ctl_json(&["dump-drops", "br0"]);
        let mut m = v["drops"].as_object().cloned().unwrap_or_default();
        m.retain(|_, n| n.as_u64().unwrap_or(0) > 0);
        m
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, as a crash or an OOM kill would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (bounded); SIGKILL if it does not stop.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }
}

impl Drop for HostDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What each host's bridge gets after its ports exist.
pub type Setup = dyn Fn(&HostDaemon, usize);

/// Two hosts, two VMs, one tunnel.
pub struct Overlay {
    pub hosts: [String; 2],
    pub vms: [String; 2],
    /// Underlay veth ends (in host0, host1).
    pub ul: [String; 2],
    /// Current TAP names (in vm0, vm1).
    pub taps: [String; 2],
    pub d: Vec<HostDaemon>,
    /// Extra `add-port` options of the tunnel port.
    pub tun_opts: Vec<String>,
    // Last, so the daemons stop before the namespaces go.
    pub lab: Lab,
}

fn sh_ok(lab: &Lab, ns: &str, script: &str) {
    lab.sh_ok(ns, 20, script);
}

impl Overlay {
    /// Builds the topology and starts both hosts, calling `setup` on each.
    pub fn new(setup: &Setup) -> Overlay {
        Self::with_tunnel_options(&[], setup)
    }

    /// As [`Overlay::new`], with extra options for the tunnel ports.
    pub fn with_tunnel_options(tun_opts: &[&str], setup: &Setup) -> Overlay {
        Self::build(tun_opts, 1600, setup)
    }

    /// As [`Overlay::new`], with tunnel options and the underlay MTU.
    pub fn build(tun_opts: &[&str], ul_mtu: u32, setup: &Setup) -> Overlay {
        let mut lab = Lab::new();
        let hosts = [lab.netns(), lab.netns()];
        let vms = [lab.netns(), lab.netns()];
        for ns in &vms {
            // No IPv6 chatter (router/neighbour solicitations) in the VMs.
            sh_ok(
                &lab,
                ns,
                "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
            );
        }
        let (a, b) = lab.veth();
        lab.move_link(&a, &hosts[0]);
        lab.move_link(&b, &hosts[1]);
        for (i, l) in [&a, &b].iter().enumerate() {
            sh_ok(
                &lab,
                &hosts[i],
                &format!(
                    "ip link set dev {l} mtu {ul_mtu} && ip addr add {}/24 dev {l} && ip link set dev {l} up",
                    UL_IP[i]
                ),
            );
        }
        let mut o = Overlay {
            hosts,
            vms,
            ul: [a, b],
            taps: [String::new(), String::new()],
            d: Vec::new(),
            tun_opts: tun_opts.iter().map(|s| s.to_string()).collect(),
            lab,
        };
        for i in 0..2 {
            let d = o.start_host(i, setup);
            o.d.push(d);
        }
        o
    }

    /// Starts host `i`'s daemon: TAP (port 1, kernel side moved into VM
    /// `i`), tunnel (port 2) to the other host, then `setup`.
    pub fn start_host(&mut self, i: usize, setup: &Setup) -> HostDaemon {
        let host = &self.hosts[i];
        let vm = &self.vms[i];
        let d = HostDaemon::start(host);
        d.ctl(&["del-flows", "br0"]);
        let tap = unique_ifname("gt");
        d.ctl(&["add-port", "br0", &tap, "type=tap", "ofport=1"]);
        let appeared = wait_until(Duration::from_secs(10), || {
            self.lab
                .sh(host, 5, &format!("ip link show dev {tap}"))
                .status
                .success()
        });
        assert!(appeared, "tap {tap} appears in {host}");
        sh_ok(
            &self.lab,
            host,
            &format!("ip link set dev {tap} netns {vm}"),
        );
        sh_ok(
            &self.lab,
            vm,
            &format!(
                "ip link set dev {tap} address {} && ip addr add {}/24 dev {tap} && ip link set dev {tap} up",
                VM_MAC[i], VM_IP[i]
            ),
        );
        let remote = format!("remote_ip={}", UL_IP[1 - i]);
        let local = format!("local_ip={}", UL_IP[i]);
        let key = format!("key={VNI}");
        let mut args = vec![
            "add-port",
            "br0",
            "tun0",
            "type=geneve",
            "ofport=2",
            &remote,
            &local,
            &key,
        ];
        args.extend(self.tun_opts.iter().map(String::as_str));
        d.ctl(&args);
        setup(&d, i);
        self.taps[i] = tap;
        d
    }

    /// Kills host `i`'s daemon and starts a fresh one (new TAP, same VM
    /// addresses), as a restarted compute host would.
    pub fn restart_host(&mut self, i: usize, setup: &Setup) {
        self.d[i].kill9();
        let d = self.start_host(i, setup);
        self.d[i] = d;
    }
}

/// Flow setup: the stateful firewall of `flows/geneve-host.flows`.
pub fn firewall(d: &HostDaemon, _i: usize) {
    d.ctl(&["add-flows", "br0", "flows/geneve-host.flows"]);
}

/// Flow setup: plain forwarding VM <-> tunnel, no conntrack.
pub fn plain(d: &HostDaemon, _i: usize) {
    d.ctl(&["add-flow", "br0", "priority=10,in_port=1,actions=output:2"]);
    d.ctl(&["add-flow", "br0", "priority=10,in_port=2,actions=output:1"]);
}

/// Drop reasons that a test's flows never ask for: anything but the
/// pipeline's own `drop` actions (and table misses).
pub fn unasked_drops(d: &HostDaemon) -> Vec<(String, u64)> {
    d.drops()
        .into_iter()
        .filter(|(k, _)| k != "pipeline_drop" && k != "no_match")
        .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
        .collect()
}

/// Starts `tcpdump -w FILE FILTER` on `dev` in `ns` and waits until it
/// captures; returns (lab index, pid file) for [`stop_capture`].
pub fn start_capture(
    lab: &mut Lab,
    ns: &str,
    dev: &str,
    file: &str,
    filter: &str,
) -> (usize, String) {
    let pidfile = format!("{file}.pid");
    let errfile = format!("{file}.err");
    let idx = lab.spawn(
        ns,
        120,
        &format!(
            "tcpdump -i {dev} -s 256 -U --immediate-mode -n -w {file} '{filter}' 2>{errfile} & echo $! > {pidfile}; wait"
        ),
    );
    let listening = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(&errfile).is_ok_and(|s| s.contains("listening on"))
    });
    assert!(listening, "tcpdump starts on {dev} in {ns}");
    (idx, pidfile)
}

/// Stops a capture started by [`start_capture`] (SIGTERM to the tcpdump we
/// started, by its pid) and waits for it to write the file; returns
/// tcpdump's closing statistics ("N packets dropped by kernel").
pub fn stop_capture(lab: &mut Lab, cap: (usize, String)) -> String {
    std::thread::sleep(Duration::from_millis(200));
    if let Ok(pid) = std::fs::read_to_string(&cap.1) {
        let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
    }
    let _ = lab.wait(cap.0);
    let err = cap.1.trim_end_matches(".pid").to_string() + ".err";
    std::fs::read_to_string(err).unwrap_or_default()
}

/// `tshark -r FILE ARGS...`, stdout.
pub fn tshark(file: &str, args: &[&str]) -> String {
    let o = Command::new("timeout")
        .args(["60", "tshark", "-r", file])
        .args(args)
        .output()
        .expect("run tshark");
    assert!(
        o.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

// ---------------------------------------------------------------------------
// Open vSwitch 3.1 as a host (interop test, side-by-side bench)
// ---------------------------------------------------------------------------

/// An ovsdb-server + ovs-vswitchd pair in a namespace, stopped on drop.
pub struct Ovs {
    dir: tempfile::TempDir,
    ns: String,
}

impl Ovs {
    fn env(&self, c: &mut Command) {
        let d = self.dir.path();
        c.env("OVS_RUNDIR", d.join("run"))
            .env("OVS_DBDIR", d.join("db"))
            .env("OVS_LOGDIR", d.join("log"));
    }

    /// Runs an OVS command (bounded) in `ns` with our private directories.
    pub fn run(&self, args: &[&str]) -> String {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, "timeout", "20"])
            .args(args);
        self.env(&mut c);
        let o = c.output().expect("run OVS command");
        assert!(
            o.status.success(),
            "{args:?}: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/ovs-vswitchd.log")).unwrap_or_default()
    }

    pub fn start(ns: &str) -> Ovs {
        let o = Ovs {
            dir: tempfile::tempdir().expect("tempdir"),
            ns: ns.to_string(),
        };
        let d = o.dir.path();
        for sub in ["run", "db", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let db = d.join("db/conf.db").display().to_string();
        let run = d.join("run").display().to_string();
        let log = d.join("log").display().to_string();
        o.run(&[
            "ovsdb-tool",
            "create",
            &db,
            "/usr/share/openvswitch/vswitch.ovsschema",
        ]);
        o.run(&[
            "ovsdb-server",
            &db,
            &format!("--remote=punix:{run}/db.sock"),
            &format!("--pidfile={run}/ovsdb-server.pid"),
            "--detach",
            "-vconsole:off",
            &format!("--log-file={log}/ovsdb-server.log"),
        ]);
        o.run(&["ovs-vsctl", "--no-wait", "init"]);
        o.run(&[
            "ovs-vswitchd",
            &format!("unix:{run}/db.sock"),
            &format!("--pidfile={run}/ovs-vswitchd.pid"),
            "--detach",
            "-vconsole:off",
            &format!("--log-file={log}/ovs-vswitchd.log"),
        ]);
        o
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        for (t, extra) in [("ovs-vswitchd", Some("--cleanup")), ("ovsdb-server", None)] {
            let mut c = Command::new("ip");
            c.args([
                "netns",
                "exec",
                &self.ns,
                "timeout",
                "10",
                "ovs-appctl",
                "-t",
                t,
                "exit",
            ]);
            if let Some(e) = extra {
                c.arg(e);
            }
            self.env(&mut c);
            let _ = c.output();
        }
    }
}

/// Makes `host` (namespace `ns`, underlay veth `ul`) an Open vSwitch
/// compute host as `shared/anchors/setup-geneve.sh` does: underlay bridge
/// `brul` holding the veth, with `ip` on its internal port; overlay bridge
/// `br1` with the VM's tap (port 1, kernel side moved into `vm` with
/// `vm_ip`/`vm_mac`) and a geneve port (port 10) to `remote`. Flows on br1
/// are left to the caller. Returns the OVS handle and the tap's name.
#[allow(clippy::too_many_arguments)]
pub fn ovs_host(
    lab: &Lab,
    ns: &str,
    ul: &str,
    ip: &str,
    remote: &str,
    vm: &str,
    vm_ip: &str,
    vm_mac: &str,
) -> (Ovs, String) {
    sh_ok(lab, ns, &format!("ip link set dev {ul} mtu 1600 up"));
    let ovs = Ovs::start(ns);
    let tap = unique_ifname("ot");
    let remote = format!("options:remote_ip={remote}");
    let key = format!("options:key={VNI}");
    ovs.run(&[
        "ovs-vsctl",
        "add-br",
        "brul",
        "--",
        "set",
        "bridge",
        "brul",
        "datapath_type=netdev",
        "--",
        "add-port",
        "brul",
        ul,
        "--",
        "add-br",
        "br1",
        "--",
        "set",
        "bridge",
        "br1",
        "datapath_type=netdev",
        "--",
        "add-port",
        "br1",
        &tap,
        "--",
        "set",
        "interface",
        &tap,
        "type=tap",
        "ofport_request=1",
        "--",
        "add-port",
        "br1",
        "gnv1",
        "--",
        "set",
        "interface",
        "gnv1",
        "type=geneve",
        "ofport_request=10",
        &remote,
        &key,
    ]);
    sh_ok(
        lab,
        ns,
        &format!("ip addr add {ip}/24 dev brul && ip link set dev brul mtu 1600 up"),
    );
    let appeared = wait_until(Duration::from_secs(10), || {
        lab.sh(ns, 5, &format!("ip link show dev {tap}"))
            .status
            .success()
    });
    assert!(appeared, "OVS creates {tap}");
    sh_ok(lab, ns, &format!("ip link set dev {tap} netns {vm}"));
    sh_ok(
        lab,
        vm,
        &format!(
            "ip link set dev {tap} address {vm_mac} && ip addr add {vm_ip}/24 dev {tap} && ip link set dev {tap} up"
        ),
    );
    (ovs, tap)
}
