//! End to end through the real binaries: vswitchd on a temporary socket,
//! driven by vswitchctl; flows loaded from flows/*.flows; frames injected
//! into dummy ports; outputs, dump-flows counters, dump-drops and trace
//! checked.

mod common;

use common::frames::{eth, hex, mac, stp_bpdu, unhex};
use common::raw::{read_pcap, tshark};
use common::{have_tool, repo_path, wait_for, Daemon};
use std::time::Duration;

const M1: &str = "02:00:00:00:00:01";
const M2: &str = "02:00:00:00:00:02";
const BCAST: &str = "ff:ff:ff:ff:ff:ff";

/// An Ethernet frame (hex) `src` -> `dst`, padded to 60.
fn eth_hex(dst: &str, src: &str, ethertype: u16, payload: &[u8]) -> String {
    hex(&eth(mac(dst), mac(src), ethertype, payload))
}

/// Waits until `port` has sent `n` frames.
fn wait_sent(d: &Daemon, port: &str, n: usize) -> Vec<String> {
    d.wait_sent(port, n, Duration::from_secs(5))
}

#[test]
fn default_config_runs_br0_and_l2_learning_flows_forward() {
    let d = Daemon::start(None);
    let show = d.ctl(&["show"]);
    assert!(show.contains("bridge br0"), "{show}");
    // The embedded default is a learning switch.
    let f = d.ctl(&["dump-flows", "br0"]);
    assert!(f.contains("priority=0 actions=NORMAL"), "{f}");

    d.add_dummies(&["p1", "p2", "p3"]);
    d.ctl(&["del-flows", "br0"]);
    d.ctl(&["add-flows", "br0", "flows/l2-learning.flows"]);
    assert_eq!(d.flows().len(), 3);

    // ARP who-has from p1: broadcast, flooded to p2 and p3.
    let arp_req = eth_hex(
        BCAST,
        M1,
        0x0806,
        &unhex("0001080006040001020000000001c0a80001000000000000c0a80002"),
    );
    d.ctl(&["inject", "br0", "p1", &arp_req]);
    assert_eq!(wait_sent(&d, "p2", 1), vec![arp_req.clone()]);
    assert_eq!(wait_sent(&d, "p3", 1), vec![arp_req.clone()]);
    // Reply from p2 to p1: p1 was learned, so only p1 gets it.
    let arp_rep = eth_hex(
        M1,
        M2,
        0x0806,
        &unhex("0001080006040002020000000002c0a80002020000000001c0a80001"),
    );
    d.ctl(&["inject", "br0", "p2", &arp_rep]);
    assert_eq!(wait_sent(&d, "p1", 1), vec![arp_rep]);
    assert!(d.sent("p3").is_empty(), "known unicast is not flooded");

    // Counters moved on the normal flow only.
    let flows = d.flows();
    let normal = flows.iter().find(|f| f["actions"] == "NORMAL").unwrap();
    assert_eq!(normal["n_packets"], 2);
    assert_eq!(normal["n_bytes"], 120);
    let text = d.ctl(&["dump-flows", "br0"]);
    assert!(text.contains("n_packets=2, n_bytes=120,"), "{text}");
    assert!(
        text.starts_with(" cookie=0x0, duration="),
        "ovs-ofctl layout: {text}"
    );

    // The learned table.
    let fdb = d.ctl(&["fdb-show", "br0"]);
    assert!(
        fdb.contains("02:00:00:00:00:01") && fdb.contains("02:00:00:00:00:02"),
        "{fdb}"
    );

    // Port counters, in JSON with the text's names.
    let ports = d.ctl_json(&["dump-ports", "br0"]);
    let p1 = ports["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["port"] == "p1")
        .unwrap();
    assert_eq!(p1["rx_packets"], 1);
    assert_eq!(p1["tx_packets"], 1);

    // trace: p1 -> p2 unicast ARP goes to port 2.
    let tr = d.ctl(&[
        "trace",
        "br0",
        &format!("in_port=p1,arp,dl_src={M1},dl_dst={M2}"),
    ]);
    assert!(tr.contains("Datapath actions: 2"), "{tr}");
    assert!(tr.contains("priority 0") && tr.contains("NORMAL"), "{tr}");
}

#[test]
fn drops_have_named_reasons_in_dump_drops_and_trace() {
    let d = Daemon::start(None);
    d.add_dummies(&["p1", "p2"]);
    // An STP BPDU from a VM-facing port: dropped before the tables.
    d.inject("p1", &stp_bpdu(mac(M1)));
    // A table miss: delete everything, inject.
    d.ctl(&["del-flows", "br0"]);
    // IPv4/UDP 10.0.0.1 -> 10.0.0.2, port 53.
    let ip = eth_hex(
        M2,
        M1,
        0x0800,
        &unhex("4500001c00000000401100000a0000010a0000020000003500080000"),
    );
    d.ctl(&["inject", "br0", "p1", &ip]);
    let got = wait_for(Duration::from_secs(5), || {
        let dr = d.drops();
        (dr.get("bpdu_dropped") == Some(&1) && dr.get("no_match") == Some(&1)).then_some(dr)
    });
    assert!(got.is_some(), "drops: {:?}", d.drops());
    let text = d.ctl(&["dump-drops", "br0"]);
    assert!(
        text.contains("bpdu_dropped") && text.contains("no_match"),
        "{text}"
    );
    // trace names the reason too.
    let tr = d.ctl(&[
        "trace",
        "br0",
        &format!("in_port=p1,dl_dst=01:80:c2:00:00:00,dl_src={M1}"),
    ]);
    assert!(tr.contains("Drop reason: bpdu_dropped"), "{tr}");
    let tr = d.ctl(&["trace", "br0", "in_port=p1,ip,nw_dst=10.0.0.2"]);
    assert!(
        tr.contains("No match") && tr.contains("Drop reason: no_match"),
        "{tr}"
    );
}

/// Every malformed frame listed in tests/data ends as its named drop
/// reason, counted, and the daemon keeps running.
#[test]
fn malformed_vectors_are_counted_drops() {
    let d = Daemon::start(None);
    d.add_dummies(&["p1", "p2"]);
    let mut expected: std::collections::BTreeMap<String, u64> = Default::default();
    for entry in std::fs::read_dir(repo_path("tests/data")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "hex") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or("ok")
            .trim();
        let target = text
            .lines()
            .find_map(|l| l.strip_prefix("# target: "))
            .unwrap_or("extract")
            .trim();
        if expect == "ok" || target != "extract" {
            continue;
        }
        let bytes: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("");
        d.ctl(&["inject", "br0", "p1", &bytes.replace(' ', "")]);
        let name = if expect == "too_many_vlans" {
            expect.to_string()
        } else {
            format!("malformed_{expect}")
        };
        *expected.entry(name).or_default() += 1;
    }
    assert!(expected.len() >= 4, "vectors found: {expected:?}");
    let ok = wait_for(Duration::from_secs(5), || {
        let dr = d.drops();
        expected
            .iter()
            .all(|(k, n)| dr.get(k) == Some(n))
            .then_some(())
    });
    assert!(ok.is_some(), "expected {expected:?}, got {:?}", d.drops());
    assert!(d.sent("p2").is_empty(), "nothing malformed was forwarded");
    d.ctl(&["version"]);
}

