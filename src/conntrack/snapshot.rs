//! A tracker's connections as bytes, so another process can carry them on:
//! the upgrade hands the running table to the new vswitchd, and an
//! established connection stays established across it (no `+inv`, no
//! reset, no SYN needed).
//!
//! The format is ours and fixed-size per entry, so exporting a million
//! connections is one pass over the slabs and one buffer (88 MB), and
//! reading it back never trusts a length from the bytes beyond the header's
//! count checked against the buffer's size. Little-endian throughout:
//!
//! ```text
//! header (12 bytes): "VSCT" | version u16 | 0u16 | count u32
//! entry  (88 bytes): src[16] dst[16] sport dport id zone (u16 each)
//!                    proto v6 orig_swapped timeout-kind (u8 each)
//!                    mark u32 | remaining ms u32
//!                    l4 kind u8 (1 TCP, 2 other, 3 ICMP) | l4 state u8 | 0u16
//!                    2 x TCP peer: seqlo seqhi maxack u32, max_win u16,
//!                                  wscale u8, state u8
//! ```
//!
//! Expiry travels as time remaining, because the two trackers' clocks
//! have different epochs. What does not travel: the side table of SYNs let
//! through untracked (an answer to one after the handover is judged as a
//! new segment, as after a flush), reassembly in progress, and the
//! counters (a new process starts them at zero, as a restart does).

use super::table::{Conn, ConnKey, IcmpState, L4State, OtherState, MAX_TIMEOUT_MS};
use super::tcp::{TcpConn, TcpPeer, TcpPeerState};
use super::TimeoutKind;

const MAGIC: &[u8; 4] = b"VSCT";
const VERSION: u16 = 1;
/// Header bytes.
pub const HEADER_LEN: usize = 12;
/// Bytes per connection.
pub const ENTRY_LEN: usize = 88;

/// Why a snapshot cannot be read. Nothing is imported from a snapshot
/// that fails these checks on its header; an entry that fails them stops
/// the import at that entry (the ones before it are in).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    /// Shorter than its header, or the header's count does not match the
    /// size.
    #[error(
        "conntrack snapshot: {len} bytes do not hold the {count} entries its header announces"
    )]
    Truncated {
        /// Bytes given.
        len: usize,
        /// Entries announced.
        count: u64,
    },
    /// Not a conntrack snapshot.
    #[error("conntrack snapshot: bad magic (not a connection table)")]
    BadMagic,
    /// Written by a format this build does not read.
    #[error("conntrack snapshot: format version {0} (this build reads {VERSION})")]
    Version(u16),
    /// An entry holds a value no tracker writes.
    #[error("conntrack snapshot: entry {index}: {what}")]
    BadEntry {
        /// Position of the entry.
        index: usize,
        /// What is wrong with it.
        what: &'static str,
    },
}

/// Writes the header for `count` entries into `out`.
pub(crate) fn write_header(out: &mut Vec<u8>, count: u32) {
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
}

/// Patches the count of a buffer that starts with a header.
pub(crate) fn set_count(out: &mut [u8], count: u32) {
    if let Some(c) = out.get_mut(8..12) {
        c.copy_from_slice(&count.to_le_bytes());
    }
}

/// Checks the header and returns the entries' bytes.
pub(crate) fn entries(bytes: &[u8]) -> Result<&[u8], SnapshotError> {
    let trunc = |count| SnapshotError::Truncated {
        len: bytes.len(),
        count,
    };
    let (head, body) = bytes.split_first_chunk::<HEADER_LEN>().ok_or(trunc(0))?;
    if &head[0..4] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = u16::from_le_bytes([head[4], head[5]]);
    if version != VERSION {
        return Err(SnapshotError::Version(version));
    }
    let count = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if body.len() != count as usize * ENTRY_LEN {
        return Err(trunc(u64::from(count)));
    }
    Ok(body)
}

