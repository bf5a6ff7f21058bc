//! Packet capture to pcap files (`vswitchctl capture br0 PORT -w FILE`).
//!
//! The operator's replacement for running tcpdump on four hosts: a port or
//! the datapath feeds the frames it receives and sends to a
//! [`CaptureHandle`]; a writer thread turns them into a classic pcap file
//! (Ethernet link type, microsecond timestamps) that tcpdump and tshark
//! read. A capture ends after `count` frames, after `duration`, or on
//! [`Capture::stop`], whichever comes first.
//!
//! The datapath side never blocks and never touches the file: `record`
//! copies the frame into a recycled buffer and hands it over a bounded
//! channel; when the writer falls behind, frames are counted as dropped
//! rather than slowing the switch. Buffers come back to the recorder, so a
//! long capture allocates only while warming up.
//!
//! GSO super-packets are captured as they are (up to 64 KiB), as tcpdump on
//! a TSO interface shows them; the snap length is 262144 like tcpdump's.

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, Endianness, TsResolution};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bytes kept of each frame.
pub const SNAPLEN: u32 = 262_144;
/// Frames the writer may lag behind before the recorder drops.
pub const QUEUE: usize = 8192;

/// When a capture ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureLimits {
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
}

/// What a finished capture wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSummary {
    /// The pcap file.
    pub path: PathBuf,
    /// Frames written.
    pub written: u64,
    /// Frames dropped because the writer lagged.
    pub dropped: u64,
}

/// The buffered file under the pcap writer, shared so we can flush it
/// (PcapWriter only gives its writer back by value).
#[derive(Clone)]
struct SharedFile(Arc<Mutex<BufWriter<File>>>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.lock().write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().flush()
    }
}

/// A synchronous pcap file writer (used by the capture thread; usable on
/// its own by tools and tests).
pub struct PcapSink {
    w: PcapWriter<SharedFile>,
    file: SharedFile,
    written: u64,
}

impl std::fmt::Debug for PcapSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapSink")
            .field("written", &self.written)
            .finish()
    }
}

fn pcap_err(e: pcap_file::PcapError) -> io::Error {
    io::Error::other(e.to_string())
}

impl PcapSink {
    /// Creates (truncates) `path` and writes the pcap file header.
    pub fn create(path: &Path) -> io::Result<PcapSink> {
        let file = SharedFile(Arc::new(Mutex::new(BufWriter::new(File::create(path)?))));
        let header = PcapHeader {
            version_major: 2,
            version_minor: 4,
            ts_correction: 0,
            ts_accuracy: 0,
            snaplen: SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::MicroSecond,
            endianness: Endianness::native(),
        };
        let w = PcapWriter::with_header(file.clone(), header).map_err(pcap_err)?;
        Ok(PcapSink {
            w,
            file,
            written: 0,
        })
    }

    /// Writes one frame seen at `ts`, truncated to [`SNAPLEN`].
    pub fn write(&mut self, ts: SystemTime, frame: &[u8]) -> io::Result<()> {
        let t = ts.duration_since(UNIX_EPOCH).unwrap_or_default();
        let orig = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let keep = &frame[..frame.len().min(SNAPLEN as usize)];
        self.w
            .write_packet(&PcapPacket::new(t, orig, keep))
            .map_err(pcap_err)?;
        self.written += 1;
        Ok(())
    }

