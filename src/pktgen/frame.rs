//! Prebuilt frames and the stamp they carry.
//!
//! A [`Ring`] holds a few dozen slots, each a complete frame of its size
//! (the sizes follow the IMIX pattern when asked). Sending packet `n` uses
//! slot `n % slots`; a batch never uses one slot twice, and the kernel
//! copies a frame during the send call, so a slot is rewritten only after
//! its previous frame has left. What changes per packet is written in
//! place: the flow's source address and port, the stamp, and the IP and
//! L4 checksums, computed from per-slot partial sums of everything that
//! does not change (RFC 1071 sums are order-free, so the varying words are
//! simply added).
//!
//! The stamp sits right after the UDP or TCP header: magic, sequence
//! number, send time, flow id, 32 bits each ([`STAMP_LEN`] bytes), so it
//! fits a 64-byte IPv4/UDP frame (18 bytes of payload). Sequence numbers
//! are global (one counter over all flows); the receiver widens them to 64
//! bits ([`crate::pktgen::account`]). The send time is the low 32 bits of
//! nanoseconds since the run's epoch: latencies up to 4.29 s are exact.
//!
//! Frame sizes count the 4-byte FCS the NIC would add (the RFC 2544
//! convention: 64 is the smallest Ethernet frame, 1518 the largest
//! untagged one); the bytes handed to the kernel are 4 fewer. A size too
//! small for the headers plus the stamp (IPv6, TCP) is raised to the
//! smallest that fits; [`FrameSpec::frame_sizes`] says what was used.

use crate::wire::checksum::{combine, fold, sum};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The stamp's first word, "vSPG".
pub const MAGIC: u32 = 0x7653_5047;
/// Bytes of the stamp: magic, seq, time, flow.
pub const STAMP_LEN: usize = 16;
/// The frame check sequence, counted in frame sizes but not sent.
pub const FCS_LEN: usize = 4;
/// Smallest frame size (with FCS).
pub const MIN_SIZE: u16 = 64;
/// Largest untagged frame size (with FCS) on a 1500-byte MTU.
pub const MAX_SIZE: u16 = 1518;
/// Most distinct flows.
pub const MAX_FLOWS: u32 = 1_000_000;
/// Source ports per source address before the address moves on.
pub const PORTS_PER_ADDR: u32 = 60_000;
/// IMIX (7:4:1 of 64, 570 and 1518 bytes), interleaved so that a short
/// run of packets already has the mix.
pub const IMIX: [u16; 12] = [64, 570, 64, 64, 1518, 64, 570, 64, 64, 570, 64, 570];

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const UDP_LEN: usize = 8;
const TCP_LEN: usize = 20;

/// Why a frame specification cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// The number of flows is outside 1..=1,000,000.
    #[error("flows must be 1..={MAX_FLOWS}, got {0}")]
    Flows(u32),
    /// A frame size is outside 64..=1518.
    #[error("frame size must be {MIN_SIZE}..={MAX_SIZE} (with FCS), got {0}")]
    Size(u16),
    /// Source and destination addresses are not of the same family, or not
    /// of the family the frames use.
    #[error("addresses {0} and {1} are not both of the frames' IP version")]
    AddressFamily(IpAddr, IpAddr),
    /// The flows would run the source port past 65535.
    #[error("source port {0} leaves no room for {1} ports per address")]
    SourcePort(u16, u32),
}

/// The transport protocol of the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum L4 {
    /// UDP datagrams.
    Udp,
    /// TCP segments (PSH|ACK, mid-connection).
    Tcp,
}

/// Frame sizes (with FCS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sizes {
    /// Every frame this size.
    Fixed(u16),
    /// The [`IMIX`] pattern.
    Imix,
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpec {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// First source address (flow 0); later flows count up from it.
    pub src_ip: IpAddr,
    /// Destination address (the same for every flow).
    pub dst_ip: IpAddr,
    /// First source port (flow 0).
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// UDP or TCP.
    pub l4: L4,
    /// Number of distinct flows (1..=1,000,000).
    pub flows: u32,
    /// Frame sizes.
    pub sizes: Sizes,
}

