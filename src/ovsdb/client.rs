//! A blocking JSON-RPC 1.0 session with an OVSDB server (RFC 7047
//! section 4): requests with replies matched by id, notifications
//! (`update`, `update2`) queued for the owner, and the server's `echo`
//! answered at once.
//!
//! Threads: a reader thread per connection turns bytes into messages (see
//! [`super::framing`]) and answers `echo` itself, so a busy owner never
//! makes the server's inactivity probe drop the session. Everything else
//! goes to the owner over a channel; the owner sends requests and waits,
//! bounded, for their replies.

use super::framing::Framer;
use super::schema::Schema;
use super::Error;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where the server is: `unix:PATH` or `tcp:HOST:PORT`, as Open vSwitch
/// spells remotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    /// A unix socket.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(String),
}

impl std::str::FromStr for Remote {
    type Err = Error;

    fn from_str(s: &str) -> Result<Remote, Error> {
        if let Some(p) = s.strip_prefix("unix:").filter(|p| !p.is_empty()) {
            return Ok(Remote::Unix(p.into()));
        }
        if let Some(a) = s.strip_prefix("tcp:") {
            if let Some((h, p)) = a.rsplit_once(':') {
                if !h.is_empty() && p.parse::<u16>().is_ok() {
                    return Ok(Remote::Tcp(a.to_string()));
                }
            }
        }
        Err(Error::BadRemote(s.to_string()))
    }
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Remote::Unix(p) => write!(f, "unix:{}", p.display()),
            Remote::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// The transport under a session.
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }

    fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }

    fn set_write_timeout(&self, t: Duration) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(Some(t)),
            Stream::Tcp(s) => s.set_write_timeout(Some(t)),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(b),
            Stream::Tcp(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(b),
            Stream::Tcp(s) => s.write(b),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// A JSON-RPC message, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request that wants a reply (`echo` from the server).
    Request {
        /// Method.
        method: String,
        /// Parameters.
        params: Value,
        /// Id to answer with.
        id: Value,
    },
    /// A request without a reply (`update`, `update2`).
    Notification {
        /// Method.
        method: String,
        /// Parameters.
        params: Value,
    },
    /// A reply to one of ours.
    Response {
        /// The id we sent.
        id: Value,
        /// The result, or the error.
        result: Result<Value, Value>,
    },
}

impl Message {
    /// Classifies a JSON value as a JSON-RPC 1.0 message.
    pub fn parse(v: Value) -> Result<Message, Error> {
        let Value::Object(mut o) = v else {
            return Err(Error::malformed("message", "a JSON object"));
        };
        let id = o.remove("id").unwrap_or(Value::Null);
        if let Some(m) = o.remove("method") {
            let method = m
                .as_str()
                .ok_or_else(|| Error::malformed("request", "a string method"))?
                .to_string();
            let params = o.remove("params").unwrap_or(Value::Array(Vec::new()));
            if !params.is_array() {
                return Err(Error::malformed("request", "params as an array"));
            }
            return Ok(if id.is_null() {
                Message::Notification { method, params }
            } else {
                Message::Request { method, params, id }
            });
        }
        if id.is_null() {
            return Err(Error::malformed("message", "a method or an id"));
        }
        let result = match (o.remove("result"), o.remove("error")) {
            (_, Some(e)) if !e.is_null() => Err(e),
            (Some(r), _) => Ok(r),
            _ => return Err(Error::malformed("response", "a result or an error")),
        };
        Ok(Message::Response { id, result })
    }
}

/// A notification the owner has to handle.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// `update`, `update2`, `update3`, `locked`, ...
    pub method: String,
    /// Its parameters.
    pub params: Value,
}

/// How the session's monitor reports changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorMethod {
    /// `monitor_cond`: `update2` notifications.
    MonitorCond,
    /// `monitor`: RFC 7047 `update` notifications.
    Monitor,
}

type Shared = Arc<Mutex<Stream>>;