    /// Flushes buffered frames to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// Frames written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}

#[derive(Debug)]
struct Shared {
    done: AtomicBool,
    accepted: AtomicU64,
    dropped: AtomicU64,
    count: Option<u64>,
    deadline: Option<Instant>,
}

impl Shared {
    fn finished(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }
}

/// The recording side of a capture: cheap to clone, usable from any thread,
/// never blocks.
#[derive(Debug, Clone)]
pub struct CaptureHandle {
    tx: Sender<(SystemTime, Vec<u8>)>,
    recycle: Receiver<Vec<u8>>,
    shared: Arc<Shared>,
}

impl CaptureHandle {
    /// Records one frame. Returns false once the capture has ended (the
    /// caller may then detach the handle).
    pub fn record(&self, frame: &[u8]) -> bool {
        let s = &*self.shared;
        if s.finished() {
            return false;
        }
        if let Some(d) = s.deadline {
            if Instant::now() >= d {
                s.done.store(true, Ordering::Relaxed);
                return false;
            }
        }
        if let Some(c) = s.count {
            if s.accepted.fetch_add(1, Ordering::Relaxed) >= c {
                s.done.store(true, Ordering::Relaxed);
                return false;
            }
        }
        let mut buf = self.recycle.try_recv().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(&frame[..frame.len().min(SNAPLEN as usize)]);
        match self.tx.try_send((SystemTime::now(), buf)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                s.dropped.fetch_add(1, Ordering::Relaxed);
                if s.count.is_some() {
                    // A dropped frame does not use up the count.
                    s.accepted.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        true
    }

    /// True once the capture has ended.
    pub fn is_finished(&self) -> bool {
        self.shared.finished()
    }
}

/// A running capture: owns the writer thread.
#[derive(Debug)]
pub struct Capture {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<io::Result<CaptureSummary>>>,
}

impl Capture {
    /// Creates the pcap file and starts the writer thread.
    pub fn start(path: &Path, limits: CaptureLimits) -> io::Result<(Capture, CaptureHandle)> {
        let mut sink = PcapSink::create(path)?;
        let (tx, rx) = bounded::<(SystemTime, Vec<u8>)>(QUEUE);
        let (rtx, rrx) = bounded::<Vec<u8>>(QUEUE);
        let shared = Arc::new(Shared {
            done: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            count: limits.count,
            deadline: limits.duration.map(|d| Instant::now() + d),
        });
        let sh = shared.clone();
        let path_buf = path.to_path_buf();
        let thread = std::thread::Builder::new().name("capture".into()).spawn(
            move || -> io::Result<CaptureSummary> {
                loop {
                    if sh.count.is_some_and(|c| sink.written() >= c) {
                        sh.done.store(true, Ordering::Relaxed);
                        break;
                    }
                    let wait = match sh.deadline {
                        Some(d) => d
                            .saturating_duration_since(Instant::now())
                            .min(Duration::from_millis(100)),
                        None => Duration::from_millis(100),
                    };
                    match rx.recv_timeout(wait) {
                        Ok((ts, buf)) => {
                            sink.write(ts, &buf)?;
                            let _ = rtx.try_send(buf);
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            sink.flush()?;
                            let late = sh.deadline.is_some_and(|d| Instant::now() >= d);
                            if late {
                                sh.done.store(true, Ordering::Relaxed);
                            }
                            if sh.finished() && rx.is_empty() {
                                break;
                            }
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                // Frames accepted before the end are still in the queue.
                while let Ok((ts, buf)) = rx.try_recv() {
                    if sh.count.is_some_and(|c| sink.written() >= c) {
                        break;
                    }
                    sink.write(ts, &buf)?;
                }
                sink.flush()?;
                Ok(CaptureSummary {
                    path: path_buf,
                    written: sink.written(),
                    dropped: sh.dropped.load(Ordering::Relaxed),
                })
            },
        )?;
        Ok((
            Capture {
                shared: shared.clone(),
                thread: Some(thread),
            },
            CaptureHandle {
                tx,
                recycle: rrx,
                shared,
            },
        ))
    }

    /// Ends the capture now (frames already recorded are still written).
    pub fn stop(&self) {
        self.shared.done.store(true, Ordering::Relaxed);
    }

    /// True once the capture has ended (limit reached or stopped).
    pub fn is_finished(&self) -> bool {
        self.shared.finished() || self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the capture to end (its limits, or [`Capture::stop`]) and
    /// for the file to be complete.
    pub fn wait(mut self) -> io::Result<CaptureSummary> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("capture thread panicked"))?,
            None => Err(io::Error::other("capture already finished")),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_limit_and_readback() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pcap");
        let (cap, h) = Capture::start(
            &path,
            CaptureLimits {
                count: Some(3),
                duration: None,
            },
        )
        .unwrap();
        for i in 0..5u8 {
            let ok = h.record(&[i; 60]);
            assert_eq!(ok, i < 3, "frame {i}");
        }
        let s = cap.wait().unwrap();
        assert_eq!((s.written, s.dropped), (3, 0));
        let mut r = pcap_file::pcap::PcapReader::new(File::open(&path).unwrap()).unwrap();
        assert_eq!(r.header().datalink, DataLink::ETHERNET);
        let mut n = 0;
        while let Some(p) = r.next_packet() {
            let p = p.unwrap();
            assert_eq!(&p.data[..], &[n as u8; 60][..]);
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn duration_limit_ends_capture() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.pcap");
        let (cap, h) = Capture::start(
            &path,
            CaptureLimits {
                count: None,
                duration: Some(Duration::from_millis(50)),
            },
        )
        .unwrap();
        assert!(h.record(&[1; 64]));
        let s = cap.wait().unwrap();
        assert_eq!(s.written, 1);
        assert!(!h.record(&[2; 64]), "no frame accepted after the end");
    }
}
