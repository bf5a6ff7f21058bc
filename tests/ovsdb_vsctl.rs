//! vswitchd as the switch behind a real `ovsdb-server`, driven by the real
//! `ovs-vsctl` (Debian's openvswitch-switch), as Neutron, os-vif and
//! libvirt drive Open vSwitch.
//!
//! Each test starts its own `ovsdb-server` on a database created from the
//! installed `vswitch.ovsschema`, with every file (database, socket,
//! pidfile, unixctl socket, log) in a private temporary directory and
//! `OVS_RUNDIR`/`OVS_LOGDIR`/`OVS_DBDIR` pointing there, so nothing of a
//! system Open vSwitch is touched. `ovs-vsctl` runs without `--no-wait`:
//! each command returns only once vswitchd has written `cur_cfg`, which is
//! what the tests rely on before they look; `--timeout=10` bounds it.
//!
//! * `dummy_and_geneve_ports_without_root`: needs only OVS installed.
//! * `protocols_and_datapath_id_through_the_database`,
//!   `a_barrier_waits_for_the_save`,
//!   `controller_probe_backoff_and_mode_through_the_database`: OVS
//!   (`ovs-ofctl`, and a fake controller on loopback), no root.
//! * `two_vms_ping_through_the_database`: needs root and namespaces too.

mod common;

use common::frames::{eth, hex, mac};
use common::vms::{move_tap, vm_mac};
use common::{link_exists_in, require_ovs, require_root, wait_for, wait_until, Lab};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";

/// An `ovsdb-server` on a private database; killed on drop.
struct Db {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// A loopback TCP port the server also listens on.
    tcp: Option<u16>,
}

impl Db {
    fn start() -> Db {
        Self::start_with(None)
    }

    fn start_with(tcp: Option<u16>) -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = Db {
            dir,
            child: None,
            tcp,
        };
        let out = db
            .ovs_cmd("ovsdb-tool")
            .args(["create", &db.file("conf.db"), SCHEMA])
            .output()
            .expect("run ovsdb-tool");
        assert!(out.status.success(), "ovsdb-tool create: {out:?}");
        db.spawn();
        db.vsctl_ok(&["--no-wait", "init"]);
        db
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("db.sock")
    }

    /// `unix:PATH` of the server.
    fn remote(&self) -> String {
        format!("unix:{}", self.sock().display())
    }

    /// A command with the OVS directories pointing into ours.
    fn ovs_cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        for var in ["OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"] {
            c.env(var, self.dir.path());
        }
        c
    }

    /// Starts (or restarts) the server on the same database.
    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.sock());
        let mut cmd = self.ovs_cmd("ovsdb-server");
        if let Some(port) = self.tcp {
            cmd.arg(format!("--remote=ptcp:{port}:127.0.0.1"));
        }
        let child = cmd
            .arg(format!("--remote=punix:{}", self.sock().display()))
            .arg(format!("--pidfile={}", self.file("ovsdb-server.pid")))
            .arg(format!("--unixctl={}", self.file("ovsdb-server.ctl")))
            .arg(format!("--log-file={}", self.file("ovsdb-server.log")))
            .arg(self.file("conf.db"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ovsdb-server");
        self.child = Some(child);
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::os::unix::net::UnixStream::connect(self.sock()).is_ok()
                    && self
                        .tcp
                        .is_none_or(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok())
            }),
            "ovsdb-server did not come up: {}",
            std::fs::read_to_string(self.file("ovsdb-server.log")).unwrap_or_default()
        );
    }

    /// SIGKILL, as a crash of the database would be.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn vsctl(&self, args: &[&str]) -> Output {
        self.ovs_cmd("ovs-vsctl")
            .arg(format!("--db={}", self.remote()))
            .arg("--timeout=10")
            .args(args)
            .output()
            .expect("run ovs-vsctl")
    }

    /// Runs ovs-vsctl, panics on failure; returns stdout without the
    /// trailing newline (and without quotes around a single string).
    /// `add-br NAME -- set bridge NAME datapath_type=netdev`, as every
    /// test here makes its bridge.
    fn add_netdev_bridge(&self, name: &str) {
        self.vsctl_ok(&[
            "add-br",
            name,
            "--",
            "set",
            "bridge",
            name,
            "datapath_type=netdev",
        ]);
    }

    fn vsctl_ok(&self, args: &[&str]) -> String {
        let o = self.vsctl(args);
        assert!(
            o.status.success(),
            "ovs-vsctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
        s.strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .map(str::to_string)
            .unwrap_or(s)
    }

    /// `ovs-vsctl get Interface IFACE COL`.
    fn iface(&self, iface: &str, col: &str) -> String {
        self.vsctl_ok(&["get", "Interface", iface, col])
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.kill();
    }
}

/// vswitchd with `--ovsdb`, optionally inside namespace `ns`; SIGTERM on
/// drop.
struct Vswitchd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Vswitchd {
    fn start(ns: Option<&str>, remote: &str) -> Vswitchd {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Self::command(ns, dir.path(), remote, &[])
            .spawn()
            .expect("spawn vswitchd");
        let v = Vswitchd {
            dir,
            child: Some(child),
        };
        assert!(
            wait_until(Duration::from_secs(20), || v
                .log()
                .contains("OVSDB connected")),
            "vswitchd did not connect to the database:\n{}",
            v.log()
        );
        v
    }

    /// An upgrade: a new vswitchd on the same socket and database with
    /// `--takeover`; returns the old one's exit status once it is gone
    /// (`None`: it had to be killed).
    fn takeover(&mut self, ns: Option<&str>, remote: &str) -> Option<std::process::ExitStatus> {
        let new = Self::command(ns, self.dir.path(), remote, &["--takeover"])
            .spawn()
            .expect("spawn vswitchd --takeover");
        let mut old = self.child.replace(new)?;
        common::daemon::wait_exit(&mut old, Duration::from_secs(30))
    }

