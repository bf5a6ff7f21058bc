//! Egress sizing: what a frame becomes on its way out of a port (zero
//! padding onto a wire) and whether it fits the port's MTU once the port's
//! own additions (tunnel headers with their options) are counted.
//!
//! One function, [`prepare`], decides both; the datapath calls it on every
//! output and `trace --packet` calls it on a copy, so the trace reports the
//! numbers the datapath enforces rather than an estimate of them. The
//! inputs are an [`Egress`]: the datapath builds it from the port object
//! ([`Egress::of_port`]) and keeps the port's [`PortInfo`] in step, so the
//! control plane builds the same one from what the tables know
//! ([`Egress::of_info`]).

use super::pmtu;
use crate::ofproto::PortInfo;
use crate::packet::PacketBuf;
use crate::port::Port;

/// Ethernet's minimum frame length without the FCS.
pub const MIN_FRAME: usize = 60;

/// What a port's egress does to a frame's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Egress {
    /// The MTU enforced (bytes after the Ethernet header): the operator's
    /// `mtu=` when set, else the device's.
    pub mtu: u32,
    /// For a tunnel port, the bytes its encapsulation adds around the whole
    /// inner frame, every option its TLV map can produce included
    /// ([`Port::tunnel_overhead`]); `None` for other ports.
    pub tunnel_overhead: Option<u32>,
    /// Frames shorter than [`MIN_FRAME`] are zero-padded (a port onto a
    /// wire, [`Port::pads_short_frames`]).
    pub pads_short_frames: bool,
}

impl Egress {
    /// The egress of a live port, with the operator's MTU when one is set.
    pub fn of_port(port: &dyn Port, mtu_override: Option<u32>) -> Egress {
        Egress {
            mtu: mtu_override.unwrap_or_else(|| port.mtu()),
            tunnel_overhead: port.tunnel_overhead(),
            pads_short_frames: port.pads_short_frames(),
        }
    }

    /// Writes this egress into `info`: what the control plane does when it
    /// adds a port, so the tables' view is right before the datapath's
    /// first housekeeping confirms it.
    pub fn fill(&self, info: &mut PortInfo) {
        info.mtu = self.mtu;
        info.tunnel_overhead = self.tunnel_overhead;
        info.pads_short_frames = self.pads_short_frames;
    }

    /// The egress the tables know for a port (kept in step with the port by
    /// the datapath).
    pub fn of_info(info: &PortInfo) -> Egress {
        Egress {
            mtu: info.mtu,
            tunnel_overhead: info.tunnel_overhead,
            pads_short_frames: info.pads_short_frames,
        }
    }
}

/// The fate of a frame at a port's egress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// The frame leaves.
    Fits {
        /// Its length as handed to the port (after padding).
        len: usize,
    },
    /// Too big: dropped as `mtu_exceeded`, and the sender is told.
    TooBig {
        /// The bytes that count against the MTU (tunnel headers included).
        counted: usize,
        /// The path MTU to report in ICMP "fragmentation needed" / ICMPv6
        /// "packet too big": the largest IP datagram that would fit.
        report_mtu: u32,
    },
}

/// Prepares `pkt` to leave through a port with egress `e`: onto a wire,
/// short frames are padded to 60 bytes and padding the frame carried is
/// zeroed (never stale buffer bytes: a padding leak is a known
/// vulnerability class; padding lies outside the IP length, so outside
/// every checksum). Then the frame is checked against the MTU with the
/// tunnel overhead counted (see [`pmtu`] for the rule).
#[inline(always)]
pub fn prepare(pkt: &mut PacketBuf, e: &Egress) -> Fit {
    if e.pads_short_frames {
        pad(pkt);
    }
    // What the whole frame would count for, untagged, bounds what it
    // counts for (a GSO segment is no longer than the frame, a tag only
    // takes away): below the MTU, nothing more to look at. That is the
    // every-packet case; the exact count is out of line.
    let len = pkt.len();
    if pmtu::counted(len, false, e.tunnel_overhead) <= e.mtu as usize {
        return Fit::Fits { len };
    }
    fit(pkt, e)
}

#[inline]
fn pad(pkt: &mut PacketBuf) {
    let len = pkt.len();
    let pad = usize::from(pkt.meta.l2_pad_len).min(len);
    if pad > 0 {
        if let Some(tail) = pkt.data_mut().get_mut(len - pad..) {
            tail.fill(0);
        }
    }
    if len < MIN_FRAME {
        pkt.extend_zeroed(MIN_FRAME - len);
    }
}

