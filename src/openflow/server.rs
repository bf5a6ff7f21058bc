//! The listeners: a unix socket (mode 0600, as Open vSwitch's
//! `$OVS_RUNDIR/BR.mgmt`) and an optional passive TCP socket
//! (`ptcp:PORT[:IP]`, loopback unless an address is given), each
//! connection running one [`Session`] over a shared [`Backend`].
//!
//! Bounded: at most `max_connections` sessions at once (each listener
//! holds at most one more accepted connection until a slot frees, the rest
//! wait in the kernel's backlog). A session writes all its replies before
//! it reads the next request, so replies cannot pile up; events (packet-ins,
//! port status) beyond `max_output` queued bytes are dropped and counted,
//! and a peer that stops reading for `write_timeout` is disconnected. A
//! connection's errors end that connection only.
//!
//! A barrier the session holds for its save ([`Session::barrier_pending`])
//! is saved on a blocking thread ([`Backend::save`] fsyncs), and nothing
//! more is read from that peer until it is answered; events keep flowing.
//! Controller connections ([`run_controller`]) also report their standing
//! ([`ControllerLink`]): connected from the end of the HELLO exchange,
//! idle while an inactivity probe is unanswered, the role asked for, and
//! why they ended ([`SessionEnd`]).

use super::backend::{Backend, NotDurable};
use super::conn::Session;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinHandle;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A `ptcp:` target that does not parse.
    #[error("bad listener '{0}': expected ptcp:PORT[:IP]")]
    BadTarget(String),
    /// Something that is not a stale socket is at the unix socket path.
    #[error("{0} exists and is not a stale socket; refusing to remove it")]
    PathInUse(PathBuf),
    /// Binding or configuring a socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The unix socket path (`DIR/BR.mgmt`).
    pub unix_path: PathBuf,
    /// Optional passive TCP address.
    pub tcp: Option<SocketAddr>,
    /// Sessions served at once.
    pub max_connections: usize,
    /// Bytes of events queued for one peer before further events are
    /// dropped (replies are never dropped: a session writes them all
    /// before it reads the next request).
    pub max_output: usize,
    /// How long one write may wait for a peer that does not read before
    /// the session is closed.
    pub write_timeout: Duration,
}

