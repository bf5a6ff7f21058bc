//! io_uring for batches of non-blocking reads and writes on one fd.
//!
//! A TAP has no batch read or write: one `read` or `write` per frame, two
//! syscalls per forwarded frame. A [`Batcher`] puts a whole batch of
//! `readv` (or `writev`) requests, one per frame, into an io_uring and
//! submits them with one `io_uring_enter`, so a batch of 32 frames costs
//! one syscall instead of 32.
//!
//! Every request carries `RWF_NOWAIT`: a read with no frame queued, or a
//! write the device cannot take, completes at once with `EAGAIN` instead of
//! waiting for the fd (io_uring would otherwise arm a poll and finish it
//! later). So each call completes everything it submitted before it
//! returns: nothing is left in flight between calls. That is what keeps
//! this safe with borrowed buffers (the kernel is done with them when the
//! call returns), and what keeps the fd's own semantics: readiness is still
//! the fd's (epoll on it as before), a frame is never read by a request
//! nobody reaps (during an upgrade's handover, after the device is lost),
//! and the ring may move between threads freely (no task-bound work).
//!
//! Not thread-safe by itself (`&mut self`); `Send`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use io_uring::{opcode, types, IoUring};

/// Most requests one call takes (the ring's submission queue size).
pub const MAX_BATCH: usize = 64;

/// Most byte slices one request reads into or writes from.
pub const MAX_PARTS: usize = 3;

/// One batch's results: per request, in the order given, the byte count
/// or the error.
pub type Results = Vec<io::Result<usize>>;

/// A ring for batches of non-blocking reads and writes (see the module
/// docs).
pub struct Batcher {
    ring: IoUring,
    /// The iovecs of the call in progress. Filled, used and cleared within
    /// one call: between calls it holds nothing.
    iovs: Vec<libc::iovec>,
    /// Raw results of the call in progress, by request index.
    raw: Vec<i32>,
}

// SAFETY: the only non-Send fields are the raw pointers inside `iovs`,
// which are written, handed to the kernel and cleared within one `&mut
// self` call; between calls the vector is empty. The ring itself is Send.
unsafe impl Send for Batcher {}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("entries", &self.ring.params().sq_entries())
            .finish()
    }
}

/// A completion's result as an `io::Result`.
fn result(res: i32) -> io::Result<usize> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    }
}

/// True when a request's error says the ring cannot do this kind of I/O on
/// the fd at all (a file without non-blocking support refuses
/// `RWF_NOWAIT`), as opposed to an error of the I/O itself.
pub fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL)
    )
}

/// True for an `io_uring_enter` error worth retrying at once.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
    )
}

impl Batcher {
    /// A ring for batches of up to [`MAX_BATCH`] requests. Fails where
    /// io_uring is unavailable (an old kernel, a seccomp filter,
    /// `io_uring_disabled`, RLIMIT_MEMLOCK on kernels before 5.12).
    pub fn new() -> io::Result<Batcher> {
        let n = MAX_BATCH as u32;
        // SUBMIT_ALL: a request refused at submission does not stop the
        // ones after it (each gets its own completion). COOP_TASKRUN: no
        // interrupt to run completion work, which never arises here as
        // everything completes inline.
        let ring = IoUring::builder()
            .setup_cqsize(2 * n)
            .setup_submit_all()
            .setup_coop_taskrun()
            .build(n)
            .or_else(|_| IoUring::builder().setup_cqsize(2 * n).build(n))?;
        Ok(Batcher {
            ring,
            iovs: Vec::with_capacity(MAX_BATCH * MAX_PARTS),
            raw: Vec::with_capacity(MAX_BATCH),
        })
    }