/// The exact MTU check of [`prepare`].
#[inline(never)]
fn fit(pkt: &PacketBuf, e: &Egress) -> Fit {
    let counted = pmtu::counted_len_pkt(pkt, e.tunnel_overhead);
    if counted > e.mtu as usize {
        Fit::TooBig {
            counted,
            report_mtu: pmtu::reported_mtu(pkt, e.mtu, e.tunnel_overhead),
        }
    } else {
        Fit::Fits { len: pkt.len() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{extract::extract, FlowKey};

    /// An IPv4/UDP frame of `len` bytes, DF set, with its offsets extracted.
    fn udp_frame(len: usize) -> PacketBuf {
        let ip_len = (len - 14) as u16;
        let mut f = vec![0u8; len];
        f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f[20] = 0x40; // DF
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&1000u16.to_be_bytes());
        f[36..38].copy_from_slice(&2000u16.to_be_bytes());
        f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
        let mut p = PacketBuf::from_slice(&f);
        let mut k = FlowKey::default();
        extract(&f, &mut p.meta, &mut k).expect("a valid frame");
        p
    }

    #[test]
    fn short_frames_padded_with_zeroes_only_onto_a_wire() {
        let wire = Egress {
            mtu: 1500,
            tunnel_overhead: None,
            pads_short_frames: true,
        };
        let tap = Egress {
            pads_short_frames: false,
            ..wire
        };
        let mut p = udp_frame(42);
        assert_eq!(prepare(&mut p, &tap), Fit::Fits { len: 42 });
        assert_eq!(prepare(&mut p, &wire), Fit::Fits { len: 60 });
        assert!(p.data()[42..].iter().all(|b| *b == 0));

        // A frame that arrived padded with junk leaves with zero padding.
        let mut f = udp_frame(42).data().to_vec();
        f.extend_from_slice(&[0xaa; 18]);
        let mut p = PacketBuf::from_slice(&f);
        let mut k = FlowKey::default();
        extract(&f, &mut p.meta, &mut k).expect("a valid frame");
        assert_eq!(prepare(&mut p, &wire), Fit::Fits { len: 60 });
        assert!(p.data()[42..].iter().all(|b| *b == 0));
    }

    #[test]
    fn tunnel_overhead_with_options_counts_against_the_mtu() {
        // What a Geneve port over IPv4 reports as its tunnel overhead: outer
        // IP 20 + UDP 8 + Geneve 8 (+ 4 + 8 for one mapped 8-byte option);
        // the whole inner frame, its Ethernet header included, is carried.
        let bare = Egress {
            mtu: 1500,
            tunnel_overhead: Some(20 + 8 + 8),
            pads_short_frames: false,
        };
        let with_option = Egress {
            tunnel_overhead: Some(20 + 8 + 8 + 4 + 8),
            ..bare
        };
        // 1464 + 36 = 1500: fits bare, and 12 bytes too many with the option.
        let mut p = udp_frame(1464);
        assert_eq!(prepare(&mut p, &bare), Fit::Fits { len: 1464 });
        let mut p = udp_frame(1464);
        assert_eq!(
            prepare(&mut p, &with_option),
            Fit::TooBig {
                counted: 1464 + 48,
                // The largest inner IP datagram that fits: 1500 - 48 - 14.
                report_mtu: 1438,
            }
        );
        let mut p = udp_frame(14 + 1438);
        assert_eq!(prepare(&mut p, &with_option), Fit::Fits { len: 1452 });
        // A full-size inner frame never fits a same-MTU underlay.
        let mut p = udp_frame(1514);
        assert!(matches!(prepare(&mut p, &bare), Fit::TooBig { .. }));
    }

    #[test]
    fn quick_check_agrees_with_the_exact_count() {
        // Around the MTU, with and without a tunnel, an 802.1Q or 802.1ad
        // outer tag and GSO: `prepare`'s shortcut never changes the answer.
        for overhead in [None, Some(36), Some(48)] {
            let e = Egress {
                mtu: 1400,
                tunnel_overhead: overhead,
                pads_short_frames: false,
            };
            for len in (1300..1500).chain([14, 20, 60]) {
                for tpid in [None, Some([0x81, 0x00]), Some([0x88, 0xa8])] {
                    for gso in [None, Some(1000u16)] {
                        let mut p = udp_frame(len.max(60));
                        let mut f = p.data()[..len].to_vec();
                        if let Some(t) = tpid {
                            f[12..14].copy_from_slice(&t);
                        }
                        p.set_data(&f);
                        if let Some(size) = gso {
                            p.meta.gso = crate::packet::Gso::TcpV4 { size };
                        }
                        assert_eq!(prepare(&mut p, &e), fit(&p, &e), "{len} {tpid:?} {gso:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn port_info_carries_the_egress_both_ways() {
        let mut info = PortInfo::new(1, "t0", crate::ofproto::PortKind::Geneve);
        let e = Egress {
            mtu: 9000,
            tunnel_overhead: Some(48),
            pads_short_frames: false,
        };
        assert_ne!(Egress::of_info(&info), e);
        e.fill(&mut info);
        assert_eq!(Egress::of_info(&info), e);
        assert_eq!(info.mtu, 9000);
    }
}
