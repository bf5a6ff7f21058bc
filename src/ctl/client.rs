//! The blocking client: one request, one response, over the unix socket.

use super::proto::{Request, Response};
use super::Error;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A connection to vswitchd.
pub struct Client {
    path: PathBuf,
    stream: BufReader<UnixStream>,
}

impl Client {
    /// Connects to the daemon at `path`.
    pub fn connect(path: &Path) -> Result<Client, Error> {
        Self::connect_timeout(path, Duration::from_secs(120))
    }

    /// Connects, waiting at most `timeout` for each reply (a capture waits
    /// for as long as it runs).
    pub fn connect_timeout(path: &Path, timeout: Duration) -> Result<Client, Error> {
        let s = UnixStream::connect(path).map_err(|source| Error::NotRunning {
            path: path.to_path_buf(),
            source,
        })?;
        // A trace or a capture can take a while; a wedged daemon cannot hang
        // a script forever.
        let _ = s.set_read_timeout(Some(timeout));
        Ok(Client {
            path: path.to_path_buf(),
            stream: BufReader::new(s),
        })
    }

    /// Sends `req` and waits for the response.
    pub fn call(&mut self, req: &Request) -> Result<Response, Error> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_string(req).map_err(|e| Error::Protocol(e.to_string()))?;
        line.push('\n');
        if let Err(e) = self.stream.get_mut().write_all(line.as_bytes()) {
            // The daemon may have refused the request before reading all of
            // it (a line over its limit) and said why: read that answer
            // rather than report a bare broken pipe.
            if e.kind() != std::io::ErrorKind::BrokenPipe
                && e.kind() != std::io::ErrorKind::ConnectionReset
            {
                return Err(io(e));
            }
            let mut reply = String::new();
            return match self.stream.read_line(&mut reply) {
                Ok(n) if n > 0 => {
                    serde_json::from_str(&reply).map_err(|e| Error::Protocol(e.to_string()))
                }
                _ => Err(io(e)),
            };
        }
        let mut reply = String::new();
        let n = self
            .stream
            .read_line(&mut reply)
            .map_err(|source| Error::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Err(Error::Protocol("connection closed before the reply".into()));
        }
        serde_json::from_str(&reply).map_err(|e| Error::Protocol(e.to_string()))
    }
}

/// Connects, sends one request, returns the response.
pub fn call(path: &Path, req: &Request) -> Result<Response, Error> {
    let timeout = match req {
        Request::Capture { seconds, .. } => Duration::from_secs(seconds.unwrap_or(3600) + 30),
        _ => Duration::from_secs(120),
    };
    Client::connect_timeout(path, timeout)?.call(req)
}
