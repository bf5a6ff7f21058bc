//! vswitchd's own OpenFlow endpoint, `DIR/BR.mgmt` beside its control
//! socket, driven by the real `ovs-ofctl`: one table shared with
//! vswitchctl (flows added from either side are dumped by both, with the
//! same counters), ports and their counters, packet-out into the datapath,
//! and packet-ins from a `controller` action reaching `ovs-ofctl monitor`.

mod common;
mod conntrack_common;

use common::frames::{eth, hex, mac};
use common::{have_tool, wait_until, Daemon};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn require_ofctl(test: &str) -> bool {
    if have_tool("ovs-ofctl") {
        return true;
    }
    if std::env::var("VSWITCH_REQUIRE_OVS").as_deref() == Ok("1") {
        panic!("{test}: needs ovs-ofctl and VSWITCH_REQUIRE_OVS=1");
    }
    eprintln!("skipping {test}: needs ovs-ofctl (apt-get install openvswitch-common)");
    false
}

fn mgmt(d: &Daemon, br: &str) -> String {
    format!("unix:{}", d.dir.path().join(format!("{br}.mgmt")).display())
}

/// Runs ovs-ofctl, bounded; returns stdout, panics with stderr on failure.
fn ofctl(version: &str, args: &[&str]) -> String {
    let o = Command::new("timeout")
        .arg("20")
        .arg("ovs-ofctl")
        .args(["-O", version])
        .args(args)
        .output()
        .expect("run ovs-ofctl");
    assert!(
        o.status.success(),
        "ovs-ofctl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The `ovs-ofctl dump-flows` lines, without the stats that move.
fn flow_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("actions="))
        .map(|l| {
            l.split(", ")
                .filter(|f| !f.trim_start().starts_with("duration=") && !f.contains("_age="))
                .collect::<Vec<_>>()
                .join(", ")
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn ovs_ofctl_and_vswitchctl_drive_one_table() {
    if !require_ofctl("ovs_ofctl_and_vswitchctl_drive_one_table") {
        return;
    }
    let d = Daemon::start(None);
    d.add_dummies(&["p1", "p2"]);
    let sock = d.dir.path().join("br0.mgmt");
    let meta = std::fs::metadata(&sock).expect("br0.mgmt exists");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let t = mgmt(&d, "br0");
    for v in ["OpenFlow10", "OpenFlow13", "OpenFlow15"] {
        d.ctl(&["del-flows", "br0"]);
        ofctl(
            v,
            &["add-flow", &t, "priority=10,in_port=1,actions=output:2"],
        );
        d.ctl(&["add-flow", "br0", "priority=10,in_port=2,actions=output:1"]);
        let ours = d.ctl(&["dump-flows", "br0"]);
        let theirs = ofctl(v, &["dump-flows", &t]);
        assert_eq!(flow_lines(&ours), flow_lines(&theirs), "{v}");
        assert_eq!(flow_lines(&theirs).len(), 2, "{v}: {theirs}");
    }
    // Traffic moves the same counters seen from both sides.
    let f = hex(&eth(
        mac("02:00:00:00:00:02"),
        mac("02:00:00:00:00:01"),
        0x88b5,
        &[7; 46],
    ));
    d.ctl(&["inject", "br0", "p1", &f]);
    assert_eq!(
        d.wait_sent("p2", 1, Duration::from_secs(5)),
        vec![f.clone()]
    );
    let theirs = ofctl("OpenFlow13", &["dump-flows", &t, "in_port=1"]);
    assert!(
        theirs.contains("n_packets=1,") || theirs.contains("n_packets=1 "),
        "{theirs}"
    );
    // show, dump-ports, dump-ports-desc, dump-tables, dump-aggregate.
    let show = ofctl("OpenFlow13", &["show", &t]);
    assert!(show.contains("1(p1)") && show.contains("2(p2)"), "{show}");
    let ports = ofctl("OpenFlow13", &["dump-ports", &t, "1"]);
    assert!(ports.contains("rx pkts=1"), "{ports}");
    let desc = ofctl("OpenFlow15", &["dump-ports-desc", &t]);
    assert!(desc.contains("p2"), "{desc}");
    let agg = ofctl("OpenFlow13", &["dump-aggregate", &t]);
    assert!(agg.contains("flow_count=2"), "{agg}");
    ofctl("OpenFlow10", &["dump-tables", &t]);
    // del-flows --strict removes exactly one.
    ofctl(
        "OpenFlow13",
        &["--strict", "del-flows", &t, "priority=10,in_port=1"],
    );
    assert_eq!(d.flows().len(), 1);
    // A packet-out runs in the datapath: out of p2 it goes.
    ofctl(
        "OpenFlow13",
        &["packet-out", &t, "CONTROLLER", "output:2", &f],
    );
    assert_eq!(d.wait_sent("p2", 1, Duration::from_secs(5)), vec![f]);
    // A passive TCP listener (`ptcp:`), as ovs-vsctl set-controller makes
    // one; port 0 picks a free port, which `show` names.
    d.ctl(&["set-controller", "br0", "ptcp:0:127.0.0.1"]);
    let show = d.ctl_json(&["show", "br0"]);
    let listen = show["bridges"][0]["listen"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ptcp = listen
        .iter()
        .filter_map(|l| l.as_str())
        .find_map(|l| l.strip_prefix("ptcp:"))
        .unwrap_or_else(|| panic!("no ptcp listener: {show}"))
        .to_string();
    let port = ptcp.split(':').next().unwrap();
    let tcp = format!("tcp:127.0.0.1:{port}");
    assert_eq!(
        flow_lines(&ofctl("OpenFlow13", &["dump-flows", &tcp])).len(),
        1
    );
    d.ctl(&["del-controller", "br0"]);
    // A bridge made later gets its own socket; deleting it removes it.
    d.ctl(&["add-br", "br7"]);
    ofctl("OpenFlow13", &["dump-flows", &mgmt(&d, "br7")]);
    d.ctl(&["del-br", "br7"]);
    assert!(!d.dir.path().join("br7.mgmt").exists());
}

#[test]
fn packet_ins_reach_ovs_ofctl_monitor_and_a_flood_is_rate_limited() {
    if !require_ofctl("packet_ins_reach_ovs_ofctl_monitor_and_a_flood_is_rate_limited") {
        return;
    }
    let d = Daemon::start(None);
    d.add_dummies(&["p1", "p2"]);
    d.ctl(&["del-flows", "br0"]);
    d.ctl(&[
        "add-flow",
        "br0",
        "priority=10,in_port=1,actions=load:0x2a->NXM_NX_REG3[],controller(max_len=64,userdata=01.02.03),output:2",
    ]);
    let out = d.dir.path().join("monitor.txt");
    // ovs-ofctl monitor wants a run directory for its own control socket.
    let mut mon = Command::new("timeout")
        .env("OVS_RUNDIR", d.dir.path())
        .args([
            "30",
            "ovs-ofctl",
            "-O",
            "OpenFlow13",
            "monitor",
            &mgmt(&d, "br0"),
        ])
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        // It prints what it receives on stderr.
        .stderr(Stdio::from(
            std::fs::File::create(d.dir.path().join("monitor.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let f = hex(&eth(
        mac("02:00:00:00:00:02"),
        mac("02:00:00:00:00:01"),
        0x88b5,
        &[9; 100],
    ));
    // Probe until the monitor's session is there (packet-ins before it
    // are counted as controller_not_connected).
    let mut injected = 0u64;
    let up = wait_until(Duration::from_secs(15), || {
        d.ctl(&["inject", "br0", "p1", &f]);
        injected += 1;
        std::thread::sleep(Duration::from_millis(100));
        read(&out).contains("PACKET_IN")
    });
    assert!(up, "the monitor never saw a packet-in");
    // Every packet-in from here on is delivered or counted under its
    // reason: none vanishes. (A probe that reached ovs-ofctl while it was
    // still setting its session up is read and discarded by ovs-ofctl
    // itself, so the probes are left out: the count starts once they
    // have settled.)
    let accounted = || {
        read(&out).matches("PACKET_IN").count() as u64
            + d.drop_count("controller_rate_limited")
            + d.drop_count("controller_queue_full")
            + d.drop_count("controller_not_connected")
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = accounted();
    // More than the rate limit's burst (250): forwarding is untouched and
    // whatever the limit refuses is counted.
    for _ in 0..400 {
        d.ctl(&["inject", "br0", "p1", &f]);
    }
    injected += 400;
    let sent = d.wait_sent("p2", injected as usize, Duration::from_secs(20));
    assert_eq!(sent.len() as u64, injected, "forwarding is not affected");
    let all = wait_until(Duration::from_secs(10), || accounted() - before == 400);
    let _ = mon.kill();
    let _ = mon.wait();
    let text = read(&out);
    assert!(
        all,
        "{} of the flood's 400 packet-ins accounted for:\n{text}",
        accounted() - before
    );
    // The monitor asked for NXT_PACKET_IN2: the action's userdata and
    // the register loaded before it come with the packet.
    assert!(text.contains("NXT_PACKET_IN2"), "{text}");
    assert!(text.contains("total_len=114"), "{text}");
    assert!(text.contains("userdata=01.02.03"), "{text}");
    assert!(text.contains("reg3=0x2a"), "{text}");
}

#[test]
fn port_status_on_add_delete_and_state_changes() {
    if !require_ofctl("port_status_on_add_delete_and_state_changes") {
        return;
    }
    let d = Daemon::start(None);
    let out = d.dir.path().join("monitor.txt");
    let err = d.dir.path().join("monitor.err");
    let spawn = || {
        let open = |p: &std::path::Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap()
        };
        Command::new("timeout")
            .env("OVS_RUNDIR", d.dir.path())
            .args(["30", "ovs-ofctl", "-O", "OpenFlow13", "monitor"])
            .arg(mgmt(&d, "br0"))
            .stdout(Stdio::from(open(&out)))
            .stderr(Stdio::from(open(&err)))
            .spawn()
            .unwrap()
    };
    let mut mon = spawn();
    // Add ports until the monitor reports one (its session is then up).
    // A monitor that gave up connecting (seen under heavy load) is
    // started again, a bounded number of times.
    let mut n = 0;
    let mut respawns = 0;
    let up = wait_until(Duration::from_secs(20), || {
        n += 1;
        d.ctl(&["add-port", "br0", &format!("q{n}"), "type=dummy"]);
        std::thread::sleep(Duration::from_millis(100));
        if respawns < 3 && matches!(mon.try_wait(), Ok(Some(_))) {
            respawns += 1;
            mon = spawn();
        }
        read(&out).contains("PORT_STATUS")
    });
    assert!(
        up,
        "no PORT_STATUS for an added port ({n} added, monitor started {} times, br0.mgmt {}):\n{}\n{}",
        respawns + 1,
        if d.dir.path().join("br0.mgmt").exists() { "present" } else { "missing" },
        read(&err),
        d.log()
    );
    d.ctl(&["set-port", "br0", "q1", "disable"]);
    let modified = wait_until(Duration::from_secs(5), || {
        read(&out).contains("reason=modify") || read(&out).contains("MOD")
    });
    d.ctl(&["del-port", "br0", "q1"]);
    let deleted = wait_until(Duration::from_secs(5), || read(&out).contains("DEL"));
    let _ = mon.kill();
    let _ = mon.wait();
    let text = read(&out);
    assert!(
        modified,
        "no PORT_STATUS modify for a disabled port:\n{text}"
    );
    assert!(deleted, "no PORT_STATUS delete:\n{text}");
}

/// The monitor's output, both streams.
fn read(p: &Path) -> String {
    let mut s = std::fs::read_to_string(p).unwrap_or_default();
    s += &std::fs::read_to_string(p.with_file_name("monitor.err")).unwrap_or_default();
    s
}

/// Reads one OpenFlow message from `s` (whose read timeout bounds it).
fn read_msg(s: &mut std::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut m = vec![0u8; 8];
    s.read_exact(&mut m)?;
    let len = usize::from(u16::from_be_bytes([m[2], m[3]])).max(8);
    m.resize(len, 0);
    s.read_exact(&mut m[8..])?;
    Ok(m)
}

/// Accepts one connection within `within`.
fn accept_within(l: &std::net::TcpListener, within: Duration) -> Option<std::net::TcpStream> {
    l.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Ok((s, _)) = l.accept() {
            s.set_nonblocking(false).unwrap();
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A controller that completes the handshake and then never answers is
/// probed with an echo request and hung up on; vswitchd connects again.
#[test]
fn a_silent_controller_is_probed_disconnected_and_reconnected() {
    use std::io::{Read, Write};
    let d = Daemon::start(None);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    d.ctl(&["set-controller", "br0", &format!("tcp:127.0.0.1:{port}")]);
    let mut c = accept_within(&l, Duration::from_secs(20)).expect("vswitchd connects");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let hello = read_msg(&mut c).unwrap();
    assert_eq!(hello[1], 0, "HELLO first");
    // Our HELLO (OpenFlow 1.3), then silence.
    c.write_all(&[4, 0, 0, 8, 0, 0, 0, 1]).unwrap();
    let mut echo = None;
    // Whatever it sends after the handshake, an echo request comes
    // within the probe interval (bounded: 20 messages).
    for _ in 0..20 {
        let m = read_msg(&mut c).expect("an echo request before the connection ends");
        if m[1] == 2 {
            echo = Some(m);
            break;
        }
    }
    assert!(echo.is_some(), "no echo request from an idle connection");
    // Never answered: the connection is closed ...
    let mut rest = Vec::new();
    let n = c.read_to_end(&mut rest).expect("closed, not timed out");
    assert_eq!(n, 0, "nothing after the echo request: {rest:?}");
    // ... and made again.
    let again = accept_within(&l, Duration::from_secs(20));
    assert!(again.is_some(), "vswitchd did not reconnect");
}

/// `ovs-ofctl add-tlv-map`, `dump-tlv-map` and `del-tlv-map` change and
/// show the same Geneve TLV map as `vswitchctl`; a conflicting mapping is
/// refused with Open vSwitch's error and changes nothing.
#[test]
fn ovs_ofctl_tlv_map_is_the_bridge_map() {
    if !require_ofctl("ovs_ofctl_tlv_map_is_the_bridge_map") {
        return;
    }
    let d = Daemon::start(None);
    let t = mgmt(&d, "br0");
    for v in ["OpenFlow10", "OpenFlow13", "OpenFlow15"] {
        ofctl(
            v,
            &[
                "add-tlv-map",
                &t,
                "{class=0xffff,type=0x80,len=4}->tun_metadata0,{class=0x102,type=1,len=8}->tun_metadata3",
            ],
        );
        let ours = d.ctl(&["dump-tlv-map", "br0"]);
        let theirs = ofctl(v, &["dump-tlv-map", &t]);
        assert!(theirs.contains("NXT_TLV_TABLE_REPLY"), "{v}: {theirs}");
        let table = |s: &str| -> Vec<String> {
            s.lines()
                .skip_while(|l| !l.contains("max option space"))
                .map(|l| l.trim_end().to_string())
                .collect()
        };
        assert_eq!(table(&theirs), table(&ours), "{v}:\n{theirs}\n{ours}");
        assert!(ours.contains("tun_metadata3"), "{ours}");
        // Field 0 is taken: NXTTMFC_ALREADY_MAPPED, and the map is as it
        // was.
        let o = Command::new("timeout")
            .args(["20", "ovs-ofctl", "-O", v, "add-tlv-map", &t])
            .arg("{class=0x1,type=0x2,len=4}->tun_metadata0")
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("NXTTMFC_ALREADY_MAPPED"), "{v}: {err}");
        assert_eq!(table(&d.ctl(&["dump-tlv-map", "br0"])), table(&ours));
        // Delete one, then clear.
        ofctl(
            v,
            &[
                "del-tlv-map",
                &t,
                "{class=0xffff,type=0x80,len=4}->tun_metadata0",
            ],
        );
        let after = d.ctl(&["dump-tlv-map", "br0"]);
        assert!(!after.contains("tun_metadata0"), "{after}");
        assert!(after.contains("tun_metadata3"), "{after}");
        ofctl(v, &["del-tlv-map", &t]);
        let empty = ofctl(v, &["dump-tlv-map", &t]);
        assert!(empty.contains("allocated option space=0"), "{empty}");
    }
}

/// `ovs-ofctl ct-flush-zone` forgets the connections of that zone only.
#[test]
fn ovs_ofctl_ct_flush_zone_flushes_one_zone() {
    if !require_ofctl("ovs_ofctl_ct_flush_zone_flushes_one_zone") {
        return;
    }
    let d = Daemon::start(None);
    d.add_dummies(&["p1", "p2"]);
    d.ctl(&["del-flows", "br0"]);
    d.ctl(&[
        "add-flow",
        "br0",
        "priority=10,tcp,in_port=1,actions=ct(commit,zone=5),output:2",
    ]);
    let syn = conntrack_common::tcp4(
        conntrack_common::CLIENT,
        conntrack_common::SERVER,
        conntrack_common::Seg::new(40000, 80, 1000, conntrack_common::syn()),
    );
    d.ctl(&["inject", "br0", "p1", &hex(&syn)]);
    let committed = wait_until(Duration::from_secs(5), || {
        d.ctl(&["dump-conntrack", "br0"]).contains("zone=5")
    });
    assert!(committed, "{}", d.ctl(&["dump-conntrack", "br0"]));
    let t = mgmt(&d, "br0");
    // Another zone: nothing goes.
    ofctl("OpenFlow13", &["ct-flush-zone", &t, "7"]);
    assert!(d.ctl(&["dump-conntrack", "br0"]).contains("zone=5"));
    // ovs-ofctl follows the flush with a barrier and waits for its
    // reply: the zone is flushed when it returns.
    ofctl("OpenFlow10", &["ct-flush-zone", &t, "5"]);
    let ct = d.ctl(&["dump-conntrack", "br0"]);
    assert_eq!(ct.trim(), "", "{ct}");
}

/// A session that keeps standard packet-ins (`--packet-in-format=standard`)
/// gets the registers and `metadata` in the OpenFlow 1.3 match, as Open
/// vSwitch sends them.
#[test]
fn standard_packet_ins_carry_the_pipeline_metadata() {
    if !require_ofctl("standard_packet_ins_carry_the_pipeline_metadata") {
        return;
    }
    let d = Daemon::start(None);
    d.add_dummies(&["p1"]);
    d.ctl(&["del-flows", "br0"]);
    d.ctl(&[
        "add-flow",
        "br0",
        "priority=10,in_port=1,actions=load:0x2a->NXM_NX_REG3[],load:0x77->OXM_OF_METADATA[],controller(userdata=01.02.03)",
    ]);
    let out = d.dir.path().join("monitor.txt");
    let mut mon = Command::new("timeout")
        .env("OVS_RUNDIR", d.dir.path())
        .args(["30", "ovs-ofctl", "-O", "OpenFlow13"])
        .args(["--packet-in-format=standard", "monitor", &mgmt(&d, "br0")])
        .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(d.dir.path().join("monitor.err")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let f = hex(&eth(
        mac("02:00:00:00:00:02"),
        mac("02:00:00:00:00:01"),
        0x88b5,
        &[9; 50],
    ));
    let seen = wait_until(Duration::from_secs(15), || {
        d.ctl(&["inject", "br0", "p1", &f]);
        std::thread::sleep(Duration::from_millis(100));
        read(&out).contains("OFPT_PACKET_IN")
    });
    let _ = mon.kill();
    let _ = mon.wait();
    let text = read(&out);
    assert!(seen, "no packet-in:\n{text}");
    assert!(
        text.contains("reg3=0x2a,metadata=0x77,in_port=1 (via action)"),
        "{text}"
    );
    assert!(!text.contains("NXT_PACKET_IN2"), "{text}");
}
