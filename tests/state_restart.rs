//! The state directory and reloads, end to end with the real binaries:
//! what vswitchctl changed survives SIGTERM and `kill -9`; a `kill -9` at
//! a random moment under 10,000-flow loads and port changes restores
//! exactly what was acknowledged; a corrupt state file is refused with its
//! name; SIGHUP applies the configuration's difference and keeps what did
//! not change; a configured system port whose interface is missing does
//! not stop the start and attaches when the interface appears.

mod common;

use common::{ip, require_root, wait_until, Daemon, Lab};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The saved bridges, as the state file holds them, each with the lines
/// of its flows file as `flows`.
///
/// The daemon may save again while this reads: a new flows file, then a
/// new state file naming it, then the old flows file removed. A flows
/// file gone between reading the state file and reading it is that
/// switch-over, so the read starts again from the new state file.
fn saved_bridges(d: &Daemon) -> Value {
    for _ in 0..50 {
        if let Some(v) = read_saved_bridges(d) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("a flows file named by the state file stayed missing");
}

fn read_saved_bridges(d: &Daemon) -> Option<Value> {
    let text = std::fs::read_to_string(d.state_dir().join("state.json")).expect("state file");
    let mut v: Value = serde_json::from_str(&text).expect("state file parses");
    for b in v["bridges"].as_array_mut().expect("bridges") {
        let lines: Vec<Value> = match b["flows_file"].as_str() {
            Some(name) => match std::fs::read_to_string(d.state_dir().join(name)) {
                Ok(text) => text.lines().map(|l| Value::String(l.to_string())).collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                Err(e) => panic!("flows file {name}: {e}"),
            },
            None => Vec::new(),
        };
        b["flows"] = Value::Array(lines);
    }
    Some(v["bridges"].clone())
}

/// Flows without their counters and ages: what must survive a restart.
fn flows_no_stats(d: &Daemon, bridge: &str) -> Vec<String> {
    let v = d.ctl_json(&["dump-flows", bridge]);
    v["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .map(|f| {
            format!(
                "cookie={} table={} priority={} idle_timeout={} hard_timeout={} {} actions={}",
                f["cookie"],
                f["table"],
                f["priority"],
                f["idle_timeout"],
                f["hard_timeout"],
                f["match"],
                f["actions"]
            )
        })
        .collect()
}

/// `show` without what changes on its own (link state of dummy ports does
/// not; counters are not in it).
fn show(d: &Daemon) -> Value {
    d.ctl_json(&["show"])
}

/// Changes of every kind the state holds.
fn configure(d: &Daemon) {
    d.ctl(&["add-br", "br1"]);
    d.ctl(&["add-port", "br0", "a", "type=dummy", "ofport=7"]);
    d.ctl(&[
        "add-port",
        "br0",
        "b",
        "type=dummy",
        "tag=100",
        "mac_limit=5",
    ]);
    d.ctl(&[
        "add-port",
        "br1",
        "c",
        "type=dummy",
        "trunks=10,20",
        "mtu=1400",
    ]);
    d.ctl(&["set-port", "br0", "a", "bpdu_guard=true", "no-flood"]);
    d.ctl(&["set-port", "br0", "b", "disable"]);
    d.ctl(&["set-bridge", "br0", "forward_bpdu=true", "mac_aging=77"]);
    d.ctl(&["set-ct", "br0", "checksum=skip", "tcp_liberal=true"]);
    d.ctl(&["ct-set-limits", "br0", "default=1000", "zone=5,limit=10"]);
    d.ctl(&["ct-set-timeout", "br0", "tcp_established=600"]);
    d.ctl(&["ct-set-timeout", "br0", "zone=3", "udp_first=9"]);
    d.ctl(&["ipf-set", "br0", "v4", "min_frag_size=800"]);
    d.ctl(&[
        "add-tlv-map",
        "br0",
        "{class=0xffff,type=0,len=4}->tun_metadata0",
    ]);
    d.ctl(&["set-fail-mode", "br1", "secure"]);
    d.ctl(&[
        "add-flow",
        "br0",
        "table=0,priority=100,in_port=7,actions=resubmit(,3)",
    ]);
    d.ctl(&[
        "add-flow",
        "br0",
        "table=3,priority=5,cookie=0x42,hard_timeout=3000,tcp,nw_dst=10.0.0.0/8,tp_dst=443,actions=ct(commit,zone=5),output:b",
    ]);
    d.ctl(&[
        "add-flow",
        "br1",
        "priority=9,dl_vlan=10,actions=strip_vlan,output:c",
    ]);
    d.ctl(&["del-flows", "br1", "--strict", "priority=0"]);
}

