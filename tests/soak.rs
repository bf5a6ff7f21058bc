//! The soak, short: `scripts/soak.sh` for 60 seconds (`SOAK_DURATION`
//! overrides it, in seconds, for a quick local run) against this build's
//! binaries.
//!
//! The script drives one VM's TAP with the generator at 80% of the maximum
//! it measures first, a TCP stream, a UDP request/response every second
//! (a DHCP renewal's exchange, which must never go unanswered), a
//! flow-mod every second and a port add/del every 10 s; it fails on a
//! missed exchange, a drop no flow and no load asked for, or vswitchd's
//! RSS growing more than 5% after a warm-up. Those are the assertions:
//! correctness only, so the test holds on a loaded 2-core machine (the
//! rates it reaches are printed, never judged).
//!
//! Needs root, iperf3, python3 and `ss` (skips with a message unless
//! VSWITCH_REQUIRE_NETNS=1). The script creates its own namespaces
//! (`vswsoak<pid>*`) and removes them, and everything it started, on exit;
//! the whole run is bounded by `timeout`.

mod common;

use common::{repo_path, require_root, require_tools};
use std::path::Path;
use std::process::Command;

#[test]
fn soak_under_load_and_change_answers_every_exchange() {
    let t = "soak_under_load_and_change_answers_every_exchange";
    if !require_root(t) || !require_tools(t, &["iperf3", "python3", "ss", "timeout"]) {
        return;
    }
    let secs: u64 = std::env::var("SOAK_DURATION")
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("SOAK_DURATION={v:?} is not whole seconds"))
        })
        .unwrap_or(60);
    // The binaries cargo built for this test (vswitchd, vswitchctl and
    // vswitch-pktgen share a directory), so the script builds nothing.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_vswitchd"))
        .parent()
        .expect("binary directory");
    let out = Command::new("timeout")
        .arg((secs + 240).to_string())
        .arg("bash")
        .arg(repo_path("scripts/soak.sh"))
        .arg(secs.to_string())
        .env("SOAK_BIN", bin_dir)
        .output()
        .expect("run scripts/soak.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "soak failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("soak: passed"), "{stdout}");
    assert!(
        stdout.contains("missed 0"),
        "every exchange answered: {stdout}"
    );
}
