//! Name-based interface ioctls through a throw-away control socket.
//!
//! These only reach interfaces in our own network namespace. A TAP's kernel
//! side may be moved away at any moment after creation, so ports call these
//! once at creation (and treat `ENODEV` as "already moved"), or for
//! `type=system` interfaces, which live in our netns by definition.

use super::{cvt, IfReq};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

fn control_socket() -> io::Result<OwnedFd> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    Ok(s.into())
}

fn ioctl_ifreq(req: libc::c_ulong, r: &mut IfReq) -> io::Result<()> {
    let s = control_socket()?;
    // SAFETY: every SIOC[GS]IF* request used here reads and writes a
    // `struct ifreq`; `r` is one (40 bytes, 8-aligned), borrowed mutably for
    // the call.
    cvt(unsafe { libc::ioctl(s.as_raw_fd(), req as _, r as *mut IfReq) })?;
    Ok(())
}

/// SIOCGIFINDEX.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let mut r = IfReq::new(name)?;
    ioctl_ifreq(libc::SIOCGIFINDEX, &mut r)?;
    Ok(r.int() as u32)
}

/// SIOCGIFFLAGS (IFF_UP, IFF_RUNNING, ...).
pub fn flags(name: &str) -> io::Result<u32> {
    let mut r = IfReq::new(name)?;
    ioctl_ifreq(libc::SIOCGIFFLAGS, &mut r)?;
    Ok(u32::from(r.short() as u16))
}

/// Sets or clears IFF_UP (read-modify-write of SIOCGIFFLAGS/SIOCSIFFLAGS).
pub fn set_up(name: &str, up: bool) -> io::Result<()> {
    let mut r = IfReq::new(name)?;
    ioctl_ifreq(libc::SIOCGIFFLAGS, &mut r)?;
    let mut f = r.short() as u16;
    if up {
        f |= libc::IFF_UP as u16;
    } else {
        f &= !(libc::IFF_UP as u16);
    }
    r.set_short(f as i16);
    ioctl_ifreq(libc::SIOCSIFFLAGS, &mut r)
}

/// SIOCGIFMTU.
pub fn mtu(name: &str) -> io::Result<u32> {
    let mut r = IfReq::new(name)?;
    ioctl_ifreq(libc::SIOCGIFMTU, &mut r)?;
    Ok(r.int() as u32)
}

/// SIOCSIFMTU.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mut r = IfReq::new(name)?;
    let v = i32::try_from(mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    r.set_int(v);
    ioctl_ifreq(libc::SIOCSIFMTU, &mut r)
}

/// True when `e` means "no such interface here" (deleted, or moved to
/// another netns).
pub fn is_no_device(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::ENXIO))
}
