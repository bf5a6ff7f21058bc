//! Every unsafe OS call of the crate, behind small safe functions.
//!
//! The rest of the crate never writes `unsafe`: ports call these wrappers,
//! which take and return plain Rust types (`BorrowedFd`, slices,
//! `io::Result`). One file per kernel interface:
//!
//! * [`tun`]: `/dev/net/tun` (TUNSETIFF, vnet_hdr size, offloads, TUNGETIFF).
//!   Everything a TAP needs is set on the fd at creation, because the kernel
//!   side of the device may be moved into another network namespace right
//!   after it appears; afterwards only the fd is used.
//! * [`netdev`]: name-based interface ioctls through a control socket
//!   (flags, MTU, ifindex, queue length), which reaches the namespace it
//!   was opened in.
//! * [`netns`]: network namespaces (identity, finding one again, opening
//!   fds inside one from a short-lived thread, TUNGETDEVNETNS; a thread
//!   entering one for good, as the generator's senders and receivers do).
//! * [`rtnl`]: RTM_GETLINK for one interface (flags, queue length, the
//!   kernel's drop counters).
//! * [`packet`]: AF_PACKET sockets (bind by ifindex, PACKET_AUXDATA for the
//!   VLAN tags the kernel strips, PACKET_VNET_HDR for offload metadata,
//!   PACKET_IGNORE_OUTGOING, promiscuous membership, batched I/O).
//! * [`udp`]: UDP sockets for tunnels (batched I/O with per-message
//!   addresses, the local address a datagram was sent to, ICMP errors from
//!   the error queue).
//! * [`epoll`]: epoll and eventfd for the datapath thread's sleep.
//! * [`scm`]: handing fds to another process (`SCM_RIGHTS`), for upgrades.
//! * [`sched`]: the calling thread's scheduler time slice, short for the
//!   control plane so it answers promptly while workers keep cores busy;
//!   the CPUs a thread may run on (a worker pinned to one).
//! * [`steer`]: the eBPF program that puts a TAP's frames on the queue of
//!   the worker on the sending CPU (`TUNSETSTEERINGEBPF`).
//! * [`malloc`]: the C allocator's arena cap and fixed mmap threshold, so
//!   threads and ports that come and go do not leave memory behind.
//! * [`uring`]: io_uring batches of non-blocking reads and writes on one
//!   fd (a TAP's frames, one syscall per batch).
//! * `mmsg` (private): the recvmmsg/sendmmsg plumbing shared by the two
//!   socket modules.
//!
//! Conventions: every fd is opened close-on-exec and non-blocking; every
//! `unsafe` block has a `// SAFETY:` comment; structures the kernel fills are
//! parsed from bytes with `from_ne_bytes` instead of being transmuted, so
//! a short or odd reply is an error value, not undefined behaviour.

pub mod epoll;
pub mod malloc;
mod mmsg;
pub mod netdev;
pub mod netns;
pub mod packet;
pub mod rtnl;
pub mod sched;
pub mod scm;
pub mod steer;
pub mod tun;
pub mod udp;
pub mod uring;

pub use mmsg::MAX_MSGS;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Maximum interface name length, without the trailing NUL (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// Turns a C return value into an `io::Result`, reading `errno` on -1.
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// As [`cvt`] for calls returning `ssize_t`.
fn cvt_ssize(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// setsockopt with a typed value.
fn setsockopt<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    val: &T,
) -> io::Result<()> {
    // SAFETY: `val` is a live, initialised T and we pass its exact size; the
    // kernel only reads `size_of::<T>()` bytes from it.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

fn set_buf(
    fd: BorrowedFd<'_>,
    force: libc::c_int,
    plain: libc::c_int,
    bytes: usize,
) -> io::Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // The FORCE variant ignores net.core.[rw]mem_max but needs
    // CAP_NET_ADMIN; fall back to the capped one without it.
    setsockopt(fd, libc::SOL_SOCKET, force, &v)
        .or_else(|_| setsockopt(fd, libc::SOL_SOCKET, plain, &v))
}

/// `struct ifreq` as the kernel lays it out on 64-bit Linux: a 16-byte name
/// and a 24-byte union. Our own definition (rather than libc's, whose union
/// differs between targets) so that reading `ifr_flags` / `ifr_mtu` is a
/// byte copy, not a union access.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    /// An ifreq for interface `name`; rejects names the kernel would
    /// truncate or that contain a NUL.
    fn new(name: &str) -> io::Result<IfReq> {
        check_ifname(name)?;
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        r.name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(r)
    }

    fn name(&self) -> String {
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.name.len());
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }

    fn short(&self) -> i16 {
        i16::from_ne_bytes([self.data[0], self.data[1]])
    }

    fn set_short(&mut self, v: i16) {
        self.data[..2].copy_from_slice(&v.to_ne_bytes());
    }

    fn int(&self) -> i32 {
        i32::from_ne_bytes([self.data[0], self.data[1], self.data[2], self.data[3]])
    }

    fn set_int(&mut self, v: i32) {
        self.data[..4].copy_from_slice(&v.to_ne_bytes());
    }
}

/// Checks that `name` is a valid Linux interface name (1..=15 bytes, no
/// NUL, no '/', no whitespace), so no ioctl ever sees a truncated name.
pub fn check_ifname(name: &str) -> io::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == 0 || b == b'/' || b == b':' || b.is_ascii_whitespace());
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifname_rules() {
        assert!(check_ifname("tap0").is_ok());
        assert!(check_ifname("abcdefghijklmno").is_ok());
        assert!(check_ifname("abcdefghijklmnop").is_err());
        assert!(check_ifname("").is_err());
        assert!(check_ifname("a b").is_err());
        assert!(check_ifname("a/b").is_err());
        assert!(check_ifname("a\0").is_err());
    }

    #[test]
    fn ifreq_layout_matches_kernel() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        let mut r = IfReq::new("eth0").unwrap();
        r.set_short(0x1002);
        assert_eq!(r.short(), 0x1002);
        r.set_int(1500);
        assert_eq!(r.int(), 1500);
        assert_eq!(r.name(), "eth0");
    }
}