impl Config {
    /// Defaults for `unix_path`: 64 sessions, 16 MiB of output each.
    pub fn new(unix_path: impl Into<PathBuf>) -> Config {
        Config {
            unix_path: unix_path.into(),
            tcp: None,
            max_connections: 64,
            max_output: 16 << 20,
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// Parses `ptcp:PORT[:IP]` (IP defaults to 127.0.0.1).
pub fn parse_ptcp(s: &str) -> Result<SocketAddr, ServerError> {
    let bad = || ServerError::BadTarget(s.to_string());
    let rest = s.strip_prefix("ptcp:").ok_or_else(bad)?;
    let (port, ip) = match rest.split_once(':') {
        Some((p, ip)) => {
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            (p, ip.parse::<IpAddr>().map_err(|_| bad())?)
        }
        None => (rest, IpAddr::V4(Ipv4Addr::LOCALHOST)),
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(ip, port))
}

/// A running endpoint; dropping it stops the listeners (sessions end when
/// their peers do).
#[derive(Debug)]
pub struct Server {
    tasks: Vec<JoinHandle<()>>,
    limit: Arc<Semaphore>,
    max_connections: usize,
    /// The bound TCP address, when there is one (port 0 picks a free one).
    pub tcp_addr: Option<SocketAddr>,
    /// The unix socket path.
    pub unix_path: PathBuf,
}

impl Server {
    /// Sessions being served now.
    pub fn active_sessions(&self) -> usize {
        self.max_connections - self.limit.available_permits()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// Removes `path` only if it is a socket nobody answers on.
fn clear_stale(path: &Path) -> Result<(), ServerError> {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !md.file_type().is_socket() || std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ServerError::PathInUse(path.to_path_buf()));
    }
    std::fs::remove_file(path).map_err(io(format!("removing stale {}", path.display())))
}

/// Binds the listeners and serves sessions over `backend` (call inside a
/// tokio runtime).
pub fn start(cfg: Config, backend: Arc<dyn Backend>) -> Result<Server, ServerError> {
    clear_stale(&cfg.unix_path)?;
    let unix = UnixListener::bind(&cfg.unix_path)
        .map_err(io(format!("binding {}", cfg.unix_path.display())))?;
    std::fs::set_permissions(&cfg.unix_path, std::fs::Permissions::from_mode(0o600))
        .map_err(io(format!("chmod {}", cfg.unix_path.display())))?;
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let mut tasks = Vec::new();
    {
        let (backend, limit, max_output, wt) = (
            backend.clone(),
            limit.clone(),
            cfg.max_output,
            cfg.write_timeout,
        );
        tasks.push(tokio::spawn(async move {
            loop {
                match unix.accept().await {
                    Ok((s, _)) => {
                        // Accept first, then wait for a free slot: a
                        // listener must not hold a slot while idle, or
                        // the other listener could starve.
                        let Ok(permit) = limit.clone().acquire_owned().await else {
                            return;
                        };
                        let b = backend.clone();
                        tokio::spawn(async move {
                            run(s, b, max_output, wt).await;
                            drop(permit);
                        });
                    }
                    // Out of descriptors and the like: back off instead
                    // of spinning.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
            }
        }));
    }
    let mut tcp_addr = None;
    if let Some(addr) = cfg.tcp {
        let std_l = std::net::TcpListener::bind(addr).map_err(io(format!("binding {addr}")))?;
        std_l
            .set_nonblocking(true)
            .map_err(io("setting nonblocking"))?;
        tcp_addr = std_l.local_addr().ok();
        let l = TcpListener::from_std(std_l).map_err(io("registering the TCP listener"))?;
        let (backend, limit, max_output, wt) = (
            backend.clone(),
            limit.clone(),
            cfg.max_output,
            cfg.write_timeout,
        );
        tasks.push(tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, _)) => {
                        let Ok(permit) = limit.clone().acquire_owned().await else {
                            return;
                        };
                        let _ = s.set_nodelay(true);
                        let b = backend.clone();
                        tokio::spawn(async move {
                            run(s, b, max_output, wt).await;
                            drop(permit);
                        });
                    }
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                }
            }
        }));
    }
    Ok(Server {
        tasks,
        limit,
        max_connections: cfg.max_connections,
        tcp_addr,
        unix_path: cfg.unix_path,
    })
}

/// Runs one session on `stream` until the peer hangs up, the session
/// closes, or a write to the peer waits longer than `write_timeout`.
/// Events beyond `max_output` queued bytes are dropped and counted.
pub async fn run<S>(
    stream: S,
    backend: Arc<dyn Backend>,
    max_output: usize,
    write_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    run_probed(stream, backend, max_output, write_timeout, None).await
}

/// [`run`], and with `probe` set, inactivity probing: after `probe`
/// without anything from the peer an ECHO_REQUEST, and after another
/// `probe` of silence the session ends (a controller connection is then
/// made again).
pub async fn run_probed<S>(
    stream: S,
    backend: Arc<dyn Backend>,
    max_output: usize,
    write_timeout: Duration,
    probe: Option<Duration>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // A listener's session ends however it ends: nothing keeps it.
    let _ = serve(stream, backend, max_output, write_timeout, probe, None).await;
}

/// What a controller connection tells whoever keeps it, as it goes:
/// the standing Open vSwitch reports in `Controller.status` and `role`.
pub trait ControllerLink: Send + Sync {
    /// The session's standing changed: called first when the HELLO
    /// exchange is done (the controller counts as connected from then on,
    /// as Open vSwitch counts it), then whenever `idle` (an inactivity
    /// probe sent and nothing received since) or `role` (the OFPCR_ROLE_*
    /// the controller last asked for) changes.
    fn standing(&self, idle: bool, role: u32);

    /// The controller sent something (after the HELLO exchange).
    fn heard(&self);
}