    /// SIGKILL, as a crash would.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again (same socket, state directory and database) after
    /// [`Vswitchd::kill9`]; waits for its database session.
    fn restart(&mut self, ns: Option<&str>, remote: &str) {
        let before = self.connections();
        self.child = Some(
            Self::command(ns, self.dir.path(), remote, &[])
                .spawn()
                .expect("spawn vswitchd"),
        );
        assert!(
            wait_until(Duration::from_secs(20), || self.connections() > before),
            "vswitchd did not connect to the database again:\n{}",
            self.log()
        );
    }

    fn command(ns: Option<&str>, dir: &std::path::Path, remote: &str, extra: &[&str]) -> Command {
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_vswitchd")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_vswitchd")),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("vswitchd.log"))
            .expect("log");
        cmd.arg("--ctl")
            .arg(dir.join("vswitchd.sock"))
            .args(["--ovsdb", remote])
            // Its own state directory, never /var/lib/vswitch.
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        cmd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("vswitchd.log")).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `vswitchctl --json ARGS`.
    fn ctl_json(&self, args: &[&str]) -> Value {
        let o = Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .arg("--ctl")
            .arg(self.dir.path().join("vswitchd.sock"))
            .arg("--json")
            .args(args)
            .output()
            .expect("run vswitchctl");
        assert!(
            o.status.success(),
            "vswitchctl {args:?}: {}\nlog:\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        serde_json::from_slice(&o.stdout).expect("vswitchctl json")
    }

    fn ctl(&self, args: &[&str]) -> String {
        let o = Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .arg("--ctl")
            .arg(self.dir.path().join("vswitchd.sock"))
            .args(args)
            .output()
            .expect("run vswitchctl");
        assert!(o.status.success(), "vswitchctl {args:?}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// br0's ports in `show --json`.
    fn ports(&self) -> Vec<Value> {
        self.ctl_json(&["show", "br0"])["bridges"][0]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn port(&self, name: &str) -> Option<Value> {
        self.ports().into_iter().find(|p| p["port"] == name)
    }

    fn connections(&self) -> usize {
        self.log().matches("OVSDB connected").count()
    }
}

impl Vswitchd {
    /// SIGTERM, and waits (bounded) for it to exit.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Vswitchd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits (bounded) until `ovs-vsctl get Interface IFACE COL` is `want`.
fn wait_iface(db: &Db, iface: &str, col: &str, want: &str) -> String {
    let mut last = String::new();
    wait_until(Duration::from_secs(10), || {
        last = db.iface(iface, col);
        last == want
    });
    last
}

/// The frames dummy port `port` sent, collected until `n` arrived or 10 s
/// passed.
fn sent(v: &Vswitchd, port: &str, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    wait_for(Duration::from_secs(10), || {
        got.extend(
            v.ctl(&["dummy-sent", "br0", port])
                .lines()
                .map(str::to_string),
        );
        (got.len() >= n).then_some(())
    });
    got
}

#[test]
fn dummy_and_geneve_ports_without_root() {
    if !require_ovs("ovsdb_vsctl::dummy_and_geneve_ports_without_root") {
        return;
    }
    let mut db = Db::start();
    let mut v = Vswitchd::start(None, &db.remote());
    // Returns only once vswitchd acknowledged it (cur_cfg = next_cfg).
    db.add_netdev_bridge("br0");
    db.vsctl_ok(&[
        "add-port",
        "br0",
        "p1",
        "--",
        "set",
        "Interface",
        "p1",
        "type=dummy",
        "ofport_request=7",
        "external_ids:iface-id=vm-p1",
    ]);
    db.vsctl_ok(&[
        "add-port",
        "br0",
        "p2",
        "--",
        "set",
        "Interface",
        "p2",
        "type=dummy",
    ]);
    // A Geneve port on an unprivileged UDP port of its own, to a
    // documentation address (to 127.0.0.1 it would hear its own floods).
    let udp = 20000 + (std::process::id() % 20000);
    db.vsctl_ok(&[
        "add-port",
        "br0",
        "gen0",
        "--",
        "set",
        "Interface",
        "gen0",
        "type=geneve",
        "options:remote_ip=192.0.2.1",
        "options:key=5000",
        &format!("options:dst_port={udp}"),
        "options:csum=true",
        "options:ttl=32",
    ]);
    // A type vswitch does not have: ovs-vsctl reports the error vswitchd
    // wrote, and succeeds (as with Open vSwitch).
    let o = db.vsctl(&[
        "add-port",
        "br0",
        "bad",
        "--",
        "set",
        "Interface",
        "bad",
        "type=vxlan",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Error detected while setting up 'bad'"),
        "{o:?}"
    );

    assert_eq!(db.iface("p1", "ofport"), "7");
    assert_eq!(db.iface("p1", "link_state"), "up");
    assert_eq!(db.iface("p1", "admin_state"), "up");
    assert_eq!(db.iface("p1", "error"), "[]");
    assert_eq!(db.iface("bad", "ofport"), "-1");
    assert!(
        db.iface("bad", "error")
            .contains("unsupported interface type 'vxlan'"),
        "{}",
        db.iface("bad", "error")
    );
    assert_ne!(db.iface("gen0", "ofport"), "-1");
    assert_eq!(
        db.vsctl_ok(&["get", "Open_vSwitch", ".", "cur_cfg"]),
        db.vsctl_ok(&["get", "Open_vSwitch", ".", "next_cfg"])
    );
    assert!(db
        .vsctl_ok(&["get", "Open_vSwitch", ".", "iface_types"])
        .contains("geneve"));
    assert!(!db
        .vsctl_ok(&["get", "Open_vSwitch", ".", "db_version"])
        .is_empty());

    // What vswitchd built is what the database says.
    let p1 = v.port("p1").expect("p1 on br0");
    assert_eq!(p1["ofport"], 7);
    let g = v.port("gen0").expect("gen0 on br0");
    assert_eq!(
        (g["type"].as_str(), g["options"]["key"].as_str()),
        (Some("geneve"), Some("5000"))
    );
    assert_eq!(g["options"]["ttl"], "32");
    assert!(v.port("bad").is_none());

    // A bad option on a good type: error on that interface only.
    let o = db.vsctl(&["set", "Interface", "gen0", "options:color=blue"]);
    assert!(o.status.success(), "{o:?}");
    assert!(wait_iface(&db, "gen0", "ofport", "-1") == "-1");
    assert!(db.iface("gen0", "error").contains("color"));
    assert_eq!(db.iface("p1", "ofport"), "7");
    db.vsctl_ok(&["remove", "Interface", "gen0", "options", "color"]);
    assert_eq!(db.iface("gen0", "error"), "[]");
    assert!(v.port("gen0").is_some());

    // Port policy.
    db.vsctl_ok(&["set", "Port", "p1", "tag=100"]);
    assert_eq!(v.port("p1").unwrap()["policy"]["tag"], 100);
    db.vsctl_ok(&["clear", "Port", "p1", "tag"]);
    assert!(v.port("p1").unwrap()["policy"]["tag"].is_null());

    // Statistics are written (every 5 s).
    let frame = eth(
        mac("ff:ff:ff:ff:ff:ff"),
        mac("02:00:00:00:00:01"),
        0x88b5,
        &[0u8; 46],
    );
    // Whatever p2 sent so far goes first.
    v.ctl(&["dummy-sent", "br0", "p2"]);
    v.ctl(&["inject", "br0", "p1", &hex(&frame)]);
    let got = sent(&v, "p2", 1);
    assert_eq!(got, vec![hex(&frame)], "flooded from p1 to p2");
    let stats = wait_for(Duration::from_secs(15), || {
        let s = db.iface("p1", "statistics");
        s.contains("rx_packets=1").then_some(s)
    });
    assert!(
        stats.is_some(),
        "statistics: {}",
        db.iface("p1", "statistics")
    );

    db.vsctl_ok(&["del-port", "br0", "gen0"]);
    assert!(v.port("gen0").is_none());

    // A controller row: vswitchd connects and, once the HELLOs are
    // exchanged (as Open vSwitch counts it), writes is_connected, the role
    // and the status keys Open vSwitch writes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let target = format!("tcp:{}", listener.local_addr().unwrap());
    let accepted = std::thread::spawn(move || {
        use std::io::Write;
        let (mut s, _) = listener.accept()?;
        s.write_all(&[4, 0, 0, 8, 0, 0, 0, 1])?;
        // The listener goes with this thread: later attempts are refused.
        Ok::<_, std::io::Error>(s)
    });
    db.vsctl_ok(&["set-controller", "br0", &target]);
    let controller =
        |db: &Db| db.vsctl_ok(&["--columns=is_connected,role,status", "list", "Controller"]);
    let mut seen = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            seen = controller(&db);
            seen.contains("true") && seen.contains("state=ACTIVE")
        }),
        "{seen}"
    );
    assert!(seen.contains("role                : other"), "{seen}");
    assert!(seen.contains("sec_since_connect="), "{seen}");
    assert!(!seen.contains("sec_since_disconnect"), "{seen}");
    drop(accepted.join().expect("accept thread"));
    // The controller hung up ("End of file"), and the attempts after it
    // find nothing listening: Open vSwitch's keys, role cleared.
    assert!(
        wait_until(Duration::from_secs(10), || {
            seen = controller(&db);
            seen.contains("false")
                && seen.contains("state=BACKOFF")
                && seen.contains("last_error=\"Connection refused\"")
                && seen.contains("sec_since_disconnect=")
        }),
        "{seen}"
    );
    assert!(seen.contains("sec_since_connect="), "{seen}");
    assert!(seen.contains("role                : []"), "{seen}");
    // A target nothing ever listened on: what ovs-vswitchd 3.1 writes,
    // `{last_error="Connection refused", state=BACKOFF}` (it never
    // connected, and a loopback refusal is there when connect() returns:
    // no disconnection; only if the kernel deferred it under load does it
    // count as one, as for a remote host).
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let nobody = format!("tcp:{}", closed.local_addr().unwrap());
    drop(closed);
    db.vsctl_ok(&["set-controller", "br0", &nobody]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            seen = db.vsctl_ok(&["get", "Controller", "br0", "status"]);
            let s = seen.trim();
            s == "{last_error=\"Connection refused\", state=BACKOFF}"
                || (s.starts_with("{last_error=\"Connection refused\", sec_since_disconnect=")
                    && s.ends_with(", state=BACKOFF}"))
        }),
        "{seen}"
    );
    // vswitchctl show has the same facts.
    let show = v.ctl(&["show", "br0"]);
    assert!(
        show.contains("(not connected) state=BACKOFF last_error=\"Connection refused\""),
        "{show}"
    );
    assert!(
        show.contains("fails open after 15 s without a controller"),
        "{show}"
    );
    db.vsctl_ok(&["del-controller", "br0"]);

    // The database goes away: forwarding goes on with the last
    // configuration.
    db.kill();
    v.ctl(&["inject", "br0", "p1", &hex(&frame)]);
    assert_eq!(
        sent(&v, "p2", 1).len(),
        1,
        "forwarding without the database"
    );
    assert!(v.alive(), "vswitchd survives the database's death");
    // Back: vswitchd reconnects (backoff at most 8 s) and follows again.
    let before = v.connections();
    db.spawn();
    assert!(
        wait_until(Duration::from_secs(20), || v.connections() > before),
        "no reconnection:\n{}",
        v.log()
    );
    db.vsctl_ok(&[
        "add-port",
        "br0",
        "p3",
        "--",
        "set",
        "Interface",
        "p3",
        "type=dummy",
    ]);
    assert!(v.port("p3").is_some());
    assert_eq!(db.iface("p1", "ofport"), "7", "the reconnection kept p1");
    assert_eq!(v.port("p1").unwrap()["ofport"], 7);

    // del-br removes the bridge.
    db.vsctl_ok(&["del-br", "br0"]);
    assert!(v.ctl_json(&["show"])["bridges"]
        .as_array()
        .unwrap()
        .is_empty());
}

