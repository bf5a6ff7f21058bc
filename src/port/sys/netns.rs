//! Network namespaces: moving the calling thread into a named one.
//!
//! A socket belongs to the namespace of the thread that created it, for its
//! whole life. So a tool that sends into an interface living in another
//! namespace (a VM's TAP, a veth end) enters that namespace on a dedicated
//! thread, opens its sockets there, and never comes back: the rest of the
//! process stays where it was.

use super::cvt;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Where `ip netns add NAME` keeps the namespace handle.
const NETNS_RUN_DIR: &str = "/run/netns";

/// Moves the calling thread into the network namespace `name` (as created
/// by `ip netns add`, or any path to a namespace file such as
/// `/proc/PID/ns/net`). Only this thread moves; sockets opened afterwards
/// on it live in that namespace.
pub fn enter(name: &str) -> io::Result<()> {
    let path = if name.contains('/') {
        Path::new(name).to_path_buf()
    } else {
        if name.is_empty() || name == "." || name == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid namespace name {name:?}"),
            ));
        }
        Path::new(NETNS_RUN_DIR).join(name)
    };
    let f = std::fs::File::open(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("network namespace {}: {e}", path.display()),
        )
    })?;
    // SAFETY: setns only reads the fd, which `f` keeps open for the call;
    // CLONE_NEWNET makes the kernel check that it is a network namespace.
    cvt(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_namespace_is_an_error() {
        assert!(enter("vswitch-no-such-namespace-xyz").is_err());
        assert!(enter("..").is_err());
        assert!(enter("").is_err());
    }
}