impl Default for FrameSpec {
    fn default() -> Self {
        FrameSpec {
            src_mac: [0x52, 0x54, 0x00, 0x00, 0x00, 0x01],
            dst_mac: [0x52, 0x54, 0x00, 0x00, 0x00, 0x02],
            src_ip: IpAddr::from([10, 0, 0, 1]),
            dst_ip: IpAddr::from([10, 0, 0, 2]),
            src_port: 1024,
            dst_port: 9,
            l4: L4::Udp,
            flows: 1,
            sizes: Sizes::Fixed(MIN_SIZE),
        }
    }
}

impl FrameSpec {
    /// Checks the specification.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(1..=MAX_FLOWS).contains(&self.flows) {
            return Err(SpecError::Flows(self.flows));
        }
        if let Sizes::Fixed(s) = self.sizes {
            if !(MIN_SIZE..=MAX_SIZE).contains(&s) {
                return Err(SpecError::Size(s));
            }
        }
        if self.src_ip.is_ipv4() != self.dst_ip.is_ipv4() {
            return Err(SpecError::AddressFamily(self.src_ip, self.dst_ip));
        }
        let ports = self.flows.min(PORTS_PER_ADDR);
        if u32::from(self.src_port) + ports > 65_536 {
            return Err(SpecError::SourcePort(self.src_port, ports));
        }
        Ok(())
    }

    /// True for IPv6 frames.
    pub fn is_ipv6(&self) -> bool {
        self.src_ip.is_ipv6()
    }

    fn l3_len(&self) -> usize {
        if self.is_ipv6() {
            IPV6_LEN
        } else {
            IPV4_LEN
        }
    }

    fn l4_len(&self) -> usize {
        match self.l4 {
            L4::Udp => UDP_LEN,
            L4::Tcp => TCP_LEN,
        }
    }

    /// Smallest frame size (with FCS) that holds the headers and the stamp.
    pub fn min_size(&self) -> u16 {
        let need = ETH_LEN + self.l3_len() + self.l4_len() + STAMP_LEN + FCS_LEN;
        (need as u16).max(MIN_SIZE)
    }

    /// The sizes (with FCS) the frames will have, in ring order of one
    /// pattern: the requested ones, each raised to [`FrameSpec::min_size`].
    pub fn frame_sizes(&self) -> Vec<u16> {
        let min = self.min_size();
        match self.sizes {
            Sizes::Fixed(s) => vec![s.max(min)],
            Sizes::Imix => IMIX.iter().map(|&s| s.max(min)).collect(),
        }
    }

    /// Source address and port of flow `flow`.
    pub fn flow_source(&self, flow: u32) -> (IpAddr, u16) {
        let port = self.src_port.wrapping_add((flow % PORTS_PER_ADDR) as u16);
        let step = flow / PORTS_PER_ADDR;
        let ip = match self.src_ip {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(step))),
            IpAddr::V6(a) => {
                IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(u128::from(step))))
            }
        };
        (ip, port)
    }
}

/// What a frame carries right after its L4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Global sequence number (low 32 bits).
    pub seq: u32,
    /// Send time: low 32 bits of nanoseconds since the run's epoch.
    pub time_ns: u32,
    /// Flow id (0..flows).
    pub flow: u32,
}

/// Offsets shared by every slot (they depend only on the headers).
#[derive(Debug, Clone, Copy)]
struct Layout {
    ipv6: bool,
    l4: L4,
    /// Source address in the frame.
    src_ip: usize,
    /// IPv4 header checksum (None for IPv6).
    ip_csum: Option<usize>,
    /// Start of the L4 header.
    l4_off: usize,
    /// L4 checksum field.
    l4_csum: usize,
    /// Start of the stamp.
    stamp: usize,
}

