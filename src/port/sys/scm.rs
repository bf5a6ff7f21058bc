//! Passing file descriptors to another process over a Unix stream socket
//! (`SCM_RIGHTS`): an upgrade hands the running devices' fds to the new
//! vswitchd, so a TAP never loses its reader and a VM never sees its NIC
//! go away.
//!
//! Each call moves one message: some bytes (at least one, so the fds have
//! something to ride on) and at most [`MAX_FDS`] descriptors. Received fds
//! are close-on-exec and owned by the caller; a message whose fds did not
//! fit is an error (the ones that arrived are closed), never a silent loss.

use super::cvt_ssize;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Most descriptors one message carries (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// Control buffer size for `n` fds.
fn space(n: usize) -> usize {
    // SAFETY: CMSG_SPACE is a pure size computation.
    unsafe { libc::CMSG_SPACE((n * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// Sends `data` (non-empty) with `fds` on `sock`, as one message.
pub fn send_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    if data.is_empty() || fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "need 1+ bytes and at most 253 fds per message",
        ));
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    // u64 words keep the control buffer aligned for cmsghdr.
    let mut ctrl = vec![0u64; space(raw.len()).div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no iov, no control).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        msg.msg_control = ctrl.as_mut_ptr().cast();
        msg.msg_controllen = space(raw.len()) as _;
        // SAFETY: the control buffer is CMSG_SPACE(len) bytes, so the first
        // header and its data (len fds) lie inside it; CMSG_FIRSTHDR is
        // non-null for a non-empty buffer.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN((raw.len() * std::mem::size_of::<RawFd>()) as u32) as _;
            std::ptr::copy_nonoverlapping(
                raw.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(c),
                raw.len() * std::mem::size_of::<RawFd>(),
            );
        }
    }
    // SAFETY: msg points at live buffers (iov, ctrl) for the whole call.
    cvt_ssize(unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) })
}

/// Receives one message into `buf` with at most `max_fds` descriptors.
/// Returns the bytes read (0: the peer closed) and the fds.
pub fn recv_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let max_fds = max_fds.min(MAX_FDS);
    let mut ctrl = vec![0u64; space(max_fds.max(1)).div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.as_mut_ptr().cast();
    msg.msg_controllen = (ctrl.len() * 8) as _;
    // SAFETY: msg points at live buffers for the whole call.
    let n =
        cvt_ssize(unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) })?;
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_controllen bytes of ctrl with cmsg
    // headers; CMSG_FIRSTHDR/NXTHDR stay within them, and each SCM_RIGHTS
    // payload holds (cmsg_len - CMSG_LEN(0)) / 4 fds that are now ours.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let bytes = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                let p = libc::CMSG_DATA(c);
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    let mut b = [0u8; 4];
                    std::ptr::copy_nonoverlapping(p.add(i * 4), b.as_mut_ptr(), 4);
                    fds.push(OwnedFd::from_raw_fd(RawFd::from_ne_bytes(b)));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        // `fds` drops here: the ones that arrived are closed.
        return Err(io::Error::other(format!(
            "more than {max_fds} descriptors in one message"
        )));
    }
    Ok((n, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn fds_cross_a_socket_and_stay_usable() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"hello").unwrap();
        send_fds(a.as_fd(), b"x", &[f.as_fd(), f.as_fd()]).unwrap();
        let mut buf = [0u8; 8];
        let (n, fds) = recv_fds(b.as_fd(), &mut buf, 4).unwrap();
        assert_eq!((n, &buf[..1], fds.len()), (1, &b"x"[..], 2));
        let mut g = std::fs::File::from(fds.into_iter().next().unwrap());
        g.rewind().unwrap();
        let mut s = String::new();
        g.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
    }

    #[test]
    fn too_many_fds_is_an_error_not_a_leak() {
        let (a, b) = UnixStream::pair().unwrap();
        let f = tempfile::tempfile().unwrap();
        send_fds(a.as_fd(), b"x", &[f.as_fd(), f.as_fd(), f.as_fd()]).unwrap();
        let mut buf = [0u8; 8];
        assert!(recv_fds(b.as_fd(), &mut buf, 1).is_err());
        assert!(send_fds(a.as_fd(), b"", &[]).is_err());
    }
}
