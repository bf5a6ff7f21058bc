//! The listeners: a unix socket (mode 0600, as Open vSwitch's
//! `$OVS_RUNDIR/BR.mgmt`) and an optional passive TCP socket
//! (`ptcp:PORT[:IP]`, loopback unless an address is given), each
//! connection running one [`Session`] over a shared [`Backend`].
//!
//! Bounded: at most `max_connections` sessions at once (others wait in the
//! kernel's backlog), and a peer that does not read its replies is
//! disconnected once `max_output` bytes are queued for it. A connection's
//! errors end that connection only.

use super::backend::Backend;
use super::conn::Session;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// Bytes queued for one peer before it is disconnected.
    pub max_output: usize,
}

impl Config {
    /// Defaults for `unix_path`: 64 sessions, 16 MiB of output each.
    pub fn new(unix_path: impl Into<PathBuf>) -> Config {
        Config {
            unix_path: unix_path.into(),
            tcp: None,
            max_connections: 64,
            max_output: 16 << 20,
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
    /// The bound TCP address, when there is one (port 0 picks a free one).
    pub tcp_addr: Option<SocketAddr>,
    /// The unix socket path.
    pub unix_path: PathBuf,
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
        let (backend, limit, max_output) = (backend.clone(), limit.clone(), cfg.max_output);
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    return;
                };
                match unix.accept().await {
                    Ok((s, _)) => {
                        let b = backend.clone();
                        tokio::spawn(async move {
                            run(s, b, max_output).await;
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
        let (backend, limit, max_output) = (backend.clone(), limit.clone(), cfg.max_output);
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    return;
                };
                match l.accept().await {
                    Ok((s, _)) => {
                        let _ = s.set_nodelay(true);
                        let b = backend.clone();
                        tokio::spawn(async move {
                            run(s, b, max_output).await;
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
        tcp_addr,
        unix_path: cfg.unix_path,
    })
}

/// Runs one session on `stream` until the peer hangs up, the session
/// closes, or the peer stops reading.
pub async fn run<S>(stream: S, backend: Arc<dyn Backend>, max_output: usize)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut events = Some(backend.subscribe());
    let mut session = Session::new(backend);
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let out = session.take_output();
        if !out.is_empty() && wr.write_all(&out).await.is_err() {
            return;
        }
        if session.is_closed().is_some() {
            let _ = wr.shutdown().await;
            return;
        }
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => session.receive(&buf[..n]),
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
        }
        if session.pending_output() > max_output {
            return;
        }
    }
}
