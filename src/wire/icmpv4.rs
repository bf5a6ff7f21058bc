//! ICMP for IPv4 (RFC 792, RFC 1191 "fragmentation needed" MTU).
//!
//! Every message is type, code, checksum, four type-specific bytes, then
//! data. The view wraps the ICMP message as the IP header delimits it; the
//! checksum covers exactly that (no pseudo-header in ICMPv4).
//!
//! The datapath builds "fragmentation needed" (type 3 code 4) replies with
//! [`Repr::DstUnreachable`] when a frame does not fit the egress MTU, so
//! path MTU discovery heals the connection instead of freezing it.

use super::{checksum, copy_in, enum_with_unknown, rd16, rd8, tail, tail_mut, wr16, wr8};
use super::{Error, Result};

/// Length of the header (type, code, checksum, rest-of-header).
pub const HEADER_LEN: usize = 8;

/// Destination unreachable code: fragmentation needed and DF set.
pub const CODE_FRAG_NEEDED: u8 = 4;

enum_with_unknown! {
    /// ICMPv4 message types this crate names.
    pub enum Message(u8) {
        /// Echo reply.
        EchoReply = 0,
        /// Destination unreachable.
        DstUnreachable = 3,
        /// Redirect.
        Redirect = 5,
        /// Echo request.
        EchoRequest = 8,
        /// Time exceeded.
        TimeExceeded = 11,
        /// Parameter problem.
        ParamProblem = 12,
    }
}

impl Message {
    /// True for the error messages that quote an offending datagram
    /// (conntrack relates them to the quoted connection).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            Message::DstUnreachable
                | Message::Redirect
                | Message::TimeExceeded
                | Message::ParamProblem
        )
    }
}

/// A view of an ICMPv4 message.
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

    /// Wraps a message of at least 8 bytes (`Truncated` otherwise).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The check [`Packet::new_checked`] does.
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

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> Message {
        Message::from(rd8(self.buffer.as_ref(), 0))
    }

    /// Code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        rd8(self.buffer.as_ref(), 1)
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        rd16(self.buffer.as_ref(), 2)
    }

    /// Echo identifier (bytes 4..6).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        rd16(self.buffer.as_ref(), 4)
    }

    /// Echo sequence number (bytes 6..8).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        rd16(self.buffer.as_ref(), 6)
    }

    /// Next-hop MTU of a "fragmentation needed" message (bytes 6..8).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        rd16(self.buffer.as_ref(), 6)
    }

    /// The four type-specific bytes as one word.
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        super::rd32(self.buffer.as_ref(), 4)
    }

    /// Data after the 8-byte header (for errors: the quoted datagram).
    #[inline]
    pub fn data(&self) -> &[u8] {
        tail(self.buffer.as_ref(), HEADER_LEN)
    }

    /// True when the checksum verifies over the whole message.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the type.
    #[inline]
    pub fn set_msg_type(&mut self, m: Message) {
        wr8(self.buffer.as_mut(), 0, m.into())
    }

    /// Sets the code.
    #[inline]
    pub fn set_msg_code(&mut self, c: u8) {
        wr8(self.buffer.as_mut(), 1, c)
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        wr16(self.buffer.as_mut(), 2, v)
    }

    /// Sets the four type-specific bytes.
    #[inline]
    pub fn set_rest_of_header(&mut self, v: u32) {
        super::wr32(self.buffer.as_mut(), 4, v)
    }

    /// Mutable data.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        tail_mut(self.buffer.as_mut(), HEADER_LEN)
    }

    /// Computes and stores the checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Patches the checksum after a 16-bit word of the message changed
    /// (e.g. the echo identifier under NAT).
    #[inline]
    pub fn rewrite_echo_ident(&mut self, ident: u16) {
        let c = checksum::update16(self.checksum(), self.echo_ident(), ident);
        wr16(self.buffer.as_mut(), 4, ident);
        self.set_checksum(c);
    }
}

