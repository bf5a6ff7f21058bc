//! ARP (RFC 826), with the Ethernet/IPv4 shape the flow key understands.
//!
//! The view reads any hardware/protocol length pair; [`Repr`] (and the key
//! extractor, as Open vSwitch's `flow_extract`) only accept Ethernet (1)
//! over IPv4 (0x0800) with 6- and 4-byte addresses.

use core::net::Ipv4Addr;

use super::{enum_with_unknown, rd16, rd8, sub, wr16, wr8, wr_arr, EtherType, MacAddr};
use super::{Error, Result};

/// Length of the fixed part (before the addresses).
pub const FIXED_LEN: usize = 8;
/// Length of an Ethernet/IPv4 ARP packet.
pub const ETH_IPV4_LEN: usize = 28;

enum_with_unknown! {
    /// ARP opcodes.
    pub enum Operation(u16) {
        /// Request.
        Request = 1,
        /// Reply.
        Reply = 2,
    }
}

/// A view of an ARP packet.
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

    /// Wraps a buffer that holds the fixed part and all four addresses
    /// (`Truncated` otherwise).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The check [`Packet::new_checked`] does.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < FIXED_LEN || len < self.len_needed() {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    fn len_needed(&self) -> usize {
        FIXED_LEN + 2 * (usize::from(self.hardware_len()) + usize::from(self.protocol_len()))
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Hardware type (1 = Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        rd16(self.buffer.as_ref(), 0)
    }

    /// Protocol type.
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(rd16(self.buffer.as_ref(), 2))
    }

    /// Hardware address length.
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        rd8(self.buffer.as_ref(), 4)
    }

    /// Protocol address length.
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        rd8(self.buffer.as_ref(), 5)
    }

    /// Opcode.
    #[inline]
    pub fn operation(&self) -> Operation {
        Operation::from(rd16(self.buffer.as_ref(), 6))
    }

    fn hl(&self) -> usize {
        usize::from(self.hardware_len())
    }

    fn pl(&self) -> usize {
        usize::from(self.protocol_len())
    }

    /// Sender hardware address.
    #[inline]
    pub fn source_hardware_addr(&self) -> &[u8] {
        let s = FIXED_LEN;
        sub(self.buffer.as_ref(), s, s + self.hl())
    }

    /// Sender protocol address.
    #[inline]
    pub fn source_protocol_addr(&self) -> &[u8] {
        let s = FIXED_LEN + self.hl();
        sub(self.buffer.as_ref(), s, s + self.pl())
    }

    /// Target hardware address.
    #[inline]
    pub fn target_hardware_addr(&self) -> &[u8] {
        let s = FIXED_LEN + self.hl() + self.pl();
        sub(self.buffer.as_ref(), s, s + self.hl())
    }

    /// Target protocol address.
    #[inline]
    pub fn target_protocol_addr(&self) -> &[u8] {
        let s = FIXED_LEN + 2 * self.hl() + self.pl();
        sub(self.buffer.as_ref(), s, s + self.pl())
    }

    /// True for Ethernet / IPv4 with 6- and 4-byte addresses.
    #[inline]
    pub fn is_eth_ipv4(&self) -> bool {
        self.hardware_type() == 1
            && self.protocol_type() == EtherType::Ipv4
            && self.hardware_len() == 6
            && self.protocol_len() == 4
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the hardware type.
    pub fn set_hardware_type(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 0, v)
    }

    /// Sets the protocol type.
    pub fn set_protocol_type(&mut self, v: EtherType) {
        wr16(self.buffer.as_mut(), 2, v.into())
    }

    /// Sets the hardware address length.
    pub fn set_hardware_len(&mut self, v: u8) {
        wr8(self.buffer.as_mut(), 4, v)
    }

    /// Sets the protocol address length.
    pub fn set_protocol_len(&mut self, v: u8) {
        wr8(self.buffer.as_mut(), 5, v)
    }

    /// Sets the opcode.
    pub fn set_operation(&mut self, v: Operation) {
        wr16(self.buffer.as_mut(), 6, v.into())
    }
}

/// A parsed Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Opcode.
    pub operation: Operation,
    /// Sender hardware address.
    pub source_hardware_addr: MacAddr,
    /// Sender protocol address.
    pub source_protocol_addr: Ipv4Addr,
    /// Target hardware address.
    pub target_hardware_addr: MacAddr,
    /// Target protocol address.
    pub target_protocol_addr: Ipv4Addr,
}

impl Repr {
    /// Parses a view; `Malformed` unless Ethernet/IPv4.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        if !p.is_eth_ipv4() {
            return Err(Error::Malformed);
        }
        let b = p.buffer.as_ref();
        Ok(Repr {
            operation: p.operation(),
            source_hardware_addr: super::rd_arr(b, 8),
            source_protocol_addr: Ipv4Addr::from(super::rd32(b, 14)),
            target_hardware_addr: super::rd_arr(b, 18),
            target_protocol_addr: Ipv4Addr::from(super::rd32(b, 24)),
        })
    }

    /// Always 28.
    pub const fn buffer_len(&self) -> usize {
        ETH_IPV4_LEN
    }

    /// Writes the packet.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_hardware_type(1);
        p.set_protocol_type(EtherType::Ipv4);
        p.set_hardware_len(6);
        p.set_protocol_len(4);
        p.set_operation(self.operation);
        let b = p.buffer.as_mut();
        wr_arr(b, 8, self.source_hardware_addr);
        wr_arr(b, 14, self.source_protocol_addr.octets());
        wr_arr(b, 18, self.target_hardware_addr);
        wr_arr(b, 24, self.target_protocol_addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // "who-has 10.0.0.2 tell 10.0.0.1" from 52:54:00:12:34:56, laid out per
    // RFC 826 (hand-assembled; cross-checked with etherparse in
    // tests/wire_vectors.rs).
    const REQ: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 10, 0,
        0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2,
    ];

    #[test]
    fn round_trip() {
        let p = Packet::new_checked(&REQ[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.operation, Operation::Request);
        assert_eq!(r.source_protocol_addr, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(r.target_protocol_addr, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(p.target_hardware_addr(), &[0; 6]);
        let mut out = [0u8; 28];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, REQ);
    }

    #[test]
    fn errors() {
        assert_eq!(
            Packet::new_checked(&REQ[..27]).unwrap_err(),
            Error::Truncated
        );
        let mut b = REQ;
        b[5] = 16; // IPv6-sized protocol addresses: 8 + 2 * 22 bytes needed
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        b[5] = 2;
        let p = Packet::new_checked(&b[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap_err(), Error::Malformed);
    }
}
