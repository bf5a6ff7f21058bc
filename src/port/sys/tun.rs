//! `/dev/net/tun`: create or attach a TAP and configure it through its fd.
//!
//! Why not a tun-tap crate: the vnet_hdr flag and the offloads must be set
//! at creation, on the fd, before the kernel side can be moved to another
//! netns; after that no name-based call reaches the device. Everything here
//! takes the fd, except [`open_tap`] which names the device once.
//!
//! A TAP we create is made persistent ([`set_persist`]), as Open vSwitch
//! does: a crash of the daemon closes its fds, and a non-persistent TAP would
//! vanish with them, taking the VM's NIC (and its addresses) away. Removing
//! a TAP we created is therefore explicit: clear IFF_PERSIST, then close.
//!
//! The namespace a device is created in, or looked up in by TUNSETIFF, is
//! the one the `/dev/net/tun` fd was *opened* in ([`open_dev`]), not the
//! caller's at TUNSETIFF time: that is how a device is re-attached where it
//! lives (see [`super::netns`]). TUNSETIFF creates the device when the name
//! is unknown there, so callers that only mean to attach check first.

use super::{cvt, IfReq};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

/// Size of `struct virtio_net_hdr` (without `num_buffers`), the header we
/// ask the kernel to put in front of every frame with TUNSETVNETHDRSZ.
pub const VNET_HDR_LEN: usize = 10;

/// `IFF_TAP`: Ethernet frames.
pub const IFF_TAP: u16 = libc::IFF_TAP as u16;
/// `IFF_NO_PI`: no 4-byte packet-information prefix.
pub const IFF_NO_PI: u16 = libc::IFF_NO_PI as u16;
/// `IFF_VNET_HDR`: a virtio_net_hdr precedes each frame.
pub const IFF_VNET_HDR: u16 = libc::IFF_VNET_HDR as u16;
/// `IFF_PERSIST`: the device outlives its fds (set by whoever made it).
pub const IFF_PERSIST: u16 = 0x0800;
/// `IFF_MULTI_QUEUE`: the device takes several fds, one per queue; the
/// kernel spreads the frames it sends us over them by flow.
pub const IFF_MULTI_QUEUE: u16 = libc::IFF_MULTI_QUEUE as u16;

/// `TUN_F_CSUM`: we accept frames with a partial checksum.
pub const TUN_F_CSUM: u32 = 0x01;
/// `TUN_F_TSO4`: we accept TCPv4 GSO super-packets.
pub const TUN_F_TSO4: u32 = 0x02;
/// `TUN_F_TSO6`: we accept TCPv6 GSO super-packets.
pub const TUN_F_TSO6: u32 = 0x04;

/// An open TAP queue.
#[derive(Debug)]
pub struct TapFd {
    file: File,
    name: String,
    flags: u16,
}

impl TapFd {
    /// The device name the kernel gave (or confirmed).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True when the device is persistent (it outlives its fds).
    pub fn persistent(&self) -> bool {
        self.flags & IFF_PERSIST != 0
    }

    /// True when the device takes more queues ([`open_queue`]).
    pub fn multi_queue(&self) -> bool {
        self.flags & IFF_MULTI_QUEUE != 0
    }

    /// The fd as a `File`, for `read_vectored` / `write_vectored`.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl AsFd for TapFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Opens `/dev/net/tun` (non-blocking, close-on-exec) in the calling
/// thread's namespace.
pub fn open_dev() -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
}

/// Opens `/dev/net/tun` in our namespace and attaches it to TAP `name`
/// there (see [`set_iff`]).
pub fn open_tap(name: &str, vnet_hdr: bool, offloads: u32) -> io::Result<TapFd> {
    set_iff(open_dev()?, name, vnet_hdr, offloads)
}

/// Attaches `file` (from [`open_dev`]) to TAP `name` in the namespace
/// `file` was opened in, creating the device when it does not exist there.
/// With `vnet_hdr` every frame read or written carries a
/// [`VNET_HDR_LEN`]-byte virtio_net_hdr, and `offloads` (TUN_F_*) are
/// announced so the kernel side may hand us partial checksums and TSO
/// super-packets.
///
/// Re-attaching to an existing (persistent) TAP takes the same path: the
/// kernel replaces the device's IFF_NO_PI / IFF_VNET_HDR flags with the
/// ones given here, and the header size and offloads are per device, so
/// they are set again, to exactly what a creation sets; the flags the
/// kernel reports afterwards are checked against what was asked.
///
/// A device is created multi-queue (IFF_MULTI_QUEUE), so every datapath
/// worker can have a queue of it; an existing device made single-queue
/// (`ip tuntap add` without `multi_queue`) refuses that flag with EINVAL,
/// and is attached to as it is.
pub fn set_iff(file: File, name: &str, vnet_hdr: bool, offloads: u32) -> io::Result<TapFd> {
    let mut flags = IFF_TAP | IFF_NO_PI;
    if vnet_hdr {
        flags |= IFF_VNET_HDR;
    }
    match tunsetiff(&file, name, flags | IFF_MULTI_QUEUE) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => tunsetiff(&file, name, flags)?,
        r => r?,
    }
    finish_attach(file, vnet_hdr, offloads, flags)
}

