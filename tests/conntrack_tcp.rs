//! TCP state machine and window tracking through the tracker: flag
//! sanity, out-of-window segments, RST, TIME_WAIT reopen, window scaling,
//! `tcp_liberal`, `tcp_seq_check=false`, IPv6.

mod conntrack_common;
use conntrack_common::*;

use vswitch::conntrack::{CtConfig, CtInvalidReason, CtParams, TcpPeerState, TcpState};
use vswitch::wire::checksum;

/// Rewrites the TCP flags of an IPv4 frame and fixes the TCP checksum.
fn with_flags(mut f: Vec<u8>, flags: u8) -> Vec<u8> {
    let ip_len = usize::from(u16::from_be_bytes([f[16], f[17]]));
    f[47] = flags;
    f[50] = 0;
    f[51] = 0;
    let ps = checksum::pseudo_header_v4(
        [f[26], f[27], f[28], f[29]].into(),
        [f[30], f[31], f[32], f[33]].into(),
        6,
        (ip_len - 20) as u32,
    );
    let c = checksum::l4_checksum(ps, &f[34..14 + ip_len]);
    f[50..52].copy_from_slice(&c.to_be_bytes());
    f
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;

fn reason(v: vswitch::conntrack::CtVerdict) -> Option<CtInvalidReason> {
    v.invalid.map(|d| d.reason)
}

fn state(h: &H, t: u64) -> TcpState {
    h.only(secs(t)).tcp.expect("tcp").state
}

fn data(seq: u32, ack_no: u32, len: usize) -> Vec<u8> {
    let payload = vec![0x42; len];
    tcp4(
        CLIENT,
        SERVER,
        Seg {
            payload: &payload,
            ..Seg::new(40000, 80, seq, psh_ack(ack_no))
        },
    )
}

#[test]
fn handshake_states_and_dump_line() {
    let h = H::new();
    let s = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1000, syn()));
    h.firewall(&s, 1, secs(0));
    assert_eq!(state(&h, 0), TcpState::SynSent);
    // A retransmitted SYN is still +new.
    assert_eq!(h.firewall(&s, 1, secs(1)), (true, TRK | NEW));
    let sa = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5000, syn_ack(1001)));
    h.firewall(&sa, 1, secs(1));
    assert_eq!(state(&h, 1), TcpState::SynRecv);
    let a = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1001, ack(5001)));
    h.firewall(&a, 1, secs(1));
    let info = h.only(secs(1));
    assert_eq!(info.tcp.expect("tcp").state, TcpState::Established);
    assert_eq!(
        info.format_ovs(),
        "tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=80),\
         reply=(src=10.0.0.2,dst=10.0.0.1,sport=80,dport=40000),\
         zone=1,mark=0,protoinfo=(state=ESTABLISHED)"
    );
    let t = info.tcp.expect("tcp");
    assert_eq!(t.orig.state, TcpPeerState::Established);
    assert_eq!(t.reply.state, TcpPeerState::Established);
    assert_eq!(h.total_invalid(), 0);
}

#[test]
fn invalid_flag_combinations() {
    let h = H::new();
    handshake(&h, 0);
    let base = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1001, ack(5001)));
    for (flags, what) in [
        (SYN | RST, "SYN+RST"),
        (SYN | FIN, "SYN+FIN"),
        (SYN | FIN | ACK, "SYN+FIN+ACK"),
        (0, "null"),
        (FIN, "FIN without ACK"),
        (PSH, "PSH without ACK"),
        (URG, "URG without ACK"),
        (FIN | PSH | URG, "xmas without ACK"),
    ] {
        let f = with_flags(base.clone(), flags);
        // On an established connection and as a new one (other port).
        let v = h.ct(&f, 0, false, secs(1));
        assert_eq!(v.state, TRK | INV, "{what}");
        assert_eq!(reason(v), Some(CtInvalidReason::BadTcpFlags), "{what}");
        let mut g = f.clone();
        g[34] = 0x11; // source port 0x11.. : not the tracked connection
        let g = with_flags(g, flags);
        assert_eq!(
            reason(h.ct(&g, 0, true, secs(1))),
            Some(CtInvalidReason::BadTcpFlags)
        );
    }
    assert_eq!(h.ct.invalid_count(CtInvalidReason::BadTcpFlags), 16);
    // The connection survived all of that.
    assert_eq!(state(&h, 1), TcpState::Established);
    assert_eq!(h.ct.len(), 1);
}