/// OpenFlow port numbers as ovs-vswitchd gives them: the interfaces
/// asking for a number are added first; a number held by an automatically
/// numbered port is taken from it (it moves); a number another port asking
/// for it holds leaves the newcomer on a free number, with no error, until
/// it is free.
#[test]
fn ofport_requests_are_numbered_as_ovs_vswitchd_numbers_them() {
    if !require_ovs("ovsdb_vsctl::ofport_requests_are_numbered_as_ovs_vswitchd_numbers_them") {
        return;
    }
    let db = Db::start();
    let v = Vswitchd::start(None, &db.remote());
    db.add_netdev_bridge("br0");
    let dummy = |name: &str, request: Option<u32>| {
        let mut args = vec![
            "add-port".to_string(),
            "br0".to_string(),
            name.to_string(),
            "--".to_string(),
            "set".to_string(),
            "Interface".to_string(),
            name.to_string(),
            "type=dummy".to_string(),
        ];
        if let Some(r) = request {
            args.push(format!("ofport_request={r}"));
        }
        args
    };
    let vsctl = |parts: &[Vec<String>]| {
        let mut args: Vec<String> = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                args.push("--".to_string());
            }
            args.extend(p.iter().cloned());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        db.vsctl_ok(&refs);
    };
    let shown = |name: &str| v.port(name).map(|p| p["ofport"].clone());
    // One transaction: b asks for 1, a takes the next free number.
    vsctl(&[dummy("a", None), dummy("b", Some(1))]);
    assert_eq!(db.iface("b", "ofport"), "1");
    assert_eq!(db.iface("a", "ofport"), "2");
    // c asks for a's number: a moves.
    vsctl(&[dummy("c", Some(2))]);
    assert_eq!(db.iface("c", "ofport"), "2");
    assert_eq!(db.iface("a", "ofport"), "3");
    // d asks for b's, which b asks for too: d is numbered freely, no error.
    vsctl(&[dummy("d", Some(1))]);
    assert_eq!(db.iface("b", "ofport"), "1");
    assert_eq!(db.iface("d", "ofport"), "4");
    assert_eq!(db.iface("d", "error"), "[]");
    // b goes: d moves to the number it asks for.
    db.vsctl_ok(&["del-port", "br0", "b"]);
    assert_eq!(wait_iface(&db, "d", "ofport", "1"), "1");
    assert_eq!(shown("d"), Some(serde_json::json!(1)));
    assert_eq!(shown("a"), Some(serde_json::json!(3)));
    assert_eq!(shown("c"), Some(serde_json::json!(2)));
}