fn send(w: &Shared, v: &Value) -> Result<(), Error> {
    let text = serde_json::to_vec(v).map_err(Error::Json)?;
    let mut s = w.lock().map_err(|_| Error::Closed)?;
    s.write_all(&text).map_err(Error::Io)?;
    s.flush().map_err(Error::Io)
}

/// Reads messages until the connection ends; answers `echo`.
fn reader(mut r: Stream, w: Shared, tx: mpsc::Sender<Result<Message, Error>>) {
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => {
                let _ = tx.send(Err(Error::Closed));
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.send(Err(Error::Io(e)));
                return;
            }
        };
        framer.push(&buf[..n]);
        while let Some(v) = framer.next_value() {
            let m = v.and_then(Message::parse);
            if let Ok(Message::Request { method, params, id }) = &m {
                if method == "echo" {
                    // The server's liveness probe: answered here, whatever
                    // the owner is doing.
                    let _ = send(&w, &json!({"result": params, "error": null, "id": id}));
                    continue;
                }
            }
            let fatal = m.is_err();
            if tx.send(m).is_err() || fatal {
                // The owner is gone, or the stream cannot be resynchronised.
                return;
            }
        }
    }
}

/// A session with an OVSDB server.
pub struct Client {
    writer: Shared,
    rx: Receiver<Result<Message, Error>>,
    next_id: u64,
    queued: VecDeque<Notification>,
    /// Set once the session failed: every later call fails the same way.
    dead: bool,
}

impl Drop for Client {
    fn drop(&mut self) {
        // Ends the reader thread too (its read returns).
        if let Ok(s) = self.writer.lock() {
            s.shutdown();
        }
    }
}

impl Client {
    /// Connects to `remote`.
    pub fn connect(remote: &Remote, timeout: Duration) -> Result<Client, Error> {
        let s = match remote {
            Remote::Unix(p) => Stream::Unix(UnixStream::connect(p).map_err(Error::Io)?),
            Remote::Tcp(a) => {
                use std::net::ToSocketAddrs;
                let addr = a
                    .to_socket_addrs()
                    .map_err(Error::Io)?
                    .next()
                    .ok_or_else(|| Error::BadRemote(remote.to_string()))?;
                let t = TcpStream::connect_timeout(&addr, timeout).map_err(Error::Io)?;
                let _ = t.set_nodelay(true);
                Stream::Tcp(t)
            }
        };
        // A server that stops reading never blocks us for long.
        s.set_write_timeout(timeout).map_err(Error::Io)?;
        let r = s.try_clone().map_err(Error::Io)?;
        let writer = Arc::new(Mutex::new(s));
        let (tx, rx) = mpsc::channel();
        let w = writer.clone();
        std::thread::Builder::new()
            .name("ovsdb-reader".into())
            .spawn(move || reader(r, w, tx))
            .map_err(Error::Io)?;
        Ok(Client {
            writer,
            rx,
            next_id: 0,
            queued: VecDeque::new(),
            dead: false,
        })
    }

