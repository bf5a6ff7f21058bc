//! The Geneve decap path as a function of the bytes: hand-written vectors,
//! one per drop reason, and random bytes (no panic; every refusal is one of
//! the Geneve/tunnel drop reasons, every acceptance strips exactly the
//! declared header). Encap is checked against a hand-assembled header.

#[path = "common/proptest_file.rs"]
mod proptest_file;

mod common;

use common::frames::unhex;
use proptest::prelude::*;
use std::net::{Ipv4Addr, SocketAddr};
use vswitch::packet::{PacketBuf, TunnelMeta};
use vswitch::port::geneve::{decap, push_header, DecapPolicy, TlvMap, TlvMapping};
use vswitch::port::udp::RecvInfo;
use vswitch::port::PortDrop;

// Inner frame used behind every header below: Ethernet 02:00:00:00:00:0a <-
// 02:00:00:00:00:0b, type 0x0800, then four payload bytes (decap does not
// look inside; the datapath does).
const INNER: &str = "02000000000a 02000000000b 0800 deadbeef";

fn from_peer() -> RecvInfo {
    RecvInfo {
        src: Some("10.251.0.2:50000".parse::<SocketAddr>().unwrap()),
        dst: Some("10.251.0.1".parse().unwrap()),
        tos: 0x10,
        ttl: 63,
        ..RecvInfo::default()
    }
}

fn policy() -> DecapPolicy {
    DecapPolicy {
        remote: Some("10.251.0.2".parse().unwrap()),
        in_key: Some(5000),
        local: Some("10.251.0.1".parse().unwrap()),
        port: 6081,
    }
}

fn map() -> TlvMap {
    TlvMap::default()
        .with_added(
            &TlvMapping::parse_list(
                "{class=0xffff,type=0,len=4}->tun_metadata0,{class=0x0102,type=0x80,len=8}->tun_metadata2",
            )
            .unwrap(),
        )
        .unwrap()
}

fn run(geneve: &str, pol: &DecapPolicy) -> (Result<(), PortDrop>, PacketBuf) {
    let mut bytes = unhex(geneve);
    bytes.extend(unhex(INNER));
    let mut p = PacketBuf::from_slice(&bytes);
    let r = decap(&mut p, &from_peer(), pol, &map());
    (r, p)
}

#[test]
fn valid_header_with_mapped_options_fills_the_tunnel_metadata() {
    // ver 0, optlen 5 words, C bit (a critical option follows), proto 6558,
    // VNI 0x001388 = 5000;
    // option class 0xffff type 0 len 1 word: 0000abcd  -> tun_metadata0
    // option class 0x0102 type 0x80 (critical, mapped) len 2 words:
    //   0102030405060708                                -> tun_metadata2
    let (r, p) = run(
        "05 40 6558 001388 00
         ffff 00 01 0000abcd
         0102 80 02 01020304 05060708",
        &policy(),
    );
    assert_eq!(r, Ok(()));
    assert_eq!(
        p.data(),
        &unhex(INNER)[..],
        "exactly the 28-byte header is stripped"
    );
    let t = p.meta.tunnel;
    assert_eq!(t.tun_id, 5000);
    assert_eq!(Ipv4Addr::from(t.ip_src), Ipv4Addr::new(10, 251, 0, 2));
    assert_eq!(Ipv4Addr::from(t.ip_dst), Ipv4Addr::new(10, 251, 0, 1));
    assert_eq!(
        (t.tp_src, t.tp_dst, t.ip_tos, t.ip_ttl),
        (50000, 6081, 0x10, 63)
    );
    assert_eq!(t.flags, TunnelMeta::F_KEY);
    assert_eq!(t.metadata_present, 0b101);
    assert_eq!(t.metadata[0], 0xabcd);
    assert_eq!(t.metadata[2], 0x0102_0304_0506_0708);
}

#[test]
fn unknown_non_critical_option_is_ignored_and_oam_passes_flagged() {
    // O bit set, one unknown option class 0x0102 type 0x01 (not critical)
    // with 4 data bytes: accepted, nothing mapped, F_OAM set.
    let (r, p) = run("02 80 6558 001388 00 0102 01 01 cafef00d", &policy());
    assert_eq!(r, Ok(()));
    assert_eq!(p.meta.tunnel.metadata_present, 0);
    assert_eq!(
        p.meta.tunnel.flags,
        TunnelMeta::F_KEY | TunnelMeta::F_OAM,
        "OAM frames pass with tun_flags +oam, as Open vSwitch"
    );
}