#[test]
fn syn_ack_without_connection_is_invalid_new() {
    let h = H::new();
    let sa = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5000, syn_ack(1001)));
    let v = h.ct(&sa, 0, true, secs(0));
    assert_eq!(reason(v), Some(CtInvalidReason::InvalidNew));
    assert!(h.ct.is_empty());
}

#[test]
fn out_of_window_segments() {
    let h = H::new();
    handshake(&h, 0);
    // In window: fine.
    assert_eq!(
        h.ct(&data(1001, 5001, 100), 0, false, secs(1)).state,
        TRK | EST
    );
    // Far beyond what the server's window allows.
    let v = h.ct(&data(1101 + 10_000_000, 5001, 100), 0, false, secs(1));
    assert_eq!(v.state, TRK | INV);
    assert_eq!(reason(v), Some(CtInvalidReason::OutOfWindow));
    // Acknowledging data the server never sent.
    let v = h.ct(&data(1101, 5001 + 1_000_000, 10), 0, false, secs(1));
    assert_eq!(reason(v), Some(CtInvalidReason::OutOfWindow));
    // Far behind (more than a window back).
    let v = h.ct(
        &data(1001u32.wrapping_sub(1_000_000), 5001, 10),
        0,
        false,
        secs(1),
    );
    assert_eq!(reason(v), Some(CtInvalidReason::OutOfWindow));
    assert_eq!(h.ct.invalid_count(CtInvalidReason::OutOfWindow), 3);
    // The bad segments did not move the window: the next real one passes.
    assert_eq!(
        h.ct(&data(1101, 5001, 100), 0, false, secs(2)).state,
        TRK | EST
    );
}

#[test]
fn rst_exact_sequence_closes_in_window_passes_far_is_invalid() {
    let h = H::new();
    handshake(&h, 0);
    // Far outside the window: invalid, as in Linux.
    let far_rst = tcp4(
        SERVER,
        CLIENT,
        Seg::new(80, 40000, 5001 + 10_000_000, rst()),
    );
    let v = h.ct(&far_rst, 0, false, secs(1));
    assert_eq!(reason(v), Some(CtInvalidReason::OutOfWindow));
    // Inside the window but not at the next expected byte: the client
    // must see it to answer with a challenge ACK (RFC 5961 section 3), so
    // it passes, and closes nothing (Linux keeps ESTABLISHED).
    let inwin_rst = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5001 + 500, rst()));
    assert_eq!(h.firewall(&inwin_rst, 0, secs(1)), (true, TRK | EST | RPL));
    assert_eq!(state(&h, 1), TcpState::Established);
    let good_rst = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5001, rst()));
    assert_eq!(h.firewall(&good_rst, 0, secs(1)), (true, TRK | EST | RPL));
    let info = h.only(secs(1));
    assert_eq!(info.tcp.expect("tcp").state, TcpState::Closed);
    assert_eq!(info.timeout_kind, "tcp_close");
    assert_eq!(info.timeout, 30);
}

/// Server data: 10.0.0.2:80 -> 10.0.0.1:40000.
fn sdata(seq: u32, ack_no: u32, len: usize) -> Vec<u8> {
    let payload = vec![0x24; len];
    tcp4(
        SERVER,
        CLIENT,
        Seg {
            payload: &payload,
            ..Seg::new(80, 40000, seq, psh_ack(ack_no))
        },
    )
}

#[test]
fn simultaneous_open_completes() {
    // Both ends connect() at once with fixed ports (hole punching): each
    // SYN crosses the other, each side answers with SYN+ACK.
    let h = H::new();
    let a_syn = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1000, syn()));
    assert_eq!(h.firewall(&a_syn, 0, secs(0)), (true, TRK | NEW));
    // The second SYN comes from the other end of the tracked tuple: a
    // reply (Linux SYN_SENT2, ct_state est,reply).
    let b_syn = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5000, syn()));
    assert_eq!(h.firewall(&b_syn, 0, secs(0)), (true, TRK | EST | RPL));
    let a_sa = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1000, syn_ack(5001)));
    assert_eq!(h.firewall(&a_sa, 0, secs(0)), (true, TRK | EST));
    let b_sa = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5000, syn_ack(1001)));
    assert_eq!(h.firewall(&b_sa, 0, secs(0)), (true, TRK | EST | RPL));
    assert_eq!(state(&h, 0), TcpState::Established);
    assert_eq!(
        h.firewall(&data(1001, 5001, 100), 0, secs(1)),
        (true, TRK | EST)
    );
    assert_eq!(
        h.firewall(&sdata(5001, 1101, 100), 0, secs(1)),
        (true, TRK | EST | RPL)
    );
    assert_eq!(h.total_invalid(), 0);
    assert_eq!(h.ct.len(), 1);
}