    fn recv(&mut self, deadline: Instant) -> Result<Option<Message>, Error> {
        if self.dead {
            return Err(Error::Closed);
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(wait) {
            Ok(Ok(m)) => Ok(Some(m)),
            Ok(Err(e)) => {
                self.dead = true;
                Err(e)
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                self.dead = true;
                Err(Error::Closed)
            }
        }
    }

    /// Sends `method(params)` and waits up to `timeout` for its reply;
    /// notifications that arrive meanwhile are queued in order.
    pub fn call(&mut self, method: &str, params: Value, timeout: Duration) -> Result<Value, Error> {
        self.next_id += 1;
        let id = json!(self.next_id);
        send(
            &self.writer,
            &json!({"method": method, "params": params, "id": id}),
        )
        .inspect_err(|_| self.dead = true)?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline)? {
                None => {
                    // A reply may still come; the session is out of step.
                    self.dead = true;
                    return Err(Error::Timeout {
                        method: method.to_string(),
                    });
                }
                Some(Message::Response { id: rid, result }) if rid == id => {
                    return result.map_err(|e| Error::Rpc {
                        method: method.to_string(),
                        error: e.to_string(),
                    });
                }
                Some(Message::Response { .. }) => {}
                Some(Message::Notification { method, params }) => {
                    self.queued.push_back(Notification { method, params })
                }
                Some(Message::Request { method, id, .. }) => {
                    // Only `echo` is defined from the server; anything else
                    // gets an error reply rather than silence.
                    send(
                        &self.writer,
                        &json!({"result": null, "error": format!("unknown method {method}"), "id": id}),
                    )?;
                }
            }
        }
    }

    /// The next notification, waiting up to `timeout`; `None` when none
    /// came.
    pub fn next_notification(&mut self, timeout: Duration) -> Result<Option<Notification>, Error> {
        if let Some(n) = self.queued.pop_front() {
            return Ok(Some(n));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline)? {
                None => return Ok(None),
                Some(Message::Notification { method, params }) => {
                    return Ok(Some(Notification { method, params }))
                }
                Some(Message::Request { method, id, .. }) => {
                    send(
                        &self.writer,
                        &json!({"result": null, "error": format!("unknown method {method}"), "id": id}),
                    )?;
                }
                // A late reply to a call that timed out (the session is
                // dead by then anyway).
                Some(Message::Response { .. }) => {}
            }
        }
    }

    /// `get_schema(db)`.
    pub fn get_schema(&mut self, db: &str, timeout: Duration) -> Result<Schema, Error> {
        let v = self.call("get_schema", json!([db]), timeout)?;
        Schema::from_json(&v)
    }

    /// Starts monitoring `requests` (table → monitor request) of `db`:
    /// `monitor_cond` first (update2 notifications), `monitor` when the
    /// server does not know it. Returns the method used and the initial
    /// table-updates.
    pub fn monitor(
        &mut self,
        db: &str,
        id: &Value,
        requests: &Value,
        timeout: Duration,
    ) -> Result<(MonitorMethod, Value), Error> {
        match self.call("monitor_cond", json!([db, id, requests]), timeout) {
            Ok(v) => Ok((MonitorMethod::MonitorCond, v)),
            Err(Error::Rpc { .. }) => {
                let v = self.call("monitor", json!([db, id, requests]), timeout)?;
                Ok((MonitorMethod::Monitor, v))
            }
            Err(e) => Err(e),
        }
    }

    /// `transact(db, ops...)`: the per-operation results when every
    /// operation succeeded, else [`Error::Transaction`] with the first
    /// error the server gave.
    pub fn transact(
        &mut self,
        db: &str,
        ops: Vec<Value>,
        timeout: Duration,
    ) -> Result<Vec<Value>, Error> {
        let mut params = vec![json!(db)];
        params.extend(ops);
        let v = self.call("transact", Value::Array(params), timeout)?;
        let results = match v {
            Value::Array(a) => a,
            _ => return Err(Error::malformed("transact reply", "an array of results")),
        };
        if let Some(e) = results
            .iter()
            .find_map(|r| r.get("error").filter(|e| !e.is_null()))
        {
            let details = results
                .iter()
                .find_map(|r| r.get("details").and_then(Value::as_str))
                .unwrap_or("");
            return Err(Error::Transaction(
                format!("{e} {details}").trim().to_string(),
            ));
        }
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes() {
        assert_eq!(
            "unix:/run/db.sock".parse::<Remote>().unwrap(),
            Remote::Unix("/run/db.sock".into())
        );
        assert_eq!(
            "tcp:127.0.0.1:6640".parse::<Remote>().unwrap(),
            Remote::Tcp("127.0.0.1:6640".into())
        );
        for bad in ["unix:", "tcp:1.2.3.4", "tcp::6640", "ssl:1.2.3.4:6640", "x"] {
            assert!(bad.parse::<Remote>().is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_classify() {
        assert_eq!(
            Message::parse(json!({"method": "echo", "params": [], "id": "echo"})).unwrap(),
            Message::Request {
                method: "echo".into(),
                params: json!([]),
                id: json!("echo")
            }
        );
        assert!(matches!(
            Message::parse(json!({"method": "update2", "params": ["m", {}], "id": null})).unwrap(),
            Message::Notification { .. }
        ));
        assert_eq!(
            Message::parse(json!({"result": null, "error": {"error": "unknown method"}, "id": 4}))
                .unwrap(),
            Message::Response {
                id: json!(4),
                result: Err(json!({"error": "unknown method"}))
            }
        );
        for bad in [
            json!([1]),
            json!({"method": 5, "id": 1}),
            json!({"method": "x", "params": {}, "id": 1}),
            json!({"result": 1, "id": null}),
            json!({"id": 3}),
        ] {
            assert!(Message::parse(bad.clone()).is_err(), "{bad}");
        }
    }

    /// A scripted server on a socketpair: it checks what the client sends
    /// and answers the way ovsdb-server does.
    #[test]
    fn session_against_a_scripted_server() {
        let dir = std::env::temp_dir().join(format!("ovsdb-client-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("db.sock");
        let _ = std::fs::remove_file(&path);
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut f = Framer::default();
            let mut buf = [0u8; 4096];
            let mut next = |s: &mut UnixStream| loop {
                if let Some(v) = f.next_value() {
                    return v.unwrap();
                }
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "client closed early");
                f.push(&buf[..n]);
            };
            // monitor_cond is refused (an old server): the client falls back.
            let m = next(&mut s);
            assert_eq!(m["method"], "monitor_cond");
            let id = m["id"].clone();
            s.write_all(
                serde_json::to_string(
                    &json!({"id": id, "result": null, "error": {"error": "unknown method"}}),
                )
                .unwrap()
                .as_bytes(),
            )
            .unwrap();
            let m = next(&mut s);
            assert_eq!(m["method"], "monitor");
            // An echo and a notification arrive before the reply, split
            // across writes.
            let text = format!(
                "{}{}{}",
                json!({"method": "echo", "params": ["x"], "id": "echo"}),
                json!({"method": "update", "params": ["m", {"T": {}}], "id": null}),
                json!({"id": m["id"], "result": {"T": {}}, "error": null})
            );
            let (a, b) = text.as_bytes().split_at(17);
            s.write_all(a).unwrap();
            s.write_all(b).unwrap();
            // The echo is answered.
            let e = next(&mut s);
            assert_eq!(e, json!({"result": ["x"], "error": null, "id": "echo"}));
            // A transaction with an operation error.
            let t = next(&mut s);
            assert_eq!(t["method"], "transact");
            s.write_all(
                json!({"id": t["id"], "error": null, "result": [{}, {"error": "constraint violation", "details": "bad"}]})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
            // Garbage ends the session.
            s.write_all(b"nonsense").unwrap();
        });
        let mut c = Client::connect(&Remote::Unix(path.clone()), Duration::from_secs(10)).unwrap();
        let (how, initial) = c
            .monitor(
                "Open_vSwitch",
                &json!("m"),
                &json!({"T": {}}),
                Duration::from_secs(10),
            )
            .unwrap();
        assert_eq!((how, initial), (MonitorMethod::Monitor, json!({"T": {}})));
        let n = c
            .next_notification(Duration::from_secs(10))
            .unwrap()
            .unwrap();
        assert_eq!(n.method, "update");
        let e = c
            .transact(
                "Open_vSwitch",
                vec![json!({"op": "comment"}), json!({"op": "x"})],
                Duration::from_secs(10),
            )
            .unwrap_err();
        assert!(e.to_string().contains("constraint violation"), "{e}");
        let e = c.next_notification(Duration::from_secs(10)).unwrap_err();
        assert!(matches!(e, Error::Malformed { .. }), "{e}");
        assert!(c.next_notification(Duration::from_secs(1)).is_err());
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