/// Appends `c` with `remaining_ms` left before it expires.
pub(crate) fn write_entry(out: &mut Vec<u8>, c: &Conn, remaining_ms: u64) {
    let k = &c.key;
    out.extend_from_slice(&k.src);
    out.extend_from_slice(&k.dst);
    for v in [k.sport, k.dport, k.id, k.zone] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let tmo = TimeoutKind::ALL
        .iter()
        .position(|t| *t == c.tmo)
        .unwrap_or(0) as u8;
    out.extend_from_slice(&[k.proto, u8::from(k.v6), u8::from(c.orig_swapped), tmo]);
    out.extend_from_slice(&c.mark.to_le_bytes());
    let rem = remaining_ms.min(MAX_TIMEOUT_MS) as u32;
    out.extend_from_slice(&rem.to_le_bytes());
    let (kind, sub, tcp) = match c.l4 {
        L4State::Tcp(t) => (1u8, 0u8, t),
        L4State::Other(s) => (2, s as u8, TcpConn::default()),
        L4State::Icmp(s) => (3, s as u8, TcpConn::default()),
        L4State::Free => (0, 0, TcpConn::default()),
    };
    out.extend_from_slice(&[kind, sub, 0, 0]);
    for p in &tcp.peers {
        out.extend_from_slice(&p.seqlo.to_le_bytes());
        out.extend_from_slice(&p.seqhi.to_le_bytes());
        out.extend_from_slice(&p.maxack.to_le_bytes());
        out.extend_from_slice(&p.max_win.to_le_bytes());
        out.extend_from_slice(&[p.wscale, p.state as u8]);
    }
}

/// One entry read back: the connection (expiry not set) and the
/// milliseconds it had left.
pub(crate) struct Entry {
    pub conn: Conn,
    pub remaining_ms: u64,
}

/// A little-endian cursor over one entry (always exactly `ENTRY_LEN`).
struct Rd<'a>(&'a [u8]);

impl Rd<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some((a, rest)) = self.0.split_first_chunk::<N>() {
            out = *a;
            self.0 = rest;
        }
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
}

fn peer_state(v: u8) -> Option<TcpPeerState> {
    use TcpPeerState::*;
    [
        Closed,
        Listen,
        SynSent,
        SynRecv,
        Established,
        CloseWait,
        FinWait1,
        Closing,
        LastAck,
        FinWait2,
        TimeWait,
    ]
    .into_iter()
    .find(|s| *s as u8 == v)
}

