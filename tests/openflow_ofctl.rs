//! The OpenFlow endpoint driven by the real `ovs-ofctl` (Debian
//! openvswitch-common), in-process over `OfprotoBackend`, and compared with
//! a real Open vSwitch loaded with the same flows (started with private
//! directories and dummy ports, like `shared/anchors/common.sh`).
//! Skips with a message when the tools are missing, unless
//! `VSWITCH_REQUIRE_OVS=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;
use vswitch::ofproto::Ofproto;
use vswitch::openflow::backend::OfprotoBackend;
use vswitch::openflow::server;
use vswitch::openflow::wire::port::PortDesc;

/// The ports every flows/*.flows file names, numbered as the Open vSwitch
/// oracle gets them (`ofport_request`).
const PORTS: [&str; 9] = [
    "vm1", "vm2", "tun0", "wire0", "wire1", "pa", "pb", "tr0", "tr1",
];

fn require_ofctl(test: &str) -> bool {
    if !common::have_tool("ovs-ofctl") {
        if std::env::var("VSWITCH_REQUIRE_OVS").as_deref() == Ok("1") {
            panic!("{test}: needs ovs-ofctl and VSWITCH_REQUIRE_OVS=1");
        }
        eprintln!("skipping {test}: needs ovs-ofctl (apt-get install openvswitch-common)");
        return false;
    }
    true
}

