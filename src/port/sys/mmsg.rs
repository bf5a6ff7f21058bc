//! recvmmsg / sendmmsg plumbing shared by the AF_PACKET and UDP modules.
//!
//! The `mmsghdr` arrays hold raw pointers into the caller's buffers, so they
//! are built on the stack for each call (at most [`MAX_MSGS`] entries, a few
//! KiB) instead of being stored in a port: a port stays `Send` and the
//! pointers never outlive the borrow they were taken from. Addresses and
//! control messages come back as bytes, parsed with safe code ([`cmsgs`]).

use super::cvt_ssize;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd};

/// Most messages one call moves: the datapath's batch size.
pub const MAX_MSGS: usize = crate::packet::MAX_BURST;

/// Room for one socket address (`sockaddr_ll` is 20 bytes, `sockaddr_in6`
/// 28), aligned as the kernel expects.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default)]
pub struct MsgName {
    /// The address bytes (family first).
    pub bytes: [u8; 32],
    /// Valid length: set by the kernel on receive, by the caller on send.
    pub len: u32,
}

/// Room for the control messages of one datagram (auxdata, pktinfo, or an
/// extended error with its offender address).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub struct CmsgBuf {
    /// The raw control bytes.
    pub bytes: [u8; 128],
    /// Valid length, set by the kernel on receive.
    pub len: usize,
}

impl Default for CmsgBuf {
    fn default() -> Self {
        CmsgBuf {
            bytes: [0; 128],
            len: 0,
        }
    }
}

impl CmsgBuf {
    /// The control messages the kernel wrote.
    pub fn iter(&self) -> impl Iterator<Item = Cmsg<'_>> {
        cmsgs(&self.bytes[..self.len.min(self.bytes.len())])
    }
}

/// What one received message looked like.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecvOut {
    /// Bytes the kernel reported (may exceed the buffers when truncated).
    pub len: usize,
    /// `msg_flags` (MSG_TRUNC, MSG_CTRUNC, ...).
    pub flags: i32,
}

/// One control message.
#[derive(Clone, Copy, Debug)]
pub struct Cmsg<'a> {
    /// `cmsg_level` (SOL_PACKET, IPPROTO_IP, ...).
    pub level: i32,
    /// `cmsg_type`.
    pub ty: i32,
    /// The payload.
    pub data: &'a [u8],
}

const CMSG_HDR: usize = 16; // size_t len, int level, int type on 64-bit Linux

/// Walks a control buffer the way CMSG_FIRSTHDR / CMSG_NXTHDR do, in safe
/// code: a length that runs past the buffer ends the walk.
pub fn cmsgs(buf: &[u8]) -> impl Iterator<Item = Cmsg<'_>> {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        let h = buf.get(off..off + CMSG_HDR)?;
        let len = usize::from_ne_bytes(h[0..8].try_into().ok()?);
        let level = i32::from_ne_bytes(h[8..12].try_into().ok()?);
        let ty = i32::from_ne_bytes(h[12..16].try_into().ok()?);
        if len < CMSG_HDR {
            return None;
        }
        let data = buf.get(off + CMSG_HDR..off + len)?;
        off += (len + 7) & !7;
        Some(Cmsg { level, ty, data })
    })
}

/// Appends one control message to `buf` at `*off` (builds test vectors
/// for the parser).
#[cfg(test)]
fn put_cmsg(buf: &mut [u8], off: &mut usize, level: i32, ty: i32, data: &[u8]) -> bool {
    let len = CMSG_HDR + data.len();
    let space = (len + 7) & !7;
    let Some(dst) = buf.get_mut(*off..*off + space) else {
        return false;
    };
    dst.fill(0);
    dst[0..8].copy_from_slice(&len.to_ne_bytes());
    dst[8..12].copy_from_slice(&level.to_ne_bytes());
    dst[12..16].copy_from_slice(&ty.to_ne_bytes());
    dst[CMSG_HDR..len].copy_from_slice(data);
    *off += space;
    true
}

