//! Shared by the wire_* integration tests: reading tests/data/*.hex and
//! comparing our key extraction with etherparse's `SlicedPacket`, an
//! independent parser, field by field.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use etherparse::{LinkExtSlice, LinkSlice, NetSlice, SlicedPacket, TransportSlice};
use vswitch::flow::extract::extract;
use vswitch::flow::FlowKey;
use vswitch::packet::PacketMeta;

/// One tests/data/*.hex file.
#[derive(Debug, Clone)]
pub struct Vector {
    pub name: String,
    pub comment: String,
    pub expect: String,
    pub target: String,
    pub bytes: Vec<u8>,
}

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
}

pub fn parse_hex_file(path: &Path) -> Vector {
    let text = std::fs::read_to_string(path).unwrap();
    let mut v = Vector {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        comment: String::new(),
        expect: String::new(),
        target: "extract".into(),
        bytes: Vec::new(),
    };
    for line in text.lines() {
        let line = line.trim();
        if let Some(c) = line.strip_prefix('#') {
            let c = c.trim();
            if let Some(e) = c.strip_prefix("expect:") {
                v.expect = e.trim().to_string();
            } else if let Some(t) = c.strip_prefix("target:") {
                v.target = t.trim().to_string();
            } else {
                v.comment.push_str(c);
                v.comment.push('\n');
            }
            continue;
        }
        for tok in line.split_whitespace() {
            v.bytes.push(
                u8::from_str_radix(tok, 16)
                    .unwrap_or_else(|_| panic!("{}: bad hex byte {tok:?}", path.display())),
            );
        }
    }
    assert!(
        !v.expect.is_empty(),
        "{}: no '# expect:' line",
        path.display()
    );
    v
}

pub fn load(name: &str) -> Vector {
    parse_hex_file(&data_dir().join(format!("{name}.hex")))
}

pub fn all_vectors() -> Vec<Vector> {
    let mut out: Vec<_> = std::fs::read_dir(data_dir())
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension().and_then(|x| x.to_str()) == Some("hex")).then(|| parse_hex_file(&p))
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub fn run_extract(frame: &[u8]) -> (Result<(), vswitch::wire::Error>, PacketMeta, FlowKey) {
    let mut m = PacketMeta::default();
    let mut k = FlowKey::default();
    let r = extract(frame, &mut m, &mut k);
    (r, m, k)
}

fn ofs_of(frame: &[u8], part: &[u8]) -> u16 {
    (part.as_ptr() as usize - frame.as_ptr() as usize) as u16
}

fn mac_u64(m: [u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]])
}

