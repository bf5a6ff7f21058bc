//! What IPv4 and IPv6 share: protocol numbers, the address pair of the
//! pseudo-header, and L4 checksum helpers over a whole IP datagram.
//!
//! The checksum helpers take bytes starting at the IP header and find the
//! datagram's end from the IP length field, so a caller holding a padded
//! Ethernet payload cannot get the padding into a sum by mistake (the field
//! incident behind this module: 54-byte TCP ACKs padded to 60 bytes judged
//! invalid). Conntrack's checksum policy and the datapath's checksum fix-ups
//! both go through here.

use core::net::{Ipv4Addr, Ipv6Addr};

use super::{checksum, enum_with_unknown, icmpv4, icmpv6, ipv4, ipv6, rd8, sub, sub_mut};
use super::{tcp, udp, Error, Result};

enum_with_unknown! {
    /// IP protocol / IPv6 next-header numbers this crate names.
    pub enum IpProtocol(u8) {
        /// IPv6 hop-by-hop options.
        HopByHop = 0,
        /// ICMP.
        Icmp = 1,
        /// IGMP.
        Igmp = 2,
        /// TCP.
        Tcp = 6,
        /// UDP.
        Udp = 17,
        /// IPv6 routing header.
        Ipv6Route = 43,
        /// IPv6 fragment header.
        Ipv6Frag = 44,
        /// GRE.
        Gre = 47,
        /// IPsec ESP.
        Esp = 50,
        /// IPsec AH.
        Ah = 51,
        /// ICMPv6.
        Icmpv6 = 58,
        /// IPv6 "no next header".
        Ipv6NoNxt = 59,
        /// IPv6 destination options.
        Ipv6Opts = 60,
        /// SCTP.
        Sctp = 132,
    }
}

/// The source and destination addresses an L4 checksum's pseudo-header
/// covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrPair {
    /// IPv4 addresses.
    V4 {
        /// Source.
        src: Ipv4Addr,
        /// Destination.
        dst: Ipv4Addr,
    },
    /// IPv6 addresses.
    V6 {
        /// Source.
        src: Ipv6Addr,
        /// Destination.
        dst: Ipv6Addr,
    },
}

impl AddrPair {
    /// Partial (unfolded, uncomplemented) sum of the pseudo-header.
    #[inline]
    pub fn pseudo_sum(&self, proto: IpProtocol, l4_len: usize) -> u32 {
        let len = l4_len.min(u32::MAX as usize) as u32;
        match *self {
            AddrPair::V4 { src, dst } => checksum::pseudo_header_v4(src, dst, proto.into(), len),
            AddrPair::V6 { src, dst } => checksum::pseudo_header_v6(src, dst, proto.into(), len),
        }
    }

    /// True for IPv4.
    #[inline]
    pub fn is_v4(&self) -> bool {
        matches!(self, AddrPair::V4 { .. })
    }
}

/// The verdict on a datagram's L4 checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4Checksum {
    /// Verifies.
    Good,
    /// Does not verify (or is a forbidden zero: UDP over IPv6).
    Bad,
    /// UDP over IPv4 with checksum 0: the sender did not compute one.
    Absent,
    /// Cannot be checked here: a fragment (the checksum covers the
    /// reassembled datagram) or a protocol without a checksum we know.
    NotApplicable,
}

/// Where the L4 header of an IP datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L4Location {
    /// Upper-layer protocol (`Ipv6Frag` for an IPv6 later fragment).
    pub protocol: IpProtocol,
    /// The pseudo-header addresses.
    pub addrs: AddrPair,
    /// Offset of the L4 header from the start of the IP header.
    pub offset: usize,
    /// L4 length: from `offset` to the end of the datagram (IP length).
    pub len: usize,
    /// The datagram is a fragment (first or later).
    pub fragment: bool,
    /// The datagram is a non-first fragment: no L4 header here.
    pub later_fragment: bool,
}