/// Everything observable that a restart must bring back.
fn fingerprint(d: &Daemon) -> (Value, Vec<String>, Vec<String>, Value) {
    (
        show(d),
        flows_no_stats(d, "br0"),
        flows_no_stats(d, "br1"),
        saved_bridges(d),
    )
}

#[test]
fn what_vswitchctl_changed_survives_sigterm_and_kill_9() {
    let mut d = Daemon::start(None);
    configure(&d);
    let before = fingerprint(&d);
    assert_eq!(before.0["bridges"].as_array().unwrap().len(), 2);
    // The acknowledged change is on disk before the reply: read the file
    // now, before any restart.
    let saved = &before.3;
    assert!(saved.to_string().contains("tp_dst=443"), "{saved}");

    assert!(d.stop(), "clean stop:\n{}", d.log());
    d.restart();
    assert_eq!(fingerprint(&d), before, "after SIGTERM:\n{}", d.log());
    let ct = d.ctl(&["ct-stats", "br0"]);
    assert!(ct.contains("checksum=skip tcp_liberal=true"), "{ct}");

    // One more change, then a crash right after its acknowledgement.
    d.ctl(&["add-port", "br0", "late", "type=dummy", "ofport=42"]);
    let before = fingerprint(&d);
    d.kill9();
    d.restart();
    assert_eq!(fingerprint(&d), before, "after kill -9:\n{}", d.log());
    assert_eq!(d.show_port("late")["ofport"], 42);
    assert!(d.stop());
}

#[test]
fn a_corrupt_state_file_is_refused_with_its_name_and_moving_it_aside_recovers() {
    let mut d = Daemon::start(None);
    d.ctl(&["add-port", "br0", "a", "type=dummy"]);
    assert!(d.stop());
    let file = d.state_dir().join("state.json");
    let text = std::fs::read_to_string(&file).unwrap();
    // A torn write (which the atomic rename never leaves) or a bad edit.
    std::fs::write(&file, &text[..text.len() / 2]).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vswitchd"))
        .arg("--ctl")
        .arg(d.dir.path().join("other.sock"))
        .arg("--state-dir")
        .arg(d.state_dir())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a corrupt state must not start empty");
    assert!(
        err.contains(&file.display().to_string())
            && err.contains("corrupt")
            && err.contains("line"),
        "{err}"
    );
    assert!(err.contains("move it aside"), "{err}");
    // A file from a newer format says so.
    std::fs::write(&file, r#"{"format": 99, "bridges": []}"#).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vswitchd"))
        .arg("--ctl")
        .arg(d.dir.path().join("other.sock"))
        .arg("--state-dir")
        .arg(d.state_dir())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("format 99"));
    // Moved aside: a first start from the configuration.
    std::fs::rename(&file, d.state_dir().join("state.json.bad")).unwrap();
    d.restart();
    assert!(d.port_names().is_empty(), "{:?}", d.port_names());
    // Two daemons never share one state directory.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vswitchd"))
        .arg("--ctl")
        .arg(d.dir.path().join("other.sock"))
        .arg("--state-dir")
        .arg(d.state_dir())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("in use"));
    assert!(d.stop());
}

/// A small deterministic generator (xorshift), so a failing iteration can
/// be replayed from the seed it prints.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the switch must hold after a sequence of operations.
#[derive(Debug, Clone, PartialEq, Default)]
struct Model {
    /// The cookie every one of the 10,000 flows carries (None: not loaded).
    version: Option<u64>,
    /// Port name -> (ofport, tag).
    ports: BTreeMap<String, (u64, u64)>,
}