#[test]
fn rst_at_highest_ack_closes() {
    // The server sent 100 bytes the client has not acknowledged yet, then
    // rebooted. The client's next segment acknowledges 5001; the server,
    // without state, answers with a reset whose sequence number is that
    // acknowledgement (RFC 9293 3.10.7.1) -- below the server's highest
    // sequence number sent, at the client's highest acknowledgement.
    let h = H::new();
    handshake(&h, 0);
    assert_eq!(
        h.firewall(&sdata(5001, 1001, 100), 0, secs(1)),
        (true, TRK | EST | RPL)
    );
    assert_eq!(
        h.firewall(&data(1001, 5001, 50), 0, secs(2)),
        (true, TRK | EST)
    );
    // A reset below what the client acknowledged is stale.
    let stale = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 4990, rst()));
    assert_eq!(
        reason(h.ct(&stale, 0, false, secs(2))),
        Some(CtInvalidReason::OutOfWindow)
    );
    let rst_at_ack = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5001, rst()));
    assert_eq!(h.firewall(&rst_at_ack, 0, secs(2)), (true, TRK | EST | RPL));
    assert_eq!(state(&h, 2), TcpState::Closed);
}

#[test]
fn rst_after_own_data_closes() {
    // An abort right after data (SO_LINGER 0): the reset follows the
    // sender's last byte, nothing acknowledged yet (Linux: "RST train").
    let h = H::new();
    handshake(&h, 0);
    h.firewall(&sdata(5001, 1001, 100), 0, secs(1));
    let rst_after = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5101, rst()));
    assert_eq!(h.firewall(&rst_after, 0, secs(1)), (true, TRK | EST | RPL));
    assert_eq!(state(&h, 1), TcpState::Closed);
}

#[test]
fn syn_on_established_passes_then_challenge_ack_rst_and_reconnect() {
    // A client that lost its connection reconnects from the same port;
    // the server still has the old one.
    let h = H::new();
    handshake(&h, 0);
    h.firewall(&data(1001, 5001, 10), 0, secs(1));
    let syn2 = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 900_000, syn()));
    // Passes (Linux ignores it: state and timeout unchanged).
    assert_eq!(h.firewall(&syn2, 0, secs(2)), (true, TRK | EST));
    assert_eq!(state(&h, 2), TcpState::Established);
    // The server's challenge ACK (RFC 5961 section 4) belongs to the old
    // connection.
    let challenge = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5001, ack(1011)));
    assert_eq!(h.firewall(&challenge, 0, secs(2)), (true, TRK | EST | RPL));
    // The client knows no such connection: reset at the acknowledged
    // number, which closes the old entry.
    let crst = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1011, rst()));
    assert_eq!(h.firewall(&crst, 0, secs(2)), (true, TRK | EST));
    assert_eq!(state(&h, 2), TcpState::Closed);
    // The retransmitted SYN opens a new connection at once.
    assert_eq!(h.firewall(&syn2, 0, secs(3)), (true, TRK | NEW));
    let t = h.only(secs(3)).tcp.expect("tcp");
    assert_eq!((t.state, t.orig.seqlo), (TcpState::SynSent, 900_000));
    let sa = tcp4(
        SERVER,
        CLIENT,
        Seg::new(80, 40000, 77_000, syn_ack(900_001)),
    );
    assert_eq!(h.firewall(&sa, 0, secs(3)), (true, TRK | EST | RPL));
    assert_eq!(h.total_invalid(), 0);
}

