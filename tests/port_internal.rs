//! `type=internal`: the host's own stack on the bridge. The test binary
//! re-runs itself inside a namespace that plays the host, so the host stack
//! it configures is that namespace's, never the machine's.

mod common;

use common::{require_root, Forwarder, Lab};
use std::process::Command;
use std::time::Duration;
use vswitch::port::{InternalPort, Port, TapConfig, TapPort};

const INNER_ENV: &str = "VSWITCH_TEST_INNER_VM_NS";

#[test]
fn internal_port_carries_host_stack_traffic() {
    if !require_root("internal_port_carries_host_stack_traffic") {
        return;
    }
    let mut lab = Lab::new();
    let host = lab.netns();
    let vm = lab.netns();
    let exe = std::env::current_exe().unwrap();
    let out = lab.sh(
        &host,
        60,
        &format!(
            "{INNER_ENV}={vm} {} --exact internal_port_inner --ignored --nocapture --test-threads 1",
            exe.display()
        ),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("inner: ok"),
        "inner test:\n{text}"
    );
}

#[test]
#[ignore = "runs inside a namespace, started by internal_port_carries_host_stack_traffic"]
fn internal_port_inner() {
    // Only ever acts inside the namespace the outer test made.
    let Ok(vm) = std::env::var(INNER_ENV) else {
        eprintln!("internal_port_inner: not started by the outer test, nothing to do");
        return;
    };
    let sh = |s: &str| {
        let out = Command::new("sh").args(["-c", s]).output().unwrap();
        assert!(
            out.status.success(),
            "{s}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let int = InternalPort::open(TapConfig::new("br-int")).unwrap();
    assert_eq!(int.kind(), "internal");
    sh("ip addr add 10.81.0.1/24 dev br-int");
    let tap = TapPort::open(TapConfig::new("vmtap")).unwrap();
    sh(&format!(
        "ip link set vmtap netns {vm} && ip -n {vm} addr add 10.81.0.2/24 dev vmtap && \
         ip -n {vm} link set vmtap up"
    ));
    let fwd = Forwarder::start(int, tap, Duration::from_secs(30));
    // The host stack pings the VM through the internal port.
    sh("timeout 20 ping -c 3 -i 0.2 -W 2 10.81.0.2");
    let (int, _tap, f) = fwd.stop();
    assert!(f.a_to_b >= 4 && f.b_to_a >= 4, "{f:?}");
    assert!(int.stats().rx_packets >= 4);
    println!("inner: ok");
}