/// Decodes entry `index` (`raw` is exactly `ENTRY_LEN` bytes).
pub(crate) fn read_entry(index: usize, raw: &[u8]) -> Result<Entry, SnapshotError> {
    let bad = |what| SnapshotError::BadEntry { index, what };
    let mut r = Rd(raw);
    let src = r.take::<16>();
    let dst = r.take::<16>();
    let (sport, dport, id, zone) = (r.u16(), r.u16(), r.u16(), r.u16());
    let (proto, v6, swapped, tmo) = (r.u8(), r.u8(), r.u8(), r.u8());
    let mark = r.u32();
    let remaining_ms = u64::from(r.u32()).min(MAX_TIMEOUT_MS);
    let (kind, sub) = (r.u8(), r.u8());
    let _pad = r.u16();
    let mut tcp = TcpConn::default();
    for p in tcp.peers.iter_mut() {
        *p = TcpPeer {
            seqlo: r.u32(),
            seqhi: r.u32(),
            maxack: r.u32(),
            max_win: r.u16(),
            wscale: r.u8(),
            state: peer_state(r.u8()).ok_or(bad("unknown TCP peer state"))?,
        };
    }
    if v6 > 1 || swapped > 1 {
        return Err(bad("a flag is neither 0 nor 1"));
    }
    let tmo = *TimeoutKind::ALL
        .get(usize::from(tmo))
        .ok_or(bad("unknown timeout kind"))?;
    let key = ConnKey {
        src,
        dst,
        sport,
        dport,
        id,
        zone,
        proto,
        v6: v6 == 1,
    };
    if key.canonical().1 {
        return Err(bad("key not in canonical order"));
    }
    let l4 = match (kind, sub) {
        (1, _) if proto == 6 => L4State::Tcp(tcp),
        (2, 0) => L4State::Other(OtherState::First),
        (2, 1) => L4State::Other(OtherState::Multiple),
        (2, 2) => L4State::Other(OtherState::Bidir),
        (3, 0) if key.is_icmp() => L4State::Icmp(IcmpState::First),
        (3, 1) if key.is_icmp() => L4State::Icmp(IcmpState::Reply),
        _ => return Err(bad("protocol state does not fit the protocol")),
    };
    let mut conn = Conn::new(key, swapped == 1, l4);
    conn.tmo = tmo;
    conn.mark = mark;
    Ok(Entry { conn, remaining_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[10, 0, 0, 2]);
        let key = ConnKey {
            src,
            dst,
            sport: 40000,
            dport: 80,
            id: 0,
            zone: 7,
            proto: 6,
            v6: false,
        };
        let mut t = TcpConn::default();
        t.peers[0] = TcpPeer {
            seqlo: 1000,
            seqhi: 70000,
            maxack: 5001,
            max_win: 64240,
            wscale: 0x87,
            state: TcpPeerState::Established,
        };
        t.peers[1].state = TcpPeerState::Established;
        let mut c = Conn::new(key, true, L4State::Tcp(t));
        c.tmo = TimeoutKind::TcpEstablished;
        c.mark = 0xdead;
        c
    }

    #[test]
    fn entry_round_trips() {
        let c = conn();
        let mut buf = Vec::new();
        write_header(&mut buf, 1);
        write_entry(&mut buf, &c, 1234);
        assert_eq!(buf.len(), HEADER_LEN + ENTRY_LEN);
        let body = entries(&buf).unwrap();
        let e = read_entry(0, body).unwrap();
        assert_eq!(e.remaining_ms, 1234);
        assert_eq!(e.conn.key, c.key);
        assert_eq!(e.conn.l4, c.l4);
        assert_eq!(e.conn.tmo, c.tmo);
        assert_eq!(e.conn.mark, c.mark);
        assert!(e.conn.orig_swapped);
    }

    #[test]
    fn bad_headers_are_errors() {
        assert!(matches!(
            entries(b"VSCT"),
            Err(SnapshotError::Truncated { .. })
        ));
        let mut buf = Vec::new();
        write_header(&mut buf, 2);
        write_entry(&mut buf, &conn(), 1);
        assert!(matches!(
            entries(&buf),
            Err(SnapshotError::Truncated { count: 2, .. })
        ));
        let mut b = buf.clone();
        b[0] = b'X';
        assert_eq!(entries(&b), Err(SnapshotError::BadMagic));
        let mut b = buf;
        b[4] = 9;
        assert_eq!(entries(&b), Err(SnapshotError::Version(9)));
    }

    #[test]
    fn bad_entries_are_errors_never_panics() {
        let mut buf = Vec::new();
        write_header(&mut buf, 1);
        write_entry(&mut buf, &conn(), 1);
        // Every single-byte corruption of the entry either decodes or is
        // an error.
        for i in HEADER_LEN..buf.len() {
            for v in [0u8, 1, 2, 3, 0x7f, 0xff] {
                let mut b = buf.clone();
                b[i] = v;
                if let Ok(body) = entries(&b) {
                    let _ = read_entry(0, body);
                }
            }
        }
        // A TCP state on a UDP key.
        let mut b = buf.clone();
        b[HEADER_LEN + 40] = 17;
        assert!(matches!(
            read_entry(0, entries(&b).unwrap()),
            Err(SnapshotError::BadEntry { .. })
        ));
        // Unknown peer state.
        let mut b = buf;
        b[HEADER_LEN + 71] = 42;
        assert!(matches!(
            read_entry(0, entries(&b).unwrap()),
            Err(SnapshotError::BadEntry { .. })
        ));
    }
}
