//! The daemon side of the control socket, its timers and its signals, on a
//! small tokio runtime.
//!
//! Each connection reads one JSON request per line and answers one JSON
//! response per line. Requests run on tokio's blocking pool (they may wait
//! for the datapath thread). Everything is bounded, so no client can wedge
//! the daemon:
//!
//! * at most [`MAX_CONNECTIONS`] clients at once (the next one is told so
//!   and closed), a request line at most [`MAX_LINE`] bytes, an idle
//!   client closed after [`IDLE_TIMEOUT`];
//! * a client that goes away cancels the request it was waiting for, and
//!   SIGTERM cancels every request;
//! * requests that wait (captures) are limited to [`MAX_WAITING`] at a
//!   time, so the blocking pool always has threads for the others;
//! * when accept fails (out of file descriptors), the loop backs off
//!   instead of spinning.
//!
//! The socket is created with mode 0600: only its owner (root on a compute
//! host) may drive the switch.
//!
//! With a state directory ([`Server::with_state`]), a request that changes
//! the switch is answered only once the state including its change is on
//! disk (see [`super::state`]). SIGHUP runs the reload hook
//! ([`Server::on_reload`]): the daemon re-reads its configuration file; it
//! never stops the daemon.

use super::api::{Api, Cancel};
use super::proto::{Request, Response};
use super::state::Saver;
use super::Error;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

/// How often flow timeouts, MAC aging and BPDU-guard events are handled.
pub const TICK: Duration = Duration::from_millis(250);
/// Clients connected at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The longest request line (a flow file of 100,000 flows is about 10 MB).
pub const MAX_LINE: usize = 64 << 20;
/// A client that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Requests that wait (captures) running at once.
pub const MAX_WAITING: usize = 4;
/// The blocking pool's threads: room for every waiting request and more.
const BLOCKING_THREADS: usize = 16;
/// How long accept pauses after a failure such as EMFILE.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);

/// Creates the socket's directory and binds it with mode 0600. A stale
/// socket left by a crashed daemon (a socket nobody answers on) is
/// replaced; a live one, or anything that is not a socket, is refused.
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, Error> {
    let setup =
        |what: &str, e: std::io::Error| Error::Setup(format!("{what} {}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| setup("creating the directory of", e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(Error::Setup(format!(
            "{} exists and is not a socket: refusing to replace it (remove it, or use --ctl PATH)",
            path.display()
        )))
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(Error::Setup(format!(
                    "{} is in use: another vswitchd is running (stop it, or use --ctl PATH)",
                    path.display()
                )))
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(|e| setup("removing the stale socket", e))?;
            }
            Err(e) => return Err(setup("checking", e)),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(setup("checking", e)),
    }
    let l = std::os::unix::net::UnixListener::bind(path).map_err(|e| setup("binding", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| setup("chmod", e))?;
    l.set_nonblocking(true)
        .map_err(|e| setup("configuring", e))?;
    Ok(l)
}

/// What every connection shares.
struct Shared {
    api: Arc<Api>,
    /// Set at shutdown: cancels every request.
    stopping: Cancel,
    waiting: Semaphore,
    /// A new vswitchd took over (see [`super::handover`]): stop, leaving
    /// the devices.
    handed_over: tokio::sync::Notify,
    /// One handover at a time.
    handing_over: std::sync::atomic::AtomicBool,
    /// Saves the state before a change is acknowledged.
    state: Option<Arc<Saver>>,
}

/// Runs the old side of a handover on the connection that asked for it.
async fn hand_over(
    sh: &Arc<Shared>,
    rd: BufReader<tokio::net::unix::OwnedReadHalf>,
    wr: tokio::net::unix::OwnedWriteHalf,
) {
    use std::sync::atomic::Ordering::SeqCst;
    if sh.handing_over.swap(true, SeqCst) {
        let mut wr = wr;
        let resp = Response::err("a handover is already in progress".to_string(), "busy");
        let _ = write_response(&mut wr, &resp).await;
        return;
    }
    // The new process sends nothing more until it has our header, so the
    // reader holds no buffered bytes.
    let stream = match rd.into_inner().reunite(wr) {
        Ok(s) => s.into_std(),
        Err(_) => return,
    };
    let stream = match stream.and_then(|s| s.set_nonblocking(false).map(|()| s)) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("handover: {e}");
            sh.handing_over.store(false, SeqCst);
            return;
        }
    };
    let api = sh.api.clone();
    let r = tokio::task::spawn_blocking(move || super::handover::serve(&api, stream)).await;
    match r {
        Ok(Ok(_)) => sh.handed_over.notify_one(),
        _ => sh.handing_over.store(false, SeqCst),
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes. `Ok(None)` at EOF.
async fn read_line<R: AsyncBufRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<()>> {
    buf.clear();
    let n = (&mut *rd)
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("request line longer than {MAX_LINE} bytes"),
        ));
    }
    Ok(Some(()))
}

