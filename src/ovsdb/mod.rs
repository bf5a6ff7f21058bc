//! An OVSDB client (RFC 7047): what vswitchd needs to be the switch behind
//! a real `ovsdb-server`, as `ovs-vswitchd` is.
//!
//! * [`framing`]: concatenated JSON values on a stream, bounded in size.
//! * [`datum`]: atoms, sets, maps, UUIDs and named UUIDs.
//! * [`schema`]: which columns are scalars, sets or maps (how an update2
//!   diff applies), and the schema version.
//! * [`replica`]: the monitored tables in memory, kept current by `update`
//!   and `update2` notifications.
//! * [`client`]: the JSON-RPC session: `get_schema`, `monitor_cond` (with
//!   `monitor` as the fallback), `transact`, and the server's `echo`.
//!
//! Why our own: the crates named `ovsdb*` on crates.io are 0.0.x releases
//! with few users, and the protocol subset a switch needs is small: a few
//! hundred lines over `serde_json`, with every malformed message an
//! [`Error`], never a panic.
//!
//! This module knows nothing of bridges or ports: it depends on
//! `serde_json` and `std` only. The front end that turns the replica into
//! switch operations is `ctl::ovsdb`.

pub mod client;
pub mod datum;
pub mod framing;
pub mod replica;
pub mod schema;

pub use client::{Client, MonitorMethod, Notification, Remote};
pub use datum::{Atom, Datum};
pub use replica::{Format, Replica, Row};
pub use schema::{ColumnKind, Schema};

/// What can go wrong talking to an OVSDB server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The remote is not `unix:PATH` or `tcp:HOST:PORT`.
    #[error("bad OVSDB remote '{0}': expected unix:PATH or tcp:HOST:PORT")]
    BadRemote(String),
    /// Connecting, reading or writing failed.
    #[error("OVSDB connection: {0}")]
    Io(#[source] std::io::Error),
    /// The server closed the connection.
    #[error("OVSDB connection closed")]
    Closed,
    /// A message is not valid JSON.
    #[error("OVSDB message is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A message exceeds the size limit.
    #[error("OVSDB message longer than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A message is JSON but not the shape the protocol defines.
    #[error("malformed OVSDB {what}: expected {expected}")]
    Malformed {
        /// Which kind of message or part.
        what: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A value is not a valid OVSDB datum.
    #[error("bad OVSDB value {value}: expected {expected}")]
    Datum {
        /// What was expected.
        expected: &'static str,
        /// The offending JSON (shortened).
        value: String,
    },
    /// The server answered a request with an error.
    #[error("OVSDB {method} failed: {error}")]
    Rpc {
        /// The request.
        method: String,
        /// The server's error object.
        error: String,
    },
    /// A transaction was refused (an operation's error).
    #[error("OVSDB transaction failed: {0}")]
    Transaction(String),
    /// No reply in time.
    #[error("OVSDB {method}: no reply in time")]
    Timeout {
        /// The request.
        method: String,
    },
}

impl Error {
    fn malformed(what: &'static str, expected: &'static str) -> Error {
        Error::Malformed { what, expected }
    }

    fn datum(expected: &'static str, v: &serde_json::Value) -> Error {
        let mut value = v.to_string();
        if value.len() > 80 {
            let mut end = 80;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            value.truncate(end);
            value.push_str("...");
        }
        Error::Datum { expected, value }
    }
}
