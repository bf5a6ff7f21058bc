//! Capture files written from a live forwarding loop, decoded by tshark
//! (Wireshark's dissectors are the independent judge of the file format).

mod common;

use common::forwarder::{tap_pair, Pair};
use common::raw::tshark;
use common::{require_root, require_tools, Forwarder, Lab};
use std::time::Duration;
use vswitch::port::capture::{Capture, CaptureLimits};

/// `tshark -T fields` lines of `path` with `fields`, tab-separated.
fn tshark_fields(path: &std::path::Path, fields: &[&str]) -> Vec<String> {
    let mut args = vec!["-T", "fields"];
    for f in fields {
        args.extend(["-e", f]);
    }
    tshark(path, &args).lines().map(str::to_string).collect()
}

#[test]
fn capture_of_forwarded_ping_decodes_with_tshark() {
    const T: &str = "capture_of_forwarded_ping_decodes_with_tshark";
    if !require_root(T) || !require_tools(T, &["tshark"]) {
        return;
    }
    let mut lab = Lab::new();
    let Pair { a, b, ns1, .. } = tap_pair(&mut lab, 77, true, true);
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
