//! VLAN tags: IEEE 802.1Q (TPID 0x8100) and 802.1ad (TPID 0x88a8).
//!
//! A tag is four bytes on the wire: the TPID, which sits in the preceding
//! header's type field, then the TCI (PCP 3 bits, DEI 1 bit, VID 12 bits).
//! This view starts at the TCI, so it is the 2-byte TCI followed by the
//! 2-byte type of whatever comes next: the same shape whether the tag is the
//! outer (service, 802.1ad) or the inner (customer, 802.1Q) one. The TPID
//! itself is [`super::EtherType::Vlan`] or [`super::EtherType::QinQ`] in the
//! header before.
//!
//! A tag needs both fields: a TPID followed by fewer than four bytes is
//! [`Error::BadVlan`] ("a tag with nothing behind it"), which is how a frame
//! cut right after its tag shows up.

use super::{copy_in, rd16, sub, tail, tail_mut, wr16, EtherType};
use super::{Error, Result};

/// Length of the part of a tag after the TPID (TCI + inner type).
pub const HEADER_LEN: usize = 4;

/// On-wire size of a whole tag (TPID + TCI).
pub const TAG_LEN: usize = 4;

/// A view of a VLAN tag's TCI and inner type.
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

    /// Wraps a buffer that holds at least a TCI and a type.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// `Err(BadVlan)` when the tag has nothing behind it.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::BadVlan)
        } else {
            Ok(())
        }
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The raw TCI.
    #[inline]
    pub fn tci(&self) -> u16 {
        rd16(self.buffer.as_ref(), 0)
    }

    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator (the old CFI bit).
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN id (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// Type of what follows the tag (another TPID for a stacked tag).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(rd16(self.buffer.as_ref(), 2))
    }

    /// What follows the tag.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        tail(self.buffer.as_ref(), HEADER_LEN)
    }

    /// The tag bytes (TCI + type).
    #[inline]
    pub fn header(&self) -> &[u8] {
        sub(self.buffer.as_ref(), 0, HEADER_LEN)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the raw TCI.
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        wr16(self.buffer.as_mut(), 0, tci)
    }

    /// Sets the VLAN id, keeping PCP and DEI.
    #[inline]
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci)
    }

    /// Sets the priority, keeping DEI and VID.
    #[inline]
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(pcp & 7) << 13);
        self.set_tci(tci)
    }

    /// Sets the inner type.
    #[inline]
    pub fn set_ethertype(&mut self, t: EtherType) {
        wr16(self.buffer.as_mut(), 2, t.into())
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        tail_mut(self.buffer.as_mut(), HEADER_LEN)
    }
}

/// A parsed VLAN tag (the TPID belongs to the header before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Priority code point (0..=7).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN id (0..=4095).
    pub vid: u16,
    /// Type of what follows.
    pub ethertype: EtherType,
}

impl Repr {
    /// Parses a view.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Result<Repr> {
        p.check_len()?;
        Ok(Repr {
            pcp: p.pcp(),
            dei: p.dei(),
            vid: p.vid(),
            ethertype: p.ethertype(),
        })
    }

    /// The TCI this tag encodes.
    #[inline]
    pub fn tci(&self) -> u16 {
        (u16::from(self.pcp & 7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff)
    }

    /// Bytes [`Repr::emit`] writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes TCI and inner type.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        p.set_tci(self.tci());
        p.set_ethertype(self.ethertype);
    }

    /// Writes the tag followed by `payload`.
    pub fn emit_with_payload(&self, buf: &mut [u8], payload: &[u8]) {
        let mut p = Packet::new_unchecked(&mut *buf);
        self.emit(&mut p);
        copy_in(p.payload_mut(), payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tci_fields() {
        // TCI a064: PCP 5, DEI 0, VID 100; inner type IPv4. Hand-assembled
        // from the 802.1Q TCI layout.
        let b = [0xa0, 0x64, 0x08, 0x00];
        let p = Packet::new_checked(&b[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr {
                pcp: 5,
                dei: false,
                vid: 100,
                ethertype: EtherType::Ipv4
            }
        );
        let mut out = [0u8; 4];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, b);
        assert_eq!(Packet::new_checked(&b[..3]).unwrap_err(), Error::BadVlan);
    }

    #[test]
    fn setters_keep_other_bits() {
        let mut b = [0xb0, 0x64, 0x08, 0x00];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_vid(0xfff);
        assert_eq!(p.tci(), 0xbfff);
        p.set_pcp(1);
        assert_eq!(p.tci(), 0x3fff);
        assert!(p.dei());
    }
}