#[derive(Debug, Clone)]
struct Slot {
    frame: Vec<u8>,
    /// Sum of the IPv4 header with its checksum and source address zero.
    ip_base: u32,
    /// Sum of the pseudo-header and segment with the checksum, source
    /// address, source port and the stamp's varying words zero.
    l4_base: u32,
}

/// The ring of prebuilt frames.
#[derive(Debug, Clone)]
pub struct Ring {
    spec: FrameSpec,
    layout: Layout,
    slots: Vec<Slot>,
}

impl Ring {
    /// Builds the frames of `spec`: enough slots for a batch (and a whole
    /// number of IMIX patterns).
    pub fn new(spec: &FrameSpec) -> Result<Ring, SpecError> {
        spec.validate()?;
        let ipv6 = spec.is_ipv6();
        let l3 = spec.l3_len();
        let l4_off = ETH_LEN + l3;
        let layout = Layout {
            ipv6,
            l4: spec.l4,
            src_ip: ETH_LEN + if ipv6 { 8 } else { 12 },
            ip_csum: (!ipv6).then_some(ETH_LEN + 10),
            l4_off,
            l4_csum: l4_off + if spec.l4 == L4::Udp { 6 } else { 16 },
            stamp: l4_off + spec.l4_len(),
        };
        let pattern = spec.frame_sizes();
        let n = pattern.len() * super::BATCH.div_ceil(pattern.len()).max(1);
        let mut slots = Vec::with_capacity(n);
        for i in 0..n {
            slots.push(build_slot(spec, &layout, pattern[i % pattern.len()]));
        }
        Ok(Ring {
            spec: spec.clone(),
            layout,
            slots,
        })
    }

