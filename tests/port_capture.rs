//! Capture files written from a live forwarding loop, decoded by tshark
//! (Wireshark's dissectors are the independent judge of the file format).

mod common;

use common::{have_tool, require_root, unique_ifname, Forwarder, Lab};
use std::process::Command;
use std::time::Duration;
use vswitch::port::capture::{Capture, CaptureLimits};
use vswitch::port::{TapConfig, TapPort};

fn tshark_fields(path: &std::path::Path, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(path).args(["-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn capture_of_forwarded_ping_decodes_with_tshark() {
    if !require_root("capture_of_forwarded_ping_decodes_with_tshark") {
        return;
    }
    if !have_tool("tshark") {
        assert!(
            std::env::var("VSWITCH_REQUIRE_NETNS").is_err(),
            "tshark is required with VSWITCH_REQUIRE_NETNS=1"
        );
        eprintln!("skipping: tshark not installed");
        return;
    }
    let mut lab = Lab::new();
    let (na, nb) = (unique_ifname("ca"), unique_ifname("cb"));
    let a = TapPort::open(TapConfig::new(&na)).unwrap();
    let b = TapPort::open(TapConfig::new(&nb)).unwrap();
    let (ns1, ns2) = (lab.netns(), lab.netns());
    lab.plug(&na, &ns1, "10.77.0.1/24");
    lab.plug(&nb, &ns2, "10.77.0.2/24");
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.pcap");
    let four = dir.path().join("four.pcap");
    // One capture of everything, one limited to 4 frames.
    let (cap_all, h_all) = Capture::start(&all, CaptureLimits::default()).unwrap();
    let (cap_four, h_four) = Capture::start(
        &four,
        CaptureLimits {
            count: Some(4),
            duration: None,
        },
    )
    .unwrap();
    let hook = Box::new(move |_dir: usize, f: &[u8]| {
        h_all.record(f);
        h_four.record(f);
    });
    let fwd = Forwarder::start_with(a, b, Duration::from_secs(30), Some(hook));
    assert!(lab.ping(&ns1, "10.77.0.2", 3));
    let (_a, _b, f) = fwd.stop();
    cap_all.stop();
    let s = cap_all.wait().unwrap();
    assert_eq!(
        s.written,
        f.a_to_b + f.b_to_a,
        "every forwarded frame captured"
    );
    assert_eq!(s.dropped, 0);
    let s4 = cap_four.wait().unwrap();
    assert_eq!(s4.written, 4);

    let icmp = tshark_fields(&all, &["icmp.type", "ip.src", "ip.dst"]);
    let requests = icmp
        .iter()
        .filter(|l| *l == "8\t10.77.0.1\t10.77.0.2")
        .count();
    let replies = icmp
        .iter()
        .filter(|l| *l == "0\t10.77.0.2\t10.77.0.1")
        .count();
    assert_eq!((requests, replies), (3, 3), "tshark decoded: {icmp:?}");
    assert_eq!(tshark_fields(&four, &["frame.number"]).len(), 4);
}