/// Why a session ended, for `Controller.status:last_error`.
#[derive(Debug)]
pub enum SessionEnd {
    /// The peer closed the connection.
    PeerClosed,
    /// Reading or writing failed.
    Io(std::io::Error),
    /// The peer did not read what was sent to it for the write timeout.
    WriteTimeout,
    /// The session itself gave up (no HELLO, no common version, a bad
    /// message length, no answer to the inactivity probe).
    Closed(super::conn::CloseReason),
    /// The HELLO exchange was not done in time.
    HelloTimeout,
}

impl SessionEnd {
    /// The error text Open vSwitch writes in `last_error` for such an
    /// end: `strerror` of the errno its connection reports (EOF reads
    /// "End of file", a probe or write timeout ETIMEDOUT, a HELLO or
    /// framing failure EPROTO).
    pub fn last_error(&self) -> String {
        use super::conn::CloseReason;
        match self {
            SessionEnd::PeerClosed => "End of file".to_string(),
            SessionEnd::Io(e) => strerror(e),
            SessionEnd::WriteTimeout
            | SessionEnd::HelloTimeout
            | SessionEnd::Closed(CloseReason::ProbeTimeout) => {
                strerror(&std::io::Error::from_raw_os_error(libc::ETIMEDOUT))
            }
            SessionEnd::Closed(_) => strerror(&std::io::Error::from_raw_os_error(libc::EPROTO)),
        }
    }
}

/// An I/O error as `strerror` words it: without the " (os error N)" that
/// Rust adds.
pub fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match (e.raw_os_error(), s.rsplit_once(" (os error ")) {
        (Some(_), Some((text, _))) => text.to_string(),
        _ => s,
    }
}

/// How a controller session is kept, besides its stream and backend.
pub struct ControllerSession {
    /// Bytes of events queued before they are dropped.
    pub max_output: usize,
    /// A controller that does not read for this long is disconnected.
    pub write_timeout: Duration,
    /// The inactivity probe interval (None: not probed).
    pub probe: Option<Duration>,
    /// When the HELLO exchange must be done (as Open vSwitch's
    /// connection attempt must be), None: no limit.
    pub hello_by: Option<std::time::Instant>,
    /// Hears of the end of the HELLO exchange and of each later change of
    /// standing.
    pub link: Arc<dyn ControllerLink>,
}

/// [`run_probed`] for a controller connection kept as `how` says: its
/// link hears of the end of the HELLO exchange and of each later change
/// of standing (an unanswered inactivity probe, a role change); returns
/// why the session ended.
pub async fn run_controller<S>(
    stream: S,
    backend: Arc<dyn Backend>,
    how: ControllerSession,
) -> SessionEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    serve(
        stream,
        backend,
        how.max_output,
        how.write_timeout,
        how.probe,
        Some((&*how.link, how.hello_by)),
    )
    .await
}