#[test]
fn two_vms_ping_through_the_database() {
    let t = "ovsdb_vsctl::two_vms_ping_through_the_database";
    if !require_ovs(t) || !require_root(t) {
        return;
    }
    let mut lab = Lab::new();
    let host = lab.quiet_netns();
    let mut db = Db::start();
    let mut v = Vswitchd::start(Some(&host), &db.remote());
    db.add_netdev_bridge("br0");
    let mut vms = Vec::new();
    for (i, ofport) in [(1u8, "11"), (2, "12")] {
        let name = format!("vm{i}");
        db.vsctl_ok(&[
            "add-port",
            "br0",
            &name,
            "--",
            "set",
            "Interface",
            &name,
            "type=tap",
            &format!("ofport_request={ofport}"),
            &format!("external_ids:iface-id=port-{i}"),
        ]);
        assert_eq!(db.iface(&name, "ofport"), ofport);
        let vm = lab.quiet_netns();
        move_tap(
            &lab,
            &host,
            &name,
            &vm,
            &vm_mac(i),
            Some(&format!("10.61.0.{i}/24")),
        );
        vms.push(vm);
    }
    db.vsctl_ok(&[
        "add-port",
        "br0",
        "gen0",
        "--",
        "set",
        "Interface",
        "gen0",
        "type=geneve",
        "options:remote_ip=192.0.2.2",
        "options:key=77",
        "options:df_default=false",
    ]);
    let o = db.vsctl(&[
        "add-port",
        "br0",
        "bad",
        "--",
        "set",
        "Interface",
        "bad",
        "type=patch",
    ]);
    assert!(o.status.success(), "{o:?}");
    assert!(db
        .iface("bad", "error")
        .contains("unsupported interface type"));

    assert!(
        lab.ping_until(&vms[0], "10.61.0.2", Duration::from_secs(10)),
        "vm1 cannot reach vm2 through the database's bridge\n{}",
        v.log()
    );
    assert!(lab.ping(&vms[1], "10.61.0.1", 3));
    assert_eq!(wait_iface(&db, "vm1", "link_state", "up"), "up");
    assert_eq!(db.iface("vm1", "external_ids"), "{iface-id=port-1}");
    assert_ne!(db.iface("gen0", "ofport"), "-1");

    // Different access VLANs cut them apart; the same one joins them.
    db.vsctl_ok(&["set", "Port", "vm1", "tag=10"]);
    db.vsctl_ok(&["set", "Port", "vm2", "tag=20"]);
    assert!(!lab.ping(&vms[0], "10.61.0.2", 1), "different VLANs");
    db.vsctl_ok(&["set", "Port", "vm2", "tag=10"]);
    assert!(
        lab.ping_until(&vms[0], "10.61.0.2", Duration::from_secs(10)),
        "same VLAN"
    );

    // The database dies: the VMs keep talking; it comes back: vswitchd
    // follows it again.
    db.kill();
    assert!(
        lab.ping(&vms[0], "10.61.0.2", 3),
        "forwarding without the database"
    );
    let before = v.connections();
    db.spawn();
    assert!(
        wait_until(Duration::from_secs(20), || v.connections() > before),
        "no reconnection:\n{}",
        v.log()
    );
    assert!(lab.ping(&vms[1], "10.61.0.1", 2), "after the reconnection");

    db.vsctl_ok(&["del-port", "br0", "vm2"]);
    assert!(v.port("vm2").is_none());
    assert!(!lab.ping(&vms[0], "10.61.0.2", 1), "vm2 is detached");
    assert!(v.alive());
    assert_eq!(db.iface("vm1", "ofport"), "11");
}

