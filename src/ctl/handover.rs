//! Upgrade without a dropped connection: a new vswitchd takes the running
//! one's place, receiving its device fds and connection tables over the
//! control socket.
//!
//! The exchange, on one connection (`vswitchd --takeover` is the new side,
//! the running daemon's control server the old side):
//!
//! 1. new → old: the control request `{"cmd":"handover"}`.
//! 2. old → new: a header naming each port's fds (bridge, port, count),
//!    then the fds themselves (`SCM_RIGHTS`, at most 253 a message). The
//!    old one keeps forwarding meanwhile.
//! 3. The new one builds its bridges and ports from its own configuration
//!    (or state), each port taking over its fds instead of opening its
//!    device; its datapaths start paused. Then new → old: `ready`.
//! 4. old: pauses its datapaths (packets wait in the devices' queues),
//!    closes the device queues of its workers but the first (so the
//!    devices spread traffic over the new process's queues, not into ones
//!    nobody will read), exports every bridge's connection table, sends
//!    them.
//! 5. new: imports them, starts its datapaths, → old: `running`.
//! 6. old: exits, leaving every device in place (the new one holds them).
//!
//! Only steps 4 and 5 stop forwarding: the pause lasts an export, a copy
//! and an import, whatever the size of the flow tables. Any failure before
//! `running` leaves the old one forwarding as before (it resumes), and the
//! new one exits with the reason.
//!
//! Frames on the connection: a 4-byte big-endian length, then the bytes.

use super::api::{Api, Error as ApiError};
use super::proto::Request;
use crate::port::sys::scm;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the old process waits for the new one to be ready (it builds
/// every bridge, port and flow table meanwhile; the old one forwards).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long either side waits for any other step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest frame accepted (a connection table of ~12M entries).
const MAX_FRAME: usize = 1 << 30;

/// Why an upgrade did not happen.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// The socket failed (or timed out).
    #[error("handover: {what}: {source}")]
    Io {
        /// Which step.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The other side sent something this side did not expect.
    #[error("handover: {0}")]
    Protocol(String),
    /// The switch refused a step (a table that does not import).
    #[error("handover: {0}")]
    Api(#[from] ApiError),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> HandoverError {
    move |source| HandoverError::Io { what, source }
}

/// Step 2's header.
#[derive(Debug, Serialize, Deserialize)]
struct FdsHeader {
    /// The old process's pid (for the log).
    pid: u32,
    ports: Vec<FdPort>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FdPort {
    bridge: String,
    port: String,
    fds: usize,
}

/// Step 4's header: one frame of table bytes follows for each entry.
#[derive(Debug, Serialize, Deserialize)]
struct CtHeader {
    bridges: Vec<String>,
}

fn write_frame(s: &mut UnixStream, what: &'static str, b: &[u8]) -> Result<(), HandoverError> {
    let len = u32::try_from(b.len())
        .map_err(|_| HandoverError::Protocol(format!("{what}: {} bytes is too big", b.len())))?;
    s.write_all(&len.to_be_bytes()).map_err(io(what))?;
    s.write_all(b).map_err(io(what))
}

fn read_frame(s: &mut UnixStream, what: &'static str) -> Result<Vec<u8>, HandoverError> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).map_err(io(what))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(HandoverError::Protocol(format!(
            "{what}: a {len}-byte frame"
        )));
    }
    let mut b = vec![0u8; len];
    s.read_exact(&mut b).map_err(io(what))?;
    Ok(b)
}

fn expect(s: &mut UnixStream, what: &'static str, word: &[u8]) -> Result<(), HandoverError> {
    let got = read_frame(s, what)?;
    if got != word {
        return Err(HandoverError::Protocol(format!(
            "{what}: expected {:?}, got {:?}",
            String::from_utf8_lossy(word),
            String::from_utf8_lossy(&got)
        )));
    }
    Ok(())
}

/// The old side, run by the control server on the connection that asked
/// for a handover (now blocking). `Ok` means the new process runs: stop
/// serving and exit, leaving the devices. On `Err` this process forwards
/// on (resumed if it had paused).
pub fn serve(api: &Api, mut s: UnixStream) -> Result<Duration, HandoverError> {
    s.set_write_timeout(Some(STEP_TIMEOUT))
        .map_err(io("socket setup"))?;
    // The new process listens for OpenFlow where we did.
    let site = api.release_openflow();
    let r = offer(api, &mut s);
    if r.is_err() {
        if let Some((dir, rt)) = site {
            if let Err(e) = api.serve_openflow(&dir, rt) {
                tracing::warn!("handover failed, and OpenFlow cannot listen again: {e}");
            }
        }
    }
    r
}

