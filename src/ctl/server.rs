//! The daemon side of the control socket, its timers and its signals, on a
//! small tokio runtime.
//!
//! Each connection reads one JSON request per line and answers one JSON
//! response per line. Requests run on tokio's blocking pool (they may wait
//! for the datapath thread), so a slow request never stalls the others.
//! The socket is created with mode 0600: only its owner (root on a compute
//! host) may drive the switch.

use super::proto::{Request, Response};
use super::switch::Switch;
use super::Error;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// How often flow timeouts, MAC aging and BPDU-guard events are handled.
pub const TICK: Duration = Duration::from_millis(250);

/// Creates the socket's directory and binds it with mode 0600. A stale
/// socket file left by a crashed daemon is replaced; a live one is not.
pub fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, Error> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Setup(format!("creating {}: {e}", dir.display())))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::Setup(format!(
                "{} is in use: another vswitchd is running (stop it, or use --ctl PATH)",
                path.display()
            )));
        }
        let _ = std::fs::remove_file(path);
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| Error::Setup(format!("binding {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::Setup(format!("chmod {}: {e}", path.display())))?;
    l.set_nonblocking(true)
        .map_err(|e| Error::Setup(format!("{}: {e}", path.display())))?;
    Ok(l)
}

async fn serve_conn(sw: Arc<Switch>, stream: UnixStream) {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                let sw = sw.clone();
                tokio::task::spawn_blocking(move || sw.handle(req))
                    .await
                    .unwrap_or_else(|e| Response::err(format!("internal error: {e}")))
            }
            Err(e) => Response::err(format!("bad request: {e}")),
        };
        let mut out = match serde_json::to_string(&resp) {
            Ok(s) => s,
            Err(e) => format!("{{\"ok\":false,\"text\":\"\",\"json\":null,\"error\":\"{e}\"}}"),
        };
        out.push('\n');
        if wr.write_all(out.as_bytes()).await.is_err() {
            break;
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
}

impl Server {
    /// Starts the runtime and installs the signal handlers.
    pub fn new() -> Result<Server, Error> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(8)
            .enable_all()
            .thread_name("vswitchd-ctl")
            .build()
            .map_err(|e| Error::Setup(format!("starting the control runtime: {e}")))?;
        let (term, int) = {
            let _guard = rt.enter();
            let k = tokio::signal::unix::SignalKind::terminate();
            let i = tokio::signal::unix::SignalKind::interrupt();
            (
                tokio::signal::unix::signal(k).map_err(|e| Error::Setup(e.to_string()))?,
                tokio::signal::unix::signal(i).map_err(|e| Error::Setup(e.to_string()))?,
            )
        };
        Ok(Server { rt, term, int })
    }

    /// Serves `listener` until SIGTERM or SIGINT, then stops the datapath
    /// threads (dropping their ports, which removes the TAPs vswitchd
    /// created) and removes the socket.
    pub fn run(
        self,
        sw: Arc<Switch>,
        listener: std::os::unix::net::UnixListener,
        path: PathBuf,
    ) -> Result<(), Error> {
        let Server {
            rt,
            mut term,
            mut int,
        } = self;
        rt.block_on(async {
            let listener =
                UnixListener::from_std(listener).map_err(|e| Error::Setup(e.to_string()))?;
            let mut tick = tokio::time::interval(TICK);
            loop {
                tokio::select! {
                    acc = listener.accept() => {
                        if let Ok((s, _)) = acc {
                            tokio::spawn(serve_conn(sw.clone(), s));
                        }
                    }
                    _ = tick.tick() => {
                        let sw = sw.clone();
                        let _ = tokio::task::spawn_blocking(move || sw.tick(Instant::now())).await;
                    }
                    _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                    _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
                }
            }
            Ok::<(), Error>(())
        })?;
        sw.shutdown();
        let _ = std::fs::remove_file(&path);
        Ok(())
    }
}