struct Ours {
    backend: Arc<OfprotoBackend>,
    _rt: tokio::runtime::Runtime,
    _server: server::Server,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

fn start_ours() -> Ours {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("br0.mgmt");
    let ofp = Arc::new(Ofproto::new("br0", Instant::now()));
    let backend = Arc::new(OfprotoBackend::new(ofp, 0x0000_0000_0000_00b0));
    for (i, name) in PORTS.iter().enumerate() {
        backend.add_port(PortDesc {
            port_no: i as u32 + 1,
            hw_addr: [0xaa, 0x55, 0xaa, 0x55, 0, i as u8 + 2],
            name: name.to_string(),
            config: 0,
            state: 4,
            curr_speed: 0,
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = {
        let _g = rt.enter();
        server::start(server::Config::new(&sock), backend.clone()).unwrap()
    };
    Ours {
        backend,
        _rt: rt,
        _server: server,
        sock,
        _dir: dir,
    }
}

/// The directory of a `unix:` target: ovs-ofctl puts its own control
/// socket in OVS_RUNDIR, so it goes where the test cleans up.
fn rundir(target: &str) -> PathBuf {
    Path::new(target.trim_start_matches("unix:"))
        .parent()
        .map_or_else(std::env::temp_dir, Path::to_path_buf)
}

fn ofctl(target: &str, version: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("timeout")
        .env("OVS_RUNDIR", rundir(target))
        .arg("20")
        .arg("ovs-ofctl")
        .arg("-O")
        .arg(version)
        .args(args.iter().map(|a| a.replace("TARGET", target)))
        .output()
        .expect("run ovs-ofctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(target: &str, version: &str, args: &[&str]) -> String {
    let (good, out, err) = ofctl(target, version, args);
    assert!(good, "ovs-ofctl -O {version} {args:?} failed: {err}{out}");
    out
}

/// `load:V->NXM_NX_REGn[]` as `set_field:V->regn`. The two are the same
/// action; Open vSwitch remembers which spelling a flow arrived with and
/// sends it back that way in 1.3, while `flow::Action` keeps one form (a
/// known, printed-only difference).
fn same_load(l: &str) -> String {
    l.split(',')
        .map(|a| {
            if let Some(rest) = a.strip_prefix("load:") {
                if let Some((v, dst)) = rest.split_once("->NXM_NX_REG") {
                    if let Some(n) = dst.strip_suffix("[]") {
                        return format!("set_field:{v}->reg{n}");
                    }
                }
            }
            a.to_string()
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Flow lines of a dump, without the reply header and the per-run
/// counters and ages, sorted.
fn flow_lines(dump: &str) -> Vec<String> {
    let mut v: Vec<String> = dump
        .lines()
        .filter(|l| l.starts_with(' '))
        .map(|l| {
            l.trim()
                .split(", ")
                .filter(|f| {
                    !f.starts_with("duration=")
                        && !f.starts_with("idle_age=")
                        && !f.starts_with("hard_age=")
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .map(|l| same_load(&l))
        .collect();
    v.sort();
    v
}

/// Versions compared with Open vSwitch.
const VERSIONS: [&str; 4] = ["OpenFlow10", "OpenFlow13", "OpenFlow14", "OpenFlow15"];

#[test]
fn ovs_ofctl_core_commands() {
    if !require_ofctl("ovs_ofctl_core_commands") {
        return;
    }
    let ours = start_ours();
    let t = format!("unix:{}", ours.sock.display());
    for v in VERSIONS {
        ok(&t, v, &["del-flows", "TARGET"]);
        ok(
            &t,
            v,
            &[
                "add-flow",
                "TARGET",
                "priority=100,in_port=vm1,actions=output:vm2",
            ],
        );
        ok(
            &t,
            v,
            &[
                "add-flow",
                "TARGET",
                "table=1,priority=5,ip,nw_dst=10.0.0.0/8,actions=dec_ttl,normal",
            ],
        );
        let d = ok(&t, v, &["dump-flows", "TARGET", "--no-stats"]);
        assert_eq!(
            flow_lines(&d),
            [
                "priority=100,in_port=1 actions=output:2",
                "table=1, priority=5,ip,nw_dst=10.0.0.0/8 actions=dec_ttl,NORMAL"
            ],
            "{v}: {d}"
        );
        ok(
            &t,
            v,
            &["mod-flows", "TARGET", "in_port=vm1,actions=output:vm1"],
        );
        let d = ok(&t, v, &["dump-flows", "TARGET", "in_port=vm1"]);
        assert!(
            d.contains("actions=IN_PORT") || d.contains("actions=output:1"),
            "{v}: {d}"
        );
        ok(
            &t,
            v,
            &[
                "del-flows",
                "--strict",
                "TARGET",
                "priority=100,in_port=vm1",
            ],
        );
        let agg = ok(&t, v, &["dump-aggregate", "TARGET"]);
        assert!(agg.contains("flow_count=1"), "{v}: {agg}");
        let show = ok(&t, v, &["show", "TARGET"]);
        assert!(
            show.contains("1(vm1)") && show.contains("9(tr1)"),
            "{v}: {show}"
        );
        let pd = ok(&t, v, &["dump-ports-desc", "TARGET"]);
        assert!(pd.contains("3(tun0)"), "{v}: {pd}");
        let ps = ok(&t, v, &["dump-ports", "TARGET"]);
        assert!(ps.contains("port  1") || ps.contains("port 1"), "{v}: {ps}");
        let tables = ok(&t, v, &["dump-tables", "TARGET"]);
        assert!(
            tables.contains("table 1") || tables.contains("table 0"),
            "{v}: {tables}"
        );
    }
}

/// A real Open vSwitch with private run/db/log directories under a temp
/// dir, a `br0` on the dummy datapath and dummy ports numbered as ours.
struct Ovs {
    dir: tempfile::TempDir,
}

impl Ovs {
    fn env(&self, c: &mut Command) {
        let d = self.dir.path();
        c.env("OVS_RUNDIR", d)
            .env("OVS_DBDIR", d)
            .env("OVS_LOGDIR", d);
    }

    fn run(&self, prog: &str, args: &[&str]) -> bool {
        let mut c = Command::new("timeout");
        c.arg("20").arg(prog).args(args);
        self.env(&mut c);
        c.status().is_ok_and(|s| s.success())
    }

    fn start() -> Option<Ovs> {
        let dir = tempfile::tempdir().ok()?;
        let ovs = Ovs { dir };
        let d = ovs.dir.path().to_path_buf();
        let db = d.join("conf.db");
        let p = |x: &Path| x.display().to_string();
        let up = ovs.run(
            "ovsdb-tool",
            &[
                "create",
                &p(&db),
                "/usr/share/openvswitch/vswitch.ovsschema",
            ],
        ) && ovs.run(
            "ovsdb-server",
            &[
                &p(&db),
                &format!("--remote=punix:{}", p(&d.join("db.sock"))),
                &format!("--pidfile={}", p(&d.join("ovsdb-server.pid"))),
                "--detach",
                "-vconsole:off",
                &format!("--log-file={}", p(&d.join("ovsdb-server.log"))),
            ],
        ) && ovs.run("ovs-vsctl", &["--no-wait", "init"])
            && ovs.run(
                "ovs-vswitchd",
                &[
                    "--enable-dummy",
                    &format!("unix:{}", p(&d.join("db.sock"))),
                    &format!("--pidfile={}", p(&d.join("ovs-vswitchd.pid"))),
                    "--detach",
                    "-vconsole:off",
                    &format!("--log-file={}", p(&d.join("ovs-vswitchd.log"))),
                ],
            )
            && ovs.run(
                "ovs-vsctl",
                &[
                    "add-br",
                    "br0",
                    "--",
                    "set",
                    "bridge",
                    "br0",
                    "datapath_type=dummy",
                ],
            );
        if !up {
            return None;
        }
        for (i, name) in PORTS.iter().enumerate() {
            let req = format!("ofport_request={}", i + 1);
            if !ovs.run(
                "ovs-vsctl",
                &[
                    "add-port",
                    "br0",
                    name,
                    "--",
                    "set",
                    "interface",
                    name,
                    "type=dummy",
                    &req,
                ],
            ) {
                return None;
            }
        }
        Some(ovs)
    }

    fn target(&self) -> String {
        format!("unix:{}", self.dir.path().join("br0.mgmt").display())
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        for d in ["ovs-vswitchd", "ovsdb-server"] {
            let pidfile = self.dir.path().join(format!("{d}.pid"));
            if let Ok(pid) = std::fs::read_to_string(&pidfile) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

/// Every flows/*.flows file, added with `add-flows` (and `--bundle` from
/// 1.3 on) in each version, dumps the same lines from us as from Open
/// vSwitch 3.1, counters and ages aside.
#[test]
fn dump_flows_matches_open_vswitch() {
    if !require_ofctl("dump_flows_matches_open_vswitch")
        || !common::require_ovs("dump_flows_matches_open_vswitch")
    {
        return;
    }
    let Some(ovs) = Ovs::start() else {
        if std::env::var("VSWITCH_REQUIRE_OVS").as_deref() == Ok("1") {
            panic!("could not start Open vSwitch");
        }
        eprintln!("skipping dump_flows_matches_open_vswitch: Open vSwitch did not start");
        return;
    };
    let ours = start_ours();
    let us = format!("unix:{}", ours.sock.display());
    let them = ovs.target();
    let mut files: Vec<PathBuf> = std::fs::read_dir(common::repo_path("flows"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flows"))
        .collect();
    files.sort();
    let mut mismatches = Vec::new();
    let mut compared = 0;
    for v in VERSIONS {
        for f in &files {
            let fs = f.display().to_string();
            for bundle in [false, true] {
                if bundle && v == "OpenFlow10" {
                    continue;
                }
                let mut add = vec!["add-flows", "TARGET", &fs];
                if bundle {
                    add.insert(0, "--bundle");
                }
                ok(&us, v, &["del-flows", "TARGET"]);
                ok(&them, v, &["del-flows", "TARGET"]);
                let (t_ok, _, t_err) = ofctl(&them, v, &add);
                let (u_ok, _, u_err) = ofctl(&us, v, &add);
                if !t_ok {
                    // What Open vSwitch refuses (push_vlan in 1.0), we
                    // must refuse too.
                    assert!(
                        !u_ok,
                        "{v} {fs}: Open vSwitch refused ({t_err}) but we accepted"
                    );
                    continue;
                }
                assert!(u_ok, "{v} {fs} bundle={bundle}: {u_err}");
                for stats in [false, true] {
                    let args: &[&str] = if stats {
                        &["dump-flows", "TARGET"]
                    } else {
                        &["dump-flows", "TARGET", "--no-stats"]
                    };
                    let a = flow_lines(&ok(&them, v, args));
                    let b = flow_lines(&ok(&us, v, args));
                    compared += 1;
                    if a != b {
                        mismatches.push(format!(
                            "{v} {fs} bundle={bundle} stats={stats}:\n  ovs: {a:#?}\n  us:  {b:#?}"
                        ));
                    }
                }
            }
        }
    }
    eprintln!("compared {compared} dumps");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// `ovs-ofctl packet-out` reaches the backend with its input port,
/// actions and frame, in every version.
#[test]
fn ovs_ofctl_packet_out() {
    if !require_ofctl("ovs_ofctl_packet_out") {
        return;
    }
    let ours = start_ours();
    let t = format!("unix:{}", ours.sock.display());
    let frame =
        "ffffffffffff525400000001080600010800060400015254000000010a0000010000000000000a000002";
    for (i, v) in VERSIONS.iter().enumerate() {
        ok(
            &t,
            v,
            &[
                "packet-out",
                "TARGET",
                &format!("in_port=CONTROLLER,packet={frame},actions=output:vm2"),
            ],
        );
        let outs = ours.backend.packet_outs();
        assert_eq!(outs.len(), i + 1, "{v}");
        let (in_port, actions, data) = &outs[i];
        assert_eq!(*in_port, vswitch::flow::ofp_port::CONTROLLER, "{v}");
        assert_eq!(actions, &[vswitch::flow::Action::Output(2)], "{v}");
        assert_eq!(data.len(), frame.len() / 2, "{v}");
    }
}

/// `ovs-ofctl monitor` receives the bridge's packet-ins, port status
/// changes and removed flows.
#[test]
fn ovs_ofctl_monitor_receives_packet_ins_and_port_status() {
    use std::io::BufRead;
    use vswitch::openflow::backend::Event;
    use vswitch::openflow::wire::flow_removed::{FlowRemoved, RemovedReason};
    use vswitch::openflow::wire::packet::PacketIn;
    if !require_ofctl("ovs_ofctl_monitor_receives_packet_ins_and_port_status") {
        return;
    }
    let ours = start_ours();
    let t = format!("unix:{}", ours.sock.display());
    for v in VERSIONS {
        // exec: the child is ovs-ofctl itself, so killing it ends the
        // monitor (it prints what it receives on stderr).
        let mut child = Command::new("sh")
            .env("OVS_RUNDIR", rundir(&t))
            .args(["-c", &format!("exec ovs-ofctl -O {v} monitor {t} 2>&1")])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let frame: Vec<u8> = (0..60u8).collect();
        let mut seen_pin = false;
        let mut seen_meta = false;
        let mut seen_userdata = false;
        let mut seen_status = false;
        let mut seen_removed = false;
        let mut removed_match = vswitch::flow::Match::default();
        removed_match.set_exact(vswitch::flow::Field::InPort, 7);
        let mut pin_metadata = vswitch::flow::Match::default();
        pin_metadata.set_exact(vswitch::flow::Field::Reg(3), 0x2a);
        pin_metadata.set_exact(vswitch::flow::Field::Metadata, 0x77);
        // The monitor subscribes when its session starts: offer the events
        // until it has printed them (bounded: 100 rounds).
        for round in 0..100u32 {
            ours.backend.publish(Event::PacketIn(Box::new(PacketIn {
                total_len: 60,
                in_port: 1,
                reason: 1,
                table_id: 0,
                cookie: 0,
                metadata: pin_metadata,
                userdata: vec![1, 2, 3],
                data: frame.clone(),
            })));
            ours.backend.add_port(PortDesc {
                port_no: 100 + round,
                hw_addr: [2, 0, 0, 0, 0, 1],
                name: format!("p{round}"),
                config: 0,
                state: 4,
                curr_speed: 0,
            });
            ours.backend
                .publish(Event::FlowRemoved(Box::new(FlowRemoved {
                    table_id: 3,
                    reason: RemovedReason::IdleTimeout,
                    priority: 77,
                    cookie: 0x99,
                    matches: removed_match,
                    duration_sec: 5,
                    duration_nsec: 0,
                    idle_timeout: 5,
                    hard_timeout: 0,
                    packet_count: 0,
                    byte_count: 0,
                })));
            while let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(50)) {
                // The monitor asks for NXT_PACKET_IN2: userdata and the
                // metadata are printed on lines of their own.
                seen_pin |= l.contains("NXT_PACKET_IN2");
                seen_meta |= l.contains("reg3=0x2a") && l.contains("metadata=0x77");
                seen_userdata |= l.contains("userdata=01.02.03");
                seen_status |= l.contains("OFPT_PORT_STATUS") && l.contains("ADD");
                seen_removed |= l.contains("FLOW_REMOVED")
                    && l.contains("priority=77")
                    && l.contains("in_port=7")
                    && l.contains("reason=idle");
            }
            if seen_pin && seen_meta && seen_userdata && seen_status && seen_removed {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = reader.join();
        assert!(seen_pin, "{v}: no packet-in printed");
        assert!(seen_meta, "{v}: no packet-in metadata printed");
        assert!(seen_userdata, "{v}: no packet-in userdata printed");
        assert!(seen_status, "{v}: no port status printed");
        assert!(seen_removed, "{v}: no flow removed printed");
    }
}

/// Cookie and out_port filters of del-flows / dump-flows, and a bundle
/// with one refused flow: ovs-ofctl gets that flow's error, discards the
/// bundle instead of committing it (so OFPBFC_MSG_FAILED on commit is
/// covered by the session's own tests), and the table is as it was.
#[test]
fn ovs_ofctl_filters_and_failed_bundles() {
    if !require_ofctl("ovs_ofctl_filters_and_failed_bundles") {
        return;
    }
    let ours = start_ours();
    let t = format!("unix:{}", ours.sock.display());
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.flows");
    // The middle flow pushes two 802.1Q tags, which vswitch refuses (a
    // double tag overflows a 1500-byte MTU) while Open vSwitch accepts it.
    std::fs::write(
        &bad,
        "priority=7,in_port=3,actions=output:4\n\
         priority=6,in_port=4,actions=push_vlan:0x8100,push_vlan:0x8100,output:1\n\
         priority=5,in_port=5,actions=output:6\n",
    )
    .unwrap();
    for v in VERSIONS {
        ok(&t, v, &["del-flows", "TARGET"]);
        ok(
            &t,
            v,
            &[
                "add-flow",
                "TARGET",
                "cookie=0x5,priority=10,in_port=1,actions=output:2",
            ],
        );
        ok(
            &t,
            v,
            &[
                "add-flow",
                "TARGET",
                "cookie=0x6,priority=10,in_port=2,actions=output:1",
            ],
        );
        ok(
            &t,
            v,
            &[
                "add-flow",
                "TARGET",
                "cookie=0x7,priority=9,in_port=2,actions=output:3",
            ],
        );
        let d = ok(&t, v, &["dump-flows", "TARGET", "cookie=0x5/-1"]);
        assert_eq!(flow_lines(&d).len(), 1, "{v}: {d}");
        ok(&t, v, &["del-flows", "TARGET", "out_port=1"]);
        let d = ok(&t, v, &["dump-flows", "TARGET", "--no-stats"]);
        assert_eq!(
            flow_lines(&d),
            [
                "cookie=0x5, priority=10,in_port=1 actions=output:2",
                "cookie=0x7, priority=9,in_port=2 actions=output:3"
            ],
            "{v}"
        );
        ok(&t, v, &["del-flows", "TARGET", "cookie=0x7/-1"]);
        if v == "OpenFlow10" {
            continue;
        }
        let (good, _, err) = ofctl(
            &t,
            v,
            &[
                "--bundle",
                "add-flows",
                "TARGET",
                &bad.display().to_string(),
            ],
        );
        assert!(!good, "{v}: the bundle should fail");
        assert!(err.contains("OFPBAC_BAD_ARGUMENT"), "{v}: {err}");
        assert!(err.contains("priority=6,in_port=4"), "{v}: {err}");
        let d = ok(&t, v, &["dump-flows", "TARGET", "--no-stats"]);
        assert_eq!(
            flow_lines(&d),
            ["cookie=0x5, priority=10,in_port=1 actions=output:2"],
            "{v}: table changed"
        );
    }
}