#[test]
fn syn_on_orphaned_entry_is_replaced_by_the_new_handshake() {
    // Both ends forgot the connection; our entry did not. The server
    // accepts the new SYN: its SYN+ACK shows the old connection is gone,
    // and the entry starts over from the SYN we let through.
    let h = H::new();
    handshake(&h, 0);
    let syn2 = tcp4(
        CLIENT,
        SERVER,
        Seg {
            wscale: Some(7),
            ..Seg::new(40000, 80, 900_000, syn())
        },
    );
    assert_eq!(h.firewall(&syn2, 0, secs(5)), (true, TRK | EST));
    let sa = tcp4(
        SERVER,
        CLIENT,
        Seg {
            wscale: Some(7),
            ..Seg::new(80, 40000, 77_000, syn_ack(900_001))
        },
    );
    assert_eq!(h.firewall(&sa, 0, secs(5)), (true, TRK | EST | RPL));
    let a = tcp4(
        CLIENT,
        SERVER,
        Seg {
            win: 1000,
            ..Seg::new(40000, 80, 900_001, ack(77_001))
        },
    );
    assert_eq!(h.firewall(&a, 0, secs(5)), (true, TRK | EST));
    let t = h.only(secs(5)).tcp.expect("tcp");
    assert_eq!(t.state, TcpState::Established);
    // The windows follow the new sequence numbers (a bare ACK does not
    // move pf's `seqlo` past the SYN).
    assert_eq!((t.orig.seqlo, t.reply.seqlo), (900_000, 77_001));
    // The new connection's window scale was taken from the ignored SYN.
    assert_eq!((t.orig.wscale, t.reply.wscale), (7, 7));
    assert_eq!(h.total_invalid(), 0);
}

#[test]
fn syn_on_established_answered_by_rst_drops_the_entry() {
    let h = H::new();
    handshake(&h, 0);
    let syn2 = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 900_000, syn()));
    assert_eq!(h.firewall(&syn2, 0, secs(1)), (true, TRK | EST));
    // No listener: RST+ACK acknowledging the SYN.
    let rst_ack = tcp4(
        SERVER,
        CLIENT,
        Seg::new(
            80,
            40000,
            0,
            Flags {
                rst: true,
                ack: Some(900_001),
                ..Flags::default()
            },
        ),
    );
    assert_eq!(h.firewall(&rst_ack, 0, secs(1)), (true, TRK | EST | RPL));
    assert_eq!(state(&h, 1), TcpState::Closed);
    assert_eq!(h.firewall(&syn2, 0, secs(2)), (true, TRK | NEW));
    assert_eq!(h.only(secs(2)).tcp.expect("tcp").orig.seqlo, 900_000);
}

#[test]
fn syn_on_closing_connection_passes() {
    let h = H::new();
    handshake(&h, 0);
    let cfin = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1001, fin_ack(5001)));
    h.firewall(&cfin, 0, secs(1));
    assert_eq!(state(&h, 1), TcpState::FinWait);
    let syn2 = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 900_000, syn()));
    assert_eq!(h.firewall(&syn2, 0, secs(1)), (true, TRK | EST));
    assert_eq!(state(&h, 1), TcpState::FinWait);
    // From the responder, a SYN on an open connection is invalid (Linux's
    // state table: "invalid SYN packets sent by the server").
    let ssyn = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 123, syn()));
    assert_eq!(
        reason(h.ct(&ssyn, 0, false, secs(1))),
        Some(CtInvalidReason::TcpInvalidState)
    );
}

#[test]
fn syn_with_later_isn_in_syn_sent_restarts_the_handshake() {
    let h = H::new();
    let s1 = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1000, syn()));
    assert_eq!(h.firewall(&s1, 0, secs(0)), (true, TRK | NEW));
    let s2 = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 3_000_000, syn()));
    assert_eq!(h.firewall(&s2, 0, secs(1)), (true, TRK | NEW));
    let sa = tcp4(
        SERVER,
        CLIENT,
        Seg::new(80, 40000, 5000, syn_ack(3_000_001)),
    );
    assert_eq!(h.firewall(&sa, 0, secs(1)), (true, TRK | EST | RPL));
    assert_eq!(h.total_invalid(), 0);
}

#[test]
fn rst_and_fin_never_create_a_connection() {
    let h = H::new();
    let fl = |rst: bool, fin: bool, ack: Option<u32>| Flags {
        rst,
        fin,
        ack,
        ..Flags::default()
    };
    for (f, what) in [
        (fl(true, false, None), "RST"),
        (fl(true, false, Some(5001)), "RST+ACK"),
        (fl(false, true, Some(5001)), "FIN+ACK"),
    ] {
        let pkt = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1001, f));
        let v = h.ct(&pkt, 0, true, secs(0));
        assert_eq!(reason(v), Some(CtInvalidReason::InvalidNew), "{what}");
        assert!(h.ct.is_empty(), "{what} created a connection");
        // So the outside peer's segments find nothing to belong to.
        let back = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5001, ack(1001)));
        assert_eq!(h.ct(&back, 0, false, secs(0)).state, TRK | NEW, "{what}");
    }
    // A plain ACK still picks a connection up (nf_conntrack_tcp_loose=1).
    let a = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1001, ack(5001)));
    assert_eq!(h.ct(&a, 0, true, secs(0)).state, TRK | NEW);
    assert_eq!(h.ct.len(), 1);
}