/// recvmmsg into `iovs[i]` (scatter over N buffers per message), with an
/// optional address and control buffer per message. Returns the number of
/// messages received; `out[i]` says how long each was.
pub(super) fn recvmmsg<const N: usize>(
    fd: BorrowedFd<'_>,
    iovs: &mut [[IoSliceMut<'_>; N]],
    mut names: Option<&mut [MsgName]>,
    mut ctrls: Option<&mut [CmsgBuf]>,
    out: &mut [RecvOut],
    flags: libc::c_int,
) -> io::Result<usize> {
    let mut n = iovs.len().min(out.len()).min(MAX_MSGS);
    if let Some(nm) = names.as_deref() {
        n = n.min(nm.len());
    }
    if let Some(c) = ctrls.as_deref() {
        n = n.min(c.len());
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: mmsghdr is plain old data (integers and raw pointers); the
    // all-zero pattern is a valid value (null pointers, zero lengths).
    let mut hdrs: [libc::mmsghdr; MAX_MSGS] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        let h = &mut hdrs[i].msg_hdr;
        // IoSliceMut is ABI-compatible with `struct iovec` on Unix (std
        // guarantees it), so an array of them is an iovec array.
        h.msg_iov = iovs[i].as_mut_ptr().cast::<libc::iovec>();
        h.msg_iovlen = N;
        if let Some(nm) = names.as_deref_mut() {
            h.msg_name = nm[i].bytes.as_mut_ptr().cast();
            h.msg_namelen = nm[i].bytes.len() as libc::socklen_t;
        }
        if let Some(c) = ctrls.as_deref_mut() {
            h.msg_control = c[i].bytes.as_mut_ptr().cast();
            h.msg_controllen = c[i].bytes.len();
        }
    }
    // SAFETY: `hdrs[..n]` point into buffers borrowed mutably for the whole
    // call (iovs, names, ctrls), each with its true length; the kernel
    // writes at most those lengths. A null timeout means "no timeout"; the
    // socket is non-blocking and MSG_DONTWAIT makes sure of it.
    let r = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            flags | libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    let got = cvt_ssize(r as libc::ssize_t)?;
    for i in 0..got.min(n) {
        let h = &hdrs[i];
        out[i] = RecvOut {
            len: h.msg_len as usize,
            flags: h.msg_hdr.msg_flags,
        };
        if let Some(nm) = names.as_deref_mut() {
            nm[i].len = h.msg_hdr.msg_namelen;
        }
        if let Some(c) = ctrls.as_deref_mut() {
            c[i].len = h.msg_hdr.msg_controllen;
        }
    }
    Ok(got.min(n))
}

/// sendmmsg of `iovs[i]` (gather over N buffers per message), each to
/// `names[i]` when given (unconnected UDP) or to the bound device
/// (AF_PACKET). Returns how many messages the kernel took; an error only
/// when the first one failed (the kernel's own convention).
pub(super) fn sendmmsg<const N: usize>(
    fd: BorrowedFd<'_>,
    iovs: &[[IoSlice<'_>; N]],
    names: Option<&[MsgName]>,
    flags: libc::c_int,
) -> io::Result<usize> {
    let mut n = iovs.len().min(MAX_MSGS);
    if let Some(nm) = names {
        n = n.min(nm.len());
    }
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: as in recvmmsg, the all-zero mmsghdr is valid.
    let mut hdrs: [libc::mmsghdr; MAX_MSGS] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        let h = &mut hdrs[i].msg_hdr;
        // The kernel only reads through msg_iov on send; the *mut is what
        // the C struct declares.
        h.msg_iov = iovs[i].as_ptr().cast::<libc::iovec>().cast_mut();
        h.msg_iovlen = N;
        if let Some(nm) = names {
            h.msg_name = nm[i].bytes.as_ptr().cast::<libc::c_void>().cast_mut();
            h.msg_namelen = nm[i].len.min(nm[i].bytes.len() as u32);
        }
    }
    // SAFETY: `hdrs[..n]` point into buffers borrowed for the whole call,
    // with their true lengths; sendmmsg only reads them (and writes
    // msg_len into `hdrs`, which we own).
    let r = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            flags | libc::MSG_DONTWAIT,
        )
    };
    cvt_ssize(r as libc::ssize_t)
}

/// recvmsg of one message with control data (the error queue).
pub(super) fn recvmsg_one(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    name: &mut MsgName,
    ctrl: &mut CmsgBuf,
    flags: libc::c_int,
) -> io::Result<RecvOut> {
    let mut iov = [[IoSliceMut::new(buf)]];
    let mut out = [RecvOut::default()];
    let n = recvmmsg(
        fd,
        &mut iov,
        Some(std::slice::from_mut(name)),
        Some(std::slice::from_mut(ctrl)),
        &mut out,
        flags,
    )?;
    if n == 0 {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    Ok(out[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmsg_walk_stops_at_bad_length() {
        let mut buf = [0u8; 128];
        let mut off = 0;
        assert!(put_cmsg(&mut buf, &mut off, 0, 8, &[1, 2, 3, 4, 5]));
        assert!(put_cmsg(&mut buf, &mut off, 1, 9, &[6; 12]));
        assert_eq!(off, 24 + 32);
        let v: Vec<_> = cmsgs(&buf[..off])
            .map(|c| (c.level, c.ty, c.data.to_vec()))
            .collect();
        assert_eq!(v, vec![(0, 8, vec![1, 2, 3, 4, 5]), (1, 9, vec![6; 12])]);
        // A length past the buffer ends the walk instead of reading beyond.
        buf[24..32].copy_from_slice(&1000usize.to_ne_bytes());
        assert_eq!(cmsgs(&buf[..off]).count(), 1);
        // A length smaller than the header too.
        buf[0..8].copy_from_slice(&3usize.to_ne_bytes());
        assert_eq!(cmsgs(&buf[..off]).count(), 0);
    }
}