    /// The specification the ring was built from.
    pub fn spec(&self) -> &FrameSpec {
        &self.spec
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: a ring has at least one slot.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Size (with FCS) of the frame of packet `seq`.
    pub fn size_of(&self, seq: u64) -> usize {
        self.slots[(seq % self.slots.len() as u64) as usize]
            .frame
            .len()
            + FCS_LEN
    }

    /// The frame (without FCS) of packet `seq` as last stamped.
    pub fn frame(&self, seq: u64) -> &[u8] {
        &self.slots[(seq % self.slots.len() as u64) as usize].frame
    }

    /// Writes flow, stamp and checksums into the slot of packet `seq`
    /// (slot `seq % len`) and returns the frame (without FCS).
    pub fn stamp(&mut self, seq: u64, stamp: Stamp) -> &[u8] {
        let idx = (seq % self.slots.len() as u64) as usize;
        let (ip, port) = self.spec.flow_source(stamp.flow);
        let l = self.layout;
        let slot = &mut self.slots[idx];
        let f = &mut slot.frame[..];
        let ip_sum = match ip {
            IpAddr::V4(a) => {
                f[l.src_ip..l.src_ip + 4].copy_from_slice(&a.octets());
                sum(&a.octets())
            }
            IpAddr::V6(a) => {
                f[l.src_ip..l.src_ip + 16].copy_from_slice(&a.octets());
                sum(&a.octets())
            }
        };
        f[l.l4_off..l.l4_off + 2].copy_from_slice(&port.to_be_bytes());
        let s = l.stamp;
        f[s + 4..s + 8].copy_from_slice(&stamp.seq.to_be_bytes());
        f[s + 8..s + 12].copy_from_slice(&stamp.time_ns.to_be_bytes());
        f[s + 12..s + 16].copy_from_slice(&stamp.flow.to_be_bytes());
        if let Some(c) = l.ip_csum {
            let v = !fold(combine(&[slot.ip_base, ip_sum]));
            f[c..c + 2].copy_from_slice(&v.to_be_bytes());
        }
        let mut v = !fold(combine(&[
            slot.l4_base,
            ip_sum,
            u32::from(port),
            sum(&f[s + 4..s + 16]),
        ]));
        // UDP sends a computed 0 as 0xffff (0 means "no checksum").
        if l.l4 == L4::Udp && v == 0 {
            v = 0xffff;
        }
        f[l.l4_csum..l.l4_csum + 2].copy_from_slice(&v.to_be_bytes());
        &slot.frame
    }
}

/// Builds one slot's frame (flow fields and stamp words zero) and its
/// partial sums.
fn build_slot(spec: &FrameSpec, l: &Layout, size: u16) -> Slot {
    let len = usize::from(size) - FCS_LEN;
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&spec.dst_mac);
    f[6..12].copy_from_slice(&spec.src_mac);
    let ip_len = len - ETH_LEN;
    let seg_len = len - l.l4_off;
    let proto: u8 = match spec.l4 {
        L4::Udp => 17,
        L4::Tcp => 6,
    };
    let dst_octets: Vec<u8> = match spec.dst_ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut ip_base = 0;
    if l.ipv6 {
        f[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        let h = &mut f[ETH_LEN..ETH_LEN + IPV6_LEN];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&(seg_len as u16).to_be_bytes());
        h[6] = proto;
        h[7] = 64;
        h[24..40].copy_from_slice(&dst_octets);
    } else {
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let h = &mut f[ETH_LEN..ETH_LEN + IPV4_LEN];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        // DF: the generator's frames are never fragmented on the way.
        h[6] = 0x40;
        h[8] = 64;
        h[9] = proto;
        h[16..20].copy_from_slice(&dst_octets);
        ip_base = sum(h);
    }
    {
        let t = &mut f[l.l4_off..];
        t[2..4].copy_from_slice(&spec.dst_port.to_be_bytes());
        match spec.l4 {
            L4::Udp => t[4..6].copy_from_slice(&(seg_len as u16).to_be_bytes()),
            L4::Tcp => {
                t[4..8].copy_from_slice(&1u32.to_be_bytes());
                t[8..12].copy_from_slice(&1u32.to_be_bytes());
                t[12] = 5 << 4;
                t[13] = 0x18; // PSH|ACK
                t[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
            }
        }
    }
    f[l.stamp..l.stamp + 4].copy_from_slice(&MAGIC.to_be_bytes());
    // The rest of the payload: a recognisable, checksum-neutral fill.
    for (i, b) in f[l.stamp + STAMP_LEN..].iter_mut().enumerate() {
        *b = i as u8;
    }
    // Pseudo-header without the source address (added per packet).
    let l4_base = combine(&[
        sum(&dst_octets),
        u32::from(proto),
        (seg_len as u32) >> 16,
        (seg_len as u32) & 0xffff,
        sum(&f[l.l4_off..]),
    ]);
    Slot {
        frame: f,
        ip_base,
        l4_base,
    }
}

/// Finds the stamp in a received frame (behind up to two VLAN tags, in
/// IPv4 or IPv6 without extension headers, UDP or TCP). `None` for any
/// frame that is not one of ours: the receiver counts those as foreign.
/// Never panics, whatever the bytes.
pub fn parse_stamp(frame: &[u8]) -> Option<Stamp> {
    let be16 = |o: usize| -> Option<u16> {
        let b = frame.get(o..o + 2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    };
    let be32 = |o: usize| -> Option<u32> {
        let b = frame.get(o..o + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut off = 12;
    let mut ethertype = be16(off)?;
    for _ in 0..2 {
        if ethertype == 0x8100 || ethertype == 0x88a8 {
            off += 4;
            ethertype = be16(off)?;
        }
    }
    let l3 = off + 2;
    let (proto, l4) = match ethertype {
        0x0800 => {
            let vihl = *frame.get(l3)?;
            if vihl >> 4 != 4 {
                return None;
            }
            (*frame.get(l3 + 9)?, l3 + usize::from(vihl & 0x0f) * 4)
        }
        0x86dd => (*frame.get(l3 + 6)?, l3 + IPV6_LEN),
        _ => return None,
    };
    let stamp = match proto {
        17 => l4 + UDP_LEN,
        6 => l4 + usize::from(*frame.get(l4 + 12)? >> 4) * 4,
        _ => return None,
    };
    if be32(stamp)? != MAGIC {
        return None;
    }
    Some(Stamp {
        seq: be32(stamp + 4)?,
        time_ns: be32(stamp + 8)?,
        flow: be32(stamp + 12)?,
    })
}

/// A Geneve header (RFC 8926) for Ethernet payloads with `vni` and no
/// options: what `--geneve` puts in front of every frame.
pub fn geneve_header(vni: u32) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[2..4].copy_from_slice(&0x6558u16.to_be_bytes());
    h[4..7].copy_from_slice(&(vni & 0x00ff_ffff).to_be_bytes()[1..4]);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn check_with_etherparse(frame: &[u8], spec: &FrameSpec, stamp: Stamp) {
        let p = SlicedPacket::from_ethernet(frame).expect("etherparse parses the frame");
        let (src, dst, payload_len) = match p.net.as_ref().expect("an IP layer") {
            NetSlice::Ipv4(v4) => {
                let h = v4.header();
                let hdr = h.to_header();
                assert_eq!(
                    hdr.calc_header_checksum(),
                    hdr.header_checksum,
                    "IPv4 header checksum"
                );
                assert!(h.dont_fragment());
                (
                    IpAddr::from(h.source_addr()),
                    IpAddr::from(h.destination_addr()),
                    usize::from(h.total_len()) - 20,
                )
            }
            NetSlice::Ipv6(v6) => {
                let h = v6.header();
                (
                    IpAddr::from(h.source_addr()),
                    IpAddr::from(h.destination_addr()),
                    usize::from(h.payload_length()),
                )
            }
            _ => panic!("not IP"),
        };
        let (want_src, want_port) = spec.flow_source(stamp.flow);
        assert_eq!(src, want_src);
        assert_eq!(dst, spec.dst_ip);
        assert_eq!(payload_len, frame.len() - 14 - spec.l3_len());
        match (p.transport.expect("a transport layer"), spec.l4) {
            (TransportSlice::Udp(u), L4::Udp) => {
                let h = u.to_header();
                assert_eq!(h.source_port, want_port);
                assert_eq!(h.destination_port, spec.dst_port);
                assert_eq!(usize::from(h.length), payload_len);
                let want = match (src, dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => h
                        .calc_checksum_ipv4_raw(s.octets(), d.octets(), u.payload())
                        .unwrap(),
                    (IpAddr::V6(s), IpAddr::V6(d)) => h
                        .calc_checksum_ipv6_raw(s.octets(), d.octets(), u.payload())
                        .unwrap(),
                    _ => unreachable!(),
                };
                assert_eq!(h.checksum, want, "UDP checksum");
                assert_eq!(&u.payload()[..4], &MAGIC.to_be_bytes());
            }
            (TransportSlice::Tcp(t), L4::Tcp) => {
                let h = t.to_header();
                assert_eq!(h.source_port, want_port);
                assert_eq!(h.destination_port, spec.dst_port);
                assert!(h.ack && h.psh && !h.syn);
                let want = match (src, dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => h
                        .calc_checksum_ipv4_raw(s.octets(), d.octets(), t.payload())
                        .unwrap(),
                    (IpAddr::V6(s), IpAddr::V6(d)) => h
                        .calc_checksum_ipv6_raw(s.octets(), d.octets(), t.payload())
                        .unwrap(),
                    _ => unreachable!(),
                };
                assert_eq!(h.checksum, want, "TCP checksum");
            }
            (t, l4) => panic!("transport {t:?} for {l4:?}"),
        }
        assert_eq!(parse_stamp(frame), Some(stamp));
    }

    fn specs() -> Vec<FrameSpec> {
        let mut v = Vec::new();
        for (src, dst) in [
            (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2])),
            (
                "fd00::1".parse().unwrap(),
                "fd00::2".parse::<IpAddr>().unwrap(),
            ),
        ] {
            for l4 in [L4::Udp, L4::Tcp] {
                for sizes in [
                    Sizes::Fixed(64),
                    Sizes::Fixed(65),
                    Sizes::Fixed(1518),
                    Sizes::Imix,
                ] {
                    v.push(FrameSpec {
                        src_ip: src,
                        dst_ip: dst,
                        l4,
                        sizes,
                        flows: 1_000_000,
                        ..FrameSpec::default()
                    });
                }
            }
        }
        v
    }

    #[test]
    fn frames_parse_and_checksum_with_etherparse() {
        for spec in specs() {
            let mut ring = Ring::new(&spec).unwrap();
            // Values that exercise carries: all-ones words, flows in the
            // last address step, sequence numbers across slots.
            let cases = [
                (0u64, 0u32, 0u32),
                (1, 0xffff_ffff, 999_999),
                (77, 0x1234_5678, 60_000),
                (u64::from(u32::MAX) + 5, 0xffff_0000, 123_457),
            ];
            for (seq, t, flow) in cases {
                let st = Stamp {
                    seq: seq as u32,
                    time_ns: t,
                    flow,
                };
                let f = ring.stamp(seq, st).to_vec();
                assert_eq!(f.len() + FCS_LEN, ring.size_of(seq), "{spec:?}");
                check_with_etherparse(&f, &spec, st);
            }
        }
    }

    #[test]
    fn udp_checksum_never_zero() {
        // Search a stamp whose computed UDP checksum folds to zero and
        // check it is sent as 0xffff (both are the same one's-complement
        // value; 0 would mean "no checksum").
        let spec = FrameSpec::default();
        let mut ring = Ring::new(&spec).unwrap();
        let mut found = false;
        for t in 0..=0xffffu32 {
            let st = Stamp {
                seq: 0,
                time_ns: t,
                flow: 0,
            };
            let f = ring.stamp(0, st).to_vec();
            let c = u16::from_be_bytes([f[40], f[41]]);
            assert_ne!(c, 0);
            if c == 0xffff {
                found = true;
                check_with_etherparse(&f, &spec, st);
                break;
            }
        }
        assert!(found, "some time value makes the checksum 0xffff");
    }

    #[test]
    fn sizes_are_raised_to_fit_the_stamp() {
        let v4udp = FrameSpec::default();
        assert_eq!(v4udp.min_size(), 64);
        let v4tcp = FrameSpec {
            l4: L4::Tcp,
            ..FrameSpec::default()
        };
        assert_eq!(v4tcp.min_size(), 14 + 20 + 20 + 16 + 4);
        let v6udp = FrameSpec {
            src_ip: "fd00::1".parse().unwrap(),
            dst_ip: "fd00::2".parse().unwrap(),
            ..FrameSpec::default()
        };
        assert_eq!(v6udp.min_size(), 14 + 40 + 8 + 16 + 4);
        assert_eq!(v6udp.frame_sizes(), vec![82]);
    }

    #[test]
    fn imix_is_seven_four_one() {
        let spec = FrameSpec {
            sizes: Sizes::Imix,
            ..FrameSpec::default()
        };
        let ring = Ring::new(&spec).unwrap();
        assert_eq!(ring.len() % 12, 0);
        assert!(ring.len() >= crate::pktgen::BATCH);
        let mut n = [0usize; 3];
        let total = 12 * 1000;
        for seq in 0..total as u64 {
            match ring.size_of(seq) {
                64 => n[0] += 1,
                570 => n[1] += 1,
                1518 => n[2] += 1,
                s => panic!("size {s}"),
            }
        }
        assert_eq!(n, [7000, 4000, 1000]);
        // Any 12 consecutive packets already have the mix.
        let mut w: Vec<usize> = (5..17).map(|s| ring.size_of(s)).collect();
        w.sort();
        assert_eq!(w.iter().filter(|&&s| s == 64).count(), 7);
        assert_eq!(w.iter().filter(|&&s| s == 1518).count(), 1);
    }

    #[test]
    fn flows_vary_source_address_and_port() {
        let spec = FrameSpec {
            flows: 1_000_000,
            ..FrameSpec::default()
        };
        let mut seen = std::collections::HashSet::new();
        for f in 0..spec.flows {
            assert!(seen.insert(spec.flow_source(f)), "flow {f} repeats");
        }
        assert_eq!(spec.flow_source(0), (IpAddr::from([10, 0, 0, 1]), 1024));
        assert_eq!(
            spec.flow_source(PORTS_PER_ADDR),
            (IpAddr::from([10, 0, 0, 2]), 1024)
        );
        assert_eq!(
            spec.flow_source(999_999),
            (IpAddr::from([10, 0, 0, 17]), 1024 + 39_999)
        );
        let v6 = FrameSpec {
            src_ip: "fd00::ffff:ffff".parse().unwrap(),
            dst_ip: "fd00::2".parse().unwrap(),
            ..spec
        };
        assert_eq!(
            v6.flow_source(PORTS_PER_ADDR).0,
            "fd00::1:0:0".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn bad_specs_are_errors() {
        let d = FrameSpec::default();
        let bad = [
            FrameSpec {
                flows: 0,
                ..d.clone()
            },
            FrameSpec {
                flows: MAX_FLOWS + 1,
                ..d.clone()
            },
            FrameSpec {
                sizes: Sizes::Fixed(63),
                ..d.clone()
            },
            FrameSpec {
                sizes: Sizes::Fixed(1519),
                ..d.clone()
            },
            FrameSpec {
                dst_ip: "fd00::2".parse().unwrap(),
                ..d.clone()
            },
            FrameSpec {
                src_port: 65_000,
                flows: 1000,
                ..d.clone()
            },
        ];
        for s in bad {
            assert!(Ring::new(&s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn foreign_frames_have_no_stamp() {
        assert_eq!(parse_stamp(&[]), None);
        assert_eq!(parse_stamp(&[0u8; 60]), None);
        // An ARP frame.
        let mut arp = [0u8; 60];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert_eq!(parse_stamp(&arp), None);
        // One of ours, with the magic damaged, or cut short.
        let mut ring = Ring::new(&FrameSpec::default()).unwrap();
        let st = Stamp {
            seq: 9,
            time_ns: 8,
            flow: 0,
        };
        let mut f = ring.stamp(9, st).to_vec();
        assert_eq!(parse_stamp(&f), Some(st));
        for cut in 0..f.len() {
            let _ = parse_stamp(&f[..cut]);
        }
        assert_eq!(parse_stamp(&f[..f.len() - 10]), None);
        f[42] ^= 1;
        assert_eq!(parse_stamp(&f), None);
    }

    #[test]
    fn stamp_found_behind_vlan_tags() {
        let mut ring = Ring::new(&FrameSpec::default()).unwrap();
        let st = Stamp {
            seq: 3,
            time_ns: 4,
            flow: 0,
        };
        let f = ring.stamp(3, st).to_vec();
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20]);
        tagged.extend_from_slice(&f[12..]);
        assert_eq!(parse_stamp(&tagged), Some(st));
    }

    #[test]
    fn geneve_header_layout() {
        let h = geneve_header(0x0a0b0c);
        assert_eq!(h, [0, 0, 0x65, 0x58, 0x0a, 0x0b, 0x0c, 0]);
    }
}
