//! Field story 1 (DESIGN.md): bare TCP ACK and FIN+ACK, 54 bytes padded to
//! the 60-byte Ethernet minimum, were judged to have bad checksums and
//! dropped by `ct_state=+inv actions=drop`. These tests fail on a tracker
//! that sums the padding into the checksum or counts it as TCP payload:
//! the padding bytes are non-zero, so a checksum over them cannot verify,
//! and six bytes of "payload" would move the tracked sequence end.

mod conntrack_common;
use conntrack_common::*;

use smoltcp::wire::{IpAddress, TcpPacket};
use vswitch::conntrack::{ChecksumPolicy, CtConfig, CtInvalidReason, TcpState};

/// Server's bare ACK (seq 5001, ack 1101): 54 bytes, padded with 0xa5.
fn padded_server_ack() -> Vec<u8> {
    let f = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5001, ack(1101)));
    assert_eq!(f.len(), 54, "Ethernet 14 + IPv4 20 + TCP 20");
    pad60(f, 0xa5)
}

/// Server's FIN+ACK (seq 5001, ack 1101): 54 bytes, padded with 0x5a.
fn padded_server_fin() -> Vec<u8> {
    let f = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5001, fin_ack(1101)));
    assert_eq!(f.len(), 54);
    pad60(f, 0x5a)
}

/// Handshake, then 100 bytes of request from the client (seq 1001..1101).
fn established_with_request(h: &H) {
    handshake(h, 1);
    let req = tcp4(
        CLIENT,
        SERVER,
        Seg {
            payload: &[b'G'; 100],
            ..Seg::new(40000, 80, 1001, psh_ack(5001))
        },
    );
    assert_eq!(h.firewall(&req, 1, secs(1)), (true, TRK | EST));
}

fn corrupt_tcp_checksum(mut f: Vec<u8>) -> (Vec<u8>, u16, u16) {
    let good = u16::from_be_bytes([f[50], f[51]]);
    let bad = good ^ 0x0101;
    f[50..52].copy_from_slice(&bad.to_be_bytes());
    (f, good, bad)
}

#[test]
fn test_vectors_are_what_they_claim() {
    // The padded frames carry a valid TCP checksum over the IP-delimited
    // segment (smoltcp agrees), and an invalid one if the padding is
    // wrongly included: the padding is a real trap, not a no-op.
    for f in [padded_server_ack(), padded_server_fin()] {
        assert_eq!(f.len(), 60);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 40, "IP total length");
        assert!(f[54..].iter().all(|b| *b != 0), "padding is non-zero");
        let (src, dst) = (IpAddress::v4(10, 0, 0, 2), IpAddress::v4(10, 0, 0, 1));
        let seg = TcpPacket::new_checked(&f[34..54]).expect("tcp");
        assert!(seg.verify_checksum(&src, &dst));
        let with_pad = TcpPacket::new_checked(&f[34..60]).expect("tcp");
        assert!(!with_pad.verify_checksum(&src, &dst));
        let (_, meta) = key_meta(&f);
        assert_eq!(meta.l2_pad_len, 6);
    }
}

#[test]
fn padded_ack_and_fin_are_established_and_never_invalid() {
    let h = H::new();
    established_with_request(&h);
    assert_eq!(
        h.firewall(&padded_server_ack(), 1, secs(2)),
        (true, TRK | EST | RPL),
        "padded bare ACK"
    );
    assert_eq!(
        h.only(secs(2)).tcp.map(|t| t.state),
        Some(TcpState::Established)
    );
    assert_eq!(
        h.firewall(&padded_server_fin(), 1, secs(3)),
        (true, TRK | EST | RPL),
        "padded FIN+ACK"
    );
    assert_eq!(
        h.only(secs(3)).tcp.map(|t| t.state),
        Some(TcpState::FinWait)
    );
    // The client acknowledges the FIN (padded too): CLOSE_WAIT.
    let cack = pad60(
        tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1101, ack(5002))),
        0xff,
    );
    assert_eq!(h.firewall(&cack, 1, secs(4)), (true, TRK | EST));
    assert_eq!(
        h.only(secs(4)).tcp.map(|t| t.state),
        Some(TcpState::CloseWait)
    );
    assert_eq!(h.total_invalid(), 0, "{:?}", h.ct.stats().invalid);
}

#[test]
fn padded_bare_ack_does_not_advance_the_sequence_end() {
    let h = H::new();
    established_with_request(&h);
    let before = h.only(secs(1)).tcp.expect("tcp").reply;
    assert_eq!(before.seqlo, 5001, "server sent SYN (5000) only");
    h.firewall(&padded_server_ack(), 1, secs(2));
    let after = h.only(secs(2)).tcp.expect("tcp");
    assert_eq!(after.reply.seqlo, 5001, "6 padding bytes are not data");
    // The server's ACK of 1101 with window 64240 opens the client's window.
    assert_eq!(after.orig.seqhi, 1101 + 64240);
    // The FIN takes exactly one sequence number, no more.
    h.firewall(&padded_server_fin(), 1, secs(3));
    assert_eq!(h.only(secs(3)).tcp.expect("tcp").reply.seqlo, 5002);
}