/// Asserts that etherparse's reading of `frame` matches our key and offsets
/// on every field both parsers know. Returns a description of what was
/// compared (for test logs).
pub fn assert_agrees_with_etherparse(frame: &[u8]) -> String {
    let (r, m, k) = run_extract(frame);
    r.unwrap_or_else(|e| panic!("extract failed: {e} on {frame:02x?}"));
    let sp = SlicedPacket::from_ethernet(frame)
        .unwrap_or_else(|e| panic!("etherparse failed: {e:?} on {frame:02x?}"));
    let mut seen = Vec::new();

    let Some(LinkSlice::Ethernet2(eth)) = &sp.link else {
        panic!("etherparse: no Ethernet II")
    };
    assert_eq!(k.dl_src(), eth.source(), "dl_src");
    assert_eq!(k.dl_dst(), eth.destination(), "dl_dst");
    seen.push("eth");

    let mut tpid = u16::from(eth.ether_type());
    let mut tcis = Vec::new();
    let mut tpids = Vec::new();
    for ext in &sp.link_exts {
        if let LinkExtSlice::Vlan(v) = ext {
            let tci = (u16::from(v.priority_code_point().value()) << 13)
                | (u16::from(v.drop_eligible_indicator()) << 12)
                | v.vlan_identifier().value();
            tcis.push(tci | FlowKey::VLAN_CFI);
            tpids.push(tpid);
            tpid = u16::from(v.ether_type());
        }
    }
    assert_eq!(k.vlan_tci(), tcis.first().copied().unwrap_or(0), "vlan_tci");
    assert_eq!(
        k.vlan_tci1(),
        tcis.get(1).copied().unwrap_or(0),
        "vlan_tci1"
    );
    let mut bits = 0;
    if tpids.first() == Some(&0x88a8) {
        bits |= FlowKey::TPID_OUTER_AD;
    }
    if tpids.get(1) == Some(&0x88a8) {
        bits |= FlowKey::TPID_INNER_AD;
    }
    assert_eq!(k.vlan_tpid(), bits, "vlan_tpid");
    assert_eq!(k.dl_type(), tpid, "dl_type");
    if !tcis.is_empty() {
        seen.push("vlan");
    }

    let mut ip_end = None;
    match &sp.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            assert_eq!(m.l3_ofs, ofs_of(frame, h.slice()), "l3_ofs");
            assert_eq!(k.nw_src(), u32::from_be_bytes(h.source()), "nw_src");
            assert_eq!(k.nw_dst(), u32::from_be_bytes(h.destination()), "nw_dst");
            assert_eq!(k.nw_ttl(), h.ttl(), "nw_ttl");
            assert_eq!(
                k.nw_tos(),
                (h.dcp().value() << 2) | h.ecn().value(),
                "nw_tos"
            );
            assert_eq!(k.nw_proto(), h.protocol().0, "nw_proto");
            let frag = h.more_fragments() || h.fragments_offset().value() != 0;
            assert_eq!(k.nw_frag() & FlowKey::FRAG_ANY != 0, frag, "nw_frag any");
            assert_eq!(
                k.nw_frag() & FlowKey::FRAG_LATER != 0,
                h.fragments_offset().value() != 0,
                "nw_frag later"
            );
            ip_end = Some(usize::from(m.l3_ofs) + usize::from(h.total_len()));
            seen.push("ipv4");
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            assert_eq!(m.l3_ofs, ofs_of(frame, h.slice()), "l3_ofs");
            assert_eq!(k.ipv6_src(), u128::from_be_bytes(h.source()), "ipv6_src");
            assert_eq!(
                k.ipv6_dst(),
                u128::from_be_bytes(h.destination()),
                "ipv6_dst"
            );
            assert_eq!(k.ipv6_label(), h.flow_label().value(), "ipv6_label");
            assert_eq!(k.nw_tos(), h.traffic_class(), "nw_tos");
            assert_eq!(k.nw_ttl(), h.hop_limit(), "nw_ttl");
            if !ip.is_payload_fragmented() {
                assert_eq!(k.nw_proto(), ip.payload().ip_number.0, "nw_proto");
            }
            ip_end = Some(usize::from(m.l3_ofs) + 40 + usize::from(h.payload_length()));
            seen.push("ipv6");
        }
        Some(NetSlice::Arp(a)) => {
            assert_eq!(k.nw_proto(), a.operation().0 as u8, "arp op");
            assert_eq!(
                k.arp_sha_u64(),
                mac_u64(a.sender_hw_addr().try_into().unwrap())
            );
            assert_eq!(
                k.arp_tha_u64(),
                mac_u64(a.target_hw_addr().try_into().unwrap())
            );
            assert_eq!(
                k.nw_src(),
                u32::from_be_bytes(a.sender_protocol_addr().try_into().unwrap())
            );
            assert_eq!(
                k.nw_dst(),
                u32::from_be_bytes(a.target_protocol_addr().try_into().unwrap())
            );
            seen.push("arp");
        }
        None => {}
    }
    if let Some(end) = ip_end {
        assert_eq!(usize::from(m.l2_pad_len), frame.len() - end, "l2_pad_len");
    }

    match &sp.transport {
        Some(TransportSlice::Tcp(t)) => {
            assert_eq!(m.l4_ofs, ofs_of(frame, t.slice()), "l4_ofs");
            assert_eq!(k.tp_src(), t.source_port(), "tp_src");
            assert_eq!(k.tp_dst(), t.destination_port(), "tp_dst");
            let flags = u16::from(t.fin())
                | u16::from(t.syn()) << 1
                | u16::from(t.rst()) << 2
                | u16::from(t.psh()) << 3
                | u16::from(t.ack()) << 4
                | u16::from(t.urg()) << 5
                | u16::from(t.ece()) << 6
                | u16::from(t.cwr()) << 7
                | u16::from(t.ns()) << 8;
            assert_eq!(k.tcp_flags() & 0x1ff, flags, "tcp_flags");
            seen.push("tcp");
        }
        Some(TransportSlice::Udp(u)) => {
            assert_eq!(m.l4_ofs, ofs_of(frame, u.slice()), "l4_ofs");
            assert_eq!(k.tp_src(), u.source_port(), "tp_src");
            assert_eq!(k.tp_dst(), u.destination_port(), "tp_dst");
            seen.push("udp");
        }
        Some(TransportSlice::Icmpv4(i)) => {
            assert_eq!(m.l4_ofs, ofs_of(frame, i.slice()), "l4_ofs");
            assert_eq!(k.tp_src(), u16::from(i.type_u8()), "icmp type");
            assert_eq!(k.tp_dst(), u16::from(i.code_u8()), "icmp code");
            seen.push("icmpv4");
        }
        Some(TransportSlice::Icmpv6(i)) => {
            assert_eq!(m.l4_ofs, ofs_of(frame, i.slice()), "l4_ofs");
            assert_eq!(k.tp_src(), u16::from(i.type_u8()), "icmpv6 type");
            assert_eq!(k.tp_dst(), u16::from(i.code_u8()), "icmpv6 code");
            seen.push("icmpv6");
        }
        _ => {}
    }
    seen.join("/")
}
