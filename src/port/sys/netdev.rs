//! Name-based interface ioctls through a throw-away control socket.
//!
//! A control socket reaches the interfaces of the namespace it was opened
//! in. The free functions open one in ours: a TAP's kernel side may be
//! moved away at any moment after creation, so ports call those once at
//! creation (and treat `ENODEV` as "already moved"), or for `type=system`
//! interfaces, which live in our netns by definition. A TAP port reaches
//! its device wherever it lives through a [`Ctl`] opened in the device's
//! namespace.

use super::{cvt, IfReq};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

fn control_socket() -> io::Result<OwnedFd> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    Ok(s.into())
}

/// A control socket for name-based ioctls, bound for its whole life to the
/// namespace it was opened in (open it inside another namespace with
/// [`super::netns::NetNs::run_in`] to reach the devices there).
#[derive(Debug)]
pub struct Ctl(OwnedFd);

impl Ctl {
    /// A control socket in the calling thread's namespace.
    pub fn new() -> io::Result<Ctl> {
        control_socket().map(Ctl)
    }

    fn ioctl(&self, req: libc::c_ulong, r: &mut IfReq) -> io::Result<()> {
        // SAFETY: every SIOC[GS]IF* request used here reads and writes a
        // `struct ifreq`; `r` is one (40 bytes, 8-aligned), borrowed mutably
        // for the call.
        cvt(unsafe { libc::ioctl(self.0.as_raw_fd(), req as _, r as *mut IfReq) })?;
        Ok(())
    }

    /// SIOCGIFINDEX.
    pub fn ifindex(&self, name: &str) -> io::Result<u32> {
        let mut r = IfReq::new(name)?;
        self.ioctl(libc::SIOCGIFINDEX, &mut r)?;
        Ok(r.int() as u32)
    }

    /// SIOCGIFNAME: the name of interface `index` (it may have been renamed
    /// since we last saw it).
    pub fn name_of(&self, index: u32) -> io::Result<String> {
        let mut r = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        let v = i32::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        r.set_int(v);
        self.ioctl(libc::SIOCGIFNAME, &mut r)?;
        Ok(r.name())
    }

    /// SIOCGIFFLAGS (IFF_UP, IFF_RUNNING, ...).
    pub fn flags(&self, name: &str) -> io::Result<u32> {
        let mut r = IfReq::new(name)?;
        self.ioctl(libc::SIOCGIFFLAGS, &mut r)?;
        Ok(u32::from(r.short() as u16))
    }

    /// Sets or clears IFF_UP (read-modify-write of SIOCGIFFLAGS/SIOCSIFFLAGS).
    pub fn set_up(&self, name: &str, up: bool) -> io::Result<()> {
        let mut r = IfReq::new(name)?;
        self.ioctl(libc::SIOCGIFFLAGS, &mut r)?;
        let mut f = r.short() as u16;
        if up {
            f |= libc::IFF_UP as u16;
        } else {
            f &= !(libc::IFF_UP as u16);
        }
        r.set_short(f as i16);
        self.ioctl(libc::SIOCSIFFLAGS, &mut r)
    }

    /// SIOCGIFMTU.
    pub fn mtu(&self, name: &str) -> io::Result<u32> {
        let mut r = IfReq::new(name)?;
        self.ioctl(libc::SIOCGIFMTU, &mut r)?;
        Ok(r.int() as u32)
    }

    /// SIOCSIFMTU.
    pub fn set_mtu(&self, name: &str, mtu: u32) -> io::Result<()> {
        let mut r = IfReq::new(name)?;
        let v = i32::try_from(mtu).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        r.set_int(v);
        self.ioctl(libc::SIOCSIFMTU, &mut r)
    }

    /// SIOCGIFTXQLEN: the device's transmit queue length (for a TAP, how
    /// many frames the kernel queues for the reader before dropping).
    pub fn txqlen(&self, name: &str) -> io::Result<u32> {
        let mut r = IfReq::new(name)?;
        self.ioctl(libc::SIOCGIFTXQLEN, &mut r)?;
        Ok(r.int() as u32)
    }

    /// SIOCSIFTXQLEN.
    pub fn set_txqlen(&self, name: &str, len: u32) -> io::Result<()> {
        let mut r = IfReq::new(name)?;
        let v = i32::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        r.set_int(v);
        self.ioctl(libc::SIOCSIFTXQLEN, &mut r)
    }
}

/// SIOCGIFINDEX in our namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    Ctl::new()?.ifindex(name)
}

/// SIOCGIFFLAGS in our namespace.
pub fn flags(name: &str) -> io::Result<u32> {
    Ctl::new()?.flags(name)
}

/// Sets or clears IFF_UP in our namespace.
pub fn set_up(name: &str, up: bool) -> io::Result<()> {
    Ctl::new()?.set_up(name, up)
}

/// SIOCGIFMTU in our namespace.
pub fn mtu(name: &str) -> io::Result<u32> {
    Ctl::new()?.mtu(name)
}

/// SIOCSIFMTU in our namespace.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    Ctl::new()?.set_mtu(name, mtu)
}

/// True when `e` means "no such interface here" (deleted, or moved to
/// another netns).
pub fn is_no_device(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENODEV) | Some(libc::ENXIO))
}
