//! Field story 1 through the operator's tools: vswitchd with the stateful
//! firewall flows, a TCP connection injected frame by frame on dummy ports,
//! then the server's bare ACK and FIN padded to 60 bytes with non-zero
//! bytes. `dump-conntrack`, `dump-drops`, `ct-stats`, `trace --packet` and
//! `set-ct` are what an operator would use; each must tell the story.

mod common;
mod conntrack_common;
mod ct_pipeline_support;

use common::frames::hex;
use common::Daemon;
use conntrack_common::*;
use ct_pipeline_support::{corrupt_tcp_checksum, from_server};
use std::time::Duration;

/// A bare IPv4 TCP segment padded to 60 bytes with `byte`.
fn padded(f: Vec<u8>, byte: u8) -> Vec<u8> {
    assert_eq!(f.len(), 54, "a bare IPv4 TCP segment");
    pad60(f, byte)
}

/// Injects `frame` on `from` and returns what `to` sent within half a
/// second.
fn cross(d: &Daemon, from: &str, to: &str, frame: &[u8]) -> Vec<String> {
    d.inject(from, frame);
    d.wait_sent(to, 1, Duration::from_millis(500))
}

#[test]
fn padded_ack_fin_through_the_firewall_and_the_tools_that_explain_it() {
    let d = Daemon::start(None);
    d.add_dummies(&["vm1", "vm2"]);
    d.ctl(&["del-flows", "br0"]);
    d.ctl(&["add-flows", "br0", "flows/stateful-firewall.flows"]);

    // Handshake, client vm1 10.0.0.1:40000 -> server vm2 10.0.0.2:80.
    let syn = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1000, syn()));
    assert_eq!(cross(&d, "vm1", "vm2", &syn), vec![hex(&syn)]);
    let synack = from_server(tcp4(
        SERVER,
        CLIENT,
        Seg::new(80, 40000, 5000, syn_ack(1001)),
    ));
    assert_eq!(cross(&d, "vm2", "vm1", &synack).len(), 1);
    let third = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1001, ack(5001)));
    assert_eq!(cross(&d, "vm1", "vm2", &third).len(), 1);
    let ct = d.ctl(&["dump-conntrack", "br0"]);
    assert_eq!(
        ct.trim(),
        "tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=80),\
         reply=(src=10.0.0.2,dst=10.0.0.1,sport=80,dport=40000),zone=0,mark=0,protoinfo=(state=ESTABLISHED)"
    );

    // The server's bare ACK, padded with non-zero bytes: +est, forwarded
    // unchanged (padding included).
    let srv_ack = padded(
        from_server(tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5001, ack(1001)))),
        0xa5,
    );
    assert_eq!(cross(&d, "vm2", "vm1", &srv_ack), vec![hex(&srv_ack)]);

    // The same FIN with a corrupted checksum: dropped, and every tool says
    // why.
    let fin = padded(
        from_server(tcp4(
            SERVER,
            CLIENT,
            Seg::new(80, 40000, 5001, fin_ack(1001)),
        )),
        0x5a,
    );
    let (bad, good, recv) = corrupt_tcp_checksum(&fin);
    assert!(
        cross(&d, "vm2", "vm1", &bad).is_empty(),
        "a bad checksum is not forwarded"
    );
    let drops = common::wait_for(Duration::from_secs(2), || {
        let j = d.ctl_json(&["dump-drops", "br0"]);
        (j["drops"]["ct_invalid_bad_l4_checksum"] == 1).then_some(j)
    });
    assert!(drops.is_some(), "{}", d.ctl(&["dump-drops", "br0"]));
    assert!(d
        .ctl(&["dump-drops", "br0"])
        .contains("ct_invalid_bad_l4_checksum"));
    let st = d.ctl_json(&["ct-stats", "br0"]);
    assert_eq!(st["invalid"]["bad_l4_checksum"], 1, "{st}");
    assert!(d.ctl(&["ct-stats", "br0"]).contains("bad_l4_checksum"));
    let tr = d.ctl(&["trace", "br0", "in_port=vm2", "--packet", &hex(&bad)]);
    assert!(tr.contains("invalid: bad_l4_checksum"), "{tr}");
    assert!(
        tr.contains(&format!("expected {good:#06x}, received {recv:#06x}")),
        "trace shows both checksum values:\n{tr}"
    );
    assert!(
        tr.contains("Drop reason: ct_invalid_bad_l4_checksum"),
        "{tr}"
    );
    // The good FIN is +est and crosses; the connection closes half-way.
    let tr = d.ctl(&["trace", "br0", "in_port=vm2", "--packet", &hex(&fin)]);
    assert!(tr.contains("ct_state=est|rpl|trk"), "{tr}");
    assert_eq!(cross(&d, "vm2", "vm1", &fin), vec![hex(&fin)]);
    let ct = d.ctl(&["dump-conntrack", "br0"]);
    assert!(ct.contains("CLOSE_WAIT") || ct.contains("FIN_WAIT"), "{ct}");

    // Checksum validation is an explicit policy: with skip, a corrupted
    // frame of the connection passes.
    d.ctl(&["set-ct", "br0", "checksum=skip"]);
    let (bad_ack, _, _) = corrupt_tcp_checksum(&padded(
        from_server(tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5002, ack(1001)))),
        0x77,
    ));
    assert_eq!(cross(&d, "vm2", "vm1", &bad_ack).len(), 1);
    assert!(d.ctl(&["ct-stats", "br0"]).contains("checksum=skip"));
    // Unknown settings are refused and change nothing.
    assert!(d
        .ctl_err(&["set-ct", "br0", "checksum=maybe"])
        .contains("checksum=maybe"));

    // Zone filter, flush, limits and timeouts commands.
    assert_eq!(d.ctl(&["dump-conntrack", "br0", "zone=7"]).trim(), "");
    d.ctl(&["ct-set-limits", "br0", "default=1000", "zone=7,limit=10"]);
    d.ctl(&["ct-set-timeout", "br0", "zone=7", "tcp_established=60"]);
    assert!(d
        .ctl_err(&["ct-set-timeout", "br0", "tcp_bogus=1"])
        .contains("tcp_bogus"));
    assert!(d
        .ctl(&["flush-conntrack", "br0"])
        .contains("1 connections flushed"));
    assert_eq!(d.ctl(&["dump-conntrack", "br0"]).trim(), "");
}

#[test]
fn ipf_status_and_set_through_vswitchctl() {
    let d = Daemon::start(None);
    let st = d.ctl_json(&["ipf-status", "br0"]);
    assert_eq!(st["enabled_v4"], true, "{st}");
    assert_eq!(st["max_frags"], 1000, "{st}");
    let st = d.ctl_json(&[
        "ipf-set",
        "br0",
        "v4",
        "enabled=false",
        "min_frag_size=1000",
    ]);
    assert_eq!(st["enabled_v4"], false, "{st}");
    assert_eq!(st["enabled_v6"], true, "{st}");
    assert_eq!(st["min_frag_size_v4"], 1000, "{st}");
    // Out of range: refused, nothing changed.
    let e = d.ctl_err(&["ipf-set", "br0", "max_frags=999999", "enabled=true"]);
    assert!(e.contains("max_frags"), "{e}");
    assert_eq!(d.ctl_json(&["ipf-status", "br0"])["enabled_v4"], false);
    let e = d.ctl_err(&["ipf-set", "br0", "colour=red"]);
    assert!(e.contains("unknown ipf setting"), "{e}");
}
