//! The 8-byte header every OpenFlow message starts with: version, type,
//! length (of the whole message) and transaction id.

use super::{Error, Result};

/// Length of the header.
pub const LEN: usize = 8;

/// A zero-copy view of a message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> View<T> {
    /// Wraps `buffer`: [`Error::BadLen`] when it is shorter than a header or
    /// the length field is below the header size.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let v = View { buffer };
        if v.buffer.as_ref().len() < LEN || usize::from(v.length()) < LEN {
            return Err(Error::BadLen);
        }
        Ok(v)
    }

    fn b(&self, i: usize) -> u8 {
        self.buffer.as_ref().get(i).copied().unwrap_or(0)
    }

    /// Wire version.
    pub fn version(&self) -> u8 {
        self.b(0)
    }

    /// Message type.
    pub fn msg_type(&self) -> u8 {
        self.b(1)
    }

    /// Length of the whole message.
    pub fn length(&self) -> u16 {
        u16::from_be_bytes([self.b(2), self.b(3)])
    }

    /// Transaction id.
    pub fn xid(&self) -> u32 {
        u32::from_be_bytes([self.b(4), self.b(5), self.b(6), self.b(7)])
    }
}

/// The header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Wire version.
    pub version: u8,
    /// Message type.
    pub msg_type: u8,
    /// Length of the whole message.
    pub length: u16,
    /// Transaction id.
    pub xid: u32,
}

impl Header {
    /// Parses the first 8 bytes of `b`.
    pub fn parse(b: &[u8]) -> Result<Header> {
        let v = View::new_checked(b)?;
        Ok(Header {
            version: v.version(),
            msg_type: v.msg_type(),
            length: v.length(),
            xid: v.xid(),
        })
    }

    /// Appends the header to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.push(self.msg_type);
        out.extend_from_slice(&self.length.to_be_bytes());
        out.extend_from_slice(&self.xid.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_lying_headers_are_refused() {
        assert_eq!(Header::parse(&[1, 0, 0]), Err(Error::BadLen));
        assert_eq!(Header::parse(&[1, 0, 0, 7, 0, 0, 0, 1]), Err(Error::BadLen));
        let h = Header::parse(&[4, 2, 0, 8, 0, 0, 0, 9]).unwrap();
        assert_eq!((h.version, h.msg_type, h.length, h.xid), (4, 2, 8, 9));
        let mut out = Vec::new();
        h.emit(&mut out);
        assert_eq!(out, [4, 2, 0, 8, 0, 0, 0, 9]);
    }
}