#[test]
fn full_close_time_wait_then_reopen() {
    let h = H::new();
    handshake(&h, 0);
    let cfin = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1001, fin_ack(5001)));
    assert_eq!(h.firewall(&cfin, 0, secs(1)), (true, TRK | EST));
    assert_eq!(state(&h, 1), TcpState::FinWait);
    let sack = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5001, ack(1002)));
    h.firewall(&sack, 0, secs(1));
    assert_eq!(state(&h, 1), TcpState::CloseWait);
    let sfin = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5001, fin_ack(1002)));
    h.firewall(&sfin, 0, secs(1));
    assert_eq!(state(&h, 1), TcpState::LastAck);
    let cack = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 1002, ack(5002)));
    assert_eq!(h.firewall(&cack, 0, secs(1)), (true, TRK | EST));
    let info = h.only(secs(1));
    assert_eq!(info.tcp.expect("tcp").state, TcpState::TimeWait);
    assert_eq!(info.timeout, 45);
    assert!(info.format_ovs().ends_with("protoinfo=(state=TIME_WAIT)"));

    // The same 4-tuple, new ISN: the old entry goes, a new one starts.
    let syn2 = tcp4(CLIENT, SERVER, Seg::new(40000, 80, 777_000, syn()));
    assert_eq!(h.firewall(&syn2, 0, secs(2)), (true, TRK | NEW));
    let info = h.only(secs(2));
    let t = info.tcp.expect("tcp");
    assert_eq!(t.state, TcpState::SynSent);
    assert_eq!(t.orig.seqlo, 777_000);
    let sa2 = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 9000, syn_ack(777_001)));
    assert_eq!(h.firewall(&sa2, 0, secs(2)), (true, TRK | EST | RPL));
    assert_eq!(h.total_invalid(), 0);
}

#[test]
fn window_scaling_is_honoured() {
    let h = H::new();
    let s = tcp4(
        CLIENT,
        SERVER,
        Seg {
            wscale: Some(7),
            ..Seg::new(40000, 80, 1000, syn())
        },
    );
    h.firewall(&s, 0, secs(0));
    let sa = tcp4(
        SERVER,
        CLIENT,
        Seg {
            wscale: Some(7),
            ..Seg::new(80, 40000, 5000, syn_ack(1001))
        },
    );
    h.firewall(&sa, 0, secs(0));
    let a = tcp4(
        CLIENT,
        SERVER,
        Seg {
            win: 1000,
            ..Seg::new(40000, 80, 1001, ack(5001))
        },
    );
    h.firewall(&a, 0, secs(0));
    // The server advertises 1000 << 7 = 128000 bytes.
    let upd = tcp4(
        SERVER,
        CLIENT,
        Seg {
            win: 1000,
            ..Seg::new(80, 40000, 5001, ack(1001))
        },
    );
    assert_eq!(h.firewall(&upd, 0, secs(0)), (true, TRK | EST | RPL));
    let t = h.only(secs(0)).tcp.expect("tcp");
    assert_eq!((t.orig.wscale, t.reply.wscale), (7, 7));
    assert!(t.orig.window_scale && t.reply.window_scale);
    assert_eq!(t.orig.seqhi, 1001 + 128_000);
    // 100 KB ahead: beyond the unscaled 1000, inside the scaled window.
    assert_eq!(
        h.ct(&data(1001 + 100_000, 5001, 100), 0, false, secs(0))
            .state,
        TRK | EST
    );
    // Beyond the scaled window.
    let v = h.ct(&data(1001 + 130_000, 5001, 100), 0, false, secs(0));
    assert_eq!(reason(v), Some(CtInvalidReason::OutOfWindow));
}

#[test]
fn tcp_liberal_accepts_out_of_window_except_rst() {
    let h = H::with(CtConfig {
        tcp_liberal: true,
        ..CtConfig::default()
    });
    handshake(&h, 0);
    assert_eq!(
        h.ct(&data(1101 + 10_000_000, 5001, 100), 0, false, secs(1))
            .state,
        TRK | EST
    );
    let rst_far = tcp4(
        SERVER,
        CLIENT,
        Seg::new(80, 40000, 5001 + 10_000_000, rst()),
    );
    assert_eq!(
        reason(h.ct(&rst_far, 0, false, secs(1))),
        Some(CtInvalidReason::OutOfWindow)
    );
    // Flags are still checked.
    let bad = with_flags(data(1101, 5001, 0), SYN | FIN);
    assert_eq!(
        reason(h.ct(&bad, 0, false, secs(1))),
        Some(CtInvalidReason::BadTcpFlags)
    );
    // Off again at run time: strict.
    h.ct.set_tcp_liberal(false);
    let v = h.ct(&data(1101 + 90_000_000, 5001, 100), 0, false, secs(1));
    assert_eq!(reason(v), Some(CtInvalidReason::OutOfWindow));
}

