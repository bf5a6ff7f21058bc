//! rtnetlink questions about one interface: RTM_GETLINK, answered with its
//! index, flags, MTU, queue length and the kernel's own drop counters,
//! for a device in our namespace or (by its namespace id) in another one.
//!
//! There is no ioctl for interface counters, and sysfs shows only the
//! namespace it was mounted in. A netlink socket answers for the
//! namespace it was opened in, and, given `IFLA_TARGET_NETNSID` (Linux
//! 4.20), for a namespace that has an id in it ([`Rtnl::nsid`] finds or
//! assigns that id): so a VM's TAP is asked from our own namespace, with
//! no thread entering the VM's and no fd kept in it (an fd would keep the
//! namespace alive after `ip netns del`). The reply is parsed from bytes
//! with bounds checks: a short or odd message is an error value.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_TXQLEN: u16 = 13;
const IFLA_TARGET_NETNSID: u16 = 46;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
/// `struct rtgenmsg`, padded to the netlink alignment.
const RTGENMSG_LEN: usize = 4;
const IFLA_STATS64: u16 = 23;
/// Offset of `tx_dropped` in `struct rtnl_link_stats64` (eighth u64).
const STATS64_TX_DROPPED: usize = 7 * 8;
/// Offset of `rx_dropped` (seventh u64).
const STATS64_RX_DROPPED: usize = 6 * 8;

/// What the kernel says about one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// `ifi_index`.
    pub index: u32,
    /// `ifi_flags` (IFF_UP, IFF_RUNNING, IFF_LOWER_UP, ...).
    pub flags: u32,
    /// `IFLA_MTU`.
    pub mtu: Option<u32>,
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
        self.get_link(None, Which::Index(index))
    }

    /// RTM_GETLINK for the interface called `name` in the namespace whose
    /// id (in ours) is `nsid`, or in ours for `None`.
    pub fn link_named(&mut self, nsid: Option<i32>, name: &str) -> io::Result<LinkInfo> {
        self.get_link(nsid, Which::Name(name))
    }

    fn get_link(&mut self, nsid: Option<i32>, which: Which<'_>) -> io::Result<LinkInfo> {
        let mut req = Request::new(RTM_GETLINK, NLM_F_REQUEST, IFINFOMSG_LEN);
        // ifinfomsg: family AF_UNSPEC, the index (0: by name), no flags.
        if let Which::Index(index) = which {
            let idx =
                i32::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            req.body_at(4, &idx.to_ne_bytes());
        }
        if let Which::Name(name) = which {
            if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
                return Err(io::ErrorKind::InvalidInput.into());
            }
            let mut z = name.as_bytes().to_vec();
            z.push(0);
            req.attr(IFLA_IFNAME, &z);
        }
        if let Some(id) = nsid {
            req.attr(IFLA_TARGET_NETNSID, &id.to_ne_bytes());
        }
        let reply = self.ask(req)?;
        parse_reply(&reply)
    }

    /// The id the namespace `ns` has in ours (RTM_GETNSID), assigning one
    /// when it has none yet (RTM_NEWNSID with -1: the kernel picks it, as
    /// `ip netns set NAME auto` does). An id is only a name: it does not
    /// keep the namespace alive, and the kernel forgets it when that
    /// namespace ends.
    pub fn nsid(&mut self, ns: BorrowedFd<'_>) -> io::Result<i32> {
        if let Some(id) = self.get_nsid(ns)? {
            return Ok(id);
        }
        let mut req = Request::new(RTM_NEWNSID, NLM_F_REQUEST | NLM_F_ACK, RTGENMSG_LEN);
        req.attr(NETNSA_FD, &(ns.as_raw_fd() as u32).to_ne_bytes());
        req.attr(NETNSA_NSID, &(-1i32).to_ne_bytes());
        match parse_ack(&self.ask(req)?) {
            // Another process assigned one meanwhile.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            r => r?,
        }
        self.get_nsid(ns)?
            .ok_or_else(|| io::Error::other("the namespace got no id"))
    }

    fn get_nsid(&mut self, ns: BorrowedFd<'_>) -> io::Result<Option<i32>> {
        let mut req = Request::new(RTM_GETNSID, NLM_F_REQUEST, RTGENMSG_LEN);
        req.attr(NETNSA_FD, &(ns.as_raw_fd() as u32).to_ne_bytes());
        parse_nsid(&self.ask(req)?)
    }

    /// Sends `req` with the next sequence number and returns the reply
    /// carrying it.
    fn ask(&mut self, mut req: Request) -> io::Result<Vec<u8>> {
        self.seq = self.seq.wrapping_add(1);
        req.buf[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        self.sock.send(&req.buf)?;
        let mut buf = vec![0u8; 32 * 1024];
        // Skip replies to earlier questions that timed out.
        for _ in 0..8 {
            let n = (&self.sock).read(&mut buf)?;
            let msg = buf.get(..n).ok_or(io::ErrorKind::InvalidData)?;
            let seq = msg
                .get(8..12)
                .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            if seq == Some(self.seq) {
                buf.truncate(n);
                return Ok(buf);
            }
        }
        Err(io::ErrorKind::InvalidData.into())
    }
}