#[test]
fn bad_flows_are_rejected_with_the_column_and_change_nothing() {
    let d = Daemon::start(None);
    d.add_dummies(&["p1", "p2"]);
    let before = d.ctl(&["dump-flows", "br0"]);
    let err = d.ctl_err(&[
        "add-flow",
        "br0",
        "priority=10,tcp,nw_srcc=10.0.0.1,actions=output:p2",
    ]);
    assert!(
        err.contains("column 17") && err.contains("nw_srcc"),
        "{err}"
    );
    let err = d.ctl_err(&["add-flow", "br0", "in_port=p9,actions=drop"]);
    assert!(err.contains("p9"), "{err}");
    // A file with an error on its third line: nothing of it is applied.
    let f = d.dir.path().join("bad.flows");
    std::fs::write(
        &f,
        "# comment\npriority=5,actions=output:p2\npriority=6,ip,actions=frobnicate\n",
    )
    .unwrap();
    let err = d.ctl_err(&["add-flows", "br0", f.to_str().unwrap()]);
    assert!(err.contains("bad.flows:3:"), "{err}");
    assert_eq!(
        d.ctl(&["dump-flows", "br0"]).lines().count(),
        before.lines().count()
    );
    // Two 802.1Q pushes in one flow are refused with the reason.
    let err = d.ctl_err(&[
        "add-flow",
        "br0",
        "actions=push_vlan:0x8100,push_vlan:0x8100,output:p2",
    ]);
    assert!(err.contains("802.1Q"), "{err}");
    // Bad operator input elsewhere: clear errors, the daemon lives on.
    assert!(d
        .ctl_err(&["dump-flows", "br9"])
        .contains("no bridge named br9"));
    assert!(d
        .ctl_err(&["inject", "br0", "p1", "abc"])
        .contains("odd number"));
    assert!(d
        .ctl_err(&["add-port", "br0", "p3", "type=dummy", "tag=5000"])
        .contains("tag=5000"));
    assert!(d
        .ctl_err(&["add-port", "br0", "p1", "type=dummy"])
        .contains("already exists"));
    d.ctl(&["version"]);
}