async fn serve<S>(
    stream: S,
    backend: Arc<dyn Backend>,
    max_output: usize,
    write_timeout: Duration,
    probe: Option<Duration>,
    controller: Option<(&dyn ControllerLink, Option<std::time::Instant>)>,
) -> SessionEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Events are taken only once the session has a version to send them
    // in: before that a session would discard them, while a packet-in
    // that finds no subscriber is counted by the bridge (none vanishes).
    let mut events: Option<broadcast::Receiver<_>> = None;
    let mut subscribed = false;
    let mut session = Session::new(backend.clone());
    session.set_event_backlog(max_output);
    if let Some(p) = probe {
        session.set_probe_interval(p, std::time::Instant::now());
    }
    // The standing last told to `link` (None: not connected yet).
    let mut told: Option<(bool, u32)> = None;
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = vec![0u8; 64 * 1024];
    // The save a held barrier waits for: it blocks (fsync), so it runs
    // off this task, and nothing more is read meanwhile (what follows the
    // barrier must wait for it anyway).
    let mut saving: Option<tokio::task::JoinHandle<Result<(), NotDurable>>> = None;
    loop {
        let out = session.take_output();
        if !out.is_empty() {
            match tokio::time::timeout(write_timeout, wr.write_all(&out)).await {
                Ok(Ok(())) => {}
                // Gone, or not reading: end only this session.
                Ok(Err(e)) => return SessionEnd::Io(e),
                Err(_) => return SessionEnd::WriteTimeout,
            }
        }
        if let Some(why) = session.is_closed() {
            let why = why.clone();
            let _ = wr.shutdown().await;
            return SessionEnd::Closed(why);
        }
        if !subscribed && session.version().is_some() {
            events = Some(backend.subscribe());
            subscribed = true;
        }
        let hello_by = match controller {
            Some((l, _)) if subscribed => {
                let now = (session.probe_outstanding(), session.role());
                if told != Some(now) {
                    l.standing(now.0, now.1);
                    told = Some(now);
                }
                None
            }
            Some((_, by)) => by,
            None => None,
        };
        if hello_by.is_some_and(|by| std::time::Instant::now() >= by) {
            return SessionEnd::HelloTimeout;
        }
        if saving.is_none() && session.barrier_pending() {
            let b = backend.clone();
            let changes = session.take_unsaved();
            saving = Some(tokio::task::spawn_blocking(move || b.save(&changes)));
        }
        let deadline = match (session.next_timeout(), hello_by) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            r = async {
                match saving.as_mut() {
                    Some(h) => h.await,
                    None => std::future::pending().await,
                }
            } => {
                saving = None;
                let r = r.unwrap_or_else(|e| Err(NotDurable(format!("the save did not finish: {e}"))));
                session.saved(r, std::time::Instant::now());
            },
            r = rd.read(&mut buf), if saving.is_none() => match r {
                Ok(0) => return SessionEnd::PeerClosed,
                Err(e) => return SessionEnd::Io(e),
                Ok(n) => {
                    session.receive_at(&buf[..n], std::time::Instant::now());
                    if let Some((l, _)) = controller.filter(|_| subscribed) {
                        l.heard();
                    }
                }
            },
            ev = async {
                match events.as_mut() {
                    Some(e) => e.recv().await,
                    None => std::future::pending().await,
                }
            } => match ev {
                Ok(ev) => session.on_event(&ev),
                // The session's own counter is for its output queue; a
                // lagging receiver already lost the events.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => events = None,
            },
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending().await,
                }
            } => session.handle_timeout(std::time::Instant::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ofproto::Ofproto;
    use crate::openflow::backend::OfprotoBackend;
    use std::time::{Duration, Instant};
    use tokio::net::UnixStream;

    #[test]
    fn ptcp_targets_parse() {
        assert_eq!(
            parse_ptcp("ptcp:6653").unwrap(),
            "127.0.0.1:6653".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_ptcp("ptcp:6653:0.0.0.0").unwrap(),
            "0.0.0.0:6653".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            parse_ptcp("ptcp:6653:[::1]").unwrap(),
            "[::1]:6653".parse::<SocketAddr>().unwrap()
        );
        assert!(parse_ptcp("tcp:1.2.3.4:6653").is_err());
        assert!(parse_ptcp("ptcp:99999").is_err());
    }

    fn backend() -> Arc<dyn Backend> {
        Arc::new(OfprotoBackend::new(
            Arc::new(Ofproto::new("br0", Instant::now())),
            1,
        ))
    }

    async fn read_hello<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
        let mut h = vec![0u8; 8];
        s.read_exact(&mut h).await.unwrap();
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        h.resize(len, 0);
        s.read_exact(&mut h[8..]).await.unwrap();
        h
    }

    #[tokio::test]
    async fn socket_is_private_bounded_and_never_clobbers_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("br0.mgmt");
        let mut cfg = Config::new(&path);
        cfg.max_connections = 1;
        cfg.tcp = Some("127.0.0.1:0".parse().unwrap());
        let server = start(cfg.clone(), backend()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second endpoint on a live socket is refused; so is a file.
        assert!(matches!(
            start(Config::new(&path), backend()),
            Err(ServerError::PathInUse(_))
        ));
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            start(Config::new(&file), backend()),
            Err(ServerError::PathInUse(_))
        ));

        // One session at a time: the first is served, the second waits
        // for it.
        let mut a = UnixStream::connect(&path).await.unwrap();
        assert_eq!(read_hello(&mut a).await[1], 0);
        assert_eq!(server.active_sessions(), 1);
        let tcp = server.tcp_addr.unwrap();
        let mut b = tokio::net::TcpStream::connect(tcp).await.unwrap();
        drop(a);
        let hello = tokio::time::timeout(Duration::from_secs(10), read_hello(&mut b))
            .await
            .expect("served once the first session ended");
        assert_eq!(hello[1], 0);

        // Once the endpoint is gone its socket is stale and may be reused.
        drop(b);
        drop(server);
        tokio::task::yield_now().await;
        let again = start(Config::new(&path), backend());
        assert!(again.is_ok(), "{again:?}");
    }

    /// A peer that completes the handshake and then stays silent is
    /// probed with an echo request and hung up on (bounded: 20 s).
    #[tokio::test]
    async fn a_silent_peer_is_probed_then_disconnected() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let task = tokio::spawn(run_probed(
            ours,
            backend(),
            1 << 20,
            Duration::from_secs(10),
            Some(Duration::from_millis(200)),
        ));
        assert_eq!(read_hello(&mut peer).await[1], 0);
        let hello = crate::openflow::wire::message::Message::Hello(
            crate::openflow::wire::hello::Hello::for_versions(&[
                crate::openflow::wire::Version::V13,
            ]),
        )
        .encode(crate::openflow::wire::Version::V13, 1);
        peer.write_all(&hello).await.unwrap();
        let echo = tokio::time::timeout(Duration::from_secs(10), read_hello(&mut peer))
            .await
            .expect("an echo request while idle");
        assert_eq!(echo[1], crate::openflow::wire::message::ECHO_REQUEST);
        // No reply: the session ends and the stream is closed.
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), peer.read_to_end(&mut rest))
            .await
            .expect("hung up on")
            .unwrap();
        assert_eq!(n, 0, "nothing more than the echo");
        task.await.unwrap();
    }

    /// What a controller session told its keeper.
    #[derive(Default)]
    struct Told(parking_lot::Mutex<Vec<(bool, u32)>>);

    impl ControllerLink for Told {
        fn standing(&self, idle: bool, role: u32) {
            self.0.lock().push((idle, role));
        }

        fn heard(&self) {}
    }

    impl Told {
        /// Waits (bounded) until `want` was told last.
        async fn last_is(&self, want: (bool, u32)) -> bool {
            for _ in 0..200 {
                if self.0.lock().last() == Some(&want) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    }

    /// A controller session over `ours`, probed every `probe`, whose HELLO
    /// exchange must be done within `hello_in`; what it tells its keeper.
    fn controller_session(
        ours: UnixStream,
        probe: Option<Duration>,
        hello_in: Duration,
    ) -> (Arc<Told>, tokio::task::JoinHandle<SessionEnd>) {
        let told = Arc::new(Told::default());
        let task = tokio::spawn(run_controller(
            ours,
            backend(),
            ControllerSession {
                max_output: 1 << 20,
                write_timeout: Duration::from_secs(10),
                probe,
                hello_by: Some(Instant::now() + hello_in),
                link: told.clone(),
            },
        ));
        (told, task)
    }

    /// A controller session reports connected after the HELLOs, idle
    /// while its probe is unanswered, active again on a reply, and ends
    /// with the peer's close; one whose peer sends no HELLO in time ends
    /// as timed out without ever being connected.
    #[tokio::test]
    async fn a_controller_session_reports_its_standing_and_its_end() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let (told, task) = controller_session(
            ours,
            Some(Duration::from_millis(200)),
            Duration::from_secs(30),
        );
        assert_eq!(read_hello(&mut peer).await[1], 0);
        assert!(told.0.lock().is_empty(), "not connected before our HELLO");
        peer.write_all(&[4, 0, 0, 8, 0, 0, 0, 1]).await.unwrap();
        assert!(told.last_is((false, 1)).await, "connected");
        let echo = tokio::time::timeout(Duration::from_secs(10), read_hello(&mut peer))
            .await
            .expect("an echo request while idle");
        assert_eq!(echo[1], crate::openflow::wire::message::ECHO_REQUEST);
        assert!(told.last_is((true, 1)).await, "idle while unanswered");
        let mut reply = echo.clone();
        reply[1] = 3; // ECHO_REPLY, same xid
        peer.write_all(&reply).await.unwrap();
        assert!(told.last_is((false, 1)).await, "active again");
        drop(peer);
        let end = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("ends")
            .unwrap();
        assert!(matches!(end, SessionEnd::PeerClosed), "{end:?}");
        assert_eq!(end.last_error(), "End of file");

        // No HELLO from the peer by the deadline.
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let (told, task) = controller_session(ours, None, Duration::from_millis(200));
        assert_eq!(read_hello(&mut peer).await[1], 0);
        let end = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("ends without a HELLO")
            .unwrap();
        assert!(matches!(end, SessionEnd::HelloTimeout), "{end:?}");
        assert_eq!(end.last_error(), "Connection timed out");
        assert!(told.0.lock().is_empty(), "never connected");
    }

    /// Over a socket: a barrier after a flow-mod is answered only after the
    /// save it waits for returned, and what came after the barrier only
    /// after that; the save runs once for the burst before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_barrier_is_answered_after_its_save_and_before_what_follows() {
        use crate::openflow::backend::{SaveHook, Unsaved};
        use crate::openflow::wire::message::{self, Message};
        use crate::openflow::wire::Version;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let of = Arc::new(Ofproto::new("br0", Instant::now()));
        let b = Arc::new(OfprotoBackend::new(of.clone(), 1));
        let saves = Arc::new(AtomicUsize::new(0));
        let saving = Arc::new(AtomicBool::new(false));
        let (n, busy) = (saves.clone(), saving.clone());
        b.set_save_hook(Some(SaveHook {
            clock: Arc::default(),
            save: Arc::new(move |_: &str, u: &Unsaved| {
                assert_eq!(u.flow_mods.len(), 3);
                busy.store(true, Ordering::SeqCst);
                // A slow disk.
                std::thread::sleep(Duration::from_millis(200));
                n.fetch_add(1, Ordering::SeqCst);
                busy.store(false, Ordering::SeqCst);
                Ok(())
            }),
        }));
        let (ours, mut peer) = UnixStream::pair().unwrap();
        let task = tokio::spawn(run(ours, b, 1 << 20, Duration::from_secs(10)));
        let v = Version::V13;
        read_hello(&mut peer).await;
        let mut bytes = crate::openflow::wire::message::Message::Hello(
            crate::openflow::wire::hello::Hello::for_versions(&[v]),
        )
        .encode(v, 1);
        for i in 0..3u32 {
            let mut m = crate::flow::Match::default();
            m.set_exact(crate::flow::Field::InPort, u128::from(i + 1));
            let msg = crate::openflow::wire::flow_mod::FlowModMsg {
                format: crate::openflow::wire::flow_mod::MatchFormat::Oxm,
                command: 0,
                table_id: 0,
                cookie: 0,
                cookie_mask: 0,
                idle_timeout: 0,
                hard_timeout: 0,
                priority: 10,
                buffer_id: u32::MAX,
                out_port: crate::flow::ofp_port::NONE,
                out_group: u32::MAX,
                flags: 0,
                importance: 0,
                matches: m,
                actions: Vec::new(),
            };
            bytes.extend(Message::FlowMod(msg).encode(v, 10 + i));
        }
        bytes.extend(Message::BarrierRequest.encode(v, 20));
        bytes.extend(Message::EchoRequest(b"after".to_vec()).encode(v, 21));
        peer.write_all(&bytes).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), read_hello(&mut peer))
            .await
            .expect("the barrier reply");
        assert_eq!(first[1], message::barrier_reply_type(v));
        assert_eq!(saves.load(Ordering::SeqCst), 1, "saved before the reply");
        assert!(!saving.load(Ordering::SeqCst));
        assert_eq!(of.n_flows(), 3);
        let second = tokio::time::timeout(Duration::from_secs(10), read_hello(&mut peer))
            .await
            .expect("the echo reply");
        assert_eq!(second[1], message::ECHO_REPLY);
        drop(peer);
        task.await.unwrap();
        assert_eq!(saves.load(Ordering::SeqCst), 1);
    }
}
