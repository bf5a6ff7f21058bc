//! How the datapath thread sleeps: until a port's fd is readable, the
//! control plane rings a [`Waker`], or a timeout passes.
//!
//! A [`Poller`] maps caller tokens (port numbers, say) to fds. Ports change
//! fds over their life (a TAP recreated after deletion, a socket reopened)
//! and report `None` while down, so the datapath calls
//! [`Poller::set`]`(token, port.poll_fd())` after `housekeeping()` and after
//! each receive pass: an unchanged registration costs a comparison, not a
//! syscall. Registrations are level-triggered (a port reads at most one batch
//! per call, so a still-readable fd must wake us again).
//!
//! Fd numbers are reused by the kernel: the poller remembers which token
//! owns which fd, so a stale registration of a closed fd can never remove
//! the registration of the new fd that got the same number.
//!
//! `Poller` is owned by one thread; [`Waker`] is `Clone + Send + Sync`.

use super::sys::epoll::{self, Epoll, Event, EventFd};
use hashbrown::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// Token the waker's eventfd is registered under (never a caller token).
const WAKER_TOKEN: u64 = u64::MAX;

/// Wakes a [`Poller`] from any thread.
#[derive(Debug, Clone)]
pub struct Waker {
    fd: Arc<EventFd>,
}

impl Waker {
    /// Makes the poller's current or next `wait` return promptly.
    pub fn wake(&self) -> io::Result<()> {
        self.fd.signal()
    }
}

/// epoll over port fds plus a control eventfd.
#[derive(Debug)]
pub struct Poller {
    ep: Epoll,
    waker: Arc<EventFd>,
    by_token: HashMap<usize, RawFd>,
    by_fd: HashMap<RawFd, usize>,
    events: Vec<Event>,
}

impl Poller {
    /// A poller with its waker registered.
    pub fn new() -> io::Result<Poller> {
        let ep = Epoll::new()?;
        let waker = Arc::new(EventFd::new()?);
        ep.add(waker.as_fd().as_raw_fd(), WAKER_TOKEN, epoll::IN)?;
        Ok(Poller {
            ep,
            waker,
            by_token: HashMap::new(),
            by_fd: HashMap::new(),
            events: vec![Event::default(); 64],
        })
    }

    /// A waker for this poller.
    pub fn waker(&self) -> Waker {
        Waker {
            fd: self.waker.clone(),
        }
    }

    /// Makes `token` watch `fd` (or nothing, with `None`). Cheap when
    /// nothing changed.
    pub fn set(&mut self, token: usize, fd: Option<RawFd>) -> io::Result<()> {
        let cur = self.by_token.get(&token).copied();
        if cur == fd {
            return Ok(());
        }
        if let Some(old) = cur {
            self.by_token.remove(&token);
            if self.by_fd.get(&old) == Some(&token) {
                self.by_fd.remove(&old);
                // The fd may already be closed (its registration went with
                // it): EBADF / ENOENT are expected here.
                let _ = self.ep.delete(old);
            }
        }
        let Some(fd) = fd else {
            return Ok(());
        };
        if let Some(other) = self.by_fd.remove(&fd) {
            // A closed fd of `other` had this number: that registration is
            // gone with the old file, forget it without touching the new one.
            self.by_token.remove(&other);
        }
        let tok = token as u64;
        match self.ep.add(fd, tok, epoll::IN) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.ep.modify(fd, tok, epoll::IN)?
            }
            r => r?,
        }
        self.by_token.insert(token, fd);
        self.by_fd.insert(fd, token);
        Ok(())
    }

    /// Stops watching `token`.
    pub fn remove(&mut self, token: usize) -> io::Result<()> {
        self.set(token, None)
    }

    /// Sleeps until a watched fd is readable (or in error), a waker rings,
    /// or `timeout` passes (`None`: no timeout). Ready tokens are appended
    /// to `ready` (cleared first). Returns true when a [`Waker`] rang (it
    /// is reset).
    pub fn wait(&mut self, timeout: Option<Duration>, ready: &mut Vec<usize>) -> io::Result<bool> {
        ready.clear();
        let ms = match timeout {
            None => -1,
            // Round up so a 100 µs timeout does not become a busy poll.
            Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
        };
        let n = self.ep.wait(&mut self.events, ms)?;
        let mut woken = false;
        for ev in &self.events[..n] {
            if ev.token == WAKER_TOKEN {
                self.waker.drain()?;
                woken = true;
            } else {
                ready.push(ev.token as usize);
            }
        }
        Ok(woken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn readiness_waker_and_fd_reuse() {
        let mut p = Poller::new().unwrap();
        let mut ready = Vec::new();
        let (a, b) = UnixDatagram::pair().unwrap();
        p.set(1, Some(b.as_raw_fd())).unwrap();
        let woken = p.wait(Some(Duration::from_millis(1)), &mut ready).unwrap();
        assert_eq!((woken, ready.len()), (false, 0));

        a.send(b"x").unwrap();
        let woken = p.wait(Some(Duration::from_secs(5)), &mut ready).unwrap();
        assert_eq!(ready, vec![1]);
        assert!(!woken);
        // Level-triggered: still readable, still reported.
        p.wait(Some(Duration::from_secs(5)), &mut ready).unwrap();
        assert_eq!(ready, vec![1]);

        let waker = p.waker();
        std::thread::spawn(move || waker.wake().unwrap())
            .join()
            .unwrap();
        let woken = p.wait(Some(Duration::from_secs(5)), &mut ready).unwrap();
        assert!(woken);
        // The waker was reset: only the socket remains.
        let woken = p.wait(Some(Duration::from_secs(5)), &mut ready).unwrap();
        assert!(!woken);

        // Token 1's fd is closed and its number reused by token 2's new fd:
        // clearing token 1 afterwards must not unregister token 2.
        let num = b.as_raw_fd();
        drop(b);
        let (c, d) = UnixDatagram::pair().unwrap();
        let (c, d) = if d.as_raw_fd() == num { (c, d) } else { (d, c) };
        if d.as_raw_fd() == num {
            p.set(2, Some(d.as_raw_fd())).unwrap();
            p.set(1, None).unwrap();
            c.send(b"y").unwrap();
            p.wait(Some(Duration::from_secs(5)), &mut ready).unwrap();
            assert_eq!(ready, vec![2]);
        }
        p.set(2, None).unwrap();
        p.wait(Some(Duration::from_millis(1)), &mut ready).unwrap();
        assert!(ready.is_empty());
    }
}
