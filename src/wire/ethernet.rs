//! Ethernet II header: destination, source, ethertype (IEEE 802.3 clause 3).
//!
//! Only the 14-byte header: VLAN tags live in [`super::vlan`] because a frame
//! may carry zero, one or two of them, and the key extractor walks them.
//! Values below 0x0600 in the type position are an 802.3 length, not an
//! ethertype; [`EtherType::is_length`] says so and the caller decides (the
//! flow key uses Open vSwitch's `0x05ff` "no ethertype" value).

use super::{copy_in, enum_with_unknown, rd16, rd_arr, sub, tail, tail_mut, wr16, wr_arr};
use super::{Error, Result};

/// A MAC address, most significant byte first (as on the wire).
pub type MacAddr = [u8; 6];

/// The broadcast address.
pub const BROADCAST: MacAddr = [0xff; 6];

/// Length of the header.
pub const HEADER_LEN: usize = 14;

/// Smallest frame on the wire without FCS (IEEE 802.3 minimum 64 with FCS).
/// Shorter frames are padded, which is why the IP length, not the frame
/// length, delimits the datagram.
pub const MIN_FRAME_LEN: usize = 60;

/// Smallest value of the type field that is an ethertype; below it the
/// field is an 802.3 payload length.
pub const ETH_TYPE_MIN: u16 = 0x0600;

enum_with_unknown! {
    /// Ethernet type field values this crate names.
    pub enum EtherType(u16) {
        /// IPv4.
        Ipv4 = 0x0800,
        /// ARP.
        Arp = 0x0806,
        /// Transparent Ethernet Bridging (Geneve/GRE payload is Ethernet).
        TransEtherBridging = 0x6558,
        /// Reverse ARP.
        Rarp = 0x8035,
        /// IEEE 802.1Q customer VLAN tag.
        Vlan = 0x8100,
        /// IPv6.
        Ipv6 = 0x86dd,
        /// IEEE 802.1ad service VLAN tag (QinQ outer tag).
        QinQ = 0x88a8,
    }
}

impl EtherType {
    /// True for the TPIDs that announce a VLAN tag (0x8100, 0x88a8), the
    /// same pair Open vSwitch's `eth_type_vlan` accepts.
    #[inline]
    pub fn is_vlan(self) -> bool {
        matches!(self, EtherType::Vlan | EtherType::QinQ)
    }

    /// True when the value is an 802.3 length, not an ethertype.
    #[inline]
    pub fn is_length(self) -> bool {
        u16::from(self) < ETH_TYPE_MIN
    }
}

/// True for a group (multicast or broadcast) address.
#[inline]
pub fn is_multicast(mac: &MacAddr) -> bool {
    mac[0] & 1 != 0
}

/// True for the IEEE 802.1D reserved link-local group 01:80:c2:00:00:0X
/// (STP BPDUs, LACP, LLDP, 802.1X): frames a bridge must never forward.
#[inline]
pub fn is_link_local(mac: &MacAddr) -> bool {
    mac[..5] == [0x01, 0x80, 0xc2, 0x00, 0x00] && mac[5] & 0xf0 == 0
}

/// A view of an Ethernet II header at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it (reads past its end yield zero).
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer that holds at least a full header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Err(Truncated)` when the buffer is shorter than the header.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        rd_arr(self.buffer.as_ref(), 0)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        rd_arr(self.buffer.as_ref(), 6)
    }

    /// The type field (an ethertype, a VLAN TPID, or an 802.3 length).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(rd16(self.buffer.as_ref(), 12))
    }

    /// Everything after the 14-byte header (VLAN tags included, padding
    /// included: the frame does not know where its payload ends).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        tail(self.buffer.as_ref(), HEADER_LEN)
    }

    /// The header bytes.
    #[inline]
    pub fn header(&self) -> &[u8] {
        sub(self.buffer.as_ref(), 0, HEADER_LEN)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: MacAddr) {
        wr_arr(self.buffer.as_mut(), 0, a)
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: MacAddr) {
        wr_arr(self.buffer.as_mut(), 6, a)
    }

    /// Sets the type field.
    #[inline]
    pub fn set_ethertype(&mut self, t: EtherType) {
        wr16(self.buffer.as_mut(), 12, t.into())
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        tail_mut(self.buffer.as_mut(), HEADER_LEN)
    }
}

/// A parsed Ethernet II header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: MacAddr,
    /// Destination address.
    pub dst_addr: MacAddr,
    /// Type field.
    pub ethertype: EtherType,
}

impl Repr {
    /// Parses a checked view.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        Ok(Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            ethertype: p.ethertype(),
        })
    }

    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header to the front of the view's buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_dst_addr(self.dst_addr);
        p.set_src_addr(self.src_addr);
        p.set_ethertype(self.ethertype);
    }

    /// Writes the header followed by `payload` into `buf` (which must hold
    /// `buffer_len() + payload.len()` bytes; extra bytes are left alone).
    pub fn emit_with_payload(&self, buf: &mut [u8], payload: &[u8]) {
        let mut p = Packet::new_unchecked(&mut *buf);
        self.emit(&mut p);
        copy_in(p.payload_mut(), payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hand-assembled from the Ethernet II layout (dst, src, type 0x0800);
    // the same bytes are cross-checked against etherparse in
    // tests/wire_vectors.rs.
    const HDR: [u8; 14] = [
        0xfa, 0x16, 0x3e, 0xaa, 0xbb, 0xcc, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00,
    ];

    #[test]
    fn parse_emit_round_trip() {
        let p = Packet::new_checked(&HDR[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.dst_addr, [0xfa, 0x16, 0x3e, 0xaa, 0xbb, 0xcc]);
        assert_eq!(r.src_addr, [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(r.ethertype, EtherType::Ipv4);
        let mut out = [0u8; 14];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, HDR);
    }

    #[test]
    fn short_is_truncated_and_unchecked_reads_zero() {
        assert_eq!(
            Packet::new_checked(&HDR[..13]).unwrap_err(),
            Error::Truncated
        );
        let p = Packet::new_unchecked(&HDR[..7]);
        assert_eq!(p.ethertype(), EtherType::Unknown(0));
        assert_eq!(p.src_addr(), [0; 6]);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn ethertype_values() {
        assert_eq!(EtherType::from(0x88a8), EtherType::QinQ);
        assert!(EtherType::from(0x8100).is_vlan());
        assert!(EtherType::from(0x05dc).is_length());
        assert!(!EtherType::Ipv4.is_length());
        assert_eq!(u16::from(EtherType::Unknown(0x1234)), 0x1234);
        assert!(is_link_local(&[0x01, 0x80, 0xc2, 0, 0, 0x0e]));
        assert!(!is_link_local(&[0x01, 0x80, 0xc2, 0, 0, 0x10]));
    }
}