/// Another switch holding the database's `ovs_vswitchd` lock (an
/// ovs-vswitchd left running) keeps vswitchd from configuring anything
/// until it lets go, as two ovs-vswitchd processes do.
#[test]
fn waits_for_the_ovs_vswitchd_lock() {
    if !require_ovs("ovsdb_vsctl::waits_for_the_ovs_vswitchd_lock") {
        return;
    }
    let db = Db::start();
    let mut holder = db
        .ovs_cmd("ovsdb-client")
        .args(["lock", &db.remote(), "ovs_vswitchd"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ovsdb-client lock");
    // It prints {"locked":true} once it holds the lock.
    let mut line = String::new();
    {
        use std::io::BufRead;
        let out = holder.stdout.take().expect("stdout");
        let mut r = std::io::BufReader::new(out);
        r.read_line(&mut line).expect("read ovsdb-client");
    }
    assert!(line.contains("\"locked\":true"), "{line}");
    let v = Vswitchd::start(None, &db.remote());
    assert!(
        wait_until(Duration::from_secs(10), || v
            .log()
            .contains("holds the database's ovs_vswitchd lock")),
        "{}",
        v.log()
    );
    db.vsctl_ok(&["--no-wait", "add-br", "br0"]);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        v.ctl_json(&["show"])["bridges"]
            .as_array()
            .unwrap()
            .is_empty(),
        "configured without the lock"
    );
    let _ = holder.kill();
    let _ = holder.wait();
    // Now it configures: this returns once vswitchd applied it.
    db.vsctl_ok(&[
        "add-port",
        "br0",
        "p1",
        "--",
        "set",
        "Interface",
        "p1",
        "type=dummy",
    ]);
    assert!(v.port("p1").is_some());
}

/// Over TCP the server probes an idle session every 5 s (its default
/// inactivity probe) and drops it if unanswered: vswitchd answers, so the
/// session it opened stays the only one.
#[test]
fn tcp_session_survives_the_servers_probe() {
    if !require_ovs("ovsdb_vsctl::tcp_session_survives_the_servers_probe") {
        return;
    }
    // A free loopback port (the listener is closed just before the server
    // binds it).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let db = Db::start_with(Some(port));
    let v = Vswitchd::start(None, &format!("tcp:127.0.0.1:{port}"));
    db.vsctl_ok(&["add-br", "br0"]);
    db.vsctl_ok(&[
        "add-port",
        "br0",
        "p1",
        "--",
        "set",
        "Interface",
        "p1",
        "type=dummy",
    ]);
    // Longer than a probe and its 5 s answer time after vswitchd's last
    // write (the first statistics, within 5 s).
    std::thread::sleep(Duration::from_secs(16));
    db.vsctl_ok(&["set", "Port", "p1", "tag=5"]);
    assert_eq!(v.port("p1").unwrap()["policy"]["tag"], 5);
    assert_eq!(v.connections(), 1, "the session was dropped:\n{}", v.log());
    assert!(!v.log().contains("OVSDB connection closed"), "{}", v.log());
}

/// `add-br br0` (netdev) and two `type=tap` interfaces vm1 and vm2 with
/// ofports `ofports`, their kernel sides moved into two new VM namespaces
/// (`10.SUBNET.0.1/24` and `.2`); returns the VM namespaces.
fn two_tap_vms(lab: &mut Lab, host: &str, db: &Db, subnet: u8, ofports: [&str; 2]) -> Vec<String> {
    db.add_netdev_bridge("br0");
    let mut vms = Vec::new();
    for (i, ofport) in (1u8..).zip(ofports) {
        let name = format!("vm{i}");
        db.vsctl_ok(&[
            "add-port",
            "br0",
            &name,
            "--",
            "set",
            "Interface",
            &name,
            "type=tap",
            &format!("ofport_request={ofport}"),
        ]);
        let vm = lab.quiet_netns();
        let cidr = format!("10.{subnet}.0.{i}/24");
        move_tap(lab, host, &name, &vm, &vm_mac(i), Some(&cidr));
        vms.push(vm);
    }
    vms
}

/// An upgrade in database mode: the new vswitchd steals the database's
/// lock, takes the TAP fds over and configures from the database; the
/// VMs keep their NICs, the ofports stay, and the old one exits.
#[test]
fn takeover_with_the_database() {
    let t = "ovsdb_vsctl::takeover_with_the_database";
    if !require_ovs(t) || !require_root(t) {
        return;
    }
    let mut lab = Lab::new();
    let host = lab.quiet_netns();
    let db = Db::start();
    let mut v = Vswitchd::start(Some(&host), &db.remote());
    let vms = two_tap_vms(&mut lab, &host, &db, 62, ["21", "22"]);
    assert!(lab.ping_until(&vms[0], "10.62.0.2", Duration::from_secs(10)));
    let idx = |vm: &str, dev: &str| lab.sh_ok(vm, 5, &format!("cat /sys/class/net/{dev}/ifindex"));
    let before = (idx(&vms[0], "vm1"), idx(&vms[1], "vm2"));
    let st = v.takeover(Some(&host), &db.remote());
    assert!(
        st.is_some_and(|s| s.success()),
        "the old vswitchd exits cleanly: {st:?}\n{}",
        v.log()
    );
    assert!(v.alive(), "the new one runs:\n{}", v.log());
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::os::unix::net::UnixStream::connect(v.dir.path().join("vswitchd.sock")).is_ok()
        }),
        "the new one answers on the control socket:\n{}",
        v.log()
    );
    assert!(
        lab.ping(&vms[0], "10.62.0.2", 3),
        "forwarding after the upgrade:\n{}",
        v.log()
    );
    assert_eq!(
        (idx(&vms[0], "vm1"), idx(&vms[1], "vm2")),
        before,
        "same devices"
    );
    assert!(
        !lab.sh(&host, 5, "ip link show vm1").status.success(),
        "no twin"
    );
    assert_eq!(db.iface("vm1", "ofport"), "21");
    assert_eq!(db.iface("vm2", "ofport"), "22");
    // The new one configures from the database.
    db.vsctl_ok(&["set", "Port", "vm1", "tag=10"]);
    assert!(
        !lab.ping(&vms[0], "10.62.0.2", 1),
        "the new process applies changes"
    );
    db.vsctl_ok(&["set", "Port", "vm2", "tag=10"]);
    assert!(lab.ping_until(&vms[0], "10.62.0.2", Duration::from_secs(10)));
}