    /// Reads one frame into each entry of `reads` (at most [`MAX_BATCH`]
    /// of them), scattering it over that entry's slices in order (empty
    /// slices are skipped). Each read takes what is queued or fails with
    /// `WouldBlock`; `out` gets one result per entry, in order. Nothing
    /// waits for the fd; the call returns when every read completed.
    pub fn read_each<'a, I>(&mut self, fd: BorrowedFd<'_>, reads: I, out: &mut Results)
    where
        I: IntoIterator<Item = [&'a mut [u8]; MAX_PARTS]>,
    {
        self.iovs.clear();
        let mut counts = [0u8; MAX_BATCH];
        let mut n = 0;
        for parts in reads.into_iter().take(MAX_BATCH) {
            for p in parts.into_iter().filter(|p| !p.is_empty()) {
                self.iovs.push(libc::iovec {
                    iov_base: p.as_mut_ptr().cast(),
                    iov_len: p.len(),
                });
                counts[n] += 1;
            }
            n += 1;
        }
        self.run(fd, &counts[..n], false, out);
    }

    /// Writes one frame from each entry of `writes` (at most
    /// [`MAX_BATCH`]), gathered from that entry's slices in order. A write
    /// the fd cannot take now fails with `WouldBlock`; `out` gets one
    /// result per entry, in order. The call returns when every write
    /// completed.
    pub fn write_each<'a, I>(&mut self, fd: BorrowedFd<'_>, writes: I, out: &mut Results)
    where
        I: IntoIterator<Item = [&'a [u8]; 2]>,
    {
        self.iovs.clear();
        let mut counts = [0u8; MAX_BATCH];
        let mut n = 0;
        for parts in writes.into_iter().take(MAX_BATCH) {
            for p in parts.into_iter().filter(|p| !p.is_empty()) {
                self.iovs.push(libc::iovec {
                    // The kernel only reads through this pointer (writev).
                    iov_base: p.as_ptr().cast_mut().cast(),
                    iov_len: p.len(),
                });
                counts[n] += 1;
            }
            n += 1;
        }
        self.run(fd, &counts[..n], true, out);
    }

    /// Submits one request per entry of `counts` (its iovecs are the next
    /// `counts[i]` of `self.iovs`), waits for all of them, and fills `out`.
    fn run(&mut self, fd: BorrowedFd<'_>, counts: &[u8], write: bool, out: &mut Results) {
        out.clear();
        self.raw.clear();
        self.raw.resize(counts.len(), -libc::ECANCELED);
        let fd = types::Fd(fd.as_raw_fd());
        // `iovs` is complete and is not touched again until every request
        // completed: the pointers below stay valid for the kernel.
        let mut at = 0;
        let mut pushed = 0;
        for (i, &c) in counts.iter().enumerate() {
            let iov = self.iovs[at..].as_ptr();
            let one = self.iovs.get(at).filter(|_| c == 1);
            at += c as usize;
            // A single slice goes as a plain read or write: the kernel
            // then has no iovec array to copy in.
            let e = match (one, write) {
                (Some(v), true) => opcode::Write::new(
                    fd,
                    v.iov_base.cast(),
                    v.iov_len.min(u32::MAX as usize) as u32,
                )
                .rw_flags(libc::RWF_NOWAIT)
                .build(),
                (Some(v), false) => opcode::Read::new(
                    fd,
                    v.iov_base.cast(),
                    v.iov_len.min(u32::MAX as usize) as u32,
                )
                .rw_flags(libc::RWF_NOWAIT)
                .build(),
                (None, true) => opcode::Writev::new(fd, iov, c as u32)
                    .rw_flags(libc::RWF_NOWAIT)
                    .build(),
                (None, false) => opcode::Readv::new(fd, iov, c as u32)
                    .rw_flags(libc::RWF_NOWAIT)
                    .build(),
            }
            .user_data(i as u64);
            // SAFETY: the iovecs and the byte slices they point to are
            // borrowed by the caller for the whole call (`'a` outlives
            // it), the fd is borrowed likewise, and this call does not
            // return before the request's completion was reaped (below), so
            // the kernel never touches them afterwards. The queue has room:
            // it holds MAX_BATCH entries and is empty between calls.
            if unsafe { self.ring.submission().push(&e) }.is_err() {
                break;
            }
            pushed += 1;
        }
        self.finish(pushed);
        out.extend(self.raw.iter().map(|&r| result(r)));
    }

    /// Submits the `pushed` requests queued and reaps their completions,
    /// retrying interrupted waits. Returns only when the kernel is done
    /// with every buffer those requests name.
    fn finish(&mut self, pushed: usize) {
        let mut left = pushed;
        while left > 0 {
            // Submits whatever is still queued and waits for at least one
            // completion; RWF_NOWAIT requests complete during submission.
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if transient(&e) => {}
                Err(e) => {
                    // Requests may be in flight on buffers we only
                    // borrowed: returning would let the kernel write into
                    // memory that is no longer ours. No known kernel fails
                    // a wait on a live ring this way.
                    tracing::error!("io_uring_enter failed with requests in flight: {e}");
                    std::process::abort();
                }
            }
            for c in self.ring.completion() {
                if let Some(r) = self.raw.get_mut(c.user_data() as usize) {
                    *r = c.result();
                }
                left = left.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    /// A non-blocking pipe, as `(read end, write end)`.
    fn pipe() -> (std::fs::File, std::fs::File) {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        use std::os::fd::FromRawFd;
        // SAFETY: both fds were just opened and are owned by nobody else.
        unsafe {
            (
                std::fs::File::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        }
    }

    fn batcher() -> Option<Batcher> {
        match Batcher::new() {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("SKIP: io_uring unavailable here: {e}");
                None
            }
        }
    }

    #[test]
    fn writes_then_reads_a_batch_in_order_and_would_block_when_empty() {
        let Some(mut b) = batcher() else {
            return;
        };
        let (r, w) = pipe();
        let mut out = Results::new();
        let frames: [&[u8]; 3] = [b"one", b"two", b"three"];
        b.write_each(
            w.as_fd(),
            frames.iter().map(|f| [&f[..1], &f[1..]]),
            &mut out,
        );
        let n: Vec<usize> = out.iter().map(|r| *r.as_ref().unwrap()).collect();
        assert_eq!(n, vec![3, 3, 5]);
        // A pipe is a byte stream: read it back over two slices per read,
        // and a third read finds nothing.
        let mut a = [0u8; 2];
        let mut c = [0u8; 9];
        let mut empty = [0u8; 4];
        b.read_each(
            r.as_fd(),
            [
                [&mut a[..], &mut c[..], &mut [][..]],
                [&mut empty[..], &mut [][..], &mut [][..]],
            ],
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(*out[0].as_ref().unwrap(), 11);
        assert_eq!(&a, b"on");
        assert_eq!(&c, b"etwothree");
        assert_eq!(
            out[1].as_ref().unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn errors_are_per_request() {
        let Some(mut b) = batcher() else {
            return;
        };
        let (r, w) = pipe();
        drop(r);
        let mut out = Results::new();
        let f: &[u8] = b"x";
        b.write_each(w.as_fd(), [[f, &[][..]], [f, f]], &mut out);
        assert_eq!(out.len(), 2);
        for r in &out {
            assert_eq!(r.as_ref().unwrap_err().raw_os_error(), Some(libc::EPIPE));
        }
        // An empty batch is no call at all.
        b.write_each(w.as_fd(), std::iter::empty(), &mut out);
        assert!(out.is_empty());
    }
}