#[test]
fn each_bad_datagram_has_its_reason() {
    let cases: &[(&str, &str, PortDrop)] = &[
        // optlen 2 words declared, the datagram ends 4 bytes into them
        // (the inner frame is appended, so cut via a huge optlen instead:
        // 63 words = 252 bytes of options, far past the datagram).
        (
            "options past the datagram",
            "3f 00 6558 001388 00",
            PortDrop::GeneveTruncated,
        ),
        // version 1 (0x40 in the first byte).
        (
            "version 1",
            "40 00 6558 001388 00",
            PortDrop::GeneveBadVersion,
        ),
        // optlen 1 word; the option claims 2 data words, past the block.
        (
            "option past the block",
            "01 00 6558 001388 00 ffff 00 02",
            PortDrop::GeneveBadOptionLength,
        ),
        // mapped option (0xffff, 0) with 8 bytes where the map says 4.
        (
            "mapped option, wrong length",
            "03 00 6558 001388 00 ffff 00 02 00000000 0000abcd",
            PortDrop::GeneveBadOptionLength,
        ),
        // unknown option class 0x0102 type 0x81: critical bit, must drop.
        (
            "unknown critical option",
            "01 40 6558 001388 00 0102 81 00",
            PortDrop::GeneveCriticalOption,
        ),
        // protocol 0x0800 (IPv4) instead of 0x6558 (Ethernet).
        (
            "inner IPv4",
            "00 00 0800 001388 00",
            PortDrop::GeneveBadProtocol,
        ),
        // VNI 5001 where the port's key is 5000.
        (
            "foreign VNI",
            "00 00 6558 001389 00",
            PortDrop::TunnelNoMatch,
        ),
    ];
    for (what, g, want) in cases {
        let (r, p) = run(g, &policy());
        assert_eq!(r, Err(*want), "{what}");
        assert_eq!(
            p.meta.tunnel,
            TunnelMeta::default(),
            "{what}: metadata untouched"
        );
    }
    // 7 bytes, nothing behind: shorter than the fixed header.
    let mut p = PacketBuf::from_slice(&unhex("00 00 6558 001388"));
    assert_eq!(
        decap(&mut p, &from_peer(), &policy(), &map()),
        Err(PortDrop::GeneveTruncated)
    );
    // A datagram from another host than remote_ip.
    let mut p = PacketBuf::from_slice(&unhex("00 00 6558 001388 00"));
    let mut from = from_peer();
    from.src = Some("10.251.0.99:50000".parse().unwrap());
    assert_eq!(
        decap(&mut p, &from, &policy(), &map()),
        Err(PortDrop::TunnelNoMatch)
    );
    // With remote_ip=flow and key=flow the same two are accepted.
    let any = DecapPolicy {
        remote: None,
        in_key: None,
        ..policy()
    };
    assert_eq!(decap(&mut p, &from, &any, &map()), Ok(()));
    let (r, p) = run("00 00 6558 001389 00", &any);
    assert_eq!((r, p.meta.tunnel.tun_id), (Ok(()), 5001));
}

#[test]
fn encap_header_is_the_hand_assembled_one_and_round_trips() {
    let mut p = PacketBuf::from_slice(&unhex(INNER));
    p.meta.tunnel.metadata_present = 0b101 | 0b10; // field 1 is not mapped: not sent
    p.meta.tunnel.metadata[0] = 0xabcd;
    p.meta.tunnel.metadata[1] = 0x7777;
    p.meta.tunnel.metadata[2] = 0x0102_0304_0506_0708;
    let hl = push_header(&mut p, 5000, &map());
    // The header of the first vector above: C is set because the option of
    // class 0x0102 has the critical type bit (RFC 8926: C whenever a
    // critical option is present).
    let want = unhex(
        "05 40 6558 001388 00
         ffff 00 01 0000abcd
         0102 80 02 01020304 05060708",
    );
    assert_eq!(hl, want.len());
    assert_eq!(&p.data()[..hl], &want[..]);
    assert_eq!(&p.data()[hl..], &unhex(INNER)[..], "the frame is untouched");
    let r = decap(&mut p, &from_peer(), &policy(), &map());
    assert_eq!(r, Ok(()));
    assert_eq!(p.meta.tunnel.metadata_present, 0b101);
    // Without options: the bare 8-byte header OVS sends (see
    // shared/anchors/samples/geneve.txt: "Length: 0 bytes", VNI 0x001388).
    let mut q = PacketBuf::from_slice(&unhex(INNER));
    assert_eq!(push_header(&mut q, 5000, &TlvMap::default()), 8);
    assert_eq!(&q.data()[..8], &unhex("00 00 6558 001388 00")[..]);
}

fn geneve_reasons() -> [PortDrop; 6] {
    [
        PortDrop::GeneveTruncated,
        PortDrop::GeneveBadVersion,
        PortDrop::GeneveBadOptionLength,
        PortDrop::GeneveCriticalOption,
        PortDrop::GeneveBadProtocol,
        PortDrop::TunnelNoMatch,
    ]
}

