//! Frame builders and byte helpers for the tests that put hand-made frames
//! on dummy or real ports: hex text both ways (vswitchctl's `inject`,
//! `dummy-sent` and `trace --packet` speak it), MAC text, Ethernet frames
//! with VLAN tags, IPv4/UDP with correct checksums (RFC 1071, computed
//! here), an 802.1D BPDU. Every builder says byte by byte what it writes.
//! (The conntrack tests build TCP with etherparse in `conntrack_common`.)

/// Bytes as lowercase hex, no separators.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Hex text (whitespace ignored) as bytes.
pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    assert!(s.len().is_multiple_of(2), "odd number of hex digits: {s}");
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// `aa:bb:cc:dd:ee:ff` as bytes.
pub fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).expect("mac"))
        .collect();
    v.try_into().expect("6 bytes")
}

/// Bytes as `aa:bb:cc:dd:ee:ff`.
pub fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// True when `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// RFC 1071 sum of `data` folded, not inverted, starting from `init`.
pub fn sum16(init: u32, data: &[u8]) -> u32 {
    let mut s = init;
    for c in data.chunks(2) {
        s += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s
}

/// `dst`, `src`, then each of `tags` (TPID, TCI), then `ethertype` and
/// `payload`; not padded.
pub fn eth_tagged(
    dst: [u8; 6],
    src: [u8; 6],
    tags: &[(u16, u16)],
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    for (tpid, tci) in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An untagged Ethernet frame padded with zeros to the 60-byte minimum.
pub fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = eth_tagged(dst, src, &[], ethertype, payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// A frame `dst`, `src`, `tags`, EtherType 0x88b5 (IEEE local
/// experimental) and `payload`: something no stack answers.
pub fn raw_frame(dst: [u8; 6], src: [u8; 6], tags: &[(u16, u16)], payload: &[u8]) -> Vec<u8> {
    eth_tagged(dst, src, tags, 0x88b5, payload)
}

/// An Ethernet frame `dst`, `src`, `tags` (TPID, TCI), then IPv4/UDP
/// `sip:40960 -> dip:dport` (ID 0x1234, DF, TTL 64) carrying `payload`,
/// with correct IP and UDP checksums, followed by `pad` (Ethernet padding,
/// outside the datagram).
#[allow(clippy::too_many_arguments)]
pub fn udp_frame(
    dst: [u8; 6],
    src: [u8; 6],
    tags: &[(u16, u16)],
    sip: [u8; 4],
    dip: [u8; 4],
    dport: u16,
    payload: &[u8],
    pad: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len() as u16;
    let mut iph = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0];
    iph[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
    iph.extend_from_slice(&sip);
    iph.extend_from_slice(&dip);
    let c = !(sum16(0, &iph) as u16);
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    let mut udp = vec![0xa0, 0x00];
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = sip.to_vec();
    pseudo.extend_from_slice(&dip);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&udp_len.to_be_bytes());
    let c = !(sum16(sum16(0, &pseudo), &udp) as u16);
    udp[6..8].copy_from_slice(&if c == 0 { 0xffff } else { c }.to_be_bytes());
    let mut f = eth_tagged(dst, src, tags, 0x0800, &iph);
    f.extend_from_slice(&udp);
    f.extend_from_slice(pad);
    f
}

/// An IEEE 802.1D configuration BPDU from `src`: 01:80:c2:00:00:00, an
/// 802.3 length (38 = LLC 3 + BPDU 35), LLC 42 42 03, then protocol 0,
/// version 0, type 0 (configuration), flags, root id (priority 0x8000 +
/// `src`), cost 0, bridge id (same), port id 0x8001, ages in 1/256 s
/// (message 0, max 20 s, hello 2 s, forward delay 15 s); padded to 60.
pub fn stp_bpdu(src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0x01, 0x80, 0xc2, 0x00, 0x00, 0x00];
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x00, 0x26, 0x42, 0x42, 0x03]);
    f.extend_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x00]);
    f.extend_from_slice(&[0x80, 0x00]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(&[0x80, 0x00]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x80, 0x01, 0x00, 0x00, 0x14, 0x00, 0x02, 0x00, 0x0f, 0x00]);
    assert_eq!(f.len(), 14 + 3 + 35);
    f.resize(60, 0);
    f
}