/// One operation of the load; returns the vswitchctl arguments and applies
/// itself to the model.
fn op(j: u64, m: &mut Model, dir: &std::path::Path) -> Vec<String> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    match j % 3 {
        0 => {
            let path = dir.join(format!("v{j}.flows"));
            let mut text = String::with_capacity(10_000 * 60);
            for i in 0..10_000u32 {
                text.push_str(&format!(
                    "cookie={j},priority=100,tcp,nw_dst=10.{}.{}.0/24,tp_dst=80,actions=drop\n",
                    i / 256,
                    i % 256
                ));
            }
            std::fs::write(&path, text).unwrap();
            m.version = Some(j);
            s(&["add-flows", "br0", path.to_str().unwrap()])
        }
        1 => {
            let name = format!("p{j}");
            let (ofport, tag) = (100 + j, j % 4000 + 1);
            m.ports.insert(name.clone(), (ofport, tag));
            s(&[
                "add-port",
                "br0",
                &name,
                "type=dummy",
                &format!("ofport={ofport}"),
                &format!("tag={tag}"),
            ])
        }
        _ => {
            if m.ports.len() > 2 {
                let first = m.ports.keys().next().cloned().unwrap();
                m.ports.remove(&first);
                s(&["del-port", "br0", &first])
            } else {
                let last = m.ports.keys().last().cloned().unwrap();
                let tag = j % 4000 + 1;
                m.ports.get_mut(&last).unwrap().1 = tag;
                s(&["set-port", "br0", &last, &format!("tag={tag}")])
            }
        }
    }
}