/// Steps 2 to 6 of [`serve`].
fn offer(api: &Api, s: &mut UnixStream) -> Result<Duration, HandoverError> {
    let ports = api.handover_fds();
    let header = FdsHeader {
        pid: std::process::id(),
        ports: ports
            .iter()
            .map(|(bridge, p)| FdPort {
                bridge: bridge.clone(),
                port: p.name.clone(),
                fds: p.fds.len(),
            })
            .collect(),
    };
    let json = serde_json::to_vec(&header).map_err(|e| HandoverError::Protocol(e.to_string()))?;
    write_frame(s, "sending the port list", &json)?;
    let all: Vec<_> = ports.iter().flat_map(|(_, p)| p.fds.iter()).collect();
    for chunk in all.chunks(scm::MAX_FDS) {
        let fds: Vec<_> = chunk.iter().map(|f| f.as_fd()).collect();
        scm::send_fds(s.as_fd(), b"F", &fds).map_err(io("sending fds"))?;
    }
    // Our copies go: the new process holds its own.
    drop(ports);
    s.set_read_timeout(Some(READY_TIMEOUT))
        .map_err(io("socket setup"))?;
    expect(s, "waiting for the new process to be ready", b"ready")?;
    // From here until `running`, nothing forwards.
    let paused = Instant::now();
    api.pause(true);
    // The devices' other queues are ours alone: closed, they leave the
    // traffic to the queues the new process opened, which it reads once it
    // runs. (Should the handover fail, our other workers send through the
    // first one's queues.)
    api.release_extra_queues();
    let r = (|| {
        let tables = api.export_conntrack(Instant::now());
        let h = CtHeader {
            bridges: tables.iter().map(|(b, _)| b.clone()).collect(),
        };
        let json = serde_json::to_vec(&h).map_err(|e| HandoverError::Protocol(e.to_string()))?;
        write_frame(s, "sending the table list", &json)?;
        for (_, t) in &tables {
            write_frame(s, "sending a connection table", t)?;
        }
        s.set_read_timeout(Some(STEP_TIMEOUT))
            .map_err(io("socket setup"))?;
        expect(s, "waiting for the new process to run", b"running")
    })();
    match r {
        Ok(()) => {
            // The devices are the new process's now: our exit leaves them.
            crate::port::persist::set_keep_on_exit(true);
            let gap = paused.elapsed();
            tracing::info!(
                gap_ms = gap.as_secs_f64() * 1e3,
                "handed over to the new vswitchd: exiting, devices stay"
            );
            Ok(gap)
        }
        Err(e) => {
            api.pause(false);
            tracing::warn!("{e}: forwarding on");
            Err(e)
        }
    }
}

/// The new side after step 2: the connection, holding the old process
/// until [`Incoming::finish`].
pub struct Incoming {
    s: UnixStream,
    /// The old process's pid.
    pub old_pid: u32,
    /// Ports handed over.
    pub ports: usize,
}

/// Connects to the running daemon at `ctl` and receives its ports' fds
/// (steps 1 and 2): hand them to [`Api::adopt_fds`], build the switch,
/// then call [`Incoming::finish`].
pub fn connect(ctl: &Path) -> Result<(Incoming, HashMap<String, Vec<OwnedFd>>), HandoverError> {
    let mut s = UnixStream::connect(ctl).map_err(io("connecting to the running vswitchd"))?;
    s.set_read_timeout(Some(STEP_TIMEOUT))
        .map_err(io("socket setup"))?;
    s.set_write_timeout(Some(STEP_TIMEOUT))
        .map_err(io("socket setup"))?;
    let mut req = serde_json::to_vec(&Request::Handover)
        .map_err(|e| HandoverError::Protocol(e.to_string()))?;
    req.push(b'\n');
    s.write_all(&req).map_err(io("asking for the handover"))?;
    let head = read_frame(&mut s, "reading the port list")?;
    let header: FdsHeader = serde_json::from_slice(&head).map_err(|_| {
        // Not our frame: most likely the daemon's refusal as a JSON line.
        HandoverError::Protocol(format!(
            "the running vswitchd refused: {}",
            String::from_utf8_lossy(&head).trim()
        ))
    })?;
    let want: usize = header.ports.iter().map(|p| p.fds).sum();
    let mut fds = Vec::with_capacity(want);
    while fds.len() < want {
        let mut b = [0u8; 1];
        let (n, got) =
            scm::recv_fds(s.as_fd(), &mut b, scm::MAX_FDS).map_err(io("receiving fds"))?;
        if n == 0 {
            return Err(HandoverError::Protocol(
                "the running vswitchd hung up while sending fds".into(),
            ));
        }
        fds.extend(got);
    }
    if fds.len() != want {
        return Err(HandoverError::Protocol(format!(
            "{} fds announced, {} received",
            want,
            fds.len()
        )));
    }
    let mut it = fds.into_iter();
    let mut by_port = HashMap::new();
    for p in &header.ports {
        by_port.insert(p.port.clone(), it.by_ref().take(p.fds).collect());
    }
    let inc = Incoming {
        s,
        old_pid: header.pid,
        ports: header.ports.len(),
    };
    Ok((inc, by_port))
}

impl Incoming {
    /// Steps 3 to 6, once the switch is built with the adopted fds: takes
    /// the connection tables, starts forwarding and waits (bounded) for
    /// the old process to let go. Returns how long forwarding was paused
    /// as this side saw it.
    pub fn finish(mut self, api: &Api) -> Result<Duration, HandoverError> {
        for port in api.drop_unadopted() {
            tracing::warn!(port = %port, "handed over but not configured here: closed");
        }
        self.s
            .set_read_timeout(Some(STEP_TIMEOUT))
            .map_err(io("socket setup"))?;
        write_frame(&mut self.s, "saying ready", b"ready")?;
        let head = read_frame(&mut self.s, "reading the table list")?;
        let paused = Instant::now();
        let h: CtHeader = serde_json::from_slice(&head)
            .map_err(|e| HandoverError::Protocol(format!("table list: {e}")))?;
        let now = Instant::now();
        for bridge in &h.bridges {
            let t = read_frame(&mut self.s, "reading a connection table")?;
            match api.import_conntrack(bridge, &t, now) {
                Ok(r) => tracing::info!(
                    bridge = %bridge, imported = r.imported, refused = r.refused,
                    "connection table taken over"
                ),
                // A bridge the new configuration dropped.
                Err(ApiError::NoBridge(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        api.pause(false);
        let gap = paused.elapsed();
        write_frame(&mut self.s, "saying running", b"running")?;
        // The old process exits now; its end of the socket closes with it.
        let mut b = [0u8; 1];
        let _ = self.s.read(&mut b);
        Ok(gap)
    }
}