/// Which interface a question is about.
#[derive(Clone, Copy)]
enum Which<'a> {
    Index(u32),
    Name(&'a str),
}

/// A netlink request being built: header, fixed body, attributes.
struct Request {
    buf: Vec<u8>,
}

impl Request {
    fn new(ty: u16, flags: u16, body: usize) -> Request {
        let mut buf = vec![0u8; NLMSG_HDRLEN + body];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        let mut r = Request { buf };
        r.set_len();
        r
    }

    fn body_at(&mut self, at: usize, bytes: &[u8]) {
        self.buf[NLMSG_HDRLEN + at..NLMSG_HDRLEN + at + bytes.len()].copy_from_slice(bytes);
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize((self.buf.len() + 3) & !3, 0);
        self.set_len();
    }

    fn set_len(&mut self) {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
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
    let msg = message(msg, RTM_NEWLINK)?;
    let bad = || io::Error::from(io::ErrorKind::InvalidData);
    let mut info = LinkInfo {
        index: u32_at(msg, NLMSG_HDRLEN + 4).ok_or_else(bad)?,
        flags: u32_at(msg, NLMSG_HDRLEN + 8).ok_or_else(bad)?,
        ..LinkInfo::default()
    };
    for a in attrs(msg, NLMSG_HDRLEN + IFINFOMSG_LEN) {
        let (ty, data) = a?;
        match ty {
            IFLA_TXQLEN => info.txqlen = u32_at(data, 0),
            IFLA_MTU => info.mtu = u32_at(data, 0),
            IFLA_STATS64 => {
                info.tx_dropped = u64_at(data, STATS64_TX_DROPPED).ok_or_else(bad)?;
                info.rx_dropped = u64_at(data, STATS64_RX_DROPPED).ok_or_else(bad)?;
            }
            _ => {}
        }
    }
    Ok(info)
}

/// The first message of `buf`, cut to its length, if it is of type `ty`;
/// an NLMSG_ERROR becomes its error.
fn message(buf: &[u8], ty: u16) -> io::Result<&[u8]> {
    let bad = || io::Error::from(io::ErrorKind::InvalidData);
    let len = u32_at(buf, 0).ok_or_else(bad)? as usize;
    let msg = buf.get(..len).ok_or_else(bad)?;
    match u16_at(msg, 4).ok_or_else(bad)? {
        NLMSG_ERROR => Err(io::Error::from_raw_os_error(errno_of(msg).ok_or_else(bad)?)),
        t if t == ty => Ok(msg),
        _ => Err(bad()),
    }
}

/// The attributes of `msg` from offset `at`: type (flags masked off) and
/// payload; a malformed one ends the walk with an error.
fn attrs(msg: &[u8], mut at: usize) -> impl Iterator<Item = io::Result<(u16, &[u8])>> {
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || at + 4 > msg.len() {
            return None;
        }
        let bad = || io::Error::from(io::ErrorKind::InvalidData);
        let parsed = (|| {
            let rta_len = usize::from(u16_at(msg, at).ok_or_else(bad)?);
            let rta_type = u16_at(msg, at + 2).ok_or_else(bad)? & 0x3fff;
            if rta_len < 4 {
                return Err(bad());
            }
            let data = msg.get(at + 4..at + rta_len).ok_or_else(bad)?;
            at += (rta_len + 3) & !3;
            Ok((rta_type, data))
        })();
        failed = parsed.is_err();
        Some(parsed)
    })
}

