//! The virtio-net header: how a vnet_hdr TAP or a PACKET_VNET_HDR socket
//! describes offloads, translated to and from [`PacketMeta`].
//!
//! Receive: `NEEDS_CSUM` becomes [`CsumStatus::Partial`], `DATA_VALID`
//! becomes [`CsumStatus::Verified`], `GSO_TCPV4/6` becomes [`Gso`] with the
//! segment size. Transmit: the reverse, so super-packets and partial
//! checksums pass straight through between offload-capable ports. We never
//! claim `DATA_VALID` on transmit: the datapath may have rewritten headers,
//! and the receiving kernel checking a checksum costs little.
//!
//! Byte order: the kernel uses host order for the legacy header (no
//! TUNSETVNETLE), which is what we use on both sides.

use crate::packet::gso::{self, GsoError};
use crate::packet::{CsumStatus, Gso, PacketBuf, PacketMeta};
use crate::wire::checksum;

/// Header length (`struct virtio_net_hdr`, without `num_buffers`).
pub const LEN: usize = crate::port::sys::tun::VNET_HDR_LEN;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP` (UFO, never negotiated by us).
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN` (a flag on top of the type).
pub const GSO_ECN: u8 = 0x80;

/// A decoded virtio_net_hdr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// F_NEEDS_CSUM / F_DATA_VALID.
    pub flags: u8,
    /// GSO_* type.
    pub gso_type: u8,
    /// Bytes of headers (a hint for the linear part).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
}

/// Why a received header cannot be turned into metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VnetError {
    /// A GSO type we did not negotiate (UDP fragmentation, USO).
    UnsupportedGso(u8),
}

impl VnetHdr {
    /// Decodes the header bytes.
    pub fn parse(b: &[u8; LEN]) -> VnetHdr {
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16::from_ne_bytes([b[2], b[3]]),
            gso_size: u16::from_ne_bytes([b[4], b[5]]),
            csum_start: u16::from_ne_bytes([b[6], b[7]]),
            csum_offset: u16::from_ne_bytes([b[8], b[9]]),
        }
    }

    /// Encodes the header bytes.
    pub fn emit(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// Fills `meta.csum` and `meta.gso` from a received header.
    pub fn apply_to(&self, meta: &mut PacketMeta) -> Result<(), VnetError> {
        meta.csum = if self.flags & F_NEEDS_CSUM != 0 {
            CsumStatus::Partial {
                csum_start: self.csum_start,
                csum_offset: self.csum_offset,
            }
        } else if self.flags & F_DATA_VALID != 0 {
            CsumStatus::Verified
        } else {
            CsumStatus::Unknown
        };
        // The ECN flag only says "CWR may be set": our segmentation keeps
        // CWR on the first segment, as the kernel does.
        meta.gso = match self.gso_type & !GSO_ECN {
            GSO_NONE => Gso::None,
            GSO_TCPV4 => Gso::TcpV4 {
                size: self.gso_size,
            },
            GSO_TCPV6 => Gso::TcpV6 {
                size: self.gso_size,
            },
            t => return Err(VnetError::UnsupportedGso(t)),
        };
        Ok(())
    }

    /// Shifts `csum_start` after bytes were inserted in front of it (a VLAN
    /// tag put back in front of the IP header).
    pub fn shift(&mut self, by: u16) {
        if self.flags & F_NEEDS_CSUM != 0 {
            self.csum_start = self.csum_start.saturating_add(by);
        }
        if self.hdr_len != 0 {
            self.hdr_len = self.hdr_len.saturating_add(by);
        }
    }
}