/// The cookie of the one flow of the load matching `nw_dst=NET/24`.
fn live_cookie(d: &Daemon, net: &str) -> Option<u64> {
    let v = d.ctl_json(&[
        "dump-flows",
        "br0",
        &format!("tcp,nw_dst={net}/24,tp_dst=80"),
    ]);
    let flows = v["flows"].as_array().unwrap();
    assert!(flows.len() <= 1, "{flows:?}");
    flows.first().map(|f| {
        u64::from_str_radix(f["cookie"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    })
}

/// What the restarted switch holds, in the model's terms. The restarted
/// daemon's first save is a snapshot of the tables it restored, so the
/// state file gives every flow exactly (dumping 10,000 flows through the
/// debug-built vswitchctl 20 times would take most of the test's time);
/// the live switch is checked for its flow count, two flows and the ports.
fn observe(d: &Daemon) -> Model {
    // The daemon answers once it restored and saved: ask it first.
    let show = d.ctl_json(&["show", "br0"]);
    let saved = saved_bridges(d);
    let br0 = saved
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "br0")
        .expect("br0 saved");
    let mut cookies: BTreeMap<u64, usize> = BTreeMap::new();
    for f in br0["flows"].as_array().unwrap() {
        let f = f.as_str().unwrap();
        if f.contains("priority=100,") {
            let c = f
                .strip_prefix("cookie=0x")
                .and_then(|r| r.split(',').next())
                .map(|c| u64::from_str_radix(c, 16).unwrap())
                .unwrap_or(0);
            *cookies.entry(c).or_default() += 1;
        }
    }
    let version = match cookies.len() {
        0 => None,
        1 => {
            let (c, n) = cookies.iter().next().unwrap();
            assert_eq!(*n, 10_000, "a flow file is restored whole or not at all");
            Some(*c)
        }
        _ => panic!("flows of two versions at once: {cookies:?}"),
    };
    let live_flows = show["bridges"][0]["flows"].as_u64().unwrap();
    assert_eq!(
        live_flows,
        br0["flows"].as_array().unwrap().len() as u64,
        "the live tables are the saved ones"
    );
    assert_eq!(live_cookie(d, "10.0.0.0"), version);
    assert_eq!(live_cookie(d, "10.39.15.0"), version);
    let ports = d
        .show_ports()
        .iter()
        .map(|p| {
            (
                p["port"].as_str().unwrap().to_string(),
                (
                    p["ofport"].as_u64().unwrap(),
                    p["policy"]["tag"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect();
    Model { version, ports }
}

#[test]
fn kill_9_at_random_points_under_load_restores_exactly_what_was_acknowledged() {
    let seed: u64 = std::env::var("VSWITCH_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("random-kill seed {seed} (replay with VSWITCH_KILL_SEED={seed})");
    let mut rng = Rng(seed);
    let mut d = Daemon::start(None);
    let files = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let (mut acked_total, mut in_flight_applied) = (0usize, 0usize);
    for iter in 0..20u64 {
        // Each iteration starts from the state the last one left; the
        // model of it is what the switch holds now.
        let start = observe(&d);
        let sock = d.sock.clone();
        let dir = files.path().to_path_buf();
        // (model after each acknowledged op, model if the in-flight op applied)
        let log: Arc<Mutex<(Vec<Model>, Option<Model>)>> =
            Arc::new(Mutex::new((vec![start.clone()], None)));
        let l2 = log.clone();
        let base = iter * 1000;
        let worker = std::thread::spawn(move || {
            let mut m = start;
            for j in base..base + 1000 {
                let mut next = m.clone();
                let args = op(j, &mut next, &dir);
                l2.lock().unwrap().1 = Some(next.clone());
                let ok = std::process::Command::new(env!("CARGO_BIN_EXE_vswitchctl"))
                    .arg("--ctl")
                    .arg(&sock)
                    .args(&args)
                    .output()
                    .is_ok_and(|o| o.status.success());
                if !ok {
                    return; // the daemon is gone: this op was in flight
                }
                m = next;
                let mut g = l2.lock().unwrap();
                g.0.push(m.clone());
                g.1 = None;
            }
        });
        let wait_ms = 50 + rng.below(1200);
        std::thread::sleep(Duration::from_millis(wait_ms));
        d.kill9();
        worker.join().unwrap();
        let (acked, in_flight) = log.lock().unwrap().clone();
        d.restart();
        let got = observe(&d);
        let last = acked.last().unwrap();
        if got == *last {
            acked_total += acked.len() - 1;
        } else if in_flight.as_ref() == Some(&got) {
            acked_total += acked.len() - 1;
            in_flight_applied += 1;
        } else {
            panic!(
                "iteration {iter} (seed {seed}, kill after {wait_ms} ms, {} ops acknowledged): restored\n{got:?}\nacknowledged\n{last:?}\nin flight\n{in_flight:?}\nlog:\n{}",
                acked.len() - 1,
                d.log()
            );
        }
    }
    println!(
        "random kill: 20 iterations in {:.1} s, {acked_total} acknowledged ops all restored, {in_flight_applied} in-flight ops found applied",
        t0.elapsed().as_secs_f64()
    );
    assert!(acked_total > 0, "the load ran");
    assert!(d.stop());
}

const HUP_CONFIG: &str = r#"
[[bridge]]
name = "br0"
flows = ["priority=0,actions=NORMAL", "priority=50,dl_type=0x88cc,actions=drop"]

[[bridge.port]]
name = "a"
type = "dummy"
ofport = 1

[[bridge.port]]
name = "b"
type = "dummy"
tag = 10

[[bridge.port]]
name = "keep"
type = "dummy"
"#;

#[test]
fn sighup_applies_the_configuration_difference_and_keeps_the_rest() {
    let mut d = Daemon::start(Some(HUP_CONFIG));
    // Traffic gives port a counters that must survive the reload.
    let frame = common::frames::hex(&[0xffu8; 6]) + "020000000001" + "0800" + &"00".repeat(46);
    d.ctl(&["inject", "br0", "a", &frame]);
    assert!(wait_until(Duration::from_secs(5), || d
        .port_counter("a", "rx_packets")
        == 1));
    // A run-time change the file does not mention stays.
    d.ctl(&["add-flow", "br0", "priority=7,udp,actions=drop"]);
    let path = d.dir.path().join("vswitchd.toml");
    let edited = HUP_CONFIG
        .replace(
            "dl_type=0x88cc,actions=drop",
            "dl_type=0x88cc,actions=drop\", \"priority=60,arp,actions=NORMAL",
        )
        .replace(
            "name = \"b\"\ntype = \"dummy\"\ntag = 10",
            "name = \"c\"\ntype = \"dummy\"",
        )
        .replace("ofport = 1\n", "ofport = 1\ntag = 5\n")
        + "\n[[bridge]]\nname = \"br9\"\n";
    std::fs::write(&path, &edited).unwrap();
    d.sighup();
    assert!(
        wait_until(Duration::from_secs(10), || d.ctl_json(&["show"])["bridges"]
            .as_array()
            .unwrap()
            .len()
            == 2),
        "br9 added:\n{}",
        d.log()
    );
    assert!(d.alive(), "SIGHUP never stops the daemon");
    let names = d.port_names();
    assert!(
        names.contains(&"c".to_string()) && !names.contains(&"b".to_string()),
        "{names:?}"
    );
    assert_eq!(d.show_port("a")["policy"]["tag"], 5);
    assert_eq!(
        d.port_counter("a", "rx_packets"),
        1,
        "port a kept its counters"
    );
    let flows = flows_no_stats(&d, "br0");
    assert!(
        flows
            .iter()
            .any(|f| f.contains("priority=60") && f.contains("arp")),
        "{flows:?}"
    );
    assert!(
        flows.iter().any(|f| f.contains("priority=7")),
        "run-time flow kept: {flows:?}"
    );
    assert!(d.log().contains("reload: port b removed"), "{}", d.log());

    // A flow removed from the file goes; a bad file changes nothing.
    std::fs::write(
        &path,
        edited.replace(", \"priority=60,arp,actions=NORMAL\"", ""),
    )
    .unwrap();
    d.sighup();
    assert!(wait_until(Duration::from_secs(10), || !flows_no_stats(
        &d, "br0"
    )
    .iter()
    .any(|f| f.contains("arp"))));
    let before = (show(&d), flows_no_stats(&d, "br0"));
    std::fs::write(&path, "[[bridge]]\nname = \"br0\"\nbogus = 1\n").unwrap();
    d.sighup();
    assert!(wait_until(Duration::from_secs(10), || d
        .log()
        .contains("configuration not reloaded")));
    assert_eq!((show(&d), flows_no_stats(&d, "br0")), before);
    // The reloaded configuration is what a restart comes back with.
    d.kill9();
    d.restart();
    assert_eq!((show(&d), flows_no_stats(&d, "br0")), before, "{}", d.log());
    assert!(d.stop());
}

#[test]
fn a_missing_system_port_does_not_stop_the_start_and_attaches_when_it_appears() {
    if !require_root("a_missing_system_port_does_not_stop_the_start_and_attaches_when_it_appears") {
        return;
    }
    let mut lab = Lab::new();
    let host = lab.netns();
    let cfg = r#"
[[bridge]]
name = "br0"
[[bridge.port]]
name = "vm1"
type = "system"
[[bridge.port]]
name = "d1"
type = "dummy"
"#;
    let mut d = Daemon::start_in(&host, Some(cfg));
    assert_eq!(d.show_link("vm1"), "down", "{}", d.log());
    assert_eq!(d.show_link("d1"), "up");
    ip(&[
        "-n", &host, "link", "add", "vm1", "type", "veth", "peer", "name", "vm1p",
    ]);
    ip(&["-n", &host, "link", "set", "vm1", "up"]);
    ip(&["-n", &host, "link", "set", "vm1p", "up"]);
    assert!(
        wait_until(Duration::from_secs(15), || d.show_link("vm1") == "up"),
        "vm1 attached when it appeared:\n{}",
        d.log()
    );
    // Saved and restored like any port, even while its interface is gone.
    ip(&["-n", &host, "link", "del", "vm1"]);
    d.kill9();
    d.restart();
    assert_eq!(d.show_link("vm1"), "down", "{}", d.log());
    assert!(d.stop());
}

#[test]
fn openflow_flow_mods_are_saved_and_come_back_after_kill_9() {
    if !common::require_tools(
        "openflow_flow_mods_are_saved_and_come_back_after_kill_9",
        &["ovs-ofctl"],
    ) {
        return;
    }
    let mut d = Daemon::start(None);
    // Answering means restored and saved once.
    d.ctl(&["version"]);
    let target = format!("unix:{}", d.dir.path().join("br0.mgmt").display());
    let ofctl = |args: &[&str]| {
        let o = std::process::Command::new("timeout")
            .env("OVS_RUNDIR", d.dir.path())
            .args(["20", "ovs-ofctl", "-O", "OpenFlow13"])
            .args(args)
            .output()
            .expect("run ovs-ofctl");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    ofctl(&[
        "add-flow",
        &target,
        "table=1,priority=33,cookie=0x99,udp,actions=drop",
    ]);
    // OpenFlow changes are saved by the saver's watch of the tables (not
    // before the reply): wait until the file has it.
    assert!(
        wait_until(Duration::from_secs(10), || saved_bridges(&d)
            .to_string()
            .contains("priority=33")),
        "saved:\n{}",
        saved_bridges(&d)
    );
    let before = flows_no_stats(&d, "br0");
    d.kill9();
    d.restart();
    assert_eq!(flows_no_stats(&d, "br0"), before, "{}", d.log());
    assert!(d.stop());
}
