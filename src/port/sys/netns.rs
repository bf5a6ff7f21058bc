//! Network namespaces: naming them, finding them, and running a few OS
//! calls inside one.
//!
//! A TAP's kernel side usually lives in a VM's (or container's) namespace,
//! not ours. Everything that must reach the device by name or index after
//! that (its flags, its counters, its queue length, attaching a new fd to it
//! after a restart) has to be done from inside that namespace. Sockets and
//! `/dev/net/tun` fds belong to the namespace they were *opened* in, and
//! keep it for their whole life; so [`NetNs::run_in`] opens them on a
//! short-lived thread that `setns()`s into the namespace, and hands the fds
//! back: the calling thread never changes namespace.
//!
//! A namespace is identified by the device and inode of its nsfs file
//! ([`NsId`]), as `ip netns identify` does; `/run/netns/NAME` (what
//! `ip netns add` creates) and `/proc/PID/ns/net` are where one can be found
//! again by that identity.

use super::cvt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where `ip netns add` puts named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// The identity of a network namespace: device and inode of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NsId {
    /// `st_dev` of the namespace file.
    pub dev: u64,
    /// `st_ino` of the namespace file.
    pub ino: u64,
}

/// An open network namespace.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    id: NsId,
}

impl NetNs {
    /// The namespace of the calling thread.
    pub fn current() -> io::Result<NetNs> {
        NetNs::open(Path::new("/proc/thread-self/ns/net"))
    }

    /// Opens a namespace file (`/run/netns/NAME`, `/proc/PID/ns/net`).
    pub fn open(path: &Path) -> io::Result<NetNs> {
        let f = File::open(path)?;
        NetNs::from_fd(f.into())
    }

    /// Wraps an fd that refers to a network namespace.
    pub fn from_fd(fd: OwnedFd) -> io::Result<NetNs> {
        let m = File::from(fd.try_clone()?).metadata()?;
        Ok(NetNs {
            fd,
            id: NsId {
                dev: m.dev(),
                ino: m.ino(),
            },
        })
    }

    /// The namespace's identity.
    pub fn id(&self) -> NsId {
        self.id
    }

    /// Runs `f` on a new thread that has entered this namespace, and
    /// returns its result. Fds `f` opens (sockets, `/dev/net/tun`) belong
    /// to this namespace for their whole life and work from any thread.
    /// When this is the caller's namespace `f` runs directly.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
        if NetNs::current().is_ok_and(|c| c.id == self.id) {
            return f();
        }
        let fd = self.fd.as_fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                setns_net(fd)?;
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
        })
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Moves the calling thread, for good, into the network namespace `name`
/// (as created by `ip netns add`, or any path to a namespace file such as
/// `/proc/PID/ns/net`): for a tool's dedicated sending or receiving
/// thread, whose sockets must live there. The rest of the process stays
/// where it was.
pub fn enter(name: &str) -> io::Result<()> {
    let path = if name.contains('/') {
        PathBuf::from(name)
    } else {
        if name.is_empty() || name == "." || name == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid namespace name {name:?}"),
            ));
        }
        Path::new(NETNS_RUN_DIR).join(name)
    };
    let ns = NetNs::open(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("network namespace {}: {e}", path.display()),
        )
    })?;
    setns_net(ns.as_fd())
}

/// setns(fd, CLONE_NEWNET) for the calling thread only.
fn setns_net(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: setns takes an fd (valid for the borrow) and a flag; it only
    // changes the calling thread's namespace, which is a thread of our own
    // that ends right after.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

/// TUNGETDEVNETNS: the namespace the TAP device behind `tun` lives in now
/// (Linux >= 5.2).
pub fn of_tun(tun: BorrowedFd<'_>) -> io::Result<NetNs> {
    // SAFETY: TUNGETDEVNETNS takes no argument and returns a new fd (or -1);
    // we take ownership of that fd right away.
    let fd = cvt(unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNGETDEVNETNS as _) })?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one
    // else.
    NetNs::from_fd(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The named namespaces (`/run/netns/*`), sorted by name; empty when the
/// directory does not exist.
pub fn named() -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(NETNS_RUN_DIR)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The name under `/run/netns` of namespace `id`, if it has one.
pub fn name_of(id: NsId) -> Option<String> {
    named().into_iter().find_map(|(n, p)| {
        let m = std::fs::metadata(&p).ok()?;
        (m.dev() == id.dev && m.ino() == id.ino).then_some(n)
    })
}

/// Opens namespace `id`: by `hint` (a `/run/netns` name) first, then any
/// named namespace, then any process's (`/proc/PID/ns/net`: a container or
/// a VM's helper that nobody named). `None` when it no longer exists.
pub fn find(id: NsId, hint: Option<&str>) -> Option<NetNs> {
    find_path(id, hint).and_then(|p| NetNs::open(&p).ok())
}

/// True when `path` is (still) namespace `id`.
pub fn is_at(path: &Path, id: NsId) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.dev() == id.dev && m.ino() == id.ino)
}

/// Where namespace `id` can be opened: as [`find`], but only the path.
pub fn find_path(id: NsId, hint: Option<&str>) -> Option<PathBuf> {
    let hinted = hint.map(|h| Path::new(NETNS_RUN_DIR).join(h));
    let named = named().into_iter().map(|(_, p)| p);
    hinted
        .into_iter()
        .chain(named)
        .chain(proc_paths())
        .find(|p| is_at(p, id))
}

/// `/proc/PID/ns/net` of every process.
fn proc_paths() -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .map(|e| e.path().join("ns/net"))
}

/// True when namespace `id` is bind-mounted somewhere we can see (by
/// `ip netns add`, a container runtime, anywhere else): its nsfs mount
/// shows as `net:[INODE]` in our mountinfo.
pub fn is_mounted(id: NsId) -> bool {
    let want = format!("net:[{}]", id.ino);
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split(' ').nth(3) == Some(want.as_str()))
    })
}

/// Where namespace `id` is kept alive by someone else than an fd of ours:
/// a path to it when it is mounted or a process lives in it; `None` when
/// nothing but our fds holds it (a destroyed VM's namespace that only an
/// fd we opened inside it keeps from going away).
pub fn holder(id: NsId, hint: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = hint.filter(|p| is_at(p, id)) {
        return Some(p.to_path_buf());
    }
    if is_mounted(id) {
        return find_path(id, None).or_else(|| Some(PathBuf::from("/proc/self/mountinfo")));
    }
    let me = std::process::id().to_string();
    proc_paths()
        .filter(|p| !p.starts_with(Path::new("/proc").join(&me)))
        .find(|p| is_at(p, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entering_an_unknown_namespace_is_an_error() {
        assert!(enter("vswitch-no-such-namespace-xyz").is_err());
        assert!(enter("..").is_err());
        assert!(enter("").is_err());
    }

    #[test]
    fn current_namespace_has_a_stable_identity() {
        let a = NetNs::current().unwrap();
        let b = NetNs::current().unwrap();
        assert_eq!(a.id(), b.id());
        // Running "inside" our own namespace is a direct call.
        let t = std::thread::current().id();
        assert_eq!(a.run_in(|| Ok(std::thread::current().id())).unwrap(), t);
    }
}
