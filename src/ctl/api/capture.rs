//! Packet capture on a port, to a pcap file: bounded in time always, one
//! capture a port at a time, and abandoned when its client goes away.

use super::{Api, Error};
use crate::port::capture::{Capture, CaptureLimits};
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long a capture lasts when only `count` is given: a quiet port must
/// not hold a request (and a control thread) forever.
pub const DEFAULT_COUNT_LIMIT: Duration = Duration::from_secs(60);
/// How long a capture lasts when neither `count` nor `seconds` is given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// The longest capture.
pub const MAX_SECONDS: u64 = 3600;

/// Says that a waiting operation should give up: its client went away, or
/// the daemon is stopping. Cheap to clone; every clone sees the same flag,
/// and a [`Cancel::child`] also sees its parent's.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    own: Arc<AtomicBool>,
    parent: Option<Arc<AtomicBool>>,
}

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// A flag of its own that is also set when this one is (a request's,
    /// under the daemon's).
    pub fn child(&self) -> Cancel {
        Cancel {
            own: Arc::default(),
            parent: Some(self.own.clone()),
        }
    }

    /// Sets the flag.
    pub fn cancel(&self) {
        self.own.store(true, Ordering::Relaxed);
    }

    /// Whether the flag (or its parent's) is set.
    pub fn is_cancelled(&self) -> bool {
        self.own.load(Ordering::Relaxed)
            || self
                .parent
                .as_ref()
                .is_some_and(|p| p.load(Ordering::Relaxed))
    }
}

/// What to capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSpec {
    /// Port.
    pub port: String,
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// Stop after this many seconds (1..=3600).
    pub seconds: Option<u64>,
    /// The pcap file (absolute: the daemon writes it).
    pub file: PathBuf,
}

impl CaptureSpec {
    /// The time limit in force: always one.
    pub fn duration(&self) -> Result<Duration, Error> {
        match (self.count, self.seconds) {
            (_, Some(s)) if s == 0 || s > MAX_SECONDS => Err(Error::CaptureArg(format!(
                "--seconds {s}: a capture lasts 1..{MAX_SECONDS} seconds"
            ))),
            (_, Some(s)) => Ok(Duration::from_secs(s)),
            (Some(_), None) => Ok(DEFAULT_COUNT_LIMIT),
            (None, None) => Ok(DEFAULT_DURATION),
        }
    }
}

/// A finished capture.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureReply {
    /// The pcap file.
    pub file: PathBuf,
    /// Frames written.
    pub written: u64,
    /// Frames dropped because the writer lagged.
    pub dropped: u64,
}

impl fmt::Display for CaptureReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} frames written, {} dropped (writer too slow)",
            self.file.display(),
            self.written,
            self.dropped
        )
    }
}

/// Frees the port's capture slot however the capture ends.
struct Slot {
    set: Arc<parking_lot::Mutex<std::collections::BTreeSet<u32>>>,
    no: u32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.set.lock().remove(&self.no);
    }
}

impl Api {
    /// Captures what a port receives and sends until the count, the time
    /// limit or `cancel`; answers when the file is complete.
    pub fn capture(
        &self,
        bridge: &str,
        spec: &CaptureSpec,
        cancel: &Cancel,
    ) -> Result<CaptureReply, Error> {
        let duration = spec.duration()?;
        if !spec.file.is_absolute() {
            return Err(Error::CaptureArg(format!(
                "{}: the capture file must be an absolute path",
                spec.file.display()
            )));
        }
        // Find the port and take its slot, then let go of the bridges: a
        // capture runs for seconds and must not block other requests.
        let (no, tx, _slot) = self.with_bridge(bridge, |b| {
            let no = b.port(bridge, &spec.port)?.no;
            if !b.captures.lock().insert(no) {
                return Err(Error::CaptureBusy {
                    port: spec.port.clone(),
                });
            }
            let slot = Slot {
                set: b.captures.clone(),
                no,
            };
            Ok((no, b.workers.sender(), slot))
        })?;
        let limits = CaptureLimits {
            count: spec.count,
            duration: Some(duration),
        };
        let io_err = |source| Error::Capture {
            path: spec.file.display().to_string(),
            source,
        };
        let (cap, handle) = Capture::start(&spec.file, limits).map_err(io_err)?;
        tx.set_capture(no, Some(handle));
        while !cap.is_finished() {
            if cancel.is_cancelled() {
                cap.stop();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let sum = cap.wait();
        tx.set_capture(no, None);
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let sum = sum.map_err(io_err)?;
        Ok(CaptureReply {
            file: sum.path,
            written: sum.written,
            dropped: sum.dropped,
        })
    }
}