/// kill -9 with the database as the source of ports: the TAPs stay in the
/// VMs, the restarted vswitchd reattaches them with the same ofports, and
/// the flows loaded at run time come back from the state directory as the
/// database re-creates the bridge (no flow-restore-wait needed).
#[test]
fn kill9_with_the_database() {
    let t = "ovsdb_vsctl::kill9_with_the_database";
    if !require_ovs(t) || !require_root(t) {
        return;
    }
    let mut lab = Lab::new();
    let host = lab.quiet_netns();
    let db = Db::start();
    let mut v = Vswitchd::start(Some(&host), &db.remote());
    let vms = two_tap_vms(&mut lab, &host, &db, 63, ["31", "32"]);
    let flows = format!(
        "{}/flows/stateful-firewall.flows",
        env!("CARGO_MANIFEST_DIR")
    );
    v.ctl(&["del-flows", "br0"]);
    v.ctl(&["add-flows", "br0", &flows]);
    assert!(lab.ping_until(&vms[0], "10.63.0.2", Duration::from_secs(10)));
    let dump = |v: &Vswitchd| -> Vec<String> {
        v.ctl_json(&["dump-flows", "br0"])["flows"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                format!(
                    "{} {} {} {}",
                    f["table"], f["priority"], f["match"], f["actions"]
                )
            })
            .collect()
    };
    let before = dump(&v);
    assert!(before.len() > 5, "the firewall is loaded: {before:?}");

    v.kill9();
    assert!(link_exists_in(&vms[0], "vm1") && link_exists_in(&vms[1], "vm2"));
    v.restart(Some(&host), &db.remote());
    assert!(
        lab.ping_until(&vms[0], "10.63.0.2", Duration::from_secs(10)),
        "ping after the restart:\n{}",
        v.log()
    );
    assert_eq!(dump(&v), before, "the run-time flows are back");
    assert_eq!(db.iface("vm1", "ofport"), "31");
    assert_eq!(db.iface("vm2", "ofport"), "32");
    assert!(
        !lab.sh(&host, 5, "ip link show vm1").status.success(),
        "no twin"
    );
    assert_eq!(wait_iface(&db, "vm1", "link_state", "up"), "up");
}

/// True when `ovs-ofctl` is there (it comes with Open vSwitch); a visible
/// skip otherwise, a failure under VSWITCH_REQUIRE_OVS=1.
fn require_ofctl(test: &str) -> bool {
    if common::have_tool("ovs-ofctl") {
        return true;
    }
    if std::env::var("VSWITCH_REQUIRE_OVS").as_deref() == Ok("1") {
        panic!("{test}: needs ovs-ofctl and VSWITCH_REQUIRE_OVS=1");
    }
    eprintln!("skipping {test}: needs ovs-ofctl (apt-get install openvswitch-common)");
    false
}

/// `ovs-ofctl -O VERSION ARGS` on br0's management socket (bounded).
fn ofctl(v: &Vswitchd, version: &str, args: &[&str]) -> Output {
    let mgmt = format!("unix:{}", v.dir.path().join("br0.mgmt").display());
    let (cmd, rest) = args.split_first().expect("an ovs-ofctl command");
    Command::new("timeout")
        .args(["20", "ovs-ofctl", "-O", version, cmd, &mgmt])
        .args(rest)
        .output()
        .expect("run ovs-ofctl")
}

