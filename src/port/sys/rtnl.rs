//! One rtnetlink question: RTM_GETLINK for one interface index, answered
//! with its flags, queue length and the kernel's own drop counters.
//!
//! There is no ioctl for interface counters, and sysfs shows only the
//! namespace it was mounted in; a netlink socket, like a control socket,
//! answers for the namespace it was opened in, so a port opens one inside
//! its device's namespace (see [`super::netns`]). The reply is parsed from
//! bytes with bounds checks: a short or odd message is an error value.

use std::io::{self, Read};
use std::time::Duration;

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 1;
const IFLA_TXQLEN: u16 = 13;
const IFLA_STATS64: u16 = 23;
/// Offset of `tx_dropped` in `struct rtnl_link_stats64` (eighth u64).
const STATS64_TX_DROPPED: usize = 7 * 8;
/// Offset of `rx_dropped` (seventh u64).
const STATS64_RX_DROPPED: usize = 6 * 8;

/// What the kernel says about one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// `ifi_flags` (IFF_UP, IFF_RUNNING, IFF_LOWER_UP, ...).
    pub flags: u32,
    /// Transmit queue length (`IFLA_TXQLEN`).
    pub txqlen: Option<u32>,
    /// The device's `tx_dropped`: for a TAP, frames the kernel meant for
    /// the fd's reader and dropped because the queue was full.
    pub tx_dropped: u64,
    /// The device's `rx_dropped`.
    pub rx_dropped: u64,
}

/// A NETLINK_ROUTE socket (bound to the namespace it was opened in).
#[derive(Debug)]
pub struct Rtnl {
    sock: socket2::Socket,
    seq: u32,
}

impl Rtnl {
    /// Opens a socket in the calling thread's namespace.
    pub fn new() -> io::Result<Rtnl> {
        let sock = socket2::Socket::new(
            socket2::Domain::from(libc::AF_NETLINK),
            socket2::Type::RAW.cloexec(),
            Some(socket2::Protocol::from(libc::NETLINK_ROUTE)),
        )?;
        // A reply never takes long; a lost one must not hang a caller.
        sock.set_read_timeout(Some(Duration::from_secs(1)))?;
        Ok(Rtnl { sock, seq: 0 })
    }

    /// RTM_GETLINK for interface `index`.
    pub fn link(&mut self, index: u32) -> io::Result<LinkInfo> {
        self.seq = self.seq.wrapping_add(1);
        let idx = i32::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut req = [0u8; NLMSG_HDRLEN + IFINFOMSG_LEN];
        req[0..4].copy_from_slice(&((NLMSG_HDRLEN + IFINFOMSG_LEN) as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
        req[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
        req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        // ifinfomsg: family AF_UNSPEC, the index, no flags.
        req[NLMSG_HDRLEN + 4..NLMSG_HDRLEN + 8].copy_from_slice(&idx.to_ne_bytes());
        self.sock.send(&req)?;
        let mut buf = vec![0u8; 32 * 1024];
        // Skip replies to earlier questions that timed out.
        for _ in 0..8 {
            let n = (&self.sock).read(&mut buf)?;
            let msg = buf.get(..n).ok_or(io::ErrorKind::InvalidData)?;
            let seq = msg
                .get(8..12)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            if seq == Some(self.seq) {
                return parse_reply(msg);
            }
        }
        Err(io::ErrorKind::InvalidData.into())
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses one RTM_NEWLINK (or NLMSG_ERROR) reply.
fn parse_reply(msg: &[u8]) -> io::Result<LinkInfo> {
    let bad = || io::Error::from(io::ErrorKind::InvalidData);
    let len = u32_at(msg, 0).ok_or_else(bad)? as usize;
    let ty = u16_at(msg, 4).ok_or_else(bad)?;
    let msg = msg.get(..len).ok_or_else(bad)?;
    if ty == NLMSG_ERROR {
        let errno = u32_at(msg, NLMSG_HDRLEN).ok_or_else(bad)? as i32;
        return Err(io::Error::from_raw_os_error(-errno));
    }
    if ty != RTM_NEWLINK {
        return Err(bad());
    }
    let mut info = LinkInfo {
        flags: u32_at(msg, NLMSG_HDRLEN + 8).ok_or_else(bad)?,
        ..LinkInfo::default()
    };
    let mut at = NLMSG_HDRLEN + IFINFOMSG_LEN;
    while at + 4 <= msg.len() {
        let rta_len = u16_at(msg, at).ok_or_else(bad)? as usize;
        let rta_type = u16_at(msg, at + 2).ok_or_else(bad)? & 0x3fff;
        if rta_len < 4 {
            return Err(bad());
        }
        let data = msg.get(at + 4..at + rta_len).ok_or_else(bad)?;
        match rta_type {
            IFLA_TXQLEN => info.txqlen = u32_at(data, 0),
            IFLA_STATS64 => {
                info.tx_dropped = u64_at(data, STATS64_TX_DROPPED).ok_or_else(bad)?;
                info.rx_dropped = u64_at(data, STATS64_RX_DROPPED).ok_or_else(bad)?;
            }
            _ => {}
        }
        at += (rta_len + 3) & !3;
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_answers() {
        let mut r = Rtnl::new().unwrap();
        // Index 1 is loopback in every namespace.
        let l = r.link(1).unwrap();
        assert!(l.flags & libc::IFF_LOOPBACK as u32 != 0);
        let e = r.link(0x7fff_fff0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
    }

    #[test]
    fn odd_replies_are_errors() {
        assert!(parse_reply(&[]).is_err());
        // A header claiming more than there is.
        let mut m = vec![0u8; 40];
        m[0..4].copy_from_slice(&200u32.to_ne_bytes());
        m[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        assert!(parse_reply(&m).is_err());
        // An attribute with a length below its own header.
        m[0..4].copy_from_slice(&40u32.to_ne_bytes());
        m[32..34].copy_from_slice(&2u16.to_ne_bytes());
        assert!(parse_reply(&m).is_err());
        // A well-formed one with a truncated stats attribute.
        m[32..34].copy_from_slice(&8u16.to_ne_bytes());
        m[34..36].copy_from_slice(&IFLA_STATS64.to_ne_bytes());
        assert!(parse_reply(&m).is_err());
        // And a txqlen.
        m[34..36].copy_from_slice(&IFLA_TXQLEN.to_ne_bytes());
        m[36..40].copy_from_slice(&16u32.to_ne_bytes());
        assert_eq!(parse_reply(&m).unwrap().txqlen, Some(16));
    }
}
