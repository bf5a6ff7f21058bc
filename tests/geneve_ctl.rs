//! The operator's side of Geneve through the real vswitchd and vswitchctl:
//! `add-port ... type=geneve` with its options and refusals, and the TLV
//! map commands (`add-tlv-map`, `dump-tlv-map` in ovs-ofctl's layout and
//! as JSON, `del-tlv-map`). Loopback addresses only: no namespace needed.

mod common;

use common::Daemon;
use std::net::UdpSocket;

/// A UDP port free on 127.0.0.1 (below the range tunnel send sockets use).
fn free_port() -> u16 {
    for i in 0..2000u32 {
        let p = 30000 + ((std::process::id() * 13 + i) % 10000) as u16;
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free UDP port");
}

#[test]
fn geneve_ports_and_tlv_map_from_the_command_line() {
    let d = Daemon::start(None);
    let port = free_port();
    let dst = format!("dst_port={port}");

    // Refusals name the problem and change nothing.
    for (args, why) in [
        (vec!["type=geneve", "key=5000"], "remote_ip is required"),
        (
            vec!["type=geneve", "remote_ip=127.0.0.2", "key=0x1000000"],
            "24 bits",
        ),
        (
            vec!["type=geneve", "remote_ip=127.0.0.2", "tos=inherit"],
            "inherit",
        ),
        (
            vec!["type=geneve", "remote_ip=127.0.0.2", "colour=red"],
            "unknown option 'colour'",
        ),
    ] {
        let mut a = vec!["add-port", "br0", "tun0"];
        a.extend(args);
        let e = d.ctl_err(&a);
        assert!(e.contains(why), "{a:?}: {e}");
    }
    assert!(!d.ctl(&["show", "br0"]).contains("tun0"));

    d.ctl(&[
        "add-port",
        "br0",
        "tun0",
        "type=geneve",
        "remote_ip=127.0.0.2",
        "local_ip=127.0.0.1",
        "key=5000",
        &dst,
        "ofport=7",
    ]);
    let show = d.ctl(&["show", "br0"]);
    assert!(
        show.contains("port  7: tun0 (type=geneve) link=up"),
        "{show}"
    );
    // The same local address and port twice: a clear refusal.
    let e = d.ctl_err(&[
        "add-port",
        "br0",
        "tun1",
        "type=geneve",
        "remote_ip=127.0.0.3",
        "local_ip=127.0.0.1",
        &dst,
    ]);
    assert!(e.contains("already in use"), "{e}");

    // TLV map.
    d.ctl(&[
        "add-tlv-map",
        "br0",
        "{class=0xffff,type=0,len=4}->tun_metadata0,{class=0x0102,type=0x80,len=8}->tun_metadata3",
    ]);
    let text = d.ctl(&["dump-tlv-map", "br0"]);
    // ovs-ofctl 3.1's layout for the same mappings (checked against a
    // running Open vSwitch; our limits: 8 fields of at most 8 bytes).
    assert_eq!(
        text,
        "NXT_TLV_TABLE_REPLY:\n max option space=64 max fields=8\n allocated option space=12\n\n \
         mapping table:\n  class  type  length  match field\n ------  ----  ------  --------------\n \
         0xffff     0       4  tun_metadata0\n  0x102  0x80       8  tun_metadata3\n"
    );
    let j = d.ctl_json(&["dump-tlv-map", "br0"]);
    assert_eq!(j["allocated_option_space"], 12);
    assert_eq!(j["mappings"][1]["class"], 0x102);
    assert_eq!(j["mappings"][1]["type"], 0x80);
    assert_eq!(j["mappings"][1]["index"], 3);
    for (m, why) in [
        (
            "{class=1,type=1,len=4}->tun_metadata0",
            "tun_metadata0 is already mapped",
        ),
        ("{class=0xffff,type=0,len=4}->tun_metadata1", "mapped twice"),
        ("{class=1,type=1,len=12}->tun_metadata1", "at most 8 bytes"),
        ("{class=1,type=1,len=4}->tun_metadata8", "tun_metadata0..7"),
        ("{class=1,type=1}->tun_metadata1", "required"),
    ] {
        let e = d.ctl_err(&["add-tlv-map", "br0", m]);
        assert!(e.contains(why), "{m}: {e}");
    }
    // A refused list changes nothing, even when its first mapping was fine.
    d.ctl_err(&[
        "add-tlv-map",
        "br0",
        "{class=5,type=5,len=4}->tun_metadata5,{class=1,type=1,len=4}->tun_metadata0",
    ]);
    assert_eq!(d.ctl(&["dump-tlv-map", "br0"]), text);

    d.ctl(&[
        "del-tlv-map",
        "br0",
        "{class=0xffff,type=0,len=4}->tun_metadata0",
    ]);
    let j = d.ctl_json(&["dump-tlv-map", "br0"]);
    assert_eq!(j["mappings"].as_array().map(Vec::len), Some(1));
    d.ctl(&["del-tlv-map", "br0"]);
    let j = d.ctl_json(&["dump-tlv-map", "br0"]);
    assert_eq!(j["mappings"].as_array().map(Vec::len), Some(0));
    assert!(d
        .ctl_err(&["dump-tlv-map", "nobr"])
        .contains("no bridge named nobr"));

    // Deleting the port frees its socket: the same port can come back.
    d.ctl(&["del-port", "br0", "tun0"]);
    d.ctl(&[
        "add-port",
        "br0",
        "tun0",
        "type=geneve",
        "remote_ip=flow",
        "local_ip=127.0.0.1",
        "key=flow",
        &dst,
    ]);
    let dp = d.ctl_json(&["dump-ports", "br0", "tun0"]);
    assert_eq!(dp["ports"][0]["type"], "geneve");
    assert!(d.ctl(&["dump-drops", "br0"]).contains("(none)"));
}