#[test]
fn seq_check_off_accepts_any_sequence() {
    let h = H::with(CtConfig {
        tcp_seq_check: false,
        ..CtConfig::default()
    });
    handshake(&h, 0);
    assert_eq!(
        h.ct(&data(1101 + 10_000_000, 5001, 100), 0, false, secs(1))
            .state,
        TRK | EST
    );
    let rst_far = tcp4(
        SERVER,
        CLIENT,
        Seg::new(80, 40000, 5001 + 10_000_000, rst()),
    );
    assert_eq!(h.ct(&rst_far, 0, false, secs(1)).state, TRK | EST | RPL);
    assert_eq!(state(&h, 1), TcpState::Closed);
    h.ct.set_tcp_seq_check(true);
    handshake(&h, 7);
    let v = h.ct(&data(1101 + 10_000_000, 5001, 100), 7, false, secs(1));
    assert_eq!(reason(v), Some(CtInvalidReason::OutOfWindow));
}

#[test]
fn midstream_pickup_and_force() {
    let h = H::new();
    // An ACK of an unknown connection may start one (pf picks it up).
    let a = data(1001, 5001, 10);
    assert_eq!(h.firewall(&a, 0, secs(0)), (true, TRK | NEW));
    let t = h.only(secs(0)).tcp.expect("tcp");
    assert!(t.orig.be_liberal, "scale unknown when picked up mid-stream");
    let r = tcp4(SERVER, CLIENT, Seg::new(80, 40000, 5001, ack(1011)));
    assert_eq!(h.firewall(&r, 0, secs(0)), (true, TRK | EST | RPL));
    // force on a reply-direction packet: the entry is replaced by one in
    // the packet's direction.
    let (key, mut meta) = key_meta(&r);
    let p = CtParams {
        commit: true,
        force: true,
        ..CtParams::default()
    };
    let v = h.ct.process(&r, &key, &mut meta, &p, h.at(1));
    assert_eq!(v.state, TRK | NEW);
    let info = h.only(secs(1));
    assert_eq!(info.orig.src.to_string(), "10.0.0.2");
    assert_eq!(info.orig.sport, Some(80));
}

#[test]
fn ipv6_tcp_connection() {
    let h = H::new();
    let s = tcp6(CLIENT6, SERVER6, Seg::new(40000, 443, 1000, syn()));
    assert_eq!(h.firewall(&s, 3, secs(0)), (true, TRK | NEW));
    let sa = tcp6(SERVER6, CLIENT6, Seg::new(443, 40000, 5000, syn_ack(1001)));
    assert_eq!(h.firewall(&sa, 3, secs(0)), (true, TRK | EST | RPL));
    let a = tcp6(CLIENT6, SERVER6, Seg::new(40000, 443, 1001, ack(5001)));
    assert_eq!(h.firewall(&a, 3, secs(0)), (true, TRK | EST));
    let info = h.only(secs(0));
    assert_eq!(
        info.format_ovs(),
        "tcp,orig=(src=fd00::1,dst=fd00::2,sport=40000,dport=443),\
         reply=(src=fd00::2,dst=fd00::1,sport=443,dport=40000),\
         zone=3,mark=0,protoinfo=(state=ESTABLISHED)"
    );
    // A 60-byte-minimum does not pad IPv6 ACKs (74 bytes), but a corrupted
    // one is still caught with its values.
    let mut bad = tcp6(SERVER6, CLIENT6, Seg::new(443, 40000, 5001, ack(1001)));
    bad[70] ^= 0xff;
    let v = h.ct(&bad, 3, false, secs(1));
    assert_eq!(reason(v), Some(CtInvalidReason::BadL4Checksum));
    assert!(v.invalid.and_then(|d| d.expected).is_some());
    let fin = tcp6(SERVER6, CLIENT6, Seg::new(443, 40000, 5001, fin_ack(1001)));
    assert_eq!(h.firewall(&fin, 3, secs(1)), (true, TRK | EST | RPL));
    assert_eq!(state(&h, 1), TcpState::FinWait);
}