/// Finds the L4 header of the IP datagram at the front of `bytes` (IPv4 or
/// IPv6 by the version nibble; bytes past the IP length are ignored).
pub fn locate_l4(bytes: &[u8]) -> Result<L4Location> {
    match rd8(bytes, 0) >> 4 {
        4 => {
            let p = ipv4::Packet::new_checked(bytes)?;
            let hl = p.header_len();
            Ok(L4Location {
                protocol: p.next_header(),
                addrs: AddrPair::V4 {
                    src: p.src_addr(),
                    dst: p.dst_addr(),
                },
                offset: hl,
                len: usize::from(p.total_len()) - hl,
                fragment: p.is_fragment(),
                later_fragment: p.is_later_fragment(),
            })
        }
        6 => {
            let p = ipv6::Packet::new_checked(bytes)?;
            let u = p.upper_layer()?;
            Ok(L4Location {
                protocol: u.protocol,
                addrs: AddrPair::V6 {
                    src: p.src_addr(),
                    dst: p.dst_addr(),
                },
                offset: ipv6::HEADER_LEN + u.offset,
                len: usize::from(p.payload_len()) - u.offset,
                fragment: u.fragment,
                later_fragment: u.later_fragment,
            })
        }
        _ if bytes.is_empty() => Err(Error::Truncated),
        _ => Err(Error::BadVersion),
    }
}

/// Verifies the TCP, UDP, ICMP or ICMPv6 checksum of the IP datagram at the
/// front of `bytes`, over exactly the L4 bytes the IP length delimits.
/// `Err` when the IP or L4 header is malformed or truncated.
pub fn verify_l4_checksum(bytes: &[u8]) -> Result<L4Checksum> {
    let loc = locate_l4(bytes)?;
    if loc.fragment {
        return Ok(L4Checksum::NotApplicable);
    }
    let seg = sub(bytes, loc.offset, loc.offset + loc.len);
    let good = match loc.protocol {
        IpProtocol::Tcp => tcp::Packet::new_checked(seg)?.verify_checksum(&loc.addrs),
        IpProtocol::Udp => {
            let u = udp::Packet::new_checked(seg)?;
            if u.checksum() == 0 {
                return Ok(if loc.addrs.is_v4() {
                    L4Checksum::Absent
                } else {
                    L4Checksum::Bad
                });
            }
            u.verify_checksum(&loc.addrs)
        }
        IpProtocol::Icmp if loc.addrs.is_v4() => {
            icmpv4::Packet::new_checked(seg)?.verify_checksum()
        }
        IpProtocol::Icmpv6 if !loc.addrs.is_v4() => {
            icmpv6::Packet::new_checked(seg)?.verify_checksum(&loc.addrs)
        }
        _ => return Ok(L4Checksum::NotApplicable),
    };
    Ok(if good {
        L4Checksum::Good
    } else {
        L4Checksum::Bad
    })
}

/// Computes and stores the TCP, UDP, ICMP or ICMPv6 checksum of the IP
/// datagram at the front of `bytes`. Returns whether a checksum was
/// written (not for fragments or other protocols). UDP over IPv4 whose
/// checksum field is 0 is left at 0 ("no checksum" stays "no checksum").
pub fn fill_l4_checksum(bytes: &mut [u8]) -> Result<bool> {
    let loc = locate_l4(bytes)?;
    if loc.fragment {
        return Ok(false);
    }
    let seg = sub_mut(bytes, loc.offset, loc.offset + loc.len);
    match loc.protocol {
        IpProtocol::Tcp => tcp::Packet::new_checked(seg)?.fill_checksum(&loc.addrs),
        IpProtocol::Udp => {
            let mut u = udp::Packet::new_checked(seg)?;
            if loc.addrs.is_v4() && u.checksum() == 0 {
                return Ok(false);
            }
            u.fill_checksum(&loc.addrs)
        }
        IpProtocol::Icmp if loc.addrs.is_v4() => icmpv4::Packet::new_checked(seg)?.fill_checksum(),
        IpProtocol::Icmpv6 if !loc.addrs.is_v4() => {
            icmpv6::Packet::new_checked(seg)?.fill_checksum(&loc.addrs)
        }
        _ => return Ok(false),
    }
    Ok(true)
}