/// The header to send `pkt` with to an offload-capable port. A GSO packet
/// whose checksum is not already partial at its TCP header gets the
/// pseudo-header sum written into its TCP checksum field (what the kernel
/// expects of a GSO packet), hence `&mut`.
pub fn header_for(pkt: &mut PacketBuf) -> Result<VnetHdr, GsoError> {
    let mut h = VnetHdr::default();
    match pkt.meta.gso {
        Gso::None => {
            if let CsumStatus::Partial {
                csum_start,
                csum_offset,
            } = pkt.meta.csum
            {
                let end = usize::from(csum_start) + usize::from(csum_offset) + 2;
                if end > pkt.len() {
                    return Err(GsoError::BadCsumOffsets);
                }
                h.flags = F_NEEDS_CSUM;
                h.csum_start = csum_start;
                h.csum_offset = csum_offset;
                h.hdr_len = end as u16;
            }
        }
        Gso::TcpV4 { size } | Gso::TcpV6 { size } => {
            let s = gso::Segmenter::new(pkt.data(), pkt.meta.gso)?;
            let hd = *s.headers();
            let l4 = u16::try_from(hd.l4_ofs).map_err(|_| GsoError::Malformed)?;
            let partial_here = matches!(pkt.meta.csum,
                CsumStatus::Partial { csum_start, csum_offset: 16 } if csum_start == l4);
            if !partial_here {
                write_pseudo_sum(pkt, &hd)?;
                pkt.meta.csum = CsumStatus::Partial {
                    csum_start: l4,
                    csum_offset: 16,
                };
            }
            h.flags = F_NEEDS_CSUM;
            h.gso_type = if hd.ipv4 { GSO_TCPV4 } else { GSO_TCPV6 };
            h.gso_size = size;
            h.hdr_len = u16::try_from(s.header_len()).map_err(|_| GsoError::Malformed)?;
            h.csum_start = l4;
            h.csum_offset = 16;
        }
    }
    Ok(h)
}

/// Writes the (non-complemented) pseudo-header sum into the TCP checksum
/// field, the state CHECKSUM_PARTIAL expects.
fn write_pseudo_sum(pkt: &mut PacketBuf, hd: &gso::Headers) -> Result<(), GsoError> {
    let f = pkt.data_mut();
    let l4 = hd.l4_ofs;
    let len = hd.ip_end.checked_sub(l4).ok_or(GsoError::Truncated)?;
    let sum = hd.pseudo_header(f, 6, len as u32)?;
    f.get_mut(l4 + 16..l4 + 18)
        .ok_or(GsoError::Truncated)?
        .copy_from_slice(&checksum::fold(sum).to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    #[test]
    fn parse_emit_roundtrip_and_meta() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.emit()), h);
        let mut m = PacketMeta::default();
        h.apply_to(&mut m).unwrap();
        assert_eq!(m.gso, Gso::TcpV4 { size: 1448 });
        assert_eq!(
            m.csum,
            CsumStatus::Partial {
                csum_start: 34,
                csum_offset: 16
            }
        );
        let v = VnetHdr {
            flags: F_DATA_VALID,
            ..Default::default()
        };
        v.apply_to(&mut m).unwrap();
        assert_eq!((m.csum, m.gso), (CsumStatus::Verified, Gso::None));
        let u = VnetHdr {
            gso_type: GSO_UDP,
            ..Default::default()
        };
        assert_eq!(u.apply_to(&mut m), Err(VnetError::UnsupportedGso(GSO_UDP)));
    }

    #[test]
    fn header_for_gso_writes_pseudo_sum() {
        // eth + ipv4 10.0.0.1 -> 10.0.0.2 (tot_len 20+20+3000) + tcp doff=5
        // ACK, checksum field garbage (0xabcd), 3000 payload bytes.
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[16..18].copy_from_slice(&3040u16.to_be_bytes());
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[46] = 0x50;
        f[47] = 0x10;
        f[50..52].copy_from_slice(&[0xab, 0xcd]);
        f.extend(vec![7u8; 3000]);
        let mut p = PacketBuf::from_slice(&f);
        p.meta.gso = Gso::TcpV4 { size: 1448 };
        let h = header_for(&mut p).unwrap();
        assert_eq!(
            (
                h.gso_type,
                h.gso_size,
                h.hdr_len,
                h.csum_start,
                h.csum_offset
            ),
            (GSO_TCPV4, 1448, 54, 34, 16)
        );
        let want = checksum::fold(checksum::pseudo_header_v4(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            3020,
        ));
        assert_eq!(&p.data()[50..52], &want.to_be_bytes());
        // Completing that partial sum gives the real TCP checksum.
        gso::complete_checksum(&mut p).unwrap();
        let seg = &p.data()[34..];
        let full = checksum::l4_checksum(
            checksum::pseudo_header_v4(
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                6,
                3020,
            ),
            seg,
        );
        assert_eq!(full, 0, "checksum verifies");
    }
}