async fn write_response(wr: &mut tokio::net::unix::OwnedWriteHalf, resp: &Response) -> bool {
    let mut out = serde_json::to_string(resp).unwrap_or_else(|e| {
        format!("{{\"ok\":false,\"text\":\"\",\"json\":null,\"error\":\"{e}\"}}")
    });
    out.push('\n');
    wr.write_all(out.as_bytes()).await.is_ok()
}

/// Runs one request on the blocking pool; cancels it when the client
/// hangs up while it runs.
async fn run_request(
    sh: &Arc<Shared>,
    req: Request,
    rd: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
) -> Response {
    let cancel = sh.stopping.child();
    let waits = matches!(req, Request::Capture { .. });
    let _permit = if waits {
        match sh.waiting.try_acquire() {
            Ok(p) => Some(p),
            Err(_) => {
                return Response::err(
                    format!("too many waiting requests (at most {MAX_WAITING} captures at once)"),
                    "busy",
                )
            }
        }
    } else {
        None
    };
    let (api, c) = (sh.api.clone(), cancel.clone());
    let saver = sh
        .state
        .clone()
        .filter(|_| super::state::changes_state(&req));
    let mut job = tokio::task::spawn_blocking(move || {
        let resp = super::handler::handle(&api, req, &c);
        match saver {
            // The reply means "done and saved": it waits for the save.
            Some(s) if resp.ok => match s.commit() {
                Ok(()) => resp,
                Err(e) => Response::err(e.to_string(), "not_saved"),
            },
            _ => resp,
        }
    });
    let mut watching = true;
    loop {
        tokio::select! {
            r = &mut job => {
                return r.unwrap_or_else(|e| Response::err(format!("internal error: {e}"), "internal"));
            }
            // A client that pipelines its next request is still there;
            // one that hung up (EOF) no longer wants the answer.
            r = rd.fill_buf(), if watching => {
                match r {
                    Ok([]) | Err(_) => cancel.cancel(),
                    Ok(_) => {}
                }
                watching = false;
            }
        }
    }
}

async fn serve_conn(sh: Arc<Shared>, stream: UnixStream) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let mut line = Vec::new();
    loop {
        let got = match tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut rd, &mut line)).await {
            Err(_) | Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                let _ = write_response(
                    &mut wr,
                    &Response::err(format!("bad request: {e}"), "bad_request"),
                )
                .await;
                return;
            }
            Ok(Ok(Some(()))) => &line,
        };
        let text = String::from_utf8_lossy(got);
        if text.trim().is_empty() {
            continue;
        }
        let resp = match serde_json::from_str::<Request>(&text) {
            Ok(Request::Handover) => return hand_over(&sh, rd, wr).await,
            Ok(req) => run_request(&sh, req, &mut rd).await,
            Err(e) => Response::err(format!("bad request: {e}"), "bad_request"),
        };
        if !write_response(&mut wr, &resp).await {
            return;
        }
    }
}

/// The control runtime, with SIGTERM/SIGINT already caught. Create it
/// before binding the socket: from the moment the socket answers, a SIGTERM
/// must mean a clean stop, never the default kill.
pub struct Server {
    rt: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    state: Option<Arc<Saver>>,
    reload: Option<Reload>,
}

/// What SIGHUP runs (on the blocking pool).
pub type Reload = Arc<dyn Fn() + Send + Sync>;