fn ofctl_ok(v: &Vswitchd, version: &str, args: &[&str]) -> String {
    let o = ofctl(v, version, args);
    assert!(
        o.status.success(),
        "ovs-ofctl {args:?}: {}\nlog:\n{}",
        String::from_utf8_lossy(&o.stderr),
        v.log()
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The `dpid:` that `ovs-ofctl show` prints.
fn shown_dpid(v: &Vswitchd) -> String {
    let out = ofctl_ok(v, "OpenFlow13", &["show"]);
    out.split_whitespace()
        .find_map(|w| w.strip_prefix("dpid:"))
        .unwrap_or_default()
        .to_string()
}

/// `Bridge.protocols` and `other_config:datapath-id` as the real
/// `ovs-ofctl` sees them: a bridge restricted to OpenFlow 1.0 refuses a
/// 1.3-only `ovs-ofctl` with a version negotiation error; the datapath id
/// `ovs-ofctl show` prints is the configured one and is written back to
/// `Bridge.datapath_id` (the derived one when none, or a bad one, is set).
#[test]
fn protocols_and_datapath_id_through_the_database() {
    let t = "ovsdb_vsctl::protocols_and_datapath_id_through_the_database";
    if !require_ovs(t) || !require_ofctl(t) {
        return;
    }
    let db = Db::start();
    let v = Vswitchd::start(None, &db.remote());
    db.add_netdev_bridge("br0");

    // The derived id, written back like ovs-vswitchd writes it.
    let mut derived = String::new();
    wait_until(Duration::from_secs(10), || {
        derived = db.vsctl_ok(&["get", "Bridge", "br0", "datapath_id"]);
        derived.len() == 16
    });
    assert!(
        derived.len() == 16 && derived.bytes().all(|b| b.is_ascii_hexdigit()),
        "datapath_id: {derived:?}\n{}",
        v.log()
    );
    assert_eq!(shown_dpid(&v), derived);

    db.vsctl_ok(&[
        "set",
        "Bridge",
        "br0",
        "other_config:datapath-id=0000000000000abc",
    ]);
    assert_eq!(shown_dpid(&v), "0000000000000abc");
    let mut got = String::new();
    wait_until(Duration::from_secs(10), || {
        got = db.vsctl_ok(&["get", "Bridge", "br0", "datapath_id"]);
        got == "0000000000000abc"
    });
    assert_eq!(got, "0000000000000abc");

    // A bad value is ignored (with a warning): the derived id again.
    db.vsctl_ok(&["set", "Bridge", "br0", "other_config:datapath-id=not-hex"]);
    assert_eq!(shown_dpid(&v), derived);
    assert!(
        v.log().contains("datapath-id=not-hex"),
        "a warning names it:\n{}",
        v.log()
    );

    // OpenFlow 1.0 only: 1.3-only ovs-ofctl fails its HELLO, 1.0 works.
    db.vsctl_ok(&["set", "Bridge", "br0", "protocols=OpenFlow10"]);
    let o = ofctl(&v, "OpenFlow13", &["show"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "1.3 refused: {o:?}");
    assert!(err.contains("version negotiation failed"), "{err}");
    assert!(ofctl_ok(&v, "OpenFlow10", &["show"]).contains("OFPT_FEATURES_REPLY"));
    // Several versions: the highest in common is used.
    db.vsctl_ok(&["set", "Bridge", "br0", "protocols=OpenFlow10,OpenFlow13"]);
    assert!(ofctl_ok(&v, "OpenFlow13", &["show"]).contains("OFPT_FEATURES_REPLY (OF1.3)"));
    assert!(!ofctl(&v, "OpenFlow15", &["show"]).status.success());
    // Empty: every version vswitch speaks.
    db.vsctl_ok(&["clear", "Bridge", "br0", "protocols"]);
    assert!(ofctl_ok(&v, "OpenFlow15", &["show"]).contains("OFPT_FEATURES_REPLY (OF1.5)"));
    assert_eq!(
        v.ctl_json(&["show", "br0"])["bridges"][0]["protocols"],
        "0x01, 0x04, 0x05, 0x06"
    );
}

/// An OpenFlow barrier means "applied and saved": flows `ovs-ofctl
/// add-flows` got a barrier reply for survive a `kill -9` right after it
/// returns. `ovs-ofctl` sends a barrier after every flow-mod: each is a
/// journal append, and the tables are snapshotted a few times for the
/// whole burst, not once per flow-mod.
#[test]
fn a_barrier_waits_for_the_save() {
    let t = "ovsdb_vsctl::a_barrier_waits_for_the_save";
    if !require_ovs(t) || !require_ofctl(t) {
        return;
    }
    let db = Db::start();
    let mut v = Vswitchd::start(None, &db.remote());
    db.add_netdev_bridge("br0");
    const N: usize = 3000;
    let file = v.dir.path().join("burst.flows");
    let text: String = (0..N)
        .map(|i| format!("priority=100,tcp,tp_dst={},actions=drop\n", i + 1))
        .collect();
    std::fs::write(&file, text).expect("write flows");
    // 0 until the restarted daemon has its bridge (and socket) back.
    let count = |v: &Vswitchd| -> usize {
        let o = ofctl(v, "OpenFlow13", &["dump-flows"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains("tp_dst="))
            .count()
    };
    for round in 0..3 {
        ofctl_ok(&v, "OpenFlow13", &["del-flows"]);
        ofctl_ok(&v, "OpenFlow13", &["add-flows", file.to_str().unwrap()]);
        // At once: no time for a debounced save.
        v.kill9();
        v.restart(None, &db.remote());
        let mut n = 0;
        wait_until(Duration::from_secs(20), || {
            n = count(&v);
            n == N
        });
        assert_eq!(
            n,
            N,
            "round {round}: flows lost after the barrier:\n{}",
            v.log()
        );
    }
    // A burst ended by one barrier is one commit: stop cleanly and read
    // the saver's count (changes acknowledged, saves that covered them).
    ofctl_ok(&v, "OpenFlow13", &["del-flows"]);
    let t0 = Instant::now();
    ofctl_ok(&v, "OpenFlow13", &["add-flows", file.to_str().unwrap()]);
    eprintln!(
        "ovs-ofctl add-flows of {N} flows, a barrier each: {:?}",
        t0.elapsed()
    );
    v.stop();
    let log = v.log();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("acknowledged changes and the saves"))
        .unwrap_or_else(|| panic!("the saver's count:\n{log}"));
    eprintln!("{line}");
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .and_then(|x| x.parse().ok())
            .unwrap_or(u64::MAX)
    };
    assert!(
        field("journaled") >= N as u64,
        "one append per barrier: {line}"
    );
    assert!(
        field("snapshots") < (N / 10) as u64,
        "a burst of {N} flow-mods is a few snapshots, not one each: {line}"
    );
}

/// A fake controller: a loopback listener the test drives by hand.
struct FakeController {
    listener: std::net::TcpListener,
}

impl FakeController {
    fn new() -> FakeController {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        FakeController { listener }
    }

    fn target(&self) -> String {
        format!("tcp:{}", self.listener.local_addr().expect("addr"))
    }

    /// The next connection, within `limit`.
    fn accept(&self, limit: Duration) -> Option<std::net::TcpStream> {
        wait_for(limit, || match self.listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).ok()?;
                Some(s)
            }
            Err(_) => None,
        })
    }
}

