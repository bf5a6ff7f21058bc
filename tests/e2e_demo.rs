//! `vswitchctl demo BR` against a real vswitchd: it pings across, shows
//! counters that moved, and leaves nothing behind (no namespace, no port,
//! no TAP, the bridge's flows as they were), also when interrupted with
//! SIGINT; it refuses clearly when not root.
//!
//! The daemon runs in a host namespace of the test's; the demo runs in the
//! same one (`ip netns exec`), as it must: the TAPs appear where vswitchd
//! runs.

mod common;

use common::vms::host;
use common::{links_in, require_root, require_tools, wait_until, Daemon, Lab};
use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn netns_list() -> BTreeSet<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// `vswitchctl --ctl SOCK demo ARGS` inside the daemon's namespace.
fn demo_cmd(d: &Daemon, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", d.ns(), "timeout", "120"])
        .arg(env!("CARGO_BIN_EXE_vswitchctl"))
        .arg("--ctl")
        .arg(&d.sock)
        .arg("demo")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// Flows of br0 without their counters and ages.
fn flow_set(d: &Daemon) -> Vec<String> {
    let mut v: Vec<String> = d
        .flows()
        .iter()
        .map(|f| {
            format!(
                "cookie={} table={} priority={} idle={} hard={} {} actions={}",
                f["cookie"],
                f["table"],
                f["priority"],
                f["idle_timeout"],
                f["hard_timeout"],
                f["match"],
                f["actions"]
            )
        })
        .collect();
    v.sort();
    v
}

/// The namespaces the demo says it created.
fn demo_namespaces(stdout: &str) -> Vec<String> {
    stdout
        .split_whitespace()
        .filter(|w| w.starts_with("vswitch-demo-"))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_alphanumeric())
                .to_string()
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The largest `n_packets=N` in the output.
fn max_n_packets(stdout: &str) -> u64 {
    stdout
        .split("n_packets=")
        .skip(1)
        .filter_map(|s| {
            s.split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .max()
        .unwrap_or(0)
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Everything the demo could have left behind is gone.
/// (Other tests run demos concurrently: only the namespaces this demo
/// named are checked.)
fn assert_clean(d: &Daemon, host_links: &BTreeSet<String>, flows: &[String], said: &[String]) {
    let now = netns_list();
    for n in said {
        assert!(!now.contains(n), "{n} removed");
    }
    assert!(
        d.port_names().is_empty(),
        "ports left: {:?}",
        d.port_names()
    );
    assert_eq!(
        &links_in(d.ns()),
        host_links,
        "no TAP left in the daemon's namespace"
    );
    assert_eq!(flow_set(d), flows, "the bridge's flows are back");
}

#[test]
fn demo_pings_shows_counters_and_cleans_up() {
    if !require_root("demo_pings_shows_counters_and_cleans_up") {
        return;
    }
    let mut lab = Lab::new();
    let d = host(&mut lab);
    let host_links = links_in(d.ns());
    let flows = flow_set(&d);
    assert_eq!(flows.len(), 1, "the embedded default: {flows:?}");

    let o = demo_cmd(&d, &["br0"]).output().expect("run demo");
    let (out, err) = text(&o);
    println!("{out}");
    assert!(
        o.status.success(),
        "demo failed: {err}\n{out}\nlog:\n{}",
        d.log()
    );
    assert!(
        max_n_packets(&out) > 0,
        "dump-flows shows packets counted:\n{out}"
    );
    assert!(out.contains("priority=0 actions=NORMAL"), "{out}");
    assert!(out.contains("Counters that moved:"), "{out}");
    assert_eq!(
        out.matches(" 0% packet loss").count(),
        2,
        "both ways answered:\n{out}"
    );
    assert!(out.contains("rx pkts="), "dump-ports printed:\n{out}");
    assert!(out.contains("Cleaned up"), "{out}");
    let said = demo_namespaces(&out);
    assert_eq!(said.len(), 2, "{said:?}");
    assert_clean(&d, &host_links, &flows, &said);
    // The daemon's log shows the TAPs came and went.
    let log = d.log();
    assert!(log.contains("created tap dvm1-"), "{log}");
}

#[test]
fn demo_with_a_named_flow_file_restores_the_bridge_flows() {
    if !require_root("demo_with_a_named_flow_file_restores_the_bridge_flows") {
        return;
    }
    let mut lab = Lab::new();
    let d = host(&mut lab);
    // The bridge runs something else (two tables, ct actions, a cookie and
    // a timeout): all of it must come back.
    d.load_flows("flows/stateful-firewall.flows");
    d.ctl(&[
        "add-flow",
        "br0",
        "cookie=0x2a,table=2,priority=7,idle_timeout=300,udp,tp_dst=53,actions=drop",
    ]);
    let flows = flow_set(&d);
    let host_links = links_in(d.ns());

    let o = demo_cmd(
        &d,
        &[
            "br0",
            "--flows",
            "flows/two-vms.flows",
            "--ports",
            "vm1,vm2",
            "--count",
            "2",
        ],
    )
    .output()
    .expect("run demo");
    let (out, err) = text(&o);
    assert!(o.status.success(), "demo failed: {err}\n{out}");
    assert!(out.contains("in_port=1 actions=output:2"), "{out}");
    // The firewall file's flows and the one added above.
    let own = format!("br0's own {} flows set aside", flows.len());
    assert!(out.contains(&own), "{own}: {out}");
    assert!(max_n_packets(&out) > 0, "{out}");
    let said = demo_namespaces(&out);
    assert_clean(&d, &host_links, &flows, &said);
}

#[test]
fn demo_interrupted_cleans_up() {
    if !require_root("demo_interrupted_cleans_up") {
        return;
    }
    let mut lab = Lab::new();
    let d = host(&mut lab);
    let host_links = links_in(d.ns());
    let flows = flow_set(&d);

    let mut child = demo_cmd(&d, &["br0", "--keep", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn demo");
    // `ip netns exec` execs `timeout`, which forks vswitchctl: signal
    // vswitchctl itself (found by its parent), as a terminal's Ctrl-C would.
    let up = wait_until(Duration::from_secs(30), || d.port_names().len() == 2);
    assert!(up, "the demo's ports appeared");
    // Let it reach the pings or the keep phase.
    std::thread::sleep(Duration::from_millis(700));
    let pids = Command::new("pgrep")
        .args(["-P", &child.id().to_string()])
        .output()
        .expect("pgrep");
    let pid = String::from_utf8_lossy(&pids.stdout).trim().to_string();
    assert!(!pid.is_empty(), "vswitchctl runs under timeout");
    Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill -INT");
    let exited = wait_until(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let o = child.wait_with_output().expect("demo output");
    let (out, err) = text(&o);
    assert!(exited, "demo ended after SIGINT:\n{out}\n{err}");
    assert_eq!(o.status.code(), Some(130), "exit status:\n{out}\n{err}");
    assert!(err.contains("interrupted (cleaned up)"), "{err}");
    let said = demo_namespaces(&out);
    assert_eq!(said.len(), 2, "{out}");
    assert_clean(&d, &host_links, &flows, &said);
}

#[test]
fn demo_refuses_without_root_and_on_a_busy_bridge() {
    if !require_root("demo_refuses_without_root_and_on_a_busy_bridge")
        || !require_tools(
            "demo_refuses_without_root_and_on_a_busy_bridge",
            &["setpriv"],
        )
    {
        return;
    }
    let mut lab = Lab::new();
    let d = host(&mut lab);
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_vswitchctl"))
        .arg("--ctl")
        .arg(&d.sock)
        .args(["demo", "br0"])
        .output()
        .expect("run as nobody");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("run it as root"), "{err}");
    assert!(out.is_empty(), "nothing done: {out}");

    d.ctl(&["add-port", "br0", "p1", "type=dummy"]);
    let o = demo_cmd(&d, &["br0"]).output().expect("run demo");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("already has ports (p1)") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(d.port_names(), vec!["p1".to_string()]);
}