impl Server {
    /// Starts the runtime and installs the signal handlers.
    pub fn new() -> Result<Server, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(BLOCKING_THREADS)
            .enable_all()
            .thread_name("vswitchd-ctl")
            .build()
            .map_err(|e| Error::Setup(format!("starting the control runtime: {e}")))?;
        let (term, int, hup) = {
            let _guard = rt.enter();
            let k = tokio::signal::unix::SignalKind::terminate();
            let i = tokio::signal::unix::SignalKind::interrupt();
            let h = tokio::signal::unix::SignalKind::hangup();
            (
                tokio::signal::unix::signal(k).map_err(|e| Error::Setup(e.to_string()))?,
                tokio::signal::unix::signal(i).map_err(|e| Error::Setup(e.to_string()))?,
                tokio::signal::unix::signal(h).map_err(|e| Error::Setup(e.to_string()))?,
            )
        };
        Ok(Server {
            rt,
            term,
            int,
            hup,
            state: None,
            reload: None,
        })
    }

    /// Answers changing requests only once `saver` has them on disk, and
    /// stops it (after its last save) before the bridges go at shutdown.
    pub fn with_state(mut self, saver: Arc<Saver>) -> Self {
        self.state = Some(saver);
        self
    }

    /// Runs `f` on SIGHUP (re-reading the configuration file).
    pub fn on_reload(mut self, f: Reload) -> Self {
        self.reload = Some(f);
        self
    }

    /// The runtime, for front ends that run beside the control socket
    /// (the OpenFlow listeners).
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.rt.handle().clone()
    }

    /// Serves `listener` until SIGTERM or SIGINT, then cancels what is
    /// still running, stops the datapath threads (dropping their ports,
    /// which removes the TAPs vswitchd created) and removes the socket.
    pub fn run(
        self,
        api: Arc<Api>,
        listener: std::os::unix::net::UnixListener,
        path: PathBuf,
    ) -> Result<(), Error> {
        let Server {
            rt,
            mut term,
            mut int,
            mut hup,
            state,
            reload,
        } = self;
        let sh = Arc::new(Shared {
            api: api.clone(),
            stopping: Cancel::new(),
            waiting: Semaphore::new(MAX_WAITING),
            handed_over: tokio::sync::Notify::new(),
            handing_over: std::sync::atomic::AtomicBool::new(false),
            state: state.clone(),
        });
        let conns = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        rt.block_on(async {
            let listener =
                UnixListener::from_std(listener).map_err(|e| Error::Setup(e.to_string()))?;
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut ticking: Option<tokio::task::JoinHandle<()>> = None;
            let mut accept_failed = false;
            loop {
                tokio::select! {
                    acc = listener.accept() => match acc {
                        Ok((s, _)) => {
                            accept_failed = false;
                            match conns.clone().try_acquire_owned() {
                                Ok(permit) => {
                                    let sh = sh.clone();
                                    tokio::spawn(async move {
                                        serve_conn(sh, s).await;
                                        drop(permit);
                                    });
                                }
                                Err(_) => {
                                    tokio::spawn(refuse(s));
                                }
                            }
                        }
                        Err(e) => {
                            if !accept_failed {
                                tracing::warn!("control socket: accept failed: {e}; backing off");
                                accept_failed = true;
                            }
                            tokio::time::sleep(ACCEPT_BACKOFF).await;
                        }
                    },
                    _ = tick.tick() => {
                        // Upkeep runs beside the loop: signals and clients
                        // are served even while it waits for a lock.
                        if ticking.as_ref().is_none_or(|t| t.is_finished()) {
                            let api = api.clone();
                            ticking = Some(tokio::task::spawn_blocking(move || api.tick(Instant::now())));
                        }
                    }
                    _ = sh.handed_over.notified() => { tracing::info!("handed over: stopping"); break; }
                    _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                    _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
                    _ = hup.recv() => match &reload {
                        Some(f) => {
                            tracing::info!("SIGHUP: re-reading the configuration");
                            let f = f.clone();
                            tokio::task::spawn_blocking(move || f());
                        }
                        None => tracing::info!("SIGHUP: no configuration file to re-read"),
                    },
                }
            }
            Ok::<(), Error>(())
        })?;
        sh.stopping.cancel();
        rt.shutdown_timeout(Duration::from_secs(5));
        // The last save runs while the bridges still exist.
        if let Some(s) = &state {
            s.stop();
        }
        api.shutdown();
        let _ = std::fs::remove_file(&path);
        Ok(())
    }
}

/// Tells a client over the connection limit why it is closed.
async fn refuse(s: UnixStream) {
    let (_, mut wr) = s.into_split();
    let resp = Response::err(
        format!("too many control connections (at most {MAX_CONNECTIONS})"),
        "busy",
    );
    let _ = write_response(&mut wr, &resp).await;
}
