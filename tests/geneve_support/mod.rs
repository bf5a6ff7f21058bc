//! Two compute hosts joined by Geneve, for the end-to-end tests: the
//! topology, each host's switch (vswitchd, or Open vSwitch 3.1 for the
//! interop test and the side-by-side bench) and the flows the tests give
//! them.
//!
//! ```text
//!  vm0 [tap 10.250.0.1]                         vm1 [tap 10.250.0.2]
//!        | kernel side of a TAP                        |
//!  host0: vswitchd (br0: port 1 tap, port 2 tun0) host1: vswitchd (same)
//!        | 10.251.0.1/24 == veth underlay (MTU 1600) == 10.251.0.2/24 |
//! ```
//!
//! Each vswitchd is a [`Daemon`] started inside its host namespace (its
//! TAPs appear there and its Geneve socket binds there); the kernel side of
//! each TAP is then moved into the VM namespace, whose kernel stack plays
//! the guest. Every namespace, link and process belongs to the test's
//! [`Lab`] / [`Daemon`] / [`Ovs`] and is removed on drop, even when the
//! test fails.

#![allow(dead_code)]

use crate::common::vms::move_tap;
use crate::common::{unique_ifname, Daemon, Lab};
use std::process::Command;

/// Underlay addresses of host0 and host1.
pub const UL_IP: [&str; 2] = ["10.251.0.1", "10.251.0.2"];
/// VM addresses.
pub const VM_IP: [&str; 2] = ["10.250.0.1", "10.250.0.2"];
/// VM MACs (fixed, so a restarted host's new TAP keeps the old MAC and the
/// other VM's neighbour entry stays right).
pub const VM_MAC: [&str; 2] = ["02:00:00:fa:00:01", "02:00:00:fa:00:02"];
/// The tunnel's VNI.
pub const VNI: u32 = 5000;

/// The namespaces of two hosts and their VMs (IPv6 off), the hosts joined
/// by a veth pair (`ul[i]` in `hosts[i]`, not configured yet).
pub struct Hosts {
    pub hosts: [String; 2],
    pub vms: [String; 2],
    pub ul: [String; 2],
}

impl Hosts {
    pub fn new(lab: &mut Lab) -> Hosts {
        let hosts = [lab.netns(), lab.netns()];
        let vms = [lab.quiet_netns(), lab.quiet_netns()];
        let (a, b) = lab.veth();
        lab.move_link(&a, &hosts[0]);
        lab.move_link(&b, &hosts[1]);
        Hosts {
            hosts,
            vms,
            ul: [a, b],
        }
    }

    /// Host `i`'s underlay end: MTU `mtu`, address `UL_IP[i]`/24, up.
    pub fn underlay(&self, lab: &Lab, i: usize, mtu: u32) {
        let l = &self.ul[i];
        lab.sh_ok(
            &self.hosts[i],
            20,
            &format!(
                "ip link set dev {l} mtu {mtu} && ip addr add {}/24 dev {l} && ip link set dev {l} up",
                UL_IP[i]
            ),
        );
    }
}

/// Starts vswitchd as host `i` in namespace `host`, with no flows: a TAP
/// (port 1, kernel side moved into `vm` with `VM_MAC[i]`, `VM_IP[i]`) and
/// a Geneve port `tun0` (port 2, VNI [`VNI`], `tun_opts` added) to the
/// other host. Returns the daemon and the TAP's name.
pub fn vswitchd_host(
    lab: &Lab,
    host: &str,
    vm: &str,
    i: usize,
    tun_opts: &[String],
) -> (Daemon, String) {
    let d = Daemon::start_in(host, None);
    let tap = unique_ifname("gt");
    add_ports(&d, &tap, i, tun_opts);
    let cidr = format!("{}/24", VM_IP[i]);
    move_tap(lab, d.ns(), &tap, vm, VM_MAC[i], Some(&cidr));
    (d, tap)
}

/// Host `i`'s ports on a daemon with the embedded default: TAP `tap` as
/// port 1 (created, or found where it lives), the Geneve port as 2; no
/// flows.
fn add_ports(d: &Daemon, tap: &str, i: usize, tun_opts: &[String]) {
    d.ctl(&["del-flows", "br0"]);
    d.ctl(&["add-port", "br0", tap, "type=tap", "ofport=1"]);
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
    args.extend(tun_opts.iter().map(String::as_str));
    d.ctl(&args);
}

/// Makes namespace `ns` (underlay veth `ul`) Open vSwitch compute host `i`
/// as `shared/anchors/setup-geneve.sh` does: underlay bridge `brul` holding
/// the veth, with `UL_IP[i]` on its internal port; overlay bridge `br1`
/// with the VM's tap (port 1, kernel side moved into `vm`) and a geneve
/// port (port 10) to the other host. Flows on br1 are left to the caller.
/// Returns the OVS handle and the tap's name.
pub fn ovs_host(lab: &Lab, ns: &str, ul: &str, vm: &str, i: usize) -> (Ovs, String) {
    lab.sh_ok(ns, 20, &format!("ip link set dev {ul} mtu 1600 up"));
    let ovs = Ovs::start(ns);
    let tap = unique_ifname("ot");
    let remote = format!("options:remote_ip={}", UL_IP[1 - i]);
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
    lab.sh_ok(
        ns,
        20,
        &format!(
            "ip addr add {}/24 dev brul && ip link set dev brul mtu 1600 up",
            UL_IP[i]
        ),
    );
    let cidr = format!("{}/24", VM_IP[i]);
    move_tap(lab, ns, &tap, vm, VM_MAC[i], Some(&cidr));
    (ovs, tap)
}