/// Opens another queue of the multi-queue TAP `q` is a queue of. The new
/// fd is opened in the calling thread's namespace, which must be the one
/// the device lives in (see [`open_dev`]).
pub fn open_queue(q: &TapFd, offloads: u32) -> io::Result<TapFd> {
    let mut flags = IFF_TAP | IFF_NO_PI;
    if q.vnet_hdr() {
        flags |= IFF_VNET_HDR;
    }
    let file = open_dev()?;
    tunsetiff(&file, &q.name, flags | IFF_MULTI_QUEUE)?;
    finish_attach(file, q.vnet_hdr(), offloads, flags)
}

/// TUNSETIFF with `flags` for device `name`.
fn tunsetiff(file: &File, name: &str, flags: u16) -> io::Result<()> {
    let mut req = IfReq::new(name)?;
    req.set_short(flags as i16);
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `req` is one
    // (40 bytes, 8-aligned) and lives across the call.
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF as _, &mut req) })?;
    Ok(())
}

/// After TUNSETIFF: the vnet header and offloads, then the flags the
/// kernel reports, checked against `flags` (what was asked, without the
/// multi-queue bit).
fn finish_attach(file: File, vnet_hdr: bool, offloads: u32, flags: u16) -> io::Result<TapFd> {
    if vnet_hdr {
        set_vnet_hdr_size(file.as_fd(), VNET_HDR_LEN as i32)?;
        set_offload(file.as_fd(), offloads)?;
    }
    let (real_name, got) = get_iff(file.as_fd())?;
    let want = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if got & want != flags {
        return Err(io::Error::other(format!(
            "tap {real_name}: flags {got:#x} after attach, asked {flags:#x}"
        )));
    }
    Ok(TapFd {
        file,
        name: real_name,
        flags: got,
    })
}

/// Takes over a TAP fd opened by another process (an upgrade hands its
/// fds over): learns its name and flags from the fd itself, so it works
/// wherever the device's kernel side lives. Refuses an fd that is not a
/// TAP queue.
pub fn adopt(fd: std::os::fd::OwnedFd) -> io::Result<TapFd> {
    let (name, flags) = get_iff(fd.as_fd())?;
    if flags & IFF_TAP == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name}: handed-over fd is not a TAP"),
        ));
    }
    let file = File::from(fd);
    set_nonblocking(file.as_fd())?;
    Ok(TapFd { file, name, flags })
}

/// O_NONBLOCK on `fd` (a handed-over fd keeps the sender's flags, which
/// are ours too, but a stray blocking fd would stall the datapath).
fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL take and return plain ints.
    let fl = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) })?;
    Ok(())
}

impl TapFd {
    /// Whether frames carry a virtio-net header.
    pub fn vnet_hdr(&self) -> bool {
        self.flags & IFF_VNET_HDR != 0
    }
}

/// TUNSETPERSIST: whether the device outlives its last fd. Updates the
/// flags [`TapFd::persistent`] reports.
pub fn set_persist(fd: &mut TapFd, on: bool) -> io::Result<()> {
    // SAFETY: TUNSETPERSIST takes its argument by value (an unsigned long),
    // no pointer is dereferenced.
    cvt(unsafe {
        libc::ioctl(
            fd.file.as_raw_fd(),
            libc::TUNSETPERSIST as _,
            libc::c_ulong::from(on),
        )
    })?;
    if on {
        fd.flags |= IFF_PERSIST;
    } else {
        fd.flags &= !IFF_PERSIST;
    }
    Ok(())
}

/// TUNSETVNETHDRSZ: the size of the header in front of each frame.
fn set_vnet_hdr_size(fd: BorrowedFd<'_>, size: i32) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer; `size` is
    // a live i32.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ as _, &size) })?;
    Ok(())
}

/// TUNSETOFFLOAD: which offloads (TUN_F_*) our side of the fd accepts.
fn set_offload(fd: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned long),
    // no pointer is dereferenced.
    cvt(unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD as _,
            flags as libc::c_ulong,
        )
    })?;
    Ok(())
}

/// TUNGETIFF: the device's name and flags. Fails with `EBADFD` once the
/// device is gone (deleted with `ip link del`, its netns destroyed), which
/// is how a port notices without any name-based call.
pub fn get_iff(fd: BorrowedFd<'_>) -> io::Result<(String, u16)> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: [0; 24],
    };
    // SAFETY: TUNGETIFF writes a `struct ifreq` into `req`, which is one.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF as _, &mut req) })?;
    Ok((req.name(), req.short() as u16))
}

/// True when `e` means the TAP behind the fd no longer exists.
pub fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EBADFD) | Some(libc::ENODEV) | Some(libc::ENXIO)
    )
}