/// Reads one OpenFlow message (None at EOF or after `limit` of silence).
fn read_msg(s: &mut std::net::TcpStream, limit: Duration) -> Option<Vec<u8>> {
    use std::io::Read;
    s.set_read_timeout(Some(limit)).ok()?;
    let mut m = vec![0u8; 8];
    s.read_exact(&mut m).ok()?;
    let len = usize::from(u16::from_be_bytes([m[2], m[3]])).max(8);
    m.resize(len, 0);
    s.read_exact(&mut m[8..]).ok()?;
    Some(m)
}

/// HELLO (1.3), then FEATURES_REQUEST; returns once the FEATURES_REPLY
/// came.
fn handshake(s: &mut std::net::TcpStream) {
    use std::io::Write;
    let hello = [4u8, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 8, 0, 0, 0, 0x10];
    s.write_all(&hello).expect("hello");
    s.write_all(&[4, 5, 0, 8, 0, 0, 0, 2])
        .expect("features request");
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        let m = read_msg(s, Duration::from_secs(20)).expect("switch's messages");
        if m[1] == 6 {
            return;
        }
    }
    panic!("no FEATURES_REPLY");
}

/// `Controller.inactivity_probe`: a controller that completes its
/// handshake and goes silent gets an echo request, then is hung up on and
/// connected again; `is_connected` follows. `connection_mode=in-band` is
/// accepted and logged as out of band; `max_backoff` caps the wait
/// between attempts (what vswitchd logs it chose; the spacing itself is
/// the backoff unit test's).
#[test]
fn controller_probe_backoff_and_mode_through_the_database() {
    let t = "ovsdb_vsctl::controller_probe_backoff_and_mode_through_the_database";
    if !require_ovs(t) {
        return;
    }
    let db = Db::start();
    let v = Vswitchd::start(None, &db.remote());
    db.add_netdev_bridge("br0");
    let ctl = FakeController::new();
    db.vsctl_ok(&[
        "set-controller",
        "br0",
        &ctl.target(),
        "--",
        "set",
        "Controller",
        "br0",
        "inactivity_probe=5000",
        "connection_mode=in-band",
    ]);
    let mut s = ctl
        .accept(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("vswitchd connects:\n{}", v.log()));
    handshake(&mut s);
    let connected = |want: &str| {
        let mut got = String::new();
        wait_until(Duration::from_secs(15), || {
            got = db.vsctl_ok(&["get", "Controller", "br0", "is_connected"]);
            got == want
        });
        got
    };
    assert_eq!(connected("true"), "true");
    assert!(
        v.log().contains("in-band control is not implemented"),
        "{}",
        v.log()
    );
    // Silent now: an echo request within the probe interval (5 s, bounded
    // generously), then the connection is closed (5 s more).
    let mut echo = false;
    let mut idle = String::new();
    let mut closed = false;
    let end = Instant::now() + Duration::from_secs(40);
    while Instant::now() < end {
        match read_msg(&mut s, Duration::from_secs(30)) {
            Some(m) if m[1] == 2 => {
                echo = true;
                // The probe is unanswered: IDLE, as Open vSwitch says it,
                // until the connection is closed 5 s after the probe.
                wait_until(Duration::from_secs(4), || {
                    idle = db.vsctl_ok(&["get", "Controller", "br0", "status:state"]);
                    idle.trim() == "IDLE"
                });
            }
            Some(_) => {}
            None => {
                closed = true;
                break;
            }
        }
    }
    assert!(echo && closed, "echo={echo} closed={closed}\n{}", v.log());
    assert_eq!(idle.trim(), "IDLE", "probed and silent");
    // And it comes back.
    let mut s2 = ctl
        .accept(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("reconnected:\n{}", v.log()));
    handshake(&mut s2);
    // Connected again: the probe's timeout stays the last error, as Open
    // vSwitch keeps it, with the time since that disconnection.
    let mut st = String::new();
    assert!(
        wait_until(Duration::from_secs(15), || {
            st = db.vsctl_ok(&["get", "Controller", "br0", "status"]);
            st.contains("state=ACTIVE")
        }),
        "{st}"
    );
    assert!(
        st.contains("last_error=\"Connection timed out\"") && st.contains("sec_since_disconnect="),
        "{st}"
    );
    assert!(
        v.log().contains("disconnected; reconnecting"),
        "{}",
        v.log()
    );
    let n = v.log().matches("reconnecting in").count();
    drop(s2);
    drop(s);
    assert!(wait_until(Duration::from_secs(10), || v
        .log()
        .matches("reconnecting in")
        .count()
        > n));

    // max_backoff=1000 and probing off: a controller that hangs up at
    // once is tried again every second, never after 2 s or more.
    db.vsctl_ok(&[
        "set",
        "Controller",
        "br0",
        "max_backoff=1000",
        "inactivity_probe=0",
        "connection_mode=out-of-band",
    ]);
    let before = v.log().matches("reconnecting in").count();
    for _ in 0..4 {
        let c = ctl
            .accept(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("attempt:\n{}", v.log()));
        drop(c);
    }
    assert!(wait_until(Duration::from_secs(10), || {
        v.log().matches("reconnecting in").count() >= before + 4
    }));
    let log = v.log();
    let waits: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("reconnecting in ").nth(1))
        .skip(before)
        .collect();
    assert!(
        waits.iter().all(|w| w.starts_with("1s")),
        "capped at 1 s: {waits:?}"
    );
    assert_eq!(connected("false"), "false");
}