/// A parsed ICMPv4 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    /// Echo request.
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Echo reply.
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// Destination unreachable; `next_hop_mtu` is meaningful for code 4.
    DstUnreachable {
        /// Code.
        code: u8,
        /// Next-hop MTU (RFC 1191), 0 for other codes.
        next_hop_mtu: u16,
        /// The quoted IP header + at least 8 bytes of its payload.
        data: &'a [u8],
    },
    /// Time exceeded.
    TimeExceeded {
        /// Code.
        code: u8,
        /// The quoted datagram.
        data: &'a [u8],
    },
    /// Anything else, kept whole.
    Other {
        /// Type.
        msg_type: Message,
        /// Code.
        code: u8,
        /// The four type-specific bytes.
        rest: u32,
        /// Data.
        data: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Parses a checked view (checksum not verified).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>> {
        p.check_len()?;
        let buf: &'a T = p.buffer;
        let data = tail(buf.as_ref(), HEADER_LEN);
        let code = p.msg_code();
        Ok(match p.msg_type() {
            Message::EchoRequest if code == 0 => Repr::EchoRequest {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data,
            },
            Message::EchoReply if code == 0 => Repr::EchoReply {
                ident: p.echo_ident(),
                seq_no: p.echo_seq_no(),
                data,
            },
            Message::DstUnreachable if p.echo_ident() == 0 => Repr::DstUnreachable {
                code,
                next_hop_mtu: p.next_hop_mtu(),
                data,
            },
            Message::TimeExceeded if p.rest_of_header() == 0 => Repr::TimeExceeded { code, data },
            t => Repr::Other {
                msg_type: t,
                code,
                rest: p.rest_of_header(),
                data,
            },
        })
    }

    fn data(&self) -> &'a [u8] {
        match *self {
            Repr::EchoRequest { data, .. }
            | Repr::EchoReply { data, .. }
            | Repr::DstUnreachable { data, .. }
            | Repr::TimeExceeded { data, .. }
            | Repr::Other { data, .. } => data,
        }
    }

    /// Header + data length.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data().len()
    }

    /// Writes the message with its checksum.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut Packet<T>) {
        let (t, code, rest) = match *self {
            Repr::EchoRequest { ident, seq_no, .. } => (
                Message::EchoRequest,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
            ),
            Repr::EchoReply { ident, seq_no, .. } => (
                Message::EchoReply,
                0,
                (u32::from(ident) << 16) | u32::from(seq_no),
            ),
            Repr::DstUnreachable {
                code, next_hop_mtu, ..
            } => (Message::DstUnreachable, code, u32::from(next_hop_mtu)),
            Repr::TimeExceeded { code, .. } => (Message::TimeExceeded, code, 0),
            Repr::Other {
                msg_type,
                code,
                rest,
                ..
            } => (msg_type, code, rest),
        };
        p.set_msg_type(t);
        p.set_msg_code(code);
        p.set_rest_of_header(rest);
        copy_in(p.data_mut(), self.data());
        p.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // An echo request (id 0x1234, seq 1, 8 data bytes 'a') hand-assembled
    // from RFC 792; checksum computed by hand: 0800+0000+1234+0001+4*6161 = 0x9fba, ~ = 0x6045.
    const ECHO: [u8; 16] = [
        0x08, 0x00, 0x60, 0x45, 0x12, 0x34, 0x00, 0x01, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61,
        0x61,
    ];

    #[test]
    fn echo_round_trip() {
        let p = Packet::new_checked(&ECHO[..]).unwrap();
        assert!(p.verify_checksum());
        let r = Repr::parse(&p).unwrap();
        assert_eq!(
            r,
            Repr::EchoRequest {
                ident: 0x1234,
                seq_no: 1,
                data: b"aaaaaaaa"
            }
        );
        let mut out = [0u8; 16];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, ECHO);
    }

    #[test]
    fn frag_needed_and_truncation() {
        let quoted = [0x45u8; 28];
        let r = Repr::DstUnreachable {
            code: CODE_FRAG_NEEDED,
            next_hop_mtu: 1450,
            data: &quoted,
        };
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut Packet::new_unchecked(&mut out[..]));
        let p = Packet::new_checked(&out[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.next_hop_mtu(), 1450);
        assert_eq!(Repr::parse(&p).unwrap(), r);
        assert!(p.msg_type().is_error());
        assert_eq!(
            Packet::new_checked(&out[..7]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn ident_rewrite_keeps_checksum() {
        let mut b = ECHO;
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.rewrite_echo_ident(0xbeef);
        assert!(p.verify_checksum());
        assert_eq!(p.echo_ident(), 0xbeef);
    }
}