#[test]
fn corrupted_checksum_is_invalid_with_values() {
    let h = H::new();
    established_with_request(&h);
    for (i, f) in [padded_server_ack(), padded_server_fin()]
        .into_iter()
        .enumerate()
    {
        let (bad, good, received) = corrupt_tcp_checksum(f);
        let v = h.ct(&bad, 1, false, secs(2));
        assert_eq!(v.state, TRK | INV);
        let d = v.invalid.expect("detail");
        assert_eq!(d.reason, CtInvalidReason::BadL4Checksum);
        assert_eq!(d.expected, Some(good));
        assert_eq!(d.received, Some(received));
        assert!(d.to_string().contains("bad_l4_checksum"));
        assert!(!h.firewall(&bad, 1, secs(2)).0, "dropped");
        assert_eq!(
            h.ct.invalid_count(CtInvalidReason::BadL4Checksum),
            2 * (i as u64 + 1)
        );
    }
    // The connection itself was not touched by the bad packets.
    assert_eq!(
        h.only(secs(3)).tcp.map(|t| t.state),
        Some(TcpState::Established)
    );
    assert_eq!(h.ct.stats().invalid["bad_l4_checksum"], 4);
}

#[test]
fn corrupted_checksum_passes_with_skip_policy() {
    let h = H::with(CtConfig {
        checksum: ChecksumPolicy::Skip,
        ..CtConfig::default()
    });
    established_with_request(&h);
    let (ack, _, _) = corrupt_tcp_checksum(padded_server_ack());
    assert_eq!(h.firewall(&ack, 1, secs(2)), (true, TRK | EST | RPL));
    let (fin, _, _) = corrupt_tcp_checksum(padded_server_fin());
    assert_eq!(h.firewall(&fin, 1, secs(3)), (true, TRK | EST | RPL));
    assert_eq!(h.total_invalid(), 0);
    // And back to validate at run time.
    h.ct.set_checksum_policy(ChecksumPolicy::Validate);
    assert_eq!(h.ct(&ack, 1, false, secs(4)).state, TRK | INV);
}

#[test]
fn offloaded_checksum_is_not_revalidated() {
    use vswitch::conntrack::CtParams;
    use vswitch::packet::CsumStatus;
    let h = H::new();
    established_with_request(&h);
    let (ack, _, _) = corrupt_tcp_checksum(padded_server_ack());
    for st in [
        CsumStatus::Verified,
        CsumStatus::Partial {
            csum_start: 34,
            csum_offset: 16,
        },
    ] {
        let (key, mut meta) = key_meta(&ack);
        meta.csum = st;
        let p = CtParams {
            zone: 1,
            ..CtParams::default()
        };
        let v = h.ct.process(&ack, &key, &mut meta, &p, h.at(2));
        assert_eq!(v.state, TRK | EST | RPL, "{st:?}");
    }
}

#[test]
fn bad_ip_checksum_is_invalid_with_values() {
    let h = H::new();
    established_with_request(&h);
    let mut f = padded_server_ack();
    let good = u16::from_be_bytes([f[24], f[25]]);
    f[24] ^= 0x80;
    let v = h.ct(&f, 1, false, secs(2));
    let d = v.invalid.expect("invalid");
    assert_eq!(d.reason, CtInvalidReason::BadIpChecksum);
    assert_eq!(d.expected, Some(good));
    assert_eq!(d.received, Some(good ^ 0x8000));
    assert_eq!(v.state, TRK | INV);
}

#[test]
fn ipv4_udp_zero_checksum_passes_and_ipv6_zero_fails() {
    let h = H::new();
    let mut f = pad60(udp4(CLIENT, SERVER, 5000, 53, b"q"), 0x77);
    f[40] = 0;
    f[41] = 0;
    assert_eq!(h.ct(&f, 0, true, secs(0)).state, TRK | NEW);
    let mut g = udp6(CLIENT6, SERVER6, 5000, 53, b"q");
    g[60] = 0;
    g[61] = 0;
    let v = h.ct(&g, 0, true, secs(0));
    assert_eq!(
        v.invalid.map(|d| d.reason),
        Some(CtInvalidReason::BadL4Checksum)
    );
}

#[test]
fn padded_udp_checksum_is_over_the_udp_length() {
    // A 1-byte UDP payload: 43 bytes padded to 60 with 17 non-zero bytes.
    let h = H::new();
    let f = pad60(udp4(CLIENT, SERVER, 5000, 53, b"q"), 0x99);
    assert_eq!(f.len(), 60);
    assert_eq!(h.ct(&f, 0, true, secs(0)).state, TRK | NEW);
    assert_eq!(h.total_invalid(), 0);
}