fn check_outcome(bytes: &[u8], r: Result<(), PortDrop>, p: &PacketBuf) {
    match r {
        Ok(()) => {
            let hl = 8 + usize::from(bytes[0] & 0x3f) * 4;
            assert_eq!(p.data(), &bytes[hl..]);
            assert!(p.meta.tunnel.tun_id < 1 << 24);
            assert_eq!(bytes[0] >> 6, 0, "only version 0 passes");
            assert_eq!(&bytes[2..4], &[0x65, 0x58]);
        }
        Err(why) => {
            assert!(geneve_reasons().contains(&why), "{why:?}");
            assert_eq!(p.data(), bytes, "a refused datagram is left as it was");
        }
    }
}

/// One option to encode: class, type, data words, and whether the map
/// knows it (and with which length).
#[derive(Debug, Clone)]
struct Opt {
    class: u16,
    ty: u8,
    words: u8,
}

fn encode(opts: &[Opt], vni: u32, flags: u8) -> Vec<u8> {
    let mut body = Vec::new();
    for o in opts {
        body.extend(o.class.to_be_bytes());
        body.push(o.ty);
        body.push(o.words & 0x1f);
        body.extend(std::iter::repeat_n(0x5a, usize::from(o.words & 0x1f) * 4));
    }
    let words = (body.len() / 4).min(63) as u8;
    let mut v = vec![words, flags, 0x65, 0x58];
    v.extend(&(vni << 8).to_be_bytes());
    v.extend(body);
    v.extend(unhex(INNER));
    v
}

/// What RFC 8926 plus the TLV map say should happen to these options.
fn model(opts: &[Opt], map: &TlvMap) -> Result<u8, PortDrop> {
    let total: usize = opts.iter().map(|o| 4 + usize::from(o.words) * 4).sum();
    if total > 252 {
        return Err(PortDrop::GeneveBadOptionLength); // not generated (see strategy)
    }
    let mut present = 0u8;
    for o in opts {
        match map.lookup(o.class, o.ty) {
            Some(m) if usize::from(m.len) == usize::from(o.words) * 4 => present |= 1 << m.index,
            Some(_) => return Err(PortDrop::GeneveBadOptionLength),
            None if o.ty & 0x80 != 0 => return Err(PortDrop::GeneveCriticalOption),
            None => {}
        }
    }
    Ok(present)
}

fn opt_strategy() -> impl Strategy<Value = Opt> {
    (
        prop_oneof![Just(0xffffu16), Just(0x0102), any::<u16>()],
        prop_oneof![Just(0u8), Just(0x80), any::<u8>()],
        0u8..4,
    )
        .prop_map(|(class, ty, words)| Opt { class, ty, words })
}

proptest! {
    #![proptest_config(proptest_file::config(2000, "tests/geneve_decap.proptest-regressions"))]

    #[test]
    fn random_bytes_never_panic_and_every_refusal_has_a_reason(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        fixed_remote in any::<bool>(),
        fixed_key in any::<bool>(),
    ) {
        let pol = DecapPolicy {
            remote: fixed_remote.then(|| "10.251.0.2".parse().unwrap()),
            in_key: fixed_key.then_some(5000),
            ..policy()
        };
        let mut p = PacketBuf::from_slice(&bytes);
        let r = decap(&mut p, &from_peer(), &pol, &map());
        check_outcome(&bytes, r, &p);
    }

    #[test]
    fn random_options_behind_a_valid_header_follow_rfc_8926(
        opts in proptest::collection::vec(opt_strategy(), 0..6),
        oam in any::<bool>(),
        vni in 0u32..(1 << 24),
    ) {
        let bytes = encode(&opts, vni, if oam { 0x80 } else { 0 });
        let mut p = PacketBuf::from_slice(&bytes);
        let pol = DecapPolicy { remote: None, in_key: None, ..policy() };
        let r = decap(&mut p, &from_peer(), &pol, &map());
        check_outcome(&bytes, r, &p);
        prop_assert_eq!(r.map(|_| p.meta.tunnel.metadata_present), model(&opts, &map()));
        if r.is_ok() {
            prop_assert_eq!(p.meta.tunnel.tun_id, u64::from(vni));
            prop_assert_eq!(p.meta.tunnel.flags & TunnelMeta::F_OAM != 0, oam);
        }
    }

    #[test]
    fn flipping_bytes_of_a_valid_datagram_never_panics(
        idx in 0usize..40, val in any::<u8>(), cut in 0usize..48,
    ) {
        let mut bytes = unhex(
            "05 40 6558 001388 00 ffff 00 01 0000abcd 0102 80 02 01020304 05060708",
        );
        bytes.extend(unhex(INNER));
        if let Some(b) = bytes.get_mut(idx) {
            *b = val;
        }
        bytes.truncate(cut.max(1));
        let mut p = PacketBuf::from_slice(&bytes);
        let r = decap(&mut p, &from_peer(), &policy(), &map());
        check_outcome(&bytes, r, &p);
    }
}