/// The error number of an NLMSG_ERROR message (0: an acknowledgement).
fn errno_of(msg: &[u8]) -> Option<i32> {
    Some((u32_at(msg, NLMSG_HDRLEN)? as i32).wrapping_neg())
}

/// Parses the acknowledgement of a request sent with NLM_F_ACK.
fn parse_ack(msg: &[u8]) -> io::Result<()> {
    if u16_at(msg, 4) != Some(NLMSG_ERROR) {
        return Err(io::ErrorKind::InvalidData.into());
    }
    match errno_of(msg).ok_or(io::ErrorKind::InvalidData)? {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Parses the reply to RTM_GETNSID: the id, or `None` when the namespace
/// has none in ours (NETNSA_NSID_NOT_ASSIGNED, -1).
fn parse_nsid(msg: &[u8]) -> io::Result<Option<i32>> {
    let msg = message(msg, RTM_NEWNSID)?;
    for a in attrs(msg, NLMSG_HDRLEN + RTGENMSG_LEN) {
        let (ty, data) = a?;
        if ty == NETNSA_NSID {
            let id = u32_at(data, 0).ok_or(io::ErrorKind::InvalidData)? as i32;
            return Ok((id >= 0).then_some(id));
        }
    }
    Err(io::ErrorKind::InvalidData.into())
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

    #[test]
    fn namespace_id_replies_parse_or_fail_cleanly() {
        // RTM_NEWNSID with NETNSA_NSID 7, then with -1 (not assigned).
        let mut m = vec![0u8; NLMSG_HDRLEN + RTGENMSG_LEN + 8];
        let n = m.len() as u32;
        m[0..4].copy_from_slice(&n.to_ne_bytes());
        m[4..6].copy_from_slice(&RTM_NEWNSID.to_ne_bytes());
        m[20..22].copy_from_slice(&8u16.to_ne_bytes());
        m[22..24].copy_from_slice(&NETNSA_NSID.to_ne_bytes());
        m[24..28].copy_from_slice(&7i32.to_ne_bytes());
        assert_eq!(parse_nsid(&m).unwrap(), Some(7));
        m[24..28].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(parse_nsid(&m).unwrap(), None);
        // No id attribute, a truncated one, a short message: errors.
        m[22..24].copy_from_slice(&99u16.to_ne_bytes());
        assert!(parse_nsid(&m).is_err());
        m[20..22].copy_from_slice(&64u16.to_ne_bytes());
        assert!(parse_nsid(&m).is_err());
        assert!(parse_nsid(&m[..10]).is_err());
        // An error message carries its errno, even i32::MIN's.
        let mut e = vec![0u8; NLMSG_HDRLEN + 4];
        let n = e.len() as u32;
        e[0..4].copy_from_slice(&n.to_ne_bytes());
        e[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        e[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(
            parse_nsid(&e).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
        assert_eq!(parse_ack(&e).unwrap_err().raw_os_error(), Some(libc::EPERM));
        e[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
        assert!(parse_ack(&e).is_err());
        e[16..20].copy_from_slice(&0i32.to_ne_bytes());
        assert!(parse_ack(&e).is_ok());
        assert!(parse_ack(&m).is_err(), "not an acknowledgement");
    }
}