/// What each host's bridge gets after its ports exist.
pub type Setup = dyn Fn(&Daemon, usize);

/// Two hosts, two VMs, one tunnel.
pub struct Overlay {
    pub hosts: [String; 2],
    pub vms: [String; 2],
    /// Underlay veth ends (in host0, host1).
    pub ul: [String; 2],
    /// Current TAP names (in vm0, vm1).
    pub taps: [String; 2],
    pub d: Vec<Daemon>,
    /// Extra `add-port` options of the tunnel port.
    pub tun_opts: Vec<String>,
    // Last, so the daemons stop before the namespaces go.
    pub lab: Lab,
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
        let h = Hosts::new(&mut lab);
        for i in 0..2 {
            h.underlay(&lab, i, ul_mtu);
        }
        let Hosts { hosts, vms, ul } = h;
        let mut o = Overlay {
            hosts,
            vms,
            ul,
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

    /// Starts host `i`'s daemon ([`vswitchd_host`]), then `setup`.
    pub fn start_host(&mut self, i: usize, setup: &Setup) -> Daemon {
        let (d, tap) = vswitchd_host(&self.lab, &self.hosts[i], &self.vms[i], i, &self.tun_opts);
        setup(&d, i);
        self.taps[i] = tap;
        d
    }

    /// Kills host `i`'s daemon and starts it again, as a restarted compute
    /// host would: the VM's TAP survives the crash in the VM (persistent,
    /// with its address), and the restarted daemon, told about the same
    /// ports again, attaches to it there.
    /// kill -9 of host `i`'s daemon (if it still runs) and a restart:
    /// its ports (the VM's TAP, reattached where it lives, and the tunnel)
    /// and the flows `setup` made come back from its state directory;
    /// nothing is added again.
    pub fn restart_host(&mut self, i: usize, setup: &Setup) {
        self.d[i].kill9();
        self.d[i].restart();
        let mut now = self.d[i].port_names();
        now.sort();
        let mut want = vec![self.taps[i].clone(), "tun0".to_string()];
        want.sort();
        assert_eq!(now, want, "host{i}'s ports are back after the restart");
        // What `setup` installs, on a scratch daemon, is what came back.
        let scratch = Daemon::start(None);
        scratch.ctl(&["del-flows", "br0"]);
        scratch.add_dummies(&["p1", "p2"]);
        setup(&scratch, i);
        let flows = |d: &Daemon| {
            let mut v: Vec<String> = d.flow_counters().into_iter().map(|(_, f)| f).collect();
            v.sort();
            v
        };
        assert_eq!(
            flows(&self.d[i]),
            flows(&scratch),
            "host{i}'s flows are back after the restart"
        );
    }
}

/// Flow setup: the stateful firewall of `flows/geneve-host.flows`.
pub fn firewall(d: &Daemon, _i: usize) {
    d.ctl(&["add-flows", "br0", "flows/geneve-host.flows"]);
}

/// Flow setup: plain forwarding VM <-> tunnel, no conntrack.
pub fn plain(d: &Daemon, _i: usize) {
    d.ctl(&["add-flow", "br0", "priority=10,in_port=1,actions=output:2"]);
    d.ctl(&["add-flow", "br0", "priority=10,in_port=2,actions=output:1"]);
}

/// Flow setup of the option tests: the TLV map `{class=0xffff,type=0,
/// len=4}->tun_metadata0`; what the VM sends leaves marked with
/// `tun_metadata0=mark`; only frames arriving with `tun_metadata0=accept`
/// are delivered to the VM.
pub fn mark_and_accept(d: &Daemon, mark: &str, accept: &str) {
    d.ctl(&[
        "add-tlv-map",
        "br0",
        "{class=0xffff,type=0,len=4}->tun_metadata0",
    ]);
    d.ctl(&[
        "add-flow",
        "br0",
        &format!("priority=10,in_port=1,actions=set_field:{mark}->tun_metadata0,output:2"),
    ]);
    d.ctl(&[
        "add-flow",
        "br0",
        &format!("priority=10,in_port=2,tun_metadata0={accept},actions=output:1"),
    ]);
}

/// Drop reasons that a test's flows never ask for: anything but the
/// pipeline's own `drop` actions (and table misses).
pub fn unasked_drops(d: &Daemon) -> Vec<(String, u64)> {
    d.drops()
        .into_iter()
        .filter(|(k, _)| k != "pipeline_drop" && k != "no_match")
        .collect()
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