#[test]
fn flow_files_and_mod_del_flows() {
    let d = Daemon::start(None);
    d.add_dummies(&["vm1", "vm2", "tun0"]);
    d.ctl(&["del-flows", "br0"]);
    d.ctl(&["add-flows", "br0", "flows/compute-host.flows"]);
    d.ctl(&["add-flows", "br0", "flows/stateful-firewall.flows"]);
    let n = d.flows().len();
    assert!(n > 15, "{n}");
    // Broadcast from vm1: vm2 and the tunnel.
    let b = eth_hex(BCAST, "52:54:00:00:00:01", 0x0806, &[0; 28]);
    d.ctl(&["inject", "br0", "vm1", &b]);
    assert_eq!(wait_sent(&d, "vm2", 1).len(), 1);
    assert_eq!(wait_sent(&d, "tun0", 1).len(), 1);
    // mod-flows --strict changes one flow's actions, keeping its counters.
    d.ctl(&[
        "mod-flows",
        "--strict",
        "br0",
        "table=1,priority=100,metadata=100,dl_dst=52:54:00:00:00:02,actions=drop",
    ]);
    let t = d.ctl(&["dump-flows", "br0", "table=1,dl_dst=52:54:00:00:00:02"]);
    assert!(t.contains("actions=drop"), "{t}");
    // del-flows with a match removes only what it covers.
    d.ctl(&["del-flows", "br0", "table=1"]);
    let left = d.flows();
    assert!(left.iter().all(|f| f["table"] == 0), "{left:?}");
    // names in dump-flows with --names.
    let t = d.ctl(&["dump-flows", "--names", "br0", "in_port=vm1"]);
    assert!(t.contains("in_port=vm1"), "{t}");
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    let mut d = Daemon::start(None);
    assert!(d.stop(), "clean exit on SIGTERM; log:\n{}", d.log());
    assert!(!d.sock.exists());
    // vswitchctl says the daemon is not running, without a backtrace.
    let o = d.ctl_output(&["show"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("is vswitchd running?"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn config_file_builds_bridges_ports_and_flows() {
    let cfg = format!(
        r#"
[[bridge]]
name = "br0"
forward_bpdu = true
flow_files = ["{}"]

[[bridge.port]]
name = "a"
type = "dummy"
ofport = 7

[[bridge.port]]
name = "b"
type = "dummy"
tag = 100
"#,
        repo_path("flows/l2-learning.flows").display()
    );
    let d = Daemon::start(Some(&cfg));
    let show = d.ctl_json(&["show"]);
    let ports = show["bridges"][0]["ports"].as_array().unwrap().clone();
    assert_eq!(ports.len(), 2);
    assert!(ports.iter().any(|p| p["port"] == "a" && p["ofport"] == 7));
    assert!(ports
        .iter()
        .any(|p| p["port"] == "b" && p["policy"]["tag"] == 100));
    assert_eq!(show["bridges"][0]["forward_bpdu"], true);
    assert_eq!(d.flows().len(), 3);
    // A bad config refuses to start and says why.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vswitchd"))
        .args([
            "--no-state",
            "--ctl",
            d.dir.path().join("x.sock").to_str().unwrap(),
            "--config",
        ])
        .arg({
            let p = d.dir.path().join("bad.toml");
            std::fs::write(
                &p,
                "[[bridge]]\nname = \"br1\"\nflows = [\"actions=bogus\"]\n",
            )
            .unwrap();
            p
        })
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bogus"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn capture_writes_a_pcap_that_tshark_reads() {
    let d = Daemon::start(None);
    d.add_dummies(&["p1", "p2"]);
    let pcap = d.dir.path().join("p2.pcap");
    let sock = d.sock.clone();
    let pcap_arg = pcap.clone();
    // The capture request answers when the capture ends: run it aside.
    let cap = std::thread::spawn(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
            .arg("--ctl")
            .arg(&sock)
            .args([
                "capture",
                "br0",
                "p2",
                "--count",
                "3",
                "--seconds",
                "20",
                "-w",
            ])
            .arg(&pcap_arg)
            .output()
            .unwrap()
    });
    // Wait for the file to exist (the capture is running), then send.
    wait_for(Duration::from_secs(5), || pcap.exists().then_some(()));
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..3u8 {
        let f = eth_hex(BCAST, M1, 0x0806, &[i; 28]);
        d.ctl(&["inject", "br0", "p1", &f]);
    }
    let out = cap.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 frames written"));
    let frames = read_pcap(&pcap);
    for f in &frames {
        assert_eq!(f.len(), 60);
    }
    assert_eq!(frames.len(), 3);
    if have_tool("tshark") {
        let txt = tshark(&pcap, &[]);
        assert_eq!(txt.lines().count(), 3, "{txt}");
        assert!(txt.contains("ARP"), "{txt}");
    } else {
        eprintln!("tshark not installed: pcap checked with pcap-file only");
    }
}

#[test]
fn double_tag_over_the_mtu_is_explained_by_trace_and_dump_drops() {
    let d = Daemon::start(None);
    d.ctl(&["add-port", "br0", "p1", "type=dummy"]);
    d.ctl(&["add-port", "br0", "p2", "type=dummy", "mtu=1500"]);
    d.ctl(&["del-flows", "br0"]);
    d.ctl(&[
        "add-flow",
        "br0",
        "in_port=p1,actions=push_vlan:0x8100,mod_vlan_vid:10,push_vlan:0x88a8,mod_vlan_vid:20,output:p2",
    ]);
    // A full-size TCP segment with DF: 1500-byte datagram.
    let mut big = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 22, 1, 64240)
        .write(&mut big, &[0x61; 1460])
        .unwrap();
    let tr = d.ctl(&["trace", "br0", "in_port=p1", "--packet", &hex(&big)]);
    assert!(
        tr.contains("mtu_exceeded") && tr.contains("path MTU is 1492"),
        "{tr}"
    );
    d.ctl(&["inject", "br0", "p1", &hex(&big)]);
    // The sender gets ICMP fragmentation-needed back on p1.
    let back = wait_sent(&d, "p1", 1);
    assert_eq!(back.len(), 1);
    let icmp = unhex(&back[0]);
    assert_eq!(icmp[23], 1, "ICMP");
    assert_eq!((icmp[34], icmp[35]), (3, 4), "fragmentation needed");
    // 1500 - 8: an 802.1ad outer tag is not free (src/datapath/pmtu.rs).
    assert_eq!(u16::from_be_bytes([icmp[40], icmp[41]]), 1492);
    assert!(d.sent("p2").is_empty(), "nothing oversized left the switch");
    let dr = d.drops();
    assert_eq!(dr.get("mtu_exceeded"), Some(&1), "{dr:?}");
    let ports = d.ctl_json(&["dump-ports", "br0", "p2"]);
    assert_eq!(ports["ports"][0]["drops"]["mtu_exceeded"], 1, "{ports}");
}

#[test]
fn set_port_mtu_is_enforced_by_the_datapath() {
    let d = Daemon::start(None);
    d.add_dummies(&["p1", "p2"]);
    d.ctl(&["set-port", "br0", "p2", "mtu=1000"]);
    let mut big = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(1, 2)
        .write(&mut big, &[0u8; 1200])
        .unwrap();
    d.ctl(&["inject", "br0", "p1", &hex(&big)]);
    let ok = wait_for(Duration::from_secs(5), || {
        (d.drop_count("mtu_exceeded") == 1).then_some(())
    });
    assert!(ok.is_some(), "{:?}", d.drops());
    assert!(d.sent("p2").is_empty());
    let ports = d.ctl_json(&["dump-ports", "br0", "p2"]);
    assert_eq!(ports["ports"][0]["mtu"], 1000, "{ports}");
}
